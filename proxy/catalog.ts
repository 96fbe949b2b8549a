/**
 * The catalog map (DESIGN decision 6): which (table OID, attribute number) pairs of a
 * database hold protected columns, so result columns are recognised by what
 * RowDescription says, whatever the SQL looked like (`SELECT *`, aliases, joins, CTEs).
 * Loaded per database with pgveil's own credentials; refreshed after DDL or on demand.
 */
import type pg from 'pg'
import type { ColumnPolicy, Policy } from '../policy/policy.js'
import { loadSqlParser, protectedColumns, SqlAnalyzer, type ProtectedColumnInfo, type ProtectedColumns, type ProtectedTableSpec, type SqlAnalysis } from '../policy/sql-analyzer.js'
import { ViewReferences, type DependentView } from '../policy/view-references.js'
import { TypeOid } from '../protocol/types.js'
import type { Logger } from './log.js'
import { connectAsPgveil } from './own-connection.js'
import type { UpstreamTarget } from './upstream-url.js'

/** bytea: the stored type of every protected column. */

export interface CatalogProblem {
  column: ColumnPolicy
  kind: 'missing-table' | 'missing-column' | 'not-bytea'
  message: string
  /** The statement that fixes it, when one does. */
  fix: string
}

/**
 * A view pgveil reads through, as a table to the analyzer: its protected columns,
 * each with the table column it returns (`origin`), searchable when that one is (in
 * its index domain: its index values are the table column's).
 */
export interface ReadableView extends ProtectedTableSpec {
  readonly schema: string
  readonly columns: ReadonlyMap<string, ProtectedColumnInfo & { readonly origin: string }>
}

/** Where a protected column's values come from in results: a table's column, or a view's that passes it through. */
export interface CatalogEntry {
  readonly tableOid: number
  readonly attnum: number
  readonly column: ColumnPolicy
}

/** tableOid → attnum → column. */
function byTableOid(entries: readonly CatalogEntry[]): Map<number, Map<number, ColumnPolicy>> {
  const byTable = new Map<number, Map<number, ColumnPolicy>>()
  for (const { tableOid, attnum, column } of entries) {
    let table = byTable.get(tableOid)
    if (table === undefined) byTable.set(tableOid, (table = new Map()))
    table.set(attnum, column)
  }
  return byTable
}

export class DatabaseCatalog {
  /** tableOid → attnum → column. */
  private readonly byTable: ReadonlyMap<number, ReadonlyMap<number, ColumnPolicy>>
  /** `schema.view.column` of a readable view's protected column → the table column it returns. */
  private readonly viewOrigins = new Map<string, string>()
  readonly problems: readonly CatalogProblem[]
  /** "schema.table" → every column of a protected table, in attribute order (for COPY without a column list). */
  private readonly columnOrder: ReadonlyMap<string, readonly string[]>
  /** Views over protected columns: which statements may read through them (policy/view-references.ts). */
  readonly views: ViewReferences
  /** The same, as a list (`pgveil check`). */
  readonly viewList: readonly DependentView[]
  /**
   * The analyzer for statements that read through readable views: the policy's
   * tables and those views, whose protected columns are analysed like a table's.
   * Null when no view is readable.
   */
  readonly viewAnalyzer: SqlAnalyzer | null
  /** The readable views' protected columns, by view (as tables for the analyzer and the audit). */
  readonly readableViews: readonly ReadableView[]

  constructor(entries: readonly CatalogEntry[], problems: CatalogProblem[], columnOrder: ReadonlyMap<string, readonly string[]> = new Map(), views: readonly DependentView[] = [], readableViews: readonly ReadableView[] = [], policy?: ProtectedColumns) {
    this.columnOrder = columnOrder
    this.views = new ViewReferences(views)
    this.viewList = views
    this.readableViews = readableViews
    this.viewAnalyzer = readableViews.length === 0 || policy === undefined ? null : new SqlAnalyzer(withTables(policy, readableViews))
    for (const view of readableViews) for (const [name, { origin }] of view.columns) this.viewOrigins.set(`${view.schema}.${view.table}.${name}`, origin)
    this.byTable = byTableOid(entries)
    this.problems = problems
  }

