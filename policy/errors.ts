/**
 * Errors raised by the policy layer (keyring, cipher, envelope). Each has a stable
 * `code` that callers and tests branch on; messages are for people.
 */
import { SqlState } from '../protocol/errors.js'

/** Stable identifiers of policy-layer failures. Add new codes here. */
export type PgveilErrorCode = 'PGVEIL_DECRYPTION_FAILED' | 'PGVEIL_KEYRING_INVALID'

export class PgveilError extends Error {
  readonly code: PgveilErrorCode
  constructor(code: PgveilErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, 'cause' in options ? { cause: options.cause } : undefined)
    this.name = 'PgveilError'
    this.code = code
  }
}

/**
 * A protected value could not be opened. Fail-closed: the caller must answer with
 * an error, never with the stored bytes.
 *
 * Every cause (not an envelope, truncated, unknown key version, wrong column,
 * tampered byte, wrong key) carries the same `message`, `code` and `sqlState`, so
 * nothing outside the proxy can tell them apart; `detail` says which it was and is
 * meant for the operator log only, never for the client.
 */
export class DecryptionError extends PgveilError {
  static readonly MESSAGE = 'pgveil could not decrypt a protected value'
  /** data_corrupted: what a client sees when a stored value cannot be opened. */
  readonly sqlState = SqlState.DataCorrupted
  readonly failClosed = true
  /** Operator-log explanation (never key material or plaintext). */
  readonly detail: string
  constructor(detail: string, options: { cause?: unknown } = {}) {
    super('PGVEIL_DECRYPTION_FAILED', DecryptionError.MESSAGE, options)
    this.name = 'DecryptionError'
    this.detail = detail
  }
}

/** One thing wrong with the `keys:` configuration, by key path. */
export interface KeyringProblem {
  /** `keys.current`, `keys.versions.2`, `keys.index`, … */
  readonly path: string
  /** What is wrong and what is expected; never contains key material. */
  readonly message: string
}

/** The `keys:` configuration cannot make a keyring; lists every problem found. */
export class KeyringError extends PgveilError {
  readonly problems: readonly KeyringProblem[]
  constructor(problems: readonly KeyringProblem[]) {
    super('PGVEIL_KEYRING_INVALID', `invalid keys:\n${problems.map((p) => `${p.path} ${p.message}`).join('\n')}`)
    this.name = 'KeyringError'
    this.problems = problems
  }
}
