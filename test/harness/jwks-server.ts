/**
 * A JWKS server on 127.0.0.1 for identity tests: RSA, EC (P-256) and Ed25519 keys
 * that sign tokens, key rotation, and failure modes (down, junk). Tokens are made
 * with jose's SignJWT, independently of pgveil's verification path.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload, type CryptoKey } from 'jose'
import type { IdentityConfig } from '../../policy/identity.js'

export type TestAlgorithm = 'RS256' | 'ES256' | 'EdDSA'

export interface TestKey {
  readonly kid: string
  readonly alg: TestAlgorithm
  readonly privateKey: CryptoKey
  readonly publicJwk: JWK
}

export type JwksMode = 'ok' | 'down' | 'junk' | 'not-a-jwks'

export class TestJwksServer {
  /** Keys published now. */
  keys: TestKey[] = []
  mode: JwksMode = 'ok'
  /** Requests served (to check caching and rate limiting). */
  requests = 0
  private kidCounter = 0

  private constructor(
    private readonly server: http.Server,
    readonly issuer: string,
  ) {}

  static async start(): Promise<TestJwksServer> {
    let instance: TestJwksServer | null = null
    const server = http.createServer((request, response) => instance!.handle(request, response))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    instance = new TestJwksServer(server, `http://127.0.0.1:${port}`)
    for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) instance.keys.push(await instance.newKey(alg))
    return instance
  }

  get jwksUri(): string {
    return `${this.issuer}/.well-known/jwks.json`
  }

  /** An identity: section trusting this server (audience api.test, every test algorithm), with `overrides`. */
  identityConfig(overrides: Partial<IdentityConfig> = {}): IdentityConfig {
    return {
      require: false,
      issuers: [{ issuer: this.issuer, audience: ['api.test'], jwksUri: this.jwksUri, algorithms: ['RS256', 'ES256', 'EdDSA'], secret: null }],
      clockToleranceSeconds: 0,
      maxTokenBytes: 4096,
      onExpiry: 'refuse',
      forwardClaims: false,
      jwksRefreshMs: 300_000,
      jwksCooldownMs: 1,
      jwksTimeoutMs: 2_000,
      ...overrides,
    }
  }

  async newKey(alg: TestAlgorithm): Promise<TestKey> {
    const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519', extractable: true } : { extractable: true })
    const kid = `${alg.toLowerCase()}-${++this.kidCounter}`
    return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } }
  }

  /** Publish a new key of `alg` and drop the old ones of that algorithm; returns the new key. */
  async rotate(alg: TestAlgorithm): Promise<TestKey> {
    const key = await this.newKey(alg)
    this.keys = [...this.keys.filter((k) => k.alg !== alg), key]
    return key
  }

  key(alg: TestAlgorithm): TestKey {
    const key = this.keys.find((k) => k.alg === alg)
    if (key === undefined) throw new Error(`no ${alg} key published`)
    return key
  }

  /** A signed token; `claims` override the defaults (iss, sub, aud, iat, exp in 10 minutes). */
  async token(claims: JWTPayload = {}, options: { alg?: TestAlgorithm; key?: TestKey; kid?: string | null } = {}): Promise<string> {
    const key = options.key ?? this.key(options.alg ?? 'RS256')
    const now = Math.floor(Date.now() / 1000)
    const header: { alg: string; kid?: string } = { alg: key.alg }
    if (options.kid !== null) header.kid = options.kid ?? key.kid
    return new SignJWT({ iss: this.issuer, sub: 'alice', aud: 'api.test', iat: now, exp: now + 600, ...claims }).setProtectedHeader(header).sign(key.privateKey)
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    if (request.url !== '/.well-known/jwks.json') {
      response.writeHead(404).end()
      return
    }
    this.requests++
    switch (this.mode) {
      case 'down':
        response.writeHead(503).end('unavailable')
        return
      case 'junk':
        response.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json')
        return
      case 'not-a-jwks':
        response.writeHead(200, { 'content-type': 'application/json' }).end('{"hello":"world"}')
        return
      case 'ok':
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys.map((k) => k.publicJwk) }))
    }
  }
}
