/**
 * The audit log's sink on the proxy's side: events are serialized by pino (or,
 * for the per-statement line, assembled from pre-serialized members), collected
 * for a few milliseconds, and handed in one batch to the audit worker
 * thread (sink-worker.ts), which completes, seals (chain.ts) and appends them to
 * the destination (stdout or a file), separate from the operational log.
 *
 * Writing never blocks the data path. Policy for a slow or full destination:
 * drop, with a counter and an event. When more than `maxBacklogBytes` are handed
 * over but not yet written, new lines are dropped before they are sealed (so the
 * chain stays whole), counted in pgveil_audit_lines_dropped_total, and, once the
 * backlog is half gone, an `audit_lines_dropped` line says how many and since
 * when. A write error (full disk) counts the unconfirmed lines as lost, reopens
 * the file and starts a new chain whose first line says why and how many.
 */
import { closeSync, existsSync, openSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { pino, type Logger as PinoLogger } from 'pino'
import { ChainWriter } from './chain-writer.js'
import type { AuditEvent } from './events.js'
import type { Metrics } from './metrics.js'
import type { FromAuditWorker, ToAuditWorker } from './sink-worker.js'

export const DEFAULT_MAX_BACKLOG_BYTES = 16 * 1024 * 1024
/**
 * Lines are handed to the worker every few milliseconds, or sooner once this
 * many bytes wait: waking the worker per event-loop turn costs more than the
 * sealing itself on a busy machine. A crash loses at most this window.
 */
const FLUSH_INTERVAL_MS = 5
const FLUSH_BYTES = 256 * 1024

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

export class AuditSink {
  private readonly options: AuditSinkOptions
  private readonly pino: PinoLogger
  private readonly maxBacklog: number
  private readonly local: ChainWriter | null
  private readonly worker: Worker | null
  private batch: string[] = []
  private batchBytes = 0
  private flushScheduled = false
  /** Bytes handed to the worker and not yet reported written. */
  private inFlight = 0
  private dropped = 0
  private droppedSince: string | null = null
  private closed = false
  private whenClosed: (() => void) | null = null

  private constructor(options: AuditSinkOptions) {
    this.options = options
    this.maxBacklog = options.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG_BYTES
    this.pino = pino({ base: null, timestamp: isoTimeFirst, formatters: { level: () => ({}) } }, { write: (serialized: string) => this.enqueue(serialized.endsWith('\n') ? serialized.slice(0, -1) : serialized) })
    const script = options.stream === undefined ? workerScript() : null
    if (script === null) {
      this.worker = null
      this.local = new ChainWriter(options.stream === undefined ? { to: options.to, chainKey: options.chainKey } : { to: options.to, chainKey: options.chainKey, stream: options.stream }, {
        written: () => {},
        problem: (message, fields, lost) => this.onProblem(message, fields, lost),
      })
      return
    }
    // Fail at start-up with the path in the message, not later in the worker.
    if (options.to !== 'stdout') closeSync(openSync(options.to, 'a', 0o600))
    this.local = null
    this.worker = new Worker(script, { workerData: { to: options.to, chainKey: new Uint8Array(options.chainKey), startedAt: isoNow() } })
    this.worker.unref()
    this.worker.on('message', (message: FromAuditWorker) => this.onWorkerMessage(message))
    this.worker.on('error', (error) => this.onProblem('the audit worker failed; audit lines are dropped and counted', { error: error.message }, 0))
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
   * for the per-statement line: assembled from fragments serialized once per session
   * and per statement shape, like pino's child bindings.
   */
  writeMembers(members: string): void {
    if (this.admit()) this.enqueue(`{"time":"${isoNow()}",${members}}`)
  }

  /** SIGUSR1: close the current chain, reopen the file (moved away by a log rotator), start a new chain. */
  rotate(): void {
    if (this.closed) return
    this.flush()
    if (this.local !== null) this.local.rotate()
    else this.post({ type: 'rotate', at: isoNow() })
  }

  /** Close the chain and flush the destination. */
  async close(): Promise<void> {
    if (this.closed) return
    // Lines dropped and not yet announced are announced now, while the chain is open.
    if (this.dropped > 0) this.announceDropped()
    this.flush()
    this.closed = true
    if (this.local !== null) return this.local.close()
    const worker = this.worker!
    await new Promise<void>((resolve) => {
      this.whenClosed = resolve
      worker.once('exit', () => resolve())
      this.post({ type: 'close', at: isoNow() })
    })
  }

  private get backlog(): number {
    return this.batchBytes + (this.local === null ? this.inFlight : this.local.backlogBytes)
  }

  /** False (and the line counted as dropped) when the destination is too far behind. */
  private admit(): boolean {
    if (this.closed) return false
    const backlog = this.backlog
    if (backlog > this.maxBacklog) {
      if (this.dropped === 0) this.droppedSince = new Date().toISOString()
      this.dropped++
      this.options.metrics?.auditLinesDroppedTotal.inc()
      return false
    }
    if (this.dropped > 0 && backlog <= this.maxBacklog / 2) this.announceDropped()
    return true
  }

  private announceDropped(): void {
    const count = this.dropped
    const since = this.droppedSince
    this.dropped = 0
    this.droppedSince = null
    this.options.onProblem?.('audit lines were dropped: the audit destination is too slow', { dropped: count, since })
    this.pino.info({ event: 'audit_lines_dropped', count, since, reason: 'backlog' })
  }

  private enqueue(body: string): void {
    this.batch.push(body)
    // With the chain id, sequence number and MAC the worker adds.
    this.batchBytes += body.length + 120
    this.options.metrics?.auditLinesWrittenTotal.inc()
    if (this.batchBytes >= FLUSH_BYTES) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      setTimeout(this.flush, FLUSH_INTERVAL_MS).unref()
    }
  }

  /** Hand the batch over (the timer may still fire: it then finds an empty batch). */
  private readonly flush = (): void => {
    this.flushScheduled = false
    if (this.batch.length === 0) return
    const batch = this.batch
    const bytes = this.batchBytes
    this.batch = []
    this.batchBytes = 0
    if (this.local !== null) this.local.writeBatch(Buffer.from(batch.join('\n')))
    else {
      this.inFlight += bytes
      this.post({ type: 'lines', text: batch.join('\n'), bytes })
    }
    this.options.metrics?.auditBacklogBytes.set(this.backlog)
  }

  private post(message: ToAuditWorker): void {
    this.worker?.postMessage(message)
  }

  private onWorkerMessage(message: FromAuditWorker): void {
    switch (message.type) {
      case 'written':
        this.inFlight = Math.max(0, this.inFlight - message.bytes)
        break
      case 'problem':
        this.onProblem(message.message, message.fields, message.lost)
        break
      case 'failed':
        this.onProblem('the audit worker could not start; audit lines are dropped and counted', { error: message.message }, 0)
        this.inFlight = Number.POSITIVE_INFINITY
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
