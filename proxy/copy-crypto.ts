/**
 * COPY rows of a table with protected columns, in text or CSV format: fields of
 * protected columns are encrypted on the way in (COPY FROM STDIN) and decrypted on
 * the way out (COPY TO STDOUT); every other byte of a row is passed as it came.
 *
 * Text format: a raw newline always ends a row (data newlines are escaped), fields are
 * split on the delimiter, `\` escapes are decoded only in the fields pgveil changes.
 * CSV: quoted fields may hold delimiters, quotes and newlines.
 */
import type { CopySpec } from '../policy/sql-plan.js'

/** A protected field's value transform: plaintext → stored bytea text (in), or stored → plaintext (out); null writes the field as NULL. */
export type FieldTransform = (value: string) => string | null

/** Thrown for a row pgveil cannot transform; the message names no value. */
export class CopyRowError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CopyRowError'
  }
}

interface FieldSpan {
  start: number
  end: number
  quoted: boolean
}

const NEWLINE = 0x0a
const CR = 0x0d
const BACKSLASH = 0x5c
const EMPTY = Buffer.alloc(0)

export class CopyRowTransformer {
  private readonly spec: CopySpec
  private readonly transforms: ReadonlyMap<number, FieldTransform>
  private readonly delimiter: number
  private readonly delimiterBytes: Buffer
  private readonly quote: number
  private readonly escape: number
  private readonly nullBytes: Buffer
  /** Chunks of a row not complete yet; joined only once a chunk may complete it. */
  private pending: Buffer[] = []
  private headerPending: boolean
  private ended = false
  /** Rows seen, for error messages. */
  private rows = 0

  constructor(spec: CopySpec, transforms: ReadonlyMap<number, FieldTransform>) {
    this.spec = spec
    this.transforms = transforms
    this.delimiter = spec.delimiter.charCodeAt(0)
    this.delimiterBytes = Buffer.from([this.delimiter])
    this.quote = spec.quote.charCodeAt(0)
    this.escape = spec.escape.charCodeAt(0)
    this.nullBytes = Buffer.from(spec.nullString, 'utf8')
    this.headerPending = spec.header
  }

  /** COPY FROM STDIN: a chunk of the client's data → the transformed complete rows in it (the rest waits). */
  push(chunk: Buffer): Buffer {
    // A row can only end at a newline: a chunk without one just waits with the rest,
    // so a row sent in many CopyData messages is joined once, not once per message.
    if (this.pending.length > 0 && chunk.indexOf(NEWLINE) < 0) {
      this.pending.push(chunk)
      return EMPTY
    }
    const data = this.pending.length === 0 ? chunk : Buffer.concat([...this.pending, chunk])
    const out: Buffer[] = []
    let offset = 0
    for (;;) {
      const row = this.split(data, offset, false)
      if (row === null) break
      out.push(this.transformRow(data, offset, row.fields, row.end))
      offset = row.end
    }
    this.pending = offset < data.length ? [data.subarray(offset)] : []
    return out.length === 1 ? out[0]! : Buffer.concat(out)
  }

  /** COPY FROM STDIN: the client is done; the last row may lack its newline. */
  end(): Buffer {
    const rest = Buffer.concat(this.pending)
    this.pending = []
    if (rest.length === 0) return rest
    const row = this.split(rest, 0, true)
    if (row === null) throw new CopyRowError(`row ${this.rows + 1} is incomplete (an unterminated quoted field?)`)
    return this.transformRow(rest, 0, row.fields, row.end)
  }

  /** COPY TO STDOUT: PostgreSQL sends one row per CopyData. */
  row(data: Buffer): Buffer {
    const row = this.split(data, 0, true)
    if (row === null) throw new CopyRowError(`row ${this.rows + 1} from PostgreSQL could not be split`)
    return this.transformRow(data, 0, row.fields, row.end)
  }

