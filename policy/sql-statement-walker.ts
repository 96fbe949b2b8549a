/**
 * Walks the parse tree of one statement and decides, for every place a protected
 * column appears, whether pgveil can make it correct: written values (literals,
 * parameters) are collected for encryption, bare references in a result list are
 * allowed, and everything else is refused by throwing a `Refusal`.
 *
 * The tree is libpg-query's raw parse tree (PostgreSQL 18 grammar): names are not
 * resolved yet, so this module does its own conservative resolution (sql-scope).
 */
import type {
  A_Const,
  A_Expr,
  ColumnRef,
  CommonTableExpr,
  Constraint,
  CopyStmt,
  DeleteStmt,
  FuncCall,
  IndexElem,
  InsertStmt,
  Node,
  RangeVar,
  ResTarget,
  ReturningClause,
  SelectStmt,
  SubLink,
  TypeCast,
  TypeName,
  UpdateStmt,
  VariableSetStmt,
  WindowDef,
  WithClause,
} from 'libpg-query'
import { policyTypeFromName } from '../protocol/types.js'
import { ENVELOPE_INDEX_LENGTH, ENVELOPE_INDEX_SQL_FROM, indexSliceSql } from './envelope.js'
import type { ByteRange, LiteralSlot, QualifiedColumn, SearchParam, SearchSlot, SearchValue, SqlReplacement, StatementPlan } from './sql-plan.js'
import type { CopySpec, ProtectedCopy } from './sql-plan.js'
import { Refusal, refuseColumn, refuseStatement, refuseUse, USE, type ColumnUse } from './sql-refusals.js'
import { entryFromOutput, firstProtected, NO_COLUMNS, resolveColumnRef, Scope, type Output, type OutputItem, type RangeEntry } from './sql-scope.js'
import { foldIdentifier, type SqlTokens } from './sql-tokens.js'
import { firstRelation } from './sql-tree.js'

/** What the walker needs to know about the policy. */
export interface PolicyView {
  /** Protected columns of `schema.table` by name; undefined when none. */
  columnsOf(schema: string, table: string): ReadonlyMap<string, QualifiedColumn> | undefined
  /** Whether the column is declared searchable (equality), so its search slice may be indexed. */
  searchable(column: QualifiedColumn): boolean
  /** Schemas other than public that hold protected tables. */
  readonly otherSchemas: ReadonlySet<string>
  /** Matches any protected table name (case-insensitively), for text we do not parse. */
  mentionsProtected(text: string): boolean
}

const AGGREGATES = new Set([
  'count', 'sum', 'avg', 'min', 'max', 'array_agg', 'string_agg', 'json_agg', 'jsonb_agg', 'json_object_agg',
  'jsonb_object_agg', 'bool_and', 'bool_or', 'every', 'bit_and', 'bit_or', 'xmlagg', 'mode', 'percentile_cont',
  'percentile_disc', 'stddev', 'variance', 'any_value',
])

/** Statements that read no column values and write none: forwarded even on protected tables. */
const VALUE_FREE_STATEMENTS = new Set([
  'TruncateStmt', 'DropStmt', 'GrantStmt', 'GrantRoleStmt', 'LockStmt', 'VacuumStmt', 'ClusterStmt', 'ReindexStmt',
  'CommentStmt', 'AlterOwnerStmt', 'TransactionStmt', 'VariableShowStmt', 'DiscardStmt', 'ListenStmt', 'NotifyStmt',
  'UnlistenStmt', 'CheckPointStmt', 'DeallocateStmt', 'FetchStmt', 'ClosePortalStmt',
  'CreateStatsStmt', 'RefreshMatViewStmt', 'SecLabelStmt', 'AlterDefaultPrivilegesStmt', 'ConstraintsSetStmt',
  'LoadStmt', 'CallStmt', 'CreateSeqStmt', 'AlterSeqStmt',
])

function str(node: Node | undefined): string | undefined {
  return node !== undefined && 'String' in node ? node.String.sval : undefined
}

function strings(nodes: readonly Node[] | undefined): string[] {
  const out: string[] = []
  for (const n of nodes ?? []) {
    const s = str(n)
    if (s !== undefined) out.push(s)
  }
  return out
}

function fieldNames(ref: ColumnRef): string[] {
  return (ref.fields ?? []).map((f) => ('A_Star' in f ? '*' : (str(f) ?? '')))
}

function typeNameText(t: TypeName | undefined): string {
  const names = strings(t?.names).filter((n, i, all) => !(i === 0 && n === 'pg_catalog' && all.length > 1))
  return `${names.join('.')}${(t?.arrayBounds?.length ?? 0) > 0 ? '[]' : ''}`
}

/** The type a cast names when it is a plain type: no modifier, no array, no schema but pg_catalog. */
function plainTypeName(t: TypeName | undefined): string | undefined {
  if (t === undefined || (t.typmods?.length ?? 0) > 0 || (t.arrayBounds?.length ?? 0) > 0 || t.setof === true || t.pct_type === true) return undefined
  const names = strings(t.names)
  if (names.length === 2 && names[0] !== 'pg_catalog') return undefined
  if (names.length > 2 || names.length === 0) return undefined
  return names[names.length - 1]
}

/** Whether a cast to `t` is a cast to exactly the column's plaintext type (`int4` and `integer` alike). */
function castsToPlaintextType(t: TypeName | undefined, column: QualifiedColumn): boolean {
  const name = plainTypeName(t)
  const target = name === undefined ? undefined : policyTypeFromName(name)
  return target !== undefined && target === policyTypeFromName(column.type)
}

function funcName(call: FuncCall): string {
  const names = strings(call.funcname)
  return names[names.length - 1] ?? '?'
}

function constValue(c: A_Const): string | null | undefined {
  if (c.isnull === true) return null
  if (c.sval !== undefined) return c.sval.sval ?? ''
  if (c.ival !== undefined) return String(c.ival.ival ?? 0)
  if (c.fval !== undefined) return c.fval.fval ?? '0'
  if (c.boolval !== undefined) return c.boolval.boolval === true ? 'true' : 'false'
  return undefined // bit strings
}

function describeValue(node: Node): string {
  if ('ColumnRef' in node) return 'a column reference'
  if ('FuncCall' in node) return `a call of ${funcName(node.FuncCall)}()`
  if ('SubLink' in node) return 'a subquery'
  if ('A_Expr' in node) return 'an expression'
  if ('A_Const' in node) return 'a bit-string constant'
  return 'an expression'
}

const LOCATION_UNKNOWN = -1

/** Collects one statement's plan; throws `Refusal` to refuse it. */
export class StatementWalker {
  readonly #policy: PolicyView
  readonly #tokens: SqlTokens
  readonly #params = new Map<number, QualifiedColumn>()
  readonly #plainParams = new Set<number>()
  readonly #literals: LiteralSlot[] = []
  readonly #castRemovals: ByteRange[] = []
  #resultMayBeProtected = false
  #copySpec: CopySpec | undefined
  readonly #copies: ProtectedCopy[] = []
  readonly #rewrites: SqlReplacement[] = []
  readonly #searches: SearchSlot[] = []
  readonly #searchParams = new Map<number, SearchParam>()
  #needsOneIndexVersion: QualifiedColumn | undefined
  /** In DDL (constraints, index predicates, policies, triggers) no search is rewritten: index values there would be frozen under one key version. */
  #ddl = false
  /** CREATE MATERIALIZED VIEW returning a protected column (see RewritePlan.createsMaterializedView). */
  #createsMaterializedView = false

  constructor(policy: PolicyView, tokens: SqlTokens) {
    this.#policy = policy
    this.#tokens = tokens
  }

