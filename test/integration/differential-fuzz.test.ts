/**
 * Encrypted columns answer as plaintext ones would: the same statements, built at
 * random, run through pgveil on tables with protected columns and straight in
 * PostgreSQL on twin tables holding the plaintext, and their results must be equal.
 * Writes (INSERT, UPDATE, DELETE, ON CONFLICT, literals and parameters) go to both
 * sides; reads compare selected rows, counts, GROUP BY, DISTINCT and joins in one
 * index domain. A read pgveil refuses (PV001) is counted, not compared.
 *
 * A fixed seed makes a failure reproducible; DIFF_FUZZ_SEED and DIFF_FUZZ_RUNS explore.
 */
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring } from '../../policy/keyring.js'
import { Policy, type ColumnPolicy } from '../../policy/policy.js'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { protectedColumn } from '../harness/policy.js'

const server = getTestPostgres()
const SEED = Number(process.env.DIFF_FUZZ_SEED ?? 20261123)
const RUNS = Number(process.env.DIFF_FUZZ_RUNS ?? 400)
let database: string
let proxy: TestProxy
let viaPgveil: pg.Client
let direct: pg.Client


beforeAll(async () => {
  database = await server.createDatabase('differential')
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query(`
    CREATE TABLE people (id int PRIMARY KEY, email bytea, ssn bytea, note text);
    CREATE TABLE contacts (id int PRIMARY KEY, email bytea);
    CREATE TABLE people_plain (id int PRIMARY KEY, email text, ssn text, note text);
    CREATE TABLE contacts_plain (id int PRIMARY KEY, email text);
    CREATE TABLE measures (id int PRIMARY KEY, n bytea, amount bytea, day bytea, flag bytea, at bytea, ref bytea, doc bytea);
    CREATE TABLE measures_plain (id int PRIMARY KEY, n integer, amount numeric, day date, flag boolean, at timestamptz, ref uuid, doc jsonb);
  `)
  const email = { search: 'equality', indexDomain: 'index:email' } as const
  const searchable = (name: string, type: string): ColumnPolicy => protectedColumn('measures', name, type, { search: 'equality', indexDomain: `public.measures.${name}` })
  const policy = new Policy([
    protectedColumn('people', 'email', 'text', email),
    protectedColumn('people', 'ssn'),
    protectedColumn('contacts', 'email', 'text', email),
    searchable('n', 'integer'),
    searchable('amount', 'numeric'),
    searchable('day', 'date'),
    searchable('flag', 'boolean'),
    searchable('at', 'timestamptz'),
    searchable('ref', 'uuid'),
    searchable('doc', 'jsonb'),
  ])
  proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, policy, keyring: new Keyring(new Map([[1, randomBytes(32)]]), 1, randomBytes(32)) })
  viaPgveil = new pg.Client({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined) })
  await viaPgveil.connect()
})

afterAll(async () => {
  await viaPgveil?.end()
  await direct?.end()
  await proxy?.close()
})

/** Values that collide, differ only in case, quote, escape, hold Unicode or nothing at all. */
// The plaintext side writes them straight to PostgreSQL, so they are kept apart from the values other suites look for in its log.
const VALUES: readonly (string | null)[] = ['dora.twin@example.org', 'Dora.Twin@Example.org', 'emil.twin@example.org', '', 'ünïcødé.twin@例え.jp', "o'neil.twin@example.org", 'back\\slash.twin', ' dora.twin@example.org', null]
const value = fc.constantFrom(...VALUES)
const note = fc.constantFrom('x', 'y', null)
const id = fc.integer({ min: 1, max: 30 })

function literal(v: string | null): string {
  return v === null ? 'NULL' : `'${v.replace(/'/g, "''")}'`
}

/** A statement for both sides: `{people}` and `{contacts}` name each side's table. */
interface Statement {
  readonly sql: string
  readonly params?: readonly unknown[]
  /** Rows may come in any order (GROUP BY, DISTINCT): compared sorted. */
  readonly unordered?: true
  /** Numeric values compared by value: of equal values written with other scales (1.5, 1.50), DISTINCT keeps whichever it meets. */
  readonly byValue?: true
}

const predicate: fc.Arbitrary<string> = fc.letrec<{ p: string }>((tie) => ({
  p: fc.oneof(
    { depthSize: 'small' },
    value.map((v) => (v === null ? 'email IS NULL' : `email = ${literal(v)}`)),
    value.filter((v) => v !== null).map((v) => `${literal(v)} = email`),
    value.filter((v) => v !== null).map((v) => `email <> ${literal(v)}`),
    fc.array(value.filter((v) => v !== null), { minLength: 1, maxLength: 3 }).map((vs) => `email IN (${vs.map(literal).join(', ')})`),
    fc.constantFrom('email IS NOT NULL', 'ssn IS NULL', 'ssn IS NOT NULL', 'note IS NULL'),
    id.map((k) => `id > ${k}`),
    note.filter((n) => n !== null).map((n) => `note = ${literal(n)}`),
    fc.tuple(tie('p'), tie('p')).map(([a, b]) => `(${a} AND ${b})`),
    fc.tuple(tie('p'), tie('p')).map(([a, b]) => `(${a} OR ${b})`),
    tie('p').map((a) => `NOT (${a})`),
  ),
})).p

