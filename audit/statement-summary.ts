/**
 * What the audit log says about a SQL text: per statement its kind, the text
 * normalized with libpg-query (every literal a `$n` placeholder) and its
 * fingerprint, the tables it names and the protected columns it reads and
 * writes. Parsed once per statement shape (bounded cache): the cache key is the
 * text with its literals blanked by a cheap scanner, so pgbench-style texts that
 * differ only in their literals parse once; what is logged is always
 * libpg-query's normalization of a real text of that shape. A text libpg-query
 * cannot parse still gets a line, cut at its first quote and with numbers
 * replaced, so no literal is ever logged.
 *
 * Protected columns are attributed by name over the tables the statement names
 * (a column reference that matches a protected column of one of them counts),
 * which over-reports rather than misses: an audit reader would rather see a
 * column that was only compared than miss one that was read.
 */
import { createHash } from 'node:crypto'
import { fingerprintSync, loadModule, normalizeSync, parseSync } from 'libpg-query'
import { LineFragment } from './line-template.js'
import type { StatementKind } from './metrics.js'

/** The protected columns of a table (stored names), or undefined when it has none. */
export interface ProtectedColumnLookup {
  columnsOf(schema: string, table: string): readonly string[] | undefined
  /** For a view's column: the table columns it returns, logged in its place (by default `schema.table.column` itself). */
  originsOf?(schema: string, table: string, column: string): readonly string[] | undefined
  /** Changes when columnsOf() may answer otherwise (readable views came or went): summaries made before are forgotten. */
  readonly generation?: number
}

export interface StatementSummary {
  readonly kind: StatementKind
  readonly statement: string
  readonly fingerprint: string
  readonly tables: readonly string[]
  readonly protectedRead: readonly string[]
  readonly protectedWritten: readonly string[]
  /** The fields above as JSON object members (audit line keys) and a comma, serialized once: a statement line's fragment. */
  readonly members: LineFragment
}

const DEFAULT_CACHE_ENTRIES = 4096
/** Longer texts are summarized each time rather than pinned in the cache. */
const MAX_CACHED_CHARS = 16 * 1024

const EMPTY: StatementSummary = withJson({ kind: 'empty', statement: '', fingerprint: '', tables: [], protectedRead: [], protectedWritten: [] })

/** Adds the pre-serialized members: a statement line is then assembled without serializing these again. */
export function withJson(summary: Omit<StatementSummary, 'members'>): StatementSummary {
  const json =
    `"kind":${JSON.stringify(summary.kind)},"statement":${JSON.stringify(summary.statement)},"fingerprint":${JSON.stringify(summary.fingerprint)},` +
    `"tables":${JSON.stringify(summary.tables)},"protected_read":${JSON.stringify(summary.protectedRead)},"protected_written":${JSON.stringify(summary.protectedWritten)}`
  return Object.freeze({ ...summary, members: new LineFragment(Buffer.from(`${json},`)) })
}

let moduleLoaded: Promise<void> | null = null

export class StatementSummarizer {
  private readonly cache = new Map<string, readonly StatementSummary[]>()
  private readonly lookup: ProtectedColumnLookup | null
  private lookupGeneration = 0
  private readonly maxEntries: number

  /** Loads libpg-query's WebAssembly module first. */
  static async create(lookup: ProtectedColumnLookup | null, options: { cacheEntries?: number } = {}): Promise<StatementSummarizer> {
    await (moduleLoaded ??= loadModule())
    return new StatementSummarizer(lookup, options.cacheEntries ?? DEFAULT_CACHE_ENTRIES)
  }

  private constructor(lookup: ProtectedColumnLookup | null, maxEntries: number) {
    this.lookup = lookup
    this.maxEntries = maxEntries
  }

  /** Changes whenever summaries made before may no longer hold (see ProtectedColumnLookup.generation); those are forgotten. */
  get generation(): number {
    this.forgetIfStale()
    return this.lookupGeneration
  }

  private forgetIfStale(): void {
    const generation = this.lookup?.generation ?? 0
    if (generation === this.lookupGeneration) return
    this.lookupGeneration = generation
    this.cache.clear()
  }

