/**
 * pgveil's configuration: the typed result of loading the YAML file, the
 * environment overrides and the secret references. See config.example.yaml and the
 * README's configuration reference.
 *
 * Everything is validated once, here, at load: unknown keys (typos), wrong types,
 * out-of-range numbers, unreadable TLS files, unresolvable secret references and a
 * malformed upstream URL are all collected and thrown together as one ConfigError
 * whose lines read `FILE:LINE:COL: key.path: what is wrong (what is expected)`, or
 * `PGVEIL_LISTEN__PORT: listen.port: …` for a value that came from the environment.
 */
import { accessSync, constants as fsConstants, existsSync, readFileSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml'
import { KeyringError } from '../policy/errors.js'
import { decodeKey, Keyring, ROOT_KEY_LENGTH, type KeysConfig } from '../policy/keyring.js'
import { INDEX_NORMALIZATIONS, Policy, splitTableName, type ColumnPolicy, type IndexNormalization } from '../policy/policy.js'
import { AccessRules, DENIAL_KINDS, MASK_STYLES, type ClaimCondition, type ColumnAccessRule, type DenialKind, type MaskStyle } from '../policy/access.js'
import { ASYMMETRIC_ALGORITHMS, checkJwksUri, DEFAULT_ALGORITHMS, HMAC_ALGORITHMS, type IdentityConfig, type IssuerConfig, type OnExpiry } from '../policy/identity.js'
import { POLICY_TYPES, policyTypeFromName } from '../protocol/types.js'
import { parseUpstreamUrl, type UpstreamTarget } from './upstream-url.js'

export interface ListenTlsConfig {
  /** PEM certificate chain file (absolute path, checked readable at load). */
  cert: string
  /** PEM private key file (absolute path, checked readable at load). */
  key: string
  /** Refuse clients that do not negotiate TLS. */
  require: boolean
}

export interface ListenConfig {
  host: string
  /** 0 means "any free port" (tests); the server reports the port it got. */
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

export interface AuditConfig {
  /** `stdout`, or an absolute file path (appended to). */
  to: string
  /** The chain's seed key (32 bytes, from a secret reference). */
  chainKey: Buffer
  /** Bytes that may wait for the destination before new lines are dropped (and counted). */
  maxBacklogBytes: number
}

export interface PgveilConfig {
  /** Where the configuration came from (absolute file path, or "defaults"). */
  source: string
  listen: ListenConfig
  upstream: UpstreamConfig
  mode: 'session'
  admin: AdminConfig | null
  /** The protected columns (`tables:`); empty when nothing is protected. */
  policy: Policy
  /** Root keys (`keys:`); null when no column is protected. */
  keyring: Keyring | null
  /** Verified identity (`identity:`); absent or null: SET IDENTITY is refused, nothing is required. */
  identity?: IdentityConfig | null
  /** Access rules on protected columns (`access:`); absent: every reader gets the plaintext. */
  access?: AccessRules
  /** The audit log (`audit:`); null when off. */
  audit: AuditConfig | null
  /**
   * Things the operator wrote that this version accepts but does not act on (for
   * example `identity.issuers`), in the same `FILE:LINE:COL: key: …` form as
   * errors. Callers should log them as warnings.
   */
  warnings?: readonly string[]
}

/** Every problem found while loading, one per line of the message. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID' as const
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super(`invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${problems.join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export const DEFAULT_LISTEN_HOST = '127.0.0.1'
export const DEFAULT_LISTEN_PORT = 6432
export const DEFAULT_MAX_CONNECTIONS = 100
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
export const MIN_MAX_MESSAGE_SIZE = 1024
/** PostgreSQL's own ceiling for one message (MaxAllocSize - 1). */
export const MAX_MAX_MESSAGE_SIZE = 1073741823
export const DEFAULT_DRAIN_TIMEOUT_SECONDS = 30
export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 5
export const DEFAULT_ADMIN_HOST = '127.0.0.1'
export const DEFAULT_ADMIN_PORT = 9930
export const DEFAULT_AUDIT_MAX_BACKLOG = 16 * 1024 * 1024
export const AUDIT_CHAIN_KEY_BYTES = ROOT_KEY_LENGTH

// ---------------------------------------------------------------------------
// Secret references

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** True for `env:NAME` and `file:PATH`, the two forms a secret may take. */
export function isSecretReference(value: string): boolean {
  return value.startsWith('env:') || value.startsWith('file:')
}

/**
 * Resolves `env:NAME` (the variable's value) or `file:PATH` (the file's content,
 * trailing newlines trimmed; a relative PATH is taken from `baseDir`, default the
 * working directory). Throws TypeError/RangeError whose message names the variable
 * or file, never the secret.
 */
export function resolveSecretReference(value: string, env: NodeJS.ProcessEnv, options: { baseDir?: string } = {}): string {
  if (value.startsWith('env:')) {
    const name = value.slice(4)
    if (!ENV_NAME.test(name)) throw new TypeError(`"env:${name}" does not name an environment variable (expected env:NAME, NAME made of letters, digits and _)`)
    const resolved = env[name]
    if (resolved === undefined) throw new RangeError(`environment variable ${name} is not set (expected it to hold the secret)`)
    if (resolved === '') throw new RangeError(`environment variable ${name} is empty (expected it to hold the secret)`)
    return resolved
  }
  if (value.startsWith('file:')) {
    const file = value.slice(5)
    if (file === '') throw new TypeError('"file:" names no file (expected file:PATH)')
    const full = path.resolve(options.baseDir ?? process.cwd(), file)
    let content: string
    try {
      content = readFileSync(full, 'utf8')
    } catch (error) {
      throw new RangeError(`cannot read secret file ${full}: ${describeFsError(error)} (expected a readable file holding the secret)`)
    }
    content = content.replace(/(\r?\n)+$/, '')
    if (content === '') throw new RangeError(`secret file ${full} is empty (expected it to hold the secret)`)
    return content
  }
  throw new TypeError('is not a secret reference (expected env:NAME or file:PATH)')
}

// ---------------------------------------------------------------------------
// The document as a tree of nodes that remember where they came from

/** A position in the file (1-based) or the environment variable that set the value. */
type Origin = { readonly line: number; readonly col: number } | { readonly env: string }

type RawNode = RawScalar | RawMapping | RawSequence
interface RawScalar {
  readonly kind: 'scalar'
  readonly value: unknown
  readonly at: Origin
}
interface RawMapping {
  readonly kind: 'map'
  readonly entries: Map<string, RawEntry>
  readonly at: Origin
}
interface RawSequence {
  readonly kind: 'seq'
  readonly items: RawNode[]
  readonly at: Origin
}
interface RawEntry {
  readonly keyAt: Origin
  readonly node: RawNode
}

/** Guards against alias bombs: a configuration file is small. */
const MAX_NODES = 100_000
const MAX_DEPTH = 64

class DocumentReader {
  private count = 0
  constructor(
    private readonly doc: Document.Parsed,
    private readonly lineCounter: LineCounter,
  ) {}

  at(offset: number | undefined): Origin {
    const { line, col } = this.lineCounter.linePos(offset ?? 0)
    return { line: Math.max(line, 1), col: Math.max(col, 1) }
  }

  read(node: unknown, fallbackAt: Origin, depth = 0): RawNode {
    if (++this.count > MAX_NODES || depth > MAX_DEPTH) throw new RangeError('the document is too large or too deeply nested (aliases?)')
    if (isAlias(node)) return this.read(node.resolve(this.doc), this.at(node.range?.[0]), depth + 1)
    if (isMap(node)) {
      const entries = new Map<string, RawEntry>()
      const at = this.at(node.range?.[0])
      for (const pair of node.items) {
        const keyAt = isScalar(pair.key) || isMap(pair.key) || isSeq(pair.key) ? this.at(pair.key.range?.[0]) : at
        const key = isScalar(pair.key) ? String(pair.key.value) : '[complex key]'
        entries.set(key, { keyAt, node: this.read(pair.value, keyAt, depth + 1) })
      }
      return { kind: 'map', entries, at }
    }
    if (isSeq(node)) {
      const at = this.at(node.range?.[0])
      return { kind: 'seq', items: node.items.map((item) => this.read(item, at, depth + 1)), at }
    }
    if (isScalar(node)) return { kind: 'scalar', value: node.value, at: this.at(node.range?.[0]) }
    return { kind: 'scalar', value: null, at: fallbackAt }
  }
}

// ---------------------------------------------------------------------------
// The schema (snake_case, as written in YAML)

const TOP_LEVEL_KEYS = ['listen', 'upstream', 'mode', 'admin', 'keys', 'tables', 'identity', 'access', 'audit'] as const
const LISTEN_KEYS = ['host', 'port', 'tls', 'max_connections', 'max_message_size', 'drain_timeout'] as const
const TLS_KEYS = ['cert', 'key', 'require'] as const
const UPSTREAM_KEYS = ['url', 'connect_timeout'] as const
const ADMIN_KEYS = ['host', 'port'] as const
const KEYS_KEYS = ['current', 'versions', 'index'] as const
const IDENTITY_KEYS = ['require', 'issuers', 'clock_tolerance', 'max_token_size', 'on_expiry', 'forward_claims', 'jwks_refresh', 'jwks_refetch_cooldown', 'jwks_timeout'] as const
const ISSUER_KEYS = ['issuer', 'audience', 'jwks_uri', 'algorithms', 'secret'] as const
const ACCESS_RULE_KEYS = ['read', 'otherwise', 'mask', 'write'] as const
const AUDIT_KEYS = ['to', 'chain_key', 'max_backlog'] as const
/**
 * Keys of the sections later versions act on; used only to recognise an
 * environment variable written with one underscore where two were meant.
 */
const FUTURE_KEYS: Record<string, readonly string[]> = {
  keys: ['current', 'versions', 'index'],
  tables: [],
  identity: IDENTITY_KEYS,
  access: [],
}
const KNOWN_KEYS: Record<string, readonly string[]> = {
  listen: LISTEN_KEYS,
  upstream: UPSTREAM_KEYS,
  mode: [],
  admin: ADMIN_KEYS,
  audit: AUDIT_KEYS,
  ...FUTURE_KEYS,
}

// ---------------------------------------------------------------------------
// Validation context

class Checker {
  private readonly found: { at: Origin; line: string }[] = []
  private readonly noted: { at: Origin; line: string }[] = []
  constructor(
    private readonly source: string,
    /** Directory relative paths in the file are taken from. */
    private readonly fileDir: string,
    /** Directory relative paths from the environment are taken from. */
    private readonly cwd: string,
  ) {}

  where(at: Origin): string {
    return 'env' in at ? at.env : `${this.source}:${at.line}:${at.col}`
  }

  problem(at: Origin, keyPath: string, text: string): void {
    this.found.push({ at, line: `${this.where(at)}: ${keyPath}: ${text}` })
  }

  warn(at: Origin, keyPath: string, text: string): void {
    this.noted.push({ at, line: `${this.where(at)}: ${keyPath}: ${text}` })
  }

  /** In file order, then the environment's by variable name. */
  get problems(): string[] {
    return sortByOrigin(this.found)
  }

  get warnings(): string[] {
    return sortByOrigin(this.noted)
  }

  baseDir(at: Origin): string {
    return 'env' in at ? this.cwd : this.fileDir
  }

  /** The mapping at `key` of `parent`; undefined when absent, null when written as null, undefined (after a problem) when not a mapping. */
  mapping(parent: RawMapping, key: string, keyPath: string, known: readonly string[] | null, expected: string): RawMapping | null | undefined {
    const entry = parent.entries.get(key)
    if (entry === undefined) return undefined
    const node = entry.node
    if (node.kind === 'scalar' && node.value === null) return null
    if (node.kind !== 'map') {
      this.problem(node.at, keyPath, `${describe(node)} is not a mapping (expected ${expected})`)
      return undefined
    }
    if (known !== null) this.unknownKeys(node, keyPath, known)
    return node
  }

  unknownKeys(node: RawMapping, keyPath: string, known: readonly string[]): void {
    for (const [key, entry] of node.entries) {
      if (known.includes(key)) continue
      const near = nearest(key, known)
      const hint = near === null ? '' : `; did you mean "${near}"?`
      this.problem(entry.keyAt, keyPath === '' ? key : `${keyPath}.${key}`, `unknown key (expected one of: ${known.join(', ')}${hint})`)
    }
  }

  /** The node at `key`, or undefined when absent or null (meaning "the default"). */
  present(parent: RawMapping | null | undefined, key: string): RawNode | undefined {
    const node = parent?.entries.get(key)?.node
    if (node === undefined || (node.kind === 'scalar' && node.value === null)) return undefined
    return node
  }

  string(parent: RawMapping | null | undefined, key: string, keyPath: string, fallback: string, expected: string): string {
    const node = this.present(parent, key)
    if (node === undefined) return fallback
    if (node.kind !== 'scalar' || typeof node.value !== 'string') {
      this.problem(node.at, keyPath, `${describe(node)} is not a string (expected ${expected})`)
      return fallback
    }
    if (node.value.trim() === '') {
      this.problem(node.at, keyPath, `is empty (expected ${expected})`)
      return fallback
    }
    return node.value
  }

  integer(parent: RawMapping | null | undefined, key: string, keyPath: string, fallback: number, min: number, max: number, expected: string): number {
    const node = this.present(parent, key)
    if (node === undefined) return fallback
    if (node.kind !== 'scalar' || typeof node.value !== 'number' || !Number.isInteger(node.value)) {
      this.problem(node.at, keyPath, `${describe(node)} is not an integer (expected ${expected})`)
      return fallback
    }
    if (node.value < min || node.value > max) {
      this.problem(node.at, keyPath, `${node.value} is out of range (expected ${expected})`)
      return fallback
    }
    return node.value
  }

  /** A positive, finite number of seconds, returned in milliseconds. */
  seconds(parent: RawMapping | null | undefined, key: string, keyPath: string, fallbackSeconds: number): number {
    const expected = 'a number of seconds greater than 0, such as 5 or 0.5'
    const node = this.present(parent, key)
    if (node === undefined) return fallbackSeconds * 1000
    if (node.kind !== 'scalar' || typeof node.value !== 'number' || !Number.isFinite(node.value)) {
      this.problem(node.at, keyPath, `${describe(node)} is not a number (expected ${expected})`)
      return fallbackSeconds * 1000
    }
    if (node.value <= 0 || node.value * 1000 > 2 ** 31 - 1) {
      this.problem(node.at, keyPath, `${node.value} is out of range (expected ${expected}, at most 2147483)`)
      return fallbackSeconds * 1000
    }
    return Math.max(1, Math.round(node.value * 1000))
  }

  boolean(parent: RawMapping | null | undefined, key: string, keyPath: string, fallback: boolean): boolean {
    const node = this.present(parent, key)
    if (node === undefined) return fallback
    if (node.kind !== 'scalar' || typeof node.value !== 'boolean') {
      this.problem(node.at, keyPath, `${describe(node)} is not a boolean (expected true or false)`)
      return fallback
    }
    return node.value
  }

  /** A path to a file that must be readable now; returned absolute. */
  readableFile(parent: RawMapping, key: string, keyPath: string, what: string): string {
    const expected = `a path to a readable ${what} file`
    const node = parent.entries.get(key)?.node
    if (node === undefined || (node.kind === 'scalar' && node.value === null)) {
      this.problem(parent.at, keyPath, `missing (expected ${expected})`)
      return ''
    }
    if (node.kind !== 'scalar' || typeof node.value !== 'string' || node.value === '') {
      this.problem(node.at, keyPath, `${describe(node)} is not a path (expected ${expected})`)
      return ''
    }
    const full = path.resolve(this.baseDir(node.at), node.value)
    try {
      if (statSync(full).isDirectory()) {
        this.problem(node.at, keyPath, `${full} is a directory (expected ${expected})`)
        return full
      }
      accessSync(full, fsConstants.R_OK)
    } catch (error) {
      this.problem(node.at, keyPath, `cannot read ${full}: ${describeFsError(error)} (expected ${expected})`)
    }
    return full
  }
}

function sortByOrigin(items: readonly { at: Origin; line: string }[]): string[] {
  const rank = (at: Origin): [number, number, string] => ('env' in at ? [Infinity, 0, at.env] : [at.line, at.col, ''])
  return [...items]
    .sort((a, b) => {
      const [la, ca, ea] = rank(a.at)
      const [lb, cb, eb] = rank(b.at)
      return la !== lb ? la - lb : ca !== cb ? ca - cb : ea < eb ? -1 : ea > eb ? 1 : 0
    })
    .map((item) => item.line)
}

function describe(node: RawNode): string {
  if (node.kind === 'map') return 'a mapping'
  if (node.kind === 'seq') return 'a list'
  const value = node.value
  if (typeof value === 'string') {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value
    return `the string ${JSON.stringify(shown)}`
  }
  if (value === null || value === undefined) return 'null'
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  return `a value of type ${typeof value}`
}

/** Like describe(), but never shows the value: for settings that may hold secrets. */
function describeType(node: RawNode): string {
  if (node.kind !== 'scalar') return describe(node)
  const value = node.value
  if (typeof value === 'string') return 'a string'
  if (typeof value === 'number') return 'a number'
  if (typeof value === 'boolean') return 'a boolean'
  return describe(node)
}

function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | null)?.code
  switch (code) {
    case 'ENOENT':
      return 'no such file'
    case 'EACCES':
    case 'EPERM':
      return 'permission denied'
    case 'EISDIR':
      return 'is a directory'
    default:
      return code ?? (error instanceof Error ? error.message : String(error))
  }
}

