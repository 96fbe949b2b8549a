/**
 * The passthrough benchmark of DESIGN.md "Budgets": pgbench select-only through
 * pgveil and through the baselines it is judged against, all in one run, in
 * interleaved order, reported as ratios.
 *
 *   npm run bench                       # 10 s per run; PGVEIL_BENCH_SECONDS=N to change
 *   node dist/bench/run.js --help
 *
 * Targets: direct PostgreSQL; a bare Node pipe() forwarder (bench/forwarder.ts);
 * haproxy in tcp mode and PgBouncer in session mode when installed; pgveil
 * (`node dist/proxy/cli.js start`), and pgveil with the audit log on (to a file),
 * whose ratio to pgveil is the audit budget. Absent targets are reported, not fatal.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, constants as fsConstants, existsSync, openSync, closeSync, readdirSync, readFileSync } from 'node:fs'
import { chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { bulkReadReport, measureBulkRead, type BulkReadResult } from './bulk-read.js'
import { ENCRYPTED_WORKLOADS, encryptedWorkloadReport, measureEncryptedWorkload, type EncryptedWorkloadResult, type Workload } from './encrypted-workload.js'
import { pgveilNodeArgs } from './pgveil-process.js'
import { median, percentile } from './stats.js'
import { freePort, startPostgresServer, type PostgresServer } from './postgres-server.js'
import { measureSetIdentity, setIdentityReport, type SetIdentityResult } from './set-identity.js'

const MODES = ['simple', 'extended', 'prepared'] as const
type Mode = (typeof MODES)[number]
const TARGETS = ['direct', 'pipe', 'haproxy', 'pgbouncer', 'pgveil', 'pgveil-audit'] as const
type TargetName = (typeof TARGETS)[number]

const TARGET_LABELS: Record<TargetName, string> = {
  direct: 'direct PostgreSQL',
  pipe: 'node pipe()',
  haproxy: 'haproxy (tcp)',
  pgbouncer: 'pgbouncer (session)',
  pgveil: 'pgveil',
  'pgveil-audit': 'pgveil + audit',
}

/** pgveil TPS must be at least this share of the bare Node forwarder's. */
const PIPE_BUDGET = 0.95
/** pgveil with the audit log on must keep at least this share of pgveil's TPS (audit costs under 5%). */
const AUDIT_BUDGET = 0.95
/** USER_HZ of /proc/PID/stat: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100
/** Added latency budget against haproxy, milliseconds. */
const P50_BUDGET_MS = 0.15
const P99_BUDGET_MS = 0.5

interface BenchOptions {
  seconds: number
  warmupSeconds: number
  rounds: number
  modes: Mode[]
  targets: TargetName[]
  clients: number
  jobs: number
  scale: number
  haproxyThreads: number
  throughput: boolean
  latency: boolean
  latencyRate: number
  latencyMode: Mode
  bulk: boolean
  bulkRows: number
  encryptedWorkload: boolean
  encryptedWorkloadRows: number
  identity: boolean
  identityOnly: boolean
  identityCount: number
  encryptedWorkloads: Workload[]
  json: string | null
}

const USAGE = `usage: node dist/bench/run.js [options]

  --seconds N          length of each pgbench run (default $PGVEIL_BENCH_SECONDS or 10)
  --warmup N           unmeasured run per target before its first measured one (default 2, 0 = none)
  --rounds N           repeat every measurement N times, report the median (default 1)
  --modes LIST         comma-separated of simple,extended,prepared (default all)
  --targets LIST       comma-separated of ${TARGETS.join(',')} (default all)
  --clients N          pgbench -c (default 8); --jobs N: pgbench -j (default 2)
  --scale N            pgbench -i -s (default 10)
  --haproxy-threads N  haproxy nbthread (default 1: one thread, like one Node event loop)
  --latency            also measure latency at a fixed rate (-R 500 -L 50, 1 and 8 clients)
  --latency-rate N     -R for the latency runs (default 500)
  --latency-mode MODE  -M for the latency runs (default simple)
  --no-throughput      skip the throughput runs (with --latency)
  --no-bulk            skip the encrypted bulk-read measurement
  --bulk-rows N        rows of the bulk read (default 100000)
  --no-encrypted-workload  skip the encrypted insert/lookup/update workload
  --encrypted-workload-only  run only the encrypted workload (no passthrough, latency or bulk runs)
  --encrypted-workload-rows N  rows of the encrypted workload's tables (default 10000)
  --no-identity        skip the SET IDENTITY latency measurement
  --identity-only      run only the SET IDENTITY latency measurement
  --identity-count N   SET IDENTITY round trips measured (default 2000)
  --encrypted-workloads LIST   which of insert,lookup,update to measure (default all)
  --json FILE          also write every figure as JSON
`

