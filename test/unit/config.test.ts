import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { Policy } from '../../policy/policy.js'
import { ConfigError, loadConfig, parseConfig, resolveSecretReference, withUpstreamUrl, type PgveilConfig } from '../../proxy/config.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const scratch = mkdtempSync(path.join(tmpdir(), 'pgveil-config-test-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

let dirCount = 0
function tempDir(): string {
  const dir = path.join(scratch, `d${++dirCount}`)
  mkdirSync(dir)
  return dir
}

/** The problems of a text that must fail, one per line. */
function problems(text: string, env: NodeJS.ProcessEnv = {}, options: { source?: string; cwd?: string } = {}): string[] {
  try {
    parseConfig(text, options.source ?? 'x.yaml', env, options.cwd === undefined ? {} : { cwd: options.cwd })
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    const configError = error as ConfigError
    expect(configError.code).toBe('CONFIG_INVALID')
    for (const problem of configError.problems) expect(configError.message).toContain(problem)
    return [...configError.problems]
  }
  throw new Error('expected a ConfigError')
}

function parse(text: string, env: NodeJS.ProcessEnv = {}, cwd?: string): PgveilConfig {
  return parseConfig(text, 'x.yaml', env, cwd === undefined ? {} : { cwd })
}

describe('defaults', () => {
  it('gives every documented default for an empty configuration', () => {
    const config = parseConfig('', 'defaults', {})
    expect(config).toEqual({
      source: 'defaults',
      listen: { host: '127.0.0.1', port: 6432, tls: null, maxConnections: 100, maxMessageSize: 67108864, drainTimeoutMs: 30000 },
      upstream: { url: null, target: null, connectTimeoutMs: 5000 },
      mode: 'session',
      admin: null,
      policy: new Policy([]),
      keyring: null,
      audit: null,
    })
  })

  it('treats a file of comments as empty and makes source absolute', () => {
    const cwd = tempDir()
    const config = parseConfig('# nothing here\n', 'conf/pgveil.yaml', {}, { cwd })
    expect(config.source).toBe(path.join(cwd, 'conf/pgveil.yaml'))
    expect(config.listen.port).toBe(6432)
  })

  it('accepts config.example.yaml as shipped: 127.0.0.1:6432, embedded upstream, no warnings', () => {
    const text = readFileSync(path.join(ROOT, 'config.example.yaml'), 'utf8')
    const config = parseConfig(text, 'config.example.yaml', {}, { cwd: ROOT })
    expect(config.listen).toMatchObject({ host: '127.0.0.1', port: 6432, tls: null })
    expect(config.upstream.url).toBeNull()
    expect(config.mode).toBe('session')
    expect(config.warnings).toBeUndefined()
  })

  it('reads every setting from the file', () => {
    const config = parse(
      [
        'listen:',
        '  host: 0.0.0.0',
        '  port: 7000',
        '  max_connections: 5',
        '  max_message_size: 2048',
        '  drain_timeout: 1.5',
        'upstream:',
        '  url: postgres://app@db.internal:5433/app?sslmode=require',
        '  connect_timeout: 2',
        'mode: session',
        'admin: { port: 9999 }',
      ].join('\n'),
    )
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 7000, tls: null, maxConnections: 5, maxMessageSize: 2048, drainTimeoutMs: 1500 })
    expect(config.upstream.url).toBe('postgres://app@db.internal:5433/app?sslmode=require')
    expect(config.upstream.target).toMatchObject({ host: 'db.internal', port: 5433, user: 'app', database: 'app', sslmode: 'require' })
    expect(config.upstream.connectTimeoutMs).toBe(2000)
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9999 })
  })

  it('lets connect_timeout in the URL win over upstream.connect_timeout', () => {
    expect(parse('upstream: { url: "postgres://h/db?connect_timeout=3", connect_timeout: 9 }').upstream.connectTimeoutMs).toBe(3000)
    expect(parse('upstream: { url: "postgres://h/db", connect_timeout: 9 }').upstream.connectTimeoutMs).toBe(9000)
  })

  it('allows port 0 (any free port) for listen', () => {
    expect(parse('listen: { port: 0 }').listen.port).toBe(0)
  })
})

