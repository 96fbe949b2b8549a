/**
 * Decrypting the protected cells of DataRow frames, written straight into an output
 * slab: a row costs one pass over its cells, one libsodium call per protected cell
 * and no allocation (the plaintext of a text column is opened into the row being
 * built; bytea hex text is decoded into the opener's scratch space). Rows that follow
 * each other in a slab go to the client as one write (FrameWriter joins their ranges).
 */
import { ColumnAccessError, type ColumnAccessView, type ReadDenial } from '../policy/access.js'
import type { EnvelopeOpener } from '../policy/envelope.js'
import { PGVEIL_REFUSED } from '../policy/sql-plan.js'
import { WireError } from '../protocol/errors.js'
import type { SessionFormat, TypeCodec } from '../protocol/types.js'

export interface ProtectedField {
  readonly kind: 'decrypt'
  /** Opens the column's envelopes (what they are bound to: ColumnPolicy.binding). */
  readonly opener: EnvelopeOpener
  /** schema.table.column, the name access rules use. */
  readonly name: string
  readonly codec: TypeCodec
  readonly binary: boolean
  /** The plaintext bytes are already what the client gets (text, in either format). */
  readonly verbatim: boolean
}

/**
 * A bytea result column that does not come straight from a protected column (a view,
 * a function, an expression): it must not carry a pgveil envelope to the client.
 */
export interface GuardedField {
  readonly kind: 'guard'
  readonly name: string
  readonly binary: boolean
}

/** Per result column: how to turn its cell into what the client asked for (undefined: unchanged). */
export interface RowPlan {
  readonly fields: readonly (ProtectedField | GuardedField | undefined)[]
  /** Some field is decrypted (else the row is only checked, and forwarded as it came). */
  readonly decrypts: boolean
}

/** The plan of a result with no protected or bytea column: rows pass unchanged. */
export const NO_PROTECTED_COLUMNS: RowPlan = { fields: [], decrypts: false }

/** A result column holds an envelope pgveil cannot attribute to a protected column. */
export class UnattributedCiphertextError extends WireError {
  constructor(column: string) {
    super(PGVEIL_REFUSED, `result column "${column}" holds values encrypted by pgveil but does not come straight from a protected column (a view, function or expression), so pgveil cannot decrypt it`, {
      severity: 'FATAL',
      hint: 'select the protected column from its table through pgveil',
    })
  }
}

/** New slabs are this big (or as big as one row needs). */
const SLAB_BYTES = 64 * 1024

/**
 * Where rows are built: a slab written front to back. Bytes before `rowStart` belong
 * to finished rows, which may already be queued for a socket, and are not written
 * again until the session has seen them all handed to the kernel (rewind); when the
 * row being built does not fit, it moves to a new slab.
 */
export class RowSink {
  buffer: Buffer
  /** Where the row being built (or the last one finished) starts. */
  rowStart = 0
  /** The end of what is written. */
  position = 0

  constructor(bytes = SLAB_BYTES) {
    this.buffer = Buffer.allocUnsafe(bytes)
  }

  /** Room for `bytes` more at `position`. */
  ensure(bytes: number): void {
    if (this.position + bytes <= this.buffer.length) return
    const row = this.buffer.subarray(this.rowStart, this.position)
    this.buffer = Buffer.allocUnsafe(Math.max(SLAB_BYTES, 2 * (row.length + bytes)))
    row.copy(this.buffer, 0)
    this.rowStart = 0
    this.position = row.length
  }

  /** Start again at the front of the slab: only when nothing written to it is still queued for a socket. */
  rewind(): void {
    this.rowStart = 0
    this.position = 0
  }

  copy(source: Buffer, start: number, end: number): void {
    this.ensure(end - start)
    this.position += source.copy(this.buffer, this.position, start, end)
  }
}

/** A cell the access rules turn into SQL NULL. */
const NULL_LENGTH = -1

export class RowDecryptor {
  /** Values decrypted since the caller last took the count. */
  decrypted = 0

