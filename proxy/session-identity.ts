/**
 * Verified identity and context of one session: answers SET/RESET/SHOW
 * IDENTITY|CONTEXT (simple and extended protocol), ties SET LOCAL to the
 * transaction, enforces identity.require and token expiry before statements, and
 * keeps the column access view in step with the identity.
 *
 * pgveil's commands never reach PostgreSQL as written. Each is replaced by a
 * statement of pgveil's own (`SELECT`, or `SELECT set_config('pgveil.claims', …)`
 * when claims are forwarded, or a statement that fails with pgveil's marker
 * SQLSTATE when the command is refused) whose replies are rewritten into what the
 * client expects (CommandComplete SET, NoData, pgveil's ErrorResponse). So
 * PostgreSQL keeps the order of replies, the transaction status and the "current
 * transaction is aborted" rule, and claims forwarded as settings follow the
 * transaction exactly like pgveil's own state does.
 *
 * The effect of a command is applied when PostgreSQL's reply to its statement
 * arrives, and the client is not read in between, so every later statement of the
 * client runs under the new identity. Session-level changes made inside a
 * transaction are provisional until it ends: a rollback undoes them (as PostgreSQL
 * does for SET); SET LOCAL ends with the transaction.
 */
import { encodeCommandComplete, encodeDataRow, encodeErrorResponse, encodeParameterDescription, encodeReadyForQuery, encodeRowDescription, NO_DATA, decodeCommandComplete, type TransactionStatusChar } from '../protocol/backend.js'
import { SqlState, WireError, decodeNoticeFields } from '../protocol/errors.js'
import { decodeBind, decodeClose, decodeDescribe, decodeExecute, decodeParse, decodeQuery, encodeBind, encodeClose, encodeExecute, encodeParse, encodeQuery, FLUSH } from '../protocol/frontend.js'
import { BackendCode, FrontendCode, TransactionStatus } from '../protocol/message-codes.js'
import { OPEN_ACCESS, type AccessRules, type ColumnAccessView } from '../policy/access.js'
import { mayNeedIdentityScan, scanStatements, type IdentityCommand, type IdentityTarget } from '../policy/identity-commands.js'
import { IdentityError, type IdentityConfig, type IdentityTrust, type VerifiedIdentity } from '../policy/identity.js'
import { PGVEIL_REFUSED } from '../policy/sql-plan.js'
import { FAILING_SQL, failingExtendedFrames } from './failing-statement.js'
import { Pending } from './pending-queue.js'

/** What the rest of pgveil (audit) may read about a session's identity. */
export interface IdentityView {
  readonly iss: string
  readonly sub: string | null
  readonly aud: readonly string[]
}

export type ClearCause = 'reset' | 'reset-all' | 'expired' | 'transaction-end' | 'rollback'

/** Identity lifecycle events, for the audit log. Never carry the token. */
export type IdentityEvent =
  | { readonly type: 'identity-set'; readonly identity: IdentityView; readonly local: boolean }
  | { readonly type: 'identity-failed'; readonly outcome: string; readonly reason: string }
  | { readonly type: 'identity-cleared'; readonly cause: ClearCause }
  | { readonly type: 'context-set'; readonly local: boolean }
  | { readonly type: 'context-failed'; readonly reason: string }
  | { readonly type: 'context-cleared'; readonly cause: ClearCause }

export type IdentityListener = (event: IdentityEvent) => void

/** Pending-queue contexts of the messages pgveil sends for identity commands. */
export type IdentityPending =
  | { readonly kind: 'identity-query'; readonly steps: readonly LocalStep[]; index: number }
  | { readonly kind: 'identity-execute'; readonly step: LocalStep }
  | { readonly kind: 'identity-describe'; readonly statement: LocalStatement }
  /** A message pgveil sent on its own behalf: no reply reaches the client. */
  | { readonly kind: 'identity-silent' }
  /** pgveil's failing statement: its marker error is replaced by `error`. */
  | { readonly kind: 'identity-refusal'; readonly error: Buffer }

/** What the session does with a client message. */
export const ClientVerdict = {
  /** Not pgveil's: carry on as usual. */
  Pass: 0,
  /** Consumed. */
  Handled: 1,
  /** Consumed; stop reading the client until resumeClient(). */
  Paused: 2,
} as const
export type ClientVerdict = (typeof ClientVerdict)[keyof typeof ClientVerdict]

