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

/**
 * The `bytea[]` SQL of a search as pgveil binds it. Scalar parameters and literals
 * become the elements of one `ARRAY[…]`: `($1::bytea[])[1]` … `($1::bytea[])[k]` for a
 * parameter bound as the `bytea[]` of its `indexVersions` index values, and what
 * `literalElements` renders for the literals (one `bytea` expression per index value).
 * Array parameters (`= ANY($n)`) are appended whole with `||`.
 *
 * Why elements and not `$1::bytea[]`: PostgreSQL plans `x = ANY(array)` for as many
 * values as the array holds, and guesses 10 for a parameter. A prepared lookup then
 * costs ten index probes in its generic plan against one in a custom plan, so
 * PostgreSQL plans every execution anew. With the elements written out it knows
 * there is one value per index key version and keeps the generic plan. The count is
 * safe to fix at Parse: a session keeps its keyring for life (a policy change ends
 * the session), so Bind sends exactly `indexVersions` values for each parameter (one
 * NULL for a NULL value, which leaves the others NULL too: the comparison is NULL
 * either way, as `= NULL` is).
 */
export function searchArraySql(slot: SearchSlot, indexVersions: number, literalElements: (values: readonly (string | null)[]) => readonly string[]): string {
  if (!Number.isInteger(indexVersions) || indexVersions < 1) throw new RangeError(`indexVersions must be a positive integer, got ${indexVersions}`)
  const elements: string[] = []
  const arrays: string[] = []
  const literals: (string | null)[] = []
  for (const value of slot.values) {
    if (value.kind === 'literal') literals.push(value.value)
    else if (value.array) arrays.push(`$${value.n}::bytea[]`)
    else for (let i = 1; i <= indexVersions; i++) elements.push(`($${value.n}::bytea[])[${i}]`)
  }
  if (literals.length > 0) elements.push(...literalElements(literals))
  return (elements.length > 0 ? [`ARRAY[${elements.join(', ')}]`, ...arrays] : arrays).join(' || ')
}
