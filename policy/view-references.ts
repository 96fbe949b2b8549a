/**
 * Which views a SQL text reads or writes through, for statements on views over
 * protected columns. pgveil decrypts through a view (DESIGN decision 6) only when the
 * view passes every protected column it uses through unchanged, as an output column
 * (proxy/catalog.ts finds out, once per catalog load): such a view is *readable*, and
 * a SELECT (or DECLARE … CURSOR FOR SELECT, COPY (SELECT …) TO) may name it, analysed
 * like one on a table.
 * An INSERT, UPDATE or DELETE may read readable views, and write through one that is
 * also *writable* (PostgreSQL writes through it to its table by itself), its values
 * sealed for the table's columns. Anything else through a view over protected columns
 * is refused: statements through a view that is not readable (pgveil could neither
 * decrypt its results nor see a condition written against it, whose search value
 * would reach PostgreSQL as written), writes through a readable view that is not
 * writable, and other statements (MERGE, COPY FROM, SELECT INTO, a data-modifying WITH…)
 * through a readable one. DDL on a view goes on (DROP VIEW, ALTER VIEW, CREATE VIEW
 * over it, REFRESH MATERIALIZED VIEW, GRANT), so the operator can still remove or
 * change it through pgveil; DDL naming a readable view is analysed knowing it.
 *
 * Requires libpg-query's module to be loaded (the SQL analyzer loads it).
 */
import { parseSync } from 'libpg-query'
import { SqlLruCache } from './sql-lru-cache.js'
import { firstRelation, holdsKey, type RelationName } from './sql-tree.js'

/** Statements that read or write rows (their relations are what matters here). */
const DATA_STATEMENTS = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'CopyStmt', 'ExplainStmt', 'DeclareCursorStmt', 'CreateTableAsStmt', 'PrepareStmt'])

export interface DependentView {
  /** `schema.name` of the view. */
  readonly qualified: string
  readonly materialized: boolean
  /** The protected columns it reads (`schema.table.column`, comma-separated). */
  readonly origins: string
  /**
   * Null when pgveil reads through it: each of those columns is one of its output
   * columns, unchanged. Otherwise why not, for the refusal and `pgveil check`.
   */
  readonly unreadable: string | null
  /**
   * A readable view PostgreSQL writes through to its table by itself (no INSTEAD OF
   * trigger or rule): INSERT, UPDATE and DELETE through it are encrypted for the
   * table's columns.
   */
  readonly writable: boolean
}

/** What a SQL text does with views over protected columns. */
export type ViewUse =
  /** It names none: analyse it as usual. */
  | null
  /** It reads through readable views, writes through writable ones, or is DDL naming one: analyse it with them as tables (DatabaseCatalog.viewAnalyzer). */
  | { readonly refused: null }
  /** It must be refused because of this view. */
  | { readonly refused: DependentView; readonly reason: ViewRefusalReason }

/**
 * `unreadable`: pgveil does not read through the view; `write`: a write through a
 * readable view that is not writable, or a statement other than a read or a write
 * naming a readable one; `unqualified`: a bare name that some view over
 * protected columns outside schema public has (which one it means depends on the
 * search_path); `unparseable`: the text names one and cannot be parsed.
 */
export type ViewRefusalReason = 'unreadable' | 'write' | 'unqualified' | 'unparseable'

type Refused = { readonly refused: DependentView; readonly reason: ViewRefusalReason }

/** Statements that may read through a readable view. */
const READ_STATEMENTS = new Set(['SelectStmt', 'DeclareCursorStmt'])
/** Statements that may write through a writable view (their target), or into a table while reading readable views. */
const WRITE_STATEMENTS = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt'])
/** Nodes that write rows: a statement holding one (a data-modifying WITH, SELECT INTO) does not only read. */
const WRITE_NODES = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'intoClause'])

/** Finds, per SQL text (cached), what its data statements do with views over protected columns. */
export class ViewReferences {
  /** By `schema.name`, for qualified references. */
  readonly #views: ReadonlyMap<string, DependentView>
  /**
   * By name alone, for unqualified references: a search_path may lead to a view in
   * any schema (one without protected tables may be on it), so a bare name that
   * matches a view anywhere counts.
   */
  readonly #byName: ReadonlyMap<string, readonly DependentView[]>
  /** Any text that may name one of the views (their names, case-insensitively): the rest is never parsed. */
  readonly #mayName: RegExp | null
  readonly #cache = new SqlLruCache<ViewUse>(512, 1024 * 1024)

