/**
 * The audit side of one session: follows the client's messages and the replies
 * the client gets, pairs them like the pending-response queue does, and writes
 * one audit line per statement when it completes or fails (per statement of a
 * simple Query, per Execute in the extended protocol; a Parse or Bind that
 * fails is the failed statement), plus the session events.
 *
 * It only exists when the audit log is on: the session then calls it once per
 * frame in each direction, and it decodes just the messages it needs (Query,
 * Parse, Bind and Execute names, CommandComplete tags, ErrorResponse codes).
 * It sees the frames as the client sends and receives them, so messages pgveil
 * injects or suppresses for column encryption do not disturb the pairing.
 */
import { performance } from 'node:perf_hooks'
import type { IdentityTags, SessionIdentity, StatementOutcome } from '../audit/events.js'
import type { Metrics, StatementKind } from '../audit/metrics.js'
import { redactErrorMessage } from '../audit/redact.js'
import type { AuditSink } from '../audit/sink.js'
import { LineFragment } from '../audit/line-template.js'
import { sameLiteralShape, withJson, type StatementSummarizer, type StatementSummary } from '../audit/statement-summary.js'
import { PGVEIL_REFUSED } from '../policy/sql-plan.js'
import { decodeNoticeFields } from '../protocol/errors.js'
import { BackendCode, FrontendCode } from '../protocol/message-codes.js'
import { Pending, PendingResponseQueue, skipsToSync, UnconfirmedChanges } from './pending-queue.js'

/** What sessions share while the audit log is on (rebuilt when the policy changes). */
export interface AuditContext {
  readonly sink: AuditSink
  readonly summarizer: StatementSummarizer
  readonly metrics: Metrics
  readonly statementMetrics: StatementMetrics
}

/**
 * Statement counts are summed in plain fields and handed to prom-client when
 * Prometheus scrapes (Metrics.beforeScrape): its labelled inc hashes the labels
 * on every call, and even once per event-loop turn that is most of a statement's
 * bookkeeping when each turn carries one or two statements.
 */
export class StatementMetrics {
  /** Per kind: statements ok, failed, refused since the last scrape. */
  private readonly counts = new Map<StatementKind, [number, number, number]>()
  private protectedCount = 0
  constructor(private readonly metrics: Metrics) {
    metrics.beforeScrape.statements = this.apply
  }

  record(kind: StatementKind, outcome: 'ok' | 'error' | 'refused', seconds: number, touchesProtected: boolean): void {
    let counts = this.counts.get(kind)
    if (counts === undefined) this.counts.set(kind, (counts = [0, 0, 0]))
    counts[outcome === 'ok' ? 0 : outcome === 'error' ? 1 : 2]++
    if (touchesProtected) this.protectedCount++
    this.metrics.statementDurationSeconds.observe(kind, seconds)
  }

  private readonly apply = (): void => {
    for (const [kind, counts] of this.counts) {
      for (let i = 0; i < 3; i++) {
        if (counts[i] === 0) continue
        this.metrics.statementsTotal.inc({ kind, outcome: OUTCOMES[i]! }, counts[i])
        counts[i] = 0
      }
    }
    if (this.protectedCount > 0) this.metrics.statementsProtectedTotal.inc(this.protectedCount)
    this.protectedCount = 0
  }
}

const OUTCOMES = ['ok', 'error', 'refused'] as const

/** Longer SQL texts are not remembered between messages. */
const MAX_REMEMBERED_SQL_BYTES = 16 * 1024
const UNKNOWN_STATEMENT: StatementSummary = withJson({ kind: 'unknown', statement: '(unknown prepared statement)', fingerprint: '', tables: [], protectedRead: [], protectedWritten: [] })
// The fragments of a statement line (see AuditSink.writeTemplate), serialized once.
const OK_OUTCOME = new LineFragment(Buffer.from(',"outcome":{"status":"ok"}}'))
const SIMPLE_PROTOCOL = new LineFragment(Buffer.from('"protocol":"simple",'))
const EXTENDED_PROTOCOL = new LineFragment(Buffer.from('"protocol":"extended",'))
const NO_TAG = new LineFragment(Buffer.from('"tag":null,"rows":null,"duration_ms":'))
/** Command tags repeat (`SELECT 1`, `UPDATE 1`): their members are serialized once each, up to this many. */
const MAX_CACHED_TAGS = 1024
const tagMembersCache = new Map<string, LineFragment>()

