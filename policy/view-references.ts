/**
 * Which views a SQL text reads or writes through, for refusing statements on views
 * over protected columns (pgveil maps results and analyses SQL by table, so through
 * a view it can neither decrypt nor see a condition, whose search value would reach
 * PostgreSQL as written). Only statements that read or write data count: DDL on the
 * view itself (DROP VIEW, ALTER VIEW, CREATE VIEW over it, REFRESH MATERIALIZED VIEW,
 * GRANT) goes on, so the operator can still remove or change it through pgveil.
 *
 * Requires libpg-query's module to be loaded (the SQL analyzer loads it).
 */
import { parseSync } from 'libpg-query'
import { SqlLruCache } from './sql-lru-cache.js'
import { firstRelation } from './sql-tree.js'

/** Statements that read or write rows (their relations are what matters here). */
const DATA_STATEMENTS = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'CopyStmt', 'ExplainStmt', 'DeclareCursorStmt', 'CreateTableAsStmt', 'PrepareStmt'])

export interface DependentView {
  /** `schema.name` of the view. */
  readonly qualified: string
  readonly materialized: boolean
  /** The protected columns it reads (`schema.table.column`, comma-separated). */
  readonly origins: string
}

/** Finds, per SQL text (cached), the first view over protected columns a data statement names. */
export class ViewReferences {
  /** By `schema.name`, for qualified references. */
  readonly #views: ReadonlyMap<string, DependentView>
  /**
   * By name alone, for unqualified references: a search_path may lead to a view in
   * any schema (one without protected tables may be on it), so a bare name that
   * matches a view anywhere counts.
   */
  readonly #byName: ReadonlyMap<string, DependentView>
  /** Any text that may name one of the views (their names, case-insensitively): the rest is never parsed. */
  readonly #mayName: RegExp | null
  readonly #cache = new SqlLruCache<DependentView | null>(512, 1024 * 1024)

  constructor(views: readonly DependentView[]) {
    this.#views = new Map(views.map((view) => [view.qualified, view]))
    this.#byName = new Map(views.map((view) => [view.qualified.slice(view.qualified.indexOf('.') + 1), view]))
    const escape = (name: string): string => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    // `u&` catches Unicode-escaped identifiers, which spell a name without containing it.
    this.#mayName = views.length === 0 ? null : new RegExp([...this.#byName.keys(), 'u&'].map(escape).join('|'), 'i')
  }

  /** The view `sql` reads or writes through, if any. A text that names one and cannot be parsed counts as naming it. */
  namedIn(sql: string): DependentView | null {
    if (this.#mayName === null || !this.#mayName.test(sql)) return null
    const cached = this.#cache.get(sql)
    if (cached !== undefined) return cached
    const found = this.#find(sql)
    this.#cache.set(sql, found)
    return found
  }

  #find(sql: string): DependentView | null {
    let stmts: readonly { stmt?: Record<string, unknown> }[]
    try {
      stmts = (parseSync(sql) as { stmts?: { stmt?: Record<string, unknown> }[] }).stmts ?? []
    } catch {
      // PostgreSQL will not run it either, but its text (and any value in it) would reach its log.
      const lower = sql.toLowerCase()
      return [...this.#byName].find(([name]) => lower.includes(name.toLowerCase()))?.[1] ?? this.#views.values().next().value!
    }
    for (const { stmt } of stmts) {
      if (stmt === undefined) continue
      const [kind, body] = Object.entries(stmt)[0] ?? []
      if (kind === undefined || !DATA_STATEMENTS.has(kind)) continue
      const found = this.#inTree(body)
      if (found !== null) return found
    }
    return null
  }

  /** The first relation under `node` that names one of the views (unqualified: by name alone). */
  #inTree(node: unknown): DependentView | null {
    return (
      firstRelation(node, (relation) => (typeof relation.schemaname === 'string' ? this.#views.get(`${relation.schemaname}.${relation.relname}`) : this.#byName.get(relation.relname))) ?? null
    )
  }
}
