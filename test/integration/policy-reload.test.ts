/**
 * Hot reload of the column policy through the real `pgveil start`: an invalid edit
 * is refused and the running policy stays; a valid one protects new columns at once
 * for new sessions and for open sessions that nothing ties to the old one; the others
 * are asked to reconnect.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { serialize } from 'pg-protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectCollectingErrors } from '../harness/clients.js'
import { eventually } from '../harness/eventually.js'
import { getTestPostgres } from '../harness/pg.js'
import { freePort } from '../harness/ports.js'
import { RawClient } from '../harness/raw-client.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const server = getTestPostgres()
const dir = mkdtempSync(path.join(tmpdir(), 'pgveil-reload-'))
const configFile = path.join(dir, 'pgveil.yaml')
let database: string
let direct: pg.Client

beforeAll(async () => {
  database = await server.createDatabase('reload')
  direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query('CREATE TABLE people (id int PRIMARY KEY, email bytea, phone bytea)')
})
afterAll(async () => {
  await direct?.end()
})

/** `pgveil start --config configFile` with key versions 1 and 2 in its environment, and its output so far. */
function startPgveil(): { child: ChildProcess; stdout: () => string; stderr: () => string } {
  const env: NodeJS.ProcessEnv = { PGVEIL_KEY_1: Buffer.alloc(32, 3).toString('base64'), PGVEIL_KEY_2: Buffer.alloc(32, 4).toString('base64') }
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PGVEIL_')) env[name] = value
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/proxy/cli.js'), 'start', '--config', configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  return { child, stdout: () => stdout, stderr: () => stderr }
}

