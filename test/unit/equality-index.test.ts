import { createHmac, hkdfSync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { envelopeIndex, envelopeKeyVersion, openValue, sealValue } from '../../policy/envelope.js'
import { REENCRYPT_MODE, REINDEX_MODE, REWRITE_MODES } from '../../policy/envelope-rewrite.js'
import { indexInput, indexMac, lookupMacs, sealColumnValue } from '../../policy/equality-index.js'
import { Keyring } from '../../policy/keyring.js'
import { decodeArrayElements, encodeByteaArray } from '../../protocol/arrays.js'
import { parseConfig } from '../../proxy/config.js'

const ROOT = Buffer.alloc(32, 1)
const INDEX_1 = Buffer.alloc(32, 2)
const INDEX_2 = Buffer.alloc(32, 3)

/** HKDF then HMAC written out with node:crypto directly, independent of the module under test. */
function expectedMac(root: Buffer, domain: string, text: string): Buffer {
  const key = Buffer.from(hkdfSync('sha256', root, Buffer.from('pgveil/index-key/v1'), Buffer.from(domain), 32))
  return createHmac('sha256', key).update(text, 'utf8').digest()
}

describe('equality index values', () => {
  const keyring = new Keyring(new Map([[1, ROOT]]), 1, INDEX_1)
  const email = { binding: 'public.users.email', type: 'text', search: 'equality', normalize: ['trim', 'lowercase'], indexDomain: 'index:email' } as const

  it('are HMAC-SHA256 of the normalised canonical text under the HKDF key of the index domain', () => {
    expect(indexMac(keyring, 1, email, '  Ann@Example.COM ').equals(expectedMac(INDEX_1, 'index:email', 'ann@example.com'))).toBe(true)
    // Without index_domain, the key binding is the domain.
    expect(indexMac(keyring, 1, { binding: 'public.t.c' }, 'x').equals(expectedMac(INDEX_1, 'public.t.c', 'x'))).toBe(true)
    expect(indexMac(keyring, 1, { binding: 'public.t.c' }, 'x').equals(indexMac(keyring, 1, { binding: 'public.t.d' }, 'x'))).toBe(false)
  })

  it('normalise only as declared; numeric values lose trailing fraction zeros', () => {
    expect(indexInput({ binding: 'b' }, ' A ')).toBe(' A ')
    expect(indexInput({ binding: 'b', normalize: ['lowercase'] }, ' A ')).toBe(' a ')
    expect(indexInput({ binding: 'b', normalize: ['trim'] }, ' A ')).toBe('A')
    expect(indexInput({ binding: 'b', type: 'numeric' }, '1.50')).toBe('1.5')
    expect(indexInput({ binding: 'b', type: 'numeric' }, '2.000')).toBe('2')
    expect(indexInput({ binding: 'b', type: 'numeric' }, '-0.00')).toBe('0')
    expect(indexInput({ binding: 'b', type: 'numeric' }, '100')).toBe('100')
    expect(indexInput({ binding: 'b', type: 'numeric' }, 'NaN')).toBe('NaN')
  })

  it('index jsonb numbers as numerics, wherever they are, and leave strings alone', () => {
    const jsonb = { binding: 'b', type: 'jsonb' }
    expect(indexInput(jsonb, '{"a": 1.0, "b": [2.50, -0.0, 10, 1.05]}')).toBe('{"a": 1, "b": [2.5, 0, 10, 1.05]}')
    expect(indexInput(jsonb, '1.000')).toBe('1')
    expect(indexInput(jsonb, '{"1.0": "1.0", "k\\"2.0": 3.10}')).toBe('{"1.0": "1.0", "k\\"2.0": 3.1}')
    expect(indexInput(jsonb, '[true, null, "x", {}]')).toBe('[true, null, "x", {}]')
    // Documents PostgreSQL takes as equal index alike.
    expect(indexInput(jsonb, '{"a": 1.00}')).toBe(indexInput(jsonb, '{"a": 1}'))
  })

  it('are sealed into searchable envelopes (current index key version), which still open', () => {
    const envelope = sealColumnValue(keyring, email, 'Ann@Example.com')
    expect(openValue(keyring, email.binding, envelope).toString()).toBe('Ann@Example.com')
    const index = envelopeIndex(envelope)
    expect(index?.version).toBe(1)
    expect(Buffer.from(index!.mac).equals(expectedMac(INDEX_1, 'index:email', 'ann@example.com'))).toBe(true)
    expect(envelopeIndex(sealColumnValue(keyring, { binding: 'public.users.ssn' }, '1'))).toBeUndefined()
    expect(() => sealColumnValue(new Keyring(new Map([[1, ROOT]]), 1), email, 'x')).toThrow(/no index key is configured/)
  })

  it('are looked up under every index key version, current first, while two are held', () => {
    const rotating = new Keyring(new Map([[1, ROOT]]), 1, { versions: new Map([[1, INDEX_1], [2, INDEX_2]]), current: 2 })
    const macs = lookupMacs(rotating, email, 'ann@example.com')
    expect(macs.map((m) => m.toString('hex'))).toEqual([expectedMac(INDEX_2, 'index:email', 'ann@example.com').toString('hex'), expectedMac(INDEX_1, 'index:email', 'ann@example.com').toString('hex')])
    expect(envelopeIndex(sealColumnValue(rotating, email, 'x'))?.version).toBe(2)
    expect(rotating.describe()).toEqual({ current: 1, versions: [1], index: true, indexCurrent: 2, indexVersions: [1, 2] })
    expect(String(rotating)).toBe('Keyring(current 1, versions 1, index keys 1, 2 (current 2))')
  })
})

describe('pgveil migrate --reindex (REINDEX_MODE)', () => {
  const email = { binding: 'public.users.email', type: 'text', search: 'equality', normalize: ['lowercase'], indexDomain: 'index:email' } as const
  const before = new Keyring(new Map([[1, ROOT]]), 1, INDEX_1)
  const after = new Keyring(new Map([[1, ROOT], [2, Buffer.alloc(32, 9)]]), 2, { versions: new Map([[1, INDEX_1], [2, INDEX_2]]), current: 2 })

  it('rewrites a searchable value under the current key and index key versions, same plaintext', () => {
    const mode = REINDEX_MODE.forColumn!(email)
    const old = sealColumnValue(before, email, 'Ann@X.com')
    expect(REWRITE_MODES.reindex).toBe(REINDEX_MODE)
    expect(mode.isCurrent(after, old)).toBe(false)
    const rewritten = mode.rewrite(after, email.binding, old)
    expect(mode.isCurrent(after, rewritten)).toBe(true)
    expect(envelopeKeyVersion(rewritten)).toBe(2)
    expect(envelopeIndex(rewritten)?.version).toBe(2)
    expect(Buffer.from(envelopeIndex(rewritten)!.mac).equals(expectedMac(INDEX_2, 'index:email', 'ann@x.com'))).toBe(true)
    expect(openValue(after, email.binding, rewritten).toString()).toBe('Ann@X.com')
    // The SQL filter's slice: key version 2 then index key version 2, from byte 5.
    expect(mode.currentSlice(after)).toEqual({ from: 5, bytes: Buffer.from('0000000200000002', 'hex') })
    expect(rewritten.subarray(4, 12).equals(mode.currentSlice(after).bytes)).toBe(true)
    // An envelope without a slot (written before search: equality) is pending too.
    expect(mode.isCurrent(after, sealValue(after, email.binding, Buffer.from('a')))).toBe(false)
  })

  it('re-encrypts columns that are not searchable', () => {
    expect(REINDEX_MODE.forColumn!({ binding: 'public.users.ssn' })).toBe(REENCRYPT_MODE)
  })
})

describe('keys.index in the configuration', () => {
  const env = { K1: ROOT.toString('base64'), I1: INDEX_1.toString('base64'), I2: INDEX_2.toString('base64') }
  const head = 'keys:\n  current: 1\n  versions: { 1: "env:K1" }\n'
  const table = 'tables:\n  users:\n    email: { type: text, search: equality, normalize: [lowercase, trim], unique: true, index_domain: email }\n    ssn: { type: text }\n'

  it('accepts one reference (index key version 1) or versions with a current one', () => {
    const single = parseConfig(`${head}  index: "env:I1"\n${table}`, 'x.yaml', env)
    expect(single.keyring?.indexVersions).toEqual([1])
    expect(single.keyring?.indexCurrent).toBe(1)
    const versioned = parseConfig(`${head}  index:\n    current: 2\n    versions: { 1: "env:I1", 2: "env:I2" }\n${table}`, 'x.yaml', env)
    expect(versioned.keyring?.indexVersions).toEqual([1, 2])
    expect(versioned.keyring?.indexCurrent).toBe(2)
    expect(versioned.policy.column('public.users.email')).toEqual({
      schema: 'public', table: 'users', column: 'email', qualified: 'public.users.email', type: 'text', binding: 'public.users.email',
      search: 'equality', normalize: ['lowercase', 'trim'], unique: true, indexDomain: 'index:email',
    })
    expect(versioned.policy.column('public.users.ssn')?.search).toBeUndefined()
  })

  it('names the key of every bad search setting', () => {
    const problems = (text: string): string[] => {
      try {
        parseConfig(text, 'x.yaml', env)
      } catch (error) {
        return (error as { problems: string[] }).problems
      }
      return []
    }
    expect(problems(`${head}${table}`)).toEqual([expect.stringMatching(/keys\.index: missing: column public\.users\.email has search: equality, which needs an index key/)])
    expect(problems(`${head}  index: "env:I1"\ntables:\n  t:\n    a: { type: text, search: prefix }\n`)).toEqual([expect.stringMatching(/tables\.t\.a\.search: the string "prefix" is not a search kind \(expected equality\)/)])
    expect(problems(`${head}  index: "env:I1"\ntables:\n  t:\n    a: { type: text, normalize: lowercase }\n`)).toEqual([expect.stringMatching(/tables\.t\.a\.normalize: needs search: equality/)])
    expect(problems(`${head}  index: "env:I1"\ntables:\n  t:\n    a: { type: integer, search: equality, normalize: lowercase }\n`)).toEqual([expect.stringMatching(/normalize: applies to text columns only/)])
    expect(problems(`${head}  index: "env:I1"\ntables:\n  t:\n    a: { type: text, search: equality, normalize: upper }\n`)).toEqual([expect.stringMatching(/normalize: the string "upper" is not a normalisation \(expected lowercase \| trim/)])
    expect(problems(`${head}  index: "env:I1"\ntables:\n  t:\n    a: { type: text, search: equality, index_domain: d }\n    b: { type: integer, search: equality, index_domain: d }\n`)).toEqual([
      expect.stringMatching(/tables\.t\.b\.index_domain: index domain "d" already holds text values \(public\.t\.a\); columns of one index domain must share a type and normalize/),
    ])
    expect(problems(`${head}  index:\n    current: 3\n    versions: { 1: "env:I1" }\n`)).toEqual([expect.stringMatching(/keys\.index\.current: is 3, which is not one of keys\.index\.versions \(1\)/)])
    expect(problems(`${head}  index:\n    current: 1\n    versions: { 1: "env:NOPE" }\n`)).toEqual([expect.stringMatching(/keys\.index\.versions\.1: cannot be resolved/)])
  })
})

describe('array parameters of searches', () => {
  it('reads one-dimensional text arrays as PostgreSQL writes them', () => {
    const read = (text: string) => decodeArrayElements(Buffer.from(text), false, 'p')
    expect(read('{}')).toEqual([])
    expect(read('{a,b}')).toEqual(['a', 'b'])
    expect(read('{"a,b","c\\"d",NULL,"NULL", e f }')).toEqual(['a,b', 'c"d', null, 'NULL', 'e f'])
    expect(() => read('{{a}}')).toThrow(/p is not a valid one-dimensional array: it has more than one dimension/)
    expect(() => read('[1:2]={a,b}')).toThrow(/dimension decorations/)
    expect(() => read('{"a}')).toThrow(/unterminated/)
  })

  it('reads binary arrays and writes bytea[] in array_send format', () => {
    // Hand-written int4[] {7,NULL}: ndim 1, has nulls, oid 23, dim 2, lbound 1, then elements.
    const int4s = Buffer.from('00000001' + '00000001' + '00000017' + '00000002' + '00000001' + '00000004' + '00000007' + 'ffffffff', 'hex')
    expect(decodeArrayElements(int4s, true, 'p')).toEqual([Buffer.from([0, 0, 0, 7]), null])
    expect(encodeByteaArray([Buffer.from([0xab]), null]).toString('hex')).toBe('00000001' + '00000001' + '00000011' + '00000002' + '00000001' + '00000001' + 'ab' + 'ffffffff')
    expect(encodeByteaArray([]).toString('hex')).toBe('00000000' + '00000000' + '00000011')
  })
})
