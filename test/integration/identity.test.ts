/**
 * SET/RESET/SHOW IDENTITY and CONTEXT through a real pgveil in front of a real
 * PostgreSQL, with tokens signed by a JWKS server on 127.0.0.1 (RSA, EC, Ed25519).
 */
import { createHmac, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import postgres from 'postgres'
import { serialize } from 'pg-protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { getTestPostgres } from '../harness/pg.js'
import { runProgram } from '../harness/programs.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { RawClient } from '../harness/raw-client.js'
import { TestJwksServer } from '../harness/jwks-server.js'

const server = getTestPostgres()
let database: string
let jwks: TestJwksServer
let proxy: TestProxy
const clients: pg.Client[] = []

async function connect(to: TestProxy = proxy): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: to.url(database) })
  client.on('error', () => {})
  await client.connect()
  clients.push(client)
  return client
}

async function showIdentity(client: pg.Client): Promise<unknown> {
  const { rows } = await client.query<{ identity: string }>('SHOW IDENTITY')
  return rows[0]!.identity === '' ? null : JSON.parse(rows[0]!.identity)
}

async function refusal(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  const error = (await promise.then(
    () => null,
    (e: unknown) => e,
  )) as { code: string; message: string } | null
  if (error === null) throw new Error('expected the statement to be refused')
  return error
}

beforeAll(async () => {
  database = await server.createDatabase('identity')
  jwks = await TestJwksServer.start()
  proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, identity: jwks.identityConfig() })
})

afterAll(async () => {
  for (const client of clients) await client.end().catch(() => {})
  await proxy?.close()
  await jwks?.close()
})

