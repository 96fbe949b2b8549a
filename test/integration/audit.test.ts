/**
 * The audit log through a real pgveil in front of a real PostgreSQL, driven by real
 * clients: one line per statement with its fields (simple and extended protocol),
 * no value ever logged, the chain verified by `pgveil audit verify`, statement
 * metrics that move, /readyz when the upstream stops, and SIGUSR1 on a running
 * `pgveil start`.
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { serialize } from 'pg-protocol'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyAuditLog } from '../../audit/verify.js'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { startAdmin, type AdminServer } from '../../proxy/admin.js'
import { createLogger, silentLogger } from '../../proxy/log.js'
import { parseUpstreamUrl } from '../../proxy/upstream-url.js'
import { eventually } from '../harness/eventually.js'
import { RawClient } from '../harness/raw-client.js'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const CLI = path.join(ROOT, 'dist', 'proxy', 'cli.js')
const server = getTestPostgres()
const scratch = mkdtempSync(path.join(tmpdir(), 'pgveil-audit-test-'))
const auditFile = path.join(scratch, 'audit.log')
const chainKey = randomBytes(32)
const operational: string[] = []
let database: string
let proxy: TestProxy
let proxyUrl: string
let closed = false

interface Line {
  [key: string]: unknown
  event: string
  session?: number
  statement?: string
  outcome?: { status: string; sqlstate?: string; by?: string; message?: string }
}

function auditLines(): Line[] {
  const text = existsSync(auditFile) ? readFileSync(auditFile, 'utf8') : ''
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line)
}

/** Waits until the statement lines of `session` number `count`, and returns them. */
async function statementsOf(session: number, count: number): Promise<Line[]> {
  let found: Line[] = []
  await eventually(() => {
    found = auditLines().filter((l) => l.event === 'statement' && l.session === session)
    return found.length >= count
  })
  return found
}

/** pgveil's session id of a pg client: the connect line for its local port. */
async function sessionOf(localPort: number): Promise<number> {
  let session = -1
  await eventually(() => {
    // The latest: an ephemeral port may have served an earlier session too.
    const line = auditLines().findLast((l) => l.event === 'connect' && l.client === `127.0.0.1:${localPort}`)
    session = line?.session ?? -1
    return line !== undefined
  })
  return session
}

async function connect(config: pg.ClientConfig = {}): Promise<{ client: pg.Client; session: number }> {
  const client = new pg.Client({ connectionString: proxyUrl, ...config })
  await client.connect()
  const port = (client as unknown as { connection: { stream: net.Socket } }).connection.stream.localPort!
  return { client, session: await sessionOf(port) }
}

beforeAll(async () => {
  database = await server.createDatabase('audit')
  const direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query(`
    CREATE TABLE people (id int PRIMARY KEY, name text UNIQUE, email bytea);
    CREATE TABLE plain (id int PRIMARY KEY, code text UNIQUE, n int);
  `)
  await direct.end()
  const policy = new Policy([{ schema: 'public', table: 'people', column: 'email', qualified: 'public.people.email', type: 'text', binding: 'public.people.email' }])
  proxy = await startTestProxy({
    upstreamUrl: `${server.url(database)}?sslmode=disable`,
    policy,
    keyring: new Keyring(new Map([[1, randomBytes(32)]]), 1),
    audit: { to: auditFile, chainKey: Buffer.from(chainKey), maxBacklogBytes: 16 * 1024 * 1024 },
    logger: createLogger({ level: 'debug', write: (line) => operational.push(line) }),
  })
  proxyUrl = proxy.url(database, server.superuser, server.superuserPassword ?? undefined)
})

afterAll(async () => {
  if (!closed) await proxy?.close()
  rmSync(scratch, { recursive: true, force: true })
})

