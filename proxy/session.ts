/**
 * One client connection in session mode: startup and TLS negotiation, the upstream
 * connection, the authentication relay, then message-by-message forwarding with a
 * pending-response queue. Frames pgveil does not change are forwarded byte for byte.
 */
import type net from 'node:net'
import tls from 'node:tls'
import { encodeBackendKeyData, encodeAuthenticationSASL, encodeErrorResponse, encodeNoticeResponse, authenticationCode, readyForQueryStatus, decodeBackendMessage, decodeCommandComplete, decodeParameterStatus } from '../protocol/backend.js'
import { DecryptionError } from '../policy/errors.js'
import { PGVEIL_REFUSED } from '../policy/sql-plan.js'
import { SqlState, WireError, ProtocolError, decodeNoticeFields } from '../protocol/errors.js'
import { MAX_PROTOCOL_MESSAGE_SIZE, MessageFramer } from '../protocol/framer.js'
import { decodeClose, decodeCopyData, decodeDescribe, decodeExecute, decodeSASLInitialResponse, encodeCopyData, encodeCopyFail, TERMINATE } from '../protocol/frontend.js'
import { AuthCode, BackendCode, FrontendCode, TransactionStatus, isFrontendCode } from '../protocol/message-codes.js'
import { decodeStartupPacket } from '../protocol/startup.js'
import type { Metrics } from '../audit/metrics.js'
import type { CancelRegistry, CancelTarget } from './cancel-registry.js'
import type { PgveilConfig } from './config.js'
import { FrameWriter } from './frame-writer.js'
import type { Logger } from './log.js'
import { Pending, PendingResponseQueue, skipsToSync } from './pending-queue.js'
import { CopyRowError, type CopyRowTransformer } from './copy-crypto.js'
import { CopyOutGuard } from './copy-guard.js'
import type { SqlAnalyzer } from '../policy/sql-analyzer.js'
import { NO_PROTECTED_COLUMNS, type RowPlan } from './row-decryptor.js'
import { CLOSED, SessionCrypto, type CryptoContext, type CryptoPending } from './session-crypto.js'
import { ClientVerdict, PASS_REPLY, SessionIdentity, type IdentityPending } from './session-identity.js'
import { ColumnAccessError, OPEN_ACCESS, type AccessRules } from '../policy/access.js'
import type { IdentityTrust } from '../policy/identity.js'
import { SessionAudit, type AuditContext } from './statement-audit.js'
import { connectUpstream, sendUpstreamCancel } from './upstream.js'
import type { UpstreamTarget } from './upstream-url.js'

/** Largest backend message pgveil accepts from PostgreSQL: its own limit, plus the type byte. */
const MAX_BACKEND_MESSAGE_SIZE = MAX_PROTOCOL_MESSAGE_SIZE + 1
/** Like PostgreSQL's authentication_timeout: a client must be through startup by then. */
const STARTUP_TIMEOUT_MS = 60_000
/** After we end a socket, how long the peer gets to close before it is destroyed. */
const CLOSE_GRACE_MS = 5_000

const SSL_ACCEPT = Buffer.from('S')
const SSL_REFUSE = Buffer.from('N')

const Phase = {
  Startup: 0,
  Connecting: 1,
  Authenticating: 2,
  Ready: 3,
  Closed: 4,
} as const
type Phase = (typeof Phase)[keyof typeof Phase]

export interface SessionContext {
  readonly config: PgveilConfig
  readonly target: UpstreamTarget
  readonly secureContext: tls.SecureContext | null
  readonly cancelRegistry: CancelRegistry
  readonly logger: Logger
  readonly metrics: Metrics
  /** Column encryption, when the policy protects something (replaced when the policy is reloaded). */
  readonly crypto: CryptoContext | null
  /** Trusted issuers (identity:), when configured. */
  readonly identityTrust?: IdentityTrust | null
  /** Access rules on protected columns (access:), when configured. */
  readonly access?: AccessRules | null
  /** The audit log, when on (replaced when the policy is reloaded); null costs the data path nothing. */
  readonly audit: AuditContext | null
  onClose(session: ClientSession): void
}

let nextSessionId = 1

export class ClientSession implements CancelTarget {
  readonly id = nextSessionId++
  private readonly ctx: SessionContext
  private client: net.Socket
  private clientTls = false
  private upstream: net.Socket | null = null
  private upstreamTls = false
  private phase: Phase = Phase.Startup
  private readonly clientFramer: MessageFramer
  private readonly upstreamFramer = new MessageFramer({ startup: false, maxMessageSize: MAX_BACKEND_MESSAGE_SIZE, peer: 'server' })
  private toClient: FrameWriter
  private toUpstream: FrameWriter | null = null
  readonly pending = new PendingResponseQueue<CryptoPending | IdentityPending>()
  private crypto: SessionCrypto | null = null
  /**
   * Verified identity and context (SET IDENTITY …), when identity or access rules
   * are configured. Read-only for other code: `identity.current`, `identity.context`,
   * `identity.on(listener)` for set/failed/cleared events.
   */
  readonly identity: SessionIdentity | null
  /** A refused extended-protocol message: the client's messages up to its Sync are dropped. */
  private droppingUntilSync = false
  /** COPY of a protected table in progress (rows transformed as they stream). */
  private copyIn: CopyRowTransformer | null = null
  private copyOut: CopyRowTransformer | null = null
  /** The check of a COPY TO's rows that pgveil does not decrypt (copy-guard.ts). */
  private copyOutGuard: CopyOutGuard | null = null
  /** pgveil aborted the client's COPY IN: its remaining copy messages are dropped. */
  private copyAborted = false
  private transactionStatus: number = TransactionStatus.Idle
  /** The last backend message was ReadyForQuery and the client has sent nothing since. */
  private atReadyForQuery = false
  private upstreamKey: { processId: number; secretKey: Buffer } | null = null
  private clientProcessId = 0
  private expectSaslInitialResponse = false
  private upstreamSentFatal = false
  private draining = false
  private drainReason = 'terminating connection because pgveil is shutting down'
  /** The column policy changed and this session has not taken the new one yet: why it ends if it cannot. */
  private policyChangedReason: string | null = null
  /** Taking a new column policy (its catalog is being read): client messages wait. */
  private adoptingPolicy = false
  /** The client message that arrived meanwhile (a copy: the framer has moved past it); the rest waits in the framer. */
  private heldForPolicy: Buffer | null = null
  /** The startup packet's parameters (a new policy checks the connection's search_path again). */
  private startupParams: ReadonlyMap<string, string> = new Map()
  private waitingForClientDrain = false
  private waitingForUpstreamDrain = false
  private startupTimer: NodeJS.Timeout | null
  /** Set for a connection over listen.max_connections: answered after its startup packet. */
  private readonly refusal: WireError | null
  private user = ''
  private database = ''
  /** Audit hooks: one call per frame each way when the audit log is on, nothing when off. */
  readonly audit: SessionAudit | null

