/**
 * The extended protocol through pgveil behaves as PostgreSQL's own: random batches
 * of Parse, Bind, Describe, Execute (with row limits), Close, Flush and Sync, on
 * named and unnamed statements and portals, with statements that fail at Parse, at
 * Bind or while running, go to pgveil (a table with protected columns) and straight
 * to PostgreSQL (a plaintext twin table). Every batch must get the same replies:
 * the same message types in the same order, the same column names and types, rows,
 * command tags and SQLSTATEs (pgveil restores the plaintext types). pgveil's audit
 * log must name, for each statement that completed, the statement PostgreSQL ran:
 * each returns its own number as its first column (`k3`), so the rows tell.
 *
 * A fixed seed makes a failure reproducible; PROTOCOL_FUZZ_SEED and PROTOCOL_FUZZ_RUNS explore.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import pg from 'pg'
import { serialize } from 'pg-protocol'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import { eventually } from '../harness/eventually.js'
import { getTestPostgres } from '../harness/pg.js'
import { startTestProxy, type TestProxy } from '../harness/proxy.js'
import { RawClient, type ReceivedMessage } from '../harness/raw-client.js'
import { protectedColumn } from '../harness/policy.js'

const server = getTestPostgres()
const SEED = Number(process.env.PROTOCOL_FUZZ_SEED ?? 20261123)
const RUNS = Number(process.env.PROTOCOL_FUZZ_RUNS ?? 300)
let database: string
let proxy: TestProxy
const scratch = mkdtempSync(path.join(tmpdir(), 'pgveil-protocol-'))
const auditFile = path.join(scratch, 'audit.log')


const ROWS = "(1, 'first secret', 'a@twin.example', 'n1'), (2, 'second secret', 'b@twin.example', NULL), (3, NULL, 'a@twin.example', 'n3'), (4, 'fourth ✓', NULL, 'n4')"

beforeAll(async () => {
  database = await server.createDatabase('protocol_differential')
  const direct = new pg.Client({ connectionString: server.url(database) })
  await direct.connect()
  await direct.query(`
    CREATE TABLE items (id int PRIMARY KEY, secret bytea, email bytea, note text);
    CREATE TABLE items_plain (id int PRIMARY KEY, secret text, email text, note text);
    INSERT INTO items_plain (id, secret, email, note) VALUES ${ROWS};
  `)
  await direct.end()
  const policy = new Policy([protectedColumn('items', 'secret'), protectedColumn('items', 'email', 'text', { search: 'equality' })])
  proxy = await startTestProxy({
    upstreamUrl: `${server.url(database)}?sslmode=disable`,
    policy,
    keyring: new Keyring(new Map([[1, randomBytes(32)]]), 1, randomBytes(32)),
    audit: { to: auditFile, chainKey: randomBytes(32), maxBacklogBytes: 16 * 1024 * 1024 },
  })
  const client = new pg.Client({ connectionString: proxy.url(database, server.superuser, server.superuserPassword ?? undefined) })
  await client.connect()
  await client.query(`INSERT INTO items (id, secret, email, note) VALUES ${ROWS}`)
  await client.end()
})

afterAll(async () => {
  await proxy?.close()
  rmSync(scratch, { recursive: true, force: true })
})

/** Statements (`{t}`: the table of each side) and how to make their parameters from a number. */
/** Statements (`{t}`: the table of each side) and how to make their parameters from a number; each returns its index first (`k<i>`). */
const STATEMENTS: readonly { readonly sql: string; readonly params: (n: number) => (string | null)[] }[] = [
  { sql: 'SELECT 0 AS k0, id, secret, email, note FROM {t} ORDER BY id', params: () => [] },
  { sql: 'SELECT 1 AS k1, id, secret FROM {t} WHERE email = $1 ORDER BY id', params: (n) => [['a@twin.example', 'b@twin.example', 'zz@twin.example'][n % 3]!] },
  { sql: 'SELECT 2 AS k2, secret, id FROM {t} WHERE id > $1 ORDER BY id', params: (n) => [String(n % 5)] },
  { sql: 'INSERT INTO {t} (id, secret, email, note) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING 3 AS k3, secret, email', params: (n) => [String(10 + (n % 7)), n % 4 === 0 ? null : `secret ${n}`, `e${n % 3}@twin.example`, 'inserted'] },
  { sql: 'UPDATE {t} SET secret = $1 WHERE id = $2 RETURNING 4 AS k4, id, secret', params: (n) => [`updated ${n}`, String(n % 6)] },
  { sql: 'DELETE FROM {t} WHERE id = $1 RETURNING 5 AS k5, email', params: (n) => [String(10 + (n % 7))] },
  { sql: 'SELECT 6 AS k6, id / (id - id) AS boom FROM {t}', params: () => [] },
  { sql: 'SELECT nonexistent FROM {t}', params: () => [] },
  { sql: 'SELECT 8 AS k8, count(*)::int AS n, count(secret)::int AS s FROM {t} WHERE email IN ($1, $2)', params: (n) => [`e${n % 3}@twin.example`, 'a@twin.example'] },
  { sql: 'SELECT 9 AS k9, $1::int AS x', params: (n) => [n % 5 === 0 ? 'twin-not-int' : String(n)] },
]
const NAMES = ['', 's1', 's2']
const PORTALS = ['', 'p1']

