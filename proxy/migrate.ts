/**
 * `pgveil migrate`: brings the stored data of every protected column in line with
 * the configuration, with pgveil's own upstream credentials.
 *
 * Two kinds of work, per column:
 * - re-encryption: envelopes sealed under a key version other than `keys.current`
 *   are opened and sealed again under the current one (the rewrite mode decides
 *   which envelopes are pending and how they are rewritten, see
 *   policy/envelope-rewrite.ts; `--reindex` will be another mode);
 * - conversion: a protected column that is not yet `bytea` still holds plaintext.
 *   It is converted by expand / backfill / contract:
 *     1. expand (one short transaction under an ACCESS EXCLUSIVE lock, metadata only):
 *        the plaintext column is renamed to `<col>__pgveil_plain` (its NOT NULL and
 *        DEFAULT dropped), a new `bytea` column takes the name, and a trigger keeps
 *        concurrent writers consistent: writing the column through pgveil (an
 *        envelope) clears the row's plaintext, the plaintext column cannot be given
 *        new values, non-envelope values are refused, and NOT NULL is enforced
 *        across both columns. From here writes through pgveil succeed;
 *     2. a partial index on the rows still holding plaintext (CONCURRENTLY);
 *     3. backfill: batches of rows are locked, their plaintext read, canonicalised
 *        as the policy type, sealed and written, and the plaintext cleared, in one
 *        UPDATE per batch and one transaction per batch;
 *     4. contract (a short locked transaction): the trigger and the plaintext column
 *        (with its indexes and constraints) are dropped and NOT NULL restored.
 *
 * Every state is derivable from the database itself (the envelope's key version,
 * which of the two columns holds a row's value, the objects that exist), so a run
 * that is killed at any point is resumed by running it again, and a finished run
 * does nothing the second time. Batches are one transaction each: a row is old or
 * new, never half. One migration per database runs at a time (advisory lock).
 */
import { createHash } from 'node:crypto'
import type pg from 'pg'
import { DecryptionError } from '../policy/errors.js'
import { REENCRYPT_MODE, sealCanonical, type EnvelopeRewriteMode } from '../policy/envelope-rewrite.js'
import { sealColumnValue } from '../policy/equality-index.js'
import type { Keyring } from '../policy/keyring.js'
import type { ColumnPolicy, Policy } from '../policy/policy.js'
import { ENVELOPE_FORMAT_VERSION, ENVELOPE_KEY_VERSION_OFFSET, ENVELOPE_MAGIC } from '../policy/envelope.js'
import { TYPE_CODECS, TypeOid, type PolicyType, type SessionFormat } from '../protocol/types.js'
import { quoteIdent } from './catalog.js'

/** Suffix of the column that keeps a converted column's plaintext until the backfill is done. */
export const PLAINTEXT_SUFFIX = '__pgveil_plain'
const MAX_IDENTIFIER_BYTES = 63
/** The migration's session prints and parses datetimes this way (matches the type layer's canonical input). */
const MIGRATION_FORMAT: SessionFormat = { timeZone: 'UTC', dateStyle: 'ISO, MDY', integerDatetimes: true }
/** Key of the advisory lock that keeps two migrations of one database apart. */
const ADVISORY_LOCK_SQL = `hashtext('pgveil migrate')`
const LOCK_ATTEMPTS = 5
const ENVELOPE_PREFIX_HEX = Buffer.from([...ENVELOPE_MAGIC, ENVELOPE_FORMAT_VERSION]).toString('hex')

export interface MigrateOptions {
  /** Rows per batch (one transaction each). */
  batchSize: number
  /** How long each DDL transaction waits for its table lock before retrying. */
  lockTimeoutMs: number
  /** What re-encryption does to envelopes (reencrypt today; reindex later). */
  mode?: EnvelopeRewriteMode
  /** Receives progress lines (stderr in the CLI). */
  progress?: (line: string) => void
  /** Clock for progress rate and throttling (tests). */
  now?: () => number
}

/** Thrown for a migration that cannot go on; the message names the column and the fix. */
export class MigrationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'MigrationError'
  }
}

// ---------------------------------------------------------------------------
// What the database holds

type ColumnState =
  /** Table or column does not exist: nothing to migrate. */
  | 'missing'
  /** bytea: only re-encryption applies. */
  | 'bytea'
  /** Not bytea yet: to be converted. */
  | 'plaintext'
  /** Conversion started (the plaintext column exists next to the bytea one). */
  | 'converting'

interface TableKey {
  /** Primary-key columns with their types, or null: the table is walked by ctid. */
  columns: { name: string; type: string }[] | null
}

interface ColumnNames {
  table: string
  column: string
  plain: string
  trigger: string
  func: string
  pendingIndex: string
  notNullCheck: string
}

/** Everything migrate learned about one protected column, and what it would do. */
export interface ColumnPlan {
  column: ColumnPolicy
  state: ColumnState
  /** Rows whose plaintext is still to be encrypted. */
  plaintextRows: number
  /** Envelopes the rewrite mode would change, by stored key version. */
  pendingByVersion: Map<number, number>
  /** Values in the column that are not envelopes (cannot be re-encrypted). */
  notEnvelopes: number
  /** What will be done, in order (DDL as it will run). */
  steps: string[]
  /** Consequences worth knowing. */
  notes: string[]
  /** Why it cannot be migrated (nothing is done to the column while there are any). */
  blockers: string[]
  /** @internal for the run */
  detail: ColumnDetail | null
}

