/**
 * What the audit log records: the event types pgveil writes, one JSON line each.
 * Fields never hold a literal, parameter or row value, a token or a key: SQL is
 * normalized (every literal a `$n` placeholder), error texts are redacted.
 */
import type { StatementKind } from './metrics.js'

/**
 * The verified identity a session runs under, as SET IDENTITY establishes it
 * (null before, or after RESET IDENTITY). Only these claims are logged.
 */
export interface IdentityTags {
  readonly iss: string
  readonly sub: string
  readonly aud: string | readonly string[]
}

/** What a session tells the audit log about who is behind it. */
export interface SessionIdentity {
  identity: IdentityTags | null
  /** SET CONTEXT's JSON value (the application's own tags), or null. */
  context: unknown
}

export interface SessionFields {
  /** pgveil's session id (unique within one process; with `chain.id` unique in the log). */
  readonly session: number
  /** Client address as `host:port`. */
  readonly client: string
  readonly user: string
  readonly database: string
  readonly application_name: string
}

/** How a statement ended. `by` tells a pgveil refusal (fail closed) from PostgreSQL's own error. */
export type StatementOutcome =
  | { readonly status: 'ok' }
  | { readonly status: 'error'; readonly sqlstate: string; readonly by: 'pgveil' | 'postgresql'; readonly message: string }

export interface StatementEvent extends SessionFields {
  readonly event: 'statement'
  readonly identity: IdentityTags | null
  readonly context: unknown
  readonly protocol: 'simple' | 'extended'
  readonly kind: StatementKind
  /** The command tag PostgreSQL answered with (`SELECT`, `INSERT`, …), or null when it failed. */
  readonly tag: string | null
  /** Every literal replaced by `$n`; never a value. */
  readonly statement: string
  /** libpg-query fingerprint: equal for statements that differ only in their literals. */
  readonly fingerprint: string
  /** `schema.table`, unqualified names taken as public. */
  readonly tables: readonly string[]
  /** `schema.table.column` of protected columns the statement reads and writes. */
  readonly protected_read: readonly string[]
  readonly protected_written: readonly string[]
  /** Rows returned or affected, from CommandComplete; null when it did not say. */
  readonly rows: number | null
  readonly duration_ms: number
  readonly outcome: StatementOutcome
}

export type SessionEventName = 'connect' | 'authentication_ok' | 'authentication_failed' | 'disconnect'

export interface SessionEvent extends Partial<SessionFields> {
  readonly event: SessionEventName
  readonly session: number
  readonly client: string
  readonly sqlstate?: string
  /** Statements the session ran (disconnect). */
  readonly statements?: number
  readonly duration_ms?: number
}

export interface PolicyEvent {
  readonly event: 'policy_reloaded' | 'policy_refused'
  readonly trigger: string
  readonly protected_columns?: number
  readonly problems?: number
}

/** Any event the audit log accepts (identity events are added by SET IDENTITY). */
export type AuditEvent = StatementEvent | SessionEvent | PolicyEvent | ({ readonly event: string } & Record<string, unknown>)
