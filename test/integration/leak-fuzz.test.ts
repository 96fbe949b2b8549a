/**
 * No plaintext reaches PostgreSQL, whatever shape the SQL takes: statements built at
 * random from many forms of writing, comparing and wrapping values of protected
 * columns (literal spellings, predicates, subqueries, CTEs, joins, DDL, several
 * statements in one Query, parameters) are sent through pgveil, each with a marker
 * value of its own in a protected place. Whatever happens to each statement
 * (encrypted, refused by pgveil, failed in PostgreSQL, the session ended), no marker
 * may appear in PostgreSQL's statement log. The markers use letters g-z only, so
 * they cannot turn up by chance in the hex of a bytea.
 *
 * The statements come from a fixed seed, so a failure reproduces; LEAK_FUZZ_SEED and
 * LEAK_FUZZ_RUNS explore further.
 */
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { protectedColumn } from '../harness/policy.js'

const server = getTestPostgres()
const SEED = Number(process.env.LEAK_FUZZ_SEED ?? 20261123)
const RUNS = Number(process.env.LEAK_FUZZ_RUNS ?? 600)
let database: string
let proxy: TestProxy
let proxyUrl: string


beforeAll(async () => {
  database = await server.createDatabase('leak_fuzz')
  const direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query(`
    CREATE TABLE people (id int PRIMARY KEY, email bytea, ssn bytea, note text);
    CREATE TABLE contacts (id int PRIMARY KEY, email bytea);
    CREATE TABLE plain (id int PRIMARY KEY, t text);
  `)
  await direct.end()
  const email = { search: 'equality', normalize: ['lowercase'], indexDomain: 'index:email' } as const
  const policy = new Policy([protectedColumn('people', 'email', 'text', email), protectedColumn('people', 'ssn'), protectedColumn('contacts', 'email', 'text', email)])
  proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, policy, keyring: new Keyring(new Map([[1, randomBytes(32)]]), 1, randomBytes(32)) })
  proxyUrl = proxy.url(database, server.superuser, server.superuserPassword ?? undefined)
  const client = new pg.Client({ connectionString: proxyUrl })
  await client.connect()
  await client.query("INSERT INTO people (id, email, ssn, note) VALUES (1, 'ann@example.com', '111-11-1111', 'ann'), (2, 'bob@example.com', NULL, 'bob')")
  await client.query("INSERT INTO contacts (id, email) VALUES (1, 'ann@example.com')")
  // Views and a materialized view made through pgveil, which it reads (and writes) through.
  await client.query('CREATE VIEW people_view AS SELECT id, email, ssn, note FROM people')
  await client.query('CREATE MATERIALIZED VIEW people_snapshot AS SELECT id, email, ssn FROM people')
  await client.end()
})

afterAll(async () => {
  await proxy?.close()
})

/** A statement to send: its SQL, its parameters (extended protocol) or none (simple), and the marker it carries. */
interface Probe {
  readonly sql: string
  readonly values?: readonly string[]
  readonly marker: string
}

const marker = fc.string({ unit: fc.constantFrom(...'ghijklmnopqrstuvwxyz'), minLength: 12, maxLength: 12 }).map((s) => `lk${s}`)

/** Ways of spelling a text value (some are literals pgveil can seal, some expressions it must refuse). */
const SPELLINGS: readonly ((m: string) => string)[] = [
  (m) => `'${m}'`,
  (m) => `E'${m}'`,
  (m) => `$$${m}$$`,
  (m) => `$q$${m}$q$`,
  (m) => `'${m}'::text`,
  (m) => `CAST('${m}' AS text)`,
  (m) => `text '${m}'`,
  (m) => `('${m}')`,
  (m) => `U&'${m}'`,
  (m) => `'${m}'::varchar`,
  (m) => `'${m}' COLLATE "C"`,
  (m) => `'${m}' || ''`,
  (m) => `upper('${m}')`,
  (m) => `'${m}'::bytea`,
  (m) => `convert_to('${m}', 'UTF8')`,
  (m) => `(SELECT '${m}')`,
  (m) => `coalesce(NULL, '${m}')`,
  (m) => `format('%s', '${m}')`,
]