describe('policy reload', () => {
  it('refuses an invalid edit, applies a valid one to new and open sessions, and asks sessions with statements prepared under the old one to reconnect', async () => {
    const port = await freePort()
    const adminPort = await freePort()
    const head = `listen: { host: 127.0.0.1, port: ${port} }\nadmin: { host: 127.0.0.1, port: ${adminPort} }\nupstream: { url: "${server.url(database)}?sslmode=disable" }\nkeys:\n  current: 1\n  versions: { 1: "env:PGVEIL_KEY_1" }\ntables:\n  people:\n    email: { type: text }\n`
    writeFileSync(configFile, head)
    const { child, stdout, stderr } = startPgveil()
    const url = `postgres://${server.superuser}@127.0.0.1:${port}/${database}?sslmode=disable`
    const connect = () => connectCollectingErrors({ connectionString: url })
    try {
      await eventually(() => stdout().includes('pgveil listening on'))
      const open = await connect()
      await open.client.query("INSERT INTO people (id, email, phone) VALUES (1, 'one@example.com', NULL)")

      // An invalid edit: refused, logged with its line, the running policy stays.
      writeFileSync(configFile, `${head}    phone: { type: varchar }\n`)
      await eventually(() => stderr().includes('policy reload refused'))
      expect(stderr()).toMatch(/tables\.people\.phone\.type: the string \\"varchar\\" is not a supported type/)
      const scrape = await fetch(`http://127.0.0.1:${adminPort}/metrics`)
      expect(scrape.status).toBe(200)
      expect(await scrape.text()).toMatch(/^pgveil_policy_reloads_total\{outcome="refused"\} 1$/m)
      expect((await open.client.query('SELECT email FROM people WHERE id = 1')).rows).toEqual([{ email: 'one@example.com' }])

      // Sessions nothing ties to the old policy take the new one in place; one holding
      // a named prepared statement (planned under the old policy) is asked to reconnect,
      // and one that prepared the unnamed statement cannot bind it afterwards.
      const named = await connect()
      await named.client.query({ name: 'read-people', text: 'SELECT id FROM people WHERE id = $1', values: [1] })
      const raw = await RawClient.startup(port, { user: server.superuser, database })
      let from = raw.received.length
      raw.send(serialize.parse({ text: 'INSERT INTO people (id, phone) VALUES ($1, $2)' }), serialize.sync())
      await raw.untilReady(from)

      // A valid edit protects phone. The open session's catalog read for it waits on a
      // lock (its view over email is probed), so the session's next message arrives
      // while it takes the new policy: it waits, and is answered once the catalog is in.
      await direct.query('CREATE VIEW people_mail AS SELECT id, email FROM people')
      const locker = new pg.Client({ connectionString: server.url(database) })
      await locker.connect()
      await locker.query('BEGIN; LOCK TABLE people IN ACCESS EXCLUSIVE MODE')
      writeFileSync(configFile, `${head}    phone: { type: text }\n`)
      await eventually(() => stderr().includes('"msg":"policy reloaded"'))
      await eventually(() => named.errors.length > 0)
      expect(named.errors[0]).toMatchObject({ code: '57P01', message: expect.stringContaining('column policy changed') })
      const waiting = open.client.query('SELECT 1 AS answered')
      await new Promise((resolve) => setTimeout(resolve, 200))
      await locker.query('COMMIT')
      await locker.end()
      const answered = await Promise.race([waiting, new Promise((resolve) => setTimeout(() => resolve('no answer within 5 s'), 5000))])
      expect(answered).toMatchObject({ rows: [{ answered: 1 }] })

      // The open session goes on under the new policy: phone is encrypted from its next statement.
      await open.client.query("INSERT INTO people (id, email, phone) VALUES (3, 'three@example.com', '+44 20 7946 0000')")
      expect((await open.client.query('SELECT email, phone FROM people WHERE id = 3')).rows).toEqual([{ email: 'three@example.com', phone: '+44 20 7946 0000' }])
      expect((await direct.query<{ phone: Buffer }>('SELECT phone FROM people WHERE id = 3')).rows[0]!.phone.subarray(0, 3)).toEqual(Buffer.from('pv\x01', 'latin1'))
      expect(open.errors).toEqual([])

      // The unnamed statement parsed before the change is refused at Bind: its phone parameter would have gone unencrypted.
      from = raw.received.length
      raw.send(serialize.bind({ values: ['4', 'unbound-phone-secret'] }), serialize.execute({}), serialize.sync())
      const bound = await raw.untilReady(from)
      expect(bound.find((m) => m.name === 'error')).toMatchObject({ code: '26000', message: expect.stringContaining("pgveil's new column policy") })
      // Parsed again, it runs encrypted.
      from = raw.received.length
      raw.send(serialize.parse({ text: 'INSERT INTO people (id, phone) VALUES ($1, $2)' }), serialize.bind({ values: ['4', 'bound-again-phone'] }), serialize.execute({}), serialize.sync())
      expect((await raw.untilReady(from)).map((m) => m.name)).toEqual(['parseComplete', 'bindComplete', 'commandComplete', 'readyForQuery'])
      expect((await direct.query<{ phone: Buffer }>('SELECT phone FROM people WHERE id = 4')).rows[0]!.phone.includes('bound-again-phone')).toBe(false)
      raw.close()
      expect(server.readLog()).not.toContain('unbound-phone-secret')

      const fresh = await connect()
      await fresh.client.query("INSERT INTO people (id, email, phone) VALUES (2, 'two@example.com', '+33 1 23 45 67 89')")
      expect((await fresh.client.query('SELECT email, phone FROM people WHERE id = 2')).rows).toEqual([{ email: 'two@example.com', phone: '+33 1 23 45 67 89' }])
      const stored = await direct.query<{ phone: Buffer }>('SELECT phone FROM people WHERE id = 2')
      expect(stored.rows[0]!.phone.includes('+33 1 23 45 67 89')).toBe(false)

      // SIGHUP reads the file again; nothing changed, nothing happens to sessions.
      child.kill('SIGHUP')
      await eventually(() => stderr().includes('"msg":"policy unchanged"'))
      expect(fresh.errors).toEqual([])

      await fresh.client.end()
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('rotates data keys without ending open sessions or their prepared statements', async () => {
    const port = await freePort()
    const keysV1 = 'keys:\n  current: 1\n  versions: { 1: "env:PGVEIL_KEY_1" }\n'
    const keysV2 = 'keys:\n  current: 2\n  versions: { 1: "env:PGVEIL_KEY_1", 2: "env:PGVEIL_KEY_2" }\n'
    const head = `listen: { host: 127.0.0.1, port: ${port} }\nupstream: { url: "${server.url(database)}?sslmode=disable" }\n`
    const tables = 'tables:\n  people:\n    email: { type: text }\n    phone: { type: text }\n'
    writeFileSync(configFile, head + keysV1 + tables)
    const { child, stdout, stderr } = startPgveil()
    const storedKeyVersion = async (id: number) => (await direct.query<{ email: Buffer }>('SELECT email FROM people WHERE id = $1', [id])).rows[0]!.email.readUInt32BE(4)
    try {
      await eventually(() => stdout().includes('pgveil listening on'))
      const open = await connectCollectingErrors({ connectionString: `postgres://${server.superuser}@127.0.0.1:${port}/${database}?sslmode=disable` })
      const write = { name: 'rotation-write', text: 'INSERT INTO people (id, email) VALUES ($1, $2)' }
      const read = { name: 'rotation-read', text: 'SELECT id, email FROM people WHERE id IN (11, 12) ORDER BY id' }
      await open.client.query({ ...write, values: [11, 'before@example.com'] })
      expect((await open.client.query(read)).rows).toEqual([{ id: 11, email: 'before@example.com' }])
      expect(await storedKeyVersion(11)).toBe(1)

      writeFileSync(configFile, head + keysV2 + tables)
      await eventually(() => stderr().includes('keys applied'))
      await open.client.query({ ...write, values: [12, 'after@example.com'] })
      expect((await open.client.query(read)).rows).toEqual([
        { id: 11, email: 'before@example.com' },
        { id: 12, email: 'after@example.com' },
      ])
      expect(await storedKeyVersion(12)).toBe(2)
      expect(open.errors).toEqual([])
      await open.client.end()
    } finally {
      child.kill('SIGKILL')
    }
  })
})