  /** The protected column a RowDescription field comes from (a table's, or a readable view's that passes it through), if any. */
  column(tableOid: number, attnum: number): ColumnPolicy | undefined {
    return this.byTable.get(tableOid)?.get(attnum)
  }

  /** The table column a readable view's protected column returns (`schema.view.column` → `schema.table.column`). */
  viewColumnOrigin(qualified: string): string | undefined {
    return this.viewOrigins.get(qualified)
  }

  isProtectedTable(tableOid: number): boolean {
    return this.byTable.has(tableOid)
  }

  tableColumns(schema: string, table: string): readonly string[] | undefined {
    return this.columnOrder.get(`${schema}.${table}`)
  }
}

interface AttributeRow {
  schema: string
  table: string
  table_oid: string
  column: string | null
  attnum: number | null
  type_oid: string | null
  type_name: string | null
}

const ATTRIBUTES_SQL = `
SELECT n.nspname AS schema, c.relname AS table, c.oid::int8 AS table_oid,
       a.attname AS column, a.attnum AS attnum, a.atttypid::int8 AS type_oid,
       format_type(a.atttypid, a.atttypmod) AS type_name
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'f')
  AND (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`

/**
 * Views and materialized views over protected columns, and views over those, with
 * their columns and depth (1: reads a protected column, n + 1: reads a view of depth
 * n), so that views are examined after the views they read.
 */
const DEPENDENT_VIEWS_SQL = `
WITH RECURSIVE dependent(oid, depth) AS (
  SELECT r.ev_class, 1
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
    JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
    JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
   WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
     AND r.ev_class <> t.oid
     AND (tn.nspname, t.relname, a.attname) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
  UNION
  SELECT r.ev_class, dependent.depth + 1
    FROM dependent
    JOIN pg_catalog.pg_depend d ON d.refobjid = dependent.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
   WHERE r.ev_class <> dependent.oid
)
SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind = 'm' AS materialized, max(dependent.depth) AS depth,
       (SELECT array_agg(va.attname::text ORDER BY va.attnum) FROM pg_catalog.pg_attribute va WHERE va.attrelid = c.oid AND va.attnum > 0 AND NOT va.attisdropped) AS columns
  FROM dependent
  JOIN pg_catalog.pg_class c ON c.oid = dependent.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 GROUP BY c.oid, n.nspname, c.relname, c.relkind
 ORDER BY depth, 2, 3`

interface DependentViewRow {
  oid: string
  schema: string
  name: string
  materialized: boolean
  depth: number
  columns: string[] | null
}

/**
 * The views and materialized views of the connected database that read a protected
 * column, directly or through other views, and which of them pgveil reads through.
 * A view is readable when its definition, analysed like a client's SELECT (with the
 * readable views it reads as tables), is a plain read, and every protected column
 * it reads is one of its output columns, unchanged: PostgreSQL says so itself, as
 * the origin of each column of its definition's result (RowDescription's table and
 * attribute), which only a column passed through unchanged has. `entries` are the
 * protected columns of tables (loadDatabaseCatalog); the readable views' columns are
 * added to them.
 */