interface ColumnDetail {
  names: ColumnNames
  key: TableKey
  tableOid: number
  notNull: boolean
  defaultExpr: string | null
  ddl: ConversionDdl
}

interface ConversionDdl {
  expand: string[]
  pendingIndex: string
  notNullCheck: string[]
  contract: string[]
}

export interface ColumnOutcome {
  column: string
  /** Values written by this run (plaintext encrypted plus envelopes re-encrypted). */
  migrated: number
  /** Values still not in their final form (plaintext, other key versions, unreadable). */
  left: number
  encrypted: number
  reencrypted: number
  /** Stored values that do not open (not an envelope, or a key version the keyring lacks). */
  unreadable: number
  error?: string
}


function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`
}

function namesOf(column: ColumnPolicy): ColumnNames {
  const hash = createHash('sha256').update(column.qualified).digest('hex').slice(0, 12)
  const base = `pgveil_migrate_${hash}`
  return {
    table: `${quoteIdent(column.schema)}.${quoteIdent(column.table)}`,
    column: column.column,
    plain: `${column.column}${PLAINTEXT_SUFFIX}`,
    trigger: base,
    func: `${quoteIdent(column.schema)}.${quoteIdent(base)}`,
    pendingIndex: `${base}_pending`,
    notNullCheck: `${base}_not_null`,
  }
}

interface AttributeRow {
  table_oid: string
  attnum: number | null
  type_oid: string | null
  type_name: string | null
  not_null: boolean | null
  default_expr: string | null
  generated: string | null
  identity: string | null
  plain_attnum: number | null
  plain_comment: string | null
}

const ATTRIBUTE_SQL = `
SELECT c.oid::int8 AS table_oid, a.attnum, a.atttypid::int8 AS type_oid, format_type(a.atttypid, a.atttypmod) AS type_name,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default_expr, a.attgenerated::text AS generated, a.attidentity::text AS identity,
       p.attnum AS plain_attnum, col_description(c.oid, p.attnum) AS plain_comment
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN pg_catalog.pg_attribute p ON p.attrelid = c.oid AND p.attname = $4 AND p.attnum > 0 AND NOT p.attisdropped
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`

const PRIMARY_KEY_SQL = `
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = $1 AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)`

/** Objects that depend on a column, with what kind they are. */
const DEPENDENTS_SQL = `
SELECT d.classid::regclass::text AS catalog, pg_describe_object(d.classid, d.objid, d.objsubid) AS object,
       (SELECT contype::text FROM pg_catalog.pg_constraint WHERE oid = d.objid AND d.classid = 'pg_catalog.pg_constraint'::regclass) AS contype,
       (SELECT adnum FROM pg_catalog.pg_attrdef WHERE oid = d.objid AND d.classid = 'pg_catalog.pg_attrdef'::regclass) AS adnum
