import { AuditSink } from './dist/audit/sink.js'
import { createMetrics } from './dist/audit/metrics.js'
import { StatementSummarizer } from './dist/audit/statement-summary.js'
import { SessionAudit, StatementMetrics } from './dist/proxy/statement-audit.js'
import { serialize } from 'pg-protocol'
const metrics = createMetrics()
const sink = AuditSink.open({ to: process.env.AUDIT_TO ?? '/tmp/auditprof/b.log', chainKey: Buffer.alloc(32, 1), metrics })
const ctx = { sink, summarizer: await StatementSummarizer.create(null), metrics, statementMetrics: new StatementMetrics(metrics) }
const audit = new SessionAudit(() => ctx, 1, '127.0.0.1:1234')
audit.startup('postgres', 'postgres', 'pgbench')
const parse = serialize.parse({ name: 'P0_1', text: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', types: [] })
audit.onClientFrame(parse, 0, parse.length)
const pc = Buffer.from([0x31, 0, 0, 0, 4]); audit.onClientBound(pc, 0, 5)
const bind = serialize.bind({ portal: '', statement: 'P0_1', values: ['123'] })
const exec = serialize.execute({ portal: '' })
const sync = serialize.sync()
const bc = Buffer.from([0x32, 0, 0, 0, 4])
const cc = Buffer.concat([Buffer.from([0x43, 0, 0, 0, 13]), Buffer.from('SELECT 1\0')])
const rfq = Buffer.from([0x5a, 0, 0, 0, 5, 0x49])
const N = 100000
const cpu0 = process.cpuUsage(); const t0 = performance.now()
for (let i = 0; i < N; i++) {
  audit.onClientFrame(bind, 0, bind.length); audit.onClientFrame(exec, 0, exec.length); audit.onClientFrame(sync, 0, sync.length)
  audit.onClientBound(bc, 0, 5); audit.onClientBound(cc, 0, cc.length); audit.onClientBound(rfq, 0, 6)
  if (i % 50 === 0) await new Promise(r => setImmediate(r))
}
const t1 = performance.now(); const cpu1 = process.cpuUsage(cpu0)
await sink.close()
const cpu2 = process.cpuUsage(cpu0)
console.log('main loop us/stmt', ((t1 - t0) * 1000 / N).toFixed(2), 'cpu(all threads) us/stmt until loop end', ((cpu1.user + cpu1.system) / N).toFixed(2), 'incl. close', ((cpu2.user + cpu2.system) / N).toFixed(2))
