#!/usr/bin/env node
/**
 * The `pgveil` command: start, check, keygen, migrate, audit verify|tail (DESIGN "Interfaces").
 *
 * Exit status: 0 success; 1 a runtime failure (the upstream check failed, the
 * proxy could not start, an unexpected error); 2 a usage or configuration error.
 * stdout carries what the user asked for (the psql line, the key, the check
 * result); stderr the operational log (JSON lines), problems and hints.
 */
import { randomBytes } from 'node:crypto'
import { createReadStream, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { formatLine, matches, parseSince, type TailFilter } from '../audit/tail.js'
import { verifyAuditLog } from '../audit/verify.js'
import { ConfigError, decodeAuditChainKey, findPackageRoot, loadConfig, resolveSecretReference, withUpstreamUrl, type PgveilConfig } from './config.js'
import type { EmbeddedPostgres } from './embedded.js'
import { createLogger, type Logger } from './log.js'
import { loadDatabaseCatalog } from './catalog.js'
import { watchPolicy } from './policy-reload.js'
import { searchPathProblems } from './search-path-check.js'
import { dependentViewProblems, readableViewLines } from './view-check.js'
import { checkEncryptedData } from './encrypted-data-check.js'
import { connectAsPgveil, OwnConnectionError } from './own-connection.js'
import { MIGRATE_HELP, MIGRATE_OPTIONS, runMigrateCommand } from './migrate-command.js'
import type { ProxyServer } from './server.js'
import { describeUpstream, type UpstreamTarget } from './upstream-url.js'
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-status.js'

/** Ctrl-C drains for at most this long; SIGTERM uses listen.drain_timeout. */
const INTERRUPT_DRAIN_MS = 2000
const EMBEDDED_DIR = '.pgveil'

const PROGRAM_HELP = `pgveil: a PostgreSQL wire-protocol proxy

Usage:
  pgveil start [--config FILE]   run the proxy (with no upstream configured, in
                                 front of an embedded PostgreSQL under ${EMBEDDED_DIR}/)
  pgveil check [--config FILE]   validate the configuration and try the upstream
  pgveil keygen                  print a new random key (base64, 32 bytes)
  pgveil migrate [--dry-run]     encrypt existing plaintext, re-encrypt old key versions
  pgveil audit verify FILE...    check the audit log's chain (edits, deletions, reordering, truncation)
  pgveil audit tail [FILE]       filter and pretty-print audit lines
  pgveil help [COMMAND]          show help for a command

Options:
  -h, --help       show help (also after a command: pgveil start --help)
  -v, --version    print the version

The configuration is read from FILE, else $PGVEIL_CONFIG, else ./pgveil.yaml,
else config.example.yaml. Every setting can also come from the environment:
PGVEIL_ and the key path in upper case joined by __ (PGVEIL_LISTEN__PORT=7000,
PGVEIL_UPSTREAM__URL=...).
`

const CONFIG_OPTION_HELP = `  -c, --config FILE   configuration file (default: $PGVEIL_CONFIG, else
                      ./pgveil.yaml, else config.example.yaml)
  -h, --help          show this help`

const COMMAND_HELP = {
  start: `Usage: pgveil start [--config FILE]

Runs the proxy. With no upstream.url configured, it first starts an embedded
PostgreSQL under ./${EMBEDDED_DIR}/ (created on the first run, reused after) and
prints a psql line that works against it.

Options:
${CONFIG_OPTION_HELP}

Signals: SIGTERM stops accepting connections, lets sessions finish for up to
listen.drain_timeout seconds, then exits. Ctrl-C (SIGINT) does the same for at
most ${INTERRUPT_DRAIN_MS / 1000} s; a second Ctrl-C closes everything at once. SIGHUP reloads
the policy. SIGUSR1 closes the audit chain, reopens the audit file (after a log
rotator moved it) and starts a new chain.
`,
  check: `Usage: pgveil check [--config FILE]

Validates the configuration, printing every problem as FILE:LINE:COL: key: ...
When upstream.url is set, also connects to the upstream with the credentials in
the URL and reports the server version.

Exit status: 0 all is well; 1 the upstream check failed; 2 the configuration is
invalid.

Options:
${CONFIG_OPTION_HELP}
`,
  keygen: `Usage: pgveil keygen

Prints a new random 32-byte key, base64-encoded, on stdout (and on stderr how to
reference it from the configuration: keys are never written inline).

Options:
  -h, --help          show this help
`,
  migrate: MIGRATE_HELP,
  audit: `Usage: pgveil audit verify [--config FILE | --key REF] [--open] FILE...
       pgveil audit tail [FILE] [--sub SUB] [--table TABLE] [--since WHEN] [--json]

verify checks the MAC chain of one or more audit log files, in the order given
(oldest first, as a log rotator leaves them), and reports the first bad line:
edited, deleted, reordered or truncated. Exit status: 0 the log is intact; 1 a
bad line (printed as FILE:LINE: reason); 2 a usage or key error.
  -c, --config FILE   read audit.chain_key from this configuration (default as
                      for pgveil start)
  -k, --key REF       the chain key as env:NAME or file:PATH instead
      --open          the last chain may still be open (a log pgveil is writing)

tail prints audit lines from FILE (default: standard input) one per line for a
terminal, keeping those that match every filter given.
      --sub SUB       identity sub
      --table TABLE   a table the statement names (users means public.users)
      --since WHEN    an ISO time, or a duration back from now: 15m, 2h, 7d
      --json          print the matching lines as they are (JSON)
  -h, --help          show this help
`,
} as const
type Command = keyof typeof COMMAND_HELP

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const
const CONFIG_OPTIONS = { ...HELP_OPTION, config: { type: 'string', short: 'c' } } as const

function isCommand(name: string): name is Command {
  return Object.hasOwn(COMMAND_HELP, name)
}

class UsageError extends Error {
  constructor(
    message: string,
    readonly help: string,
  ) {
    super(message)
    this.name = 'UsageError'
  }
}

/** parseArgs, with its errors (unknown option, missing value) and stray arguments as usage errors. */
function parseOrUsage<T extends { positionals: string[] }>(help: string, run: () => T): T {
  let parsed: T
  try {
    parsed = run()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    const unknown = /^Unknown option '([^']+)'/.exec(message)
    throw new UsageError(unknown === null ? message : `unknown option "${unknown[1]}"`, help)
  }
  const extra = parsed.positionals[0]
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`, help)
  return parsed
}

async function main(argv: string[]): Promise<number | 'running'> {
  try {
    return await dispatch(argv)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    process.stderr.write(`pgveil: ${error.message}\n\n${error.help}`)
    return EXIT_USAGE
  }
}

async function dispatch(argv: string[]): Promise<number | 'running'> {
  const [first, ...rest] = argv
  if (first === undefined) throw new UsageError('missing command', PROGRAM_HELP)

  if (first.startsWith('-')) {
    const { values } = parseOrUsage(PROGRAM_HELP, () =>
      parseArgs({ args: argv, options: { ...HELP_OPTION, version: { type: 'boolean', short: 'v' } }, strict: true, allowPositionals: true }),
    )
    if (values.version === true) {
      process.stdout.write(`${readVersion()}\n`)
      return EXIT_OK
    }
    process.stdout.write(PROGRAM_HELP)
    return EXIT_OK
  }

  if (first === 'help') {
    const topic = rest[0]
    if (topic === undefined) process.stdout.write(PROGRAM_HELP)
    else if (isCommand(topic)) process.stdout.write(COMMAND_HELP[topic])
    else throw new UsageError(`unknown command "${topic}"`, PROGRAM_HELP)
    return EXIT_OK
  }
  if (!isCommand(first)) throw new UsageError(`unknown command "${first}"`, PROGRAM_HELP)

  const help = COMMAND_HELP[first]
  if (first === 'keygen') {
    const { values } = parseOrUsage(help, () => parseArgs({ args: rest, options: HELP_OPTION, strict: true, allowPositionals: true }))
    if (values.help === true) return printHelp(help)
    return keygen()
  }
  if (first === 'migrate') {
    const { values } = parseOrUsage(help, () => parseArgs({ args: rest, options: { ...CONFIG_OPTIONS, ...MIGRATE_OPTIONS }, strict: true, allowPositionals: true }))
    if (values.help === true) return printHelp(help)
    const config = await loadOrReport(values.config)
    return config === null ? EXIT_USAGE : runMigrateCommand(config, values)
  }
  if (first === 'audit') return audit(rest)
  const { values } = parseOrUsage(help, () => parseArgs({ args: rest, options: CONFIG_OPTIONS, strict: true, allowPositionals: true }))
  if (values.help === true) return printHelp(help)
  return first === 'start' ? start(values.config) : check(values.config)
}

function printHelp(text: string): number {
  process.stdout.write(text)
  return EXIT_OK
}

function readVersion(): string {
  // dist/proxy/cli.js → ../../package.json (proxy/cli.ts → ../package.json when run from source)
  const root = findPackageRoot()
  if (root === null) return 'unknown'
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version?: unknown }
  return typeof pkg.version === 'string' ? pkg.version : 'unknown'
}

/** The configuration, or null after printing its problems. */
async function loadOrReport(file: string | undefined): Promise<PgveilConfig | null> {
  try {
    return await loadConfig(file === undefined ? {} : { file })
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    process.stderr.write(`pgveil: ${error.message}\n`)
    return null
  }
}

// ---------------------------------------------------------------------------
// keygen

function keygen(): number {
  process.stdout.write(`${randomBytes(32).toString('base64')}\n`)
  process.stderr.write(
    '# keep it secret and reference it, never inline: export PGVEIL_KEY_1=... and in the configuration keys.versions: {1: "env:PGVEIL_KEY_1"} (or "file:/run/secrets/pgveil_key_1")\n',
  )
  return EXIT_OK
}

// ---------------------------------------------------------------------------
// audit verify | tail

const AUDIT_VERIFY_OPTIONS = { ...CONFIG_OPTIONS, key: { type: 'string', short: 'k' }, open: { type: 'boolean' } } as const
const AUDIT_TAIL_OPTIONS = { ...HELP_OPTION, sub: { type: 'string' }, table: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean' } } as const

async function audit(argv: string[]): Promise<number> {
  const help = COMMAND_HELP.audit
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '-h' || sub === '--help') {
    if (sub === undefined) throw new UsageError('missing subcommand (verify or tail)', help)
    return printHelp(help)
  }
  if (sub === 'verify') {
    const { values, positionals } = parseAllowingFiles(help, () => parseArgs({ args: rest, options: AUDIT_VERIFY_OPTIONS, strict: true, allowPositionals: true }))
    if (values.help === true) return printHelp(help)
    if (positionals.length === 0) throw new UsageError('audit verify needs at least one FILE', help)
    let key: Buffer
    try {
      if (values.key !== undefined) key = decodeAuditChainKey(resolveSecretReference(values.key, process.env))
      else {
        const config = await loadOrReport(values.config)
        if (config === null) return EXIT_USAGE
        if (config.audit === null) {
          process.stderr.write(`pgveil audit verify: ${config.source} has no audit: section (give the chain key with --key env:NAME or --key file:PATH)