describe('YAML syntax errors', () => {
  it('report the file, line and column', () => {
    expect(problems('listen:\n  port: 6432\n  host: a: b\n')).toEqual([expect.stringMatching(/^x\.yaml:3:9: YAML syntax error: /)])
    expect(problems('listen:\n  port: 6432\n\thost: x\n')).toEqual([expect.stringMatching(/^x\.yaml:3:1: YAML syntax error: .*[Tt]ab/)])
  })

  it('report a duplicate key where the duplicate is', () => {
    expect(problems('listen:\n  port: 1\n  port: 2\n')).toEqual([expect.stringMatching(/^x\.yaml:3:3: YAML syntax error: .*unique/)])
  })
})

describe('unknown keys', () => {
  it('are errors naming the key path at its position, with a suggestion', () => {
    const found = problems('lisen:\n  port: 1\n')
    expect(found).toEqual([expect.stringMatching(/^x\.yaml:1:1: lisen: unknown key \(expected one of: listen, upstream, .*did you mean "listen"\?\)$/)])
  })

  it('are found in nested sections', () => {
    const found = problems('listen:\n  host: 127.0.0.1\n  prot: 6432\n  tls:\n    crt: a.pem\n')
    expect(found).toContainEqual(expect.stringMatching(/^x\.yaml:3:3: listen\.prot: unknown key .*did you mean "port"/))
    expect(found).toContainEqual(expect.stringMatching(/^x\.yaml:5:5: listen\.tls\.crt: unknown key .*did you mean "cert"/))
  })
})