/** The known key within edit distance 2 of `key`, for "did you mean". */
function nearest(key: string, known: readonly string[]): string | null {
  let best: string | null = null
  let bestDistance = 3
  for (const candidate of known) {
    const distance = editDistance(key, candidate)
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution))
    }
    previous = current
  }
  return previous[b.length] ?? 0
}

// ---------------------------------------------------------------------------
// Environment overrides

const ENV_PREFIX = 'PGVEIL_'

/** Variables with the prefix that are not settings. */
function isReservedEnvName(name: string): boolean {
  return name === 'PGVEIL_CONFIG' || name.startsWith('PGVEIL_TEST_') || name.startsWith('PGVEIL_BENCH_')
}

/**
 * Environment values are YAML scalars ("6432" is a number, "true" a boolean, ""
 * or "null" is null) but a plain string is taken verbatim, so that a URL or a
 * path is never altered by YAML's rules for comments or quoting.
 */
function parseEnvValue(raw: string): unknown {
  const doc = parseDocument(raw)
  if (doc.errors.length > 0) return raw
  const scalar = doc.contents
  if (scalar === null) return null
  if (!isScalar(scalar)) return raw
  if (typeof scalar.value !== 'string') return scalar.value
  return scalar.type === 'QUOTE_DOUBLE' || scalar.type === 'QUOTE_SINGLE' ? scalar.value : raw
}

