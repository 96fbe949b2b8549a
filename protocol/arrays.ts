/**
 * One-dimensional PostgreSQL arrays on the wire: the text form (`{a,"b c",NULL}`)
 * and the binary form (array_send), as far as pgveil needs them: reading the
 * elements of an array parameter, writing a `bytea[]` parameter.
 */
import { SqlState, WireError } from './errors.js'
import { TypeOid } from './types.js'


function invalid(what: string, why: string): WireError {
  return new WireError(SqlState.InvalidTextRepresentation, `${what} is not a valid one-dimensional array: ${why}`)
}

/**
 * The elements of an array value, as text (text format) or as each element's
 * binary form (binary format); NULL elements as null. Throws WireError naming
 * `what` for malformed input or more than one dimension.
 */
export function decodeArrayElements(value: Buffer, binary: boolean, what: string): (string | Buffer | null)[] {
  return binary ? decodeBinary(value, what) : decodeText(value.toString('utf8'), what)
}

function decodeBinary(value: Buffer, what: string): (Buffer | null)[] {
  if (value.length < 12) throw invalid(what, 'binary array shorter than its header')
  const dimensions = value.readInt32BE(0)
  if (dimensions === 0) return []
  if (dimensions !== 1) throw invalid(what, `it has ${dimensions} dimensions`)
  if (value.length < 20) throw invalid(what, 'binary array shorter than its header')
  const count = value.readInt32BE(12)
  if (count < 0) throw invalid(what, 'negative element count')
  const out: (Buffer | null)[] = []
  let offset = 20
  for (let i = 0; i < count; i++) {
    if (offset + 4 > value.length) throw invalid(what, 'truncated element')
    const length = value.readInt32BE(offset)
    offset += 4
    if (length === -1) {
      out.push(null)
      continue
    }
    if (length < 0 || offset + length > value.length) throw invalid(what, 'truncated element')
    out.push(value.subarray(offset, offset + length))
    offset += length
  }
  return out
}

function decodeText(text: string, what: string): (string | null)[] {
  const body = text.trim()
  if (!body.startsWith('{') || !body.endsWith('}')) throw invalid(what, 'expected {…} (dimension decorations are not supported)')
  const out: (string | null)[] = []
  let i = 1
  const end = body.length - 1
  const skipSpace = (): void => {
    while (i < end && /\s/.test(body[i]!)) i++
  }
  skipSpace()
  if (i === end) return out
  for (;;) {
    skipSpace()
    const c = body[i]
    if (c === '{') throw invalid(what, 'it has more than one dimension')
    if (c === '"') {
      let element = ''
      i++
      for (;;) {
        if (i >= end) throw invalid(what, 'unterminated quoted element')
        const d = body[i]!
        if (d === '\\') {
          if (i + 1 >= end) throw invalid(what, 'unterminated quoted element')
          element += body[i + 1]
          i += 2
        } else if (d === '"') {
          i++
          break
        } else {
          element += d
          i++
        }
      }
      out.push(element)
    } else {
      let element = ''
      while (i < end && body[i] !== ',') {
        const d = body[i]!
        if (d === '"' || d === '{' || d === '}') throw invalid(what, `unexpected ${d}`)
        if (d === '\\') {
          if (i + 1 >= end) throw invalid(what, 'dangling backslash')
          element += body[i + 1]
          i += 2
          continue
        }
        element += d
        i++
      }
      element = element.trim()
      if (element === '') throw invalid(what, 'empty element')
      out.push(element.toUpperCase() === 'NULL' ? null : element)
    }
    skipSpace()
    if (i === end) return out
    if (body[i] !== ',') throw invalid(what, `unexpected ${body[i]}`)
    i++
  }
}

/** A one-dimensional `bytea[]` in binary format (array_send). */
export function encodeByteaArray(elements: readonly (Uint8Array | null)[]): Buffer {
  if (elements.length === 0) {
    const empty = Buffer.alloc(12)
    empty.writeInt32BE(TypeOid.bytea, 8)
    return empty
  }
  let length = 20
  let hasNull = 0
  for (const e of elements) {
    length += 4 + (e === null ? 0 : e.length)
    if (e === null) hasNull = 1
  }
  const out = Buffer.allocUnsafe(length)
  out.writeInt32BE(1, 0)
  out.writeInt32BE(hasNull, 4)
  out.writeInt32BE(TypeOid.bytea, 8)
  out.writeInt32BE(elements.length, 12)
  out.writeInt32BE(1, 16)
  let offset = 20
  for (const e of elements) {
    if (e === null) {
      out.writeInt32BE(-1, offset)
      offset += 4
      continue
    }
    out.writeInt32BE(e.length, offset)
    out.set(e, offset + 4)
    offset += 4 + e.length
  }
  return out
}