describe('wrong types and ranges', () => {
  it('name the expected type', () => {
    const found = problems(
      [
        'listen:', // 1
        '  port: "6432"', // 2: quoted, so a string
        '  host: 5', // 3
        '  max_connections: 0', // 4
        '  max_message_size: 100', // 5
        '  drain_timeout: 0', // 6
        'upstream:', // 7
        '  connect_timeout: soon', // 8
        'admin:', // 9
        '  port: 70000', // 10
      ].join('\n'),
    )
    expect(found).toEqual([
      'x.yaml:2:9: listen.port: the string "6432" is not an integer (expected an integer from 1 to 65535, or 0 for any free port)',
      'x.yaml:3:9: listen.host: 5 is not a string (expected a host name or IP address to listen on, such as 127.0.0.1 or 0.0.0.0)',
      'x.yaml:4:20: listen.max_connections: 0 is out of range (expected an integer from 1 to 1000000)',
      'x.yaml:5:21: listen.max_message_size: 100 is out of range (expected a number of bytes from 1024 to 1073741823)',
      'x.yaml:6:18: listen.drain_timeout: 0 is out of range (expected a number of seconds greater than 0, such as 5 or 0.5, at most 2147483)',
      'x.yaml:8:20: upstream.connect_timeout: the string "soon" is not a number (expected a number of seconds greater than 0, such as 5 or 0.5)',
      'x.yaml:10:9: admin.port: 70000 is out of range (expected an integer from 1 to 65535, or 0 for any free port)',
    ])
  })

  it('reject a non-integer port and a non-boolean flag', () => {
    const dir = tempDir()
    writeFileSync(path.join(dir, 'c.pem'), 'x')
    const found = problems('listen:\n  port: 6432.5\n  tls: { cert: c.pem, key: c.pem, require: yes }\n', {}, { source: path.join(dir, 'x.yaml') })
    expect(found).toEqual([
      expect.stringMatching(/:2:9: listen\.port: 6432\.5 is not an integer \(expected an integer/),
      expect.stringMatching(/:3:44: listen\.tls\.require: the string "yes" is not a boolean \(expected true or false\)$/),
    ])
  })

  it('reject a section that is not a mapping, and a document that is not one', () => {
    expect(problems('listen: 5\n')).toEqual([expect.stringMatching(/^x\.yaml:1:9: listen: 5 is not a mapping \(expected keys host, port/)])
    expect(problems('- listen\n')).toEqual([expect.stringMatching(/^x\.yaml:1:1: \(document\): a list is not a mapping/)])
  })
})

describe('listen.tls', () => {
  it('resolves cert and key relative to the file and checks they are readable', () => {
    const dir = tempDir()
    mkdirSync(path.join(dir, 'certs'))
    writeFileSync(path.join(dir, 'certs', 'server.crt'), 'cert')
    writeFileSync(path.join(dir, 'certs', 'server.key'), 'key')
    const config = parseConfig('listen:\n  tls: { cert: certs/server.crt, key: certs/server.key }\n', path.join(dir, 'pgveil.yaml'), {})
    expect(config.listen.tls).toEqual({ cert: path.join(dir, 'certs', 'server.crt'), key: path.join(dir, 'certs', 'server.key'), require: false })
  })

  it('reports a missing file and a missing key', () => {
    const dir = tempDir()
    const found = problems('listen:\n  tls:\n    cert: nope.crt\n', {}, { source: path.join(dir, 'x.yaml') })
    expect(found).toEqual([
      `${path.join(dir, 'x.yaml')}:3:5: listen.tls.key: missing (expected a path to a readable PEM private key file)`,
      `${path.join(dir, 'x.yaml')}:3:11: listen.tls.cert: cannot read ${path.join(dir, 'nope.crt')}: no such file (expected a path to a readable PEM certificate file)`,
    ])
  })
})

describe('environment overrides', () => {
  it('parse numbers and booleans, reach nested keys, and win over the file', () => {
    const dir = tempDir()
    writeFileSync(path.join(dir, 'a.crt'), 'cert')
    writeFileSync(path.join(dir, 'a.key'), 'key')
    const config = parse('listen:\n  port: 1111\n  host: 127.0.0.1\n', {
      PGVEIL_LISTEN__PORT: '6543',
      PGVEIL_LISTEN__DRAIN_TIMEOUT: '0.25',
      PGVEIL_LISTEN__TLS__CERT: 'a.crt',
      PGVEIL_LISTEN__TLS__KEY: path.join(dir, 'a.key'),
      PGVEIL_LISTEN__TLS__REQUIRE: 'true',
      PGVEIL_ADMIN__PORT: '9931',
    }, dir)
    expect(config.listen.port).toBe(6543)
    expect(config.listen.host).toBe('127.0.0.1')
    expect(config.listen.drainTimeoutMs).toBe(250)
    // A relative path from the environment is taken from the working directory.
    expect(config.listen.tls).toEqual({ cert: path.join(dir, 'a.crt'), key: path.join(dir, 'a.key'), require: true })
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9931 })
  })

  it('set the upstream URL, taking it verbatim', () => {
    const url = 'postgres://pgveil:pa%23ss@db:5432/app?sslmode=disable'
    const config = parse('upstream:\n  url: postgres://other/db\n', { PGVEIL_UPSTREAM__URL: url })
    expect(config.upstream.url).toBe(url)
    expect(config.upstream.target).toMatchObject({ host: 'db', user: 'pgveil', password: 'pa#ss', database: 'app', sslmode: 'disable' })
  })

  it('take plain strings verbatim, where YAML would have cut a comment', () => {
    expect(parse('admin: {}', { PGVEIL_ADMIN__HOST: 'my-host #1' }).admin?.host).toBe('my-host #1')
  })

  it('turn an empty value into null (the embedded PostgreSQL)', () => {
    expect(parse('upstream:\n  url: postgres://other/db\n', { PGVEIL_UPSTREAM__URL: '' }).upstream.url).toBeNull()
  })

  it('report a bad value with the variable name', () => {
    expect(problems('', { PGVEIL_LISTEN__PORT: 'abc' })).toEqual([
      'PGVEIL_LISTEN__PORT: listen.port: the string "abc" is not an integer (expected an integer from 1 to 65535, or 0 for any free port)',
    ])
    expect(problems('', { PGVEIL_LISTEN__PORT: '"6432"' })[0]).toMatch(/^PGVEIL_LISTEN__PORT: listen\.port: the string "6432" is not an integer/)
  })

  it('refuse unknown paths into the schema and one-underscore typos', () => {
    expect(problems('', { PGVEIL_LISTEN__PROT: '1', PGVEIL_UPSTREAM_URL: 'postgres://h/db' })).toEqual([
      expect.stringMatching(/^PGVEIL_LISTEN__PROT: listen\.prot: unknown key .*did you mean "port"/),
      'PGVEIL_UPSTREAM_URL: upstream.url: not a setting name (expected PGVEIL_UPSTREAM__URL: path segments are joined by two underscores)',
    ])
  })

  it('ignore PGVEIL_CONFIG, PGVEIL_TEST_*, PGVEIL_BENCH_* and secret holders', () => {
    const config = parse('', {
      PGVEIL_CONFIG: 'elsewhere.yaml',
      PGVEIL_TEST_DATABASE_URL: 'postgres://x/y',
      PGVEIL_BENCH_CLIENTS: '8',
      PGVEIL_KEY_1: 'c2VjcmV0',
      PGVEIL_AUDIT_KEY: 'k',
      PGVEIL_DATABASE_URL: 'postgres://x/y',
    })
    expect(config.listen.port).toBe(6432)
    expect(config.upstream.url).toBeNull()
  })
})