  constructor(views: readonly DependentView[]) {
    this.#views = new Map(views.map((view) => [view.qualified, view]))
    const byName = new Map<string, DependentView[]>()
    for (const view of views) {
      const name = view.qualified.slice(view.qualified.indexOf('.') + 1)
      byName.set(name, [...(byName.get(name) ?? []), view])
    }
    this.#byName = byName
    const escape = (name: string): string => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    // `u&` catches Unicode-escaped identifiers, which spell a name without containing it.
    this.#mayName = views.length === 0 ? null : new RegExp([...byName.keys(), 'u&'].map(escape).join('|'), 'i')
  }

  /** What `sql` does with views over protected columns (see ViewUse). */
  useIn(sql: string): ViewUse {
    if (this.#mayName === null || !this.#mayName.test(sql)) return null
    const cached = this.#cache.get(sql)
    if (cached !== undefined) return cached
    const found = this.#find(sql)
    this.#cache.set(sql, found)
    return found
  }

  #find(sql: string): ViewUse {
    let stmts: readonly { stmt?: Record<string, unknown> }[]
    try {
      stmts = (parseSync(sql) as { stmts?: { stmt?: Record<string, unknown> }[] }).stmts ?? []
    } catch {
      // PostgreSQL will not run it either, but its text (and any value in it) would reach its log.
      const lower = sql.toLowerCase()
      const named = [...this.#byName].find(([name]) => lower.includes(name.toLowerCase()))?.[1][0] ?? this.#views.values().next().value!
      return { refused: named, reason: 'unparseable' }
    }
    let reads = false
    for (const { stmt } of stmts) {
      if (stmt === undefined) continue
      const [kind, body] = Object.entries(stmt)[0] ?? []
      if (kind === undefined) continue
      // Other statements (DDL) go on whatever views they name; one naming a readable view is analysed knowing it (CREATE VIEW … AS SELECT over it).
      const data = DATA_STATEMENTS.has(kind)
      let readable: DependentView | undefined
      const refused = firstRelation<Refused>(body, (relation) => {
        const found = this.#resolve(relation)
        if (found !== undefined && !('refused' in found)) {
          readable ??= found
          return undefined
        }
        return data ? found : undefined
      })
      if (refused !== undefined) return refused
      if (readable === undefined) continue
      if (data) {
        const refusedWrite = this.#refusedWrite(kind, body as Record<string, unknown>)
        if (refusedWrite !== undefined) return { refused: refusedWrite ?? readable, reason: 'write' }
      }
      reads = true
    }
    return reads ? { refused: null } : null
  }

  /**
   * For a data statement naming readable views: undefined when it may go on (a read;
   * an INSERT, UPDATE or DELETE whose target is a table or a writable view, with no
   * other write in it), else the view to name in its refusal (null: any it names).
   */
  #refusedWrite(kind: string, body: Record<string, unknown>): DependentView | null | undefined {
    if (READ_STATEMENTS.has(kind)) return holdsKey(body, WRITE_NODES) ? null : undefined
    // COPY (SELECT …) TO: a read (PostgreSQL copies a view's rows only this way).
    if (kind === 'CopyStmt') return body.query !== undefined && body.is_from !== true && !holdsKey(body.query, WRITE_NODES) ? undefined : null
    // CREATE MATERIALIZED VIEW … AS SELECT: a read whose rows PostgreSQL keeps as they are (CREATE TABLE AS makes a table outside the policy).
    if (kind === 'CreateTableAsStmt') return body.objtype === 'OBJECT_MATVIEW' && body.query !== undefined && !holdsKey(body.query, WRITE_NODES) ? undefined : null
    if (!WRITE_STATEMENTS.has(kind)) return null
    if (holdsKey(body.withClause, WRITE_NODES) || holdsKey(body.selectStmt, WRITE_NODES)) return null
    const target = this.#resolve(body.relation as RelationName)
    if (target === undefined || 'refused' in target) return undefined
    return target.writable ? undefined : target
  }

  /** The view a relation reference names, or why it is refused (undefined: none of the views). */
  #resolve(relation: RelationName): DependentView | Refused | undefined {
    if (typeof relation.schemaname === 'string') {
      const view = this.#views.get(`${relation.schemaname}.${relation.relname}`)
      if (view === undefined) return undefined
      return view.unreadable === null ? view : { refused: view, reason: 'unreadable' }
    }
    const views = this.#byName.get(relation.relname)
    if (views === undefined) return undefined
    const unreadable = views.find((view) => view.unreadable !== null)
    if (unreadable !== undefined) return { refused: unreadable, reason: 'unreadable' }
    // pgveil resolves bare names in public: one that may mean a view elsewhere is ambiguous.
    const elsewhere = views.find((view) => !view.qualified.startsWith('public.'))
    if (elsewhere !== undefined) return { refused: elsewhere, reason: 'unqualified' }
    return views[0]
  }
}
