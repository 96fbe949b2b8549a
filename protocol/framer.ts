/**
 * Splits a byte stream into whole protocol frames without copying when it can.
 *
 * A frame that lies inside one incoming chunk is handed out as a `subarray` view of
 * that chunk. Only a frame that straddles chunks is assembled, into a buffer allocated
 * for that frame alone; owned storage is never reused after a frame was handed out,
 * so views stay valid while a socket write holds them.
 *
 * Startup mode reads untyped packets (int32 length first); regular mode reads typed
 * messages (one code byte, then int32 length). The handler switches modes and may
 * return `false` to stop; the rest is kept until `resume()`.
 */
import { ProtocolError } from './errors.js'

/** PostgreSQL refuses startup packets longer than this (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET_LENGTH = 10_000
/** PostgreSQL's own ceiling for one message (PQ_LARGE_MESSAGE_LIMIT is 1 GiB - 1). */
export const MAX_PROTOCOL_MESSAGE_SIZE = 0x3fffffff

/** Receives one whole frame (type byte, length and body; startup packets have no type byte). */
export type FrameHandler = (frame: Buffer) => boolean | void
/**
 * Receives one whole frame as bytes [start, end) of `buffer`, without a view being
 * allocated: the hot passthrough path only looks at a byte or two of most frames.
 */
export type FrameRangeHandler = (buffer: Buffer, start: number, end: number) => boolean | void

function asRangeHandler(onFrame: FrameHandler): FrameRangeHandler {
  return (buffer, start, end) => onFrame(buffer.subarray(start, end))
}

export interface FramerOptions {
  /** Start in startup mode (the frontend side of a fresh connection). */
  startup: boolean
  /** Largest regular frame accepted, type byte included. */
  maxMessageSize: number
  /** Label used in error messages: "client" or "server". */
  peer: string
}

export class MessageFramer {
  private startupMode: boolean
  private readonly maxMessageSize: number
  private readonly peer: string
  /** Assembly buffer for a frame that straddles chunks, or for its header while the length is unknown. */
  private partial: Buffer | null = null
  private partialFilled = 0
  /** Expected total size of the partial frame: header size until the length is known. */
  private partialNeed = 0
  private partialHeaderOnly = false
  private completed: Buffer | null = null
  /** Unprocessed bytes left when a handler stopped the loop. */
  private held: Buffer | null = null
  /** A handler returned false and resume() has not been called since. */
  private isStopped = false

  constructor(options: FramerOptions) {
    this.startupMode = options.startup
    this.maxMessageSize = options.maxMessageSize
    this.peer = options.peer
  }

  /**
   * Switch to typed messages (after StartupMessage) or back to startup packets. Call it
   * from a handler, or while stopped: a header fragment already buffered was read in
   * the old mode.
   */
  setStartupMode(startup: boolean): void {
    if (this.partial !== null && this.partialHeaderOnly && startup !== this.startupMode) {
      throw new ProtocolError(`incomplete message header from ${this.peer} while switching protocol phase`)
    }
    this.startupMode = startup
  }

  get inStartupMode(): boolean {
    return this.startupMode
  }

  /** Bytes received but not yet delivered as frames. */
  get bufferedBytes(): number {
    return (this.held?.length ?? 0) + this.partialFilled
  }

  /** True while a handler's `false` holds frames back. */
  get stopped(): boolean {
    return this.isStopped
  }

  /** Feed bytes. Throws ProtocolError on an impossible length. Returns false if a handler stopped it. */
  push(chunk: Buffer, onFrame: FrameHandler): boolean {
    return this.pushRanges(chunk, asRangeHandler(onFrame))
  }

  /** Like push(), handing out frames as ranges of the chunk (or of an assembled buffer). */
  pushRanges(chunk: Buffer, onFrame: FrameRangeHandler): boolean {
    if (this.isStopped) {
      // Rare: only between a handler's stop and resume (startup negotiation).
      this.held = this.held === null ? chunk : Buffer.concat([this.held, chunk])
      return false
    }
    return this.consume(chunk, onFrame)
  }