describe('secret references', () => {
  it('resolve env: and file: (trailing newline trimmed)', () => {
    const dir = tempDir()
    writeFileSync(path.join(dir, 'secret'), 'hunter2\n')
    expect(resolveSecretReference('env:MY_SECRET', { MY_SECRET: 'v1' })).toBe('v1')
    expect(resolveSecretReference(`file:${path.join(dir, 'secret')}`, {})).toBe('hunter2')
    expect(resolveSecretReference('file:secret', {}, { baseDir: dir })).toBe('hunter2')
  })

  it('name a missing variable or file, and refuse a non-reference', () => {
    expect(() => resolveSecretReference('env:NOT_SET_ANYWHERE', {})).toThrow(/environment variable NOT_SET_ANYWHERE is not set/)
    expect(() => resolveSecretReference('file:/nonexistent/pgveil-secret', {})).toThrow(/cannot read secret file \/nonexistent\/pgveil-secret: no such file/)
    expect(() => resolveSecretReference('hunter2', {})).toThrow(/not a secret reference \(expected env:NAME or file:PATH\)/)
  })

  it('resolve upstream.url from env: and file: (relative to the configuration file)', () => {
    const dir = tempDir()
    writeFileSync(path.join(dir, 'db-url'), 'postgres://app:pw@fromfile:5432/app\n')
    expect(parse('upstream: { url: "env:DB_URL" }', { DB_URL: 'postgres://app:pw@fromenv/app' }).upstream.target?.host).toBe('fromenv')
    const config = parseConfig('upstream: { url: "file:db-url" }', path.join(dir, 'pgveil.yaml'), {})
    expect(config.upstream.url).toBe('postgres://app:pw@fromfile:5432/app')
    expect(config.upstream.target?.password).toBe('pw')
  })

  it('report an unresolvable reference at the key, naming the variable or file', () => {
    expect(problems('upstream:\n  url: env:PGVEIL_MISSING_URL\n')).toEqual([
      'x.yaml:2:8: upstream.url: environment variable PGVEIL_MISSING_URL is not set (expected it to hold the secret)',
    ])
    expect(problems('upstream:\n  url: file:/nonexistent/db-url\n')).toEqual([
      'x.yaml:2:8: upstream.url: cannot read secret file /nonexistent/db-url: no such file (expected a readable file holding the secret)',
    ])
  })
})

describe('upstream.url validation', () => {
  const password = 'hunter2-s3cret'
  it.each([
    ['an unsupported parameter', `postgres://app:${password}@db/app?sslmod=require`, /has unsupported parameter "sslmod"/],
    ['a wrong scheme', `mysql://app:${password}@db/app`, /has scheme "mysql"/],
    ['a bad sslmode', `postgres://app:${password}@db/app?sslmode=always`, /has sslmode "always"/],
    ['a bad port', `postgres://app:${password}@db/app?port=http`, /has invalid port "http"/],
    ['an unparseable URL', `postgres://app:${password}@db:99999/app`, /is not a valid URL/],
  ])('reports %s without the password', (_name, url, expected) => {
    const found = problems(`upstream:\n  url: "${url}"\n`)
    expect(found).toEqual([expect.stringMatching(/^x\.yaml:2:8: upstream\.url: the URL /)])
    expect(found[0]).toMatch(expected)
    expect(found.join('\n')).not.toContain(password)
  })

  it('does not show the value of a URL from the environment or of a wrong type', () => {
    const fromEnv = problems('', { PGVEIL_UPSTREAM__URL: `postgres://app:${password}@db/app?bogus=1` })
    expect(fromEnv).toEqual([expect.stringMatching(/^PGVEIL_UPSTREAM__URL: upstream\.url: the URL has unsupported parameter "bogus"/)])
    const fromRef = problems('upstream: { url: "env:DB_URL" }', { DB_URL: `postgresql://app:${password}@db/app?sslmode=nope` })
    expect(fromRef).toEqual([expect.stringMatching(/upstream\.url: the URL from env:DB_URL has sslmode "nope"/)])
    const wrongType = problems(`upstream:\n  url: [${password}]\n`)
    expect(wrongType).toEqual([expect.stringMatching(/upstream\.url: a list is not a URL/)])
    expect([...fromEnv, ...fromRef, ...wrongType].join('\n')).not.toContain(password)
  })

  it('accepts an inline URL with a password, with a warning that does not show it', () => {
    const config = parse(`upstream: { url: "postgres://app:${password}@db/app" }`)
    expect(config.upstream.target?.password).toBe(password)
    expect(config.warnings).toEqual(['x.yaml:1:18: upstream.url: holds a password inline (expected secrets as references: url: "env:NAME" or "file:PATH")'])
    expect(parse('', { PGVEIL_UPSTREAM__URL: `postgres://app:${password}@db/app` }).warnings).toBeUndefined()
    expect(parse('upstream: { url: "postgres://app@db/app" }').warnings).toBeUndefined()
  })
})

