/**
 * The audit log's sink: events are serialized by pino, sealed into the chain
 * (chain.ts) and handed to the destination (stdout or an append-only file),
 * separate from the operational log.
 *
 * Writing never blocks the data path: a line goes into the destination stream's
 * buffer and the caller moves on. Policy for a slow or full destination: drop,
 * with a counter and an event. When more than `maxBacklogBytes` wait, new lines
 * are dropped before they are sealed (so the chain stays whole), counted in
 * pgveil_audit_lines_dropped_total, and, once the backlog is half gone, an
 * `audit_lines_dropped` line says how many and since when. A write error (full
 * disk) counts the unconfirmed lines as lost, reopens the file and starts a new
 * chain whose first line says why and how many lines were lost.
 */
import { createWriteStream, openSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { pino, type Logger as PinoLogger } from 'pino'
import { CHAIN_FORMAT_VERSION, ChainSealer } from './chain.js'
import type { AuditEvent } from './events.js'
import type { Metrics } from './metrics.js'

export const DEFAULT_MAX_BACKLOG_BYTES = 16 * 1024 * 1024

export interface AuditSinkOptions {
  /** `stdout`, or a file path (opened for appending). */
  readonly to: string
  /** seed_0 of the chain (audit.chain_key); the sink keeps its own copy. */
  readonly chainKey: Buffer
  readonly metrics?: Metrics
  readonly maxBacklogBytes?: number
  /** Where the sink reports its own trouble (the operational log). */
  readonly onProblem?: (message: string, fields: Record<string, unknown>) => void
  /** A destination to write to instead of `to` (tests). */
  readonly stream?: Writable
}

const isoTimeFirst = (): string => `"time":"${new Date().toISOString()}"`

type ChainStartReason = 'startup' | 'rotation' | 'sink_error'

export class AuditSink {
  private readonly options: AuditSinkOptions
  private readonly sealer: ChainSealer
  private readonly pino: PinoLogger
  private readonly maxBacklog: number
  private stream: Writable
  /** Lines handed to the stream whose write has not been confirmed. */
  private unconfirmed = 0
  private dropped = 0
  private droppedSince: string | null = null
  private broken = false
  private closed = false

  private constructor(options: AuditSinkOptions) {
    this.options = options
    this.maxBacklog = options.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG_BYTES
    this.sealer = new ChainSealer(options.chainKey)
    this.stream = this.openStream()
    this.pino = pino(
      // No level or pid: every audit line is an event. With the level gone, the time must not start with pino's comma.
      { base: null, timestamp: isoTimeFirst, formatters: { level: () => ({}) } },
      { write: (serialized: string) => this.seal(serialized) },
    )
  }

  /** Opens the destination (throws with the path when a file cannot be opened) and starts the first chain. */
  static open(options: AuditSinkOptions): AuditSink {
    const sink = new AuditSink(options)
    sink.beginChain('startup', null)
    return sink
  }

  /** Record one event; never throws, never waits. */
  write(event: AuditEvent): void {
    if (this.closed) return
    if (this.broken || this.stream.writableLength > this.maxBacklog) {
      this.drop()
      return
    }
    if (this.dropped > 0 && this.stream.writableLength <= this.maxBacklog / 2) this.announceDropped()
    this.emit(event)
  }

  /**
   * Record one event given as pre-serialized JSON object members (`"event":"statement",…`),
   * for the per-statement line: assembled from fragments serialized once per session
   * and per statement shape, like pino's child bindings. Never throws, never waits.
   */
  writeMembers(members: string): void {
    if (this.closed) return
    if (this.broken || this.stream.writableLength > this.maxBacklog) {
      this.drop()
      return
    }
    if (this.dropped > 0 && this.stream.writableLength <= this.maxBacklog / 2) this.announceDropped()
    this.seal(`{"time":"${new Date().toISOString()}",${members},"chain":"${this.sealer.id}","seq":${this.sealer.seq}}`)
  }

  /** SIGUSR1: close the current chain, reopen the file (moved away by a log rotator), start a new chain. */
  rotate(): void {
    if (this.closed) return
    const previous = this.endChain()
    if (this.options.stream === undefined && this.options.to !== 'stdout') {
      this.stream.end()
      this.stream = this.openStream()
      this.broken = false
    }
    this.beginChain('rotation', previous)
  }

  /** Close the chain and flush the destination. */
  async close(): Promise<void> {
    if (this.closed) return
    this.endChain()
    this.closed = true
    this.sealer.erase()
    const stream = this.stream
    if (stream === process.stdout || this.options.stream !== undefined) {
      // Not ours to end: an empty write's callback runs once everything before it is written.
      if (stream.writable) await new Promise<void>((resolve) => stream.write('', () => resolve()))
      return
    }
    await new Promise<void>((resolve) => stream.end(resolve))
  }

  private emit(event: AuditEvent): void {
    // chain and seq go with the body the MAC covers; pino serializes synchronously into seal().
    this.pino.info({ ...event, chain: this.sealer.id, seq: this.sealer.seq })
  }

  private readonly seal = (serialized: string): void => {
    const line = this.sealer.seal(serialized.endsWith('\n') ? serialized.slice(0, -1) : serialized) + '\n'
    this.unconfirmed++
    this.stream.write(line, this.onWritten)
    const metrics = this.options.metrics
    if (metrics !== undefined) {
      metrics.auditLinesWrittenTotal.inc()
      metrics.auditBacklogBytes.set(this.stream.writableLength)
    }
  }

  private readonly onWritten = (error?: Error | null): void => {
    if (error == null) this.unconfirmed--
  }

  private drop(): void {
    if (this.dropped === 0) this.droppedSince = new Date().toISOString()
    this.dropped++
    this.options.metrics?.auditLinesDroppedTotal.inc()
  }

  private announceDropped(): void {
    const count = this.dropped
    const since = this.droppedSince
    this.dropped = 0
    this.droppedSince = null
    this.options.onProblem?.('audit lines were dropped: the audit destination is too slow', { dropped: count, since })
    this.emit({ event: 'audit_lines_dropped', count, since, reason: 'backlog' })
  }

  private beginChain(reason: ChainStartReason, previous: { chain: string; lines: number; mac: string } | null, extra: Record<string, unknown> = {}): void {
    const { id, epoch } = this.sealer.begin()
    this.pino.info({ event: 'chain_start', chain: id, seq: 0, version: CHAIN_FORMAT_VERSION, epoch, reason, previous, ...extra })
  }

  private endChain(): { chain: string; lines: number; mac: string } {
    if (!this.broken) this.emit({ event: 'chain_end', lines: this.sealer.lines })
    return { chain: this.sealer.id, lines: this.sealer.lines, mac: this.sealer.lastMac }
  }

  private openStream(): Writable {
    if (this.options.stream !== undefined) return this.attach(this.options.stream)
    if (this.options.to === 'stdout') return this.attach(process.stdout)
    const fd = openSync(this.options.to, 'a', 0o600)
    return this.attach(createWriteStream('', { fd, flags: 'a' }))
  }

  private attach(stream: Writable): Writable {
    stream.on('error', (error: NodeJS.ErrnoException) => this.onStreamError(stream, error))
    return stream
  }

  private onStreamError(stream: Writable, error: NodeJS.ErrnoException): void {
    if (stream !== this.stream || this.closed) return
    const lost = this.unconfirmed
    this.unconfirmed = 0
    this.options.metrics?.auditSinkErrorsTotal.inc()
    if (lost > 0) this.options.metrics?.auditLinesDroppedTotal.inc(lost)
    this.options.onProblem?.('the audit destination failed; lines not yet written are lost', { to: this.options.to, error: error.code ?? error.message, lost })
    this.broken = true
    if (this.options.stream !== undefined || this.options.to === 'stdout') return
    try {
      this.stream = this.openStream()
    } catch (reopen) {
      this.options.onProblem?.('cannot reopen the audit file; audit lines are dropped and counted until SIGUSR1 reopens it', { to: this.options.to, error: (reopen as Error).message })
      return
    }
    this.broken = false
    this.beginChain('sink_error', null, { lost_lines: lost, error: error.code ?? 'write error' })
  }
}
