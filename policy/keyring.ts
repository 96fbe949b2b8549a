/**
 * The keyring: versioned 32-byte root keys, the version new values are sealed
 * under, the optional equality-index root key, and per-column data keys derived
 * from the root keys with HKDF-SHA256 (DESIGN decision 4).
 *
 * Key material lives in private fields and never appears in an error message, a
 * log line, `String(keyring)`, `util.inspect(keyring)` or `JSON.stringify(keyring)`.
 */
import { hkdfSync } from 'node:crypto'
import { inspect } from 'node:util'
import { KeyringError, type KeyringProblem } from './errors.js'

export const ROOT_KEY_LENGTH = 32
export const COLUMN_KEY_LENGTH = 32
/** HKDF salt of column data keys; a new derivation scheme gets a new salt. */
export const COLUMN_KEY_SALT = Buffer.from('pgveil/column-key/v1', 'utf8')
export const INDEX_KEY_LENGTH = 32
/** HKDF salt of equality-index keys (one per index domain and index root key version). */
export const INDEX_KEY_SALT = Buffer.from('pgveil/index-key/v1', 'utf8')
/** Key versions are stored as uint32 in the envelope; 0 is not a version. */
export const MAX_KEY_VERSION = 0xffff_ffff

/** The `keys:` section of the configuration, secret values still as references. */
export interface KeysConfig {
  current: number
  /** Version number (as written in YAML, a string) → `env:NAME` or `file:PATH`. */
  versions: Record<string, string>
  /**
   * The equality-index root keys: one reference (that key is index key version 1),
   * or versions like `versions` with the `current` one used for new index values.
   */
  index?: string | IndexKeysConfig
}

/** `keys.index` with versions: lookups match every version held, writes use `current`. */
export interface IndexKeysConfig {
  current: number
  versions: Record<string, string>
}

/** Resolves `env:NAME` / `file:PATH` to the secret; throws naming the reference, never the secret. */
export type SecretResolver = (reference: string) => string

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/

/**
 * Decodes a base64 (or base64url) 32-byte key strictly: Buffer's decoder skips
 * characters it does not know, which would turn a typo into a different key.
 * Returns a problem description (without the value) or the key. Root keys, index
 * keys and the audit chain key are all read this way.
 */
export function decodeKey(text: string): Buffer | string {
  const trimmed = text.trim()
  if (!BASE64.test(trimmed) && !BASE64URL.test(trimmed)) return 'is not base64 (expected 32 random bytes in base64, as printed by `pgveil keygen`)'
  const decoded = Buffer.from(trimmed, BASE64.test(trimmed) ? 'base64' : 'base64url')
  try {
    if (decoded.length !== ROOT_KEY_LENGTH) return `decodes to ${decoded.length} bytes (expected exactly ${ROOT_KEY_LENGTH} bytes in base64, as printed by \`pgveil keygen\`)`
    // Reject non-canonical encodings (stray padding, non-zero trailing bits).
    const canonical = decoded.toString(BASE64.test(trimmed) ? 'base64' : 'base64url').replace(/=+$/, '')
    if (canonical !== trimmed.replace(/=+$/, '')) return 'is not canonical base64 (expected 32 random bytes in base64, as printed by `pgveil keygen`)'
    const key = Buffer.alloc(ROOT_KEY_LENGTH)
    decoded.copy(key)
    return key
  } finally {
    decoded.fill(0)
  }
}

function isKeyVersion(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= MAX_KEY_VERSION
}

function parseVersion(text: string): number | undefined {
  if (!/^[1-9][0-9]{0,9}$/.test(text)) return undefined
  const version = Number(text)
  return isKeyVersion(version) ? version : undefined
}

/** What a keyring holds, without key material. */
export interface KeyringDescription {
  current: number
  versions: number[]
  index: boolean
  indexCurrent?: number
  indexVersions?: number[]
}

