/**
 * Column encryption for one session: rewrites what the client sends (literals and
 * Bind parameters of protected columns become envelopes; refused statements become
 * a statement that fails in PostgreSQL, so transactions abort exactly as they would)
 * and what PostgreSQL answers (plaintext type OIDs restored in RowDescription and
 * ParameterDescription; protected DataRow cells decrypted into the format the client
 * asked for). The session calls it only when the policy protects something.
 */
import { DecryptionError } from '../policy/errors.js'
import { EnvelopeOpener, type KeyringSource } from '../policy/envelope.js'
import { lookupMacs, sealColumnValue, type IndexedColumn } from '../policy/equality-index.js'
import type { Keyring } from '../policy/keyring.js'
import type { ColumnPolicy, Policy } from '../policy/policy.js'
import type { DependentView, ViewRefusalReason } from '../policy/view-references.js'
import { formatChangeOf, literalReplacements, searchArraySql, spliceLiterals, SqlAnalyzer } from '../policy/sql-analyzer.js'
import { PGVEIL_REFUSED, type CopySpec, type ProtectedCopy, type LiteralSlot, type QualifiedColumn, type RefusePlan, type SearchParam, type SearchSlot, type SqlAnalysis } from '../policy/sql-plan.js'
import { decodeArrayElements, encodeByteaArray } from '../protocol/arrays.js'
import {
  decodeParameterDescription,
  decodeRowDescription,
  encodeErrorResponse,
  encodeParameterDescription,
  encodeRowDescription,
  type FieldDescription,
} from '../protocol/backend.js'
import { SqlState, WireError, type ErrorFields } from '../protocol/errors.js'
import { decodeBind, decodeParse, decodeQuery, encodeBind, encodeDescribe, encodeParse, encodeQuery } from '../protocol/frontend.js'
import { policyTypeFromName, printsTimestamptzText, TYPE_CODECS, TypeOid, type PolicyType, type SessionFormat } from '../protocol/types.js'
import { CATALOG_MAX_AGE_MS, type CatalogMap, type DatabaseCatalog } from './catalog.js'
import { CopyRowError, CopyRowTransformer, type FieldTransform } from './copy-crypto.js'
import type { Metrics } from '../audit/metrics.js'
import { ColumnAccessError, OPEN_ACCESS, type ColumnAccessView } from '../policy/access.js'
import type { Logger } from './log.js'
import { FAILING_SQL, failingExtendedFrames } from './failing-statement.js'
import { Pending, UnconfirmedChanges } from './pending-queue.js'
import { decodeByteaText, NO_PROTECTED_COLUMNS, RowDecryptor, RowSink, type GuardedField, type ProtectedField, type RowPlan } from './row-decryptor.js'
import { originsText, viewKind } from './view-check.js'

/** What every session of one server shares. */
export interface CryptoContext {
  readonly policy: Policy
  /** Replaced in place when only the keys change (rotation): sessions go on and seal under the new current version. */
  keyring: Keyring
  readonly analyzer: SqlAnalyzer
  readonly catalogs: CatalogMap
  readonly logger: Logger
  readonly metrics: Metrics
}

const BYTEA_ARRAY_OID = 1001

/** A prepared statement as pgveil knows it. */
export interface StatementState {
  /** $n → protected column written through it. */
  readonly params: ReadonlyMap<number, QualifiedColumn>
  /** $n → searchable column it is looked up in: bound as the `bytea[]` of its index values. */
  readonly searchParams: ReadonlyMap<number, SearchParam>
  /** The statement names a protected table: its results must be mapped through the catalog. */
  readonly mayReturnProtected: boolean
  /** Ciphertexts it copies between protected columns (checked against access rules at each Bind). */
  readonly copies: readonly ProtectedCopy[]
  /** Result fields from a Describe of the statement, once known. */
  rowFields: FieldDescription[] | null
  /** The row plan of its last Bind, reused by the next Bind with the same result formats. */
  boundPlan?: { readonly catalog: DatabaseCatalog; readonly fields: readonly FieldDescription[]; readonly formats: readonly number[]; readonly plan: RowPlan }
  /** It changes TimeZone or DateStyle ('SET TimeZone', 'RESET ALL', …): dates print with the new value only after the next Sync. */
  readonly changesFormat?: string
  /** It creates a materialized view over protected columns: each execution has the catalog read again (RewritePlan.createsMaterializedView). */
  readonly createsMaterializedView?: true
}

export interface PortalState {
  readonly statement: StatementState
  readonly resultFormats: readonly number[]
  rowPlan: RowPlan | null
  /** The client sent a Describe for this portal before executing it. */
  described: boolean
}

/** What rowDescription makes of a RowDescription: the frame to forward and the plan of its rows. Shared between executions: read only. */
export interface DescribedRows {
  readonly frame: Buffer
  readonly plan: RowPlan | null
  readonly fields: FieldDescription[] | null
}

