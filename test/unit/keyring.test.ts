import { hkdfSync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { inspect } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { KeyringError, PgveilError } from '../../policy/errors.js'
import { Keyring } from '../../policy/keyring.js'
import { resolveSecretReference } from '../../proxy/config.js'
import { thrown } from './thrown.js'

const KEY_1 = randomBytes(32)
const KEY_2 = randomBytes(32)
const INDEX_KEY = randomBytes(32)
const B64_1 = KEY_1.toString('base64')
const B64_2 = KEY_2.toString('base64')

const dir = mkdtempSync(path.join(tmpdir(), 'pgveil-keyring-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const key2File = path.join(dir, 'key2')
writeFileSync(key2File, `${B64_2}\n`)

const env: NodeJS.ProcessEnv = { PGVEIL_KEY_1: B64_1, PGVEIL_INDEX_KEY: INDEX_KEY.toString('base64url') }
const resolve = (reference: string): string => resolveSecretReference(reference, env)

const keyringError = (fn: () => unknown): KeyringError => thrown(fn, KeyringError)

/** HKDF-SHA256 as the design states it, computed here independently of the keyring. */
function expectedColumnKey(root: Buffer, column: string): string {
  return Buffer.from(hkdfSync('sha256', root, Buffer.from('pgveil/column-key/v1'), Buffer.from(column), 32)).toString('hex')
}

describe('Keyring.fromConfig', () => {
  const keyring = Keyring.fromConfig({ current: 2, versions: { 1: 'env:PGVEIL_KEY_1', 2: `file:${key2File}` }, index: 'env:PGVEIL_INDEX_KEY' }, resolve)

  it('loads every version from env and file references', () => {
    expect(keyring.current).toBe(2)
    expect(keyring.versions).toEqual([1, 2])
    expect(keyring.has(1)).toBe(true)
    expect(keyring.has(3)).toBe(false)
    expect(keyring.hasIndexKey).toBe(true)
    expect(keyring.indexRootKey()?.equals(INDEX_KEY)).toBe(true)
  })

  it('derives column keys with HKDF-SHA256(root, "pgveil/column-key/v1", column)', () => {
    expect(keyring.columnKey(1, 'public.users.email').toString('hex')).toBe(expectedColumnKey(KEY_1, 'public.users.email'))
    expect(keyring.columnKey(2, 'public.users.email').toString('hex')).toBe(expectedColumnKey(KEY_2, 'public.users.email'))
    expect(keyring.columnKey(2, 'billing.kunden.straße').toString('hex')).toBe(expectedColumnKey(KEY_2, 'billing.kunden.straße'))
  })

  it('gives a different key per column and per version, never the root key', () => {
    const keys = [keyring.columnKey(1, 'public.users.email'), keyring.columnKey(1, 'public.users.ssn'), keyring.columnKey(2, 'public.users.email'), keyring.columnKey(2, 'other.users.email')]
    expect(new Set(keys.map((k) => k.toString('hex'))).size).toBe(4)
    for (const k of keys) {
      expect(k.length).toBe(32)
      expect(k.equals(KEY_1) || k.equals(KEY_2)).toBe(false)
    }
  })

  it('is deterministic across keyrings and caches', () => {
    const again = Keyring.fromConfig({ current: 1, versions: { 1: 'env:PGVEIL_KEY_1' } }, resolve)
    expect(again.columnKey(1, 'public.users.email').equals(keyring.columnKey(1, 'public.users.email'))).toBe(true)
    expect(again.columnKey(1, 'public.users.email')).toBe(again.columnKey(1, 'public.users.email'))
    expect(again.hasIndexKey).toBe(false)
    expect(again.indexRootKey()).toBeUndefined()
  })

  it('refuses a version it does not hold', () => {
    expect(() => keyring.columnKey(3, 'public.users.email')).toThrow(RangeError)
  })

  it('does not show key material in inspect, JSON or strings', () => {
    const secrets = [B64_1, B64_2, KEY_1.toString('hex'), KEY_2.toString('hex'), INDEX_KEY.toString('hex'), INDEX_KEY.toString('base64'), INDEX_KEY.toString('base64url')]
    keyring.columnKey(1, 'public.users.email')
    const derived = keyring.columnKey(1, 'public.users.email').toString('hex')
    const renderings = [
      inspect(keyring),
      inspect(keyring, { showHidden: true, depth: Infinity, getters: true }),
      inspect({ nested: { keyring } }, { depth: Infinity }),
      JSON.stringify(keyring),
      JSON.stringify({ keyring }),
      String(keyring),
      `${keyring}`,
    ]
    for (const text of renderings) {
      for (const secret of [...secrets, derived]) expect(text).not.toContain(secret)
      expect(text).not.toMatch(/[0-9a-f]{32}|[A-Za-z0-9+/]{40}/)
    }
    expect(JSON.parse(JSON.stringify(keyring))).toEqual({ current: 2, versions: [1, 2], index: true, indexCurrent: 1, indexVersions: [1] })
    expect(inspect(keyring)).toBe('Keyring(current 2, versions 1, 2, index key)')
  })
})

describe('Keyring.fromConfig refuses', () => {
  it('an inline key, without repeating it', () => {
    const error = keyringError(() => Keyring.fromConfig({ current: 1, versions: { 1: 'env:PGVEIL_KEY_1', 2: B64_2 } }, resolve))
    expect(error.message).toContain('keys.versions.2 must be a reference (env:NAME or file:PATH), never the key itself')
    expect(error.message).not.toContain(B64_2)
    expect(error.problems).toEqual([{ path: 'keys.versions.2', message: 'must be a reference (env:NAME or file:PATH), never the key itself' }])
    expect(error).toBeInstanceOf(PgveilError)
    expect(error.code).toBe('PGVEIL_KEYRING_INVALID')
  })

  it('an inline index key', () => {
    const inline = randomBytes(32).toString('base64')
    const error = keyringError(() => Keyring.fromConfig({ current: 1, versions: { 1: 'env:PGVEIL_KEY_1' }, index: inline }, resolve))
    expect(error.message).toContain('keys.index must be a reference')
    expect(error.message).not.toContain(inline)
  })

  const badKeys: [string, string, RegExp][] = [
    ['not base64', 'this is not base64 at all!!', /keys\.versions\.3 \(env:BAD\) is not base64/],
    ['16 bytes', randomBytes(16).toString('base64'), /keys\.versions\.3 \(env:BAD\) decodes to 16 bytes \(expected exactly 32 bytes/],
    ['33 bytes', randomBytes(33).toString('base64'), /keys\.versions\.3 \(env:BAD\) decodes to 33 bytes/],
    ['32 bytes with a stray character', `${randomBytes(32).toString('base64').slice(0, 20)}*${randomBytes(32).toString('base64').slice(20)}`, /keys\.versions\.3 \(env:BAD\) is not base64/],
    ['hex instead of base64', randomBytes(32).toString('hex'), /keys\.versions\.3 \(env:BAD\) decodes to 48 bytes/],
  ]
  for (const [name, secret, expected] of badKeys) {
    it(`a key that is ${name}, naming the version and not the key`, () => {
      const error = keyringError(() => Keyring.fromConfig({ current: 1, versions: { 1: 'env:PGVEIL_KEY_1', 3: 'env:BAD' } }, (ref) => resolveSecretReference(ref, { ...env, BAD: secret })))
      expect(error.message).toMatch(expected)
      expect(error.message).not.toContain(secret)
      expect(error.message).not.toContain(secret.slice(0, 12))
      expect(error.problems).toHaveLength(1)
    })
  }

  it('a non-canonical encoding (non-zero trailing bits)', () => {
    const canonical = randomBytes(32).toString('base64') // 43 characters + "="; the last one carries 2 unused bits
    const last = canonical[42]!
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
    const altered = `${canonical.slice(0, 42)}${alphabet[alphabet.indexOf(last) ^ 1]!}=`
    expect(Buffer.from(altered, 'base64').equals(Buffer.from(canonical, 'base64'))).toBe(true)
    const error = keyringError(() => Keyring.fromConfig({ current: 1, versions: { 1: 'env:K' } }, (ref) => resolveSecretReference(ref, { K: altered })))
    expect(error.message).toMatch(/keys\.versions\.1 \(env:K\) is not canonical base64/)
    expect(error.message).not.toContain(altered)
  })

  it('an unresolvable reference, naming the variable or file', () => {
    const error = keyringError(() => Keyring.fromConfig({ current: 1, versions: { 1: 'env:PGVEIL_MISSING', 2: `file:${path.join(dir, 'nope')}` } }, resolve))
    expect(error.problems.map((p) => p.path)).toEqual(['keys.versions.1', 'keys.versions.2'])
    expect(error.message).toMatch(/keys\.versions\.1 cannot be resolved: environment variable PGVEIL_MISSING is not set/)
    expect(error.message).toMatch(/keys\.versions\.2 cannot be resolved: cannot read secret file .*nope/)
  })

  it('a current version that is not among the versions, or not a version', () => {
    expect(keyringError(() => Keyring.fromConfig({ current: 3, versions: { 1: 'env:PGVEIL_KEY_1' } }, resolve)).message).toContain('keys.current is 3, which is not one of keys.versions (1)')
    expect(keyringError(() => Keyring.fromConfig({ current: 1.5, versions: { 1: 'env:PGVEIL_KEY_1' } }, resolve)).problems[0]?.path).toBe('keys.current')
    expect(keyringError(() => Keyring.fromConfig({ current: 0, versions: { 1: 'env:PGVEIL_KEY_1' } }, resolve)).problems[0]?.path).toBe('keys.current')
  })

  it('version names that are not integers from 1 to 2^32-1, and no versions at all', () => {
    const error = keyringError(() => Keyring.fromConfig({ current: 1, versions: { 1: 'env:PGVEIL_KEY_1', 0: 'env:PGVEIL_KEY_1', two: 'env:PGVEIL_KEY_1', 4294967296: 'env:PGVEIL_KEY_1' } }, resolve))
    expect(error.problems.map((p) => p.path).sort()).toEqual(['keys.versions.0', 'keys.versions.4294967296', 'keys.versions.two'])
    expect(keyringError(() => Keyring.fromConfig({ current: 1, versions: {} }, resolve)).problems.map((p) => p.path)).toEqual(['keys.versions', 'keys.current'])
  })

  it('reports every problem at once', () => {
    const error = keyringError(() => Keyring.fromConfig({ current: 9, versions: { 1: B64_1, 2: 'env:NOPE' }, index: 'env:ALSO_NOPE' }, resolve))
    expect(error.problems.map((p) => p.path)).toEqual(['keys.versions.1', 'keys.versions.2', 'keys.current', 'keys.index'])
    expect(error.message).not.toContain(B64_1)
  })
})

describe('Keyring constructor', () => {
  it('validates lengths and versions without showing keys', () => {
    expect(() => new Keyring(new Map([[1, new Uint8Array(31)]]), 1)).toThrow(/root key version 1 must be 32 bytes/)
    expect(() => new Keyring(new Map([[0, new Uint8Array(32)]]), 0)).toThrow(RangeError)
    expect(() => new Keyring(new Map([[1, new Uint8Array(32)]]), 2)).toThrow(/current key version 2/)
    expect(() => new Keyring(new Map([[1, new Uint8Array(32)]]), 1, new Uint8Array(16))).toThrow(/index root key must be 32 bytes/)
  })

  it('copies the keys it is given', () => {
    const root = randomBytes(32)
    const copy = Buffer.from(root)
    const keyring = new Keyring(new Map([[5, root]]), 5)
    root.fill(0)
    expect(keyring.columnKey(5, 'a.b.c').toString('hex')).toBe(expectedColumnKey(copy, 'a.b.c'))
  })
})