export class Keyring {
  /** The version new values are sealed under. */
  readonly current: number
  /** Every version held, ascending. */
  readonly versions: readonly number[]
  readonly #roots: Map<number, Buffer>
  readonly #indexRoots: Map<number, Buffer>
  /** The index key version new index values are made with; 0 without index keys. */
  readonly indexCurrent: number
  /** Every index key version held, ascending (empty without index keys). */
  readonly indexVersions: readonly number[]
  readonly #columnKeys = new Map<string, Map<number, Buffer>>()
  readonly #indexKeys = new Map<string, Map<number, Buffer>>()

  /**
   * `roots` maps version → 32-byte root key (copied). Throws RangeError when a key
   * is not 32 bytes, a version is not an integer in 1..2^32-1, or `current` is
   * not one of the versions; messages name the version, never the key. `index`
   * is one equality-index root key (version 1) or versioned index root keys.
   */
  constructor(roots: ReadonlyMap<number, Uint8Array>, current: number, index?: Uint8Array | { readonly versions: ReadonlyMap<number, Uint8Array>; readonly current: number }) {
    const copies = new Map<number, Buffer>()
    for (const [version, key] of roots) {
      if (!isKeyVersion(version)) throw new RangeError(`key version ${version} is not an integer from 1 to ${MAX_KEY_VERSION}`)
      if (!(key instanceof Uint8Array) || key.length !== ROOT_KEY_LENGTH) throw new RangeError(`root key version ${version} must be ${ROOT_KEY_LENGTH} bytes`)
      copies.set(version, Buffer.from(key))
    }
    if (!copies.has(current)) throw new RangeError(`current key version ${current} is not one of the key versions (${[...copies.keys()].join(', ') || 'none'})`)
    const indexRoots = new Map<number, Buffer>()
    let indexCurrent = 0
    if (index instanceof Uint8Array || (index !== undefined && !('versions' in index))) {
      if (!(index instanceof Uint8Array) || index.length !== ROOT_KEY_LENGTH) throw new RangeError(`index root key must be ${ROOT_KEY_LENGTH} bytes`)
      indexRoots.set(1, Buffer.from(index))
      indexCurrent = 1
    } else if (index !== undefined) {
      for (const [version, key] of index.versions) {
        if (!isKeyVersion(version)) throw new RangeError(`index key version ${version} is not an integer from 1 to ${MAX_KEY_VERSION}`)
        if (!(key instanceof Uint8Array) || key.length !== ROOT_KEY_LENGTH) throw new RangeError(`index root key version ${version} must be ${ROOT_KEY_LENGTH} bytes`)
        indexRoots.set(version, Buffer.from(key))
      }
      if (!indexRoots.has(index.current)) throw new RangeError(`current index key version ${index.current} is not one of the index key versions (${[...indexRoots.keys()].join(', ') || 'none'})`)
      indexCurrent = index.current
    }
    this.current = current
    this.versions = Object.freeze([...copies.keys()].sort((a, b) => a - b))
    this.#roots = copies
    this.#indexRoots = indexRoots
    this.indexCurrent = indexCurrent
    this.indexVersions = Object.freeze([...indexRoots.keys()].sort((a, b) => a - b))
  }