const write: fc.Arbitrary<Statement> = fc.oneof(
  fc.tuple(id, value, value, note).map(([k, e, s, n]) => ({ sql: `INSERT INTO {people} (id, email, ssn, note) VALUES (${k}, ${literal(e)}, ${literal(s)}, ${literal(n)}) ON CONFLICT DO NOTHING` })),
  fc.tuple(id, value, value, note).map(([k, e, s, n]) => ({ sql: 'INSERT INTO {people} (id, email, ssn, note) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', params: [k, e, s, n] })),
  fc.tuple(id, value).map(([k, e]) => ({ sql: `INSERT INTO {people} (id, email) VALUES (${k}, ${literal(e)}) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email` })),
  fc.tuple(id, value).map(([k, e]) => ({ sql: `INSERT INTO {contacts} (id, email) VALUES (${k}, ${literal(e)}) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email` })),
  fc.tuple(value, predicate).map(([e, p]) => ({ sql: `UPDATE {people} SET email = ${literal(e)} WHERE ${p}` })),
  fc.tuple(value, id).map(([s, k]) => ({ sql: 'UPDATE {people} SET ssn = $1 WHERE id = $2', params: [s, k] })),
  fc.tuple(note, predicate).map(([n, p]) => ({ sql: `UPDATE {people} SET note = ${literal(n)} WHERE ${p}` })),
  predicate.map((p) => ({ sql: `DELETE FROM {people} WHERE ${p}` })),
)

const read: fc.Arbitrary<Statement> = fc.oneof(
  fc.tuple(fc.constantFrom('id', 'id, email', 'id, email, ssn, note', 'email, note, id', '*'), predicate).map(([cols, p]) => ({ sql: `SELECT ${cols} FROM {people} WHERE ${p} ORDER BY id` })),
  fc.tuple(value.filter((v) => v !== null), predicate).map(([v, p]) => ({ sql: `SELECT id, ssn FROM {people} WHERE email = $1 AND ${p} ORDER BY id`, params: [v] })),
  fc.array(value.filter((v) => v !== null), { minLength: 1, maxLength: 3 }).map((vs) => ({ sql: 'SELECT id FROM {people} WHERE email = ANY($1) ORDER BY id', params: [vs] })),
  predicate.map((p) => ({ sql: `SELECT count(*)::int AS n, count(email)::int AS e, count(DISTINCT email)::int AS d FROM {people} WHERE ${p}` })),
  predicate.map((p) => ({ sql: `SELECT email, count(*)::int AS n FROM {people} WHERE ${p} GROUP BY email`, unordered: true as const })),
  predicate.map((p) => ({ sql: `SELECT DISTINCT email FROM {people} WHERE ${p}`, unordered: true as const })),
  fc.constant({ sql: 'SELECT p.id, c.id AS contact, c.email FROM {people} p JOIN {contacts} c ON c.email = p.email ORDER BY p.id, c.id' }),
  fc.constant({ sql: 'SELECT c.id FROM {contacts} c WHERE c.email IN (SELECT email FROM {people} WHERE id < 10) ORDER BY c.id' }),
  predicate.map((p) => ({ sql: `SELECT c.id FROM {contacts} c WHERE c.email NOT IN (SELECT email FROM {people} WHERE ${p}) ORDER BY c.id` })),
  predicate.map((p) => ({ sql: `SELECT id, email FROM {people} WHERE email = ANY (SELECT DISTINCT email FROM {contacts}) AND ${p} ORDER BY id` })),
  predicate.map((p) => ({ sql: `SELECT id FROM {people} WHERE email <> ALL (SELECT email FROM {contacts} c WHERE c.id = {people}.id) AND ${p} ORDER BY id` })),
  predicate.map((p) => ({ sql: `SELECT c.id, c.email FROM {contacts} c WHERE EXISTS (SELECT 1 FROM {people} p WHERE p.email = c.email AND ${p}) ORDER BY c.id` })),
  predicate.map((p) => ({ sql: `SELECT count(ssn)::int AS s, count(email) FILTER (WHERE id > 5)::int AS e FROM {people} WHERE ${p}` })),
)

