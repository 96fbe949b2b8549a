/**
 * Access rules hold whatever shape the read takes: statements built at random read
 * protected columns through every result path pgveil has (plain SELECT, `*`,
 * subqueries, CTEs, a view and a materialized view, RETURNING of INSERT, UPDATE,
 * DELETE and ON CONFLICT, data-modifying WITH, cursors, binary results, both
 * protocols) as readers who may not see them (no identity, or an identity without
 * the claims). No plaintext may reach them: the masked column shows its mask, the
 * NULL column NULL, the error column an error. An authorised reader, given the same
 * statements, does see the plaintext (the positive control).
 *
 * A fixed seed makes a failure reproducible; ACCESS_FUZZ_SEED and ACCESS_FUZZ_RUNS explore.
 */
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AccessRules } from '../../policy/access.js'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { getTestPostgres } from '../harness/pg.js'
import { TestJwksServer } from '../harness/jwks-server.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { protectedColumn } from '../harness/policy.js'

const server = getTestPostgres()
const SEED = Number(process.env.ACCESS_FUZZ_SEED ?? 20261123)
const RUNS = Number(process.env.ACCESS_FUZZ_RUNS ?? 300)
let database: string
let jwks: TestJwksServer
let proxy: TestProxy

/** The stored plaintexts: none of them may reach a reader without the claims. */
const EMAIL = 'quietmarker.zvk@example.org'
const SSN = 'ssnmarker-zqwv'
const SALARY = '987654.321'
const PLAINTEXTS = [EMAIL, SSN, SALARY, 'quietmarker.zvk']


async function connect(claims: Record<string, unknown> | null, binary = false): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: proxy.url(database), ...(binary ? { binary: true } : {}) } as pg.ClientConfig)
  client.on('error', () => {})
  await client.connect()
  if (claims !== null) await client.query('SET IDENTITY TO $1', [await jwks.token(claims)])
  return client
}

beforeAll(async () => {
  database = await server.createDatabase('access_fuzz')
  jwks = await TestJwksServer.start()
  const direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query('CREATE TABLE people (id int PRIMARY KEY, name text, email bytea, ssn bytea, salary bytea)')
  await direct.end()
  const policy = new Policy([protectedColumn('people', 'email', 'text'), protectedColumn('people', 'ssn', 'text'), protectedColumn('people', 'salary', 'numeric')])
  const access = new AccessRules([
    { column: 'public.people.email', read: [{ claim: 'scope', includes: 'pii:read' }], otherwise: 'mask', mask: 'email', write: null },
    { column: 'public.people.ssn', read: [{ claim: 'scope', includes: 'pii:read' }], otherwise: 'null', mask: 'redact', write: null },
    { column: 'public.people.salary', read: [{ claim: 'scope', includes: 'pii:read' }], otherwise: 'error', mask: 'redact', write: null },
  ])
  proxy = await startTestProxy({
    upstreamUrl: `${server.url(database)}?sslmode=disable`,
    policy,
    keyring: new Keyring(new Map([[1, randomBytes(32)]]), 1),
    identity: jwks.identityConfig({ maxTokenBytes: 8192 }),
    access,
  })
  const admin = await connect({ sub: 'admin', scope: 'pii:read' })
  await admin.query('INSERT INTO people (id, name, email, ssn, salary) VALUES (1, $1, $2, $3, $4)', ['Quinn', EMAIL, SSN, SALARY])
  await admin.query('CREATE VIEW people_view AS SELECT id, name, email, ssn, salary FROM people')
  await admin.query('CREATE MATERIALIZED VIEW people_snapshot AS SELECT id, email, ssn, salary FROM people')
  await admin.end()
})

afterAll(async () => {
  await proxy?.close()
  await jwks?.close()
})

/** Result column lists naming the protected columns in other ways. */
const COLUMNS = ['email', 'ssn', 'salary', 'email, ssn', 'id, email, ssn, salary', '*', 'email AS e, ssn AS s', 'name, email']
/** Ways of reading `cols` (with `{t}` for the relation read). */
const READS: readonly ((cols: string) => string)[] = [
  (c) => `SELECT ${c} FROM {t} WHERE id = 1`,
  (c) => `SELECT ${c} FROM (SELECT * FROM {t}) s`,
  (c) => `WITH s AS (SELECT * FROM {t}) SELECT ${c} FROM s`,
  (c) => `SELECT ${c} FROM {t} p JOIN (VALUES (1)) v (id) USING (id)`,
  (c) => `SELECT ${c} FROM {t} WHERE id IN (SELECT id FROM {t})`,
  (c) => `SELECT ${c} FROM {t}, LATERAL (SELECT 1) l`,
  (c) => `SELECT ${c} FROM {t} ORDER BY id LIMIT 5`,
  (c) => `SELECT 1 AS one; SELECT ${c} FROM {t}`,
  (c) => `BEGIN; DECLARE leak_cursor CURSOR FOR SELECT ${c} FROM {t}; FETCH ALL FROM leak_cursor; COMMIT`,
]
const RELATIONS = ['people', 'public.people', 'people_view', 'people_snapshot', 'ONLY people']
/** Statements that return protected columns from a write (each run in a transaction rolled back). */
const WRITES: readonly ((cols: string) => string)[] = [
  (c) => `UPDATE people SET name = name WHERE id = 1 RETURNING ${c}`,
  (c) => `DELETE FROM people WHERE id = 1 RETURNING ${c}`,
  (c) => `INSERT INTO people (id, name) VALUES (1, 'Quinn') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING ${c}`,
  (c) => `WITH changed AS (UPDATE people SET name = name WHERE id = 1 RETURNING *) SELECT ${c} FROM changed`,
  (c) => `UPDATE people_view SET name = name WHERE id = 1 RETURNING ${c}`,
]

