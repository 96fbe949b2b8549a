/**
 * The listener: accepts clients on listen.host:listen.port, enforces
 * listen.max_connections, hands each connection to a ClientSession, and drains on
 * shutdown.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import { SqlState, WireError } from '../protocol/errors.js'
import { SqlAnalyzer } from '../policy/sql-analyzer.js'
import { IdentityTrust } from '../policy/identity.js'
import { CancelRegistry } from './cancel-registry.js'
import { CatalogMap, ReadableViewColumns } from './catalog.js'
import type { PgveilConfig } from './config.js'
import { createMetrics, type Metrics } from '../audit/metrics.js'
import { AuditSink } from '../audit/sink.js'
import { StatementSummarizer, type ProtectedColumnLookup } from '../audit/statement-summary.js'
import type { Policy } from '../policy/policy.js'
import { createLogger, type Logger } from './log.js'
import type { CryptoContext } from './session-crypto.js'
import { ClientSession, type SessionContext } from './session.js'
import { StatementMetrics, type AuditContext } from './statement-audit.js'
import { describeUpstream } from './upstream-url.js'

export interface ProxyServer {
  readonly host: string
  readonly port: number
  /** Client sessions currently open. */
  readonly connectionCount: number
  readonly metrics: Metrics
  /** Protected columns are configured with their keys, or nothing is protected (true while running). */
  readonly policyReady: boolean
  /** The audit log, when `audit:` is configured (policy events are written to it too). */
  readonly audit: AuditSink | null
  /** SIGUSR1: close the audit chain, reopen the audit file (after a log rotator moved it), start a new chain. */
  rotateAudit(): void
  /** Stop accepting; let sessions finish their transaction, up to `drainTimeoutMs`; then close the rest. */
  shutdown(drainTimeoutMs: number): Promise<void>
  /** Close every session now. */
  close(): Promise<void>
  /**
   * Apply the tables/keys of a newly loaded configuration: new sessions use them at
   * once, open sessions end at their next idle point (57P01) so clients reconnect
   * under the new policy. Returns false when nothing changed.
   */
  applyPolicy(next: PgveilConfig): Promise<boolean>
}

export interface StartProxyOptions {
  logger?: Logger
  /** Where counters go (default: a registry of its own). */
  metrics?: Metrics
}