/** Comparisons of a protected column `c` with a value spelled `v` (the marker), or using it otherwise. */
const PREDICATES: readonly ((c: string, v: string, m: string) => string)[] = [
  (c, v) => `${c} = ${v}`,
  (c, v) => `${v} = ${c}`,
  (c, v) => `${c} <> ${v}`,
  (c, v) => `${c} IN ('x@example.com', ${v})`,
  (c, v) => `${c} NOT IN (${v})`,
  (c, v) => `${c} = ANY(ARRAY[${v}])`,
  (c, _v, m) => `${c} = ANY('{${m}}')`,
  (c, _v, m) => `${c} = ANY('{${m}}'::text[])`,
  (c, v) => `${c} IS DISTINCT FROM ${v}`,
  (c, v) => `${c} IS NOT DISTINCT FROM ${v}`,
  (c, v) => `${c} LIKE ${v}`,
  (c, v) => `${c} ILIKE ${v}`,
  (c, v) => `${c} ~ ${v}`,
  (c, v) => `${c} > ${v}`,
  (c, v) => `${c} BETWEEN ${v} AND 'zzz'`,
  (c, v) => `(${c}, 1) = (${v}, 1)`,
  (c, v) => `(${c}, 1) IN ((${v}, 1))`,
  (c, v) => `${c} = (SELECT ${v})`,
  (c, v) => `${c} IN (SELECT ${v})`,
  (c, v) => `${c} = ANY(SELECT ${v})`,
  (c, v) => `${c} IN (VALUES (${v}))`,
  (c, v) => `coalesce(${c}, ${v}) IS NOT NULL`,
  (c, v) => `nullif(${c}, ${v}) IS NULL`,
  (c, v) => `greatest(${c}, ${v}) IS NULL`,
  (c, v) => `lower(${c}) = ${v}`,
  (c, v) => `${c}::text = ${v}`,
  (c, v) => `${c} || ${v} IS NOT NULL`,
  (c, v) => `position(${v} in ${c}) > 0`,
  (c, v) => `CASE ${c} WHEN ${v} THEN true ELSE false END`,
  (c, v) => `CASE WHEN ${c} = ${v} THEN true END`,
  (c, v) => `EXISTS (SELECT 1 WHERE ${c} = ${v})`,
  (c, v) => `${c} = ALL(ARRAY[${v}])`,
  (c, v) => `NOT (${c} = ${v})`,
  (c, v) => `(${c} = ${v}) IS TRUE`,
  (c, v) => `${c} = ${v} AND ${c} = ${v}`,
  (c, v) => `${c} = ${v} OR ${c} IS NULL`,
  (c, v) => `${c} OPERATOR(pg_catalog.=) ${v}`,
  (c, v) => `texteq(${c}, ${v})`,
  (c, v) => `ROW(${c}) = ROW(${v})`,
  (c, v) => `ROW(${c}, 1) IS NOT DISTINCT FROM ROW(${v}, 1)`,
  (c, v) => `starts_with(${c}, ${v})`,
  (c, v) => `${c} ^@ ${v}`,
  (c, v) => `${c} SIMILAR TO ${v}`,
  (c, v) => `(ARRAY[${c}])[1] = ${v}`,
  (c, v) => `${c} = ${v} || ${c}`,
  (c, v) => `${c} IN (SELECT 'x' UNION SELECT ${v})`,
  (c, v) => `${c} = any(string_to_array(${v}, ','))`,
  (c, v) => `((${c})) = ((${v}))`,
  (c, v) => `${c} /* a comment */ = -- another
 ${v}`,
]

/** The same column of people, spelled in other ways (for statements reading people under its own name). */
const EMAIL_SPELLINGS: readonly string[] = ['email', '"email"', 'people.email', 'public.people.email', 'EMAIL', 'U&"\\0065mail"', '"people"."email"', 'People.Email']