/** Writes PGVEIL_A__B=… into `root` at a.b, replacing what the file had there. */
function applyEnvOverrides(root: RawMapping, env: NodeJS.ProcessEnv, checker: Checker): void {
  const names = Object.keys(env)
    .filter((name) => name.startsWith(ENV_PREFIX) && !isReservedEnvName(name))
    .sort()
  for (const name of names) {
    const raw = env[name]
    if (raw === undefined) continue
    const at: Origin = { env: name }
    const rest = name.slice(ENV_PREFIX.length)
    const segments = rest.split('__').map((segment) => segment.toLowerCase())
    const first = segments[0] ?? ''
    if (!(TOP_LEVEL_KEYS as readonly string[]).includes(first)) {
      // PGVEIL_KEY_1 and the like hold secrets named by env: references; only a
      // name that reads as a setting written with one underscore is a mistake.
      const lower = rest.toLowerCase()
      for (const section of TOP_LEVEL_KEYS) {
        const key = lower.startsWith(`${section}_`) ? lower.slice(section.length + 1) : null
        if (key !== null && (KNOWN_KEYS[section] ?? []).includes(key)) {
          checker.problem(at, `${section}.${key}`, `not a setting name (expected ${ENV_PREFIX}${section.toUpperCase()}__${key.toUpperCase()}: path segments are joined by two underscores)`)
        }
      }
      continue
    }
    if (segments.some((segment) => segment === '')) {
      checker.problem(at, segments.join('.'), `malformed setting name (expected ${ENV_PREFIX} and the key path in upper case joined by __, such as PGVEIL_LISTEN__PORT)`)
      continue
    }
    let mapping = root
    for (let i = 0; i < segments.length - 1; i++) {
      const segment = segments[i] as string
      const existing = mapping.entries.get(segment)
      if (existing !== undefined && existing.node.kind === 'map') {
        mapping = existing.node
      } else {
        const created: RawMapping = { kind: 'map', entries: new Map(), at }
        mapping.entries.set(segment, { keyAt: at, node: created })
        mapping = created
      }
    }
    mapping.entries.set(segments[segments.length - 1] as string, { keyAt: at, node: { kind: 'scalar', value: parseEnvValue(raw), at } })
  }
}

// ---------------------------------------------------------------------------
// Parsing and validation

export interface ParseConfigOptions {
  /** Working directory: relative paths from the environment, and `source` made absolute. Default process.cwd(). */
  cwd?: string
}

/**
 * Parses and validates one configuration text. `source` names it in messages (a
 * file path, or "defaults" when there is no file); relative paths in the text are
 * taken from that file's directory. Throws ConfigError listing every problem.
 */
export function parseConfig(text: string, source: string, env: NodeJS.ProcessEnv, options: ParseConfigOptions = {}): PgveilConfig {
  const cwd = options.cwd ?? process.cwd()
  const isFile = source !== 'defaults'
  const absoluteSource = isFile ? path.resolve(cwd, source) : 'defaults'
  const checker = new Checker(source, isFile ? path.dirname(absoluteSource) : cwd, cwd)

  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((error) => {
      const { line, col } = lineCounter.linePos(error.pos[0])
      return `${source}:${Math.max(line, 1)}:${Math.max(col, 1)}: YAML syntax error: ${error.message}`
    })
    throw new ConfigError(problems)
  }

  let root: RawMapping = { kind: 'map', entries: new Map(), at: { line: 1, col: 1 } }
  try {
    const read = new DocumentReader(doc, lineCounter).read(doc.contents, { line: 1, col: 1 })
    if (read.kind === 'map') root = read
    else if (!(read.kind === 'scalar' && read.value === null)) {
      checker.problem(read.at, '(document)', `${describe(read)} is not a mapping (expected sections: ${TOP_LEVEL_KEYS.join(', ')})`)
    }
  } catch (error) {
    throw new ConfigError([`${source}:1:1: ${error instanceof Error ? error.message : String(error)}`])
  }

  applyEnvOverrides(root, env, checker)
  checker.unknownKeys(root, '', TOP_LEVEL_KEYS)

  const listen = readListen(checker, root)
  const upstream = readUpstream(checker, root, env)
  const mode = readMode(checker, root)
  const admin = readAdmin(checker, root)
  const policy = readTables(checker, root)
  const keyring = readKeys(checker, root, env, policy)
  const identity = readIdentity(checker, root, env)
  const access = readAccess(checker, root, policy)
  const audit = readAudit(checker, root, env)

  if (checker.problems.length > 0) throw new ConfigError(checker.problems)
  const config: PgveilConfig = { source: absoluteSource, listen, upstream, mode, admin, policy, keyring, audit }
  if (identity !== null) config.identity = identity
  if (!access.isEmpty) config.access = access
  if (checker.warnings.length > 0) config.warnings = checker.warnings
  return config
}

