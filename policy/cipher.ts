/**
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), DESIGN decision 4.
 *
 * XChaCha20-Poly1305 is HChaCha20(key, nonce[0..16]) → subkey, then the IETF
 * ChaCha20-Poly1305 AEAD (RFC 8439) under that subkey with the 12-byte nonce
 * 00000000 || nonce[16..24]. HChaCha20 is one ChaCha block (cheap in JS, from
 * @noble/ciphers); the AEAD, which touches every byte, runs in node:crypto
 * (OpenSSL). The result is byte-for-byte @noble/ciphers' `xchacha20poly1305`,
 * which the tests check.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { hchacha } from '@noble/ciphers/chacha.js'
import { DecryptionError } from './errors.js'

export const XCHACHA_KEY_LENGTH = 32
export const XCHACHA_NONCE_LENGTH = 24
export const XCHACHA_TAG_LENGTH = 16

// Scratch space reused by every call: everything below runs synchronously, and
// createCipheriv copies key and iv before returning. Uint32 views over aligned
// copies because hchacha works on native-endian words (it normalizes on BE hosts).
const SIGMA = new Uint32Array(Uint8Array.from('expand 32-byte k', (c) => c.charCodeAt(0)).buffer)
const keyBytes = new Uint8Array(32)
const keyWords = new Uint32Array(keyBytes.buffer)
const noncePrefixBytes = new Uint8Array(16)
const noncePrefixWords = new Uint32Array(noncePrefixBytes.buffer)
const subkeyWords = new Uint32Array(8)
const subkey = new Uint8Array(subkeyWords.buffer)
const ietfNonce = new Uint8Array(12)
const EMPTY = Buffer.alloc(0)

function checkBytes(label: string, value: unknown, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${label} must be a Uint8Array`)
  if (length !== undefined && value.length !== length) throw new RangeError(`${label} must be ${length} bytes, got ${value.length}`)
}

/** Fills `subkey` and `ietfNonce` for (key, nonce); the caller wipes `subkey` after use. */
function deriveSubkey(key: Uint8Array, nonce: Uint8Array): void {
  checkBytes('key', key, XCHACHA_KEY_LENGTH)
  checkBytes('nonce', nonce, XCHACHA_NONCE_LENGTH)
  keyBytes.set(key)
  noncePrefixBytes.set(nonce.subarray(0, 16))
  hchacha(SIGMA, keyWords, noncePrefixWords, subkeyWords)
  keyBytes.fill(0)
  ietfNonce.set(nonce.subarray(16, 24), 4)
}

/**
 * Encrypts `plaintext` and returns `prefix || ciphertext || tag` in one allocation
 * (the envelope passes its header and nonce as `prefix`, saving a copy).
 */
export function xchachaSealPrefixed(prefix: Uint8Array, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  checkBytes('prefix', prefix)
  checkBytes('plaintext', plaintext)
  checkBytes('aad', aad)
  deriveSubkey(key, nonce)
  let ciphertext: Buffer
  let tag: Buffer
  try {
    const cipher = createCipheriv('chacha20-poly1305', subkey, ietfNonce, { authTagLength: XCHACHA_TAG_LENGTH })
    cipher.setAAD(aad, { plaintextLength: plaintext.length })
    ciphertext = cipher.update(plaintext)
    const rest = cipher.final()
    if (rest.length > 0) ciphertext = Buffer.concat([ciphertext, rest])
    tag = cipher.getAuthTag()
  } finally {
    subkey.fill(0)
  }
  const out = Buffer.allocUnsafe(prefix.length + ciphertext.length + XCHACHA_TAG_LENGTH)
  out.set(prefix, 0)
  out.set(ciphertext, prefix.length)
  out.set(tag, prefix.length + ciphertext.length)
  return out
}

/** XChaCha20-Poly1305 encryption: returns ciphertext || 16-byte tag. */
export function xchachaSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  return xchachaSealPrefixed(EMPTY, key, nonce, plaintext, aad)
}

/**
 * XChaCha20-Poly1305 decryption of ciphertext || tag. Throws DecryptionError when
 * the input is shorter than a tag or does not authenticate (wrong key, nonce,
 * aad, or any altered byte); no plaintext is returned unless the tag verifies.
 * Wrong argument types or key/nonce lengths are programming errors: TypeError /
 * RangeError.
 */
export function xchachaOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer {
  checkBytes('sealed', sealed)
  checkBytes('aad', aad)
  deriveSubkey(key, nonce)
  try {
    if (sealed.length < XCHACHA_TAG_LENGTH) throw new DecryptionError(`sealed value is ${sealed.length} bytes, shorter than the ${XCHACHA_TAG_LENGTH}-byte tag`)
    const ciphertextLength = sealed.length - XCHACHA_TAG_LENGTH
    const decipher = createDecipheriv('chacha20-poly1305', subkey, ietfNonce, { authTagLength: XCHACHA_TAG_LENGTH })
    decipher.setAuthTag(sealed.subarray(ciphertextLength))
    decipher.setAAD(aad, { plaintextLength: ciphertextLength })
    const plaintext = decipher.update(sealed.subarray(0, ciphertextLength))
    let rest: Buffer
    try {
      rest = decipher.final()
    } catch (error) {
      plaintext.fill(0)
      throw new DecryptionError('XChaCha20-Poly1305 tag did not verify (wrong key, column or associated data, or altered bytes)', { cause: error })
    }
    return rest.length > 0 ? Buffer.concat([plaintext, rest]) : plaintext
  } finally {
    subkey.fill(0)
  }
}
