/**
 * The stored form of a protected value (DESIGN decision 3): a `bytea` holding a
 * versioned envelope. Format version 1, byte by byte (offsets 0-based; SQL's
 * substring() counts from 1):
 *
 *   offset  length  field
 *   0       2       magic 0x70 0x76 ("pv")
 *   2       1       format version, 0x01
 *   3       1       flags: bit 0 = the envelope carries an equality-index slot;
 *                   bits 1-7 are reserved and must be 0
 *   4       4       key version (uint32 big-endian): the root key the column data
 *                   key was derived from
 *   -- only when flags bit 0 is set:
 *   8       4       index key version (uint32 big-endian)
 *   12      32      index slot: HMAC of the canonical plaintext under the index
 *                   key (computed by the caller). Always at offset 12, so an
 *                   expression index on `substring(col from 13 for 32)` serves
 *                   equality lookups, joins and UNIQUE.
 *   -- then, with H = 8 without the slot, H = 44 with it:
 *   H       24      XChaCha20-Poly1305 nonce (random)
 *   H+24    n       ciphertext of the n plaintext bytes
 *   H+24+n  16      Poly1305 tag
 *
 * The header is bytes [0, H). The associated data is header || utf8(qualified
 * column name "schema.table.column"), so a value copied to another column, or
 * with an edited key version, flag, index key version or index slot, does not
 * open. The header's length is fixed by its flags, so header and name cannot be
 * re-split differently. The plaintext is the canonical text form of the value as
 * UTF-8 bytes, produced by the type layer; here it is opaque.
 *
 * Overhead: 48 bytes (84 with the index slot).
 */
import { randomFillSync } from 'node:crypto'
import { xchachaOpenChecked, xchachaSealPrefixed, XCHACHA_NONCE_LENGTH, XCHACHA_TAG_LENGTH } from './cipher.js'
import { DecryptionError } from './errors.js'
import { MAX_KEY_VERSION, type Keyring } from './keyring.js'

export const ENVELOPE_MAGIC = Buffer.from([0x70, 0x76])
export const ENVELOPE_FORMAT_VERSION = 1
/** Flags bit 0: the envelope carries an index key version and an index slot. */
export const ENVELOPE_FLAG_INDEX = 0x01
export const ENVELOPE_KEY_VERSION_OFFSET = 4
export const ENVELOPE_INDEX_VERSION_OFFSET = 8
/** 0-based offset of the 32-byte equality-index slot. */
export const ENVELOPE_INDEX_OFFSET = 12
export const ENVELOPE_INDEX_LENGTH = 32
/** 1-based position of the slot for SQL: `substring(col from 13 for 32)`. */
export const ENVELOPE_INDEX_SQL_FROM = ENVELOPE_INDEX_OFFSET + 1
/** SQL for the index slot of the envelope in `column` (a column reference as written), the expression the equality index is built on. */
export function indexSliceSql(column: string): string {
  return `substring(${column} from ${ENVELOPE_INDEX_SQL_FROM} for ${ENVELOPE_INDEX_LENGTH})`
}
const HEADER_LENGTH = 8
const INDEXED_HEADER_LENGTH = ENVELOPE_INDEX_OFFSET + ENVELOPE_INDEX_LENGTH
/** Smallest envelope (empty plaintext, no index slot). */
export const ENVELOPE_MIN_LENGTH = HEADER_LENGTH + XCHACHA_NONCE_LENGTH + XCHACHA_TAG_LENGTH
/** Smallest envelope with an index slot. */
export const ENVELOPE_INDEXED_MIN_LENGTH = INDEXED_HEADER_LENGTH + XCHACHA_NONCE_LENGTH + XCHACHA_TAG_LENGTH

/** The equality-index slot of an envelope: the HMAC itself is made by the caller. */
export interface EnvelopeIndex {
  /** Version of the index key that made `mac` (uint32, 1 and up). */
  version: number
  /** 32-byte HMAC of the canonical plaintext. */
  mac: Uint8Array
}

export interface SealOptions {
  /** Write an equality-index slot. */
  index?: EnvelopeIndex
  /** 24-byte nonce; tests only. By default a fresh random nonce. */
  nonce?: Uint8Array
}

// Nonces are drawn from a pool refilled 1,024 at a time: one randomFillSync call
// per value would cost more than the rest of sealing a short value. Every pool byte
// is handed out once; nonces are public, so holding them in memory is harmless.
const NONCE_POOL_SIZE = XCHACHA_NONCE_LENGTH * 1024
const noncePool = Buffer.allocUnsafeSlow(NONCE_POOL_SIZE)
let noncePoolOffset = NONCE_POOL_SIZE