function readListen(checker: Checker, root: RawMapping): ListenConfig {
  const section = checker.mapping(root, 'listen', 'listen', LISTEN_KEYS, `keys ${LISTEN_KEYS.join(', ')}`)
  const host = checker.string(section, 'host', 'listen.host', DEFAULT_LISTEN_HOST, 'a host name or IP address to listen on, such as 127.0.0.1 or 0.0.0.0')
  const port = checker.integer(section, 'port', 'listen.port', DEFAULT_LISTEN_PORT, 0, 65535, 'an integer from 1 to 65535, or 0 for any free port')
  let tls: ListenTlsConfig | null = null
  if (section) {
    const tlsSection = checker.mapping(section, 'tls', 'listen.tls', TLS_KEYS, `keys ${TLS_KEYS.join(', ')}, or null for no TLS`)
    if (tlsSection) {
      tls = {
        cert: checker.readableFile(tlsSection, 'cert', 'listen.tls.cert', 'PEM certificate'),
        key: checker.readableFile(tlsSection, 'key', 'listen.tls.key', 'PEM private key'),
        require: checker.boolean(tlsSection, 'require', 'listen.tls.require', false),
      }
    }
  }
  return {
    host,
    port,
    tls,
    maxConnections: checker.integer(section, 'max_connections', 'listen.max_connections', DEFAULT_MAX_CONNECTIONS, 1, 1_000_000, 'an integer from 1 to 1000000'),
    maxMessageSize: checker.integer(
      section,
      'max_message_size',
      'listen.max_message_size',
      DEFAULT_MAX_MESSAGE_SIZE,
      MIN_MAX_MESSAGE_SIZE,
      MAX_MAX_MESSAGE_SIZE,
      `a number of bytes from ${MIN_MAX_MESSAGE_SIZE} to ${MAX_MAX_MESSAGE_SIZE}`,
    ),
    drainTimeoutMs: checker.seconds(section, 'drain_timeout', 'listen.drain_timeout', DEFAULT_DRAIN_TIMEOUT_SECONDS),
  }
}

function readUpstream(checker: Checker, root: RawMapping, env: NodeJS.ProcessEnv): UpstreamConfig {
  const section = checker.mapping(root, 'upstream', 'upstream', UPSTREAM_KEYS, `keys ${UPSTREAM_KEYS.join(', ')}`)
  const connectTimeoutMs = checker.seconds(section, 'connect_timeout', 'upstream.connect_timeout', DEFAULT_CONNECT_TIMEOUT_SECONDS)
  const node = checker.present(section, 'url')
  if (node === undefined) return { url: null, target: null, connectTimeoutMs }

  const expected = 'a postgres:// URL, an env:NAME or file:PATH reference to one, or null for the embedded PostgreSQL'
  // The URL may carry a password: no message below shows the value.
  if (node.kind !== 'scalar' || typeof node.value !== 'string') {
    checker.problem(node.at, 'upstream.url', `${describeType(node)} is not a URL (expected ${expected})`)
    return { url: null, target: null, connectTimeoutMs }
  }
  if (node.value.trim() === '') {
    checker.problem(node.at, 'upstream.url', `is empty (expected ${expected})`)
    return { url: null, target: null, connectTimeoutMs }
  }
  let url = node.value
  let from = 'the URL'
  if (isSecretReference(url)) {
    from = `the URL from ${url.startsWith('env:') ? url : 'file:…'}`
    try {
      url = resolveSecretReference(url, env, { baseDir: checker.baseDir(node.at) })
    } catch (error) {
      checker.problem(node.at, 'upstream.url', (error as Error).message)
      return { url: null, target: null, connectTimeoutMs }
    }
    url = url.trim()
  }
  let target: UpstreamTarget
  try {
    target = parseUpstreamUrl(url)
  } catch (error) {
    checker.problem(node.at, 'upstream.url', `${from} ${(error as Error).message}`)
    return { url: null, target: null, connectTimeoutMs }
  }
  if (from === 'the URL' && target.password !== null && !('env' in node.at)) {
    checker.warn(node.at, 'upstream.url', 'holds a password inline (expected secrets as references: url: "env:NAME" or "file:PATH")')
  }
  return { url, target, connectTimeoutMs: target.connectTimeoutMs ?? connectTimeoutMs }
}

function readMode(checker: Checker, root: RawMapping): 'session' {
  const node = checker.present(root, 'mode')
  if (node === undefined) return 'session'
  if (node.kind === 'scalar' && node.value === 'session') return 'session'
  if (node.kind === 'scalar' && node.value === 'transaction') {
    checker.problem(node.at, 'mode', 'transaction pooling is not available in this version (use session)')
  } else {
    checker.problem(node.at, 'mode', `${describe(node)} is not a pooling mode (expected session or transaction)`)
  }
  return 'session'
}

function readAdmin(checker: Checker, root: RawMapping): AdminConfig | null {
  const section = checker.mapping(root, 'admin', 'admin', ADMIN_KEYS, `keys ${ADMIN_KEYS.join(', ')}, or null for no admin endpoint`)
  if (!section) return null
  return {
    host: checker.string(section, 'host', 'admin.host', DEFAULT_ADMIN_HOST, 'a host name or IP address, such as 127.0.0.1'),
    port: checker.integer(section, 'port', 'admin.port', DEFAULT_ADMIN_PORT, 0, 65535, 'an integer from 1 to 65535, or 0 for any free port'),
  }
}

const COLUMN_KEYS = ['type', 'domain', 'search', 'normalize', 'unique', 'index_domain'] as const
const INDEX_KEYS_KEYS = ['current', 'versions'] as const
/** PostgreSQL's identifier limit (NAMEDATALEN - 1 bytes). */
const MAX_IDENTIFIER_BYTES = 63

function checkIdentifier(checker: Checker, at: Origin, keyPath: string, name: string, what: string): boolean {
  if (name === '' || name.includes('\u0000') || Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    checker.problem(at, keyPath, `"${name}" is not a valid ${what} name (1 to ${MAX_IDENTIFIER_BYTES} bytes, no NUL)`)
    return false
  }
  return true
}

/**
 * `tables:` — table name (`users` means public.users; `billing.accounts`) → column
 * name → `{ type: … }`. Names are PostgreSQL's stored names: lower case unless the
 * table was created with a quoted mixed-case name.
 */
