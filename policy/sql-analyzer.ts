/**
 * The SQL analysis stage (DESIGN decisions 1, 3, 5-7): given the SQL text of a
 * simple Query (one or more statements) or of a Parse, say per statement whether
 * it can go to PostgreSQL as is, how to rewrite it so that protected values only
 * travel encrypted, or why pgveil refuses it. Pure: no I/O, no sessions.
 *
 * Fast path: a text that names no protected table (nor a checked setting, nor
 * EXECUTE, nor a `U&"…"` identifier) is passed through without parsing, by one
 * case-insensitive regular expression. Other texts are parsed with libpg-query
 * (PostgreSQL 18 grammar) and their analyses cached by text in a bounded LRU.
 *
 * What is allowed on a protected column: writing a literal, a parameter, NULL or
 * DEFAULT to it (INSERT … VALUES, INSERT … SELECT of such values, UPDATE … SET,
 * ON CONFLICT … DO UPDATE SET, with `EXCLUDED.col`), optionally cast to exactly
 * its plaintext type; reading it bare in a result list or RETURNING, through
 * aliases, subqueries in FROM and CTEs; `IS [NOT] NULL` (exact on ciphertexts).
 * Everything else that touches its value is refused (sql-refusals.ts).
 *
 * Name resolution assumptions (documented limits):
 * - `search_path` is public only: an unqualified table name means `public.name`,
 *   even when a protected table of that name exists in another schema (that one
 *   must be named `schema.name`). `SET search_path` naming a schema that holds
 *   protected tables is refused, as is `set_config('search_path', …)`.
 * - Views, functions, procedures, triggers, partitions and inheritance children
 *   are opaque: a statement over a view of a protected table, or writing a
 *   partition directly, is not recognised unless that relation is in the policy.
 *   Function and DO bodies that name a protected table are refused; SQL built
 *   dynamically inside PostgreSQL (EXECUTE in PL/pgSQL) cannot be seen at all.
 * - A statement naming a protected table after a SET of TimeZone or DateStyle (or
 *   RESET ALL, DISCARD ALL) in the same query string is refused when dates or
 *   timestamps are protected: PostgreSQL reports the new setting only when the
 *   string ends, and pgveil prints those values with the reported one.
 * - The client's strings are read with `standard_conforming_strings = on` and
 *   UTF-8; statements setting otherwise are refused (the proxy must also watch
 *   ParameterStatus for values set at startup or by `ALTER ROLE … SET`).
 *
 * Usage: `const analyzer = await SqlAnalyzer.create(policy)`, then
 * `analyzer.analyze(sql)` for every Query and Parse; build one analyzer per
 * policy version (its cache is only valid for that policy).
 */
import { loadModule, parseSync, type Node } from 'libpg-query'
import { policyTypeFromName } from '../protocol/types.js'
import type { AnalyzedStatement, ByteRange, QualifiedColumn, RefusePlan, SqlAnalysis, StatementPlan } from './sql-plan.js'
import { PGVEIL_REFUSED } from './sql-plan.js'
import { SqlLruCache } from './sql-lru-cache.js'
import { Refusal } from './sql-refusals.js'
import { searchPathSchemas, StatementWalker, type PolicyView } from './sql-statement-walker.js'
import { SqlTokens } from './sql-tokens.js'

export { PGVEIL_REFUSED } from './sql-plan.js'
export type {
  AnalyzedStatement,
  ByteRange,
  LiteralSlot,
  SearchParam,
  SearchSlot,
  SearchValue,
  PassthroughPlan,
  QualifiedColumn,
  RefusePlan,
  RewritePlan,
  SqlAnalysis,
  SqlReplacement,
  StatementPlan,
} from './sql-plan.js'
export { literalReplacements, searchArraySql, spliceLiterals } from './sql-splice.js'

/** What the policy says about one protected column (`policy/policy.ts`'s `ColumnPolicy` fits). */
export interface ProtectedColumnInfo {
  /** Plaintext type: `text`, `integer`, `numeric`, `date`, `timestamptz`, `boolean`, `uuid`, `jsonb`. */
  readonly type: string
  /** `equality` when the envelope carries a search slice (DESIGN decision 3). */
  readonly search?: string
  /** A key domain shared with other columns: ciphertexts may be copied between them. */
  readonly domain?: string
  /** What the equality index is keyed for (searchable columns); defaults to the key binding. */
  readonly indexDomain?: string
}

