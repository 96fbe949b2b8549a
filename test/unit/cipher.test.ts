import { readFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { xchachaOpen, xchachaSeal, xchachaSealPrefixed } from '../../policy/cipher.js'
import { DecryptionError } from '../../policy/errors.js'
import type { AeadVector } from '../vectors/generate.js'
import { thrown } from './thrown.js'

const vectors = JSON.parse(readFileSync(new URL('../vectors/xchacha20poly1305.json', import.meta.url), 'utf8')) as { aead: AeadVector[] }

const hex = (text: string): Buffer => Buffer.from(text, 'hex')

function plaintextOf(v: AeadVector): Buffer {
  if (v.plaintext !== undefined) return hex(v.plaintext)
  const p = v.plaintextPattern!
  return Buffer.from(Uint8Array.from({ length: p.length }, (_, i) => (i * p.multiplier + p.offset) & 0xff))
}

const expectDecryptionError = (fn: () => unknown): DecryptionError => thrown(fn, DecryptionError)

describe('XChaCha20-Poly1305 vectors', () => {
  it('has the published draft vector and the generated ones', () => {
    expect(vectors.aead.map((v) => v.name)).toContain('draft-irtf-cfrg-xchacha A.3.1')
    expect(vectors.aead.length).toBeGreaterThanOrEqual(7)
  })

  for (const v of vectors.aead) {
    it(`seals and opens: ${v.name}`, () => {
      const plaintext = plaintextOf(v)
      const sealed = xchachaSeal(hex(v.key), hex(v.nonce), plaintext, hex(v.aad))
      expect(sealed.length).toBe(plaintext.length + 16)
      const ciphertext = sealed.subarray(0, plaintext.length)
      if (v.ciphertext !== undefined) expect(ciphertext.toString('hex')).toBe(v.ciphertext)
      else expect(createHash('sha256').update(ciphertext).digest('hex')).toBe(v.ciphertextSha256)
      expect(sealed.subarray(plaintext.length).toString('hex')).toBe(v.tag)
      expect(xchachaOpen(hex(v.key), hex(v.nonce), sealed, hex(v.aad)).equals(plaintext)).toBe(true)
    })
  }

  it('the A.3.1 ciphertext is the published one (not only what the generator wrote)', () => {
    const v = vectors.aead.find((x) => x.name === 'draft-irtf-cfrg-xchacha A.3.1')!
    expect(v.key).toBe('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f')
    expect(v.ciphertext?.slice(0, 32)).toBe('bd6d179d3e83d43b9576579493c0e939')
    expect(v.tag).toBe('c0875924c1c7987947deafd8780acf49')
  })
})

describe('cross-check against @noble/ciphers xchacha20poly1305', () => {
  const inputs = fc.record({
    key: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    nonce: fc.uint8Array({ minLength: 24, maxLength: 24 }),
    plaintext: fc.uint8Array({ maxLength: 2048 }),
    aad: fc.uint8Array({ maxLength: 96 }),
  })

  it('our seal == noble encrypt, and noble decrypts ours', () => {
    fc.assert(
      fc.property(inputs, ({ key, nonce, plaintext, aad }) => {
        const ours = xchachaSeal(key, nonce, plaintext, aad)
        const theirs = xchacha20poly1305(key, nonce, aad).encrypt(plaintext)
        expect(ours.toString('hex')).toBe(Buffer.from(theirs).toString('hex'))
        expect(Buffer.from(xchacha20poly1305(key, nonce, aad).decrypt(ours)).equals(Buffer.from(plaintext))).toBe(true)
      }),
      { numRuns: 300 },
    )
  })

  it('we open what noble seals', () => {
    fc.assert(
      fc.property(inputs, ({ key, nonce, plaintext, aad }) => {
        const theirs = xchacha20poly1305(key, nonce, aad).encrypt(plaintext)
        expect(xchachaOpen(key, nonce, theirs, aad).equals(Buffer.from(plaintext))).toBe(true)
      }),
      { numRuns: 300 },
    )
  })

  it('accepts unaligned views and leaves its inputs untouched', () => {
    const backing = randomBytes(32 + 24 + 40 + 10 + 3)
    const key = backing.subarray(1, 33)
    const nonce = backing.subarray(33, 57)
    const plaintext = backing.subarray(57, 97)
    const aad = backing.subarray(97, 107)
    const before = Buffer.from(backing)
    const sealed = xchachaSeal(key, nonce, plaintext, aad)
    expect(backing.equals(before)).toBe(true)
    expect(Buffer.from(sealed).equals(Buffer.from(xchacha20poly1305(Uint8Array.from(key), Uint8Array.from(nonce), Uint8Array.from(aad)).encrypt(Uint8Array.from(plaintext))))).toBe(true)
    expect(xchachaOpen(key, nonce, sealed, aad).equals(plaintext)).toBe(true)
    expect(backing.equals(before)).toBe(true)
  })

  it('xchachaSealPrefixed is prefix || xchachaSeal', () => {
    const key = randomBytes(32)
    const nonce = randomBytes(24)
    const prefix = Buffer.from('header+nonce')
    const sealed = xchachaSealPrefixed(prefix, key, nonce, Buffer.from('value'), Buffer.from('aad'))
    expect(sealed.subarray(0, prefix.length).equals(prefix)).toBe(true)
    expect(sealed.subarray(prefix.length).equals(xchachaSeal(key, nonce, Buffer.from('value'), Buffer.from('aad')))).toBe(true)
  })
})

describe('authentication', () => {
  const key = randomBytes(32)
  const nonce = randomBytes(24)
  const aad = Buffer.from('public.users.email')
  const plaintext = Buffer.from('hello')
  const sealed = xchachaSeal(key, nonce, plaintext, aad)

  it('fails when any single bit of a sealed value is flipped', () => {
    expect(sealed.length).toBe(21)
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const tampered = Buffer.from(sealed)
      tampered[bit >> 3] = tampered[bit >> 3]! ^ (1 << (bit & 7))
      expectDecryptionError(() => xchachaOpen(key, nonce, tampered, aad))
    }
  })

  it('fails with the wrong key, nonce or aad', () => {
    const otherKey = Buffer.from(key)
    otherKey[31] = otherKey[31]! ^ 0x80
    const otherNonce = Buffer.from(nonce)
    otherNonce[0] = otherNonce[0]! ^ 0x01 // the HChaCha20 part
    const otherNonceTail = Buffer.from(nonce)
    otherNonceTail[23] = otherNonceTail[23]! ^ 0x01 // the ChaCha20 part
    expectDecryptionError(() => xchachaOpen(otherKey, nonce, sealed, aad))
    expectDecryptionError(() => xchachaOpen(key, otherNonce, sealed, aad))
    expectDecryptionError(() => xchachaOpen(key, otherNonceTail, sealed, aad))
    expectDecryptionError(() => xchachaOpen(key, nonce, sealed, Buffer.from('public.users.ssn')))
    expectDecryptionError(() => xchachaOpen(key, nonce, sealed, Buffer.alloc(0)))
    expect(xchachaOpen(key, nonce, sealed, aad).toString()).toBe('hello')
  })

  it('fails on every truncation, including shorter than a tag', () => {
    for (let length = 0; length < sealed.length; length++) expectDecryptionError(() => xchachaOpen(key, nonce, sealed.subarray(0, length), aad))
    expectDecryptionError(() => xchachaOpen(key, nonce, Buffer.concat([sealed, Buffer.of(0)]), aad))
  })

  it('gives one public message whatever failed', () => {
    const short = expectDecryptionError(() => xchachaOpen(key, nonce, Buffer.alloc(3), aad))
    const forged = expectDecryptionError(() => xchachaOpen(key, nonce, Buffer.alloc(40), aad))
    expect(short.message).toBe(forged.message)
    expect(short.code).toBe('PGVEIL_DECRYPTION_FAILED')
    expect(forged.code).toBe('PGVEIL_DECRYPTION_FAILED')
    expect(short.sqlState).toBe('XX001')
    expect(short.detail).not.toBe(forged.detail)
  })
})

