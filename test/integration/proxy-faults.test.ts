/**
 * Bad input and faults: garbage, oversized messages, an unreachable or dying upstream,
 * vanishing clients, the connection limit, and SIGTERM draining.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { serialize } from 'pg-protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectCollectingErrors } from '../harness/clients.js'
import { eventually } from '../harness/eventually.js'
import { getTestPostgres } from '../harness/pg.js'
import { freePort } from '../harness/ports.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { RawClient } from '../harness/raw-client.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const server = getTestPostgres()
let database: string
let upstreamUrl: string
const proxies: TestProxy[] = []

beforeAll(async () => {
  database = await server.createDatabase('faults')
  upstreamUrl = `postgres://${server.superuser}@127.0.0.1:${server.port}/${database}?sslmode=disable`
})

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()))
})

async function proxyFor(options: Partial<Parameters<typeof startTestProxy>[0]> = {}): Promise<TestProxy> {
  const proxy = await startTestProxy({ upstreamUrl, ...options })
  proxies.push(proxy)
  return proxy
}

async function selectOne(proxy: TestProxy): Promise<number> {
  const client = new pg.Client({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined) })
  await client.connect()
  try {
    return (await client.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n
  } finally {
    await client.end()
  }
}

/** A pg client through `proxy` whose connection errors (e.g. a FATAL after shutdown) are collected instead of thrown. */
function connectedClient(proxy: TestProxy, applicationName = 'pgveil-test') {
  return connectCollectingErrors({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined), application_name: applicationName })
}

async function backendsNamed(applicationName: string): Promise<number> {
  const direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  try {
    const { rows } = await direct.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName])
    return rows[0]!.n
  } finally {
    await direct.end()
  }
}

describe('garbage and oversized input', () => {
  it('answers garbage in the startup phase with 08P01, closes, and keeps serving others', async () => {
    const proxy = await proxyFor()
    const client = await RawClient.connect(proxy.port)
    client.send(Buffer.from('GET / HTTP/1.1\r\nHost: pgveil\r\n\r\n'))
    const error = await client.waitFor((m) => m.name === 'error')
    expect(error.code).toBe('08P01')
    expect(error.message).toContain('invalid startup packet length')
    await client.closedPromise
    expect(await selectOne(proxy)).toBe(1)
  })

  it('answers an unknown message type and an impossible length with 08P01 and closes the upstream too', async () => {
    const proxy = await proxyFor()
    for (const garbage of [Buffer.from([0x01, 0, 0, 0, 4]), Buffer.from([0x51, 0, 0, 0, 2])]) {
      const applicationName = `pgveil-garbage-${garbage[0]}`
      const client = await RawClient.connect(proxy.port)
      client.send(serialize.startup({ user: server.superuser, database, application_name: applicationName }))
      await client.waitFor((m) => m.name === 'readyForQuery')
      expect(await backendsNamed(applicationName)).toBe(1)
      client.send(garbage)
      const error = await client.waitFor((m) => m.name === 'error')
      expect(error.code).toBe('08P01')
      expect(error.message).toMatch(/invalid frontend message type 1|invalid message length 2/)
      await client.closedPromise
      await eventually(async () => (await backendsNamed(applicationName)) === 0, 5_000)
    }
    expect(await selectOne(proxy)).toBe(1)
  })

  it('refuses a message over listen.max_message_size with 08P01', async () => {
    const proxy = await proxyFor({ maxMessageSize: 4096 })
    const client = await RawClient.startup(proxy.port, { user: server.superuser, database })
    client.send(serialize.query(`SELECT '${'x'.repeat(10_000)}'`))
    const error = await client.waitFor((m) => m.name === 'error')
    expect(error.code).toBe('08P01')
    expect(error.message).toContain('exceeds the limit of 4096 bytes')
    await client.closedPromise
    expect(await selectOne(proxy)).toBe(1)
  })
})

