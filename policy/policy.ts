/**
 * The column policy: which columns of which tables pgveil protects, and as what
 * plaintext type. Built once from the validated `tables:` section; lookups are by
 * PostgreSQL's folded names (unqualified table names mean `public`).
 */

export interface ColumnPolicy {
  schema: string
  table: string
  column: string
  /** "schema.table.column": the name a ciphertext is bound to. */
  qualified: string
  /** The declared plaintext type, as written in the policy (e.g. "text", "integer"). */
  type: string
  /**
   * What a ciphertext of this column is bound to (key derivation and associated
   * data): "schema.table.column", or "domain:NAME" for columns that share a key
   * domain, between which ciphertexts may be copied.
   */
  binding: string
  /** The key domain, when the policy names one. */
  domain?: string
  /** `equality`: the envelope carries an index slot, so `=`, `IN`, joins and UNIQUE work (DESIGN decision 3). */
  search?: 'equality'
  /** Applied, in this order, to the canonical plaintext before it is indexed (never to the stored value). */
  normalize?: readonly IndexNormalization[]
  /** Searchable columns only: `pgveil check` asks for a UNIQUE expression index. */
  unique?: boolean
  /**
   * Searchable columns only: what the index key is derived for. Columns with the
   * same index domain (and type and normalisation) can be joined with `=`.
   * `index_domain` in the policy, else the key domain, else the qualified name.
   */
  indexDomain?: string
}

/** A normalisation of the indexed form: `lowercase` for case-insensitive text, `trim` for surrounding white space. */
export type IndexNormalization = 'lowercase' | 'trim'
export const INDEX_NORMALIZATIONS: readonly IndexNormalization[] = ['lowercase', 'trim']

export class Policy {
  private readonly byTable = new Map<string, Map<string, ColumnPolicy>>()
  private readonly byQualified = new Map<string, ColumnPolicy>()
  readonly columns: readonly ColumnPolicy[]

  constructor(columns: readonly ColumnPolicy[]) {
    this.columns = columns
    for (const column of columns) {
      this.byQualified.set(column.qualified, column)
      const key = tableKey(column.schema, column.table)
      let table = this.byTable.get(key)
      if (table === undefined) this.byTable.set(key, (table = new Map()))
      table.set(column.column, column)
    }
  }

  /** Protected columns of a table, or undefined when it has none. */
  table(schema: string, name: string): ReadonlyMap<string, ColumnPolicy> | undefined {
    return this.byTable.get(tableKey(schema, name))
  }

  /** A protected column by its qualified name "schema.table.column". */
  column(qualified: string): ColumnPolicy | undefined {
    return this.byQualified.get(qualified)
  }

  /** Every protected table (the SQL analyzer's ProtectedColumns interface). */
  tables(): { schema: string; name: string }[] {
    return this.protectedTables().map(([schema, name]) => ({ schema, name }))
  }

  /** Every protected table as [schema, table]. */
  protectedTables(): [string, string][] {
    const seen = new Map<string, [string, string]>()
    for (const column of this.columns) seen.set(tableKey(column.schema, column.table), [column.schema, column.table])
    return [...seen.values()]
  }

  get isEmpty(): boolean {
    return this.columns.length === 0
  }
}

function tableKey(schema: string, table: string): string {
  return `${schema}\u0000${table}`
}

/**
 * Splits a policy table name: "users" → public.users, "billing.accounts" → billing.accounts.
 * Names are taken as written (the policy uses PostgreSQL's folded, lower-case names).
 */
export function splitTableName(name: string): { schema: string; table: string } {
  const dot = name.indexOf('.')
  return dot < 0 ? { schema: 'public', table: name } : { schema: name.slice(0, dot), table: name.slice(dot + 1) }
}
