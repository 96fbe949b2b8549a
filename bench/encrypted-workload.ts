/**
 * Encrypted workload (DESIGN.md budget): insert, equality lookup and update with
 * pgbench custom scripts on a table whose `email` (searchable, `search:
 * equality`, with the expression index on its slot) and `balance` are protected,
 * against the same scripts on a plaintext table (btree index on `email`), both
 * through the same pgveil. Budget: encrypted TPS >= 0.75 x plaintext TPS for each.
 */
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import { insertThroughPgveil, spawnPgveil, stopPgveil, waitForPgveil } from './pgveil-process.js'
import { median } from './stats.js'
import { freePort, type PostgresServer } from './postgres-server.js'

export const ENCRYPTED_WORKLOAD_BUDGET = 0.75
export const ENCRYPTED_WORKLOADS = ['insert', 'lookup', 'update'] as const
export type Workload = (typeof ENCRYPTED_WORKLOADS)[number]

/**
 * pgbench scripts; `:n` and `:b` become parameters in -M prepared, so values reach
 * pgveil as Bind parameters. Inserts write emails outside 1..rows, so however many
 * rows the insert runs add to each table (their TPS differ), a lookup or update
 * matches exactly one row in either table: the workloads stay alike.
 */
export function encryptedWorkloadScript(workload: Workload, table: string, rows: number): string {
  const n = `\\set n random(1, ${rows})\n`
  switch (workload) {
    case 'insert':
      return `\\set n random(${rows + 1}, ${rows * 1000})\n\\set b random(1, 100000)\nINSERT INTO ${table} (email, balance) VALUES (:n, :b);\n`
    case 'lookup':
      return `${n}SELECT id, balance FROM ${table} WHERE email = :n;\n`
    case 'update':
      return `${n}\\set b random(1, 100000)\nUPDATE ${table} SET balance = :b WHERE email = :n;\n`
  }
}

export interface EncryptedWorkloadRow {
  workload: Workload
  plainTps: number[]
  encryptedTps: number[]
  ratio: number | null
  errors: string[]
}

export interface EncryptedWorkloadResult {
  rows: number
  clients: number
  seconds: number
  workloads: EncryptedWorkloadRow[]
}

type Pgbench = (port: number, args: readonly string[]) => Promise<{ tps: number | null; failed: number | null; error: string | null }>