/** RowDescriptions remembered per session: enough for the statements a client alternates between. */
const DESCRIBED_CACHE_SIZE = 8

/** Context attached to pending-queue entries when encryption is on. */
export type CryptoPending =
  | { readonly kind: 'describe-statement'; readonly statement: StatementState }
  | { readonly kind: 'describe-portal'; readonly portal: PortalState; readonly suppress: boolean }
  | { readonly kind: 'bind'; readonly portal: PortalState }
  /** A Parse or Close that changed the session's statements or portals: PostgreSQL's reply confirms the change (see SessionCrypto.confirmChange). */
  | { readonly kind: 'parse' | 'close' }
  | { readonly kind: 'execute'; readonly portal: PortalState }
  /** A message pgveil injected: its reply is not forwarded. */
  | { readonly kind: 'suppress' }
  /** pgveil's failing statement: its PV001 error is replaced by the real one. */
  | { readonly kind: 'refusal'; readonly error: Buffer }


/** What to send upstream for one client message, and the pending entries for them. */
export interface Forward {
  frames: Buffer[]
  /** Pending-queue kinds (see pending-queue.ts) with their contexts, in order. */
  pending: [number, CryptoPending | undefined][]
  /** Drop the client's messages up to its next Sync (their statement was refused). */
  dropUntilSync: boolean
}

const NO_PARAMS: ReadonlyMap<number, QualifiedColumn> = new Map()
const NO_SEARCH_PARAMS: ReadonlyMap<number, SearchParam> = new Map()

const PARSED: CryptoPending = { kind: 'parse' }
export const CLOSED: CryptoPending = { kind: 'close' }

/** A statement pgveil does not rewrite. Its own object: a Describe fills in its rowFields. */
function plainStatement(changesFormat?: string): StatementState {
  const statement: StatementState = { params: NO_PARAMS, searchParams: NO_SEARCH_PARAMS, mayReturnProtected: false, copies: [], rowFields: null }
  return changesFormat === undefined ? statement : { ...statement, changesFormat }
}

export class SessionCrypto {
  private readonly ctx: CryptoContext
  readonly database: string
  catalog: DatabaseCatalog | null = null
  private readonly statements = new Map<string, StatementState>()
  private readonly portals = new Map<string, PortalState>()
  /** Changes to statements and portals PostgreSQL has not confirmed (see UnconfirmedChanges). */
  readonly #unconfirmed = new UnconfirmedChanges()
  /** Row plan of the result being streamed for a simple Query. */
  queryRowPlan: RowPlan | null = null
  /** From the session's ParameterStatus (TimeZone, DateStyle); read for every value, so kept as one object. */
  format: SessionFormat = { timeZone: 'UTC', dateStyle: 'ISO, MDY', integerDatetimes: true }
  /** The DateStyle and TimeZone last warned about (see noteSetting). */
  #warnedFormat = ''