function parseOptions(argv: readonly string[]): BenchOptions {
  const envSeconds = process.env.PGVEIL_BENCH_SECONDS
  const options: BenchOptions = {
    seconds: envSeconds === undefined || envSeconds === '' ? 10 : positiveInt(envSeconds, 'PGVEIL_BENCH_SECONDS'),
    warmupSeconds: 2,
    rounds: 1,
    modes: [...MODES],
    targets: [...TARGETS],
    clients: 8,
    jobs: 2,
    scale: 10,
    haproxyThreads: 1,
    throughput: true,
    latency: false,
    bulk: true,
    bulkRows: 100_000,
    encryptedWorkload: true,
    encryptedWorkloadRows: 10_000,
    identity: true,
    identityOnly: false,
    identityCount: 2000,
    encryptedWorkloads: [...ENCRYPTED_WORKLOADS],
    latencyRate: 500,
    latencyMode: 'simple',
    json: null,
  }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = (): string => {
      const next = argv[++i]
      if (next === undefined) throw new RangeError(`${flag} needs a value`)
      return next
    }
    switch (flag) {
      case '--help':
      case '-h':
        process.stdout.write(USAGE)
        process.exit(0)
        break
      case '--seconds': options.seconds = positiveInt(value(), flag); break
      case '--warmup': options.warmupSeconds = nonNegativeInt(value(), flag); break
      case '--rounds': options.rounds = positiveInt(value(), flag); break
      case '--modes': options.modes = list(value(), MODES, flag); break
      case '--targets': options.targets = list(value(), TARGETS, flag); break
      case '--clients': options.clients = positiveInt(value(), flag); break
      case '--jobs': options.jobs = positiveInt(value(), flag); break
      case '--scale': options.scale = positiveInt(value(), flag); break
      case '--haproxy-threads': options.haproxyThreads = positiveInt(value(), flag); break
      case '--latency': options.latency = true; break
      case '--latency-rate': options.latencyRate = positiveInt(value(), flag); break
      case '--latency-mode': options.latencyMode = list(value(), MODES, flag)[0] ?? 'simple'; break
      case '--no-throughput': options.throughput = false; break
      case '--no-bulk': options.bulk = false; break
      case '--bulk-rows': options.bulkRows = positiveInt(value(), flag); break
      case '--no-encrypted-workload': options.encryptedWorkload = false; break
      case '--encrypted-workload-only':
        Object.assign(options, { encryptedWorkload: true, throughput: false, latency: false, bulk: false, identity: false, targets: [] })
        break
      case '--encrypted-workload-rows': options.encryptedWorkloadRows = positiveInt(value(), flag); break
      case '--no-identity': options.identity = false; break
      case '--identity-only': options.identityOnly = true; break
      case '--identity-count': options.identityCount = positiveInt(value(), flag); break
      case '--encrypted-workloads': options.encryptedWorkloads = list(value(), ENCRYPTED_WORKLOADS, flag); break
      case '--json': options.json = value(); break
      default:
        throw new RangeError(`unknown option ${String(flag)}\n${USAGE}`)
    }
  }
  return options
}

