import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { envelopeIndex, envelopeKeyVersion, openValue, sealValue } from '../../policy/envelope.js'
import { REENCRYPT_MODE, REWRITE_MODES, keyVersionBytes, reencryptEnvelope, sealCanonical } from '../../policy/envelope-rewrite.js'
import { DecryptionError } from '../../policy/errors.js'
import { Keyring } from '../../policy/keyring.js'
import { thrown } from './thrown.js'

const ROOT_1 = randomBytes(32)
const ROOT_2 = randomBytes(32)
const COLUMN = 'public.users.email'
const v1 = new Keyring(new Map([[1, ROOT_1]]), 1)
const v12 = new Keyring(
  new Map([
    [1, ROOT_1],
    [2, ROOT_2],
  ]),
  2,
)
const v2 = new Keyring(new Map([[2, ROOT_2]]), 2)

describe('reencryptEnvelope', () => {
  it('seals the same plaintext under the current version, which opens without the old key', () => {
    const old = sealValue(v1, COLUMN, Buffer.from('alice@example.com'))
    const fresh = reencryptEnvelope(v12, COLUMN, old)
    expect(envelopeKeyVersion(old)).toBe(1)
    expect(envelopeKeyVersion(fresh)).toBe(2)
    expect(openValue(v2, COLUMN, fresh).toString()).toBe('alice@example.com')
    expect(thrown(() => openValue(v2, COLUMN, old), DecryptionError).detail).toMatch(/key version 1/)
  })

  it('keeps the equality-index slot as it was', () => {
    const mac = randomBytes(32)
    const old = sealValue(v1, COLUMN, Buffer.from('x'), { index: { version: 7, mac } })
    const fresh = reencryptEnvelope(v12, COLUMN, old)
    const index = envelopeIndex(fresh)
    expect(index?.version).toBe(7)
    expect(Buffer.from(index!.mac)).toEqual(mac)
    expect(openValue(v12, COLUMN, fresh).toString()).toBe('x')
  })

  it('refuses what does not open: another column, an edited byte, a version the keyring lacks', () => {
    const old = sealValue(v1, COLUMN, Buffer.from('secret'))
    expect(() => reencryptEnvelope(v12, 'public.users.ssn', old)).toThrow(DecryptionError)
    const edited = Buffer.from(old)
    edited[edited.length - 1]! ^= 1
    expect(() => reencryptEnvelope(v12, COLUMN, edited)).toThrow(DecryptionError)
    expect(() => reencryptEnvelope(v2, COLUMN, old)).toThrow(DecryptionError)
    expect(() => reencryptEnvelope(v12, COLUMN, Buffer.from('plain text, not an envelope at all'))).toThrow(DecryptionError)
  })
})

describe('REENCRYPT_MODE', () => {
  it('is the reencrypt entry of REWRITE_MODES', () => {
    expect(REWRITE_MODES.reencrypt).toBe(REENCRYPT_MODE)
  })

  it('calls an envelope current only when it is sealed under keys.current', () => {
    expect(REENCRYPT_MODE.isCurrent(v12, sealValue(v12, COLUMN, Buffer.from('a')))).toBe(true)
    expect(REENCRYPT_MODE.isCurrent(v12, sealValue(v1, COLUMN, Buffer.from('a')))).toBe(false)
    expect(REENCRYPT_MODE.isCurrent(v12, Buffer.from('not an envelope, long enough to be one'))).toBe(false)
  })

  it('names the stored bytes its SQL filter compares: bytes 5..8 (1-based) hold the key version', () => {
    const slice = REENCRYPT_MODE.currentSlice(v12)
    const envelope = sealValue(v12, COLUMN, Buffer.from('a'))
    expect(slice).toEqual({ from: 5, bytes: Buffer.from([0, 0, 0, 2]) })
    expect(envelope.subarray(slice.from - 1, slice.from - 1 + slice.bytes.length)).toEqual(slice.bytes)
    expect(keyVersionBytes(0x01020304)).toEqual(Buffer.from([1, 2, 3, 4]))
  })
})

describe('sealCanonical', () => {
  it('seals the UTF-8 of the canonical text under the current version', () => {
    const sealed = sealCanonical(v12, COLUMN, 'zoë')
    expect(envelopeKeyVersion(sealed)).toBe(2)
    expect(openValue(v12, COLUMN, sealed).toString('utf8')).toBe('zoë')
  })
})
