import { spawnSync, spawn } from 'node:child_process'
import { startPostgresServer } from './dist/bench/postgres-server.js'
import { startProxy } from './dist/proxy/server.js'
import { parseConfig } from './dist/proxy/config.js'
import { silentLogger } from './dist/proxy/log.js'
const server = await startPostgresServer({ logStatements: false, label: 'prof', externalUrl: '' })
const bin = server.binDir ? `${server.binDir}/pgbench` : 'pgbench'
spawnSync(bin, ['-h', '127.0.0.1', '-p', String(server.port), '-U', 'postgres', '-i', '-q', '-s', '2', 'postgres'])
process.env.PROF_KEY = Buffer.alloc(32, 7).toString('base64')
const audit = process.argv[2] === 'audit'
const config = parseConfig(`listen: {host: 127.0.0.1, port: 0}\nupstream: {url: "postgres://postgres@127.0.0.1:${server.port}/postgres?sslmode=disable"}\n${audit ? `audit: {to: ${process.env.AUDIT_TO ?? '/tmp/auditprof/a.log'}, chain_key: "env:PROF_KEY"}\n` : ''}`, 'x.yaml', process.env)
const proxy = await startProxy(config, { logger: silentLogger })
const cpu0 = process.cpuUsage()
const r = await new Promise((resolve) => { const c = spawn(bin, ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', '-S', '-n', '-c', '8', '-j', '2', '-T', '5', '-M', 'prepared', 'postgres']); let o=''; c.stdout.on('data', d => o += d); c.on('close', () => resolve(o)) })
const cpu = process.cpuUsage(cpu0); const tps = Number(/tps = ([\d.]+)/.exec(r)?.[1]); console.log(audit ? 'audit' : 'plain', tps.toFixed(0), 'tps', ((cpu.user + cpu.system) / (tps * 5)).toFixed(1), 'us cpu/txn')
await proxy.close()
await server.stop()