type Op =
  | { op: 'parse'; name: number; statement: number }
  | { op: 'bind'; portal: number; name: number; seed: number }
  | { op: 'describe'; kind: 'S' | 'P'; name: number }
  | { op: 'execute'; portal: number; rows: number }
  | { op: 'close'; kind: 'S' | 'P'; name: number }
  | { op: 'flush' }
  /** Parse, Bind and Execute of one statement in a row (the common case). */
  | { op: 'run'; name: number; statement: number; portal: number; seed: number; rows: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('parse' as const), name: fc.nat(NAMES.length - 1), statement: fc.nat(STATEMENTS.length - 1) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('bind' as const), portal: fc.nat(PORTALS.length - 1), name: fc.nat(NAMES.length - 1), seed: fc.nat(1000) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('describe' as const), kind: fc.constantFrom('S' as const, 'P' as const), name: fc.nat(2) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('execute' as const), portal: fc.nat(PORTALS.length - 1), rows: fc.constantFrom(0, 0, 1, 2) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('close' as const), kind: fc.constantFrom('S' as const, 'P' as const), name: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'flush' as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('run' as const), name: fc.nat(NAMES.length - 1), statement: fc.nat(STATEMENTS.length - 1), portal: fc.nat(PORTALS.length - 1), seed: fc.nat(1000), rows: fc.constantFrom(0, 0, 1) }) },
)
/** A batch: messages up to a Sync, or a simple Query of its own (transaction control, DEALLOCATE, a read). */
type Batch = readonly Op[] | { readonly query: string }
// Explicit transactions keep named portals open across Syncs. A failed transaction
// is rolled back at once (Side.run): some sequences of messages in one crash
// PostgreSQL 15.18 itself (a segfault straight from a client, pgveil or not), which
// would take the shared test server down.
const QUERIES = ['BEGIN', 'COMMIT', 'ROLLBACK', 'DEALLOCATE ALL', 'DEALLOCATE s1', 'SELECT id, secret FROM {t} ORDER BY id LIMIT 2']
const batch: fc.Arbitrary<Batch> = fc.oneof({ weight: 5, arbitrary: fc.array(op, { minLength: 1, maxLength: 10 }) }, { weight: 1, arbitrary: fc.constantFrom(...QUERIES).map((query) => ({ query })) })

/** One side: its connection, its table, and which statement each name holds (to make Bind's parameters). */
class Side {
  readonly named = new Map<number, number>()
  constructor(
    readonly client: RawClient,
    readonly table: string,
  ) {}

  messages(ops: readonly Op[]): Buffer[] {
    const out: Buffer[] = []
    for (const o of ops) {
      switch (o.op) {
        case 'parse':
          this.named.set(o.name, o.statement)
          out.push(serialize.parse({ name: NAMES[o.name]!, text: STATEMENTS[o.statement]!.sql.replaceAll('{t}', this.table) }))
          break
        case 'bind': {
          const statement = this.named.get(o.name)
          const values = statement === undefined ? [] : STATEMENTS[statement]!.params(o.seed)
          out.push(serialize.bind({ portal: PORTALS[o.portal]!, statement: NAMES[o.name]!, values }))
          break
        }
        case 'describe':
          out.push(serialize.describe({ type: o.kind, name: o.kind === 'S' ? NAMES[o.name]! : PORTALS[o.name % PORTALS.length]! }))
          break
        case 'execute':
          out.push(serialize.execute({ portal: PORTALS[o.portal]!, rows: o.rows }))
          break
        case 'close':
          out.push(serialize.close({ type: o.kind, name: o.kind === 'S' ? NAMES[o.name]! : PORTALS[o.name % PORTALS.length]! }))
          break
        case 'flush':
          out.push(serialize.flush())
          break
        case 'run':
          out.push(...this.messages([{ op: 'parse', name: o.name, statement: o.statement }, { op: 'bind', portal: o.portal, name: o.name, seed: o.seed }, { op: 'execute', portal: o.portal, rows: o.rows }]).slice(0, -1))
          break
      }
    }
    out.push(serialize.sync())
    return out
  }