export async function loadDependentViews(client: pg.Client, policy: Policy, entries: CatalogEntry[] = []): Promise<{ views: DependentView[]; tables: ReadableView[] }> {
  if (policy.isEmpty) return { views: [], tables: [] }
  const columns = policy.columns
  const { rows } = await client.query<DependentViewRow>(DEPENDENT_VIEWS_SQL, [
    columns.map((column) => column.schema),
    columns.map((column) => column.table),
    columns.map((column) => column.column),
  ])
  if (rows.length === 0) return { views: [], tables: [] }
  await loadSqlParser()
  const known = byTableOid(entries)
  const tables: ReadableView[] = []
  const dependent = new Map(rows.map((row) => [Number(row.oid), row]))
  const readsOf = await viewColumnReads(client, [...dependent.keys()])
  /** The protected columns behind each view examined so far (all it reads, for one pgveil does not read through). */
  const behind = new Map<number, readonly string[]>()
  const examined: { row: DependentViewRow; origins: string; unreadable: string | null }[] = []
  /** Readable views that are not materialized, with their protected columns: the ones that may be written through. */
  const candidates: { oid: number; attnums: number[] }[] = []
  let writable = new Set<number>()
  // Definitions printed with every name qualified, and read back under the same search_path.
  await client.query('BEGIN READ ONLY')
  try {
    await client.query('SET LOCAL search_path = pg_catalog')
    const definitions = await viewDefinitions(client, [...dependent.keys()])
    // Views of one depth read only views of lower depths: the analyzer knows those.
    let analyzer = new SqlAnalyzer(policy)
    let analyzerDepth = 1
    for (const row of rows) {
      const oid = Number(row.oid)
      const required = requiredOrigins(readsOf.get(oid) ?? [], known, behind, dependent)
      // Only through views it reads columns of that hold none: not a view over protected columns after all.
      if (required.length === 0) continue
      behind.set(oid, required)
      if (row.depth !== analyzerDepth) {
        analyzer = new SqlAnalyzer(withTables(policy, tables))
        analyzerDepth = row.depth
      }
      const outputs = await passedThrough(client, definitions.get(oid), analyzer, known)
      let unreadable: string | null
      if (typeof outputs === 'string') unreadable = outputs
      else if (row.columns === null || outputs.length !== row.columns.length) unreadable = 'pgveil could not match its columns to its definition'
      else {
        const covered = new Set(outputs.map((column) => column?.qualified))
        const missing = required.filter((origin) => !covered.has(origin))
        unreadable = missing.length === 0 ? null : `it does not return ${missing.join(', ')} unchanged as a column of its own`
      }
      examined.push({ row, origins: required.join(', '), unreadable })
      if (unreadable !== null || typeof outputs === 'string') continue
      const byAttnum = new Map<number, ColumnPolicy>()
      const protectedByName = new Map<string, ProtectedColumnInfo & { origin: string }>()
      outputs.forEach((column, i) => {
        if (column === undefined) return
        byAttnum.set(i + 1, column)
        const search = column.search === 'equality' ? { search: column.search, indexDomain: column.indexDomain ?? column.binding } : {}
        protectedByName.set(row.columns![i]!, { type: column.type, origin: column.qualified, ...search })
        entries.push({ tableOid: oid, attnum: i + 1, column })
      })
      known.set(oid, byAttnum)
      tables.push({ schema: row.schema, table: row.name, columns: protectedByName })
      if (!row.materialized) candidates.push({ oid, attnums: [...byAttnum.keys()] })
    }
    writable = await autoUpdatable(client, candidates)
  } finally {
    await client.query('ROLLBACK')
  }
  const views = examined.map(({ row, origins, unreadable }): DependentView => ({ qualified: `${row.schema}.${row.name}`, materialized: row.materialized, origins, unreadable, writable: writable.has(Number(row.oid)) }))
  return { views, tables }
}

/** The definitions of views `oids` (`pg_get_viewdef`, printed under the caller's search_path), without their final semicolon. */
async function viewDefinitions(client: pg.Client, oids: readonly number[]): Promise<Map<number, string>> {
  const { rows } = await client.query<{ oid: string; definition: string | null }>('SELECT c.oid::int8 AS oid, pg_catalog.pg_get_viewdef(c.oid) AS definition FROM pg_catalog.pg_class c WHERE c.oid = ANY($1::oid[])', [oids])
  return new Map(rows.flatMap(({ oid, definition }) => (definition === null ? [] : [[Number(oid), definition.trim().replace(/;$/, '')] as const])))
}

