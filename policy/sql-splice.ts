/**
 * Byte-exact edits of SQL text. Parse-tree locations are UTF-8 byte offsets, so
 * edits happen on the UTF-8 bytes; a JS string index would be off by one for
 * every `é` and by three for every emoji before the edit (DESIGN decision 1).
 */
import type { LiteralSlot, SqlAnalysis, SqlReplacement } from './sql-plan.js'

function isContinuationByte(bytes: Uint8Array, offset: number): boolean {
  const b = bytes[offset]
  return b !== undefined && (b & 0xc0) === 0x80
}

/**
 * Replace byte ranges of `sql` (UTF-8 offsets, any order, not overlapping) with
 * new text. Throws `RangeError` for a range outside the text, overlapping
 * another, or cutting a multi-byte character.
 */
export function spliceLiterals(sql: string, replacements: readonly SqlReplacement[]): string {
  if (replacements.length === 0) return sql
  const source = Buffer.from(sql, 'utf8')
  const sorted = [...replacements].sort((a, b) => a.start - b.start || a.end - b.end)
  const texts: Buffer[] = []
  let length = source.length
  let previousEnd = 0
  for (const r of sorted) {
    if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < previousEnd || r.end < r.start || r.end > source.length) {
      throw new RangeError(`replacement [${r.start}, ${r.end}) is outside the ${source.length}-byte text or overlaps another`)
    }
    if (isContinuationByte(source, r.start) || isContinuationByte(source, r.end)) {
      throw new RangeError(`replacement [${r.start}, ${r.end}) cuts a multi-byte UTF-8 character`)
    }
    const text = Buffer.from(r.text, 'utf8')
    texts.push(text)
    length += text.length - (r.end - r.start)
    previousEnd = r.end
  }
  const out = Buffer.allocUnsafe(length)
  let read = 0
  let write = 0
  sorted.forEach((r, i) => {
    write += source.copy(out, write, read, r.start)
    write += (texts[i] as Buffer).copy(out, write)
    read = r.end
  })
  source.copy(out, write, read)
  return out.toString('utf8')
}

/**
 * The edits that turn an analyzed text into what PostgreSQL may see: each
 * literal slot replaced by `encode(slot)` (an encrypted `'\x…'::bytea` literal;
 * `NULL` stays `NULL` without calling `encode`) and each no-op cast removed.
 * Feed the result to `spliceLiterals`.
 */
export function literalReplacements(analysis: SqlAnalysis, encode: (slot: LiteralSlot) => string): SqlReplacement[] {
  const out: SqlReplacement[] = []
  for (const statement of analysis.statements) {
    if (statement.action !== 'rewrite') continue
    for (const slot of statement.literals) out.push({ start: slot.start, end: slot.end, text: slot.value === null ? 'NULL' : encode(slot) })
    for (const cast of statement.castRemovals) out.push({ start: cast.start, end: cast.end, text: '' })
  }
  return out
}
