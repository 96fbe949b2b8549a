/**
 * The admin listener: /healthz, /readyz (turning unready when the upstream cannot be
 * reached) and /metrics with counters that move as the proxy works.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMetrics } from '../../audit/metrics.js'
import { startAdmin, type AdminServer } from '../../proxy/admin.js'
import { silentLogger } from '../../proxy/log.js'
import { parseUpstreamUrl } from '../../proxy/upstream-url.js'
import { getTestPostgres } from '../harness/pg.js'
import { freePort } from '../harness/ports.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'

const server = getTestPostgres()
let database: string
let proxy: TestProxy
const admins: AdminServer[] = []

beforeAll(async () => {
  database = await server.createDatabase('admin')
  proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable` })
})
afterAll(async () => {
  await Promise.all(admins.map((a) => a.close()))
  await proxy?.close()
})

async function admin(upstreamPort: number): Promise<AdminServer> {
  const started = await startAdmin(
    { host: '127.0.0.1', port: 0 },
    proxy.metrics,
    { policyReady: () => proxy.policyReady, target: parseUpstreamUrl(`postgres://x@127.0.0.1:${upstreamPort}/db`), connectTimeoutMs: 1_000 },
    silentLogger,
  )
  admins.push(started)
  return started
}

describe('admin endpoints', () => {
  it('answers /healthz, and /readyz while the upstream answers', async () => {
    const a = await admin(server.port)
    const health = await fetch(`http://127.0.0.1:${a.port}/healthz`)
    expect([health.status, await health.json()]).toEqual([200, { status: 'ok' }])
    const ready = await fetch(`http://127.0.0.1:${a.port}/readyz`)
    expect([ready.status, await ready.json()]).toEqual([200, { status: 'ready', checks: { policy: true, upstream: true } }])
    expect((await fetch(`http://127.0.0.1:${a.port}/nope`)).status).toBe(404)
  })

  it('turns /readyz unready when the upstream cannot be reached', async () => {
    const a = await admin(await freePort())
    const ready = await fetch(`http://127.0.0.1:${a.port}/readyz`)
    expect([ready.status, await ready.json()]).toEqual([503, { status: 'not ready', checks: { policy: true, upstream: false } }])
  })

  it('exposes counters that move as clients connect', async () => {
    const a = await admin(server.port)
    const scrape = async () => (await fetch(`http://127.0.0.1:${a.port}/metrics`)).text()
    const count = (text: string) => Number(/^pgveil_client_connections_total (\d+)$/m.exec(text)?.[1] ?? 'NaN')
    const before = count(await scrape())
    const client = new pg.Client({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined) })
    await client.connect()
    await client.end()
    const text = await scrape()
    expect(count(text)).toBe(before + 1)
    expect(text).toMatch(/^pgveil_process_cpu_user_seconds_total /m)
    expect(createMetrics({ defaultMetrics: false }).registry.getMetricsAsArray().map((m) => m.name)).toContain('pgveil_policy_reloads_total')
  })
})
