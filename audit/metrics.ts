/**
 * pgveil's Prometheus metrics: every name in one place (`_total` counters,
 * `_seconds` histograms, low-cardinality labels), registered once per registry.
 * Default process metrics are included. Counting costs next to nothing when nobody
 * scrapes.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'

export const MetricName = {
  clientConnections: 'pgveil_client_connections',
  clientConnectionsTotal: 'pgveil_client_connections_total',
  clientConnectionsRefusedTotal: 'pgveil_client_connections_refused_total',
  upstreamConnectErrorsTotal: 'pgveil_upstream_connect_errors_total',
  valuesEncryptedTotal: 'pgveil_values_encrypted_total',
  valuesDecryptedTotal: 'pgveil_values_decrypted_total',
  decryptionErrorsTotal: 'pgveil_decryption_errors_total',
  statementsRefusedTotal: 'pgveil_statements_refused_total',
  policyReloadsTotal: 'pgveil_policy_reloads_total',
  jwtVerificationsTotal: 'pgveil_jwt_verifications_total',
  jwksFetchesTotal: 'pgveil_jwks_fetches_total',
} as const

export interface Metrics {
  readonly registry: Registry
  readonly clientConnections: Gauge
  readonly clientConnectionsTotal: Counter
  readonly clientConnectionsRefusedTotal: Counter<'reason'>
  readonly upstreamConnectErrorsTotal: Counter
  readonly valuesEncryptedTotal: Counter
  readonly valuesDecryptedTotal: Counter
  readonly decryptionErrorsTotal: Counter
  readonly statementsRefusedTotal: Counter
  readonly policyReloadsTotal: Counter<'outcome'>
  readonly jwtVerificationsTotal: Counter<'outcome'>
  readonly jwksFetchesTotal: Counter<'outcome'>
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry()
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'pgveil_' })
  const registers = [registry]
  return {
    registry,
    clientConnections: new Gauge({ name: MetricName.clientConnections, help: 'Client connections open now', registers }),
    clientConnectionsTotal: new Counter({ name: MetricName.clientConnectionsTotal, help: 'Client connections accepted', registers }),
    clientConnectionsRefusedTotal: new Counter({ name: MetricName.clientConnectionsRefusedTotal, help: 'Client connections refused', labelNames: ['reason'], registers }),
    upstreamConnectErrorsTotal: new Counter({ name: MetricName.upstreamConnectErrorsTotal, help: 'Failed connections to the upstream PostgreSQL', registers }),
    valuesEncryptedTotal: new Counter({ name: MetricName.valuesEncryptedTotal, help: 'Values of protected columns encrypted', registers }),
    valuesDecryptedTotal: new Counter({ name: MetricName.valuesDecryptedTotal, help: 'Values of protected columns decrypted', registers }),
    decryptionErrorsTotal: new Counter({ name: MetricName.decryptionErrorsTotal, help: 'Stored values that failed to decrypt', registers }),
    statementsRefusedTotal: new Counter({ name: MetricName.statementsRefusedTotal, help: 'Statements pgveil refused (fail closed)', registers }),
    policyReloadsTotal: new Counter({ name: MetricName.policyReloadsTotal, help: 'Policy reloads by outcome: applied, unchanged, refused, failed', labelNames: ['outcome'], registers }),
    jwtVerificationsTotal: new Counter({ name: MetricName.jwtVerificationsTotal, help: 'SET IDENTITY token verifications by outcome: ok, or why the token was refused', labelNames: ['outcome'], registers }),
    jwksFetchesTotal: new Counter({ name: MetricName.jwksFetchesTotal, help: 'JWKS fetches from trusted issuers by outcome: ok, error', labelNames: ['outcome'], registers }),
  }
}