  constructor(socket: net.Socket, ctx: SessionContext, refusal: WireError | null = null) {
    this.ctx = ctx
    this.client = socket
    this.refusal = refusal
    const audit = ctx.audit
    this.audit = audit === null ? null : new SessionAudit(() => ctx.audit ?? audit, this.id, `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`)
    this.clientFramer = new MessageFramer({ startup: true, maxMessageSize: ctx.config.listen.maxMessageSize, peer: 'client' })
    this.toClient = new FrameWriter(socket)
    socket.setNoDelay(true)
    this.attachClient(socket)
    this.startupTimer = setTimeout(() => this.fail(new WireError(SqlState.ConnectionFailure, 'timeout while waiting for the startup exchange to finish', { severity: 'FATAL' })), STARTUP_TIMEOUT_MS)
    this.startupTimer.unref()
    this.identity = this.createIdentity(ctx)
  }

  /** Identity and access rules, when configured; identity events go to the audit log. */
  private createIdentity(ctx: SessionContext): SessionIdentity | null {
    const config = ctx.config.identity ?? null
    const access = ctx.access ?? null
    if (config === null && access === null) return null
    const identity = new SessionIdentity(
      {
        sendUpstream: (frames, entries) => {
          if (this.phase !== Phase.Ready) return
          this.forward(frames, entries)
          this.flushToUpstream()
        },
        resumeClient: () => this.resumeClient(),
        isIdle: () => this.pending.isEmpty,
        answerClient: (frames) => {
          if (this.phase !== Phase.Ready) return
          for (const frame of frames) this.replyToClient(frame)
          this.atReadyForQuery = true
          this.flushToClient()
          this.resumeClient()
        },
        setColumnAccess: (view) => {
          if (this.crypto !== null) this.crypto.columnAccess = view
        },
        fail: (error) => this.fail(error),
      },
      { trust: ctx.identityTrust ?? null, config, access },
    )
    const audit = this.audit
    if (audit !== null) {
      identity.on((event) => {
        const current = identity.current
        audit.setIdentity(current === null ? null : { iss: current.iss, sub: current.sub ?? '', aud: current.aud }, identity.context)
        const { type, ...fields } = event
        audit.sessionEvent(type.replace('-', '_'), fields)
      })
    }
    return identity
  }

  /** A reply pgveil makes or rewrites: the audit log sees it as the client does. */
  private replyToClient(frame: Buffer): void {
    this.replyRangeToClient(frame, 0, frame.length)
  }

  private replyRangeToClient(buffer: Buffer, start: number, end: number): void {
    if (this.audit !== null) this.audit.onClientBound(buffer, start, end)
    this.toClient.pushRange(buffer, start, end)
  }

  /** Read the client's held messages again (after pgveil answered one of its own commands). */
  private resumeClient(): void {
    if (this.phase !== Phase.Ready || !this.readHeldClientMessages()) return
    this.flushToUpstream()
    this.flushToClient()
  }

  /** Hands the messages the client framer holds to onClientFrame; false when that failed the session. */
  private readHeldClientMessages(): boolean {
    try {
      this.clientFramer.resumeRanges(this.onClientFrame)
      return true
    } catch (error) {
      this.fail(error)
      return false
    }
  }

  /** Stop this session as soon as it is idle outside a transaction (SIGTERM). */
  drain(): void {
    this.draining = true
    // Nothing started yet: no work to let finish.
    if (this.phase === Phase.Startup) this.terminate(this.drainReason)
    else this.closeIfDrainedAndIdle()
  }

  /**
   * The session ends (57P01) at its next idle point outside a transaction, and the
   * client reconnects (identity or access rules changed, or see adoptPolicy).
   */
  retire(reason: string): void {
    this.drainReason = reason
    this.drain()
  }

  /**
   * The column policy changed (server.applyPolicy, after ctx took the new one). At its
   * next idle point outside a transaction the session takes the new policy if nothing
   * ties it to the old one (adoptPolicy); otherwise it ends with `reason` (57P01).
   */
  policyChanged(reason: string): void {
    this.policyChangedReason = reason
    if (this.phase === Phase.Startup || this.phase === Phase.Connecting) {
      // Not past its startup checks yet: the ones it passed were the old policy's.
      this.retire(reason)
      return
    }
    this.adoptPolicyIfIdle()
  }

  private adoptPolicyIfIdle(): void {
    if (this.policyChangedReason === null || !this.idleOutsideTransaction()) return
    const reason = this.policyChangedReason
    this.policyChangedReason = null
    const blocker = this.policyBlocker()
    if (blocker !== null) {
      this.ctx.logger.debug('session ends for the new column policy', { session: this.id, why: blocker })
      this.retire(reason)
      return
    }
    this.adoptPolicy()
  }

  /** Why this session cannot take the new policy in place, or null. */
  private policyBlocker(): string | null {
    if (this.identity !== null || (this.ctx.identityTrust ?? null) !== null || (this.ctx.access ?? null) !== null) return 'identity and access rules are set per session'
    const next = this.ctx.crypto
    if (this.crypto !== null && this.crypto.namedStatements > 0) return 'named prepared statements were planned under the old policy'
    if (next === null) return null
    // Without a policy the session did not follow TimeZone and DateStyle, which protected dates need.
    if (this.crypto === null) return 'the session had no column policy'
    try {
      refuseProtectedSearchPath(next.analyzer, this.startupParams)
    } catch {
      return 'the connection\'s search_path names a schema with protected tables'
    }
    return null
  }