  /**
   * Writes the row in frame[start, end) with its protected cells decrypted into
   * `sink` (the row is then sink.buffer[sink.rowStart, sink.position)), and checks
   * that no other bytea cell carries an envelope. Returns false, writing nothing, when
   * no cell changes (the row goes on as it came). Throws DecryptionError,
   * UnattributedCiphertextError or ColumnAccessError (fail closed); nothing of the
   * row is then left in the sink.
   */
  decryptRow(frame: Buffer, start: number, end: number, plan: RowPlan, access: ColumnAccessView, format: SessionFormat, sink: RowSink): boolean {
    const fields = plan.fields
    const count = Math.min(frame.readUInt16BE(start + 5), fields.length)
    const readDenied = access.readDenied.size === 0 ? null : access.readDenied
    sink.rowStart = sink.position
    let offset = start + 7
    // Bytes from here up to the current cell are copied unchanged.
    let unchangedFrom = start
    let changed = false
    try {
      for (let i = 0; i < count; i++) {
        const length = frame.readInt32BE(offset)
        const cellStart = offset + 4
        const cellEnd = cellStart + Math.max(length, 0)
        const field = fields[i]
        if (field !== undefined && length >= 0) {
          if (field.kind === 'guard') {
            if (looksLikeEnvelope(frame, cellStart, length, field.binary)) throw new UnattributedCiphertextError(field.name)
          } else {
            sink.copy(frame, unchangedFrom, offset)
            this.#writeCell(frame, cellStart, cellEnd, field, readDenied?.get(field.name), format, sink)
            unchangedFrom = cellEnd
            changed = true
          }
        }
        offset = cellEnd
      }
    } catch (error) {
      sink.position = sink.rowStart
      throw error
    }
    if (!changed) {
      sink.position = sink.rowStart
      return false
    }
    sink.copy(frame, unchangedFrom, end)
    sink.buffer.writeUInt32BE(sink.position - sink.rowStart - 1, sink.rowStart + 1)
    return true
  }

  /** One protected cell, its length first: plaintext, NULL, a mask or an error (access rules), in the format the client asked for. */
  #writeCell(frame: Buffer, start: number, end: number, field: ProtectedField, denied: ReadDenial | undefined, format: SessionFormat, sink: RowSink): void {
    if (denied !== undefined && denied.kind === 'error') throw new ColumnAccessError(denied.message)
    if (denied !== undefined && denied.kind === 'null') {
      sink.ensure(4)
      sink.position = sink.buffer.writeInt32BE(NULL_LENGTH, sink.position)
      return
    }
    this.decrypted++
    // The plaintext is never longer than the cell that carries its envelope.
    sink.ensure(4 + end - start)
    const lengthAt = sink.position
    const valueAt = lengthAt + 4
    const opener = field.opener
    const buffer = sink.buffer
    // The cell comes in the format the client asked for: bytea text output (hex, or the older escape format) unless binary.
    const length =
      field.binary ? opener.openInto(frame, start, end, buffer, valueAt)
      : end - start >= 2 && frame[start] === 0x5c && frame[start + 1] === 0x78 ? opener.openHexInto(frame, start, end, buffer, valueAt)
      : opener.open(decodeByteaText(frame.subarray(start, end))).copy(buffer, valueAt)
    if (denied === undefined && field.verbatim) {
      buffer.writeInt32BE(length, lengthAt)
      sink.position = valueAt + length
      return
    }
    const plaintext = buffer.toString('utf8', valueAt, valueAt + length)
    const cell =
      denied !== undefined ? Buffer.from(denied.mask(plaintext), 'utf8')
      : field.binary ? field.codec.toBinary(plaintext)
      : Buffer.from(field.codec.toText(plaintext, format), 'utf8')
    sink.ensure(4 + cell.length)
    sink.position = sink.buffer.writeInt32BE(cell.length, sink.position)
    sink.position += cell.copy(sink.buffer, sink.position)
  }
}

/** bytea's text output: hex (`\x…`, the default) or the older escape format (`bytea_output = escape`). */
export function decodeByteaText(cell: Buffer): Buffer {
  if (cell.length >= 2 && cell[0] === 0x5c && cell[1] === 0x78) return Buffer.from(cell.toString('latin1', 2), 'hex')
  const out = Buffer.allocUnsafe(cell.length)
  let length = 0
  for (let i = 0; i < cell.length; i++) {
    const byte = cell[i]!
    if (byte !== 0x5c) {
      out[length++] = byte
    } else if (cell[i + 1] === 0x5c) {
      out[length++] = 0x5c
      i++
    } else {
      out[length++] = parseInt(cell.toString('latin1', i + 1, i + 4), 8)
      i += 3
    }
  }
  return out.subarray(0, length)
}

/** The envelope magic and format version, raw (binary format) or as bytea hex text (`\x707601…`). */
const ENVELOPE_PREFIX = Buffer.from([0x70, 0x76, 0x01])
const ENVELOPE_PREFIX_TEXT = Buffer.from('\\x707601')

function looksLikeEnvelope(frame: Buffer, start: number, length: number, binary: boolean): boolean {
  const prefix = binary ? ENVELOPE_PREFIX : ENVELOPE_PREFIX_TEXT
  return length >= prefix.length && frame.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0
}
