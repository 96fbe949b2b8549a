/**
 * The consuming end of the audit ring (line-ring.ts): takes the lines the proxy
 * wrote into the ring and hands them to the ChainWriter in batches, sealed from
 * the ring's memory into the writer's output buffer, then frees their space.
 *
 * Drop policy, this side: while the destination holds more than `destinationLimit`
 * bytes not yet written, the drain stops taking lines, so a slow destination fills
 * the ring and the proxy drops (and counts, and later announces) new lines before
 * they are sealed: the chain stays whole. Each confirmed write resumes it.
 * Rotation and close take every line written before them, whatever the backlog.
 */
import type { ChainWriter } from './chain-writer.js'
import type { RingReader } from './line-ring.js'

/** Lines sealed into one output chunk at most. */
const MAX_BATCH_LINES = 1024

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
    const writer = this.writer
    let count = 0
    for (;;) {
      const record = ring.next(head)
      if (record === 'line') {
        this.starts[count] = ring.start
        this.ends[count] = ring.end
        if (++count < MAX_BATCH_LINES) continue
      } else if (record === 'oversized') {
        writer.writeLines(ring.bytes, this.starts, this.ends, count)
        count = 0
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
      writer.writeLines(ring.bytes, this.starts, this.ends, count)
      ring.release()
      count = 0
      if (record === null) break
      if (!all && writer.backlogBytes > this.destinationLimit) {
        this.paused = true
        break
      }
    }
    ring.reportDestinationBacklog(writer.backlogBytes)
  }

  private sealOversized(body: Buffer): void {
    this.writer.writeLine(body)
    this.ring.oversizedDone(body.length)
  }
}