  /**
   * Takes the new column policy in place: a new SessionCrypto (TimeZone and DateStyle
   * carried over; statements prepared before refused at Bind) whose catalog is read
   * before the client's next message is handled.
   */
  private adoptPolicy(): void {
    const next = this.ctx.crypto
    if (next === null || this.crypto === null) {
      this.crypto = null
      return
    }
    const crypto = new SessionCrypto(next, this.database, this.crypto)
    this.crypto = crypto
    this.adoptingPolicy = true
    crypto.loadCatalog().then(
      () => {
        this.adoptingPolicy = false
        const held = this.heldForPolicy
        this.heldForPolicy = null
        if (held !== null && this.phase === Phase.Ready) {
          let next: boolean
          try {
            next = this.onClientFrame(held, 0, held.length)
          } catch (error) {
            this.fail(error)
            return
          }
          if (!next) {
            // Its handler holds what follows (and resumes it).
            this.flushToUpstream()
            this.flushToClient()
            return
          }
        }
        this.resumeClient()
      },
      (error: unknown) => {
        this.ctx.logger.error('catalog read failed', { session: this.id, database: this.database, error: (error as Error).message })
        this.fail(new WireError(SqlState.ConnectionFailure, `pgveil could not read the catalog of database "${this.database}" for its new column policy`, { severity: 'FATAL' }))
      },
    )
  }

  /** Close now with a FATAL 57P01 (drain timeout reached, or immediate shutdown). */
  terminate(reason: string): void {
    this.fail(new WireError(SqlState.AdminShutdown, reason, { severity: 'FATAL' }))
  }

  cancelUpstream(): void {
    const key = this.upstreamKey
    if (key === null) return
    const { target, config, logger } = this.ctx
    sendUpstreamCancel(target, config.upstream.connectTimeoutMs, key.processId, key.secretKey).catch((error: unknown) =>
      logger.warn('could not forward cancel request', { session: this.id, error: (error as Error).message }),
    )
  }

  // --- client side -------------------------------------------------------