  /** Continue after a handler returned false. */
  resume(onFrame: FrameHandler): boolean {
    return this.resumeRanges(asRangeHandler(onFrame))
  }

  resumeRanges(onFrame: FrameRangeHandler): boolean {
    this.isStopped = false
    const held = this.held
    if (held === null) return true
    this.held = null
    return this.consume(held, onFrame)
  }

  /** Drop everything buffered (used when the connection is being closed). */
  reset(): void {
    this.partial = null
    this.partialFilled = 0
    this.held = null
    this.isStopped = false
  }

  private consume(chunk: Buffer, onFrame: FrameRangeHandler): boolean {
    let offset = 0
    if (this.partial !== null) {
      offset = this.fillPartial(chunk)
      if (this.partial !== null) return true // still incomplete, chunk used up
      const frame = this.completed!
      this.completed = null
      if (onFrame(frame, 0, frame.length) === false) {
        this.isStopped = true
        if (offset < chunk.length) this.held = chunk.subarray(offset)
        return false
      }
    }
    const length = chunk.length
    while (offset < length) {
      const headerSize = this.startupMode ? 4 : 5
      if (length - offset < headerSize) {
        this.startPartial(chunk, offset, headerSize, true)
        return true
      }
      const frameSize = this.frameSize(chunk, offset)
      const end = offset + frameSize
      if (end > length) {
        this.startPartial(chunk, offset, frameSize, false)
        return true
      }
      const start = offset
      offset = end
      if (onFrame(chunk, start, end) === false) {
        this.isStopped = true
        if (offset < length) this.held = chunk.subarray(offset)
        return false
      }
    }
    return true
  }

  /** Frame size including the type byte; validates the length field. */
  private frameSize(buf: Buffer, offset: number): number {
    if (this.startupMode) {
      const len = buf.readUInt32BE(offset)
      if (len < 8 || len > MAX_STARTUP_PACKET_LENGTH) {
        throw new ProtocolError(`invalid startup packet length ${len} from ${this.peer} (allowed 8 to ${MAX_STARTUP_PACKET_LENGTH})`)
      }
      return len
    }
    const len = buf.readUInt32BE(offset + 1)
    if (len < 4) throw new ProtocolError(`invalid message length ${len} from ${this.peer}`)
    if (len + 1 > this.maxMessageSize) {
      throw new ProtocolError(`message of ${len + 1} bytes from ${this.peer} exceeds the limit of ${this.maxMessageSize} bytes`)
    }
    return len + 1
  }

  private startPartial(chunk: Buffer, offset: number, need: number, headerOnly: boolean): void {
    this.partialHeaderOnly = headerOnly
    this.partialNeed = need
    this.partial = Buffer.allocUnsafe(need)
    this.partialFilled = chunk.copy(this.partial, 0, offset)
  }

  /** Copy from chunk into the partial frame; returns bytes of chunk used. Sets `completed` when whole. */
  private fillPartial(chunk: Buffer): number {
    let used = 0
    for (;;) {
      const partial = this.partial!
      const take = Math.min(this.partialNeed - this.partialFilled, chunk.length - used)
      chunk.copy(partial, this.partialFilled, used, used + take)
      this.partialFilled += take
      used += take
      if (this.partialFilled < this.partialNeed) return used
      if (!this.partialHeaderOnly) {
        this.completed = partial
        this.partial = null
        this.partialFilled = 0
        return used
      }
      // Header complete: now the frame size is known.
      const size = this.frameSize(partial, 0)
      const whole = Buffer.allocUnsafe(size)
      partial.copy(whole, 0, 0, this.partialFilled)
      this.partial = whole
      this.partialNeed = size
      this.partialHeaderOnly = false
      if (this.partialFilled === size) continue
    }
  }
}
