/**
 * Byte-exact edits of SQL text. Parse-tree locations are UTF-8 byte offsets, so
 * edits happen on the UTF-8 bytes; a JS string index would be off by one for
 * every `é` and by three for every emoji before the edit (DESIGN decision 1).
 */
import type { LiteralSlot, SearchSlot, SqlAnalysis, SqlReplacement } from './sql-plan.js'

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
 * `NULL` stays `NULL` without calling `encode`), each no-op cast removed, the
 * fixed rewrites of equality searches applied, and each search slot replaced by
 * `slot.prefix` and `(searchValues(slot))`. Feed the result to `spliceLiterals`.
 */
export function literalReplacements(analysis: SqlAnalysis, encode: (slot: LiteralSlot) => string, searchValues?: (slot: SearchSlot) => string): SqlReplacement[] {
  const out: SqlReplacement[] = []
  for (const statement of analysis.statements) {
    if (statement.action !== 'rewrite') continue
    for (const slot of statement.literals) out.push({ start: slot.start, end: slot.end, text: slot.value === null ? 'NULL' : encode(slot) })
    for (const cast of statement.castRemovals) out.push({ start: cast.start, end: cast.end, text: '' })
    for (const rewrite of statement.rewrites) out.push(rewrite)
    for (const slot of statement.searches) {
      if (searchValues === undefined) throw new TypeError('the analysis has equality searches: pass searchValues to literalReplacements')
      out.push({ start: slot.start, end: slot.end, text: `${slot.prefix}(${searchValues(slot)})` })
    }
  }
  return out
}

/** The `bytea[]` SQL of a search's parameters as pgveil binds them (`$1::bytea[] || $2::bytea[]`), with `literals` rendering the literal values. */
export function searchArraySql(slot: SearchSlot, literals: (values: readonly (string | null)[]) => string): string {
  const parts: string[] = []
  const pending: (string | null)[] = []
  for (const value of slot.values) {
    if (value.kind === 'literal') pending.push(value.value)
    else parts.push(`$${value.n}::bytea[]`)
  }
  if (pending.length > 0) parts.push(literals(pending))
  return parts.join(' || ')
}
