/**
 * Equality search on encrypted columns through a real pgveil, with `pg` and
 * `postgres`: every form of issue 4 item 1 returns the rows the plaintext would,
 * PostgreSQL only ever sees envelopes and index values, and the expression index
 * serves lookups on a 100k-row table.
 */
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { envelopeIndex, openValue } from '../../policy/envelope.js'
import { indexMac, sealColumnValue } from '../../policy/equality-index.js'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { protectedColumn } from '../harness/policy.js'

const server = getTestPostgres()
let database: string
let proxy: TestProxy
let direct: pg.Client
let proxyUrl: string


const EMAIL = { search: 'equality', normalize: ['trim', 'lowercase'], indexDomain: 'index:email' } as const
const policy = new Policy([
  protectedColumn('people', 'email', 'text', { ...EMAIL, unique: true }),
  protectedColumn('people', 'age', 'integer', { search: 'equality', indexDomain: 'public.people.age' }),
  protectedColumn('people', 'ssn', 'text'),
  protectedColumn('contacts', 'email', 'text', EMAIL),
  protectedColumn('orgs', 'email', 'text', { search: 'equality', indexDomain: 'public.orgs.email' }),
  protectedColumn('big', 'email', 'text', { search: 'equality', indexDomain: 'public.big.email' }),
])
const keyring = new Keyring(new Map([[1, randomBytes(32)]]), 1, randomBytes(32))

beforeAll(async () => {
  database = await server.createDatabase('equality')
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query(`
    CREATE TABLE people (id int PRIMARY KEY, email bytea, age bytea, ssn bytea, note text);
    CREATE TABLE contacts (id int PRIMARY KEY, email bytea);
    CREATE TABLE orgs (id int PRIMARY KEY, email bytea);
    CREATE TABLE big (id int PRIMARY KEY, email bytea);
  `)
  proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, policy, keyring })
  proxyUrl = proxy.url(database, server.superuser, server.superuserPassword ?? undefined)
  const client = new pg.Client({ connectionString: proxyUrl })
  await client.connect()
  try {
    // The unique index pgveil check prints, created through pgveil.
    await client.query('CREATE UNIQUE INDEX people_email_search ON people ((substring(email from 13 for 32)))')
    await client.query('INSERT INTO people (id, email, age, ssn, note) VALUES ($1, $2, $3, $4, $5)', [1, 'Ann@Example.com', 31, '111-11-1111', 'ann'])
    await client.query("INSERT INTO people (id, email, age, ssn, note) VALUES (2, 'bob@example.com', '42', '222-22-2222', 'bob')")
    await client.query('INSERT INTO people (id, email, age, ssn, note) VALUES ($1, $2, $3, $4, $5)', [3, 'cy@example.com', 7, null, 'cy'])
    await client.query('INSERT INTO people (id, email, age, ssn, note) VALUES ($1, $2, $3, $4, $5)', [4, null, 7, null, 'nobody'])
    await client.query("INSERT INTO contacts (id, email) VALUES (10, ' ANN@example.com'), (11, 'zed@example.com'), (12, 'cy@example.com')")
    await client.query("INSERT INTO orgs (id, email) VALUES (20, 'ann@example.com')")
  } finally {
    await client.end()
  }
})

afterAll(async () => {
  await proxy?.close()
  await direct?.end()
})

async function through<T extends pg.QueryResultRow>(sql: string, values?: unknown[]): Promise<pg.QueryResult<T>> {
  const client = new pg.Client({ connectionString: proxyUrl })
  await client.connect()
  try {
    return await client.query<T>(sql, values)
  } finally {
    await client.end()
  }
}

async function refusal(sql: string, values?: unknown[]): Promise<Error & { code?: string; hint?: string }> {
  try {
    await through(sql, values)
  } catch (error) {
    return error as Error & { code?: string; hint?: string }
  }
  throw new Error(`expected ${sql} to be refused`)
}

const notes = (rows: { note: string }[]): string[] => rows.map((r) => r.note).sort()

