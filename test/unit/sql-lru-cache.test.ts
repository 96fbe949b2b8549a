import { describe, expect, it } from 'vitest'
import { SqlLruCache } from '../../policy/sql-lru-cache.js'

describe('SqlLruCache', () => {
  it('keeps a new entry when every older one was used since the last eviction', () => {
    const cache = new SqlLruCache<number>(2, 1000)
    cache.set('a', 1)
    cache.set('b', 2)
    cache.get('a')
    cache.get('b')
    cache.set('n', 3)
    expect(cache.get('n')).toBe(3)
    expect(cache.size).toBe(2)
  })

  it('evicts the entry not used since it was last considered, and bounds the characters held', () => {
    const cache = new SqlLruCache<number>(3, 10)
    cache.set('aaa', 1)
    cache.set('bbb', 2)
    cache.get('aaa')
    cache.set('ccc', 3)
    cache.set('ddd', 4) // 12 characters: one must go, and bbb was never used
    expect(cache.get('bbb')).toBeUndefined()
    expect([cache.get('aaa'), cache.get('ccc'), cache.get('ddd')]).toEqual([1, 3, 4])
  })
})
