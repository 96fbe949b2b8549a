/**
 * What the SQL analyzer tells the proxy about one statement: forward it as is,
 * rewrite it (encrypt these parameters, splice out these literals), or refuse it.
 * Plain data, no behaviour, so plans can be cached and shared.
 */

/**
 * SQLSTATE of every statement pgveil refuses to forward. Class `PV` is pgveil's
 * own: the SQL standard leaves classes starting with 5-9 and I-Z to
 * implementations, and PostgreSQL itself uses only `P0` (PL/pgSQL) among the `P`
 * classes. Clients and logs can so tell a pgveil refusal from a PostgreSQL error
 * at a glance. Fail-closed: a refused statement never reaches PostgreSQL.
 */
export const PGVEIL_REFUSED = 'PV001'

/** One protected column, as the policy names it. Instances are shared: compare with `===`. */
export interface QualifiedColumn {
  readonly schema: string
  readonly table: string
  readonly column: string
  /** The plaintext type declared in the policy, spelled canonically (`integer` for `int4`, `timestamptz`, …). */
  readonly type: string
  /** What its equality index is keyed for, when the column is searchable (`search: equality`). */
  readonly indexDomain?: string
  /** `schema.table.column`: the name in messages. */
  readonly name: string
  /** What its ciphertexts are bound to: `name`, or `domain:NAME` for a shared key domain. */
  readonly binding: string
}

/** A half-open range `[start, end)` of UTF-8 byte offsets into the whole SQL text. */
export interface ByteRange {
  readonly start: number
  readonly end: number
}

/**
 * A literal written to a protected column. `start`/`end` cover the literal's
 * tokens exactly (a leading `-` of a negative number, a `UESCAPE '…'` clause of a
 * `U&'…'` string included). The proxy replaces that range with an encrypted
 * `'\x…'::bytea` literal (see `literalReplacements`).
 */
export interface LiteralSlot extends ByteRange {
  readonly column: QualifiedColumn
  /**
   * The literal's value as PostgreSQL reads it: quotes and escapes decoded
   * (`E'…'`, `$$…$$`, `''`, `U&'…'`), numbers as written (`-2.50`), booleans as
   * `true`/`false`. `null` for the `NULL` keyword, which needs no encryption
   * (splice it as `NULL`, or leave it).
   */
  readonly value: string | null
}

/**
 * Forward the statement unchanged: it writes no protected value and no result
 * column can be protected (it may still name a protected table, e.g.
 * `SELECT id FROM users WHERE email IS NULL`).
 */
export interface PassthroughPlan {
  readonly action: 'passthrough'
}

/**
 * A COPY between the client and a table with protected columns, in text or CSV
 * format: the proxy encrypts (FROM STDIN) or decrypts (TO STDOUT) those fields of
 * every row as it streams through.
 */
export interface CopySpec {
  readonly direction: 'in' | 'out'
  readonly schema: string
  readonly table: string
  /** Columns as listed in the statement; null means all columns in table order. */
  readonly columns: readonly string[] | null
  /**
   * `COPY (query) TO STDOUT`: the protected column behind each output field, by
   * position, as the analyzer resolved the query's output (`schema`/`table` then name
   * the first one, for messages). Absent for a table COPY.
   */
  readonly output?: readonly (QualifiedColumn | undefined)[]
  readonly format: 'text' | 'csv'
  /** One byte. */
  readonly delimiter: string
  readonly nullString: string
  readonly header: boolean
  /** CSV only; one byte each. */
  readonly quote: string
  readonly escape: string
}

/** A value an equality search compares a searchable column with. */
export type SearchValue =
  /** `$n`: at Bind, its plaintext becomes the `bytea[]` of its index values; `array` when `$n` is an array (`= ANY($n)`). */
  | { readonly kind: 'param'; readonly n: number; readonly array: boolean }
  /** A literal as PostgreSQL reads it; `null` for NULL. */
  | { readonly kind: 'literal'; readonly value: string | null }

/**
 * Where an equality search puts the index values it compares with: the range is
 * replaced by `prefix` and a parenthesised `bytea[]` expression holding every
 * value's index values (one per index key version held), e.g.
 * `(ARRAY[($1::bytea[])[1]])`, `(ARRAY['\x…'::bytea, '\x…'::bytea])` or, for an
 * array parameter, `($1::bytea[])` (see `searchArraySql`). The column side and the operator are
 * rewritten by `rewrites` (`substring(col from 13 for 32) = ANY`).
 */
