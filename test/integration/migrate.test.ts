/**
 * `pgveil migrate` as operators run it (the compiled CLI in a child process)
 * against a real PostgreSQL, with data written and read through a real pgveil:
 * key rotation, a run killed mid-way and resumed, plaintext converted while a
 * client keeps inserting, --dry-run, and a second run that has nothing to do.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sealValue } from '../../policy/envelope.js'
import { Keyring } from '../../policy/keyring.js'
import { Policy, type ColumnPolicy } from '../../policy/policy.js'
import type { PgveilConfig } from '../../proxy/config.js'
import { parseUpstreamUrl } from '../../proxy/upstream-url.js'
import { eventually } from '../harness/eventually.js'
import { getTestPostgres } from '../harness/pg.js'
import { runProgram } from '../harness/programs.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { protectedColumn } from '../harness/policy.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const CLI = path.join(ROOT, 'dist', 'proxy', 'cli.js')
const server = getTestPostgres()
const scratch = mkdtempSync(path.join(tmpdir(), 'pgveil-migrate-test-'))
const KEY_1 = randomBytes(32)
const KEY_2 = randomBytes(32)
const KEY_ENV = { PGVEIL_KEY_1: KEY_1.toString('base64'), PGVEIL_KEY_2: KEY_2.toString('base64') }
const proxies: TestProxy[] = []
const clients: pg.Client[] = []

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`)
})
afterAll(async () => {
  for (const proxy of proxies) await proxy.close().catch(() => {})
  for (const client of clients) await client.end().catch(() => {})
  rmSync(scratch, { recursive: true, force: true })
})


function keyring(versions: (1 | 2)[], current: 1 | 2): Keyring {
  return new Keyring(new Map(versions.map((v) => [v, v === 1 ? KEY_1 : KEY_2])), current)
}

/** The YAML the CLI reads: the same keys and columns the test's pgveil uses. */
function writeConfig(name: string, url: string, versions: (1 | 2)[], current: 1 | 2, columns: ColumnPolicy[]): string {
  const tables = new Map<string, string[]>()
  for (const c of columns) tables.set(c.table, [...(tables.get(c.table) ?? []), `    ${c.column}: { type: ${c.type} }`])
  const yaml = [
    `upstream: { url: "${url}?sslmode=disable" }`,
    'keys:',
    `  current: ${current}`,
    `  versions: { ${versions.map((v) => `${v}: "env:PGVEIL_KEY_${v}"`).join(', ')} }`,
    'tables:',
    ...[...tables].flatMap(([table, lines]) => [`  ${table}:`, ...lines]),
  ].join('\n')
  const file = path.join(scratch, `${name}.yaml`)
  writeFileSync(file, `${yaml}\n`)
  return file
}

function proxyConfig(url: string, columns: ColumnPolicy[], ring: Keyring): PgveilConfig {
  return {
    source: 'test',
    listen: { host: '127.0.0.1', port: 0, tls: null, maxConnections: 100, maxMessageSize: 64 * 1024 * 1024, drainTimeoutMs: 5_000 },
    upstream: { url: `${url}?sslmode=disable`, target: parseUpstreamUrl(`${url}?sslmode=disable`), connectTimeoutMs: 5_000 },
    mode: 'session',
    admin: null,
    audit: null,
    policy: new Policy(columns),
    keyring: ring,
  }
}

async function startProxy(database: string, columns: ColumnPolicy[], ring: Keyring): Promise<TestProxy> {
  const proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, policy: new Policy(columns), keyring: ring })
  proxies.push(proxy)
  return proxy
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => {})
  await client.connect()
  clients.push(client)
  return client
}

async function setup(name: string, ddl: string): Promise<{ database: string; direct: pg.Client }> {
  const database = await server.createDatabase(name)
  const direct = await connect(server.url(database))
  await direct.query(ddl)
  return { database, direct }
}