describe('SET IDENTITY', () => {
  it.each(['RS256', 'ES256', 'EdDSA'] as const)('verifies a %s token and answers SET; SHOW IDENTITY gives iss, sub, aud, never the token', async (alg) => {
    const client = await connect()
    const token = await jwks.token({ sub: `user-${alg}` }, { alg })
    const result = await client.query(`SET IDENTITY TO '${token}'`)
    expect(result.command).toBe('SET')
    expect(await showIdentity(client)).toEqual({ iss: jwks.issuer, sub: `user-${alg}`, aud: ['api.test'] })
    const { rows } = await client.query('SHOW IDENTITY')
    expect(JSON.stringify(rows)).not.toContain(token.split('.')[2])
  })

  it('accepts any letter case, = instead of TO, SESSION, comments and a trailing semicolon', async () => {
    const client = await connect()
    const token = await jwks.token({ sub: 'case' })
    expect((await client.query(`  set /* c */ Session identity = '${token}' ; `)).command).toBe('SET')
    expect(await showIdentity(client)).toMatchObject({ sub: 'case' })
    expect((await client.query('reset IDENTITY')).command).toBe('RESET')
    expect(await showIdentity(client)).toBeNull()
    // PostgreSQL never received the token (log_statement = all logs what it did receive).
    await client.query("SELECT 'identity-log-marker'")
    const log = server.readLog()
    expect(log).toContain('identity-log-marker')
    expect(log).not.toContain(token)
    expect(log).not.toContain(token.split('.')[2]!)
  })

  it('takes the token as a parameter in the extended protocol (Parse/Bind/Describe/Execute/Sync)', async () => {
    const client = await connect()
    const token = await jwks.token({ sub: 'param' })
    const result = await client.query('SET IDENTITY TO $1', [token])
    expect(result.command).toBe('SET')
    expect(result.rows).toEqual([])
    const show = await client.query({ text: 'SHOW IDENTITY', values: [] , rowMode: 'array' })
    expect(JSON.parse((show.rows[0] as string[])[0]!)).toMatchObject({ sub: 'param' })
    // A named prepared statement, executed twice with different tokens.
    await client.query({ name: 'set-id', text: 'SET IDENTITY = $1', values: [await jwks.token({ sub: 'first' })] })
    expect(await showIdentity(client)).toMatchObject({ sub: 'first' })
    await client.query({ name: 'set-id', text: 'SET IDENTITY = $1', values: [await jwks.token({ sub: 'second' })] })
    expect(await showIdentity(client)).toMatchObject({ sub: 'second' })
    expect((await client.query('SELECT 41 + 1 AS answer')).rows).toEqual([{ answer: 42 }])
    expect(server.readLog()).not.toContain(token)
  })

  it('answers every command in the extended protocol too', async () => {
    const client = await connect()
    const extended = (text: string): Promise<pg.QueryResult> => client.query({ text, queryMode: 'extended' } as pg.QueryConfig)
    expect((await extended(`SET IDENTITY TO '${await jwks.token({ sub: 'ext' })}'`)).command).toBe('SET')
    expect((await extended('SHOW IDENTITY')).rows).toEqual([{ identity: JSON.stringify({ iss: jwks.issuer, sub: 'ext', aud: ['api.test'] }) }])
    expect((await extended(`SET CONTEXT = '[1, 2]'`)).command).toBe('SET')
    expect((await extended('SHOW CONTEXT')).rows).toEqual([{ context: '[1,2]' }])
    expect((await extended('BEGIN')).command).toBe('BEGIN')
    expect((await extended(`SET LOCAL IDENTITY TO '${await jwks.token({ sub: 'ext-local' })}'`)).command).toBe('SET')
    expect(await showIdentity(client)).toMatchObject({ sub: 'ext-local' })
    expect((await extended('COMMIT')).command).toBe('COMMIT')
    expect(await showIdentity(client)).toMatchObject({ sub: 'ext' })
    expect((await extended('RESET IDENTITY')).command).toBe('RESET')
    expect((await extended('RESET CONTEXT')).command).toBe('RESET')
    expect(await showIdentity(client)).toBeNull()
    expect((await extended('SHOW CONTEXT')).rows).toEqual([{ context: '' }])
  })

  it('works through postgres.js, which describes statements before binding them', async () => {
    const sql = postgres(proxy.url(database), { max: 1, onnotice: () => {} })
    try {
      const token = await jwks.token({ sub: 'postgres-js' })
      await sql`SET IDENTITY TO ${token}`
      const [shown] = await sql`SHOW IDENTITY`
      expect(JSON.parse(shown!.identity as string)).toMatchObject({ sub: 'postgres-js' })
      await sql`SET CONTEXT TO ${'{"k": "v"}'}`
      expect(await sql`SHOW CONTEXT`).toEqual([{ context: '{"k":"v"}' }])
      const error = (await sql`SET IDENTITY TO ${'not-a-token'}`.then(
        () => null,
        (e: unknown) => e,
      )) as { code: string } | null
      expect(error?.code).toBe('28000')
      expect(await sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
      await sql.unsafe('RESET IDENTITY')
      expect(await sql`SHOW IDENTITY`).toEqual([{ identity: '' }])
    } finally {
      await sql.end()
    }
  })

  it('answers the extended protocol in pipeline order: ParseComplete, ParameterDescription, NoData, BindComplete, CommandComplete, ReadyForQuery', async () => {
    const raw = await RawClient.startup(proxy.port, { user: 'postgres', database })
    try {
      const token = await jwks.token({ sub: 'raw' })
      const from = raw.received.length
      raw.send(
        serialize.parse({ text: 'SELECT 1', name: '' }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.parse({ text: `SET IDENTITY TO '${token}'`, name: 'lit' }),
        serialize.describe({ type: 'S', name: 'lit' }),
        serialize.bind({ statement: 'lit' }),
        serialize.describe({ type: 'P' }),
        serialize.execute({}),
        serialize.parse({ text: 'SHOW IDENTITY', name: '' }),
        serialize.bind({}),
        serialize.describe({ type: 'P' }),
        serialize.execute({}),
        serialize.sync(),
      )
      const messages = await raw.untilReady(from)
      expect(messages.map((m) => m.name)).toEqual([
        'parseComplete', 'bindComplete', 'dataRow', 'commandComplete',
        'parseComplete', 'parameterDescription', 'noData', 'bindComplete', 'noData', 'commandComplete',
        'parseComplete', 'bindComplete', 'rowDescription', 'dataRow', 'commandComplete',
        'readyForQuery',
      ])
      expect(messages[9]!.text).toBe('SET')
      expect(messages[14]!.text).toBe('SHOW')
      const row = messages[13] as unknown as { fields: string[] }
      expect(JSON.parse(row.fields[0]!)).toMatchObject({ sub: 'raw' })
    } finally {
      raw.close()
    }
  })

  it('keeps pipelined queries in order, and a SET IDENTITY skipped after an error has no effect', async () => {
    const raw = await RawClient.startup(proxy.port, { user: 'postgres', database })
    try {
      let from = raw.received.length
      raw.send(serialize.query(`SET IDENTITY TO '${await jwks.token({ sub: 'piped' })}'`), serialize.query('SHOW IDENTITY'), serialize.query('SELECT 7 AS seven'))
      let messages = await raw.untilReady(from, 3)
      expect(messages.map((m) => m.name)).toEqual(['commandComplete', 'readyForQuery', 'rowDescription', 'dataRow', 'commandComplete', 'readyForQuery', 'rowDescription', 'dataRow', 'commandComplete', 'readyForQuery'])
      expect(JSON.parse((messages[3] as unknown as { fields: string[] }).fields[0]!)).toMatchObject({ sub: 'piped' })
      expect((messages[7] as unknown as { fields: string[] }).fields).toEqual(['7'])

      from = raw.received.length
      raw.send(
        serialize.parse({ text: 'SELECT 1/0' }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.parse({ text: 'SET IDENTITY TO $1', name: 'skipped' }),
        serialize.bind({ statement: 'skipped', values: [await jwks.token({ sub: 'never' })] }),
        serialize.execute({}),
        serialize.sync(),
        serialize.query('SHOW IDENTITY'),
      )
      messages = await raw.untilReady(from, 2)
      // 1/0 is folded when the statement is planned, at Bind.
      expect(messages.map((m) => m.name)).toEqual(['parseComplete', 'error', 'readyForQuery', 'rowDescription', 'dataRow', 'commandComplete', 'readyForQuery'])
      expect(JSON.parse((messages[4] as unknown as { fields: string[] }).fields[0]!)).toMatchObject({ sub: 'piped' })
    } finally {
      raw.close()
    }
  })

  it('works through psql, several commands sharing one query string included', async () => {
    const token = await jwks.token({ sub: 'psql-user' })
    const result = await runProgram('psql', [
      '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', proxy.url(database),
      '-c', `SET IDENTITY TO '${token}'`,
      '-c', 'SHOW IDENTITY',
      '-c', `SET CONTEXT TO '{"tenant": 7}'; SHOW CONTEXT`,
      '-c', 'RESET CONTEXT',
      '-c', 'SHOW CONTEXT',
      '-c', 'BEGIN',
      '-c', `SET LOCAL IDENTITY TO '${await jwks.token({ sub: 'psql-local' })}'`,
      '-c', 'SHOW IDENTITY',
      '-c', 'COMMIT',
      '-c', 'RESET IDENTITY',
      '-c', 'SHOW IDENTITY',
    ])
    expect(result.stderr).toBe('')
    const lines = result.stdout.replace(/\n$/, '').split('\n')
    expect(lines[0]).toBe('SET')
    expect(JSON.parse(lines[1]!)).toEqual({ iss: jwks.issuer, sub: 'psql-user', aud: ['api.test'] })
    expect(lines.slice(2, 6)).toEqual(['SET', '{"tenant":7}', 'RESET', ''])
    expect(lines[6]).toBe('BEGIN')
    expect(lines[7]).toBe('SET')
    expect(JSON.parse(lines[8]!)).toMatchObject({ sub: 'psql-local' })
    expect(lines.slice(9)).toEqual(['COMMIT', 'RESET', ''])
  })

  it('refuses mixing pgveil commands with other statements in one query string, and runs neither', async () => {
    const client = await connect()
    const token = await jwks.token({ sub: 'mixed' })
    const error = await refusal(client.query(`SELECT 1; SET IDENTITY TO '${token}'`))
    expect(error.code).toBe('0A000')
    expect(error.message).toMatch(/cannot be combined with other statements/)
    expect(await showIdentity(client)).toBeNull()
  })
})

describe('SET CONTEXT', () => {
  it('keeps any JSON, in both protocols', async () => {
    const client = await connect()
    expect((await client.query(`SET CONTEXT TO '{"tenant": "acme", "roles": ["a"]}'`)).command).toBe('SET')
    expect((await client.query('SHOW CONTEXT')).rows).toEqual([{ context: '{"tenant":"acme","roles":["a"]}' }])
    expect((await client.query('SET CONTEXT = $1', ['42'])).command).toBe('SET')
    expect((await client.query('SHOW CONTEXT')).rows).toEqual([{ context: '42' }])
  })

  it('refuses a value that is not JSON with 22P02 and keeps the previous context', async () => {
    const client = await connect()
    await client.query(`SET CONTEXT TO '{"keep": true}'`)
    const error = await refusal(client.query(`SET CONTEXT TO '{not json'`))
    expect(error.code).toBe('22P02')
    expect(error.message).toMatch(/not valid JSON/)
    expect((await client.query('SHOW CONTEXT')).rows).toEqual([{ context: '{"keep":true}' }])
  })
})

describe('bad tokens', () => {
  let client: pg.Client
  let before: string

  beforeAll(async () => {
    client = await connect()
  })

  async function expectRefused(token: string, message: RegExp): Promise<void> {
    before = await jwks.token({ sub: 'previous' })
    await client.query(`SET IDENTITY TO '${before}'`)
    const error = await refusal(client.query(`SET IDENTITY TO '${token}'`))
    expect(error.code).toBe('28000')
    expect(error.message).toMatch(message)
    if (token.length > 20) expect(error.message).not.toContain(token.slice(-20))
    expect(await showIdentity(client)).toMatchObject({ sub: 'previous' })
  }

  it('malformed', async () => {
    await expectRefused('not.a.jwt-at-all', /not a signed JWT|not a valid signed JWT/)
    await expectRefused('garbage', /not a signed JWT/)
  })

  it('wrong signature', async () => {
    const token = await jwks.token({ sub: 'mallory' })
    const other = await jwks.token({ sub: 'alice' })
    await expectRefused(`${token.split('.').slice(0, 2).join('.')}.${other.split('.')[2]}`, /signature does not verify/)
  })

  it('alg: none', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')
    const payload = Buffer.from(JSON.stringify({ iss: jwks.issuer, sub: 'root', aud: 'api.test', exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url')
    await expectRefused(`${header}.${payload}.`, /algorithm "none" is not allowed/)
  })

  it('an RS256 token re-signed as HS256 with the public key', async () => {
    const key = jwks.key('RS256')
    const header = Buffer.from(JSON.stringify({ alg: 'HS256', kid: key.kid })).toString('base64url')
    const payload = Buffer.from(JSON.stringify({ iss: jwks.issuer, sub: 'root', aud: 'api.test', exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url')
    const signature = createHmac('sha256', JSON.stringify(key.publicJwk)).update(`${header}.${payload}`).digest('base64url')
    await expectRefused(`${header}.${payload}.${signature}`, /algorithm "HS256" is not allowed/)
  })

  it('unknown issuer', async () => {
    await expectRefused(await jwks.token({ iss: 'https://evil.example.com' }), /issuer "https:\/\/evil\.example\.com" is not trusted/)
  })

  it('unknown kid', async () => {
    await expectRefused(await jwks.token({}, { kid: 'no-such-key' }), /no key of issuer .* matches the token's key id/)
  })

  it('wrong audience', async () => {
    await expectRefused(await jwks.token({ aud: 'other.api' }), /audience does not include api\.test/)
  })

  it('expired', async () => {
    const now = Math.floor(Date.now() / 1000)
    await expectRefused(await jwks.token({ iat: now - 120, exp: now - 60 }), /expired at/)
  })

  it('not yet valid', async () => {
    const now = Math.floor(Date.now() / 1000)
    await expectRefused(await jwks.token({ nbf: now + 600 }), /not valid before/)
    await expectRefused(await jwks.token({ iat: now + 600 }), /issued in the future|"iat"/)
  })

  it('huge token', async () => {
    await expectRefused(await jwks.token({ padding: 'x'.repeat(5000) }), /larger than identity\.max_token_size \(4096 bytes\)/)
  })

  it('inside a failed transaction: 25P02, identity unchanged', async () => {
    before = await jwks.token({ sub: 'previous' })
    await client.query(`SET IDENTITY TO '${before}'`)
    await client.query('BEGIN')
    await refusal(client.query('SELECT 1/0'))
    const error = await refusal(client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'during-failure' })}'`))
    expect(error.code).toBe('25P02')
    await client.query('ROLLBACK')
    expect(await showIdentity(client)).toMatchObject({ sub: 'previous' })
  })

  it('counts verifications by outcome', async () => {
    const text = await proxy.metrics.registry.getSingleMetricAsString('pgveil_jwt_verifications_total')
    expect(text).toMatch(/outcome="ok"} [1-9]/)
    expect(text).toMatch(/outcome="bad_signature"} [1-9]/)
    expect(text).toMatch(/outcome="expired"} [1-9]/)
    expect(await proxy.metrics.registry.getSingleMetricAsString('pgveil_jwks_fetches_total')).toMatch(/outcome="ok"} [1-9]/)
  })
})

describe('JWKS', () => {
  it('picks up a rotated key through one refetch on its unknown kid', async () => {
    const client = await connect()
    const rotated = await jwks.rotate('ES256')
    const requests = jwks.requests
    expect((await client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'rotated' }, { key: rotated })}'`)).command).toBe('SET')
    expect(jwks.requests).toBe(requests + 1)
    expect(await showIdentity(client)).toMatchObject({ sub: 'rotated' })
  })

  it('keeps verifying tokens with cached keys while the JWKS endpoint is down or returns junk', async () => {
    const client = await connect()
    for (const mode of ['down', 'junk', 'not-a-jwks'] as const) {
      jwks.mode = mode
      try {
        const started = Date.now()
        expect((await client.query(`SET IDENTITY TO '${await jwks.token({ sub: mode }, { alg: 'EdDSA' })}'`)).command).toBe('SET')
        expect(Date.now() - started).toBeLessThan(1000)
        // A key it has never seen cannot be fetched: refused, saying why.
        const error = await refusal(client.query(`SET IDENTITY TO '${await jwks.token({}, { key: await jwks.newKey('RS256') })}'`))
        expect(error.code).toBe('28000')
        expect(error.message).toMatch(/could not be fetched/)
      } finally {
        jwks.mode = 'ok'
      }
    }
  })

  it('refuses every token of an issuer whose JWKS was never reachable', async () => {
    const unreachable = await startTestProxy({
      upstreamUrl: `${server.url(database)}?sslmode=disable`,
      identity: jwks.identityConfig({ issuers: [{ issuer: jwks.issuer, audience: null, jwksUri: 'http://127.0.0.1:1/jwks.json', algorithms: ['RS256'], secret: null }] }),
    })
    try {
      const client = await connect(unreachable)
      const error = await refusal(client.query(`SET IDENTITY TO '${await jwks.token()}'`))
      expect(error.code).toBe('28000')
      expect(error.message).toMatch(/keys of issuer .* could not be fetched/)
    } finally {
      await unreachable.close()
    }
  })
})

describe('lifecycle', () => {
  it('SET LOCAL lasts until COMMIT, and until ROLLBACK', async () => {
    const client = await connect()
    await client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'session' })}'`)
    for (const end of ['COMMIT', 'ROLLBACK']) {
      await client.query('BEGIN')
      expect((await client.query(`SET LOCAL IDENTITY TO '${await jwks.token({ sub: 'local' })}'`)).command).toBe('SET')
      expect(await showIdentity(client)).toMatchObject({ sub: 'local' })
      await client.query(end)
      expect(await showIdentity(client)).toMatchObject({ sub: 'session' })
    }
  })

  it('a session-level SET inside a transaction that rolls back is undone, as PostgreSQL does for SET', async () => {
    const client = await connect()
    await client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'kept' })}'`)
    await client.query('BEGIN')
    await client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'undone' })}'`)
    expect(await showIdentity(client)).toMatchObject({ sub: 'undone' })
    await client.query('ROLLBACK')
    expect(await showIdentity(client)).toMatchObject({ sub: 'kept' })
    await client.query('BEGIN')
    await client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'committed' })}'`)
    await client.query('COMMIT')
    expect(await showIdentity(client)).toMatchObject({ sub: 'committed' })
  })

  it('RESET ALL and DISCARD ALL clear identity and context and still reach PostgreSQL', async () => {
    const client = await connect()
    for (const command of ['RESET ALL', 'DISCARD ALL']) {
      await client.query(`SET IDENTITY TO '${await jwks.token()}'`)
      await client.query(`SET CONTEXT TO '{"a":1}'`)
      await client.query("SET application_name = 'before'")
      expect((await client.query(command)).command).toBe(command.split(' ')[0])
      expect(await showIdentity(client)).toBeNull()
      expect((await client.query('SHOW CONTEXT')).rows).toEqual([{ context: '' }])
      expect((await client.query('SHOW application_name')).rows[0].application_name).not.toBe('before')
    }
  })

  it('two concurrent clients keep their own identities', async () => {
    const [a, b] = await Promise.all([connect(), connect()])
    await Promise.all([a!.query(`SET IDENTITY TO '${await jwks.token({ sub: 'client-a' })}'`), b!.query(`SET IDENTITY TO '${await jwks.token({ sub: 'client-b' })}'`)])
    for (let i = 0; i < 5; i++) {
      const [sa, sb] = await Promise.all([showIdentity(a!), showIdentity(b!)])
      expect(sa).toMatchObject({ sub: 'client-a' })
      expect(sb).toMatchObject({ sub: 'client-b' })
    }
    const c = await connect()
    expect(await showIdentity(c)).toBeNull()
  })

  it('an identity whose exp passes is refused at the next statement (on_expiry: refuse); ROLLBACK still works', async () => {
    const client = await connect()
    await client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'short', exp: Math.floor(Date.now() / 1000) + 2 })}'`)
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    await client.query('BEGIN')
    await new Promise((resolve) => setTimeout(resolve, 2600))
    const error = await refusal(client.query('SELECT 1'))
    expect(error.code).toBe('28000')
    expect(error.message).toMatch(/the identity's token expired at/)
    expect((await client.query('ROLLBACK')).command).toBe('ROLLBACK')
    await client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'fresh' })}'`)
    expect((await client.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }])
  })

  it('on_expiry: clear drops the identity and runs the statement without it', async () => {
    const clearing = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, identity: jwks.identityConfig({ onExpiry: 'clear', forwardClaims: true }) })
    try {
      const client = await connect(clearing)
      await client.query(`SET IDENTITY TO '${await jwks.token({ sub: 'short', exp: Math.floor(Date.now() / 1000) + 2 })}'`)
      expect((await client.query("SELECT current_setting('pgveil.sub', true) AS sub")).rows).toEqual([{ sub: 'short' }])
      await new Promise((resolve) => setTimeout(resolve, 2600))
      expect((await client.query("SELECT current_setting('pgveil.sub', true) AS sub")).rows).toEqual([{ sub: '' }])
      expect(await showIdentity(client)).toBeNull()
      // The same in the extended protocol: the claims are cleared before the statement runs.
      await client.query('SET IDENTITY TO $1', [await jwks.token({ sub: 'short-ext', exp: Math.floor(Date.now() / 1000) + 2 })])
      expect((await client.query("SELECT current_setting('pgveil.sub', true) AS sub WHERE $1::int = 1", [1])).rows).toEqual([{ sub: 'short-ext' }])
      await new Promise((resolve) => setTimeout(resolve, 2600))
      expect((await client.query("SELECT current_setting('pgveil.sub', true) AS sub WHERE $1::int = 1", [1])).rows).toEqual([{ sub: '' }])
      expect(await showIdentity(client)).toBeNull()
    } finally {
      await clearing.close()
    }
  })
})