function writeRandomNonce(target: Buffer, offset: number): void {
  if (noncePoolOffset === NONCE_POOL_SIZE) {
    randomFillSync(noncePool)
    noncePoolOffset = 0
  }
  noncePool.copy(target, offset, noncePoolOffset, noncePoolOffset + XCHACHA_NONCE_LENGTH)
  noncePoolOffset += XCHACHA_NONCE_LENGTH
}

function readUint32BE(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0
}

function headerLength(flags: number): number {
  return (flags & ENVELOPE_FLAG_INDEX) !== 0 ? INDEXED_HEADER_LENGTH : HEADER_LENGTH
}

/** header || utf8(column), the AEAD associated data. */
function associatedData(envelope: Uint8Array, header: number, column: string): Buffer {
  const aad = Buffer.allocUnsafe(header + Buffer.byteLength(column, 'utf8'))
  aad.set(envelope.subarray(0, header), 0)
  aad.write(column, header, 'utf8')
  return aad
}

/**
 * True when `buf` has the magic, format version 1, no reserved flag bits, and at
 * least the length of an empty-plaintext envelope with those flags. Says nothing
 * about whether it opens.
 */
export function isEnvelope(buf: Uint8Array): boolean {
  return buf instanceof Uint8Array && isEnvelopeAt(buf, 0, buf.length)
}

function isEnvelopeAt(bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start < ENVELOPE_MIN_LENGTH) return false
  if (bytes[start] !== ENVELOPE_MAGIC[0] || bytes[start + 1] !== ENVELOPE_MAGIC[1] || bytes[start + 2] !== ENVELOPE_FORMAT_VERSION) return false
  const flags = bytes[start + 3]!
  if ((flags & ~ENVELOPE_FLAG_INDEX) !== 0) return false
  return end - start >= headerLength(flags) + XCHACHA_NONCE_LENGTH + XCHACHA_TAG_LENGTH
}

/** The root key version an envelope was sealed under; DecryptionError if it is not an envelope. */
export function envelopeKeyVersion(buf: Uint8Array): number {
  if (!isEnvelope(buf)) throw new DecryptionError('not a pgveil envelope (magic, format version, flags or length)')
  return readUint32BE(buf, ENVELOPE_KEY_VERSION_OFFSET)
}

/**
 * The index slot of an envelope (`mac` is a view into `buf`), or undefined when
 * it has none. Unauthenticated until the envelope is opened.
 */
export function envelopeIndex(buf: Uint8Array): EnvelopeIndex | undefined {
  if (!isEnvelope(buf)) throw new DecryptionError('not a pgveil envelope (magic, format version, flags or length)')
  if ((buf[3]! & ENVELOPE_FLAG_INDEX) === 0) return undefined
  return { version: readUint32BE(buf, ENVELOPE_INDEX_VERSION_OFFSET), mac: buf.subarray(ENVELOPE_INDEX_OFFSET, INDEXED_HEADER_LENGTH) }
}

/**
 * Seals `plaintext` for `column` ("schema.table.column") under the keyring's
 * current key version. Throws RangeError for a malformed index slot or nonce.
 */
export function sealValue(keyring: Keyring, column: string, plaintext: Uint8Array, options: SealOptions = {}): Buffer {
  const { index, nonce } = options
  const header = index === undefined ? HEADER_LENGTH : INDEXED_HEADER_LENGTH
  const prefix = Buffer.allocUnsafe(header + XCHACHA_NONCE_LENGTH)
  prefix[0] = ENVELOPE_MAGIC[0]!
  prefix[1] = ENVELOPE_MAGIC[1]!
  prefix[2] = ENVELOPE_FORMAT_VERSION
  prefix[3] = index === undefined ? 0 : ENVELOPE_FLAG_INDEX
  prefix.writeUInt32BE(keyring.current, ENVELOPE_KEY_VERSION_OFFSET)
  if (index !== undefined) {
    if (!Number.isInteger(index.version) || index.version < 1 || index.version > MAX_KEY_VERSION) throw new RangeError(`index key version ${index.version} is not an integer from 1 to ${MAX_KEY_VERSION}`)
    if (!(index.mac instanceof Uint8Array) || index.mac.length !== ENVELOPE_INDEX_LENGTH) throw new RangeError(`index mac must be ${ENVELOPE_INDEX_LENGTH} bytes`)
    prefix.writeUInt32BE(index.version, ENVELOPE_INDEX_VERSION_OFFSET)
    prefix.set(index.mac, ENVELOPE_INDEX_OFFSET)
  }
  if (nonce === undefined) writeRandomNonce(prefix, header)
  else {
    if (!(nonce instanceof Uint8Array) || nonce.length !== XCHACHA_NONCE_LENGTH) throw new RangeError(`nonce must be ${XCHACHA_NONCE_LENGTH} bytes`)
    prefix.set(nonce, header)
  }
  const key = keyring.columnKey(keyring.current, column)
  return xchachaSealPrefixed(prefix, key, prefix.subarray(header), plaintext, associatedData(prefix, header, column))
}

