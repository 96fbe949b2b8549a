/**
 * SET IDENTITY latency (DESIGN.md budget: p99 under 2 ms with a cached JWKS):
 * round trips of `SET IDENTITY TO '<jwt>'` through pgveil, each with a different
 * token, against `SET application_name` through the same pgveil (a SET PostgreSQL
 * answers) as the baseline. A JWKS server on 127.0.0.1 serves the issuer's key;
 * it is fetched once, before the measured runs.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import pg from 'pg'
import { spawnPgveil, waitForPgveil } from './pgveil-process.js'
import { percentile } from './stats.js'
import { freePort, type PostgresServer } from './postgres-server.js'

export const SET_IDENTITY_P99_BUDGET_MS = 2

export interface SetIdentityResult {
  algorithm: string
  count: number
  identity: { p50Ms: number; p99Ms: number }
  baseline: { p50Ms: number; p99Ms: number }
}

function summary(samples: number[]): { p50Ms: number; p99Ms: number } {
  const sorted = [...samples].sort((a, b) => a - b)
  return { p50Ms: percentile(sorted, 0.5) ?? 0, p99Ms: percentile(sorted, 0.99) ?? 0 }
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint()
  await run()
  return Number(process.hrtime.bigint() - started) / 1e6
}

export async function measureSetIdentity(options: { server: PostgresServer; workDir: string; count: number; algorithm?: 'RS256' | 'ES256' | 'EdDSA'; log: (line: string) => void }): Promise<SetIdentityResult> {
  const algorithm = options.algorithm ?? 'RS256'
  const { privateKey, publicKey } = await generateKeyPair(algorithm, algorithm === 'EdDSA' ? { crv: 'Ed25519' } : {})
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: algorithm }
  const jwks = http.createServer((_request, response) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })))
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}`

  const port = await freePort()
  const config = join(options.workDir, 'pgveil-identity.yaml')
  await writeFile(config, `listen: {host: 127.0.0.1, port: ${port}}
upstream: {url: "postgres://postgres@127.0.0.1:${options.server.port}/postgres?sslmode=disable"}
identity:
  issuers:
    - issuer: ${issuer}
      audience: [bench]
      algorithms: [${algorithm}]
`)
  const child = spawnPgveil(config)
  try {
    await waitForPgveil(port, child)
    const now = Math.floor(Date.now() / 1000)
    options.log(`SET IDENTITY: signing ${options.count} ${algorithm} tokens`)
    const tokens: string[] = []
    for (let i = 0; i < options.count; i++) {
      tokens.push(await new SignJWT({ sub: `user-${i}`, scope: 'read write' }).setProtectedHeader({ alg: algorithm, kid: 'bench' }).setIssuer(issuer).setAudience('bench').setIssuedAt(now).setExpirationTime(now + 3600).sign(privateKey))
    }
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' })
    await client.connect()
    try {
      // Warm-up: the JWKS fetch, JIT, PostgreSQL's caches.
      for (let i = 0; i < Math.min(200, tokens.length); i++) {
        await client.query(`SET IDENTITY TO '${tokens[i]!}'`)
        await client.query(`SET application_name TO 'bench-${i}'`)
      }
      const identity: number[] = []
      const baseline: number[] = []
      // Interleaved, so drift hits both alike.
      for (let i = 0; i < tokens.length; i++) {
        identity.push(await timed(() => client.query(`SET IDENTITY TO '${tokens[i]!}'`)))
        baseline.push(await timed(() => client.query(`SET application_name TO 'bench-${i}'`)))
      }
      const shown = await client.query<{ identity: string }>('SHOW IDENTITY')
      if (!shown.rows[0]!.identity.includes(`user-${tokens.length - 1}`)) throw new Error('SET IDENTITY did not take effect')
      return { algorithm, count: tokens.length, identity: summary(identity), baseline: summary(baseline) }
    } finally {
      await client.end()
    }
  } finally {
    child.kill('SIGTERM')
    jwks.closeAllConnections()
    jwks.close()
  }
}

export function setIdentityReport(result: SetIdentityResult): string {
  const { identity, baseline } = result
  return [
    `SET IDENTITY latency — ${result.count} round trips with distinct ${result.algorithm} tokens, cached JWKS, one node-postgres client (simple protocol)`,
    `  SET IDENTITY (verified by pgveil)       p50 ${identity.p50Ms.toFixed(3)} ms   p99 ${identity.p99Ms.toFixed(3)} ms`,
    `  SET application_name (PostgreSQL's)     p50 ${baseline.p50Ms.toFixed(3)} ms   p99 ${baseline.p99Ms.toFixed(3)} ms`,
    `SET IDENTITY p99 < ${SET_IDENTITY_P99_BUDGET_MS} ms: ${identity.p99Ms < SET_IDENTITY_P99_BUDGET_MS ? 'PASS' : 'FAIL'} (${identity.p99Ms.toFixed(3)} ms)`,
  ].join('\n')
}
