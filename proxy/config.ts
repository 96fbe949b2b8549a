/**
 * pgveil's configuration: the typed result of loading the YAML file, the
 * environment overrides and the secret references. See config.example.yaml and the
 * README's configuration reference.
 */
import type { UpstreamTarget } from './upstream-url.js'

export interface ListenTlsConfig {
  /** PEM certificate chain file. */
  cert: string
  /** PEM private key file. */
  key: string
  /** Refuse clients that do not negotiate TLS. */
  require: boolean
}

export interface ListenConfig {
  host: string
  port: number
  tls: ListenTlsConfig | null
  /** Client connections beyond this get SQLSTATE 53300. */
  maxConnections: number
  /** Largest frontend message accepted, in bytes; larger ones get 08P01. */
  maxMessageSize: number
  /** On SIGTERM, how long sessions may take to finish before they are closed. */
  drainTimeoutMs: number
}

export interface UpstreamConfig {
  /** Resolved (secret references expanded); null means "start the embedded PostgreSQL". */
  url: string | null
  /** Parsed form of `url`. */
  target: UpstreamTarget | null
  /** Time allowed to open the upstream connection (TCP, TLS) before the client gets 08006. */
  connectTimeoutMs: number
}

export interface AdminConfig {
  host: string
  port: number
}

export interface PgveilConfig {
  /** Where the configuration came from (file path, or "defaults"). */
  source: string
  listen: ListenConfig
  upstream: UpstreamConfig
  mode: 'session'
  admin: AdminConfig | null
}