  /** Analyze a top-level statement and return its plan (or throw a `Refusal`). */
  analyze(stmt: Node, text: () => string): StatementPlan {
    this.#statement(stmt, text)
    for (const [n, column] of this.#params) {
      if (this.#plainParams.has(n)) {
        refuseColumn(column, `parameter $${n} is written to it and also used elsewhere in the statement`, `pass the value as two parameters, one for the encrypted column`)
      }
      if (this.#searchParams.has(n)) {
        refuseColumn(column, `parameter $${n} is written to it and also used in a search`, 'pass the value as two parameters: one written, one searched')
      }
    }
    for (const [n, search] of this.#searchParams) {
      if (this.#plainParams.has(n)) {
        refuseColumn(search.column, `parameter $${n} is searched in it and also used elsewhere in the statement`, 'pass the value as two parameters, one for the search')
      }
    }
    if (this.#copySpec === undefined && this.#copies.length === 0 && this.#params.size === 0 && this.#literals.length === 0 && this.#castRemovals.length === 0 && !this.#resultMayBeProtected && this.#rewrites.length === 0 && this.#searches.length === 0 && !this.#createsMaterializedView) {
      return { action: 'passthrough' }
    }
    // Plans are cached and shared: freeze what a caller could otherwise edit.
    const plan = {
      action: 'rewrite' as const,
      params: this.#params,
      literals: Object.freeze(this.#literals.sort((a, b) => a.start - b.start).map((l) => Object.freeze(l))),
      castRemovals: Object.freeze(this.#castRemovals.sort((a, b) => a.start - b.start).map((c) => Object.freeze(c))),
      resultColumnsMayBeProtected: this.#resultMayBeProtected,
      rewrites: Object.freeze(this.#rewrites.sort((a, b) => a.start - b.start).map((r) => Object.freeze(r))),
      searches: Object.freeze(this.#searches.sort((a, b) => a.start - b.start).map((r) => Object.freeze(r))),
      searchParams: this.#searchParams,
      // A COPY carries its own rows (no RowDescription): the copy spec says what to decrypt.
      ...(this.#copySpec === undefined ? {} : { copy: this.#copySpec, resultColumnsMayBeProtected: false }),
      ...(this.#copies.length === 0 ? {} : { copies: Object.freeze([...this.#copies]) }),
      ...(this.#createsMaterializedView ? { createsMaterializedView: true as const } : {}),
    }
    return Object.freeze(this.#needsOneIndexVersion === undefined ? plan : { ...plan, needsOneIndexVersion: this.#needsOneIndexVersion })
  }

  // ---- statements ---------------------------------------------------------

  #statement(node: Node, text: () => string): void {
    // Stored definitions (views, materialized views, constraints, index predicates, policies, triggers) would keep index values made under one index key version.
    if (['CreateStmt', 'AlterTableStmt', 'IndexStmt', 'CreatePolicyStmt', 'CreateTrigStmt', 'ViewStmt', 'CreateTableAsStmt'].some((kind) => kind in node)) this.#ddl = true
    if ('SelectStmt' in node) {
      const out = this.#select(node.SelectStmt, undefined)
      const p = firstProtected(out)
      if (p !== undefined && node.SelectStmt.intoClause !== undefined) this.#refuseCopyOut(p, 'SELECT … INTO')
      this.#resultMayBeProtected ||= p !== undefined
      return
    }
    if ('InsertStmt' in node) return this.#markResult(this.#insert(node.InsertStmt, undefined))
    if ('UpdateStmt' in node) return this.#markResult(this.#update(node.UpdateStmt, undefined))
    if ('DeleteStmt' in node) return this.#markResult(this.#delete(node.DeleteStmt, undefined))
    if ('CopyStmt' in node) return this.#copy(node.CopyStmt)
    if ('ExplainStmt' in node) {
      // EXPLAIN returns plan text, not values; EXPLAIN ANALYZE runs the statement, so it is analyzed in full.
      if (node.ExplainStmt.query !== undefined) this.#statement(node.ExplainStmt.query, text)
      this.#resultMayBeProtected = false
      return
    }
    if ('DeclareCursorStmt' in node) {
      if (node.DeclareCursorStmt.query !== undefined) this.#statement(node.DeclareCursorStmt.query, text)
      return
    }
    if ('PrepareStmt' in node) return this.#prepare(node.PrepareStmt.query, text)
    if ('CreateTableAsStmt' in node) {
      const q = node.CreateTableAsStmt.query
      if (q !== undefined) {
        const p = firstProtected(this.#queryOutput(q, undefined))
        if (p === undefined) return
        // A materialized view keeps the envelopes as they are, bound to their table column: pgveil reads through it like a view (proxy/catalog.ts). A new table would not be in the policy.
        if (node.CreateTableAsStmt.objtype !== 'OBJECT_MATVIEW') this.#refuseCopyOut(p, 'CREATE TABLE … AS')
        this.#createsMaterializedView = true
      }
      return
    }
    if ('ViewStmt' in node) {
      // A view stores the query, not values: bare protected columns in its result are fine (proxy/catalog.ts reads through such views).
      if (node.ViewStmt.query !== undefined) {
        const p = firstProtected(this.#queryOutput(node.ViewStmt.query, undefined))
        // A temporary view lives in its own session, where pgveil's catalog cannot see it.
        const view = node.ViewStmt.view
        if (p !== undefined && (view?.relpersistence === 't' || view?.schemaname === 'pg_temp')) {
          refuseColumn(p, 'a temporary view returning it is not supported (pgveil cannot see temporary views, so it could neither decrypt through one nor see a condition written against it)', 'create a regular view with CREATE VIEW, which pgveil reads through')
        }
      }
      return
    }
    if ('MergeStmt' in node) {
      const p = this.#findProtectedTable(node)
      if (p !== undefined) refuseStatement(`MERGE on table "${p.schema}.${p.table}", which has the encrypted column "${p.name}", is not supported by pgveil`, 'use INSERT … ON CONFLICT, UPDATE and DELETE', p)
      return
    }
    if ('CreateStmt' in node) return this.#createTable(node.CreateStmt.relation, node.CreateStmt.tableElts, node.CreateStmt.constraints)
    if ('AlterTableStmt' in node) return this.#alterTable(node.AlterTableStmt.relation, node.AlterTableStmt.cmds)
    if ('IndexStmt' in node) return this.#index(node.IndexStmt.relation, node.IndexStmt.indexParams, node.IndexStmt.whereClause)
    if ('RenameStmt' in node) return this.#rename(node.RenameStmt)
    if ('AlterObjectSchemaStmt' in node) {
      const cols = this.#tableColumns(node.AlterObjectSchemaStmt.relation)
      const p = cols === undefined ? undefined : first(cols)
      if (p !== undefined) refuseStatement(`moving table "${p.schema}.${p.table}" to another schema is not supported while pgveil encrypts its column "${p.name}"`, 'ciphertexts are bound to schema.table.column: decrypt, move, update the policy, and re-encrypt with pgveil migrate', p)
      return
    }
    if ('CreatePolicyStmt' in node) {
      const s = node.CreatePolicyStmt
      const scope = new Scope(undefined)
      if (s.table !== undefined) scope.entries.push(this.#relationEntry(s.table, scope, true))
      this.#exprAs(s.qual, scope, USE.policyExpression)
      this.#exprAs(s.with_check, scope, USE.policyExpression)
      return
    }
    if ('RuleStmt' in node) {
      const p = this.#findProtectedTable(node)
      if (p !== undefined) refuseStatement(`a rule on table "${p.schema}.${p.table}", which has the encrypted column "${p.name}", is not supported by pgveil`, 'do the work in the application, through pgveil', p)
      return
    }
    if ('CreateFunctionStmt' in node || 'DoStmt' in node) {
      // Function bodies run inside PostgreSQL, out of pgveil's sight.
      if (this.#policy.mentionsProtected(text())) {
        refuseStatement('a function, procedure or DO block that names a table with encrypted columns is not supported by pgveil: its SQL would run without the proxy', 'run those statements from the application, through pgveil')
      }
      return
    }
    if ('ExecuteStmt' in node) {
      // Named statements of the extended protocol are EXECUTE-able too: arguments could
      // reach a parameter pgveil rewrote to bytea, unencrypted.
      if ((node.ExecuteStmt.params?.length ?? 0) > 0) {
        refuseStatement(`EXECUTE ${node.ExecuteStmt.name ?? ''} (…) with arguments is not supported by pgveil: it cannot tell whether the prepared statement writes encrypted columns`, 'bind the values with the extended query protocol (Bind) instead')
      }
      return
    }
    if ('CreateTrigStmt' in node) {
      const t = node.CreateTrigStmt
      const columns = this.#tableColumns(t.relation)
      if (columns !== undefined && t.whenClause !== undefined) {
        const scope = new Scope(undefined)
        for (const name of ['new', 'old']) scope.entries.push({ name, schema: undefined, columns, known: undefined, opaque: undefined })
        this.#expr(t.whenClause, scope, USE.condition('a trigger WHEN'))
      }
      return
    }
    if ('VariableSetStmt' in node) return this.#variableSet(node.VariableSetStmt)
    // ALTER ROLE / DATABASE / SYSTEM … SET: the setting applies to later sessions.
    const setStmt = (Object.values(node)[0] as { setstmt?: VariableSetStmt } | undefined)?.setstmt
    if (setStmt !== undefined) return this.#variableSet(setStmt)
    const kind = Object.keys(node)[0] ?? ''
    if (VALUE_FREE_STATEMENTS.has(kind)) return
    const p = this.#findProtectedTable(node)
    if (p !== undefined) refuseStatement(`${kind.replace(/Stmt$/, '')} on table "${p.schema}.${p.table}", which has the encrypted column "${p.name}", is not supported by pgveil`, 'use SELECT, INSERT, UPDATE or DELETE through pgveil', p)
  }

  #markResult(out: Output): void {
    this.#resultMayBeProtected ||= firstProtected(out) !== undefined
  }

  #refuseCopyOut(column: QualifiedColumn, form: string): never {
    refuseColumn(column, `copying it into a new table with ${form} is not supported`, 'ciphertexts are bound to their column; create the table, then copy the values through the application with SELECT and INSERT … VALUES via pgveil')
  }

  /** Output of a statement used as a query (SELECT, or DML with RETURNING). */
  #queryOutput(node: Node, outer: Scope | undefined): Output {
    if ('SelectStmt' in node) return this.#select(node.SelectStmt, outer)
    if ('InsertStmt' in node) return this.#insert(node.InsertStmt, outer)
    if ('UpdateStmt' in node) return this.#update(node.UpdateStmt, outer)
    if ('DeleteStmt' in node) return this.#delete(node.DeleteStmt, outer)
    const p = this.#findProtectedTable(node)
    if (p !== undefined) refuseStatement(`this statement form on table "${p.schema}.${p.table}", which has the encrypted column "${p.name}", is not supported by pgveil`, 'use SELECT, INSERT, UPDATE or DELETE through pgveil', p)
    return []
  }

  #prepare(query: Node | undefined, text: () => string): void {
    if (query === undefined) return
    const inner = new StatementWalker(this.#policy, this.#tokens)
    const plan = inner.analyze(query, text)
    if (plan.action !== 'passthrough') {
      const column = plan.action === 'rewrite' ? (plan.params.values().next().value ?? plan.literals[0]?.column) : undefined
      refuseStatement(
        `PREPARE … AS on a statement that reads or writes ${column === undefined ? 'encrypted columns' : `the encrypted column "${column.name}"`} is not supported by pgveil`,
        'use the extended query protocol (Parse/Bind/Execute), which drivers use for parameters',
        column,
      )
    }
  }

  #variableSet(s: VariableSetStmt): void {
    if (s.kind === 'VAR_SET_VALUE' && s.name !== undefined) this.#setting(s.name, (s.args ?? []).map((a) => ('A_Const' in a ? (constValue(a.A_Const) ?? '') : '')))
  }

  #setting(name: string, values: readonly string[]): void {
    const lower = name.toLowerCase()
    if (lower === 'standard_conforming_strings' && values.some((v) => /^(off|false|no|0|of)$/i.test(v))) {
      refuseStatement('pgveil requires standard_conforming_strings = on (it reads string literals the way PostgreSQL does only with it on)', "use E'…' strings for backslash escapes")
    }
    if (lower === 'client_encoding' && values.some((v) => !/^(utf-?8|unicode)$/i.test(v.trim()))) {
      refuseStatement('pgveil requires client_encoding UTF8 (it locates literals by their UTF-8 bytes)', 'convert text to UTF-8 in the application')
    }
    if (lower === 'search_path') {
      const schemas = values.flatMap(searchPathSchemas)
      const shadow = schemas.find((s) => this.#policy.otherSchemas.has(s))
      if (shadow !== undefined) {
        refuseStatement(`pgveil resolves unqualified table names in schema public only; a search_path with schema "${shadow}", which holds encrypted tables, is not supported`, `qualify those tables with their schema instead, as in ${shadow}.table`)
      }
    }
  }

  // ---- queries ------------------------------------------------------------

  #withScope(withClause: WithClause | undefined, outer: Scope | undefined): Scope | undefined {
    if (withClause === undefined || (withClause.ctes?.length ?? 0) === 0) return outer
    const ctes = new Map<string, Output>()
    const scope = new Scope(outer, ctes)
    for (const node of withClause.ctes ?? []) {
      if (!('CommonTableExpr' in node)) continue
      const cte: CommonTableExpr = node.CommonTableExpr
      const name = cte.ctename ?? ''
      // A recursive CTE sees itself; its own columns are judged by its non-recursive part.
      if (withClause.recursive === true) ctes.set(name, [])
      const out = cte.ctequery === undefined ? [] : this.#queryOutput(cte.ctequery, scope)
      const colnames = strings(cte.aliascolnames)
      ctes.set(name, colnames.length > 0 ? renameOutput(out, colnames) : out)
    }
    return scope
  }

  /**
   * Analyze a SELECT; returns its output columns. When `writeTargets` is given
   * (INSERT … SELECT), the target list writes into those columns positionally; when
   * `comparedWith` is given, its one result column is compared with that searchable
   * column (see #sliceSubqueryComparison).
   */
  #select(stmt: SelectStmt, outer: Scope | undefined, writeTargets?: readonly WriteTarget[], comparedWith?: QualifiedColumn): Output {
    const scope = this.#withScope(stmt.withClause, outer)
    if (stmt.op !== undefined && stmt.op !== 'SETOP_NONE') {
      const left = stmt.larg === undefined ? [] : this.#select(stmt.larg, scope)
      const right = stmt.rarg === undefined ? [] : this.#select(stmt.rarg, scope)
      const p = firstProtected(left) ?? firstProtected(right)
      const op = `${stmt.op.replace('SETOP_', '')}${stmt.all === true ? ' ALL' : ''}`
      if (p !== undefined) refuseUse(p, USE.setOperation(op))
      const level = new Scope(scope)
      for (const s of stmt.sortClause ?? []) this.#expr(s, level, USE.orderBy)
      this.#expr(stmt.limitCount, level, USE.limit)
      this.#expr(stmt.limitOffset, level, USE.limit)
      return left
    }
    if (stmt.valuesLists !== undefined) {
      const level = new Scope(scope)
      let width = 0
      for (const row of stmt.valuesLists) {
        const items = 'List' in row ? (row.List.items ?? []) : [row]
        width = Math.max(width, items.length)
        for (const item of items) this.#expr(item, level, USE.expression('VALUES'))
      }
      for (const s of stmt.sortClause ?? []) this.#expr(s, level, USE.orderBy)
      this.#expr(stmt.limitCount, level, USE.limit)
      this.#expr(stmt.limitOffset, level, USE.limit)
      return Array.from({ length: width }, (_, i): OutputItem => ({ kind: 'column', name: `column${i + 1}`, column: undefined }))
    }

    const level = new Scope(scope)
    for (const item of stmt.fromClause ?? []) this.#fromItem(item, level)
    this.#expr(stmt.whereClause, level, USE.condition('WHERE'))

    const output: OutputItem[] = []
    ;(stmt.targetList ?? []).forEach((node, i) => {
      if (!('ResTarget' in node)) return
      const target = writeTargets?.[i]
      if (target !== undefined && target.column !== undefined) {
        if (node.ResTarget.val !== undefined) this.#writeValue(node.ResTarget.val, target, level, true)
        output.push({ kind: 'column', name: node.ResTarget.name, column: undefined })
        return
      }
      if (comparedWith !== undefined) {
        this.#comparedTarget(node.ResTarget.val, level, comparedWith)
        output.push({ kind: 'column', name: node.ResTarget.name, column: undefined })
        return
      }
      output.push(this.#resultItem(node.ResTarget, level))
    })

    const distinct = stmt.distinctClause
    if (distinct !== undefined && distinct.length > 0) {
      const plain = distinct.length === 1 && Object.keys(distinct[0] as object).length === 0
      if (plain) {
        const p = firstProtected(output)
        if (p !== undefined) this.#distinctBySlice(stmt, level, output, p)
      } else for (const d of distinct) this.#sortKey(d, level, output, USE.distinctOn)
    }
    for (const g of stmt.groupClause ?? []) this.#groupKey(g, level, output)
    this.#expr(stmt.havingClause, level, USE.condition('HAVING'))
    for (const w of stmt.windowClause ?? []) if ('WindowDef' in w) this.#window(w.WindowDef, level)
    for (const s of stmt.sortClause ?? []) this.#sortKey('SortBy' in s ? s.SortBy.node : s, level, output, USE.orderBy)
    this.#expr(stmt.limitCount, level, USE.limit)
    this.#expr(stmt.limitOffset, level, USE.limit)
    return output
  }

  /** One result column: bare protected references (and stars) are allowed here. */
  #resultItem(target: ResTarget, level: Scope): OutputItem {
    const val = target.val
    if (val !== undefined && 'ColumnRef' in val) {
      const fields = fieldNames(val.ColumnRef)
      const resolved = resolveColumnRef(level, fields)
      if (resolved?.kind === 'star') return { kind: 'star', columns: resolved.columns, opaque: resolved.opaque }
      if (fields[fields.length - 1] === '*') return { kind: 'star', columns: NO_COLUMNS, opaque: undefined }
      if (resolved?.kind === 'wholeRow') refuseUse(resolved.column, USE.wholeRow(resolved.ref))
      return { kind: 'column', name: target.name ?? fields[fields.length - 1], column: resolved?.column }
    }
    this.#expr(val, level, USE.expression('result column'))
    return { kind: 'column', name: target.name, column: undefined }
  }

  /** ORDER BY / DISTINCT ON key: may name an output column by name or position. */
  #sortKey(node: Node | undefined, level: Scope, output: Output, use: ColumnUse): void {
    if (node === undefined) return
    if ('A_Const' in node && node.A_Const.ival !== undefined) {
      const position = node.A_Const.ival.ival ?? 0
      const hasStar = output.slice(0, position).some((o) => o.kind === 'star')
      const item = output[position - 1]
      const p = hasStar ? firstProtected(output) : item?.kind === 'column' ? item.column : firstProtected(item === undefined ? [] : [item])
      if (p !== undefined) refuseUse(p, use)
      return
    }
    if ('ColumnRef' in node) {
      const fields = fieldNames(node.ColumnRef)
      if (fields.length === 1) {
        for (const o of output) if (o.kind === 'column' && o.name === fields[0] && o.column !== undefined) refuseUse(o.column, use)
      }
    }
    this.#expr(node, level, use)
  }

  /**
   * `SELECT DISTINCT …` with searchable columns becomes `SELECT DISTINCT ON (1,
   * substring(col from 13 for 32), …) …`: rows are told apart by the values'
   * index slots (by position for other columns), and each row still returns a
   * ciphertext that decrypts to its value.
   */
  #distinctBySlice(stmt: SelectStmt, level: Scope, output: Output, first: QualifiedColumn): void {
    if (this.#ddl || output.some((o) => o.kind === 'star')) refuseUse(first, USE.distinct)
    if ((stmt.sortClause?.length ?? 0) > 0) refuseColumn(first, 'SELECT DISTINCT with ORDER BY is not supported when it returns it', 'sort in the application, or drop DISTINCT')
    const keys: string[] = []
    const targets = stmt.targetList ?? []
    output.forEach((o, i) => {
      if (o.kind !== 'column' || o.column === undefined) {
        keys.push(String(i + 1))
        return
      }
      const target = targets[i]
      const ref = target !== undefined && 'ResTarget' in target ? this.#protectedRef(target.ResTarget.val, level) : undefined
      if (ref === undefined) refuseUse(o.column, USE.distinct)
      this.#requireSearchable(ref.column, USE.distinct)
      keys.push(indexSliceSql(this.#refExtent(ref).text))
      this.#needsOneIndexVersion ??= ref.column
    })
    const firstTarget = targets[0]
    const location = firstTarget !== undefined && 'ResTarget' in firstTarget ? (firstTarget.ResTarget.location ?? LOCATION_UNKNOWN) : LOCATION_UNKNOWN
    const i = this.#tokens.indexAt(location)
    const keyword = i > 0 ? this.#tokens.at(i - 1) : undefined
    if (keyword === undefined || keyword.text.toLowerCase() !== 'distinct') refuseColumn(first, 'pgveil could not locate DISTINCT', 'write SELECT DISTINCT column, …')
    this.#rewrites.push({ start: keyword.start, end: keyword.end, text: `DISTINCT ON (${keys.join(', ')})` })
  }

  #groupKey(node: Node, level: Scope, output: Output): void {
    if ('GroupingSet' in node) {
      for (const n of node.GroupingSet.content ?? []) this.#groupKey(n, level, output)
      return
    }
    const grouped = this.#protectedRef(node, level)
    if (grouped !== undefined && grouped.column.indexDomain !== undefined && !this.#ddl) {
      // Grouped by its index slot, a group holds values that are equal but ciphertexts that differ: none can be selected as "the" value.
      if (output.some((o) => (o.kind === 'column' ? o.column === grouped.column : firstProtected([o]) !== undefined))) {
        refuseColumn(grouped.column, 'GROUP BY on it while also selecting it is not supported', 'use SELECT DISTINCT column, count(DISTINCT column), or group by it without selecting it')
      }
      this.#sliceCompared(grouped)
      return
    }
    this.#sortKey(node, level, output, USE.groupBy)
  }

  #window(def: WindowDef, level: Scope): void {
    for (const p of def.partitionClause ?? []) this.#expr(p, level, USE.windowPartition)
    for (const o of def.orderClause ?? []) this.#expr(o, level, USE.windowOrder)
    this.#expr(def.startOffset, level, USE.expression('window frame'))
    this.#expr(def.endOffset, level, USE.expression('window frame'))
  }

  // ---- FROM ---------------------------------------------------------------

  #tableColumns(rel: RangeVar | undefined): ReadonlyMap<string, QualifiedColumn> | undefined {
    if (rel?.relname === undefined) return undefined
    return this.#policy.columnsOf(rel.schemaname ?? 'public', rel.relname)
  }

  /** A relation in FROM (which may name a CTE), or the target of a write (`dmlTarget`: never a CTE). */
  #relationEntry(rel: RangeVar, level: Scope, dmlTarget = false): RangeEntry {
    const alias = rel.alias
    const colnames = strings(alias?.colnames)
    const relname = rel.relname ?? ''
    if (rel.schemaname === undefined && !dmlTarget) {
      const cte = level.cte(relname)
      if (cte !== undefined) return entryFromOutput(alias?.aliasname ?? relname, cte, colnames.length > 0 ? colnames : undefined)
    }
    const columns = this.#tableColumns(rel) ?? NO_COLUMNS
    // An alias column list renames columns by position, which we do not know.
    const opaque = colnames.length > 0 ? first(columns) : undefined
    return {
      name: alias?.aliasname ?? relname,
      schema: alias === undefined ? (rel.schemaname ?? 'public') : undefined,
      columns,
      known: undefined,
      opaque,
    }
  }

  #fromItem(node: Node, level: Scope): void {
    if ('RangeVar' in node) {
      level.entries.push(this.#relationEntry(node.RangeVar, level))
      return
    }
    if ('RangeSubselect' in node) {
      const s = node.RangeSubselect
      // A LATERAL subquery sees the FROM entries before it; another one does not.
      const outer = s.lateral === true ? level : level.parent
      const out = s.subquery === undefined ? [] : this.#queryOutput(s.subquery, outer)
      const colnames = strings(s.alias?.colnames)
      level.entries.push(entryFromOutput(s.alias?.aliasname, out, colnames.length > 0 ? colnames : undefined))
      return
    }
    if ('JoinExpr' in node) {
      const j = node.JoinExpr
      const before = level.entries.length
      if (j.larg !== undefined) this.#fromItem(j.larg, level)
      const middle = level.entries.length
      if (j.rarg !== undefined) this.#fromItem(j.rarg, level)
      const sides = level.entries.slice(before)
      for (const name of strings(j.usingClause)) {
        for (const e of sides) {
          const c = e.columns.get(name) ?? e.opaque
          if (c !== undefined) refuseUse(c, USE.joinUsing)
        }
      }
      if (j.isNatural === true) {
        const left = level.entries.slice(before, middle)
        const right = level.entries.slice(middle)
        for (const e of [...left, ...right]) {
          const c = first(e.columns) ?? e.opaque
          if (c !== undefined) refuseUse(c, USE.naturalJoin)
        }
      }
      if (j.quals !== undefined) {
        const on = new Scope(level.parent)
        on.entries.push(...sides)
        this.#expr(j.quals, on, USE.condition('JOIN … ON'))
      }
      const alias = j.alias?.aliasname ?? j.join_using_alias?.aliasname
      if (alias !== undefined) {
        const columns = new Map<string, QualifiedColumn>()
        let opaque: QualifiedColumn | undefined
        for (const e of sides) {
          opaque ??= e.opaque
          for (const [n, c] of e.columns) columns.set(n, c)
        }
        if (strings(j.alias?.colnames).length > 0) opaque ??= first(columns)
        level.entries.push({ name: alias, schema: undefined, columns, known: undefined, opaque })
      }
      return
    }
    if ('RangeFunction' in node) {
      const f = node.RangeFunction
      for (const item of f.functions ?? []) {
        const call = 'List' in item ? item.List.items?.[0] : item
        this.#expr(call, level, USE.expression('function in FROM'))
      }
      level.entries.push({ name: f.alias?.aliasname, schema: undefined, columns: NO_COLUMNS, known: undefined, opaque: undefined })
      return
    }
    if ('RangeTableSample' in node) {
      const t = node.RangeTableSample
      if (t.relation !== undefined) this.#fromItem(t.relation, level)
      for (const a of t.args ?? []) this.#expr(a, level, USE.expression('TABLESAMPLE'))
      this.#expr(t.repeatable, level, USE.expression('TABLESAMPLE'))
      return
    }
    // XMLTABLE, JSON_TABLE, …: their inputs are expressions like any other.
    this.#generic(node, level, USE.expression(Object.keys(node)[0] ?? 'FROM item'))
    const alias = (Object.values(node)[0] as { alias?: { aliasname?: string } } | undefined)?.alias?.aliasname
    level.entries.push({ name: alias, schema: undefined, columns: NO_COLUMNS, known: undefined, opaque: undefined })
  }

  // ---- writes ---------------------------------------------------------------

  #returning(clause: ReturningClause | undefined, level: Scope, target: RangeEntry): Output {
    if (clause === undefined || (clause.exprs?.length ?? 0) === 0) return []
    // One level: `*` covers the target and the FROM/USING entries, plus old/new.
    const scope = new Scope(level.parent)
    scope.entries.push(...level.entries)
    const names = new Map([
      ['RETURNING_OPTION_OLD', 'old'],
      ['RETURNING_OPTION_NEW', 'new'],
    ])
    for (const o of clause.options ?? []) {
      if ('ReturningOption' in o && o.ReturningOption.option !== undefined && o.ReturningOption.value !== undefined) {
        names.set(o.ReturningOption.option, o.ReturningOption.value)
      }
    }
    for (const name of names.values()) scope.entries.push({ ...target, name, schema: undefined })
    const out: OutputItem[] = []
    for (const node of clause.exprs ?? []) if ('ResTarget' in node) out.push(this.#resultItem(node.ResTarget, scope))
    return out
  }

  #insert(stmt: InsertStmt, outer: Scope | undefined): Output {
    const scope = this.#withScope(stmt.withClause, outer)
    const rel = stmt.relation
    const columns = this.#tableColumns(rel)
    const schema = rel?.schemaname ?? 'public'
    const tableName = `${schema}.${rel?.relname ?? ''}`
    const names = (stmt.cols ?? []).map((c) => ('ResTarget' in c ? c.ResTarget : {}))
    const targets: WriteTarget[] = names.map((t) => {
      const column = t.name === undefined ? undefined : columns?.get(t.name)
      if (column !== undefined && (t.indirection?.length ?? 0) > 0) refuseUse(column, USE.subscript)
      return { column, label: `${tableName}.${t.name ?? '?'}` }
    })
    const source = stmt.selectStmt
    const firstColumn = columns === undefined ? undefined : first(columns)
    if (firstColumn !== undefined && names.length === 0 && source !== undefined) {
      refuseStatement(
        `INSERT without a column list is not supported by pgveil on table "${tableName}", which has the encrypted column "${firstColumn.name}"`,
        `name the columns: INSERT INTO ${rel?.relname ?? 'table'} (column, …) VALUES (…)`,
        firstColumn,
      )
    }
    if (source !== undefined && 'SelectStmt' in source) {
      const sel = source.SelectStmt
      if (isPlainValues(sel)) {
        const level = new Scope(this.#withScope(sel.withClause, scope))
        for (const row of sel.valuesLists ?? []) {
          const items = 'List' in row ? (row.List.items ?? []) : [row]
          items.forEach((item, i) => this.#writeValue(item, targets[i] ?? { column: undefined, label: `${tableName} column ${i + 1}` }, level, false))
        }
      } else {
        const protectedTarget = targets.find((t) => t.column !== undefined)?.column
        if (protectedTarget !== undefined && !isSimpleSelect(sel)) {
          refuseColumn(protectedTarget, 'INSERT … SELECT with UNION, VALUES, DISTINCT, GROUP BY, HAVING, windows or ORDER BY into it is not supported', 'insert with INSERT … VALUES, or select only literals, parameters and NULL for it')
        }
        const out = this.#select(sel, scope, targets)
        out.forEach((item, i) => {
          const p = firstProtected([item])
          if (p === undefined) return
          if (item.kind === 'star') refuseColumn(p, 'INSERT … SELECT * is not supported when it reads encrypted columns', 'name the columns; copy encrypted values through the application')
          this.#copyProtected(p, targets[i] ?? { column: undefined, label: `${tableName} column ${i + 1}` })
        })
      }
    }
    const level = new Scope(scope)
    const target: RangeEntry = {
      name: rel?.alias?.aliasname ?? rel?.relname,
      schema: rel?.alias === undefined ? schema : undefined,
      columns: columns ?? NO_COLUMNS,
      known: undefined,
      opaque: undefined,
    }
    level.entries.push(target)
    const conflict = stmt.onConflictClause
    if (conflict !== undefined) {
      for (const e of conflict.infer?.indexElems ?? []) if ('IndexElem' in e) this.#conflictTarget(e.IndexElem, level, conflict.infer?.location ?? LOCATION_UNKNOWN)
      this.#expr(conflict.infer?.whereClause, level, USE.condition('ON CONFLICT … WHERE'))
      const set = new Scope(scope)
      set.entries.push(target, { ...target, name: 'excluded', schema: undefined })
      this.#assignments(conflict.targetList, set, columns, tableName)
      this.#expr(conflict.whereClause, set, USE.condition('ON CONFLICT … DO UPDATE … WHERE'))
    }
    return this.#returning(stmt.returningClause, level, target)
  }

  /** `ON CONFLICT (col)` on a searchable column infers the UNIQUE index on its slot: `ON CONFLICT ((substring(col from 13 for 32)))`. */
  #conflictTarget(elem: IndexElem, level: Scope, openParen: number): void {
    if (elem.name !== undefined) {
      const r = resolveColumnRef(level, [elem.name])
      if (r?.kind === 'column') {
        if (r.column.indexDomain === undefined) refuseUse(r.column, USE.onConflictTarget)
        let depth = 0
        const from = this.#tokens.indexAt(openParen)
        for (let i = from < 0 ? this.#tokens.tokens.length : from; i < this.#tokens.tokens.length; i++) {
          const t = this.#tokens.at(i)
          if (t === undefined) break
          if (t.text === '(') depth++
          else if (t.text === ')' && --depth === 0) break
          else if (depth === 1 && t.tokenName !== 'SCONST' && foldIdentifier(t.text) === elem.name) {
            this.#rewrites.push({ start: t.start, end: t.end, text: `(${indexSliceSql(t.text)})` })
            this.#needsOneIndexVersion ??= r.column
            return
          }
        }
        refuseColumn(r.column, 'pgveil could not locate it in ON CONFLICT (…)', 'write ON CONFLICT (column)')
      }
    }
    this.#expr(elem.expr, level, USE.onConflictTarget)
  }

  #update(stmt: UpdateStmt, outer: Scope | undefined): Output {
    const scope = this.#withScope(stmt.withClause, outer)
    const level = new Scope(scope)
    const rel = stmt.relation
    const target = rel === undefined ? undefined : this.#relationEntry(rel, level, true)
    if (target !== undefined) level.entries.push(target)
    for (const f of stmt.fromClause ?? []) this.#fromItem(f, level)
    const columns = this.#tableColumns(rel)
    this.#assignments(stmt.targetList, level, columns, `${rel?.schemaname ?? 'public'}.${rel?.relname ?? ''}`)
    this.#expr(stmt.whereClause, level, USE.condition('WHERE'))
    return target === undefined ? [] : this.#returning(stmt.returningClause, level, target)
  }