describe('sections of later versions fail closed', () => {
  const KEY_ENV = { PGVEIL_KEY_1: Buffer.alloc(32, 7).toString('base64'), PGVEIL_KEY_2: Buffer.alloc(32, 9).toString('base64') }
  const KEYS = 'keys:\n  current: 2\n  versions: { 1: "env:PGVEIL_KEY_1", 2: "env:PGVEIL_KEY_2" }\n'

  it('reads protected columns: unqualified tables are public, types by any accepted spelling', () => {
    const config = parse(
      `${KEYS}tables:\n  users:\n    email: { type: text, domain: email }\n    age: { type: int4 }\n  billing.accounts:\n    opened: { type: Timestamp With Time Zone }\n    contact: { type: text, domain: email }\n`,
      KEY_ENV,
    )
    expect(config.policy.columns).toEqual([
      { schema: 'public', table: 'users', column: 'email', qualified: 'public.users.email', type: 'text', binding: 'domain:email', domain: 'email' },
      { schema: 'public', table: 'users', column: 'age', qualified: 'public.users.age', type: 'integer', binding: 'public.users.age' },
      { schema: 'billing', table: 'accounts', column: 'opened', qualified: 'billing.accounts.opened', type: 'timestamptz', binding: 'billing.accounts.opened' },
      { schema: 'billing', table: 'accounts', column: 'contact', qualified: 'billing.accounts.contact', type: 'text', binding: 'domain:email', domain: 'email' },
    ])
    expect(config.policy.table('public', 'users')?.get('email')?.type).toBe('text')
    expect(config.keyring?.current).toBe(2)
    expect(JSON.stringify(config)).not.toContain(KEY_ENV.PGVEIL_KEY_1)
  })

  it('names the key, line and column of every bad column policy', () => {
    const text = `${KEYS}tables:\n  users:\n    email: { type: varchar }\n    ssn: { typ: text }\n    name: text\n  public.users:\n    x: { type: text }\n  a.b.c:\n    y: { type: text }\n  t:\n    a: { type: text, domain: d }\n    b: { type: integer, domain: d }\n`
    expect(problems(text, KEY_ENV)).toEqual([
      'x.yaml:6:20: tables.users.email.type: the string "varchar" is not a supported type (expected one of text, smallint, integer, bigint, numeric, date, timestamptz, boolean, uuid, jsonb)',
      expect.stringMatching(/^x\.yaml:7:10: tables\.users\.ssn\.type: missing/),
      'x.yaml:7:12: tables.users.ssn.typ: unknown key (expected one of: type, domain, search, normalize, unique, index_domain; did you mean "type"?)',
      expect.stringMatching(/^x\.yaml:8:11: tables\.users\.name: the string "text" is not a mapping/),
      'x.yaml:9:3: tables.public.users: names the same table as tables.users (public.users); list its columns once',
      'x.yaml:11:3: tables.a.b.c: is not a table name (expected table or schema.table)',
      'x.yaml:15:33: tables.t.b.domain: key domain "d" already holds text values (public.t.a); columns of one domain must share a type',
    ])
  })

  it('requires keys as soon as a column is protected, as references that resolve', () => {
    expect(problems('tables:\n  users:\n    email: { type: text }\n')).toEqual([expect.stringMatching(/^x\.yaml:1:1: keys: missing: protected columns need root keys/)])
    const inline = problems(`keys:\n  current: 1\n  versions: { 1: "${KEY_ENV.PGVEIL_KEY_1}" }\ntables:\n  users:\n    email: { type: text }\n`)
    expect(inline).toEqual(['x.yaml:3:18: keys.versions.1: must be a reference (env:NAME or file:PATH), never the key itself'])
    expect(inline.join('\n')).not.toContain(KEY_ENV.PGVEIL_KEY_1)
    expect(problems(KEYS, { PGVEIL_KEY_1: KEY_ENV.PGVEIL_KEY_1 })).toEqual([expect.stringMatching(/^x\.yaml:3:41: keys\.versions\.2: cannot be resolved: environment variable PGVEIL_KEY_2 is not set/)])
  })

  it('accepts an empty tables section', () => {
    expect(parse('tables: {}\n').mode).toBe('session')
    expect(parse('tables:\n').mode).toBe('session')
  })

  it('still requires those sections to be mappings', () => {
    expect(problems('tables: [users]\n')).toEqual([expect.stringMatching(/^x\.yaml:1:9: tables: a list is not a mapping/)])
  })
})

