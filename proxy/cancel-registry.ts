/**
 * Each client gets its own BackendKeyData from pgveil; a CancelRequest carrying it is
 * forwarded to the upstream backend that serves that client, with the upstream's key.
 * Upstream keys never reach clients.
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto'

export interface CancelTarget {
  /** Send the upstream CancelRequest for this session. */
  cancelUpstream(): void
}

interface Entry {
  secret: Buffer
  target: CancelTarget
}

export class CancelRegistry {
  private readonly entries = new Map<number, Entry>()

  /** Issue a client-facing key with a secret as long as the upstream's (4 bytes in protocol 3.0). */
  issue(target: CancelTarget, secretLength: number): { processId: number; secretKey: Buffer } {
    let processId: number
    do processId = randomInt(1, 0x7fffffff)
    while (this.entries.has(processId))
    const secretKey = randomBytes(secretLength)
    this.entries.set(processId, { secret: secretKey, target })
    return { processId, secretKey }
  }

  release(processId: number): void {
    this.entries.delete(processId)
  }

  /** True when the key matched a live session (whose upstream query is then cancelled). */
  cancel(processId: number, secretKey: Buffer): boolean {
    const entry = this.entries.get(processId)
    if (entry === undefined || entry.secret.length !== secretKey.length) return false
    if (!timingSafeEqual(entry.secret, secretKey)) return false
    entry.target.cancelUpstream()
    return true
  }

  get size(): number {
    return this.entries.size
  }
}
