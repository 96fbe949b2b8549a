/**
 * What `pgveil check` learns from the stored envelopes of each protected column:
 * how many rows each key version (and index key version) still encrypts, whether
 * the policy still fits the data (key binding, type, index domain, normalisation,
 * judged on a sample of rows), and which expression index a searchable column
 * needs. Refuses, as problems, a keyring that dropped a version still in use and
 * a policy edit that no longer matches existing data.
 */
import type pg from 'pg'
import { DecryptionError } from '../policy/errors.js'
import { envelopeIndex, indexSliceSql, openValue } from '../policy/envelope.js'
import { indexMac } from '../policy/equality-index.js'
import type { Keyring } from '../policy/keyring.js'
import type { ColumnPolicy, Policy } from '../policy/policy.js'
import { TYPE_CODECS, type PolicyType } from '../protocol/types.js'
import { quoteIdent } from './catalog.js'

/** Rows of one column per key version and index key version (0: no index slot). */
export interface KeyVersionUsage {
  readonly keyVersion: number
  readonly indexVersion: number
  readonly rows: number
}

export interface ColumnDataReport {
  readonly column: ColumnPolicy
  readonly usage: readonly KeyVersionUsage[]
  /** What is fine, for people. */
  readonly lines: string[]
  /** What must be fixed, each with its fix. */
  readonly problems: string[]
}

/** Rows read per column to judge whether the policy still fits the data. */
const SAMPLE_ROWS = 20


function tableSql(column: ColumnPolicy): string {
  return `${quoteIdent(column.schema)}.${quoteIdent(column.table)}`
}

/** The name `pgveil check` suggests for a column's search index. */
export function searchIndexName(column: ColumnPolicy): string {
  return `${column.table}_${column.column}_search`.slice(0, 63)
}

/** The DDL of the expression index on a searchable column's index slot (UNIQUE for `unique: true`). */
export function searchIndexDdl(column: ColumnPolicy): string {
  return `CREATE ${column.unique === true ? 'UNIQUE ' : ''}INDEX ${quoteIdent(searchIndexName(column))} ON ${tableSql(column)} ((${indexSliceSql(quoteIdent(column.column))}));`
}

/** Rows per (key version, index key version) of a column: the uint32s at envelope offsets 4 and 8. */
export async function keyVersionUsage(client: pg.Client, column: ColumnPolicy): Promise<KeyVersionUsage[]> {
  const c = quoteIdent(column.column)
  const result = await client.query<{ key_version: string; index_version: string; rows: string }>(
    `SELECT ('x' || encode(substring(${c} from 5 for 4), 'hex'))::bit(32)::bigint AS key_version,
            CASE WHEN length(${c}) >= 44 AND get_byte(${c}, 3) & 1 = 1 THEN ('x' || encode(substring(${c} from 9 for 4), 'hex'))::bit(32)::bigint ELSE 0 END AS index_version,
            count(*) AS rows
       FROM ${tableSql(column)} WHERE ${c} IS NOT NULL AND length(${c}) >= 8 GROUP BY 1, 2 ORDER BY 1, 2`,
  )
  return result.rows.map((r) => ({ keyVersion: Number(r.key_version), indexVersion: Number(r.index_version), rows: Number(r.rows) }))
}

function sum(usage: readonly KeyVersionUsage[], by: (u: KeyVersionUsage) => number): Map<number, number> {
  const out = new Map<number, number>()
  for (const u of usage) out.set(by(u), (out.get(by(u)) ?? 0) + u.rows)
  return out
}

function describeCounts(counts: Map<number, number>, label: string): string {
  return [...counts].map(([version, rows]) => `${rows} row${rows === 1 ? '' : 's'} under ${label} ${version}`).join(', ')
}

/** Checks one protected column's stored data against the policy and the keyring. */
export async function checkColumnData(client: pg.Client, column: ColumnPolicy, keyring: Keyring): Promise<ColumnDataReport> {
  const lines: string[] = []
  const problems: string[] = []
  const name = column.qualified
  const usage = await keyVersionUsage(client, column)
  const byKey = sum(usage, (u) => u.keyVersion)
  const total = [...byKey.values()].reduce((a, b) => a + b, 0)
  lines.push(`column ${name}: ${total === 0 ? 'no encrypted rows' : describeCounts(byKey, 'key version')}`)
  for (const [version, rows] of byKey) {
    if (!keyring.has(version)) {
      problems.push(`column ${name}: ${rows} row${rows === 1 ? '' : 's'} still encrypted under key version ${version}, which keys.versions no longer holds\n  fix: put key version ${version} back in keys.versions; remove it only after pgveil migrate has re-encrypted those rows`)
    }
  }
  if (column.search === 'equality') {
    const byIndex = sum(usage, (u) => u.indexVersion)
    const unindexed = byIndex.get(0) ?? 0
    byIndex.delete(0)
    if (byIndex.size > 0) lines.push(`column ${name}: index values: ${describeCounts(byIndex, 'index key version')}`)
    for (const [version, rows] of byIndex) {
      if (!keyring.hasIndexVersion(version)) {
        problems.push(`column ${name}: ${rows} row${rows === 1 ? '' : 's'} indexed under index key version ${version}, which keys.index no longer holds: equality search would not find them\n  fix: put index key version ${version} back in keys.index; remove it only after pgveil migrate --reindex`)
      }
    }
    if (unindexed > 0) {
      problems.push(`column ${name}: ${unindexed} row${unindexed === 1 ? ' has' : 's have'} no index value (written before search: equality was declared): equality search does not find them\n  fix: run pgveil migrate --reindex`)
    }
  }
  problems.push(...(await checkSample(client, column, keyring)))
  return { column, usage, lines, problems }
}