describe('audit', () => {
  const key = Buffer.alloc(32, 9).toString('base64')

  it('reads the destination, the chain key reference and the backlog', () => {
    const config = parse('audit:\n  to: audit.log\n  chain_key: "env:AUDIT_KEY"\n  max_backlog: 1048576\n', { AUDIT_KEY: key }, tmpdir())
    expect(config.audit).toEqual({ to: path.join(tmpdir(), 'audit.log'), chainKey: Buffer.from(key, 'base64'), maxBacklogBytes: 1048576 })
    expect(parse('audit: { chain_key: "env:AUDIT_KEY" }\n', { AUDIT_KEY: key }).audit).toMatchObject({ to: 'stdout', maxBacklogBytes: 16777216 })
    expect(parse('audit: null\n').audit).toBeNull()
    expect(parse('', { PGVEIL_AUDIT__CHAIN_KEY: 'env:AUDIT_KEY', AUDIT_KEY: key }).audit).toMatchObject({ to: 'stdout' })
  })

  it('refuses a missing, inline or malformed chain key without showing it, and a typo', () => {
    expect(problems('audit: { to: stdout }\n')).toEqual([expect.stringMatching(/^x\.yaml:1:8: audit\.chain_key: missing: every audit line is sealed with it/)])
    expect(problems(`audit: { chain_key: "${key}" }\n`)).toEqual([expect.stringMatching(/^x\.yaml:1:21: audit\.chain_key: a string is not a secret reference .*keys are never written inline/)])
    const short = problems('audit: { chain_key: "env:AUDIT_KEY" }\n', { AUDIT_KEY: 'c2hvcnQ=' })
    expect(short).toEqual([expect.stringMatching(/audit\.chain_key: the audit chain key decodes to 5 bytes \(expected exactly 32 bytes in base64, as printed by `pgveil keygen`\)/)])
    expect(short.join('')).not.toContain('c2hvcnQ=')
    // Decoded strictly, as root keys are: a typo Buffer's decoder would skip is refused, not turned into another key.
    const typo = `${key.slice(0, 10)}!${key.slice(11)}`
    const typoProblems = problems('audit: { chain_key: "env:AUDIT_KEY" }\n', { AUDIT_KEY: typo })
    expect(typoProblems).toEqual([expect.stringMatching(/audit\.chain_key: the audit chain key is not base64/)])
    expect(typoProblems.join('')).not.toContain(typo)
    expect(problems('audit: { chain_key: "env:NOPE" }\n')).toEqual([expect.stringMatching(/environment variable NOPE is not set/)])
    expect(problems('audit: { chian_key: "env:X" }\n')).toContainEqual(expect.stringMatching(/audit\.chian_key: unknown key .*did you mean "chain_key"/))
    expect(problems('audit: { to: /no/such/dir/audit.log, chain_key: "env:K" }\n', { K: key })).toEqual([expect.stringMatching(/audit\.to: cannot write in \/no\/such\/dir: no such file/)])
  })
})