/** Where an opener finds its keyring: read again whenever a value needs a key version it has not used yet, so a keyring swapped in place (key rotation) serves results already being read. */
export interface KeyringSource {
  readonly keyring: Keyring
}

/**
 * Opens envelopes of one column (a result column, a COPY field): the associated
 * data buffers and the column key are kept between values, so a value costs one
 * libsodium call. openInto and openHexInto write the plaintext into the caller's
 * buffer (a result row being built), so a value allocates nothing. Every failure
 * (not an envelope, truncated, unknown key version, another column, any altered
 * byte) throws the same DecryptionError; only its `detail` differs.
 */
export class EnvelopeOpener {
  readonly column: string
  readonly #keys: KeyringSource
  readonly #name: Buffer
  /** header || name for each header length, the header part rewritten per value. */
  #aad: Buffer | undefined
  #indexedAad: Buffer | undefined
  #keyVersion = 0
  #key: Buffer | undefined
  readonly #nonce = Buffer.allocUnsafe(XCHACHA_NONCE_LENGTH)
  /** Where the sealed part of a hex-encoded envelope is decoded, and its views by length (no view made per value). */
  #sealed = Buffer.allocUnsafe(256)
  #sealedViews: Buffer[] = []

  constructor(keys: KeyringSource, column: string) {
    this.#keys = keys
    this.column = column
    this.#name = Buffer.from(column, 'utf8')
  }

  /** The plaintext of `envelope` (a new Buffer). */
  open(envelope: Uint8Array): Buffer {
    const header = this.#checkEnvelope(envelope, 0, envelope.length)
    const plaintext = Buffer.allocUnsafe(envelope.length - header - XCHACHA_NONCE_LENGTH - XCHACHA_TAG_LENGTH)
    this.#openAt(envelope, 0, envelope.length, header, plaintext)
    return plaintext
  }

  /** Opens the envelope at `bytes[start, end)` into `out` at `at`; returns the plaintext's length (at most end - start - 48). */
  openInto(bytes: Uint8Array, start: number, end: number, out: Buffer, at: number): number {
    const header = this.#checkEnvelope(bytes, start, end)
    const length = end - start - header - XCHACHA_NONCE_LENGTH - XCHACHA_TAG_LENGTH
    this.#openAt(bytes, start, end, header, out.subarray(at, at + length))
    return length
  }