  #delete(stmt: DeleteStmt, outer: Scope | undefined): Output {
    const scope = this.#withScope(stmt.withClause, outer)
    const level = new Scope(scope)
    const target = stmt.relation === undefined ? undefined : this.#relationEntry(stmt.relation, level, true)
    if (target !== undefined) level.entries.push(target)
    for (const f of stmt.usingClause ?? []) this.#fromItem(f, level)
    this.#expr(stmt.whereClause, level, USE.condition('WHERE'))
    return target === undefined ? [] : this.#returning(stmt.returningClause, level, target)
  }

  /** `SET col = value, (a, b) = (…)` of UPDATE and ON CONFLICT DO UPDATE. */
  #assignments(list: readonly Node[] | undefined, level: Scope, columns: ReadonlyMap<string, QualifiedColumn> | undefined, tableName: string): void {
    for (const node of list ?? []) {
      if (!('ResTarget' in node)) continue
      const t = node.ResTarget
      const column = t.name === undefined ? undefined : columns?.get(t.name)
      if (column !== undefined && (t.indirection?.length ?? 0) > 0) refuseUse(column, USE.subscript)
      const target: WriteTarget = { column, label: `${tableName}.${t.name ?? '?'}` }
      const val = t.val
      if (val === undefined) continue
      if ('MultiAssignRef' in val) {
        const m = val.MultiAssignRef
        const source = m.source
        if (source !== undefined && 'RowExpr' in source) {
          const item = source.RowExpr.args?.[(m.colno ?? 1) - 1]
          if (item !== undefined) this.#writeValue(item, target, level, true)
        } else if (source !== undefined && 'SubLink' in source && source.SubLink.subselect !== undefined) {
          if (column !== undefined) this.#refuseComputed(column, source)
          const out = this.#queryOutput(source.SubLink.subselect, level)
          const item = out[(m.colno ?? 1) - 1]
          const p = item === undefined ? firstProtected(out) : firstProtected([item])
          if (p !== undefined) this.#copyProtected(p, target)
        } else if (source !== undefined) {
          this.#writeValue(source, target, level, true)
        }
        continue
      }
      this.#writeValue(val, target, level, true)
    }
  }

  #refuseComputed(column: QualifiedColumn, node: Node): never {
    refuseColumn(column, `only a literal, a parameter, NULL or DEFAULT can be written to it, not ${describeValue(node)}`, 'compute the value in the application and pass it as a parameter')
  }

  /** A protected value copied as it is stored: fine between columns bound alike (same column or key domain, same type). */
  #copyProtected(source: QualifiedColumn, target: WriteTarget): void {
    if (target.column !== undefined && target.column.binding === source.binding && target.column.type === source.type) {
      if (target.column !== source) this.#copies.push(Object.freeze({ from: source, to: target.column }))
      return
    }
    this.#refuseCopy(source, target)
  }

  #refuseCopy(source: QualifiedColumn, target: WriteTarget): never {
    if (target.column !== undefined) {
      refuseColumn(source, `copying it into column "${target.column.name}" is not supported`, 'ciphertexts are bound to their column; give both columns the same key domain in the policy (domain: NAME), or copy the values through the application')
    }
    refuseColumn(source, `copying it into column "${target.label}", which pgveil does not encrypt, is not supported`, 'read it through pgveil and write the plaintext from the application, or add that column to the policy')
  }

  /**
   * A value written to `target`. For a protected target: a literal, parameter,
   * NULL, DEFAULT, a cast of one of those to the plaintext type, or (when
   * `sameColumnOk`) the column itself (`EXCLUDED.col`, `SET col = col`).
   */
  #writeValue(node: Node, target: WriteTarget, level: Scope, sameColumnOk: boolean): void {
    const column = target.column
    if (column === undefined) {
      if ('ColumnRef' in node) {
        const r = resolveColumnRef(level, fieldNames(node.ColumnRef))
        if (r?.kind === 'column') this.#refuseCopy(r.column, target)
      }
      this.#expr(node, level, USE.expression(`value for ${target.label}`))
      return
    }
    this.#protectedValue(node, column, level, sameColumnOk)
  }

  /** Returns the byte range of the innermost literal or parameter. */
  #protectedValue(node: Node, column: QualifiedColumn, level: Scope, sameColumnOk: boolean): ByteRange | undefined {
    if ('A_Const' in node) {
      const value = constValue(node.A_Const)
      if (value === undefined) this.#refuseComputed(column, node)
      const range = this.#tokens.constantRange(node.A_Const.location ?? 0)
      if (range === undefined) refuseColumn(column, 'pgveil could not locate a literal written to it', 'pass the value as a parameter')
      this.#literals.push({ start: range.start, end: range.end, column, value })
      return range
    }
    if ('ParamRef' in node) {
      const n = node.ParamRef.number ?? 0
      const previous = this.#params.get(n)
      if (previous !== undefined && previous !== column) {
        refuseColumn(column, `parameter $${n} is also written to column "${previous.name}"`, 'use one parameter per encrypted column; a ciphertext is bound to its column')
      }
      this.#params.set(n, column)
      const location = node.ParamRef.location ?? 0
      const i = this.#tokens.indexAt(location)
      const token = this.#tokens.at(i)
      return token === undefined ? undefined : { start: token.start, end: token.end }
    }
    if ('SetToDefault' in node) return undefined
    if ('TypeCast' in node) return this.#protectedCast(node.TypeCast, column, level, sameColumnOk)
    if ('ColumnRef' in node) {
      const r = resolveColumnRef(level, fieldNames(node.ColumnRef))
      if (r?.kind === 'column' && sameColumnOk && r.column.binding === column.binding && r.column.type === column.type) {
        if (r.column !== column) this.#copies.push(Object.freeze({ from: r.column, to: column }))
        return undefined
      }
      if (r?.kind === 'column') {
        refuseColumn(column, `assigning ${r.column === column ? 'its own value' : `column "${r.column.name}"`} to it here is not supported`, 'ciphertexts are bound to their column; give both columns the same key domain in the policy (domain: NAME), or copy the values through the application')
      }
    }
    return this.#refuseComputed(column, node)
  }

  #protectedCast(cast: TypeCast, column: QualifiedColumn, level: Scope, sameColumnOk: boolean): ByteRange | undefined {
    const arg = cast.arg
    if (!castsToPlaintextType(cast.typeName, column) || arg === undefined || !('A_Const' in arg || 'ParamRef' in arg || 'TypeCast' in arg)) {
      refuseColumn(
        column,
        `a value written to it may only be cast to its plaintext type ${column.type}, not to ${typeNameText(cast.typeName)}`,
        `drop the cast; pgveil converts the value to ${column.type}`,
      )
    }
    const inner = this.#protectedValue(arg, column, level, sameColumnOk)
    const removals = inner === undefined ? undefined : this.#tokens.castRemovals(cast.location ?? LOCATION_UNKNOWN, cast.typeName?.location ?? LOCATION_UNKNOWN, inner)
    if (removals === undefined) refuseColumn(column, `pgveil could not locate the cast to ${column.type} on a value written to it`, 'drop the cast; pgveil converts the value')
    this.#castRemovals.push(...removals)
    return inner
  }

  // ---- COPY and DDL ----------------------------------------------------------

  #copy(stmt: CopyStmt): void {
    const direction = stmt.is_from === true ? 'FROM' : 'TO'
    const advice = stmt.is_from === true ? 'use INSERT … VALUES through pgveil' : 'use SELECT through pgveil'
    if (stmt.relation !== undefined) {
      const columns = this.#tableColumns(stmt.relation)
      if (columns === undefined) return
      const listed = strings(stmt.attlist)
      const hit = listed.length === 0 ? first(columns) : listed.map((n) => columns.get(n)).find((c) => c !== undefined)
      if (hit === undefined) return
      const refuse = (why: string, instead: string): never => refuseStatement(`COPY ${direction} of encrypted column "${hit.name}" ${why}`, instead, hit)
      if (stmt.filename !== undefined || stmt.is_program === true) refuse('with a server-side file or program is not supported: the data would not pass through pgveil', `use COPY ${direction} ${direction === 'FROM' ? 'STDIN' : 'STDOUT'} (psql: \\copy)`)
      if (stmt.whereClause !== undefined) refuse('with WHERE is not supported', 'copy all rows, or use INSERT … VALUES through pgveil')
      const spec = copyOptions(stmt.options, refuse)
      this.#copySpec = Object.freeze({
        direction: stmt.is_from === true ? 'in' : 'out',
        schema: hit.schema,
        table: hit.table,
        columns: listed.length === 0 ? null : Object.freeze(listed),
        ...spec,
      })
      return
    }
    if (stmt.query !== undefined) {
      const output = this.#queryOutput(stmt.query, undefined)
      const p = firstProtected(output)
      if (p === undefined) return
      const refuse = (why: string, instead: string): never => refuseStatement(`COPY (query) ${direction} of encrypted column "${p.name}" ${why}`, instead, p)
      if (stmt.is_from === true || stmt.filename !== undefined || stmt.is_program === true) refuse('is supported only TO STDOUT', `${advice}, or COPY (query) TO STDOUT (psql: \\copy)`)
      // Each output field must be known to be one protected column or none: a star's
      // columns are in an order pgveil does not know.
      if (output.some((item) => item.kind === 'star' && firstProtected([item]) !== undefined)) refuse('with * is not supported', 'name the columns in the query')
      const spec = copyOptions(stmt.options, refuse)
      this.#copySpec = Object.freeze({
        direction: 'out',
        schema: p.schema,
        table: p.table,
        columns: null,
        output: Object.freeze(output.map((item) => (item.kind === 'column' ? item.column : undefined))),
        ...spec,
      })
    }
  }

  #createTable(rel: RangeVar | undefined, elements: readonly Node[] | undefined, constraints: readonly Node[] | undefined): void {
    const columns = this.#tableColumns(rel)
    if (columns === undefined) return
    const scope = new Scope(undefined)
    scope.entries.push({ name: rel?.relname, schema: rel?.schemaname ?? 'public', columns, known: undefined, opaque: undefined })
    for (const e of elements ?? []) {
      if ('ColumnDef' in e) this.#columnDef(e.ColumnDef.colname, e.ColumnDef.typeName, e.ColumnDef.constraints, e.ColumnDef.raw_default, columns, scope)
      else if ('Constraint' in e) this.#constraint(e.Constraint, columns, scope)
    }
    for (const c of constraints ?? []) if ('Constraint' in c) this.#constraint(c.Constraint, columns, scope)
  }

  #columnDef(name: string | undefined, type: TypeName | undefined, constraints: readonly Node[] | undefined, rawDefault: Node | undefined, columns: ReadonlyMap<string, QualifiedColumn>, scope: Scope): void {
    const column = name === undefined ? undefined : columns.get(name)
    if (column === undefined) {
      for (const c of constraints ?? []) if ('Constraint' in c) this.#constraint(c.Constraint, columns, scope)
      return
    }
    if (type !== undefined && plainTypeName(type) !== 'bytea') {
      refuseColumn(column, `declaring it as ${typeNameText(type)} is not supported`, `declare it bytea: pgveil stores an encrypted envelope and shows ${column.type} to clients`)
    }
    if (rawDefault !== undefined) this.#refuseDefault(column)
    for (const c of constraints ?? []) {
      if (!('Constraint' in c)) continue
      const con = c.Constraint
      if (con.contype === 'CONSTR_DEFAULT' && con.raw_expr !== undefined && !isNullConst(con.raw_expr)) this.#refuseDefault(column)
      if (con.contype === 'CONSTR_CHECK') this.#exprAs(con.raw_expr, scope, USE.constraint)
      if (con.contype === 'CONSTR_UNIQUE' || con.contype === 'CONSTR_PRIMARY' || con.contype === 'CONSTR_FOREIGN' || con.contype === 'CONSTR_EXCLUSION') refuseUse(column, USE.indexColumn)
      if (con.contype === 'CONSTR_GENERATED') refuseColumn(column, 'a generated column is not supported', 'compute the value in the application')
    }
  }

  #refuseDefault(column: QualifiedColumn): never {
    refuseColumn(column, 'a column DEFAULT is not supported: PostgreSQL would store it unencrypted', 'set the value from the application, or use NULL')
  }

  #constraint(con: Constraint, columns: ReadonlyMap<string, QualifiedColumn>, scope: Scope): void {
    if (con.contype === 'CONSTR_CHECK' || con.contype === 'CONSTR_GENERATED') {
      this.#exprAs(con.raw_expr, scope, con.contype === 'CONSTR_CHECK' ? USE.constraint : USE.generated)
      return
    }
    for (const name of [...strings(con.keys), ...strings(con.fk_attrs)]) {
      const c = columns.get(name)
      if (c !== undefined) refuseUse(c, USE.indexColumn)
    }
    for (const ex of con.exclusions ?? []) {
      const elem = 'List' in ex ? ex.List.items?.[0] : undefined
      if (elem !== undefined && 'IndexElem' in elem) this.#indexElem(elem.IndexElem, columns, scope)
    }
    this.#exprAs(con.where_clause, scope, USE.constraint)
  }

  #alterTable(rel: RangeVar | undefined, cmds: readonly Node[] | undefined): void {
    const columns = this.#tableColumns(rel)
    if (columns === undefined) return
    const scope = new Scope(undefined)
    scope.entries.push({ name: rel?.relname, schema: rel?.schemaname ?? 'public', columns, known: undefined, opaque: undefined })
    for (const node of cmds ?? []) {
      if (!('AlterTableCmd' in node)) continue
      const cmd = node.AlterTableCmd
      const column = cmd.name === undefined ? undefined : columns.get(cmd.name)
      const def = cmd.def
      switch (cmd.subtype) {
        case 'AT_AlterColumnType':
          if (column !== undefined) {
            refuseColumn(column, 'changing its type is not supported: it must stay bytea, which holds an encrypted envelope', "change the plaintext type in pgveil's policy instead")
          }
          break
        case 'AT_ColumnDefault':
          if (column !== undefined && def !== undefined && !isNullConst(def)) this.#refuseDefault(column)
          break
        case 'AT_SetExpression':
        case 'AT_AddIdentity':
          if (column !== undefined) refuseColumn(column, 'a generated or identity column is not supported', 'compute the value in the application')
          break
        case 'AT_AddColumn':
          if (def !== undefined && 'ColumnDef' in def) {
            const d = def.ColumnDef
            this.#columnDef(d.colname, d.typeName, d.constraints, d.raw_default, columns, scope)
          }
          break
        case 'AT_AddConstraint':
          if (def !== undefined && 'Constraint' in def) this.#constraint(def.Constraint, columns, scope)
          break
        default:
          break
      }
    }
  }

  #indexElem(elem: IndexElem, columns: ReadonlyMap<string, QualifiedColumn>, scope: Scope): void {
    if (elem.name !== undefined) {
      const c = columns.get(elem.name)
      if (c !== undefined) refuseUse(c, USE.indexColumn)
    }
    if (elem.expr !== undefined && !this.#isSearchSlice(elem.expr, scope)) this.#exprAs(elem.expr, scope, USE.indexColumn)
  }

  /** `substring(col from 13 for 32)` on a searchable column: the approved index form (DESIGN decision 3). */
  #isSearchSlice(node: Node, scope: Scope): boolean {
    if (!('FuncCall' in node)) return false
    const call = node.FuncCall
    const name = funcName(call)
    const args = call.args ?? []
    if ((name !== 'substring' && name !== 'substr') || args.length !== 3) return false
    const [col, from, len] = args
    if (col === undefined || !('ColumnRef' in col)) return false
    const r = resolveColumnRef(scope, fieldNames(col.ColumnRef))
    return (
      r?.kind === 'column' &&
      this.#policy.searchable(r.column) &&
      from !== undefined && 'A_Const' in from && from.A_Const.ival?.ival === ENVELOPE_INDEX_SQL_FROM &&
      len !== undefined && 'A_Const' in len && len.A_Const.ival?.ival === ENVELOPE_INDEX_LENGTH
    )
  }

  // ---- equality search (DESIGN decision 3) ------------------------------------

  /** A bare reference to a protected column, or undefined. */
  #protectedRef(node: Node | undefined, scope: Scope): ProtectedRef | undefined {
    if (node === undefined || !('ColumnRef' in node)) return undefined
    const r = resolveColumnRef(scope, fieldNames(node.ColumnRef))
    // Only a name that is the column for sure: a guess behind an alias list could be another column.
    return r?.kind === 'column' && r.exact === true ? { column: r.column, ref: node.ColumnRef } : undefined
  }

  /** The tokens of a column reference: its byte range and its text as written (`u.email`, `"Email"`). */
  #refExtent(target: ProtectedRef): ByteRange & { readonly text: string } {
    const i = this.#tokens.indexAt(target.ref.location ?? LOCATION_UNKNOWN)
    const n = (target.ref.fields ?? []).length
    const parts: string[] = []
    let start = -1
    let end = -1
    for (let k = 0; k < 2 * n - 1; k++) {
      const t = this.#tokens.at(i < 0 ? -1 : i + k)
      if (t === undefined || (k % 2 === 1 && t.text !== '.')) return refuseColumn(target.column, 'pgveil could not locate a reference to it', 'write the column reference plainly, as column or table.column')
      if (k === 0) start = t.start
      end = t.end
      parts.push(t.text)
    }
    return { start, end, text: parts.join('') }
  }

  /** A subquery's result column compared with the searchable column `column`: it must be a column of its index domain, and becomes its slot. */
  #comparedTarget(value: Node | undefined, scope: Scope, column: QualifiedColumn): void {
    const ref = value === undefined ? undefined : this.#protectedRef(value, scope)
    if (ref === undefined) refuseUse(column, USE.subqueryComparison)
    this.#requireSearchable(ref.column, USE.subqueryComparison)
    this.#requireOneIndexDomain(column, ref.column)
    this.#sliceCompared(ref)
  }

  /** Replace a column reference by its index slot. */
  #slice(target: ProtectedRef): void {
    const ref = this.#refExtent(target)
    this.#rewrites.push({ start: ref.start, end: ref.end, text: indexSliceSql(ref.text) })
  }

  #requireSearchable(column: QualifiedColumn, use: ColumnUse): void {
    if (column.indexDomain === undefined) refuseUse(column, use)
  }

  /** Two searchable columns whose index slots are compared: one index domain and type, or refused naming `column`. */
  #requireOneIndexDomain(column: QualifiedColumn, other: QualifiedColumn): void {
    if (column.indexDomain !== other.indexDomain || column.type !== other.type) {
      refuseColumn(column, `comparing it with column "${other.name}" is not supported: they are in different index domains`, 'give both columns the same index_domain, type and normalize in the policy, or compare in the application')
    }
  }

  /** Index slots compared with each other: exact only under one index key version (checked per session). */
  #sliceCompared(target: ProtectedRef): void {
    this.#slice(target)
    this.#needsOneIndexVersion ??= target.column
  }

  /**
   * `col = v`, `v = col`, `col <> v`, `col [NOT] IN (v, …)`, `col = ANY($n)`,
   * `col <> ALL($n)`, `a.col = b.col`: rewritten to compare index slots. False when
   * no protected column is compared here (the caller walks it as usual, refusing
   * what it must).
   */
  #equalitySearch(e: A_Expr, scope: Scope): boolean {
    const op = strings(e.name).join('.')
    const kind = e.kind ?? 'AEXPR_OP'
    const left = this.#protectedRef(e.lexpr, scope)
    if (kind === 'AEXPR_OP' && (op === '=' || op === '<>' || op === '!=')) {
      const right = this.#protectedRef(e.rexpr, scope)
      const searched = left ?? right
      if (searched === undefined) return false
      const use = USE.operator(op)
      if (left !== undefined && right !== undefined) {
        this.#requireSearchable(left.column, use)
        this.#requireSearchable(right.column, use)
        this.#requireOneIndexDomain(left.column, right.column)
        this.#sliceCompared(left)
        this.#sliceCompared(right)
        return true
      }
      this.#requireSearchable(searched.column, use)
      const valueNode = left !== undefined ? e.rexpr : e.lexpr
      if (valueNode === undefined) return false
      const value = this.#searchValue(valueNode, searched.column, false)
      const ref = this.#refExtent(searched)
      const operator = this.#tokens.at(this.#tokens.indexAt(e.location ?? LOCATION_UNKNOWN))
      if (operator === undefined) refuseColumn(searched.column, 'pgveil could not locate the comparison operator', 'write the comparison as column = value')
      // ANY needs the array on its right: when the value came first, the slot takes its place.
      const [slicePlace, valuePlace] = left !== undefined ? [ref, value.range] : [value.range, ref]
      this.#rewrites.push({ start: slicePlace.start, end: slicePlace.end, text: indexSliceSql(ref.text) })
      this.#rewrites.push({ start: operator.start, end: operator.end, text: op === '=' ? '= ANY' : '<> ALL' })
      this.#searches.push({ start: valuePlace.start, end: valuePlace.end, column: searched.column, prefix: '', values: [value.value] })
      return true
    }
    if (left === undefined) return false
    if (kind === 'AEXPR_IN') {
      this.#requireSearchable(left.column, USE.inList)
      const items = e.rexpr !== undefined && 'List' in e.rexpr ? (e.rexpr.List.items ?? []) : []
      if (items.length === 0) return false
      const values = items.map((item) => this.#searchValue(item, left.column, false))
      const opIndex = this.#tokens.indexAt(e.location ?? LOCATION_UNKNOWN)
      const operator = this.#tokens.at(opIndex)
      const close = this.#tokens.at(this.#tokens.indexFrom(values[values.length - 1]!.range.end))
      if (opIndex < 0 || operator === undefined || close?.text !== ')') refuseColumn(left.column, 'pgveil could not locate the IN list', 'write it as column IN (value, …)')
      this.#slice(left)
      this.#searches.push({ start: operator.start, end: close.end, column: left.column, prefix: op === '=' ? '= ANY ' : '<> ALL ', values: values.map((v) => v.value) })
      return true
    }
    if (kind === 'AEXPR_OP_ANY' || kind === 'AEXPR_OP_ALL') {
      const all = kind === 'AEXPR_OP_ALL'
      // `= ALL` and `<> ANY` are not membership tests: with one index per key version they would not be exact.
      if (!(all ? op === '<>' || op === '!=' : op === '=')) return false
      this.#requireSearchable(left.column, USE.quantified(op, all ? 'ALL' : 'ANY'))
      if (e.rexpr === undefined) return false
      const value = this.#searchValue(e.rexpr, left.column, true)
      this.#slice(left)
      this.#searches.push({ start: value.range.start, end: value.range.end, column: left.column, prefix: '', values: [value.value] })
      return true
    }
    return false
  }

  /** What a searchable column is compared with: a literal or parameter (an array parameter for ANY), optionally cast to its type. */
  #searchValue(node: Node, column: QualifiedColumn, array: boolean): { value: SearchValue; range: ByteRange } {
    const refuse = (): never =>
      refuseColumn(
        column,
        `comparing it with ${describeValue(node)} is not supported`,
        array ? 'compare with an array parameter, as in column = ANY($1), or with IN (…)' : 'compare with a parameter or a literal; compute the value in the application',
      )
    if ('A_Const' in node && !array) {
      const value = constValue(node.A_Const)
      const range = this.#tokens.constantRange(node.A_Const.location ?? LOCATION_UNKNOWN)
      if (value === undefined || range === undefined) return refuse()
      return { value: { kind: 'literal', value }, range }
    }
    if ('ParamRef' in node) {
      const n = node.ParamRef.number ?? 0
      const token = this.#tokens.at(this.#tokens.indexAt(node.ParamRef.location ?? LOCATION_UNKNOWN))
      if (token === undefined) return refuse()
      const previous = this.#searchParams.get(n)
      if (previous !== undefined && (previous.column !== column || previous.array !== array)) {
        refuseColumn(column, `parameter $${n} is also searched ${previous.column === column ? 'as another kind of value' : `in column "${previous.column.name}"`}`, 'use one parameter per search')
      }
      this.#searchParams.set(n, { column, array })
      return { value: { kind: 'param', n, array }, range: { start: token.start, end: token.end } }
    }
    if ('TypeCast' in node && node.TypeCast.arg !== undefined && (array ? castsToArrayOf(node.TypeCast.typeName, column) : castsToPlaintextType(node.TypeCast.typeName, column))) {
      const cast = node.TypeCast
      const inner = this.#searchValue(cast.arg!, column, array)
      const removals = this.#tokens.castRemovals(cast.location ?? LOCATION_UNKNOWN, cast.typeName?.location ?? LOCATION_UNKNOWN, inner.range)
      if (removals === undefined) return refuse()
      let { start, end } = inner.range
      for (const r of removals) {
        start = Math.min(start, r.start)
        end = Math.max(end, r.end)
      }
      if (array) {
        // `::text[]`: the brackets follow the type name the removal ends at.
        const i = this.#tokens.indexFrom(end)
        if (this.#tokens.at(i)?.text === '[' && this.#tokens.at(i + 1)?.text === ']') end = this.#tokens.at(i + 1)!.end
      }
      return { value: inner.value, range: { start, end } }
    }
    return refuse()
  }

  #index(rel: RangeVar | undefined, params: readonly Node[] | undefined, where: Node | undefined): void {
    const columns = this.#tableColumns(rel)
    if (columns === undefined) return
    const scope = new Scope(undefined)
    scope.entries.push({ name: rel?.relname, schema: rel?.schemaname ?? 'public', columns, known: undefined, opaque: undefined })
    for (const p of params ?? []) if ('IndexElem' in p) this.#indexElem(p.IndexElem, columns, scope)
    this.#expr(where, scope, USE.condition('an index WHERE'))
  }

  #rename(stmt: { renameType?: string; relation?: RangeVar; subname?: string }): void {
    const columns = this.#tableColumns(stmt.relation)
    if (columns === undefined) return
    const column = stmt.renameType === 'OBJECT_COLUMN' ? (stmt.subname === undefined ? undefined : columns.get(stmt.subname)) : stmt.renameType === 'OBJECT_TABLE' ? first(columns) : undefined
    if (column !== undefined) {
      refuseStatement(
        `renaming ${stmt.renameType === 'OBJECT_COLUMN' ? 'encrypted column' : 'the table of encrypted column'} "${column.name}" is not supported by pgveil`,
        'ciphertexts are bound to schema.table.column: decrypt, rename, update the policy, and re-encrypt with pgveil migrate',
        column,
      )
    }
  }

  /** The first protected column of any protected table the subtree names. */
  #findProtectedTable(node: unknown): QualifiedColumn | undefined {
    return firstRelation(node, (relation) => {
      const columns = this.#tableColumns(relation as RangeVar)
      return columns === undefined ? undefined : first(columns)
    })
  }

  // ---- expressions -----------------------------------------------------------

  /** Walk an expression in which no protected column may appear; `use` names the construct. */
  #expr(node: Node | undefined, scope: Scope, use: ColumnUse): void {
    if (node === undefined) return
    if ('ColumnRef' in node) {
      const r = resolveColumnRef(scope, fieldNames(node.ColumnRef))
      if (r === undefined) return
      if (r.kind === 'column') refuseUse(r.column, use)
      if (r.kind === 'wholeRow') refuseUse(r.column, USE.wholeRow(r.ref))
      const p = r.opaque ?? first(r.columns)
      if (p !== undefined) refuseUse(p, USE.wholeRow(fieldNames(node.ColumnRef).join('.')))
      return
    }
    if ('ParamRef' in node) {
      this.#plainParams.add(node.ParamRef.number ?? 0)
      return
    }
    if ('A_Const' in node || 'SetToDefault' in node || 'SQLValueFunction' in node || 'CurrentOfExpr' in node || 'A_Star' in node || 'String' in node || 'Integer' in node) return
    if ('TypeCast' in node) return this.#expr(node.TypeCast.arg, scope, USE.cast(typeNameText(node.TypeCast.typeName)))
    if ('A_Expr' in node) return this.#aExpr(node.A_Expr, scope)
    if ('BoolExpr' in node) {
      for (const a of node.BoolExpr.args ?? []) this.#expr(a, scope, use)
      return
    }
    if ('NullTest' in node) {
      const arg = node.NullTest.arg
      // IS [NOT] NULL is exact on ciphertexts: NULL stays NULL.
      if (arg !== undefined && 'ColumnRef' in arg) {
        const r = resolveColumnRef(scope, fieldNames(arg.ColumnRef))
        if (r?.kind === 'wholeRow') refuseUse(r.column, USE.wholeRow(r.ref))
        return
      }
      return this.#expr(arg, scope, use)
    }
    if ('BooleanTest' in node) return this.#expr(node.BooleanTest.arg, scope, USE.booleanTest)
    if ('FuncCall' in node) return this.#funcCall(node.FuncCall, scope)
    if ('SubLink' in node) return this.#subLink(node.SubLink, scope)
    if ('CaseExpr' in node) {
      const c = node.CaseExpr
      this.#expr(c.arg, scope, USE.caseExpr)
      for (const w of c.args ?? []) {
        if ('CaseWhen' in w) {
          this.#expr(w.CaseWhen.expr, scope, USE.caseExpr)
          this.#expr(w.CaseWhen.result, scope, USE.caseExpr)
        }
      }
      return this.#expr(c.defresult, scope, USE.caseExpr)
    }
    if ('CoalesceExpr' in node) return this.#list(node.CoalesceExpr.args, scope, USE.conditional('COALESCE'))
    if ('MinMaxExpr' in node) return this.#list(node.MinMaxExpr.args, scope, USE.conditional(node.MinMaxExpr.op === 'IS_LEAST' ? 'LEAST' : 'GREATEST'))
    if ('RowExpr' in node) return this.#list(node.RowExpr.args, scope, USE.rowOrArray('ROW(…)'))
    if ('A_ArrayExpr' in node) return this.#list(node.A_ArrayExpr.elements, scope, USE.rowOrArray('ARRAY[…]'))
    if ('A_Indirection' in node) {
      this.#expr(node.A_Indirection.arg, scope, USE.subscript)
      for (const i of node.A_Indirection.indirection ?? []) {
        if ('A_Indices' in i) {
          this.#expr(i.A_Indices.lidx, scope, USE.subscript)
          this.#expr(i.A_Indices.uidx, scope, USE.subscript)
        }
      }
      return
    }
    if ('CollateClause' in node) return this.#expr(node.CollateClause.arg, scope, USE.collate)
    if ('NamedArgExpr' in node) return this.#expr(node.NamedArgExpr.arg, scope, use)
    if ('GroupingFunc' in node) return this.#list(node.GroupingFunc.args, scope, USE.func('GROUPING'))
    if ('List' in node) return this.#list(node.List.items, scope, use)
    if ('SortBy' in node) return this.#expr(node.SortBy.node, scope, use)
    if ('ResTarget' in node) return this.#expr(node.ResTarget.val, scope, use)
    if ('MultiAssignRef' in node) return this.#expr(node.MultiAssignRef.source, scope, use)
    if ('SelectStmt' in node) {
      const p = firstProtected(this.#select(node.SelectStmt, scope))
      if (p !== undefined) refuseUse(p, use)
      return
    }
    this.#generic(node, scope, USE.expression(Object.keys(node)[0] ?? 'unknown'))
  }

  #list(nodes: readonly Node[] | undefined, scope: Scope, use: ColumnUse): void {
    for (const n of nodes ?? []) this.#expr(n, scope, use)
  }

  /** Like `#expr`, but any protected column inside is refused as `use` (index keys, constraints, policies). */
  #exprAs(node: Node | undefined, scope: Scope, use: ColumnUse): void {
    try {
      this.#expr(node, scope, use)
    } catch (error) {
      if (error instanceof Refusal && error.plan.column !== undefined) refuseUse(error.plan.column, use)
      throw error
    }
  }

  #aExpr(e: A_Expr, scope: Scope): void {
    if (!this.#ddl && this.#equalitySearch(e, scope)) return
    const op = strings(e.name).join('.') || '?'
    let use: ColumnUse
    switch (e.kind) {
      case 'AEXPR_OP_ANY':
        use = USE.quantified(op, 'ANY')
        break
      case 'AEXPR_OP_ALL':
        use = USE.quantified(op, 'ALL')
        break
      case 'AEXPR_DISTINCT':
      case 'AEXPR_NOT_DISTINCT':
        use = USE.distinctFrom
        break
      case 'AEXPR_NULLIF':
        use = USE.conditional('NULLIF')
        break
      case 'AEXPR_IN':
        use = USE.inList
        break
      case 'AEXPR_LIKE':
        use = USE.pattern(op.startsWith('!') ? 'NOT LIKE' : 'LIKE')
        break
      case 'AEXPR_ILIKE':
        use = USE.pattern(op.startsWith('!') ? 'NOT ILIKE' : 'ILIKE')
        break
      case 'AEXPR_SIMILAR':
        use = USE.pattern('SIMILAR TO')
        break
      case 'AEXPR_BETWEEN':
      case 'AEXPR_NOT_BETWEEN':
      case 'AEXPR_BETWEEN_SYM':
      case 'AEXPR_NOT_BETWEEN_SYM':
        use = USE.between
        break
      default:
        use = USE.operator(op)
    }
    this.#expr(e.lexpr, scope, use)
    this.#expr(e.rexpr, scope, use)
  }

  #funcCall(call: FuncCall, scope: Scope): void {
    const name = funcName(call)
    if (name === 'set_config') {
      const [setting, value] = call.args ?? []
      const s = setting !== undefined && 'A_Const' in setting ? constValue(setting.A_Const) : undefined
      const v = value !== undefined && 'A_Const' in value ? constValue(value.A_Const) : undefined
      if (s === undefined || s === null || v === undefined || v === null) {
        refuseStatement('set_config() with a computed setting name or value is not supported by pgveil (it must check search_path, client_encoding and standard_conforming_strings)', 'pass constants, or use SET')
      }
      this.#setting(s, [v])
    }
    const counted = name === 'count' && call.args?.length === 1 && (call.agg_order?.length ?? 0) === 0 ? this.#protectedRef(call.args[0], scope) : undefined
    if (counted !== undefined && call.agg_distinct !== true) {
      // count(col) counts values that are not NULL, and a ciphertext is NULL exactly when its plaintext is.
      this.#expr(call.agg_filter, scope, USE.aggregateFilter)
      if (call.over !== undefined) this.#window(call.over, scope)
      return
    }
    if (counted !== undefined && counted.column.indexDomain !== undefined && !this.#ddl) {
      // count(DISTINCT col) counts distinct index slots: one per distinct value.
      this.#sliceCompared(counted)
      this.#expr(call.agg_filter, scope, USE.aggregateFilter)
      if (call.over !== undefined) this.#window(call.over, scope)
      return
    }
    const isAggregate = AGGREGATES.has(name) || call.agg_star === true || call.agg_distinct === true || (call.agg_order?.length ?? 0) > 0 || call.agg_filter !== undefined
    const use = isAggregate ? USE.aggregate(name) : USE.func(name)
    this.#list(call.args, scope, use)
    for (const o of call.agg_order ?? []) this.#expr(o, scope, USE.aggregateOrder)
    this.#expr(call.agg_filter, scope, USE.aggregateFilter)
    if (call.over !== undefined) this.#window(call.over, scope)
  }

  #subLink(link: SubLink, scope: Scope): void {
    const kind = link.subLinkType
    if (this.#sliceSubqueryComparison(link, scope)) return
    if (kind === 'ANY_SUBLINK' || kind === 'ALL_SUBLINK' || kind === 'ROWCOMPARE_SUBLINK') this.#expr(link.testexpr, scope, USE.subqueryComparison)
    const out = link.subselect === undefined ? [] : this.#queryOutput(link.subselect, scope)
    if (kind === 'EXISTS_SUBLINK') return
    const p = firstProtected(out)
    if (p !== undefined) refuseUse(p, kind === 'EXPR_SUBLINK' || kind === 'ARRAY_SUBLINK' || kind === 'MULTIEXPR_SUBLINK' ? USE.subqueryValue : USE.subqueryComparison)
  }

  /**
   * `col IN (SELECT other …)`, `col = ANY (SELECT other …)`, `col <> ALL (SELECT other …)`
   * for searchable columns of one index domain: both become index slots, as in a join.
   * False when the sublink is not of that form (the caller walks it as usual).
   */
  #sliceSubqueryComparison(link: SubLink, scope: Scope): boolean {
    const kind = link.subLinkType
    const op = strings(link.operName).join('.')
    if (!((kind === 'ANY_SUBLINK' && (op === '=' || op === '')) || (kind === 'ALL_SUBLINK' && (op === '<>' || op === '!=')))) return false
    const tested = this.#protectedRef(link.testexpr, scope)
    if (tested === undefined || tested.column.indexDomain === undefined || link.subselect === undefined || !('SelectStmt' in link.subselect)) return false
    const select = link.subselect.SelectStmt
    if ((select.op !== undefined && select.op !== 'SETOP_NONE') || select.valuesLists !== undefined || select.targetList?.length !== 1) return false
    this.#select(select, scope, undefined, tested.column)
    this.#sliceCompared(tested)
    return true
  }

  /** Fallback for node types without a rule: any protected column inside is refused. */
  #generic(value: unknown, scope: Scope, use: ColumnUse): void {
    if (Array.isArray(value)) {
      for (const v of value) this.#generic(v, scope, use)
      return
    }
    if (value === null || typeof value !== 'object') return
    const record = value as Record<string, unknown>
    const keys = Object.keys(record)
    const key = keys[0]
    if (keys.length === 1 && key !== undefined && /^[A-Z]/.test(key) && key !== 'A_Const') {
      const inner = record[key]
      if (key === 'ColumnRef' || key === 'ParamRef' || key === 'SubLink' || key === 'SelectStmt' || key === 'FuncCall' || key === 'TypeCast' || key === 'A_Expr') {
        this.#expr(value as Node, scope, use)
        return
      }
      this.#generic(inner, scope, use)
      return
    }
    for (const v of Object.values(record)) this.#generic(v, scope, use)
  }
}

