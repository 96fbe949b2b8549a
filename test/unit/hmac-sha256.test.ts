import { createHmac, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { HmacSha256 } from '../../policy/hmac-sha256.js'

/** RFC 4231 test cases 1, 2 and 6 (the last with a key longer than a block). */
const RFC4231 = [
  { key: Buffer.alloc(20, 0x0b), data: Buffer.from('Hi There'), mac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7' },
  { key: Buffer.from('Jefe'), data: Buffer.from('what do ya want for nothing?'), mac: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' },
  { key: Buffer.alloc(131, 0xaa), data: Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First'), mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54' },
]

const reference = (key: Uint8Array, message: Uint8Array | string): string => createHmac('sha256', key).update(message).digest('hex')

describe('HmacSha256 (libsodium SHA-256, padded key blocks hashed once)', () => {
  it('matches the RFC 4231 vectors', () => {
    for (const vector of RFC4231) expect(new HmacSha256(vector.key).digest(vector.data).toString('hex')).toBe(vector.mac)
  })

  it('matches node:crypto createHmac for random keys of every length around the block size and random messages', () => {
    for (let keyLength = 0; keyLength <= 140; keyLength++) {
      const key = randomBytes(keyLength)
      const hmac = new HmacSha256(key)
      for (const messageLength of [0, 1, 31, 55, 56, 63, 64, 65, 119, 120, 128, 1000]) {
        const message = randomBytes(messageLength)
        expect(hmac.digest(message).toString('hex')).toBe(reference(key, message))
      }
    }
  })

  it('matches createHmac for arbitrary keys and UTF-8 strings (fast-check), the same key reused across messages', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.array(fc.string({ unit: 'grapheme', maxLength: 300 }), { minLength: 1, maxLength: 5 }), (key, messages) => {
        const hmac = new HmacSha256(key)
        for (const message of messages) expect(hmac.digest(message).toString('hex')).toBe(reference(key, Buffer.from(message, 'utf8')))
      }),
      { numRuns: 500 },
    )
  })

  it('handles strings longer than its scratch buffer, then short ones again', () => {
    const key = randomBytes(32)
    const hmac = new HmacSha256(key)
    for (const message of ['é'.repeat(20_000), 'x'.repeat(5_000), 'short', '€'.repeat(6_000), '']) {
      expect(hmac.digest(message).toString('hex')).toBe(reference(key, Buffer.from(message, 'utf8')))
    }
  })

  it('keeps keys apart and returns a fresh buffer per digest', () => {
    const a = new HmacSha256(Buffer.alloc(32, 1))
    const b = new HmacSha256(Buffer.alloc(32, 2))
    const first = a.digest('7')
    expect(b.digest('7').equals(first)).toBe(false)
    expect(a.digest('7').equals(first)).toBe(true)
    expect(a.digest('7')).not.toBe(first)
    expect(first.toString('hex')).toBe(reference(Buffer.alloc(32, 1), '7'))
  })

  it('refuses keys and messages that are not bytes or strings', () => {
    expect(() => new HmacSha256('key' as unknown as Uint8Array)).toThrow(TypeError)
    expect(() => new HmacSha256(Buffer.alloc(32)).digest(7 as unknown as string)).toThrow(/HMAC message must be a Uint8Array or a string/)
  })
})