  async run(batch: Batch): Promise<string[]> {
    const from = this.client.received.length
    if ('query' in batch) {
      // DEALLOCATE drops statements in PostgreSQL: make no parameters for them (both sides alike).
      if (batch.query === 'DEALLOCATE ALL') this.named.clear()
      if (batch.query === 'DEALLOCATE s1') this.named.delete(1)
      this.client.send(serialize.query(batch.query.replaceAll('{t}', this.table)))
    } else this.client.send(...this.messages(batch))
    const replies = await this.client.untilReady(from)
    if ((replies.at(-1) as { status?: string }).status === 'E') {
      const rollback = this.client.received.length
      this.client.send(serialize.query('ROLLBACK'))
      await this.client.untilReady(rollback)
    }
    if (!('query' in batch)) this.completions.push(...completions(replies))
    return replies.filter((m) => m.name !== 'notice' && m.name !== 'parameterStatus').map(describeMessage)
  }

  /** For each statement that completed in an extended batch (CommandComplete, PortalSuspended): the statement its rows came from, or null without rows. */
  readonly completions: (number | null)[] = []
}

function completions(replies: readonly ReceivedMessage[]): (number | null)[] {
  const out: (number | null)[] = []
  let from: number | null = null
  for (const m of replies) {
    if (m.name === 'dataRow') from = Number((m as unknown as { fields: unknown[] }).fields[0])
    else if (m.name === 'commandComplete' || m.name === 'portalSuspended') {
      out.push(from)
      from = null
    }
  }
  return out
}

/** What must agree between the two sides (not table OIDs, not error message texts). */
function describeMessage(m: ReceivedMessage): string {
  const any = m as unknown as Record<string, unknown>
  switch (m.name) {
    case 'error':
      return `error ${m.code}`
    case 'rowDescription':
      return `rowDescription ${JSON.stringify((any.fields as { name: string; dataTypeID: number; format: string }[]).map((f) => [f.name, f.dataTypeID, f.format]))}`
    case 'parameterDescription':
      return `parameterDescription ${JSON.stringify(any.dataTypeIDs)}`
    case 'dataRow':
      return `dataRow ${JSON.stringify(any.fields)}`
    case 'commandComplete':
      return `commandComplete ${String(any.text)}`
    case 'readyForQuery':
      return `readyForQuery ${String(any.status)}`
    default:
      return m.name
  }
}

describe('the extended protocol through pgveil answers as PostgreSQL does (batches built at random)', () => {
  it(`gives the same replies as PostgreSQL to ${RUNS} batches (seed ${SEED})`, { timeout: 120_000 }, async () => {
    const batches = fc.sample(batch, { seed: SEED, numRuns: RUNS })
    const viaPgveil = new Side(await RawClient.startup(proxy.port, { user: server.superuser, database }), 'items')
    const port = viaPgveil.client.socket.localPort
    const plaintext = new Side(await RawClient.startup(server.port, { user: server.superuser, database }), 'items_plain')
    const mismatches: string[] = []
    let messages = 0
    try {
      for (const ops of batches) {
        const [a, b] = [await viaPgveil.run(ops), await plaintext.run(ops)]
        messages += b.length
        if (JSON.stringify(a) !== JSON.stringify(b)) mismatches.push(`${JSON.stringify(ops)}\n  pgveil    ${a.join(' | ')}\n  plaintext ${b.join(' | ')}`)
        if (mismatches.length >= 5) break
      }
    } finally {
      viaPgveil.client.close()
      plaintext.client.close()
    }
    console.log(`protocol differential: ${RUNS} batches, ${messages} replies`)
    expect(mismatches).toEqual([])
    expect(messages).toBeGreaterThan(RUNS * 2)

    // The audit log: its lines for the statements that completed in extended batches, in order, name what ran.
    const lines = (): { event: string; session?: number; client?: string; protocol?: string; statement?: string; outcome?: { status: string } }[] =>
      readFileSync(auditFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { event: string })
    let session = -1
    await eventually(() => {
      session = lines().findLast((l) => l.event === 'connect' && l.client === `127.0.0.1:${port}`)?.session ?? -1
      return session >= 0 && lines().some((l) => l.event === 'disconnect' && l.session === session)
    })
    const logged = lines().filter((l) => l.event === 'statement' && l.session === session && l.protocol === 'extended' && l.outcome?.status === 'ok')
    const ran = viaPgveil.completions
    expect(logged).toHaveLength(ran.length)
    const misnamed = ran.flatMap((k, i) => (k === null || new RegExp(`\\bk${k}\\b`).test(logged[i]!.statement ?? '') ? [] : [`completion ${i}: ran k${k}, logged ${logged[i]!.statement}`]))
    expect(misnamed).toEqual([])
    expect(ran.filter((k) => k !== null).length).toBeGreaterThan(RUNS / 20)
  })
})