/** A client of the proxy, used once and closed. */
async function throughProxy<T extends pg.QueryResultRow>(proxy: TestProxy, database: string, sql: string, values?: unknown[]): Promise<T[]> {
  const client = new pg.Client({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined) })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query<T>(sql, values)).rows
  } finally {
    await client.end()
  }
}

interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

function spawnMigrate(config: string, args: string[]): { child: ChildProcess; stderr: () => string; done: Promise<CliResult> } {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PGVEIL_')) env[name] = value
  const child = spawn(process.execPath, [CLI, 'migrate', '--config', config, ...args], { env: { ...env, ...KEY_ENV }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const done = new Promise<CliResult>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })))
  return { child, stderr: () => stderr, done }
}

function migrate(config: string, args: string[] = []): Promise<CliResult> {
  return spawnMigrate(config, args).done
}

interface JsonReport {
  dryRun: boolean
  columns: Record<string, { migrated: number; left: number; encrypted: number; reencrypted: number; unreadable: number; state?: string; error?: string }>
}

function report(result: CliResult): JsonReport {
  expect(result.stdout.trim().split('\n')).toHaveLength(1)
  return JSON.parse(result.stdout) as JsonReport
}

/** Stored key version of each non-null envelope of a column, counted (read directly). */
async function versionsIn(direct: pg.Client, table: string, col: string): Promise<Record<string, number>> {
  const { rows } = await direct.query<{ v: number; n: string }>(`SELECT get_byte(${col}, 7) + 256 * get_byte(${col}, 6) AS v, count(*) AS n FROM ${table} WHERE ${col} IS NOT NULL GROUP BY 1 ORDER BY 1`)
  return Object.fromEntries(rows.map((r) => [String(r.v), Number(r.n)]))
}