/** `"tag":…,"rows":…,"duration_ms":` for a CommandComplete tag. */
function tagMembers(tag: string): LineFragment {
  let members = tagMembersCache.get(tag)
  if (members === undefined) {
    // Tags are ASCII words from PostgreSQL (no quote or backslash): no escaping needed.
    members = new LineFragment(Buffer.from(`"tag":"${tagName(tag)}","rows":${String(tagRows(tag))},"duration_ms":`))
    if (tagMembersCache.size >= MAX_CACHED_TAGS) tagMembersCache.clear()
    tagMembersCache.set(tag, members)
  }
  return members
}

/**
 * Whether buffer[start, end) holds the first `length` bytes of `bytes` (all of them by
 * default): a loop for short names, tags and SQL texts, where it beats a native call;
 * the native compare beyond.
 */
function sameBytes(buffer: Buffer, start: number, end: number, bytes: Buffer, length = bytes.length): boolean {
  if (end - start !== length) return false
  if (length > 256) return buffer.compare(bytes, 0, length, start, end) === 0
  for (let i = 0; i < length; i++) if (buffer[start + i] !== bytes[i]) return false
  return true
}

interface QueryEntry {
  readonly summaries: readonly StatementSummary[]
  index: number
  /** When the current statement of the Query started (the previous one's end). */
  start: number
}

interface ExtendedEntry {
  readonly summary: StatementSummary
  readonly start: number
}

type Entry = QueryEntry | ExtendedEntry

/**
 * The last SQL text a session summarized (its bytes, in a buffer reused from one text
 * to the next) and what it gave: a text that `same` says matches it gets those
 * summaries again without being decoded or scanned.
 */
class SummaryMemo {
  private text = Buffer.allocUnsafe(256)
  private length = -1
  private summaries: readonly StatementSummary[] = []
  /** The summarizer changes when the policy is reloaded, its generation when readable views do: remembered summaries are only good for their own. */
  private summarizer: StatementSummarizer | null = null
  private generation = 0

  constructor(private readonly same: (buffer: Buffer, start: number, end: number, text: Buffer, length: number) => boolean) {}

  /** The summaries of the SQL text in buffer[start, end). */
  summarize(summarizer: StatementSummarizer, buffer: Buffer, start: number, end: number): readonly StatementSummary[] {
    if (summarizer === this.summarizer && summarizer.generation === this.generation && this.same(buffer, start, end, this.text, this.length)) return this.summaries
    const summaries = summarizer.summarize(buffer.toString('utf8', start, end))
    const length = end - start
    if (length <= MAX_REMEMBERED_SQL_BYTES) {
      if (this.text.length < length) this.text = Buffer.allocUnsafe(Math.max(length, 2 * this.text.length))
      buffer.copy(this.text, 0, start, end)
      this.length = length
      this.summaries = summaries
      this.summarizer = summarizer
      this.generation = summarizer.generation
    }
    return summaries
  }
}

