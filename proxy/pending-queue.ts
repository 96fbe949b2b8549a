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
 * Puts `map`'s entry for `key` back as it is now: the undo of a change made for a
 * message PostgreSQL may still fail or skip (a named statement or portal).
 */
export function restorer<V>(map: Map<string, V>, key: string): () => void {
  const had = map.has(key)
  const before = map.get(key)
  return () => {
    if (had) map.set(key, before as V)
    else map.delete(key)
  }
}