  /** One summary per statement of `sql`, in order (a simple Query may hold several). */
  summarize(sql: string): readonly StatementSummary[] {
    this.forgetIfStale()
    if (sql.length > MAX_CACHED_CHARS) return this.compute(sql)
    const shape = literalShape(sql)
    const cached = this.cache.get(shape)
    if (cached !== undefined) return cached
    const summaries = this.compute(sql)
    // Oldest-first eviction: cheaper than true LRU and enough for statement shapes, which repeat.
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as string)
    this.cache.set(shape, summaries)
    return summaries
  }

  private compute(sql: string): readonly StatementSummary[] {
    if (sql.trim() === '') return [EMPTY]
    let stmts: readonly RawStmt[]
    try {
      stmts = (parseSync(sql) as { stmts?: RawStmt[] }).stmts ?? []
    } catch {
      return [unparseable(sql)]
    }
    if (stmts.length === 0) return [EMPTY]
    const bytes = stmts.length > 1 ? Buffer.from(sql) : null
    return stmts.map((raw) => {
      const text = bytes === null ? sql : bytes.toString('utf8', raw.stmt_location ?? 0, raw.stmt_len === undefined || raw.stmt_len === 0 ? bytes.length : (raw.stmt_location ?? 0) + raw.stmt_len)
      return this.summarizeOne(text.trim(), raw.stmt)
    })
  }

  private summarizeOne(text: string, stmt: Record<string, unknown> | undefined): StatementSummary {
    if (stmt === undefined) return EMPTY
    let statement: string
    let fingerprint: string
    try {
      statement = normalizeSync(text)
      fingerprint = fingerprintSync(text)
    } catch {
      return unparseable(text)
    }
    const found = collect(stmt)
    const tables = [...new Set(found.relations.map((r) => `${r.schema}.${r.table}`))]
    const { read, written } = this.protectedColumns(stmt, found)
    return withJson({ kind: kindOf(stmt), statement, fingerprint, tables, protectedRead: read, protectedWritten: written })
  }

  private protectedColumns(stmt: Record<string, unknown>, found: Collected): { read: string[]; written: string[] } {
    const lookup = this.lookup
    if (lookup === null) return { read: [], written: [] }
    type Entry = { readonly schema: string; readonly table: string; readonly columns: readonly string[] }
    const byName = new Map<string, Entry>()
    const protectedTables: Entry[] = []
    for (const r of found.relations) {
      const columns = lookup.columnsOf(r.schema, r.table)
      if (columns === undefined) continue
      const entry = { schema: r.schema, table: r.table, columns }
      protectedTables.push(entry)
      byName.set(r.alias ?? r.table, entry)
      byName.set(r.table, entry)
    }
    if (protectedTables.length === 0) return { read: [], written: [] }
    const read = new Set<string>()
    const written = new Set<string>()
    // A readable view's column is logged as the table columns it returns.
    const add = (into: Set<string>, entry: Entry, column: string): void => {
      for (const name of lookup.originsOf?.(entry.schema, entry.table, column) ?? [`${entry.schema}.${entry.table}.${column}`]) into.add(name)
    }
    const all = (into: Set<string>, entry: Entry, only?: readonly string[]): void => {
      for (const c of entry.columns) if (only === undefined || only.length === 0 || only.includes(c)) add(into, entry, c)
    }
    for (const ref of found.columnRefs) {
      const last = ref[ref.length - 1]
      const qualifier = ref.length > 1 ? ref[ref.length - 2] : undefined
      const candidates = qualifier === undefined ? protectedTables : [byName.get(qualifier)].filter((e) => e !== undefined)
      for (const entry of candidates) {
        if (last === '*') all(read, entry)
        else if (last !== undefined && entry.columns.includes(last)) add(read, entry, last)
      }
    }
    const target = (relation: unknown): Entry | undefined => {
      const r = relation as { relname?: string; schemaname?: string } | undefined
      if (r?.relname === undefined) return undefined
      const schema = r.schemaname ?? 'public'
      const columns = lookup.columnsOf(schema, r.relname)
      return columns === undefined ? undefined : { schema, table: r.relname, columns }
    }
    const [type, node] = Object.entries(stmt)[0] ?? []
    const body = node as Record<string, unknown> | undefined
    if (body !== undefined) {
      const entry = target(body.relation)
      if (entry !== undefined) {
        if (type === 'InsertStmt') all(written, entry, targetNames(body.cols))
        else if (type === 'UpdateStmt') all(written, entry, targetNames(body.targetList).filter((n) => n !== ''))
        else if (type === 'MergeStmt') all(written, entry)
        else if (type === 'CopyStmt') all(body.is_from === true ? written : read, entry, stringList(body.attlist))
      }
    }
    return { read: [...read].sort(), written: [...written].sort() }
  }
}

interface RawStmt {
  stmt?: Record<string, unknown>
  stmt_location?: number
  stmt_len?: number
}

interface Collected {
  relations: { schema: string; table: string; alias: string | undefined }[]
  columnRefs: string[][]
}