  private transformRow(data: Buffer, start: number, fields: FieldSpan[], end: number): Buffer {
    const raw = data.subarray(start, end)
    if (this.ended) return raw
    if (this.headerPending) {
      this.headerPending = false
      return raw
    }
    this.rows++
    // Text format's end-of-data marker.
    if (this.spec.format === 'text' && fields.length === 1 && end - start >= 2 && data[start] === BACKSLASH && data[start + 1] === 0x2e) {
      this.ended = true
      return raw
    }
    let changed = false
    const parts: Buffer[] = []
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i]!
      const transform = this.transforms.get(i)
      const bytes = data.subarray(field.start, field.end)
      if (transform === undefined || (!field.quoted && bytes.equals(this.nullBytes))) {
        parts.push(bytes)
        continue
      }
      const value = this.spec.format === 'text' ? decodeTextField(bytes) : decodeCsvField(bytes, field.quoted, this.quote, this.escape)
      const result = transform(value)
      parts.push(result === null ? this.nullBytes : Buffer.from(this.spec.format === 'text' ? encodeTextField(result, this.spec.delimiter) : encodeCsvField(result, this.spec), 'utf8'))
      changed = true
    }
    for (const i of this.transforms.keys()) {
      if (i >= fields.length) throw new CopyRowError(`row ${this.rows} has ${fields.length} fields, fewer than the columns copied`)
    }
    if (!changed) return raw
    const last = fields[fields.length - 1]!
    const terminator = data.subarray(last.end, end)
    const out: Buffer[] = []
    parts.forEach((part, i) => {
      if (i > 0) out.push(this.delimiterBytes)
      out.push(part)
    })
    out.push(terminator)
    return Buffer.concat(out)
  }

  /** The fields of the row at `start` and where it ends (after its newline), or null when incomplete. */
  private split(data: Buffer, start: number, final: boolean): { fields: FieldSpan[]; end: number } | null {
    if (start >= data.length) return null
    return this.spec.format === 'text' ? this.splitText(data, start, final) : this.splitCsv(data, start, final)
  }

  private splitText(data: Buffer, start: number, final: boolean): { fields: FieldSpan[]; end: number } | null {
    let newline = data.indexOf(NEWLINE, start)
    if (newline < 0) {
      if (!final) return null
      newline = data.length
    }
    const lineEnd = newline > start && data[newline - 1] === CR ? newline - 1 : newline
    const fields: FieldSpan[] = []
    let fieldStart = start
    for (let i = start; i < lineEnd; i++) {
      const byte = data[i]!
      if (byte === BACKSLASH) {
        i++ // an escaped byte never ends a field
        continue
      }
      if (byte === this.delimiter) {
        fields.push({ start: fieldStart, end: i, quoted: false })
        fieldStart = i + 1
      }
    }
    fields.push({ start: fieldStart, end: lineEnd, quoted: false })
    return { fields, end: Math.min(newline + 1, data.length) }
  }

  private splitCsv(data: Buffer, start: number, final: boolean): { fields: FieldSpan[]; end: number } | null {
    const fields: FieldSpan[] = []
    let fieldStart = start
    let inQuotes = false
    let quoted = false
    for (let i = start; i < data.length; i++) {
      const byte = data[i]!
      if (inQuotes) {
        if (byte === this.escape && this.escape !== this.quote && data[i + 1] === this.quote) {
          i++
        } else if (byte === this.quote) {
          if (this.escape === this.quote && data[i + 1] === this.quote) i++
          else inQuotes = false
        }
        continue
      }
      if (byte === this.quote) {
        inQuotes = true
        quoted = true
      } else if (byte === this.delimiter) {
        fields.push({ start: fieldStart, end: i, quoted })
        fieldStart = i + 1
        quoted = false
      } else if (byte === NEWLINE) {
        const lineEnd = i > fieldStart && data[i - 1] === CR ? i - 1 : i
        fields.push({ start: fieldStart, end: lineEnd, quoted })
        return { fields, end: i + 1 }
      }
    }
    if (!final || inQuotes) return null
    fields.push({ start: fieldStart, end: data.length, quoted })
    return { fields, end: data.length }
  }
}

const TEXT_ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' }

/** COPY text format field → its value (backslash escapes decoded). */
export function decodeTextField(bytes: Buffer): string {
  if (!bytes.includes(BACKSLASH)) return bytes.toString('utf8')
  const out: number[] = []
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!
    if (byte !== BACKSLASH || i + 1 >= bytes.length) {
      out.push(byte)
      continue
    }
    const next = String.fromCharCode(bytes[++i]!)
    if (next in TEXT_ESCAPES) {
      out.push(TEXT_ESCAPES[next]!.charCodeAt(0))
    } else if (next >= '0' && next <= '7') {
      let digits = next
      while (digits.length < 3 && i + 1 < bytes.length && bytes[i + 1]! >= 0x30 && bytes[i + 1]! <= 0x37) digits += String.fromCharCode(bytes[++i]!)
      out.push(parseInt(digits, 8) & 0xff)
    } else if (next === 'x' && i + 1 < bytes.length && /[0-9a-fA-F]/.test(String.fromCharCode(bytes[i + 1]!))) {
      let digits = String.fromCharCode(bytes[++i]!)
      if (i + 1 < bytes.length && /[0-9a-fA-F]/.test(String.fromCharCode(bytes[i + 1]!))) digits += String.fromCharCode(bytes[++i]!)
      out.push(parseInt(digits, 16))
    } else {
      out.push(bytes[i]!)
    }
  }
  return Buffer.from(out).toString('utf8')
}

/** A value → COPY text format field. */
export function encodeTextField(value: string, delimiter: string): string {
  let out = ''
  for (const ch of value) {
    if (ch === '\\') out += '\\\\'
    else if (ch === '\n') out += '\\n'
    else if (ch === '\r') out += '\\r'
    else if (ch === '\t' && delimiter === '\t') out += '\\t'
    else if (ch === delimiter) out += `\\${ch}`
    else out += ch
  }
  return out
}

function decodeCsvField(bytes: Buffer, quoted: boolean, quote: number, escape: number): string {
  if (!quoted) return bytes.toString('utf8')
  const out: number[] = []
  let inQuotes = false
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!
    if (!inQuotes) {
      if (byte === quote) inQuotes = true
      else out.push(byte)
      continue
    }
    if (byte === escape && escape !== quote && bytes[i + 1] === quote) {
      out.push(quote)
      i++
    } else if (byte === quote) {
      if (escape === quote && bytes[i + 1] === quote) {
        out.push(quote)
        i++
      } else {
        inQuotes = false
      }
    } else {
      out.push(byte)
    }
  }
  return Buffer.from(out).toString('utf8')
}

function encodeCsvField(value: string, spec: CopySpec): string {
  const mustQuote = value === spec.nullString || value.includes(spec.delimiter) || value.includes(spec.quote) || value.includes('\n') || value.includes('\r') || (spec.escape !== spec.quote && value.includes(spec.escape))
  if (!mustQuote) return value
  let inner = ''
  for (const ch of value) {
    if (ch === spec.quote || (ch === spec.escape && spec.escape !== spec.quote)) inner += spec.escape + ch
    else inner += ch
  }
  return `${spec.quote}${inner}${spec.quote}`
}