FROM pg_catalog.pg_depend d
WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = $1 AND d.refobjsubid = $2 AND d.deptype IN ('n', 'a')
ORDER BY 2`

/** Reads the state of one protected column and plans its migration; changes nothing. */
export async function planColumn(client: pg.Client, column: ColumnPolicy, keyring: Keyring, mode: EnvelopeRewriteMode = REENCRYPT_MODE, options: { batchSize?: number; lockTimeoutMs?: number } = {}): Promise<ColumnPlan> {
  mode = mode.forColumn?.(column) ?? mode
  const names = namesOf(column)
  const plan: ColumnPlan = { column, state: 'missing', plaintextRows: 0, pendingByVersion: new Map(), notEnvelopes: 0, steps: [], notes: [], blockers: [], detail: null }
  const { rows } = await client.query<AttributeRow>(ATTRIBUTE_SQL, [column.schema, column.table, column.column, names.plain])
  const row = rows[0]
  if (row === undefined) {
    plan.notes.push(`table "${column.schema}.${column.table}" does not exist: nothing to migrate`)
    return plan
  }
  if (row.attnum === null) {
    plan.notes.push(`column "${column.qualified}" does not exist: nothing to migrate`)
    return plan
  }
  const tableOid = Number(row.table_oid)
  const isBytea = Number(row.type_oid) === TypeOid.bytea
  if (isBytea) plan.state = row.plain_attnum === null ? 'bytea' : 'converting'
  else plan.state = 'plaintext'

  const key = await tableKey(client, tableOid, column.column)
  const walk = key.columns === null ? 'by ctid (the table has no primary key)' : `by primary key (${key.columns.map((c) => c.name).join(', ')})`
  const batch = options.batchSize ?? 1000
  const marker = plan.state === 'converting' ? parseMarker(row.plain_comment) : null
  const notNull = plan.state === 'plaintext' ? row.not_null === true : (marker?.notNull ?? false)
  const defaultExpr = plan.state === 'plaintext' ? row.default_expr : null
  const ddl = conversionDdl(names, notNull)
  plan.detail = { names, key, tableOid, notNull, defaultExpr, ddl }

  if (plan.state === 'plaintext') {
    if (row.plain_attnum !== null) plan.blockers.push(`column "${names.plain}" already exists in "${column.schema}.${column.table}" while "${column.column}" is not bytea: rename or drop it (pgveil migrate keeps the plaintext there while converting)`)
    if (Buffer.byteLength(names.plain, 'utf8') > MAX_IDENTIFIER_BYTES) plan.blockers.push(`column name "${column.column}" is too long to add the suffix "${PLAINTEXT_SUFFIX}" (${MAX_IDENTIFIER_BYTES} bytes at most): rename it first`)
    if (row.generated !== null && row.generated !== '') plan.blockers.push(`column "${column.qualified}" is a generated column: an encrypted column cannot be computed by PostgreSQL`)
    if (row.identity !== null && row.identity !== '') plan.blockers.push(`column "${column.qualified}" is an identity column: drop the identity first`)
    if (key.columns?.some((c) => c.name === column.column) === true) plan.blockers.push(`column "${column.qualified}" is part of the primary key: an encrypted value cannot be a key`)
    const dropped: string[] = []
    const { rows: dependents } = await client.query<{ catalog: string; object: string; contype: string | null; adnum: number | null }>(DEPENDENTS_SQL, [tableOid, row.attnum])
    for (const d of dependents) {
      if (d.catalog === 'pg_attrdef' && d.adnum === row.attnum) continue
      if (d.catalog === 'pg_class' || d.catalog === 'pg_statistic_ext' || (d.catalog === 'pg_constraint' && d.contype !== null && 'cux'.includes(d.contype))) dropped.push(d.object)
      else if (d.catalog === 'pg_constraint' && d.contype === 'f') plan.blockers.push(`${d.object} uses column "${column.qualified}": drop the foreign key first (encrypted values cannot be compared)`)
      else plan.blockers.push(`${d.object} depends on column "${column.qualified}": drop it first, recreate it afterwards without reading the column`)
    }
    plan.plaintextRows = await count(client, `SELECT count(*) FROM ${names.table} WHERE ${quoteIdent(column.column)} IS NOT NULL`)
    plan.steps.push(
      `expand, in one transaction locking ${names.table} (ACCESS EXCLUSIVE, lock_timeout ${(options.lockTimeoutMs ?? 5000) / 1000}s, metadata only):\n${ddl.expand.map((s) => `    ${s}`).join('\n')}`,
      `index the rows still holding plaintext:\n    ${ddl.pendingIndex}`,
      `encrypt ${plaintextCountText(plan.plaintextRows)} as ${column.type} in batches of ${batch}, one transaction each, walking ${walk}`,
    )
    if (notNull) plan.steps.push(`check NOT NULL without blocking writers:\n${ddl.notNullCheck.map((s) => `    ${s}`).join('\n')}`)
    plan.steps.push(`contract, in one transaction locking ${names.table}:\n${ddl.contract.map((s) => `    ${s}`).join('\n')}`)
    if (defaultExpr !== null) plan.notes.push(`DEFAULT ${defaultExpr} is not kept: an encrypted column cannot have a default computed by PostgreSQL (the application must supply the value)`)
    for (const object of dropped) plan.notes.push(`${object} on the plaintext is dropped with it (lookups on an encrypted column need search: equality)`)
    plan.notes.push(`column "${column.column}" moves to the end of the table's column order (SELECT *, COPY without a column list)`)
    plan.notes.push(`while the backfill runs, writes of "${column.column}" through pgveil are encrypted as usual; rows not yet encrypted read as NULL in "${column.column}" (their value is in "${names.plain}")`)
  } else if (plan.state === 'converting') {
    plan.plaintextRows = await count(client, `SELECT count(*) FROM ${names.table} WHERE ${quoteIdent(names.plain)} IS NOT NULL`)
    plan.steps.push(
      `resume the conversion started earlier: ensure the index on rows still holding plaintext:\n    ${ddl.pendingIndex}`,
      `encrypt ${plaintextCountText(plan.plaintextRows)} from "${names.plain}" as ${column.type} in batches of ${batch}, walking ${walk}`,
    )
    if (notNull) plan.steps.push(`check NOT NULL without blocking writers:\n${ddl.notNullCheck.map((s) => `    ${s}`).join('\n')}`)
    plan.steps.push(`contract, in one transaction locking ${names.table}:\n${ddl.contract.map((s) => `    ${s}`).join('\n')}`)
  }

  if (plan.state === 'bytea' || plan.state === 'converting') {
    const slice = mode.currentSlice(keyring)
    const { rows: versions } = await client.query<{ version: Buffer | null; prefix: Buffer | null; n: string }>(
      `SELECT substring(${quoteIdent(column.column)} from ${ENVELOPE_KEY_VERSION_OFFSET + 1} for 4) AS version, substring(${quoteIdent(column.column)} from 1 for 3) AS prefix, count(*) AS n
       FROM ${names.table} WHERE ${quoteIdent(column.column)} IS NOT NULL AND substring(${quoteIdent(column.column)} from ${slice.from} for ${slice.bytes.length}) <> $1 GROUP BY 1, 2`,
      [slice.bytes],
    )
    for (const v of versions) {
      if (v.prefix === null || v.prefix.toString('hex') !== ENVELOPE_PREFIX_HEX || v.version === null || v.version.length !== 4) plan.notEnvelopes += Number(v.n)
      else {
        const version = v.version.readUInt32BE(0)
        plan.pendingByVersion.set(version, (plan.pendingByVersion.get(version) ?? 0) + Number(v.n))
      }
    }
    const pending = [...plan.pendingByVersion.values()].reduce((a, b) => a + b, 0)
    if (pending > 0) {
      const byVersion = [...plan.pendingByVersion].sort(([a], [b]) => a - b).map(([v, n]) => `${n} under key version ${v}`).join(', ')
      plan.steps.push(`${mode.verb} ${pending} ${pending === 1 ? 'value' : 'values'} (${byVersion}) to key version ${keyring.current} in batches of ${batch}, walking ${walk}`)
      const missing = [...plan.pendingByVersion.keys()].filter((v) => !keyring.has(v))
      if (missing.length > 0) plan.notes.push(`key ${missing.length === 1 ? 'version' : 'versions'} ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in keys.versions: those values cannot be opened and stay as they are (add the key to keys.versions)`)
    }
    if (plan.notEnvelopes > 0) plan.notes.push(`${plan.notEnvelopes} ${plan.notEnvelopes === 1 ? 'value is' : 'values are'} not a pgveil envelope and cannot be re-encrypted (written around pgveil?)`)
  }
  if (plan.steps.length === 0 && plan.blockers.length === 0) plan.notes.push('up to date: nothing to do')
  return plan
}