export async function measureEncryptedWorkload(options: {
  server: PostgresServer
  workDir: string
  pgbench: Pgbench
  rows: number
  rounds: number
  seconds: number
  clients: number
  jobs: number
  /** Which workloads to measure (all by default); one alone is handy under a profiler. */
  workloads?: readonly Workload[]
  log: (line: string) => void
}): Promise<EncryptedWorkloadResult> {
  const { server, workDir, rows, rounds, seconds, clients, jobs, log } = options
  const workloads = options.workloads ?? ENCRYPTED_WORKLOADS
  const direct = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'postgres' })
  await direct.connect()
  await direct.query(`DROP TABLE IF EXISTS ew_plain, ew_encrypted;
    CREATE TABLE ew_plain (id bigserial PRIMARY KEY, email text, balance numeric);
    CREATE TABLE ew_encrypted (id bigserial PRIMARY KEY, email bytea, balance bytea);
    CREATE INDEX ew_plain_email ON ew_plain (email);
    CREATE INDEX ew_encrypted_email_search ON ew_encrypted ((substring(email from 13 for 32)));`)
  await direct.query('INSERT INTO ew_plain (email, balance) SELECT g::text, g % 1000 FROM generate_series(1, $1) g', [rows])
  await direct.end()

  const port = await freePort()
  const config = join(workDir, 'pgveil-encrypted-workload.yaml')
  await writeFile(config, `listen: {host: 127.0.0.1, port: ${port}}
upstream: {url: "postgres://postgres@127.0.0.1:${server.port}/postgres?sslmode=disable"}
keys: {current: 1, versions: {1: "env:PGVEIL_BENCH_KEY"}, index: "env:PGVEIL_BENCH_INDEX_KEY"}
tables: {ew_encrypted: {email: {type: text, search: equality}, balance: {type: numeric}}}
`)
  const child = spawnPgveil(config, { ...process.env, PGVEIL_BENCH_KEY: randomBytes(32).toString('base64'), PGVEIL_BENCH_INDEX_KEY: randomBytes(32).toString('base64') })
  try {
    await waitForPgveil(port, child)
    log(`encrypted workload: encrypting ${rows} rows through pgveil`)
    await insertThroughPgveil(port, 'ew_encrypted', ['email', 'balance'], rows, (n) => [String(n), String(n % 1000)])
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' })
    await client.connect()
    // Correctness before speed: a lookup through pgveil finds the row it wrote.
    const probe = await client.query<{ balance: string }>('SELECT balance FROM ew_encrypted WHERE email = $1', ['42'])
    if (probe.rows.length !== 1 || probe.rows[0]!.balance !== '42') throw new Error(`encrypted lookup returned ${JSON.stringify(probe.rows)}, expected [{"balance":"42"}]`)
    await client.end()
    const analyze = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'postgres' })
    await analyze.connect()
    await analyze.query('ANALYZE ew_plain; ANALYZE ew_encrypted')
    await analyze.end()

    const files = new Map<string, string>()
    for (const workload of workloads) {
      for (const table of ['ew_plain', 'ew_encrypted']) {
        const file = join(workDir, `${workload}_${table}.sql`)
        await writeFile(file, encryptedWorkloadScript(workload, table, rows))
        files.set(`${workload}:${table}`, file)
      }
    }
    const common = ['-n', '-M', 'prepared', '-c', String(clients), '-j', String(Math.min(jobs, clients)), '-T', String(seconds)]
    const result: EncryptedWorkloadRow[] = workloads.map((workload) => ({ workload, plainTps: [], encryptedTps: [], ratio: null, errors: [] }))
    for (let round = 1; round <= rounds; round++) {
      for (const row of result) {
        // Interleaved plaintext / encrypted, so drift hits both alike.
        for (const table of ['ew_plain', 'ew_encrypted'] as const) {
          const run = await options.pgbench(port, [...common, '-f', files.get(`${row.workload}:${table}`)!])
          if (run.error !== null) row.errors.push(`${table}: ${run.error}`)
          else if ((run.failed ?? 0) > 0) row.errors.push(`${table}: ${run.failed} failed transactions`)
          if (run.tps !== null) (table === 'ew_plain' ? row.plainTps : row.encryptedTps).push(run.tps)
          log(`encrypted workload round ${round} ${row.workload.padEnd(7)} ${table === 'ew_plain' ? 'plaintext' : 'encrypted'} ${run.tps === null ? '?' : run.tps.toFixed(1)} tps`)
        }
      }
    }
    for (const row of result) {
      const plain = median(row.plainTps)
      const encrypted = median(row.encryptedTps)
      row.ratio = plain === null || encrypted === null || plain === 0 ? null : encrypted / plain
    }
    return { rows, clients, seconds, workloads: result }
  } finally {
    await stopPgveil(child)
  }
}

export function encryptedWorkloadReport(result: EncryptedWorkloadResult): string {
  const lines = [
    `encrypted workload — pgbench -M prepared -c ${result.clients} -T ${result.seconds} custom scripts through pgveil, ${result.rows} rows; email searchable (expression index on its slot), balance numeric; median TPS`,
    `  ${'workload'.padEnd(8)} ${'plaintext'.padStart(10)} ${'encrypted'.padStart(10)} ${'ratio'.padStart(6)}`,
  ]
  let pass = true
  for (const row of result.workloads) {
    const plain = median(row.plainTps)
    const encrypted = median(row.encryptedTps)
    const ok = row.ratio !== null && row.ratio >= ENCRYPTED_WORKLOAD_BUDGET && row.errors.length === 0
    pass &&= ok
    lines.push(`  ${row.workload.padEnd(8)} ${(plain?.toFixed(1) ?? '?').padStart(10)} ${(encrypted?.toFixed(1) ?? '?').padStart(10)} ${(row.ratio?.toFixed(2) ?? '?').padStart(6)}${row.errors.length > 0 ? `  [${row.errors.join('; ')}]` : ''}`)
  }
  lines.push(`encrypted / plaintext >= ${ENCRYPTED_WORKLOAD_BUDGET} (insert, lookup, update): ${pass ? 'PASS' : 'FAIL'}`)
  return lines.join('\n')
}