/** Statements around a predicate over `people` (its column spelled by `col`). */
const READS: readonly ((p: (col: string) => string, n: number) => string)[] = [
  (p) => `SELECT id FROM people WHERE ${p('email')}`,
  (p) => `SELECT id FROM people WHERE ${p('ssn')}`,
  (p) => `SELECT id FROM people WHERE NOT (${p('email')})`,
  (p) => `SELECT id FROM people WHERE id = 0 OR ${p('people.email')}`,
  (p) => `SELECT (${p('email')}) AS x FROM people`,
  (p) => `SELECT id FROM people WHERE id IN (SELECT id FROM people WHERE ${p('ssn')})`,
  (p) => `WITH c AS (SELECT * FROM people WHERE ${p('email')}) SELECT id FROM c`,
  (p) => `WITH c AS (SELECT ssn AS e FROM people) SELECT 1 FROM c WHERE ${p('e')}`,
  (p) => `SELECT 1 FROM (SELECT email AS e FROM people) s WHERE ${p('s.e')}`,
  (p) => `SELECT count(*) FILTER (WHERE ${p('email')}) FROM people`,
  (p) => `SELECT id FROM people ORDER BY CASE WHEN ${p('ssn')} THEN 1 ELSE 2 END`,
  (p) => `SELECT p.id FROM people p JOIN contacts c ON c.id = p.id AND ${p('c.email')}`,
  (p) => `SELECT p.id FROM people p LEFT JOIN plain t ON t.id = p.id WHERE ${p('p.email')}`,
  (p) => `SELECT id FROM people, LATERAL (SELECT ${p('people.ssn')} AS x) l WHERE l.x`,
  (p) => `UPDATE people SET note = note WHERE ${p('email')}`,
  (p) => `DELETE FROM people WHERE ${p('ssn')} AND id < 0`,
  (p) => `EXPLAIN SELECT id FROM people WHERE ${p('email')}`,
  (p) => `SELECT id FROM people WHERE ${p('email')} FOR UPDATE`,
  (p) => `SELECT id FROM people WHERE ${p('ssn')} UNION SELECT 1`,
  (p) => `SELECT 1; SELECT id FROM people WHERE ${p('email')}`,
  (p) => `SELECT id FROM people WHERE ${p('ssn')}; SELECT 2`,
  (p) => `BEGIN; DECLARE leak_cursor CURSOR FOR SELECT id FROM people WHERE ${p('email')}; ROLLBACK`,
  (p, n) => `CREATE TEMP VIEW leak_view_${n} AS SELECT id FROM people WHERE ${p('email')}`,
  (p, n) => `CREATE VIEW leak_view_${n} AS SELECT id FROM people WHERE ${p('ssn')}`,
  (p, n) => `CREATE TEMP TABLE leak_table_${n} AS SELECT id FROM people WHERE ${p('email')}`,
  (p, n) => `CREATE MATERIALIZED VIEW leak_matview_${n} AS SELECT id, email FROM people WHERE ${p('email')}`,
  (p, n) => `PREPARE leak_prepared_${n} AS SELECT id FROM people WHERE ${p('email')}`,
  (p) => `SELECT 1 FROM people GROUP BY email HAVING ${p('email')}`,
  (p) => `SELECT id FROM contacts WHERE ${p('email')}`,
  (p) => `INSERT INTO plain (id, t) SELECT id + 1000000, note FROM people WHERE ${p('email')} ON CONFLICT DO NOTHING`,
  (p) => `SELECT id FROM "people" WHERE ${p('"people".email')}`,
  (p) => `SELECT id FROM public.people WHERE ${p('ssn')}`,
  (p) => `SELECT id FROM ONLY people WHERE ${p('email')}`,
  (p) => `SELECT id FROM PEOPLE WHERE ${p('EMAIL')}`,
  (p) => `SELECT id FROM U&"\\0070eople" WHERE ${p('email')}`,
  (p) => `SELECT id FROM people AS "P" WHERE ${p('"P".ssn')}`,
  (p) => `SELECT id FROM people WHERE email IN (SELECT email FROM contacts WHERE ${p('contacts.email')})`,
  (p) => `SELECT id FROM people WHERE id = 1 AND (${p('email')} OR ${p('ssn')})`,
  (p) => `SELECT id FROM people_view WHERE ${p('people_view.email')}`,
  (p) => `SELECT id FROM people_view v WHERE ${p('v.ssn')}`,
  (p) => `SELECT id FROM people_snapshot WHERE ${p('people_snapshot.email')}`,
  (p) => `SELECT s.id FROM people_snapshot s JOIN people_view v USING (id) WHERE ${p('s.ssn')}`,
  (p) => `UPDATE people_view SET note = 'x' WHERE ${p('people_view.email')}`,
]