describe('pgveil migrate: key rotation', () => {
  it('re-encrypts values of an old key version so that the old key can be removed; a second run does nothing', async () => {
    const { database, direct } = await setup('migrate rotation', 'CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, email bytea, salary bytea)')
    const columns = [protectedColumn('accounts', 'email', 'text'), protectedColumn('accounts', 'salary', 'numeric')]
    const proxy = await startProxy(database, columns, keyring([1], 1))
    const expected = new Map<string, { email: string | null; salary: string | null }>()
    const write = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        const value = { email: i % 10 === 9 ? null : `user${i}+ünï@example.com`, salary: i % 7 === 6 ? null : `${i * 1000}.${String(i % 100).padStart(2, '0')}` }
        expected.set(`owner${i}`, value)
        await throughProxy(proxy, database, 'INSERT INTO accounts (owner, email, salary) VALUES ($1, $2, $3)', [`owner${i}`, value.email, value.salary])
      }
    }
    const readAll = async (through: TestProxy): Promise<void> => {
      const rows = await throughProxy<{ owner: string; email: string | null; salary: string | null }>(through, database, 'SELECT owner, email, salary FROM accounts ORDER BY id')
      expect(rows).toHaveLength(expected.size)
      for (const row of rows) expect({ email: row.email, salary: row.salary }, row.owner).toEqual(expected.get(row.owner))
    }

    await write(0, 40)
    // Rotate: version 2 becomes current, version 1 still decrypts (hot reload).
    expect(await proxy.applyPolicy(proxyConfig(server.url(database), columns, keyring([1, 2], 2)))).toBe(true)
    await write(40, 80)
    await readAll(proxy)
    expect(await versionsIn(direct, 'accounts', 'email')).toEqual({ 1: 36, 2: 36 })

    // Without migrating, a keyring without version 1 cannot read the old rows.
    const onlyV2 = await startProxy(database, columns, keyring([2], 2))
    await expect(throughProxy(onlyV2, database, 'SELECT email FROM accounts')).rejects.toThrow(/could not decrypt/)

    const config = writeConfig('rotation', server.url(database), [1, 2], 2, columns)
    const first = await migrate(config, ['--json', '--batch-size', '7'])
    expect(first.code, first.stderr).toBe(0)
    expect(report(first).columns).toEqual({
      'public.accounts.email': { migrated: 36, left: 0, encrypted: 0, reencrypted: 36, unreadable: 0 },
      'public.accounts.salary': { migrated: 35, left: 0, encrypted: 0, reencrypted: 35, unreadable: 0 },
    })
    expect(first.stderr).toMatch(/public\.accounts\.email: re-encrypt: 36 done, 0 left, \d+ rows\/s, ETA 0s/)
    expect(await versionsIn(direct, 'accounts', 'email')).toEqual({ 2: 72 })
    expect(await versionsIn(direct, 'accounts', 'salary')).toEqual({ 2: 69 })

    // Version 1 removed from the configuration: everything still reads.
    await readAll(onlyV2)
    expect(await proxy.applyPolicy(proxyConfig(server.url(database), columns, keyring([2], 2)))).toBe(true)
    await readAll(proxy)

    const second = await migrate(writeConfig('rotation-v2', server.url(database), [2], 2, columns), ['--json'])
    expect(second.code, second.stderr).toBe(0)
    expect(report(second).columns['public.accounts.email']).toMatchObject({ migrated: 0, left: 0 })
    expect(report(second).columns['public.accounts.salary']).toMatchObject({ migrated: 0, left: 0 })
  })

  it('leaves values it cannot open as they are, counts them as left and exits 1', async () => {
    // A composite primary key: batches walk (id, lang).
    const { database, direct } = await setup('migrate unreadable', 'CREATE TABLE notes (id int, lang text, body bytea, PRIMARY KEY (id, lang))')
    const body = protectedColumn('notes', 'body', 'text')
    const v1 = keyring([1], 1)
    await direct.query(`INSERT INTO notes VALUES (1, 'en', $1), (2, 'en', $2), (3, 'fr', $3)`, [sealValue(v1, body.binding, Buffer.from('one')), Buffer.from('not an envelope'), sealValue(v1, body.binding, Buffer.from('three'))])
    const before = (await direct.query<{ body: Buffer }>('SELECT body FROM notes WHERE id = 2')).rows[0]!.body
    const result = await migrate(writeConfig('unreadable', server.url(database), [1, 2], 2, [body]), ['--json'])
    expect(result.code).toBe(1)
    expect(report(result).columns['public.notes.body']).toEqual({ migrated: 2, left: 1, encrypted: 0, reencrypted: 2, unreadable: 1 })
    expect((await direct.query<{ body: Buffer }>('SELECT body FROM notes WHERE id = 2')).rows[0]!.body).toEqual(before)
    const proxy = await startProxy(database, [body], keyring([2], 2))
    expect(await throughProxy(proxy, database, 'SELECT body FROM notes WHERE id <> 2 ORDER BY id')).toEqual([{ body: 'one' }, { body: 'three' }])
  })
})