  private attachClient(socket: net.Socket): void {
    socket.on('data', this.onClientData)
    socket.on('drain', this.onClientDrain)
    socket.on('error', this.onClientError)
    socket.on('close', this.onClientClose)
  }

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.phase === Phase.Closed) return
    this.audit?.clientRead()
    try {
      this.clientFramer.pushRanges(chunk, this.onClientFrame)
    } catch (error) {
      this.fail(error)
      return
    }
    this.flushToUpstream()
    this.flushToClient()
  }

  private readonly onClientFrame = (buffer: Buffer, start: number, end: number): boolean => {
    if (this.phase === Phase.Ready) return this.onReadyClientFrame(buffer, start, end)
    const frame = buffer.subarray(start, end)
    if (this.clientFramer.inStartupMode) return this.onStartupPacket(frame)
    return this.onAuthClientFrame(frame)
  }

  private onStartupPacket(frame: Buffer): boolean {
    const packet = decodeStartupPacket(frame)
    switch (packet.kind) {
      case 'ssl':
        if (this.clientTls) throw new ProtocolError('SSLRequest received on an encrypted connection')
        if (this.ctx.secureContext === null) {
          this.toClient.push(SSL_REFUSE)
          return true
        }
        queueMicrotask(() => this.upgradeClientToTls())
        return false
      case 'gssenc':
        this.toClient.push(SSL_REFUSE)
        return true
      case 'cancel':
        this.ctx.cancelRegistry.cancel(packet.processId, packet.secretKey)
        this.close()
        return false
      case 'startup':
        if (this.refusal !== null) throw this.refusal
        if (this.ctx.config.listen.tls?.require === true && !this.clientTls) {
          throw new WireError(SqlState.InvalidAuthorization, 'pgveil accepts only TLS connections', {
            severity: 'FATAL',
            hint: 'connect with sslmode=require (or verify-full with the proxy\'s CA certificate)',
          })
        }
        if (this.ctx.crypto !== null) refuseProtectedSearchPath(this.ctx.crypto.analyzer, packet.params)
        this.startupParams = packet.params
        this.user = packet.params.get('user') ?? ''
        this.database = packet.params.get('database') ?? this.user
        this.audit?.startup(this.user, this.database, packet.params.get('application_name') ?? '')
        if (this.ctx.crypto !== null) {
          this.crypto = new SessionCrypto(this.ctx.crypto, this.database)
          this.crypto.columnAccess = this.identity?.columnAccess ?? OPEN_ACCESS
        }
        this.phase = Phase.Connecting
        this.client.pause()
        void this.openUpstream(frame)
        return false
    }
  }

  private upgradeClientToTls(): void {
    if (this.phase === Phase.Closed) return
    if (this.clientFramer.bufferedBytes > 0) {
      this.fail(new ProtocolError('received unencrypted data after SSL request'))
      return
    }
    const raw = this.client
    raw.removeListener('data', this.onClientData)
    raw.removeListener('drain', this.onClientDrain)
    raw.removeListener('error', this.onClientError)
    raw.removeListener('close', this.onClientClose)
    raw.on('error', () => {}) // surfaced by the TLS socket
    raw.write(SSL_ACCEPT)
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.ctx.secureContext! })
    this.client = secure
    this.clientTls = true
    this.toClient = new FrameWriter(secure)
    this.attachClient(secure)
    this.clientFramer.resumeRanges(this.onClientFrame)
  }

  private onAuthClientFrame(frame: Buffer): boolean {
    const code = frame[0]
    if (code === FrontendCode.Terminate) {
      this.close()
      return false
    }
    if (code !== FrontendCode.Password) {
      throw new ProtocolError(`expected a password or SASL message during authentication, got message type "${String.fromCharCode(code!)}"`)
    }
    if (this.expectSaslInitialResponse) {
      this.expectSaslInitialResponse = false
      const response = decodeSASLInitialResponse(frame)
      // 'y': the client can do channel binding but believes the server cannot. A TLS
      // upstream treats that as a downgrade attack, so say what to do instead.
      if (this.upstreamTls && response.data !== null && response.data[0] === 0x79) {
        throw new WireError(SqlState.InvalidAuthorization, 'SCRAM channel binding cannot pass through pgveil to a TLS upstream', {
          severity: 'FATAL',
          hint: 'connect to pgveil with channel_binding=disable (TLS still protects client to pgveil), or without TLS on this hop',
        })
      }
    }
    this.toUpstream!.push(frame)
    return true
  }

  private onReadyClientFrame(buffer: Buffer, start: number, end: number): boolean {
    // Held until the new policy's catalog is read (adoptPolicy handles it then, and resumes the framer).
    if (this.adoptingPolicy) {
      this.heldForPolicy = Buffer.from(buffer.subarray(start, end))
      return false
    }
    this.atReadyForQuery = false
    if (this.audit !== null) this.audit.onClientFrame(buffer, start, end)
    // Messages a column-policy refusal drops up to Sync are dropped before identity sees them.
    if (this.identity !== null && !this.droppingUntilSync) {
      const verdict = this.identity.onClientFrame(buffer, start, end)
      if (verdict !== ClientVerdict.Pass) {
        this.flushToUpstream()
        return verdict === ClientVerdict.Handled
      }
    }
    if (this.crypto !== null) return this.onCryptoClientFrame(this.crypto, buffer.subarray(start, end))
    return this.forwardClientFrame(buffer, start, end)
  }

  /** Queue the reply a client message waits for and forward it unchanged. */
  private forwardClientFrame(buffer: Buffer, start: number, end: number): boolean {
    const code = buffer[start]!
    if (code === FrontendCode.Terminate) {
      // close() sends the upstream its own Terminate after what is queued.
      this.flushToUpstream()
      this.close()
      return false
    }
    if (!isFrontendCode(code)) throw new ProtocolError(`invalid frontend message type ${code}`)
    const kind = code === FrontendCode.Describe ? (buffer[start + 5] === 0x53 ? Pending.DescribeStatement : Pending.DescribePortal) : PENDING_BY_CODE[code]!
    if (kind !== 0) this.pending.push(kind as Pending)
    this.toUpstream!.pushRange(buffer, start, end)
    return true
  }

  private readonly onClientDrain = (): void => {
    if (!this.waitingForClientDrain) return
    this.waitingForClientDrain = false
    this.upstream?.resume()
  }

  private readonly onClientError = (error: Error): void => {
    this.ctx.logger.debug('client socket error', { session: this.id, error: error.message })
  }

  private readonly onClientClose = (): void => {
    if (this.phase === Phase.Closed) return
    // A client that vanishes mid-query must not leave its backend running.
    if (this.phase === Phase.Ready && !this.pending.isEmpty) this.cancelUpstream()
    this.close()
  }

  private flushToClient(): void {
    if (this.toClient.flush()) {
      // Everything written has reached the kernel: the decrypted rows' slab can be written over.
      if (this.crypto !== null && this.client.writableLength === 0) this.crypto.rows.rewind()
      return
    }
    if (this.waitingForClientDrain) return
    this.waitingForClientDrain = true
    this.upstream?.pause()
  }

  // --- upstream side -----------------------------------------------------

  private async openUpstream(startupPacket: Buffer): Promise<void> {
    const { target, config, logger } = this.ctx
    let connection
    try {
      connection = await connectUpstream(target, config.upstream.connectTimeoutMs)
    } catch (error) {
      logger.warn('upstream connection failed', { session: this.id, error: (error as Error).message })
      this.ctx.metrics.upstreamConnectErrorsTotal.inc()
      this.fail(error)
      return
    }
    if (this.phase === Phase.Closed) {
      connection.socket.destroy()
      return
    }
    const upstream = connection.socket
    this.ctx.metrics.upstreamConnectionsTotal.inc()
    this.ctx.metrics.upstreamConnections.inc()
    this.upstream = upstream
    this.upstreamTls = connection.tls
    this.toUpstream = new FrameWriter(upstream)
    upstream.on('data', this.onUpstreamData)
    upstream.on('drain', this.onUpstreamDrain)
    upstream.on('error', this.onUpstreamError)
    upstream.on('close', this.onUpstreamClose)
    this.phase = Phase.Authenticating
    this.clientFramer.setStartupMode(false)
    upstream.write(startupPacket)
    this.client.resume()
    if (this.readHeldClientMessages()) this.flushToUpstream()
  }

  private readonly onUpstreamData = (chunk: Buffer): void => {
    if (this.phase === Phase.Closed) return
    try {
      this.upstreamFramer.pushRanges(chunk, this.onUpstreamFrame)
    } catch (error) {
      this.ctx.logger.error('invalid message from upstream', { session: this.id, error: (error as Error).message })
      this.fail(new WireError(SqlState.ConnectionFailure, 'pgveil received an invalid message from the upstream PostgreSQL', { severity: 'FATAL' }))
      return
    }
    this.flushToClient()
    if (this.draining) this.closeIfDrainedAndIdle()
    else if (this.policyChangedReason !== null) this.adoptPolicyIfIdle()
  }

  private readonly onUpstreamFrame = (buffer: Buffer, start: number, end: number): boolean => {
    if (this.phase !== Phase.Ready) return this.onAuthUpstreamFrame(buffer.subarray(start, end))
    if (this.identity !== null) {
      const reply = this.identity.onUpstreamFrame(buffer, start, end, this.pending.peekContext())
      if (reply !== PASS_REPLY) {
        this.advancePending(buffer, start, end)
        if (reply !== null) this.replyToClient(reply)
        return true
      }
    }
    if (this.crypto !== null) {
      return buffer[start] === BackendCode.DataRow ? this.onCryptoDataRow(this.crypto, buffer, start, end) : this.onCryptoUpstreamFrame(this.crypto, buffer, start, end)
    }
    if (this.audit !== null) this.audit.onClientBound(buffer, start, end)
    this.advancePending(buffer, start, end)
    this.toClient.pushRange(buffer, start, end)
    return true
  }

  /** Pair a backend reply with the pending message it answers (the queue moves on when that message is done). */
  private advancePending(buffer: Buffer, start: number, end: number): void {
    const pending = this.pending
    switch (buffer[start]) {
      case BackendCode.DataRow:
        break
      case BackendCode.ParseComplete:
      case BackendCode.BindComplete:
      case BackendCode.CloseComplete:
      case BackendCode.NoData:
      case BackendCode.PortalSuspended:
        pending.shift()
        break
      case BackendCode.RowDescription: {
        const head = pending.peek()
        if (head === Pending.DescribeStatement || head === Pending.DescribePortal) pending.shift()
        break
      }
      case BackendCode.CommandComplete:
      case BackendCode.EmptyQueryResponse:
        if (pending.peek() === Pending.Execute) pending.shift()
        break
      case BackendCode.ErrorResponse: {
        const head = pending.peek()
        if (skipsToSync(head)) pending.failUntilSync()
        if (isFatal(buffer.subarray(start, end))) this.upstreamSentFatal = true
        break
      }
      case BackendCode.ReadyForQuery:
        pending.shift()
        this.transactionStatus = buffer[start + 5]!
        this.atReadyForQuery = pending.isEmpty
        break
      default:
        break
    }
  }

  private onAuthUpstreamFrame(frame: Buffer): boolean {
    let notice: Buffer | null = null
    switch (frame[0]) {
      case BackendCode.Authentication:
        if (authenticationCode(frame) === AuthCode.SASL) {
          this.toClient.push(this.withoutChannelBinding(frame))
          this.expectSaslInitialResponse = true
          return true
        }
        break
      case BackendCode.BackendKeyData: {
        const secretKey = Buffer.from(frame.subarray(9))
        this.upstreamKey = { processId: frame.readInt32BE(5), secretKey }
        const issued = this.ctx.cancelRegistry.issue(this, secretKey.length)
        this.clientProcessId = issued.processId
        this.toClient.push(encodeBackendKeyData(issued.processId, issued.secretKey))
        return true
      }
      case BackendCode.ErrorResponse:
        // PostgreSQL's own error (wrong password, unknown database…) reaches the client as is.
        this.upstreamSentFatal = true
        this.audit?.authenticationFailed(frame)
        break
      case BackendCode.ParameterStatus:
        if (this.crypto !== null) notice = this.noteParameterStatus(this.crypto, frame)
        break
      case BackendCode.ReadyForQuery:
        if (this.crypto !== null && this.crypto.catalog === null) {
          // Protected columns are recognised through the catalog: have it before the first statement.
          this.loadCatalogThenReady(this.crypto, frame)
          return false
        }
        this.phase = Phase.Ready
        this.transactionStatus = readyForQueryStatus(frame)
        this.atReadyForQuery = true
        if (this.startupTimer !== null) clearTimeout(this.startupTimer)
        this.startupTimer = null
        this.ctx.logger.debug('session ready', { session: this.id, user: this.user, database: this.database, tls: this.clientTls, upstreamTls: this.upstreamTls })
        this.audit?.authenticationOk()
        break
      default:
        break
    }
    this.toClient.push(frame)
    if (notice !== null) this.toClient.push(notice)
    return true
  }

  /** TLS ends at pgveil, so the client cannot bind to the upstream's channel: drop SCRAM-SHA-256-PLUS. */
  private withoutChannelBinding(frame: Buffer): Buffer {
    const message = decodeBackendMessage(frame)
    if (message.type !== 'AuthenticationSASL') return frame
    const mechanisms = message.mechanisms.filter((m) => m !== 'SCRAM-SHA-256-PLUS')
    if (mechanisms.length === 0) {
      throw new WireError(SqlState.InvalidAuthorization, 'the upstream PostgreSQL offers only SCRAM-SHA-256-PLUS (channel binding), which cannot pass through a TLS-terminating proxy', { severity: 'FATAL' })
    }
    return mechanisms.length === message.mechanisms.length ? frame : encodeAuthenticationSASL(mechanisms)
  }

  private readonly onUpstreamDrain = (): void => {
    if (!this.waitingForUpstreamDrain) return
    this.waitingForUpstreamDrain = false
    this.client.resume()
  }

  private readonly onUpstreamError = (error: Error): void => {
    this.ctx.logger.debug('upstream socket error', { session: this.id, error: error.message })
  }

  private readonly onUpstreamClose = (): void => {
    if (this.phase === Phase.Closed) return
    if (!this.upstreamSentFatal) {
      this.fail(new WireError(SqlState.ConnectionFailure, `the upstream PostgreSQL closed the connection unexpectedly (${this.ctx.target.host}:${this.ctx.target.port})`, { severity: 'FATAL' }))
      return
    }
    this.close()
  }

  private flushToUpstream(): void {
    const writer = this.toUpstream
    if (writer === null || writer.flush() || this.waitingForUpstreamDrain) return
    this.waitingForUpstreamDrain = true
    this.client.pause()
  }


  // --- column encryption -------------------------------------------------------

  /**
   * Stops reading PostgreSQL's replies until `task` is done, then handles `frame` (the
   * reply that waited) and carries on. A failed task closes the session with `failure`.
   */
  private async holdUpstreamFor(task: () => Promise<void>, failure: (error: Error) => WireError, frame: Buffer, handle: (frame: Buffer) => void): Promise<void> {
    try {
      await task()
    } catch (error) {
      this.ctx.logger.error('catalog read failed', { session: this.id, database: this.database, error: (error as Error).message })
      this.fail(failure(error as Error))
      return
    }
    if (this.phase === Phase.Closed) return
    try {
      handle(frame)
      this.flushToClient()
      this.upstreamFramer.resumeRanges(this.onUpstreamFrame)
    } catch (error) {
      this.fail(error)
      return
    }
    this.flushToClient()
  }

  private loadCatalogThenReady(crypto: SessionCrypto, readyForQuery: Buffer): void {
    void this.holdUpstreamFor(
      () => crypto.loadCatalog(),
      () =>
        new WireError(SqlState.ConnectionFailure, `pgveil could not read the catalog of database "${this.database}" with its own credentials, so it cannot recognise protected columns`, {
          severity: 'FATAL',
          hint: 'check that the user of upstream.url may connect to this database (see the pgveil log)',
        }),
      readyForQuery,
      (frame) => this.onAuthUpstreamFrame(frame),
    )
  }

  private refreshCatalogThenResume(crypto: SessionCrypto, readyForQuery: Buffer): void {
    void this.holdUpstreamFor(
      () => crypto.refreshCatalog(),
      () => new WireError(SqlState.ConnectionFailure, `pgveil could not re-read the catalog of database "${this.database}" after DDL`, { severity: 'FATAL' }),
      readyForQuery,
      (frame) => this.onCryptoUpstreamFrame(crypto, frame, 0, frame.length),
    )
  }

  /** Hands a ParameterStatus to the session's crypto; returns a NoticeResponse for the client after it, when the new setting deserves a warning. */
  private noteParameterStatus(crypto: SessionCrypto, frame: Buffer): Buffer | null {
    const { name, value } = decodeParameterStatus(frame)
    const warning = crypto.noteSetting(name, value)
    return warning === null ? null : encodeNoticeResponse(warning)
  }

  private forward(frames: Buffer[], entries: [number, CryptoPending | IdentityPending | undefined][]): void {
    for (const [kind, context] of entries) {
      // Refusals by the column policy and by identity (require, an expired token, claim settings) alike.
      if (context?.kind === 'refusal' || context?.kind === 'identity-refusal') this.ctx.metrics.statementsRefusedTotal.inc()
      this.pending.push(kind as Pending, context)
    }
    for (const frame of frames) this.toUpstream!.push(frame)
  }

  private onCryptoClientFrame(crypto: SessionCrypto, frame: Buffer): boolean {
    const code = frame[0]
    if (this.droppingUntilSync) {
      // Flush still goes through: the client may be waiting for the error it asks for.
      if (code === FrontendCode.Flush) return this.forwardClientFrame(frame, 0, frame.length)
      if (code !== FrontendCode.Sync) return true
      this.droppingUntilSync = false
    }
    switch (code) {
      case FrontendCode.Query: {
        const { frame: rewritten, refusal, copy } = crypto.rewriteQuery(frame)
        this.copyAborted = false
        if (copy !== null) {
          // Ready before PostgreSQL answers, so no client row can slip through untransformed.
          try {
            const transformer = crypto.copyTransformer(copy)
            if (copy.direction === 'in') this.copyIn = transformer
            else this.copyOut = transformer
          } catch (error) {
            if (!(error instanceof CopyRowError)) throw error
            this.fail(new WireError(PGVEIL_REFUSED, `pgveil cannot run this COPY: ${error.message}`, { severity: 'FATAL' }))
            return false
          }
        }
        this.forward([rewritten], [[Pending.Query, refusal === null ? undefined : { kind: 'refusal', error: refusal }]])
        return true
      }
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        if (this.copyAborted) return true
        if (this.copyIn !== null) return this.onCopyInFrame(this.copyIn, frame)
        return this.forwardClientFrame(frame, 0, frame.length)
      case FrontendCode.Parse: {
        const result = crypto.onParse(frame)
        this.forward(result.frames, result.pending)
        this.droppingUntilSync = result.dropUntilSync
        return true
      }
      case FrontendCode.Bind: {
        const result = crypto.onBind(frame)
        this.forward(result.frames, result.pending.length === 0 ? [[Pending.Bind, { kind: 'bind', portal: result.portal }]] : result.pending)
        this.droppingUntilSync = result.dropUntilSync
        return true
      }
      case FrontendCode.Describe: {
        const describe = decodeDescribe(frame)
        if (describe.target === 'S') {
          this.forward([frame], [[Pending.DescribeStatement, { kind: 'describe-statement', statement: crypto.describeStatement(describe.name) }]])
        } else {
          const portal = crypto.portal(describe.name)
          if (portal !== undefined) portal.described = true
          this.forward([frame], [[Pending.DescribePortal, portal === undefined ? undefined : { kind: 'describe-portal', portal, suppress: false }]])
        }
        return true
      }
      case FrontendCode.Execute: {
        const { portal: name } = decodeExecute(frame)
        const portal = crypto.portal(name)
        const describe = crypto.describeBeforeExecute(name)
        if (describe !== null && portal !== undefined) this.forward([describe], [[Pending.DescribePortal, { kind: 'describe-portal', portal, suppress: true }]])
        this.forward([frame], [[Pending.Execute, portal === undefined ? undefined : { kind: 'execute', portal }]])
        return true
      }
      case FrontendCode.Close: {
        const close = decodeClose(frame)
        crypto.close(close.target, close.name)
        this.forward([frame], [[Pending.Close, CLOSED]])
        return true
      }
      default:
        // COPY into a protected table is refused by the analyzer before any data flows.
        return this.forwardClientFrame(frame, 0, frame.length)
    }
  }

  /** A client COPY message while rows of a protected table stream in. */
  private onCopyInFrame(copy: CopyRowTransformer, frame: Buffer): boolean {
    try {
      if (frame[0] === FrontendCode.CopyData) {
        const rows = copy.push(decodeCopyData(frame).data)
        if (rows.length > 0) this.toUpstream!.push(encodeCopyData(rows))
        return true
      }
      if (frame[0] === FrontendCode.CopyDone) {
        const rest = copy.end()
        if (rest.length > 0) this.toUpstream!.push(encodeCopyData(rest))
      }
    } catch (error) {
      if (!(error instanceof CopyRowError || error instanceof WireError)) throw error
      // Abort the COPY in PostgreSQL; no value is named in the reason.
      this.copyIn = null
      this.copyAborted = true
      this.toUpstream!.push(encodeCopyFail(`pgveil: ${error instanceof CopyRowError ? error.message : 'a value for an encrypted column is not valid input for its type'}`))
      return true
    }
    this.copyIn = null
    this.toUpstream!.push(frame)
    return true
  }

  /**
   * A DataRow, given as bytes [start, end) of the read buffer (the row of a large
   * result is the hot path: no view of it is made): decrypted into the session's row
   * slab, or passed on as it came.
   */
  private onCryptoDataRow(crypto: SessionCrypto, buffer: Buffer, start: number, end: number): boolean {
    const head = this.pending.peek()
    const context = this.pending.peekContext()
    const plan: RowPlan | null = head === Pending.Query ? crypto.queryRowPlan : context?.kind === 'execute' ? context.portal.rowPlan : null
    if (plan !== null && plan.fields.length > 0) {
      try {
        if (crypto.decryptRow(buffer, start, end, plan)) {
          const rows = crypto.rows
          this.replyRangeToClient(rows.buffer, rows.rowStart, rows.position)
          return true
        }
      } catch (error) {
        if (error instanceof ColumnAccessError && this.identity !== null) {
          // The result is withheld: the client gets the error, nothing more of it.
          this.identity.withholdUntilReady()
          this.replyToClient(encodeErrorResponse(error.toFields()))
          return true
        }
        // A value that does not decrypt, a ciphertext from elsewhere, a value pgveil cannot print the way this session asked: the result cannot go on.
        if (!(error instanceof DecryptionError || error instanceof WireError)) throw error
        this.failDecryption(error)
        return false
      }
    }
    // DataRow moves no pending entry (advancePending): only the bytes go on.
    this.replyRangeToClient(buffer, start, end)
    return true
  }

  /** Decides what the client gets for each reply but DataRows (decrypted, rewritten, or nothing); queue bookkeeping is advancePending's. */
  private onCryptoUpstreamFrame(crypto: SessionCrypto, buffer: Buffer, start: number, end: number): boolean {
    const frame = buffer.subarray(start, end)
    const head = this.pending.peek()
    const context = this.pending.peekContext()
    let out: Buffer | null = frame
    let notice: Buffer | null = null
    switch (frame[0]) {
      case BackendCode.CopyOutResponse:
        // A COPY TO pgveil does not decrypt: its rows are checked for ciphertexts from elsewhere (a function, a view not known yet).
        if (this.copyOut === null) this.copyOutGuard = new CopyOutGuard(frame[5] === 1)
        break
      case BackendCode.CopyData:
        if (this.copyOut !== null) {
          try {
            out = encodeCopyData(this.copyOut.row(decodeCopyData(frame).data))
          } catch (error) {
            this.failDecryption(error instanceof DecryptionError ? error : new WireError(PGVEIL_REFUSED, `pgveil cannot decrypt this COPY: ${(error as Error).message}`, { severity: 'FATAL' }))
            return false
          }
        } else if (this.copyOutGuard !== null) {
          try {
            this.copyOutGuard.check(decodeCopyData(frame).data)
          } catch (error) {
            this.failDecryption(error as WireError)
            return false
          }
        }
        break
      case BackendCode.CopyDone:
        this.copyOut = null
        this.copyOutGuard = null
        break
      case BackendCode.ParseComplete:
      case BackendCode.CloseComplete:
        if (context?.kind === 'suppress') out = null
        else if (context?.kind === 'parse' || context?.kind === 'close') crypto.confirmChange()
        break
      case BackendCode.BindComplete:
        if (context?.kind === 'suppress') out = null
        else if (context?.kind === 'bind') {
          crypto.confirmChange()
          if (context.portal.rowPlan === null) context.portal.rowPlan = crypto.planFromStatement(context.portal)
        }
        break
      case BackendCode.ParameterDescription:
        if (context?.kind === 'describe-statement') out = crypto.rewriteParameterDescription(frame, context.statement)
        break
      case BackendCode.RowDescription: {
        if (head === Pending.DescribeStatement || head === Pending.DescribePortal) {
          const described = crypto.rowDescription(frame)
          out = described.frame
          if (context?.kind === 'describe-statement') context.statement.rowFields = described.fields ?? []
          else if (context?.kind === 'describe-portal') {
            context.portal.rowPlan = described.plan ?? NO_PROTECTED_COLUMNS
            if (context.suppress) out = null
          }
        } else if (head === Pending.Query) {
          const described = crypto.rowDescription(frame)
          crypto.queryRowPlan = described.plan
          out = described.frame
        }
        break
      }
      case BackendCode.NoData:
        if (context?.kind === 'describe-portal') {
          context.portal.rowPlan = NO_PROTECTED_COLUMNS
          if (context.suppress) out = null
        }
        break
      case BackendCode.CommandComplete:
      case BackendCode.EmptyQueryResponse:
        if (head === Pending.Query) crypto.queryRowPlan = null
        // PostgreSQL reports the new TimeZone or DateStyle at Sync: until then dates cannot be printed.
        else if (context?.kind === 'execute' && context.portal.statement.changesFormat !== undefined) crypto.formatChangedBy(context.portal.statement.changesFormat)
        if (frame[0] === BackendCode.CommandComplete && DDL_TAG.test(decodeCommandComplete(frame).tag)) crypto.catalogStale = true
        break
      case BackendCode.ErrorResponse:
        // PostgreSQL skips the rest of the pipeline: the statements and portals it did not make are forgotten again.
        if (skipsToSync(head)) crypto.undoUnconfirmed()
        // A failed COPY IN: whatever rows the client still sends are dropped here.
        if (this.copyIn !== null) {
          this.copyIn = null
          this.copyAborted = true
        }
        // pgveil's failing statement: the client gets the real reason instead.
        if (context?.kind === 'refusal' && decodeNoticeFields(frame).get('C') === PGVEIL_REFUSED) out = context.error
        break
      case BackendCode.ReadyForQuery:
        if (crypto.catalogStale) {
          // The DDL may have created or changed a protected table: refresh before the next statement.
          this.refreshCatalogThenResume(crypto, frame)
          return false
        }
        this.copyIn = null
        this.copyOut = null
        this.copyOutGuard = null
        crypto.queryRowPlan = null
        crypto.formatReported()
        crypto.reportCounts()
        crypto.refreshIfOld()
        break
      case BackendCode.ParameterStatus:
        notice = this.noteParameterStatus(crypto, frame)
        break
      default:
        break
    }
    this.advancePending(frame, 0, frame.length)
    // A frame passed on as it came goes as a range of the read buffer, to leave in one write with its neighbours.
    if (out === frame) this.replyRangeToClient(buffer, start, end)
    else if (out !== null) this.replyToClient(out)
    if (notice !== null) this.replyToClient(notice)
    return true
  }

  /** A result or COPY cannot go on: the session ends with the error as FATAL (a value that does not decrypt is logged and counted). */
  private failDecryption(error: DecryptionError | WireError): void {
    if (error instanceof DecryptionError) {
      this.ctx.logger.error('decryption failed', { session: this.id, database: this.database, detail: error.detail })
      this.ctx.metrics.decryptionErrorsTotal.inc()
    }
    const hint = error instanceof WireError ? error.hint : undefined
    this.fail(new WireError(error.sqlState, error.message, { severity: 'FATAL', ...(hint === undefined ? {} : { hint }) }))
  }

  // --- ending ------------------------------------------------------------

  private closeIfDrainedAndIdle(): void {
    if (this.idleOutsideTransaction()) this.terminate(this.drainReason)
  }

  /** Ready, the client has its ReadyForQuery and sent nothing since, no transaction open. */
  private idleOutsideTransaction(): boolean {
    return this.phase === Phase.Ready && this.atReadyForQuery && this.pending.isEmpty && this.transactionStatus === TransactionStatus.Idle
  }

  /** Send the error (WireError as is, anything else as an internal error) and close. */
  fail(error: unknown): void {
    if (this.phase === Phase.Closed) return
    let wire: WireError
    if (error instanceof WireError) {
      wire = error
    } else {
      this.ctx.logger.error('session failed', { session: this.id, error: (error as Error)?.message ?? String(error) })
      wire = new WireError(SqlState.InternalError, 'internal error in pgveil; the connection is closed (see the pgveil log)', { severity: 'FATAL' })
    }
    const frame = encodeErrorResponse(wire.toFields())
    // The audit log gives the statement under way this error (a ciphertext that does not decrypt: XX001 by pgveil), not a closed connection.
    if (this.phase === Phase.Ready) this.audit?.onClientBound(frame, 0, frame.length)
    if (this.client.writable) {
      this.toClient.push(frame)
      this.flushToClient()
    }
    this.close()
  }

  /** Close both sides once; queued writes are flushed first. */
  close(): void {
    if (this.phase === Phase.Closed) return
    const wasReady = this.phase === Phase.Ready
    this.phase = Phase.Closed
    if (this.startupTimer !== null) clearTimeout(this.startupTimer)
    if (this.clientProcessId !== 0) this.ctx.cancelRegistry.release(this.clientProcessId)
    this.clientFramer.reset()
    this.upstreamFramer.reset()
    const upstream = this.upstream
    if (upstream !== null) {
      this.ctx.metrics.upstreamConnections.dec()
      if (wasReady && upstream.writable) upstream.end(TERMINATE)
      else upstream.end()
      setTimeout(() => upstream.destroy(), CLOSE_GRACE_MS).unref()
    }
    const client = this.client
    client.end()
    setTimeout(() => client.destroy(), CLOSE_GRACE_MS).unref()
    this.audit?.end()
    this.ctx.onClose(this)
  }
}