`)
          return EXIT_USAGE
        }
        key = config.audit.chainKey
      }
    } catch (error) {
      process.stderr.write(`pgveil audit verify: --key: ${(error as Error).message}
`)
      return EXIT_USAGE
    }
    const files = []
    for (const name of positionals) {
      try {
        files.push({ name, text: readFileSync(name, 'utf8') })
      } catch (error) {
        process.stderr.write(`pgveil audit verify: cannot read ${name}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}
`)
        return EXIT_USAGE
      }
    }
    const result = verifyAuditLog(files, key, { allowOpen: values.open === true })
    key.fill(0)
    for (const warning of result.warnings) process.stderr.write(`warning: ${warning}
`)
    if (result.problem !== null) {
      const { file, line, reason } = result.problem
      process.stdout.write(`${file}${line > 0 ? `:${line}` : ''}: ${reason}
`)
      return EXIT_FAILURE
    }
    process.stdout.write(`ok: ${result.lines} lines in ${result.chains} chain${result.chains === 1 ? '' : 's'} verified
`)
    return EXIT_OK
  }
  if (sub === 'tail') {
    const { values, positionals } = parseAllowingFiles(help, () => parseArgs({ args: rest, options: AUDIT_TAIL_OPTIONS, strict: true, allowPositionals: true }))
    if (values.help === true) return printHelp(help)
    if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}" (audit tail reads one FILE, or standard input)`, help)
    const filter: { -readonly [K in keyof TailFilter]: TailFilter[K] } = {}
    if (values.sub !== undefined) filter.sub = values.sub
    if (values.table !== undefined) filter.table = values.table
    if (values.since !== undefined) {
      try {
        filter.since = parseSince(values.since)
      } catch (error) {
        throw new UsageError((error as Error).message, help)
      }
    }
    const file = positionals[0]
    const input = file === undefined || file === '-' ? process.stdin : createReadStream(file)
    let failed: string | null = null
    input.on('error', (error: NodeJS.ErrnoException) => {
      failed = error.code ?? error.message
    })
    for await (const text of createInterface({ input, crlfDelay: Infinity })) {
      if (text === '') continue
      let line: Record<string, unknown>
      try {
        line = JSON.parse(text) as Record<string, unknown>
      } catch {
        process.stderr.write(`skipped a line that is not JSON
`)
        continue
      }
      if (!matches(line, filter)) continue
      process.stdout.write(`${values.json === true ? text : formatLine(line)}
`)
    }
    if (failed !== null) {
      process.stderr.write(`pgveil audit tail: cannot read ${file}: ${failed}
`)
      return EXIT_USAGE
    }
    return EXIT_OK
  }
  throw new UsageError(`unknown audit subcommand "${sub}" (expected verify or tail)`, help)
}