const step = fc.oneof({ weight: 2, arbitrary: write.map((s) => ({ kind: 'write' as const, ...s })) }, { weight: 3, arbitrary: read.map((s) => ({ kind: 'read' as const, ...s })) })

/**
 * Typed searchable columns, each value in spellings PostgreSQL takes as equal (`7`,
 * `'007'`; `1.5`, `1.50`; `t`, `yes`): the index must find them all, and what
 * comes back must print as PostgreSQL prints it.
 */
const TYPED: Readonly<Record<'n' | 'amount' | 'day' | 'flag' | 'at' | 'ref' | 'doc', readonly (string | null)[]>> = {
  n: ['7', "'007'", "'+7'", "' 7 '", '0', "'-0'", '2147483647', '-2147483648', '-7', 'NULL'],
  amount: ['1.5', "'1.50'", '1.500', '-1.5', '0', "'-0'", '0.000', '10', "'1e1'", '100.0', "'NaN'", "'Infinity'", "'-Infinity'", 'NULL'],
  day: ["'2024-02-29'", "'2024-2-29'", "'1999-12-31'", "'infinity'", "'-infinity'", "'epoch'", "'1970-01-01'", "'0044-03-15 BC'", 'NULL'],
  flag: ["'true'", "'t'", "'yes'", "'on'", "'1'", "'TRUE'", "' true '", "'false'", "'f'", "'no'", "'off'", "'0'", 'true', 'false', 'NULL'],
  at: ["'2024-03-10 12:00:00+00'", "'2024-03-10T12:00:00Z'", "'2024-03-10 13:00:00+01'", "'2024-03-10 07:00:00-05'", "'2024-03-10 12:00:00.000+00'", "'2024-03-10 12:00:00.5+00'", "'2024-03-10 12:00:00.500000+00'", "'infinity'", 'NULL'],
  ref: ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", "'a0eebc999c0b4ef8bb6d6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'", 'NULL'],
  doc: [`'{"a": 1, "b": [true, null]}'`, `'{"b":[true,null],"a":1}'`, `'{"a": 1.0, "b": [true, null]}'`, `'{"a": 1.00}'`, `'{"a": 1}'`, `'{"a": 1e0}'`, `'[]'`, `'"x"'`, `'null'`, `'{"a": {"a": 1}}'`, 'NULL'],
}
const typedColumn = fc.constantFrom(...(Object.keys(TYPED) as (keyof typeof TYPED)[]))
const typedValue = (c: keyof typeof TYPED): fc.Arbitrary<string> => fc.constantFrom(...(TYPED[c] as string[]))
const typedStep: fc.Arbitrary<Statement & { kind: 'read' | 'write' }> = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 40 }), typedColumn).chain(([k, c]) => typedValue(c).map((v) => ({ kind: 'write' as const, sql: `INSERT INTO {measures} (id, ${c}) VALUES (${k}, ${v}) ON CONFLICT (id) DO UPDATE SET ${c} = EXCLUDED.${c}` }))),
  typedColumn.chain((c) => typedValue(c).map((v) => ({ kind: 'read' as const, sql: v === 'NULL' ? `SELECT id, ${c} FROM {measures} WHERE ${c} IS NULL ORDER BY id` : `SELECT id, ${c} FROM {measures} WHERE ${c} = ${v} ORDER BY id` }))),
  typedColumn.chain((c) => fc.array(typedValue(c).filter((v) => v !== 'NULL'), { minLength: 1, maxLength: 3 }).map((vs) => ({ kind: 'read' as const, sql: `SELECT id, ${c} FROM {measures} WHERE ${c} IN (${vs.join(', ')}) ORDER BY id` }))),
  typedColumn.chain((c) => typedValue(c).filter((v) => v !== 'NULL').map((v) => ({ kind: 'read' as const, sql: `SELECT id FROM {measures} WHERE ${c} <> ${v} ORDER BY id` }))),
  typedColumn.map((c) => ({ kind: 'read' as const, sql: `SELECT count(DISTINCT ${c})::int AS d, count(${c})::int AS n FROM {measures}` })),
  // The same values as parameters (text format), one and as an array.
  typedColumn.chain((c) => typedValue(c).filter((v) => v !== 'NULL').map((v) => ({ kind: 'read' as const, sql: `SELECT id, ${c} FROM {measures} WHERE ${c} = $1 ORDER BY id`, params: [unquote(v)] }))),
  typedColumn.chain((c) => fc.array(typedValue(c).filter((v) => v !== 'NULL'), { minLength: 1, maxLength: 3 }).map((vs) => ({ kind: 'read' as const, sql: `SELECT id FROM {measures} WHERE ${c} = ANY($1) ORDER BY id`, params: [vs.map(unquote)] }))),
  fc.tuple(fc.integer({ min: 1, max: 40 }), typedColumn).chain(([k, c]) => typedValue(c).map((v) => ({ kind: 'write' as const, sql: `UPDATE {measures} SET ${c} = $1 WHERE id = $2`, params: [v === 'NULL' ? null : unquote(v), k] }))),
  typedColumn.map((c) => ({ kind: 'read' as const, sql: `SELECT DISTINCT ${c} FROM {measures}`, unordered: true as const, byValue: true as const })),
)

