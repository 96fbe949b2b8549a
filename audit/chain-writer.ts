/**
 * The writing end of the audit log: completes each line with its chain id and
 * sequence number, seals it (chain.ts), and appends whole batches to the
 * destination. It runs in the audit worker thread (sink-worker.ts), so that
 * sealing and file I/O stay off the proxy's event loop, or in the caller's
 * thread for a stream given by a test.
 *
 * Lines are gathered in an output chunk and leave as one write: a body is put
 * (or expanded, by the audit ring's drain) straight into the chunk with
 * reserve() / out / end, then completed and sealed where it lies
 * (completeLine(), ChainSealer.sealInPlace), with no string and no copy per
 * line; flush() hands the chunk to the destination.
 */
import { createWriteStream, openSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { CHAIN_FORMAT_VERSION, ChainSealer, SEAL_SUFFIX_BYTES } from './chain.js'

const CLOSING_BRACE = 0x7d
/** `,"chain":"<24 hex>","seq":` + up to 16 digits + `}`, generously. */
const CHAIN_MEMBERS_BYTES = 64
/** What completing and sealing adds to a body at most: room to reserve past it. */
export const LINE_TRAILER_BYTES = CHAIN_MEMBERS_BYTES + SEAL_SUFFIX_BYTES
/** Output chunk size: one write per chunk at most. */
const CHUNK_BYTES = 512 * 1024

export interface ChainWriterOptions {
  /** `stdout`, or a file path (opened for appending). */
  readonly to: string
  readonly chainKey: Buffer
  /** A destination to write to instead of `to`. */
  readonly stream?: Writable
  /** When the first chain starts (the caller's clock: lines are stamped where events happen). */
  readonly startedAt?: string
}

export interface ChainWriterEvents {
  /** A chunk reached the destination (or failed: see problem). */
  written(): void
  /** The destination failed: `lost` lines that were handed to it are gone. */
  problem(message: string, fields: Record<string, unknown>, lost: number): void
  /** `lines` more were dropped because the destination had failed and was not reopened (counted, logged once by problem). */
  dropped(lines: number): void
}

type ChainStartReason = 'startup' | 'rotation' | 'sink_error'

export class ChainWriter {
  private readonly options: ChainWriterOptions
  private readonly events: ChainWriterEvents
  private readonly sealer: ChainSealer
  private stream: Writable
  /** Lines handed to the stream whose write has not been confirmed. */
  private unconfirmed = 0
  private broken = false
  private closed = false
  /** `,"chain":"<id>","seq":` of the current chain, and that chain's id. */
  private chainMembers = Buffer.alloc(0)
  private chainMembersOf = ''
  /** The chunk being filled, the same memory as a plain Uint8Array (its subarrays cost less than a Buffer's), its end and its lines. */
  private chunk = Buffer.allocUnsafe(0)
  private chunkBytes = new Uint8Array(0)
  private chunkEnd = 0
  private chunkLines = 0
  /** Lines refused while the destination is unavailable, not reported yet. */
  private discarded = 0

  constructor(options: ChainWriterOptions, events: ChainWriterEvents) {
    this.options = options
    this.events = events
    this.sealer = new ChainSealer(options.chainKey)
    this.stream = this.openStream()
    this.beginChain('startup', null, {}, options.startedAt)
  }

  /** Bytes the destination has not taken yet. */
  get backlogBytes(): number {
    return this.stream.writableLength
  }

  /** Lines are taken (not closed, and the destination is not broken); otherwise they are dropped. */
  get accepting(): boolean {
    return !this.closed && !this.broken
  }

  /** Make room for a body of up to `bodyBytes` at `end` (writing out the chunk filled so far when it is short). */
  reserve(bodyBytes: number): void {
    const need = bodyBytes + LINE_TRAILER_BYTES
    if (this.chunkEnd + need <= this.chunk.length) return
    this.flush()
    this.chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, need))
    this.chunkBytes = new Uint8Array(this.chunk.buffer, this.chunk.byteOffset, this.chunk.length)
    this.chunkEnd = 0
  }

  /** The chunk: a body goes at `end`, in room made by reserve(). */
  get out(): Uint8Array {
    return this.chunkBytes
  }

  get end(): number {
    return this.chunkEnd
  }

  /** The `{…}` body at out[end, bodyEnd) (without chain and seq): complete and seal it where it lies. */
  completeLine(bodyEnd: number): void {
    const out = this.chunkBytes
    const sealer = this.sealer
    if (this.chainMembersOf !== sealer.id) {
      this.chainMembers = Buffer.from(`,"chain":"${sealer.id}","seq":`)
      this.chainMembersOf = sealer.id
    }
    const start = this.chunkEnd
    // The body's closing brace gives way to the chain's members, then the brace again.
    let at = bodyEnd - 1
    out.set(this.chainMembers, at)
    at += this.chainMembers.length
    at = writeDigits(out, at, sealer.seq)
    out[at++] = CLOSING_BRACE
    this.chunkEnd = sealer.sealInPlace(out, start, at)
    this.chunkLines++
  }

  /** A line comes while the writer is not accepting: it is dropped, and reported with the next flush. */
  discard(): void {
    this.discarded++
  }

  /** Hand the lines sealed so far to the destination, as one write. */
  flush(): void {
    if (this.discarded > 0) {
      this.events.dropped(this.discarded)
      this.discarded = 0
    }
    if (this.chunkLines === 0) return
    const chunk = this.chunk.subarray(0, this.chunkEnd)
    const lines = this.chunkLines
    // The rest of the chunk is free for the next lines: the write holds only its own part.
    this.chunk = this.chunk.subarray(this.chunkEnd)
    this.chunkBytes = this.chunkBytes.subarray(this.chunkEnd)
    this.chunkEnd = 0
    this.chunkLines = 0
    this.append(chunk, lines)
  }

  /** Seal and append one line given as a `{…}` body (without chain and seq), with the lines before it. */
  writeLine(body: Uint8Array): void {
    if (!this.accepting) return
    this.reserve(body.length)
    this.chunkBytes.set(body, this.chunkEnd)
    this.completeLine(this.chunkEnd + body.length)
    this.flush()
  }

  rotate(at: string = new Date().toISOString()): void {
    if (this.closed) return
    const previous = this.endChain(at)
    if (this.options.stream === undefined && this.options.to !== 'stdout') {
      this.stream.end()
      this.stream = this.openStream()
      this.broken = false
    }
    this.beginChain('rotation', previous, {}, at)
  }

  async close(at: string = new Date().toISOString()): Promise<void> {
    if (this.closed) return
    this.endChain(at)
    this.closed = true
    this.sealer.erase()
    const stream = this.stream
    if (this.options.stream !== undefined || this.options.to === 'stdout') {
      // Not ours to end: an empty write's callback runs once everything before it is written.
      if (stream.writable) await new Promise<void>((resolve) => stream.write('', () => resolve()))
      return
    }
    await new Promise<void>((resolve) => stream.end(resolve))
  }

  private append(chunk: Buffer, lines: number): void {
    this.unconfirmed += lines
    this.stream.write(chunk, (error?: Error | null) => {
      // Written or lost (a failure is reported by onStreamError): either way no longer waiting.
      if (error == null) this.unconfirmed -= lines
      this.events.written()
    })
  }

  private beginChain(reason: ChainStartReason, previous: { chain: string; lines: number; mac: string } | null, extra: Record<string, unknown> = {}, at = new Date().toISOString()): void {
    const { epoch } = this.sealer.begin()
    this.writeLine(Buffer.from(JSON.stringify({ time: at, event: 'chain_start', version: CHAIN_FORMAT_VERSION, epoch, reason, previous, ...extra })))
  }

  private endChain(at: string): { chain: string; lines: number; mac: string } {
    this.flush()
    if (!this.broken) this.writeLine(Buffer.from(JSON.stringify({ time: at, event: 'chain_end', lines: this.sealer.lines })))
    return { chain: this.sealer.id, lines: this.sealer.lines, mac: this.sealer.lastMac }
  }

  private openStream(): Writable {
    let stream: Writable
    if (this.options.stream !== undefined) stream = this.options.stream
    else if (this.options.to === 'stdout') stream = createWriteStream('', { fd: 1, autoClose: false })
    else stream = createWriteStream('', { fd: openSync(this.options.to, 'a', 0o600) })
    stream.on('error', (error: NodeJS.ErrnoException) => this.onStreamError(stream, error))
    return stream
  }

  private onStreamError(stream: Writable, error: NodeJS.ErrnoException): void {
    if (stream !== this.stream || this.closed) return
    // Lines sealed but not handed over yet went with the chain that failed.
    const lost = this.unconfirmed + this.chunkLines
    this.unconfirmed = 0
    this.chunkEnd = 0
    this.chunkLines = 0
    this.broken = true
    const code = error.code ?? error.message
    this.events.problem('the audit destination failed; lines not yet written are lost', { to: this.options.to, error: code }, lost)
    if (this.options.stream !== undefined || this.options.to === 'stdout') return
    try {
      this.stream = this.openStream()
    } catch (reopen) {
      this.events.problem('cannot reopen the audit file; audit lines are dropped and counted until SIGUSR1 reopens it', { to: this.options.to, error: (reopen as Error).message }, 0)
      return
    }
    this.broken = false
    this.beginChain('sink_error', null, { lost_lines: lost, error: code })
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