/** Per view, the (relation, attribute number) pairs its definition reads, from pg_depend (0: the relation as a whole). */
async function viewColumnReads(client: pg.Client, oids: readonly number[]): Promise<Map<number, { rel: number; attnum: number }[]>> {
  const { rows } = await client.query<{ view: string; rel: string; attnum: number }>(
    `SELECT r.ev_class::int8 AS view, d.refobjid::int8 AS rel, d.refobjsubid AS attnum
       FROM pg_catalog.pg_depend d
       JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
      WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
        AND r.ev_class = ANY($1::oid[]) AND d.refobjid <> r.ev_class`,
    [oids],
  )
  const reads = new Map<number, { rel: number; attnum: number }[]>()
  for (const row of rows) {
    const view = Number(row.view)
    let list = reads.get(view)
    if (list === undefined) reads.set(view, (list = []))
    list.push({ rel: Number(row.rel), attnum: row.attnum })
  }
  return reads
}

/**
 * The protected columns a view's definition reads (sorted): a protected column of a
 * table, the protected column behind a column of a readable view, and everything
 * behind a view over protected columns pgveil does not read through.
 */
function requiredOrigins(reads: readonly { rel: number; attnum: number }[], known: ReadonlyMap<number, ReadonlyMap<number, ColumnPolicy>>, behind: ReadonlyMap<number, readonly string[]>, dependent: ReadonlyMap<number, unknown>): string[] {
  const required = new Set<string>()
  for (const { rel, attnum } of reads) {
    const column = known.get(rel)?.get(attnum)
    if (column !== undefined) required.add(column.qualified)
    // A view over protected columns that is not readable: whatever it reads is behind all of its columns.
    else if (dependent.has(rel) && !known.has(rel)) for (const origin of behind.get(rel) ?? []) required.add(origin)
  }
  return [...required].sort()
}

/**
 * The protected column each output column of view `oid` passes through unchanged
 * (undefined for the others), or why pgveil does not read through the view.
 */
async function passedThrough(client: pg.Client, definition: string | undefined, analyzer: SqlAnalyzer, known: ReadonlyMap<number, ReadonlyMap<number, ColumnPolicy>>): Promise<(ColumnPolicy | undefined)[] | string> {
  if (definition === undefined || definition === '') return 'pgveil could not read its definition'
  const refusal = impureRead(analyzer.analyze(definition))
  if (refusal !== null) return `its definition ${refusal}`
  try {
    // One round trip; the savepoint keeps a failure from ending the transaction. Planned, not run (LIMIT 0): the fields' origins are what matter.
    const results = (await client.query(`SAVEPOINT pgveil_view; SELECT * FROM (${definition}) AS pgveil_view LIMIT 0; RELEASE SAVEPOINT pgveil_view`)) as unknown as pg.QueryResult[]
    return results[1]!.fields.map((field) => known.get(field.tableID)?.get(field.columnID))
  } catch (error) {
    await client.query('ROLLBACK TO SAVEPOINT pgveil_view; RELEASE SAVEPOINT pgveil_view')
    return `pgveil could not examine it (${(error as Error).message})`
  }
}

/**
 * Which of the views `candidates` PostgreSQL writes through to its table by itself
 * (automatically updatable for all of INSERT, UPDATE and DELETE, its protected
 * columns `attnums` included), with no INSTEAD OF trigger or rule that could put a
 * value elsewhere: then a value pgveil seals for the table column lands in it.
 */
