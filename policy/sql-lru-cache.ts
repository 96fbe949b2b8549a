/**
 * A least-recently-used cache of analyses by SQL text, bounded both by entry
 * count and by the total length of the cached texts (a few huge statements must
 * not pin megabytes).
 *
 * Approximate LRU by second chance ("clock"): a hit only sets a flag, and
 * eviction walks from the oldest entry, moving flagged ones to the young end.
 * Re-inserting into the `Map` on every hit would be exact LRU, but V8's ordered
 * hash tables then compact over and over: a hit would cost ~3 µs at 2,000
 * entries instead of ~0.1 µs.
 */
interface Slot<V> {
  readonly value: V
  used: boolean
}

export class SqlLruCache<V> {
  readonly #map = new Map<string, Slot<V>>()
  readonly #maxEntries: number
  readonly #maxChars: number
  #chars = 0

  constructor(maxEntries: number, maxChars: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 0) throw new RangeError(`cache entries must be a non-negative integer, got ${maxEntries}`)
    if (!Number.isInteger(maxChars) || maxChars < 0) throw new RangeError(`cache size must be a non-negative integer, got ${maxChars}`)
    this.#maxEntries = maxEntries
    this.#maxChars = maxChars
  }

  get size(): number {
    return this.#map.size
  }

  get(key: string): V | undefined {
    const slot = this.#map.get(key)
    if (slot === undefined) return undefined
    slot.used = true
    return slot.value
  }

  set(key: string, value: V): void {
    if (key.length > this.#maxChars || this.#maxEntries === 0) return
    if (this.#map.delete(key)) this.#chars -= key.length
    // Room is made before the new entry goes in: second chances move used entries to
    // the young end, and the new one must not be found there unused and evicted.
    for (const [oldest, slot] of this.#map) {
      if (this.#map.size < this.#maxEntries && this.#chars + key.length <= this.#maxChars) break
      this.#map.delete(oldest)
      if (slot.used) {
        // Second chance: used since it was last considered, so it moves to the young end.
        slot.used = false
        this.#map.set(oldest, slot)
      } else this.#chars -= oldest.length
    }
    this.#map.set(key, { value, used: false })
    this.#chars += key.length
  }

  clear(): void {
    this.#map.clear()
    this.#chars = 0
  }
}