function positiveInt(text: string, what: string): number {
  const value = Number(text)
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${what} must be a positive integer (got "${text}")`)
  return value
}

function nonNegativeInt(text: string, what: string): number {
  return text === '0' ? 0 : positiveInt(text, what)
}

function list<T extends string>(text: string, allowed: readonly T[], what: string): T[] {
  const items = text.split(',').map((item) => item.trim()).filter((item) => item !== '')
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) throw new RangeError(`${what}: "${item}" is not one of ${allowed.join(', ')}`)
  }
  return allowed.filter((item) => items.includes(item))
}

// ---------------------------------------------------------------- processes

const children = new Set<ChildProcess>()

function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** An executable on PATH, or in the sbin directories a non-root PATH may lack. */
function findProgram(name: string, extraDirs: readonly string[] = []): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin', ...extraDirs]
  for (const dir of dirs) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, fsConstants.X_OK)
      return candidate
    } catch {
      // keep looking
    }
  }
  return null
}

function firstLine(file: string, args: readonly string[]): string {
  try {
    const output = execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    return output.split('\n')[0]?.trim() ?? ''
  } catch {
    return 'unknown version'
  }
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

/** Waits until `SELECT 1` works through the port; fails early when the child dies. */
async function waitForPostgres(port: number, child: ChildProcess | null, logFile: string | null, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let lastError = ''
  while (Date.now() < deadline) {
    if (child !== null && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`exited (${child.exitCode ?? child.signalCode}) before accepting connections${logFile ? `:\n${tail(logFile)}` : ''}`)
    }
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.query('SELECT 1')
      await client.end()
      return
    } catch (error) {
      lastError = (error as Error).message
      await client.end().catch(() => {})
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }
  throw new Error(`no answer on port ${port} after ${timeoutMs} ms (${lastError})${logFile ? `:\n${tail(logFile)}` : ''}`)
}

// ---------------------------------------------------------------- targets

interface Target {
  name: TargetName
  /** Where pgbench connects, or null when the target could not run. */
  port: number | null
  /** Why it is absent, when port is null. */
  absent: string | null
  /** Version or configuration shown in the report header. */
  detail: string
  /** The process whose CPU time is the target's (pgveil), when there is one to read. */
  pid?: number
  stop(): Promise<void>
}

interface TargetContext {
  server: PostgresServer
  workDir: string
  options: BenchOptions
}

function absent(name: TargetName, reason: string): Target {
  return { name, port: null, absent: reason, detail: '', stop: async () => {} }
}

function outputFile(context: TargetContext, name: string): number {
  return openSync(join(context.workDir, `${name}.log`), 'a')
}

async function startDirect(context: TargetContext): Promise<Target> {
  return { name: 'direct', port: context.server.port, absent: null, detail: `PostgreSQL ${context.server.version}`, stop: async () => {} }
}

async function startPipe(context: TargetContext): Promise<Target> {
  const script = fileURLToPath(new URL('./forwarder.js', import.meta.url))
  const logFile = join(context.workDir, 'pipe.log')
  const stderr = outputFile(context, 'pipe')
  const child = track(spawn(process.execPath, [script, '--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${context.server.port}`], {
    stdio: ['ignore', 'pipe', stderr],
  }))
  closeSync(stderr)
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = ''
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8')
      const newline = buffered.indexOf('\n')
      if (newline === -1) return
      child.stdout?.off('data', onData)
      child.stdout?.resume()
      try {
        resolve((JSON.parse(buffered.slice(0, newline)) as { port: number }).port)
      } catch (error) {
        reject(error as Error)
      }
    }
    child.stdout?.on('data', onData)
    child.once('exit', (code) => reject(new Error(`forwarder exited (${String(code)}):\n${tail(logFile)}`)))
  })
  await waitForPostgres(port, child, logFile)
  return { name: 'pipe', port, absent: null, detail: `node ${process.version}, noDelay`, stop: () => stopChild(child) }
}

async function startHaproxy(context: TargetContext): Promise<Target> {
  const haproxy = findProgram('haproxy')
  if (haproxy === null) return absent('haproxy', 'haproxy is not installed (apt-get install haproxy)')
  const port = await freePort()
  const config = join(context.workDir, 'haproxy.cfg')
  const threads = context.options.haproxyThreads
  await writeFile(config, `global
    nbthread ${threads}
    maxconn 4096

defaults
    mode tcp
    option tcp-smart-accept
    option tcp-smart-connect
    timeout connect 5s
    timeout client 1h
    timeout server 1h

listen postgres
    bind 127.0.0.1:${port}
    server postgres 127.0.0.1:${context.server.port}
`)
  const logFile = join(context.workDir, 'haproxy.log')
  const output = outputFile(context, 'haproxy')
  // -db: stay in the foreground, so the process we track is the proxy.
  const child = track(spawn(haproxy, ['-db', '-f', config], { stdio: ['ignore', output, output] }))
  closeSync(output)
  await waitForPostgres(port, child, logFile)
  return { name: 'haproxy', port, absent: null, detail: `${firstLine(haproxy, ['-v'])}, nbthread ${threads}`, stop: () => stopChild(child) }
}

async function startPgbouncer(context: TargetContext): Promise<Target> {
  const pgbouncer = findProgram('pgbouncer')
  if (pgbouncer === null) return absent('pgbouncer', 'pgbouncer is not installed (apt-get install pgbouncer)')
  const port = await freePort()
  // PgBouncer refuses to run as root: give it its own directory owned by the
  // user PostgreSQL runs as.
  const dir = join(context.workDir, 'pgbouncer')
  await mkdir(dir)
  const logFile = join(dir, 'pgbouncer.log')
  const ini = join(dir, 'pgbouncer.ini')
  const poolSize = Math.max(8, context.options.clients + 4)
  await writeFile(join(dir, 'userlist.txt'), '"postgres" ""\n')
  await writeFile(ini, `[databases]
* = host=127.0.0.1 port=${context.server.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${join(dir, 'userlist.txt')}
pool_mode = session
default_pool_size = ${poolSize}
max_client_conn = ${poolSize * 4}
ignore_startup_parameters = extra_float_digits,options
logfile = ${logFile}
log_connections = 0
log_disconnections = 0
`)
  const osUser = context.server.osUser
  if (osUser !== null) {
    const uid = Number(execFileSync('id', ['-u', osUser], { encoding: 'utf8' }).trim())
    const gid = Number(execFileSync('id', ['-g', osUser], { encoding: 'utf8' }).trim())
    await chown(context.workDir, uid, gid)
    await chown(dir, uid, gid)
    for (const file of readdirSync(dir)) await chown(join(dir, file), uid, gid)
  }
  const output = outputFile(context, 'pgbouncer-stderr')
  const [file, argv] = osUser === null ? [pgbouncer, [ini]] : ['runuser', ['-u', osUser, '--', pgbouncer, ini]]
  const child = track(spawn(file, argv, { stdio: ['ignore', output, output] }))
  closeSync(output)
  await waitForPostgres(port, child, existsSync(logFile) ? logFile : join(context.workDir, 'pgbouncer-stderr.log'))
  return {
    name: 'pgbouncer',
    port,
    absent: null,
    detail: `${firstLine(pgbouncer, ['--version'])}, pool_mode session, default_pool_size ${poolSize}`,
    stop: () => stopChild(child),
  }
}