/** A bare reference to a protected column in an expression. */
interface ProtectedRef {
  readonly column: QualifiedColumn
  readonly ref: ColumnRef
}

/** The index slot of a column reference as written (`substring(u.email from 13 for 32)`). */

/** Whether a cast to `t` is a cast to an array of exactly the column's plaintext type (`$1::text[]`). */
function castsToArrayOf(t: TypeName | undefined, column: QualifiedColumn): boolean {
  if (t === undefined || (t.arrayBounds?.length ?? 0) !== 1) return false
  const { arrayBounds: _bounds, ...element } = t
  return castsToPlaintextType(element, column)
}

/** A column a value is written to, and how to name it in messages. */
interface WriteTarget {
  readonly column: QualifiedColumn | undefined
  readonly label: string
}

/** 1-based position and length of the envelope's search slice (policy/envelope.ts). */

type CopyFormat = Pick<CopySpec, 'format' | 'delimiter' | 'nullString' | 'header' | 'quote' | 'escape'>

/** COPY's WITH options, as PostgreSQL reads them; anything that changes the data format beyond these is refused. */
function copyOptions(options: readonly Node[] | undefined, refuse: (why: string, instead: string) => never): CopyFormat {
  let format: 'text' | 'csv' = 'text'
  const given = new Map<string, string | boolean>()
  for (const option of options ?? []) {
    if (!('DefElem' in option)) continue
    const name = option.DefElem.defname ?? ''
    const arg = option.DefElem.arg
    const value = arg === undefined ? true : 'String' in arg ? (arg.String.sval ?? '') : 'Boolean' in arg ? arg.Boolean.boolval === true : 'Integer' in arg ? String(arg.Integer.ival ?? 0) : undefined
    if (value === undefined) refuse(`with option ${name} is not supported`, 'use the default text or CSV options')
    given.set(name, value as string | boolean)
  }
  for (const [name, value] of given) {
    if (name === 'format') {
      if (value === 'text' || value === 'csv') format = value
      else refuse(`in ${String(value)} format is not supported`, 'use FORMAT text or FORMAT csv')
    } else if (!['delimiter', 'null', 'header', 'quote', 'escape', 'freeze', 'encoding'].includes(name)) {
      refuse(`with option ${name} is not supported`, 'use FORMAT, DELIMITER, NULL, HEADER, QUOTE and ESCAPE only')
    }
  }
  const encoding = given.get('encoding')
  if (encoding !== undefined && !/^utf-?8$/i.test(String(encoding))) refuse(`with ENCODING ${String(encoding)} is not supported`, 'use UTF8')
  const single = (name: string, fallback: string): string => {
    const value = given.get(name)
    if (value === undefined) return fallback
    if (typeof value !== 'string' || Buffer.byteLength(value) !== 1) refuse(`with a ${name} that is not one single-byte character is not supported`, `use a one-byte ${name}`)
    return value as string
  }
  const delimiter = single('delimiter', format === 'csv' ? ',' : '\t')
  const quote = single('quote', '"')
  const header = given.get('header')
  const nullValue = given.get('null')
  return {
    format,
    delimiter,
    nullString: typeof nullValue === 'string' ? nullValue : format === 'csv' ? '' : '\\N',
    header: header === true || header === 'true' || header === 'on' || header === '1' || header === 'match',
    quote,
    escape: single('escape', quote),
  }
}

