/**
 * Coalesces the frames a session sends to one socket while it handles one incoming
 * chunk. Frames that sit back to back in the same received chunk (unchanged frames)
 * are merged into one run, and a run covering the whole chunk is written as that very
 * Buffer: passthrough traffic goes out as the bytes that arrived, one write per chunk.
 */
import type { Writable } from 'node:stream'

/** Pieces adding up to at most this many bytes are copied into one buffer and written once. */
const JOIN_BYTES = 4096

export class FrameWriter {
  private queue: Buffer[] = []
  /** The buffer of the current run; runs are compared by Buffer identity (reading `.buffer` is costly). */
  private runSource: Buffer | null = null
  private runStart = 0
  private runEnd = 0
  private readonly socket: Writable

  constructor(socket: Writable) {
    this.socket = socket
  }

  push(frame: Buffer): void {
    this.pushRange(frame, 0, frame.length)
  }

  /** Queue bytes [start, end) of `buffer`. */
  pushRange(buffer: Buffer, start: number, end: number): void {
    if (buffer === this.runSource && start === this.runEnd) {
      this.runEnd = end
      return
    }
    this.closeRun()
    this.runSource = buffer
    this.runStart = start
    this.runEnd = end
  }

  /** Write everything queued. Returns false when the socket asks the sender to wait for 'drain'. */
  flush(): boolean {
    this.closeRun()
    const queue = this.queue
    if (queue.length === 0) return true
    // pop()/a new array rather than `length = 0`, which is a slow runtime call in V8.
    if (queue.length === 1) return this.socket.write(queue.pop()!)
    this.queue = []
    let total = 0
    for (const buf of queue) total += buf.length
    if (total <= JOIN_BYTES) {
      // A short reply in pieces (rewritten frames among unchanged ones): copying it into one buffer costs less than a corked multi-buffer write.
      const joined = Buffer.allocUnsafe(total)
      let at = 0
      for (const buf of queue) at += buf.copy(joined, at)
      return this.socket.write(joined)
    }
    this.socket.cork()
    let ok = true
    for (const buf of queue) ok = this.socket.write(buf)
    this.socket.uncork()
    return ok && !this.socket.writableNeedDrain
  }

  private closeRun(): void {
    const source = this.runSource
    if (source === null) return
    this.queue.push(this.runStart === 0 && this.runEnd === source.length ? source : source.subarray(this.runStart, this.runEnd))
    this.runSource = null
  }
}
