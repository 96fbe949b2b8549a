import { describe, expect, it } from 'vitest'
import { Pending, PendingResponseQueue } from '../../proxy/pending-queue.js'

function drain(queue: PendingResponseQueue<unknown>): number[] {
  const kinds: number[] = []
  while (!queue.isEmpty) kinds.push(queue.shift())
  return kinds
}

describe('PendingResponseQueue', () => {
  it('returns entries in order with their context, and 0 when empty', () => {
    const queue = new PendingResponseQueue<string>()
    expect(queue.peek()).toBe(0)
    expect(queue.shift()).toBe(0)
    queue.push(Pending.Parse, 'p')
    queue.push(Pending.Bind, 'b')
    queue.push(Pending.Sync)
    expect(queue.length).toBe(3)
    expect(queue.peek()).toBe(Pending.Parse)
    expect(queue.peekContext()).toBe('p')
    expect(queue.shift()).toBe(Pending.Parse)
    expect(queue.peekContext()).toBe('b')
    expect(drain(queue)).toEqual([Pending.Bind, Pending.Sync])
  })

  it('grows past its initial capacity without reordering, also when wrapped around', () => {
    const queue = new PendingResponseQueue<number>(4)
    const expected: number[] = []
    // Wrap the ring first, then overflow it.
    queue.push(Pending.Query, -1)
    queue.push(Pending.Query, -2)
    queue.shift()
    queue.shift()
    const kinds = [Pending.Parse, Pending.Bind, Pending.DescribePortal, Pending.Execute, Pending.Close, Pending.Sync]
    for (let i = 0; i < 100; i++) {
      const kind = kinds[i % kinds.length]!
      queue.push(kind, i)
      expected.push(kind)
    }
    const contexts: number[] = []
    const seen: number[] = []
    while (!queue.isEmpty) {
      contexts.push(queue.peekContext()!)
      seen.push(queue.shift())
    }
    expect(seen).toEqual(expected)
    expect(contexts).toEqual(Array.from({ length: 100 }, (_, i) => i))
  })

  it('after an extended-protocol error drops entries up to the queued Sync', () => {
    const queue = new PendingResponseQueue()
    for (const kind of [Pending.Bind, Pending.Execute, Pending.Parse, Pending.Sync, Pending.Parse, Pending.Sync]) queue.push(kind)
    queue.failUntilSync()
    expect(drain(queue)).toEqual([Pending.Sync, Pending.Parse, Pending.Sync])
  })

  it('when no Sync is queued yet, ignores messages until the Sync arrives', () => {
    const queue = new PendingResponseQueue()
    queue.push(Pending.Parse)
    queue.push(Pending.Bind)
    queue.failUntilSync()
    expect(queue.isEmpty).toBe(true)
    queue.push(Pending.Execute) // PostgreSQL discards it: no reply will come
    queue.push(Pending.Sync)
    queue.push(Pending.Parse)
    expect(drain(queue)).toEqual([Pending.Sync, Pending.Parse])
  })
})
