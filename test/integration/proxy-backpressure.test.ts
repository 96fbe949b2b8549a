/**
 * Backpressure both ways: a slow reader stops pgveil reading from PostgreSQL, and a
 * slow upstream stops pgveil reading from the client; nothing is buffered without bound.
 */
import net from 'node:net'
import pg from 'pg'
import { serialize } from 'pg-protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { RawClient } from '../harness/raw-client.js'

const server = getTestPostgres()
let database: string
const proxies: TestProxy[] = []

beforeAll(async () => {
  database = await server.createDatabase('backpressure')
})
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()))
})

async function waitEvent(applicationName: string): Promise<string | null> {
  const direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  try {
    const { rows } = await direct.query<{ wait_event: string | null }>('SELECT wait_event FROM pg_stat_activity WHERE application_name = $1', [applicationName])
    return rows[0]?.wait_event ?? null
  } finally {
    await direct.end()
  }
}

describe('backpressure', () => {
  it('a client that stops reading makes PostgreSQL wait in ClientWrite, with pgveil memory bounded', async () => {
    const proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable` })
    proxies.push(proxy)
    const applicationName = 'pgveil-slow-reader'
    const client = await RawClient.connect(proxy.port)
    client.send(serialize.startup({ user: server.superuser, database, application_name: applicationName }))
    await client.waitFor((m) => m.name === 'readyForQuery')
    const rssBefore = process.memoryUsage().rss
    client.socket.pause()
    // About 500 MB of rows: far more than socket buffers hold.
    client.send(serialize.query("SELECT repeat('x', 1000) FROM generate_series(1, 500000)"))
    await eventually(async () => (await waitEvent(applicationName)) === 'ClientWrite', 15_000)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(await waitEvent(applicationName)).toBe('ClientWrite')
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(100 * 1024 * 1024)
    client.close()
    await eventually(async () => (await waitEvent(applicationName)) === null, 10_000)
  })

  it('an upstream that stops reading makes pgveil stop reading the client', async () => {
    let inboundToPostgres: net.Socket | null = null
    const relay = net.createServer((inbound) => {
      const outbound = net.connect({ host: '127.0.0.1', port: server.port })
      inboundToPostgres = inbound
      inbound.on('error', () => {}).pipe(outbound.on('error', () => {})).pipe(inbound)
    })
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
    const { port } = relay.address() as net.AddressInfo
    try {
      const proxy = await startTestProxy({ upstreamUrl: `postgres://postgres@127.0.0.1:${port}/${database}?sslmode=disable` })
      proxies.push(proxy)
      const client = await RawClient.startup(proxy.port, { user: server.superuser, database })
      const from = client.received.length
      client.send(serialize.query('CREATE TEMP TABLE sink (line text); COPY sink FROM STDIN'))
      await client.waitFor((m) => m.name === 'copyInResponse', { from })
      inboundToPostgres!.pause()
      const rssBefore = process.memoryUsage().rss
      const row = Buffer.from(`${'y'.repeat(1023)}\n`)
      const copyData = serialize.copyData(Buffer.concat(Array.from({ length: 64 }, () => row)))
      // Keep writing until our own socket buffers: pgveil has stopped reading us.
      // pgveil runs in this process: yield often so it gets to read whatever it wants to.
      let written = 0
      let rows = 0
      while (client.socket.writableLength < 32 * 1024 * 1024 && written < 512 * 1024 * 1024) {
        client.socket.write(copyData)
        written += copyData.length
        rows += 64
        if (rows % 1024 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
      }
      expect(client.socket.writableLength).toBeGreaterThanOrEqual(32 * 1024 * 1024)
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(200 * 1024 * 1024)
      inboundToPostgres!.resume()
      client.send(serialize.copyDone())
      await client.waitFor((m) => m.name === 'commandComplete' && m.text === `COPY ${rows}`, { from, timeoutMs: 60_000 })
      client.close()
    } finally {
      relay.close()
    }
  })
})