describe('audit lines, simple protocol', () => {
  it('writes one line per statement with every field', async () => {
    const { client, session } = await connect({ application_name: 'audit-simple' })
    await client.query('CREATE TABLE audit_tmp (a int)')
    await client.query('BEGIN')
    await client.query("INSERT INTO people (id, name, email) VALUES (1, 'Alice', 'alice@example.com')")
    await client.query('SELECT id, email FROM people WHERE id = 1')
    await client.query("UPDATE people SET email = 'a2@example.com' WHERE id = 1")
    await client.query('DELETE FROM audit_tmp')
    await client.query('COMMIT')
    await client.query("SET application_name = 'renamed'")
    await client.query('SELECT 1; SELECT 2, 3')
    await expect(client.query('SELECT 1/0')).rejects.toThrow(/division by zero/)
    await expect(client.query("SELECT id FROM people WHERE email LIKE 'a%'")).rejects.toThrow(/LIKE is not supported/)
    await client.end()

    const lines = await statementsOf(session, 12)
    expect(lines.map((l) => [l.kind, l.tag, l.rows])).toEqual([
      ['ddl', 'CREATE TABLE', null],
      ['transaction', 'BEGIN', null],
      ['insert', 'INSERT', 1],
      ['select', 'SELECT', 1],
      ['update', 'UPDATE', 1],
      ['delete', 'DELETE', 0],
      ['transaction', 'COMMIT', null],
      ['set', 'SET', null],
      ['select', 'SELECT', 1],
      ['select', 'SELECT', 1],
      ['select', null, null],
      ['select', null, null],
    ])
    const select = lines[3]!
    expect(select).toEqual({
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      event: 'statement',
      session,
      client: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      user: server.superuser,
      database,
      application_name: 'audit-simple',
      identity: null,
      context: null,
      protocol: 'simple',
      kind: 'select',
      tag: 'SELECT',
      statement: 'SELECT id, email FROM people WHERE id = $1',
      fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/),
      tables: ['public.people'],
      protected_read: ['public.people.email'],
      protected_written: [],
      rows: 1,
      duration_ms: expect.any(Number),
      outcome: { status: 'ok' },
      chain: expect.stringMatching(/^[0-9a-f]{24}$/),
      seq: expect.any(Number),
      mac: expect.stringMatching(/^[0-9a-f]{32}$/),
    })
    expect(lines[2]).toMatchObject({ statement: 'INSERT INTO people (id, name, email) VALUES ($1, $2, $3)', protected_written: ['public.people.email'], protected_read: [] })
    expect(lines[4]).toMatchObject({ statement: 'UPDATE people SET email = $1 WHERE id = $2', protected_written: ['public.people.email'] })
    expect(lines[5]).toMatchObject({ tables: ['public.audit_tmp'], protected_read: [], protected_written: [] })
    // SET application_name shows from the next statement on.
    expect(lines[8]).toMatchObject({ application_name: 'renamed', statement: 'SELECT $1' })
    expect(lines[9]).toMatchObject({ statement: 'SELECT $1, $2' })
    expect(lines[10]).toMatchObject({ statement: 'SELECT $1/$2', outcome: { status: 'error', sqlstate: '22012', by: 'postgresql', message: 'division by zero' } })
    expect(lines[11]).toMatchObject({ statement: 'SELECT id FROM people WHERE email LIKE $1', outcome: { status: 'error', sqlstate: 'PV001', by: 'pgveil', message: expect.stringMatching(/public\.people\.email/) } })
    const events = auditLines().filter((l) => l.session === session).map((l) => l.event)
    expect(events[0]).toBe('connect')
    expect(events[1]).toBe('authentication_ok')
    await eventually(() => auditLines().some((l) => l.session === session && l.event === 'disconnect'))
    expect(auditLines().find((l) => l.session === session && l.event === 'disconnect')).toMatchObject({ statements: 12, user: server.superuser })
  })

  it('logs COPY with the rows it moved and the protected columns it wrote', async () => {
    const { client, session } = await connect()
    await pipeline(Readable.from(['10\tCopy One\tone@example.com\n11\tCopy Two\ttwo@example.com\n']), client.query(copyFrom('COPY people (id, name, email) FROM STDIN')))
    await client.end()
    const [line] = await statementsOf(session, 1)
    expect(line).toMatchObject({ kind: 'copy', tag: 'COPY', rows: 2, protocol: 'simple', statement: 'COPY people (id, name, email) FROM STDIN', protected_written: ['public.people.email'], outcome: { status: 'ok' } })
  })

  it('logs a read through a view that returns a protected column as a read of the table column, once pgveil reads through the view', async () => {
    const { client, session } = await connect()
    const read = 'SELECT email FROM people_mail WHERE id = 1'
    // Summarized (and remembered) while there is no such view: no protected column.
    await expect(client.query(read)).rejects.toMatchObject({ code: '42P01' })
    await client.query('CREATE VIEW people_mail AS SELECT id, name, email FROM people')
    try {
      await client.query(read)
      await client.query('SELECT m.name FROM people_mail m')
      await client.query('UPDATE people_mail SET email = email WHERE id = 1')
    } finally {
      await client.query('DROP VIEW people_mail')
      await client.end()
    }
    const lines = await statementsOf(session, 6)
    expect(lines[0]).toMatchObject({ statement: 'SELECT email FROM people_mail WHERE id = $1', protected_read: [], outcome: { status: 'error', sqlstate: '42P01' } })
    expect(lines[2]).toMatchObject({ statement: 'SELECT email FROM people_mail WHERE id = $1', tables: ['public.people_mail'], protected_read: ['public.people.email'], outcome: { status: 'ok' } })
    expect(lines[3]).toMatchObject({ tables: ['public.people_mail'], protected_read: [] })
    expect(lines[4]).toMatchObject({ kind: 'update', protected_written: ['public.people.email'] })
  })

  it('logs a statement that ended its session (a ciphertext that does not decrypt) with pgveil\'s SQLSTATE, not as a closed connection', async () => {
    const { client, session } = await connect()
    await client.query("INSERT INTO people (id, name, email) VALUES (900, 'Tampered', 'tampered@example.com')")
    const direct = new pg.Client({ connectionString: server.url(database) })
    await direct.connect()
    try {
      await direct.query('UPDATE people SET email = set_byte(email, length(email) - 1, get_byte(email, length(email) - 1) # 1) WHERE id = 900')
    } finally {
      await direct.end()
    }
    client.on('error', () => {})
    await expect(client.query('SELECT email FROM people WHERE id = 900')).rejects.toMatchObject({ code: 'XX001' })
    const lines = await statementsOf(session, 2)
    expect(lines[1]).toMatchObject({ statement: 'SELECT email FROM people WHERE id = $1', outcome: { status: 'error', sqlstate: 'XX001', by: 'pgveil' } })
    await eventually(() => auditLines().some((l) => l.event === 'disconnect' && l.session === session))
    expect(auditLines().filter((l) => l.event === 'statement' && l.session === session)).toHaveLength(2)
  })

  it('logs a failed login', async () => {
    const client = new pg.Client({ connectionString: proxy.url('no_such_database_here', server.superuser, server.superuserPassword ?? undefined) })
    await expect(client.connect()).rejects.toThrow(/does not exist/)
    await eventually(() => auditLines().some((l) => l.event === 'authentication_failed' && l.database === 'no_such_database_here' && l.sqlstate === '3D000'))
  })
})