/**
 * Inline child program for when dist/proxy/cli.js is not there yet: the same
 * config parser and listener the CLI uses, without the CLI.
 */
const START_PROXY_PROGRAM = `
import { readFileSync } from 'node:fs'
const [configModule, serverModule, file] = process.argv.slice(1)
const { parseConfig } = await import(configModule)
const { startProxy } = await import(serverModule)
const proxy = await startProxy(parseConfig(readFileSync(file, 'utf8'), file, process.env))
const stop = () => proxy.close().finally(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
`

async function startPgveil(context: TargetContext, audit = false): Promise<Target> {
  const name: TargetName = audit ? 'pgveil-audit' : 'pgveil'
  const cli = fileURLToPath(new URL('../proxy/cli.js', import.meta.url))
  const configModule = new URL('../proxy/config.js', import.meta.url)
  const serverModule = new URL('../proxy/server.js', import.meta.url)
  const viaCli = existsSync(cli)
  if (!viaCli && !(existsSync(configModule) && existsSync(serverModule))) {
    return absent(name, `neither ${cli} nor dist/proxy/{config,server}.js exist (build the proxy: npm run build)`)
  }
  const port = await freePort()
  const config = join(context.workDir, `${name}.yaml`)
  let auditSection = ''
  if (audit) {
    const keyFile = join(context.workDir, 'audit.key')
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 })
    auditSection = `audit: {to: "${join(context.workDir, 'audit.log')}", chain_key: "file:${keyFile}"}\n`
  }
  await writeFile(config, `listen: {host: 127.0.0.1, port: ${port}}
upstream: {url: "postgres://postgres@127.0.0.1:${context.server.port}/postgres?sslmode=disable"}
admin: {host: 127.0.0.1, port: 0}
${auditSection}`)
  const logFile = join(context.workDir, `${name}.log`)
  const output = outputFile(context, name)
  const argv = viaCli
    ? [cli, 'start', '--config', config]
    : ['--input-type=module', '--eval', START_PROXY_PROGRAM, configModule.href, serverModule.href, config]
  const child = track(spawn(process.execPath, [...pgveilNodeArgs(), ...argv], { stdio: ['ignore', output, output] }))
  closeSync(output)
  try {
    await waitForPostgres(port, child, logFile)
  } catch (error) {
    await stopChild(child)
    return absent(name, `pgveil did not start: ${(error as Error).message}`)
  }
  const how = `${viaCli ? `${cli} start` : 'startProxy() from dist/proxy/server.js (dist/proxy/cli.js missing)'}${audit ? ', audit log to a file' : ''}`
  return { name, port, absent: null, detail: `node ${process.version}, ${how}`, ...(child.pid === undefined ? {} : { pid: child.pid }), stop: () => stopChild(child) }
}

const STARTERS: Record<TargetName, (context: TargetContext) => Promise<Target>> = {
  direct: startDirect,
  pipe: startPipe,
  haproxy: startHaproxy,
  pgbouncer: startPgbouncer,
  pgveil: (context) => startPgveil(context),
  'pgveil-audit': (context) => startPgveil(context, true),
}

// ---------------------------------------------------------------- pgbench

interface PgbenchResult {
  tps: number | null
  processed: number | null
  failed: number | null
  latencyAverageMs: number | null
  /** Set when pgbench exited non-zero. */
  error: string | null
}

let currentPgbench: ChildProcess | null = null

