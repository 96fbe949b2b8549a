/**
 * pgveil resolves unqualified table names in schema public. A search_path naming a
 * schema with protected tables would let `INSERT INTO accounts …` reach an encrypted
 * column unencrypted, so it is refused wherever a client can set it: SET (the
 * analyzer), and at connection time (the `search_path` startup parameter, or
 * `-c search_path=…` in `options` / PGOPTIONS).
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { searchPathProblems } from '../../proxy/search-path-check.js'
import { getTestPostgres } from '../harness/pg.js'
import { runProgram } from '../harness/programs.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'

const server = getTestPostgres()
let database: string
let proxy: TestProxy
let direct: pg.Client
let iban: { schema: string; table: string; column: string; qualified: string; type: string; binding: string }

beforeAll(async () => {
  database = await server.createDatabase('search_path')
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query('CREATE SCHEMA billing; CREATE TABLE billing.accounts (id int PRIMARY KEY, iban bytea)')
  iban = { schema: 'billing', table: 'accounts', column: 'iban', qualified: 'billing.accounts.iban', type: 'text', binding: 'billing.accounts.iban' }
  proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, policy: new Policy([iban]), keyring: new Keyring(new Map([[1, randomBytes(32)]]), 1) })
})

afterAll(async () => {
  await proxy?.close()
  await direct?.end()
})

describe('search_path and schemas with protected tables', () => {
  it('refuses a connection whose options or startup parameters put such a schema on the search_path', async () => {
    for (const options of ['-c search_path=billing,public', '--search_path=public,"billing"', '-c statement_timeout=5s -c search_path=billing']) {
      const client = new pg.Client({ connectionString: proxy.url(database), options })
      await expect(client.connect(), options).rejects.toMatchObject({ code: '0A000', message: expect.stringContaining('search_path names schema "billing"') })
    }
    const sql = postgres(proxy.url(database), { connection: { search_path: 'billing' }, max: 1, onnotice: () => {} })
    await expect(sql`SELECT 1`).rejects.toMatchObject({ code: '0A000' })
    await sql.end()
    const psql = await runProgram('psql', [proxy.url(database), '-X', '-At', '-c', 'SELECT 1'], { ...process.env, PGOPTIONS: '-c search_path=billing' })
    expect(psql.status).not.toBe(0)
    expect(psql.stderr).toContain('search_path names schema "billing"')
  })

  it('accepts other search paths and qualified names, and refuses SET search_path to the schema', async () => {
    const client = new pg.Client({ connectionString: proxy.url(database), options: '-c search_path=public -c statement_timeout=5s' })
    await client.connect()
    try {
      await client.query("INSERT INTO billing.accounts (id, iban) VALUES (1, 'DE89 3704 0044 0532 0130 00')")
      expect((await client.query('SELECT iban FROM billing.accounts')).rows).toEqual([{ iban: 'DE89 3704 0044 0532 0130 00' }])
      await expect(client.query('SET search_path = billing')).rejects.toMatchObject({ code: 'PV001' })
    } finally {
      await client.end()
    }
    const stored = await direct.query<{ iban: Buffer }>('SELECT iban FROM billing.accounts')
    expect(stored.rows[0]!.iban.includes('DE89')).toBe(false)
  })

  it('pgveil check reports the search_path defaults and role names pgveil cannot see', async () => {
    const policy = new Policy([iban])
    expect(await searchPathProblems(direct, policy)).toEqual([])
    await direct.query(`ALTER DATABASE ${database} SET search_path = billing, public`)
    await direct.query("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'billing') THEN CREATE ROLE billing; END IF; END$$")
    try {
      const problems = await searchPathProblems(direct, policy)
      expect(problems).toEqual([
        expect.stringMatching(new RegExp(`^search_path default of database "${database}" names schema "billing"[^]*fix: ALTER DATABASE "${database}" RESET search_path`)),
        expect.stringMatching(/^role "billing" has the name of schema "billing"[^]*fix: ALTER ROLE "billing" SET search_path = public/),
      ])
      // A role whose own default leaves "$user" out is not at risk.
      await direct.query('ALTER ROLE billing SET search_path = public')
      expect(await searchPathProblems(direct, policy)).toHaveLength(1)
    } finally {
      await direct.query(`ALTER DATABASE ${database} RESET search_path`)
      await direct.query('DROP ROLE billing')
    }
    expect(await searchPathProblems(direct, policy)).toEqual([])
  })
})
