/**
 * The tamper-evident chain of the audit log (a forward-secure MAC chain in the
 * style of FssAgg / Schneier-Kelsey secure logs). pgveil writes format 3;
 * `pgveil audit verify` checks formats 2 and 3.
 *
 * B(key, message) is keyed BLAKE2b with a 32-byte output (RFC 7693 keyed mode,
 * libsodium's crypto_generichash).
 *
 * Seeds (both formats): `audit.chain_key` is seed_0. Each chain (one per
 * start-up and per SIGUSR1) has a random id and an epoch e, and the process
 * moves on to seed_{e+1} = B(seed_e, "pgveil audit seed v2") once the chain has
 * its first key.
 *
 * Format 3 (fast key erasure; one native call per line):
 *   state_0 = B(seed_e, "pgveil audit chain v3" ‖ id). Line keys come in blocks
 *   of 64: block j is the first 32 + 64·32 bytes of the ChaCha20 keystream
 *   (original ChaCha20, 8-byte zero nonce, counter from 0) under state_j; its
 *   first 32 bytes are state_{j+1}, the next 64 chunks of 32 bytes are the
 *   one-time Poly1305 keys of lines 64j … 64j+63. Each line i is sealed with
 *   mac_i = Poly1305(otk_i, body_i ‖ mac_{i-1}) (MACs raw, 16 bytes; mac_{-1}:
 *   16 zero bytes). state_j is overwritten as soon as block j is drawn, and each
 *   one-time key as soon as its line is sealed, so the process only ever holds
 *   the keys of lines not written yet. (Format 2 evolved a BLAKE2b key per line:
 *   two BLAKE2b calls a line, ~1.4 µs here, against ~0.35 µs.)
 *
 * Format 2 (verified only): key_0 = B(seed_e, "pgveil audit chain v2" ‖ id),
 *   mac_i = B(key_i, body_i ‖ mac_{i-1}) (32 bytes; mac_{-1}: 32 zero bytes),
 *   key_{i+1} = B(key_i, "pgveil audit key v2").
 *
 * Line form: the JSON body with `"mac":"<hex>"` appended as its last member, so
 * verification needs the exact bytes, not a re-serialization. The previous MAC
 * goes after the body so that the sealer can MAC the body where it already lies
 * in the output buffer, with the previous MAC written just past it (where the
 * line's own `,"mac":…` then goes).
 */
import { randomBytes } from 'node:crypto'
import sodium from 'sodium-native'

export const CHAIN_FORMAT_VERSION = 3
/** Chain formats `pgveil audit verify` checks. */
export const VERIFIED_FORMATS: readonly number[] = [2, 3]
/** The verifier refuses epochs beyond this (a line claiming one is not ours). */
export const MAX_EPOCH = 1_000_000
/** A format 3 line MAC (Poly1305). */
export const MAC_BYTES = sodium.crypto_onetimeauth_BYTES
/** Line keys drawn from one ChaCha20 keystream (format 3). */
export const LINE_KEYS_PER_BLOCK = 64
const STATE_BYTES = sodium.crypto_stream_chacha20_KEYBYTES
const ONE_TIME_KEY_BYTES = sodium.crypto_onetimeauth_KEYBYTES
const BLOCK_BYTES = STATE_BYTES + LINE_KEYS_PER_BLOCK * ONE_TIME_KEY_BYTES
const STREAM_NONCE = Buffer.alloc(sodium.crypto_stream_chacha20_NONCEBYTES)
/** BLAKE2b's output for seeds and first keys, and format 2's MACs. */
const BLAKE2B_BYTES = 32
/** BLAKE2b's key length limits: seed_0 must fit. */
const MIN_SEED_BYTES = 16
const MAX_SEED_BYTES = 64

const SEED_LABEL = Buffer.from('pgveil audit seed v2')
const CHAIN_LABEL = Buffer.from('pgveil audit chain v3')
const CHAIN_LABEL_V2 = Buffer.from('pgveil audit chain v2')
const KEY_LABEL_V2 = Buffer.from('pgveil audit key v2')
const MAC_SUFFIX = /,"mac":"([0-9a-f]{32}|[0-9a-f]{64})"\}$/
const MAC_OPEN = Buffer.from(',"mac":"')
const MAC_CLOSE = Buffer.from('"}\n')
/** `,"mac":"` + hex + `"}\n`: what sealing adds after a body's last member. */
export const SEAL_SUFFIX_BYTES = MAC_OPEN.length + 2 * MAC_BYTES + MAC_CLOSE.length
const HEX = Buffer.from('0123456789abcdef')

