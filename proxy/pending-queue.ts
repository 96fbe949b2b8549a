/**
 * Pairs every backend reply with the frontend message that caused it, so pipelined
 * extended-protocol traffic can be followed (and, for protected columns, rewritten)
 * message by message.
 *
 * PostgreSQL answers in order: Parse→ParseComplete, Bind→BindComplete,
 * Describe→[ParameterDescription] RowDescription|NoData, Execute→rows then
 * CommandComplete|EmptyQueryResponse|PortalSuspended (or a COPY exchange),
 * Close→CloseComplete, Sync/Query/FunctionCall→…ReadyForQuery. After an error in the
 * extended protocol it skips everything up to the next Sync.
 */

export const Pending = {
  Query: 1,
  Parse: 2,
  Bind: 3,
  DescribeStatement: 4,
  DescribePortal: 5,
  Execute: 6,
  Close: 7,
  Sync: 8,
  FunctionCall: 9,
} as const
export type Pending = (typeof Pending)[keyof typeof Pending]

/** A ring buffer of pending replies; `T` is the context a later stage attaches to an entry. */
export class PendingResponseQueue<T = undefined> {
  private kinds: Uint8Array
  private contexts: (T | undefined)[]
  private head = 0
  private count = 0
  /** An error was seen with no Sync queued: messages until the next Sync will get no reply. */
  private skippingUntilSync = false

  constructor(capacity = 64) {
    this.kinds = new Uint8Array(capacity)
    this.contexts = new Array<T | undefined>(capacity)
  }

  get length(): number {
    return this.count
  }

  get isEmpty(): boolean {
    return this.count === 0
  }

  /** The kind at the head, or 0 when empty. */
  peek(): Pending | 0 {
    return this.count === 0 ? 0 : (this.kinds[this.head] as Pending)
  }

  peekContext(): T | undefined {
    return this.count === 0 ? undefined : this.contexts[this.head]
  }

  push(kind: Pending, context?: T): void {
    if (this.skippingUntilSync) {
      if (kind !== Pending.Sync) return
      this.skippingUntilSync = false
    }
    if (this.count === this.kinds.length) this.grow()
    const index = (this.head + this.count) % this.kinds.length
    this.kinds[index] = kind
    this.contexts[index] = context
    this.count++
  }

  shift(): Pending | 0 {
    if (this.count === 0) return 0
    const kind = this.kinds[this.head] as Pending
    this.contexts[this.head] = undefined
    this.head = (this.head + 1) % this.kinds.length
    this.count--
    return kind
  }

  /**
   * An ErrorResponse arrived for an extended-protocol message: PostgreSQL drops every
   * message up to the next Sync, so their entries get no reply.
   */
  failUntilSync(): void {
    while (this.count > 0 && this.peek() !== Pending.Sync) this.shift()
    if (this.count === 0) this.skippingUntilSync = true
  }

  clear(): void {
    while (this.count > 0) this.shift()
    this.skippingUntilSync = false
  }

  private grow(): void {
    const capacity = this.kinds.length * 2
    const kinds = new Uint8Array(capacity)
    const contexts = new Array<T | undefined>(capacity)
    for (let i = 0; i < this.count; i++) {
      const from = (this.head + i) % this.kinds.length
      kinds[i] = this.kinds[from]!
      contexts[i] = this.contexts[from]
    }
    this.kinds = kinds
    this.contexts = contexts
    this.head = 0
  }
}

/**
 * Changes a session made to its named statements and portals for Parse, Bind and
 * Close messages PostgreSQL has not answered yet, oldest first, each able to undo
 * itself. They are made when the message is sent, since the messages after it in a
 * pipeline use them; ParseComplete, BindComplete or CloseComplete confirms the
 * oldest; after an error PostgreSQL skips every message up to Sync, so the changes
 * of the failed message and of those after it never happened there and are undone,
 * newest first. A name must never stand for another statement than PostgreSQL's of
 * that name (SessionCrypto: a plain plan over a statement that writes a protected
 * column would pass its value unencrypted; SessionAudit: a read would be logged as
 * another statement).
 */
export class UnconfirmedChanges {
  readonly #undo: (() => void)[] = []

  /** Sets (or, with undefined, deletes) `map`'s entry for `key`, undoably. */
  set<V>(map: Map<string, V>, key: string, value: V | undefined): void {
    const had = map.has(key)
    const before = map.get(key)
    this.#undo.push(() => {
      if (had) map.set(key, before as V)
      else map.delete(key)
    })
    if (value === undefined) map.delete(key)
    else map.set(key, value)
  }

  /** A change made some other way, with its undo (a no-op for a message that changes nothing but is confirmed all the same). */
  record(undo: () => void): void {
    this.#undo.push(undo)
  }

  /** PostgreSQL answered the oldest change-making message still unanswered: its change stands. */
  confirm(): void {
    this.#undo.shift()
  }

  /** PostgreSQL failed a message in a pipeline: the changes not yet confirmed are undone, newest first. */
  undoAll(): void {
    for (let i = this.#undo.length - 1; i >= 0; i--) this.#undo[i]!()
    this.#undo.length = 0
  }
}

/**
 * Whether an ErrorResponse answering the pending message `head` makes PostgreSQL skip
 * every message up to the next Sync: an extended-protocol message. A simple Query's
 * error ends at its ReadyForQuery, a FunctionCall's is its own, and one with nothing
 * pending is asynchronous (a FATAL before the connection ends).
 */
export function skipsToSync(head: Pending | 0): boolean {
  return head !== 0 && head !== Pending.Query && head !== Pending.FunctionCall
}
