/**
 * Token-level facts the parse tree does not give: where a literal ends, where a
 * cast's type name ends, whether an unparseable text names a table. Built on
 * libpg-query's `scanSync`, whose offsets are UTF-8 byte offsets like the parse
 * tree's `location`s. Scanning costs a second pass over the text, so a
 * `SqlTokens` scans lazily, only for statements that write protected values.
 */
import { scanSync, type ScanToken } from 'libpg-query'
import type { ByteRange } from './sql-plan.js'

/** Words a cast's type name may consist of when it is one of the accepted plaintext types. */
const TYPE_NAME_WORDS = new Set([
  'pg_catalog', '.', 'text', 'integer', 'int', 'int4', 'int8', 'bigint', 'smallint', 'int2', 'numeric', 'decimal',
  'boolean', 'bool', 'date', 'timestamptz', 'timestamp', 'with', 'time', 'zone', 'uuid', 'jsonb', 'json',
  'real', 'float4', 'float8', 'double', 'precision', 'bytea', 'varchar', 'character', 'varying',
])

/** The identifier a token stands for, folded as PostgreSQL folds it (`"Ab"` → `Ab`, `Ab` → `ab`). */
export function foldIdentifier(text: string): string {
  if (text.length >= 2 && text.startsWith('"') && text.endsWith('"')) return text.slice(1, -1).replaceAll('""', '"')
  // PostgreSQL downcases ASCII letters only (UTF-8 server encoding).
  return text.replace(/[A-Z]+/g, (s) => s.toLowerCase())
}

export class SqlTokens {
  readonly #sql: string
  #tokens: readonly ScanToken[] | undefined

  constructor(sql: string) {
    this.#sql = sql
  }

  /** All tokens; throws when the text cannot be scanned (an unterminated string, say). */
  get tokens(): readonly ScanToken[] {
    this.#tokens ??= scanSync(this.#sql).tokens
    return this.#tokens
  }

  /** Index of the token starting exactly at `offset`, or -1. */
  indexAt(offset: number): number {
    const tokens = this.tokens
    let lo = 0
    let hi = tokens.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const start = (tokens[mid] as ScanToken).start
      if (start === offset) return mid
      if (start < offset) lo = mid + 1
      else hi = mid - 1
    }
    return -1
  }

  /** Index of the first token starting at or after `offset` (the token count when none does). */
  indexFrom(offset: number): number {
    const tokens = this.tokens
    let lo = 0
    let hi = tokens.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((tokens[mid] as ScanToken).start < offset) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  at(index: number): ScanToken | undefined {
    return this.tokens[index]
  }

  /**
   * The byte range of the constant whose parse-tree location is `location`: one
   * token, plus the number after a folded unary minus (`-5` is one constant), plus
   * a `UESCAPE '…'` clause after `U&'…'`. Undefined when no token starts there.
   */
  constantRange(location: number): ByteRange | undefined {
    const i = this.indexAt(location)
    const token = this.at(i)
    if (token === undefined) return undefined
    if (token.text === '-') {
      const number = this.at(i + 1)
      return number === undefined ? undefined : { start: token.start, end: number.end }
    }
    if (/^u&'/i.test(token.text)) {
      const next = this.at(i + 1)
      const escape = this.at(i + 2)
      if (next !== undefined && escape !== undefined && next.text.toLowerCase() === 'uescape') return { start: token.start, end: escape.end }
    }
    return { start: token.start, end: token.end }
  }

  /**
   * What to delete to drop a cast whose value spans `value`, keeping the value.
   * `castLocation` is the TypeCast node's location (the `::`, the `CAST` keyword,
   * or -1 for a `type 'literal'` prefix cast whose type name starts at
   * `typeLocation`). Undefined when the tokens do not have the expected shape.
   */
  castRemovals(castLocation: number, typeLocation: number, value: ByteRange): ByteRange[] | undefined {
    if (castLocation < 0) {
      // `text 'x'`: the type name precedes the literal.
      return typeLocation >= 0 && typeLocation < value.start ? [{ start: typeLocation, end: value.start }] : undefined
    }
    const i = this.indexAt(castLocation)
    const token = this.at(i)
    if (token === undefined) return undefined
    if (token.text === '::') {
      // `value::type`: from the end of what precedes `::` (the value, or its closing
      // parenthesis) to the end of the type name.
      const before = this.at(i - 1)
      if (before === undefined || before.end < value.end) return undefined
      let j = i + 1
      let end = -1
      for (let t = this.at(j); t !== undefined && TYPE_NAME_WORDS.has(foldIdentifier(t.text)); t = this.at(++j)) end = t.end
      return end < 0 ? undefined : [{ start: before.end, end }]
    }
    if (token.text.toLowerCase() === 'cast') {
      // `CAST(value AS type)`: delete `CAST(` and ` AS type)`.
      const open = this.at(i + 1)
      const first = this.at(i + 2)
      if (open?.text !== '(' || first === undefined) return undefined
      let depth = 0
      let as = -1
      for (let j = i + 1; ; j++) {
        const t = this.at(j)
        if (t === undefined) return undefined
        if (t.text === '(') depth++
        else if (t.text === ')') {
          depth--
          if (depth === 0) {
            const last = this.at(as - 1)
            if (as < 0 || last === undefined) return undefined
            return [
              { start: token.start, end: first.start },
              { start: last.end, end: t.end },
            ]
          }
        } else if (depth === 1 && t.text.toLowerCase() === 'as') as = j
      }
    }
    return undefined
  }

  /**
   * The first token naming one of `names` (folded identifiers), as written; a
   * Unicode-escaped identifier (`U&"…"`) counts as a match, as it is not decoded
   * here. Undefined when none does.
   */
  firstNaming(names: ReadonlySet<string>): string | undefined {
    for (const t of this.tokens) {
      if (t.tokenName === 'SCONST' || t.tokenName === 'ICONST' || t.tokenName === 'FCONST' || t.tokenName === 'PARAM') continue
      if (/^u&"/i.test(t.text) || names.has(foldIdentifier(t.text))) return t.text
    }
    return undefined
  }
}
