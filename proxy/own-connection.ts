/**
 * Connections pgveil opens with its own credentials (the user and password of
 * `upstream.url`): `pgveil check` and the catalog map. node-postgres speaks the
 * protocol; TLS follows libpq's sslmode exactly as the proxy's upstream hop does.
 */
import pg from 'pg'
import { tlsConnectOptions } from './upstream.js'
import type { UpstreamTarget } from './upstream-url.js'

export interface OwnConnectionOptions {
  /** Defaults to the database of `upstream.url`. */
  database?: string
  timeoutMs: number
  applicationName: string
}

/** A failure to connect, with a message fit for an operator (no password). */
export class OwnConnectionError extends Error {
  /** The server answered (authentication, unknown database, …) rather than being unreachable. */
  readonly answered: boolean
  readonly sqlState: string | null
  constructor(message: string, answered: boolean, sqlState: string | null, cause: unknown) {
    super(message, { cause })
    this.name = 'OwnConnectionError'
    this.answered = answered
    this.sqlState = sqlState
  }
}

export interface OwnConnection {
  client: pg.Client
  tls: boolean
}

export async function connectAsPgveil(target: UpstreamTarget, options: OwnConnectionOptions): Promise<OwnConnection> {
  const ssl = tlsConnectOptions(target)
  try {
    return await attempt(target, options, ssl)
  } catch (error) {
    // sslmode=prefer: a server without TLS is fine; try again in plaintext.
    if (ssl !== null && target.sslmode === 'prefer' && /does not support SSL/i.test((error as Error).message)) return attempt(target, options, null)
    throw describe(error, target)
  }
}

async function attempt(target: UpstreamTarget, options: OwnConnectionOptions, ssl: pg.ClientConfig['ssl'] | null): Promise<OwnConnection> {
  const config: pg.ClientConfig = {
    host: target.host,
    port: target.port,
    connectionTimeoutMillis: options.timeoutMs,
    ssl: ssl ?? false,
    application_name: options.applicationName,
  }
  if (target.user !== null) config.user = target.user
  if (target.password !== null) config.password = target.password
  const database = options.database ?? target.database
  if (database !== null) config.database = database
  const client = new pg.Client(config)
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (error) {
    await client.end().catch(() => {})
    throw error
  }
  return { client, tls: ssl !== null }
}

function describe(error: unknown, target: UpstreamTarget): OwnConnectionError {
  const err = error as Error & { code?: string }
  if (/does not support SSL/i.test(err.message)) {
    return new OwnConnectionError(`reachable, but it does not support TLS (sslmode=${target.sslmode})`, true, null, error)
  }
  // A SQLSTATE means the server answered: authentication, database, role.
  if (typeof err.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code)) {
    return new OwnConnectionError(`reachable, but the connection was refused: ${err.message} (SQLSTATE ${err.code})`, true, err.code, error)
  }
  return new OwnConnectionError(`not reachable: ${err.message}`, false, null, error)
}
