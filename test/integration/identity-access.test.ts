/**
 * What a verified identity changes beyond attribution: access rules on protected
 * columns (plaintext, NULL, mask or error per identity; restricted writes) and
 * claims forwarded to PostgreSQL for row-level security.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AccessRules } from '../../policy/access.js'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { getTestPostgres } from '../harness/pg.js'
import { runProgram } from '../harness/programs.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { TestJwksServer } from '../harness/jwks-server.js'
import { protectedColumn } from '../harness/policy.js'

const server = getTestPostgres()
let database: string
let jwks: TestJwksServer
let proxy: TestProxy
let direct: pg.Client
const clients: pg.Client[] = []


async function connect(to: TestProxy = proxy): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: to.url(database) })
  client.on('error', () => {})
  await client.connect()
  clients.push(client)
  return client
}

async function as(client: pg.Client, claims: Record<string, unknown> | null): Promise<void> {
  if (claims === null) await client.query('RESET IDENTITY')
  else await client.query('SET IDENTITY TO $1', [await jwks.token(claims)])
}

beforeAll(async () => {
  database = await server.createDatabase('identity_access')
  jwks = await TestJwksServer.start()
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  // Roles are cluster-wide and the harness server is shared: create it once.
  await direct.query("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rls_app') THEN CREATE ROLE rls_app LOGIN; END IF; END$$")
  await direct.query(`
    CREATE TABLE people (id int PRIMARY KEY, name text, email bytea, ssn bytea, salary bytea, note bytea);
    CREATE TABLE documents (id int PRIMARY KEY, owner text NOT NULL, title text NOT NULL);
    INSERT INTO documents VALUES (1, 'alice', 'alice plan'), (2, 'bob', 'bob plan'), (3, 'alice', 'alice notes');
    GRANT SELECT, INSERT ON documents TO rls_app;
    ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
    CREATE POLICY documents_owner ON documents USING (owner = current_setting('pgveil.sub', true));
  `)
  const policy = new Policy([protectedColumn('people', 'email', 'text'), protectedColumn('people', 'ssn', 'text'), protectedColumn('people', 'salary', 'numeric'), protectedColumn('people', 'note', 'text')])
  const access = new AccessRules([
    { column: 'public.people.email', read: [{ claim: 'scope', includes: 'pii:read' }, { claim: 'sub', in: ['alice'] }], otherwise: 'mask', mask: 'email', write: null },
    { column: 'public.people.ssn', read: [{ claim: 'scope', includes: 'pii:read' }], otherwise: 'null', mask: 'redact', write: null },
    { column: 'public.people.salary', read: [{ claim: 'roles', includes: 'hr' }], otherwise: 'error', mask: 'redact', write: [{ claim: 'roles', includes: 'hr' }] },
  ])
  proxy = await startTestProxy({
    upstreamUrl: `${server.url(database)}?sslmode=disable`,
    policy,
    keyring: new Keyring(new Map([[1, randomBytes(32)]]), 1),
    identity: jwks.identityConfig({ maxTokenBytes: 8192, forwardClaims: true, jwksCooldownMs: 1_000 }),
    access,
  })
  const writer = await connect()
  await as(writer, { sub: 'hr-admin', roles: ['hr'] })
  await writer.query("INSERT INTO people (id, name, email, ssn, salary, note) VALUES (1, 'Ann', 'ann@example.com', '123-45-6789', 5000.50, 'free text')")
  await writer.query('INSERT INTO people (id, name, email, ssn, salary, note) VALUES ($1, $2, $3, $4, $5, $6)', [2, 'Ben', 'ben@example.org', '987-65-4321', '7000', null])
})

afterAll(async () => {
  for (const client of clients) await client.end().catch(() => {})
  await proxy?.close()
  await jwks?.close()
  await direct?.end()
})

describe('access rules', () => {
  it('plaintext for the identities the rule names, in both protocols', async () => {
    const client = await connect()
    await as(client, { sub: 'auditor', scope: 'openid pii:read', roles: ['hr'] })
    const simple = await client.query('SELECT id, email, ssn, salary, note FROM people ORDER BY id')
    expect(simple.rows).toEqual([
      { id: 1, email: 'ann@example.com', ssn: '123-45-6789', salary: '5000.50', note: 'free text' },
      { id: 2, email: 'ben@example.org', ssn: '987-65-4321', salary: '7000', note: null },
    ])
    const extended = await client.query('SELECT email, ssn FROM people WHERE id = $1', [1])
    expect(extended.rows).toEqual([{ email: 'ann@example.com', ssn: '123-45-6789' }])
  })

  it('a mask, NULL, or plaintext per column for a reader the rules do not name; unruled columns stay plaintext', async () => {
    const client = await connect()
    await as(client, { sub: 'bob', scope: 'openid' })
    expect((await client.query('SELECT id, email, ssn, note FROM people ORDER BY id')).rows).toEqual([
      { id: 1, email: 'a***@example.com', ssn: null, note: 'free text' },
      { id: 2, email: 'b***@example.org', ssn: null, note: null },
    ])
    expect((await client.query({ text: 'SELECT email FROM people WHERE id = $1', values: [2], binary: true } as pg.QueryConfig)).rows).toEqual([{ email: 'b***@example.org' }])
    // The rule's sub list: alice reads email, not ssn.
    await as(client, { sub: 'alice' })
    expect((await client.query('SELECT email, ssn FROM people WHERE id = 1')).rows).toEqual([{ email: 'ann@example.com', ssn: null }])
  })

  it('applies the same rules to reads and writes through a view that returns the columns', async () => {
    const client = await connect()
    await client.query('CREATE VIEW people_contact AS SELECT id, name, email, ssn, salary FROM people')
    try {
      await as(client, { sub: 'bob', scope: 'openid' })
      expect((await client.query('SELECT id, email, ssn FROM people_contact ORDER BY id')).rows).toEqual([
        { id: 1, email: 'a***@example.com', ssn: null },
        { id: 2, email: 'b***@example.org', ssn: null },
      ])
      await expect(client.query('SELECT name, salary FROM people_contact WHERE id = $1', [1])).rejects.toMatchObject({ code: '42501' })
      // Writes through it: the table column's write rule.
      await expect(client.query('UPDATE people_contact SET salary = $1 WHERE id = 1', ['1'])).rejects.toMatchObject({ code: '42501' })
      await expect(client.query("UPDATE people_contact SET salary = '1' WHERE id = 1")).rejects.toMatchObject({ code: '42501' })
      await as(client, { sub: 'auditor', scope: 'openid pii:read', roles: ['hr'] })
      expect((await client.query('SELECT email, ssn, salary FROM people_contact WHERE id = $1', [1])).rows).toEqual([{ email: 'ann@example.com', ssn: '123-45-6789', salary: '5000.50' }])
      expect((await client.query("INSERT INTO people_contact (id, name, email, salary) VALUES (3, 'Cy', 'cy@example.com', $1) RETURNING email, salary", ['12.5'])).rows).toEqual([{ email: 'cy@example.com', salary: '12.5' }])
      expect((await client.query('DELETE FROM people_contact WHERE id = 3 RETURNING salary')).rows).toEqual([{ salary: '12.5' }])
    } finally {
      await client.query('DROP VIEW people_contact')
    }
  })

  it('applies the same rules to COPY … TO STDOUT: mask, NULL, plaintext, or the COPY refused', async () => {
    const token = await jwks.token({ sub: 'bob', scope: 'openid' })
    const copy = (sql: string) => runProgram('psql', [proxy.url(database), '-X', '-At', '-c', `SET IDENTITY TO '${token}'`, '-c', sql])
    const table = await copy('COPY people (id, email, ssn, note) TO STDOUT')
    expect(table.stderr).toBe('')
    expect(table.stdout.trim().split('\n')).toEqual(['SET', '1\ta***@example.com\t\\N\tfree text', '2\tb***@example.org\t\\N\t\\N'])
    const query = await copy('COPY (SELECT ssn, email FROM people ORDER BY id) TO STDOUT (FORMAT csv)')
    expect(query.stderr).toBe('')
    expect(query.stdout.trim().split('\n')).toEqual(['SET', ',a***@example.com', ',b***@example.org'])
    const refused = await copy('COPY (SELECT id, salary FROM people) TO STDOUT')
    expect(refused.stderr).toMatch(/permission denied/)
    expect(refused.stdout).not.toMatch(/5000|7000/)
  })

  it('no identity: the most restricted view', async () => {
    const client = await connect()
    expect((await client.query('SELECT email, ssn FROM people ORDER BY id')).rows).toEqual([
      { email: 'a***@example.com', ssn: null },
      { email: 'b***@example.org', ssn: null },
    ])
  })

  it('otherwise: error refuses the result with 42501 and the session goes on', async () => {
    const client = await connect()
    await as(client, { sub: 'bob' })
    for (const query of [() => client.query('SELECT salary FROM people'), () => client.query('SELECT id, salary FROM people WHERE id = $1', [1])]) {
      const error = (await query().then(
        () => null,
        (e: unknown) => e,
      )) as { code: string; message: string } | null
      expect(error?.code).toBe('42501')
      expect(error?.message).toMatch(/permission denied for column "public\.people\.salary": identity "bob"/)
    }
    expect((await client.query('SELECT name FROM people ORDER BY id')).rows).toEqual([{ name: 'Ann' }, { name: 'Ben' }])
    await as(client, { sub: 'carol', roles: ['hr'] })
    expect((await client.query('SELECT salary FROM people WHERE id = 2')).rows).toEqual([{ salary: '7000' }])
  })

  it('restricts writes the same way, and nothing reaches PostgreSQL', async () => {
    const client = await connect()
    await as(client, { sub: 'bob' })
    for (const query of [() => client.query("INSERT INTO people (id, salary) VALUES (3, 1)"), () => client.query('UPDATE people SET salary = $1 WHERE id = 1', ['1'])]) {
      const error = (await query().then(
        () => null,
        (e: unknown) => e,
      )) as { code: string; message: string } | null
      expect(error?.code).toBe('42501')
      expect(error?.message).toMatch(/permission denied to write column "public\.people\.salary"/)
    }
    const { rows } = await direct.query('SELECT count(*)::int AS n FROM people')
    expect(rows).toEqual([{ n: 2 }])
    // Other protected columns are writable by anyone.
    await client.query("UPDATE people SET note = 'edited' WHERE id = 2")
    await as(client, { sub: 'hr', roles: ['hr'] })
    await client.query('UPDATE people SET salary = $1 WHERE id = 2', ['7100'])
    expect((await client.query('SELECT salary, note FROM people WHERE id = 2')).rows).toEqual([{ salary: '7100', note: 'edited' }])
  })
})

describe('forward_claims and row-level security', () => {
  it('the RLS policy sees pgveil.sub and pgveil.claims of the verified identity only', async () => {
    const app = new pg.Client({ connectionString: proxy.url(database, 'rls_app') })
    await app.connect()
    clients.push(app)
    expect((await app.query('SELECT title FROM documents ORDER BY id')).rows).toEqual([])
    await as(app, { sub: 'alice', tenant: 't1' })
    expect((await app.query('SELECT title FROM documents ORDER BY id')).rows).toEqual([{ title: 'alice plan' }, { title: 'alice notes' }])
    expect((await app.query("SELECT current_setting('pgveil.claims', true)::json->>'tenant' AS tenant")).rows).toEqual([{ tenant: 't1' }])
    await as(app, { sub: 'bob' })
    expect((await app.query('SELECT title FROM documents ORDER BY id')).rows).toEqual([{ title: 'bob plan' }])
    await as(app, null)
    expect((await app.query("SELECT title, current_setting('pgveil.sub', true) AS sub FROM documents")).rows).toEqual([])
  })

  it('SET LOCAL claims end with the transaction, and a rolled-back SET leaves nothing behind', async () => {
    const app = await connect()
    await app.query('BEGIN')
    await app.query('SET LOCAL IDENTITY TO $1', [await jwks.token({ sub: 'alice' })])
    expect((await app.query("SELECT current_setting('pgveil.sub', true) AS sub")).rows).toEqual([{ sub: 'alice' }])
    await app.query('COMMIT')
    expect((await app.query("SELECT coalesce(current_setting('pgveil.sub', true), '') AS sub")).rows).toEqual([{ sub: '' }])
    await app.query('BEGIN')
    await as(app, { sub: 'bob' })
    await app.query('ROLLBACK')
    expect((await app.query("SELECT coalesce(current_setting('pgveil.sub', true), '') AS sub")).rows).toEqual([{ sub: '' }])
    expect((await app.query('SHOW IDENTITY')).rows).toEqual([{ identity: '' }])
  })

  it('never leaks to another client', async () => {
    const [a, b] = await Promise.all([connect(), connect()])
    await as(a!, { sub: 'alice' })
    expect((await b!.query("SELECT coalesce(current_setting('pgveil.sub', true), '') AS sub")).rows).toEqual([{ sub: '' }])
  })

  it('refuses client statements that set pgveil.* themselves, in both protocols and through psql', async () => {
    const client = await connect()
    for (const sql of ["SET pgveil.sub = 'alice'", "SELECT set_config('pgveil.sub', 'alice', false)", "ALTER ROLE rls_app SET pgveil.sub = 'alice'"]) {
      const error = (await client.query(sql).then(
        () => null,
        (e: unknown) => e,
      )) as { code: string } | null
      expect(error?.code).toBe('42501')
    }
    const extended = (await client.query('SELECT set_config($1, $2, false)', ['pgveil.sub', 'alice']).then(
      () => null,
      (e: unknown) => e,
    )) as { code: string } | null
    expect(extended?.code).toBe('42501')
    const psql = await runProgram('psql', ['-X', '-A', '-t', proxy.url(database), '-c', "SET pgveil.sub TO 'alice'"])
    expect(psql.stderr).toMatch(/pgveil\.\* settings are set by pgveil only/)
    expect((await client.query("SELECT coalesce(current_setting('pgveil.sub', true), '') AS sub")).rows).toEqual([{ sub: '' }])
  })
})