  /**
   * A ParameterStatus: TimeZone and DateStyle are followed. Returns a warning for the
   * client when protected timestamptz values can no longer be printed in text format
   * (a non-ISO DateStyle in a zone whose abbreviation only tzdata knows), once per
   * such setting, so the FATAL error a read would then end in is no surprise.
   */
  noteSetting(name: string, value: string): ErrorFields | null {
    if (name === 'TimeZone') this.format = { ...this.format, timeZone: value }
    else if (name === 'DateStyle') this.format = { ...this.format, dateStyle: value }
    else return null
    if (printsTimestamptzText(this.format)) return null
    const { dateStyle, timeZone } = this.format
    const key = `${dateStyle}\u0000${timeZone}`
    if (key === this.#warnedFormat || !this.ctx.policy.columns.some((column) => policyTypeFromName(column.type) === 'timestamptz')) return null
    this.#warnedFormat = key
    return {
      severity: 'WARNING',
      code: '01000',
      message: `pgveil cannot print encrypted timestamptz values under DateStyle "${dateStyle}" in time zone "${timeZone}": reading one in text format will end the session`,
      hint: 'SET DateStyle = ISO (or read such columns in binary format, or SET TimeZone = UTC)',
    }
  }

  /** A statement that changes TimeZone or DateStyle completed: PostgreSQL reports the new value only at Sync, so dates cannot be printed until then. */
  formatChangedBy(change: string): void {
    this.format = { ...this.format, staleAfter: change }
  }

  /** A ReadyForQuery: any new TimeZone or DateStyle has been reported (just before it). */
  formatReported(): void {
    if (this.format.staleAfter !== undefined) this.format = { ...this.format, staleAfter: undefined }
  }

  /** What the session's identity may read and write (access rules); set by the session when the identity changes. */
  columnAccess: ColumnAccessView = OPEN_ACCESS

  /**
   * Set when this session took a new column policy while open (Session.adoptPolicy):
   * statements prepared before it exist in PostgreSQL but were planned under the old
   * policy, so binding one is refused instead of passing its parameters unencrypted.
   */
  readonly #adopted: boolean

  /** `previous`: the session's crypto under the policy before (its TimeZone and DateStyle carry over). */
  constructor(ctx: CryptoContext, database: string, previous?: SessionCrypto) {
    this.ctx = ctx
    this.database = database
    this.#adopted = previous !== undefined
    if (previous !== undefined) this.format = previous.format
  }

  /** ParseComplete, BindComplete or CloseComplete of a message that changed statements or portals. */
  confirmChange(): void {
    this.#unconfirmed.confirm()
  }

  /** PostgreSQL failed a message in a pipeline: the statements and portals it did not make are forgotten again. */
  undoUnconfirmed(): void {
    this.#unconfirmed.undoAll()
  }

  /** Named prepared statements this session holds (a new policy cannot take them over). */
  get namedStatements(): number {
    return this.statements.size - (this.statements.has('') ? 1 : 0)
  }

  async loadCatalog(): Promise<void> {
    this.catalog = await this.ctx.catalogs.load(this.database)
    this.#catalogAsked = Date.now()
  }

  /** DDL ran: the catalog is read again before the client gets its next ReadyForQuery. */
  catalogStale = false

  async refreshCatalog(): Promise<void> {
    this.ctx.catalogs.invalidate(this.database)
    this.catalog = await this.ctx.catalogs.load(this.database)
    this.#catalogAsked = Date.now()
    this.catalogStale = false
  }

  /**
   * At a ReadyForQuery: when this session last asked for its catalog over
   * CATALOG_MAX_AGE_MS ago, it asks again in the background (the map reads the
   * database only when its own copy is that old), so views created straight in
   * PostgreSQL reach open sessions too. Statements meanwhile use the catalog held.
   */
  refreshIfOld(): void {
    if (this.#refreshing || Date.now() - this.#catalogAsked < CATALOG_MAX_AGE_MS) return
    this.#refreshing = true
    this.#catalogAsked = Date.now()
    this.ctx.catalogs.load(this.database).then(
      (catalog) => {
        this.catalog = catalog
        this.#refreshing = false
      },
      (error: Error) => {
        // The catalog held stays: the next ReadyForQuery a minute on tries again.
        this.ctx.logger.warn('could not read the catalog again', { database: this.database, error: error.message })
        this.#refreshing = false
      },
    )
  }

  /**
   * A result came from a relation the catalog does not know, with a bytea column (its
   * rows are guarded meanwhile): the catalog is read again the first time, in the
   * background, so that a view created straight in PostgreSQL is known from the next
   * statement on; a catalog another session had read again is taken at once.
   */
  private unknownRelation(oid: number): void {
    const catalogs = this.ctx.catalogs
    const reload = catalogs.unknownRelation(this.database, oid)
    if (reload === undefined) {
      const latest = catalogs.get(this.database)
      if (latest !== undefined) this.catalog = latest
      return
    }
    this.#catalogAsked = Date.now()
    reload.then(
      (catalog) => {
        this.catalog = catalog
      },
      (error: Error) => this.ctx.logger.warn('could not read the catalog again', { database: this.database, error: error.message }),
    )
  }

  #catalogAsked = 0
  #refreshing = false

  // --- client → PostgreSQL ----------------------------------------------------

  /** A simple-protocol Query: literals encrypted, or the refused statement replaced by a failing one. */
  rewriteQuery(frame: Buffer): { frame: Buffer; refusal: Buffer | null; copy: CopySpec | null } {
    const { sql } = decodeQuery(frame)
    const analyzer = this.analyzerFor(sql)
    if (!(analyzer instanceof SqlAnalyzer)) return { frame: encodeQuery(FAILING_SQL), refusal: encodeErrorResponse(analyzer), copy: null }
    const analysis = analyzer.analyze(sql)
    if (analysis.action === 'passthrough') return { frame, refusal: null, copy: null }
    const copy = copyOf(analysis)
    if (copy !== null && analysis.statements.length !== 1) {
      const error = encodeErrorResponse({ severity: 'ERROR', code: PGVEIL_REFUSED, message: `COPY of table "${copy.schema}.${copy.table}", which has encrypted columns, must be a query of its own`, hint: 'send the COPY statement alone' })
      return { frame: encodeQuery(FAILING_SQL), refusal: error, copy: null }
    }
    if (analysis.action === 'refuse') {
      const refused = analysis.refusal!
      const error = encodeErrorResponse(this.refusalOf(refused))
      return { frame: encodeQuery(spliceLiterals(sql, [{ start: refused.start, end: refused.end, text: FAILING_SQL }])), refusal: error, copy: null }
    }
    const inexact = this.inexactUnderIndexRotation(analysis)
    if (inexact !== null) return { frame: encodeQuery(FAILING_SQL), refusal: encodeErrorResponse(inexact), copy: null }
    try {
      for (const statement of analysis.statements) if (statement.action === 'rewrite') this.checkCopies(statement.copies ?? [])
      if (analysis.statements.some((statement) => statement.action === 'rewrite' && statement.createsMaterializedView === true)) this.catalogStale = true
      // COPY (query) TO may search or compare protected columns: its text is rewritten like any query's.
      return { frame: encodeQuery(this.spliceEncrypted(sql, analysis)), refusal: null, copy }
    } catch (error) {
      // Invalid input for a protected column: fail the whole Query like PostgreSQL would.
      return { frame: encodeQuery(FAILING_SQL), refusal: encodeErrorResponse(asWireError(error).toFields()), copy: null }
    }
  }

  onParse(frame: Buffer): Forward {
    const parse = decodeParse(frame)
    const analyzer = this.analyzerFor(parse.sql)
    if (!(analyzer instanceof SqlAnalyzer)) return this.refuse(analyzer)
    const analysis = analyzer.analyze(parse.sql)
    if (analysis.action === 'passthrough') {
      this.#unconfirmed.set(this.statements, parse.name, plainStatement(formatChangeOf(parse.sql)))
      return { frames: [frame], pending: [[Pending.Parse, PARSED]], dropUntilSync: false }
    }
    if (analysis.action === 'refuse') {
      return this.refuse(this.refusalOf(analysis.refusal!))
    }
    const copy = copyOf(analysis)
    if (copy !== null) {
      return this.refuse({
        severity: 'ERROR',
        code: PGVEIL_REFUSED,
        message: `COPY of table "${copy.schema}.${copy.table}", which has encrypted columns, works only in the simple query protocol`,
        hint: 'send the COPY as a simple query (psql \\copy and pg-copy-streams do)',
      })
    }
    const inexact = this.inexactUnderIndexRotation(analysis)
    if (inexact !== null) return this.refuse(inexact)
    let sql: string
    try {
      sql = this.spliceEncrypted(parse.sql, analysis)
    } catch (error) {
      return this.refuse(asWireError(error).toFields())
    }
    const statement = analysis.statements[0]
    const params = statement !== undefined && statement.action === 'rewrite' ? statement.params : NO_PARAMS
    const searchParams = statement !== undefined && statement.action === 'rewrite' ? statement.searchParams : NO_SEARCH_PARAMS
    const paramTypes = [...parse.paramTypes]
    const setType = (n: number, oid: number): void => {
      while (paramTypes.length < n) paramTypes.push(0)
      paramTypes[n - 1] = oid
    }
    for (const n of params.keys()) setType(n, TypeOid.bytea)
    for (const n of searchParams.keys()) setType(n, BYTEA_ARRAY_OID)
    const mayReturnProtected = statement !== undefined && statement.action === 'rewrite' && statement.resultColumnsMayBeProtected
    const copies = statement !== undefined && statement.action === 'rewrite' ? (statement.copies ?? []) : []
    const prepared: StatementState = { params, searchParams, mayReturnProtected, copies, rowFields: null }
    this.#unconfirmed.set(this.statements, parse.name, statement?.action === 'rewrite' && statement.createsMaterializedView === true ? { ...prepared, createsMaterializedView: true } : prepared)
    return { frames: [encodeParse({ name: parse.name, sql, paramTypes })], pending: [[Pending.Parse, PARSED]], dropUntilSync: false }
  }

  onBind(frame: Buffer): Forward & { portal: PortalState } {
    const bind = decodeBind(frame)
    const known = this.statements.get(bind.statement)
    if (known === undefined && this.#adopted) {
      const portal: PortalState = { statement: plainStatement(), resultFormats: bind.resultFormats, rowPlan: null, described: false }
      const name = bind.statement === '' ? 'unnamed prepared statement' : `prepared statement "${bind.statement}"`
      return { ...this.refuse({ severity: 'ERROR', code: '26000', message: `${name} does not exist under pgveil's new column policy`, hint: 'prepare it again (Parse): it was prepared before the policy changed' }), portal }
    }
    const statement = known ?? plainStatement()
    const portal: PortalState = { statement, resultFormats: bind.resultFormats, rowPlan: null, described: false }
    this.#unconfirmed.set(this.portals, bind.portal, portal)
    if (statement.createsMaterializedView === true) this.catalogStale = true
    try {
      this.checkCopies(statement.copies)
    } catch (error) {
      return { ...this.refuse(asWireError(error).toFields()), portal }
    }
    if (statement.params.size === 0 && statement.searchParams.size === 0) return { frames: [frame], pending: [], dropUntilSync: false, portal }
    const formats = bind.params.map((_, i) => (bind.paramFormats.length === 0 ? 0 : bind.paramFormats.length === 1 ? bind.paramFormats[0]! : bind.paramFormats[i] ?? 0))
    const params = [...bind.params]
    try {
      for (const [n, column] of statement.params) {
        const value = params[n - 1]
        if (value === undefined || value === null) continue
        this.checkWrite(this.tableColumnOf(column))
        const codec = TYPE_CODECS[column.type as PolicyType]
        const canonical = formats[n - 1] === 1 ? codec.canonicalFromBinary(value) : codec.canonicalFromText(value.toString('utf8'), this.format)
        params[n - 1] = sealColumnValue(this.ctx.keyring, this.indexed(column), canonical)
        formats[n - 1] = 1
        this.ctx.metrics.valuesEncryptedTotal.inc()
      }
      for (const [n, search] of statement.searchParams) {
        if (n > params.length) continue
        const value = params[n - 1] ?? null
        const codec = TYPE_CODECS[search.column.type as PolicyType]
        const binary = formats[n - 1] === 1
        const canonicalOf = (element: Buffer | string): string => (typeof element === 'string' ? codec.canonicalFromText(element, this.format) : codec.canonicalFromBinary(element))
        // A NULL compares like NULL: one NULL element, so `= ANY` yields NULL as `= NULL` would.
        const plaintexts: (Buffer | string | null)[] = !search.array ? [value === null ? null : binary ? value : value.toString('utf8')] : value === null ? [] : decodeArrayElements(value, binary, `parameter $${n} (an array of values searched in column "${search.column.name}")`)
        params[n - 1] = search.array && value === null ? null : encodeByteaArray(this.searchMacs(search.column, plaintexts.map((p) => (p === null ? null : canonicalOf(p)))))
        formats[n - 1] = 1
      }
    } catch (error) {
      return { ...this.refuse(asWireError(error).toFields()), portal }
    }
    return { frames: [encodeBind({ ...bind, paramFormats: formats, params })], pending: [], dropUntilSync: false, portal }
  }

  describeStatement(name: string): StatementState {
    return this.statements.get(name) ?? plainStatement()
  }

  portal(name: string): PortalState | undefined {
    return this.portals.get(name)
  }

  /** Before an Execute whose result columns pgveil has not seen: a Describe of the portal, answered to pgveil only. */
  describeBeforeExecute(portalName: string): Buffer | null {
    const portal = this.portals.get(portalName)
    if (portal === undefined || portal.described || !portal.statement.mayReturnProtected || portal.rowPlan !== null) return null
    portal.described = true
    return encodeDescribe({ target: 'P', name: portalName })
  }

  close(target: 'S' | 'P', name: string): void {
    if (target === 'S') this.#unconfirmed.set(this.statements, name, undefined)
    else this.#unconfirmed.set(this.portals, name, undefined)
  }

  /**
   * The analyzer for `sql`: the policy's, or the one that also knows the readable
   * views when `sql` reads through them; or the refusal of a statement through a view
   * over protected columns that pgveil does not handle (policy/view-references.ts).
   */
  private analyzerFor(sql: string): SqlAnalyzer | ErrorFields {
    const catalog = this.catalog
    const use = catalog?.views.useIn(sql) ?? null
    if (use === null) return this.ctx.analyzer
    if (use.refused === null) return catalog!.viewAnalyzer ?? this.ctx.analyzer
    return viewRefusal(use.refused, use.reason)
  }

  /** The error of an analyser's refusal; one on a readable view's column says to query the table instead (its hint is about the column's own policy). */
  private refusalOf(refused: RefusePlan): ErrorFields {
    const fields = refusalFields(refused)
    const column = refused.column
    if (column === undefined || this.catalog?.viewColumnOrigin(column.name) === undefined) return fields
    return { ...fields, hint: `"${column.schema}.${column.table}" is a view: pgveil decrypts the encrypted columns it returns and searches those whose table column is searchable, but refuses on them what it refuses on the table column (write other conditions, sorting and functions against the table)` }
  }

  /** Replace a refused message by a failing statement PostgreSQL runs in its place. */
  private refuse(fields: ErrorFields): Forward {
    return {
      frames: failingExtendedFrames(),
      pending: [
        [Pending.Parse, { kind: 'suppress' }],
        [Pending.Bind, { kind: 'suppress' }],
        [Pending.Execute, { kind: 'refusal', error: encodeErrorResponse(fields) }],
      ],
      dropUntilSync: true,
    }
  }

  private spliceEncrypted(sql: string, analysis: SqlAnalysis): string {
    return spliceLiterals(sql, literalReplacements(analysis, (slot) => this.encryptLiteral(slot), (slot) => this.searchArray(slot)))
  }

  /** The policy of a column the analyzer named (for its key binding, index domain and normalisation): a readable view's is the table column's it returns. */
  private indexed(column: QualifiedColumn): IndexedColumn {
    return this.ctx.policy.column(this.tableColumnOf(column)) ?? column
  }

  /** `schema.table.column` of a column the analyzer named: a view's is the table column it returns (what access rules and keys are for). */
  private tableColumnOf(column: QualifiedColumn): string {
    return this.catalog?.viewColumnOrigin(column.name) ?? column.name
  }

  /** Index values of each canonical value under every index key version (a NULL stays one NULL). */
  private searchMacs(column: QualifiedColumn, canonicals: readonly (string | null)[]): (Buffer | null)[] {
    const policy = this.indexed(column)
    const out: (Buffer | null)[] = []
    for (const canonical of canonicals) {
      if (canonical === null) out.push(null)
      else out.push(...lookupMacs(this.ctx.keyring, policy, canonical))
    }
    return out
  }

  /** The `bytea[]` expression of a search: its parameters, and its literals' index values inline. */
  private searchArray(slot: SearchSlot): string {
    const codec = TYPE_CODECS[slot.column.type as PolicyType]
    return searchArraySql(slot, this.ctx.keyring.indexVersions.length, (literals) => {
      const macs = this.searchMacs(slot.column, literals.map((value) => (value === null ? null : codec.canonicalFromText(value, this.format))))
      return macs.map((mac) => (mac === null ? 'NULL::bytea' : `E'\\\\x${mac.toString('hex')}'::bytea`))
    })
  }

  /**
   * A statement that compares index slots with each other (join, GROUP BY,
   * DISTINCT, ON CONFLICT) would miss matches while two index key versions are
   * held: refused until the old version is gone.
   */
  private inexactUnderIndexRotation(analysis: SqlAnalysis): ErrorFields | null {
    const versions = this.ctx.keyring.indexVersions
    if (versions.length <= 1) return null
    for (const statement of analysis.statements) {
      const column = statement.action === 'rewrite' ? statement.needsOneIndexVersion : undefined
      if (column === undefined) continue
      return {
        severity: 'ERROR',
        code: PGVEIL_REFUSED,
        message: `column "${column.name}" is encrypted by pgveil; this statement compares its index values with each other (a join, GROUP BY, DISTINCT, count(DISTINCT) or ON CONFLICT), which is exact only under one index key version, and keys.index holds versions ${versions.join(', ')} (run pgveil migrate --reindex, then remove the old index key version)`,
        hint: 'Run pgveil migrate --reindex, then remove the old index key version from keys.index.',
      }
    }
    return null
  }

  /**
   * Access rules for ciphertexts copied inside PostgreSQL: the identity must be
   * allowed to read the source in plaintext (else the copy would hand the value to a
   * column it may read) and to write the target.
   */
  private checkCopies(copies: readonly ProtectedCopy[]): void {
    for (const { from, to } of copies) {
      const source = this.tableColumnOf(from)
      if (this.columnAccess.readDenied.has(source)) throw new ColumnAccessError(`permission denied to copy column "${from.name}" into "${to.name}": this identity may not read "${source}" (see access rules)`)
      this.checkWrite(this.tableColumnOf(to))
    }
  }

  /** Access rules: may the session's identity write this column? */
  private checkWrite(column: string): void {
    const denied = this.columnAccess.writeDenied.size === 0 ? undefined : this.columnAccess.writeDenied.get(column)
    if (denied !== undefined) throw new ColumnAccessError(denied)
  }

  private encryptLiteral(slot: LiteralSlot): string {
    this.checkWrite(this.tableColumnOf(slot.column))
    const codec = TYPE_CODECS[slot.column.type as PolicyType]
    const canonical = codec.canonicalFromText(slot.value!, this.format)
    const envelope = sealColumnValue(this.ctx.keyring, this.indexed(slot.column), canonical)
    this.ctx.metrics.valuesEncryptedTotal.inc()
    // E'' reads backslashes the same whatever standard_conforming_strings says.
    return `E'\\\\x${envelope.toString('hex')}'::bytea`
  }

  /**
   * The row transformer of a COPY: for `in`, protected fields are checked as their
   * type and encrypted; for `out`, decrypted into the type's text output.
   */
  copyTransformer(spec: CopySpec): CopyRowTransformer {
    const transforms = new Map<number, FieldTransform>()
    this.copyColumns(spec).forEach((column, i) => {
      if (column === undefined) return
      const codec = TYPE_CODECS[column.type as PolicyType]
      if (spec.direction === 'out') {
        const opener = new EnvelopeOpener(this.ctx, column.binding)
        transforms.set(i, (value) => {
          // Access rules as for result rows: NULL or an error without decrypting, a mask after.
          const denied = this.columnAccess.readDenied.get(column.qualified)
          if (denied?.kind === 'error') throw new CopyRowError(denied.message)
          if (denied?.kind === 'null') return null
          const plaintext = codec.toText(opener.open(decodeByteaText(Buffer.from(value, 'latin1'))).toString('utf8'), this.format)
          return denied === undefined ? plaintext : denied.mask(plaintext)
        })
        return
      }
      transforms.set(i, (value) => {
        const denied = this.columnAccess.writeDenied.get(column.qualified)
        if (denied !== undefined) throw new CopyRowError(denied)
        let canonical: string
        try {
          canonical = codec.canonicalFromText(value, this.format)
        } catch {
          throw new CopyRowError(`a value for encrypted column "${column.qualified}" is not valid input for type ${codec.sqlName}`)
        }
        return `\\x${sealColumnValue(this.ctx.keyring, column, canonical).toString('hex')}`
      })
    })
    return new CopyRowTransformer(spec, transforms)
  }

  /** The protected column behind each field of a COPY's rows, by position. */
  private copyColumns(spec: CopySpec): readonly (ColumnPolicy | undefined)[] {
    if (spec.output !== undefined) return spec.output.map((column) => (column === undefined ? undefined : this.ctx.policy.column(this.tableColumnOf(column))))
    const columns = spec.columns ?? this.catalog?.tableColumns(spec.schema, spec.table)
    const protectedColumns = this.ctx.policy.table(spec.schema, spec.table)
    if (columns === undefined || protectedColumns === undefined) throw new CopyRowError(`the columns of table "${spec.schema}.${spec.table}" are unknown to pgveil`)
    return columns.map((name) => protectedColumns.get(name))
  }

  // --- PostgreSQL → client ----------------------------------------------------

  /** Plaintext type OIDs for the protected parameters of a described statement. */
  rewriteParameterDescription(frame: Buffer, statement: StatementState): Buffer {
    if (statement.params.size === 0 && statement.searchParams.size === 0) return frame
    const { typeOids } = decodeParameterDescription(frame)
    for (const [n, column] of statement.params) if (n <= typeOids.length) typeOids[n - 1] = TYPE_CODECS[column.type as PolicyType].oid
    for (const [n, search] of statement.searchParams) {
      const codec = TYPE_CODECS[search.column.type as PolicyType]
      if (n <= typeOids.length) typeOids[n - 1] = search.array ? codec.arrayOid : codec.oid
    }
    return encodeParameterDescription(typeOids)
  }

  /**
   * Recognises protected result columns by table OID and attribute number. Returns
   * the plan (null when no column is protected) and the frame to forward.
   */
  rowDescription(frame: Buffer): DescribedRows {
    const catalog = this.catalog
    if (catalog === null || !mayCarryEnvelopes(frame, catalog)) return { frame, plan: null, fields: null }
    // A prepared statement executed again gets the same RowDescription (libpq describes
    // every portal): the plan and the rewritten frame are reused, not made anew.
    const cache = this.#described
    for (const entry of cache) if (entry.catalog === catalog && entry.source.equals(frame)) return entry.described
    const { fields } = decodeRowDescription(frame)
    const { plan, rewritten, unknownRelations } = planFields(this.ctx, catalog, fields)
    for (const oid of unknownRelations) this.unknownRelation(oid)
    const described = { frame: plan?.decrypts === true ? encodeRowDescription(rewritten) : frame, plan, fields }
    // The source is copied: `frame` is a view of the read buffer, which is reused.
    if (cache.length >= DESCRIBED_CACHE_SIZE) cache.shift()
    cache.push({ source: Buffer.from(frame), catalog, described: described.frame === frame ? { ...described, frame: Buffer.from(frame) } : described })
    return described
  }

  /** The last RowDescriptions of protected tables and what rowDescription made of them, oldest first. */
  readonly #described: { readonly source: Buffer; readonly catalog: DatabaseCatalog; readonly described: DescribedRows }[] = []

  /** The plan of a portal whose statement was described before it was bound. */
  planFromStatement(portal: PortalState): RowPlan | null {
    const fields = portal.statement.rowFields
    if (fields === null || this.catalog === null) return null
    // Known to return no protected or bytea column: no Describe of the portal is needed before it runs.
    if (fields.length === 0) return NO_PROTECTED_COLUMNS
    // A statement bound again and again with the same result formats (pgbench, any prepared statement) gets the plan it had.
    const statement = portal.statement
    const cached = statement.boundPlan
    if (cached !== undefined && cached.catalog === this.catalog && cached.fields === fields && sameFormats(cached.formats, portal.resultFormats)) return cached.plan
    const plan = planFields(this.ctx, this.catalog, fields, portal.resultFormats).plan ?? NO_PROTECTED_COLUMNS
    statement.boundPlan = { catalog: this.catalog, fields, formats: portal.resultFormats, plan }
    return plan
  }

  /**
   * Decrypts the protected cells of the DataRow in frame[start, end) into `rows`
   * (the new row is rows.buffer[rows.rowStart, rows.position)); false when the row
   * goes on unchanged. Throws DecryptionError, UnattributedCiphertextError or
   * ColumnAccessError (see RowDecryptor).
   */
  decryptRow(frame: Buffer, start: number, end: number, plan: RowPlan): boolean {
    const decryptor = this.#rowDecryptor
    const written = decryptor.decryptRow(frame, start, end, plan, this.columnAccess, this.format, this.rows)
    // Counted in batches: a prom-client increment per row would cost more than the row.
    if (decryptor.decrypted >= 1024) this.reportCounts()
    return written
  }

  /** Where decryptRow writes rows: slabs that go to the client socket as they fill. */
  readonly rows = new RowSink()
  readonly #rowDecryptor = new RowDecryptor()

  /** Adds the values decrypted since the last report to the metrics (at each ReadyForQuery, and every 1,024 values). */
  reportCounts(): void {
    const decryptor = this.#rowDecryptor
    if (decryptor.decrypted === 0) return
    this.ctx.metrics.valuesDecryptedTotal.inc(decryptor.decrypted)
    decryptor.decrypted = 0
  }
}

/**
 * How to treat each result column: decrypt the ones from protected columns (their
 * field rewritten to the plaintext type), guard bytea ones that are not. `formats` are
 * a Bind's result formats; without them each field's own format applies. The plan is
 * null when no column needs either.
 */
function planFields(keys: KeyringSource, catalog: DatabaseCatalog, fields: readonly FieldDescription[], formats?: readonly number[]): { plan: RowPlan | null; rewritten: FieldDescription[]; unknownRelations: number[] } {
  const plan: (ProtectedField | GuardedField | undefined)[] = []
  /** Relations of guarded fields: the catalog does not know them (see SessionCrypto.unknownRelation). */
  const unknownRelations: number[] = []
  let decrypts = false
  let guards = false
  const rewritten = fields.map((field, i) => {
    const format = formats === undefined ? field.format : formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : formats[i] ?? 0
    const column = field.tableOid === 0 ? undefined : catalog.column(field.tableOid, field.columnAttr)
    if (column === undefined) {
      const guard = field.typeOid === TypeOid.bytea
      guards ||= guard
      if (guard && field.tableOid !== 0) unknownRelations.push(field.tableOid)
      plan.push(guard ? { kind: 'guard', name: field.name, binary: format === 1 } : undefined)
      return field
    }
    const codec = TYPE_CODECS[column.type as PolicyType]
    decrypts = true
    plan.push({ kind: 'decrypt', opener: new EnvelopeOpener(keys, column.binding), name: column.qualified, codec, binary: format === 1, verbatim: codec.type === 'text' })
    return { ...field, typeOid: codec.oid, typeSize: codec.typlen, typeModifier: -1, format }
  })
  return { plan: decrypts || guards ? { fields: plan, decrypts } : null, rewritten, unknownRelations }
}

function sameFormats(a: readonly number[], b: readonly number[]): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function refusalFields(refused: RefusePlan): ErrorFields {
  return { severity: 'ERROR', code: refused.sqlState, message: refused.message, hint: refused.hint }
}

function copyOf(analysis: SqlAnalysis): CopySpec | null {
  for (const statement of analysis.statements) if (statement.action === 'rewrite' && statement.copy !== undefined) return statement.copy
  return null
}

/** Why a statement through a view over protected columns is refused, and what to do instead. */
function viewRefusal(view: DependentView, reason: ViewRefusalReason): ErrorFields {
  const kind = viewKind(view)
  const named = `${kind} "${view.qualified}", which reads encrypted ${originsText(view)}`
  const refusal = (message: string, hint: string): ErrorFields => ({ severity: 'ERROR', code: PGVEIL_REFUSED, message, hint })
  switch (reason) {
    case 'unreadable':
      return refusal(`the statement reads or writes through ${named}; pgveil cannot decrypt through this ${kind} or see conditions written against it, because ${view.unreadable}`, `query the table itself through pgveil, or select the encrypted columns unchanged in the ${kind}`)
    case 'write':
      return refusal(
        `the statement writes through ${named}, or uses it otherwise than to read or write rows; pgveil writes through a view only when PostgreSQL writes through it to its table by itself (an automatically updatable view, no INSTEAD OF trigger or rule), and refuses MERGE, COPY FROM, SELECT INTO, CREATE TABLE AS, EXPLAIN and a data-modifying WITH through views`,
        'write to the table itself through pgveil',
      )
    case 'unqualified':
      return refusal(`the statement names "${view.qualified.slice(view.qualified.indexOf('.') + 1)}" without a schema, which may mean ${named}; pgveil resolves unqualified names in schema public only`, `qualify the name with its schema ("${view.qualified}")`)
    case 'unparseable':
      return refusal(`the statement cannot be parsed and names ${named}`, 'correct the statement')
  }
}

function asWireError(error: unknown): WireError {
  if (error instanceof WireError) return error
  if (error instanceof DecryptionError) return new WireError(error.sqlState, error.message)
  return new WireError(SqlState.InternalError, `pgveil could not encrypt a value: ${(error as Error).message}`)
}

/** Cheap pre-check on a RowDescription: does any field come from a protected table, or is any bytea? */
function mayCarryEnvelopes(frame: Buffer, catalog: DatabaseCatalog): boolean {
  const count = frame.readUInt16BE(5)
  let offset = 7
  for (let i = 0; i < count; i++) {
    offset = frame.indexOf(0, offset) + 1
    if (offset === 0) return false
    if (catalog.isProtectedTable(frame.readUInt32BE(offset)) || frame.readUInt32BE(offset + 6) === TypeOid.bytea) return true
    offset += 18
  }
  return false
}
