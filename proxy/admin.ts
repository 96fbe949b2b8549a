/**
 * The admin listener (admin.host:admin.port): /metrics for Prometheus, /healthz
 * (the process is alive) and /readyz (policy loaded, keys present, upstream
 * reachable), each with a status code and a JSON body.
 */
import http from 'node:http'
import net from 'node:net'
import type { Metrics } from '../audit/metrics.js'
import type { AdminConfig } from './config.js'
import type { Logger } from './log.js'
import { socketAddress } from './upstream.js'
import type { UpstreamTarget } from './upstream-url.js'

export interface AdminServer {
  readonly host: string
  readonly port: number
  close(): Promise<void>
}

export interface ReadinessSource {
  /** Protected columns are configured and their keys loaded (or nothing is protected). */
  policyReady(): boolean
  target: UpstreamTarget
  connectTimeoutMs: number
}

/** Upstream reachability, probed with a TCP connect at most once a second. */
function upstreamProbe(target: UpstreamTarget, timeoutMs: number): () => Promise<boolean> {
  let last: { at: number; ok: boolean } | null = null
  let inFlight: Promise<boolean> | null = null
  return () => {
    if (last !== null && Date.now() - last.at < 1_000) return Promise.resolve(last.ok)
    inFlight ??= new Promise<boolean>((resolve) => {
      const socket = net.connect(socketAddress(target))
      const done = (ok: boolean): void => {
        socket.destroy()
        resolve(ok)
      }
      socket.setTimeout(Math.min(timeoutMs, 2_000), () => done(false))
      socket.once('connect', () => done(true))
      socket.once('error', () => done(false))
    }).then((ok) => {
      last = { at: Date.now(), ok }
      inFlight = null
      return ok
    })
    return inFlight
  }
}

export async function startAdmin(config: AdminConfig, metrics: Metrics, readiness: ReadinessSource, logger: Logger): Promise<AdminServer> {
  const upstreamReachable = upstreamProbe(readiness.target, readiness.connectTimeoutMs)
  const json = (res: http.ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  }
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' })
    if (path === '/healthz') return json(res, 200, { status: 'ok' })
    if (path === '/readyz') {
      void upstreamReachable().then((upstream) => {
        const checks = { policy: readiness.policyReady(), upstream }
        const ready = checks.policy && checks.upstream
        json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks })
      })
      return
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (error: unknown) => json(res, 500, { error: (error as Error).message }),
      )
      return
    }
    json(res, 404, { error: 'not found', paths: ['/metrics', '/healthz', '/readyz'] })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as net.AddressInfo
  logger.info('admin listening', { host: address.address, port: address.port })
  return {
    host: address.address,
    port: address.port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