function pgbench(pgbenchPath: string, port: number, args: readonly string[]): Promise<PgbenchResult & { output: string }> {
  return new Promise((resolve) => {
    const child = track(spawn(pgbenchPath, ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', ...args, 'postgres'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PGSSLMODE: 'disable', LC_ALL: 'C' },
    }))
    currentPgbench = child
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    child.once('close', (code, signal) => {
      currentPgbench = null
      const number = (pattern: RegExp): number | null => {
        const match = pattern.exec(output)
        return match?.[1] === undefined ? null : Number(match[1])
      }
      const error = code === 0 ? null : `pgbench exited ${code ?? signal}: ${output.trim().split('\n').slice(-3).join(' | ')}`
      resolve({
        tps: number(/^tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/m),
        processed: number(/^number of transactions actually processed: (\d+)/m),
        failed: number(/^number of failed transactions: (\d+)/m),
        latencyAverageMs: number(/^latency average = ([\d.]+) ms/m),
        error,
        output,
      })
    })
  })
}

interface ThroughputRow {
  mode: Mode
  target: TargetName
  tps: number | null
  /** TPS of every round, in order. */
  rounds: (number | null)[]
  /** CPU time of the target's process per transaction (µs, all its threads), median and every round; null when not measured. */
  cpuMicros: number | null
  cpuRounds: number[]
  failed: number
  errors: string[]
}

interface LatencyRow {
  clients: number
  target: TargetName
  p50Ms: number | null
  p99Ms: number | null
  averageMs: number | null
  transactions: number
  late: number | null
  errors: string[]
}

/**
 * User + system CPU time of a process and all its threads (µs), from
 * /proc/PID/stat (Linux; null elsewhere or when it is gone). Clock ticks are
 * coarse (10 ms) but a run's seconds of CPU make that small.
 */
function processCpuMicros(pid: number | undefined): number | null {
  if (pid === undefined) return null
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return null
  }
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  return Number.isFinite(ticks) ? (ticks * 1e6) / CLOCK_TICKS_PER_SECOND : null
}

/** Per-transaction latencies (µs) from pgbench --log files: "client txn time script epoch us [lag]". */
function readLatencies(dir: string, prefix: string): number[] {
  const latencies: number[] = []
  for (const file of readdirSync(dir)) {
    if (!file.startsWith(`${prefix}.`)) continue
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      const time = Number(line.split(' ')[2])
      if (line !== '' && Number.isFinite(time)) latencies.push(time)
    }
  }
  return latencies.sort((a, b) => a - b)
}

// ---------------------------------------------------------------- report

