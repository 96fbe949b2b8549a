/**
 * Large results with protected columns: rows are decrypted into 64 KB output slabs
 * (proxy/row-decryptor.ts) and leave in writes that span several upstream reads, so a
 * result of many slabs must come back whole, in order, in both formats, with NULLs,
 * and a bad value in the middle must end the session without a row after it.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { protectedColumn } from '../harness/policy.js'

const server = getTestPostgres()
const ROWS = 20_000
let database: string
let direct: pg.Client
let proxy: TestProxy


/** What row n holds, as the application wrote it. */
const email = (n: number): string => `customer-${n}@example.com${n % 7 === 0 ? ' — ünïcødé' : ''}`
const amount = (n: number): string => `${n}.${String(n % 100).padStart(2, '0')}`
const day = (n: number): string => new Date(Date.UTC(2020, 0, 1) + (n % 3000) * 86_400_000).toISOString().slice(0, 10)

async function client(proxy: TestProxy): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined) })
  await c.connect()
  return c
}

beforeAll(async () => {
  database = await server.createDatabase('large_results')
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query('CREATE TABLE people (id int PRIMARY KEY, email bytea, amount bytea, born bytea, note text, raw bytea)')
  const policy = new Policy([protectedColumn('people', 'email', 'text'), protectedColumn('people', 'amount', 'numeric'), protectedColumn('people', 'born', 'date')])
  const keyring = new Keyring(new Map([[1, randomBytes(32)]]), 1)
  const upstreamUrl = `${server.url(database)}?sslmode=disable`
  proxy = await startTestProxy({ upstreamUrl, policy, keyring })
  const writer = await client(proxy)
  try {
    for (let first = 1; first <= ROWS; first += 1000) {
      const values: unknown[] = []
      const tuples: string[] = []
      for (let n = first; n < first + 1000; n++) {
        const i = values.length
        tuples.push(`($${i + 1}, $${i + 2}, $${i + 3}, $${i + 4}, $${i + 5})`)
        // Every 11th row has NULLs in the protected columns.
        values.push(n, n % 11 === 0 ? null : email(n), n % 11 === 0 ? null : amount(n), day(n), `note ${n}`)
      }
      await writer.query(`INSERT INTO people (id, email, amount, born, note) VALUES ${tuples.join(', ')}`, values)
    }
  } finally {
    await writer.end()
  }
})

afterAll(async () => {
  await proxy?.close()
  await direct?.end()
})

function expectRow(row: { id: number; email: string | null; amount: string | null; born: string | Date; note: string }): void {
  const n = row.id
  expect(row.email).toBe(n % 11 === 0 ? null : email(n))
  expect(row.amount).toBe(n % 11 === 0 ? null : amount(n))
  expect(row.note).toBe(`note ${n}`)
}

describe('large results with protected columns', () => {
  it('returns every row of a large result decrypted and in order (simple protocol, text)', async () => {
    const c = await client(proxy)
    try {
      const result = await c.query({ text: 'SELECT id, email, amount, born, note FROM people ORDER BY id', types: { getTypeParser: () => (v: string) => v } })
      expect(result.rows).toHaveLength(ROWS)
      result.rows.forEach((row, i) => {
        expect(row.id).toBe(String(i + 1))
        expectRow({ ...row, id: i + 1 })
        expect(row.born).toBe(day(i + 1))
      })
    } finally {
      await c.end()
    }
  })

  it('returns every row in binary format (node-postgres binary mode, extended protocol)', async () => {
    const c = new pg.Client({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined), binary: true } as pg.ClientConfig)
    await c.connect()
    try {
      // node-postgres reads every DataRow cell as UTF-8 text even in binary mode, so only text columns come back intact (the id as text).
      const result = await c.query<{ n: string; email: string | null; note: string }>('SELECT id::text AS n, email, note FROM people WHERE id > $1 ORDER BY id', [0])
      expect(result.fields.map((field) => field.format)).toEqual(['binary', 'binary', 'binary'])
      expect(result.rows).toHaveLength(ROWS)
      result.rows.forEach((row, i) => {
        const n = i + 1
        expect(row).toEqual({ n: String(n), email: n % 11 === 0 ? null : email(n), note: `note ${n}` })
      })
    } finally {
      await c.end()
    }
  })

  it('ends the session at a value that does not open in the middle of a large result, and serves the next client', async () => {
    const bad = ROWS - 1235
    const saved = (await direct.query<{ email: Buffer }>('SELECT email FROM people WHERE id = $1', [bad])).rows[0]!.email
    const altered = Buffer.from(saved)
    altered.writeUInt8(altered.readUInt8(altered.length - 1) ^ 1, altered.length - 1)
    await direct.query('UPDATE people SET email = $1 WHERE id = $2', [altered, bad])
    try {
      const c = await client(proxy)
      const ended = new Promise((resolve) => c.once('end', resolve))
      c.on('error', () => {})
      await expect(c.query('SELECT id, email FROM people ORDER BY id')).rejects.toMatchObject({ code: 'XX001', message: 'pgveil could not decrypt a protected value' })
      await ended
      const next = await client(proxy)
      try {
        const result = await next.query<{ id: number; email: string }>('SELECT id, email FROM people WHERE id <= 3 ORDER BY id')
        expect(result.rows).toEqual([1, 2, 3].map((n) => ({ id: n, email: email(n) })))
      } finally {
        await next.end()
      }
    } finally {
      await direct.query('UPDATE people SET email = $1 WHERE id = $2', [saved, bad])
    }
  })
})
