/**
 * The catalog map against a real PostgreSQL: protected columns are found by the
 * (table OID, attribute number) that RowDescription reports, and unusable columns are
 * reported with the statement that fixes them.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { Policy, type ColumnPolicy } from '../../policy/policy.js'
import { CATALOG_MAX_AGE_MS, CatalogMap, loadDatabaseCatalog, UNKNOWN_RELATION_INTERVAL_MS, type DatabaseCatalog } from '../../proxy/catalog.js'
import { silentLogger } from '../../proxy/log.js'
import { parseUpstreamUrl } from '../../proxy/upstream-url.js'
import { dependentViewProblems, readableViewLines } from '../../proxy/view-check.js'
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

describe('views over protected columns', () => {
  async function views(policy: Policy): Promise<{ problems: string[]; readable: string[]; catalog: DatabaseCatalog }> {
    const catalog = await loadDatabaseCatalog(direct, policy)
    return { problems: dependentViewProblems(catalog.viewList), readable: readableViewLines(catalog.viewList), catalog }
  }

  it('reads through views, views over them and materialized views that return protected columns unchanged, by their own (OID, attnum)', async () => {
    const policy = new Policy([column('public', 'users', 'email'), column('public', 'users', 'ssn'), column('billing', 'accounts', 'iban')])
    expect(await views(policy)).toMatchObject({ problems: [], readable: [] })
    await direct.query(`
      CREATE VIEW user_names AS SELECT id, username FROM users;
      CREATE VIEW user_mail AS SELECT id, email, username FROM users;
      CREATE VIEW user_mail_again (address, who) AS SELECT email, username FROM user_mail WHERE username <> 'x';
      CREATE MATERIALIZED VIEW ibans AS SELECT a.id, a.iban, a.holder, u.ssn FROM billing.accounts a JOIN users u ON u.username = a.holder;
      CREATE VIEW mail_names AS SELECT username FROM user_mail;
      CREATE VIEW guarded_mail AS SELECT id, email FROM users;
      CREATE FUNCTION guarded_mail_insert() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
      CREATE TRIGGER guarded_mail_insert INSTEAD OF INSERT ON guarded_mail FOR EACH ROW EXECUTE FUNCTION guarded_mail_insert();
      CREATE VIEW ruled_mail AS SELECT id, email FROM users;
      CREATE RULE ruled_mail_delete AS ON DELETE TO ruled_mail DO INSTEAD NOTHING;
    `)
    try {
      const { problems, readable, catalog } = await views(policy)
      expect(problems).toEqual([])
      // Written through only when PostgreSQL does it by itself: not with an INSTEAD OF trigger or rule, not a materialized view.
      expect(Object.fromEntries(catalog.viewList.map((view) => [view.qualified, view.writable]))).toEqual({
        'public.guarded_mail': false,
        'public.ibans': false,
        'public.ruled_mail': false,
        'public.user_mail': true,
        'public.user_mail_again': true,
      })
      expect(readable.filter((line) => !/guarded_mail|ruled_mail/.test(line))).toEqual([
        expect.stringMatching(/^materialized view public\.ibans: ok \(returns protected columns billing\.accounts\.iban, public\.users\.ssn unchanged; pgveil reads through it, and refuses writes/),
        expect.stringMatching(/^view public\.user_mail: ok \(returns protected column public\.users\.email unchanged; pgveil reads and writes through it\)/),
        expect.stringMatching(/^view public\.user_mail_again: ok \(returns protected column public\.users\.email unchanged; pgveil reads and writes through it\)/),
      ])
      const oids = await direct.query<{ relname: string; oid: string }>(`SELECT relname, oid::int8 AS oid FROM pg_class WHERE relname IN ('user_mail', 'user_mail_again', 'ibans')`)
      const oid = (name: string): number => Number(oids.rows.find((row) => row.relname === name)!.oid)
      expect(catalog.column(oid('user_mail'), 2)?.qualified).toBe('public.users.email')
      expect(catalog.column(oid('user_mail'), 1)).toBeUndefined()
      expect(catalog.column(oid('user_mail_again'), 1)?.qualified).toBe('public.users.email')
      expect(catalog.column(oid('ibans'), 2)?.qualified).toBe('billing.accounts.iban')
      expect(catalog.column(oid('ibans'), 4)?.qualified).toBe('public.users.ssn')
      expect(catalog.readableViews.map((view) => `${view.schema}.${view.table}: ${[...(view.columns as Map<string, unknown>).keys()].join(',')}`)).toEqual(['public.guarded_mail: email', 'public.ibans: iban,ssn', 'public.ruled_mail: email', 'public.user_mail: email', 'public.user_mail_again: address'])
      // A view that reads only unprotected columns of a readable view is not a view over protected columns.
      expect(catalog.viewList.map((view) => view.qualified)).not.toContain('public.mail_names')
      // A read through them is analysed with their protected columns: a condition on one is refused, naming it.
      expect(catalog.views.useIn('SELECT address FROM user_mail_again')).toEqual({ refused: null })
      expect(catalog.viewAnalyzer!.analyze('SELECT * FROM user_mail_again WHERE address = $1')).toMatchObject({ action: 'refuse', refusal: { message: expect.stringContaining('"public.user_mail_again.address"') } })
      expect(catalog.viewAnalyzer!.analyze('SELECT address, who FROM user_mail_again WHERE who = $1').action).not.toBe('refuse')
    } finally {
      await direct.query('DROP VIEW ruled_mail, guarded_mail, mail_names, user_mail_again, user_mail, user_names; DROP MATERIALIZED VIEW ibans; DROP FUNCTION guarded_mail_insert')
    }
  })

  it('reports the views it does not read through, with why, and what to do', async () => {
    const policy = new Policy([column('public', 'users', 'email'), column('billing', 'accounts', 'iban')])
    await direct.query(`
      CREATE VIEW mail_prefix AS SELECT id, substring(email FROM 1 FOR 3) AS prefix FROM users;
      CREATE VIEW sorted_mail AS SELECT email FROM users ORDER BY email;
      CREATE VIEW with_mail AS SELECT id FROM users WHERE email IS NOT NULL;
      CREATE VIEW over_prefix AS SELECT id FROM mail_prefix;
      CREATE VIEW broken_mail AS SELECT id, email FROM users WHERE length(username) = 1 / 0;
      CREATE MATERIALIZED VIEW iban_count AS SELECT count(DISTINCT iban) AS n FROM billing.accounts;
    `)
    try {
      const { problems, readable, catalog } = await views(policy)
      expect(readable).toEqual([])
      expect(problems).toEqual([
        // Its plan fails (the planner folds 1 / 0): the views after it are examined all the same.
        expect.stringMatching(/^view public\.broken_mail reads protected column public\.users\.email, but pgveil could not examine it \(division by zero\)/),
        expect.stringMatching(/^materialized view public\.iban_count reads protected column billing\.accounts\.iban, but its definition is refused by pgveil: [^]*pgveil cannot decrypt through this materialized view[^]*fix: [^]*DROP MATERIALIZED VIEW public\.iban_count/),
        expect.stringMatching(/^view public\.mail_prefix reads protected column public\.users\.email, but its definition is refused by pgveil: [^]*DROP VIEW public\.mail_prefix /),
        expect.stringMatching(/^view public\.sorted_mail reads protected column public\.users\.email, but its definition is refused by pgveil: [^]*ORDER BY/),
        expect.stringMatching(/^view public\.with_mail reads protected column public\.users\.email, but it does not return public\.users\.email unchanged as a column of its own/),
        expect.stringMatching(/^view public\.over_prefix reads protected column public\.users\.email, but /),
      ])
      expect(catalog.viewAnalyzer).toBeNull()
      expect(catalog.views.useIn('SELECT id FROM with_mail')).toMatchObject({ refused: { qualified: 'public.with_mail' }, reason: 'unreadable' })
    } finally {
      await direct.query('DROP VIEW broken_mail, over_prefix, mail_prefix, sorted_mail, with_mail; DROP MATERIALIZED VIEW iban_count')
    }
    expect(await views(policy)).toMatchObject({ problems: [], readable: [] })
  })

  it('reads the catalog again the first time a relation it does not know is reported, also after a load under way', async () => {
    const policy = new Policy([column('public', 'users', 'email')])
    const map = new CatalogMap({ target: parseUpstreamUrl(`${server.url(database)}?sslmode=disable`), connectTimeoutMs: 5_000, policy, logger: silentLogger, unknownRelationIntervalMs: 0 })
    const first = await map.load(database)
    await direct.query('CREATE VIEW reported_mail AS SELECT id, email FROM users')
    try {
      const oid = Number((await direct.query<{ oid: string }>(`SELECT 'reported_mail'::regclass::oid::int8 AS oid`)).rows[0]!.oid)
      const again = await map.unknownRelation(database, oid)
      expect(again).not.toBe(first)
      expect(again?.column(oid, 2)?.qualified).toBe('public.users.email')
      expect(map.get(database)).toBe(again)
      // Once per relation: then it is taken for what the catalog says.
      expect(map.unknownRelation(database, oid)).toBeUndefined()
      // A load under way when a new relation is reported: read again after it.
      map.invalidate(database)
      const underWay = map.load(database)
      const after = await map.unknownRelation(database, oid + 1_000_000)
      expect(after).not.toBe(await underWay)
    } finally {
      await direct.query('DROP VIEW reported_mail')
    }
  })

  it('reads the catalog for relations it does not know at most once an interval per database, and forgets the ones reported meanwhile', async () => {
    const policy = new Policy([column('public', 'users', 'email')])
    const map = new CatalogMap({ target: parseUpstreamUrl(`${server.url(database)}?sslmode=disable`), connectTimeoutMs: 5_000, policy, logger: silentLogger })
    await map.load(database)
    const now = Date.now()
    const clock = vi.spyOn(Date, 'now').mockReturnValue(now)
    try {
      const first = map.unknownRelation(database, 1)
      expect(first).toBeInstanceOf(Promise)
      await first
      // Within the interval: another relation (a temporary table per transaction, say) does not have it read, and is not remembered.
      expect(map.unknownRelation(database, 2)).toBeUndefined()
      clock.mockReturnValue(now + UNKNOWN_RELATION_INTERVAL_MS)
      const later = map.unknownRelation(database, 2)
      expect(later).toBeInstanceOf(Promise)
      await later
      expect(map.unknownRelation(database, 1)).toBeUndefined()
    } finally {
      clock.mockRestore()
    }
  })

  it('sessions learn views created straight in PostgreSQL once the cached catalog is older than CATALOG_MAX_AGE_MS', async () => {
    const policy = new Policy([column('public', 'users', 'email')])
    const map = new CatalogMap({ target: parseUpstreamUrl(`${server.url(database)}?sslmode=disable`), connectTimeoutMs: 5_000, policy, logger: silentLogger })
    const first = await map.load(database)
    expect(first.views.useIn('SELECT * FROM late_mail')).toBeNull()
    await direct.query('CREATE VIEW late_mail AS SELECT id FROM users WHERE email IS NOT NULL')
    const now = Date.now()
    const clock = vi.spyOn(Date, 'now')
    try {
      clock.mockReturnValue(now + CATALOG_MAX_AGE_MS - 1_000)
      expect(await map.load(database)).toBe(first)
      clock.mockReturnValue(now + CATALOG_MAX_AGE_MS + 1_000)
      const fresh = await map.load(database)
      expect(fresh).not.toBe(first)
      expect(fresh.views.useIn('SELECT * FROM late_mail WHERE id = $1')).toMatchObject({ refused: { qualified: 'public.late_mail', origins: 'public.users.email' }, reason: 'unreadable' })
      // DDL on the view, and statements not going through it, are not refused.
      expect(fresh.views.useIn('DROP VIEW late_mail')).toBeNull()
      expect(fresh.views.useIn("SELECT 'late_mail' AS name FROM users")).toBeNull()
      expect(fresh.views.useIn('INSERT INTO late_mail (id) VALUES ($1)')).not.toBeNull()
      expect(fresh.views.useIn('SELEC * FROM late_mail')).toMatchObject({ reason: 'unparseable' })
    } finally {
      clock.mockRestore()
      await direct.query('DROP VIEW late_mail')
    }
  })
})
