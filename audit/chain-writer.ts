/**
 * The writing end of the audit log: completes each line with its chain id and
 * sequence number, seals it (chain.ts), and appends whole batches to the
 * destination. It runs in the audit worker thread (sink-worker.ts), so that
 * sealing and file I/O stay off the proxy's event loop, or in the caller's
 * thread for a stream given by a test.
 *
 * A batch is a list of `{…}` bodies lying in one buffer (the audit ring) and
 * leaves as one buffer of sealed lines: each body is copied once into the
 * output, completed and sealed where it lies (ChainSealer.sealInPlace), with no
 * string per line.
 */
import { createWriteStream, openSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { CHAIN_FORMAT_VERSION, ChainSealer, SEAL_SUFFIX_BYTES } from './chain.js'

const CLOSING_BRACE = 0x7d
/** `,"chain":"<24 hex>","seq":` + up to 16 digits + `}`, generously. */
const CHAIN_MEMBERS_BYTES = 64

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
  private readonly bodyStarts = [0]
  private readonly bodyEnds = [0]

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

  /** Seal and append one line given as a `{…}` body (without chain and seq). */
  writeLine(body: Buffer): void {
    if (this.closed || this.broken) return
    this.bodyStarts[0] = 0
    this.bodyEnds[0] = body.length
    this.append(this.sealBodies(body, this.bodyStarts, this.bodyEnds, 1), 1)
  }

  /** Seal and append the `{…}` bodies source[starts[i], ends[i]) for i < count, as one chunk. */
  writeLines(source: Uint8Array, starts: ArrayLike<number>, ends: ArrayLike<number>, count: number): void {
    if (this.closed || this.broken || count === 0) return
    this.append(this.sealBodies(source, starts, ends, count), count)
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

  private sealBodies(source: Uint8Array, starts: ArrayLike<number>, ends: ArrayLike<number>, count: number): Buffer {
    let bytes = 0
    for (let i = 0; i < count; i++) bytes += ends[i]! - starts[i]!
    const chunk = Buffer.allocUnsafe(bytes + count * (CHAIN_MEMBERS_BYTES + SEAL_SUFFIX_BYTES))
    const out = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)
    const sealer = this.sealer
    if (this.chainMembersOf !== sealer.id) {
      this.chainMembers = Buffer.from(`,"chain":"${sealer.id}","seq":`)
      this.chainMembersOf = sealer.id
    }
    const chainMembers = this.chainMembers
    let written = 0
    for (let i = 0; i < count; i++) {
      const start = written
      // The body without its closing brace, then the chain's members and the brace.
      out.set(source.subarray(starts[i]!, ends[i]! - 1), written)
      written += ends[i]! - 1 - starts[i]!
      out.set(chainMembers, written)
      written += chainMembers.length
      written = writeDigits(out, written, sealer.seq)
      out[written++] = CLOSING_BRACE
      written = sealer.sealInPlace(out, start, written)
    }
    return chunk.subarray(0, written)
  }

  private sealOne(body: string): Buffer {
    const bytes = Buffer.from(body)
    this.bodyStarts[0] = 0
    this.bodyEnds[0] = bytes.length
    return this.sealBodies(bytes, this.bodyStarts, this.bodyEnds, 1)
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
    const body = JSON.stringify({ time: at, event: 'chain_start', version: CHAIN_FORMAT_VERSION, epoch, reason, previous, ...extra })
    this.append(this.sealOne(body), 1)
  }

  private endChain(at: string): { chain: string; lines: number; mac: string } {
    if (!this.broken) this.append(this.sealOne(JSON.stringify({ time: at, event: 'chain_end', lines: this.sealer.lines })), 1)
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
    const lost = this.unconfirmed
    this.unconfirmed = 0
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
