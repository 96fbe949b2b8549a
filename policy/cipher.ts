/**
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), DESIGN decision 4, computed by
 * libsodium (sodium-native, prebuilt binaries inside the npm package: nothing is
 * downloaded or compiled at install).
 *
 * Why libsodium and not node:crypto: OpenSSL has no XChaCha20, so node:crypto
 * needs HChaCha20 in JavaScript plus a Cipher object per value (createDecipheriv,
 * setAAD, update, setAuthTag, final). For the short values of a database column that
 * set-up is nearly all the cost: 5.3 µs per open of a 22-byte value, against 0.7 µs
 * for libsodium's one call (bench/README.md). The bytes are the same either way;
 * the tests check them against published vectors and @noble/ciphers'
 * `xchacha20poly1305`.
 */
import sodium from 'sodium-native'
import { DecryptionError } from './errors.js'

export const XCHACHA_KEY_LENGTH = 32
export const XCHACHA_NONCE_LENGTH = 24
export const XCHACHA_TAG_LENGTH = 16

const EMPTY = Buffer.alloc(0)

function checkBytes(label: string, value: unknown, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${label} must be a Uint8Array`)
  if (length !== undefined && value.length !== length) throw new RangeError(`${label} must be ${length} bytes, got ${value.length}`)
}

/**
 * Encrypts `plaintext` and returns `prefix || ciphertext || tag` in one allocation
 * (the envelope passes its header and nonce as `prefix`, saving a copy).
 */
export function xchachaSealPrefixed(prefix: Uint8Array, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  checkBytes('prefix', prefix)
  checkBytes('key', key, XCHACHA_KEY_LENGTH)
  checkBytes('nonce', nonce, XCHACHA_NONCE_LENGTH)
  checkBytes('plaintext', plaintext)
  checkBytes('aad', aad)
  const out = Buffer.allocUnsafe(prefix.length + plaintext.length + XCHACHA_TAG_LENGTH)
  out.set(prefix, 0)
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(prefix.length), plaintext, aad, null, nonce, key)
  return out
}

/** XChaCha20-Poly1305 encryption: returns ciphertext || 16-byte tag. */
export function xchachaSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  return xchachaSealPrefixed(EMPTY, key, nonce, plaintext, aad)
}

/**
 * Decrypts ciphertext || tag into `out` (exactly `sealed.length - 16` bytes) with
 * arguments the caller has already checked: the envelope's hot path. Throws
 * DecryptionError when the tag does not verify; `out` is then left unwritten.
 */
export function xchachaOpenChecked(out: Uint8Array, key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): void {
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, sealed, aad, nonce, key)
  } catch (error) {
    throw new DecryptionError('XChaCha20-Poly1305 tag did not verify (wrong key, column or associated data, or altered bytes)', { cause: error })
  }
}

/**
 * XChaCha20-Poly1305 decryption of ciphertext || tag. Throws DecryptionError when
 * the input is shorter than a tag or does not authenticate (wrong key, nonce,
 * aad, or any altered byte); no plaintext is returned unless the tag verifies.
 * Wrong argument types or key/nonce lengths are programming errors: TypeError /
 * RangeError.
 */
export function xchachaOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer {
  checkBytes('key', key, XCHACHA_KEY_LENGTH)
  checkBytes('nonce', nonce, XCHACHA_NONCE_LENGTH)
  checkBytes('sealed', sealed)
  checkBytes('aad', aad)
  if (sealed.length < XCHACHA_TAG_LENGTH) throw new DecryptionError(`sealed value is ${sealed.length} bytes, shorter than the ${XCHACHA_TAG_LENGTH}-byte tag`)
  const out = Buffer.allocUnsafe(sealed.length - XCHACHA_TAG_LENGTH)
  xchachaOpenChecked(out, key, nonce, sealed, aad)
  return out
}
