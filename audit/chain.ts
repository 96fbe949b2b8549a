/**
 * The tamper-evident chain of the audit log (a forward-secure MAC chain in the
 * style of FssAgg / Schneier-Kelsey secure logs).
 *
 * Keys: `audit.chain_key` is seed_0. Each chain (one per start-up and per
 * SIGUSR1) has a random id and an epoch e; its first line key is
 * key_0 = HMAC(seed_e, "pgveil audit chain v1" ‖ id), and the process moves on to
 * seed_{e+1} = SHA-256("pgveil audit seed v1" ‖ seed_e). Each line i is sealed
 * with mac_i = HMAC(key_i, mac_{i-1} ‖ "\n" ‖ body_i) and the key evolves,
 * key_{i+1} = SHA-256("pgveil audit key v1" ‖ key_i), the old one overwritten.
 * So the process only ever holds the keys of lines not written yet: whoever
 * takes its memory later cannot re-seal what was already written. The verifier
 * holds seed_0 and derives everything.
 *
 * Line form: the JSON body with `"mac":"<64 hex>"` appended as its last member,
 * so verification needs the exact bytes, not a re-serialization.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'

export const CHAIN_FORMAT_VERSION = 1
/** The verifier refuses epochs beyond this (a line claiming one is not ours). */
export const MAX_EPOCH = 1_000_000

const SEED_LABEL = Buffer.from('pgveil audit seed v1')
const CHAIN_LABEL = Buffer.from('pgveil audit chain v1')
const KEY_LABEL = Buffer.from('pgveil audit key v1')
const NEWLINE = Buffer.from('\n')
const MAC_SUFFIX = /,"mac":"([0-9a-f]{64})"\}$/

export function nextSeed(seed: Buffer): Buffer {
  return createHash('sha256').update(SEED_LABEL).update(seed).digest()
}

export function firstLineKey(seed: Buffer, chainId: string): Buffer {
  return createHmac('sha256', seed).update(CHAIN_LABEL).update(chainId).digest()
}

export function nextLineKey(key: Buffer): Buffer {
  return createHash('sha256').update(KEY_LABEL).update(key).digest()
}

export function lineMac(key: Buffer, previousMac: string, body: string): string {
  return createHmac('sha256', key).update(previousMac).update(NEWLINE).update(body).digest('hex')
}

/** `{…}` + mac → `{…,"mac":"…"}`. */
export function appendMac(body: string, mac: string): string {
  return `${body.slice(0, -1)},"mac":"${mac}"}`
}

/** The body a line's MAC covers and the MAC, or null when the line does not end in one. */
export function splitMac(line: string): { body: string; mac: string } | null {
  const match = MAC_SUFFIX.exec(line)
  if (match === null) return null
  return { body: `${line.slice(0, match.index)}}`, mac: match[1]! }
}

/** seed_0 evolved `epoch` times. */
export function seedAtEpoch(chainKey: Buffer, epoch: number): Buffer {
  let seed: Buffer = Buffer.from(chainKey)
  for (let i = 0; i < epoch; i++) {
    const next = nextSeed(seed)
    seed.fill(0)
    seed = next
  }
  return seed
}

/** The writer's side: the current chain, sealing one line at a time. */
export class ChainSealer {
  private seed: Buffer
  private epoch = 0
  private key: Buffer = Buffer.alloc(0)
  private previousMac = ''
  private nextSeq = 0
  private chainId = ''

  /** Takes a copy of `chainKey` (the caller should zero its own). */
  constructor(chainKey: Buffer) {
    if (chainKey.length < 16) throw new RangeError(`audit.chain_key is ${chainKey.length} bytes; expected at least 16 (pgveil keygen makes one)`)
    this.seed = Buffer.from(chainKey)
  }

  get id(): string {
    return this.chainId
  }

  /** Sequence number the next sealed line must carry. */
  get seq(): number {
    return this.nextSeq
  }

  /** Lines sealed in the current chain. */
  get lines(): number {
    return this.nextSeq
  }

  get lastMac(): string {
    return this.previousMac
  }

  /** Begin a new chain: returns its id and epoch (the first line must carry both, with seq 0). */
  begin(): { id: string; epoch: number } {
    this.chainId = randomBytes(12).toString('hex')
    this.key.fill(0)
    this.key = firstLineKey(this.seed, this.chainId)
    const epoch = this.epoch
    const seed = nextSeed(this.seed)
    this.seed.fill(0)
    this.seed = seed
    this.epoch++
    this.previousMac = ''
    this.nextSeq = 0
    return { id: this.chainId, epoch }
  }

  /** Seal one serialized line body (`{…}`, carrying seq = this.seq) and move to the next key. */
  seal(body: string): string {
    const mac = lineMac(this.key, this.previousMac, body)
    const next = nextLineKey(this.key)
    this.key.fill(0)
    this.key = next
    this.previousMac = mac
    this.nextSeq++
    return appendMac(body, mac)
  }

  /** Forget every key (shutdown). */
  erase(): void {
    this.key.fill(0)
    this.seed.fill(0)
  }
}