function first(columns: ReadonlyMap<string, QualifiedColumn>): QualifiedColumn | undefined {
  for (const c of columns.values()) return c
  return undefined
}

function isNullConst(node: Node): boolean {
  return 'A_Const' in node && node.A_Const.isnull === true
}

function isPlainValues(sel: SelectStmt): boolean {
  return sel.valuesLists !== undefined && (sel.op === undefined || sel.op === 'SETOP_NONE') && sel.sortClause === undefined && sel.limitCount === undefined && sel.limitOffset === undefined
}

function isSimpleSelect(sel: SelectStmt): boolean {
  return (
    (sel.op === undefined || sel.op === 'SETOP_NONE') &&
    sel.valuesLists === undefined &&
    sel.distinctClause === undefined &&
    sel.groupClause === undefined &&
    sel.havingClause === undefined &&
    sel.windowClause === undefined &&
    sel.sortClause === undefined
  )
}

function renameOutput(output: Output, colnames: readonly string[]): Output {
  if (output.some((o) => o.kind === 'star')) {
    const p = firstProtected(output)
    return p === undefined ? output : [{ kind: 'star', columns: NO_COLUMNS, opaque: p }]
  }
  return output.map((o, i) => (o.kind === 'column' ? { ...o, name: colnames[i] ?? o.name } : o))
}

/** The schema names of a search_path value: comma-separated, double quotes removed. */
export function searchPathSchemas(value: string): string[] {
  return value.split(',').map((name) => name.trim().replace(/^"(.*)"$/, '$1'))
}