async function autoUpdatable(client: pg.Client, candidates: readonly { oid: number; attnums: readonly number[] }[]): Promise<Set<number>> {
  if (candidates.length === 0) return new Set()
  const { rows } = await client.query<{ oid: string }>(
    `SELECT v.oid::int8 AS oid
       FROM unnest($1::oid[], $2::text[]) AS v (oid, attnums)
      WHERE (pg_catalog.pg_relation_is_updatable(v.oid::regclass, false) & 28) = 28
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = v.oid AND (t.tgtype & 64) <> 0)
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = v.oid AND r.rulename <> '_RETURN')
        AND (SELECT coalesce(bool_and(pg_catalog.pg_column_is_updatable(v.oid::regclass, a, false)), true) FROM unnest(v.attnums::int2[]) AS a)`,
    [candidates.map(({ oid }) => oid), candidates.map(({ attnums }) => `{${attnums.join(',')}}`)],
  )
  return new Set(rows.map(({ oid }) => Number(oid)))
}

/** Why an analysed view definition is not a plain read of protected columns, or null when it is. */
function impureRead(analysis: SqlAnalysis): string | null {
  if (analysis.action === 'refuse') return `is refused by pgveil: ${analysis.refusal!.message}`
  if (analysis.statements.length !== 1) return 'is not one statement'
  const statement = analysis.statements[0]!
  if (statement.action !== 'rewrite') return null
  const converts = statement.params.size > 0 || statement.literals.length > 0 || statement.castRemovals.length > 0 || statement.rewrites.length > 0 || statement.searches.length > 0 || statement.searchParams.size > 0 || (statement.copies?.length ?? 0) > 0
  return converts ? 'compares, converts or copies an encrypted column' : null
}

/** The policy's tables and `tables` (readable views) as one set for the analyzer. */
export function withTables(policy: ProtectedColumns, tables: readonly ProtectedTableSpec[]): ProtectedColumns {
  const extra = protectedColumns(tables)
  return {
    table: (schema, name) => policy.table(schema, name) ?? extra.table(schema, name),
    tables: () => [...policy.tables(), ...extra.tables()],
  }
}

/** An SQL identifier, double-quoted. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

/** Reads where each protected column lives in the connected database, and what is wrong with it. */
export async function loadDatabaseCatalog(client: pg.Client, policy: Policy): Promise<DatabaseCatalog> {
  const tables = policy.protectedTables()
  const { rows } = await client.query<AttributeRow>(ATTRIBUTES_SQL, [tables.map(([s]) => s), tables.map(([, t]) => t)])
  const found = new Map<string, AttributeRow>()
  const tablesFound = new Set<string>()
  const columnOrder = new Map<string, { attnum: number; name: string }[]>()
  for (const row of rows) {
    const table = `${row.schema}.${row.table}`
    tablesFound.add(table)
    if (row.column === null) continue
    found.set(`${table}.${row.column}`, row)
    let order = columnOrder.get(table)
    if (order === undefined) columnOrder.set(table, (order = []))
    order.push({ attnum: row.attnum!, name: row.column })
  }
  const entries: CatalogEntry[] = []
  const problems: CatalogProblem[] = []
  for (const column of policy.columns) {
    const table = `${quoteIdent(column.schema)}.${quoteIdent(column.table)}`
    const row = found.get(column.qualified)
    if (!tablesFound.has(`${column.schema}.${column.table}`)) {
      problems.push({ column, kind: 'missing-table', message: `table "${column.schema}.${column.table}" does not exist`, fix: `CREATE TABLE ${table} (…, ${quoteIdent(column.column)} bytea, …);` })
    } else if (row === undefined) {
      problems.push({ column, kind: 'missing-column', message: `column "${column.qualified}" does not exist`, fix: `ALTER TABLE ${table} ADD COLUMN ${quoteIdent(column.column)} bytea;` })
    } else if (Number(row.type_oid) !== TypeOid.bytea) {
      problems.push({
        column,
        kind: 'not-bytea',
        message: `column "${column.qualified}" is ${row.type_name ?? 'of another type'}, not bytea`,
        fix: `ALTER TABLE ${table} ALTER COLUMN ${quoteIdent(column.column)} TYPE bytea USING NULL;  -- only while it holds no data; to encrypt existing values run pgveil migrate`,
      })
    } else {
      entries.push({ tableOid: Number(row.table_oid), attnum: row.attnum!, column })
    }
  }
  const orders = new Map([...columnOrder].map(([table, columns]) => [table, columns.sort((a, b) => a.attnum - b.attnum).map((c) => c.name)] as const))
  const { views, tables: readable } = await loadDependentViews(client, policy, entries)
  return new DatabaseCatalog(entries, problems, orders, views, readable, policy)
}