/** parseArgs with its errors as usage errors; positionals are the files. */
function parseAllowingFiles<T>(help: string, run: () => T): T {
  try {
    return run()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    const unknown = /^Unknown option '([^']+)'/.exec(message)
    throw new UsageError(unknown === null ? message : `unknown option "${unknown[1]}"`, help)
  }
}

// ---------------------------------------------------------------------------
// check

async function check(file: string | undefined): Promise<number> {
  const config = await loadOrReport(file)
  if (config === null) return EXIT_USAGE
  process.stdout.write(`configuration ${config.source}: valid\n`)
  for (const warning of config.warnings ?? []) process.stderr.write(`warning: ${warning}\n`)

  const target = config.upstream.target
  if (target === null) {
    process.stdout.write(`upstream: none configured (pgveil start runs an embedded PostgreSQL under ${EMBEDDED_DIR}/)\n`)
    return EXIT_OK
  }
  const result = await checkUpstream(target, config)
  ;(result.ok ? process.stdout : process.stderr).write(`upstream ${describeUpstream(target)}: ${result.text}\n`)
  for (const line of result.columns) process.stdout.write(`${line}\n`)
  for (const line of result.problems) process.stderr.write(`${line}\n`)
  return result.ok && result.problems.length === 0 ? EXIT_OK : EXIT_FAILURE
}