/** onUpstreamFrame's "not mine, handle as usual". */
export const PASS_REPLY = Symbol('pass')

export interface IdentityHost {
  /** Forward frames upstream with their pending-queue entries, in order. */
  sendUpstream(frames: Buffer[], entries: [Pending, IdentityPending | undefined][]): void
  /** Process the client's held messages again (after Paused). */
  resumeClient(): void
  /** Nothing is in flight to or from PostgreSQL (the last reply was ReadyForQuery). */
  isIdle(): boolean
  /** Replies pgveil makes up itself, ending with ReadyForQuery; the client is read again after them. */
  answerClient(frames: Buffer[]): void
  setColumnAccess(view: ColumnAccessView): void
  fail(error: unknown): void
}

interface ContextValue {
  readonly text: string
  readonly value: unknown
}

interface State {
  identity: VerifiedIdentity | null
  context: ContextValue | null
}

type Change = { readonly target: 'identity'; readonly local: boolean; readonly value: VerifiedIdentity | null } | { readonly target: 'context'; readonly local: boolean; readonly value: ContextValue | null }

/** One pgveil command as sent upstream, and what its reply means. */
interface LocalStep {
  readonly command: IdentityCommand
  /** The statement sent in its place (simple protocol). */
  readonly sql: string
  readonly change: Change | null
  /** Bind parameters of the extended-protocol statement. */
  readonly params: (string | null)[]
  /** pgveil refused the command: this ErrorResponse replaces the failing statement's. */
  readonly failure: Buffer | null
  /** PostgreSQL must run `sql` (it sets the forwarded claims). */
  readonly upstream: boolean
}

/** A statement prepared from one of pgveil's commands (extended protocol). */
interface LocalStatement {
  readonly command: IdentityCommand
  /** Parameters the client's statement has ($n), all text. */
  readonly paramCount: number
}

const CLAIMS_CLEAR_STATEMENT = 'pgveil_identity_clear'
const TEXT_OID = 25
const MAX_CONTEXT_BYTES = 64 * 1024
const TRANSACTION_CONTROL = /^\s*(begin|start|commit|end|rollback|abort|savepoint|release|prepare\s+transaction)\b/i
const ENDS_TRANSACTION = /^(COMMIT|ROLLBACK)$/

export interface SessionIdentityOptions {
  /** Null: identity not configured (only access rules); SET IDENTITY is refused. */
  readonly trust: IdentityTrust | null
  readonly config: IdentityConfig | null
  readonly access: AccessRules | null
}

export class SessionIdentity {
  private readonly host: IdentityHost
  private readonly trust: IdentityTrust | null
  private readonly config: IdentityConfig | null
  private readonly access: AccessRules | null
  private readonly listeners = new Set<IdentityListener>()

  private committed: State = { identity: null, context: null }
  /** Session-level changes made in the transaction that is open (provisional). */
  private provisional: State | null = null
  /** SET LOCAL values of the open transaction. */
  private local: Partial<State> | null = null

  /** Transaction status at the last ReadyForQuery. */
  private lastStatus: number = TransactionStatus.Idle
  private errorSinceReady = false
  private lastEndTag: string | null = null

  private readonly statements = new Map<string, LocalStatement>()
  private readonly portals = new Map<string, LocalStep>()
  private readonly transactionControlStatements = new Set<string>()
  /** A refused extended-protocol message: the client's messages up to its Sync are dropped. */
  private droppingUntilSync = false
  /** The client is not read until the reply to this entry (or any error) is processed. */
  private awaited: IdentityPending | null = null
  /** A result the client may not see: PostgreSQL's replies up to ReadyForQuery are dropped. */
  private withholding = false
  private view: ColumnAccessView = OPEN_ACCESS

  constructor(host: IdentityHost, options: SessionIdentityOptions) {
    this.host = host
    this.trust = options.trust
    this.config = options.config
    this.access = options.access
    this.refreshAccess()
  }

  // --- what other code reads ------------------------------------------------------

  /** The verified identity statements run under now (never the token), or null. */
  get current(): IdentityView | null {
    const identity = this.effective('identity')
    return identity === null ? null : { iss: identity.iss, sub: identity.sub, aud: identity.aud }
  }