function collect(root: unknown): Collected {
  const relations: Collected['relations'] = []
  const columnRefs: string[][] = []
  const cteNames = new Set<string>()
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) walk(item)
      return
    }
    if (node === null || typeof node !== 'object') return
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      if (key === 'RangeVar') {
        const r = value as { relname?: string; schemaname?: string; alias?: { aliasname?: string } }
        if (r.relname !== undefined) relations.push({ schema: r.schemaname ?? '', table: r.relname, alias: r.alias?.aliasname })
      } else if (key === 'ColumnRef') {
        const fields = ((value as { fields?: unknown[] }).fields ?? []).map((f) => {
          const field = f as { String?: { sval?: string }; A_Star?: unknown }
          return field.A_Star !== undefined ? '*' : (field.String?.sval ?? '')
        })
        columnRefs.push(fields)
      } else if (key === 'CommonTableExpr') {
        const name = (value as { ctename?: string }).ctename
        if (name !== undefined) cteNames.add(name)
      } else if (key === 'relation' && value !== null && typeof value === 'object' && !('RangeVar' in value)) {
        // InsertStmt/UpdateStmt/DeleteStmt/CopyStmt hold their target as a bare RangeVar.
        walk({ RangeVar: value })
        continue
      }
      walk(value)
    }
  }
  walk(root)
  return {
    // An unqualified name that a WITH clause defines is that CTE, not a table.
    relations: relations.filter((r) => r.schema !== '' || !cteNames.has(r.table)).map((r) => ({ ...r, schema: r.schema === '' ? 'public' : r.schema })),
    columnRefs,
  }
}

function targetNames(list: unknown): string[] {
  if (!Array.isArray(list)) return []
  return list.map((item) => (item as { ResTarget?: { name?: string } }).ResTarget?.name ?? '')
}

function stringList(list: unknown): string[] {
  if (!Array.isArray(list)) return []
  return list.map((item) => (item as { String?: { sval?: string } }).String?.sval ?? '')
}

const DDL_PREFIXES = ['Create', 'Alter', 'Drop', 'Rename', 'Comment', 'Grant', 'Reindex', 'Cluster', 'Refresh', 'Define', 'Composite', 'CompositeType', 'Index', 'View', 'Rule', 'SecLabel', 'ImportForeign']

function kindOf(stmt: Record<string, unknown>): StatementKind {
  const type = Object.keys(stmt)[0] ?? ''
  switch (type) {
    case 'SelectStmt':
      return (stmt.SelectStmt as { intoClause?: unknown }).intoClause === undefined ? 'select' : 'ddl'
    case 'InsertStmt':
      return 'insert'
    case 'UpdateStmt':
      return 'update'
    case 'DeleteStmt':
    case 'TruncateStmt':
      return 'delete'
    case 'MergeStmt':
      return 'merge'
    case 'CopyStmt':
      return 'copy'
    case 'TransactionStmt':
      return 'transaction'
    case 'VariableSetStmt':
    case 'VariableShowStmt':
      return 'set'
    default:
      return DDL_PREFIXES.some((prefix) => type.startsWith(prefix)) ? 'ddl' : 'utility'
  }
}

/** A quote, or a `$` that is not a `$n` parameter (a dollar quote). */
const FIRST_QUOTE = /(?:['"]|\$(?!\d)).*$/s
const NUMBER = /(?<![$\w])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?\b/g
const KEYWORD = /^\s*([A-Za-z]+)/

/** A text libpg-query cannot parse: cut at the first quote (its end cannot be trusted), numbers replaced. */
function unparseable(sql: string): StatementSummary {
  const statement = sql.replace(FIRST_QUOTE, '?…').replace(NUMBER, '?').trim()
  const first = KEYWORD.exec(sql)?.[1]?.toLowerCase() ?? ''
  const kind: StatementKind = (['select', 'insert', 'update', 'delete', 'merge', 'copy'] as const).find((k) => k === first) ?? 'unknown'
  return withJson({ kind, statement, fingerprint: `x${createHash('sha256').update(statement).digest('hex').slice(0, 15)}`, tables: [], protectedRead: [], protectedWritten: [] })
}

const QUOTE = 0x27
const DOUBLE_QUOTE = 0x22
const DOLLAR = 0x24
const BACKSLASH = 0x5c

function isIdentifierChar(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a) || code === 0x5f || code >= 0x80
}

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39
}

/**
 * The text with every string, dollar-quoted and numeric literal replaced by `?`
 * (a cache key only, never logged). `E'…'` strings honour backslash escapes; an
 * unterminated literal blanks the rest of the text.
 */
