import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultJwksUri, checkJwksUri, IdentityError, IdentityTrust, type IdentityConfig, type VerificationOutcome } from '../../policy/identity.js'
import { TestJwksServer } from '../harness/jwks-server.js'

let jwks: TestJwksServer
const trusts: IdentityTrust[] = []
const SECRET = Buffer.from('0123456789abcdef0123456789abcdef-hmac')

beforeAll(async () => {
  jwks = await TestJwksServer.start()
})
afterAll(async () => {
  for (const trust of trusts) trust.stop()
  await jwks.close()
})

function trust(overrides: Partial<IdentityConfig> = {}): { trust: IdentityTrust; outcomes: VerificationOutcome[]; fetches: string[] } {
  const outcomes: VerificationOutcome[] = []
  const fetches: string[] = []
  const config: IdentityConfig = {
    require: false,
    issuers: [
      { issuer: jwks.issuer, audience: ['api.test'], jwksUri: jwks.jwksUri, algorithms: ['RS256', 'ES256', 'EdDSA'], secret: null },
      { issuer: 'internal', audience: null, jwksUri: null, algorithms: ['HS256'], secret: SECRET },
    ],
    clockToleranceSeconds: 0,
    maxTokenBytes: 4096,
    onExpiry: 'refuse',
    forwardClaims: false,
    jwksRefreshMs: 300_000,
    jwksCooldownMs: 60_000,
    jwksTimeoutMs: 2_000,
    ...overrides,
  }
  const created = new IdentityTrust(config, { metrics: { verification: (o) => outcomes.push(o), jwksFetch: (o) => fetches.push(o) }, log: { warn() {} } })
  trusts.push(created)
  return { trust: created, outcomes, fetches }
}

async function refused(promise: Promise<unknown>): Promise<IdentityError> {
  const error = await promise.then(() => null, (e: unknown) => e)
  expect(error).toBeInstanceOf(IdentityError)
  return error as IdentityError
}

describe('IdentityTrust', () => {
  it('verifies with an HMAC secret, and refuses the same token signed with another secret', async () => {
    const { trust: t, outcomes } = trust()
    const sign = (key: Uint8Array): Promise<string> => new SignJWT({ sub: 'svc' }).setProtectedHeader({ alg: 'HS256' }).setIssuer('internal').setExpirationTime('5m').sign(key)
    expect(await t.verify(await sign(SECRET))).toMatchObject({ iss: 'internal', sub: 'svc', aud: [] })
    expect((await refused(t.verify(await sign(Buffer.from('another-secret-another-secret-another'))))).outcome).toBe('bad_signature')
    expect(outcomes).toEqual(['ok', 'bad_signature'])
  })

  it('fetches the JWKS once and verifies later tokens from the cache', async () => {
    const { trust: t, fetches } = trust()
    await t.verify(await jwks.token())
    const requests = jwks.requests
    for (let i = 0; i < 5; i++) await t.verify(await jwks.token({}, { alg: i % 2 === 0 ? 'ES256' : 'EdDSA' }))
    expect(jwks.requests).toBe(requests)
    expect(fetches).toEqual(['ok'])
  })

  it('refetches at most once per cooldown for unknown key ids', async () => {
    const { trust: t } = trust()
    await t.verify(await jwks.token())
    const requests = jwks.requests
    const unknown = await jwks.newKey('RS256')
    for (let i = 0; i < 3; i++) expect((await refused(t.verify(await jwks.token({}, { key: unknown })))).outcome).toBe('unknown_key')
    expect(jwks.requests - requests).toBe(1)
  })

  it('refreshes in the background', async () => {
    const { trust: t } = trust({ jwksRefreshMs: 100 })
    await t.verify(await jwks.token())
    const requests = jwks.requests
    await new Promise((resolve) => setTimeout(resolve, 350))
    expect(jwks.requests - requests).toBeGreaterThanOrEqual(2)
  })

  it('checks the clock with the configured tolerance', async () => {
    const now = Math.floor(Date.now() / 1000)
    const token = await jwks.token({ iat: now - 100, exp: now - 10 })
    expect((await refused(trust().trust.verify(token))).outcome).toBe('expired')
    expect(await trust({ clockToleranceSeconds: 60 }).trust.verify(token)).toMatchObject({ sub: 'alice' })
  })
})

describe('JWKS locations', () => {
  it('defaults to /.well-known/jwks.json under the issuer', () => {
    expect(defaultJwksUri('https://auth.example.com/')).toBe('https://auth.example.com/.well-known/jwks.json')
    expect(defaultJwksUri('auth.example.com')).toBe('https://auth.example.com/.well-known/jwks.json')
  })

  it('allows http for loopback only', () => {
    expect(checkJwksUri('https://keys.example.com/jwks')).toBeNull()
    expect(checkJwksUri('http://127.0.0.1:9/jwks')).toBeNull()
    expect(checkJwksUri('http://[::1]:9/jwks')).toBeNull()
    expect(checkJwksUri('http://localhost/jwks')).toBeNull()
    expect(checkJwksUri('http://10.0.0.1/jwks')).toMatch(/not loopback/)
    expect(checkJwksUri('ftp://x/jwks')).toMatch(/expected https/)
  })
})
