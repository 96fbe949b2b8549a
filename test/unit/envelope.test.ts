import { hkdfSync, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  ENVELOPE_INDEX_LENGTH,
  ENVELOPE_INDEX_OFFSET,
  ENVELOPE_INDEX_SQL_FROM,
  ENVELOPE_INDEXED_MIN_LENGTH,
  ENVELOPE_MIN_LENGTH,
  EnvelopeOpener,
  envelopeIndex,
  envelopeKeyVersion,
  isEnvelope,
  openValue,
  sealValue,
} from '../../policy/envelope.js'
import { DecryptionError } from '../../policy/errors.js'
import { Keyring } from '../../policy/keyring.js'
import { thrown } from './thrown.js'

const ROOT_1 = randomBytes(32)
const ROOT_2 = randomBytes(32)
const EMAIL = 'public.users.email'
const SSN = 'public.users.ssn'
const keyring1 = new Keyring(new Map([[1, ROOT_1]]), 1)
const keyring12 = new Keyring(
  new Map([
    [1, ROOT_1],
    [2, ROOT_2],
  ]),
  2,
)
const INDEX = { version: 3, mac: Buffer.alloc(32, 0xab) }

const decryptionError = (fn: () => unknown): DecryptionError => thrown(fn, DecryptionError)

describe('layout', () => {
  it('writes the documented header, nonce, ciphertext and tag', () => {
    const nonce = Buffer.alloc(24, 0x5a)
    const envelope = sealValue(keyring1, EMAIL, Buffer.from('alice'), { nonce })
    expect(envelope.length).toBe(8 + 24 + 5 + 16)
    expect(envelope.subarray(0, 8).toString('hex')).toBe('7076010000000001')
    expect(envelope.subarray(8, 32).equals(nonce)).toBe(true)
    expect(ENVELOPE_MIN_LENGTH).toBe(48)
  })

  it('puts the index slot at the fixed offset', () => {
    const envelope = sealValue(keyring12, EMAIL, Buffer.from('alice'), { index: INDEX })
    expect(envelope.subarray(0, 12).toString('hex')).toBe('707601010000000200000003')
    expect(ENVELOPE_INDEX_OFFSET).toBe(12)
    expect(ENVELOPE_INDEX_LENGTH).toBe(32)
    expect(ENVELOPE_INDEX_SQL_FROM).toBe(13)
    expect(envelope.subarray(ENVELOPE_INDEX_OFFSET, ENVELOPE_INDEX_OFFSET + ENVELOPE_INDEX_LENGTH).equals(INDEX.mac)).toBe(true)
    expect(envelope.length).toBe(44 + 24 + 5 + 16)
    expect(ENVELOPE_INDEXED_MIN_LENGTH).toBe(84)
    const slot = envelopeIndex(envelope)
    expect(slot?.version).toBe(3)
    expect(Buffer.from(slot!.mac).equals(INDEX.mac)).toBe(true)
    expect(envelopeIndex(sealValue(keyring12, EMAIL, Buffer.from('alice')))).toBeUndefined()
  })

  it('draws a fresh nonce for every value', () => {
    const a = sealValue(keyring1, EMAIL, Buffer.from('same'))
    const b = sealValue(keyring1, EMAIL, Buffer.from('same'))
    expect(a.subarray(8, 32).equals(b.subarray(8, 32))).toBe(false)
    expect(a.equals(b)).toBe(false)
    // Across several refills of the nonce pool, no nonce repeats.
    const nonces = new Set<string>()
    for (let i = 0; i < 3000; i++) nonces.add(sealValue(keyring1, EMAIL, Buffer.from('same')).subarray(8, 32).toString('hex'))
    expect(nonces.size).toBe(3000)
  })

  it('reports key version and envelope-ness', () => {
    const envelope = sealValue(keyring12, EMAIL, Buffer.from('x'))
    expect(isEnvelope(envelope)).toBe(true)
    expect(envelopeKeyVersion(envelope)).toBe(2)
    expect(isEnvelope(Buffer.from('alice@example.com'))).toBe(false)
    expect(isEnvelope(envelope.subarray(0, 47))).toBe(false)
    expect(isEnvelope(Buffer.concat([Buffer.from('pv'), Buffer.of(2), envelope.subarray(3)]))).toBe(false)
    const reserved = Buffer.from(envelope)
    reserved[3] = 0x02
    expect(isEnvelope(reserved)).toBe(false)
    const claimsIndex = Buffer.from(envelope)
    claimsIndex[3] = 0x01 // 49 bytes cannot hold a 44-byte header + nonce + tag
    expect(isEnvelope(claimsIndex)).toBe(false)
    decryptionError(() => envelopeKeyVersion(Buffer.from('plain')))
  })
})

