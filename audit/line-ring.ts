/**
 * The hand-off of audit lines from the proxy's thread to the audit worker: a
 * single-producer, single-consumer ring of bytes in a SharedArrayBuffer. The
 * producer (AuditSink) writes each line's body as UTF-8 straight into the ring;
 * the consumer (RingDrain, in the worker) seals the bodies from a view of the
 * ring into its output buffer and then frees the space. No string is joined, no
 * message is cloned, nothing is copied but into the ring and out of it.
 *
 * Layout: a control block of 32-bit slots, then the data area (a power of two
 * bytes). Positions are 32-bit counters that wrap (`& mask` gives the offset), so
 * `head - tail` is the space in use even across the wrap. A record is a 32-bit
 * length word and the body, padded to 4 bytes; a record never wraps: where one
 * does not fit before the end, a SKIP word says the rest of the area is padding.
 * An OVERSIZED word stands for a line too big for the ring, sent by message.
 *
 * Memory order: the producer writes a record, then publishes the head with
 * Atomics.store; the consumer reads the head with Atomics.load before reading the
 * records below it, and frees them with Atomics.store of the tail. Atomics are
 * sequentially consistent, so the plain reads and writes around them are ordered.
 */

const HEAD = 0
const TAIL = 1
/** The consumer's destination backlog (bytes), for the backlog gauge. */
const DESTINATION_BACKLOG = 2
/** Bytes of oversized lines sent by message and not sealed yet. */
const OVERSIZED_BYTES = 3
const CONTROL_SLOTS = 16
const CONTROL_BYTES = CONTROL_SLOTS * 4

const WORD = 4
/** Length words at or above this are markers, not lengths. */
const FIRST_MARKER = 0xfffffff0
export const SKIP = 0xffffffff
export const OVERSIZED = 0xfffffffe

export const MIN_RING_BYTES = 4 * 1024
/** Positions are 32-bit counters: the area must be well below 2^32. */
export const MAX_RING_BYTES = 1 << 30

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0
}

/** The shared memory of one ring; passed to the worker as is (workerData). */
export function createRingMemory(dataBytes: number): SharedArrayBuffer {
  if (!isPowerOfTwo(dataBytes) || dataBytes < MIN_RING_BYTES || dataBytes > MAX_RING_BYTES) {
    throw new RangeError(`audit ring size ${dataBytes} must be a power of two from ${MIN_RING_BYTES} to ${MAX_RING_BYTES}`)
  }
  return new SharedArrayBuffer(CONTROL_BYTES + dataBytes)
}

const align = (n: number): number => (n + 3) & ~3

/** What both ends share: the views on the memory. */
class RingViews {
  protected readonly control: Int32Array
  /** The data area as 32-bit words (records start on a word). */
  readonly words: Uint32Array
  /** The data area. */
  readonly bytes: Buffer
  readonly size: number
  protected readonly mask: number

  constructor(memory: SharedArrayBuffer) {
    this.size = memory.byteLength - CONTROL_BYTES
    if (!isPowerOfTwo(this.size)) throw new RangeError('not an audit ring: its data area is not a power of two')
    this.mask = this.size - 1
    this.control = new Int32Array(memory, 0, CONTROL_SLOTS)
    this.words = new Uint32Array(memory, CONTROL_BYTES, this.size / WORD)
    this.bytes = Buffer.from(memory, CONTROL_BYTES, this.size)
  }

  /** Bytes written and not yet freed (records, padding, markers). */
  get used(): number {
    return (Atomics.load(this.control, HEAD) - Atomics.load(this.control, TAIL)) >>> 0
  }

  get destinationBacklog(): number {
    return Atomics.load(this.control, DESTINATION_BACKLOG)
  }

  get oversizedBytes(): number {
    return Atomics.load(this.control, OVERSIZED_BYTES)
  }
}

/** The producer's end (one thread). */
export class RingWriter extends RingViews {
  private head: number
  /** Where the body of the reserved record starts in `bytes`. */
  private reservedAt = -1

  constructor(memory: SharedArrayBuffer) {
    super(memory)
    this.head = Atomics.load(this.control, HEAD) >>> 0
  }