export class SessionAudit {
  /** Who is behind the session: changed only through setIdentity (statement lines cache it). */
  private readonly who: SessionIdentity = { identity: null, context: null }
  private readonly ctx: () => AuditContext
  private readonly queue = new PendingResponseQueue<Entry>()
  /** Named prepared statements and portals; the unnamed ones (most traffic) in fields of their own. */
  private readonly statements = new Map<string, StatementSummary>()
  private readonly portals = new Map<string, StatementSummary>()
  private unnamedStatement: StatementSummary = UNKNOWN_STATEMENT
  private unnamedPortal: StatementSummary = UNKNOWN_STATEMENT
  /** The named statement the last Bind used, by name bytes: Bind after Bind of one statement skips decoding the name. */
  private lastBoundName: Buffer | null = null
  private lastBoundSummary: StatementSummary = UNKNOWN_STATEMENT
  /** Statements and portals named or closed by messages PostgreSQL has not confirmed (see UnconfirmedChanges): a failed re-Parse must not relabel what runs. */
  private readonly unconfirmed = new UnconfirmedChanges()
  /** The last CommandComplete tag's bytes and members. */
  private lastTag: Buffer | null = null
  private lastTagMembers: LineFragment = NO_TAG
  private readonly session: number
  private readonly client: string
  private readonly opened = performance.now()
  /** When the client's last read arrived: the start of the statements its messages begin (one clock read per read, not per message). */
  private arrived = this.opened
  private user = ''
  private database = ''
  private applicationName = ''
  private statementCount = 0
  private authenticated = false
  /** The session's members of every statement line, serialized once per change. */
  private sessionMembers: LineFragment | null = null
  /** The last Parse's text: drivers that parse an unnamed statement for every execution send the same bytes again. */
  private readonly parsed = new SummaryMemo(sameBytes)
  /**
   * The last simple Query's text: the same statement with other numbers or strings (as
   * pgbench and inlining ORMs send) has the same literal shape, recognised in place;
   * the summarizer's cache, keyed by shape, would give the same summaries.
   */
  private readonly queried = new SummaryMemo(sameLiteralShape)

  /** `ctx` is read per statement, so a policy reload's new column list applies at once. */
  constructor(ctx: () => AuditContext, session: number, client: string) {
    this.ctx = ctx
    this.session = session
    this.client = client
    ctx().sink.write({ event: 'connect', session, client })
  }

  /** SET/RESET IDENTITY and CONTEXT: the tags every later statement line carries. */
  setIdentity(identity: IdentityTags | null, context: unknown): void {
    this.who.identity = identity
    this.who.context = context
    this.sessionMembers = null
  }

  /**
   * A session event with the session's fields (`identity_set`, `identity_failed`,
   * `identity_cleared`, `context_set`, `context_cleared`, …). `fields` must hold no
   * token, key or value.
   */
  sessionEvent(event: string, fields: Record<string, unknown> = {}): void {
    this.ctx().sink.write({ ...fields, event, ...this.fields() })
  }

  startup(user: string, database: string, applicationName: string): void {
    this.user = user
    this.database = database
    this.applicationName = applicationName
    this.sessionMembers = null
  }

  authenticationOk(): void {
    this.authenticated = true
    this.ctx().sink.write({ event: 'authentication_ok', ...this.fields() })
  }

  authenticationFailed(frame: Buffer): void {
    const fields = decodeNoticeFields(frame)
    this.ctx().sink.write({ event: 'authentication_failed', ...this.fields(), sqlstate: fields.get('C') ?? '' })
  }

  /** The session ends: statements still running are logged as failed, then the disconnect. */
  end(): void {
    const ctx = this.ctx()
    if (this.authenticated) {
      while (!this.queue.isEmpty) {
        const head = this.queue.peek()
        const entry = this.queue.peekContext()
        // A Query whose error already ended it has nothing left running.
        const running = head === Pending.Query ? (entry as QueryEntry).index < (entry as QueryEntry).summaries.length : entry !== undefined
        if (running) this.logFailure(head, entry!, '08006', 'pgveil', 'the connection closed before the statement completed')
        this.queue.shift()
      }
    }
    ctx.sink.write({ event: 'disconnect', ...this.fields(), statements: this.statementCount, duration_ms: round(performance.now() - this.opened) })
  }

