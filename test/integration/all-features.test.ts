/**
 * Every feature at once, the way an operator runs them: one configuration file with
 * searchable and access-ruled protected columns, trusted issuers and the audit log,
 * read by the real `pgveil start`. What each feature promises must still hold when
 * the others are on: plaintext for the clients allowed to see it, envelopes in the
 * database, no value or token in PostgreSQL's log or the audit log, and an audit log
 * that verifies and names the identity behind each statement.
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { TestJwksServer } from '../harness/jwks-server.js'
import { getTestPostgres } from '../harness/pg.js'
import { freePort } from '../harness/ports.js'
import { runProgram } from '../harness/programs.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const CLI = path.join(ROOT, 'dist/proxy/cli.js')
const server = getTestPostgres()
const dir = mkdtempSync(path.join(tmpdir(), 'pgveil-all-'))
const auditFile = path.join(dir, 'audit.log')
const KEYS = { PGVEIL_KEY_1: randomBytes(32).toString('base64'), PGVEIL_INDEX_KEY: randomBytes(32).toString('base64'), PGVEIL_AUDIT_KEY: randomBytes(32).toString('base64') }
const SECRETS = ['Zoë.Secret@Example.com', 'zoë.secret@example.com', '078-05-1120', 'Mallory.Other@Example.org', 'MALLORY.other@example.org', '219-09-9999']
let database: string
let jwks: TestJwksServer
let direct: pg.Client

beforeAll(async () => {
  database = await server.createDatabase('all_features')
  jwks = await TestJwksServer.start()
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query(`CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email bytea NOT NULL, ssn bytea);
    CREATE UNIQUE INDEX customers_email_slot ON customers ((substring(email from 13 for 32)));
    CREATE TABLE archive (id int PRIMARY KEY, ssn bytea)`)
})

afterAll(async () => {
  await direct?.end()
  await jwks?.close()
})

describe('all features in one pgveil', () => {
  it('encrypts, searches, applies access rules per identity and audits it all, leaking nothing', async () => {
    const port = await freePort()
    const configFile = path.join(dir, 'pgveil.yaml')
    writeFileSync(configFile, `listen: { host: 127.0.0.1, port: ${port} }
upstream: { url: "${server.url(database)}?sslmode=disable" }
keys:
  current: 1
  versions: { 1: "env:PGVEIL_KEY_1" }
  index: "env:PGVEIL_INDEX_KEY"
tables:
  customers:
    email: { type: text, search: equality, normalize: lowercase, unique: true }
    ssn: { type: text, domain: ssn }
  archive:
    ssn: { type: text, domain: ssn }
identity:
  issuers:
    - issuer: ${jwks.issuer}
      audience: [api.test]
      jwks_uri: ${jwks.jwksUri}
access:
  customers.ssn:
    read: [{ claim: scope, includes: "pii:read" }]
    otherwise: mask
    mask: last4
audit:
  to: ${auditFile}
  chain_key: "env:PGVEIL_AUDIT_KEY"
`)
    const env: NodeJS.ProcessEnv = { ...KEYS }
    for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PGVEIL_')) env[name] = value
    const child = spawn(process.execPath, [CLI, 'start', '--config', configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const url = `postgres://${server.superuser}@127.0.0.1:${port}/${database}?sslmode=disable`
    const hr = new pg.Client({ connectionString: url })
    const sales = new pg.Client({ connectionString: url })
    const hrToken = await jwks.token({ sub: 'hr-officer', scope: 'pii:read profile' })
    const salesToken = await jwks.token({ sub: 'sales-rep', scope: 'profile' }, { alg: 'EdDSA' })
    try {
      await eventually(() => output.includes('pgveil listening on'), 20_000)
      await hr.connect()
      await sales.connect()
      await hr.query(`SET IDENTITY TO '${hrToken}'`)
      await sales.query('SET IDENTITY = $1', [salesToken])

      // Writes: a literal in the simple protocol, parameters in the extended one.
      await hr.query("INSERT INTO customers (id, name, email, ssn) VALUES (1, 'Zoë', 'Zoë.Secret@Example.com', '078-05-1120')")
      await sales.query('INSERT INTO customers (id, name, email, ssn) VALUES ($1, $2, $3, $4)', [2, 'Mallory', 'Mallory.Other@Example.org', '219-09-9999'])

      // Equality search, case-insensitive through normalize, both protocols; the access rule per identity.
      expect((await hr.query("SELECT id, email, ssn FROM customers WHERE email = 'zoë.secret@example.com'")).rows).toEqual([{ id: 1, email: 'Zoë.Secret@Example.com', ssn: '078-05-1120' }])
      expect((await sales.query('SELECT id, email, ssn FROM customers WHERE email = $1', ['ZOË.SECRET@EXAMPLE.COM'])).rows).toEqual([{ id: 1, email: 'Zoë.Secret@Example.com', ssn: '****1120' }])
      expect((await sales.query('SELECT id FROM customers WHERE email IN ($1, $2) ORDER BY id', ['mallory.other@example.org', 'nobody@example.com'])).rows).toEqual([{ id: 2 }])
      // The unique index on the slot holds across letter case.
      await expect(hr.query("INSERT INTO customers (id, name, email) VALUES (3, 'Copy', 'ZOË.SECRET@example.com')")).rejects.toMatchObject({ code: '23505' })

      // A ciphertext copied inside PostgreSQL (same key domain) must not carry a value to a column
      // without the rule: only an identity that may read the source can copy it.
      const copyToArchive = 'INSERT INTO archive (id, ssn) SELECT id, ssn FROM customers WHERE id = $1'
      await expect(sales.query(copyToArchive, [1])).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('may not read "public.customers.ssn"') })
      await expect(sales.query('INSERT INTO archive (id, ssn) SELECT id, ssn FROM customers')).rejects.toMatchObject({ code: '42501' })
      expect((await sales.query('SELECT count(*)::int AS n FROM archive')).rows).toEqual([{ n: 0 }])
      await hr.query(copyToArchive, [1])
      expect((await hr.query('SELECT id, ssn FROM archive')).rows).toEqual([{ id: 1, ssn: '078-05-1120' }])

      // COPY out decrypts, with the access rule applied.
      const copy = await runProgram('psql', [url, '-X', '-At', '-c', `SET IDENTITY TO '${salesToken}'`, '-c', 'COPY (SELECT id, email, ssn FROM customers ORDER BY id) TO STDOUT'])
      expect(copy.stderr).toBe('')
      expect(copy.stdout.trim().split('\n')).toEqual(['SET', '1\tZoë.Secret@Example.com\t****1120', '2\tMallory.Other@Example.org\t****9999'])
      const searched = await runProgram('psql', [url, '-X', '-At', '-c', `SET IDENTITY TO '${hrToken}'`, '-c', "COPY (SELECT id, ssn FROM customers WHERE email = 'MALLORY.other@example.org') TO STDOUT"])
      expect(searched.stderr).toBe('')
      expect(searched.stdout.trim().split('\n')).toEqual(['SET', '2\t219-09-9999'])
    } finally {
      await hr.end().catch(() => undefined)
      await sales.end().catch(() => undefined)
      child.kill('SIGTERM')
    }
    expect(await exited).toBe(0)

    // The database holds envelopes only; neither it, its statement log nor the audit log holds a value or a token.
    const stored = await direct.query<{ email: Buffer; ssn: Buffer }>('SELECT email, ssn FROM customers ORDER BY id')
    for (const row of stored.rows) {
      expect(row.email.subarray(0, 4)).toEqual(Buffer.from([0x70, 0x76, 0x01, 0x01])) // magic, version, index slot
      expect(row.ssn.subarray(0, 4)).toEqual(Buffer.from([0x70, 0x76, 0x01, 0x00]))
    }
    const dump = await runProgram('pg_dump', ['--table=customers', '--data-only', server.url(database)])
    const pgLog = server.readLog()
    const audit = readFileSync(auditFile, 'utf8')
    for (const secret of [...SECRETS, hrToken, salesToken]) {
      expect(dump.stdout).not.toContain(secret)
      expect(pgLog).not.toContain(secret)
      expect(audit).not.toContain(secret)
    }

    // The audit log verifies and says who did what with which protected column.
    const verify = spawnSync(process.execPath, [CLI, 'audit', 'verify', '--key', 'env:PGVEIL_AUDIT_KEY', auditFile], { env, encoding: 'utf8' })
    expect(verify.status, verify.stdout + verify.stderr).toBe(0)
    const lines = audit.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    const statements = lines.filter((line) => line.event === 'statement')
    const insertBySales = statements.find((line) => line.kind === 'insert' && (line.identity as { sub?: string } | null)?.sub === 'sales-rep')
    expect(insertBySales).toMatchObject({ protected_written: expect.arrayContaining(['public.customers.email', 'public.customers.ssn']) })
    const searchByHr = statements.find((line) => line.kind === 'select' && (line.identity as { sub?: string } | null)?.sub === 'hr-officer')
    expect(searchByHr).toMatchObject({ protected_read: expect.arrayContaining(['public.customers.ssn']) })
    expect(lines.filter((line) => line.event === 'identity_set').map((line) => (line.identity as { sub: string }).sub)).toEqual(expect.arrayContaining(['hr-officer', 'sales-rep']))
  })
})