describe('stored form', () => {
  it('writes envelopes with an index slot made with the current index key, over the normalised value', async () => {
    const stored = await direct.query<{ id: number; email: Buffer | null; age: Buffer; ssn: Buffer | null }>('SELECT id, email, age, ssn FROM people ORDER BY id')
    const ann = stored.rows[0]!
    expect(openValue(keyring, 'public.people.email', ann.email!).toString()).toBe('Ann@Example.com')
    const index = envelopeIndex(ann.email!)
    expect(index?.version).toBe(1)
    // An independent HMAC over the normalised text, with the key derived for the column's index domain.
    expect(Buffer.from(index!.mac).equals(indexMac(keyring, 1, { binding: 'x', indexDomain: 'index:email' }, 'ann@example.com'))).toBe(true)
    // Not searchable: no slot.
    expect(envelopeIndex(stored.rows[0]!.ssn!)).toBeUndefined()
    // Equal ages share an index value, whatever their ciphertexts.
    const ages = stored.rows.map((r) => Buffer.from(envelopeIndex(r.age)!.mac).toString('hex'))
    expect(ages[2]).toBe(ages[3])
    expect(ages[0]).not.toBe(ages[2])
    expect(stored.rows[2]!.age.equals(stored.rows[3]!.age)).toBe(false)
  })
})

