/**
 * The PostgreSQL harness gives what other suites rely on: roles that only get in
 * with their own password method, TLS that verifies against the harness CA, and a
 * statement log that shows what PostgreSQL received.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { createDatabase, getConfiguredTestPostgres, getTestPostgres } from '../harness/pg.js'

async function withClient<T>(config: pg.ClientConfig, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config)
  await client.connect()
  try {
    return await use(client)
  } finally {
    await client.end()
  }
}

const server = getTestPostgres()

describe('shared test PostgreSQL', () => {
  it('answers as the superuser and makes a database per suite', async () => {
    const name = await createDatabase('harness check')
    expect(name).toMatch(/^pgveil_[0-9a-f]{6}_harness_check_[0-9a-f]{6}$/)
    const row = await withClient({ connectionString: server.url(name) }, async (client) =>
      (await client.query<{ db: string; su: boolean }>("SELECT current_database() AS db, current_setting('is_superuser') = 'on' AS su")).rows[0],
    )
    expect(row).toEqual({ db: name, su: true })
    expect(server.version).toMatch(/^\d+(\.\d+)?/)
  })
})

describe.skipIf(!server.configurable)('harness-configured PostgreSQL', () => {
  const roleNames = ['md5', 'scram', 'clear'] as const

  // The wrong-password cases below prove each password line precedes the trust line.
  it.each(roleNames)('lets the %s role in over TCP with its password', async (method) => {
    const configured = getConfiguredTestPostgres()
    const role = configured.roles[method]
    const user = await withClient(
      { host: configured.host, port: configured.port, database: 'postgres', user: role.user, password: role.password, ssl: false },
      async (client) => (await client.query<{ user: string }>('SELECT current_user AS user')).rows[0]?.user,
    )
    expect(user).toBe(role.user)
  })

  it('stores the md5 role as md5 and the others as SCRAM', async () => {
    const configured = getConfiguredTestPostgres()
    const rows = await withClient({ connectionString: configured.url() }, async (client) =>
      (await client.query<{ rolname: string; kind: string }>(
        "SELECT rolname, left(rolpassword, 3) AS kind FROM pg_authid WHERE rolname LIKE 'pgveil\\_%' ORDER BY rolname",
      )).rows,
    )
    expect(rows).toEqual([
      { rolname: 'pgveil_clear', kind: 'SCR' },
      { rolname: 'pgveil_md5', kind: 'md5' },
      { rolname: 'pgveil_scram', kind: 'SCR' },
    ])
  })

  it.each(roleNames)('refuses the %s role with a wrong password (28P01)', async (method) => {
    const configured = getConfiguredTestPostgres()
    const role = configured.roles[method]
    const attempt = withClient(
      { host: configured.host, port: configured.port, database: 'postgres', user: role.user, password: `${role.password}x`, ssl: false },
      async () => undefined,
    )
    await expect(attempt).rejects.toMatchObject({ code: '28P01', message: expect.stringContaining(`password authentication failed for user "${role.user}"`) })
  })

  it('speaks TLS verified against the harness CA (verify-full), as PostgreSQL reports', async () => {
    const configured = getConfiguredTestPostgres()
    const ssl = await withClient(
      {
        host: configured.host,
        port: configured.port,
        database: 'postgres',
        user: configured.roles.scram.user,
        password: configured.roles.scram.password,
        ssl: { ca: readFileSync(configured.tls.caFile), servername: 'localhost', rejectUnauthorized: true },
      },
      async (client) => (await client.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]?.ssl,
    )
    expect(ssl).toBe(true)
  })

  it('has a proxy certificate from the same CA that verifies for localhost', async () => {
    const configured = getConfiguredTestPostgres()
    const { X509Certificate } = await import('node:crypto')
    const ca = new X509Certificate(readFileSync(configured.tls.caFile))
    const proxy = new X509Certificate(readFileSync(configured.tls.proxyCertFile))
    expect(proxy.verify(ca.publicKey)).toBe(true)
    expect(proxy.checkHost('localhost')).toBe('localhost')
    expect(proxy.checkIP('127.0.0.1')).toBe('127.0.0.1')
    expect(proxy.subject).toContain('CN=localhost')
    // The proxy key matches its certificate.
    const { createPrivateKey, createPublicKey } = await import('node:crypto')
    const key = createPrivateKey(readFileSync(configured.tls.proxyKeyFile))
    expect(createPublicKey(key).export({ format: 'der', type: 'spki' })).toEqual(proxy.publicKey.export({ format: 'der', type: 'spki' }))
  })

  it('rejects a TLS client that expects a different host name', async () => {
    const configured = getConfiguredTestPostgres()
    const attempt = withClient(
      {
        host: configured.host,
        port: configured.port,
        database: 'postgres',
        ssl: { ca: readFileSync(configured.tls.caFile), servername: 'db.example.com', rejectUnauthorized: true },
      },
      async () => undefined,
    )
    await expect(attempt).rejects.toThrow(/altnames|Hostname/i)
  })

  it('logs every statement PostgreSQL receives', async () => {
    const configured = getConfiguredTestPostgres()
    const marker = `harness_marker_${randomBytes(6).toString('hex')}`
    expect(configured.readLog()).not.toContain(marker)
    await withClient({ connectionString: configured.url() }, async (client) => {
      await client.query(`SELECT 1 AS ${marker}`)
      await client.query({ text: `SELECT $1::text AS ${marker}_extended`, values: ['x'] })
    })
    const log = configured.readLog()
    expect(log).toContain(`statement: SELECT 1 AS ${marker}`)
    expect(log).toMatch(new RegExp(`execute <unnamed>: SELECT \\$1::text AS ${marker}_extended`))
  })
})
