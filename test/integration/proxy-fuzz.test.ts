/**
 * Random input never crashes pgveil: after a normal startup, arbitrary bytes (and
 * arbitrary well-framed messages of every type) get an error or a normal answer, the
 * connection may close, and the proxy keeps serving everyone else.
 */
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import pg from 'pg'
import { serialize } from 'pg-protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { RawClient } from '../harness/raw-client.js'

const server = getTestPostgres()
let database: string
let proxy: TestProxy

beforeAll(async () => {
  database = await server.createDatabase('fuzz')
  const direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query('CREATE TABLE secrets (id int, s bytea)')
  await direct.end()
  const policy = new Policy([{ schema: 'public', table: 'secrets', column: 's', qualified: 'public.secrets.s', type: 'text', binding: 'public.secrets.s' }])
  proxy = await startTestProxy({ upstreamUrl: `${server.url(database)}?sslmode=disable`, policy, keyring: new Keyring(new Map([[1, randomBytes(32)]]), 1), maxMessageSize: 1 << 20 })
})
afterAll(async () => {
  await proxy?.close()
})

async function stillServes(): Promise<void> {
  const client = new pg.Client({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined) })
  await client.connect()
  try {
    expect((await client.query("INSERT INTO secrets (id, s) VALUES (1, 'x') RETURNING s")).rows).toEqual([{ s: 'x' }])
  } finally {
    await client.end()
  }
}

/** Sends `bytes` after a normal startup and waits until the proxy answers or closes (or a short while passes). */
async function send(bytes: Buffer): Promise<void> {
  const client = await RawClient.startup(proxy.port, { user: server.superuser, database })
  const from = client.received.length
  client.socket.write(bytes)
  // A partial message legitimately waits for the rest: give up after a short while.
  await client.until(() => client.closed || client.received.length > from, 200).catch(() => undefined)
  client.close()
}

const CODES = [...'QPBDESHCdcfpFX'].map((c) => c.charCodeAt(0))

describe('random input', () => {
  it('survives arbitrary bytes after startup', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (bytes) => {
        await send(Buffer.from(bytes))
      }),
      { numRuns: 60 },
    )
    await stillServes()
  })

  it('survives well-framed messages of every type with random bodies', async () => {
    const frame = fc.tuple(fc.constantFrom(...CODES), fc.uint8Array({ maxLength: 200 })).map(([code, body]) => {
      const out = Buffer.alloc(5 + body.length)
      out[0] = code
      out.writeUInt32BE(4 + body.length, 1)
      Buffer.from(body).copy(out, 5)
      return out
    })
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 6 }), async (frames) => {
        await send(Buffer.concat([...frames, serialize.sync()]))
      }),
      { numRuns: 80 },
    )
    await stillServes()
  })
})