interface UpstreamCheck {
  ok: boolean
  text: string
  /** One line per protected column that is ready. */
  columns: string[]
  /** One line per protected column that is missing or not bytea, with its fix. */
  problems: string[]
}

/**
 * Connects with pgveil's own credentials from the URL, asks for the version and,
 * when columns are protected, checks each exists and is bytea.
 */
async function checkUpstream(target: UpstreamTarget, config: PgveilConfig): Promise<UpstreamCheck> {
  let connection
  try {
    connection = await connectAsPgveil(target, { timeoutMs: config.upstream.connectTimeoutMs, applicationName: 'pgveil check' })
  } catch (error) {
    return { ok: false, text: error instanceof OwnConnectionError ? error.message : `cannot check: ${(error as Error).message}`, columns: [], problems: [] }
  }
  const { client, tls } = connection
  try {
    const version = await client.query<{ server_version: string }>('SHOW server_version')
    const user = await client.query<{ current_user: string }>('SELECT current_user')
    const versionText = (version.rows[0]?.server_version ?? 'unknown').split(' ')[0] ?? 'unknown'
    const text = `reachable, PostgreSQL ${versionText}, connected as ${user.rows[0]?.current_user ?? '?'}${tls ? ', over TLS' : ''}`
    if (config.policy.isEmpty) return { ok: true, text, columns: [], problems: [] }
    const catalog = await loadDatabaseCatalog(client, config.policy)
    const broken = new Set(catalog.problems.map((p) => p.column.qualified))
    const data = config.keyring === null ? { lines: [], problems: [] } : await checkEncryptedData(client, config.policy, config.keyring, broken)
    const searchPath = await searchPathProblems(client, config.policy)
    const views = dependentViewProblems(catalog.viewList)
    return {
      ok: true,
      text,
      columns: [...config.policy.columns.filter((c) => !broken.has(c.qualified)).map((c) => `column ${c.qualified}: ok (bytea, holds ${c.type}${c.search === undefined ? '' : `, searchable: ${c.search}`})`), ...data.lines, ...readableViewLines(catalog.viewList)],
      problems: [...catalog.problems.map((p) => `column ${p.column.qualified}: ${p.message}\n  fix: ${p.fix}`), ...data.problems, ...searchPath, ...views],
    }
  } catch (error) {
    return { ok: false, text: `connected, but a query failed: ${(error as Error).message}`, columns: [], problems: [] }
  } finally {
    await client.end().catch(() => {})
  }
}

