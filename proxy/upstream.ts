/**
 * Opens connections to the upstream PostgreSQL: TCP or Unix socket, then TLS as the
 * URI's `sslmode` / `sslrootcert` / `sslcert` / `sslkey` say (libpq semantics).
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import { SqlState, WireError } from '../protocol/errors.js'
import { encodeCancelRequest, encodeSSLRequest } from '../protocol/startup.js'
import { describeUpstream, type UpstreamTarget } from './upstream-url.js'

export interface UpstreamSocket {
  socket: net.Socket
  /** True when the connection is encrypted. */
  tls: boolean
}

/** TLS material read once per target (files are read at first use, then cached). */
interface TlsMaterial {
  ca: Buffer | undefined
  /** Built once per target: CA and client certificate are parsed on first use, not per connection. */
  secureContext: tls.SecureContext
}
const tlsMaterialCache = new WeakMap<UpstreamTarget, TlsMaterial>()

function tlsMaterial(target: UpstreamTarget): TlsMaterial {
  let material = tlsMaterialCache.get(target)
  if (material === undefined) {
    const read = (path: string | null, what: string): Buffer | undefined => {
      if (path === null || path === 'system') return undefined
      try {
        return readFileSync(path)
      } catch (error) {
        throw new WireError(SqlState.ConnectionFailure, `could not read upstream ${what} file "${path}": ${(error as Error).message}`)
      }
    }
    const ca = read(target.sslrootcert, 'sslrootcert')
    const cert = read(target.sslcert, 'sslcert')
    const key = read(target.sslkey, 'sslkey')
    const contextOptions: tls.SecureContextOptions = {}
    if (ca !== undefined) contextOptions.ca = ca
    if (cert !== undefined) contextOptions.cert = cert
    if (key !== undefined) contextOptions.key = key
    material = { ca, secureContext: tls.createSecureContext(contextOptions) }
    tlsMaterialCache.set(target, material)
  }
  return material
}

/** Where the upstream listens: a TCP host and port, or the Unix socket in a directory. */
export function socketAddress(target: UpstreamTarget): net.NetConnectOpts {
  return target.host.startsWith('/') ? { path: `${target.host}/.s.PGSQL.${target.port}` } : { host: target.host, port: target.port }
}

function connectFailure(target: UpstreamTarget, reason: string, cause?: unknown): WireError {
  return new WireError(SqlState.ConnectionFailure, `pgveil could not connect to the upstream PostgreSQL at ${describeUpstream(target)}: ${reason}`, {
    severity: 'FATAL',
    cause,
  })
}

/**
 * TLS options for `target` following libpq's sslmode (null: no TLS). `require` with an
 * sslrootcert verifies the chain, like libpq; verify-full also checks the host name.
 */
export function tlsConnectOptions(target: UpstreamTarget): tls.ConnectionOptions | null {
  if (target.host.startsWith('/') || target.sslmode === 'disable' || target.sslmode === 'allow') return null
  const material = tlsMaterial(target)
  const options: tls.ConnectionOptions = {
    rejectUnauthorized: target.sslmode === 'verify-ca' || target.sslmode === 'verify-full' || (target.sslmode === 'require' && material.ca !== undefined),
  }
  if (net.isIP(target.host) === 0) options.servername = target.host
  options.secureContext = material.secureContext
  if (target.sslmode !== 'verify-full') options.checkServerIdentity = () => undefined
  else if (net.isIP(target.host) !== 0) options.checkServerIdentity = (_name, cert) => tls.checkServerIdentity(target.host, cert)
  return options
}

/**
 * Connect and negotiate TLS. Rejects with a WireError (08006) naming the upstream,
 * at the latest after `timeoutMs`.
 */
export function connectUpstream(target: UpstreamTarget, timeoutMs: number): Promise<UpstreamSocket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket = net.connect(socketAddress(target))
    let settled = false
    const fail = (reason: string, cause?: unknown): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      reject(connectFailure(target, reason, cause))
    }
    const succeed = (encrypted: boolean): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.removeAllListeners('error')
      socket.removeAllListeners('data')
      socket.setNoDelay(true)
      socket.setKeepAlive(true, 60_000)
      resolve({ socket, tls: encrypted })
    }
    const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs)
    socket.once('error', (error: NodeJS.ErrnoException) => fail(error.code ?? error.message, error))

    const startTls = (): void => {
      let options: tls.ConnectionOptions | null
      try {
        options = tlsConnectOptions(target)
      } catch (error) {
        return fail((error as Error).message, error)
      }
      const secure = tls.connect({ ...options, socket })
      socket.removeAllListeners('error')
      socket = secure
      secure.once('error', (error: Error) => fail(`TLS handshake failed: ${error.message}`, error))
      secure.once('secureConnect', () => succeed(true))
    }

    socket.once('connect', () => {
      if (target.sslmode === 'disable' || target.sslmode === 'allow' || target.host.startsWith('/')) {
        succeed(false)
        return
      }
      socket.write(encodeSSLRequest())
      socket.once('data', (answer: Buffer) => {
        // More than one byte would be bytes injected before the handshake (CVE-2021-23222).
        if (answer.length !== 1) return fail('unexpected data in answer to SSLRequest')
        if (answer[0] === 0x53) return startTls()
        if (answer[0] === 0x4e) {
          if (target.sslmode === 'prefer') return succeed(false)
          return fail(`the server does not support SSL, but sslmode is ${target.sslmode}`)
        }
        return fail('unexpected answer to SSLRequest')
      })
    })
  })
}

/** Ask the upstream to cancel the running query of a backend. Best effort, like libpq's PQcancel. */
export async function sendUpstreamCancel(target: UpstreamTarget, timeoutMs: number, processId: number, secretKey: Buffer): Promise<void> {
  const { socket } = await connectUpstream(target, timeoutMs)
  await new Promise<void>((resolve) => {
    socket.once('error', () => resolve())
    socket.once('close', () => resolve())
    socket.end(encodeCancelRequest(processId, secretKey))
    setTimeout(() => {
      socket.destroy()
      resolve()
    }, timeoutMs).unref()
  })
}
