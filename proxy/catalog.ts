/**
 * The catalog map (DESIGN decision 6): which (table OID, attribute number) pairs of a
 * database hold protected columns, so result columns are recognised by what
 * RowDescription says, whatever the SQL looked like (`SELECT *`, aliases, joins, CTEs).
 * Loaded per database with pgveil's own credentials; refreshed after DDL or on demand.
 */
import type pg from 'pg'
import type { ColumnPolicy, Policy } from '../policy/policy.js'
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

export class DatabaseCatalog {
  /** tableOid → attnum → column. */
  private readonly byTable = new Map<number, Map<number, ColumnPolicy>>()
  readonly problems: readonly CatalogProblem[]
  /** "schema.table" → every column of a protected table, in attribute order (for COPY without a column list). */
  private readonly columnOrder: ReadonlyMap<string, readonly string[]>
  /** Views over protected columns: statements that read or write through them are refused. */
  readonly views: ViewReferences

  constructor(entries: { tableOid: number; attnum: number; column: ColumnPolicy }[], problems: CatalogProblem[], columnOrder: ReadonlyMap<string, readonly string[]> = new Map(), views: readonly DependentView[] = []) {
    this.columnOrder = columnOrder
    this.views = new ViewReferences(views)
    for (const { tableOid, attnum, column } of entries) {
      let table = this.byTable.get(tableOid)
      if (table === undefined) this.byTable.set(tableOid, (table = new Map()))
      table.set(attnum, column)
    }
    this.problems = problems
  }

  /** The protected column a RowDescription field comes from, if any. */
  column(tableOid: number, attnum: number): ColumnPolicy | undefined {
    return this.byTable.get(tableOid)?.get(attnum)
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

/** Views and materialized views over protected columns, and views over those, with the protected columns each reads. */
const DEPENDENT_VIEWS_SQL = `
WITH RECURSIVE dependent(oid, origin) AS (
  SELECT r.ev_class, tn.nspname || '.' || t.relname || '.' || a.attname
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
    JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
    JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
   WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
     AND r.ev_class <> t.oid
     AND (tn.nspname, t.relname, a.attname) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
  UNION
  SELECT r.ev_class, dependent.origin
    FROM dependent
    JOIN pg_catalog.pg_depend d ON d.refobjid = dependent.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
   WHERE r.ev_class <> dependent.oid
)
SELECT n.nspname AS schema, c.relname AS name, c.relkind = 'm' AS materialized, string_agg(DISTINCT dependent.origin, ', ' ORDER BY dependent.origin) AS origins
  FROM dependent
  JOIN pg_catalog.pg_class c ON c.oid = dependent.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 GROUP BY n.nspname, c.relname, c.relkind
 ORDER BY 1, 2`

/** The views and materialized views of the connected database that read a protected column, directly or through other views. */
export async function loadDependentViews(client: pg.Client, policy: Policy): Promise<DependentView[]> {
  if (policy.isEmpty) return []
  const columns = policy.columns
  const result = await client.query<{ schema: string; name: string; materialized: boolean; origins: string }>(DEPENDENT_VIEWS_SQL, [
    columns.map((column) => column.schema),
    columns.map((column) => column.table),
    columns.map((column) => column.column),
  ])
  return result.rows.map(({ schema, name, materialized, origins }) => ({ qualified: `${schema}.${name}`, materialized, origins }))
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
  const entries: { tableOid: number; attnum: number; column: ColumnPolicy }[] = []
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
  return new DatabaseCatalog(entries, problems, orders, await loadDependentViews(client, policy))
}

export interface CatalogMapOptions {
  target: UpstreamTarget
  connectTimeoutMs: number
  policy: Policy
  logger: Logger
}

/**
 * A new session reads the catalog again when the cached one is older than this:
 * views (and tables) created straight in PostgreSQL, not through pgveil, reach new
 * sessions within this time. DDL through pgveil refreshes it at once.
 */
export const CATALOG_MAX_AGE_MS = 60_000

/** Catalogs per database, loaded once at a time (concurrent callers share one load). */
export class CatalogMap {
  private readonly options: CatalogMapOptions
  /** Per database, the catalog and when it was read. */
  private readonly catalogs = new Map<string, { readonly catalog: DatabaseCatalog; readonly loadedAt: number }>()
  private readonly loading = new Map<string, Promise<DatabaseCatalog>>()

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

  /** Forget a database's catalog (after DDL); the next load() reads it again. */
  invalidate(database?: string): void {
    if (database === undefined) this.catalogs.clear()
    else this.catalogs.delete(database)
  }

  private async fetch(database: string): Promise<DatabaseCatalog> {
    const { target, connectTimeoutMs, policy, logger } = this.options
    const { client } = await connectAsPgveil(target, { database, timeoutMs: connectTimeoutMs, applicationName: 'pgveil catalog' })
    try {
      const catalog = await loadDatabaseCatalog(client, policy)
      this.catalogs.set(database, { catalog, loadedAt: Date.now() })
      for (const problem of catalog.problems) logger.warn('protected column not usable', { database, column: problem.column.qualified, problem: problem.message, fix: problem.fix })
      return catalog
    } finally {
      await client.end().catch(() => {})
    }
  }
}