describe('identity.require', () => {
  let required: TestProxy
  beforeAll(async () => {
    required = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, identity: jwks.identityConfig({ require: true }) })
  })
  afterAll(async () => {
    await required.close()
  })

  it('refuses statements until an identity is set, in both protocols; transaction control and identity commands work', async () => {
    const client = await connect(required)
    for (const query of [() => client.query('SELECT 1'), () => client.query('SELECT $1::int', [1])]) {
      const error = await refusal(query())
      expect(error.code).toBe('28000')
      expect(error.message).toMatch(/requires a verified identity/)
    }
    expect((await client.query('BEGIN')).command).toBe('BEGIN')
    expect((await client.query('SHOW IDENTITY')).rows).toEqual([{ identity: '' }])
    expect((await client.query('COMMIT')).command).toBe('COMMIT')
    await client.query('SET IDENTITY TO $1', [await jwks.token({ sub: 'allowed' })])
    expect((await client.query('SELECT $1::int AS n', [5])).rows).toEqual([{ n: 5 }])
    await client.query('RESET IDENTITY')
    expect((await refusal(client.query('SELECT 1'))).code).toBe('28000')
  })
})

describe('audit log', () => {
  it('tags statements with the verified identity, records identity events, and never the token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgveil-identity-audit-'))
    const file = join(dir, 'audit.log')
    const audited = await startTestProxy({
      upstreamUrl: `${server.url(database)}?sslmode=disable`,
      identity: jwks.identityConfig(),
      audit: { to: file, chainKey: randomBytes(32), maxBacklogBytes: 16 * 1024 * 1024 },
    })
    const good = await jwks.token({ sub: 'audited', aud: ['api.test', 'other'] })
    const bad = await jwks.token({ sub: 'mallory', aud: 'elsewhere' })
    try {
      const client = await connect(audited)
      await client.query(`SET IDENTITY TO '${good}'`)
      await client.query('SELECT 1 AS one')
      await refusal(client.query('SET IDENTITY TO $1', [bad]))
      await client.query('RESET IDENTITY')
      await client.query('SELECT 2 AS two')
      await client.end()
    } finally {
      await audited.close()
    }
    const text = readFileSync(file, 'utf8')
    rmSync(dir, { recursive: true, force: true })
    for (const token of [good, bad]) expect(text).not.toContain(token.split('.')[2])
    const lines = text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    const events = lines.map((l) => l.event)
    expect(events).toEqual(expect.arrayContaining(['identity_set', 'identity_failed', 'identity_cleared']))
    expect(lines.find((l) => l.event === 'identity_failed')).toMatchObject({ outcome: 'audience' })
    const statements = lines.filter((l) => l.event === 'statement')
    const one = statements.find((l) => l.statement === 'SELECT $1 AS one')
    const two = statements.find((l) => l.statement === 'SELECT $1 AS two')
    expect(one?.identity).toEqual({ iss: jwks.issuer, sub: 'audited', aud: ['api.test', 'other'] })
    expect(two?.identity).toBeNull()
  })
})
