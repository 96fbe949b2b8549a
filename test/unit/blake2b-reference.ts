/**
 * BLAKE2b written from RFC 7693 (section 3, keyed mode and any output length),
 * slow and plain (BigInt words): an independent route to the audit chain's MACs,
 * which pgveil computes with libsodium. Its unkeyed 64-byte form is checked
 * against node:crypto's blake2b512 in the tests that use it.
 */
const MASK = (1n << 64n) - 1n

const IV = [
  0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
  0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n,
]

const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
]

function rotr(x: bigint, n: bigint): bigint {
  return ((x >> n) | (x << (64n - n))) & MASK
}

function compress(h: bigint[], block: Uint8Array, t: bigint, last: boolean): void {
  const m: bigint[] = []
  for (let i = 0; i < 16; i++) {
    let word = 0n
    for (let b = 7; b >= 0; b--) word = (word << 8n) | BigInt(block[i * 8 + b]!)
    m.push(word)
  }
  const v = [...h, ...IV]
  v[12] = v[12]! ^ (t & MASK)
  v[13] = v[13]! ^ (t >> 64n)
  if (last) v[14] = v[14]! ^ MASK
  const g = (a: number, b: number, c: number, d: number, x: bigint, y: bigint): void => {
    v[a] = (v[a]! + v[b]! + x) & MASK
    v[d] = rotr(v[d]! ^ v[a]!, 32n)
    v[c] = (v[c]! + v[d]!) & MASK
    v[b] = rotr(v[b]! ^ v[c]!, 24n)
    v[a] = (v[a]! + v[b]! + y) & MASK
    v[d] = rotr(v[d]! ^ v[a]!, 16n)
    v[c] = (v[c]! + v[d]!) & MASK
    v[b] = rotr(v[b]! ^ v[c]!, 63n)
  }
  for (let round = 0; round < 12; round++) {
    const s = SIGMA[round % 10]!
    g(0, 4, 8, 12, m[s[0]!]!, m[s[1]!]!)
    g(1, 5, 9, 13, m[s[2]!]!, m[s[3]!]!)
    g(2, 6, 10, 14, m[s[4]!]!, m[s[5]!]!)
    g(3, 7, 11, 15, m[s[6]!]!, m[s[7]!]!)
    g(0, 5, 10, 15, m[s[8]!]!, m[s[9]!]!)
    g(1, 6, 11, 12, m[s[10]!]!, m[s[11]!]!)
    g(2, 7, 8, 13, m[s[12]!]!, m[s[13]!]!)
    g(3, 4, 9, 14, m[s[14]!]!, m[s[15]!]!)
  }
  for (let i = 0; i < 8; i++) h[i] = h[i]! ^ v[i]! ^ v[i + 8]!
}

/** BLAKE2b-(8·outLength) of `message`, keyed when `key` is non-empty. */
export function blake2bReference(message: Uint8Array, key: Uint8Array = new Uint8Array(0), outLength = 64): Buffer {
  if (outLength < 1 || outLength > 64 || key.length > 64) throw new RangeError('BLAKE2b: output 1..64 bytes, key up to 64 bytes')
  const h = [...IV]
  h[0] = h[0]! ^ 0x01010000n ^ (BigInt(key.length) << 8n) ^ BigInt(outLength)
  // Keyed mode: the key, zero-padded to a block, is the first block of the input.
  const input = new Uint8Array((key.length > 0 ? 128 : 0) + message.length)
  input.set(key, 0)
  input.set(message, key.length > 0 ? 128 : 0)
  const blocks = Math.max(1, Math.ceil(input.length / 128))
  for (let i = 0; i < blocks; i++) {
    const block = new Uint8Array(128)
    block.set(input.subarray(i * 128, (i + 1) * 128))
    const last = i === blocks - 1
    compress(h, block, BigInt(last ? input.length : (i + 1) * 128), last)
  }
  const out = Buffer.alloc(64)
  for (let i = 0; i < 8; i++) out.writeBigUInt64LE(h[i]!, i * 8)
  return out.subarray(0, outLength)
}