describe('pgveil migrate: interrupted', () => {
  const ROWS = 12_000

  async function killMidway(config: string, direct: pg.Client, progressSql: string): Promise<number> {
    const running = spawnMigrate(config, ['--batch-size', '40'])
    let done = 0
    await eventually(async () => {
      done = Number((await direct.query<{ n: string }>(progressSql)).rows[0]!.n)
      return done >= 400 || running.child.exitCode !== null
    }, 60_000, 20)
    running.child.kill('SIGKILL')
    const result = await running.done
    expect(result.code, `migrate finished before it could be killed:\n${running.stderr()}`).toBeNull()
    // Its backend may still be finishing what it was sent: count once it is gone.
    await eventually(async () => (await direct.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgveil migrate'`)).rowCount === 0)
    return Number((await direct.query<{ n: string }>(progressSql)).rows[0]!.n)
  }

  it('re-encryption killed with SIGKILL and run again: every row is there and reads', async () => {
    const { database, direct } = await setup('migrate killed reencrypt', 'CREATE TABLE big (id int PRIMARY KEY, secret bytea)')
    const secret = protectedColumn('big', 'secret', 'text')
    const v1 = keyring([1], 1)
    const ids = Array.from({ length: ROWS }, (_, i) => i + 1)
    await direct.query('INSERT INTO big SELECT * FROM unnest($1::int[], $2::bytea[])', [ids, ids.map((i) => sealValue(v1, secret.binding, Buffer.from(`secret-${i}`)))])
    const config = writeConfig('killed-reencrypt', server.url(database), [1, 2], 2, [secret])

    const doneAtKill = await killMidway(config, direct, `SELECT count(*) AS n FROM big WHERE get_byte(secret, 7) = 2`)
    expect(doneAtKill).toBeGreaterThan(0)
    expect(doneAtKill).toBeLessThan(ROWS)
    // Every row is whole: version 1 or version 2, and both read through pgveil.
    expect(await versionsIn(direct, 'big', 'secret')).toEqual({ 1: ROWS - doneAtKill, 2: doneAtKill })
    const both = await startProxy(database, [secret], keyring([1, 2], 2))
    const midway = await throughProxy<{ id: number; secret: string }>(both, database, 'SELECT id, secret FROM big ORDER BY id')
    expect(midway.every((r) => r.secret === `secret-${r.id}`)).toBe(true)

    const rerun = await migrate(config, ['--json', '--batch-size', '500'])
    expect(rerun.code, rerun.stderr).toBe(0)
    expect(report(rerun).columns['public.big.secret']).toMatchObject({ migrated: ROWS - doneAtKill, left: 0 })
    const onlyV2 = await startProxy(database, [secret], keyring([2], 2))
    const rows = await throughProxy<{ id: number; secret: string }>(onlyV2, database, 'SELECT id, secret FROM big ORDER BY id')
    expect(rows).toHaveLength(ROWS)
    expect(rows.filter((r) => r.secret !== `secret-${r.id}`)).toEqual([])
  })

  it('plaintext conversion killed with SIGKILL and run again: every row is there, encrypted, and reads', async () => {
    const { database, direct } = await setup('migrate killed convert', 'CREATE TABLE big (k text, n int NOT NULL, code integer NOT NULL)')
    // No primary key: the table is walked by ctid.
    await direct.query(`INSERT INTO big SELECT 'k' || i, i, i * 3 FROM generate_series(1, ${ROWS}) AS i`)
    const code = protectedColumn('big', 'code', 'integer')
    const config = writeConfig('killed-convert', server.url(database), [1], 1, [code])

    const doneAtKill = await killMidway(
      config,
      direct,
      `SELECT CASE WHEN (SELECT atttypid FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'code') = 'bytea'::regtype THEN (SELECT count(*) FROM big WHERE code IS NOT NULL) ELSE 0 END AS n`,
    )
    expect(doneAtKill).toBeGreaterThan(0)
    expect(doneAtKill).toBeLessThan(ROWS)
    // Each row holds its value in exactly one of the two columns.
    const split = await direct.query<{ both: string; neither: string }>(
      `SELECT count(*) FILTER (WHERE code IS NOT NULL AND code__pgveil_plain IS NOT NULL) AS both, count(*) FILTER (WHERE code IS NULL AND code__pgveil_plain IS NULL) AS neither FROM big`,
    )
    expect(split.rows[0]).toEqual({ both: '0', neither: '0' })

    const rerun = await migrate(config, ['--json'])
    expect(rerun.code, rerun.stderr).toBe(0)
    expect(report(rerun).columns['public.big.code']).toMatchObject({ migrated: ROWS - doneAtKill, left: 0 })
    const proxy = await startProxy(database, [code], keyring([1], 1))
    const rows = await throughProxy<{ n: number; code: number }>(proxy, database, 'SELECT n, code FROM big')
    expect(rows).toHaveLength(ROWS)
    expect(rows.filter((r) => r.code !== r.n * 3)).toEqual([])
    const { rows: columns } = await direct.query<{ attname: string; type: string; attnotnull: boolean }>(
      `SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull FROM pg_attribute WHERE attrelid = 'big'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    )
    expect(columns).toEqual([
      { attname: 'k', type: 'text', attnotnull: false },
      { attname: 'n', type: 'integer', attnotnull: true },
      { attname: 'code', type: 'bytea', attnotnull: true },
    ])
  })
})

describe('pgveil migrate: plaintext to encrypted', () => {
  it('converts a populated table while a client keeps inserting through pgveil; nothing is lost and no plaintext remains', async () => {
    const INITIAL = 3_000
    const { database, direct } = await setup(
      'migrate convert live',
      `CREATE TABLE people (id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL DEFAULT 'nobody@example.invalid', age integer);
       CREATE UNIQUE INDEX people_email ON people (email);
       INSERT INTO people (name, email, age) SELECT 'person' || i, 'zq' || i || '.initial@plain.example', CASE WHEN i % 5 = 0 THEN NULL ELSE i % 90 END FROM generate_series(1, ${INITIAL}) AS i;`,
    )
    const columns = [protectedColumn('people', 'email', 'text'), protectedColumn('people', 'age', 'integer')]
    const expected = new Map<string, { email: string; age: number | null }>()
    for (let i = 1; i <= INITIAL; i++) expected.set(`person${i}`, { email: `zq${i}.initial@plain.example`, age: i % 5 === 0 ? null : i % 90 })
    const proxy = await startProxy(database, columns, keyring([1], 1))

    // The other client: inserts one row after another through pgveil, retrying a row
    // PostgreSQL refuses (before the conversion the column is not bytea yet).
    const inserter = await connect(proxy.url(database, server.superuser, server.superuserPassword ?? undefined))
    let stop = false
    let refused = 0
    const insertedAt: number[] = []
    const inserting = (async () => {
      for (let i = 1; !stop; i++) {
        const row = { name: `live${i}`, email: `zq${i}.live@plain.example`, age: i % 3 === 0 ? null : i % 70 }
        for (;;) {
          try {
            await inserter.query('INSERT INTO people (name, email, age) VALUES ($1, $2, $3)', [row.name, row.email, row.age])
            break
          } catch (error) {
            expect((error as { code?: string }).code).toBe('42804')
            refused++
            await new Promise((resolve) => setTimeout(resolve, 5))
          }
        }
        expected.set(row.name, { email: row.email, age: row.age })
        insertedAt.push(Date.now())
      }
    })()

    const started = Date.now()
    const result = await migrate(writeConfig('convert-live', server.url(database), [1], 1, columns), ['--json', '--batch-size', '25'])
    const finished = Date.now()
    await eventually(() => insertedAt.some((t) => t > finished), 10_000)
    stop = true
    await inserting

    expect(result.code, result.stderr).toBe(0)
    const counts = report(result).columns
    expect(counts['public.people.email']!.left).toBe(0)
    expect(counts['public.people.age']!.left).toBe(0)
    // The initial rows were encrypted by the migration; rows inserted during it by pgveil.
    expect(counts['public.people.email']!.encrypted).toBeGreaterThan(0)
    expect(counts['public.people.email']!.encrypted).toBeLessThanOrEqual(INITIAL)
    expect(insertedAt.filter((t) => t > started && t < finished).length, `inserts that succeeded while migrate ran (${refused} refused before the conversion)`).toBeGreaterThan(10)
    expect(result.stderr).toMatch(/public\.people\.email: encrypt plaintext: \d+ done, 0 left/)

    const rows = await throughProxy<{ name: string; email: string; age: number | null }>(proxy, database, 'SELECT name, email, age FROM people')
    expect(rows).toHaveLength(expected.size)
    expect(rows.filter((r) => JSON.stringify({ email: r.email, age: r.age }) !== JSON.stringify(expected.get(r.name)))).toEqual([])

    // The columns are bytea, NOT NULL kept, the plaintext column, its index and the trigger gone.
    const { rows: layout } = await direct.query<{ attname: string; type: string; attnotnull: boolean }>(
      `SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull FROM pg_attribute WHERE attrelid = 'people'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attname`,
    )
    expect(layout).toEqual([
      { attname: 'age', type: 'bytea', attnotnull: false },
      { attname: 'email', type: 'bytea', attnotnull: true },
      { attname: 'id', type: 'bigint', attnotnull: true },
      { attname: 'name', type: 'text', attnotnull: true },
    ])
    expect((await direct.query(`SELECT 1 FROM pg_trigger WHERE tgrelid = 'people'::regclass`)).rowCount).toBe(0)
    expect((await direct.query(`SELECT 1 FROM pg_proc WHERE proname LIKE 'pgveil_migrate_%'`)).rowCount).toBe(0)
    expect((await direct.query(`SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = 'people'::regclass`)).rows).toEqual([{ name: 'people_pkey' }])

    // No plaintext anywhere in a dump of the database.
    const dump = await runProgram('pg_dump', ['--no-owner', server.url(database)])
    expect(dump.status, dump.stderr).toBe(0)
    expect(dump.stdout).toContain('person1\t')
    expect(dump.stdout).not.toMatch(/plain\.example/)

    // Writes after the conversion: NOT NULL is back in force.
    await expect(throughProxy(proxy, database, 'INSERT INTO people (name, email) VALUES ($1, NULL)', ['nobody'])).rejects.toThrow(/null value in column "email"/)

    const again = await migrate(writeConfig('convert-live', server.url(database), [1], 1, columns), ['--json'])
    expect(again.code, again.stderr).toBe(0)
    expect(report(again).columns['public.people.email']).toMatchObject({ migrated: 0, left: 0 })
  })

  it('stops at a value its policy type refuses, naming the row and not the value, and resumes once it is corrected', async () => {
    const { database, direct } = await setup('migrate bad value', `CREATE TABLE scores (id int PRIMARY KEY, score text); INSERT INTO scores SELECT i, (i * 2)::text FROM generate_series(1, 50) AS i; UPDATE scores SET score = 'zqbad' WHERE id = 30;`)
    const score = protectedColumn('scores', 'score', 'integer')
    const config = writeConfig('bad-value', server.url(database), [1], 1, [score])
    const failed = await migrate(config, ['--batch-size', '10'])
    expect(failed.code).toBe(1)
    expect(failed.stderr).toContain('column "public.scores.score", row (30): the stored value is not valid input for type integer (SQLSTATE 22P02)')
    expect(failed.stdout).toMatch(/public\.scores\.score: migrated 20, left 30/)
    expect(failed.stdout + failed.stderr).not.toContain('zqbad')
    // Nothing lost: the batch with the bad row was rolled back, its rows kept their plaintext.
    expect((await direct.query(`SELECT count(*) FILTER (WHERE score IS NOT NULL) AS enc, count(*) FILTER (WHERE score__pgveil_plain IS NOT NULL) AS plain FROM scores`)).rows[0]).toEqual({ enc: '20', plain: '30' })

    // While converting, the trigger refuses a value that is not an envelope and plaintext for a converted row.
    await expect(direct.query(`UPDATE scores SET score = 'zq'::bytea WHERE id = 31`)).rejects.toThrow(/value for encrypted column "score" is not a pgveil envelope/)
    await expect(direct.query(`UPDATE scores SET score__pgveil_plain = '4' WHERE id = 2`)).rejects.toThrow(/holds plaintext being encrypted by pgveil migrate: write "score" instead/)
    await direct.query(`UPDATE scores SET score__pgveil_plain = '60' WHERE id = 30`)
    const resumed = await migrate(config, ['--json'])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(report(resumed).columns['public.scores.score']).toMatchObject({ migrated: 30, left: 0 })
    const proxy = await startProxy(database, [score], keyring([1], 1))
    const rows = await throughProxy<{ id: number; score: number }>(proxy, database, 'SELECT id, score FROM scores ORDER BY id')
    expect(rows).toEqual(Array.from({ length: 50 }, (_, i) => ({ id: i + 1, score: (i + 1) * 2 })))
  })

  it('refuses a column a view depends on, naming it, and changes nothing', async () => {
    const { database, direct } = await setup('migrate blocked', `CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@b.example'); CREATE VIEW emails AS SELECT email FROM users;`)
    const result = await migrate(writeConfig('blocked', server.url(database), [1], 1, [protectedColumn('users', 'email', 'text')]))
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/view emails depends on column "public\.users\.email": drop it first/)
    expect((await direct.query('SELECT email FROM users')).rows).toEqual([{ email: 'a@b.example' }])
  })
})

describe('pgveil migrate --dry-run', () => {
  it('prints the plan and changes nothing', async () => {
    const { database, direct } = await setup('migrate dry run', `CREATE TABLE t (id int PRIMARY KEY, secret bytea, note text NOT NULL DEFAULT 'x'); CREATE INDEX t_note ON t (note);`)
    const secret = protectedColumn('t', 'secret', 'text')
    const v1 = keyring([1], 1)
    for (let i = 1; i <= 30; i++) await direct.query('INSERT INTO t VALUES ($1, $2, $3)', [i, sealValue(v1, secret.binding, Buffer.from(`s${i}`)), `note ${i}`])
    const snapshot = async (): Promise<unknown> => ({
      data: (await direct.query(`SELECT md5(string_agg(t::text, '|' ORDER BY id)) AS h FROM t`)).rows,
      columns: (await direct.query(`SELECT attname, atttypid, attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 ORDER BY attnum`)).rows,
      objects: (await direct.query(`SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace`)).rows,
      triggers: (await direct.query(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 't'::regclass`)).rows,
    })
    const before = await snapshot()
    const config = writeConfig('dry-run', server.url(database), [1, 2], 2, [secret, protectedColumn('t', 'note', 'text')])

    const text = await migrate(config, ['--dry-run'])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toContain('nothing was changed')
    expect(text.stdout).toContain('column public.t.secret (text): bytea (encrypted)')
    expect(text.stdout).toContain('re-encrypt 30 values (30 under key version 1) to key version 2')
    expect(text.stdout).toContain('column public.t.note (text): plaintext, 30 rows to encrypt')
    expect(text.stdout).toContain('ALTER TABLE "public"."t" RENAME COLUMN "note" TO "note__pgveil_plain";')
    expect(text.stdout).toContain("DEFAULT 'x'::text is not kept")
    expect(text.stdout).toContain('index t_note on the plaintext is dropped')

    const json = await migrate(config, ['--dry-run', '--json'])
    expect(json.code, json.stderr).toBe(0)
    const plan = report(json)
    expect(plan.dryRun).toBe(true)
    expect(plan.columns['public.t.secret']).toMatchObject({ migrated: 0, left: 30, state: 'bytea' })
    expect(plan.columns['public.t.note']).toMatchObject({ migrated: 0, left: 30, state: 'plaintext' })

    expect(await snapshot()).toEqual(before)
    expect(await versionsIn(direct, 't', 'secret')).toEqual({ 1: 30 })
  })

  it('refuses bad options with exit 2', async () => {
    const database = await server.createDatabase('migrate usage')
    const config = writeConfig('usage', server.url(database), [1], 1, [protectedColumn('t', 'secret', 'text')])
    for (const args of [['--batch-size', '0'], ['--batch-size', 'many'], ['--lock-timeout', '-1'], ['--frobnicate']]) {
      const result = await migrate(config, args)
      expect(result.code, args.join(' ')).toBe(2)
      expect(result.stderr).toMatch(/batch-size|lock-timeout|unknown option/)
    }
  })
})
