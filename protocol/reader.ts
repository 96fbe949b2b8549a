/** A bounds-checked cursor over one protocol frame; strings are decoded, bytes stay views. */
import { ProtocolError } from './errors.js'

export class FrameReader {
  private readonly frame: Buffer
  private offset: number
  /** Message name used in error messages, e.g. "Bind". */
  private readonly messageName: string

  constructor(frame: Buffer, offset: number, messageName = 'protocol') {
    this.frame = frame
    this.offset = offset
    this.messageName = messageName
  }

  get position(): number {
    return this.offset
  }

  remaining(): number {
    return this.frame.length - this.offset
  }

  /** One unsigned byte. */
  int8(): number {
    this.need(1, 'byte')
    return this.frame[this.offset++]!
  }

  int16(): number {
    this.need(2, 'int16')
    const value = this.frame.readInt16BE(this.offset)
    this.offset += 2
    return value
  }

  /** Counts are unsigned on the wire (PostgreSQL accepts up to 65535 parameters). */
  uint16(): number {
    this.need(2, 'int16')
    const value = this.frame.readUInt16BE(this.offset)
    this.offset += 2
    return value
  }

  int32(): number {
    this.need(4, 'int32')
    const value = this.frame.readInt32BE(this.offset)
    this.offset += 4
    return value
  }

  uint32(): number {
    this.need(4, 'int32')
    const value = this.frame.readUInt32BE(this.offset)
    this.offset += 4
    return value
  }

  cstring(): string {
    const start = this.offset
    const end = this.frame.indexOf(0, start)
    if (end < 0) throw this.error(`string at offset ${start} is not NUL-terminated`)
    this.offset = end + 1
    return this.frame.toString('utf8', start, end)
  }

  /** A view of the next `length` bytes (no copy). */
  bytes(length: number): Buffer {
    if (length < 0) throw this.error(`invalid length ${length} at offset ${this.offset}`)
    this.need(length, `${length} bytes`)
    const start = this.offset
    this.offset += length
    return this.frame.subarray(start, this.offset)
  }

  /** An int32 length then that many bytes as a view; length -1 is SQL NULL. */
  nullableBytes(): Buffer | null {
    const length = this.int32()
    if (length === -1) return null
    if (length < -1) throw this.error(`invalid value length ${length} at offset ${this.offset - 4}`)
    return this.bytes(length)
  }

  /** A format code: 0 text, 1 binary. */
  format(): 0 | 1 {
    const code = this.int16()
    if (code !== 0 && code !== 1) throw this.error(`unsupported format code ${code}`)
    return code
  }

  /** A view of everything left. */
  rest(): Buffer {
    const start = this.offset
    this.offset = this.frame.length
    return this.frame.subarray(start)
  }

  /** Throws unless every byte was read. */
  end(): void {
    const left = this.frame.length - this.offset
    if (left !== 0) throw this.error(`${left} unexpected ${left === 1 ? 'byte' : 'bytes'} at the end`)
  }

  error(detail: string): ProtocolError {
    return new ProtocolError(`malformed ${this.messageName} message: ${detail}`)
  }

  private need(size: number, what: string): void {
    if (this.frame.length - this.offset < size) {
      throw this.error(`${what} at offset ${this.offset} runs past the end of the ${this.frame.length}-byte frame`)
    }
  }
}

/** A reader positioned after the header of a typed frame, once type byte and length are checked. */
export function openFrame(frame: Buffer, code: number, messageName: string): FrameReader {
  const reader = new FrameReader(frame, 5, messageName)
  if (frame.length < 5) throw reader.error(`frame of ${frame.length} bytes is shorter than its header`)
  if (frame[0] !== code) throw reader.error(`type byte 0x${frame[0]!.toString(16)} is not 0x${code.toString(16)}`)
  const length = frame.readUInt32BE(1)
  if (length + 1 !== frame.length) throw reader.error(`length field says ${length + 1} bytes, frame has ${frame.length}`)
  return reader
}