  /**
   * Builds the keyring from the `keys:` configuration. Every value must be a
   * secret reference, resolved with `resolve`, holding a base64 32-byte key.
   * Throws KeyringError listing every problem, by key path.
   */
  static fromConfig(keys: KeysConfig, resolve: SecretResolver): Keyring {
    const problems: KeyringProblem[] = []
    const load = (path: string, value: unknown): Buffer | undefined => {
      if (typeof value !== 'string') {
        problems.push({ path, message: 'must be a reference (env:NAME or file:PATH) to a base64 key' })
        return undefined
      }
      if (!value.startsWith('env:') && !value.startsWith('file:')) {
        problems.push({ path, message: 'must be a reference (env:NAME or file:PATH), never the key itself' })
        return undefined
      }
      let secret: string
      try {
        secret = resolve(value)
      } catch (error) {
        // Resolver messages name the variable or file, never the secret.
        problems.push({ path, message: `cannot be resolved: ${error instanceof Error ? error.message : String(error)}` })
        return undefined
      }
      const key = decodeKey(secret)
      if (typeof key === 'string') {
        problems.push({ path, message: `(${value}) ${key}` })
        return undefined
      }
      return key
    }

    const roots = new Map<number, Buffer>()
    const versions: Record<string, unknown> = keys.versions ?? {}
    if (typeof versions !== 'object' || Array.isArray(versions)) problems.push({ path: 'keys.versions', message: 'must map key versions to references (for example 1: env:PGVEIL_KEY_1)' })
    else {
      for (const [name, reference] of Object.entries(versions)) {
        const version = parseVersion(name)
        if (version === undefined) {
          problems.push({ path: `keys.versions.${name}`, message: `is not a key version (expected an integer from 1 to ${MAX_KEY_VERSION})` })
          continue
        }
        const key = load(`keys.versions.${name}`, reference)
        if (key !== undefined) roots.set(version, key)
      }
      if (Object.keys(versions).length === 0) problems.push({ path: 'keys.versions', message: 'is empty (expected at least one key version, for example 1: env:PGVEIL_KEY_1)' })
    }

    const current: unknown = keys.current
    if (typeof current !== 'number' || !isKeyVersion(current)) problems.push({ path: 'keys.current', message: `must be a key version (an integer from 1 to ${MAX_KEY_VERSION})` })
    else if (!Object.keys(versions).some((name) => parseVersion(name) === current)) {
      problems.push({ path: 'keys.current', message: `is ${current}, which is not one of keys.versions (${Object.keys(versions).join(', ') || 'none'})` })
    }

    const indexRoots = new Map<number, Buffer>()
    let indexCurrent = 0
    const indexConfig: unknown = keys.index
    if (typeof indexConfig === 'string' || (indexConfig !== undefined && (typeof indexConfig !== 'object' || indexConfig === null || Array.isArray(indexConfig)))) {
      // The single-key form: that key is index key version 1.
      const key = load('keys.index', indexConfig)
      if (key !== undefined) indexRoots.set(1, key)
      indexCurrent = 1
    } else if (indexConfig !== undefined) {
      const { current: wanted, versions: named } = indexConfig as { current?: unknown; versions?: unknown }
      if (typeof named !== 'object' || named === null || Array.isArray(named) || Object.keys(named).length === 0) {
        problems.push({ path: 'keys.index.versions', message: 'must map index key versions to references (for example 1: env:PGVEIL_INDEX_KEY_1)' })
      } else {
        for (const [name, reference] of Object.entries(named as Record<string, unknown>)) {
          const version = parseVersion(name)
          if (version === undefined) {
            problems.push({ path: `keys.index.versions.${name}`, message: `is not an index key version (expected an integer from 1 to ${MAX_KEY_VERSION})` })
            continue
          }
          const key = load(`keys.index.versions.${name}`, reference)
          if (key !== undefined) indexRoots.set(version, key)
        }
      }
      if (typeof wanted !== 'number' || !isKeyVersion(wanted)) problems.push({ path: 'keys.index.current', message: `must be an index key version (an integer from 1 to ${MAX_KEY_VERSION})` })
      else if (typeof named === 'object' && named !== null && !Object.keys(named).some((name) => parseVersion(name) === wanted)) {
        problems.push({ path: 'keys.index.current', message: `is ${wanted}, which is not one of keys.index.versions (${Object.keys(named).join(', ') || 'none'})` })
      } else indexCurrent = wanted
    }

    const wipe = (): void => {
      for (const key of roots.values()) key.fill(0)
      for (const key of indexRoots.values()) key.fill(0)
    }
    if (problems.length > 0) {
      wipe()
      throw new KeyringError(problems)
    }
    const keyring = new Keyring(roots, current as number, indexRoots.size === 0 ? undefined : { versions: indexRoots, current: indexCurrent })
    wipe()
    return keyring
  }