function plaintextCountText(rows: number): string {
  return `${rows} ${rows === 1 ? 'row' : 'rows'}`
}

async function count(client: pg.Client, sql: string, values: unknown[] = []): Promise<number> {
  const { rows } = await client.query<{ count: string }>(sql, values)
  return Number(rows[0]?.count ?? 0)
}

async function tableKey(client: pg.Client, tableOid: number, column: string): Promise<TableKey> {
  const { rows } = await client.query<{ name: string; type: string }>(PRIMARY_KEY_SQL, [tableOid])
  // A key that contains the protected column would change under our feet: walk by ctid.
  if (rows.length === 0 || rows.some((r) => r.name === column)) return { columns: null }
  return { columns: rows }
}

interface ConversionMarker {
  notNull: boolean
}

const MARKER_PREFIX = 'pgveil migrate: plaintext awaiting encryption '

function parseMarker(comment: string | null): ConversionMarker | null {
  if (comment === null || !comment.startsWith(MARKER_PREFIX)) return null
  try {
    const parsed = JSON.parse(comment.slice(MARKER_PREFIX.length)) as { notNull?: unknown }
    return { notNull: parsed.notNull === true }
  } catch {
    return null
  }
}

function conversionDdl(names: ColumnNames, notNull: boolean): ConversionDdl {
  const table = names.table
  const col = quoteIdent(names.column)
  const plain = quoteIdent(names.plain)
  const refuse = (code: string, message: string): string => `RAISE EXCEPTION USING ERRCODE = '${code}', MESSAGE = ${quoteLiteral(message)};`
  // Why each branch: see the file comment (expand). Rows only ever lose plaintext
  // (correcting a pending value is allowed, giving one back is not), so once none is
  // left none can come back. The NOT NULL rule spans both columns because a row's
  // value lives in one of them until the backfill reaches it.
  const body = [
    `IF TG_OP = 'INSERT' THEN`,
    `  IF NEW.${plain} IS NOT NULL THEN ${refuse('55000', `column "${names.plain}" holds plaintext being encrypted by pgveil migrate: write "${names.column}" instead`)} END IF;`,
    `ELSIF NEW.${col} IS DISTINCT FROM OLD.${col} THEN`,
    `  NEW.${plain} := NULL;`,
    `ELSIF OLD.${plain} IS NULL AND NEW.${plain} IS NOT NULL THEN`,
    `  ${refuse('55000', `column "${names.plain}" holds plaintext being encrypted by pgveil migrate: write "${names.column}" instead`)}`,
    `END IF;`,
    `IF NEW.${col} IS NOT NULL AND substring(NEW.${col} from 1 for 3) <> decode('${ENVELOPE_PREFIX_HEX}', 'hex') THEN`,
    `  ${refuse('22023', `value for encrypted column "${names.column}" is not a pgveil envelope: write it through pgveil`)}`,
    `END IF;`,
    ...(notNull ? [`IF NEW.${col} IS NULL AND NEW.${plain} IS NULL THEN ${refuse('23502', `null value in column "${names.column}" violates not-null constraint`)} END IF;`] : []),
    `RETURN NEW;`,
  ].join(' ')
  const marker = `${MARKER_PREFIX}${JSON.stringify({ column: names.column, notNull })}`
  return {
    expand: [
      `ALTER TABLE ${table} RENAME COLUMN ${col} TO ${plain};`,
      ...(notNull ? [`ALTER TABLE ${table} ALTER COLUMN ${plain} DROP NOT NULL;`] : []),
      `ALTER TABLE ${table} ALTER COLUMN ${plain} DROP DEFAULT;`,
      `ALTER TABLE ${table} ADD COLUMN ${col} bytea;`,
      `COMMENT ON COLUMN ${table}.${plain} IS ${quoteLiteral(marker)};`,
      `CREATE FUNCTION ${names.func}() RETURNS trigger LANGUAGE plpgsql AS $pgveil$BEGIN ${body} END$pgveil$;`,
      `CREATE TRIGGER ${quoteIdent(names.trigger)} BEFORE INSERT OR UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${names.func}();`,
    ],
    pendingIndex: `CREATE INDEX CONCURRENTLY ${quoteIdent(names.pendingIndex)} ON ${table} ((${plain} IS NOT NULL)) WHERE ${plain} IS NOT NULL;`,
    notNullCheck: [`ALTER TABLE ${table} ADD CONSTRAINT ${quoteIdent(names.notNullCheck)} CHECK (${col} IS NOT NULL) NOT VALID;`, `ALTER TABLE ${table} VALIDATE CONSTRAINT ${quoteIdent(names.notNullCheck)};`],
    contract: [
      `DROP TRIGGER ${quoteIdent(names.trigger)} ON ${table};`,
      `DROP FUNCTION ${names.func}();`,
      `ALTER TABLE ${table} DROP COLUMN ${plain};`,
      ...(notNull ? [`ALTER TABLE ${table} ALTER COLUMN ${col} SET NOT NULL;`, `ALTER TABLE ${table} DROP CONSTRAINT ${quoteIdent(names.notNullCheck)};`] : []),
    ],
  }
}

