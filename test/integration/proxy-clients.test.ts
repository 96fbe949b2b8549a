/**
 * Real clients through a real pgveil in front of a real PostgreSQL: psql, node-postgres,
 * postgres.js, pgbench and a raw protocol client for pipelining.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import { serialize } from 'pg-protocol'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { getTestPostgres } from '../harness/pg.js'
import { runProgram, type ProgramResult } from '../harness/programs.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { RawClient } from '../harness/raw-client.js'

let proxy: TestProxy
let database: string
let proxyUrl: string
const scratch = mkdtempSync(join(tmpdir(), 'pgveil-clients-'))

beforeAll(async () => {
  const server = getTestPostgres()
  database = await server.createDatabase('clients')
  proxy = await startTestProxy({ upstreamUrl: withSslDisabled(server.url(database)) })
  proxyUrl = proxy.url(database, server.superuser, server.superuserPassword ?? undefined)
})

afterAll(async () => {
  await proxy?.close()
})

function withSslDisabled(url: string): string {
  return url.includes('?') ? url : `${url}?sslmode=disable`
}

function psql(args: string[]): Promise<ProgramResult> {
  return runProgram('psql', [proxyUrl, '-X', '-v', 'ON_ERROR_STOP=1', ...args])
}

async function withClient<T>(fn: (client: pg.Client) => Promise<T>, config: pg.ClientConfig = {}): Promise<T> {
  const client = new pg.Client({ connectionString: proxyUrl, ...config })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

describe('psql through pgveil', () => {
  it('runs -c commands', async () => {
    const result = await psql(['-At', '-c', "SELECT 40 + 2, 'héllo ✓'"])
    expect(result.stderr).toBe('')
    expect(result.stdout.trim()).toBe('42|héllo ✓')
  })

  it('runs a script with a transaction and an error', async () => {
    const script = join(scratch, 'script.sql')
    writeFileSync(script, [
      'CREATE TABLE psql_items (id int PRIMARY KEY, name text);',
      'BEGIN;',
      "INSERT INTO psql_items VALUES (1, 'one'), (2, 'two');",
      'COMMIT;',
      'SELECT count(*) FROM psql_items;',
    ].join('\n'))
    const result = await psql(['-At', '-f', script])
    expect(result.status).toBe(0)
    expect(result.stdout.trim().split('\n').at(-1)).toBe('2')
    const failing = await psql(['-At', '-c', 'SELECT * FROM no_such_table'])
    expect(failing.status).not.toBe(0)
    expect(failing.stderr).toContain('relation "no_such_table" does not exist')
  })

  it('copies in both directions with \\copy', async () => {
    const input = join(scratch, 'in.csv')
    const output = join(scratch, 'out.csv')
    const rows = Array.from({ length: 5000 }, (_, i) => `${i},name ${i} ü`)
    writeFileSync(input, rows.join('\n') + '\n')
    expect((await psql(['-c', 'CREATE TABLE psql_copy (id int, name text)'])).status).toBe(0)
    const copyIn = await psql(['-c', `\\copy psql_copy FROM '${input}' WITH (FORMAT csv)`])
    expect(copyIn.stderr).toBe('')
    expect(copyIn.stdout.trim()).toBe('COPY 5000')
    const copyOut = await psql(['-c', `\\copy (SELECT * FROM psql_copy ORDER BY id) TO '${output}' WITH (FORMAT csv)`])
    expect(copyOut.stdout.trim()).toBe('COPY 5000')
    expect(readFileSync(output, 'utf8')).toBe(rows.join('\n') + '\n')
  })
})

describe('node-postgres through pgveil', () => {
  it('runs simple and parameterised queries', async () => {
    await withClient(async (client) => {
      const simple = await client.query("SELECT 1 AS one, 'a''b' AS quoted")
      expect(simple.rows).toEqual([{ one: 1, quoted: "a'b" }])
      const params = await client.query('SELECT $1::int + $2::int AS sum, $3::text AS t, $4::text AS n', [2, 3, 'ünïcödé', null])
      expect(params.rows).toEqual([{ sum: 5, t: 'ünïcödé', n: null }])
    })
  })

  it('reuses named prepared statements', async () => {
    await withClient(async (client) => {
      for (let i = 0; i < 5; i++) {
        const result = await client.query({ name: 'add_one', text: 'SELECT $1::int + 1 AS n', values: [i] })
        expect(result.rows[0].n).toBe(i + 1)
      }
      const prepared = await client.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'add_one'")
      expect(prepared.rows[0].n).toBe(1)
    })
  })

  it('receives binary-format results', async () => {
    await withClient(
      async (client) => {
        const result = await client.query("SELECT 42::int4 AS n, 'bin'::text AS t, 1.5::float8 AS f, true AS b")
        expect(result.rows).toEqual([{ n: 42, t: 'bin', f: 1.5, b: true }])
      },
      { binary: true } as pg.ClientConfig,
    )
  })

  it('runs COPY FROM STDIN and COPY TO STDOUT', async () => {
    await withClient(async (client) => {
      await client.query('CREATE TABLE pg_copy (id int, payload text)')
      const lines = Array.from({ length: 20_000 }, (_, i) => `${i}\tpayload-${i}-${'x'.repeat(i % 50)}\n`)
      await pipeline(Readable.from(lines), client.query(copyFrom('COPY pg_copy FROM STDIN')))
      const count = await client.query('SELECT count(*)::int AS n FROM pg_copy')
      expect(count.rows[0].n).toBe(20_000)
      const chunks: Buffer[] = []
      const out = client.query(copyTo('COPY (SELECT * FROM pg_copy ORDER BY id) TO STDOUT'))
      for await (const chunk of out) chunks.push(chunk as Buffer)
      expect(Buffer.concat(chunks).toString()).toBe(lines.join(''))
    })
  })

  it('delivers LISTEN/NOTIFY', async () => {
    await withClient(async (listener) => {
      await listener.query('LISTEN pgveil_channel')
      const received = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve))
      await withClient((notifier) => notifier.query("NOTIFY pgveil_channel, 'payload ✓'"))
      const notification = await received
      expect(notification.channel).toBe('pgveil_channel')
      expect(notification.payload).toBe('payload ✓')
    })
  })

  it('cancels pg_sleep(10) within a second with a CancelRequest', async () => {
    await withClient(async (client) => {
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number }
      const started = Date.now()
      const sleeping = client.query('SELECT pg_sleep(10)')
      await new Promise((resolve) => setTimeout(resolve, 200))
      const canceller = await RawClient.connect(proxy.port)
      canceller.send(serialize.cancel(processID, secretKey))
      await expect(sleeping).rejects.toMatchObject({ code: '57014' })
      expect(Date.now() - started).toBeLessThan(1_500)
      const after = await client.query('SELECT 1 AS ok')
      expect(after.rows[0].ok).toBe(1)
    })
  })

  it('ignores a CancelRequest with the wrong secret', async () => {
    await withClient(async (client) => {
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number }
      const sleeping = client.query('SELECT pg_sleep(0.5) AS done')
      const canceller = await RawClient.connect(proxy.port)
      canceller.send(serialize.cancel(processID, (secretKey ^ 1) | 0))
      const result = await sleeping
      expect(result.rows[0].done).toBe('')
    })
  })
})

describe('postgres.js through pgveil', () => {
  it('pipelines queries, a failing one in the middle', async () => {
    const sql = postgres(proxyUrl, { max: 1, onnotice: () => {} })
    try {
      const [first, failed, third] = await Promise.all([
        sql`SELECT ${1}::int AS n`,
        sql`SELECT 1 / ${0}::int AS n`.catch((error: unknown) => error),
        sql`SELECT ${3}::int AS n`,
      ])
      expect(first).toEqual([{ n: 1 }])
      expect(failed).toMatchObject({ code: '22012' })
      expect(third).toEqual([{ n: 3 }])
    } finally {
      await sql.end()
    }
  })

  it('cancels a running query', async () => {
    const sql = postgres(proxyUrl, { max: 1 })
    try {
      const started = Date.now()
      const query = sql`SELECT pg_sleep(10)`
      setTimeout(() => query.cancel(), 200)
      await expect(query).rejects.toMatchObject({ code: '57014' })
      expect(Date.now() - started).toBeLessThan(1_500)
    } finally {
      await sql.end()
    }
  })

  it('reads binary-transferred types and large results', async () => {
    const sql = postgres(proxyUrl, { max: 2 })
    try {
      const rows = await sql`SELECT g AS n, repeat('v', 1000) AS v, now() AS at, ${new Date(0)}::timestamptz AS epoch FROM generate_series(1, 3000) g`
      expect(rows).toHaveLength(3000)
      expect(rows[2999]!.n).toBe(3000)
      expect(rows[0]!.v).toHaveLength(1000)
      expect((rows[0]!.epoch as Date).getTime()).toBe(0)
    } finally {
      await sql.end()
    }
  })
})

describe('pipelined extended protocol (raw)', () => {
  it('reports the error of the failing statement, skips to Sync, and recovers', async () => {
    const server = getTestPostgres()
    const client = await RawClient.startup(proxy.port, { user: server.superuser, database })
    try {
      const statement = (sql: string): Buffer[] => [serialize.parse({ text: sql }), serialize.bind({}), serialize.execute({})]
      let from = client.received.length
      // Fails while executing (a constant 1/0 would already fail at Bind).
      const failing = 'SELECT 1 / g FROM generate_series(0, 0) g'
      client.send(...statement('SELECT 1'), ...statement(failing), ...statement('SELECT 3'), serialize.sync())
      const batch = await client.untilReady(from)
      expect(batch.map((m) => m.name)).toEqual(['parseComplete', 'bindComplete', 'dataRow', 'commandComplete', 'parseComplete', 'bindComplete', 'error', 'readyForQuery'])
      expect(batch[6]!.code).toBe('22012')

      from = client.received.length
      client.send(...statement('SELECT 1'), serialize.sync(), ...statement(failing), serialize.sync(), ...statement('SELECT 3'), serialize.sync())
      const three = await client.untilReady(from, 3)
      expect(three.map((m) => m.name)).toEqual([
        'parseComplete', 'bindComplete', 'dataRow', 'commandComplete', 'readyForQuery',
        'parseComplete', 'bindComplete', 'error', 'readyForQuery',
        'parseComplete', 'bindComplete', 'dataRow', 'commandComplete', 'readyForQuery',
      ])

      from = client.received.length
      client.send(serialize.query('SELECT 7; SELECT 8'))
      const simple = await client.untilReady(from)
      expect(simple.filter((m) => m.name === 'dataRow')).toHaveLength(2)
      expect(simple.at(-1)!.status).toBe('I')
    } finally {
      client.close()
    }
  })
})

describe('pgbench through pgveil', () => {
  it('initialises and runs simple, extended and prepared with zero failures', async () => {
    const init = await runProgram('pgbench', ['-i', '-s', '1', '-q', proxyUrl])
    expect(init.status, init.stderr).toBe(0)
    for (const mode of ['simple', 'extended', 'prepared']) {
      const bench = await runProgram('pgbench', ['-n', '-c', '4', '-j', '2', '-T', '2', '-M', mode, proxyUrl])
      expect(bench.status, bench.stderr).toBe(0)
      expect(bench.stdout).toMatch(/number of failed transactions: 0 \(0\.000%\)/)
      const tps = Number(/tps = ([\d.]+)/.exec(bench.stdout)?.[1])
      expect(tps).toBeGreaterThan(0)
    }
  })
})
