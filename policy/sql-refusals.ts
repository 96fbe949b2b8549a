/**
 * The refusal catalogue of the SQL analyzer (DESIGN decision 7, fail closed):
 * every message names the protected column (or table) and says what to do
 * instead. Kept in one place so the wording stays consistent and reviewable.
 */
import { PGVEIL_REFUSED, type QualifiedColumn, type RefusePlan } from './sql-plan.js'

/**
 * How a protected value is used where pgveil cannot make it correct. The message
 * reads `column "s.t.c" is encrypted by pgveil; ${what} is not supported on it (${advice})`.
 */
export interface ColumnUse {
  readonly what: string
  readonly advice: string
  /** False when `what` already says "it": the message then ends `is not supported (…)`. */
  readonly onIt?: false
}

/** Thrown inside the analyzer to abandon a statement; becomes its plan. */
export class Refusal extends Error {
  readonly plan: RefusePlan
  constructor(plan: RefusePlan) {
    super(plan.message)
    this.name = 'Refusal'
    this.plan = plan
  }
}

function plan(message: string, hint: string, column: QualifiedColumn | undefined): RefusePlan {
  return column === undefined
    ? { action: 'refuse', sqlState: PGVEIL_REFUSED, message, hint }
    : { action: 'refuse', sqlState: PGVEIL_REFUSED, message, hint, column }
}

function sentence(advice: string): string {
  return `${advice.charAt(0).toUpperCase()}${advice.slice(1)}.`
}

/** Refuse a use of a protected column described by `use`. */
export function refuseUse(column: QualifiedColumn, use: ColumnUse): never {
  throw new Refusal(
    plan(`column "${column.name}" is encrypted by pgveil; ${use.what} is not supported${use.onIt === false ? '' : ' on it'} (${use.advice})`, sentence(use.advice), column),
  )
}

/** Refuse with a message of its own; `detail` follows `column "…" is encrypted by pgveil; `. */
export function refuseColumn(column: QualifiedColumn, detail: string, advice: string): never {
  throw new Refusal(plan(`column "${column.name}" is encrypted by pgveil; ${detail} (${advice})`, sentence(advice), column))
}

/** Refuse a statement that concerns a whole table (or no single column). */
export function refuseStatement(message: string, advice: string, column?: QualifiedColumn): never {
  throw new Refusal(plan(`${message} (${advice})`, sentence(advice), column))
}

const IN_APP = 'do it in the application after reading the value through pgveil'
const EQUALITY_LATER = 'declare the column searchable (search: equality) and compare with =, <>, IN or = ANY, or filter in the application'

const COMPARISON_OPERATORS = new Set(['=', '<>', '!=', '<', '>', '<=', '>='])