// ---------------------------------------------------------------------------
// Running it

/** Progress of one column's pass on stderr: at most one line a second, and a last one. */
class ProgressLine {
  private readonly started: number
  private lastPrinted = 0
  /** done/left of the last line, so the closing line is not a repeat. */
  private printed = ''
  constructor(
    private readonly write: ((line: string) => void) | undefined,
    private readonly label: string,
    private readonly now: () => number,
  ) {
    this.started = now()
  }

  update(done: number, left: number, final = false): void {
    if (this.write === undefined) return
    const now = this.now()
    if (final ? this.printed === `${done}/${left}` : now - this.lastPrinted < 1000) return
    this.lastPrinted = now
    this.printed = `${done}/${left}`
    const seconds = Math.max((now - this.started) / 1000, 0.001)
    const rate = done / seconds
    const eta = left === 0 ? '0s' : rate > 0 ? formatDuration(left / rate) : '?'
    this.write(`pgveil migrate: ${this.label}: ${done} done, ${left} left, ${Math.round(rate)} rows/s, ETA ${eta}`)
  }
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.ceil(seconds % 60)).padStart(2, '0')}s`
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`
}

interface BatchScan {
  table: string
  key: TableKey
  /** SQL condition selecting pending rows; its parameters are `params` ($1…). */
  pending: string
  params: unknown[]
  /** Expression read from each pending row. */
  read: string
  /** The SET list of the UPDATE; `u.e` is the new value. */
  set: string
  /** The new value for a row's `read` value, or null to leave the row as it is. */
  transform: (value: unknown, key: string[]) => Buffer | null
  /** Called after each committed batch with the number of rows written. */
  onBatch: (written: number) => Promise<void> | void
}

/**
 * One keyset-paginated pass over the pending rows: each batch selects and locks
 * (FOR UPDATE) up to `batchSize` rows after the last key seen, computes their new
 * values, and writes them in one UPDATE, in one transaction. Returns rows written.
 */
async function scanInBatches(client: pg.Client, scan: BatchScan, batchSize: number): Promise<number> {
  const keyColumns = scan.key.columns
  // Output columns get names of their own and ORDER BY is qualified: a bare `ORDER BY id`
  // would sort by the `id::text` output column, in text order, not by the key.
  const keySelect = keyColumns === null ? 't.ctid::text AS k0' : keyColumns.map((c, i) => `t.${quoteIdent(c.name)}::text AS k${i}`).join(', ')
  const order = keyColumns === null ? 't.ctid' : keyColumns.map((c) => `t.${quoteIdent(c.name)}`).join(', ')
  const width = keyColumns === null ? 1 : keyColumns.length
  const after = (first: number): string => {
    if (keyColumns === null) return `t.ctid > $${first}::tid`
    const left = keyColumns.map((c) => `t.${quoteIdent(c.name)}`).join(', ')
    const right = keyColumns.map((c, i) => `$${first + i}::${c.type}`).join(', ')
    return width === 1 ? `${left} > ${right}` : `(${left}) > (${right})`
  }
  const unnestArgs = [...Array.from({ length: width }, (_, i) => `$${i + 1}::text[]`), `$${width + 1}::bytea[]`].join(', ')
  const unnestNames = [...Array.from({ length: width }, (_, i) => `k${i}`), 'e'].join(', ')
  const match = keyColumns === null ? `t.ctid = u.k0::tid` : keyColumns.map((c, i) => `t.${quoteIdent(c.name)} = u.k${i}::${c.type}`).join(' AND ')
  const updateSql = `UPDATE ${scan.table} AS t SET ${scan.set} FROM unnest(${unnestArgs}) AS u(${unnestNames}) WHERE ${match}`

  let last: string[] | null = null
  let written = 0
  while (true) {
    const values = [...scan.params]
    const keyset = last === null ? '' : ` AND ${after(values.length + 1)}`
    if (last !== null) values.push(...last)
    await client.query('BEGIN')
    let rows: unknown[][]
    let batchWritten = 0
    try {
      ;({ rows } = await client.query<unknown[]>({
        text: `SELECT ${keySelect}, ${scan.read} FROM ${scan.table} AS t WHERE (${scan.pending})${keyset} ORDER BY ${order} LIMIT ${batchSize} FOR UPDATE`,
        values,
        rowMode: 'array',
      }))
      const keys: string[][] = Array.from({ length: width }, () => [])
      const next: Buffer[] = []
      for (const row of rows) {
        const key = row.slice(0, width) as string[]
        const value = scan.transform(row[width], key)
        if (value === null) continue
        key.forEach((k, i) => keys[i]!.push(k))
        next.push(value)
      }
      if (next.length > 0) {
        const result = await client.query(updateSql, [...keys, next])
        batchWritten = result.rowCount ?? 0
      }
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    }
    if (rows.length === 0) return written
    written += batchWritten
    last = rows[rows.length - 1]!.slice(0, width) as string[]
    await scan.onBatch(batchWritten)
    if (rows.length < batchSize) return written
  }
}

