/**
 * Authentication relay and TLS on both hops, through a real pgveil in front of the
 * harness's PostgreSQL (md5, SCRAM and cleartext roles; server certificate from a
 * throw-away CA).
 */
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { getConfiguredTestPostgres, getTestPostgres, type ConfiguredTestPostgres } from '../harness/pg.js'
import { runProgram, type ProgramResult } from '../harness/programs.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'

function psql(url: string, args: string[]): Promise<ProgramResult> {
  return runProgram('psql', [url, '-X', '-At', ...args], { ...process.env, PGCONNECT_TIMEOUT: '10' })
}

async function query(config: pg.ClientConfig, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client(config)
  await client.connect()
  try {
    return (await client.query(sql)).rows
  } finally {
    await client.end()
  }
}

const SSL_IN_USE = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'

describe.skipIf(!getTestPostgres().configurable)('authentication and TLS through pgveil', () => {
  let server: ConfiguredTestPostgres
  let database: string
  /** Plain client hop, plain upstream hop. */
  let plain: TestProxy
  /** TLS client hop (optional), TLS upstream hop (verify-full). */
  let tlsBoth: TestProxy
  /** TLS required on the client hop. */
  let tlsRequired: TestProxy
  const proxies: TestProxy[] = []
  /** A query through a proxy as the superuser, plain client hop. */
  const query_ = (proxy: TestProxy, sql: string) => query({ connectionString: proxy.url(database) }, sql)

  beforeAll(async () => {
    server = getConfiguredTestPostgres()
    database = await server.createDatabase('auth_tls')
    const upstream = (query: string) => `postgres://pgveil@127.0.0.1:${server.port}/${database}?${query}`
    const listenTls = { cert: server.tls.proxyCertFile, key: server.tls.proxyKeyFile }
    plain = await startTestProxy({ upstreamUrl: upstream('sslmode=disable') })
    tlsBoth = await startTestProxy({
      upstreamUrl: upstream(`sslmode=verify-full&sslrootcert=${encodeURIComponent(server.tls.caFile)}`),
      tls: { ...listenTls, require: false },
    })
    tlsRequired = await startTestProxy({ upstreamUrl: upstream('sslmode=disable'), tls: { ...listenTls, require: true } })
    proxies.push(plain, tlsBoth, tlsRequired)
  })

  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.close()))
  })

  describe('password authentication is relayed to PostgreSQL', () => {
    for (const method of ['md5', 'scram', 'clear'] as const) {
      it(`${method}: the right password connects, a wrong one gets PostgreSQL's own error`, async () => {
        const role = server.roles[method]
        const rows = await query({ connectionString: plain.url(database, role.user, role.password) }, 'SELECT current_user AS who')
        expect(rows).toEqual([{ who: role.user }])
        const wrong = query({ connectionString: plain.url(database, role.user, `${role.password}-wrong`) }, 'SELECT 1')
        await expect(wrong).rejects.toMatchObject({ code: '28P01', message: `password authentication failed for user "${role.user}"` })
      })
    }

    it('psql authenticates with SCRAM through pgveil', async () => {
      const role = server.roles.scram
      const result = await psql(plain.url(database, role.user, role.password), ['-c', 'SELECT current_user'])
      expect(result.stderr).toBe('')
      expect(result.stdout.trim()).toBe(role.user)
    })
  })

  describe('TLS towards clients', () => {
    it('serves a psql client with sslmode=verify-full against the proxy certificate', async () => {
      const url = `postgres://postgres@localhost:${tlsBoth.port}/${database}?sslmode=verify-full&sslrootcert=${encodeURIComponent(server.tls.caFile)}`
      const result = await psql(url, ['-c', 'SELECT 40 + 2', '-c', '\\conninfo'])
      expect(result.stderr).toBe('')
      expect(result.stdout).toMatch(/^42$/m)
      expect(result.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/)
    })

    it('serves node-postgres with full verification', async () => {
      const rows = await query(
        { host: 'localhost', port: tlsBoth.port, user: 'postgres', database, ssl: { ca: readFileSync(server.tls.caFile), servername: 'localhost' } },
        "SELECT 'over tls' AS t",
      )
      expect(rows).toEqual([{ t: 'over tls' }])
    })

    it('fails verification against a certificate from another authority', async () => {
      const wrongCa = readFileSync(server.tls.serverCertFile) // a leaf, not the CA
      const attempt = query({ host: 'localhost', port: tlsBoth.port, user: 'postgres', database, ssl: { ca: wrongCa, servername: 'localhost' } }, 'SELECT 1')
      await expect(attempt).rejects.toThrow(/certificate/i)
    })

    it('answers N to SSLRequest when no listener TLS is configured', async () => {
      const refused = await psql(`postgres://postgres@127.0.0.1:${plain.port}/${database}?sslmode=require`, ['-c', 'SELECT 1'])
      expect(refused.status).not.toBe(0)
      expect(refused.stderr).toContain('server does not support SSL, but SSL was required')
      const preferred = await psql(`postgres://postgres@127.0.0.1:${plain.port}/${database}?sslmode=prefer&gssencmode=prefer`, ['-c', 'SELECT 1'])
      expect(preferred.stdout.trim()).toBe('1')
    })

    it('refuses plaintext clients when listen.tls.require is set', async () => {
      const result = await psql(`postgres://postgres@127.0.0.1:${tlsRequired.port}/${database}?sslmode=disable`, ['-c', 'SELECT 1'])
      expect(result.status).not.toBe(0)
      expect(result.stderr).toContain('pgveil accepts only TLS connections')
      const secure = await psql(`postgres://postgres@127.0.0.1:${tlsRequired.port}/${database}?sslmode=require`, ['-c', 'SELECT 1'])
      expect(secure.stdout.trim()).toBe('1')
    })
  })

  describe('TLS towards the upstream', () => {
    it('uses TLS with verify-full when upstream.url says so, and plain when disabled', async () => {
      expect(await query({ connectionString: tlsBoth.url(database) }, SSL_IN_USE)).toEqual([{ ssl: true }])
      expect(await query({ connectionString: plain.url(database) }, SSL_IN_USE)).toEqual([{ ssl: false }])
    })

    it('follows prefer, require and verify-ca, and verify-ca still checks the chain', async () => {
      const ca = encodeURIComponent(server.tls.caFile)
      for (const params of ['sslmode=prefer', 'sslmode=require', `sslmode=verify-ca&sslrootcert=${ca}`]) {
        const proxy = await startTestProxy({ upstreamUrl: `postgres://pgveil@127.0.0.1:${server.port}/${database}?${params}` })
        proxies.push(proxy)
        expect(await query_(proxy, SSL_IN_USE), params).toEqual([{ ssl: true }])
      }
      const wrong = await startTestProxy({ upstreamUrl: `postgres://pgveil@127.0.0.1:${server.port}/${database}?sslmode=verify-ca&sslrootcert=${encodeURIComponent(server.tls.serverCertFile)}` })
      proxies.push(wrong)
      await expect(query_(wrong, 'SELECT 1')).rejects.toMatchObject({ code: '08006' })
    })

    it('reaches an upstream on a Unix socket', async () => {
      const proxy = await startTestProxy({ upstreamUrl: `postgres:///${database}?host=${encodeURIComponent(server.baseDir)}&port=${server.port}&user=pgveil` })
      proxies.push(proxy)
      expect(await query_(proxy, "SELECT coalesce(inet_client_addr()::text, 'unix') AS via")).toEqual([{ via: 'unix' }])
    })

    it('fails with 08006 naming the upstream when its certificate does not verify', async () => {
      const wrongCa = await startTestProxy({
        upstreamUrl: `postgres://pgveil@127.0.0.1:${server.port}/${database}?sslmode=verify-full&sslrootcert=${encodeURIComponent(server.tls.serverCertFile)}`,
      })
      proxies.push(wrongCa)
      const attempt = query({ connectionString: wrongCa.url(database) }, 'SELECT 1')
      await expect(attempt).rejects.toMatchObject({ code: '08006', message: expect.stringContaining(`upstream PostgreSQL at 127.0.0.1:${server.port}: TLS handshake failed`) })
    })

    it('relays SCRAM over a TLS upstream, without offering channel binding the client cannot use', async () => {
      const role = server.roles.scram
      // Plain client hop: the client says "n" (no channel binding), the TLS upstream accepts it.
      const rows = await query({ connectionString: tlsBoth.url(database, role.user, role.password) }, SSL_IN_USE)
      expect(rows).toEqual([{ ssl: true }])
      // SCRAM-SHA-256-PLUS was removed from the offer, so a client that insists on it is refused by libpq itself.
      const required = await psql(`postgres://${role.user}:${role.password}@127.0.0.1:${tlsBoth.port}/${database}?sslmode=require&channel_binding=require`, ['-c', 'SELECT 1'])
      expect(required.status).not.toBe(0)
      expect(required.stderr).toContain('channel binding')
    })

    it('explains how to connect when a TLS client would trigger the downgrade check of a TLS upstream', async () => {
      const role = server.roles.scram
      const url = `postgres://${role.user}:${role.password}@127.0.0.1:${tlsBoth.port}/${database}?sslmode=require`
      const refused = await psql(url, ['-c', 'SELECT 1'])
      expect(refused.status).not.toBe(0)
      expect(refused.stderr).toContain('channel_binding=disable')
      const works = await psql(`${url}&channel_binding=disable`, ['-c', 'SELECT current_user'])
      expect(works.stderr).toBe('')
      expect(works.stdout.trim()).toBe(role.user)
    })
  })
})