function fixed(value: number | null, digits: number): string {
  return value === null ? '—' : value.toFixed(digits)
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells.map((cell, column) => (column < 2 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join('  ').trimEnd()
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n')
}

function throughputReport(rows: readonly ThroughputRow[], targets: readonly Target[]): string {
  const tpsOf = (mode: Mode, target: TargetName): number | null => rowOf(rows, mode, target)?.tps ?? null
  const ratio = (value: number | null, base: number | null): string => (value === null || base === null || base === 0 ? '—' : (value / base).toFixed(2))
  const present = new Set(targets.filter((target) => target.port !== null).map((target) => target.name))
  const baselines = (['direct', 'pipe', 'haproxy', 'pgbouncer'] as const).filter((name) => present.has(name))
  const withCpu = rows.some((row) => row.cpuMicros !== null)
  const header = ['mode', 'target', 'TPS', 'failed', ...(withCpu ? ['CPU µs/tx'] : []), ...baselines.map((name) => `x ${name === 'pipe' ? 'node-pipe' : name}`)]
  const body = rows.filter((row) => present.has(row.target)).map((row) => [
    row.mode,
    TARGET_LABELS[row.target],
    fixed(row.tps, 1),
    row.errors.length > 0 ? `${row.failed} (error)` : String(row.failed),
    ...(withCpu ? [row.cpuMicros === null ? '—' : fixed(row.cpuMicros, 1)] : []),
    ...baselines.map((name) => ratio(row.tps, tpsOf(row.mode, name))),
  ])
  return table(header, body)
}

function rowOf(rows: readonly ThroughputRow[], mode: Mode, target: TargetName): ThroughputRow | undefined {
  return rows.find((row) => row.mode === mode && row.target === target)
}

function budgetLine(rows: readonly ThroughputRow[], modes: readonly Mode[], targets: readonly Target[]): string {
  return ratioBudgetLine(rows, modes, targets, { label: `pgveil / node pipe >= ${PIPE_BUDGET}`, budget: PIPE_BUDGET, measured: 'pgveil', baseline: 'pipe', required: [['pgveil', 'pgveil'], ['pipe', 'node pipe']] })
}

function auditBudgetLine(rows: readonly ThroughputRow[], modes: readonly Mode[], targets: readonly Target[]): string {
  const line = ratioBudgetLine(rows, modes, targets, {
    label: `pgveil + audit / pgveil >= ${AUDIT_BUDGET}`,
    budget: AUDIT_BUDGET,
    measured: 'pgveil-audit',
    baseline: 'pgveil',
    required: [['pgveil', 'pgveil'], ['pgveil-audit', 'pgveil-audit']],
  })
  // The CPU the audit log adds per statement (a pgbench -S transaction is one): steadier from run to run than the TPS ratio.
  const added = modes.map((mode) => {
    const on = rowOf(rows, mode, 'pgveil-audit')?.cpuMicros
    const off = rowOf(rows, mode, 'pgveil')?.cpuMicros
    return on == null || off == null ? null : `${mode} ${fixed(on - off, 1)} µs`
  })
  return added.every((value) => value !== null) ? `${line}\n  audit log CPU per statement (pgveil + audit − pgveil): ${added.join(', ')}` : line
}

/**
 * One budget on TPS: `measured` / `baseline` per mode (a mode whose measured target
 * failed statements has no ratio). `required` are the targets that must have run, with
 * the names the report gives them when they did not.
 */
function ratioBudgetLine(
  rows: readonly ThroughputRow[],
  modes: readonly Mode[],
  targets: readonly Target[],
  budget: { label: string; budget: number; measured: TargetName; baseline: TargetName; required: readonly (readonly [TargetName, string])[] },
): string {
  const { label } = budget
  for (const [name, shown] of budget.required) {
    const target = targets.find((candidate) => candidate.name === name)
    if (target?.port == null) return `${label}: NOT MEASURED (${target?.absent ?? `${shown} not selected`})`
  }
  const ratios = modes.map((mode) => {
    const measured = rowOf(rows, mode, budget.measured)
    const base = rowOf(rows, mode, budget.baseline)
    const value = measured?.tps != null && base?.tps != null && base.tps > 0 && measured.failed === 0 && measured.errors.length === 0 ? measured.tps / base.tps : null
    return { mode, value }
  })
  const pass = ratios.every(({ value }) => value !== null && value >= budget.budget)
  return `${label}: ${pass ? 'PASS' : 'FAIL'} (${ratios.map(({ mode, value }) => `${mode} ${fixed(value, 3)}`).join(', ')})`
}

function latencyReport(rows: readonly LatencyRow[], rate: number, mode: Mode): string {
  const header = ['clients', 'target', 'p50 ms', 'p99 ms', 'avg ms', 'txns', 'late', 'p50 - haproxy', 'p99 - haproxy']
  const body = rows.map((row) => {
    const haproxy = rows.find((other) => other.clients === row.clients && other.target === 'haproxy')
    const delta = (value: number | null, base: number | null | undefined): string =>
      value === null || base == null ? '—' : `${value - base >= 0 ? '+' : ''}${(value - base).toFixed(3)}`
    return [
      String(row.clients),
      TARGET_LABELS[row.target] + (row.errors.length > 0 ? ' (error)' : ''),
      fixed(row.p50Ms, 3),
      fixed(row.p99Ms, 3),
      fixed(row.averageMs, 3),
      String(row.transactions),
      row.late === null ? '—' : String(row.late),
      delta(row.p50Ms, haproxy?.p50Ms),
      delta(row.p99Ms, haproxy?.p99Ms),
    ]
  })
  const lines = [`latency at -R ${rate} -M ${mode} (from pgbench --log, per transaction)`, table(header, body)]
  const verdicts: string[] = []
  let measured = true
  let pass = true
  for (const clients of [...new Set(rows.map((row) => row.clients))]) {
    const of = (name: TargetName): LatencyRow | undefined => rows.find((row) => row.clients === clients && row.target === name)
    const veil = of('pgveil')
    const haproxy = of('haproxy')
    if (veil?.p50Ms == null || veil.p99Ms == null || haproxy?.p50Ms == null || haproxy.p99Ms == null) {
      measured = false
      continue
    }
    const p50 = veil.p50Ms - haproxy.p50Ms
    const p99 = veil.p99Ms - haproxy.p99Ms
    pass &&= p50 <= P50_BUDGET_MS && p99 <= P99_BUDGET_MS && veil.errors.length === 0
    verdicts.push(`${clients} client${clients === 1 ? '' : 's'}: p50 ${p50 >= 0 ? '+' : ''}${p50.toFixed(3)}, p99 ${p99 >= 0 ? '+' : ''}${p99.toFixed(3)}`)
  }
  const label = `pgveil added latency vs haproxy (p50 <= ${P50_BUDGET_MS} ms, p99 <= ${P99_BUDGET_MS} ms)`
  lines.push(measured && verdicts.length > 0 ? `${label}: ${pass ? 'PASS' : 'FAIL'} (${verdicts.join('; ')})` : `${label}: NOT MEASURED (pgveil or haproxy absent)`)
  return lines.join('\n')
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2))
  const log = (line: string): void => void process.stderr.write(`${line}\n`)

  // Always a server of its own (never PGVEIL_TEST_DATABASE_URL): the targets rely on
  // trust authentication for "postgres", and figures need a known configuration.
  const server = await startPostgresServer({ logStatements: false, label: 'pgveil bench', externalUrl: '' })
  const workDir = await mkdtemp(join(tmpdir(), 'pgveil-bench-'))
  const targets: Target[] = []
  let interrupted = false
  const cleanup = async (): Promise<void> => {
    if (currentPgbench !== null) await stopChild(currentPgbench)
    await Promise.all(targets.map((target) => target.stop().catch(() => {})))
    await Promise.all([...children].map(stopChild))
    await server.stop()
    if (process.env.PGVEIL_BENCH_KEEP !== '1') await rm(workDir, { recursive: true, force: true })
  }
  let cleaning: Promise<void> | null = null
  const cleanupOnce = (): Promise<void> => (cleaning ??= cleanup())
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return
    interrupted = true
    log(`\n${signal}: stopping every process the bench started`)
    void cleanupOnce().finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    if (options.identityOnly) {
      const identity = await measureSetIdentity({ server, workDir, count: options.identityCount, log })
      process.stdout.write(`\n${setIdentityReport(identity)}\n`)
      if (options.json !== null) await writeFile(options.json, `${JSON.stringify({ date: new Date().toISOString(), cpus: availableParallelism(), node: process.version, identity }, null, 2)}\n`)
      return 0
    }
    const pgbenchPath = findProgram('pgbench', [server.binDir ?? ''])
    if (pgbenchPath === null) throw new Error('pgbench is not installed (it comes with the PostgreSQL client package)')

    if (options.throughput || options.latency) {
      log(`pgbench -i -s ${options.scale} ...`)
      const init = await pgbench(pgbenchPath, server.port, ['-i', '-q', '-s', String(options.scale)])
      if (init.error !== null) throw new Error(`pgbench -i failed: ${init.output}`)
    }

    const context: TargetContext = { server, workDir, options }
    for (const name of options.targets) {
      if (interrupted) return 130
      try {
        const target = await STARTERS[name](context)
        targets.push(target)
        log(target.port === null ? `${TARGET_LABELS[name]}: skipped — ${target.absent ?? ''}` : `${TARGET_LABELS[name]}: port ${target.port} (${target.detail})`)
      } catch (error) {
        targets.push(absent(name, (error as Error).message))
        log(`${TARGET_LABELS[name]}: could not start — ${(error as Error).message}`)
      }
    }
    const running = targets.filter((target): target is Target & { port: number } => target.port !== null)
    const common = ['-n', '-c', String(options.clients), '-j', String(Math.min(options.jobs, options.clients))]

    if (options.warmupSeconds > 0) {
      for (const target of running) {
        if (interrupted) return 130
        log(`warm-up ${TARGET_LABELS[target.name]} (${options.warmupSeconds} s)`)
        await pgbench(pgbenchPath, target.port, ['-S', ...common, '-T', String(options.warmupSeconds), '-M', 'prepared'])
      }
    }

    const throughput: ThroughputRow[] = []
    if (options.throughput) {
      for (const mode of options.modes) {
        for (const target of targets) {
          throughput.push({ mode, target: target.name, tps: null, rounds: [], cpuMicros: null, cpuRounds: [], failed: 0, errors: target.absent === null ? [] : [target.absent] })
        }
      }
      // Interleaved: every target once per mode per round, so drift hits all alike.
      for (let round = 1; round <= options.rounds; round++) {
        for (const mode of options.modes) {
          for (const target of running) {
            if (interrupted) return 130
            const cpuBefore = processCpuMicros(target.pid)
            const result = await pgbench(pgbenchPath, target.port, ['-S', ...common, '-T', String(options.seconds), '-M', mode])
            const cpuAfter = processCpuMicros(target.pid)
            const row = throughput.find((candidate) => candidate.mode === mode && candidate.target === target.name)
            if (row === undefined) continue
            row.rounds.push(result.tps)
            const cpu = cpuBefore !== null && cpuAfter !== null && result.processed !== null && result.processed > 0 ? (cpuAfter - cpuBefore) / result.processed : null
            if (cpu !== null) row.cpuRounds.push(cpu)
            row.failed += result.failed ?? 0
            if (result.error !== null) row.errors.push(result.error)
            log(`round ${round} ${mode.padEnd(8)} ${TARGET_LABELS[target.name].padEnd(20)} ${fixed(result.tps, 1).padStart(10)} tps` +
              `${cpu === null ? '' : `, ${fixed(cpu, 1)} µs CPU/tx`}` +
              `${result.failed ? `, ${result.failed} failed` : ''}${result.error === null ? '' : `  [${result.error}]`}`)
          }
        }
      }
      for (const row of throughput) {
        row.tps = median(row.rounds.filter((tps): tps is number => tps !== null))
        row.cpuMicros = median(row.cpuRounds)
      }
    }

    const latency: LatencyRow[] = []
    if (options.latency) {
      for (const clients of [1, 8]) {
        for (const target of running) {
          if (interrupted) return 130
          const prefix = `latency_${target.name}_${clients}`
          const result = await pgbench(pgbenchPath, target.port, [
            '-S', '-n', '-c', String(clients), '-j', String(Math.min(options.jobs, clients)), '-T', String(options.seconds),
            '-M', options.latencyMode, '-R', String(options.latencyRate), '-L', '50', '--log', `--log-prefix=${join(workDir, prefix)}`,
          ])
          const latencies = readLatencies(workDir, prefix)
          const ms = (us: number | null): number | null => (us === null ? null : us / 1000)
          const late = /^number of transactions above the [\d.]+ ms latency limit: (\d+)/m.exec(result.output)?.[1]
          const row: LatencyRow = {
            clients,
            target: target.name,
            p50Ms: ms(percentile(latencies, 0.5)),
            p99Ms: ms(percentile(latencies, 0.99)),
            averageMs: result.latencyAverageMs,
            transactions: latencies.length,
            late: late === undefined ? null : Number(late),
            errors: result.error === null ? [] : [result.error],
          }
          latency.push(row)
          log(`latency ${clients} client(s) ${TARGET_LABELS[target.name].padEnd(20)} p50 ${fixed(row.p50Ms, 3)} ms, p99 ${fixed(row.p99Ms, 3)} ms`)
        }
      }
    }

    let bulk: BulkReadResult | null = null
    if (options.bulk && !interrupted) {
      const psql = findProgram('psql', [server.binDir ?? ''])
      if (psql === null) log('bulk read: skipped — psql is not installed')
      else bulk = await measureBulkRead({ server, workDir, psql, rows: options.bulkRows, rounds: Math.max(3, options.rounds), log })
    }

    let identity: SetIdentityResult | null = null
    if (options.identity && !interrupted) identity = await measureSetIdentity({ server, workDir, count: options.identityCount, log })

    let encrypted: EncryptedWorkloadResult | null = null
    if (options.encryptedWorkload && !interrupted) {
      encrypted = await measureEncryptedWorkload({
        server,
        workDir,
        pgbench: (port, args) => pgbench(pgbenchPath, port, args),
        rows: options.encryptedWorkloadRows,
        workloads: options.encryptedWorkloads,
        rounds: options.rounds,
        seconds: options.seconds,
        clients: options.clients,
        jobs: options.jobs,
        log,
      })
    }

    const onlyEncrypted = !options.throughput && !options.latency
    const out: string[] = [
      '',
      `pgveil ${onlyEncrypted ? 'encrypted workload' : 'passthrough'} benchmark — ${availableParallelism()} CPUs, node ${process.version}, PostgreSQL ${server.version} (${server.kind})${onlyEncrypted ? '' : ','}`,
      onlyEncrypted
        ? ''
        : options.throughput
        ? `pgbench -S -c ${options.clients} -j ${Math.min(options.jobs, options.clients)} -T ${options.seconds} -n, scale ${options.scale}, ` +
          `${options.rounds} round${options.rounds === 1 ? '' : 's'}${options.rounds > 1 ? ' (median)' : ''}, interleaved`
        : `pgbench -S -T ${options.seconds} -n, scale ${options.scale}, latency runs only`,
      ...targets.map((target) => `  ${TARGET_LABELS[target.name].padEnd(20)} ${target.port === null ? `absent: ${target.absent ?? ''}` : target.detail}`),
      '',
    ]
    if (options.throughput) out.push(throughputReport(throughput, targets), '', budgetLine(throughput, options.modes, targets), auditBudgetLine(throughput, options.modes, targets), '')
    if (options.latency) out.push(latencyReport(latency, options.latencyRate, options.latencyMode), '')
    if (bulk !== null) out.push(bulkReadReport(bulk), '')
    if (encrypted !== null) out.push(encryptedWorkloadReport(encrypted), '')
    if (identity !== null) out.push(setIdentityReport(identity), '')
    process.stdout.write(out.join('\n'))

    if (options.json !== null) {
      await writeFile(options.json, `${JSON.stringify({
        date: new Date().toISOString(),
        cpus: availableParallelism(),
        node: process.version,
        postgres: { kind: server.kind, version: server.version },
        options,
        targets: targets.map(({ name, port, absent: reason, detail }) => ({ name, present: port !== null, absent: reason, detail })),
        throughput,
        latency,
        bulk,
        encryptedWorkload: encrypted,
        identity,
      }, null, 2)}\n`)
    }
    return 0
  } finally {
    await cleanupOnce()
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`pgveil bench: ${(error as Error).stack ?? String(error)}\n`)
    process.exit(1)
  },
)
