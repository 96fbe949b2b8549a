/**
 * The audit chain's primitive and key schedule (format 2, keyed BLAKE2b through
 * libsodium) against an independent BLAKE2b written from RFC 7693
 * (blake2b-reference.ts), itself checked against node:crypto's blake2b512; and
 * the sealed lines the writer produces, recomputed line by line from the chain
 * key with the reference alone.
 */
import { createHash, randomBytes } from 'node:crypto'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { ChainSealer, firstLineKey, keyedBlake2b, lineMac, nextLineKey, nextSeed, seedAtEpoch } from '../../audit/chain.js'
import { ChainWriter } from '../../audit/chain-writer.js'
import { blake2bReference } from './blake2b-reference.js'

const B = (key: Uint8Array, message: Uint8Array | string): Buffer => blake2bReference(typeof message === 'string' ? Buffer.from(message) : message, key, 32)
const bytes = (n: number, from = 0): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 0xff))

describe('reference BLAKE2b', () => {
  it('matches node:crypto blake2b512 on inputs across block boundaries', () => {
    for (const n of [0, 1, 3, 111, 127, 128, 129, 255, 256, 257, 600]) {
      const message = randomBytes(n)
      expect(blake2bReference(message).toString('hex')).toBe(createHash('blake2b512').update(message).digest('hex'))
    }
  })

  it('gives the BLAKE2 keyed known answer for an empty input (key 00..3f, 64-byte output)', () => {
    expect(blake2bReference(new Uint8Array(0), bytes(64)).toString('hex')).toBe(
      '10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568',
    )
  })
})

describe('audit chain MAC (format 2)', () => {
  it('keyed BLAKE2b-256 through libsodium equals the reference for keys of 16, 32 and 64 bytes', () => {
    for (const keyLength of [16, 32, 64]) {
      for (const n of [0, 20, 128, 129, 700]) {
        const key = randomBytes(keyLength)
        const message = randomBytes(n)
        expect(keyedBlake2b(key, message).toString('hex')).toBe(B(key, message).toString('hex'))
      }
    }
  })

  it('derives seeds, chain keys, line keys and line MACs as documented', () => {
    const seed = randomBytes(32)
    expect(nextSeed(seed)).toEqual(B(seed, 'pgveil audit seed v2'))
    expect(seedAtEpoch(seed, 2)).toEqual(B(B(seed, 'pgveil audit seed v2'), 'pgveil audit seed v2'))
    expect(firstLineKey(seed, 'abc123')).toEqual(B(seed, 'pgveil audit chain v2abc123'))
    const key = randomBytes(32)
    expect(nextLineKey(key)).toEqual(B(key, 'pgveil audit key v2'))
    const body = Buffer.from('{"event":"statement","chain":"abc123","seq":1}')
    const previous = randomBytes(32)
    expect(lineMac(key, previous, body)).toEqual(B(key, Buffer.concat([body, previous])))
    expect(lineMac(key, null, body)).toEqual(B(key, Buffer.concat([body, Buffer.alloc(32)])))
  })

  it('refuses a chain key BLAKE2b cannot take, naming the setting', () => {
    expect(() => new ChainSealer(randomBytes(15))).toThrow(/audit\.chain_key is 15 bytes; expected 16 to 64/)
    expect(() => new ChainSealer(randomBytes(65))).toThrow(/audit\.chain_key is 65 bytes/)
  })

  it('writes lines whose chain fields and MACs the reference recomputes from the chain key alone', async () => {
    const chainKey = randomBytes(32)
    const stream = new PassThrough()
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    const writer = new ChainWriter({ to: 'test', chainKey: Buffer.from(chainKey), stream }, { written: () => {}, problem: () => {} })
    // Multi-byte characters: the MAC covers UTF-8 bytes; a long body spans several BLAKE2b blocks.
    // Three bodies lying in one buffer with bytes between them that must not be sealed, as in the audit ring.
    const bodies = ['{"event":"statement","n":1}', '{"event":"statement","who":"Zoë ✓"}', `{"event":"statement","pad":"${'x'.repeat(400)}"}`].map((b) => Buffer.from(b))
    const source = Buffer.concat(bodies.flatMap((b) => [Buffer.from('####'), b]))
    const starts = [4, 4 + bodies[0]!.length + 4, 4 + bodies[0]!.length + 4 + bodies[1]!.length + 4]
    writer.writeLines(source, starts, starts.map((s, i) => s + bodies[i]!.length), 3)
    writer.writeLine(Buffer.from('{"event":"statement","n":4}'))
    await writer.close('2026-11-22T00:00:00.000Z')
    const text = Buffer.concat(chunks).toString('utf8')
    expect(text.endsWith('\n')).toBe(true)
    const rows = text.slice(0, -1).split('\n')
    expect(rows).toHaveLength(6)

    const first = JSON.parse(rows[0]!) as { chain: string; epoch: number; seq: number; event: string }
    expect(first).toMatchObject({ event: 'chain_start', epoch: 0, seq: 0 })
    let key: Buffer = B(chainKey, `pgveil audit chain v2${first.chain}`)
    let previous: Buffer = Buffer.alloc(32)
    rows.forEach((row, seq) => {
      const match = /^(\{.*),"mac":"([0-9a-f]{64})"\}$/.exec(row)
      expect(match, row).not.toBeNull()
      const body = `${match![1]!}}`
      expect(JSON.parse(body)).toMatchObject({ chain: first.chain, seq })
      const mac = B(key, Buffer.concat([Buffer.from(body), previous]))
      expect(match![2]).toBe(mac.toString('hex'))
      previous = mac
      key = B(key, 'pgveil audit key v2')
    })
    expect(JSON.parse(rows[2]!)).toMatchObject({ who: 'Zoë ✓', seq: 2 })
    expect(JSON.parse(rows[5]!)).toMatchObject({ event: 'chain_end', lines: 5, seq: 5 })
  })
})
