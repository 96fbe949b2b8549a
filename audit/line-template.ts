/**
 * Templated audit lines: most of a statement line repeats (the session's members,
 * the statement's summary, the command tag), so the proxy's thread does not copy
 * those bytes per line. Each repeated piece is a LineFragment, defined once in the
 * audit ring (a fragment record: its slot and bytes) and kept by the worker; a
 * statement line is then a fixed 40-byte template record: the time, the duration
 * and the slots of its fragments. The worker expands it into the line body
 *
 *   {"time":"<ISO 8601>",<fragment 0><fragment 1><fragment 2><fragment 3><duration ms><tail fragment>
 *
 * byte for byte what the proxy's thread would have written. Slots are reused in
 * turn (FRAGMENT_SLOTS of them), so the worker keeps a bounded set; the proxy's
 * side knows which definitions the worker still holds by counting them (the
 * worker reads them in the ring's order) and defines a fragment again when its
 * slot may have been reused.
 */
import { writeDigits } from './chain-writer.js'

/** The first byte of a record's body: a line as is (`{`), a template, or a fragment definition. */
export const RecordType = { Line: 0x7b, Template: 0x01, Fragment: 0x02 } as const

export const FRAGMENT_SLOTS = 4096
/** Fragments one template uses: all of them must still be held when it is expanded. */
export const TEMPLATE_FRAGMENTS = 5
export const TEMPLATE_BYTES = 40
/** A fragment record: type word, slot word, bytes. */
export const FRAGMENT_HEADER_BYTES = 8

const TIME_OPEN = Buffer.from('{"time":"')
const TIME_CLOSE = Buffer.from('",')
const ISO_BYTES = 24
/** `{"time":"` + ISO + `",`, and a duration's digits (16 before the point, 3 after). */
const TEMPLATE_FIXED_BYTES = TIME_OPEN.length + ISO_BYTES + TIME_CLOSE.length + 24

/** Bytes many lines share (serialized once), and where the audit ring's consumer holds them. */
export class LineFragment {
  readonly bytes: Buffer
  /** The sink whose consumer holds this fragment (0: none yet). */
  owner = 0
  slot = 0
  /** The sink's definition count when this fragment was defined. */
  definedAt = 0

  constructor(bytes: Buffer) {
    this.bytes = bytes
  }
}

/**
 * The consumer's side: the fragments defined so far, and the expansion of
 * template records into line bodies.
 */
export class TemplateExpander {
  private readonly fragments: (Buffer | undefined)[] = new Array<Buffer | undefined>(FRAGMENT_SLOTS)
  private lastMs = -1
  private readonly iso = Buffer.alloc(ISO_BYTES)

  /** A fragment record lying at ring[start, end). */
  define(ring: Buffer, words: Uint32Array, start: number, end: number): void {
    const slot = words[(start >> 2) + 1]!
    if (slot >= FRAGMENT_SLOTS) throw new RangeError(`corrupt audit ring: fragment slot ${slot}`)
    this.fragments[slot] = Buffer.from(ring.subarray(start + FRAGMENT_HEADER_BYTES, end))
  }

  /** Room a template at `start` needs once expanded. */
  expandedBytes(words: Uint32Array, start: number): number {
    let bytes = TEMPLATE_FIXED_BYTES
    const first = (start >> 2) + 5
    for (let i = 0; i < TEMPLATE_FRAGMENTS; i++) bytes += this.fragment(words[first + i]!).length
    return bytes
  }

  /** Expand the template record at ring offset `start` into `out` at `at`; returns the end. */
  expand(words: Uint32Array, start: number, out: Uint8Array, at: number): number {
    const word = start >> 2
    const ms = words[word + 1]! + words[word + 2]! * 0x1_0000_0000
    const micros = words[word + 3]! + words[word + 4]! * 0x1_0000_0000
    if (ms !== this.lastMs) {
      this.lastMs = ms
      this.iso.write(new Date(ms).toISOString(), 0, ISO_BYTES, 'latin1')
    }
    const slot = word + 5
    return writeTemplateLine(out, at, this.iso, this.fragment(words[slot]!), this.fragment(words[slot + 1]!), this.fragment(words[slot + 2]!), this.fragment(words[slot + 3]!), micros, this.fragment(words[slot + 4]!))
  }

  private fragment(slot: number): Buffer {
    const fragment = this.fragments[slot]
    if (fragment === undefined) throw new RangeError(`corrupt audit ring: template uses undefined fragment slot ${slot}`)
    return fragment
  }
}

/**
 * The body of a templated line, `{"time":"<iso>",` + four fragments + the duration in
 * milliseconds + the tail fragment, written into `out` at `at` (which has room for
 * TEMPLATE_FIXED_BYTES plus the fragments); returns the end.
 */
function writeTemplateLine(out: Uint8Array, at: number, iso: Uint8Array, first: Uint8Array, second: Uint8Array, third: Uint8Array, fourth: Uint8Array, micros: number, tail: Uint8Array): number {
  for (const bytes of [TIME_OPEN, iso, TIME_CLOSE, first, second, third, fourth]) at = put(out, at, bytes)
  return put(out, writeMillis(out, at, micros), tail)
}

/** `bytes` into `out` at `at`; returns where they end. */
function put(out: Uint8Array, at: number, bytes: Uint8Array): number {
  out.set(bytes, at)
  return at + bytes.length
}

/** A templated line as a buffer of its own, from its fragments themselves (a line whose fragment is too big for the ring). */
export function composeTemplateLine(ms: number, first: LineFragment, second: LineFragment, third: LineFragment, fourth: LineFragment, micros: number, tail: LineFragment): Buffer {
  const fragments = [first, second, third, fourth, tail]
  const out = Buffer.allocUnsafe(TEMPLATE_FIXED_BYTES + fragments.reduce((bytes, fragment) => bytes + fragment.bytes.length, 0))
  const iso = Buffer.from(new Date(ms).toISOString(), 'latin1')
  return out.subarray(0, writeTemplateLine(out, 0, iso, first.bytes, second.bytes, third.bytes, fourth.bytes, micros, tail.bytes))
}

/**
 * Milliseconds given in whole microseconds, as JSON.stringify writes
 * Math.round(ms * 1000) / 1000: `12`, `0.5`, `1.234`.
 */
export function writeMillis(out: Uint8Array, at: number, micros: number): number {
  const whole = Math.floor(micros / 1000)
  let fraction = micros - whole * 1000
  at = writeDigits(out, at, whole)
  if (fraction === 0) return at
  out[at++] = 0x2e
  let digits = 3
  while (fraction % 10 === 0) {
    fraction /= 10
    digits--
  }
  for (let i = digits - 1; i >= 0; i--) {
    out[at + i] = 0x30 + (fraction % 10)
    fraction = Math.floor(fraction / 10)
  }
  return at + digits
}