describe('audit lines, extended protocol', () => {
  it('writes one line per Execute, failed Parse and Bind included (node-postgres)', async () => {
    const { client, session } = await connect()
    await client.query('INSERT INTO people (id, name, email) VALUES ($1, $2, $3)', [2, 'Bob', 'bob@example.com'])
    await client.query({ name: 'by-id', text: 'SELECT name, email FROM people WHERE id = $1', values: [2] })
    await client.query({ name: 'by-id', text: 'SELECT name, email FROM people WHERE id = $1', values: [1] })
    await client.query('UPDATE plain SET n = $1 WHERE id = $2', [5, 99])
    await client.query('DELETE FROM people WHERE id = $1', [2])
    await expect(client.query('SELECT $1::int', ['nope'])).rejects.toThrow(/invalid input syntax/)
    await expect(client.query('SELEC $1', [1])).rejects.toThrow(/syntax error/)
    await client.end()
    const lines = await statementsOf(session, 7)
    expect(lines.map((l) => [l.protocol, l.kind, l.tag, l.rows, l.outcome?.status])).toEqual([
      ['extended', 'insert', 'INSERT', 1, 'ok'],
      ['extended', 'select', 'SELECT', 1, 'ok'],
      ['extended', 'select', 'SELECT', 1, 'ok'],
      ['extended', 'update', 'UPDATE', 0, 'ok'],
      ['extended', 'delete', 'DELETE', 1, 'ok'],
      ['extended', 'select', null, null, 'error'],
      ['extended', 'unknown', null, null, 'error'],
    ])
    expect(lines[0]).toMatchObject({ statement: 'INSERT INTO people (id, name, email) VALUES ($1, $2, $3)', protected_written: ['public.people.email'] })
    expect(lines[2]).toMatchObject({ statement: 'SELECT name, email FROM people WHERE id = $1', protected_read: ['public.people.email'], fingerprint: lines[1]!.fingerprint })
    expect(lines[5]).toMatchObject({ outcome: { sqlstate: '22P02', by: 'postgresql' } })
    expect(lines[6]).toMatchObject({ statement: 'SELEC $1', outcome: { sqlstate: '42601' } })
  })

  it('attributes an Execute to the statement PostgreSQL runs, not to a re-Parse of its name that failed or was skipped', async () => {
    const raw = await RawClient.startup(proxy.port, { user: server.superuser, database })
    const session = await sessionOf(raw.socket.localPort!)
    const run = async (...messages: Buffer[]): Promise<void> => {
      const from = raw.received.length
      raw.send(...messages, serialize.sync())
      await raw.untilReady(from)
    }
    try {
      await run(serialize.parse({ name: 'reader', text: 'SELECT name, email FROM people WHERE id = $1' }))
      // Defining "reader" again fails (42P05): it still reads the protected column.
      await run(serialize.parse({ name: 'reader', text: 'SELECT 1 AS harmless' }))
      await run(serialize.bind({ statement: 'reader', values: ['1'] }), serialize.execute({}))
      // A Parse skipped after an error in its pipeline does not relabel it either.
      await run(serialize.execute({ portal: 'missing' }), serialize.close({ type: 'S', name: 'reader' }), serialize.parse({ name: 'reader', text: 'SELECT 2 AS harmless' }))
      await run(serialize.bind({ statement: 'reader', values: ['1'] }), serialize.execute({}))
      // Closed and defined again in one pipeline: the CloseComplete, arriving after the Parse was sent, must not forget the new one.
      await run(serialize.close({ type: 'S', name: 'reader' }), serialize.parse({ name: 'reader', text: 'SELECT id FROM people WHERE id = $1' }))
      await run(serialize.bind({ statement: 'reader', values: ['1'] }), serialize.execute({}))
    } finally {
      raw.close()
    }
    const lines = await statementsOf(session, 5)
    expect(lines.map((l) => [l.statement, l.outcome?.status, l.outcome?.sqlstate])).toEqual([
      ['SELECT $1 AS harmless', 'error', '42P05'],
      ['SELECT name, email FROM people WHERE id = $1', 'ok', undefined],
      ['(unknown prepared statement)', 'error', '34000'],
      ['SELECT name, email FROM people WHERE id = $1', 'ok', undefined],
      ['SELECT id FROM people WHERE id = $1', 'ok', undefined],
    ])
    expect(lines[3]).toMatchObject({ protected_read: ['public.people.email'] })
  })

  it('follows pipelined statements of postgres.js', async () => {
    const sql = postgres(proxyUrl, { max: 1, onnotice: () => {} })
    await Promise.all([sql`SELECT ${1}::int AS a`, sql`SELECT code FROM plain WHERE id = ${2}`, sql`INSERT INTO plain (id, code, n) VALUES (${3}, ${'c3'}, ${3})`])
    await sql.end()
    await eventually(() => auditLines().some((l) => l.event === 'statement' && l.statement === 'INSERT INTO plain (id, code, n) VALUES ($1, $2, $3)' && l.protocol === 'extended' && l.rows === 1))
    const session = auditLines().find((l) => l.statement === 'INSERT INTO plain (id, code, n) VALUES ($1, $2, $3)')!.session!
    const lines = auditLines().filter((l) => l.event === 'statement' && l.session === session && l.outcome?.status === 'ok')
    expect(lines.map((l) => l.statement)).toEqual(expect.arrayContaining(['SELECT $1::int AS a', 'SELECT code FROM plain WHERE id = $1', 'INSERT INTO plain (id, code, n) VALUES ($1, $2, $3)']))
  })
})