function readTables(checker: Checker, root: RawMapping): Policy {
  const section = checker.mapping(root, 'tables', 'tables', null, 'a mapping of table names to their protected columns')
  if (!section) return new Policy([])
  const columns: ColumnPolicy[] = []
  const seenTables = new Map<string, string>()
  const domains = new Map<string, { type: string; column: string }>()
  const indexDomains = new Map<string, { type: string; normalize: string; column: string }>()
  for (const [tableName, tableEntry] of section.entries) {
    const tablePath = `tables.${tableName}`
    const parts = tableName.split('.')
    if (parts.length > 2) {
      checker.problem(tableEntry.keyAt, tablePath, 'is not a table name (expected table or schema.table)')
      continue
    }
    const { schema, table } = splitTableName(tableName)
    if (!checkIdentifier(checker, tableEntry.keyAt, tablePath, schema, 'schema') || !checkIdentifier(checker, tableEntry.keyAt, tablePath, table, 'table')) continue
    const duplicateOf = seenTables.get(`${schema}.${table}`)
    if (duplicateOf !== undefined) {
      checker.problem(tableEntry.keyAt, tablePath, `names the same table as tables.${duplicateOf} (${schema}.${table}); list its columns once`)
      continue
    }
    seenTables.set(`${schema}.${table}`, tableName)
    const tableNode = tableEntry.node
    if (tableNode.kind !== 'map' || tableNode.entries.size === 0) {
      checker.problem(tableNode.at, tablePath, `${describe(tableNode)} is not a mapping of columns (expected for example email: { type: text })`)
      continue
    }
    for (const [columnName, columnEntry] of tableNode.entries) {
      const columnPath = `${tablePath}.${columnName}`
      if (!checkIdentifier(checker, columnEntry.keyAt, columnPath, columnName, 'column')) continue
      const node = columnEntry.node
      if (node.kind !== 'map') {
        checker.problem(node.at, columnPath, `${describe(node)} is not a mapping (expected { type: ${POLICY_TYPES.join(' | ')} })`)
        continue
      }
      checker.unknownKeys(node, columnPath, COLUMN_KEYS)
      const typeNode = checker.present(node, 'type')
      if (typeNode === undefined) {
        checker.problem(node.at, `${columnPath}.type`, `missing (expected one of ${POLICY_TYPES.join(', ')})`)
        continue
      }
      const type = typeNode.kind === 'scalar' && typeof typeNode.value === 'string' ? policyTypeFromName(typeNode.value) : undefined
      if (type === undefined) {
        checker.problem(typeNode.at, `${columnPath}.type`, `${describe(typeNode)} is not a supported type (expected one of ${POLICY_TYPES.join(', ')})`)
        continue
      }
      const qualified = `${schema}.${table}.${columnName}`
      const domainNode = checker.present(node, 'domain')
      let domain: string | undefined
      if (domainNode !== undefined) {
        if (domainNode.kind !== 'scalar' || typeof domainNode.value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_.-]{0,62}$/.test(domainNode.value)) {
          checker.problem(domainNode.at, `${columnPath}.domain`, `${describe(domainNode)} is not a key domain name (expected letters, digits, _ . -)`)
          continue
        }
        domain = domainNode.value
        const other = domains.get(domain)
        if (other !== undefined && other.type !== type) {
          checker.problem(domainNode.at, `${columnPath}.domain`, `key domain "${domain}" already holds ${other.type} values (${other.column}); columns of one domain must share a type`)
          continue
        }
        domains.set(domain, { type, column: qualified })
      }
      const policy: ColumnPolicy = { schema, table, column: columnName, qualified, type, binding: domain === undefined ? qualified : `domain:${domain}` }
      if (domain !== undefined) policy.domain = domain
      if (!readSearch(checker, node, columnPath, policy, indexDomains)) continue
      columns.push(policy)
    }
  }
  return new Policy(columns)
}

/**
 * `search`, `normalize`, `unique`, `index_domain` of one column; fills them into
 * `policy`. False (after a problem) when the column must be left out.
 */
function readSearch(checker: Checker, node: RawMapping, columnPath: string, policy: ColumnPolicy, indexDomains: Map<string, { type: string; normalize: string; column: string }>): boolean {
  const searchNode = checker.present(node, 'search')
  if (searchNode !== undefined) {
    if (searchNode.kind !== 'scalar' || searchNode.value !== 'equality') {
      checker.problem(searchNode.at, `${columnPath}.search`, `${describe(searchNode)} is not a search kind (expected equality)`)
      return false
    }
    policy.search = 'equality'
  }
  const searchOnly = (key: string): boolean => {
    const at = checker.present(node, key)
    if (at === undefined || policy.search !== undefined) return true
    checker.problem(at.at, `${columnPath}.${key}`, 'needs search: equality on this column (it applies to the equality index)')
    return false
  }
  if (!searchOnly('normalize') || !searchOnly('unique') || !searchOnly('index_domain')) return false
  const normalizeNode = checker.present(node, 'normalize')
  if (normalizeNode !== undefined) {
    const items = normalizeNode.kind === 'seq' ? normalizeNode.items : [normalizeNode]
    const normalize: IndexNormalization[] = []
    for (const item of items) {
      if (item.kind !== 'scalar' || !INDEX_NORMALIZATIONS.includes(item.value as IndexNormalization)) {
        checker.problem(item.at, `${columnPath}.normalize`, `${describe(item)} is not a normalisation (expected ${INDEX_NORMALIZATIONS.join(' | ')}, or a list of them)`)
        return false
      }
      if (!normalize.includes(item.value as IndexNormalization)) normalize.push(item.value as IndexNormalization)
    }
    if (policy.type !== 'text' && normalize.length > 0) {
      checker.problem(normalizeNode.at, `${columnPath}.normalize`, `applies to text columns only; this column is ${policy.type} (remove normalize)`)
      return false
    }
    // One order whatever was written: trim then lowercase gives the same index either way.
    policy.normalize = INDEX_NORMALIZATIONS.filter((n) => normalize.includes(n))
  }
  const uniqueNode = checker.present(node, 'unique')
  if (uniqueNode !== undefined) {
    if (uniqueNode.kind !== 'scalar' || typeof uniqueNode.value !== 'boolean') {
      checker.problem(uniqueNode.at, `${columnPath}.unique`, `${describe(uniqueNode)} is not a boolean (expected true or false)`)
      return false
    }
    if (uniqueNode.value) policy.unique = true
  }
  if (policy.search === undefined) return true
  const indexDomainNode = checker.present(node, 'index_domain')
  let indexDomain = policy.binding
  if (indexDomainNode !== undefined) {
    if (indexDomainNode.kind !== 'scalar' || typeof indexDomainNode.value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_.-]{0,62}$/.test(indexDomainNode.value)) {
      checker.problem(indexDomainNode.at, `${columnPath}.index_domain`, `${describe(indexDomainNode)} is not an index domain name (expected letters, digits, _ . -)`)
      return false
    }
    indexDomain = `index:${indexDomainNode.value}`
  }
  const normalizeKey = (policy.normalize ?? []).join(',')
  const other = indexDomains.get(indexDomain)
  if (other !== undefined && (other.type !== policy.type || other.normalize !== normalizeKey)) {
    checker.problem(
      (indexDomainNode ?? node).at,
      `${columnPath}.index_domain`,
      `index domain "${indexDomain.replace(/^index:/, '')}" already holds ${other.type} values${other.normalize === '' ? '' : ` normalised ${other.normalize}`} (${other.column}); columns of one index domain must share a type and normalize`,
    )
    return false
  }
  indexDomains.set(indexDomain, { type: policy.type, normalize: normalizeKey, column: policy.qualified })
  policy.indexDomain = indexDomain
  return true
}