export interface SearchSlot extends ByteRange {
  readonly column: QualifiedColumn
  readonly prefix: string
  readonly values: readonly SearchValue[]
}

/** A parameter that carries a searched value: encrypted into index values at Bind, typed `bytea[]` in Parse. */
export interface SearchParam {
  readonly column: QualifiedColumn
  /** The client sends an array of values (`col = ANY($n)`). */
  readonly array: boolean
}

export interface RewritePlan {
  readonly action: 'rewrite'
  /** Set for COPY FROM STDIN / TO STDOUT of a table with protected columns. */
  readonly copy?: CopySpec
  /** Parameters (1-based `$n`) to encrypt at Bind, and for which column. */
  readonly params: ReadonlyMap<number, QualifiedColumn>
  /** Literals to replace by encrypted literals, in text order. */
  readonly literals: readonly LiteralSlot[]
  /**
   * Byte ranges to delete (splice with `''`): casts of a written value to exactly
   * its column's plaintext type (`::text`, the `CAST(` and ` AS text)` around the
   * value, the `text ` of `text 'x'`). The stored value is `bytea`, so the cast
   * must go; the plaintext type is enforced by the proxy's type codec instead.
   * Parameter casts are listed here too, so a Parse with `$1::integer` must be
   * rewritten even though it carries no literal.
   */
  readonly castRemovals: readonly ByteRange[]
  /**
   * True when a result column (target list or RETURNING, `*` included) may be a
   * protected column: the proxy must map RowDescription through the catalog.
   */
  readonly resultColumnsMayBeProtected: boolean
  /**
   * Ciphertexts the statement copies from one protected column into another of the
   * same key domain (INSERT … SELECT, UPDATE … SET a = b) inside PostgreSQL: reading
   * `from` and writing `to` without pgveil seeing a value, so access rules must allow both.
   */
  readonly copies?: readonly ProtectedCopy[]
  /** Fixed edits (splice `text` over the range): a searchable column becomes its index slot, `=` becomes `= ANY`. */
  readonly rewrites: readonly SqlReplacement[]
  /** Equality searches whose index values are filled in per session (literals) or at Bind (parameters). */
  readonly searches: readonly SearchSlot[]
  /** `$n` → the searchable column its value is looked up in. */
  readonly searchParams: ReadonlyMap<number, SearchParam>
  /**
   * Set when the statement compares index slots with each other (a join, GROUP BY,
   * DISTINCT, count(DISTINCT …), ON CONFLICT): exact only while one index key
   * version is held, since one value has a different index under each version.
   */
  readonly needsOneIndexVersion?: QualifiedColumn
  /**
   * CREATE MATERIALIZED VIEW whose result holds a protected column: PostgreSQL
   * reports it as `SELECT n`, not as DDL, so the session reads its catalog again
   * after it to read through the new view at once.
   */
  readonly createsMaterializedView?: true
}

export interface ProtectedCopy {
  readonly from: QualifiedColumn
  readonly to: QualifiedColumn
}

export interface RefusePlan {
  readonly action: 'refuse'
  /** Always `PGVEIL_REFUSED`. */
  readonly sqlState: string
  /** Names the column (or table) and what is not supported, with the fix in parentheses. */
  readonly message: string
  /** What to do instead, as a sentence (ErrorResponse `H` field). */
  readonly hint: string
  /** The protected column concerned, when there is one. */
  readonly column?: QualifiedColumn
}

export type StatementPlan = PassthroughPlan | RewritePlan | RefusePlan

/** A statement's plan and its byte range (semicolon excluded) in the SQL text. */
export type AnalyzedStatement = StatementPlan & ByteRange

export interface SqlAnalysis {
  /** `refuse` when any statement is refused, else `rewrite` when any needs it, else `passthrough`. */
  readonly action: StatementPlan['action']
  /**
   * One entry per statement, in order. When the pre-check proves that no
   * protected table is named at all, the text is not split: one passthrough entry
   * spans it whole. An unparseable text is one entry too.
   */
  readonly statements: readonly AnalyzedStatement[]
  /** The first refused statement, when `action` is `refuse`. */
  readonly refusal?: RefusePlan & ByteRange
}

/** A byte range of the SQL text and what to put there (see `spliceLiterals`). */
export interface SqlReplacement extends ByteRange {
  readonly text: string
}
