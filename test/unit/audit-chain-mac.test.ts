/**
 * The audit chain's primitives and key schedules against independent
 * implementations: BLAKE2b written from RFC 7693 (blake2b-reference.ts, itself
 * checked against node:crypto's blake2b512) and @noble/ciphers' ChaCha20 and
 * Poly1305 (pure JavaScript). The sealed lines the writer produces (format 3) are
 * recomputed line by line from the chain key with those alone, and a format 2 log
 * built with the reference alone still verifies.
 */
import { createHash, randomBytes } from 'node:crypto'
import { PassThrough } from 'node:stream'
import { poly1305 } from '@noble/ciphers/_poly1305.js'
import { chacha20orig } from '@noble/ciphers/chacha.js'
import { describe, expect, it } from 'vitest'
import { ChainSealer, chainKeys, firstState, keyedBlake2b, LineKeyStream, nextSeed, seedAtEpoch } from '../../audit/chain.js'
import { ChainWriter } from '../../audit/chain-writer.js'
import { verifyAuditLog } from '../../audit/verify.js'
import { blake2bReference } from './blake2b-reference.js'

const B = (key: Uint8Array, message: Uint8Array | string): Buffer => blake2bReference(typeof message === 'string' ? Buffer.from(message) : message, key, 32)
const bytes = (n: number, from = 0): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 0xff))
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** Format 3's one-time keys from state_0, with the references alone: `count` of them. */
function referenceLineKeys(state0: Uint8Array, count: number): Uint8Array[] {
  const keys: Uint8Array[] = []
  let state = state0
  while (keys.length < count) {
    const block = chacha20orig(state, new Uint8Array(8), new Uint8Array(32 + 64 * 32))
    state = block.slice(0, 32)
    for (let i = 0; i < 64; i++) keys.push(block.slice(32 + 32 * i, 64 + 32 * i))
  }
  return keys.slice(0, count)
}

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