/** Runs `body` in a transaction holding an ACCESS EXCLUSIVE lock on `table`, retrying when the lock is busy. */
async function underTableLock(client: pg.Client, table: string, lockTimeoutMs: number, body: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await client.query('BEGIN')
    try {
      await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))}`)
      await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`)
      await body()
      await client.query('COMMIT')
      return
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      if ((error as { code?: string }).code !== '55P03') throw error
      if (attempt === LOCK_ATTEMPTS) {
        throw new MigrationError(`could not lock table ${table} within ${lockTimeoutMs / 1000}s (${LOCK_ATTEMPTS} attempts): a long transaction holds it; let it finish and run pgveil migrate again, or raise --lock-timeout`, { cause: error })
      }
      await new Promise((resolve) => setTimeout(resolve, 250 * attempt))
    }
  }
}

async function runAll(client: pg.Client, statements: readonly string[]): Promise<void> {
  for (const sql of statements) await client.query(sql)
}

/** Expand: the one step that turns a plaintext column into bytea plus its plaintext twin. */
async function expand(client: pg.Client, plan: ColumnPlan, lockTimeoutMs: number): Promise<void> {
  const detail = plan.detail!
  await underTableLock(client, detail.names.table, lockTimeoutMs, async () => {
    // Re-read under the lock: what was planned must still be what is there.
    const { rows } = await client.query<AttributeRow>(ATTRIBUTE_SQL, [plan.column.schema, plan.column.table, plan.column.column, detail.names.plain])
    const row = rows[0]
    if (row === undefined || row.attnum === null || Number(row.type_oid) === TypeOid.bytea || row.plain_attnum !== null) {
      throw new MigrationError(`column "${plan.column.qualified}" changed while pgveil migrate was planning; run it again`)
    }
    await runAll(client, detail.ddl.expand)
  })
}

/** The partial index on rows still holding plaintext, built without blocking writers (rebuilt if a killed run left it invalid). */
async function ensurePendingIndex(client: pg.Client, plan: ColumnPlan): Promise<void> {
  const { names, tableOid, ddl } = plan.detail!
  const { rows } = await client.query<{ valid: boolean }>(
    `SELECT i.indisvalid AS valid FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1 AND c.relname = $2`,
    [tableOid, names.pendingIndex],
  )
  if (rows[0]?.valid === true) return
  if (rows[0] !== undefined) await client.query(`DROP INDEX CONCURRENTLY ${quoteIdent(plan.column.schema)}.${quoteIdent(names.pendingIndex)}`)
  await client.query(ddl.pendingIndex)
}

async function ensureNotNullCheck(client: pg.Client, plan: ColumnPlan, lockTimeoutMs: number): Promise<void> {
  const { names, tableOid, ddl } = plan.detail!
  const { rows } = await client.query<{ validated: boolean }>(`SELECT convalidated AS validated FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND conname = $2`, [tableOid, names.notNullCheck])
  if (rows[0] === undefined) await underTableLock(client, names.table, lockTimeoutMs, () => runAll(client, [ddl.notNullCheck[0]!]))
  if (rows[0]?.validated !== true) await client.query(ddl.notNullCheck[1]!)
}

async function contract(client: pg.Client, plan: ColumnPlan, lockTimeoutMs: number): Promise<void> {
  const { names, ddl } = plan.detail!
  await underTableLock(client, names.table, lockTimeoutMs, async () => {
    // The trigger lets no row gain plaintext, so none should be left; this is the
    // guard against a trigger someone disabled. It reads the partial index.
    const { rows } = await client.query(`SELECT 1 FROM ${names.table} WHERE ${quoteIdent(names.plain)} IS NOT NULL LIMIT 1`)
    if (rows.length > 0) throw new MigrationError(`column "${plan.column.qualified}": rows gained plaintext in "${names.plain}" during the migration (was its trigger disabled?); run pgveil migrate again`)
    await runAll(client, ddl.contract)
  })
}

function describeKey(key: string[]): string {
  return `(${key.join(', ')})`
}

/**
 * Batched passes over the rows `scan.pending` selects, with a progress line, until
 * none is left: a pass can miss rows that moved behind the cursor (a ctid walk
 * meeting concurrent updates), and what is pending is read from the data itself.
 * `counted(n)` records each committed batch (so a failure later still reports it);
 * `beforePass` runs before each pass. Returns the rows left.
 */
async function migrateInPasses(
  client: pg.Client,
  label: string,
  scan: Omit<BatchScan, 'onBatch'>,
  options: MigrateOptions,
  counted: (rows: number) => void,
  beforePass: () => void = () => {},
): Promise<number> {
  const countLeft = (): Promise<number> => count(client, `SELECT count(*) FROM ${scan.table} WHERE ${scan.pending}`, scan.params)
  let left = await countLeft()
  const progress = new ProgressLine(options.progress, label, options.now ?? Date.now)
  let done = 0
  while (left > 0) {
    beforePass()
    const written = await scanInBatches(
      client,
      {
        ...scan,
        onBatch: (n) => {
          done += n
          counted(n)
          left = Math.max(left - n, 0)
          progress.update(done, left)
        },
      },
      options.batchSize,
    )
    left = await countLeft()
    progress.update(done, left, true)
    if (written === 0) break
  }
  return left
}