/**
 * The protected columns, by table. Names are as PostgreSQL stores them (unquoted
 * identifiers folded to lower case; a quoted `"Email"` stays `Email`).
 */
export interface ProtectedColumns {
  /** Protected columns of `schema.name` by column name, or undefined when the table has none. */
  table(schema: string, name: string): ReadonlyMap<string, ProtectedColumnInfo> | undefined
  /** Every table with protected columns (drives the fast pre-check). */
  tables(): Iterable<{ readonly schema: string; readonly name: string }>
}

/** One table of a policy, for `protectedColumns`. `schema` defaults to `public`. */
export interface ProtectedTableSpec {
  readonly schema?: string
  readonly table: string
  readonly columns: Readonly<Record<string, ProtectedColumnInfo>> | ReadonlyMap<string, ProtectedColumnInfo>
}

/** A `ProtectedColumns` over a fixed list of tables. */
export function protectedColumns(specs: Iterable<ProtectedTableSpec>): ProtectedColumns {
  const bySchema = new Map<string, Map<string, ReadonlyMap<string, ProtectedColumnInfo>>>()
  const list: { schema: string; name: string }[] = []
  for (const spec of specs) {
    const schema = spec.schema ?? 'public'
    const columns = spec.columns instanceof Map ? new Map(spec.columns) : new Map(Object.entries(spec.columns))
    if (columns.size === 0) continue
    let tables = bySchema.get(schema)
    if (tables === undefined) bySchema.set(schema, (tables = new Map()))
    if (tables.has(spec.table)) throw new RangeError(`table "${schema}.${spec.table}" is listed twice`)
    tables.set(spec.table, columns)
    list.push({ schema, name: spec.table })
  }
  return {
    table: (schema, name) => bySchema.get(schema)?.get(name),
    tables: () => list,
  }
}

export interface SqlAnalyzerOptions {
  /** Most analyses kept (default 2048). */
  readonly cacheEntries?: number
  /** Most SQL characters kept over all cached texts (default 4 Mi); longer texts are not cached. */
  readonly cacheChars?: number
}

let parserLoaded = false

/** Load libpg-query's WebAssembly module; `parseSync`/`scanSync` need it. Idempotent. */
export async function loadSqlParser(): Promise<void> {
  await loadModule()
  parserLoaded = true
}

/**
 * Words that make a text worth parsing although it names no protected table:
 * settings that change how SQL text or names are read (see the module comment),
 * and EXECUTE, which can feed values to a statement prepared earlier.
 */
const CHECKED_WORDS = ['search_path', 'client_encoding', 'standard_conforming_strings', 'names', 'execute']

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** Adapts a `ProtectedColumns` to the walker, sharing one `QualifiedColumn` per column. */
class PolicyAdapter implements PolicyView {
  readonly #source: ProtectedColumns
  readonly #qualified = new Map<string, ReadonlyMap<string, QualifiedColumn>>()
  readonly #tablePattern: RegExp | undefined
  readonly otherSchemas: ReadonlySet<string>
  readonly tableNames: ReadonlySet<string>
  /** Some protected column is a date or timestamptz: printed through the session's DateStyle and TimeZone. */
  readonly hasDatetimeColumns: boolean

  constructor(source: ProtectedColumns) {
    this.#source = source
    const names = new Set<string>()
    const schemas = new Set<string>()
    let datetime = false
    for (const t of source.tables()) {
      names.add(t.name)
      if (t.schema !== 'public') schemas.add(t.schema)
      for (const column of source.table(t.schema, t.name)?.values() ?? []) {
        const type = policyTypeFromName(column.type)
        if (type === 'date' || type === 'timestamptz') datetime = true
      }
    }
    this.hasDatetimeColumns = datetime
    this.tableNames = names
    this.otherSchemas = schemas
    this.#tablePattern = names.size === 0 ? undefined : new RegExp([...names].map(escapeRegExp).join('|'), 'i')
  }

  columnsOf(schema: string, table: string): ReadonlyMap<string, QualifiedColumn> | undefined {
    const key = `${schema}\u0000${table}`
    let columns = this.#qualified.get(key)
    if (columns === undefined) {
      const raw = this.#source.table(schema, table)
      if (raw === undefined || raw.size === 0) return undefined
      const built = new Map<string, QualifiedColumn>()
      for (const [column, policy] of raw) {
        const type = policyTypeFromName(policy.type) ?? policy.type
        const name = `${schema}.${table}.${column}`
        const binding = policy.domain === undefined ? name : `domain:${policy.domain}`
        const qualified: QualifiedColumn = policy.search === 'equality' ? { schema, table, column, type, name, binding, indexDomain: policy.indexDomain ?? binding } : { schema, table, column, type, name, binding }
        built.set(column, Object.freeze(qualified))
      }
      columns = built
      this.#qualified.set(key, columns)
    }
    return columns
  }

