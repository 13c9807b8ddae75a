/**
 * The small crypto interfaces HPKE and TLS are written against. Two
 * implementations: node:crypto (the hot path: X25519 ≈ 40× and AES-GCM ≈ 50×
 * faster than pure JS here, see docs/benchmarks.md) and @noble (an
 * independent oracle for differential tests, and a fallback for runtimes whose
 * OpenSSL lacks X25519).
 */

export type HashName = 'sha256' | 'sha384' | 'sha512';

export const HASH_SIZE: Record<HashName, number> = { sha256: 32, sha384: 48, sha512: 64 };

/** An X25519 private key held in whatever form the provider computes with fastest. */
export interface X25519Private {
  readonly publicKey: Uint8Array;
}

export interface CryptoProvider {
  readonly name: string;
  /** HMAC over the concatenation of `data` (passed in parts so callers need not concatenate). */
  hmac(hash: HashName, key: Uint8Array, ...data: Uint8Array[]): Uint8Array;
  hash(hash: HashName, data: Uint8Array): Uint8Array;
  /** Import 32 raw bytes as an X25519 private key (RFC 7748 §5 clamping applies in DH). */
  x25519Private(sk: Uint8Array): X25519Private;
  /** A fresh random X25519 key. */
  x25519Generate(): X25519Private;
  /** DH(sk, pk); throws ERR_CRYPTO_ARG for an all-zero result (RFC 7748 §6.1, RFC 9180 §7.1.4). */
  x25519(sk: X25519Private, pk: Uint8Array): Uint8Array;
  randomBytes(n: number): Uint8Array;
}

export type AeadName = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';

export interface Aead {
  readonly name: AeadName;
  readonly keyLen: number;
  readonly nonceLen: number;
  readonly tagLen: number;
  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array;
  /** Throws ERR_AEAD_OPEN when authentication fails. */
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array;
}
