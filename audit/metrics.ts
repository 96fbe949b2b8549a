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
  upstreamConnections: 'pgveil_upstream_connections',
  upstreamConnectionsTotal: 'pgveil_upstream_connections_total',
  upstreamConnectErrorsTotal: 'pgveil_upstream_connect_errors_total',
  statementsTotal: 'pgveil_statements_total',
  statementsProtectedTotal: 'pgveil_statements_protected_total',
  statementDurationSeconds: 'pgveil_statement_duration_seconds',
  valuesEncryptedTotal: 'pgveil_values_encrypted_total',
  valuesDecryptedTotal: 'pgveil_values_decrypted_total',
  encryptionErrorsTotal: 'pgveil_encryption_errors_total',
  decryptionErrorsTotal: 'pgveil_decryption_errors_total',
  statementsRefusedTotal: 'pgveil_statements_refused_total',
  jwtVerificationsTotal: 'pgveil_jwt_verifications_total',
  jwksFetchesTotal: 'pgveil_jwks_fetches_total',
  policyReloadsTotal: 'pgveil_policy_reloads_total',
  catalogReadsTotal: 'pgveil_catalog_reads_total',
  auditLinesWrittenTotal: 'pgveil_audit_lines_written_total',
  auditLinesDroppedTotal: 'pgveil_audit_lines_dropped_total',
  auditSinkErrorsTotal: 'pgveil_audit_sink_errors_total',
  auditBacklogBytes: 'pgveil_audit_backlog_bytes',
} as const

/** Statement kinds as labels: a fixed set, so the label stays low-cardinality. */
export const STATEMENT_KINDS = ['select', 'insert', 'update', 'delete', 'merge', 'copy', 'ddl', 'transaction', 'set', 'utility', 'empty', 'unknown'] as const
export type StatementKind = (typeof STATEMENT_KINDS)[number]

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * The statement duration histogram, by kind. Observed once per statement on the
 * data path, so it is plain arrays (prom-client's Histogram hashes its labels
 * on every observation); the registry reads it like any metric when scraped.
 */
export class StatementDurationHistogram {
  readonly name = MetricName.statementDurationSeconds
  readonly help = 'Statement duration seen by pgveil (first message to completion), by kind; measured while the audit log is on'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly labelNames = ['kind']
  private readonly counts = new Map<StatementKind, { buckets: Float64Array; sum: number; count: number }>()

  observe(kind: StatementKind, seconds: number): void {
    let entry = this.counts.get(kind)
    if (entry === undefined) this.counts.set(kind, (entry = { buckets: new Float64Array(DURATION_BUCKETS.length), sum: 0, count: 0 }))
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      if (seconds <= DURATION_BUCKETS[i]!) {
        entry.buckets[i]!++
        break
      }
    }
    entry.sum += seconds
    entry.count++
  }

  /** What prom-client's registry reads from a metric when it is scraped. */
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { metricName: string; labels: Record<string, string | number>; value: number }[] }> {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = []
    for (const [kind, entry] of this.counts) {
      let cumulative = 0
      DURATION_BUCKETS.forEach((le, i) => {
        cumulative += entry.buckets[i]!
        values.push({ metricName: `${this.name}_bucket`, labels: { le, kind }, value: cumulative })
      })
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', kind }, value: entry.count })
      values.push({ metricName: `${this.name}_sum`, labels: { kind }, value: entry.sum })
      values.push({ metricName: `${this.name}_count`, labels: { kind }, value: entry.count })
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values })
  }

  reset(): void {
    this.counts.clear()
  }
}

export interface Metrics {
  readonly registry: Registry
  readonly clientConnections: Gauge
  readonly clientConnectionsTotal: Counter
  readonly clientConnectionsRefusedTotal: Counter<'reason'>
  readonly upstreamConnections: Gauge
  readonly upstreamConnectionsTotal: Counter
  readonly upstreamConnectErrorsTotal: Counter
  /** `outcome`: ok, error (PostgreSQL refused it), refused (pgveil refused it). */
  readonly statementsTotal: Counter<'kind' | 'outcome'>
  readonly statementsProtectedTotal: Counter
  readonly statementDurationSeconds: StatementDurationHistogram
  readonly valuesEncryptedTotal: Counter
  readonly valuesDecryptedTotal: Counter
  readonly encryptionErrorsTotal: Counter
  readonly decryptionErrorsTotal: Counter
  readonly statementsRefusedTotal: Counter
  readonly jwtVerificationsTotal: Counter<'outcome'>
  readonly jwksFetchesTotal: Counter<'outcome'>
  readonly policyReloadsTotal: Counter<'outcome'>
  readonly catalogReadsTotal: Counter<'outcome'>
  readonly auditLinesWrittenTotal: Counter
  /**
   * Counts kept in plain fields on hot paths and added to their metrics when
   * Prometheus scrapes (a labelled inc hashes its labels each time): the audit
   * sink's lines (auditLinesWrittenTotal, auditBacklogBytes) and the statement
   * counts (statementsTotal, statementsProtectedTotal) register here.
   */
  readonly beforeScrape: { audit: (() => void) | null; statements: (() => void) | null }
  readonly auditLinesDroppedTotal: Counter
  readonly auditSinkErrorsTotal: Counter
  readonly auditBacklogBytes: Gauge
}

