import { describe, expect, it } from 'vitest'
import { ConfigError, parseConfig, type PgveilConfig } from '../../proxy/config.js'

const HMAC_KEY = 'k'.repeat(40)
const KEYS = 'keys:\n  current: 1\n  versions: { 1: "env:PGVEIL_KEY_1" }\n'
const ENV = { PGVEIL_KEY_1: Buffer.alloc(32, 7).toString('base64'), HMAC_KEY }

function parse(text: string, env: NodeJS.ProcessEnv = ENV): PgveilConfig {
  return parseConfig(text, 'x.yaml', env)
}

function problems(text: string, env: NodeJS.ProcessEnv = ENV): string[] {
  try {
    parseConfig(text, 'x.yaml', env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return [...(error as ConfigError).problems]
  }
  throw new Error('expected a ConfigError')
}

describe('identity:', () => {
  it('reads issuers with their defaults and every setting', () => {
    const config = parse(
      [
        'identity:',
        '  require: true',
        '  clock_tolerance: 5',
        '  max_token_size: 2048',
        '  on_expiry: clear',
        '  forward_claims: true',
        '  jwks_refresh: 60',
        '  jwks_refetch_cooldown: 10',
        '  jwks_timeout: 2',
        '  issuers:',
        '    - issuer: https://auth.example.com',
        '      audience: [api.example.com, other]',
        '    - issuer: http://127.0.0.1:8080',
        '      jwks_uri: http://127.0.0.1:8080/keys.json',
        '      algorithms: [ES256]',
        '    - issuer: internal',
        '      secret: env:HMAC_KEY',
      ].join('\n'),
    )
    expect(config.identity).toEqual({
      require: true,
      clockToleranceSeconds: 5,
      maxTokenBytes: 2048,
      onExpiry: 'clear',
      forwardClaims: true,
      jwksRefreshMs: 60_000,
      jwksCooldownMs: 10_000,
      jwksTimeoutMs: 2_000,
      issuers: [
        { issuer: 'https://auth.example.com', audience: ['api.example.com', 'other'], jwksUri: null, algorithms: ['RS256', 'ES256', 'EdDSA'], secret: null },
        { issuer: 'http://127.0.0.1:8080', audience: null, jwksUri: 'http://127.0.0.1:8080/keys.json', algorithms: ['ES256'], secret: null },
        { issuer: 'internal', audience: null, jwksUri: null, algorithms: ['HS256'], secret: Buffer.from(HMAC_KEY) },
      ],
    })
    expect(config.warnings).toBeUndefined()
  })

  it('has no identity section by default', () => {
    expect(parse('').identity).toBeUndefined()
  })

  it('refuses what would weaken verification, naming the fix', () => {
    expect(
      problems(
        [
          'identity:',
          '  issuers:',
          '    - issuer: https://a.example.com',
          '      algorithms: [none, HS256]',
          '    - issuer: https://b.example.com',
          '      jwks_uri: http://keys.example.com/jwks.json',
          '    - issuer: http://auth.example.com',
          '    - issuer: c',
          '      secret: "inline-secret-value-that-is-long-enough"',
          '    - issuer: d',
          '      secret: env:SHORT',
          '      algorithms: [RS256]',
        ].join('\n'),
        { SHORT: 'short' },
      ),
    ).toEqual([
      expect.stringMatching(/^x\.yaml:4:19: identity\.issuers\[0\]\.algorithms: "none" is not an accepted algorithm/),
      expect.stringMatching(/^x\.yaml:4:19: identity\.issuers\[0\]\.algorithms: HS256 needs a shared secret/),
      expect.stringMatching(/^x\.yaml:6:17: identity\.issuers\[1\]\.jwks_uri: uses http for a host that is not loopback/),
      expect.stringMatching(/^x\.yaml:7:15: identity\.issuers\[2\]\.issuer: the default JWKS location would use http/),
      expect.stringMatching(/^x\.yaml:9:15: identity\.issuers\[3\]\.secret: a string is not a reference/),
      expect.stringMatching(/^x\.yaml:11:15: identity\.issuers\[4\]\.secret: the key is 5 bytes \(expected at least 32/),
      expect.stringMatching(/^x\.yaml:12:19: identity\.issuers\[4\]\.algorithms: RS256 cannot be used with a shared secret/),
    ])
  })

  it('never shows an inline secret in a message', () => {
    const secret = 'inline-secret-value-that-is-long-enough'
    expect(problems(`identity:\n  issuers: [{ issuer: c, secret: "${secret}" }]\n`).join('\n')).not.toContain(secret)
  })

  it('refuses require without issuers, unknown keys with a suggestion, and bad values', () => {
    expect(problems('identity:\n  require: true\n')).toEqual([expect.stringMatching(/^x\.yaml:2:3: identity\.issuers: missing: identity\.require is true but no issuer is trusted/)])
    expect(problems('identity:\n  requir: true\n')).toEqual([expect.stringMatching(/identity\.requir: unknown key .*did you mean "require"/)])
    expect(problems('identity:\n  on_expiry: ignore\n  max_token_size: 10\n  clock_tolerance: -1\n')).toEqual([
      expect.stringMatching(/identity\.on_expiry: the string "ignore" is not an expiry behaviour \(expected refuse or clear\)/),
      expect.stringMatching(/identity\.max_token_size: 10 is out of range/),
      expect.stringMatching(/identity\.clock_tolerance: -1 is not a tolerance/),
    ])
    expect(problems('identity:\n  issuers: [{ audience: [x] }]\n')).toEqual([expect.stringMatching(/identity\.issuers\[0\]\.issuer: missing/)])
  })

  it('takes settings from the environment', () => {
    const config = parse('identity:\n  issuers: [{ issuer: "https://a.example.com" }]\n', { ...ENV, PGVEIL_IDENTITY__REQUIRE: 'true', PGVEIL_IDENTITY__ON_EXPIRY: 'clear' })
    expect(config.identity?.require).toBe(true)
    expect(config.identity?.onExpiry).toBe('clear')
  })
})

describe('access:', () => {
  const TABLES = `${KEYS}tables:\n  users:\n    email: { type: text }\n    age: { type: integer }\n`

  it('reads rules for protected columns', () => {
    const config = parse(
      `${TABLES}access:\n  users.email:\n    read: [{ claim: scope, includes: "pii:read" }, { claim: sub, in: [alice, 7] }]\n    otherwise: mask\n    mask: email\n    write: { claim: role, equals: admin }\n  public.users.age:\n    read: [{ claim: admin, equals: true }]\n`,
    )
    expect(config.access?.rules).toEqual([
      { column: 'public.users.email', read: [{ claim: 'scope', includes: 'pii:read' }, { claim: 'sub', in: ['alice', 7] }], otherwise: 'mask', mask: 'email', write: [{ claim: 'role', equals: 'admin' }] },
      { column: 'public.users.age', read: [{ claim: 'admin', equals: true }], otherwise: 'null', mask: 'redact', write: null },
    ])
  })

  it('refuses rules for unprotected columns, masks on non-text columns, and malformed conditions', () => {
    expect(
      problems(
        `${TABLES}access:\n  users.name:\n    read: [{ claim: sub, in: [a] }]\n  users.age:\n    read: [{ claim: sub, equals: a, in: [b] }]\n    otherwise: mask\n  email:\n    read: []\n  users.email:\n    otherwise: hide\n`,
      ),
    ).toEqual([
      expect.stringMatching(/access\.users\.name: public\.users\.name is not a protected column/),
      expect.stringMatching(/access\.users\.age\.read: needs exactly one of equals, in, includes/),
      expect.stringMatching(/access\.users\.age\.otherwise: masks apply to text columns; public\.users\.age is integer/),
      expect.stringMatching(/access\.email: is not a column name/),
      expect.stringMatching(/access\.users\.email\.read: missing/),
      expect.stringMatching(/access\.users\.email\.otherwise: the string "hide" is not a denial \(expected null, mask or error\)/),
    ])
  })
})