describe('mode', () => {
  it('refuses transaction pooling with the documented message', () => {
    expect(problems('mode: transaction\n')).toEqual(['x.yaml:1:7: mode: transaction pooling is not available in this version (use session)'])
  })

  it('refuses anything else', () => {
    expect(problems('mode: statement\n')).toEqual(['x.yaml:1:7: mode: the string "statement" is not a pooling mode (expected session or transaction)'])
  })
})

describe('every problem at once', () => {
  it('lists all of them in file order, then the environment', () => {
    const found = problems('mode: transaction\nlisten:\n  port: -1\nbogus: 1\n', { PGVEIL_ADMIN__PORT: 'x' })
    expect(found.map((line) => line.split(': ')[0])).toEqual(['x.yaml:1:7', 'x.yaml:3:9', 'x.yaml:4:1', 'PGVEIL_ADMIN__PORT'])
    expect(() => parse('mode: transaction\nbogus: 1\n')).toThrow(/^invalid configuration \(2 problems\):\n/)
  })
})

describe('withUpstreamUrl', () => {
  it('fills in the upstream and keeps the rest', () => {
    const base = parseConfig('', 'defaults', {})
    const config = withUpstreamUrl(base, 'postgres://postgres:pw@127.0.0.1:5555/postgres?sslmode=disable')
    expect(config.upstream).toMatchObject({ url: 'postgres://postgres:pw@127.0.0.1:5555/postgres?sslmode=disable', connectTimeoutMs: 5000 })
    expect(config.upstream.target).toMatchObject({ port: 5555, sslmode: 'disable' })
    expect(config.listen).toEqual(base.listen)
  })
})

describe('loadConfig file lookup', () => {
  const portIn = (dir: string, name: string, port: number): string => {
    const file = path.join(dir, name)
    writeFileSync(file, `listen:\n  port: ${port}\n`)
    return file
  }

  it('falls back to the config.example.yaml next to the package', async () => {
    const cwd = tempDir()
    const config = await loadConfig({ cwd, env: {} })
    expect(config.source).toBe(path.join(ROOT, 'config.example.yaml'))
    expect(config.listen.port).toBe(6432)
  })

  it('prefers, in order: explicit file, $PGVEIL_CONFIG, ./pgveil.yaml, ./config.example.yaml', async () => {
    const cwd = tempDir()
    portIn(cwd, 'config.example.yaml', 1001)
    expect((await loadConfig({ cwd, env: {} })).listen.port).toBe(1001)
    portIn(cwd, 'pgveil.yaml', 1002)
    const found = await loadConfig({ cwd, env: {} })
    expect(found.listen.port).toBe(1002)
    expect(found.source).toBe(path.join(cwd, 'pgveil.yaml'))
    const fromEnv = portIn(cwd, 'env.yaml', 1003)
    expect((await loadConfig({ cwd, env: { PGVEIL_CONFIG: fromEnv } })).listen.port).toBe(1003)
    portIn(cwd, 'explicit.yaml', 1004)
    expect((await loadConfig({ cwd, env: { PGVEIL_CONFIG: fromEnv }, file: 'explicit.yaml' })).listen.port).toBe(1004)
  })

  it('applies environment overrides to the file it found', async () => {
    const cwd = tempDir()
    portIn(cwd, 'pgveil.yaml', 1002)
    expect((await loadConfig({ cwd, env: { PGVEIL_LISTEN__PORT: '2002' } })).listen.port).toBe(2002)
  })

  it('reports a file that cannot be read, and says where its name came from', async () => {
    const cwd = tempDir()
    await expect(loadConfig({ cwd, env: {}, file: 'missing.yaml' })).rejects.toThrow(/missing\.yaml: cannot read the configuration file: no such file/)
    await expect(loadConfig({ cwd, env: { PGVEIL_CONFIG: 'gone.yaml' } })).rejects.toThrow(/PGVEIL_CONFIG: gone\.yaml: cannot read the configuration file/)
  })

  it('reports problems with the path as given', async () => {
    const cwd = tempDir()
    mkdirSync(path.join(cwd, 'conf'))
    writeFileSync(path.join(cwd, 'conf', 'p.yaml'), 'listen:\n  port: x\n')
    await expect(loadConfig({ cwd, env: {}, file: 'conf/p.yaml' })).rejects.toThrow(/^conf\/p\.yaml:2:9: listen\.port: /m)
  })
})