/**
 * Opens a sample of stored values: a value that no longer opens under the
 * column's binding, no longer parses as the declared type, or whose index value
 * no longer matches the index domain and normalisation, means the policy was
 * edited under existing data.
 */
async function checkSample(client: pg.Client, column: ColumnPolicy, keyring: Keyring): Promise<string[]> {
  const c = quoteIdent(column.column)
  const sample = await client.query<{ value: Buffer }>(`SELECT ${c} AS value FROM ${tableSql(column)} WHERE ${c} IS NOT NULL LIMIT ${SAMPLE_ROWS}`)
  const codec = TYPE_CODECS[column.type as PolicyType]
  const name = column.qualified
  for (const { value } of sample.rows) {
    let plaintext: string
    try {
      plaintext = openValue(keyring, column.binding, value).toString('utf8')
    } catch (error) {
      if (error instanceof DecryptionError && /does not hold/.test(error.detail)) continue // reported by key version above
      return [`column ${name}: stored values do not open under this policy (${error instanceof DecryptionError ? error.detail : (error as Error).message})\n  fix: revert the edit of its key domain (domain:) or name; ciphertexts are bound to the column or domain they were written for`]
    }
    let canonical: string | undefined
    try {
      canonical = codec.canonicalFromText(plaintext)
    } catch {
      canonical = undefined
    }
    if (canonical !== plaintext) {
      return [`column ${name}: stored values are not ${column.type} values (a stored value does not read back as ${column.type}); the policy's type was changed while data exists\n  fix: revert type: to what the data was written as, or migrate the data`]
    }
    const index = column.search === 'equality' ? envelopeIndex(value) : undefined
    if (index !== undefined && keyring.hasIndexVersion(index.version) && !indexMac(keyring, index.version, column, plaintext).equals(index.mac)) {
      return [`column ${name}: stored index values were made for another index domain or normalisation; the policy's index_domain, domain or normalize was changed while data exists\n  fix: revert the edit, or run pgveil migrate --reindex after it`]
    }
  }
  return []
}

/** Index definitions on a table, to tell whether a column's slot is indexed (and uniquely). */
async function slotIndexes(client: pg.Client, column: ColumnPolicy): Promise<{ unique: boolean }[]> {
  const result = await client.query<{ indexdef: string; unique: boolean }>(
    `SELECT pg_get_indexdef(i.indexrelid) AS indexdef, i.indisunique AS unique
       FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = $1 AND t.relname = $2 AND i.indpred IS NULL`,
    [column.schema, column.table],
  )
  const pattern = new RegExp(`\\("?substring"?\\((?:"?${column.column.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"?), 13, 32\\)\\)`)
  return result.rows.filter((r) => pattern.test(r.indexdef)).map((r) => ({ unique: r.unique }))
}

/**
 * The search-index lines of a searchable column: present, or the DDL to run. A
 * missing UNIQUE index for `unique: true` is a problem; a missing plain index
 * only makes lookups scan.
 */
export async function checkSearchIndex(client: pg.Client, column: ColumnPolicy): Promise<{ lines: string[]; problems: string[] }> {
  if (column.search !== 'equality') return { lines: [], problems: [] }
  const found = await slotIndexes(client, column)
  const ddl = searchIndexDdl(column)
  if (column.unique === true) {
    if (found.some((f) => f.unique)) return { lines: [`column ${column.qualified}: unique index on its index slot: present`], problems: [] }
    return { lines: [], problems: [`column ${column.qualified}: unique: true, but no UNIQUE index on its index slot\n  fix: ${ddl}`] }
  }
  if (found.length > 0) return { lines: [`column ${column.qualified}: index on its index slot: present`], problems: [] }
  return { lines: [`column ${column.qualified}: no index on its index slot; equality lookups scan the table. To index them:\n  ${ddl}`], problems: [] }
}

/** Every protected column's data and search index; skips columns the catalog check found broken. */
export async function checkEncryptedData(client: pg.Client, policy: Policy, keyring: Keyring, broken: ReadonlySet<string>): Promise<{ lines: string[]; problems: string[] }> {
  const lines: string[] = []
  const problems: string[] = []
  for (const column of policy.columns) {
    if (broken.has(column.qualified)) continue
    const report = await checkColumnData(client, column, keyring)
    lines.push(...report.lines)
    problems.push(...report.problems)
    const index = await checkSearchIndex(client, column)
    lines.push(...index.lines)
    problems.push(...index.problems)
  }
  return { lines, problems }
}
