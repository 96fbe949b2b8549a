/**
 * A real pgveil for a test: listens on a free 127.0.0.1 port in front of the given
 * upstream, with configuration built the way the loader builds it.
 */
import type { AccessRules } from '../../policy/access.js'
import type { IdentityConfig } from '../../policy/identity.js'
import type { Keyring } from '../../policy/keyring.js'
import { Policy } from '../../policy/policy.js'
import type { AuditConfig, PgveilConfig } from '../../proxy/config.js'
import { createLogger, silentLogger, type Logger } from '../../proxy/log.js'
import { startProxy, type ProxyServer } from '../../proxy/server.js'
import { parseUpstreamUrl } from '../../proxy/upstream-url.js'

export interface TestProxyOptions {
  upstreamUrl: string
  tls?: { cert: string; key: string; require: boolean }
  maxConnections?: number
  maxMessageSize?: number
  connectTimeoutMs?: number
  logger?: Logger
  policy?: Policy
  keyring?: Keyring | null
  identity?: IdentityConfig
  access?: AccessRules
  /** The audit log (off by default); the chain key buffer is zeroed by the proxy, pass a copy. */
  audit?: AuditConfig | null
}

export interface TestProxy extends ProxyServer {
  /** A connection URI for the proxy; user/password/database as given. */
  url(database: string, user?: string, password?: string, query?: string): string
}

export async function startTestProxy(options: TestProxyOptions): Promise<TestProxy> {
  const config: PgveilConfig = {
    source: 'test',
    listen: {
      host: '127.0.0.1',
      port: 0,
      tls: options.tls ?? null,
      maxConnections: options.maxConnections ?? 100,
      maxMessageSize: options.maxMessageSize ?? 64 * 1024 * 1024,
      drainTimeoutMs: 5_000,
    },
    upstream: { url: options.upstreamUrl, target: parseUpstreamUrl(options.upstreamUrl), connectTimeoutMs: options.connectTimeoutMs ?? 5_000 },
    mode: 'session',
    admin: null,
    policy: options.policy ?? new Policy([]),
    keyring: options.keyring ?? null,
    audit: options.audit ?? null,
  }
  if (options.identity !== undefined) config.identity = options.identity
  if (options.access !== undefined) config.access = options.access
  const logger = options.logger ?? (process.env.PGVEIL_TEST_LOG === '1' ? createLogger({ level: 'debug' }) : silentLogger)
  const server = await startProxy(config, { logger })
  return {
    host: server.host,
    port: server.port,
    get connectionCount() {
      return server.connectionCount
    },
    metrics: server.metrics,
    policyReady: server.policyReady,
    audit: server.audit,
    rotateAudit: () => server.rotateAudit(),
    shutdown: (drainTimeoutMs: number) => server.shutdown(drainTimeoutMs),
    close: () => server.close(),
    applyPolicy: (next: PgveilConfig) => server.applyPolicy(next),
    url(database: string, user = 'postgres', password?: string, query = 'sslmode=disable') {
      const auth = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`
      return `postgres://${auth}@127.0.0.1:${server.port}/${database}${query === '' ? '' : `?${query}`}`
    },
  }
}