  searchable(column: QualifiedColumn): boolean {
    return this.#source.table(column.schema, column.table)?.get(column.column)?.search === 'equality'
  }

  mentionsProtected(text: string): boolean {
    return this.#tablePattern?.test(text) === true
  }
}

function worst(statements: readonly AnalyzedStatement[]): Pick<SqlAnalysis, 'action' | 'refusal'> {
  let action: SqlAnalysis['action'] = 'passthrough'
  for (const s of statements) {
    if (s.action === 'refuse') return { action: 'refuse', refusal: s }
    if (s.action === 'rewrite') action = 'rewrite'
  }
  return { action }
}

export class SqlAnalyzer {
  readonly #policy: PolicyAdapter
  readonly #cache: SqlLruCache<SqlAnalysis>
  /** Matches any text that may name a protected table or a checked setting; undefined when nothing is protected. */
  readonly #mayConcern: RegExp | undefined

  /** Load the parser, then build an analyzer. */
  static async create(columns: ProtectedColumns, options: SqlAnalyzerOptions = {}): Promise<SqlAnalyzer> {
    await loadSqlParser()
    return new SqlAnalyzer(columns, options)
  }

  /** Requires `loadSqlParser()` to have completed (or use `SqlAnalyzer.create`). */
  constructor(columns: ProtectedColumns, options: SqlAnalyzerOptions = {}) {
    if (!parserLoaded) throw new Error('the SQL parser is not loaded: await loadSqlParser() (or SqlAnalyzer.create) first')
    this.#policy = new PolicyAdapter(columns)
    this.#cache = new SqlLruCache(options.cacheEntries ?? 2048, options.cacheChars ?? 4 * 1024 * 1024)
    const names = this.#policy.tableNames
    // `u&` catches Unicode-escaped identifiers (U&"\0075sers"), which spell a name without containing it.
    this.#mayConcern = names.size === 0 ? undefined : new RegExp([...names, ...CHECKED_WORDS, 'u&'].map(escapeRegExp).join('|'), 'i')
  }

  /** Analyses currently cached. */
  get cacheSize(): number {
    return this.#cache.size
  }

