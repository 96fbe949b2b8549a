/**
 * Identity trust: which JWT issuers pgveil believes, and the verification of one
 * token against them (signature through the issuer's JWKS or shared secret,
 * algorithm allow-list, issuer, audience, exp/nbf/iat with a clock tolerance, size
 * limit). A token is verified once, at SET IDENTITY; sessions keep the result.
 *
 * JWKS are cached per issuer and refreshed in the background; a token whose `kid`
 * is not in the cached set triggers at most one refetch per cooldown. A JWKS
 * server that is down never delays tokens whose key is cached.
 */
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose'

/** Asymmetric algorithms pgveil accepts by default. `none` is never accepted. */
export const DEFAULT_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const

export interface IssuerConfig {
  /** The exact `iss` claim value. */
  readonly issuer: string
  /** `aud` must name one of these; null: not checked. */
  readonly audience: readonly string[] | null
  /** Where the issuer's keys are (asymmetric algorithms); null with a secret. */
  readonly jwksUri: string | null
  readonly algorithms: readonly string[]
  /** The shared key of HMAC algorithms (resolved from its env:/file: reference). */
  readonly secret: Uint8Array | null
}

export type OnExpiry = 'refuse' | 'clear'

export interface IdentityConfig {
  /** Refuse statements until a verified identity is set. */
  readonly require: boolean
  readonly issuers: readonly IssuerConfig[]
  readonly clockToleranceSeconds: number
  /** Tokens larger than this (bytes) are refused before any parsing. */
  readonly maxTokenBytes: number
  /** What happens at the first statement after the token's `exp`. */
  readonly onExpiry: OnExpiry
  /** Make the verified claims visible to SQL as pgveil.claims / pgveil.sub. */
  readonly forwardClaims: boolean
  readonly jwksRefreshMs: number
  readonly jwksCooldownMs: number
  readonly jwksTimeoutMs: number
}

/** The result of a successful verification: what sessions keep (never the token). */
export interface VerifiedIdentity {
  readonly iss: string
  readonly sub: string | null
  readonly aud: readonly string[]
  /** Seconds since the epoch, or null when the token has no `exp`. */
  readonly exp: number | null
  readonly claims: Readonly<JWTPayload>
}

/** Why a token was refused: the label of pgveil_jwt_verifications_total{outcome}. */
export type VerificationOutcome =
  | 'ok'
  | 'malformed'
  | 'too_large'
  | 'untrusted_issuer'
  | 'algorithm'
  | 'bad_signature'
  | 'unknown_key'
  | 'audience'
  | 'expired'
  | 'not_yet_valid'
  | 'invalid_claims'
  | 'jwks_unavailable'

/** A token pgveil does not accept. `message` says why and never contains the token. */
export class IdentityError extends Error {
  readonly outcome: Exclude<VerificationOutcome, 'ok'>
  constructor(outcome: Exclude<VerificationOutcome, 'ok'>, message: string) {
    super(message)
    this.name = 'IdentityError'
    this.outcome = outcome
  }
}

/** Counters the trust layer reports to (audit/metrics.ts provides them). */
export interface IdentityMetrics {
  verification(outcome: VerificationOutcome): void
  jwksFetch(outcome: 'ok' | 'error'): void
}

export interface IdentityLog {
  warn(message: string, fields: Record<string, unknown>): void
}

const MAX_JWKS_BYTES = 1024 * 1024

/** The JWKS location of an issuer that names none: https://{issuer}/.well-known/jwks.json. */
export function defaultJwksUri(issuer: string): string {
  const base = /^https?:\/\//i.test(issuer) ? issuer : `https://${issuer}`
  return `${base.replace(/\/+$/, '')}/.well-known/jwks.json`
}

/** http is for loopback hosts only (tests, sidecars); everything else must be https. */
export function checkJwksUri(uri: string): string | null {
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    return 'is not a URL (expected https://host/path)'
  }
  if (url.protocol === 'https:') return null
  if (url.protocol !== 'http:') return `uses ${url.protocol} (expected https://)`
  const host = url.hostname.replace(/^\[|\]$/g, '')
  if (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)) return null
  return 'uses http for a host that is not loopback (expected https://; http is allowed for 127.0.0.1, ::1 and localhost only)'
}