/** B(key, message): keyed BLAKE2b, 32-byte output. */
export function keyedBlake2b(key: Uint8Array, message: Uint8Array): Buffer {
  const out = Buffer.alloc(BLAKE2B_BYTES)
  sodium.crypto_generichash(out, message, key)
  return out
}

export function nextSeed(seed: Buffer): Buffer {
  return keyedBlake2b(seed, SEED_LABEL)
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

/** Format 3: state_0 of a chain. */
export function firstState(seed: Buffer, chainId: string): Buffer {
  return keyedBlake2b(seed, Buffer.concat([CHAIN_LABEL, Buffer.from(chainId)]))
}

/**
 * Format 3's line keys: the one-time Poly1305 keys of successive lines, drawn 64
 * at a time from a ChaCha20 keystream whose first 32 bytes replace the state.
 */
export class LineKeyStream {
  private readonly state = new Uint8Array(STATE_BYTES)
  private readonly block = new Uint8Array(BLOCK_BYTES)
  /** The block's one-time keys, as views made once. */
  private readonly keys: Uint8Array[] = []
  private used = LINE_KEYS_PER_BLOCK

  /** Takes a copy of state_0 (the caller should zero its own). */
  constructor(first: Uint8Array) {
    this.state.set(first)
    for (let i = 0; i < LINE_KEYS_PER_BLOCK; i++) this.keys.push(this.block.subarray(STATE_BYTES + i * ONE_TIME_KEY_BYTES, STATE_BYTES + (i + 1) * ONE_TIME_KEY_BYTES))
  }

  /** The next line's one-time key; the caller zeroes it once the line is sealed. */
  take(): Uint8Array {
    if (this.used === LINE_KEYS_PER_BLOCK) {
      sodium.crypto_stream_chacha20(this.block, STREAM_NONCE, this.state)
      this.state.set(this.block.subarray(0, STATE_BYTES))
      this.block.fill(0, 0, STATE_BYTES)
      this.used = 0
    }
    return this.keys[this.used++]!
  }

  erase(): void {
    this.state.fill(0)
    this.block.fill(0)
  }
}

/** The verifier's side of one chain: the MAC each successive line must carry. */
export interface ChainKeys {
  /** mac_i of the next line, from its body and mac_{i-1} (null for the first line). */
  nextMac(body: Uint8Array, previousMac: Buffer | null): Buffer
}

/** The keys of a chain of `version` (one of VERIFIED_FORMATS) from its seed and id. */
export function chainKeys(version: number, seed: Buffer, chainId: string): ChainKeys {
  if (version === 2) {
    let key = keyedBlake2b(seed, Buffer.concat([CHAIN_LABEL_V2, Buffer.from(chainId)]))
    return {
      nextMac(body, previousMac) {
        const mac = keyedBlake2b(key, Buffer.concat([body, previousMac ?? Buffer.alloc(BLAKE2B_BYTES)]))
        key = keyedBlake2b(key, KEY_LABEL_V2)
        return mac
      },
    }
  }
  const keys = new LineKeyStream(firstState(seed, chainId))
  return {
    nextMac(body, previousMac) {
      const mac = Buffer.alloc(MAC_BYTES)
      sodium.crypto_onetimeauth(mac, Buffer.concat([body, previousMac ?? Buffer.alloc(MAC_BYTES)]), keys.take())
      return mac
    },
  }
}

/** The body a line's MAC covers and the MAC (hex), or null when the line does not end in one. */
export function splitMac(line: string): { body: string; mac: string } | null {
  const match = MAC_SUFFIX.exec(line)
  if (match === null) return null
  return { body: `${line.slice(0, match.index)}}`, mac: match[1]! }
}

/** The writer's side: the current chain (format 3), sealing one line at a time in place. */
export class ChainSealer {
  private seed: Buffer
  private epoch = 0
  private keys: LineKeyStream | null = null
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
    const first = firstState(this.seed, this.chainId)
    this.keys?.erase()
    this.keys = new LineKeyStream(first)
    first.fill(0)
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
    const keys = this.keys
    if (keys === null) throw new Error('ChainSealer.sealInPlace before begin()')
    // set() and a plain Uint8Array's subarray: cheaper than Buffer's copy() and subarray() per line.
    buffer.set(this.previousMac, end)
    const key = keys.take()
    sodium.crypto_onetimeauth(this.previousMac, buffer.subarray(start, end + MAC_BYTES), key)
    key.fill(0)
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
    this.keys?.erase()
    this.seed.fill(0)
  }
}