describe('upstream faults', () => {
  it('reports an unreachable upstream with 08006 naming it, at once', async () => {
    const port = await freePort()
    const proxy = await proxyFor({ upstreamUrl: `postgres://postgres@127.0.0.1:${port}/db?sslmode=disable`, connectTimeoutMs: 3_000 })
    const started = Date.now()
    await expect(selectOne(proxy)).rejects.toMatchObject({ code: '08006', message: expect.stringContaining(`upstream PostgreSQL at 127.0.0.1:${port}: ECONNREFUSED`) })
    expect(Date.now() - started).toBeLessThan(3_000)
  })

  it('gives up on a silent upstream after upstream.connect_timeout', async () => {
    const silent = net.createServer(() => {})
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const { port } = silent.address() as net.AddressInfo
    try {
      const proxy = await proxyFor({ upstreamUrl: `postgres://postgres@127.0.0.1:${port}/db?sslmode=prefer`, connectTimeoutMs: 1_000 })
      const started = Date.now()
      await expect(selectOne(proxy)).rejects.toMatchObject({ code: '08006', message: expect.stringContaining('timed out after 1000 ms') })
      const elapsed = Date.now() - started
      expect(elapsed).toBeGreaterThanOrEqual(900)
      expect(elapsed).toBeLessThan(3_000)
    } finally {
      silent.close()
    }
  })

  it('sends an ErrorResponse and closes when the upstream connection dies mid-session', async () => {
    // A relay between pgveil and PostgreSQL that the test can cut.
    const links = new Set<net.Socket>()
    const relay = net.createServer((inbound) => {
      const outbound = net.connect({ host: '127.0.0.1', port: server.port })
      links.add(inbound).add(outbound)
      inbound.on('error', () => {}).pipe(outbound.on('error', () => {})).pipe(inbound)
    })
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
    const { port } = relay.address() as net.AddressInfo
    try {
      const proxy = await proxyFor({ upstreamUrl: `postgres://postgres@127.0.0.1:${port}/${database}?sslmode=disable` })
      const client = await RawClient.startup(proxy.port, { user: server.superuser, database })
      const from = client.received.length
      client.send(serialize.query('SELECT 1'))
      await client.untilReady(from)
      for (const socket of links) socket.destroy()
      const error = await client.waitFor((m) => m.name === 'error', { from })
      expect(error.code).toBe('08006')
      expect(error.severity).toBe('FATAL')
      expect(error.message).toContain('upstream PostgreSQL closed the connection unexpectedly')
      await client.closedPromise
      expect(await selectOne(proxy)).toBe(1)
    } finally {
      relay.close()
    }
  })

  it("passes PostgreSQL's own FATAL through when the backend is terminated", async () => {
    const proxy = await proxyFor()
    const { client, errors } = await connectedClient(proxy, 'pgveil-terminated')
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
    const direct = new pg.Client({ connectionString: server.url(database) })
    await direct.connect()
    await direct.query('SELECT pg_terminate_backend($1)', [pid])
    await direct.end()
    await eventually(async () => errors.length > 0, 5_000)
    expect(errors[0]!.code).toBe('57P01')
  })
})

describe('clients that vanish', () => {
  it('ends the backend of a client that disappears mid-query', async () => {
    const proxy = await proxyFor()
    const applicationName = `pgveil-vanish-${process.pid}`
    const { client } = await connectedClient(proxy, applicationName)
    const running = client.query('SELECT pg_sleep(60)').catch(() => undefined)
    await eventually(async () => (await backendsNamed(applicationName)) === 1, 5_000)
    ;(client as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy()
    await running
    await eventually(async () => (await backendsNamed(applicationName)) === 0, 5_000)
  })
})

describe('listen.max_connections', () => {
  it('refuses the connection over the limit with 53300 and accepts again when one leaves', async () => {
    const proxy = await proxyFor({ maxConnections: 2 })
    const first = await connectedClient(proxy)
    const second = await connectedClient(proxy)
    await expect(selectOne(proxy)).rejects.toMatchObject({ code: '53300', message: 'sorry, too many clients already' })
    await first.client.end()
    await eventually(async () => proxy.connectionCount < 2, 5_000)
    expect(await selectOne(proxy)).toBe(1)
    await second.client.end()
  })
})

describe('SIGTERM', () => {
  it('stops accepting, lets transactions finish, closes idle sessions, and exits 0 within the drain timeout', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pgveil-sigterm-'))
    const port = await freePort()
    const configFile = path.join(dir, 'pgveil.yaml')
    writeFileSync(configFile, `listen: { host: 127.0.0.1, port: ${port}, drain_timeout: 3 }\nupstream: { url: "${upstreamUrl}" }\n`)
    const env: NodeJS.ProcessEnv = {}
    for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PGVEIL_')) env[name] = value
    const child = spawn(process.execPath, [path.join(ROOT, 'dist/proxy/cli.js'), 'start', '--config', configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.resume()
    try {
      await eventually(async () => stdout.includes('pgveil listening on'), 10_000)
      const url = `postgres://${server.superuser}@127.0.0.1:${port}/${database}?sslmode=disable`
      const connect = () => connectCollectingErrors({ connectionString: url })
      const idle = await connect()
      const busy = await connect()
      const stuck = await connect()
      await busy.client.query('BEGIN')
      await stuck.client.query('BEGIN')

      child.kill('SIGTERM')
      await eventually(async () => idle.errors.length > 0, 5_000)
      expect(idle.errors[0]!.code).toBe('57P01')
      await expect(new pg.Client({ connectionString: url }).connect()).rejects.toMatchObject({ code: 'ECONNREFUSED' })

      // The open transaction can still finish; then that session is closed too.
      expect((await busy.client.query<{ n: number }>('SELECT 2 AS n')).rows).toEqual([{ n: 2 }])
      await busy.client.query('COMMIT')
      await eventually(async () => busy.errors.length > 0, 5_000)
      expect(busy.errors[0]!.code).toBe('57P01')

      // The one that never finishes is closed at the drain timeout, and pgveil exits 0.
      expect(await exited).toBe(0)
      expect(stuck.errors[0]?.code).toBe('57P01')
    } finally {
      child.kill('SIGKILL')
    }
  })
})