/** The ways a protected value can be used that pgveil refuses, by SQL construct. */
export const USE = {
  condition: (clause: string): ColumnUse => ({ what: `using it as a condition in ${clause}`, advice: EQUALITY_LATER, onIt: false }),
  operator: (op: string): ColumnUse =>
    COMPARISON_OPERATORS.has(op)
      ? { what: `comparison (${op})`, advice: op === '=' || op === '<>' || op === '!=' ? EQUALITY_LATER : 'ranges need an order index, which pgveil does not offer; filter in the application' }
      : op === '||'
        ? { what: 'the || operator', advice: 'concatenate in the application' }
        : { what: `the ${op} operator`, advice: IN_APP },
  quantified: (op: string, kind: 'ANY' | 'ALL'): ColumnUse => ({ what: `comparison (${op} ${kind})`, advice: EQUALITY_LATER }),
  pattern: (kind: string): ColumnUse => ({ what: kind, advice: 'pattern matching needs the plaintext; compare with = on a searchable column (search: equality), or filter in the application' }),
  inList: { what: 'IN (…)', advice: EQUALITY_LATER } satisfies ColumnUse,
  between: { what: 'BETWEEN', advice: 'ranges need an order index, which pgveil does not offer; filter in the application' } satisfies ColumnUse,
  distinctFrom: { what: 'IS [NOT] DISTINCT FROM', advice: EQUALITY_LATER } satisfies ColumnUse,
  booleanTest: { what: 'IS TRUE/FALSE/UNKNOWN', advice: EQUALITY_LATER } satisfies ColumnUse,
  func: (name: string): ColumnUse => ({ what: `function ${name}()`, advice: IN_APP }),
  aggregate: (name: string): ColumnUse => ({ what: `aggregate ${name}()`, advice: 'aggregate in the application; equal values have different ciphertexts' }),
  aggregateFilter: { what: 'an aggregate FILTER (WHERE …)', advice: EQUALITY_LATER } satisfies ColumnUse,
  aggregateOrder: { what: 'ORDER BY inside an aggregate', advice: 'sort in the application' } satisfies ColumnUse,
  cast: (type: string): ColumnUse => ({ what: `a cast to ${type}`, advice: 'cast in the application; PostgreSQL only holds its ciphertext' }),
  caseExpr: { what: 'CASE', advice: IN_APP } satisfies ColumnUse,
  conditional: (name: string): ColumnUse => ({ what: name, advice: IN_APP }),
  rowOrArray: (form: string): ColumnUse => ({ what: form, advice: 'select the column on its own' }),
  collate: { what: 'COLLATE', advice: 'sort and compare in the application' } satisfies ColumnUse,
  subscript: { what: 'subscripting or field selection', advice: IN_APP } satisfies ColumnUse,
  orderBy: { what: 'ORDER BY', advice: 'sort in the application; ciphertext order is random' } satisfies ColumnUse,
  groupBy: { what: 'GROUP BY', advice: 'equal values have different ciphertexts; declare the column searchable (search: equality) to group by its index, or group in the application' } satisfies ColumnUse,
  distinct: { what: 'DISTINCT', advice: 'equal values have different ciphertexts; declare the column searchable (search: equality) and name the columns, or deduplicate in the application' } satisfies ColumnUse,
  distinctOn: { what: 'DISTINCT ON', advice: 'deduplicate in the application; equal values have different ciphertexts' } satisfies ColumnUse,
  windowPartition: { what: 'window PARTITION BY', advice: 'partition in the application; equal values have different ciphertexts' } satisfies ColumnUse,
  windowOrder: { what: 'window ORDER BY', advice: 'sort in the application; ciphertext order is random' } satisfies ColumnUse,
  joinUsing: { what: 'JOIN … USING', advice: 'join on another column, or compare with = once the column is declared searchable' } satisfies ColumnUse,
  naturalJoin: { what: 'NATURAL JOIN', advice: 'it would join on same-named columns; name the join columns with JOIN … ON' } satisfies ColumnUse,
  subqueryComparison: { what: 'comparison with a subquery (IN/ANY/ALL (SELECT …))', advice: EQUALITY_LATER } satisfies ColumnUse,
  subqueryValue: { what: 'returning it through a scalar or ARRAY subquery', advice: 'the result could not be decrypted; select the column directly, or use a join', onIt: false } satisfies ColumnUse,
  setOperation: (op: string): ColumnUse => ({ what: op, advice: 'its result could not be decrypted, and equal values have different ciphertexts; run the queries separately and combine the rows in the application' }),
  limit: { what: 'LIMIT/OFFSET', advice: IN_APP } satisfies ColumnUse,
  wholeRow: (ref: string): ColumnUse => ({ what: `a whole-row reference (${ref}) that includes it`, advice: 'name the columns you need', onIt: false }),
  expression: (kind: string): ColumnUse => ({ what: `this expression (${kind})`, advice: IN_APP }),
  onConflictTarget: { what: 'ON CONFLICT (…)', advice: 'declare the column searchable (search: equality, unique: true) and create the unique index pgveil check prints, or use another conflict target' } satisfies ColumnUse,
  indexColumn: {
    what: 'an index or key',
    advice: 'it would index ciphertext, whose equality and order say nothing about the values; declare the column searchable (search: equality) and index its search slice: substring(column from 13 for 32)',
  } satisfies ColumnUse,
  constraint: { what: 'a CHECK constraint', advice: 'PostgreSQL only holds its ciphertext; validate the value in the application' } satisfies ColumnUse,
  generated: { what: 'a generated column computed from it', advice: 'PostgreSQL only holds its ciphertext; compute the value in the application', onIt: false } satisfies ColumnUse,
  policyExpression: { what: 'a row-level security expression', advice: 'PostgreSQL only holds its ciphertext; use another column in the policy' } satisfies ColumnUse,
} as const