describe('no value in the audit log', () => {
  it('never logs literals, parameters, COPY data or values quoted in errors', async () => {
    const secrets = {
      literal: 'Zyx-LITERAL-4417',
      protectedLiteral: 'Zyx-PROTECTED-2291@example.com',
      parameter: 'Qwv-PARAM-9921',
      protectedParameter: 'Qwv-PROTECTED-3310@example.com',
      copy: 'Kpl-COPY-7310',
      cast: 'Err-CAST-5521',
      duplicate: 'Dup-KEY-6634',
      parameterCast: 'Err-PARAM-8810',
      badSyntax: 'Bad-SYNTAX-3391',
      number: '4111111111111111',
    }
    const { client, session } = await connect()
    await client.query(`INSERT INTO people (id, name, email) VALUES (20, '${secrets.literal}', '${secrets.protectedLiteral}')`)
    await client.query('INSERT INTO people (id, name, email) VALUES ($1, $2, $3)', [21, secrets.parameter, secrets.protectedParameter])
    await pipeline(Readable.from([`22\t${secrets.copy}\t${secrets.copy}@example.com\n`]), client.query(copyFrom('COPY people (id, name, email) FROM STDIN')))
    await expect(client.query(`SELECT '${secrets.cast}'::int`)).rejects.toThrow(secrets.cast)
    await client.query(`INSERT INTO plain (id, code) VALUES (30, '${secrets.duplicate}')`)
    await expect(client.query(`INSERT INTO plain (id, code) VALUES (31, '${secrets.duplicate}')`)).rejects.toThrow(/duplicate key/)
    await expect(client.query('INSERT INTO plain (id, code) VALUES ($1, $2)', [32, secrets.duplicate])).rejects.toThrow(/duplicate key/)
    await expect(client.query('SELECT $1::int', [secrets.parameterCast])).rejects.toThrow(/invalid input syntax/)
    await expect(client.query(`SELEC '${secrets.badSyntax}'`)).rejects.toThrow(/syntax error/)
    await expect(client.query(`SELECT ${secrets.number}::int`)).rejects.toThrow(/out of range/)
    await client.end()

    const lines = await statementsOf(session, 10)
    expect(lines.map((l) => l.outcome?.sqlstate ?? 'ok')).toEqual(['ok', 'ok', 'ok', '22P02', 'ok', '23505', '23505', '22P02', '42601', '22003'])
    await eventually(() => auditLines().some((l) => l.session === session && l.event === 'disconnect'))
    const log = readFileSync(auditFile, 'utf8')
    for (const [path, secret] of Object.entries(secrets)) {
      expect(log.includes(secret), `${path} value in the audit log`).toBe(false)
      expect(operational.join('').includes(secret), `${path} value in the operational log`).toBe(false)
    }
    expect(lines[5]!.outcome).toEqual({ status: 'error', sqlstate: '23505', by: 'postgresql', message: 'duplicate key value violates unique constraint ?' })
  })
})

