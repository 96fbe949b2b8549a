/**
 * Key rotation and index key rotation without downtime, through the real
 * `pgveil start` with its configuration hot-reloaded, and `pgveil check` guarding
 * the edits that would lose data: rows written under v1 keep decrypting and being
 * found after v2 becomes current; a pool's prepared statements keep working
 * across rotations; removing a version that still has rows is refused; after
 * `pgveil migrate --reindex`, v1 goes and every row still reads and is found.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { getTestPostgres } from '../harness/pg.js'
import { freePort } from '../harness/ports.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const CLI = path.join(ROOT, 'dist/proxy/cli.js')
const server = getTestPostgres()
const dir = mkdtempSync(path.join(tmpdir(), 'pgveil-rotation-'))
const configFile = path.join(dir, 'pgveil.yaml')
const KEYS: Record<string, string> = {
  PGVEIL_KEY_1: Buffer.alloc(32, 11).toString('base64'),
  PGVEIL_KEY_2: Buffer.alloc(32, 12).toString('base64'),
  PGVEIL_INDEX_KEY_1: Buffer.alloc(32, 21).toString('base64'),
  PGVEIL_INDEX_KEY_2: Buffer.alloc(32, 22).toString('base64'),
}
let database: string
let direct: pg.Client

function env(): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...KEYS }
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PGVEIL_')) out[name] = value
  return out
}

function config(port: number, keys: string, tables = '    email: { type: text, search: equality, normalize: lowercase }\n    balance: { type: numeric }\n'): string {
  return `listen: { host: 127.0.0.1, port: ${port} }\nupstream: { url: "${server.url(database)}?sslmode=disable" }\nkeys:\n${keys}tables:\n  accounts:\n${tables}`
}

const V1 = '  current: 1\n  versions: { 1: "env:PGVEIL_KEY_1" }\n  index: "env:PGVEIL_INDEX_KEY_1"\n'
const V2 = '  current: 2\n  versions: { 1: "env:PGVEIL_KEY_1", 2: "env:PGVEIL_KEY_2" }\n  index: "env:PGVEIL_INDEX_KEY_1"\n'
const V2_INDEX2 = '  current: 2\n  versions: { 1: "env:PGVEIL_KEY_1", 2: "env:PGVEIL_KEY_2" }\n  index:\n    current: 2\n    versions: { 1: "env:PGVEIL_INDEX_KEY_1", 2: "env:PGVEIL_INDEX_KEY_2" }\n'

function cli(args: string[], text: string): { code: number | null; stdout: string; stderr: string } {
  const file = path.join(dir, 'cli.yaml')
  writeFileSync(file, text)
  const result = spawnSync(process.execPath, [CLI, ...args, '--config', file], { env: env(), encoding: 'utf8', timeout: 60_000 })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

const check = (text: string) => cli(['check'], text)

beforeAll(async () => {
  database = await server.createDatabase('rotation')
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query('CREATE TABLE accounts (id int PRIMARY KEY, email bytea, balance bytea)')
})
afterAll(async () => {
  await direct?.end()
  rmSync(dir, { recursive: true, force: true })
})

/** Key version and index key version of each stored email, by id. */
async function storedVersions(): Promise<Record<number, [number, number]>> {
  const rows = await direct.query<{ id: number; email: Buffer }>('SELECT id, email FROM accounts ORDER BY id')
  return Object.fromEntries(rows.rows.map((r) => [r.id, [r.email.readUInt32BE(4), r.email.readUInt32BE(8)]]))
}

/** `pgveil start --config file`, listening on `port`, and a client connected through it; `stop` ends both. */
async function connectThroughCli(file: string, port: number): Promise<{ client: pg.Client; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [CLI, 'start', '--config', file], { env: env(), stdio: ['ignore', 'pipe', 'ignore'] })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  const client = new pg.Client({ connectionString: `postgres://${server.superuser}@127.0.0.1:${port}/${database}?sslmode=disable` })
  const stop = async (): Promise<void> => {
    await client.end().catch(() => {})
    child.kill('SIGKILL')
  }
  try {
    await eventually(() => stdout.includes('pgveil listening on'), 20_000)
    await client.connect()
  } catch (error) {
    await stop()
    throw error
  }
  return { client, stop }
}

