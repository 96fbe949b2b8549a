/**
 * The consuming end of the audit ring (line-ring.ts): takes the records the proxy
 * wrote into the ring (lines, templates expanded here, fragment definitions; see
 * line-template.ts), puts each line body straight into the ChainWriter's output
 * chunk to be sealed where it lies, frees their space in the ring, and has the
 * writer write the batch.
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

/** Lines taken between two releases of their ring space (and writes of the destination). */
const LINES_PER_RELEASE = 1024

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
  private readonly expander = new TemplateExpander()
  /** An oversized marker was reached before its message: wait for it. */
  private awaitingOversized = false
  /** Stopped because the destination is behind: resumes when a write completes. */
  private paused = false
  /**
   * How far the proxy has said lines may be taken: the ring position of its last
   * message. Not the live head: a wake-up handled after a rotation was asked for
   * must not take lines written after it into the chain that rotation closes.
   */
  private limit: number

  constructor(ring: RingReader, writer: ChainWriter, destinationLimit: number) {
    this.ring = ring
    this.writer = writer
    this.destinationLimit = destinationLimit
    this.limit = ring.head
  }

  /** The proxy's wake-up: lines before `head` are waiting. */
  drain(head: number): void {
    this.allowTo(head)
    this.resume()
  }

  /** Positions are 32-bit counters that wrap: the limit only moves forward (never below what was taken). */
  private allowTo(head: number): void {
    if (((head - this.limit) | 0) > 0) this.limit = head
  }

  /** Take the lines allowed so far, unless the destination is too far behind. */
  private resume(): void {
    if (this.awaitingOversized) return
    if (this.writer.backlogBytes > this.destinationLimit) {
      this.paused = true
      return
    }
    this.paused = false
    this.take(this.limit, false)
  }

  /** A line that did not fit in the ring arrived (its marker is, or will be, in the ring). */
  addOversized(body: Buffer): void {
    if (!this.awaitingOversized) {
      this.oversized.push(body)
      return
    }
    this.awaitingOversized = false
    this.sealOversized(body)
    this.resume()
  }

  /**
   * A write reached the destination: report the backlog, and go on if the drain
   * had stopped for it (otherwise the next wake-up comes from the proxy, so that
   * lines are sealed in batches rather than after every write).
   */
  written(): void {
    this.ring.reportDestinationBacklog(this.writer.backlogBytes)
    if (this.paused) this.resume()
  }

  /** Every line written before `head`, whatever the destination's backlog. */
  private drainTo(head: number): void {
    this.allowTo(head)
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
    const bytes = ring.bytes
    const words = ring.words
    let lines = 0
    for (;;) {
      const record = ring.next(head)
      if (record === 'line') {
        const type = bytes[ring.start]
        if (type === RecordType.Fragment) {
          this.expander.define(bytes, words, ring.start, ring.end)
          continue
        }
        // A destination that failed and was not reopened takes nothing: counted as dropped.
        if (!writer.accepting) {
          writer.discard()
          continue
        }
        if (type === RecordType.Template) {
          writer.reserve(this.expander.expandedBytes(words, ring.start))
          writer.completeLine(this.expander.expand(words, ring.start, writer.out, writer.end))
        } else {
          writer.reserve(ring.end - ring.start)
          writer.out.set(bytes.subarray(ring.start, ring.end), writer.end)
          writer.completeLine(writer.end + ring.end - ring.start)
        }
        if (++lines < LINES_PER_RELEASE) continue
      } else if (record === 'oversized') {
        writer.flush()
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
      writer.flush()
      lines = 0
      if (record === null) break
      if (!all && writer.backlogBytes > this.destinationLimit) {
        this.paused = true
        break
      }
    }
    ring.reportDestinationBacklog(this.writer.backlogBytes)
  }

  private sealOversized(body: Buffer): void {
    this.writer.writeLine(body)
    this.ring.oversizedDone(body.length)
  }
}