  /**
   * Opens the envelope given as bytea hex text (`\x` and two hex digits a byte) at
   * `text[start, end)` into `out` at `at`, decoding it into scratch space: no
   * allocation per value. Returns the plaintext's length (less than end - start).
   */
  openHexInto(text: Uint8Array, start: number, end: number, out: Buffer, at: number): number {
    const column = this.column
    const size = (end - start - 2) / 2
    if (text[start] !== 0x5c || text[start + 1] !== 0x78 || !Number.isInteger(size)) throw new DecryptionError(`column ${column}: malformed bytea hex text`)
    const digits = start + 2
    const flags = hexByte(text, digits + 6)
    if (size < ENVELOPE_MIN_LENGTH || hexByte(text, digits) !== ENVELOPE_MAGIC[0] || hexByte(text, digits + 2) !== ENVELOPE_MAGIC[1] || hexByte(text, digits + 4) !== ENVELOPE_FORMAT_VERSION || (flags & ~ENVELOPE_FLAG_INDEX) !== 0) {
      throw new DecryptionError(`column ${column}: not a pgveil envelope (magic, format version, flags or length)`)
    }
    const header = headerLength(flags)
    const sealedLength = size - header - XCHACHA_NONCE_LENGTH
    if (sealedLength < XCHACHA_TAG_LENGTH) throw new DecryptionError(`column ${column}: not a pgveil envelope (magic, format version, flags or length)`)
    const aad = this.#associatedData(header)
    let ok = decodeHexInto(text, digits, header, aad, 0)
    ok = decodeHexInto(text, digits + 2 * header, XCHACHA_NONCE_LENGTH, this.#nonce, 0) && ok
    if (this.#sealed.length < sealedLength) {
      this.#sealed = Buffer.allocUnsafe(Math.max(sealedLength, this.#sealed.length * 2))
      this.#sealedViews = []
    }
    ok = decodeHexInto(text, digits + 2 * (header + XCHACHA_NONCE_LENGTH), sealedLength, this.#sealed, 0) && ok
    if (!ok) throw new DecryptionError(`column ${column}: malformed bytea hex text`)
    const sealed = (this.#sealedViews[sealedLength] ??= this.#sealed.subarray(0, sealedLength))
    const length = sealedLength - XCHACHA_TAG_LENGTH
    this.#decrypt(readUint32BE(aad, ENVELOPE_KEY_VERSION_OFFSET), aad, sealed, out.subarray(at, at + length))
    return length
  }

  /** The header's length; DecryptionError when bytes[start, end) is not an envelope. */
  #checkEnvelope(bytes: Uint8Array, start: number, end: number): number {
    if (!isEnvelopeAt(bytes, start, end)) throw new DecryptionError(`column ${this.column}: not a pgveil envelope (magic, format version, flags or length)`)
    return headerLength(bytes[start + 3]!)
  }

  #openAt(bytes: Uint8Array, start: number, end: number, header: number, plaintext: Buffer): void {
    const aad = this.#associatedData(header)
    for (let i = 0; i < header; i++) aad[i] = bytes[start + i]!
    const nonce = this.#nonce
    const nonceStart = start + header
    for (let i = 0; i < XCHACHA_NONCE_LENGTH; i++) nonce[i] = bytes[nonceStart + i]!
    this.#decrypt(readUint32BE(bytes, start + ENVELOPE_KEY_VERSION_OFFSET), aad, bytes.subarray(nonceStart + XCHACHA_NONCE_LENGTH, end), plaintext)
  }

  #decrypt(version: number, aad: Buffer, sealed: Uint8Array, plaintext: Buffer): void {
    const column = this.column
    if (version !== this.#keyVersion || this.#key === undefined) {
      const keyring = this.#keys.keyring
      if (!keyring.has(version)) throw new DecryptionError(`column ${column}: sealed under key version ${version}, which the keyring does not hold (have ${keyring.versions.join(', ')})`)
      this.#key = keyring.columnKey(version, column)
      this.#keyVersion = version
    }
    try {
      xchachaOpenChecked(plaintext, this.#key, this.#nonce, sealed, aad)
    } catch (error) {
      if (error instanceof DecryptionError) throw new DecryptionError(`column ${column}, key version ${version}: ${error.detail}`, { cause: error.cause })
      throw error
    }
  }

  #associatedData(header: number): Buffer {
    if (header === HEADER_LENGTH) return (this.#aad ??= this.#withName(header))
    return (this.#indexedAad ??= this.#withName(header))
  }

  #withName(header: number): Buffer {
    const aad = Buffer.alloc(header + this.#name.length)
    this.#name.copy(aad, header)
    return aad
  }
}

/** Hex digit → value; -256 for anything else, so a bad pair turns the whole byte negative. */
const HEX_VALUE = Int16Array.from({ length: 256 }, (_, byte) => {
  const digit = String.fromCharCode(byte)
  return /^[0-9a-fA-F]$/.test(digit) ? parseInt(digit, 16) : -256
})

/** The byte written as two hex digits at text[at] (negative when they are not hex digits). */
function hexByte(text: Uint8Array, at: number): number {
  return (HEX_VALUE[text[at]!]! << 4) | HEX_VALUE[text[at + 1]!]!
}

/** Decodes `count` bytes written as hex digits from text[from] into target[at]; false when a digit is not hex. */
function decodeHexInto(text: Uint8Array, from: number, count: number, target: Uint8Array, at: number): boolean {
  let bad = 0
  for (let i = 0, j = from; i < count; i++, j += 2) {
    const byte = (HEX_VALUE[text[j]!]! << 4) | HEX_VALUE[text[j + 1]!]!
    bad |= byte
    target[at + i] = byte
  }
  return bad >= 0
}

/** Opens one envelope sealed for `column` (see EnvelopeOpener, which serves many). */
export function openValue(keyring: Keyring, column: string, envelope: Uint8Array): Buffer {
  return new EnvelopeOpener({ keyring }, column).open(envelope)
}