  /**
   * The first schema of a search_path value (`billing, public`) that holds protected
   * tables, if any: pgveil resolves unqualified table names in schema public only, so
   * such a search_path would let a write to an encrypted column pass as a plain one.
   */
  protectedSchemaIn(searchPath: string): string | undefined {
    return searchPathSchemas(searchPath).find((schema) => this.#policy.otherSchemas.has(schema))
  }

  analyze(sql: string): SqlAnalysis {
    // The common case: no protected table named anywhere, so nothing to parse.
    if (this.#mayConcern === undefined || !this.#mayConcern.test(sql)) return passthroughWhole(sql)
    const cached = this.#cache.get(sql)
    if (cached !== undefined) return cached
    const analysis = this.#analyzeParsed(sql)
    this.#cache.set(sql, analysis)
    return analysis
  }

  #analyzeParsed(sql: string): SqlAnalysis {
    let stmts: readonly { stmt?: Node; stmt_location?: number; stmt_len?: number }[]
    try {
      stmts = parseSync(sql).stmts ?? []
    } catch (error) {
      return this.#unparseable(sql, error)
    }
    const tokens = new SqlTokens(sql)
    let bytes: Buffer | undefined
    const total = Buffer.byteLength(sql)
    const statements: AnalyzedStatement[] = []
    for (const raw of stmts) {
      const start = raw.stmt_location ?? 0
      const end = raw.stmt_len === undefined || raw.stmt_len === 0 ? total : start + raw.stmt_len
      let plan: StatementPlan
      try {
        plan = raw.stmt === undefined ? { action: 'passthrough' } : new StatementWalker(this.#policy, tokens).analyze(raw.stmt, () => (bytes ??= Buffer.from(sql)).toString('utf8', start, end))
      } catch (error) {
        if (!(error instanceof Refusal)) {
          // Fail closed: an analyzer failure must not let the statement through.
          plan = refusalPlan('pgveil could not analyze this statement, which names a table with encrypted columns', `rewrite the statement; the analyzer reported: ${error instanceof Error ? error.message : String(error)}`)
        } else plan = error.plan
      }
      statements.push({ ...plan, start, end })
    }
    if (statements.length > 1 && this.#policy.hasDatetimeColumns) this.#refuseAfterFormatChange(statements, (i) => (bytes ??= Buffer.from(sql)).toString('utf8', statements[i]!.start, statements[i]!.end))
    return { ...worst(statements), statements }
  }

  /**
   * PostgreSQL reports a new TimeZone or DateStyle (ParameterStatus) when the query
   * string ends, and pgveil prints protected dates and timestamps with what was
   * reported: a statement naming a protected table after such a SET in the same
   * query string would get the old setting. It is refused (the SET and what comes
   * before it run, as before any error).
   */
  #refuseAfterFormatChange(statements: AnalyzedStatement[], text: (i: number) => string): void {
    let change: string | undefined
    for (let i = 0; i < statements.length; i++) {
      const statement = statements[i]!
      const sql = text(i)
      if (change !== undefined && statement.action !== 'refuse' && this.#policy.mentionsProtected(sql)) {
        const plan = refusalPlan(
          `pgveil prints encrypted dates and timestamps with the TimeZone and DateStyle PostgreSQL reports when a query string ends, so a statement on a table with encrypted columns cannot follow ${change} in the same query string`,
          `send ${change} as a query of its own, before this one`,
        )
        statements[i] = { ...plan, start: statement.start, end: statement.end }
        return
      }
      change ??= formatChangeOf(sql)
    }
  }

  #unparseable(sql: string, error: unknown): SqlAnalysis {
    let named: string | undefined
    try {
      named = new SqlTokens(sql).firstNaming(this.#policy.tableNames)
    } catch {
      // Not even scannable (an unterminated string): the pre-check already saw a protected name.
      named = this.#policy.mentionsProtected(sql) ? '(a table with encrypted columns)' : undefined
    }
    if (named === undefined) return passthroughWhole(sql)
    const reason = error instanceof Error ? error.message : String(error)
    const plan = refusalPlan(
      `pgveil cannot parse this statement (${reason}), and it names ${named.startsWith('(') ? 'a table with encrypted columns' : `"${named}", a table with encrypted columns`}`,
      'fix the syntax; pgveil forwards statements on encrypted tables only when it understands them',
    )
    const statement: RefusePlan & ByteRange = { ...plan, start: 0, end: Buffer.byteLength(sql) }
    return { action: 'refuse', statements: [statement], refusal: statement }
  }
}

/** `SET [SESSION|LOCAL] TimeZone|TIME ZONE|DateStyle`, `RESET TimeZone|DateStyle|ALL`, `DISCARD ALL`, leading whitespace and comments aside. */
const FORMAT_CHANGE = /^(?:\s|--[^\n]*\n|\/\*[^]*?\*\/)*(?:set\s+(?:session\s+|local\s+)?(time\s*zone|timezone|datestyle)\b|reset\s+(timezone|datestyle|all)\b|(discard\s+all)\b)/i

/**
 * The statement's name ('SET TimeZone', 'RESET ALL', 'DISCARD ALL') when the SQL text
 * of one statement changes the session's TimeZone or DateStyle, which PostgreSQL
 * reports only when the query string (or the extended-protocol batch) ends.
 */
export function formatChangeOf(sql: string): string | undefined {
  const match = FORMAT_CHANGE.exec(sql)
  if (match === null) return undefined
  if (match[3] !== undefined) return 'DISCARD ALL'
  const setting = (match[1] ?? match[2]!).toLowerCase()
  if (setting === 'all') return 'RESET ALL'
  return `${match[1] !== undefined ? 'SET' : 'RESET'} ${setting === 'datestyle' ? 'DateStyle' : 'TimeZone'}`
}

function refusalPlan(message: string, advice: string): RefusePlan {
  return { action: 'refuse', sqlState: PGVEIL_REFUSED, message: `${message} (${advice})`, hint: `${advice.charAt(0).toUpperCase()}${advice.slice(1)}.` }
}

function passthroughWhole(sql: string): SqlAnalysis {
  return { action: 'passthrough', statements: [{ action: 'passthrough', start: 0, end: Buffer.byteLength(sql) }] }
}