export function literalShape(sql: string): string {
  let out = ''
  let from = 0
  let i = 0
  const n = sql.length
  while (i < n) {
    const c = sql.charCodeAt(i)
    if (c === QUOTE) {
      const before = i > 0 ? sql.charCodeAt(i - 1) : 0
      const escapes = (before === 0x45 || before === 0x65) && !(i > 1 && isIdentifierChar(sql.charCodeAt(i - 2)))
      let j = i + 1
      while (j < n) {
        const d = sql.charCodeAt(j)
        if (escapes && d === BACKSLASH) j += 2
        else if (d === QUOTE) {
          if (sql.charCodeAt(j + 1) === QUOTE) j += 2
          else break
        } else j++
      }
      out += `${sql.slice(from, i)}?`
      i = from = Math.min(j + 1, n)
    } else if (c === DOUBLE_QUOTE) {
      const end = sql.indexOf('"', i + 1)
      i = end < 0 ? n : end + 1
    } else if (c === DOLLAR && !isDigit(sql.charCodeAt(i + 1)) && !(i > 0 && isIdentifierChar(sql.charCodeAt(i - 1)))) {
      const tagEnd = sql.indexOf('$', i + 1)
      const tag = tagEnd < 0 ? '' : sql.slice(i, tagEnd + 1)
      if (tagEnd < 0 || !/^\$[A-Za-z_]?\w*\$$/.test(tag)) {
        i++
        continue
      }
      const close = sql.indexOf(tag, tagEnd + 1)
      out += `${sql.slice(from, i)}?`
      i = from = close < 0 ? n : close + tag.length
    } else if (isDigit(c) && !(i > 0 && (isIdentifierChar(sql.charCodeAt(i - 1)) || sql.charCodeAt(i - 1) === DOLLAR))) {
      let j = i + 1
      while (j < n && (isIdentifierChar(sql.charCodeAt(j)) || sql.charCodeAt(j) === 0x2e)) j++
      out += `${sql.slice(from, i)}?`
      i = from = j
    } else i++
  }
  return from === 0 ? sql : out + sql.slice(from)
}

/**
 * Whether the UTF-8 text bytes a[aStart, aEnd) and b[0, bLength) have the same
 * literal shape, compared in place: a conservative, allocation-free test that
 * implies `literalShape(a) === literalShape(b)` (it answers false for E'…' and
 * dollar-quoted strings and unterminated literals, which the full path handles).
 * Lets a session reuse the last simple Query's summaries for a text that differs
 * only in its numbers and strings (pgbench, most ORMs' inlined values).
 */
export function sameLiteralShape(a: Uint8Array, aStart: number, aEnd: number, b: Uint8Array, bLength: number): boolean {
  let i = aStart
  let j = 0
  while (i < aEnd && j < bLength) {
    const c = a[i]!
    const d = b[j]!
    const before = i > aStart ? a[i - 1]! : 0
    if (c === QUOTE || d === QUOTE) {
      if (c !== d) return false
      // E'…' strings read backslash escapes: left to the full path.
      if (before === 0x45 || before === 0x65) return false
      const aClose = stringEnd(a, i + 1, aEnd)
      const bClose = stringEnd(b, j + 1, bLength)
      if (aClose < 0 || bClose < 0) return false
      i = aClose + 1
      j = bClose + 1
    } else if (c === DOUBLE_QUOTE) {
      // A quoted identifier is part of the shape: the same bytes up to its closing quote.
      if (d !== DOUBLE_QUOTE) return false
      do {
        i++
        j++
        if (i >= aEnd || j >= bLength || a[i] !== b[j]) return false
      } while (a[i] !== DOUBLE_QUOTE)
      i++
      j++
    } else if (c === DOLLAR && !isDigit(a[i + 1] ?? 0)) {
      // Possibly a dollar quote: left to the full path.
      return false
    } else if (isDigit(c) && !(isIdentifierChar(before) || before === DOLLAR)) {
      if (!isDigit(d) || (j > 0 && (isIdentifierChar(b[j - 1]!) || b[j - 1] === DOLLAR))) return false
      do i++
      while (i < aEnd && (isIdentifierChar(a[i]!) || a[i] === 0x2e))
      do j++
      while (j < bLength && (isIdentifierChar(b[j]!) || b[j] === 0x2e))
    } else {
      if (c !== d) return false
      i++
      j++
    }
  }
  return i === aEnd && j === bLength
}

/** The closing quote of a standard string whose content starts at `from` (`''` is a quote inside it); -1 when it does not close. */
function stringEnd(bytes: Uint8Array, from: number, end: number): number {
  for (let k = from; k < end; k++) {
    if (bytes[k] !== QUOTE) continue
    if (k + 1 < end && bytes[k + 1] === QUOTE) k++
    else return k
  }
  return -1
}