describe('key rotation scenario', () => {
  it('writes under v1, rotates the data key then the index key by hot reload, and reads and finds everything', async () => {
    const port = await freePort()
    writeFileSync(configFile, config(port, V1))
    const child = spawn(process.execPath, [CLI, 'start', '--config', configFile], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const pool = new pg.Pool({ connectionString: `postgres://${server.superuser}@127.0.0.1:${port}/${database}?sslmode=disable`, max: 2 })
    // Sessions are asked to reconnect when the policy changes: the pool drops them and opens new ones.
    pool.on('error', () => {})
    const insert = (id: number, email: string, balance: string) => pool.query({ name: 'insert-account', text: 'INSERT INTO accounts (id, email, balance) VALUES ($1, $2, $3)', values: [id, email, balance] })
    const byEmail = async (email: string) => (await pool.query<{ id: number }>({ name: 'account-by-email', text: 'SELECT id FROM accounts WHERE email = $1 ORDER BY id', values: [email] })).rows.map((r) => r.id)
    const all = async () => (await pool.query<{ id: number; email: string; balance: string }>({ name: 'all-accounts', text: 'SELECT id, email, balance FROM accounts ORDER BY id' })).rows
    const reloads = () => stderr.split('"msg":"policy reloaded"').length - 1
    const rotate = async (keys: string) => {
      const before = reloads()
      writeFileSync(configFile, config(port, keys))
      await eventually(() => reloads() > before, 15_000)
      await eventually(() => pool.idleCount === 0 || pool.totalCount === 0, 15_000).catch(() => {})
    }
    try {
      await eventually(() => stdout.includes('pgveil listening on'), 20_000)
      await insert(1, 'one@example.com', '10.50')
      await insert(2, 'two@example.com', '20')
      expect(await byEmail('ONE@example.com')).toEqual([1])

      // Data key v2 becomes current: new writes use it, v1 rows still decrypt and are found.
      await rotate(V2)
      await eventually(async () => {
        try {
          await insert(3, 'three@example.com', '30.25')
          return true
        } catch {
          return false // a pooled session that was retired between checkout and query
        }
      }, 15_000)
      expect(await all()).toEqual([
        { id: 1, email: 'one@example.com', balance: '10.50' },
        { id: 2, email: 'two@example.com', balance: '20' },
        { id: 3, email: 'three@example.com', balance: '30.25' },
      ])
      expect(await byEmail('one@example.com')).toEqual([1])
      expect(await byEmail('three@example.com')).toEqual([3])
      expect(await storedVersions()).toEqual({ 1: [1, 1], 2: [1, 1], 3: [2, 1] })

      // Index key v2 becomes current: lookups match values indexed under either version.
      await rotate(V2_INDEX2)
      await eventually(async () => {
        try {
          await insert(4, 'one@example.com', '40')
          return true
        } catch {
          return false
        }
      }, 15_000)
      expect(await storedVersions()).toEqual({ 1: [1, 1], 2: [1, 1], 3: [2, 1], 4: [2, 2] })
      expect(await byEmail('ONE@EXAMPLE.COM')).toEqual([1, 4])
      expect((await pool.query<{ id: number }>("SELECT id FROM accounts WHERE email IN ('two@example.com', 'three@example.com') ORDER BY id")).rows.map((r) => r.id)).toEqual([2, 3])
      expect((await all()).map((r) => r.email)).toEqual(['one@example.com', 'two@example.com', 'three@example.com', 'one@example.com'])
      // Comparing index values with each other would miss pairs across versions: refused until reindexed.
      await expect(pool.query('SELECT count(DISTINCT email) FROM accounts')).rejects.toMatchObject({ code: 'PV001', message: expect.stringMatching(/"public\.accounts\.email".*exact only under one index key version.*keys\.index holds versions 1, 2 \(run pgveil migrate --reindex/) })
      expect(server.readLog()).not.toContain('one@example.com')
    } finally {
      await pool.end().catch(() => {})
      child.kill('SIGKILL')
    }
  }, 90_000)

  it('pgveil check reports rows per key version and refuses removing a version that still has data', () => {
    const ok = check(config(1, V2_INDEX2))
    expect(ok.stderr).toBe('')
    expect(ok.code).toBe(0)
    expect(ok.stdout).toContain('column public.accounts.email: ok (bytea, holds text, searchable: equality)')
    expect(ok.stdout).toContain('column public.accounts.email: 2 rows under key version 1, 2 rows under key version 2')
    expect(ok.stdout).toContain('column public.accounts.email: index values: 3 rows under index key version 1, 1 row under index key version 2')
    expect(ok.stdout).toContain('column public.accounts.balance: 2 rows under key version 1, 2 rows under key version 2')
    expect(ok.stdout).toContain('no index on its index slot; equality lookups scan the table. To index them:\n  CREATE INDEX "accounts_email_search" ON "public"."accounts" ((substring("email" from 13 for 32)));')

    const dropped = check(config(1, '  current: 2\n  versions: { 2: "env:PGVEIL_KEY_2" }\n  index:\n    current: 2\n    versions: { 2: "env:PGVEIL_INDEX_KEY_2" }\n'))
    expect(dropped.code).toBe(1)
    expect(dropped.stderr).toContain('column public.accounts.email: 2 rows still encrypted under key version 1, which keys.versions no longer holds\n  fix: put key version 1 back in keys.versions; remove it only after pgveil migrate has re-encrypted those rows')
    expect(dropped.stderr).toContain('column public.accounts.balance: 2 rows still encrypted under key version 1')
    expect(dropped.stderr).toContain('column public.accounts.email: 3 rows indexed under index key version 1, which keys.index no longer holds')
  })

  it('pgveil check refuses a policy edit that changes a type or an index domain under existing data, and asks for the unique index', () => {
    const retyped = check(config(1, V2_INDEX2, '    email: { type: text, search: equality, normalize: lowercase }\n    balance: { type: integer }\n'))
    expect(retyped.code).toBe(1)
    expect(retyped.stderr).toContain('column public.accounts.balance: stored values are not integer values')
    const redomained = check(config(1, V2_INDEX2, '    email: { type: text, search: equality, normalize: lowercase, index_domain: other }\n    balance: { type: numeric }\n'))
    expect(redomained.code).toBe(1)
    expect(redomained.stderr).toContain('column public.accounts.email: stored index values were made for another index domain or normalisation')
    const unique = check(config(1, V2_INDEX2, '    email: { type: text, search: equality, normalize: lowercase, unique: true }\n    balance: { type: numeric }\n'))
    expect(unique.code).toBe(1)
    expect(unique.stderr).toContain('column public.accounts.email: unique: true, but no UNIQUE index on its index slot\n  fix: CREATE UNIQUE INDEX "accounts_email_search" ON "public"."accounts" ((substring("email" from 13 for 32)));')
  })

  it('pgveil migrate --reindex moves every row to the current key and index key versions; then v1 can go and everything still reads and is found', async () => {
    const migrated = cli(['migrate', '--reindex'], config(1, V2_INDEX2))
    expect(migrated.code).toBe(0)
    // Rows 1-3 carry index key version 1 (row 4 is current already); balance is not searchable, so only re-encrypted.
    expect(migrated.stdout).toContain('public.accounts.email: migrated 3, left 0')
    expect(migrated.stdout).toContain('public.accounts.balance: migrated 2, left 0')
    expect(migrated.stderr).toContain('public.accounts.email: re-index: 3 done, 0 left')
    expect(await storedVersions()).toEqual({ 1: [2, 2], 2: [2, 2], 3: [2, 2], 4: [2, 2] })
    const V2_ONLY = '  current: 2\n  versions: { 2: "env:PGVEIL_KEY_2" }\n  index:\n    current: 2\n    versions: { 2: "env:PGVEIL_INDEX_KEY_2" }\n'
    const checked = check(config(1, V2_ONLY))
    expect(checked.stderr).toBe('')
    expect(checked.code).toBe(0)
    expect(checked.stdout).toContain('column public.accounts.email: index values: 4 rows under index key version 2')

    const port = await freePort()
    writeFileSync(configFile, config(port, V2_ONLY))
    const { client, stop } = await connectThroughCli(configFile, port)
    try {
      expect((await client.query('SELECT id, email, balance FROM accounts ORDER BY id')).rows).toEqual([
        { id: 1, email: 'one@example.com', balance: '10.50' },
        { id: 2, email: 'two@example.com', balance: '20' },
        { id: 3, email: 'three@example.com', balance: '30.25' },
        { id: 4, email: 'one@example.com', balance: '40' },
      ])
      expect((await client.query<{ id: number }>('SELECT id FROM accounts WHERE email = $1 ORDER BY id', ['ONE@example.com'])).rows.map((r) => r.id)).toEqual([1, 4])
      // One index key version again: comparing index values with each other is exact, so allowed.
      expect((await client.query('SELECT count(DISTINCT email)::int AS n FROM accounts')).rows).toEqual([{ n: 3 }])
    } finally {
      await stop()
    }
  }, 60_000)
})

describe('pgveil migrate of existing plaintext into a searchable column', () => {
  it('writes index values as it encrypts, so equality search finds the migrated rows', async () => {
    await direct.query("CREATE TABLE legacy (id int PRIMARY KEY, email text); INSERT INTO legacy VALUES (1, 'Old@Example.com'), (2, 'other@example.com'), (3, NULL)")
    const keys = '  current: 1\n  versions: { 1: "env:PGVEIL_KEY_1" }\n  index: "env:PGVEIL_INDEX_KEY_1"\n'
    const text = (port: number) => `listen: { host: 127.0.0.1, port: ${port} }\nupstream: { url: "${server.url(database)}?sslmode=disable" }\nkeys:\n${keys}tables:\n  legacy:\n    email: { type: text, search: equality, normalize: lowercase }\n`
    const migrated = cli(['migrate'], text(1))
    expect(migrated.code).toBe(0)
    expect(migrated.stdout).toContain('public.legacy.email: migrated 2, left 0')
    const stored = await direct.query<{ id: number; email: Buffer | null }>('SELECT id, email FROM legacy ORDER BY id')
    expect(stored.rows.map((r) => (r.email === null ? null : [r.email[3], r.email.readUInt32BE(8)]))).toEqual([[1, 1], [1, 1], null])
    expect(check(text(1)).code).toBe(0)

    const port = await freePort()
    const file = path.join(dir, 'legacy.yaml')
    writeFileSync(file, text(port))
    const { client, stop } = await connectThroughCli(file, port)
    try {
      expect((await client.query('SELECT id, email FROM legacy WHERE email = $1', ['old@example.com'])).rows).toEqual([{ id: 1, email: 'Old@Example.com' }])
    } finally {
      await stop()
    }
  }, 60_000)
})
