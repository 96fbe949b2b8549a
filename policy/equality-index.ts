/**
 * The equality index of searchable columns (DESIGN decision 3): a keyed
 * HMAC-SHA256 of the column's canonical plaintext, stored in the envelope's index
 * slot (`substring(col from 13 for 32)`), so PostgreSQL can compare, join, group
 * and enforce UNIQUE on it without seeing the value.
 *
 * The HMAC key is per index domain and index key version: HKDF from the
 * `keys.index` root key of that version (keyring.indexKey). The input is the
 * canonical text form the type layer produces (`7` for an integer column written
 * as `'7'` or `7`, `1.50` stays `1.50` for numeric), after the column's
 * normalisation (`trim`, then `lowercase`); numeric values lose trailing fraction
 * zeros, since SQL's `1.5 = 1.50` is true. Normalisation changes only the index:
 * the stored value keeps what was written.
 *
 * Used by the proxy (writes and lookups) and meant for `pgveil migrate --reindex`,
 * which rewrites index slots under the current index key version.
 */
import { ENVELOPE_INDEX_LENGTH, openValue, sealValue, type EnvelopeIndex } from './envelope.js'
import { HmacSha256 } from './hmac-sha256.js'
import type { Keyring } from './keyring.js'
import type { IndexNormalization } from './policy.js'

/** What the index needs to know about a column (`ColumnPolicy` fits). */
export interface IndexedColumn {
  /** What the ciphertext is bound to (data key and associated data). */
  readonly binding: string
  /** The plaintext type: numeric values are indexed without trailing fraction zeros, as `1.5 = 1.50` in SQL. */
  readonly type?: string
  readonly search?: 'equality'
  readonly normalize?: readonly IndexNormalization[]
  /** What the index key is derived for; columns of one domain can be joined. */
  readonly indexDomain?: string
}

/** The text that is indexed: the canonical plaintext after the column's normalisation. */
export function indexInput(column: IndexedColumn, canonical: string): string {
  let text = column.type === 'numeric' ? numericIndexForm(canonical) : column.type === 'jsonb' ? jsonbIndexForm(canonical) : canonical
  const normalize = column.normalize
  if (normalize !== undefined) {
    if (normalize.includes('trim')) text = text.trim()
    // Locale-independent on purpose: the index must not depend on the host's locale.
    if (normalize.includes('lowercase')) text = text.toLowerCase()
  }
  return text
}

/** `1.50` → `1.5`, `2.00` → `2`, `-0.0` → `0`: numerically equal values index alike. */
function numericIndexForm(canonical: string): string {
  if (!canonical.includes('.') || !/^-?[0-9]+\.[0-9]+$/.test(canonical)) return canonical
  const trimmed = canonical.replace(/0+$/, '').replace(/\.$/, '')
  return trimmed === '-0' ? '0' : trimmed
}

/**
 * A jsonb document as PostgreSQL prints it, with each number in numericIndexForm:
 * jsonb equality compares numbers as numerics (`{"a": 1.0}` = `{"a": 1}`), and its
 * output keeps their scale. Strings are left as they are (their escapes included).
 */
function jsonbIndexForm(canonical: string): string {
  let out = ''
  let from = 0
  let i = 0
  while (i < canonical.length) {
    const c = canonical.charCodeAt(i)
    if (c === 0x22) {
      // A string: to its closing quote, stepping over escapes.
      for (i++; i < canonical.length && canonical.charCodeAt(i) !== 0x22; i++) if (canonical.charCodeAt(i) === 0x5c) i++
      i++
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1
      while (end < canonical.length && /[0-9.eE+-]/.test(canonical[end]!)) end++
      out += canonical.slice(from, i) + numericIndexForm(canonical.slice(i, end))
      from = i = end
    } else i++
  }
  return from === 0 ? canonical : out + canonical.slice(from)
}

function domainOf(column: IndexedColumn): string {
  return column.indexDomain ?? column.binding
}

/** The 32-byte index value of `canonical` under index key `version`. Throws RangeError for a version the keyring does not hold. */
export function indexMac(keyring: Keyring, version: number, column: IndexedColumn, canonical: string): Buffer {
  const mac = hmacOf(keyring.indexKey(version, domainOf(column))).digest(indexInput(column, canonical))
  if (mac.length !== ENVELOPE_INDEX_LENGTH) throw new RangeError(`index value is ${mac.length} bytes, expected ${ENVELOPE_INDEX_LENGTH}`)
  return mac
}

/**
 * The HMAC of each index key, its padded key blocks hashed once. Keyed by the key
 * Buffer, which the keyring keeps per index domain and version (so each is made
 * once), and dropped with the keyring.
 */
const hmacs = new WeakMap<Buffer, HmacSha256>()

function hmacOf(key: Buffer): HmacSha256 {
  let hmac = hmacs.get(key)
  if (hmac === undefined) hmacs.set(key, (hmac = new HmacSha256(key)))
  return hmac
}

/**
 * The index values a lookup of `canonical` must match: one per index key version
 * held, current first. While two versions exist (index key rotation), stored
 * values carry either until `pgveil migrate --reindex` has rewritten them.
 */
export function lookupMacs(keyring: Keyring, column: IndexedColumn, canonical: string): Buffer[] {
  const out = [indexMac(keyring, keyring.indexCurrent, column, canonical)]
  for (const version of keyring.indexVersions) if (version !== keyring.indexCurrent) out.push(indexMac(keyring, version, column, canonical))
  return out
}

/** The index slot a new envelope of `canonical` carries: made with the current index key version. */
export function envelopeIndexFor(keyring: Keyring, column: IndexedColumn, canonical: string): EnvelopeIndex {
  return { version: keyring.indexCurrent, mac: indexMac(keyring, keyring.indexCurrent, column, canonical) }
}

/**
 * Seals the canonical plaintext of a protected column: with an index slot when the
 * column is searchable, else without. Throws RangeError when the column is
 * searchable but the keyring has no index key (configuration validation prevents it).
 */
export function sealColumnValue(keyring: Keyring, column: IndexedColumn, canonical: string): Buffer {
  const plaintext = Buffer.from(canonical, 'utf8')
  if (column.search !== 'equality') return sealValue(keyring, column.binding, plaintext)
  if (!keyring.hasIndexKey) throw new RangeError(`column ${column.binding} is searchable but no index key is configured (keys.index)`)
  return sealValue(keyring, column.binding, plaintext, { index: envelopeIndexFor(keyring, column, canonical) })
}

/**
 * `pgveil migrate --reindex`: opens `stored` (any key version held) and seals the
 * same canonical plaintext under the current key version with an index value made
 * under the current index key version. Throws DecryptionError when it does not open.
 */
export function reindexEnvelope(keyring: Keyring, column: IndexedColumn, stored: Uint8Array): Buffer {
  const plaintext = openValue(keyring, column.binding, stored)
  try {
    return sealColumnValue(keyring, column, plaintext.toString('utf8'))
  } finally {
    plaintext.fill(0)
  }
}