// ---------------------------------------------------------------------------
// start

async function start(file: string | undefined): Promise<number | 'running'> {
  const logger = createLogger()
  let config = await loadOrReport(file)
  if (config === null) return EXIT_USAGE
  logger.info('configuration loaded', { source: config.source })
  for (const warning of config.warnings ?? []) logger.warn(warning)

  let embedded: EmbeddedPostgres | null = null
  let server: ProxyServer
  try {
    if (config.upstream.url === null) {
      logger.info(`no upstream configured: starting the embedded PostgreSQL under ${EMBEDDED_DIR}/`)
      const { startEmbeddedPostgres } = await import('./embedded.js')
      embedded = await startEmbeddedPostgres({ dir: path.resolve(EMBEDDED_DIR), logger })
      config = withUpstreamUrl(config, embedded.url)
    }
    const { startProxy } = await import('./server.js')
    server = await startProxy(config, { logger })
    if (config.admin !== null && config.upstream.target !== null) {
      const { startAdmin } = await import('./admin.js')
      const running = server
      await startAdmin(config.admin, server.metrics, { policyReady: () => running.policyReady, target: config.upstream.target, connectTimeoutMs: config.upstream.connectTimeoutMs }, logger)
    }
  } catch (error) {
    logger.error('pgveil could not start', { error: error instanceof Error ? error.message : String(error) })
    await embedded?.stop().catch(() => {})
    return EXIT_FAILURE
  }

  // Signals first: whoever waits for the greeting may send SIGHUP or SIGUSR1 at once, and
  // before its handler is installed a SIGHUP would end the process (its default action).
  handleSignals(server, config, embedded, logger)
  printHowToConnect(server, config, embedded)
  return 'running'
}