/** `keys:` — required as soon as a column is protected; every key is a secret reference. */
function readKeys(checker: Checker, root: RawMapping, env: NodeJS.ProcessEnv, policy: Policy): Keyring | null {
  const section = checker.mapping(root, 'keys', 'keys', KEYS_KEYS, `keys ${KEYS_KEYS.join(', ')}`)
  if (!section) {
    if (!policy.isEmpty) checker.problem(section === undefined ? root.at : root.entries.get('keys')!.keyAt, 'keys', 'missing: protected columns need root keys (keys: { current: 1, versions: { 1: "env:PGVEIL_KEY_1" } }; pgveil keygen makes one)')
    return null
  }
  const current = checker.integer(section, 'current', 'keys.current', 0, 1, 2 ** 32 - 1, 'the key version new values are encrypted with, such as 1')
  const versionsNode = checker.mapping(section, 'versions', 'keys.versions', null, 'a mapping of key versions to references, such as 1: "env:PGVEIL_KEY_1"')
  const versions: Record<string, string> = {}
  const origins = new Map<string, Origin>([['keys', section.at], ['keys.current', section.entries.get('current')?.node.at ?? section.at]])
  if (versionsNode) {
    origins.set('keys.versions', versionsNode.at)
    for (const [version, entry] of versionsNode.entries) {
      origins.set(`keys.versions.${version}`, entry.node.at)
      versions[version] = entry.node.kind === 'scalar' && typeof entry.node.value === 'string' ? entry.node.value : String(entry.node.kind === 'scalar' ? entry.node.value : `[${entry.node.kind}]`)
    }
  }
  const index = checker.present(section, 'index')
  let indexConfig: KeysConfig['index']
  if (index !== undefined) {
    origins.set('keys.index', index.at)
    if (index.kind === 'map') {
      checker.unknownKeys(index, 'keys.index', INDEX_KEYS_KEYS)
      const indexVersions: Record<string, string> = {}
      const versionsEntry = index.entries.get('versions')
      if (versionsEntry !== undefined) origins.set('keys.index.versions', versionsEntry.node.at)
      if (versionsEntry?.node.kind === 'map') {
        for (const [version, entry] of versionsEntry.node.entries) {
          origins.set(`keys.index.versions.${version}`, entry.node.at)
          indexVersions[version] = entry.node.kind === 'scalar' && typeof entry.node.value === 'string' ? entry.node.value : String(entry.node.kind === 'scalar' ? entry.node.value : `[${entry.node.kind}]`)
        }
      }
      const currentEntry = index.entries.get('current')
      if (currentEntry !== undefined) origins.set('keys.index.current', currentEntry.node.at)
      indexConfig = { current: currentEntry?.node.kind === 'scalar' && typeof currentEntry.node.value === 'number' ? currentEntry.node.value : 0, versions: indexVersions }
    } else indexConfig = index.kind === 'scalar' && typeof index.value === 'string' ? index.value : ''
  }
  const searchable = policy.columns.find((c) => c.search === 'equality')
  if (searchable !== undefined && index === undefined) {
    checker.problem(section.at, 'keys.index', `missing: column ${searchable.qualified} has search: equality, which needs an index key (index: "env:PGVEIL_INDEX_KEY"; pgveil keygen makes one)`)
  }
  if (current === 0) {
    if (section.entries.get('current') === undefined) checker.problem(section.at, 'keys.current', 'missing (expected the key version new values are encrypted with, such as 1)')
    return null
  }
  const keysConfig: KeysConfig = { current, versions }
  if (indexConfig !== undefined) keysConfig.index = indexConfig
  try {
    return Keyring.fromConfig(keysConfig, (reference) => resolveSecretReference(reference, env, { baseDir: checker.baseDir(origins.get('keys') ?? section.at) }))
  } catch (error) {
    if (!(error instanceof KeyringError)) throw error
    for (const problem of error.problems) checker.problem(origins.get(problem.path) ?? section.at, problem.path, problem.message)
    return null
  }
}

/**
 * `audit:` — the audit log: `to` (stdout or a file path, relative to this file's
 * directory), `chain_key` (a secret reference to a base64 key of 32 bytes, as
 * `pgveil keygen` prints), `max_backlog` (bytes). Absent or null: no audit log.
 */
function readAudit(checker: Checker, root: RawMapping, env: NodeJS.ProcessEnv): AuditConfig | null {
  const section = checker.mapping(root, 'audit', 'audit', AUDIT_KEYS, `keys ${AUDIT_KEYS.join(', ')}, or null for no audit log`)
  if (!section) return null
  const toNode = checker.present(section, 'to')
  let to = 'stdout'
  if (toNode !== undefined) {
    const raw = checker.string(section, 'to', 'audit.to', 'stdout', 'stdout, or a path to the audit log file')
    to = raw === 'stdout' ? 'stdout' : path.resolve(checker.baseDir(toNode.at), raw)
    if (to !== 'stdout') {
      const dir = path.dirname(to)
      try {
        if (!statSync(dir).isDirectory()) checker.problem(toNode.at, 'audit.to', `${dir} is not a directory (expected the audit log file's directory to exist)`)
        else accessSync(dir, fsConstants.W_OK)
      } catch (error) {
        checker.problem(toNode.at, 'audit.to', `cannot write in ${dir}: ${describeFsError(error)} (expected a writable directory for the audit log file)`)
      }
    }
  }
  const maxBacklogBytes = checker.integer(section, 'max_backlog', 'audit.max_backlog', DEFAULT_AUDIT_MAX_BACKLOG, 64 * 1024, 2 ** 31 - 1, 'a number of bytes from 65536 to 2147483647')
  const keyNode = checker.present(section, 'chain_key')
  const expected = `a reference to a base64 key of ${AUDIT_CHAIN_KEY_BYTES} bytes, such as "env:PGVEIL_AUDIT_KEY" (pgveil keygen makes one)`
  if (keyNode === undefined) {
    checker.problem(section.at, 'audit.chain_key', `missing: every audit line is sealed with it (expected ${expected})`)
    return null
  }
  if (keyNode.kind !== 'scalar' || typeof keyNode.value !== 'string' || !isSecretReference(keyNode.value)) {
    checker.problem(keyNode.at, 'audit.chain_key', `${describeType(keyNode)} is not a secret reference (expected ${expected}; keys are never written inline)`)
    return null
  }
  let chainKey: Buffer
  try {
    chainKey = decodeAuditChainKey(resolveSecretReference(keyNode.value, env, { baseDir: checker.baseDir(keyNode.at) }))
  } catch (error) {
    checker.problem(keyNode.at, 'audit.chain_key', (error as Error).message)
    return null
  }
  return { to, chainKey, maxBacklogBytes }
}

/** A base64 audit chain key of 32 bytes; the message never shows the value. */
export function decodeAuditChainKey(text: string): Buffer {
  const key = decodeKey(text)
  if (typeof key === 'string') throw new RangeError(`the audit chain key ${key}`)
  return key
}

export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30
export const DEFAULT_MAX_TOKEN_SIZE = 8192
export const DEFAULT_JWKS_REFRESH_SECONDS = 300
export const DEFAULT_JWKS_REFETCH_COOLDOWN_SECONDS = 30
export const DEFAULT_JWKS_TIMEOUT_SECONDS = 5

