/**
 * Writes test/vectors/xchacha20poly1305.json and test/vectors/envelope.json.
 *
 * Everything here is computed with @noble/ciphers (and node:crypto's HKDF for the
 * column keys), never with pgveil's own cipher or envelope code, so the vectors
 * are an independent statement of what that code must produce. Inputs are fixed
 * byte patterns: running it again gives the same files. Run from the repository
 * root:
 *
 *   node --input-type=module -e "await (await import('vite')).runnerImport('./test/vectors/generate.ts')"
 */
import { createHash, hkdfSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { hchacha, xchacha20poly1305 } from '@noble/ciphers/chacha.js'

const here = new URL('.', import.meta.url)

function pattern(length: number, multiplier: number, offset: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * multiplier + offset) & 0xff)
}
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const fromHex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'))
const utf8 = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'utf8'))

// ---------------------------------------------------------------------------
// HChaCha20 (draft-irtf-cfrg-xchacha-03 §2.2.1)

function hchachaBytes(key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  const words = (bytes: Uint8Array): Uint32Array => new Uint32Array(Uint8Array.from(bytes).buffer)
  const out = new Uint32Array(8)
  hchacha(words(utf8('expand 32-byte k')), words(key), words(nonce16), out)
  return new Uint8Array(out.buffer)
}

const hchachaVector = {
  source: 'draft-irtf-cfrg-xchacha-03 section 2.2.1 (published); checked against @noble/ciphers hchacha when generated',
  key: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
  nonce: '000000090000004a0000000031415927',
  subkey: '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc',
}
if (hex(hchachaBytes(fromHex(hchachaVector.key), fromHex(hchachaVector.nonce))) !== hchachaVector.subkey) {
  throw new Error('@noble/ciphers hchacha disagrees with the published HChaCha20 vector')
}

// ---------------------------------------------------------------------------
// XChaCha20-Poly1305 AEAD

export interface AeadVector {
  name: string
  source: string
  key: string
  nonce: string
  aad: string
  /** Hex plaintext; absent when `plaintextPattern` describes it. */
  plaintext?: string
  /** Plaintext byte i = (i * multiplier + offset) & 0xff, for long inputs. */
  plaintextPattern?: { length: number; multiplier: number; offset: number }
  /** Hex ciphertext (without tag); absent when `ciphertextSha256` stands for it. */
  ciphertext?: string
  ciphertextSha256?: string
  tag: string
}

const published = {
  key: '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f',
  nonce: '404142434445464748494a4b4c4d4e4f5051525354555657',
  aad: '50515253c0c1c2c3c4c5c6c7',
  plaintext: hex(utf8("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.")),
  ciphertext:
    'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb' +
    '731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452' +
    '2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9' +
    '21f9664c97637da9768812f615c68b13b52e',
  tag: 'c0875924c1c7987947deafd8780acf49',
}

function seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): { ciphertext: Uint8Array; tag: Uint8Array } {
  const sealed = xchacha20poly1305(key, nonce, aad).encrypt(plaintext)
  return { ciphertext: sealed.subarray(0, sealed.length - 16), tag: sealed.subarray(sealed.length - 16) }
}

const check = seal(fromHex(published.key), fromHex(published.nonce), fromHex(published.plaintext), fromHex(published.aad))
if (hex(check.ciphertext) !== published.ciphertext || hex(check.tag) !== published.tag) {
  throw new Error('@noble/ciphers xchacha20poly1305 disagrees with the published draft-irtf-cfrg-xchacha A.3.1 vector')
}

const aeadVectors: AeadVector[] = [
  {
    name: 'draft-irtf-cfrg-xchacha A.3.1',
    source: 'draft-irtf-cfrg-xchacha-03 appendix A.3.1 (published ciphertext and tag); reproduced by @noble/ciphers xchacha20poly1305 when generated',
    ...published,
  },
]

const generated: { name: string; key: Uint8Array; nonce: Uint8Array; aad: Uint8Array; plaintext: Uint8Array; long?: true }[] = [
  { name: 'empty plaintext, empty aad', key: pattern(32, 7, 1), nonce: pattern(24, 5, 2), aad: new Uint8Array(0), plaintext: new Uint8Array(0) },
  { name: 'empty plaintext, non-empty aad', key: pattern(32, 11, 3), nonce: pattern(24, 13, 4), aad: utf8('public.users.email'), plaintext: new Uint8Array(0) },
  { name: '1-byte plaintext, empty aad', key: pattern(32, 17, 5), nonce: pattern(24, 19, 6), aad: new Uint8Array(0), plaintext: Uint8Array.of(0x2a) },
  { name: '1-byte plaintext, non-empty aad', key: pattern(32, 23, 7), nonce: pattern(24, 29, 8), aad: pattern(13, 3, 9), plaintext: Uint8Array.of(0x00) },
  { name: '64-byte plaintext (one ChaCha block), non-empty aad', key: pattern(32, 31, 10), nonce: pattern(24, 37, 11), aad: pattern(16, 41, 12), plaintext: pattern(64, 43, 13) },
  { name: '65-byte plaintext (block boundary + 1), non-empty aad', key: pattern(32, 47, 14), nonce: pattern(24, 53, 15), aad: pattern(17, 59, 16), plaintext: pattern(65, 61, 17) },
  { name: '64 KiB plaintext of a pattern, non-empty aad', key: pattern(32, 67, 18), nonce: pattern(24, 71, 19), aad: pattern(100, 73, 20), plaintext: pattern(65536, 79, 21), long: true },
]