function printHowToConnect(server: ProxyServer, config: PgveilConfig, embedded: EmbeddedPostgres | null): void {
  const target = config.upstream.target
  const upstream = target === null ? '?' : describeUpstream(target)
  const bracket = (host: string): string => (host.includes(':') ? `[${host}]` : host)
  // A wildcard address is not something to connect to: suggest loopback.
  const hostInUrl = bracket(server.host === '0.0.0.0' ? '127.0.0.1' : server.host === '::' ? '::1' : server.host)
  const where = embedded === null ? '' : ` (embedded PostgreSQL, data in ${path.relative(process.cwd(), embedded.dataDir) || embedded.dataDir})`
  const lines = [`pgveil listening on ${bracket(server.host)}:${server.port} → upstream ${upstream}${where}`]
  if (embedded !== null && target !== null) {
    // The user's own local development database: its credentials are what they need to try it.
    const password = target.password === null ? '' : `:${encodeURIComponent(target.password)}`
    lines.push(`try: psql "postgres://${encodeURIComponent(target.user ?? 'postgres')}${password}@${hostInUrl}:${server.port}/${encodeURIComponent(target.database ?? 'postgres')}"`)
  } else {
    lines.push(`try: psql "postgres://USER@${hostInUrl}:${server.port}/${target?.database == null ? 'DATABASE' : encodeURIComponent(target.database)}"`)
  }
  // stdout carries the audit log when audit.to is stdout: keep it to audit lines only.
  ;(config.audit?.to === 'stdout' ? process.stderr : process.stdout).write(lines.join('\n') + '\n')
}

function handleSignals(server: ProxyServer, config: PgveilConfig, embedded: EmbeddedPostgres | null, logger: Logger): void {
  let phase: 'running' | 'draining' | 'exiting' = 'running'

  const exit = async (code: number): Promise<never> => {
    try {
      await embedded?.stop()
    } catch (error) {
      logger.error('stopping the embedded PostgreSQL failed', { error: (error as Error).message })
    }
    process.exit(code)
  }
  const drain = (signal: string, drainTimeoutMs: number): void => {
    phase = 'draining'
    logger.info(`${signal}: draining sessions (send it again to close them now)`, { drainTimeoutMs })
    server.shutdown(drainTimeoutMs).then(
      () => {
        if (phase === 'draining') {
          phase = 'exiting'
          void exit(EXIT_OK)
        }
      },
      (error: unknown) => {
        logger.error('shutdown failed', { error: (error as Error).message })
        phase = 'exiting'
        void exit(EXIT_FAILURE)
      },
    )
  }
  const closeNow = (signal: string, code: number): void => {
    phase = 'exiting'
    logger.info(`${signal} again: closing every session now`)
    server.close().then(
      () => exit(code),
      () => exit(EXIT_FAILURE),
    )
  }

  process.on('SIGTERM', () => {
    if (phase === 'running') drain('SIGTERM', config.listen.drainTimeoutMs)
    else if (phase === 'draining') closeNow('SIGTERM', EXIT_OK)
  })
  process.on('SIGINT', () => {
    if (phase === 'running') drain('SIGINT', Math.min(config.listen.drainTimeoutMs, INTERRUPT_DRAIN_MS))
    else if (phase === 'draining') closeNow('SIGINT', 130)
  })
  const reloader = watchPolicy(server, config, logger)
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'))
  // Only with an audit log: otherwise SIGUSR1 keeps Node's meaning (start the inspector).
  if (server.audit !== null) process.on('SIGUSR1', () => server.rotateAudit())
}

// ---------------------------------------------------------------------------

function fatal(error: unknown): void {
  createLogger().error('unexpected error', { error: error instanceof Error ? (error.stack ?? error.message) : String(error) })
  // The embedded PostgreSQL, if any, is stopped by its 'exit' listener.
  process.exit(EXIT_FAILURE)
}

process.on('uncaughtException', fatal)
process.on('unhandledRejection', fatal)
main(process.argv.slice(2)).then((result) => {
  if (result !== 'running') process.exitCode = result
}, fatal)
