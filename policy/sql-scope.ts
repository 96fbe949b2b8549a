/**
 * Name resolution for the SQL analyzer: which FROM entries a column reference can
 * mean, and whether it may be a protected column. Conservative by design (fail
 * closed): a name is protected unless it is proven to belong to something else.
 */
import type { QualifiedColumn } from './sql-plan.js'

/** One FROM entry as seen by column references: a table, a CTE, a subquery, a join alias. */
export interface RangeEntry {
  /** The name that qualifies its columns: the alias, else the relation or CTE name. */
  readonly name: string | undefined
  /** The schema of an unaliased relation, so `schema.table.column` resolves. */
  readonly schema: string | undefined
  /** Its protected columns by the name it exposes them under. */
  readonly columns: ReadonlyMap<string, QualifiedColumn>
  /** Every column name it exposes, when known exactly (never for tables). */
  readonly known: ReadonlySet<string> | undefined
  /** Set when any of its columns may be this protected column (renamed by an alias list). */
  readonly opaque: QualifiedColumn | undefined
}

/** One output column of a query (target list or RETURNING). */
export type OutputItem =
  | { readonly kind: 'column'; readonly name: string | undefined; readonly column: QualifiedColumn | undefined }
  | { readonly kind: 'star'; readonly columns: ReadonlyMap<string, QualifiedColumn>; readonly opaque: QualifiedColumn | undefined }

export type Output = readonly OutputItem[]

export const NO_COLUMNS: ReadonlyMap<string, QualifiedColumn> = new Map()

/** One query level: its FROM entries, the CTEs it defines, the level around it. */
export class Scope {
  readonly entries: RangeEntry[] = []
  readonly parent: Scope | undefined
  readonly ctes: Map<string, Output> | undefined

  constructor(parent: Scope | undefined, ctes?: Map<string, Output>) {
    this.parent = parent
    this.ctes = ctes
  }

  /** The CTE named `name` visible from this level, innermost first. */
  cte(name: string): Output | undefined {
    return this.ctes?.get(name) ?? this.parent?.cte(name)
  }
}

export type Resolved =
  /** `exact`: the name is that column for sure (not a guess behind an alias list or an unplaceable name). */
  | { readonly kind: 'column'; readonly column: QualifiedColumn; readonly exact?: true }
  | { readonly kind: 'wholeRow'; readonly column: QualifiedColumn; readonly ref: string }
  | { readonly kind: 'star'; readonly columns: ReadonlyMap<string, QualifiedColumn>; readonly opaque: QualifiedColumn | undefined }

function firstOf(entry: RangeEntry): QualifiedColumn | undefined {
  if (entry.opaque !== undefined) return entry.opaque
  for (const c of entry.columns.values()) return c
  return undefined
}

function lookup(entry: RangeEntry, column: string): QualifiedColumn | undefined {
  return entry.columns.get(column) ?? entry.opaque
}

/** Entries qualified by `rel` (and `schema` when given), at the innermost level that has any. */
function qualified(scope: Scope, schema: string | undefined, rel: string): RangeEntry[] | undefined {
  for (let s: Scope | undefined = scope; s !== undefined; s = s.parent) {
    const matches = s.entries.filter((e) => e.name === rel && (schema === undefined || e.schema === schema))
    if (matches.length > 0) return matches
  }
  return undefined
}

/** Any entry, at any level, exposing a protected column of that name: the fallback for references PostgreSQL would reject or we cannot place. */
function anyByName(scope: Scope, column: string): QualifiedColumn | undefined {
  for (let s: Scope | undefined = scope; s !== undefined; s = s.parent) {
    for (const e of s.entries) {
      const c = lookup(e, column)
      if (c !== undefined) return c
    }
  }
  return undefined
}

function mergeStar(entries: readonly RangeEntry[]): Resolved | undefined {
  let columns: Map<string, QualifiedColumn> | undefined
  let opaque: QualifiedColumn | undefined
  for (const e of entries) {
    opaque ??= e.opaque
    for (const [name, c] of e.columns) (columns ??= new Map()).set(name, c)
  }
  return columns === undefined && opaque === undefined ? undefined : { kind: 'star', columns: columns ?? NO_COLUMNS, opaque }
}

/**
 * What a column reference (its fields, `*` for a star) may denote, when that may
 * be protected; undefined when it is proven not to be.
 */
export function resolveColumnRef(scope: Scope, fields: readonly string[]): Resolved | undefined {
  const last = fields[fields.length - 1]
  if (last === undefined) return undefined
  if (fields.length === 1) {
    if (last === '*') return mergeStar(scope.entries)
    for (let s: Scope | undefined = scope; s !== undefined; s = s.parent) {
      let proven = false
      for (const e of s.entries) {
        const c = lookup(e, last)
        if (c !== undefined) return e.columns.get(last) === c ? { kind: 'column', column: c, exact: true } : { kind: 'column', column: c }
        if (e.known?.has(last) === true) proven = true
      }
      // A known, unprotected column of this level is what PostgreSQL picks.
      if (proven) return undefined
      for (const e of s.entries) {
        const first = e.name === last ? firstOf(e) : undefined
        if (first !== undefined) return { kind: 'wholeRow', column: first, ref: last }
      }
    }
    return undefined
  }
  // rel.col, schema.rel.col, catalog.schema.rel.col
  const rel = fields[fields.length - 2] as string
  const schema = fields.length >= 3 ? fields[fields.length - 3] : undefined
  const entries = qualified(scope, schema, rel)
  if (entries === undefined) {
    if (last === '*') return undefined
    const c = anyByName(scope, last)
    return c === undefined ? undefined : { kind: 'column', column: c }
  }
  if (last === '*') return mergeStar(entries)
  for (const e of entries) {
    const c = lookup(e, last)
    if (c !== undefined) return e.columns.get(last) === c ? { kind: 'column', column: c, exact: true } : { kind: 'column', column: c }
  }
  return undefined
}

/** The first protected column an output may carry. */
export function firstProtected(output: Output): QualifiedColumn | undefined {
  for (const item of output) {
    if (item.kind === 'column') {
      if (item.column !== undefined) return item.column
    } else {
      if (item.opaque !== undefined) return item.opaque
      for (const c of item.columns.values()) return c
    }
  }
  return undefined
}

/** The FROM entry a query's output makes (a CTE or a subquery in FROM), renamed by `colnames` when given. */
export function entryFromOutput(name: string | undefined, output: Output, colnames: readonly string[] | undefined): RangeEntry {
  const columns = new Map<string, QualifiedColumn>()
  let known: Set<string> | undefined = new Set()
  let opaque: QualifiedColumn | undefined
  const hasStar = output.some((item) => item.kind === 'star')
  if (hasStar && colnames !== undefined && colnames.length > 0) {
    // Positions behind a star are unknown: any renamed column may be a protected one.
    opaque = firstProtected(output)
  }
  output.forEach((item, i) => {
    if (item.kind === 'star') {
      known = undefined
      opaque ??= item.opaque
      for (const [n, c] of item.columns) columns.set(n, c)
      return
    }
    const exposed = (hasStar ? undefined : colnames?.[i]) ?? item.name
    if (exposed === undefined) known = undefined
    else {
      known?.add(exposed)
      if (item.column !== undefined) columns.set(exposed, item.column)
    }
  })
  return { name, schema: undefined, columns, known, opaque }
}