describe('metrics and health', () => {
  const admins: AdminServer[] = []
  afterAll(async () => {
    await Promise.all(admins.map((a) => a.close()))
  })

  it('has statement, duration, protected and audit counters that move as statements run', async () => {
    const a = await startAdmin({ host: '127.0.0.1', port: 0 }, proxy.metrics, { policyReady: () => true, target: parseUpstreamUrl(server.url(database)), connectTimeoutMs: 1_000 }, silentLogger)
    admins.push(a)
    const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${a.port}/metrics`)).text()
    const value = (text: string, series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `))
      return line === undefined ? 0 : Number(line.slice(series.length + 1))
    }
    const series = [
      'pgveil_statements_total{kind="select",outcome="ok"}',
      'pgveil_statements_total{kind="select",outcome="refused"}',
      'pgveil_statement_duration_seconds_count{kind="select"}',
      'pgveil_statements_protected_total',
      'pgveil_audit_lines_written_total',
      'pgveil_upstream_connections_total',
    ]
    const before = await scrape()
    const { client } = await connect()
    for (let i = 0; i < 3; i++) await client.query('SELECT email FROM people WHERE id = $1', [1])
    await expect(client.query("SELECT 1 FROM people WHERE email LIKE 'x%'")).rejects.toThrow(/LIKE/)
    // DDL: the session reads its database's catalog again.
    await client.query('CREATE TABLE metrics_tmp (id int); DROP TABLE metrics_tmp')
    await client.end()
    const after = await scrape()
    expect(value(after, 'pgveil_catalog_reads_total{outcome="ok"}') - value(before, 'pgveil_catalog_reads_total{outcome="ok"}')).toBeGreaterThanOrEqual(1)
    expect(series.map((s) => value(after, s) - value(before, s))).toEqual([3, 1, 4, 4, expect.any(Number), 1])
    expect(value(after, 'pgveil_audit_lines_written_total') - value(before, 'pgveil_audit_lines_written_total')).toBeGreaterThanOrEqual(7)
    expect(after).toMatch(/^pgveil_audit_lines_dropped_total 0$/m)
  })

  it('turns /readyz unready when the upstream stops', async () => {
    const sockets = new Set<net.Socket>()
    const forwarder = net.createServer((socket) => {
      const upstream = net.connect(server.port, '127.0.0.1')
      sockets.add(socket).add(upstream)
      socket.pipe(upstream).pipe(socket)
      socket.on('error', () => upstream.destroy())
      upstream.on('error', () => socket.destroy())
    })
    await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve))
    const port = (forwarder.address() as net.AddressInfo).port
    const a = await startAdmin({ host: '127.0.0.1', port: 0 }, proxy.metrics, { policyReady: () => true, target: parseUpstreamUrl(`postgres://x@127.0.0.1:${port}/db`), connectTimeoutMs: 1_000 }, silentLogger)
    admins.push(a)
    const ready = async (): Promise<[number, unknown]> => {
      const response = await fetch(`http://127.0.0.1:${a.port}/readyz`)
      return [response.status, await response.json()]
    }
    expect(await ready()).toEqual([200, { status: 'ready', checks: { policy: true, upstream: true } }])
    await new Promise<void>((resolve) => {
      forwarder.close(() => resolve())
      for (const socket of sockets) socket.destroy()
    })
    let last: [number, unknown] = [0, null]
    await eventually(async () => {
      last = await ready()
      return last[0] === 503
    }, 5_000, 200)
    expect(last).toEqual([503, { status: 'not ready', checks: { policy: true, upstream: false } }])
  })
})