describe('audit chain key schedule and MACs', () => {
  it('keyed BLAKE2b-256 through libsodium equals the reference for keys of 16, 32 and 64 bytes', () => {
    for (const keyLength of [16, 32, 64]) {
      for (const n of [0, 20, 128, 129, 700]) {
        const key = randomBytes(keyLength)
        const message = randomBytes(n)
        expect(keyedBlake2b(key, message).toString('hex')).toBe(B(key, message).toString('hex'))
      }
    }
  })

  it('derives seeds and a chain\'s first state as documented', () => {
    const seed = randomBytes(32)
    expect(nextSeed(seed)).toEqual(B(seed, 'pgveil audit seed v2'))
    expect(seedAtEpoch(seed, 2)).toEqual(B(B(seed, 'pgveil audit seed v2'), 'pgveil audit seed v2'))
    expect(firstState(seed, 'abc123')).toEqual(B(seed, 'pgveil audit chain v3abc123'))
  })

  it('draws format 3 line keys from the ChaCha20 keystream, 64 a block, each block under the state the one before left', () => {
    const state0 = randomBytes(32)
    const stream = new LineKeyStream(state0)
    const expected = referenceLineKeys(state0, 200)
    for (let i = 0; i < expected.length; i++) expect(hex(stream.take()), `key ${i}`).toBe(hex(expected[i]!))
    // Distinct keys: a repeated one-time key would break Poly1305.
    expect(new Set(expected.map(hex)).size).toBe(200)
  })

  it('computes format 3 MACs as Poly1305(one-time key, body ‖ previous MAC), and format 2 MACs as documented', () => {
    const seed = randomBytes(32)
    const bodies = ['{"event":"chain_start","seq":0}', '{"event":"statement","who":"Zoë ✓","seq":1}', `{"pad":"${'x'.repeat(700)}","seq":2}`].map((b) => Buffer.from(b))
    const v3 = chainKeys(3, seed, 'abc123')
    const keys = referenceLineKeys(B(seed, 'pgveil audit chain v3abc123'), bodies.length)
    let previous: Uint8Array = new Uint8Array(16)
    bodies.forEach((body, i) => {
      const mac = v3.nextMac(body, i === 0 ? null : Buffer.from(previous))
      const expected = poly1305(Buffer.concat([body, previous]), keys[i]!)
      expect(hex(mac)).toBe(hex(expected))
      previous = expected
    })
    const v2 = chainKeys(2, seed, 'abc123')
    let key = B(seed, 'pgveil audit chain v2abc123')
    let previous2: Buffer = Buffer.alloc(32)
    bodies.forEach((body, i) => {
      const mac = v2.nextMac(body, i === 0 ? null : previous2)
      expect(hex(mac)).toBe(hex(B(key, Buffer.concat([body, previous2]))))
      previous2 = mac
      key = B(key, 'pgveil audit key v2')
    })
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
    const writer = new ChainWriter({ to: 'test', chainKey: Buffer.from(chainKey), stream }, { written: () => {}, problem: () => {}, dropped: () => {} })
    // Multi-byte characters: the MAC covers UTF-8 bytes; a long body spans several BLAKE2b blocks.
    // Three bodies put straight into the output chunk and sealed where they lie (as the audit ring's drain does), one write.
    const bodies = ['{"event":"statement","n":1}', '{"event":"statement","who":"Zoë ✓"}', `{"event":"statement","pad":"${'x'.repeat(400)}"}`].map((b) => Buffer.from(b))
    for (const body of bodies) {
      writer.reserve(body.length)
      writer.out.set(body, writer.end)
      writer.completeLine(writer.end + body.length)
    }
    writer.flush()
    writer.writeLine(Buffer.from('{"event":"statement","n":4}'))
    await writer.close('2026-11-22T00:00:00.000Z')
    const text = Buffer.concat(chunks).toString('utf8')
    expect(text.endsWith('\n')).toBe(true)
    const rows = text.slice(0, -1).split('\n')
    expect(rows).toHaveLength(6)

    const first = JSON.parse(rows[0]!) as { chain: string; epoch: number; seq: number; event: string; version: number }
    expect(first).toMatchObject({ event: 'chain_start', version: 3, epoch: 0, seq: 0 })
    const keys = referenceLineKeys(B(chainKey, `pgveil audit chain v3${first.chain}`), rows.length)
    let previous: Uint8Array = new Uint8Array(16)
    rows.forEach((row, seq) => {
      const match = /^(\{.*),"mac":"([0-9a-f]{32})"\}$/.exec(row)
      expect(match, row).not.toBeNull()
      const body = `${match![1]!}}`
      expect(JSON.parse(body)).toMatchObject({ chain: first.chain, seq })
      const mac = poly1305(Buffer.concat([Buffer.from(body), previous]), keys[seq]!)
      expect(match![2]).toBe(hex(mac))
      previous = mac
    })
    expect(JSON.parse(rows[2]!)).toMatchObject({ who: 'Zoë ✓', seq: 2 })
    expect(JSON.parse(rows[5]!)).toMatchObject({ event: 'chain_end', lines: 5, seq: 5 })
  })

  it('still verifies a format 2 log (built here with the reference BLAKE2b alone), and reports an edit in one', () => {
    const chainKey = randomBytes(32)
    const id = 'a1b2c3d4e5f6a1b2c3d4e5f6'
    const bodies = [
      `{"time":"2026-11-22T00:00:00.000Z","event":"chain_start","version":2,"epoch":0,"reason":"startup","previous":null,"chain":"${id}","seq":0}`,
      `{"time":"2026-11-22T00:00:01.000Z","event":"statement","statement":"SELECT $1","chain":"${id}","seq":1}`,
      `{"time":"2026-11-22T00:00:02.000Z","event":"chain_end","lines":2,"chain":"${id}","seq":2}`,
    ]
    let key = B(chainKey, `pgveil audit chain v2${id}`)
    let previous: Buffer = Buffer.alloc(32)
    const rows = bodies.map((body) => {
      const mac = B(key, Buffer.concat([Buffer.from(body), previous]))
      previous = mac
      key = B(key, 'pgveil audit key v2')
      return `${body.slice(0, -1)},"mac":"${mac.toString('hex')}"}`
    })
    const text = rows.join('\n') + '\n'
    expect(verifyAuditLog([{ name: 'old.log', text }], chainKey)).toMatchObject({ ok: true, lines: 3, chains: 1 })
    const edited = text.replace('SELECT $1', 'SELECT $2')
    expect(verifyAuditLog([{ name: 'old.log', text: edited }], chainKey).problem).toMatchObject({ line: 2, reason: expect.stringMatching(/MAC mismatch/) })
    const unknown = text.replace('"version":2', '"version":9')
    expect(verifyAuditLog([{ name: 'old.log', text: unknown }], chainKey).problem).toMatchObject({ line: 1, reason: expect.stringMatching(/format version 9 is not one this pgveil knows \(2, 3\)/) })
  })
})
