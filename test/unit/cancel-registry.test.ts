import { describe, expect, it } from 'vitest'
import { CancelRegistry } from '../../proxy/cancel-registry.js'

function target() {
  const calls = { count: 0 }
  return { calls, target: { cancelUpstream: () => void calls.count++ } }
}

describe('CancelRegistry', () => {
  it('issues distinct keys with a secret as long as asked', () => {
    const registry = new CancelRegistry()
    const a = registry.issue(target().target, 4)
    const b = registry.issue(target().target, 32)
    expect(a.secretKey).toHaveLength(4)
    expect(b.secretKey).toHaveLength(32)
    expect(a.processId).not.toBe(b.processId)
    expect(a.processId).toBeGreaterThan(0)
    expect(registry.size).toBe(2)
  })

  it('cancels only with the exact key of a live session', () => {
    const registry = new CancelRegistry()
    const { calls, target: session } = target()
    const other = target()
    const key = registry.issue(session, 4)
    registry.issue(other.target, 4)
    const wrong = Buffer.from(key.secretKey)
    wrong[0] = wrong[0]! ^ 0xff
    expect(registry.cancel(key.processId, wrong)).toBe(false)
    expect(registry.cancel(key.processId, Buffer.concat([key.secretKey, Buffer.from([0])]))).toBe(false)
    expect(registry.cancel(key.processId + 1, key.secretKey)).toBe(false)
    expect(calls.count).toBe(0)
    expect(registry.cancel(key.processId, Buffer.from(key.secretKey))).toBe(true)
    expect(calls.count).toBe(1)
    expect(other.calls.count).toBe(0)
    registry.release(key.processId)
    expect(registry.cancel(key.processId, key.secretKey)).toBe(false)
    expect(calls.count).toBe(1)
  })
})