describe('round trip', () => {
  it('opens what it seals, with and without an index slot', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), fc.boolean(), (plaintext, indexed) => {
        const envelope = sealValue(keyring12, EMAIL, Buffer.from(plaintext), indexed ? { index: INDEX } : {})
        expect(isEnvelope(envelope)).toBe(true)
        expect(openValue(keyring12, EMAIL, envelope).equals(Buffer.from(plaintext))).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it('opens values sealed under an older key version after rotation', () => {
    const old = sealValue(keyring1, EMAIL, Buffer.from('before rotation'))
    expect(envelopeKeyVersion(old)).toBe(1)
    const fresh = sealValue(keyring12, EMAIL, Buffer.from('after rotation'))
    expect(envelopeKeyVersion(fresh)).toBe(2)
    expect(openValue(keyring12, EMAIL, old).toString()).toBe('before rotation')
    expect(openValue(keyring12, EMAIL, fresh).toString()).toBe('after rotation')
  })

  it('opens an envelope that is a view into a larger buffer (a DataRow cell)', () => {
    const envelope = sealValue(keyring1, EMAIL, Buffer.from('cell'))
    const row = Buffer.concat([Buffer.from('xyz'), envelope, Buffer.from('tail')])
    expect(openValue(keyring1, EMAIL, row.subarray(3, 3 + envelope.length)).toString()).toBe('cell')
  })

  it('reuses one opener across values, layouts, key versions and positions in a buffer', () => {
    const opener = new EnvelopeOpener({ keyring: keyring12 }, EMAIL)
    const values = [
      sealValue(keyring1, EMAIL, Buffer.from('old plain')),
      sealValue(keyring12, EMAIL, Buffer.from('new indexed'), { index: INDEX }),
      sealValue(keyring1, EMAIL, Buffer.from('old indexed'), { index: INDEX }),
      sealValue(keyring12, EMAIL, Buffer.from('')),
    ]
    const row = Buffer.concat(values.flatMap((value) => [Buffer.from('--'), value]))
    const out = Buffer.alloc(64)
    const openRange = (start: number, end: number): string => out.toString('utf8', 0, opener.openInto(row, start, end, out, 0))
    let offset = 0
    const opened = values.map((value) => {
      offset += 2
      const plaintext = openRange(offset, offset + value.length)
      offset += value.length
      return plaintext
    })
    expect(opened).toEqual(['old plain', 'new indexed', 'old indexed', ''])
    // A range one byte short or long of the envelope, or another column's opener, fails the same way.
    decryptionError(() => openRange(2, 2 + values[0]!.length - 1))
    decryptionError(() => openRange(2, 2 + values[0]!.length + 1))
    decryptionError(() => new EnvelopeOpener({ keyring: keyring12 }, SSN).open(values[1]!))
    expect(opener.open(values[1]!).toString()).toBe('new indexed')
  })
})

describe('every failure is the same DecryptionError', () => {
  const plain = sealValue(keyring12, EMAIL, Buffer.from('secret'))
  const indexed = sealValue(keyring12, EMAIL, Buffer.from('secret'), { index: INDEX })

  it('on every truncation', () => {
    for (const envelope of [plain, indexed]) {
      for (let length = 0; length < envelope.length; length++) decryptionError(() => openValue(keyring12, EMAIL, envelope.subarray(0, length)))
      decryptionError(() => openValue(keyring12, EMAIL, Buffer.concat([envelope, Buffer.of(0)])))
    }
  })

  it('on every bit flipped anywhere', () => {
    for (const envelope of [plain, indexed]) {
      for (let bit = 0; bit < envelope.length * 8; bit++) {
        const tampered = Buffer.from(envelope)
        tampered[bit >> 3] = tampered[bit >> 3]! ^ (1 << (bit & 7))
        decryptionError(() => openValue(keyring12, EMAIL, tampered))
      }
    }
  })

  it('on every byte replaced by another value', () => {
    for (const envelope of [plain, indexed]) {
      for (let i = 0; i < envelope.length; i++) {
        const tampered = Buffer.from(envelope)
        tampered[i] = tampered[i]! ^ 0xff
        decryptionError(() => openValue(keyring12, EMAIL, tampered))
      }
    }
  })

  it('when a flag bit is set to reinterpret a plain envelope as indexed', () => {
    const long = sealValue(keyring12, EMAIL, Buffer.alloc(100, 0x41))
    const tampered = Buffer.from(long)
    tampered[3] = 0x01
    expect(isEnvelope(tampered)).toBe(true)
    decryptionError(() => openValue(keyring12, EMAIL, tampered))
  })

  it('when moved to another column', () => {
    decryptionError(() => openValue(keyring12, SSN, plain))
    decryptionError(() => openValue(keyring12, SSN, indexed))
    decryptionError(() => openValue(keyring12, 'other.users.email', plain))
  })

  it('under an unknown key version or a different key', () => {
    decryptionError(() => openValue(keyring1, EMAIL, plain))
    const impostor = new Keyring(new Map([[2, randomBytes(32)]]), 2)
    decryptionError(() => openValue(impostor, EMAIL, plain))
  })

  it('with one message, code and SQLSTATE; only the detail differs', () => {
    const versionEdited = Buffer.from(plain)
    versionEdited.writeUInt32BE(1, 4)
    const failures = [
      decryptionError(() => openValue(keyring12, EMAIL, Buffer.from('not an envelope'))),
      decryptionError(() => openValue(keyring12, EMAIL, plain.subarray(0, plain.length - 1))),
      decryptionError(() => openValue(keyring1, EMAIL, plain)),
      decryptionError(() => openValue(keyring12, SSN, plain)),
      decryptionError(() => openValue(keyring12, EMAIL, versionEdited)),
    ]
    for (const failure of failures) {
      expect(failure.message).toBe('pgveil could not decrypt a protected value')
      expect(failure.code).toBe('PGVEIL_DECRYPTION_FAILED')
      expect(failure.sqlState).toBe('XX001')
      expect(failure.name).toBe('DecryptionError')
      expect(failure.detail).not.toContain('secret')
    }
    expect(new Set(failures.map((f) => f.detail)).size).toBe(failures.length)
    expect(failures[2]!.detail).toContain('key version 2')
  })
})

describe('seal options', () => {
  it('refuses a malformed index slot or nonce', () => {
    expect(() => sealValue(keyring1, EMAIL, Buffer.from('x'), { index: { version: 1, mac: Buffer.alloc(31) } })).toThrow(RangeError)
    expect(() => sealValue(keyring1, EMAIL, Buffer.from('x'), { index: { version: 0, mac: Buffer.alloc(32) } })).toThrow(RangeError)
    expect(() => sealValue(keyring1, EMAIL, Buffer.from('x'), { index: { version: 2 ** 32, mac: Buffer.alloc(32) } })).toThrow(RangeError)
    expect(() => sealValue(keyring1, EMAIL, Buffer.from('x'), { nonce: Buffer.alloc(12) })).toThrow(RangeError)
  })
})

interface EnvelopeVector {
  name: string
  rootKeyBase64: string
  keyVersion: number
  column: string
  nonce: string
  plaintext: string
  index?: { version: number; mac: string }
  envelope: string
}
const envelopeVectors = (JSON.parse(readFileSync(new URL('../vectors/envelope.json', import.meta.url), 'utf8')) as { vectors: EnvelopeVector[] }).vectors

describe('envelope vectors (test/vectors/envelope.json)', () => {
  it('covers both layouts', () => {
    expect(envelopeVectors.length).toBeGreaterThanOrEqual(4)
    expect(envelopeVectors.some((v) => v.index !== undefined)).toBe(true)
    expect(envelopeVectors.some((v) => v.index === undefined)).toBe(true)
  })

  for (const v of envelopeVectors) {
    const root = Buffer.from(v.rootKeyBase64, 'base64')
    const keyring = new Keyring(new Map([[v.keyVersion, root]]), v.keyVersion)
    const expected = Buffer.from(v.envelope, 'hex')

    it(`seals byte for byte: ${v.name}`, () => {
      const index = v.index === undefined ? undefined : { version: v.index.version, mac: Buffer.from(v.index.mac, 'hex') }
      const envelope = sealValue(keyring, v.column, Buffer.from(v.plaintext, 'utf8'), { nonce: Buffer.from(v.nonce, 'hex'), ...(index === undefined ? {} : { index }) })
      expect(envelope.toString('hex')).toBe(v.envelope)
      expect(openValue(keyring, v.column, expected).toString('utf8')).toBe(v.plaintext)
    })

    it(`opens with @noble/ciphers directly: ${v.name}`, () => {
      // Parse by the documented offsets, derive the column key with node:crypto HKDF.
      const header = expected[3] === 1 ? 44 : 8
      expect(expected.subarray(0, 3).toString('hex')).toBe('707601')
      expect(expected.readUInt32BE(4)).toBe(v.keyVersion)
      if (v.index !== undefined) {
        expect(expected.readUInt32BE(8)).toBe(v.index.version)
        expect(expected.subarray(12, 44).toString('hex')).toBe(v.index.mac)
      }
      expect(expected.subarray(header, header + 24).toString('hex')).toBe(v.nonce)
      const columnKey = new Uint8Array(hkdfSync('sha256', root, Buffer.from('pgveil/column-key/v1'), Buffer.from(v.column, 'utf8'), 32))
      const aad = Buffer.concat([expected.subarray(0, header), Buffer.from(v.column, 'utf8')])
      const opened = xchacha20poly1305(columnKey, expected.subarray(header, header + 24), aad).decrypt(expected.subarray(header + 24))
      expect(Buffer.from(opened).toString('utf8')).toBe(v.plaintext)
    })
  }
})