export interface CatalogMapOptions {
  target: UpstreamTarget
  connectTimeoutMs: number
  policy: Policy
  logger: Logger
  /** Told the readable views of each catalog loaded (for the audit log). */
  readonly readableViews?: ReadableViewColumns
  /** At most one catalog read per database this often for relations it does not know (default UNKNOWN_RELATION_INTERVAL_MS). */
  readonly unknownRelationIntervalMs?: number
  /** Each read of a catalog, and how it went (a metric). */
  readonly onRead?: (outcome: 'ok' | 'error') => void
}

/**
 * The protected columns of readable views, over every database whose catalog was
 * loaded, with the table columns they return: the audit log's summaries count a read
 * through such a view as a read of those. Views of the same name in two databases
 * count with the columns of both (the summaries over-report rather than miss).
 * `generation` changes with the set.
 */
export class ReadableViewColumns {
  private readonly byDatabase = new Map<string, readonly ReadableView[]>()
  /** `schema.view` → view column → the table columns it returns (`schema.table.column`). */
  private byView = new Map<string, ReadonlyMap<string, readonly string[]>>()
  generation = 0

  /** The protected columns of view `schema.name` (undefined: not a readable view). */
  columnsOf(schema: string, name: string): readonly string[] | undefined {
    const columns = this.byView.get(`${schema}.${name}`)
    return columns === undefined ? undefined : [...columns.keys()]
  }

  /** The table columns a readable view's column returns. */
  originsOf(schema: string, name: string, column: string): readonly string[] | undefined {
    return this.byView.get(`${schema}.${name}`)?.get(column)
  }

  /** A database's catalog was loaded with these readable views. */
  set(database: string, views: readonly ReadableView[]): void {
    this.byDatabase.set(database, views)
    const byView = new Map<string, Map<string, string[]>>()
    for (const list of this.byDatabase.values()) {
      for (const view of list) {
        const key = `${view.schema}.${view.table}`
        let columns = byView.get(key)
        if (columns === undefined) byView.set(key, (columns = new Map()))
        for (const [name, { origin }] of view.columns) columns.set(name, [...new Set([...(columns.get(name) ?? []), origin])].sort())
      }
    }
    const flat = (map: ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>): string => JSON.stringify([...map].map(([key, columns]) => [key, [...columns].sort()]).sort())
    if (flat(byView) === flat(this.byView)) return
    this.byView = byView
    this.generation++
  }
}

/**
 * A new session reads the catalog again when the cached one is older than this:
 * views (and tables) created straight in PostgreSQL, not through pgveil, reach new
 * sessions within this time. DDL through pgveil refreshes it at once.
 */
export const CATALOG_MAX_AGE_MS = 60_000

/** Relations per database remembered as not known to the catalog (see CatalogMap.unknownRelation). */
const MAX_UNKNOWN_RELATIONS = 4096
/** At most one catalog read per database this often for relations it does not know. */
export const UNKNOWN_RELATION_INTERVAL_MS = 2_000

/** Catalogs per database, loaded once at a time (concurrent callers share one load). */
export class CatalogMap {
  private readonly options: CatalogMapOptions
  /** Per database, the catalog and when it was read. */
  private readonly catalogs = new Map<string, { readonly catalog: DatabaseCatalog; readonly loadedAt: number }>()
  private readonly loading = new Map<string, Promise<DatabaseCatalog>>()
  /** Per database, relations seen with bytea result columns that the catalog did not know (see unknownRelation), and when one last had it read. */
  private readonly unknown = new Map<string, Set<number>>()
  private readonly unknownReadAt = new Map<string, number>()