for (const v of generated) {
  const { ciphertext, tag } = seal(v.key, v.nonce, v.plaintext, v.aad)
  const base = { name: v.name, source: 'generated with @noble/ciphers xchacha20poly1305 by test/vectors/generate.ts', key: hex(v.key), nonce: hex(v.nonce), aad: hex(v.aad), tag: hex(tag) }
  aeadVectors.push(
    v.long === true
      ? { ...base, plaintextPattern: { length: 65536, multiplier: 79, offset: 21 }, ciphertextSha256: createHash('sha256').update(ciphertext).digest('hex') }
      : { ...base, plaintext: hex(v.plaintext), ciphertext: hex(ciphertext) },
  )
}

writeFileSync(
  new URL('xchacha20poly1305.json', here),
  `${JSON.stringify({ description: 'XChaCha20-Poly1305 vectors: hex; ciphertext excludes the 16-byte tag', hchacha20: [hchachaVector], aead: aeadVectors }, null, 2)}\n`,
)

// ---------------------------------------------------------------------------
// Envelopes (format version 1, see policy/envelope.ts), built here byte by byte

interface EnvelopeInput {
  name: string
  rootKey: Uint8Array
  keyVersion: number
  column: string
  nonce: Uint8Array
  plaintext: string
  index?: { version: number; mac: Uint8Array }
}

function uint32BE(value: number): Uint8Array {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, value, false)
  return out
}

function buildEnvelope(input: EnvelopeInput): Uint8Array {
  const header = Buffer.concat([
    Uint8Array.of(0x70, 0x76, 0x01, input.index === undefined ? 0x00 : 0x01),
    uint32BE(input.keyVersion),
    ...(input.index === undefined ? [] : [uint32BE(input.index.version), input.index.mac]),
  ])
  const columnKey = new Uint8Array(hkdfSync('sha256', input.rootKey, utf8('pgveil/column-key/v1'), utf8(input.column), 32))
  const aad = Buffer.concat([header, utf8(input.column)])
  const sealed = xchacha20poly1305(columnKey, input.nonce, aad).encrypt(utf8(input.plaintext))
  return Buffer.concat([header, input.nonce, sealed])
}

const envelopeInputs: EnvelopeInput[] = [
  { name: 'text value, key version 1, no index slot', rootKey: pattern(32, 3, 0x11), keyVersion: 1, column: 'public.users.email', nonce: pattern(24, 9, 0x21), plaintext: 'alice@example.com' },
  { name: 'empty value, key version 2', rootKey: pattern(32, 5, 0x12), keyVersion: 2, column: 'public.users.ssn', nonce: pattern(24, 15, 0x22), plaintext: '' },
  {
    name: 'non-ASCII value and column, key version 7, with index slot',
    rootKey: pattern(32, 7, 0x13),
    keyVersion: 7,
    column: 'billing.kunden.straße',
    nonce: pattern(24, 21, 0x23),
    plaintext: 'Zoë Çelik 😀',
    index: { version: 3, mac: pattern(32, 27, 0x33) },
  },
  { name: 'numeric text, key version 0xfffffffe (big-endian check)', rootKey: pattern(32, 13, 0x14), keyVersion: 0xfffffffe, column: 'public.payroll.salary', nonce: pattern(24, 33, 0x24), plaintext: '123456.78' },
]

const envelopeVectors = envelopeInputs.map((input) => ({
  name: input.name,
  rootKeyBase64: Buffer.from(input.rootKey).toString('base64'),
  keyVersion: input.keyVersion,
  column: input.column,
  nonce: hex(input.nonce),
  plaintext: input.plaintext,
  ...(input.index === undefined ? {} : { index: { version: input.index.version, mac: hex(input.index.mac) } }),
  envelope: hex(buildEnvelope(input)),
}))

writeFileSync(
  new URL('envelope.json', here),
  `${JSON.stringify(
    {
      description:
        'pgveil envelope format version 1 (policy/envelope.ts). Built by test/vectors/generate.ts with @noble/ciphers xchacha20poly1305 and node:crypto HKDF-SHA256, independently of policy/. plaintext is the UTF-8 text sealed; everything else hex unless named otherwise.',
      vectors: envelopeVectors,
    },
    null,
    2,
  )}\n`,
)