  /** The largest body a record can have (bigger lines go by message). */
  get maxBody(): number {
    return this.size / 4 - WORD
  }

  /**
   * Reserve room for a body of at most `maxBytes` bytes; returns its offset in
   * `bytes` (write it there, then commit), or -1 when the ring has no room.
   * `maxBytes` must not exceed maxBody.
   */
  reserve(maxBytes: number): number {
    const need = WORD + align(maxBytes)
    const free = this.size - ((this.head - Atomics.load(this.control, TAIL)) >>> 0)
    let at = this.head & this.mask
    const beforeEnd = this.size - at
    if (need > beforeEnd) {
      // The record would wrap: pad to the end and start it at 0.
      if (free < beforeEnd + need) return -1
      this.words[at >> 2] = SKIP
      this.head = (this.head + beforeEnd) >>> 0
      at = 0
    } else if (free < need) {
      return -1
    }
    this.reservedAt = at + WORD
    return this.reservedAt
  }

  /** Publish the reserved record with the body's actual length. */
  commit(bodyBytes: number): void {
    const at = this.reservedAt - WORD
    this.words[at >> 2] = bodyBytes
    this.reservedAt = -1
    this.head = (this.head + WORD + align(bodyBytes)) >>> 0
    Atomics.store(this.control, HEAD, this.head | 0)
  }

  /** Give a reservation back (e.g. the body turned out bigger than reserved). Padding already published stays. */
  cancel(): void {
    this.reservedAt = -1
    Atomics.store(this.control, HEAD, this.head | 0)
  }

  /** Record a marker for a line sent by message (`bytes` long); false when the ring has no room for it. */
  markOversized(bytes: number): boolean {
    if (this.reserve(0) < 0) return false
    const at = this.reservedAt - WORD
    this.words[at >> 2] = OVERSIZED
    this.reservedAt = -1
    this.head = (this.head + WORD) >>> 0
    Atomics.add(this.control, OVERSIZED_BYTES, bytes)
    Atomics.store(this.control, HEAD, this.head | 0)
    return true
  }

  /** The published head (rotate and close drain up to it). */
  get position(): number {
    return this.head
  }
}

/** The consumer's end (one thread). */
export class RingReader extends RingViews {
  private tail: number
  /** Set by next(): the record's body in `bytes`. */
  start = 0
  end = 0

  constructor(memory: SharedArrayBuffer) {
    super(memory)
    this.tail = Atomics.load(this.control, TAIL) >>> 0
  }

  /** The producer's published head. */
  get head(): number {
    return Atomics.load(this.control, HEAD) >>> 0
  }

  /** Bytes between the read position and `head`. */
  pending(head: number): number {
    return (head - this.tail) >>> 0
  }

  /**
   * Step to the next record before `head` (padding skipped): 'line' (its body is
   * bytes[start, end)), 'oversized' (its body comes by message), or null when none.
   * The record's space stays in use until release().
   */
  next(head: number): 'line' | 'oversized' | null {
    for (;;) {
      if (this.tail === head) return null
      const at = this.tail & this.mask
      const word = this.words[at >> 2]!
      if (word === SKIP) {
        this.tail = (this.tail + this.size - at) >>> 0
        continue
      }
      if (word === OVERSIZED) {
        this.tail = (this.tail + WORD) >>> 0
        return 'oversized'
      }
      if (word >= FIRST_MARKER || word > this.size - at - WORD) throw new RangeError(`corrupt audit ring: record length ${word} at ${at}`)
      this.start = at + WORD
      this.end = this.start + word
      this.tail = (this.tail + WORD + align(word)) >>> 0
      return 'line'
    }
  }

  /** Free every record stepped over (their bodies must have been copied out). */
  release(): void {
    Atomics.store(this.control, TAIL, this.tail | 0)
  }

  /** An oversized line was sealed: its bytes no longer count. */
  oversizedDone(bytes: number): void {
    Atomics.sub(this.control, OVERSIZED_BYTES, bytes)
  }

  /** Tell the producer how far behind the destination is (the backlog gauge). */
  reportDestinationBacklog(bytes: number): void {
    Atomics.store(this.control, DESTINATION_BACKLOG, Math.min(bytes, 0x7fffffff))
  }
}