describe('equality search with pg (extended and simple protocol)', () => {
  it('col = $1 and col = literal, case-insensitively for a lowercase-normalised column', async () => {
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE email = $1', ['ann@example.com'])).rows)).toEqual(['ann'])
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE email = $1', ['  ANN@EXAMPLE.COM'])).rows)).toEqual(['ann'])
    expect(notes((await through<{ note: string }>("SELECT note FROM people WHERE email = 'BOB@example.com'")).rows)).toEqual(['bob'])
    expect(notes((await through<{ note: string }>("SELECT note FROM people WHERE 'cy@example.com' = email")).rows)).toEqual(['cy'])
    expect((await through('SELECT note FROM people WHERE email = $1', ['nobody@example.com'])).rows).toEqual([])
    // The row comes back decrypted, as written (normalisation touches only the index).
    expect((await through<{ email: string }>('SELECT email FROM people WHERE email = $1', ['ann@example.com'])).rows).toEqual([{ email: 'Ann@Example.com' }])
  })

  it("matches an integer column's canonical value whether written '7' or 7", async () => {
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE age = 7')).rows)).toEqual(['cy', 'nobody'])
    expect(notes((await through<{ note: string }>("SELECT note FROM people WHERE age = '7'")).rows)).toEqual(['cy', 'nobody'])
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE age = $1', ['007'])).rows)).toEqual(['cy', 'nobody'])
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE age = $1::integer', [42])).rows)).toEqual(['bob'])
  })

  it('IN, NOT IN, <> and = ANY($1) with NULL semantics of the plaintext', async () => {
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE email IN ($1, $2)', ['ann@example.com', 'cy@example.com'])).rows)).toEqual(['ann', 'cy'])
    expect(notes((await through<{ note: string }>("SELECT note FROM people WHERE email IN ('bob@example.com', $1)", ['cy@example.com'])).rows)).toEqual(['bob', 'cy'])
    // NULL email (nobody) never satisfies <> or NOT IN, as in SQL.
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE email <> $1', ['ann@example.com'])).rows)).toEqual(['bob', 'cy'])
    expect(notes((await through<{ note: string }>("SELECT note FROM people WHERE email NOT IN ('ann@example.com', 'bob@example.com')")).rows)).toEqual(['cy'])
    // NOT IN with a NULL in the list is never true.
    expect((await through("SELECT note FROM people WHERE email NOT IN ('ann@example.com', NULL)")).rows).toEqual([])
    expect((await through('SELECT note FROM people WHERE email = $1', [null])).rows).toEqual([])
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE email = ANY($1)', [['bob@example.com', 'CY@example.com', null]])).rows)).toEqual(['bob', 'cy'])
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE age = ANY($1::integer[])', [[42, 31]])).rows)).toEqual(['ann', 'bob'])
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE email <> ALL($1)', [['bob@example.com']])).rows)).toEqual(['ann', 'cy'])
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE email IS NULL')).rows)).toEqual(['nobody'])
    expect(notes((await through<{ note: string }>('SELECT note FROM people WHERE email IS NOT NULL AND age = 7')).rows)).toEqual(['cy'])
  })

  it('indexes values written with COPY FROM STDIN', async () => {
    const client = new pg.Client({ connectionString: proxyUrl })
    await client.connect()
    try {
      await pipeline(Readable.from(['80\tcopied@example.com\t5\tcopied\n']), client.query(copyFrom('COPY people (id, email, age, note) FROM STDIN')))
      expect((await client.query('SELECT id FROM people WHERE email = $1', ['COPIED@example.com'])).rows).toEqual([{ id: 80 }])
      await client.query('DELETE FROM people WHERE id = 80')
    } finally {
      await client.end()
    }
  })

  it('UPDATE and DELETE by an encrypted value', async () => {
    await through('INSERT INTO people (id, email, note) VALUES ($1, $2, $3)', [50, 'tmp@example.com', 'tmp'])
    expect((await through('UPDATE people SET note = $1 WHERE email = $2', ['tmp2', 'TMP@example.com'])).rowCount).toBe(1)
    expect((await through<{ note: string }>('DELETE FROM people WHERE email = $1 RETURNING note', ['tmp@example.com'])).rows).toEqual([{ note: 'tmp2' }])
  })

  it('joins columns of one index domain', async () => {
    const joined = await through<{ note: string; id: number }>('SELECT p.note, c.id FROM people p JOIN contacts c ON c.email = p.email ORDER BY c.id')
    expect(joined.rows).toEqual([
      { note: 'ann', id: 10 },
      { note: 'cy', id: 12 },
    ])
  })

  it('ON CONFLICT (col) with the unique index on the slot, and UNIQUE enforced on values', async () => {
    await through('INSERT INTO people (id, email, note) VALUES ($1, $2, $3) ON CONFLICT (email) DO UPDATE SET note = EXCLUDED.note', [60, 'BOB@example.com', 'bob-upserted'])
    expect((await through<{ id: number; note: string }>('SELECT id, note FROM people WHERE email = $1', ['bob@example.com'])).rows).toEqual([{ id: 2, note: 'bob-upserted' }])
    await through("INSERT INTO people (id, email, note) VALUES (61, 'ann@example.com', 'dup') ON CONFLICT (email) DO NOTHING")
    expect((await through('SELECT id FROM people WHERE id = 61')).rows).toEqual([])
    const duplicate = await refusal('INSERT INTO people (id, email, note) VALUES ($1, $2, $3)', [62, 'cy@EXAMPLE.com', 'dup'])
    expect(duplicate.code).toBe('23505')
  })

  it('GROUP BY, count(DISTINCT) and DISTINCT are exact', async () => {
    expect((await through<{ n: string }>('SELECT count(*) AS n FROM people GROUP BY age ORDER BY n')).rows.map((r) => Number(r.n))).toEqual([1, 1, 2])
    expect((await through<{ n: string }>('SELECT count(DISTINCT age) AS n FROM people')).rows).toEqual([{ n: '3' }])
    const distinct = await through<{ age: number }>('SELECT DISTINCT age FROM people')
    expect(distinct.rows.map((r) => r.age).sort((a, b) => a - b)).toEqual([7, 31, 42])
  })

  it('refuses what it cannot make exact, naming the column and the remedy, and keeps the plaintext from PostgreSQL', async () => {
    const cases: [string, unknown[] | undefined, RegExp][] = [
      ['SELECT note FROM people WHERE ssn = $1', ['999-99-9999'], /column "public\.people\.ssn" is encrypted by pgveil; comparison \(=\) is not supported on it \(declare the column searchable \(search: equality\)/],
      ["SELECT note FROM people WHERE email < 'zzz-secret@example.com'", undefined, /"public\.people\.email".*comparison \(<\).*ranges need an order index/],
      ["SELECT note FROM people WHERE email BETWEEN 'a-secret' AND 'b-secret'", undefined, /"public\.people\.email".*BETWEEN/],
      ["SELECT note FROM people WHERE email LIKE 'secret%'", undefined, /"public\.people\.email".*LIKE is not supported/],
      ['SELECT o.id FROM orgs o JOIN people p ON p.email = o.email', undefined, /"public\.people\.email".*different index domains.*index_domain/],
      ['SELECT email, count(*) FROM people GROUP BY email', undefined, /"public\.people\.email".*GROUP BY on it while also selecting it/],
    ]
    for (const [sql, values, says] of cases) {
      const error = await refusal(sql, values)
      expect(error.code).toBe('PV001')
      expect(error.message).toMatch(says)
    }
    const log = server.readLog()
    for (const plaintext of ['999-99-9999', 'zzz-secret@example.com', 'a-secret', 'secret%', 'ann@example.com', 'Ann@Example.com', 'ANN@EXAMPLE.COM', 'bob@example.com', 'cy@example.com', 'tmp@example.com']) {
      expect(log).not.toContain(plaintext)
    }
    // What PostgreSQL did see: the slot expression.
    expect(log).toContain('substring(email from 13 for 32) = ANY')
  })
})

describe('equality search with postgres (postgres.js, prepared statements)', () => {
  it('runs every form with tagged templates', async () => {
    const sql = postgres(proxyUrl, { max: 1, prepare: true, onnotice: () => {} })
    try {
      for (let round = 0; round < 2; round++) {
        // Twice: the second round reuses the prepared statements.
        expect(await sql`SELECT note FROM people WHERE email = ${'ANN@example.com'}`).toEqual([{ note: 'ann' }])
        expect((await sql`SELECT note FROM people WHERE email IN (${'ann@example.com'}, ${'cy@example.com'}) ORDER BY id`).map((r) => r.note)).toEqual(['ann', 'cy'])
        expect((await sql`SELECT note FROM people WHERE email <> ${'ann@example.com'} ORDER BY id`).map((r) => r.note)).toEqual(['bob-upserted', 'cy'])
        expect((await sql`SELECT note FROM people WHERE email = ANY(${sql.array(['bob@example.com', 'cy@example.com'])}) ORDER BY id`).map((r) => r.note)).toEqual(['bob-upserted', 'cy'])
        expect((await sql`SELECT note FROM people WHERE age = ${7} ORDER BY id`).map((r) => r.note)).toEqual(['cy', 'nobody'])
        expect(await sql`SELECT p.note FROM people p JOIN contacts c ON c.email = p.email WHERE c.id = ${12}`).toEqual([{ note: 'cy' }])
        expect(await sql`SELECT count(DISTINCT email)::int AS n FROM people`).toEqual([{ n: 3 }])
        expect((await sql`SELECT DISTINCT email FROM people WHERE email IS NOT NULL`).map((r) => r.email).sort()).toEqual(['Ann@Example.com', 'bob@example.com', 'cy@example.com'])
      }
      await sql`INSERT INTO people (id, email, note) VALUES (${70}, ${'dee@example.com'}, ${'dee'}) ON CONFLICT (email) DO UPDATE SET note = EXCLUDED.note`
      await sql`INSERT INTO people (id, email, note) VALUES (${71}, ${'DEE@example.com'}, ${'dee2'}) ON CONFLICT (email) DO UPDATE SET note = EXCLUDED.note`
      expect(await sql`SELECT id, note FROM people WHERE email = ${'dee@example.com'}`).toEqual([{ id: 70, note: 'dee2' }])
      await expect(sql`SELECT note FROM people WHERE ssn = ${'111-11-1111'}`).rejects.toMatchObject({ code: 'PV001', message: expect.stringContaining('"public.people.ssn"') })
    } finally {
      await sql.end()
    }
    expect(server.readLog()).not.toContain('dee@example.com')
  })
})

describe('the expression index on a 100k-row table', () => {
  it('serves equality lookups (EXPLAIN shows an index scan on the slot)', async () => {
    const big = policy.column('public.big.email')!
    const rows = 100_000
    const lines = function* (): Generator<string> {
      let chunk = ''
      for (let i = 1; i <= rows; i++) {
        chunk += `${i}\t\\\\x${sealColumnValue(keyring, big, `user${i}@example.com`).toString('hex')}\n`
        if (i % 5_000 === 0) {
          yield chunk
          chunk = ''
        }
      }
      if (chunk !== '') yield chunk
    }
    await pipeline(Readable.from(lines()), direct.query(copyFrom('COPY big (id, email) FROM STDIN')))
    await through('CREATE INDEX big_email_search ON big ((substring(email from 13 for 32)))')
    await direct.query('ANALYZE big')
    const client = new pg.Client({ connectionString: proxyUrl })
    await client.connect()
    try {
      const plan = await client.query<{ 'QUERY PLAN': string }>('EXPLAIN SELECT id FROM big WHERE email = $1', ['user77777@example.com'])
      const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n')
      expect(text).toMatch(/Index (Only )?Scan using big_email_search on big|Bitmap Index Scan on big_email_search/)
      const literal = await client.query<{ 'QUERY PLAN': string }>("EXPLAIN SELECT id FROM big WHERE email IN ('user5@example.com', 'user6@example.com')")
      expect(literal.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/big_email_search/)
      expect((await client.query('SELECT id FROM big WHERE email = $1', ['user77777@example.com'])).rows).toEqual([{ id: 77777 }])
    } finally {
      await client.end()
    }
  }, 120_000)

  it('lets PostgreSQL keep one generic plan, an index scan, for a prepared lookup instead of planning each execution', async () => {
    const client = new pg.Client({ connectionString: proxyUrl })
    await client.connect()
    try {
      // PostgreSQL tries 5 custom plans, then keeps the generic one only if its estimate is no worse.
      for (let i = 1; i <= 12; i++) {
        const found = await client.query<{ id: number }>({ name: 'big-by-email', text: 'SELECT id FROM big WHERE email = $1', values: [`user${i * 1000}@example.com`] })
        expect(found.rows).toEqual([{ id: i * 1000 }])
      }
      const plans = await client.query<{ generic_plans: string; custom_plans: string }>("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'big-by-email'")
      expect(plans.rows).toHaveLength(1)
      expect(Number(plans.rows[0]!.generic_plans)).toBeGreaterThanOrEqual(6)
      expect(Number(plans.rows[0]!.custom_plans)).toBeLessThanOrEqual(6)
      await client.query("SET plan_cache_mode = 'force_generic_plan'")
      const generic = await client.query<{ 'QUERY PLAN': string }>('EXPLAIN SELECT id FROM big WHERE email = $1', ['user5@example.com'])
      expect(generic.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index (Only )?Scan using big_email_search on big/)
    } finally {
      await client.end()
    }
  })
})

describe('equality search through a view', () => {
  it('searches a view column that returns a searchable column, with that column\'s normalisation and index domain, in both protocols', async () => {
    const client = new pg.Client({ connectionString: proxyUrl })
    await client.connect()
    try {
      await client.query('CREATE VIEW people_mail AS SELECT id, email AS address, ssn, note FROM people WHERE id < 4')
      expect((await client.query('SELECT id, address FROM people_mail WHERE address = $1', ['  ANN@example.COM '])).rows).toEqual([{ id: 1, address: 'Ann@Example.com' }])
      expect((await client.query("SELECT id FROM people_mail WHERE address IN ('bob@example.com', 'cy@example.com') ORDER BY id")).rows).toEqual([{ id: 2 }, { id: 3 }])
      // Joined with a column of the same index domain, through the view.
      expect((await client.query('SELECT c.id FROM people_mail p JOIN contacts c ON c.email = p.address WHERE p.id = 1')).rows).toEqual([{ id: 10 }])
      // A column that is not searchable stays refused through the view, with a hint about the view.
      const refused = await refusal("SELECT note FROM people_mail WHERE ssn = '111-11-1111'")
      expect(refused).toMatchObject({ code: 'PV001', message: expect.stringContaining('"public.people_mail.ssn"'), hint: expect.stringContaining('"public.people_mail" is a view') })
      await client.query('DROP VIEW people_mail')
    } finally {
      await client.end()
    }
    expect(server.readLog()).not.toMatch(/ANN@example\.COM|111-11-1111/)
  })

  it('searches a materialized view made through pgveil, whose rows keep the table column\'s index values, before and after a REFRESH … CONCURRENTLY', async () => {
    const client = new pg.Client({ connectionString: proxyUrl })
    await client.connect()
    try {
      await client.query('CREATE MATERIALIZED VIEW people_mail_snapshot AS SELECT id, email AS address FROM people WHERE id < 4')
      await client.query('CREATE UNIQUE INDEX ON people_mail_snapshot (id)')
      expect((await client.query('SELECT id, address FROM people_mail_snapshot WHERE address = $1', ['  ANN@example.COM '])).rows).toEqual([{ id: 1, address: 'Ann@Example.com' }])
      await client.query('REFRESH MATERIALIZED VIEW CONCURRENTLY people_mail_snapshot')
      expect((await client.query("SELECT id FROM people_mail_snapshot WHERE address IN ('bob@example.com', ' CY@example.com') ORDER BY id")).rows).toEqual([{ id: 2 }, { id: 3 }])
      await client.query('DROP MATERIALIZED VIEW people_mail_snapshot')
    } finally {
      await client.end()
    }
    expect(server.readLog()).not.toMatch(/ANN@example\.COM|CY@example/)
  })
})