  has(version: number): boolean {
    return this.#roots.has(version)
  }

  /** True when an equality-index root key was configured. */
  get hasIndexKey(): boolean {
    return this.#indexRoots.size > 0
  }

  /** Whether index key `version` is held. */
  hasIndexVersion(version: number): boolean {
    return this.#indexRoots.has(version)
  }

  /** The current equality-index root key (not a copy: do not modify), or undefined. */
  indexRootKey(): Buffer | undefined {
    return this.#indexRoots.get(this.indexCurrent)
  }

  /**
   * The equality-index key of an index domain under index root key `version`:
   * HKDF-SHA256(ikm = index root key, salt = "pgveil/index-key/v1", info =
   * utf8(domain), 32 bytes). Cached and shared: do not modify. Throws RangeError
   * for a version the keyring does not hold.
   */
  indexKey(version: number, domain: string): Buffer {
    let byVersion = this.#indexKeys.get(domain)
    const cached = byVersion?.get(version)
    if (cached !== undefined) return cached
    const root = this.#indexRoots.get(version)
    if (root === undefined) throw new RangeError(`index key version ${version} is not in the keyring (have ${this.indexVersions.join(', ') || 'none'})`)
    if (typeof domain !== 'string' || domain === '') throw new TypeError('index domain must be a non-empty name')
    const derived = Buffer.from(hkdfSync('sha256', root, INDEX_KEY_SALT, Buffer.from(domain, 'utf8'), INDEX_KEY_LENGTH))
    if (byVersion === undefined) this.#indexKeys.set(domain, (byVersion = new Map()))
    byVersion.set(version, derived)
    return derived
  }

  /**
   * The data key of `column` (qualified: "schema.table.column") under root key
   * `version`: HKDF-SHA256(ikm = root key, salt = "pgveil/column-key/v1",
   * info = utf8(column), 32 bytes). Cached; the returned Buffer is shared, do not
   * modify it. Throws RangeError for a version the keyring does not hold.
   */
  columnKey(version: number, column: string): Buffer {
    // Nested maps: no string built per value on the hot path.
    let byVersion = this.#columnKeys.get(column)
    const cached = byVersion?.get(version)
    if (cached !== undefined) return cached
    const root = this.#roots.get(version)
    if (root === undefined) throw new RangeError(`key version ${version} is not in the keyring (have ${this.versions.join(', ')})`)
    if (typeof column !== 'string' || column === '') throw new TypeError('column must be a non-empty qualified name (schema.table.column)')
    const derived = Buffer.from(hkdfSync('sha256', root, COLUMN_KEY_SALT, Buffer.from(column, 'utf8'), COLUMN_KEY_LENGTH))
    if (byVersion === undefined) this.#columnKeys.set(column, (byVersion = new Map()))
    byVersion.set(version, derived)
    return derived
  }

  /** A description without key material. */
  describe(): KeyringDescription {
    const out: KeyringDescription = { current: this.current, versions: [...this.versions], index: this.hasIndexKey }
    if (this.hasIndexKey) {
      out.indexCurrent = this.indexCurrent
      out.indexVersions = [...this.indexVersions]
    }
    return out
  }

  toJSON(): KeyringDescription {
    return this.describe()
  }

  toString(): string {
    const index = !this.hasIndexKey ? '' : this.indexVersions.length === 1 && this.indexCurrent === 1 ? ', index key' : `, index keys ${this.indexVersions.join(', ')} (current ${this.indexCurrent})`
    return `Keyring(current ${this.current}, versions ${this.versions.join(', ')}${index})`
  }

  [inspect.custom](): string {
    return this.toString()
  }
}
