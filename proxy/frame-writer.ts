/**
 * Coalesces the frames a session sends to one socket while it handles one incoming
 * chunk. Frames that sit back to back in the same memory (unchanged frames of one
 * received chunk) are merged into a single view, so passthrough traffic is written
 * as the very bytes that arrived, with one write per chunk.
 */
import type { Writable } from 'node:stream'

export class FrameWriter {
  private readonly queue: Buffer[] = []
  private runBuffer: ArrayBufferLike | null = null
  private runStart = 0
  private runEnd = 0
  private readonly socket: Writable

  constructor(socket: Writable) {
    this.socket = socket
  }

  push(frame: Buffer): void {
    if (frame.buffer === this.runBuffer && frame.byteOffset === this.runEnd) {
      this.runEnd += frame.length
      return
    }
    this.closeRun()
    this.runBuffer = frame.buffer
    this.runStart = frame.byteOffset
    this.runEnd = frame.byteOffset + frame.length
  }

  get isEmpty(): boolean {
    return this.runBuffer === null && this.queue.length === 0
  }

  /** Write everything queued. Returns false when the socket asks the sender to wait for 'drain'. */
  flush(): boolean {
    this.closeRun()
    const queue = this.queue
    if (queue.length === 0) return true
    let ok: boolean
    if (queue.length === 1) {
      ok = this.socket.write(queue[0]!)
    } else {
      this.socket.cork()
      ok = true
      for (const buf of queue) ok = this.socket.write(buf)
      this.socket.uncork()
      ok = ok && !this.socket.writableNeedDrain
    }
    queue.length = 0
    return ok
  }

  /** Forget what was queued (the connection is going away). */
  discard(): void {
    this.queue.length = 0
    this.runBuffer = null
  }

  private closeRun(): void {
    if (this.runBuffer === null) return
    this.queue.push(Buffer.from(this.runBuffer, this.runStart, this.runEnd - this.runStart))
    this.runBuffer = null
  }
}
