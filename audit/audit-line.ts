/**
 * One audit line being written in place, as UTF-8 bytes, from pieces the caller
 * mostly keeps ready as Buffers (serialized once per session, per statement
 * shape, per tag) and numbers written digit by digit: no string is built per
 * line. The bytes go straight into the audit ring (or a scratch buffer for a
 * line too big for it). Writing past the room reserved for the line marks it
 * overflowed instead: the sink then drops it rather than write a cut line.
 */

export class AuditLine {
  private out: Buffer = Buffer.alloc(0)
  private at = 0
  private limit = 0
  private startedAt = 0
  private overflowed = false
  private readonly finish: (line: AuditLine) => void

  constructor(finish: (line: AuditLine) => void) {
    this.finish = finish
  }

  /** (The sink) start a line at `buffer[at]` with room for `maxBytes`. */
  open(buffer: Buffer, at: number, maxBytes: number): void {
    this.out = buffer
    this.at = at
    this.startedAt = at
    this.limit = at + maxBytes
    this.overflowed = false
  }

  /** Where the line is being written. */
  get buffer(): Buffer {
    return this.out
  }

  get start(): number {
    return this.startedAt
  }

  get length(): number {
    return this.at - this.startedAt
  }

  /** False when a piece did not fit in the room reserved. */
  get complete(): boolean {
    return !this.overflowed
  }

  bytes(piece: Uint8Array): this {
    const end = this.at + piece.length
    if (end > this.limit) {
      this.overflowed = true
      return this
    }
    // Short pieces byte by byte: cheaper than a native copy's call overhead.
    if (piece.length <= 16) {
      const target = this.out
      for (let i = 0, to = this.at; i < piece.length; i++, to++) target[to] = piece[i]!
    } else {
      this.out.set(piece, this.at)
    }
    this.at = end
    return this
  }

  /** A string's UTF-8 bytes (for the rare pieces that are not cached). */
  utf8(text: string): this {
    const room = this.limit - this.at
    const written = this.out.write(text, this.at, room, 'utf8')
    // write() stops before a character that does not fit: only a near-full write can have been cut.
    if (written > room - 4 && Buffer.byteLength(text) !== written) this.overflowed = true
    this.at += written
    return this
  }

  /** A non-negative integer (below 2^53). */
  integer(n: number): this {
    if (this.at + 16 > this.limit) {
      this.overflowed = true
      return this
    }
    this.at = writeDigits(this.out, this.at, n)
    return this
  }

  /**
   * Milliseconds rounded to the microsecond, as JSON.stringify writes
   * Math.round(ms * 1000) / 1000: `12`, `0.5`, `1.234`.
   */
  millis(ms: number): this {
    const micros = Math.round(ms * 1000)
    if (!(micros >= 0 && micros < 1e15)) return this.utf8(String(micros / 1000))
    const whole = Math.floor(micros / 1000)
    let fraction = micros - whole * 1000
    this.integer(whole)
    if (fraction === 0) return this
    if (this.at + 4 > this.limit) {
      this.overflowed = true
      return this
    }
    const target = this.out
    target[this.at++] = 0x2e
    let digits = 3
    while (fraction % 10 === 0) {
      fraction /= 10
      digits--
    }
    for (let i = digits - 1; i >= 0; i--) {
      target[this.at + i] = 0x30 + (fraction % 10)
      fraction = Math.floor(fraction / 10)
    }
    this.at += digits
    return this
  }

  /** Hand the line over (or, overflowed, drop it). */
  end(): void {
    this.finish(this)
  }
}

/** `n` (a non-negative integer) in decimal at `at`; returns the end. */
export function writeDigits(out: Uint8Array, at: number, n: number): number {
  if (n < 10) {
    out[at] = 0x30 + n
    return at + 1
  }
  let digits = 1
  for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) digits++
  let rest = n
  for (let i = at + digits - 1; i >= at; i--) {
    out[i] = 0x30 + (rest % 10)
    rest = Math.floor(rest / 10)
  }
  return at + digits
}
