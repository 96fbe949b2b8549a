/**
 * The upstream PostgreSQL as named by `upstream.url`: a libpq-style connection URI.
 * Only the parameters pgveil acts on are accepted; anything else is an error so a
 * typo never silently weakens TLS.
 */

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const
export type SslMode = (typeof SSL_MODES)[number]

export interface UpstreamTarget {
  /** Host name or IP; a value starting with '/' is a Unix-socket directory. */
  host: string
  port: number
  /** pgveil's own credentials, for its catalog connection and `pgveil check`. */
  user: string | null
  password: string | null
  database: string | null
  sslmode: SslMode
  sslrootcert: string | null
  sslcert: string | null
  sslkey: string | null
  /** From `connect_timeout` in the URI (seconds), when given. */
  connectTimeoutMs: number | null
}

const KNOWN_PARAMS = new Set(['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'connect_timeout', 'host', 'port', 'user', 'password', 'dbname', 'application_name'])

/** Parses `postgres://user:pass@host:port/db?sslmode=…`. Throws TypeError/RangeError with a message fit for the operator. */
export function parseUpstreamUrl(raw: string): UpstreamTarget {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new TypeError('is not a valid URL (expected postgres://user:password@host:5432/database?sslmode=prefer)')
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new TypeError(`has scheme "${url.protocol.replace(/:$/, '')}" (expected postgres:// or postgresql://)`)
  }
  for (const key of url.searchParams.keys()) {
    if (!KNOWN_PARAMS.has(key)) throw new TypeError(`has unsupported parameter "${key}" (supported: ${[...KNOWN_PARAMS].join(', ')})`)
  }
  const param = (name: string): string | null => {
    const value = url.searchParams.get(name)
    return value === null || value === '' ? null : value
  }
  let host = param('host') ?? decodeURIComponent(url.hostname)
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  if (host === '') host = 'localhost'
  const portText = param('port') ?? (url.port === '' ? '5432' : url.port)
  const port = Number(portText)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`has invalid port "${portText}"`)
  const sslmodeText = param('sslmode') ?? 'prefer'
  if (!(SSL_MODES as readonly string[]).includes(sslmodeText)) {
    throw new TypeError(`has sslmode "${sslmodeText}" (expected one of ${SSL_MODES.join(', ')})`)
  }
  let connectTimeoutMs: number | null = null
  const timeoutText = param('connect_timeout')
  if (timeoutText !== null) {
    const seconds = Number(timeoutText)
    if (!Number.isFinite(seconds) || seconds <= 0) throw new RangeError(`has invalid connect_timeout "${timeoutText}" (seconds, > 0)`)
    connectTimeoutMs = Math.round(seconds * 1000)
  }
  const path = decodeURIComponent(url.pathname.replace(/^\//, ''))
  return {
    host,
    port,
    user: param('user') ?? (url.username === '' ? null : decodeURIComponent(url.username)),
    password: param('password') ?? (url.password === '' ? null : decodeURIComponent(url.password)),
    database: param('dbname') ?? (path === '' ? null : path),
    sslmode: sslmodeText as SslMode,
    sslrootcert: param('sslrootcert'),
    sslcert: param('sslcert'),
    sslkey: param('sslkey'),
    connectTimeoutMs,
  }
}

/** How the upstream is named in messages and logs: never includes the password. */
export function describeUpstream(target: UpstreamTarget): string {
  return target.host.startsWith('/') ? `${target.host}/.s.PGSQL.${target.port}` : `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`
}