describe('pgveil audit verify on the log pgveil wrote', () => {
  it('accepts the whole log once pgveil closed it, and reports an edited copy', async () => {
    await proxy.close()
    closed = true
    const env = { ...process.env, AUDIT_TEST_KEY: chainKey.toString('base64') }
    const ok = spawnSync(process.execPath, [CLI, 'audit', 'verify', '--key', 'env:AUDIT_TEST_KEY', auditFile], { env, encoding: 'utf8' })
    expect([ok.status, ok.stdout]).toEqual([0, expect.stringMatching(/^ok: \d+ lines in 1 chain verified\n$/)])
    expect(verifyAuditLog([{ name: 'a', text: readFileSync(auditFile, 'utf8') }], chainKey).lines).toBe(auditLines().length)
    const edited = path.join(scratch, 'edited.log')
    const rows = readFileSync(auditFile, 'utf8').split('\n')
    const target = rows.findIndex((r) => r.includes('"kind":"delete"'))
    rows[target] = rows[target]!.replace('"kind":"delete"', '"kind":"select"')
    writeFileSync(edited, rows.join('\n'))
    const bad = spawnSync(process.execPath, [CLI, 'audit', 'verify', '--key', 'env:AUDIT_TEST_KEY', edited], { env, encoding: 'utf8' })
    expect([bad.status, bad.stdout]).toEqual([1, `${edited}:${target + 1}: MAC mismatch: the line was edited (or a line before it was replaced)\n`])
    const tail = spawnSync(process.execPath, [CLI, 'audit', 'tail', auditFile, '--table', 'plain'], { encoding: 'utf8' })
    expect(tail.status).toBe(0)
    expect(tail.stdout).toMatch(/insert\s+\S+@\S+ from 127\.0\.0\.1:\d+\s+INSERT INTO plain \(id, code, n\) VALUES \(\$1, \$2, \$3\)\s+→ ok 1 rows/)
    expect(tail.stdout).not.toMatch(/people/)
  })
})