/** `identity:` — trusted issuers and what a session does with a verified identity. */
function readIdentity(checker: Checker, root: RawMapping, env: NodeJS.ProcessEnv): IdentityConfig | null {
  const section = checker.mapping(root, 'identity', 'identity', IDENTITY_KEYS, `keys ${IDENTITY_KEYS.join(', ')}`)
  if (!section) return null
  const require = checker.boolean(section, 'require', 'identity.require', false)
  const clockToleranceNode = checker.present(section, 'clock_tolerance')
  let clockToleranceSeconds = DEFAULT_CLOCK_TOLERANCE_SECONDS
  if (clockToleranceNode !== undefined) {
    if (clockToleranceNode.kind !== 'scalar' || typeof clockToleranceNode.value !== 'number' || !Number.isFinite(clockToleranceNode.value) || clockToleranceNode.value < 0 || clockToleranceNode.value > 3600) {
      checker.problem(clockToleranceNode.at, 'identity.clock_tolerance', `${describe(clockToleranceNode)} is not a tolerance (expected a number of seconds from 0 to 3600, such as 30)`)
    } else {
      clockToleranceSeconds = clockToleranceNode.value
    }
  }
  const maxTokenBytes = checker.integer(section, 'max_token_size', 'identity.max_token_size', DEFAULT_MAX_TOKEN_SIZE, 256, 1024 * 1024, 'a number of bytes from 256 to 1048576')
  const onExpiryNode = checker.present(section, 'on_expiry')
  let onExpiry: OnExpiry = 'refuse'
  if (onExpiryNode !== undefined) {
    if (onExpiryNode.kind === 'scalar' && (onExpiryNode.value === 'refuse' || onExpiryNode.value === 'clear')) onExpiry = onExpiryNode.value
    else checker.problem(onExpiryNode.at, 'identity.on_expiry', `${describe(onExpiryNode)} is not an expiry behaviour (expected refuse or clear)`)
  }
  const forwardClaims = checker.boolean(section, 'forward_claims', 'identity.forward_claims', false)
  const jwksRefreshMs = checker.seconds(section, 'jwks_refresh', 'identity.jwks_refresh', DEFAULT_JWKS_REFRESH_SECONDS)
  const jwksCooldownMs = checker.seconds(section, 'jwks_refetch_cooldown', 'identity.jwks_refetch_cooldown', DEFAULT_JWKS_REFETCH_COOLDOWN_SECONDS)
  const jwksTimeoutMs = checker.seconds(section, 'jwks_timeout', 'identity.jwks_timeout', DEFAULT_JWKS_TIMEOUT_SECONDS)

  const issuers: IssuerConfig[] = []
  const issuersNode = checker.present(section, 'issuers')
  if (issuersNode !== undefined && issuersNode.kind !== 'seq') {
    checker.problem(issuersNode.at, 'identity.issuers', `${describe(issuersNode)} is not a list (expected a list of { issuer: https://…, audience: […] })`)
  } else if (issuersNode !== undefined) {
    const seen = new Set<string>()
    issuersNode.items.forEach((node, index) => {
      const at = `identity.issuers[${index}]`
      if (node.kind !== 'map') {
        checker.problem(node.at, at, `${describe(node)} is not a mapping (expected { issuer: https://…, audience: […] })`)
        return
      }
      checker.unknownKeys(node, at, ISSUER_KEYS)
      const issuerNode = checker.present(node, 'issuer')
      if (issuerNode === undefined) {
        checker.problem(node.at, `${at}.issuer`, 'missing (expected the exact "iss" value of the tokens, such as https://auth.example.com)')
        return
      }
      const issuer = checker.string(node, 'issuer', `${at}.issuer`, '', 'the exact "iss" value of the tokens, such as https://auth.example.com')
      if (issuer === '') return
      if (seen.has(issuer)) checker.problem(issuerNode.at, `${at}.issuer`, `"${issuer}" is listed twice (list each issuer once)`)
      seen.add(issuer)
      const audience = stringList(checker, node, 'audience', `${at}.audience`, 'a list of audiences, such as [api.example.com]')
      const secretNode = checker.present(node, 'secret')
      let secret: Uint8Array | null = null
      if (secretNode !== undefined) {
        if (secretNode.kind !== 'scalar' || typeof secretNode.value !== 'string' || !isSecretReference(secretNode.value)) {
          checker.problem(secretNode.at, `${at}.secret`, `${describeType(secretNode)} is not a reference (expected env:NAME or file:PATH naming the HMAC key, never the key itself)`)
        } else {
          try {
            secret = Buffer.from(resolveSecretReference(secretNode.value, env, { baseDir: checker.baseDir(secretNode.at) }), 'utf8')
            if (secret.length < 32) {
              checker.problem(secretNode.at, `${at}.secret`, `the key is ${secret.length} bytes (expected at least 32 bytes for HMAC)`)
              secret = null
            }
          } catch (error) {
            checker.problem(secretNode.at, `${at}.secret`, `cannot be resolved: ${(error as Error).message}`)
          }
        }
      }
      const hmac = secretNode !== undefined
      const algorithms = stringList(checker, node, 'algorithms', `${at}.algorithms`, 'a list of JWS algorithms, such as [RS256, ES256, EdDSA]') ?? (hmac ? ['HS256'] : [...DEFAULT_ALGORITHMS])
      const allowed: readonly string[] = hmac ? HMAC_ALGORITHMS : ASYMMETRIC_ALGORITHMS
      const algorithmsAt = node.entries.get('algorithms')?.node.at ?? node.at
      for (const algorithm of algorithms) {
        if (allowed.includes(algorithm)) continue
        if ((HMAC_ALGORITHMS as readonly string[]).includes(algorithm)) {
          checker.problem(algorithmsAt, `${at}.algorithms`, `${algorithm} needs a shared secret (add secret: "env:NAME" to this issuer, and list only HMAC algorithms)`)
        } else if ((ASYMMETRIC_ALGORITHMS as readonly string[]).includes(algorithm)) {
          checker.problem(algorithmsAt, `${at}.algorithms`, `${algorithm} cannot be used with a shared secret (an issuer with secret: takes ${HMAC_ALGORITHMS.join(', ')})`)
        } else {
          checker.problem(algorithmsAt, `${at}.algorithms`, `"${algorithm}" is not an accepted algorithm (expected some of ${allowed.join(', ')}; never none)`)
        }
      }
      const jwksUriNode = checker.present(node, 'jwks_uri')
      let jwksUri: string | null = null
      if (jwksUriNode !== undefined) {
        if (hmac) checker.problem(jwksUriNode.at, `${at}.jwks_uri`, 'an issuer with a shared secret uses no JWKS (remove jwks_uri or secret)')
        jwksUri = checker.string(node, 'jwks_uri', `${at}.jwks_uri`, '', 'an https:// URL of the issuer\'s JSON Web Key Set')
        const wrong = jwksUri === '' ? null : checkJwksUri(jwksUri)
        if (wrong !== null) checker.problem(jwksUriNode.at, `${at}.jwks_uri`, wrong)
      } else if (!hmac) {
        const wrong = /^https?:\/\//i.test(issuer) ? checkJwksUri(issuer) : null
        if (wrong !== null) checker.problem(issuerNode.at, `${at}.issuer`, `${wrong.replace(/^uses/, 'the default JWKS location would use')} (or set jwks_uri)`)
      }
      issuers.push({ issuer, audience, jwksUri, algorithms, secret })
    })
  }
  if (issuers.length === 0 && require) checker.problem(section.at, 'identity.issuers', 'missing: identity.require is true but no issuer is trusted, so no statement could ever run (add identity.issuers)')
  return { require, issuers, clockToleranceSeconds, maxTokenBytes, onExpiry, forwardClaims, jwksRefreshMs, jwksCooldownMs, jwksTimeoutMs }
}

/** A list of non-empty strings (a single string is taken as a list of one); null when absent. */
function stringList(checker: Checker, parent: RawMapping, key: string, keyPath: string, expected: string): string[] | null {
  const node = checker.present(parent, key)
  if (node === undefined) return null
  const items = node.kind === 'seq' ? node.items : [node]
  const values: string[] = []
  for (const item of items) {
    if (item.kind !== 'scalar' || (typeof item.value !== 'string' && typeof item.value !== 'number') || String(item.value).trim() === '') {
      checker.problem(item.at, keyPath, `${describe(item)} is not a string (expected ${expected})`)
      continue
    }
    values.push(String(item.value))
  }
  if (values.length === 0 && node.kind === 'seq') checker.problem(node.at, keyPath, `is empty (expected ${expected})`)
  return values
}

const CONDITION_EXAMPLE = '{ claim: scope, includes: "pii:read" }, { claim: sub, in: [alice] } or { claim: role, equals: admin }'