/** Statements where the value meets a protected column by a join's own rules (NATURAL, USING) or through a CTE. */
const JOINS: readonly ((v: string) => string)[] = [
  (v) => `SELECT id FROM people NATURAL JOIN (SELECT ${v} AS email) x`,
  (v) => `SELECT id FROM people JOIN (SELECT ${v} AS ssn) x USING (ssn)`,
  (v) => `SELECT id FROM people JOIN (VALUES (${v})) AS x (email) USING (email)`,
  (v) => `WITH x AS MATERIALIZED (SELECT ${v} AS e) SELECT id FROM people, x WHERE email = x.e`,
  (v) => `WITH x (e) AS (VALUES (${v})) SELECT id FROM people WHERE ssn IN (SELECT e FROM x)`,
  (v) => `SELECT id FROM people p, LATERAL (SELECT ${v} AS e) x WHERE p.email = x.e`,
  (v) => `SELECT id FROM people WHERE email = (WITH x AS (SELECT ${v} AS e) SELECT e FROM x)`,
]

/** Statements writing a value spelled `v` into a protected column (`id`: a key of its own). */
const WRITES: readonly ((v: string, id: number) => string)[] = [
  (v, id) => `INSERT INTO people (id, email, ssn) VALUES (${id}, ${v}, NULL)`,
  (v, id) => `INSERT INTO people (id, ssn) VALUES (${id}, ${v}) RETURNING id`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, 'x@example.com'), (${id + 1}, ${v})`,
  (v, id) => `INSERT INTO people (id, email) SELECT ${id}, ${v}`,
  (v, id) => `INSERT INTO people (id, ssn) SELECT ${id}, ${v} WHERE true`,
  (v, id) => `WITH v(e) AS (VALUES (${v})) INSERT INTO people (id, email) SELECT ${id}, e FROM v`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, NULL) ON CONFLICT (id) DO UPDATE SET ssn = ${v}`,
  (v) => `INSERT INTO people (id, email) VALUES (1, NULL) ON CONFLICT (id) DO UPDATE SET email = ${v} WHERE false`,
  (v) => `UPDATE people SET email = ${v} WHERE id = -1`,
  (v) => `UPDATE people SET (email, ssn) = (${v}, NULL) WHERE id = -1`,
  (v) => `UPDATE people SET (ssn) = (SELECT ${v}) WHERE id = -1`,
  (v) => `UPDATE people SET email = CASE WHEN id = 1 THEN ${v} ELSE email END WHERE id = -1`,
  (v) => `UPDATE people SET ssn = coalesce(${v}, ssn) WHERE id = -1`,
  (v) => `UPDATE people p SET email = ${v} FROM plain t WHERE t.id = p.id AND false`,
  (v, id) => `INSERT INTO people VALUES (${id}, ${v})`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, DEFAULT), (${id + 1}, ${v})`,
  (v, id) => `INSERT INTO contacts (id, email) VALUES (${id}, ${v}) RETURNING email`,
  (v) => `ALTER TABLE people ALTER COLUMN ssn SET DEFAULT ${v}`,
  (v) => `ALTER TABLE people ADD CONSTRAINT leak_check CHECK (email <> ${v})`,
  (v) => `CREATE INDEX ON people (id) WHERE ssn = ${v}`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, ${v}); INSERT INTO plain (id, t) VALUES (${id}, 'fine')`,
  (v, id) => `INSERT INTO people (email, id) VALUES (${v}, ${id})`,
  (v, id) => `INSERT INTO public.people AS p (id, "email") VALUES (${id}, ${v})`,
  (v, id) => `INSERT INTO PEOPLE (ID, SSN) VALUES (${id}, ${v})`,
  (v, id) => `INSERT INTO people (id, U&"\\0065mail") VALUES (${id}, ${v})`,
  (v) => `UPDATE ONLY people SET email = DEFAULT, ssn = ${v} WHERE id = -1`,
  (v) => `UPDATE people SET "ssn" = ${v} WHERE id = -1`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, NULL) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email || ${v}`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, NULL) ON CONFLICT (id) DO UPDATE SET note = 'x' WHERE people.ssn = ${v}`,
  (v, id) => `MERGE INTO people USING (SELECT ${v} AS e) s ON false WHEN NOT MATCHED THEN INSERT (id, email) VALUES (${id}, s.e)`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, (SELECT ${v}))`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, ARRAY[${v}][1])`,
  (v, id) => `INSERT INTO people (id, email) VALUES (${id}, CASE WHEN true THEN ${v} END)`,
  (v, id) => `INSERT INTO people (id, ssn) VALUES (${id}, ${v}) ON CONFLICT DO NOTHING RETURNING ssn = 'x'`,
  (v, id) => `INSERT INTO people_view (id, email) VALUES (${id}, ${v})`,
  (v) => `UPDATE people_view SET ssn = ${v} WHERE id = -1`,
  (v) => `UPDATE people_snapshot SET ssn = ${v} WHERE id = -1`,
]