/** A literal as the text a parameter carries: `'007'` → `007`. */
function unquote(literal: string): string {
  return literal.startsWith("'") ? literal.slice(1, -1).replace(/''/g, "'") : literal
}

async function run(client: pg.Client, statement: Statement, plain: boolean): Promise<{ rows?: unknown[]; code?: string }> {
  const sql = statement.sql.replace(/\{(people|contacts|measures)\}/g, (_match, table: string) => (plain ? `${table}_plain` : table))
  try {
    const result = await client.query(sql, statement.params === undefined ? undefined : [...statement.params])
    const rows = result.rows.map((row: Record<string, unknown>) => JSON.stringify(statement.byValue === true ? Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'string' && /^-?[0-9.]+$/.test(v) ? String(Number(v)) : v])) : row))
    return { rows: statement.unordered === true ? rows.sort() : rows }
  } catch (error) {
    return { code: (error as { code?: string }).code ?? 'no code' }
  }
}

describe('encrypted columns answer as plaintext columns (statements built at random)', () => {
  it(`gives the results the plaintext twin gives over ${RUNS} statements (seed ${SEED})`, { timeout: 120_000 }, async () => {
    const { counts, mismatches } = await compare(fc.sample(step, { seed: SEED, numRuns: RUNS }))
    console.log(`differential fuzz: ${JSON.stringify(counts)}`)
    expect(mismatches).toEqual([])
    // Most reads were compared, many of them with rows, and the tables ended up equal.
    expect(counts.reads).toBeGreaterThan(counts.refused)
    expect(counts.readsWithRows).toBeGreaterThan(RUNS / 10)
    const whole = { sql: 'SELECT * FROM {people} ORDER BY id' }
    expect(await run(viaPgveil, whole, false)).toEqual(await run(direct, whole, true))
    expect(await run(viaPgveil, { sql: 'SELECT * FROM {contacts} ORDER BY id' }, false)).toEqual(await run(direct, { sql: 'SELECT * FROM {contacts} ORDER BY id' }, true))
  })

  it(`finds integer, numeric, date and boolean values by equality in every spelling PostgreSQL takes as equal, over ${RUNS} statements (seed ${SEED})`, { timeout: 120_000 }, async () => {
    const { counts, mismatches } = await compare(fc.sample(typedStep, { seed: SEED, numRuns: RUNS }))
    console.log(`differential fuzz (typed): ${JSON.stringify(counts)}`)
    expect(mismatches).toEqual([])
    expect(counts.refused).toBe(0)
    expect(counts.readsWithRows).toBeGreaterThan(RUNS / 10)
    const whole = { sql: 'SELECT * FROM {measures} ORDER BY id' }
    expect(await run(viaPgveil, whole, false)).toEqual(await run(direct, whole, true))
  })
})

/** Runs each statement through pgveil and on the plaintext twin; returns what differed. */
async function compare(steps: readonly (Statement & { kind: 'read' | 'write' })[]): Promise<{ counts: { writes: number; reads: number; readsWithRows: number; refused: number }; mismatches: string[] }> {
  const counts = { writes: 0, reads: 0, readsWithRows: 0, refused: 0 }
  const mismatches: string[] = []
  for (const statement of steps) {
    const encrypted = await run(viaPgveil, statement, false)
    if (encrypted.code === 'PV001') {
      // Refused before it reached PostgreSQL: the plaintext side does not run it either.
      counts.refused++
      continue
    }
    if (statement.kind === 'write') {
      const plaintext = await run(direct, statement, true)
      counts.writes++
      // A write must do the same on both sides (it succeeds on both, or fails with the same code).
      if (encrypted.code !== plaintext.code) mismatches.push(`${statement.sql} ${JSON.stringify(statement.params ?? [])}: pgveil ${encrypted.code ?? 'ok'}, plaintext ${plaintext.code ?? 'ok'}`)
      continue
    }
    const plaintext = await run(direct, statement, true)
    counts.reads++
    if ((encrypted.rows?.length ?? 0) > 0) counts.readsWithRows++
    if (JSON.stringify(encrypted) !== JSON.stringify(plaintext)) mismatches.push(`${statement.sql} ${JSON.stringify(statement.params ?? [])}:\n  pgveil    ${JSON.stringify(encrypted)}\n  plaintext ${JSON.stringify(plaintext)}`)
  }
  return { counts, mismatches }
}