function readConditions(checker: Checker, node: RawNode, keyPath: string): ClaimCondition[] {
  const items = node.kind === 'seq' ? node.items : [node]
  const conditions: ClaimCondition[] = []
  for (const item of items) {
    if (item.kind !== 'map') {
      checker.problem(item.at, keyPath, `${describe(item)} is not a claim condition (expected ${CONDITION_EXAMPLE})`)
      continue
    }
    checker.unknownKeys(item, keyPath, ['claim', 'equals', 'in', 'includes'])
    const claim = checker.string(item, 'claim', `${keyPath}.claim`, '', 'a claim name, such as scope or realm_access.roles')
    if (claim === '') {
      if (!item.entries.has('claim')) checker.problem(item.at, `${keyPath}.claim`, 'missing (expected a claim name, such as scope)')
      continue
    }
    const tests = ['equals', 'in', 'includes'].filter((key) => checker.present(item, key) !== undefined)
    if (tests.length !== 1) {
      checker.problem(item.at, keyPath, `needs exactly one of equals, in, includes (expected ${CONDITION_EXAMPLE})`)
      continue
    }
    const test = checker.present(item, tests[0]!)!
    if (tests[0] === 'in') {
      if (test.kind !== 'seq' || test.items.some((value) => value.kind !== 'scalar' || (typeof value.value !== 'string' && typeof value.value !== 'number'))) {
        checker.problem(test.at, `${keyPath}.in`, `${describe(test)} is not a list of values (expected for example [alice, bob])`)
        continue
      }
      conditions.push({ claim, in: test.items.map((value) => (value as RawScalar).value as string | number) })
    } else if (tests[0] === 'equals') {
      if (test.kind !== 'scalar' || !['string', 'number', 'boolean'].includes(typeof test.value)) {
        checker.problem(test.at, `${keyPath}.equals`, `${describe(test)} is not a value (expected a string, number or boolean)`)
        continue
      }
      conditions.push({ claim, equals: test.value as string | number | boolean })
    } else {
      if (test.kind !== 'scalar' || typeof test.value !== 'string') {
        checker.problem(test.at, `${keyPath}.includes`, `${describe(test)} is not a string (expected the value the claim list must hold, such as "pii:read")`)
        continue
      }
      conditions.push({ claim, includes: test.value })
    }
  }
  return conditions
}

/**
 * `access:` — protected column (`table.column` or `schema.table.column`) → who may
 * read its plaintext, what others get, who may write it.
 */
function readAccess(checker: Checker, root: RawMapping, policy: Policy): AccessRules {
  const section = checker.mapping(root, 'access', 'access', null, 'a mapping of protected columns (table.column) to access rules')
  if (!section) return new AccessRules([])
  const rules: ColumnAccessRule[] = []
  for (const [name, entry] of section.entries) {
    const keyPath = `access.${name}`
    const parts = name.split('.')
    if (parts.length < 2 || parts.length > 3 || parts.some((part) => part === '')) {
      checker.problem(entry.keyAt, keyPath, 'is not a column name (expected table.column or schema.table.column)')
      continue
    }
    const column = parts[parts.length - 1]!
    const { schema, table } = splitTableName(parts.slice(0, -1).join('.'))
    const protectedColumn = policy.table(schema, table)?.get(column)
    if (protectedColumn === undefined) {
      checker.problem(entry.keyAt, keyPath, `${schema}.${table}.${column} is not a protected column (access rules apply to columns listed under tables:)`)
      continue
    }
    const node = entry.node
    if (node.kind !== 'map') {
      checker.problem(node.at, keyPath, `${describe(node)} is not a mapping (expected { read: [${CONDITION_EXAMPLE}], otherwise: null | mask | error })`)
      continue
    }
    checker.unknownKeys(node, keyPath, ACCESS_RULE_KEYS)
    const readNode = checker.present(node, 'read')
    if (readNode === undefined) checker.problem(node.at, `${keyPath}.read`, `missing (expected who may read the plaintext: [${CONDITION_EXAMPLE}])`)
    const read = readNode === undefined ? [] : readConditions(checker, readNode, `${keyPath}.read`)
    const writeNode = checker.present(node, 'write')
    const write = writeNode === undefined ? null : readConditions(checker, writeNode, `${keyPath}.write`)
    const otherwiseNode = checker.present(node, 'otherwise')
    let otherwise: DenialKind = 'null'
    if (otherwiseNode !== undefined) {
      // YAML reads a bare `null` as no value: that is the default anyway.
      if (otherwiseNode.kind === 'scalar' && (DENIAL_KINDS as readonly unknown[]).includes(otherwiseNode.value)) otherwise = otherwiseNode.value as DenialKind
      else checker.problem(otherwiseNode.at, `${keyPath}.otherwise`, `${describe(otherwiseNode)} is not a denial (expected null, mask or error)`)
    }
    const maskNode = checker.present(node, 'mask')
    let mask: MaskStyle = 'redact'
    if (maskNode !== undefined) {
      if (maskNode.kind === 'scalar' && (MASK_STYLES as readonly unknown[]).includes(maskNode.value)) mask = maskNode.value as MaskStyle
      else checker.problem(maskNode.at, `${keyPath}.mask`, `${describe(maskNode)} is not a mask (expected ${MASK_STYLES.join(', ')})`)
    }
    if (otherwise === 'mask' && protectedColumn.type !== 'text') {
      checker.problem(otherwiseNode!.at, `${keyPath}.otherwise`, `masks apply to text columns; ${protectedColumn.qualified} is ${protectedColumn.type} (use null or error)`)
    }
    rules.push({ column: protectedColumn.qualified, read, otherwise, mask, write })
  }
  return new AccessRules(rules)
}

/** The configuration with `upstream.url` replaced (for the embedded PostgreSQL); a `connect_timeout` in the URL wins as usual. */
export function withUpstreamUrl(config: PgveilConfig, url: string): PgveilConfig {
  const target = parseUpstreamUrl(url)
  return { ...config, upstream: { url, target, connectTimeoutMs: target.connectTimeoutMs ?? config.upstream.connectTimeoutMs } }
}

// ---------------------------------------------------------------------------
// Finding and loading the file

/** The directory of pgveil's package.json (from dist/proxy/ or proxy/), or null. */
export function findPackageRoot(from: string = path.dirname(fileURLToPath(import.meta.url))): string | null {
  let dir = from
  while (true) {
    const candidate = path.join(dir, 'package.json')
    if (existsSync(candidate)) {
      try {
        const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: unknown }
        if (pkg.name === 'pgveil') return dir
      } catch {
        // not ours: keep looking upward
      }
    }
    const parent = path.dirname(dir)
    if (parent === dir) return null
    dir = parent
  }
}

export interface LoadConfigOptions {
  /** Explicit file (`--config`); relative to `cwd`. */
  file?: string
  /** Default process.env. */
  env?: NodeJS.ProcessEnv
  /** Default process.cwd(). */
  cwd?: string
}


/**
 * Finds, reads and validates the configuration: the explicit file, else
 * $PGVEIL_CONFIG, else ./pgveil.yaml, else ./config.example.yaml, else the
 * config.example.yaml shipped next to the package, else built-in defaults. The
 * environment overrides apply in every case. Throws ConfigError.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<PgveilConfig> {
  const env = options.env ?? process.env
  const cwd = options.cwd ?? process.cwd()

  let file: string | null = null
  let label = ''
  if (options.file !== undefined && options.file !== '') {
    file = options.file
  } else if (env.PGVEIL_CONFIG !== undefined && env.PGVEIL_CONFIG !== '') {
    file = env.PGVEIL_CONFIG
    label = 'PGVEIL_CONFIG: '
  } else {
    const candidates = ['pgveil.yaml', 'config.example.yaml']
    const root = findPackageRoot()
    if (root !== null) candidates.push(path.join(root, 'config.example.yaml'))
    for (const candidate of candidates) {
      if (existsSync(path.resolve(cwd, candidate))) {
        file = candidate
        break
      }
    }
  }

  if (file === null) return parseConfig('', 'defaults', env, { cwd })
  let text: string
  try {
    text = await readFile(path.resolve(cwd, file), 'utf8')
  } catch (error) {
    throw new ConfigError([`${label}${file}: cannot read the configuration file: ${describeFsError(error)}`])
  }
  return parseConfig(text, file, env, { cwd })
}
