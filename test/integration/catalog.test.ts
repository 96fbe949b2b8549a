/**
 * The catalog map against a real PostgreSQL: protected columns are found by the
 * (table OID, attribute number) that RowDescription reports, and unusable columns are
 * reported with the statement that fixes them.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { Policy, type ColumnPolicy } from '../../policy/policy.js'
import { CATALOG_MAX_AGE_MS, CatalogMap } from '../../proxy/catalog.js'
import { silentLogger } from '../../proxy/log.js'
import { parseUpstreamUrl } from '../../proxy/upstream-url.js'
import { dependentViewProblems } from '../../proxy/view-check.js'
import { getTestPostgres } from '../harness/pg.js'

const server = getTestPostgres()
let database: string
let direct: pg.Client

function column(schema: string, table: string, name: string, type = 'text'): ColumnPolicy {
  return { schema, table, column: name, qualified: `${schema}.${table}.${name}`, type, binding: `${schema}.${table}.${name}` }
}

beforeAll(async () => {
  database = await server.createDatabase('catalog')
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query(`
    CREATE SCHEMA billing;
    CREATE TABLE users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), username text NOT NULL, email bytea NOT NULL, ssn bytea, note text);
    CREATE TABLE billing.accounts (id int PRIMARY KEY, iban bytea, dropped int, holder text);
    ALTER TABLE billing.accounts DROP COLUMN dropped;
    CREATE TABLE "Mixed" (secret bytea);
  `)
})
afterAll(async () => {
  await direct?.end()
})

describe('CatalogMap', () => {
  it('maps RowDescription origins to protected columns and reports unusable ones', async () => {
    const policy = new Policy([
      column('public', 'users', 'email'),
      column('public', 'users', 'ssn', 'text'),
      column('public', 'users', 'note'),
      column('public', 'users', 'phone'),
      column('billing', 'accounts', 'iban'),
      column('public', 'Mixed', 'secret'),
      column('public', 'ghosts', 'name'),
    ])
    const map = new CatalogMap({
      target: parseUpstreamUrl(`${server.url(database)}?sslmode=disable`),
      connectTimeoutMs: 5_000,
      policy,
      logger: silentLogger,
    })
    expect(map.get(database)).toBeUndefined()
    const [catalog, again] = await Promise.all([map.load(database), map.load(database)])
    expect(again).toBe(catalog)
    expect(map.get(database)).toBe(catalog)

    // What PostgreSQL itself reports as each result column's origin.
    const result = await direct.query('SELECT u.*, a.iban, a.holder, m.secret FROM users u, billing.accounts a, "Mixed" m')
    const origins = new Map(result.fields.map((f) => [f.name, catalog.column(f.tableID, f.columnID)?.qualified ?? null]))
    expect(Object.fromEntries(origins)).toEqual({
      id: null,
      username: null,
      email: 'public.users.email',
      ssn: 'public.users.ssn',
      note: null,
      iban: 'billing.accounts.iban',
      holder: null,
      secret: 'public.Mixed.secret',
    })

    const problems = Object.fromEntries(catalog.problems.map((p) => [p.column.qualified, [p.kind, p.fix]]))
    expect(problems).toEqual({
      'public.users.note': ['not-bytea', expect.stringContaining('ALTER TABLE "public"."users" ALTER COLUMN "note" TYPE bytea')],
      'public.users.phone': ['missing-column', 'ALTER TABLE "public"."users" ADD COLUMN "phone" bytea;'],
      'public.ghosts.name': ['missing-table', expect.stringContaining('CREATE TABLE "public"."ghosts"')],
    })
    expect(catalog.problems.find((p) => p.kind === 'not-bytea')!.message).toBe('column "public.users.note" is text, not bytea')

    // After DDL, an invalidated catalog is read again.
    await direct.query('ALTER TABLE users ADD COLUMN phone bytea')
    map.invalidate(database)
    const refreshed = await map.load(database)
    expect(refreshed).not.toBe(catalog)
    expect(refreshed.problems.map((p) => p.column.qualified)).not.toContain('public.users.phone')
  })
})

describe('pgveil check: views over protected columns', () => {
  it('reports views, views over them and materialized views that read a protected column, and nothing else', async () => {
    const policy = new Policy([column('public', 'users', 'email'), column('billing', 'accounts', 'iban')])
    expect(await dependentViewProblems(direct, policy)).toEqual([])
    await direct.query(`
      CREATE VIEW user_names AS SELECT id, username FROM users;
      CREATE VIEW user_mail AS SELECT id, email FROM users;
      CREATE VIEW user_mail_again AS SELECT email AS address FROM user_mail;
      CREATE MATERIALIZED VIEW ibans AS SELECT id, iban, holder FROM billing.accounts;
    `)
    try {
      const problems = await dependentViewProblems(direct, policy)
      expect(problems).toEqual([
        expect.stringMatching(/^materialized view public\.ibans reads protected column billing\.accounts\.iban: [^]*fix: [^]*DROP MATERIALIZED VIEW public\.ibans/),
        expect.stringMatching(/^view public\.user_mail reads protected column public\.users\.email: pgveil cannot decrypt through a view, so it refuses statements that read or write through it[^]*DROP VIEW public\.user_mail /),
        expect.stringMatching(/^view public\.user_mail_again reads protected column public\.users\.email: /),
      ])
    } finally {
      await direct.query('DROP VIEW user_mail_again, user_mail, user_names; DROP MATERIALIZED VIEW ibans')
    }
    expect(await dependentViewProblems(direct, policy)).toEqual([])
  })

  it('sessions learn views created straight in PostgreSQL once the cached catalog is older than CATALOG_MAX_AGE_MS', async () => {
    const policy = new Policy([column('public', 'users', 'email')])
    const map = new CatalogMap({ target: parseUpstreamUrl(`${server.url(database)}?sslmode=disable`), connectTimeoutMs: 5_000, policy, logger: silentLogger })
    const first = await map.load(database)
    expect(first.views.namedIn('SELECT * FROM late_mail')).toBeNull()
    await direct.query('CREATE VIEW late_mail AS SELECT email FROM users')
    const now = Date.now()
    const clock = vi.spyOn(Date, 'now')
    try {
      clock.mockReturnValue(now + CATALOG_MAX_AGE_MS - 1_000)
      expect(await map.load(database)).toBe(first)
      clock.mockReturnValue(now + CATALOG_MAX_AGE_MS + 1_000)
      const fresh = await map.load(database)
      expect(fresh).not.toBe(first)
      expect(fresh.views.namedIn('SELECT * FROM late_mail WHERE email = $1')).toMatchObject({ qualified: 'public.late_mail', origins: 'public.users.email' })
      // DDL on the view, and statements not going through it, are not refused.
      expect(fresh.views.namedIn('DROP VIEW late_mail')).toBeNull()
      expect(fresh.views.namedIn("SELECT 'late_mail' AS name FROM users")).toBeNull()
      expect(fresh.views.namedIn('INSERT INTO late_mail (email) VALUES ($1)')).not.toBeNull()
      expect(fresh.views.namedIn('SELEC * FROM late_mail')).not.toBeNull()
    } finally {
      clock.mockRestore()
      await direct.query('DROP VIEW late_mail')
    }
  })
})