function registerMetric<T extends { name: string }>(registry: Registry, metric: T): T {
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0])
  return metric
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry()
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'pgveil_' })
  const registers = [registry]
  const beforeScrape: Metrics['beforeScrape'] = { audit: null, statements: null }
  const collectAudit = (): void => beforeScrape.audit?.()
  const collectStatements = (): void => beforeScrape.statements?.()
  return {
    registry,
    clientConnections: new Gauge({ name: MetricName.clientConnections, help: 'Client connections open now', registers }),
    clientConnectionsTotal: new Counter({ name: MetricName.clientConnectionsTotal, help: 'Client connections accepted', registers }),
    clientConnectionsRefusedTotal: new Counter({ name: MetricName.clientConnectionsRefusedTotal, help: 'Client connections refused', labelNames: ['reason'], registers }),
    upstreamConnections: new Gauge({ name: MetricName.upstreamConnections, help: 'Connections to the upstream PostgreSQL open now', registers }),
    upstreamConnectionsTotal: new Counter({ name: MetricName.upstreamConnectionsTotal, help: 'Connections to the upstream PostgreSQL opened', registers }),
    upstreamConnectErrorsTotal: new Counter({ name: MetricName.upstreamConnectErrorsTotal, help: 'Failed connections to the upstream PostgreSQL', registers }),
    statementsTotal: new Counter({
      name: MetricName.statementsTotal,
      help: 'Statements completed, by kind and outcome (ok, error, refused); counted while the audit log is on',
      labelNames: ['kind', 'outcome'],
      registers,
      collect: collectStatements,
    }),
    statementsProtectedTotal: new Counter({ name: MetricName.statementsProtectedTotal, help: 'Statements that read or wrote a protected column; counted while the audit log is on', registers, collect: collectStatements }),
    statementDurationSeconds: registerMetric(registry, new StatementDurationHistogram()),
    valuesEncryptedTotal: new Counter({ name: MetricName.valuesEncryptedTotal, help: 'Values of protected columns encrypted', registers }),
    valuesDecryptedTotal: new Counter({ name: MetricName.valuesDecryptedTotal, help: 'Values of protected columns decrypted', registers }),
    encryptionErrorsTotal: new Counter({ name: MetricName.encryptionErrorsTotal, help: 'Values of protected columns that could not be encrypted (not valid input for their type)', registers }),
    decryptionErrorsTotal: new Counter({ name: MetricName.decryptionErrorsTotal, help: 'Stored values that failed to decrypt', registers }),
    statementsRefusedTotal: new Counter({ name: MetricName.statementsRefusedTotal, help: 'Statements pgveil refused (fail closed)', registers }),
    jwtVerificationsTotal: new Counter({ name: MetricName.jwtVerificationsTotal, help: 'SET IDENTITY token verifications by outcome: ok, or why the token was refused', labelNames: ['outcome'], registers }),
    jwksFetchesTotal: new Counter({ name: MetricName.jwksFetchesTotal, help: 'JWKS fetches from trusted issuers by outcome: ok, error', labelNames: ['outcome'], registers }),
    policyReloadsTotal: new Counter({ name: MetricName.policyReloadsTotal, help: 'Policy reloads by outcome: applied, unchanged, refused, failed', labelNames: ['outcome'], registers }),
    catalogReadsTotal: new Counter({ name: MetricName.catalogReadsTotal, help: "Reads of a database's catalog (protected columns and the views over them) by outcome: ok, error", labelNames: ['outcome'], registers }),
    auditLinesWrittenTotal: new Counter({
      name: MetricName.auditLinesWrittenTotal,
      help: 'Audit lines (events) handed to the audit destination, the chain_start/chain_end lines not included',
      registers,
      collect: collectAudit,
    }),
    beforeScrape,
    auditLinesDroppedTotal: new Counter({ name: MetricName.auditLinesDroppedTotal, help: 'Audit lines dropped because the destination was too slow or failing (each gap is announced by an audit_lines_dropped line)', registers }),
    auditSinkErrorsTotal: new Counter({ name: MetricName.auditSinkErrorsTotal, help: 'Write errors of the audit destination (full disk, closed pipe); a new chain starts after each', registers }),
    auditBacklogBytes: new Gauge({ name: MetricName.auditBacklogBytes, help: 'Audit bytes waiting for the destination to accept them', registers, collect: collectAudit }),
  }
}