  constructor(options: CatalogMapOptions) {
    this.options = options
  }

  /** The loaded catalog of a database, if any (synchronous: for the data path). */
  get(database: string): DatabaseCatalog | undefined {
    return this.catalogs.get(database)?.catalog
  }

  /**
   * The database's catalog: the cached one when it found every protected column and
   * is younger than CATALOG_MAX_AGE_MS, else read again (once, however many sessions
   * ask), so tables and views created since are seen.
   */
  load(database: string): Promise<DatabaseCatalog> {
    const cached = this.catalogs.get(database)
    if (cached !== undefined && cached.catalog.problems.length === 0 && Date.now() - cached.loadedAt < CATALOG_MAX_AGE_MS) return Promise.resolve(cached.catalog)
    const pending = this.loading.get(database)
    if (pending !== undefined) return pending
    const load = this.fetch(database).finally(() => this.loading.delete(database))
    this.loading.set(database, load)
    return load
  }

  /**
   * A result came from relation `oid` with a bytea column, and the database's catalog
   * does not know the relation: it may be a view over protected columns created
   * straight in PostgreSQL. The first time a relation is seen so, the catalog is read
   * again (its promise returned); after that it is taken for an ordinary relation
   * (undefined), until it is seen again after MAX_UNKNOWN_RELATIONS others. At most
   * one such read per database every `unknownRelationIntervalMs` (an application that
   * makes a temporary table with a bytea column per transaction must not have the
   * catalog read each time): a relation reported meanwhile is not remembered, so it
   * is read for when it comes again.
   */
  unknownRelation(database: string, oid: number): Promise<DatabaseCatalog> | undefined {
    let seen = this.unknown.get(database)
    if (seen === undefined) this.unknown.set(database, (seen = new Set()))
    if (seen.has(oid)) return undefined
    const now = Date.now()
    if (now - (this.unknownReadAt.get(database) ?? -Infinity) < (this.options.unknownRelationIntervalMs ?? UNKNOWN_RELATION_INTERVAL_MS)) return undefined
    this.unknownReadAt.set(database, now)
    if (seen.size >= MAX_UNKNOWN_RELATIONS) seen.clear()
    seen.add(oid)
    const reload = (): Promise<DatabaseCatalog> => {
      this.invalidate(database)
      return this.load(database)
    }
    // A load under way may have read the catalog before the relation existed: read it again after that one.
    const pending = this.loading.get(database)
    return pending === undefined ? reload() : pending.then(reload, reload)
  }

  /** Forget a database's catalog (after DDL); the next load() reads it again. */
  invalidate(database?: string): void {
    if (database === undefined) this.catalogs.clear()
    else this.catalogs.delete(database)
  }

  private async fetch(database: string): Promise<DatabaseCatalog> {
    try {
      const catalog = await this.read(database)
      this.options.onRead?.('ok')
      return catalog
    } catch (error) {
      this.options.onRead?.('error')
      throw error
    }
  }

  private async read(database: string): Promise<DatabaseCatalog> {
    const { target, connectTimeoutMs, policy, logger } = this.options
    const { client } = await connectAsPgveil(target, { database, timeoutMs: connectTimeoutMs, applicationName: 'pgveil catalog' })
    try {
      const catalog = await loadDatabaseCatalog(client, policy)
      this.catalogs.set(database, { catalog, loadedAt: Date.now() })
      this.options.readableViews?.set(database, catalog.readableViews)
      for (const problem of catalog.problems) logger.warn('protected column not usable', { database, column: problem.column.qualified, problem: problem.message, fix: problem.fix })
      return catalog
    } finally {
      await client.end().catch(() => {})
    }
  }
}