/** One issuer's key set: fetched, cached, refreshed. */
class JwksCache {
  private keys: JWTVerifyGetKey | null = null
  private fetching: Promise<void> | null = null
  /** When an unknown kid last caused a refetch (the rate limit). */
  private lastUnknownKidRefetch = -Infinity
  private lastError: string | null = null
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly uri: string,
    private readonly issuer: string,
    private readonly options: { refreshMs: number; cooldownMs: number; timeoutMs: number; metrics: IdentityMetrics; log: IdentityLog },
  ) {
    void this.refresh()
    this.timer = setInterval(() => void this.refresh(), options.refreshMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  /** The key resolver for jose: cached keys; an unknown kid refetches once per cooldown. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (this.keys === null) {
      await this.refresh()
      if (this.keys === null) throw new IdentityError('jwks_unavailable', `the keys of issuer "${this.issuer}" could not be fetched from ${this.uri} (${this.lastError ?? 'no answer'}); try again later`)
    }
    try {
      return await this.keys(header, token)
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error
      if (Date.now() - this.lastUnknownKidRefetch < this.options.cooldownMs) throw error
      this.lastUnknownKidRefetch = Date.now()
      await this.refresh()
      if (this.lastError !== null) throw new IdentityError('jwks_unavailable', `the token's key id (kid) is not among the cached keys of issuer "${this.issuer}" and ${this.uri} could not be fetched (${this.lastError}); try again later`)
      return await this.keys(header, token)
    }
  }

  /** Fetch now (one fetch at a time); failures keep the keys already cached. */
  refresh(): Promise<void> {
    if (this.fetching !== null) return this.fetching
    this.fetching = this.fetchOnce().finally(() => {
      this.fetching = null
    })
    return this.fetching
  }

  private async fetchOnce(): Promise<void> {
    try {
      const response = await fetch(this.uri, { signal: AbortSignal.timeout(this.options.timeoutMs), redirect: 'error', headers: { accept: 'application/json' } })
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      const body = await response.arrayBuffer()
      if (body.byteLength > MAX_JWKS_BYTES) throw new Error(`larger than ${MAX_JWKS_BYTES} bytes`)
      let parsed: unknown
      try {
        parsed = JSON.parse(Buffer.from(body).toString('utf8'))
      } catch {
        throw new Error('not JSON')
      }
      if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { keys?: unknown }).keys)) throw new Error('not a JSON Web Key Set (no "keys" list)')
      this.keys = createLocalJWKSet(parsed as JSONWebKeySet)
      this.lastError = null
      this.options.metrics.jwksFetch('ok')
    } catch (error) {
      this.lastError = error instanceof Error ? (error.name === 'TimeoutError' ? 'timed out' : error.message) : String(error)
      this.options.metrics.jwksFetch('error')
      this.options.log.warn('JWKS fetch failed; cached keys (if any) stay in use', { issuer: this.issuer, uri: this.uri, error: this.lastError })
    }
  }
}

interface TrustedIssuer {
  readonly config: IssuerConfig
  readonly key: JWTVerifyGetKey | Uint8Array
  readonly jwks: JwksCache | null
}

/** The trusted issuers of one configuration, shared by every session. */
export class IdentityTrust {
  readonly config: IdentityConfig
  private readonly issuers = new Map<string, TrustedIssuer>()
  private readonly metrics: IdentityMetrics

  constructor(config: IdentityConfig, options: { metrics: IdentityMetrics; log: IdentityLog }) {
    this.config = config
    this.metrics = options.metrics
    for (const issuer of config.issuers) {
      if (issuer.secret !== null) {
        this.issuers.set(issuer.issuer, { config: issuer, key: issuer.secret, jwks: null })
      } else {
        const jwks = new JwksCache(issuer.jwksUri ?? defaultJwksUri(issuer.issuer), issuer.issuer, {
          refreshMs: config.jwksRefreshMs,
          cooldownMs: config.jwksCooldownMs,
          timeoutMs: config.jwksTimeoutMs,
          metrics: options.metrics,
          log: options.log,
        })
        this.issuers.set(issuer.issuer, { config: issuer, key: jwks.getKey, jwks })
      }
    }
  }

  /** Stop background refreshes. */
  stop(): void {
    for (const issuer of this.issuers.values()) issuer.jwks?.stop()
  }

  /** Verifies a compact JWS. Resolves the identity or rejects with IdentityError. */
  async verify(token: string): Promise<VerifiedIdentity> {
    try {
      const identity = await this.verifyUncounted(token)
      this.metrics.verification('ok')
      return identity
    } catch (error) {
      const refused = error instanceof IdentityError ? error : new IdentityError('malformed', 'the token could not be verified')
      this.metrics.verification(refused.outcome)
      throw refused
    }
  }