/** The reply each frontend message type waits for (0: none); Describe depends on its target. */
const PENDING_BY_CODE = new Uint8Array(256)
PENDING_BY_CODE[FrontendCode.Query] = Pending.Query
PENDING_BY_CODE[FrontendCode.Parse] = Pending.Parse
PENDING_BY_CODE[FrontendCode.Bind] = Pending.Bind
PENDING_BY_CODE[FrontendCode.Execute] = Pending.Execute
PENDING_BY_CODE[FrontendCode.Close] = Pending.Close
PENDING_BY_CODE[FrontendCode.Sync] = Pending.Sync
PENDING_BY_CODE[FrontendCode.FunctionCall] = Pending.FunctionCall

/** Command tags after which the catalog may have changed. */
const DDL_TAG = /^(CREATE|ALTER|DROP) (TABLE|SCHEMA|VIEW|MATERIALIZED VIEW|FOREIGN TABLE)|^(CREATE TABLE AS|SELECT INTO)|^IMPORT FOREIGN SCHEMA/


function isFatal(frame: Buffer): boolean {
  const severity = decodeNoticeFields(frame).get('V')
  return severity === 'FATAL' || severity === 'PANIC'
}

/**
 * A search_path set at connection time (the `search_path` startup parameter, or
 * `-c search_path=…` / `--search_path=…` in `options`, as PGOPTIONS sends it) must not
 * name a schema holding protected tables: pgveil resolves unqualified table names in
 * schema public, as it refuses `SET search_path` to such a schema.
 */
function refuseProtectedSearchPath(analyzer: SqlAnalyzer, params: ReadonlyMap<string, string>): void {
  const values: string[] = []
  const direct = params.get('search_path')
  if (direct !== undefined) values.push(direct)
  const options = params.get('options')
  if (options !== undefined) {
    for (const match of options.matchAll(/(?:^|\s)(?:-c\s*|--)search_path=((?:\\.|\S)*)/g)) values.push(match[1]!.replace(/\\(.)/g, '$1'))
  }
  for (const value of values) {
    const schema = analyzer.protectedSchemaIn(value)
    if (schema === undefined) continue
    throw new WireError(SqlState.FeatureNotSupported, `pgveil resolves unqualified table names in schema public only; the connection's search_path names schema "${schema}", which holds encrypted tables`, {
      severity: 'FATAL',
      hint: `qualify those tables with their schema instead (${schema}.table), and leave search_path out of the connection options`,
    })
  }
}
