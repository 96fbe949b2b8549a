/**
 * The part of sodium-native (libsodium bindings) pgveil uses. The package ships no
 * types of its own and @types/sodium-native describes an older major version.
 */
declare module 'sodium-native' {
  interface SodiumNative {
    /** Writes ciphertext || tag into `c` (exactly `m.byteLength + 16` bytes); returns its length. */
    crypto_aead_xchacha20poly1305_ietf_encrypt(c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array): number
    /** Writes the plaintext into `m` (exactly `c.byteLength - 16` bytes) only when the tag verifies; throws otherwise. */
    crypto_aead_xchacha20poly1305_ietf_decrypt(m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): number
    /**
     * BLAKE2b of `input` into `output` (16 to 64 bytes; the length is part of the
     * hash), keyed (RFC 7693 keyed mode) when `key` (16 to 64 bytes) is given. The
     * key is absorbed before the output is written, so `output` may be `key`.
     */
    crypto_generichash(output: Uint8Array, input: Uint8Array, key?: Uint8Array | null): void
    /** Size of a SHA-256 state: a plain struct, so a copy of its bytes is a copy of the state. */
    readonly crypto_hash_sha256_STATEBYTES: number
    /** Writes SHA-256(input) into `out` (32 bytes). */
    crypto_hash_sha256(out: Uint8Array, input: Uint8Array): void
    crypto_hash_sha256_init(state: Uint8Array): void
    crypto_hash_sha256_update(state: Uint8Array, input: Uint8Array): void
    /** Writes the digest into `out` (32 bytes). */
    crypto_hash_sha256_final(state: Uint8Array, out: Uint8Array): void
    readonly crypto_stream_chacha20_KEYBYTES: number
    readonly crypto_stream_chacha20_NONCEBYTES: number
    /** Fills `c` with the original ChaCha20 keystream (8-byte nonce, 64-bit block counter from 0) under `k`. */
    crypto_stream_chacha20(c: Uint8Array, n: Uint8Array, k: Uint8Array): void
    readonly crypto_onetimeauth_BYTES: number
    readonly crypto_onetimeauth_KEYBYTES: number
    /** Poly1305 of `input` under the one-time key `k` (32 bytes) into `out` (16 bytes). */
    crypto_onetimeauth(out: Uint8Array, input: Uint8Array, k: Uint8Array): void
  }
  const sodium: SodiumNative
  export default sodium
}
