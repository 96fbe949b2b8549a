/**
 * The shared-memory ring between AuditSink and the audit worker, and the lines
 * that pass through it: records wrap around the ring's end intact and in order,
 * multi-byte text keeps its bytes, a full ring drops lines (counted, announced,
 * the chain still whole), a line bigger than the ring goes by message in its
 * place, and rotate/close take every line written before them. The sink tests
 * run both with the consumer in this thread (a stream) and with the real worker
 * thread writing a file; the verifier checks every log.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { afterAll, describe, expect, it } from 'vitest'
import { createRingMemory, RingReader, RingWriter } from '../../audit/line-ring.js'
import { FRAGMENT_SLOTS, LineFragment, writeMillis } from '../../audit/line-template.js'
import { createMetrics, type Metrics } from '../../audit/metrics.js'
import { AuditSink, ringBytesFor } from '../../audit/sink.js'
import { verifyAuditLog } from '../../audit/verify.js'

const KEY = randomBytes(32)
const dir = mkdtempSync(path.join(tmpdir(), 'pgveil-audit-ring-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

type Row = Record<string, unknown> & { event: string }
const rowsOf = (text: string): Row[] =>
  text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as Row)
const verify = (text: string) => verifyAuditLog([{ name: 'log', text }], KEY, { allowOpen: false })
const counter = async (metrics: Metrics, name: 'auditLinesDroppedTotal' | 'auditLinesWrittenTotal'): Promise<number> => (await metrics[name].get()).values[0]?.value ?? 0

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough()
  const chunks: Buffer[] = []
  stream.on('data', (chunk: Buffer) => chunks.push(chunk))
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') }
}

/** A destination that takes every chunk but confirms none until the test calls the next of `stalled`. */
function stalledDestination(): { written: Buffer[]; stalled: (() => void)[]; slow: Writable } {
  const written: Buffer[] = []
  const stalled: (() => void)[] = []
  const slow = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      written.push(chunk)
      stalled.push(() => callback())
    },
  })
  return { written, stalled, slow }
}

describe('ring records', () => {
  it('wrap around the end of the ring intact and in order, with padding skipped', () => {
    const memory = createRingMemory(4096)
    const writer = new RingWriter(memory)
    const reader = new RingReader(memory)
    let written = 0
    let read = 0
    // Sizes that do not divide the ring, so records meet its end at every offset; the ring wraps ~100 times.
    for (let round = 0; round < 2000; round++) {
      for (;;) {
        const body = Buffer.from(`{"n":${written},"pad":"${'p'.repeat((written * 37) % 200)}"}`)
        const at = writer.reserve(body.length)
        if (at < 0) break
        expect(at + body.length).toBeLessThanOrEqual(4096)
        body.copy(writer.bytes, at)
        writer.commit(body.length)
        written++
      }
      // Take about half of what waits, then free it.
      const head = reader.head
      let taken = 0
      while (taken < 5 && reader.next(head) === 'line') {
        const row = JSON.parse(reader.bytes.toString('utf8', reader.start, reader.end)) as { n: number; pad: string }
        expect(row.n).toBe(read)
        expect(row.pad).toHaveLength((read * 37) % 200)
        read++
        taken++
      }
      reader.release()
    }
    expect(read).toBeGreaterThan(5000)
    expect(written - read).toBeLessThan(40)
  })

  it('refuses a record when the ring is full and takes it again once space is freed', () => {
    const memory = createRingMemory(4096)
    const writer = new RingWriter(memory)
    const reader = new RingReader(memory)
    let count = 0
    while (writer.reserve(100) >= 0) {
      writer.commit(100)
      count++
    }
    // 104 bytes a record (length word and body): 39 fit in 4096.
    expect(count).toBe(39)
    expect(writer.used).toBe(39 * 104)
    expect(reader.next(reader.head)).toBe('line')
    reader.release()
    expect(writer.reserve(100)).toBeGreaterThanOrEqual(0)
  })
})