export async function startProxy(config: PgveilConfig, options: StartProxyOptions = {}): Promise<ProxyServer> {
  const logger = options.logger ?? createLogger()
  const metrics = options.metrics ?? createMetrics()
  const target = config.upstream.target
  if (target === null) throw new TypeError('startProxy needs an upstream (upstream.url)')
  // One per policy: the catalogs of the crypto context tell it the readable views, the audit's summaries read it.
  const readableViewsOf = new WeakMap<PgveilConfig, ReadableViewColumns>()
  const readableViews = (from: PgveilConfig): ReadableViewColumns => {
    let views = readableViewsOf.get(from)
    if (views === undefined) readableViewsOf.set(from, (views = new ReadableViewColumns()))
    return views
  }
  const buildCrypto = async (from: PgveilConfig): Promise<CryptoContext | null> => {
    if (from.policy.isEmpty) return null
    if (from.keyring === null) throw new TypeError('protected columns need keys')
    return {
      policy: from.policy,
      keyring: from.keyring,
      analyzer: await SqlAnalyzer.create(from.policy),
      catalogs: new CatalogMap({
        target,
        connectTimeoutMs: from.upstream.connectTimeoutMs,
        policy: from.policy,
        logger,
        readableViews: readableViews(from),
        onRead: (outcome) => metrics.catalogReadsTotal.inc({ outcome }),
      }),
      logger,
      metrics,
    }
  }
  let audit: AuditSink | null = null
  if (config.audit !== null) {
    audit = AuditSink.open({
      to: config.audit.to,
      chainKey: config.audit.chainKey,
      metrics,
      maxBacklogBytes: config.audit.maxBacklogBytes,
      onProblem: (message, fields) => logger.warn(message, fields),
    })
    // The sink holds its own evolving copy: no earlier chain key stays in this process (see audit/chain.ts).
    config.audit.chainKey.fill(0)
  }
  const statementMetrics = new StatementMetrics(metrics)
  const buildAudit = async (from: PgveilConfig): Promise<AuditContext | null> =>
    audit === null ? null : { sink: audit, summarizer: await StatementSummarizer.create(protectedLookup(from.policy, readableViews(from))), metrics, statementMetrics }
  const buildTrust = (from: PgveilConfig): IdentityTrust | null =>
    from.identity === undefined || from.identity === null
      ? null
      : new IdentityTrust(from.identity, {
          metrics: {
            verification: (outcome) => metrics.jwtVerificationsTotal.inc({ outcome }),
            jwksFetch: (outcome) => metrics.jwksFetchesTotal.inc({ outcome }),
          },
          log: logger,
        })
  let policyFingerprint = fingerprintPolicy(config)
  /** The running policy's fingerprint without its data key versions: a reload that matches it is a key rotation. */
  let structureFingerprint = fingerprintPolicy(config, { dataKeys: false })
  const listenTls = config.listen.tls
  const secureContext = listenTls === null ? null : tls.createSecureContext({ cert: readFileSync(listenTls.cert), key: readFileSync(listenTls.key) })
  const sessions = new Set<ClientSession>()
  let closing = false
  const whenAllClosed: (() => void)[] = []

  const context: { -readonly [K in keyof SessionContext]: SessionContext[K] } = {
    config,
    target,
    secureContext,
    cancelRegistry: new CancelRegistry(),
    logger,
    metrics,
    crypto: await buildCrypto(config),
    audit: await buildAudit(config),
    identityTrust: buildTrust(config),
    access: config.access ?? null,
    onClose(session) {
      sessions.delete(session)
      metrics.clientConnections.set(sessions.size)
      if (sessions.size === 0) for (const resolve of whenAllClosed.splice(0)) resolve()
    },
  }

  const server = net.createServer({ noDelay: true }, (socket) => {
    if (closing) {
      socket.destroy()
      return
    }
    let refusal: WireError | null = null
    if (sessions.size >= config.listen.maxConnections) {
      refusal = new WireError(SqlState.TooManyConnections, 'sorry, too many clients already', {
        severity: 'FATAL',
        detail: `pgveil listen.max_connections is ${config.listen.maxConnections}`,
      })
      logger.warn('connection refused: listen.max_connections reached', { limit: config.listen.maxConnections })
      metrics.clientConnectionsRefusedTotal.inc({ reason: 'max_connections' })
    } else {
      metrics.clientConnectionsTotal.inc()
    }
    const session = new ClientSession(socket, context, refusal)
    sessions.add(session)
    metrics.clientConnections.set(sessions.size)
  })
  server.on('error', (error) => logger.error('listener error', { error: error.message }))

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as net.AddressInfo
  logger.info('pgveil listening', { host: address.address, port: address.port, upstream: describeUpstream(target), tls: listenTls !== null })

  const waitForSessions = (): Promise<void> =>
    sessions.size === 0
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          whenAllClosed.push(resolve)
        })
  const stopListening = (): Promise<void> => new Promise((resolve) => server.close(() => resolve()))

  return {
    host: address.address,
    port: address.port,
    get connectionCount() {
      return sessions.size
    },
    metrics,
    // startProxy and applyPolicy refuse a policy without its keys, so a running server always has one.
    policyReady: true,
    audit,
    rotateAudit() {
      if (audit === null) return
      audit.rotate()
      logger.info('audit log: new chain started (SIGUSR1)')
    },
    async shutdown(drainTimeoutMs: number) {
      if (closing) return waitForSessions()
      closing = true
      const listenerClosed = stopListening()
      logger.info('shutting down: no new connections; waiting for sessions to finish', { sessions: sessions.size, drainTimeoutMs })
      for (const session of sessions) session.drain()
      const timer = setTimeout(() => {
        for (const session of [...sessions]) session.terminate('terminating connection because pgveil is shutting down (drain timeout reached)')
      }, drainTimeoutMs)
      await waitForSessions()
      clearTimeout(timer)
      context.identityTrust?.stop()
      await listenerClosed
      await audit?.close()
      logger.info('shutdown complete')
    },
    async applyPolicy(next: PgveilConfig) {
      const fingerprint = fingerprintPolicy(next)
      if (fingerprint === policyFingerprint) return false
      if (context.crypto !== null && next.keyring !== null && fingerprintPolicy(next, { dataKeys: false }) === structureFingerprint) {
        // Only the data keys changed (a rotation): every session seals under the new
        // current version from its next value on and still opens every version held.
        // Index keys are not covered: statements checked against one set of index
        // versions must not run under another, so that change retires sessions below.
        context.crypto.keyring = next.keyring
        policyFingerprint = fingerprint
        logger.info('keys applied: new values are sealed under the current key version; open sessions continue', { current: next.keyring.current, versions: next.keyring.versions })
        return true
      }
      context.crypto = await buildCrypto(next)
      context.audit = await buildAudit(next)
      context.identityTrust?.stop()
      context.identityTrust = buildTrust(next)
      context.access = next.access ?? null
      structureFingerprint = fingerprintPolicy(next, { dataKeys: false })
      policyFingerprint = fingerprint
      logger.info('policy applied: open sessions take it at their next idle point, or end there when they cannot', { protectedColumns: next.policy.columns.length, sessions: sessions.size })
      for (const session of sessions) session.policyChanged("terminating connection because pgveil's column policy changed; reconnect to use the new policy")
      return true
    },
    async close() {
      closing = true
      const listenerClosed = stopListening()
      for (const session of [...sessions]) session.terminate('terminating connection because pgveil is shutting down')
      context.identityTrust?.stop()
      await waitForSessions()
      await listenerClosed
      await audit?.close()
    },
  }
}

/** The audit summarizer's view of the policy: protected column names by table, and by readable view. */
function protectedLookup(policy: Policy, views: ReadableViewColumns): ProtectedColumnLookup | null {
  if (policy.isEmpty) return null
  const names = new Map<string, readonly string[]>()
  return {
    columnsOf(schema, table) {
      const key = `${schema}.${table}`
      let columns = names.get(key)
      if (columns === undefined) {
        const found = policy.table(schema, table)
        if (found === undefined) return views.columnsOf(schema, table)
        names.set(key, (columns = [...found.keys()]))
      }
      return columns
    },
    originsOf: (schema, table, column) => views.originsOf(schema, table, column),
    get generation() {
      return views.generation
    },
  }
}

/** What identifies a policy: its columns, key versions, identity and access settings (never key material). What a reload compares; `dataKeys: false` leaves out the data key versions (a rotation), not the index key versions. */
function fingerprintPolicy(config: PgveilConfig, options: { dataKeys: boolean } = { dataKeys: true }): string {
  const identity = config.identity ?? null
  const keys = config.keyring?.describe() ?? null
  return JSON.stringify({
    columns: config.policy.columns,
    keys: keys === null || options.dataKeys ? keys : { ...keys, current: null, versions: null },
    // Issuers and settings; a shared secret only as a digest, so a changed secret is noticed.
    identity: identity === null ? null : { ...identity, issuers: identity.issuers.map((issuer) => ({ ...issuer, secret: issuer.secret === null ? null : createHash('sha256').update(issuer.secret).digest('hex') })) },
    access: config.access?.rules ?? [],
  })
}
