import pg from 'pg'
import { writeFileSync } from 'node:fs'
const { startPostgresServer, freePort } = await import('/work/main/dist/bench/postgres-server.js')
const { spawnPgveil, waitForPgveil, stopPgveil } = await import('/work/main/dist/bench/pgveil-process.js')
const server = await startPostgresServer({ logStatements: false, label: 'lat', externalUrl: '' })
async function measure(port, label) {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' })
  await c.connect()
  for (let i = 0; i < 300; i++) await c.query(`SET application_name TO 'w${i}'`)
  const t = []
  for (let i = 0; i < 4000; i++) { const s = process.hrtime.bigint(); await c.query(`SET application_name TO 'b${i}'`); t.push(Number(process.hrtime.bigint() - s) / 1e6) }
  t.sort((a, b) => a - b)
  console.log(label, 'p50', t[2000].toFixed(3), 'p99', t[3960].toFixed(3), 'slow>1ms', t.filter((x) => x > 1).length)
  await c.end()
}
await measure(server.port, 'direct        ')
for (const [label, extra] of [['pgveil plain  ', ''], ['pgveil ident  ', 'identity:\n  issuers:\n    - issuer: http://127.0.0.1:9\n      audience: [bench]\n      algorithms: [RS256]\n']]) {
  const port = await freePort()
  writeFileSync('/tmp/lat.yaml', `listen: {host: 127.0.0.1, port: ${port}}\nupstream: {url: "postgres://postgres@127.0.0.1:${server.port}/postgres?sslmode=disable"}\n${extra}`)
  const child = spawnPgveil('/tmp/lat.yaml')
  await waitForPgveil(port, child)
  await measure(port, label)
  await stopPgveil(child)
}
await server.stop?.(); process.exit(0)