  /** Bytes from the client arrived: the messages in them start now. */
  clientRead(): void {
    this.arrived = performance.now()
  }

  /** A message from the client (Ready phase), read at the last clientRead(). */
  onClientFrame(buffer: Buffer, start: number, end: number): void {
    const code = buffer[start]
    switch (code) {
      case FrontendCode.Query:
        this.queue.push(Pending.Query, { summaries: this.queried.summarize(this.ctx().summarizer, buffer, start + 5, end - 1), index: 0, start: this.arrived })
        break
      case FrontendCode.Parse: {
        const nameEnd = nulAt(buffer, start + 5)
        const sqlEnd = buffer.indexOf(0, nameEnd + 1)
        const summary = this.parsed.summarize(this.ctx().summarizer, buffer, nameEnd + 1, sqlEnd)[0] ?? UNKNOWN_STATEMENT
        this.define(this.statements, 'unnamedStatement', nameEnd === start + 5 ? null : buffer.toString('latin1', start + 5, nameEnd), summary)
        if (nameEnd !== start + 5) this.lastBoundName = null
        this.queue.push(Pending.Parse, { summary, start: this.arrived })
        break
      }
      case FrontendCode.Bind: {
        const portalEnd = nulAt(buffer, start + 5)
        const statementEnd = nulAt(buffer, portalEnd + 1)
        const summary = statementEnd === portalEnd + 1 ? this.unnamedStatement : this.namedStatement(buffer, portalEnd + 1, statementEnd)
        this.define(this.portals, 'unnamedPortal', portalEnd === start + 5 ? null : buffer.toString('latin1', start + 5, portalEnd), summary)
        this.queue.push(Pending.Bind, { summary, start: this.arrived })
        break
      }
      case FrontendCode.Execute: {
        const summary = buffer[start + 5] === 0 ? this.unnamedPortal : (this.portals.get(buffer.toString('latin1', start + 5, nulAt(buffer, start + 5))) ?? UNKNOWN_STATEMENT)
        this.queue.push(Pending.Execute, { summary, start: this.arrived })
        break
      }
      case FrontendCode.Describe:
        this.queue.push(buffer[start + 5] === 0x53 ? Pending.DescribeStatement : Pending.DescribePortal)
        break
      case FrontendCode.Close: {
        const nameEnd = nulAt(buffer, start + 6)
        // Forgotten now, undoably, like Parse and Bind: a Parse of the name after it must not be forgotten when the CloseComplete comes.
        // The unnamed ones are replaced by the next Parse or Bind: nothing to forget (one undo entry all the same, for its CloseComplete).
        if (nameEnd === start + 6) this.unconfirmed.record(NOTHING_TO_UNDO)
        else {
          this.unconfirmed.set(buffer[start + 5] === 0x53 ? this.statements : this.portals, buffer.toString('latin1', start + 6, nameEnd), undefined)
          this.lastBoundName = null
        }
        this.queue.push(Pending.Close)
        break
      }
      case FrontendCode.Sync:
        this.queue.push(Pending.Sync)
        break
      case FrontendCode.FunctionCall:
        this.queue.push(Pending.FunctionCall)
        break
      default:
        break
    }
  }