describe('argument validation', () => {
  const ok = { key: new Uint8Array(32), nonce: new Uint8Array(24), data: new Uint8Array(1), aad: new Uint8Array(0) }

  it('refuses keys and nonces of the wrong length with RangeError', () => {
    expect(() => xchachaSeal(new Uint8Array(31), ok.nonce, ok.data, ok.aad)).toThrow(RangeError)
    expect(() => xchachaSeal(new Uint8Array(33), ok.nonce, ok.data, ok.aad)).toThrow(RangeError)
    expect(() => xchachaSeal(ok.key, new Uint8Array(12), ok.data, ok.aad)).toThrow(RangeError)
    expect(() => xchachaOpen(ok.key, new Uint8Array(25), new Uint8Array(16), ok.aad)).toThrow(/nonce must be 24 bytes/)
  })

  it('refuses non-bytes with TypeError', () => {
    expect(() => xchachaSeal('k'.repeat(32) as unknown as Uint8Array, ok.nonce, ok.data, ok.aad)).toThrow(TypeError)
    expect(() => xchachaSeal(ok.key, ok.nonce, 'text' as unknown as Uint8Array, ok.aad)).toThrow(TypeError)
    expect(() => xchachaOpen(ok.key, ok.nonce, new Uint8Array(16), null as unknown as Uint8Array)).toThrow(TypeError)
  })
})