interface Read {
  readonly sql: string
  readonly extended: boolean
  readonly binary: boolean
}

const read: fc.Arbitrary<Read> = fc.oneof(
  fc.record({ form: fc.nat(READS.length - 1), cols: fc.constantFrom(...COLUMNS), relation: fc.constantFrom(...RELATIONS), extended: fc.boolean(), binary: fc.boolean() }).map(({ form, cols, relation, extended, binary }) => {
    const sql = READS[form]!(cols).replaceAll('{t}', relation)
    // Several statements go in one simple Query only.
    return { sql, extended: extended && !sql.includes(';'), binary: binary && extended && !sql.includes(';') }
  }),
  fc.record({ form: fc.nat(WRITES.length - 1), cols: fc.constantFrom(...COLUMNS.filter((c) => !c.includes('name') || c === '*')), extended: fc.boolean(), binary: fc.boolean() }).map(({ form, cols, extended, binary }) => ({
    sql: WRITES[form]!(cols),
    extended,
    binary: binary && extended,
  })),
)

/** Runs `sql` in a transaction that is rolled back; returns the rows (all statements' rows) or the error code. */
async function run(client: pg.Client, { sql, extended }: Read): Promise<{ rows?: unknown; code?: string }> {
  try {
    if (!sql.startsWith('BEGIN')) await client.query('BEGIN')
    const result = (extended ? await client.query({ text: sql, queryMode: 'extended' } as pg.QueryConfig) : await client.query(sql)) as pg.QueryResult | pg.QueryResult[]
    const results = Array.isArray(result) ? result : [result]
    return { rows: results.map((r) => r.rows) }
  } catch (error) {
    return { code: (error as { code?: string }).code ?? 'no code' }
  } finally {
    await client.query('ROLLBACK').catch(() => {})
  }
}

function text(rows: unknown): string {
  return JSON.stringify(rows, (_key, value: unknown) => (Buffer.isBuffer(value) ? value.toString('latin1') : value))
}

describe('access rules on every result path (statements built at random)', () => {
  it(`shows readers without the claims no plaintext over ${RUNS} reads (seed ${SEED}), and shows it to those with them`, { timeout: 120_000 }, async () => {
    const reads = fc.sample(read, { seed: SEED, numRuns: RUNS })
    const readers: (Record<string, unknown> | null)[] = [null, { sub: 'mallory' }, { sub: 'mallory', scope: 'reports:read' }]
    const leaks: string[] = []
    const outcomes = { rows: 0, refused: 0, authorisedSaw: 0 }
    const codes = new Map<string, number>()
    const clients = new Map<string, pg.Client>()
    const clientFor = async (who: Record<string, unknown> | null, binary: boolean): Promise<pg.Client> => {
      const key = `${JSON.stringify(who)}/${binary}`
      let client = clients.get(key)
      if (client === undefined) clients.set(key, (client = await connect(who, binary)))
      return client
    }
    try {
      for (const [i, r] of reads.entries()) {
        const who = readers[i % readers.length]!
        const result = await run(await clientFor(who, r.binary), r)
        if (result.code !== undefined) {
          outcomes.refused++
          codes.set(result.code, (codes.get(result.code) ?? 0) + 1)
          // A session that ended (FATAL) is replaced.
          if (result.code.startsWith('08') || result.code === 'no code') clients.delete(`${JSON.stringify(who)}/${r.binary}`)
          continue
        }
        outcomes.rows++
        const seen = text(result.rows)
        const leaked = PLAINTEXTS.filter((p) => seen.includes(p))
        if (leaked.length > 0) leaks.push(`${r.sql} (${r.extended ? 'extended' : 'simple'}${r.binary ? ', binary' : ''}, as ${JSON.stringify(who)}): ${leaked.join(', ')}`)
        // The positive control: the same read by an authorised reader shows the plaintext where it shows a protected column at all.
        const authorised = await run(await clientFor({ sub: 'auditor', scope: 'pii:read' }, r.binary), r)
        if (authorised.rows !== undefined && PLAINTEXTS.some((p) => text(authorised.rows).includes(p))) outcomes.authorisedSaw++
      }
    } finally {
      for (const client of clients.values()) await client.end().catch(() => {})
    }
    console.log(`access fuzz: ${JSON.stringify(outcomes)}, errors by SQLSTATE ${JSON.stringify(Object.fromEntries(codes))}`)
    expect(leaks).toEqual([])
    expect(outcomes.rows).toBeGreaterThan(RUNS / 4)
    expect(outcomes.authorisedSaw).toBeGreaterThan(RUNS / 4)
  })
})
