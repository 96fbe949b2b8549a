/**
 * Encrypted bulk read (DESIGN.md budget): reading N rows with one protected column
 * through pgveil, against the same read of a plaintext table through the same
 * pgveil. Budget: encrypted time <= 1.5 x plaintext time. Timed with psql (C, output
 * to /dev/null) so the client's own cost stays small and equal for both.
 */
import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { insertThroughPgveil, spawnPgveil, stopPgveil, waitForPgveil } from './pgveil-process.js'
import { median } from './stats.js'
import { freePort, type PostgresServer } from './postgres-server.js'

export const BULK_READ_BUDGET = 1.5
/** DESIGN.md: a 1M-row result through the proxy keeps its RSS under this many MB. */
export const LARGE_RESULT_RSS_BUDGET_MB = 150
const LARGE_RESULT_ROWS = 1_000_000

export interface BulkReadResult {
  rows: number
  plainSeconds: number[]
  encryptedSeconds: number[]
  ratio: number
  /** Peak RSS of the proxy (VmHWM) after a 1M-row result with one protected column; null where /proc is missing. */
  peakRssMb: number | null
}

async function peakRssMb(pid: number | undefined): Promise<number | null> {
  if (pid === undefined) return null
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]
    return kb === undefined ? null : Number(kb) / 1024
  } catch {
    return null
  }
}

function timePsql(psql: string, url: string, sql: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const child = spawn(psql, [url, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-o', '/dev/null', '-c', sql], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.once('error', reject)
    child.once('close', (code) => {
      if (code !== 0) reject(new Error(`psql failed: ${stderr.trim()}`))
      else resolve(Number(process.hrtime.bigint() - started) / 1e9)
    })
  })
}

export async function measureBulkRead(options: { server: PostgresServer; workDir: string; psql: string; rows: number; rounds: number; log: (line: string) => void }): Promise<BulkReadResult> {
  const { server, workDir, psql, rows, rounds, log } = options
  const direct = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'postgres' })
  await direct.connect()
  await direct.query('DROP TABLE IF EXISTS bulk_plain, bulk_encrypted; CREATE TABLE bulk_plain (id int PRIMARY KEY, v text); CREATE TABLE bulk_encrypted (id int PRIMARY KEY, v bytea)')
  await direct.query("INSERT INTO bulk_plain SELECT g, 'customer-' || g || '@example.com' FROM generate_series(1, $1) g", [rows])
  await direct.end()

  const port = await freePort()
  const config = join(workDir, 'pgveil-bulk.yaml')
  await writeFile(config, `listen: {host: 127.0.0.1, port: ${port}}
upstream: {url: "postgres://postgres@127.0.0.1:${server.port}/postgres?sslmode=disable"}
keys: {current: 1, versions: {1: "env:PGVEIL_BENCH_KEY"}}
tables: {bulk_encrypted: {v: {type: text}}}
`)
  const env = { ...process.env, PGVEIL_BENCH_KEY: randomBytes(32).toString('base64') }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`
  const plainSeconds: number[] = []
  const encryptedSeconds: number[] = []
  let child = spawnPgveil(config, env)
  try {
    await waitForPgveil(port, child)
    log(`bulk read: encrypting ${rows} rows through pgveil`)
    await insertThroughPgveil(port, 'bulk_encrypted', ['id', 'v'], rows, (n) => [n, `customer-${n}@example.com`])

    await timePsql(psql, url, 'SELECT id, v FROM bulk_plain') // warm-up: caches, catalog
    await timePsql(psql, url, 'SELECT id, v FROM bulk_encrypted')
    for (let round = 1; round <= rounds; round++) {
      plainSeconds.push(await timePsql(psql, url, 'SELECT id, v FROM bulk_plain'))
      encryptedSeconds.push(await timePsql(psql, url, 'SELECT id, v FROM bulk_encrypted'))
      log(`bulk read round ${round}: plaintext ${plainSeconds.at(-1)!.toFixed(3)} s, encrypted ${encryptedSeconds.at(-1)!.toFixed(3)} s`)
    }
  } finally {
    await stopPgveil(child)
  }

  // Memory, on a fresh pgveil so that nothing but the result counts: 1M rows, each
  // with a protected cell, streamed to psql.
  child = spawnPgveil(config, env)
  try {
    await waitForPgveil(port, child)
    const start = await peakRssMb(child.pid)
    const repeat = Math.ceil(LARGE_RESULT_ROWS / rows)
    const largeSeconds = await timePsql(psql, url, `SELECT e.id, e.v FROM bulk_encrypted e CROSS JOIN generate_series(1, ${repeat}) LIMIT ${LARGE_RESULT_ROWS}`)
    const peak = await peakRssMb(child.pid)
    log(`large result: ${LARGE_RESULT_ROWS} rows in ${largeSeconds.toFixed(2)} s; pgveil peak RSS ${start?.toFixed(0) ?? 'unknown'} MB before it, ${peak?.toFixed(0) ?? 'unknown'} MB after`)
    return { rows, plainSeconds, encryptedSeconds, ratio: (median(encryptedSeconds) ?? NaN) / (median(plainSeconds) ?? NaN), peakRssMb: peak }
  } finally {
    await stopPgveil(child)
  }
}

export function bulkReadReport(result: BulkReadResult): string {
  const plain = median(result.plainSeconds) ?? NaN
  const encrypted = median(result.encryptedSeconds) ?? NaN
  return [
    `encrypted bulk read — SELECT of ${result.rows} rows (id, one protected text column) through pgveil, psql to /dev/null, median of ${result.plainSeconds.length}`,
    `  plaintext table  ${plain.toFixed(3)} s`,
    `  encrypted table  ${encrypted.toFixed(3)} s`,
    `encrypted / plaintext <= ${BULK_READ_BUDGET}: ${result.ratio <= BULK_READ_BUDGET ? 'PASS' : 'FAIL'} (${result.ratio.toFixed(2)})`,
    result.peakRssMb === null
      ? 'pgveil peak RSS: not measured (no /proc)'
      : `pgveil peak RSS after a ${LARGE_RESULT_ROWS}-row result with a protected column <= ${LARGE_RESULT_RSS_BUDGET_MB} MB: ${result.peakRssMb <= LARGE_RESULT_RSS_BUDGET_MB ? 'PASS' : 'FAIL'} (${result.peakRssMb.toFixed(0)} MB)`,
  ].join('\n')
}
