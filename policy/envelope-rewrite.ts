/**
 * Rewriting stored envelopes for `pgveil migrate`: which ones a rewrite mode would
 * change, and the new envelope. Pure (no I/O), so the migration's row loop and the
 * unit tests share one definition.
 *
 * A mode is a pair: a test on the stored bytes (mirrored by an SQL predicate the
 * migration uses to find pending rows, see proxy/migrate.ts) and a transform:
 * `reencrypt` (seal under the keyring's current root key, keeping the index slot)
 * and `reindex` (also make the index slot of searchable columns under the current
 * index key; other columns are re-encrypted).
 */
import { envelopeIndex, envelopeKeyVersion, isEnvelope, openValue, sealValue, ENVELOPE_KEY_VERSION_OFFSET } from './envelope.js'
import { reindexEnvelope, type IndexedColumn } from './equality-index.js'
import type { Keyring } from './keyring.js'

export interface EnvelopeRewriteMode {
  readonly name: string
  /** What the progress line calls the work, e.g. "re-encrypt". */
  readonly verb: string
  /** True when `stored` (an envelope) is already what this mode would write. */
  isCurrent(keyring: Keyring, stored: Uint8Array): boolean
  /**
   * The rewritten envelope for a column bound to `binding` (ColumnPolicy.binding).
   * Throws DecryptionError when `stored` does not open: the caller leaves it as it is.
   */
  rewrite(keyring: Keyring, binding: string, stored: Uint8Array): Buffer
  /**
   * The 1-based byte range of the stored value that `isCurrent` looks at, and the
   * bytes it must equal, for a SQL `substring(col from F for N) <> $bytes` filter.
   */
  currentSlice(keyring: Keyring): { from: number; bytes: Buffer }
  /** The mode to use for one column, when it depends on the column (reindex: only searchable columns get index slots). */
  forColumn?(column: IndexedColumn): EnvelopeRewriteMode
}

/** The 4 big-endian bytes of a key version, as stored at ENVELOPE_KEY_VERSION_OFFSET. */
export function keyVersionBytes(version: number): Buffer {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32BE(version, 0)
  return bytes
}

/**
 * Opens `stored` with whatever key version sealed it and seals the same plaintext
 * under the keyring's current version, keeping the equality-index slot as it was
 * (the slot is keyed by the index key, which a root-key rotation does not change).
 */
export function reencryptEnvelope(keyring: Keyring, binding: string, stored: Uint8Array): Buffer {
  const plaintext = openValue(keyring, binding, stored)
  try {
    const index = envelopeIndex(stored)
    return sealValue(keyring, binding, plaintext, index === undefined ? {} : { index: { version: index.version, mac: Buffer.from(index.mac) } })
  } finally {
    plaintext.fill(0)
  }
}

export const REENCRYPT_MODE: EnvelopeRewriteMode = {
  name: 'reencrypt',
  verb: 're-encrypt',
  isCurrent: (keyring, stored) => isEnvelope(stored) && envelopeKeyVersion(stored) === keyring.current,
  rewrite: reencryptEnvelope,
  currentSlice: (keyring) => ({ from: ENVELOPE_KEY_VERSION_OFFSET + 1, bytes: keyVersionBytes(keyring.current) }),
}

/** The reindex mode of one searchable column: current key version and current index key version. */
function reindexModeFor(column: IndexedColumn): EnvelopeRewriteMode {
  return {
    name: 'reindex',
    verb: 're-index',
    isCurrent: (keyring, stored) => {
      if (!isEnvelope(stored) || envelopeKeyVersion(stored) !== keyring.current) return false
      return envelopeIndex(stored)?.version === keyring.indexCurrent
    },
    rewrite: (keyring, _binding, stored) => reindexEnvelope(keyring, column, stored),
    // Key version and index key version are adjacent (envelope offsets 4 and 8): one 8-byte slice.
    currentSlice: (keyring) => ({ from: ENVELOPE_KEY_VERSION_OFFSET + 1, bytes: Buffer.concat([keyVersionBytes(keyring.current), keyVersionBytes(keyring.indexCurrent)]) }),
  }
}

/**
 * `pgveil migrate --reindex`: searchable columns get their index values rewritten
 * under the current index key version (and the current key version), so an old
 * index key version can be removed; other columns are re-encrypted as usual.
 */
export const REINDEX_MODE: EnvelopeRewriteMode = {
  ...REENCRYPT_MODE,
  forColumn: (column) => (column.search === 'equality' ? reindexModeFor(column) : REENCRYPT_MODE),
}

/** Rewrite modes by name; `pgveil migrate` runs `reencrypt`, `pgveil migrate --reindex` runs `reindex`. */
export const REWRITE_MODES: Readonly<Record<string, EnvelopeRewriteMode>> = { reencrypt: REENCRYPT_MODE, reindex: REINDEX_MODE }

/** Seals the canonical text form of a plaintext value for a column bound to `binding`. */
export function sealCanonical(keyring: Keyring, binding: string, canonical: string): Buffer {
  const bytes = Buffer.from(canonical, 'utf8')
  try {
    return sealValue(keyring, binding, bytes)
  } finally {
    bytes.fill(0)
  }
}