  /** A message the client receives (Ready phase). */
  onClientBound(buffer: Buffer, start: number, end: number): void {
    const queue = this.queue
    switch (buffer[start]) {
      case BackendCode.DataRow:
        break
      case BackendCode.CloseComplete:
      case BackendCode.ParseComplete:
      case BackendCode.BindComplete:
        this.unconfirmed.confirm()
        queue.shift()
        break
      case BackendCode.NoData:
        queue.shift()
        break
      case BackendCode.RowDescription: {
        const head = queue.peek()
        if (head === Pending.DescribeStatement || head === Pending.DescribePortal) queue.shift()
        break
      }
      case BackendCode.PortalSuspended:
      case BackendCode.CommandComplete: {
        const head = queue.peek()
        const tag = buffer[start] === BackendCode.CommandComplete ? this.tagMembers(buffer, start + 5, end - 1) : NO_TAG
        if (head === Pending.Execute) {
          const entry = queue.peekContext() as ExtendedEntry
          this.logStatement('extended', entry.summary, entry.start, tag, OK)
          queue.shift()
        } else if (head === Pending.Query) {
          const entry = queue.peekContext() as QueryEntry
          const summary = entry.summaries[entry.index] ?? entry.summaries[entry.summaries.length - 1] ?? UNKNOWN_STATEMENT
          entry.start = this.logStatement('simple', summary, entry.start, tag, OK)
          entry.index++
        }
        break
      }
      case BackendCode.EmptyQueryResponse:
        if (queue.peek() === Pending.Execute) queue.shift()
        break
      case BackendCode.ErrorResponse:
        this.onError(buffer.subarray(start, end))
        break
      case BackendCode.ReadyForQuery:
        queue.shift()
        break
      case BackendCode.ParameterStatus:
        if (buffer.toString('latin1', start + 5, start + 22) === 'application_name\u0000') {
          this.applicationName = buffer.toString('utf8', start + 22, end - 1)
          this.sessionMembers = null
        }
        break
      default:
        break
    }
  }

  private onError(frame: Buffer): void {
    const queue = this.queue
    const head = queue.peek()
    if (head === 0) return
    const fields = decodeNoticeFields(frame)
    const sqlstate = fields.get('C') ?? 'XX000'
    // PostgreSQL's errors always name their source file and routine; pgveil's never do.
    const by = fields.has('F') || fields.has('R') ? 'postgresql' : 'pgveil'
    const entry = queue.peekContext()
    if (entry !== undefined) this.logFailure(head, entry, sqlstate, by, fields.get('M') ?? '')
    if (head === Pending.Query) {
      const query = entry as QueryEntry
      query.index = query.summaries.length
    } else if (skipsToSync(head)) {
      queue.failUntilSync()
      this.unconfirmed.undoAll()
      this.lastBoundName = null
    }
  }

  private logFailure(head: Pending | 0, entry: Entry, sqlstate: string, by: 'pgveil' | 'postgresql', message: string): void {
    const outcome: StatementOutcome = { status: 'error', sqlstate, by, message: redactErrorMessage(sqlstate, message, by === 'pgveil') }
    if (head === Pending.Query) {
      const query = entry as QueryEntry
      const summary = query.summaries[query.index] ?? query.summaries[query.summaries.length - 1] ?? UNKNOWN_STATEMENT
      this.logStatement('simple', summary, query.start, NO_TAG, outcome)
    } else if (head === Pending.Parse || head === Pending.Bind || head === Pending.Execute) {
      const extended = entry as ExtendedEntry
      this.logStatement('extended', extended.summary, extended.start, NO_TAG, outcome)
    }
  }

  /** Makes the statement or portal `name` (null: the unnamed one) stand for `summary`, until PostgreSQL fails its message (see unconfirmed). */
  private define(named: Map<string, StatementSummary>, unnamed: 'unnamedStatement' | 'unnamedPortal', name: string | null, summary: StatementSummary): void {
    if (name !== null) return this.unconfirmed.set(named, name, summary)
    const before = this[unnamed]
    this.unconfirmed.record(() => (this[unnamed] = before))
    this[unnamed] = summary
  }

  /** The summary of the named statement in buffer[start, end). */
  private namedStatement(buffer: Buffer, start: number, end: number): StatementSummary {
    const last = this.lastBoundName
    if (last !== null && sameBytes(buffer, start, end, last)) return this.lastBoundSummary
    const summary = this.statements.get(buffer.toString('latin1', start, end)) ?? UNKNOWN_STATEMENT
    this.lastBoundName = Buffer.from(buffer.subarray(start, end))
    this.lastBoundSummary = summary
    return summary
  }