/** Encrypts the plaintext of a converting column, batch by batch. */
async function backfill(client: pg.Client, plan: ColumnPlan, keyring: Keyring, options: MigrateOptions, outcome: ColumnOutcome): Promise<void> {
  const { names, key } = plan.detail!
  const codec = TYPE_CODECS[plan.column.type as PolicyType]
  const plain = quoteIdent(names.plain)
  const scan: Omit<BatchScan, 'onBatch'> = {
    table: names.table,
    key,
    pending: `${plain} IS NOT NULL`,
    params: [],
    read: `${plain}::text`,
    set: `${quoteIdent(names.column)} = u.e, ${plain} = NULL`,
    transform: (value, rowKey) => {
      let canonical: string
      try {
        canonical = codec.canonicalFromText(value as string, MIGRATION_FORMAT)
      } catch (error) {
        const code = (error as { sqlState?: string }).sqlState
        // The value itself is never repeated: it is plaintext.
        throw new MigrationError(
          `column "${plan.column.qualified}", row ${describeKey(rowKey)}: the stored value is not valid input for type ${codec.sqlName}${code === undefined ? '' : ` (SQLSTATE ${code})`}; correct it in "${names.plain}" (or change the policy type) and run pgveil migrate again`,
        )
      }
      // A searchable column gets its index slot as it is encrypted.
      return plan.column.search === 'equality' ? sealColumnValue(keyring, plan.column, canonical) : sealCanonical(keyring, plan.column.binding, canonical)
    },
  }
  await migrateInPasses(client, `${plan.column.qualified}: encrypt plaintext`, scan, options, (n) => {
    outcome.encrypted += n
    outcome.migrated += n
  })
}

/** Rewrites the pending envelopes of a column (re-encryption), batch by batch. */
async function rewriteEnvelopes(client: pg.Client, plan: ColumnPlan, keyring: Keyring, mode: EnvelopeRewriteMode, options: MigrateOptions, outcome: ColumnOutcome): Promise<void> {
  const { names, key } = plan.detail!
  const col = quoteIdent(plan.column.column)
  const slice = mode.currentSlice(keyring)
  let unreadable = 0
  const scan: Omit<BatchScan, 'onBatch'> = {
    table: names.table,
    key,
    pending: `${col} IS NOT NULL AND substring(${col} from ${slice.from} for ${slice.bytes.length}) <> $1`,
    params: [slice.bytes],
    read: col,
    set: `${col} = u.e`,
    transform: (value) => {
      const stored = value as Buffer
      if (mode.isCurrent(keyring, stored)) return null
      try {
        return mode.rewrite(keyring, plan.column.binding, stored)
      } catch (error) {
        if (!(error instanceof DecryptionError)) throw error
        unreadable++
        return null
      }
    },
  }
  const counted = (n: number): void => {
    outcome.reencrypted += n
    outcome.migrated += n
  }
  outcome.left = await migrateInPasses(client, `${plan.column.qualified}: ${mode.verb}`, scan, options, counted, () => (unreadable = 0))
  outcome.unreadable = unreadable
}

/** Migrates one column as planned. */
export async function migrateColumn(client: pg.Client, plan: ColumnPlan, keyring: Keyring, options: MigrateOptions): Promise<ColumnOutcome> {
  const outcome: ColumnOutcome = { column: plan.column.qualified, migrated: 0, left: 0, encrypted: 0, reencrypted: 0, unreadable: 0 }
  if (plan.state === 'missing') return outcome
  if (plan.blockers.length > 0) {
    outcome.left = plan.plaintextRows
    outcome.error = plan.blockers.join('; ')
    return outcome
  }
  const chosen = options.mode ?? REENCRYPT_MODE
  const mode = chosen.forColumn?.(plan.column) ?? chosen
  try {
    if (plan.state === 'plaintext') {
      await expand(client, plan, options.lockTimeoutMs)
      plan.state = 'converting'
    }
    if (plan.state === 'converting') {
      await ensurePendingIndex(client, plan)
      await backfill(client, plan, keyring, options, outcome)
      if (plan.detail!.notNull) await ensureNotNullCheck(client, plan, options.lockTimeoutMs)
      await contract(client, plan, options.lockTimeoutMs)
      plan.state = 'bytea'
    }
    await rewriteEnvelopes(client, plan, keyring, mode, options, outcome)
  } catch (error) {
    outcome.error = describeFailure(plan, error)
    outcome.left = await leftAfterFailure(client, plan, keyring, mode).catch(() => -1)
  }
  return outcome
}

async function leftAfterFailure(client: pg.Client, plan: ColumnPlan, keyring: Keyring, mode: EnvelopeRewriteMode): Promise<number> {
  const fresh = await planColumn(client, plan.column, keyring, mode)
  return fresh.plaintextRows + [...fresh.pendingByVersion.values()].reduce((a, b) => a + b, 0) + fresh.notEnvelopes
}

export interface MigrationRun {
  dryRun: boolean
  plans: ColumnPlan[]
  outcomes: ColumnOutcome[]
}

/**
 * Plans (and unless `dryRun`, runs) the migration of every protected column of
 * `policy`, on a connection to the upstream database. A dry run only reads, inside
 * a READ ONLY transaction.
 */