  private async verifyUncounted(token: string): Promise<VerifiedIdentity> {
    if (Buffer.byteLength(token) > this.config.maxTokenBytes) {
      throw new IdentityError('too_large', `the token is larger than identity.max_token_size (${this.config.maxTokenBytes} bytes)`)
    }
    let header: ReturnType<typeof decodeProtectedHeader>
    let payload: JWTPayload
    try {
      header = decodeProtectedHeader(token)
      payload = decodeJwt(token)
    } catch {
      throw new IdentityError('malformed', 'the token is not a signed JWT (expected three base64url parts: header.payload.signature)')
    }
    if (token.split('.').length !== 3) throw new IdentityError('malformed', 'the token is not a signed JWT (expected three base64url parts: header.payload.signature)')
    if (typeof payload.iss !== 'string') throw new IdentityError('untrusted_issuer', 'the token has no "iss" claim (expected one of identity.issuers)')
    const issuer = this.issuers.get(payload.iss)
    if (issuer === undefined) throw new IdentityError('untrusted_issuer', `issuer ${quote(payload.iss)} is not trusted (add it to identity.issuers)`)
    const alg = typeof header.alg === 'string' ? header.alg : ''
    if (!issuer.config.algorithms.includes(alg)) {
      throw new IdentityError('algorithm', `algorithm ${quote(alg || '(none)')} is not allowed for issuer ${quote(payload.iss)} (allowed: ${issuer.config.algorithms.join(', ')})`)
    }
    let verified: JWTPayload
    try {
      const options = {
        issuer: issuer.config.issuer,
        algorithms: [...issuer.config.algorithms],
        clockTolerance: this.config.clockToleranceSeconds,
        ...(issuer.config.audience === null ? {} : { audience: [...issuer.config.audience] }),
      }
      verified =
        issuer.key instanceof Uint8Array ? (await jwtVerify(token, issuer.key, options)).payload : (await jwtVerify(token, issuer.key, options)).payload
    } catch (error) {
      throw explain(error, payload, issuer.config)
    }
    if (verified.iat !== undefined && verified.iat > Date.now() / 1000 + this.config.clockToleranceSeconds) {
      throw new IdentityError('not_yet_valid', 'the token was issued in the future ("iat" is later than now plus identity.clock_tolerance)')
    }
    const aud = verified.aud === undefined ? [] : Array.isArray(verified.aud) ? verified.aud : [verified.aud]
    return { iss: issuer.config.issuer, sub: typeof verified.sub === 'string' ? verified.sub : null, aud, exp: typeof verified.exp === 'number' ? verified.exp : null, claims: verified }
  }
}

/** An IdentityError from whatever jose threw. */
function explain(error: unknown, payload: JWTPayload, issuer: IssuerConfig): IdentityError {
  if (error instanceof IdentityError) return error
  if (error instanceof joseErrors.JWTExpired) return new IdentityError('expired', `the token expired at ${when(payload.exp)} (get a fresh token)`)
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'aud':
        return new IdentityError('audience', `the token's audience does not include ${issuer.audience?.join(' or ') ?? 'the expected audience'} (issuer ${quote(issuer.issuer)})`)
      case 'nbf':
        return new IdentityError('not_yet_valid', `the token is not valid before ${when(payload.nbf)}`)
      case 'iat':
        return new IdentityError('not_yet_valid', 'the token\'s "iat" claim is not valid')
      case 'iss':
        return new IdentityError('untrusted_issuer', `issuer ${quote(String(payload.iss))} is not trusted (add it to identity.issuers)`)
      default:
        return new IdentityError('invalid_claims', `the token's "${error.claim}" claim is not valid (${error.reason})`)
    }
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return new IdentityError('bad_signature', `the token's signature does not verify with the keys of issuer ${quote(issuer.issuer)}`)
  if (error instanceof joseErrors.JWKSNoMatchingKey) return new IdentityError('unknown_key', `no key of issuer ${quote(issuer.issuer)} matches the token's key id (kid); it may have been rotated out`)
  if (error instanceof joseErrors.JWKSMultipleMatchingKeys) return new IdentityError('unknown_key', `the token names no key id (kid) and issuer ${quote(issuer.issuer)} has several keys`)
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return new IdentityError('algorithm', `the token's algorithm is not allowed for issuer ${quote(issuer.issuer)}`)
  if (error instanceof joseErrors.JWTInvalid || error instanceof joseErrors.JWSInvalid) return new IdentityError('malformed', 'the token is not a valid signed JWT')
  if (error instanceof TypeError || error instanceof joseErrors.JOSENotSupported) return new IdentityError('bad_signature', `the token's key or algorithm does not fit issuer ${quote(issuer.issuer)}`)
  return new IdentityError('malformed', 'the token could not be verified')
}

function when(seconds: unknown): string {
  return typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : 'an invalid time'
}

/** Untrusted text in a message: quoted and cut short. */
function quote(value: string): string {
  return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}…` : value)
}