  /** The members of the CommandComplete tag in buffer[start, end). */
  private tagMembers(buffer: Buffer, start: number, end: number): LineFragment {
    const last = this.lastTag
    if (last !== null && sameBytes(buffer, start, end, last)) return this.lastTagMembers
    this.lastTag = Buffer.from(buffer.subarray(start, end))
    this.lastTagMembers = tagMembers(buffer.toString('latin1', start, end))
    return this.lastTagMembers
  }

  /** Writes the line and counts it; returns the time it was logged (the next statement's start). */
  private logStatement(protocol: 'simple' | 'extended', summary: StatementSummary, start: number, tag: LineFragment, outcome: StatementOutcome): number {
    const now = performance.now()
    const ctx = this.ctx()
    this.statementCount++
    // The StatementEvent fields in their order, from fragments serialized once per session, protocol, statement shape and tag.
    const session = (this.sessionMembers ??= this.buildSessionMembers())
    const protocolMembers = protocol === 'simple' ? SIMPLE_PROTOCOL : EXTENDED_PROTOCOL
    if (outcome.status === 'ok') ctx.sink.writeTemplate(session, protocolMembers, summary.members, tag, now - start, OK_OUTCOME)
    else {
      const members = [session, protocolMembers, summary.members, tag].map((f) => f.bytes.toString()).join('')
      ctx.sink.writeMembers(`${members}${String(round(now - start))},"outcome":${JSON.stringify(outcome)}`)
    }
    const result = outcome.status === 'ok' ? 'ok' : outcome.sqlstate === PGVEIL_REFUSED ? 'refused' : 'error'
    ctx.statementMetrics.record(summary.kind, result, (now - start) / 1000, summary.protectedRead.length > 0 || summary.protectedWritten.length > 0)
    return now
  }

  /** `"event":"statement",` and the session's members, with a comma. */
  private buildSessionMembers(): LineFragment {
    const identity = this.who.identity === null ? 'null' : JSON.stringify({ iss: this.who.identity.iss, sub: this.who.identity.sub, aud: this.who.identity.aud })
    return new LineFragment(
      Buffer.from(
        `"event":"statement","session":${this.session},"client":${JSON.stringify(this.client)},"user":${JSON.stringify(this.user)},"database":${JSON.stringify(this.database)},` +
          `"application_name":${JSON.stringify(this.applicationName)},"identity":${identity},"context":${JSON.stringify(this.who.context) ?? 'null'},`,
      ),
    )
  }

  private fields(): { session: number; client: string; user: string; database: string; application_name: string } {
    return { session: this.session, client: this.client, user: this.user, database: this.database, application_name: this.applicationName }
  }
}

const OK: StatementOutcome = { status: 'ok' }
const NOTHING_TO_UNDO = (): void => {}

/** The NUL that ends a name starting at `from` (names are short: a loop before the native search). */
function nulAt(buffer: Buffer, from: number): number {
  const stop = Math.min(from + 64, buffer.length)
  for (let i = from; i < stop; i++) if (buffer[i] === 0) return i
  return buffer.indexOf(0, stop)
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function isDigits(text: string, from: number, to: number): boolean {
  if (from >= to) return false
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
  }
  return true
}

/** `INSERT 0 5` → `INSERT`, `CREATE TABLE` stays. */
function tagName(tag: string): string {
  let end = tag.length
  while (end > 0) {
    const space = tag.lastIndexOf(' ', end - 1)
    if (!isDigits(tag, space + 1, end)) break
    end = space < 0 ? 0 : space
  }
  return tag.slice(0, end)
}

/** Rows returned or affected: the tag's last number (SELECT n, INSERT 0 n, UPDATE n, COPY n, …). */
function tagRows(tag: string): number | null {
  const space = tag.lastIndexOf(' ')
  return space > 0 && isDigits(tag, space + 1, tag.length) ? Number(tag.slice(space + 1)) : null
}
