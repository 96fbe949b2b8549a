/**
 * The consuming end of the audit ring (line-ring.ts): takes the records the proxy
 * wrote into the ring (lines, templates expanded here, fragment definitions; see
 * line-template.ts), gathers the line bodies of a batch in one buffer, frees
 * their space in the ring, and hands the batch to the ChainWriter to seal.
 *
 * Drop policy, this side: while the destination holds more than `destinationLimit`
 * bytes not yet written, the drain stops taking lines, so a slow destination fills
 * the ring and the proxy drops (and counts, and later announces) new lines before
 * they are sealed: the chain stays whole. Each confirmed write resumes it.
 * Rotation and close take every line written before them, whatever the backlog.
 */
import type { ChainWriter } from './chain-writer.js'
import type { RingReader } from './line-ring.js'
import { RecordType, TemplateExpander } from './line-template.js'

/** Lines sealed into one output chunk at most. */
const MAX_BATCH_LINES = 1024
const BATCH_BYTES = 512 * 1024

export interface DroppedLines {
  readonly count: number
  readonly since: string | null
}

export class RingDrain {
  private readonly ring: RingReader
  private readonly writer: ChainWriter
  private readonly destinationLimit: number
  /** Lines too big for the ring, in the order they arrived (their markers are in the ring). */
  private readonly oversized: Buffer[] = []
  private readonly starts = new Int32Array(MAX_BATCH_LINES)
  private readonly ends = new Int32Array(MAX_BATCH_LINES)
  /** The bodies of the batch being gathered, and the same memory as a plain Uint8Array (its subarrays cost less than a Buffer's). */
  private batch = Buffer.allocUnsafe(BATCH_BYTES)
  private batchBytes = new Uint8Array(this.batch.buffer, this.batch.byteOffset, this.batch.length)
  private readonly expander = new TemplateExpander()
  /** An oversized marker was reached before its message: wait for it. */
  private awaitingOversized = false
  /** Stopped because the destination is behind: resumes when a write completes. */
  private paused = false

  constructor(ring: RingReader, writer: ChainWriter, destinationLimit: number) {
    this.ring = ring
    this.writer = writer
    this.destinationLimit = destinationLimit
  }

  /** New lines may be waiting (the proxy's periodic wake-up, or a write completed). */
  drain(): void {
    if (this.awaitingOversized) return
    if (this.writer.backlogBytes > this.destinationLimit) {
      this.paused = true
      return
    }
    this.paused = false
    this.take(this.ring.head, false)
  }

  /** A line that did not fit in the ring arrived (its marker is, or will be, in the ring). */
  addOversized(body: Buffer): void {
    if (!this.awaitingOversized) {
      this.oversized.push(body)
      return
    }
    this.awaitingOversized = false
    this.sealOversized(body)
    this.drain()
  }

  /**
   * A write reached the destination: report the backlog, and go on if the drain
   * had stopped for it (otherwise the next wake-up comes from the proxy, so that
   * lines are sealed in batches rather than after every write).
   */
  written(): void {
    this.ring.reportDestinationBacklog(this.writer.backlogBytes)
    if (this.paused) this.drain()
  }

  /** Every line written before `head`, whatever the destination's backlog. */
  private drainTo(head: number): void {
    if (!this.awaitingOversized) this.take(head, true)
  }

  /** SIGUSR1: the lines before `head` end the current chain; the writer reopens the file and starts a new one. */
  rotate(head: number, at: string): void {
    this.drainTo(head)
    this.writer.rotate(at)
  }

  /** Close: the lines before `head`, the drop announcement the proxy could not write, then the chain's end. */
  async close(head: number, at: string, dropped: DroppedLines | null): Promise<void> {
    this.drainTo(head)
    if (dropped !== null) this.writer.writeLine(Buffer.from(JSON.stringify({ time: at, event: 'audit_lines_dropped', count: dropped.count, since: dropped.since, reason: 'backlog' })))
    await this.writer.close(at)
  }

  private take(head: number, all: boolean): void {
    const ring = this.ring
    const bytes = ring.bytes
    const words = ring.words
    let count = 0
    let used = 0
    for (;;) {
      const record = ring.next(head)
      if (record === 'line') {
        const type = bytes[ring.start]
        if (type === RecordType.Fragment) {
          this.expander.define(bytes, words, ring.start, ring.end)
          continue
        }
        const need = type === RecordType.Template ? this.expander.expandedBytes(words, ring.start) : ring.end - ring.start
        if (used + need > this.batch.length) {
          this.seal(count)
          count = 0
          used = 0
          if (need > this.batch.length) {
            this.batch = Buffer.allocUnsafe(need)
            this.batchBytes = new Uint8Array(this.batch.buffer, this.batch.byteOffset, this.batch.length)
          }
        }
        this.starts[count] = used
        if (type === RecordType.Template) used = this.expander.expand(words, ring.start, this.batch, used)
        else {
          this.batch.set(bytes.subarray(ring.start, ring.end), used)
          used += need
        }
        this.ends[count] = used
        if (++count < MAX_BATCH_LINES) continue
      } else if (record === 'oversized') {
        this.seal(count)
        count = 0
        used = 0
        const body = this.oversized.shift()
        if (body !== undefined) {
          this.sealOversized(body)
          continue
        }
        // Its message is posted right after the marker is published, so it is on its way: seal nothing past it meanwhile.
        ring.release()
        this.awaitingOversized = true
        break
      }
      ring.release()
      this.seal(count)
      count = 0
      used = 0
      if (record === null) break
      if (!all && this.writer.backlogBytes > this.destinationLimit) {
        this.paused = true
        break
      }
    }
    ring.reportDestinationBacklog(this.writer.backlogBytes)
  }

  private seal(count: number): void {
    this.writer.writeLines(this.batchBytes, this.starts, this.ends, count)
  }

  private sealOversized(body: Buffer): void {
    this.writer.writeLine(body)
    this.ring.oversizedDone(body.length)
  }
}
