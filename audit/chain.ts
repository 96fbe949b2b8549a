/**
 * The tamper-evident chain of the audit log (a forward-secure MAC chain in the
 * style of FssAgg / Schneier-Kelsey secure logs), format version 2.
 *
 * Primitive: keyed BLAKE2b with a 32-byte output (RFC 7693 keyed mode, libsodium's
 * crypto_generichash), written B(key, message). One native call per MAC and per
 * key step: node:crypto's createHmac/createHash cost ~4 µs a line, this ~1.5 µs,
 * and the audit worker shares the machine's cores with the data path.
 *
 * Keys: `audit.chain_key` is seed_0. Each chain (one per start-up and per SIGUSR1)
 * has a random id and an epoch e; its first line key is
 * key_0 = B(seed_e, "pgveil audit chain v2" ‖ id), and the process moves on to
 * seed_{e+1} = B(seed_e, "pgveil audit seed v2"). Each line i is sealed with
 * mac_i = B(key_i, body_i ‖ mac_{i-1}) (mac_{-1}: 32 zero bytes; MACs raw, 32 bytes)
 * and the key evolves, key_{i+1} = B(key_i, "pgveil audit key v2"), the old one
 * overwritten. So the process only ever holds the keys of lines not written yet:
 * whoever takes its memory later cannot re-seal what was already written. The
 * verifier holds seed_0 and derives everything.
 *
 * Line form: the JSON body with `"mac":"<64 hex>"` appended as its last member,
 * so verification needs the exact bytes, not a re-serialization. The previous MAC
 * goes after the body so that the sealer can MAC the body where it already lies in
 * the output buffer, with the previous MAC written just past it (where the line's
 * own `,"mac":…` then goes).
 */
import { randomBytes } from 'node:crypto'
import sodium from 'sodium-native'

export const CHAIN_FORMAT_VERSION = 2
/** The verifier refuses epochs beyond this (a line claiming one is not ours). */
export const MAX_EPOCH = 1_000_000
export const MAC_BYTES = 32
/** BLAKE2b's key length limits: seed_0 must fit. */
const MIN_SEED_BYTES = 16
const MAX_SEED_BYTES = 64

const SEED_LABEL = Buffer.from('pgveil audit seed v2')
const CHAIN_LABEL = Buffer.from('pgveil audit chain v2')
const KEY_LABEL = Buffer.from('pgveil audit key v2')
const NO_PREVIOUS_MAC = Buffer.alloc(MAC_BYTES)
const MAC_SUFFIX = /,"mac":"([0-9a-f]{64})"\}$/
const MAC_OPEN = Buffer.from(',"mac":"')
const MAC_CLOSE = Buffer.from('"}\n')
/** `,"mac":"` + 64 hex + `"}\n`: what sealing adds after a body's last member. */
export const SEAL_SUFFIX_BYTES = MAC_OPEN.length + 2 * MAC_BYTES + MAC_CLOSE.length
const HEX = Buffer.from('0123456789abcdef')

/** B(key, message): keyed BLAKE2b, 32-byte output. */
export function keyedBlake2b(key: Uint8Array, message: Uint8Array): Buffer {
  const out = Buffer.alloc(MAC_BYTES)
  sodium.crypto_generichash(out, message, key)
  return out
}

export function nextSeed(seed: Buffer): Buffer {
  return keyedBlake2b(seed, SEED_LABEL)
}

export function firstLineKey(seed: Buffer, chainId: string): Buffer {
  return keyedBlake2b(seed, Buffer.concat([CHAIN_LABEL, Buffer.from(chainId)]))
}

export function nextLineKey(key: Buffer): Buffer {
  return keyedBlake2b(key, KEY_LABEL)
}

/** mac_i from key_i, mac_{i-1} (null for the first line) and the body's bytes. */
export function lineMac(key: Buffer, previousMac: Buffer | null, body: Buffer): Buffer {
  return keyedBlake2b(key, Buffer.concat([body, previousMac ?? NO_PREVIOUS_MAC]))
}

/** The body a line's MAC covers and the MAC (hex), or null when the line does not end in one. */
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

/** The writer's side: the current chain, sealing one line at a time in place. */
export class ChainSealer {
  private seed: Buffer
  private epoch = 0
  /** key_i, overwritten in place by key_{i+1}. */
  private readonly key = Buffer.alloc(MAC_BYTES)
  private readonly previousMac = Buffer.alloc(MAC_BYTES)
  private nextSeq = 0
  private chainId = ''

  /** Takes a copy of `chainKey` (the caller should zero its own). */
  constructor(chainKey: Buffer) {
    if (chainKey.length < MIN_SEED_BYTES || chainKey.length > MAX_SEED_BYTES) {
      throw new RangeError(`audit.chain_key is ${chainKey.length} bytes; expected ${MIN_SEED_BYTES} to ${MAX_SEED_BYTES} (pgveil keygen makes one of 32)`)
    }
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

  /** The last line's MAC as hex ('' before the first line). */
  get lastMac(): string {
    return this.nextSeq === 0 ? '' : this.previousMac.toString('hex')
  }

  /** Begin a new chain: returns its id and epoch (the first line must carry both, with seq 0). */
  begin(): { id: string; epoch: number } {
    this.chainId = randomBytes(12).toString('hex')
    const key = firstLineKey(this.seed, this.chainId)
    key.copy(this.key)
    key.fill(0)
    const epoch = this.epoch
    const seed = nextSeed(this.seed)
    this.seed.fill(0)
    this.seed = seed
    this.epoch++
    this.previousMac.fill(0)
    this.nextSeq = 0
    return { id: this.chainId, epoch }
  }

  /**
   * Seal the body in `buffer[start, end)` (a JSON object carrying seq = this.seq,
   * its closing `}` at end - 1) in place: the bytes from end - 1 on become
   * `,"mac":"…"}\n`. `buffer` must have SEAL_SUFFIX_BYTES - 1 bytes free past `end`.
   * Returns where the sealed line ends.
   */
  sealInPlace(buffer: Uint8Array, start: number, end: number): number {
    // set() and a plain Uint8Array's subarray: cheaper than Buffer's copy() and subarray() per line.
    buffer.set(this.previousMac, end)
    sodium.crypto_generichash(this.previousMac, buffer.subarray(start, end + MAC_BYTES), this.key)
    sodium.crypto_generichash(this.key, KEY_LABEL, this.key)
    this.nextSeq++
    buffer.set(MAC_OPEN, end - 1)
    let at = end - 1 + MAC_OPEN.length
    const mac = this.previousMac
    for (let i = 0; i < MAC_BYTES; i++) {
      const byte = mac[i]!
      buffer[at++] = HEX[byte >> 4]!
      buffer[at++] = HEX[byte & 15]!
    }
    buffer.set(MAC_CLOSE, at)
    return at + MAC_CLOSE.length
  }

  /** Forget every key (shutdown). */
  erase(): void {
    this.key.fill(0)
    this.seed.fill(0)
  }
}
