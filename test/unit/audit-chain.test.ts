/**
 * The audit sink and its chain: a clean log verifies, and every kind of tampering
 * (edit, deletion, reordering, truncation, a wrong key) is reported at the first
 * bad line. Lines are produced by the real sink, checked by the verifier.
 */
import { randomBytes } from 'node:crypto'
import { PassThrough, Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createMetrics } from '../../audit/metrics.js'
import { AuditSink } from '../../audit/sink.js'
import { verifyAuditLog, type VerifyResult } from '../../audit/verify.js'

const KEY = randomBytes(32)

async function writeLog(events: number, options: { rotateAfter?: number } = {}): Promise<string> {
  const stream = new PassThrough()
  let text = ''
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()))
  const sink = AuditSink.open({ to: 'test', chainKey: Buffer.from(KEY), stream })
  for (let i = 0; i < events; i++) {
    sink.write({ event: 'statement', session: 1, n: i, statement: `select $1 /* ${i} */` })
    if (options.rotateAfter === i) sink.rotate()
  }
  await sink.close()
  return text
}

function verify(text: string | string[], key: Buffer = KEY, allowOpen = false): VerifyResult {
  const texts = Array.isArray(text) ? text : [text]
  return verifyAuditLog(texts.map((t, i) => ({ name: `log${i}`, text: t })), key, { allowOpen })
}

function lines(text: string): string[] {
  return text.slice(0, -1).split('\n')
}
function join(rows: string[]): string {
  return rows.join('\n') + '\n'
}

describe('audit chain', () => {
  it('accepts a clean log: chain start, every line, chain end', async () => {
    const text = await writeLog(5)
    const rows = lines(text)
    expect(rows).toHaveLength(7)
    expect(JSON.parse(rows[0]!)).toMatchObject({ event: 'chain_start', seq: 0, epoch: 0, reason: 'startup', version: 3 })
    expect(JSON.parse(rows[6]!)).toMatchObject({ event: 'chain_end', seq: 6, lines: 6 })
    expect(JSON.parse(rows[3]!)).toMatchObject({ event: 'statement', n: 2, seq: 3, mac: expect.stringMatching(/^[0-9a-f]{32}$/) })
    expect(verify(text)).toMatchObject({ ok: true, lines: 7, chains: 1, problem: null })
  })

  it('reports an edited line', async () => {
    const rows = lines(await writeLog(5))
    rows[3] = rows[3]!.replace('"n":2', '"n":9')
    expect(verify(join(rows)).problem).toMatchObject({ line: 4, reason: expect.stringMatching(/MAC mismatch: the line was edited/) })
  })

  it('reports a deleted line', async () => {
    const rows = lines(await writeLog(5))
    rows.splice(2, 1)
    expect(verify(join(rows)).problem).toMatchObject({ line: 3, reason: expect.stringMatching(/sequence 3 where 2 was expected: 1 line\(s\) deleted/) })
  })

  it('reports reordered lines', async () => {
    const rows = lines(await writeLog(5))
    ;[rows[2], rows[3]] = [rows[3]!, rows[2]!]
    expect(verify(join(rows)).problem).toMatchObject({ line: 3, reason: expect.stringMatching(/deleted before it/) })
    expect(verify(join(rows)).ok).toBe(false)
  })

  it('reports a line re-sealed with a changed sequence number (the MAC covers the sequence)', async () => {
    const rows = lines(await writeLog(5))
    rows.splice(2, 1)
    rows[2] = rows[2]!.replace('"seq":3', '"seq":2')
    expect(verify(join(rows)).problem).toMatchObject({ line: 3, reason: expect.stringMatching(/MAC mismatch/) })
  })

  it('reports truncation mid-line and at a line boundary', async () => {
    const text = await writeLog(5)
    expect(verify(text.slice(0, text.length - 20)).problem).toMatchObject({ line: 7, reason: expect.stringMatching(/cut short/) })
    const rows = lines(text)
    expect(verify(join(rows.slice(0, 5))).problem).toMatchObject({ line: 0, reason: expect.stringMatching(/has no closing line: the log was cut/) })
    // A log pgveil is still writing may be checked with --open.
    expect(verify(join(rows.slice(0, 5)), KEY, true)).toMatchObject({ ok: true, lines: 5 })
  })

  it('reports a deleted chain start, and a log sealed under another key', async () => {
    const rows = lines(await writeLog(3))
    expect(verify(join(rows.slice(1))).problem).toMatchObject({ line: 1, reason: expect.stringMatching(/outside any chain/) })
    expect(verify(join(rows), randomBytes(32)).problem).toMatchObject({ line: 1, reason: expect.stringMatching(/MAC mismatch/) })
  })

  it('starts a new chain on rotation, linked to the previous one; files verify in order', async () => {
    const rows = lines(await writeLog(6, { rotateAfter: 2 }))
    const starts = rows.map((r) => JSON.parse(r) as { event: string; reason?: string; epoch?: number; previous?: unknown }).filter((r) => r.event === 'chain_start')
    expect(starts).toMatchObject([{ reason: 'startup', epoch: 0, previous: null }, { reason: 'rotation', epoch: 1, previous: { lines: 5 } }])
    const cut = rows.findIndex((r, i) => i > 0 && r.includes('"chain_start"'))
    expect(verify([join(rows.slice(0, cut)), join(rows.slice(cut))])).toMatchObject({ ok: true, chains: 2 })
    // The tail of the first file removed (its closing line included): the next chain's start says so.
    expect(verify([join(rows.slice(0, cut - 2)), join(rows.slice(cut))]).problem).toMatchObject({ file: 'log1', line: 1, reason: expect.stringMatching(/never closed: lines before this one were deleted/) })
  })
})