/** Extended protocol: the marker as a parameter in a protected place. */
const WITH_PARAMETERS: readonly ((id: number) => string)[] = [
  () => 'SELECT id FROM people WHERE email = $1',
  () => 'SELECT id FROM people WHERE ssn = $1',
  () => 'SELECT id FROM people WHERE lower(email) = $1',
  () => 'SELECT id FROM people WHERE email IN ($1, $1)',
  () => 'SELECT id FROM people WHERE email = ANY(ARRAY[$1])',
  () => 'SELECT id FROM people WHERE email LIKE $1',
  () => 'SELECT id FROM people WHERE email = $1::text',
  () => 'SELECT id FROM people WHERE $1 = ssn',
  () => 'SELECT coalesce(email, $1) FROM people',
  () => 'SELECT id FROM people WHERE email = (SELECT $1)',
  () => 'SELECT id FROM people WHERE email = $1 OR ssn = $1',
  (id) => `INSERT INTO people (id, email) VALUES (${id}, $1)`,
  (id) => `INSERT INTO people (id, ssn) VALUES (${id}, $1::text)`,
  (id) => `INSERT INTO people (id, email) SELECT ${id}, $1`,
  (id) => `INSERT INTO people (id, email) VALUES (${id}, upper($1))`,
  () => 'UPDATE people SET ssn = $1 WHERE id = -1',
  () => 'UPDATE people SET ssn = coalesce($1, ssn) WHERE id = -1',
  () => 'UPDATE people SET email = $1 || $1 WHERE id = -1',
  (id) => `INSERT INTO people (id, email) VALUES (${id}, NULL) ON CONFLICT (id) DO UPDATE SET ssn = $1`,
]

const probe: fc.Arbitrary<Probe> = fc.oneof(
  fc.record({ m: marker, read: fc.nat(READS.length - 1), predicate: fc.nat(PREDICATES.length - 1), spelling: fc.nat(SPELLINGS.length - 1), email: fc.nat(EMAIL_SPELLINGS.length - 1), n: fc.nat(1_000_000) }).map(({ m, read, predicate, spelling, email, n }) => ({
    sql: READS[read]!((c) => PREDICATES[predicate]!(c === 'email' ? EMAIL_SPELLINGS[email]! : c, SPELLINGS[spelling]!(m), m), n),
    marker: m,
  })),
  fc.record({ m: marker, join: fc.nat(JOINS.length - 1), spelling: fc.nat(SPELLINGS.length - 1) }).map(({ m, join, spelling }) => ({ sql: JOINS[join]!(SPELLINGS[spelling]!(m)), marker: m })),
  fc.record({ m: marker, write: fc.nat(WRITES.length - 1), spelling: fc.nat(SPELLINGS.length - 1), id: fc.integer({ min: 1000, max: 1_000_000 }) }).map(({ m, write, spelling, id }) => ({
    sql: WRITES[write]!(SPELLINGS[spelling]!(m), id * 2),
    marker: m,
  })),
  fc.record({ m: marker, form: fc.nat(WITH_PARAMETERS.length - 1), id: fc.integer({ min: 1000, max: 1_000_000 }) }).map(({ m, form, id }) => ({
    sql: WITH_PARAMETERS[form]!(id * 2 + 1),
    values: [m],
    marker: m,
  })),
)