describe('SIGUSR1 on a running pgveil start', () => {
  it('closes the chain, reopens the file after rotation, starts a new chain that says so', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pgveil-audit-rotate-'))
    const file = path.join(dir, 'audit.log')
    const key = randomBytes(32).toString('base64')
    const env: NodeJS.ProcessEnv = {}
    for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PGVEIL_')) env[name] = value
    Object.assign(env, { PGVEIL_UPSTREAM__URL: `${server.url(database)}`, PGVEIL_LISTEN__PORT: '0', PGVEIL_AUDIT__TO: file, PGVEIL_AUDIT__CHAIN_KEY: 'env:ROTATE_KEY', ROTATE_KEY: key })
    const child = spawn(process.execPath, [CLI, 'start'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exit = new Promise<number | null>((resolve) => child.once('exit', resolve))
    try {
      let port = 0
      await eventually(() => {
        port = Number(/pgveil listening on 127\.0\.0\.1:(\d+)/.exec(output)?.[1] ?? 0)
        return port > 0
      }, 20_000)
      const url = new URL(server.url(database))
      url.port = String(port)
      url.hostname = '127.0.0.1'
      const query = async (sql: string): Promise<void> => {
        const client = new pg.Client({ connectionString: url.toString() })
        await client.connect()
        await client.query(sql)
        await client.end()
      }
      await query('SELECT 1 AS before_rotation')
      await eventually(() => existsSync(file) && readFileSync(file, 'utf8').includes('before_rotation'))
      renameSync(file, `${file}.1`)
      child.kill('SIGUSR1')
      await eventually(() => existsSync(file))
      await query('SELECT 2 AS after_rotation')
      await eventually(() => readFileSync(file, 'utf8').includes('after_rotation'))
      child.kill('SIGTERM')
      expect(await exit).toBe(0)
      const older = readFileSync(`${file}.1`, 'utf8')
      const newer = readFileSync(file, 'utf8')
      const first = JSON.parse(newer.split('\n')[0]!) as Line
      expect(first).toMatchObject({ event: 'chain_start', seq: 0, epoch: 1, reason: 'rotation', previous: { chain: expect.any(String) } })
      expect(JSON.parse(older.trim().split('\n').pop()!)).toMatchObject({ event: 'chain_end' })
      expect(older).not.toContain('after_rotation')
      const result = verifyAuditLog([{ name: 'audit.log.1', text: older }, { name: 'audit.log', text: newer }], Buffer.from(key, 'base64'))
      expect(result).toMatchObject({ ok: true, chains: 2 })
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('policy events', () => {
  it('writes policy_refused for an invalid edit and policy_reloaded for a valid one', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pgveil-audit-policy-'))
    const file = path.join(dir, 'audit.log')
    const configFile = path.join(dir, 'pgveil.yaml')
    const head = [
      'listen: { host: 127.0.0.1, port: 0 }',
      `upstream: { url: "${server.url(database)}?sslmode=disable" }`,
      `audit: { to: "${file}", chain_key: "env:POLICY_AUDIT_KEY" }`,
      'keys: { current: 1, versions: { 1: "env:POLICY_DATA_KEY" } }',
      'tables:',
      '  people:',
      '    email: { type: text }',
      '',
    ].join('\n')
    writeFileSync(configFile, head)
    const key = randomBytes(32).toString('base64')
    const env: NodeJS.ProcessEnv = {}
    for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PGVEIL_')) env[name] = value
    Object.assign(env, { POLICY_AUDIT_KEY: key, POLICY_DATA_KEY: randomBytes(32).toString('base64') })
    const child = spawn(process.execPath, [CLI, 'start', '--config', configFile], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exit = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const events = (): Line[] => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line) : [])
    try {
      await eventually(() => output.includes('pgveil listening on'), 20_000)
      // The file watcher may start after the greeting: SIGHUP makes each reload certain (both may fire).
      writeFileSync(configFile, `${head}    name: { type: varchar }\n`)
      child.kill('SIGHUP')
      await eventually(() => events().some((e) => e.event === 'policy_refused'), 30_000)
      writeFileSync(configFile, head.replace('tables:', 'tables:\n  plain:\n    code: { type: text }'))
      child.kill('SIGHUP')
      await eventually(() => events().some((e) => e.event === 'policy_reloaded'), 30_000)
      child.kill('SIGTERM')
      expect(await exit).toBe(0)
      const policy = events().filter((e) => e.event.startsWith('policy_'))
      expect(policy.filter((e) => e.event === 'policy_reloaded')).toEqual([expect.objectContaining({ trigger: expect.stringMatching(/^(file changed|SIGHUP)$/), protected_columns: 2 })])
      expect(policy[0]).toEqual(expect.objectContaining({ event: 'policy_refused', problems: 1 }))
      expect(policy[policy.length - 1]!.event).toBe('policy_reloaded')
      expect(verifyAuditLog([{ name: 'audit.log', text: readFileSync(file, 'utf8') }], Buffer.from(key, 'base64'))).toMatchObject({ ok: true })
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
