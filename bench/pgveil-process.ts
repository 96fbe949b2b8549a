/**
 * Starting `pgveil start` for a measurement and waiting until it takes connections:
 * what every bench that runs its own pgveil shares.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import pg from 'pg'

/**
 * Node options for the pgveil processes only, from PGVEIL_BENCH_NODE_ARGS
 * (space-separated), e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the
 * proxy under load (NODE_OPTIONS refuses --cpu-prof).
 */
export function pgveilNodeArgs(): string[] {
  return (process.env.PGVEIL_BENCH_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '')
}

/** `node dist/proxy/cli.js start --config FILE`, its output discarded. */
export function spawnPgveil(config: string, env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const cli = fileURLToPath(new URL('../proxy/cli.js', import.meta.url))
  return spawn(process.execPath, [...pgveilNodeArgs(), cli, 'start', '--config', config], { stdio: ['ignore', 'ignore', 'ignore'], env })
}

/** Resolves once a client can connect through pgveil on `port`; rejects if it exits or takes over 20 s. */
export async function waitForPgveil(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`pgveil exited with ${child.exitCode}`)
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' })
    try {
      await client.connect()
      await client.end()
      return
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  throw new Error('pgveil did not start')
}

/** SIGTERM, then wait (at most 10 s) for the exit, so a profile asked for with PGVEIL_BENCH_NODE_ARGS is written. */
export async function stopPgveil(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))
  child.kill('SIGTERM')
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000).unref())])
}

/**
 * Inserts rows 1..`rows` through pgveil on `port`, 1,000 per multi-row INSERT, the
 * values as parameters (so pgveil encrypts them at Bind); `row(n)` gives row n's values.
 */
export async function insertThroughPgveil(port: number, table: string, columns: readonly string[], rows: number, row: (n: number) => unknown[]): Promise<void> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' })
  await client.connect()
  try {
    const batch = 1000
    const width = columns.length
    for (let first = 1; first <= rows; first += batch) {
      const count = Math.min(batch, rows - first + 1)
      const tuples = Array.from({ length: count }, (_, i) => `(${columns.map((_, c) => `$${width * i + c + 1}`).join(', ')})`).join(', ')
      const params = Array.from({ length: count }, (_, i) => row(first + i)).flat()
      await client.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${tuples}`, params)
    }
  } finally {
    await client.end()
  }
}
