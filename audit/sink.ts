/**
 * The audit log's sink on the proxy's side: events are serialized by pino (rare
 * events) and written as UTF-8 bytes straight into a shared-memory ring
 * (line-ring.ts); the per-statement line is a template record of a few numbers
 * naming fragments serialized once (line-template.ts). The audit worker thread
 * (sink-worker.ts) reads the ring, expands, completes, seals (chain.ts) and
 * appends the lines to the destination (stdout or a file), separate from the
 * operational log. The worker is woken every 20 ms while lines wait, or sooner
 * once many bytes do.
 *
 * Writing never blocks the data path. Policy for a slow or full destination:
 * drop, with a counter and an event. The ring takes half of `maxBacklogBytes` (at
 * most 4 MiB); the worker stops taking lines from it while the destination holds
 * more than the rest; the ring then fills, and new lines are dropped before they are sealed
 * (so the chain stays whole), counted in pgveil_audit_lines_dropped_total, and,
 * once the ring is half empty again, an `audit_lines_dropped` line says how many
 * and since when. A write error (full disk) counts the unconfirmed lines as lost,
 * reopens the file and starts a new chain whose first line says why and how many.
 */
import { closeSync, existsSync, openSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { pino, type Logger as PinoLogger } from 'pino'
import { ChainWriter } from './chain-writer.js'
import type { AuditEvent } from './events.js'
import { createRingMemory, RingReader, RingWriter } from './line-ring.js'
import { composeTemplateLine, FRAGMENT_HEADER_BYTES, FRAGMENT_SLOTS, RecordType, TEMPLATE_BYTES, TEMPLATE_FRAGMENTS, type LineFragment } from './line-template.js'
import type { Metrics } from './metrics.js'
import { RingDrain, type DroppedLines } from './ring-drain.js'
import type { AuditWorkerData, FromAuditWorker, ToAuditWorker } from './sink-worker.js'

export const DEFAULT_MAX_BACKLOG_BYTES = 16 * 1024 * 1024
/**
 * The worker is woken this often while lines wait, or sooner once WAKE_BYTES (or
 * a quarter of the ring) wait: each batch costs a message, a wake-up and a file
 * write whatever its size, so batches of a few hundred lines (at 30,000 statements
 * a second) cost less per line than the 5 ms batches of before. A crash loses at
 * most this window.
 */
const WAKE_INTERVAL_MS = 20
const WAKE_BYTES = 256 * 1024
/** The ring takes half of maxBacklogBytes, up to this; the destination's own buffer the rest. */
const MAX_RING_BYTES = 4 * 1024 * 1024
const MIN_RING_BYTES = 16 * 1024

export interface AuditSinkOptions {
  /** `stdout`, or a file path (opened for appending). */
  readonly to: string
  /** seed_0 of the chain (audit.chain_key); the writer keeps its own copy. */
  readonly chainKey: Buffer
  readonly metrics?: Metrics
  readonly maxBacklogBytes?: number
  /** Where the sink reports its own trouble (the operational log). */
  readonly onProblem?: (message: string, fields: Record<string, unknown>) => void
  /** A destination to write to instead of `to`, sealed in this thread (tests). */
  readonly stream?: Writable
}

/** The worker script next to this module (dist/), or the built one when running from source (tests). */
function workerScript(): URL | null {
  for (const candidate of ['./sink-worker.js', '../dist/audit/sink-worker.js']) {
    const url = new URL(candidate, import.meta.url)
    if (existsSync(fileURLToPath(url))) return url
  }
  return null
}

/** The largest power of two not above half the backlog, within the ring's bounds. */
export function ringBytesFor(maxBacklogBytes: number): number {
  let size = MIN_RING_BYTES
  while (size * 2 <= Math.min(maxBacklogBytes / 2, MAX_RING_BYTES)) size *= 2
  return size
}

let lastMs = 0
let lastIso = ''

/** The time as ISO 8601, formatted once per millisecond. */
function isoNow(): string {
  const ms = Date.now()
  if (ms !== lastMs) {
    lastMs = ms
    lastIso = new Date(ms).toISOString()
  }
  return lastIso
}

/** No level or pid: every audit line is an event. With the level gone, the time must not start with pino's comma. */
const isoTimeFirst = (): string => `"time":"${isoNow()}"`

const TWO_TO_32 = 0x1_0000_0000
let sinksOpened = 0

/** Whether the consumer holds a fragment; ordered, so that the worst of several is their maximum. */
const Hold = { Held: 0, NoRoom: 1, TooBig: 2 } as const
type Hold = (typeof Hold)[keyof typeof Hold]

export class AuditSink {
  private readonly options: AuditSinkOptions
  private readonly pino: PinoLogger
  private readonly maxBacklog: number
  private readonly ring: RingWriter
  private readonly wakeBytes: number
  /** The consumer in this thread (a stream given by a test, or no worker script). */
  private readonly local: RingDrain | null
  private readonly worker: Worker | null
  /** Distinguishes this sink's fragment definitions from another's (tests run several). */
  private readonly id = ++sinksOpened
  /** Fragment definitions written to the ring so far (the slot of the next is this modulo FRAGMENT_SLOTS). */
  private definitions = 0
  private wakeScheduled = false
  /** Bytes put in the ring since the consumer was last woken. */
  private sinceWake = 0
  /** Lines handed over and not yet added to the written counter (it is updated per wake-up). */
  private uncounted = 0
  private dropped = 0
  private droppedSince: string | null = null
  /** Whether the last enqueue() got its line through. */
  private enqueued = false
  /** The worker failed: every line is dropped and counted. */
  private broken = false
  /** The worker thread has ended (close must not wait for it then). */
  private workerExited = false
  private closed = false
  private whenClosed: (() => void) | null = null

  private constructor(options: AuditSinkOptions) {
    this.options = options
    this.maxBacklog = options.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG_BYTES
    const ringBytes = ringBytesFor(this.maxBacklog)
    const destinationLimit = Math.max(this.maxBacklog - ringBytes, 0)
    const memory = createRingMemory(ringBytes)
    this.ring = new RingWriter(memory)
    if (options.metrics !== undefined) options.metrics.beforeScrape.audit = () => this.reportWritten()
    this.wakeBytes = Math.min(WAKE_BYTES, ringBytes / 4)
    this.pino = pino({ base: null, timestamp: isoTimeFirst, formatters: { level: () => ({}) } }, { write: (serialized: string) => this.enqueue(serialized) })
    const script = options.stream === undefined ? workerScript() : null
    if (script === null) {
      this.worker = null
      const writer = new ChainWriter(options.stream === undefined ? { to: options.to, chainKey: options.chainKey } : { to: options.to, chainKey: options.chainKey, stream: options.stream }, {
        written: () => this.local?.written(),
        problem: (message, fields, lost) => this.onProblem(message, fields, lost),
        dropped: (lines) => this.options.metrics?.auditLinesDroppedTotal.inc(lines),
      })
      this.local = new RingDrain(new RingReader(memory), writer, destinationLimit)
      return
    }
    // Fail at start-up with the path in the message, not later in the worker.
    if (options.to !== 'stdout') closeSync(openSync(options.to, 'a', 0o600))
    this.local = null
    const workerData: AuditWorkerData = { to: options.to, chainKey: new Uint8Array(options.chainKey), startedAt: isoNow(), ring: memory, destinationLimit }
    this.worker = new Worker(script, { workerData })
    this.worker.unref()
    this.worker.on('message', (message: FromAuditWorker) => this.onWorkerMessage(message))
    this.worker.once('exit', () => {
      this.workerExited = true
      this.broken = true
      this.whenClosed?.()
    })
    this.worker.on('error', (error) => {
      this.broken = true
      this.onProblem('the audit worker failed; audit lines are dropped and counted', { error: error.message }, 0)
    })
  }

  /** Opens the destination (throws with the path when a file cannot be opened) and starts the first chain. */
  static open(options: AuditSinkOptions): AuditSink {
    return new AuditSink(options)
  }

  /** Record one event; never throws, never waits. */
  write(event: AuditEvent): void {
    if (this.admit()) this.pino.info(event)
  }

  /**
   * Record one event given as pre-serialized JSON object members (`"event":"statement",…`),
   * for a statement line that failed (rare: its outcome is not a fragment).
   */
  writeMembers(members: string): void {
    if (this.admit()) this.enqueue(`{"time":"${isoNow()}",${members}}`)
  }

  /**
   * Record the line `{"time":"…",` + the four fragments + the duration in
   * milliseconds (rounded to the microsecond) + the tail fragment, as a template
   * record: the fragments' bytes are not copied here (line-template.ts).
   */
  writeTemplate(first: LineFragment, second: LineFragment, third: LineFragment, fourth: LineFragment, durationMs: number, tail: LineFragment): void {
    if (!this.admit()) return
    const ms = Date.now()
    const micros = durationMs > 0 ? Math.round(durationMs * 1000) : 0
    const held = Math.max(this.hold(first), this.hold(second), this.hold(third), this.hold(fourth), this.hold(tail))
    if (held === Hold.TooBig) {
      this.writeBody(composeTemplateLine(ms, first, second, third, fourth, micros, tail))
      return
    }
    const at = held === Hold.Held ? this.ring.reserve(TEMPLATE_BYTES) : -1
    if (at < 0) {
      this.drop()
      return
    }
    const words = this.ring.words
    const word = at >> 2
    words[word] = RecordType.Template
    words[word + 1] = ms >>> 0
    words[word + 2] = Math.floor(ms / TWO_TO_32)
    words[word + 3] = micros >>> 0
    words[word + 4] = Math.floor(micros / TWO_TO_32)
    words[word + 5] = first.slot
    words[word + 6] = second.slot
    words[word + 7] = third.slot
    words[word + 8] = fourth.slot
    words[word + 9] = tail.slot
    this.ring.commit(TEMPLATE_BYTES)
    this.handedOver(TEMPLATE_BYTES)
  }

  /** Make sure the consumer holds `fragment` until the next template is read, defining it (again) when needed. */
  private hold(fragment: LineFragment): Hold {
    // Up to TEMPLATE_FRAGMENTS definitions may follow before the template: its fragments must outlive them.
    if (fragment.owner === this.id && this.definitions - fragment.definedAt <= FRAGMENT_SLOTS - TEMPLATE_FRAGMENTS) return Hold.Held
    const bytes = FRAGMENT_HEADER_BYTES + fragment.bytes.length
    if (bytes > this.ring.maxBody) return Hold.TooBig
    const at = this.ring.reserve(bytes)
    if (at < 0) return Hold.NoRoom
    const slot = this.definitions % FRAGMENT_SLOTS
    this.ring.words[at >> 2] = RecordType.Fragment
    this.ring.words[(at >> 2) + 1] = slot
    this.ring.bytes.set(fragment.bytes, at + FRAGMENT_HEADER_BYTES)
    this.ring.commit(bytes)
    fragment.owner = this.id
    fragment.slot = slot
    fragment.definedAt = this.definitions++
    return Hold.Held
  }

  /** SIGUSR1: close the current chain, reopen the file (moved away by a log rotator), start a new chain. */
  rotate(): void {
    if (this.closed) return
    this.reportWritten()
    if (this.local !== null) this.local.rotate(this.ring.position, isoNow())
    else this.post({ type: 'rotate', at: isoNow(), head: this.ring.position })
  }

  /** Close the chain and flush the destination. */
  async close(): Promise<void> {
    if (this.closed) return
    // Lines dropped and not yet announced are announced now, while the chain is open; by the consumer when the ring is full.
    const dropped: DroppedLines | null = this.dropped > 0 && !this.announceDropped() ? { count: this.dropped, since: this.droppedSince } : null
    this.closed = true
    this.sinceWake = 0
    this.reportWritten()
    const head = this.ring.position
    if (this.local !== null) return this.local.close(head, isoNow(), dropped)
    if (this.workerExited) return
    await new Promise<void>((resolve) => {
      this.whenClosed = resolve
      this.post({ type: 'close', at: isoNow(), head, dropped })
    })
  }

  /** False (and the line counted as dropped) when the sink cannot take it. */
  private admit(): boolean {
    if (this.closed) return false
    if (this.broken) {
      this.drop()
      return false
    }
    if (this.dropped > 0 && this.ring.used <= this.ring.size / 2) this.announceDropped()
    return true
  }

  private drop(): void {
    if (this.dropped === 0) this.droppedSince = new Date().toISOString()
    this.dropped++
    this.options.metrics?.auditLinesDroppedTotal.inc()
  }

  /** Writes the announcement of the lines dropped so far; false when it could not be written (counted again). */
  private announceDropped(): boolean {
    const count = this.dropped
    const since = this.droppedSince
    this.dropped = 0
    this.droppedSince = null
    this.options.onProblem?.('audit lines were dropped: the audit destination is too slow', { dropped: count, since })
    this.pino.info({ event: 'audit_lines_dropped', count, since, reason: 'backlog' })
    if (this.enqueued) return true
    // The announcement was dropped itself: the count carries on, the announcement too.
    this.dropped += count
    this.droppedSince = since
    return false
  }

  /** A line serialized by pino (with its newline). */
  private enqueue(serialized: string): void {
    const text = serialized.endsWith('\n') ? serialized.slice(0, -1) : serialized
    // UTF-8 takes at most 3 bytes per UTF-16 unit; the exact length only when that bound is too big for the ring.
    let bound = text.length * 3
    if (bound > this.ring.maxBody) bound = Buffer.byteLength(text)
    this.enqueued = false
    if (bound > this.ring.maxBody) {
      this.writeBody(Buffer.from(text))
      return
    }
    const at = this.ring.reserve(bound)
    if (at < 0) {
      this.drop()
      return
    }
    const length = this.ring.bytes.write(text, at, bound, 'utf8')
    this.ring.commit(length)
    this.handedOver(length)
  }

  /** A whole line body: into the ring, or by message when it is too big for it. */
  private writeBody(body: Buffer): void {
    this.enqueued = false
    if (body.length <= this.ring.maxBody) {
      const at = this.ring.reserve(body.length)
      if (at < 0) {
        this.drop()
        return
      }
      this.ring.bytes.set(body, at)
      this.ring.commit(body.length)
    } else if (this.ring.oversizedBytes + body.length > this.maxBacklog / 2 || !this.handOverOversized(body)) {
      this.drop()
      return
    }
    this.handedOver(body.length)
  }

  /** A line is in the ring (or on its way): count it, and wake the consumer soon. */
  private handedOver(bytes: number): void {
    this.enqueued = true
    this.uncounted++
    this.sinceWake += bytes
    if (this.sinceWake >= this.wakeBytes) this.wake()
    else if (!this.wakeScheduled) {
      this.wakeScheduled = true
      setTimeout(this.wake, WAKE_INTERVAL_MS).unref()
    }
  }

  /** The marker goes into the ring, the bytes by message (or straight to the consumer in this thread). */
  private handOverOversized(body: Buffer): boolean {
    if (!this.ring.markOversized(body.length)) return false
    if (this.local !== null) this.local.addOversized(body)
    else this.post({ type: 'oversized', body })
    return true
  }

  /** Let the consumer take what waits in the ring (the timer may still fire: it then finds nothing new). */
  private readonly wake = (): void => {
    this.wakeScheduled = false
    if (this.sinceWake === 0) return
    this.sinceWake = 0
    // The head as of now: a wake-up handled after a later rotate() must not take lines past the rotation.
    const head = this.ring.position
    if (this.local !== null) this.local.drain(head)
    else this.post({ type: 'drain', head })
    this.reportWritten()
  }

  private reportWritten(): void {
    const metrics = this.options.metrics
    if (metrics === undefined) return
    if (this.uncounted > 0) metrics.auditLinesWrittenTotal.inc(this.uncounted)
    this.uncounted = 0
    metrics.auditBacklogBytes.set(this.ring.used + this.ring.oversizedBytes + this.ring.destinationBacklog)
  }

  private post(message: ToAuditWorker): void {
    this.worker?.postMessage(message)
  }

  private onWorkerMessage(message: FromAuditWorker): void {
    switch (message.type) {
      case 'problem':
        this.onProblem(message.message, message.fields, message.lost)
        break
      case 'dropped':
        this.options.metrics?.auditLinesDroppedTotal.inc(message.lines)
        break
      case 'failed':
        this.broken = true
        this.onProblem('the audit worker could not start; audit lines are dropped and counted', { error: message.message }, 0)
        break
      case 'closed':
        this.whenClosed?.()
        break
    }
  }

  private onProblem(message: string, fields: Record<string, unknown>, lost: number): void {
    const metrics = this.options.metrics
    metrics?.auditSinkErrorsTotal.inc()
    if (lost > 0) metrics?.auditLinesDroppedTotal.inc(lost)
    this.options.onProblem?.(message, { ...fields, lost })
  }
}