describe('audit sink under a slow destination', () => {
  it('drops lines beyond the backlog before sealing them, counts them, announces them, and the chain stays whole', async () => {
    const written: string[] = []
    const pendingCallbacks: (() => void)[] = []
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _encoding, callback) {
        written.push(chunk.toString())
        pendingCallbacks.push(() => callback())
      },
    })
    const metrics = createMetrics({ defaultMetrics: false })
    const sink = AuditSink.open({ to: 'test', chainKey: Buffer.from(KEY), stream: slow, metrics, maxBacklogBytes: 64 * 1024 })
    const filler = 'x'.repeat(1000)
    for (let i = 0; i < 200; i++) sink.write({ event: 'statement', filler, n: i })
    const dropped = (await metrics.auditLinesDroppedTotal.get()).values[0]?.value ?? 0
    expect(dropped).toBeGreaterThan(100)
    // The destination catches up.
    // Batches are handed over every few milliseconds: wait for that, then let every write finish.
    const release = async (): Promise<void> => {
      await new Promise((resolve) => setTimeout(resolve, 30))
      while (pendingCallbacks.length > 0) {
        pendingCallbacks.shift()!()
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    await release()
    sink.write({ event: 'statement', filler: 'after', n: 200 })
    const closing = sink.close()
    await release()
    await closing
    const text = written.join('')
    const announced = lines(text).map((r) => JSON.parse(r) as { event: string; count?: number }).find((r) => r.event === 'audit_lines_dropped')
    expect(announced?.count).toBe(dropped)
    expect(verify(text)).toMatchObject({ ok: true })
    // Every line but the chain's own start and end lines.
    expect((await metrics.auditLinesWrittenTotal.get()).values[0]?.value).toBe(lines(text).length - 2)
  })
})

describe('audit sink after its destination failed', () => {
  it('counts every later line as dropped instead of losing it silently', async () => {
    const problems: string[] = []
    const failing = new Writable({
      write(_chunk: Buffer, _encoding, callback) {
        callback(Object.assign(new Error('disk gone'), { code: 'EIO' }))
      },
    })
    failing.on('error', () => {})
    const metrics = createMetrics({ defaultMetrics: false })
    const sink = AuditSink.open({ to: 'test', chainKey: Buffer.from(KEY), stream: failing, metrics, onProblem: (message) => problems.push(message) })
    sink.write({ event: 'statement', n: 0 })
    // The first batch goes out and fails.
    for (let i = 0; i < 100 && problems.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5))
    expect(problems).toEqual([expect.stringMatching(/audit destination failed/)])
    for (let i = 1; i <= 10; i++) sink.write({ event: 'statement', n: i })
    await sink.close()
    // The chain's start, lost with the write that failed, and the 11 statements, refused after it.
    expect((await metrics.auditLinesDroppedTotal.get()).values[0]?.value).toBe(12)
    expect(problems).toHaveLength(1)
  })
})