describe('templated lines', () => {
  it('write durations exactly as JSON.stringify of the value rounded to the microsecond', () => {
    const out = Buffer.alloc(64)
    const samples = [0, 0.0004, 0.0005, 0.001, 0.05, 0.1, 0.5, 1, 1.2345, 9.999, 10, 12.3456789, 100.01, 999.9999, 12345.678, 86_400_000.001]
    for (let i = 0; i < 2000; i++) samples.push(Math.random() * 10 ** ((i % 7) - 2))
    for (const ms of samples) {
      const end = writeMillis(out, 3, Math.round(ms * 1000))
      expect(out.toString('latin1', 3, end), String(ms)).toBe(JSON.stringify(Math.round(ms * 1000) / 1000))
    }
  })

  for (const where of ['in-thread consumer', 'worker thread'] as const) {
    it(`expand to the bytes of their fragments, with more distinct fragments than slots (${where})`, async () => {
      const file = path.join(dir, `template-${where.replace(' ', '-')}.log`)
      const { stream, text: streamed } = collect()
      const sink = AuditSink.open(where === 'worker thread' ? { to: file, chainKey: Buffer.from(KEY) } : { to: 'test', chainKey: Buffer.from(KEY), stream })
      if (where === 'worker thread') await workerStarted(file)
      const tail = new LineFragment(Buffer.from(',"outcome":{"status":"ok"}}'))
      const shared = new LineFragment(Buffer.from('"event":"statement","who":"Zoë ✓",'))
      const expected: { n: number; who: string; shape: string; tag: string; duration_ms: number }[] = []
      const before = Date.now()
      // Fragments used once each (slots reused several times over) mixed with ones used throughout.
      const total = FRAGMENT_SLOTS * 3
      for (let i = 0; i < total; i++) {
        const shape = i % 3 === 0 ? 'common' : `shape ${i} ✓`
        const n = new LineFragment(Buffer.from(`"n":${i},`))
        const shapeFragment = new LineFragment(Buffer.from(`"shape":${JSON.stringify(shape)},`))
        const tag = new LineFragment(Buffer.from(`"tag":"T${i % 5}","duration_ms":`))
        const durationMs = (i * 7919) / 1000
        sink.writeTemplate(shared, n, shapeFragment, tag, durationMs, tail)
        expected.push({ n: i, who: 'Zoë ✓', shape, tag: `T${i % 5}`, duration_ms: Math.round(durationMs * 1000) / 1000 })
        if (i % 1000 === 999) await new Promise((resolve) => setTimeout(resolve, 2))
      }
      await sink.close()
      const after = Date.now()
      const text = where === 'worker thread' ? readFileSync(file, 'utf8') : streamed()
      const rows = rowsOf(text).filter((r) => r.event === 'statement')
      expect(rows.map(({ n, who, shape, tag, duration_ms }) => ({ n, who, shape, tag, duration_ms }))).toEqual(expected)
      // Field order as written, with the time first and the chain's fields last.
      expect(Object.keys(rows[5]!)).toEqual(['time', 'event', 'who', 'n', 'shape', 'tag', 'duration_ms', 'outcome', 'chain', 'seq', 'mac'])
      const times = rows.map((r) => Date.parse(r.time as string))
      expect(Math.min(...times)).toBeGreaterThanOrEqual(before)
      expect(Math.max(...times)).toBeLessThanOrEqual(after)
      expect(verify(text)).toMatchObject({ ok: true })
    })
  }

  it('writes a line whose fragment is too big for the ring in full, by message', async () => {
    const { stream, text } = collect()
    const sink = AuditSink.open({ to: 'test', chainKey: Buffer.from(KEY), stream, maxBacklogBytes: 64 * 1024 })
    const tail = new LineFragment(Buffer.from(',"outcome":{"status":"ok"}}'))
    const big = new LineFragment(Buffer.from(`"statement":"${'SELECT 1 UNION ALL '.repeat(1000)}",`))
    const small = new LineFragment(Buffer.from('"event":"statement",'))
    const tag = new LineFragment(Buffer.from('"duration_ms":'))
    sink.writeTemplate(small, small, small, tag, 1.5, tail)
    sink.writeTemplate(small, big, small, tag, 2.5, tail)
    sink.writeTemplate(small, small, small, tag, 3.5, tail)
    await sink.close()
    const rows = rowsOf(text()).filter((r) => r.event === 'statement')
    expect(rows.map((r) => [r.duration_ms, typeof r.statement === 'string' ? (r.statement as string).length : 0])).toEqual([
      [1.5, 0],
      [2.5, 19_000],
      [3.5, 0],
    ])
    expect(verify(text())).toMatchObject({ ok: true })
  })
})