describe('no plaintext reaches PostgreSQL (statements built at random)', () => {
  it(`keeps every marker out of PostgreSQL's log over ${RUNS} statements (seed ${SEED}), and keeps serving`, { timeout: 120_000 }, async () => {
    const probes = fc.sample(probe, { seed: SEED, numRuns: RUNS })
    let client: pg.Client | null = null
    const outcomes = new Map<string, number>()
    for (const { sql, values } of probes) {
      if (client === null) {
        client = new pg.Client({ connectionString: proxyUrl })
        // A session pgveil ends (FATAL) reports its error here too; the next statement gets a new one.
        client.on('error', () => {})
        await client.connect()
      }
      let outcome: string
      try {
        await client.query(sql, values === undefined ? undefined : [...values])
        outcome = 'ok'
      } catch (error) {
        outcome = (error as { code?: string }).code ?? 'no code'
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      // After an error inside BEGIN … the transaction is aborted: end it.
      await client.query('ROLLBACK').catch(() => {
        void client?.end().catch(() => {})
        client = null
      })
    }
    // A positive control: a marker in a place pgveil leaves alone does reach the log.
    const control = `lk${'control'.replace(/[^g-z]/g, 'x')}${fc.sample(marker, { seed: SEED, numRuns: 1 })[0]!.slice(2)}`
    const open = client ?? new pg.Client({ connectionString: proxyUrl })
    if (client === null) await open.connect()
    await open.query(`SELECT t FROM plain WHERE t = '${control}'`)
    await open.end()
    console.log(`leak fuzz: ${RUNS} statements, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`)
    const log = server.readLog()
    expect(log).toContain(control)
    // As written, or hex-encoded as a bytea literal.
    const leaked = probes.filter((p) => log.includes(p.marker) || log.includes(Buffer.from(p.marker).toString('hex')))
    expect(leaked.map((p) => (p.values === undefined ? p.sql : `${p.sql} with $1 = ${p.marker}`))).toEqual([])
    // The statements were not all refused up front: some ran, some pgveil refused, some PostgreSQL refused.
    expect(outcomes.get('ok') ?? 0).toBeGreaterThan(RUNS / 20)
    expect(outcomes.get('PV001') ?? 0).toBeGreaterThan(RUNS / 20)
    // What was stored in protected columns is envelopes only, holding no marker.
    const direct = new pg.Client({ connectionString: server.url(database) })
    await direct.connect()
    try {
      const stored = await direct.query<{ value: Buffer }>('SELECT email AS value FROM people UNION ALL SELECT ssn FROM people UNION ALL SELECT email FROM contacts')
      const values = stored.rows.map((row) => row.value).filter((value) => value !== null)
      expect(values.length).toBeGreaterThan(10)
      expect(values.filter((value) => !value.subarray(0, 3).equals(Buffer.from('pv\x01', 'latin1')))).toEqual([])
      const markers = probes.map((p) => Buffer.from(p.marker))
      expect(values.filter((value) => markers.some((m) => value.includes(m)))).toEqual([])
    } finally {
      await direct.end()
    }
    // Still serving, with the columns still encrypted.
    const check = new pg.Client({ connectionString: proxyUrl })
    await check.connect()
    try {
      expect((await check.query('SELECT email FROM people WHERE id = 1')).rows).toEqual([{ email: 'ann@example.com' }])
    } finally {
      await check.end()
    }
  })
})
