/**
 * Builds the frames pgveil sends on its own behalf.
 *
 * Messages are written one after another into a slab; a finished frame is a view of
 * its slab, which is never written again below that frame, so frames stay valid while
 * a socket write holds them and no per-message copy or allocation is needed. A full
 * slab is replaced, not reused.
 */

const DEFAULT_SLAB_SIZE = 8 * 1024
/** Type byte and int32 length, reserved in front of every message body. */
const HEADER_SIZE = 5

export class MessageBuilder {
  private readonly slabSize: number
  private buffer: Buffer
  /** Where the header of the message being built starts. */
  private start = 0
  private offset = HEADER_SIZE

  constructor(slabSize = DEFAULT_SLAB_SIZE) {
    this.slabSize = slabSize
    this.buffer = Buffer.allocUnsafe(slabSize)
  }

  int8(value: number): this {
    this.ensure(1)
    this.buffer[this.offset++] = value & 0xff
    return this
  }

  /** Accepts signed and unsigned 16-bit values. */
  int16(value: number): this {
    this.ensure(2)
    const buffer = this.buffer
    buffer[this.offset++] = (value >>> 8) & 0xff
    buffer[this.offset++] = value & 0xff
    return this
  }

  /** Accepts signed and unsigned 32-bit values (OIDs). */
  int32(value: number): this {
    this.ensure(4)
    const buffer = this.buffer
    buffer[this.offset++] = (value >>> 24) & 0xff
    buffer[this.offset++] = (value >>> 16) & 0xff
    buffer[this.offset++] = (value >>> 8) & 0xff
    buffer[this.offset++] = value & 0xff
    return this
  }

  cstring(value: string): this {
    if (value.includes('\0')) {
      this.discard()
      throw new RangeError('a protocol string cannot contain a NUL character')
    }
    const length = Buffer.byteLength(value)
    this.ensure(length + 1)
    this.buffer.write(value, this.offset, length, 'utf8')
    this.offset += length
    this.buffer[this.offset++] = 0
    return this
  }

  bytes(value: Uint8Array): this {
    this.ensure(value.length)
    this.buffer.set(value, this.offset)
    this.offset += value.length
    return this
  }

  /** Finish the message: typed when `code` is given, an untyped startup packet otherwise. */
  frame(code?: number): Buffer {
    const buffer = this.buffer
    const start = this.start
    const end = this.offset
    const length = end - start - 1
    buffer[start + 1] = (length >>> 24) & 0xff
    buffer[start + 2] = (length >>> 16) & 0xff
    buffer[start + 3] = (length >>> 8) & 0xff
    buffer[start + 4] = length & 0xff
    let frame: Buffer
    if (code === undefined) {
      frame = buffer.subarray(start + 1, end)
    } else {
      buffer[start] = code
      frame = buffer.subarray(start, end)
    }
    this.begin(end)
    return frame
  }

  /** Drop the message being built (also done when a write is refused, so a shared builder recovers). */
  discard(): void {
    this.offset = this.start + HEADER_SIZE
  }

  private begin(at: number): void {
    if (this.buffer.length - at < HEADER_SIZE + 16) {
      this.buffer = Buffer.allocUnsafe(this.slabSize)
      at = 0
    }
    this.start = at
    this.offset = at + HEADER_SIZE
  }

  private ensure(size: number): void {
    if (this.buffer.length - this.offset >= size) return
    const used = this.offset - this.start
    const next = Buffer.allocUnsafe(Math.max(this.slabSize, 2 * (used + size)))
    this.buffer.copy(next, 0, this.start, this.offset)
    this.buffer = next
    this.start = 0
    this.offset = used
  }
}