  /** The session's context (parsed JSON), or null when none is set. */
  get context(): unknown {
    return this.effective('context')?.value ?? null
  }

  /** What the current identity may read and write of protected columns. */
  get columnAccess(): ColumnAccessView {
    return this.view
  }

  /** Subscribe to identity events; returns the unsubscribe function. */
  on(listener: IdentityListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  // --- client → PostgreSQL -----------------------------------------------------

  onClientFrame(buffer: Buffer, start: number, end: number): ClientVerdict {
    const code = buffer[start]
    if (this.droppingUntilSync) {
      if (code === FrontendCode.Sync) {
        this.droppingUntilSync = false
        return ClientVerdict.Pass
      }
      return code === FrontendCode.Flush ? ClientVerdict.Pass : ClientVerdict.Handled
    }
    switch (code) {
      case FrontendCode.Query:
        return this.onQuery(buffer.subarray(start, end))
      case FrontendCode.Parse:
        return this.onParse(buffer.subarray(start, end))
      case FrontendCode.Bind:
        return this.onBind(buffer.subarray(start, end))
      case FrontendCode.Describe:
        return this.onDescribe(buffer.subarray(start, end))
      case FrontendCode.Execute:
        return this.onExecute(buffer.subarray(start, end))
      case FrontendCode.FunctionCall: {
        // Answered like a failed query: ErrorResponse, then ReadyForQuery.
        const refusal = this.gate(() => false)
        return refusal === null ? ClientVerdict.Pass : this.refuseQuery(refusal)
      }
      case FrontendCode.Close: {
        const close = decodeClose(buffer.subarray(start, end))
        if (close.target === 'S') {
          this.statements.delete(close.name)
          this.transactionControlStatements.delete(close.name)
        } else {
          this.portals.delete(close.name)
        }
        return ClientVerdict.Pass
      }
      default:
        return ClientVerdict.Pass
    }
  }

  private onQuery(frame: Buffer): ClientVerdict {
    const { sql } = decodeQuery(frame)
    const forward = this.config?.forwardClaims === true
    let statements = this.config?.require === true || mayNeedIdentityScan(sql) ? scanStatements(sql) : null
    if (statements !== null) {
      if (forward && statements.some((s) => s.setsClaimSettings)) return this.refuseQuery(claimSettingsError())
      const commands = statements.filter((s) => s.command !== null && s.command.kind !== 'reset-all')
      if (commands.length > 0) {
        if (statements.some((s) => !s.empty && (s.command === null || s.command.kind === 'reset-all'))) {
          return this.refuseQuery(
            new WireError(SqlState.FeatureNotSupported, 'SET/RESET/SHOW IDENTITY and CONTEXT cannot be combined with other statements in one query string', {
              hint: 'send them as a query of their own (several of them may share one string)',
            }),
          )
        }
        return this.runLocalQuery(commands.map((s) => s.command!))
      }
      if (statements.some((s) => s.command?.kind === 'reset-all')) this.clearAll('reset-all')
    }
    const refusal = this.gate(() => (statements ??= scanStatements(sql)).every((s) => s.empty || s.transactionControl || s.command?.kind === 'reset-all'))
    return refusal === null ? ClientVerdict.Pass : this.refuseQuery(refusal)
  }

  private runLocalQuery(commands: IdentityCommand[]): ClientVerdict {
    void Promise.all(commands.map((command) => this.prepare(command, null)))
      .then((steps) => {
        if (this.host.isIdle() && !this.errorSinceReady && this.lastStatus !== TransactionStatus.Failed && steps.every((step) => step.failure === null && !step.upstream)) {
          this.answerLocally(steps)
          return
        }
        const pending: IdentityPending = { kind: 'identity-query', steps, index: 0 }
        this.awaited = pending
        this.host.sendUpstream([encodeQuery(steps.map((step) => step.sql).join(';\n'))], [[Pending.Query, pending]])
      })
      .catch((error: unknown) => this.host.fail(error))
    return ClientVerdict.Paused
  }

  /**
   * Nothing for PostgreSQL to do and nothing in flight: answer without a round trip,
   * as PostgreSQL would (the transaction status is the last ReadyForQuery's).
   */
  private answerLocally(steps: readonly LocalStep[]): void {
    const frames: Buffer[] = []
    for (const step of steps) {
      if (step.command.kind === 'show') {
        const target = step.command.target
        frames.push(encodeRowDescription([{ name: target, tableOid: 0, columnAttr: 0, typeOid: TEXT_OID, typeSize: -1, typeModifier: -1, format: 0 }]))
        frames.push(encodeDataRow([Buffer.from(this.show(target), 'utf8')]))
      } else if (step.change !== null) {
        this.apply(step.change, 'reset')
      }
      frames.push(encodeCommandComplete(commandTag(step.command)))
    }
    const status = this.lastStatus
    frames.push(encodeReadyForQuery(String.fromCharCode(status) as TransactionStatusChar))
    this.onReadyForQuery(status)
    this.host.answerClient(frames)
  }

  private onParse(frame: Buffer): ClientVerdict {
    const parse = decodeParse(frame)
    this.statements.delete(parse.name)
    this.transactionControlStatements.delete(parse.name)
    if (TRANSACTION_CONTROL.test(parse.sql)) this.transactionControlStatements.add(parse.name)
    if (!mayNeedIdentityScan(parse.sql)) return ClientVerdict.Pass
    const scanned = scanStatements(parse.sql).filter((s) => !s.empty)
    if (this.config?.forwardClaims === true && scanned.some((s) => s.setsClaimSettings)) return this.refuseExtended(claimSettingsError())
    const command = scanned.length === 1 ? scanned[0]!.command : null
    if (command === null || command.kind === 'reset-all') {
      if (command?.kind === 'reset-all') this.clearAll('reset-all')
      return ClientVerdict.Pass
    }
    const statement: LocalStatement = { command, paramCount: command.kind === 'set' && 'param' in command.value ? command.value.param : 0 }
    this.statements.set(parse.name, statement)
    this.host.sendUpstream([encodeParse({ name: parse.name, sql: this.extendedSql(command), paramTypes: [] })], [[Pending.Parse, undefined]])
    return ClientVerdict.Handled
  }

  private onBind(frame: Buffer): ClientVerdict {
    const bind = decodeBind(frame)
    this.portals.delete(bind.portal)
    const statement = this.statements.get(bind.statement)
    if (statement === undefined) {
      const refusal = this.gate(() => this.transactionControlStatements.has(bind.statement))
      return refusal === null ? ClientVerdict.Pass : this.refuseExtended(refusal)
    }
    const params = bind.params.map((value) => (value === null ? null : value.toString('utf8')))
    void this.prepare(statement.command, params)
      .then((step) => {
        this.portals.set(bind.portal, step)
        const resultFormats = statement.command.kind === 'show' ? bind.resultFormats : []
        this.host.sendUpstream(
          [encodeBind({ portal: bind.portal, statement: bind.statement, paramFormats: [], params: step.params.map((p) => (p === null ? null : Buffer.from(p, 'utf8'))), resultFormats })],
          [[Pending.Bind, undefined]],
        )
        this.host.resumeClient()
      })
      .catch((error: unknown) => this.host.fail(error))
    return ClientVerdict.Paused
  }

  private onDescribe(frame: Buffer): ClientVerdict {
    const describe = decodeDescribe(frame)
    let statement: LocalStatement | undefined
    if (describe.target === 'S') statement = this.statements.get(describe.name)
    else {
      const step = this.portals.get(describe.name)
      if (step !== undefined) statement = { command: step.command, paramCount: 0 }
    }
    if (statement === undefined) return ClientVerdict.Pass
    this.host.sendUpstream([frame], [[describe.target === 'S' ? Pending.DescribeStatement : Pending.DescribePortal, { kind: 'identity-describe', statement }]])
    return ClientVerdict.Handled
  }

  private onExecute(frame: Buffer): ClientVerdict {
    const { portal } = decodeExecute(frame)
    const step = this.portals.get(portal)
    if (step === undefined) return ClientVerdict.Pass
    if (step.failure !== null) {
      this.sendFailing(step.failure)
      this.droppingUntilSync = true
      return ClientVerdict.Handled
    }
    const pending: IdentityPending = { kind: 'identity-execute', step }
    if (this.errorSinceReady) {
      // PostgreSQL skips everything up to the client's Sync: no reply will come to wait for.
      this.host.sendUpstream([frame], [[Pending.Execute, pending]])
      return ClientVerdict.Handled
    }
    this.awaited = pending
    // Flush: PostgreSQL answers before the client's Sync, so the client can be read again.
    this.host.sendUpstream([frame, FLUSH], [[Pending.Execute, pending]])
    return ClientVerdict.Paused
  }

  /** Verifies and checks one command; never rejects for a bad token (the step then carries the failure). */
  private async prepare(command: IdentityCommand, params: (string | null)[] | null): Promise<LocalStep> {
    const forward = this.config?.forwardClaims === true
    switch (command.kind) {
      case 'show':
        return { command, sql: `SELECT NULL::text AS ${command.target}`, change: null, params: [], failure: null, upstream: false }
      case 'reset':
      case 'reset-all':
        return this.changeStep(command, { target: command.kind === 'reset' ? command.target : 'identity', local: false, value: null }, forward)
      case 'set': {
        const value = command.value
        if ('default' in value) return this.changeStep(command, { target: command.target, local: command.local, value: null }, forward)
        let text: string | null
        if ('literal' in value) text = value.literal
        else {
          text = params === null ? null : (params[value.param - 1] ?? null)
          if (params === null || value.param > params.length) return this.failStep(command, new WireError(SqlState.ProtocolViolation, `SET ${command.target.toUpperCase()}: parameter $${value.param} has no value`))
        }
        if (text === null) return this.failStep(command, new WireError('22004', `SET ${command.target.toUpperCase()} cannot be NULL`, { hint: `use RESET ${command.target.toUpperCase()} to clear it` }))
        if (command.target === 'context') return this.contextStep(command, text, forward)
        return this.identityStep(command, text, forward)
      }
    }
  }

  private async identityStep(command: IdentityCommand & { kind: 'set' }, token: string, forward: boolean): Promise<LocalStep> {
    if (this.trust === null) {
      return this.failStep(command, new WireError(SqlState.InvalidAuthorization, 'SET IDENTITY is not available: pgveil trusts no issuer', { hint: 'configure identity.issuers' }), 'untrusted_issuer')
    }
    try {
      const identity = await this.trust.verify(token)
      return this.changeStep(command, { target: 'identity', local: command.local, value: identity }, forward)
    } catch (error) {
      if (!(error instanceof IdentityError)) throw error
      return this.failStep(command, new WireError(SqlState.InvalidAuthorization, `SET IDENTITY refused: ${error.message}`), error.outcome)
    }
  }

  private contextStep(command: IdentityCommand & { kind: 'set' }, text: string, forward: boolean): LocalStep {
    if (Buffer.byteLength(text) > MAX_CONTEXT_BYTES) return this.failStep(command, new WireError('54000', `SET CONTEXT: the context is larger than ${MAX_CONTEXT_BYTES} bytes`))
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (error) {
      return this.failStep(command, new WireError(SqlState.InvalidTextRepresentation, 'SET CONTEXT: the value is not valid JSON', { detail: (error as Error).message, hint: "write it as SET CONTEXT TO '{\"key\": \"value\"}'" }))
    }
    return this.changeStep(command, { target: 'context', local: command.local, value: { text: JSON.stringify(value), value } }, forward)
  }

  private changeStep(command: IdentityCommand, change: Change, forward: boolean): LocalStep {
    if (!forward || change.target !== 'identity') return { command, sql: 'SELECT', change, params: [], failure: null, upstream: false }
    const claims = change.value === null ? '' : JSON.stringify(change.value.claims)
    const sub = change.value?.sub ?? ''
    const local = change.local ? 'true' : 'false'
    return {
      command,
      sql: `SELECT pg_catalog.set_config('pgveil.claims', ${textLiteral(claims)}, ${local}), pg_catalog.set_config('pgveil.sub', ${textLiteral(sub)}, ${local})`,
      change,
      params: [claims, sub],
      failure: null,
      upstream: true,
    }
  }

  private failStep(command: IdentityCommand, error: WireError, outcome?: string): LocalStep {
    const target: IdentityTarget = command.kind === 'reset-all' ? 'identity' : command.target
    if (this.listeners.size > 0) {
      this.emit(target === 'identity' ? { type: 'identity-failed', outcome: outcome ?? 'invalid', reason: error.message } : { type: 'context-failed', reason: error.message })
    }
    return { command, sql: FAILING_SQL, change: null, params: [], failure: encodeErrorResponse(error.toFields()), upstream: true }
  }

  /** The statement prepared upstream in place of one of pgveil's commands. */
  private extendedSql(command: IdentityCommand): string {
    if (command.kind === 'show') return `SELECT NULL::text AS ${command.target}`
    const target = command.kind === 'reset-all' ? 'identity' : command.target
    if (this.config?.forwardClaims !== true || target !== 'identity') return 'SELECT'
    const local = command.kind === 'set' && command.local ? 'true' : 'false'
    return `SELECT pg_catalog.set_config('pgveil.claims', $1::text, ${local}), pg_catalog.set_config('pgveil.sub', $2::text, ${local})`
  }

  /**
   * Before a statement of the client's: an expired identity is refused or cleared
   * (identity.on_expiry), and identity.require refuses statements without one.
   * `onlyTransactionControl` is asked only when it matters.
   */
  private gate(onlyTransactionControl: () => boolean): WireError | null {
    const config = this.config
    if (config === null) return null
    const identity = this.effective('identity')
    if (identity !== null && identity.exp !== null && Date.now() / 1000 > identity.exp + config.clockToleranceSeconds) {
      if (config.onExpiry === 'refuse') {
        if (onlyTransactionControl()) return null
        return new WireError(SqlState.InvalidAuthorization, `the identity's token expired at ${new Date(identity.exp * 1000).toISOString()}`, {
          hint: 'SET IDENTITY with a fresh token, or RESET IDENTITY',
        })
      }
      this.expire()
      return config.require && !onlyTransactionControl() ? requireError() : null
    }
    if (identity === null && config.require && !onlyTransactionControl()) return requireError()
    return null
  }

  /** on_expiry: clear — drop the identity (provisionally, like any change) and the forwarded claims with it. */
  private expire(): void {
    this.apply({ target: 'identity', local: false, value: null }, 'expired')
    if (this.config?.forwardClaims !== true || this.lastStatus === TransactionStatus.Failed) return
    const silent: IdentityPending = { kind: 'identity-silent' }
    this.host.sendUpstream(
      [
        encodeParse({ name: CLAIMS_CLEAR_STATEMENT, sql: "SELECT pg_catalog.set_config('pgveil.claims', '', false), pg_catalog.set_config('pgveil.sub', '', false)", paramTypes: [] }),
        encodeBind({ portal: CLAIMS_CLEAR_STATEMENT, statement: CLAIMS_CLEAR_STATEMENT, paramFormats: [], params: [], resultFormats: [] }),
        encodeExecute({ portal: CLAIMS_CLEAR_STATEMENT, maxRows: 0 }),
        encodeClose({ target: 'S', name: CLAIMS_CLEAR_STATEMENT }),
        encodeClose({ target: 'P', name: CLAIMS_CLEAR_STATEMENT }),
      ],
      [
        [Pending.Parse, silent],
        [Pending.Bind, silent],
        [Pending.Execute, silent],
        [Pending.Close, silent],
        [Pending.Close, silent],
      ],
    )
  }

  private refuseQuery(error: WireError): ClientVerdict {
    this.host.sendUpstream([encodeQuery(FAILING_SQL)], [[Pending.Query, { kind: 'identity-refusal', error: encodeErrorResponse(error.toFields()) }]])
    return ClientVerdict.Handled
  }

  private refuseExtended(error: WireError): ClientVerdict {
    this.sendFailing(encodeErrorResponse(error.toFields()))
    this.droppingUntilSync = true
    return ClientVerdict.Handled
  }

  /** A failing statement in the extended protocol: the transaction aborts as after any error. */
  private sendFailing(error: Buffer): void {
    const silent: IdentityPending = { kind: 'identity-silent' }
    this.host.sendUpstream(
      failingExtendedFrames(),
      [
        [Pending.Parse, silent],
        [Pending.Bind, silent],
        [Pending.Execute, { kind: 'identity-refusal', error }],
      ],
    )
  }

  // --- PostgreSQL → client -----------------------------------------------------

  /**
   * Sees every reply before the session handles it. Returns PASS_REPLY (handle as
   * usual), null (drop it) or the frame the client gets instead. The caller moves
   * the pending queue on in every case.
   */
  onUpstreamFrame(buffer: Buffer, start: number, end: number, context: unknown): Buffer | null | typeof PASS_REPLY {
    const code = buffer[start]
    if (code === BackendCode.ReadyForQuery) {
      this.onReadyForQuery(buffer[start + 5]!)
      if (this.withholding) this.withholding = false
      return PASS_REPLY
    }
    if (this.withholding) return null
    if (code === BackendCode.ErrorResponse) this.errorSinceReady = true
    else if (code === BackendCode.CommandComplete && this.provisional !== null) {
      const tag = decodeCommandComplete(buffer.subarray(start, end)).tag
      if (ENDS_TRANSACTION.test(tag)) this.lastEndTag = tag
    }
    const pending = isIdentityPending(context) ? context : undefined
    const reply = pending === undefined ? PASS_REPLY : this.onReply(buffer.subarray(start, end), pending)
    // An Execute is done at its CommandComplete; a Query at its ReadyForQuery; anything after an error.
    if (this.awaited !== null && (code === BackendCode.ErrorResponse || (pending === this.awaited && pending.kind === 'identity-execute' && code === BackendCode.CommandComplete))) this.resumeAfterReply()
    return reply
  }

  /** A result whose column the identity may not read with `otherwise: error`: the client gets `error` and nothing more of it. */
  withholdUntilReady(): void {
    this.withholding = true
  }

  private onReply(frame: Buffer, pending: IdentityPending): Buffer | null | typeof PASS_REPLY {
    const code = frame[0]
    switch (pending.kind) {
      case 'identity-silent':
        return code === BackendCode.NoticeResponse || code === BackendCode.ParameterStatus ? PASS_REPLY : null
      case 'identity-refusal':
        return code === BackendCode.ErrorResponse && decodeNoticeFields(frame).get('C') === PGVEIL_REFUSED ? pending.error : PASS_REPLY
      case 'identity-describe':
        if (code === BackendCode.ParameterDescription) return encodeParameterDescription(new Array<number>(pending.statement.paramCount).fill(TEXT_OID))
        if (code === BackendCode.RowDescription) return pending.statement.command.kind === 'show' ? frame : NO_DATA
        return PASS_REPLY
      case 'identity-execute':
        return this.onStepReply(frame, pending.step)
      case 'identity-query': {
        const step = pending.steps[pending.index]
        if (step === undefined) return PASS_REPLY
        if (code === BackendCode.CommandComplete) pending.index++
        return this.onStepReply(frame, step)
      }
    }
  }

  private onStepReply(frame: Buffer, step: LocalStep): Buffer | null | typeof PASS_REPLY {
    switch (frame[0]) {
      case BackendCode.RowDescription:
        return step.command.kind === 'show' ? frame : null
      case BackendCode.DataRow:
        return step.command.kind === 'show' ? encodeDataRow([Buffer.from(this.show(step.command.target), 'utf8')]) : null
      case BackendCode.CommandComplete:
        if (step.change !== null) this.apply(step.change, step.command.kind === 'reset-all' ? 'reset-all' : 'reset')
        return encodeCommandComplete(commandTag(step.command))
      case BackendCode.ErrorResponse: {
        const fields = decodeNoticeFields(frame)
        if (step.failure !== null && fields.get('C') === PGVEIL_REFUSED) return step.failure
        // PostgreSQL refused pgveil's statement (an aborted transaction): the command had no effect.
        if (step.change !== null && this.listeners.size > 0) {
          const reason = fields.get('M') ?? 'refused by PostgreSQL'
          this.emit(step.change.target === 'identity' ? { type: 'identity-failed', outcome: 'refused_upstream', reason } : { type: 'context-failed', reason })
        }
        return PASS_REPLY
      }
      default:
        return PASS_REPLY
    }
  }

  private show(target: IdentityTarget): string {
    if (target === 'context') return this.effective('context')?.text ?? ''
    const identity = this.effective('identity')
    return identity === null ? '' : JSON.stringify({ iss: identity.iss, sub: identity.sub, aud: identity.aud })
  }

  private resumeAfterReply(): void {
    this.awaited = null
    // After the current batch of replies: the client's next messages may push to the same queue.
    queueMicrotask(() => this.host.resumeClient())
  }

  private onReadyForQuery(status: number): void {
    if (this.awaited !== null) this.resumeAfterReply()
    if (status === TransactionStatus.Idle) {
      const failed = (this.lastStatus === TransactionStatus.Idle && this.errorSinceReady) || this.lastEndTag === 'ROLLBACK'
      const before = this.effective('identity')
      const beforeContext = this.effective('context')
      this.local = null
      if (this.provisional !== null) {
        if (!failed) this.committed = this.provisional
        this.provisional = null
      }
      this.lastEndTag = null
      const after = this.effective('identity')
      if (after !== before) {
        this.refreshAccess()
        if (after === null && this.listeners.size > 0) this.emit({ type: 'identity-cleared', cause: failed ? 'rollback' : 'transaction-end' })
      }
      if (this.effective('context') !== beforeContext && this.effective('context') === null && this.listeners.size > 0) this.emit({ type: 'context-cleared', cause: failed ? 'rollback' : 'transaction-end' })
    }
    this.lastStatus = status
    this.errorSinceReady = false
  }

  // --- state -----------------------------------------------------------------------

  private effective<K extends keyof State>(target: K): State[K] {
    const local = this.local
    if (local !== null && local[target] !== undefined) return local[target] as State[K]
    return (this.provisional ?? this.committed)[target]
  }

  private apply(change: Change, cause: ClearCause): void {
    const before = this.effective('identity')
    if (change.local) {
      this.local ??= {}
      if (change.target === 'identity') this.local.identity = change.value
      else this.local.context = change.value
    } else {
      const next = { ...(this.provisional ?? this.committed) }
      if (change.target === 'identity') next.identity = change.value
      else next.context = change.value
      this.provisional = next
      // A session-level SET replaces the transaction's SET LOCAL, as in PostgreSQL.
      if (this.local !== null) delete this.local[change.target]
    }
    if (this.effective('identity') !== before) this.refreshAccess()
    if (this.listeners.size === 0) return
    if (change.target === 'identity') {
      const identity = change.value
      this.emit(identity === null ? { type: 'identity-cleared', cause } : { type: 'identity-set', identity: { iss: identity.iss, sub: identity.sub, aud: identity.aud }, local: change.local })
    } else {
      this.emit(change.value === null ? { type: 'context-cleared', cause } : { type: 'context-set', local: change.local })
    }
  }

  private clearAll(cause: ClearCause): void {
    if (this.effective('identity') !== null) this.apply({ target: 'identity', local: false, value: null }, cause)
    if (this.effective('context') !== null) this.apply({ target: 'context', local: false, value: null }, cause)
  }

  private refreshAccess(): void {
    const view = this.access === null ? OPEN_ACCESS : this.access.view(this.effective('identity'))
    if (view === this.view) return
    this.view = view
    this.host.setColumnAccess(view)
  }

  private emit(event: IdentityEvent): void {
    for (const listener of this.listeners) listener(event)
  }
}

const IDENTITY_PENDING_KINDS: ReadonlySet<unknown> = new Set<IdentityPending['kind']>(['identity-query', 'identity-execute', 'identity-describe', 'identity-silent', 'identity-refusal'])

function isIdentityPending(context: unknown): context is IdentityPending {
  return context !== undefined && IDENTITY_PENDING_KINDS.has((context as { kind?: unknown }).kind)
}

function commandTag(command: IdentityCommand): string {
  return command.kind === 'show' ? 'SHOW' : command.kind === 'set' ? 'SET' : 'RESET'
}

function requireError(): WireError {
  return new WireError(SqlState.InvalidAuthorization, 'pgveil requires a verified identity for this statement (identity.require is on)', {
    hint: "SET IDENTITY TO '<JWT>' first",
  })
}

function claimSettingsError(): WireError {
  return new WireError('42501', 'pgveil.* settings are set by pgveil only, from the verified identity (identity.forward_claims is on)', {
    hint: 'read them with current_setting(\'pgveil.claims\', true); do not set them',
  })
}

/** A text literal that reads the same whatever standard_conforming_strings says. */
function textLiteral(value: string): string {
  return value === '' ? "''" : `pg_catalog.convert_from(pg_catalog.decode('${Buffer.from(value, 'utf8').toString('hex')}', 'hex'), 'UTF8')`
}