describe('audit sink through the ring', () => {
  it('keeps multi-byte text byte for byte and in order across the ring wrapping many times (in-thread consumer)', async () => {
    const { stream, text } = collect()
    const metrics = createMetrics({ defaultMetrics: false })
    // 64 KiB backlog: a 32 KiB ring, which 3000 lines of ~150 bytes wrap about 14 times.
    const sink = AuditSink.open({ to: 'test', chainKey: Buffer.from(KEY), stream, metrics, maxBacklogBytes: 64 * 1024 })
    const words = ['Zoë', 'naïve ✓', '日本語', 'emoji 😀 and 𝄞', 'plain']
    for (let i = 0; i < 3000; i++) {
      sink.write({ event: 'statement', n: i, who: words[i % words.length]!.repeat(1 + (i % 4)) })
      // Let the consumer run now and then, as the proxy's event loop would.
      if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 6))
    }
    await sink.close()
    const rows = rowsOf(text()).filter((r) => r.event === 'statement')
    expect(rows.map((r) => r.n)).toEqual(Array.from({ length: 3000 }, (_, i) => i))
    expect(rows.map((r) => r.who)).toEqual(Array.from({ length: 3000 }, (_, i) => words[i % words.length]!.repeat(1 + (i % 4))))
    expect(verify(text())).toMatchObject({ ok: true, chains: 1 })
    expect(await counter(metrics, 'auditLinesDroppedTotal')).toBe(0)
    expect(await counter(metrics, 'auditLinesWrittenTotal')).toBe(3000)
  })

  it('drops lines while a stalled destination keeps the ring full, counts and announces them, and the chain verifies', async () => {
    const { written, stalled, slow } = stalledDestination()
    const metrics = createMetrics({ defaultMetrics: false })
    const maxBacklogBytes = 64 * 1024
    const sink = AuditSink.open({ to: 'test', chainKey: Buffer.from(KEY), stream: slow, metrics, maxBacklogBytes })
    const filler = 'y'.repeat(300)
    const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 7))
    // The destination takes nothing: the consumer fills it up to its limit, then the ring fills.
    for (let i = 0; i < 1000; i++) {
      sink.write({ event: 'statement', n: i, filler })
      if (i % 20 === 19) await tick()
    }
    const dropped = await counter(metrics, 'auditLinesDroppedTotal')
    // What was kept fits the backlog (ring and destination), give or take a batch: the rest was dropped.
    const kept = 1000 - dropped
    expect(kept * 370).toBeGreaterThan(maxBacklogBytes * 0.6)
    expect(kept * 370).toBeLessThan(maxBacklogBytes * 1.6)
    // The destination catches up; the next line announces the gap first.
    while (stalled.length > 0) {
      stalled.shift()!()
      await tick()
    }
    sink.write({ event: 'statement', n: 1000, filler: 'after' })
    const closing = sink.close()
    while (stalled.length > 0 || written.length === 0) {
      stalled.shift()?.()
      await tick()
      if (stalled.length === 0) break
    }
    await closing
    const text = Buffer.concat(written).toString('utf8')
    const rows = rowsOf(text)
    const announcement = rows.find((r) => r.event === 'audit_lines_dropped')
    expect(announcement).toMatchObject({ count: dropped, reason: 'backlog', since: expect.stringMatching(/^\d{4}-/) })
    // Lines kept are in order, the gap is where the announcement says, and the line after it is there.
    const ns = rows.filter((r) => r.event === 'statement').map((r) => r.n as number)
    expect(ns).toEqual([...Array.from({ length: kept }, (_, i) => i), 1000])
    expect(rows.findIndex((r) => r.event === 'audit_lines_dropped')).toBe(kept + 1)
    expect(verify(text)).toMatchObject({ ok: true })
  })

  it('announces lines still unannounced at close even when the ring is full', async () => {
    const { written, stalled, slow } = stalledDestination()
    const metrics = createMetrics({ defaultMetrics: false })
    const sink = AuditSink.open({ to: 'test', chainKey: Buffer.from(KEY), stream: slow, metrics, maxBacklogBytes: 64 * 1024 })
    for (let i = 0; i < 600; i++) {
      sink.write({ event: 'statement', n: i, filler: 'z'.repeat(300) })
      if (i % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 7))
    }
    const dropped = await counter(metrics, 'auditLinesDroppedTotal')
    expect(dropped).toBeGreaterThan(0)
    const closing = sink.close()
    for (let i = 0; i < 200 && stalled.length > 0; i++) {
      stalled.shift()!()
      await new Promise((resolve) => setImmediate(resolve))
    }
    await closing
    const text = Buffer.concat(written).toString('utf8')
    const rows = rowsOf(text)
    expect(rows.at(-2)).toMatchObject({ event: 'audit_lines_dropped', count: await counter(metrics, 'auditLinesDroppedTotal') })
    expect(rows.at(-1)).toMatchObject({ event: 'chain_end' })
    expect(verify(text)).toMatchObject({ ok: true })
  })

  it('passes a line bigger than the ring by message, in its place, and drops one bigger than half the backlog', async () => {
    const { stream, text } = collect()
    const metrics = createMetrics({ defaultMetrics: false })
    const sink = AuditSink.open({ to: 'test', chainKey: Buffer.from(KEY), stream, metrics, maxBacklogBytes: 64 * 1024 })
    expect(ringBytesFor(64 * 1024)).toBe(32 * 1024)
    sink.write({ event: 'statement', n: 0 })
    sink.write({ event: 'statement', n: 1, big: 'ü'.repeat(10_000) })
    sink.write({ event: 'statement', n: 2 })
    sink.write({ event: 'statement', n: 3, huge: 'h'.repeat(40_000) })
    sink.write({ event: 'statement', n: 4 })
    await sink.close()
    const rows = rowsOf(text())
    expect(rows.filter((r) => r.event === 'statement').map((r) => r.n)).toEqual([0, 1, 2, 4])
    expect(rows.find((r) => r.n === 1)?.big).toBe('ü'.repeat(10_000))
    expect(rows.find((r) => r.event === 'audit_lines_dropped')).toMatchObject({ count: 1 })
    expect(await counter(metrics, 'auditLinesDroppedTotal')).toBe(1)
    expect(verify(text())).toMatchObject({ ok: true })
  })

  it('with the worker thread: keeps order over many batches, passes oversized lines in place, and rotate and close take every line before them', async () => {
    const file = path.join(dir, 'worker.log')
    const metrics = createMetrics({ defaultMetrics: false })
    // A 512 KiB ring, which the 20,000 lines wrap about four times.
    const sink = AuditSink.open({ to: file, chainKey: Buffer.from(KEY), metrics, maxBacklogBytes: 1024 * 1024 })
    await workerStarted(file)
    const expected: number[] = []
    for (let i = 0; i < 20_000; i++) {
      // 'é' twice 80,000 bytes: bigger than a record may be (a quarter of the ring), so it goes by message.
      const big = i % 2500 === 7
      sink.write(big ? { event: 'statement', n: i, big: 'é'.repeat(80_000) } : { event: 'statement', n: i, text: 'naïve ✓' })
      expected.push(i)
      if (i === 12_345) {
        // As a log rotator does: move the file away, then signal.
        renameSync(file, `${file}.1`)
        sink.rotate()
      }
      if (i % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 1))
    }
    // Written right before close, with no wake-up yet: close must still take them.
    sink.write({ event: 'statement', n: 20_000, text: 'last' })
    expected.push(20_000)
    await sink.close()
    const first = readFileSync(`${file}.1`, 'utf8')
    const second = readFileSync(file, 'utf8')
    const statements = [...rowsOf(first), ...rowsOf(second)].filter((r) => r.event === 'statement')
    expect(statements.map((r) => r.n)).toEqual(expected)
    expect(statements.filter((r) => r.big !== undefined).map((r) => (r.big as string).length)).toEqual(Array.from({ length: 8 }, () => 80_000))
    // The rotation split the lines exactly where it was asked: the first file ends with line 12345 and the chain's end.
    expect(rowsOf(first).slice(-2)).toMatchObject([{ n: 12_345 }, { event: 'chain_end' }])
    expect(rowsOf(second).slice(0, 2)).toMatchObject([{ event: 'chain_start', reason: 'rotation' }, { n: 12_346 }])
    expect(verifyAuditLog([{ name: 'first', text: first }, { name: 'second', text: second }], KEY, { allowOpen: false })).toMatchObject({ ok: true, chains: 2 })
    expect(await counter(metrics, 'auditLinesDroppedTotal')).toBe(0)
  })
})

describe('audit worker failure', () => {
  it('counts lines as dropped once the worker has failed, and close does not wait for it', async () => {
    const problems: string[] = []
    const metrics = createMetrics({ defaultMetrics: false })
    // A chain key BLAKE2b cannot take: the worker refuses it and ends.
    const sink = AuditSink.open({ to: path.join(dir, 'failed.log'), chainKey: Buffer.alloc(8, 1), metrics, onProblem: (message) => problems.push(message) })
    for (let i = 0; i < 300 && problems.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(problems).toEqual([expect.stringMatching(/audit worker could not start/)])
    // Its exit is reported after the failure message.
    await new Promise((resolve) => setTimeout(resolve, 50))
    sink.write({ event: 'statement', n: 1 })
    sink.write({ event: 'statement', n: 2 })
    expect(await counter(metrics, 'auditLinesDroppedTotal')).toBe(2)
    await sink.close()
  })
})

/** The worker writes the chain's first line once it runs (it takes a moment to start: lines meanwhile wait in the ring). */
async function workerStarted(file: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (existsSync(file) && statSync(file).size > 0) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error('the audit worker did not start')
}