export async function migrateDatabase(client: pg.Client, policy: Policy, keyring: Keyring, options: MigrateOptions & { dryRun: boolean }): Promise<MigrationRun> {
  const mode = options.mode ?? REENCRYPT_MODE
  await client.query(`SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET statement_timeout = 0`)
  const planOptions = { batchSize: options.batchSize, lockTimeoutMs: options.lockTimeoutMs }
  if (options.dryRun) {
    await client.query('BEGIN TRANSACTION READ ONLY')
    try {
      const plans: ColumnPlan[] = []
      for (const column of policy.columns) plans.push(await planColumn(client, column, keyring, mode, planOptions))
      const outcomes = plans.map((plan): ColumnOutcome => {
        const pending = [...plan.pendingByVersion.values()].reduce((a, b) => a + b, 0)
        return { column: plan.column.qualified, migrated: 0, left: plan.plaintextRows + pending + plan.notEnvelopes, encrypted: 0, reencrypted: 0, unreadable: 0 }
      })
      return { dryRun: true, plans, outcomes }
    } finally {
      await client.query('ROLLBACK').catch(() => {})
    }
  }
  // A run killed a moment ago may still hold the lock until its backend notices: wait a little.
  await client.query(`SET lock_timeout = ${Math.max(1, Math.round(options.lockTimeoutMs))}`)
  try {
    await client.query(`SELECT pg_advisory_lock(${ADVISORY_LOCK_SQL})`)
  } catch (error) {
    if ((error as { code?: string }).code === '55P03') throw new MigrationError('another pgveil migrate is running on this database; wait for it to finish')
    throw error
  } finally {
    await client.query('SET lock_timeout = 0').catch(() => {})
  }
  try {
    const plans: ColumnPlan[] = []
    for (const column of policy.columns) plans.push(await planColumn(client, column, keyring, mode, planOptions))
    const outcomes = new Map<ColumnPlan, ColumnOutcome>()
    // Every plaintext column is expanded first, so that writes through pgveil (refused
    // by PostgreSQL while a protected column is not bytea) work again as soon as possible.
    for (const plan of plans) {
      if (plan.state !== 'plaintext' || plan.blockers.length > 0) continue
      try {
        await expand(client, plan, options.lockTimeoutMs)
        plan.state = 'converting'
      } catch (error) {
        outcomes.set(plan, { column: plan.column.qualified, migrated: 0, left: plan.plaintextRows, encrypted: 0, reencrypted: 0, unreadable: 0, error: describeFailure(plan, error) })
      }
    }
    for (const plan of plans) if (!outcomes.has(plan)) outcomes.set(plan, await migrateColumn(client, plan, keyring, options))
    return { dryRun: false, plans, outcomes: plans.map((plan) => outcomes.get(plan)!) }
  } finally {
    await client.query(`SELECT pg_advisory_unlock(${ADVISORY_LOCK_SQL})`).catch(() => {})
  }
}

function describeFailure(plan: ColumnPlan, error: unknown): string {
  return error instanceof MigrationError ? error.message : `column "${plan.column.qualified}": ${(error as Error).message}`
}

// ---------------------------------------------------------------------------
// Reports

export function formatPlan(plans: readonly ColumnPlan[]): string {
  const lines: string[] = ['pgveil migrate --dry-run: nothing was changed. The plan:']
  for (const plan of plans) {
    lines.push('', `column ${plan.column.qualified} (${plan.column.type}): ${describeState(plan)}`)
    for (const blocker of plan.blockers) lines.push(`  cannot migrate: ${blocker}`)
    plan.steps.forEach((step, i) => lines.push(`  ${i + 1}. ${step}`))
    for (const note of plan.notes) lines.push(`  note: ${note}`)
  }
  return lines.join('\n') + '\n'
}

function describeState(plan: ColumnPlan): string {
  switch (plan.state) {
    case 'missing':
      return 'not in the database'
    case 'bytea':
      return 'bytea (encrypted)'
    case 'plaintext':
      return `plaintext, ${plaintextCountText(plan.plaintextRows)} to encrypt`
    case 'converting':
      return `conversion in progress, ${plaintextCountText(plan.plaintextRows)} still to encrypt`
  }
}

export function formatOutcomes(outcomes: readonly ColumnOutcome[]): string {
  return (
    outcomes
      .map((o) => {
        const parts = [`migrated ${o.migrated}`, `left ${o.left < 0 ? 'unknown' : o.left}`]
        if (o.encrypted > 0) parts.push(`${o.encrypted} plaintext encrypted`)
        if (o.reencrypted > 0) parts.push(`${o.reencrypted} re-encrypted`)
        if (o.unreadable > 0) parts.push(`${o.unreadable} unreadable (not an envelope, or a key version not in keys.versions)`)
        return `${o.column}: ${parts.join(', ')}${o.error === undefined ? '' : `\n  error: ${o.error}`}`
      })
      .join('\n') + '\n'
  )
}

/** The `--json` report: `{dryRun, columns: {"schema.table.column": {migrated, left, …}}}`. */
export function outcomesJson(run: MigrationRun): string {
  const columns: Record<string, unknown> = {}
  run.outcomes.forEach((o, i) => {
    const plan = run.plans[i]!
    const entry: Record<string, unknown> = { migrated: o.migrated, left: o.left, encrypted: o.encrypted, reencrypted: o.reencrypted, unreadable: o.unreadable }
    if (o.error !== undefined) entry.error = o.error
    if (run.dryRun) Object.assign(entry, { state: plan.state, steps: plan.steps, notes: plan.notes, blockers: plan.blockers })
    columns[o.column] = entry
  })
  return JSON.stringify({ dryRun: run.dryRun, columns }) + '\n'
}
