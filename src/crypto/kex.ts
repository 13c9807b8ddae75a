/**
 * Key-exchange primitives besides X25519 (which lives in the provider):
 * ECDH on P-256 (node:crypto, OpenSSL) and ML-KEM-768 (FIPS 203).
 *
 * These know nothing about TLS code points or share layouts; tls13/groups.ts
 * turns them into TLS named groups. Every bad peer input ends in an
 * EchgateError ERR_CRYPTO_ARG, which the TLS layer maps to illegal_parameter.
 *
 * ML-KEM: Node 20's node:crypto has none (crypto.encapsulate arrived in Node
 * 24.7), so this is @noble/post-quantum, pure JS. See docs/benchmarks.md for
 * what that costs per handshake.
 */
import { createECDH, type ECDH, randomBytes } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem';
import { EchgateError } from '../errors.js';

const arg = (msg: string, cause?: unknown) => new EchgateError('ERR_CRYPTO_ARG', msg, cause === undefined ? undefined : { cause });

// ---- P-256 (secp256r1) ----

/** Uncompressed SEC 1 point: 0x04 || X || Y (RFC 8446 §4.2.8.2). */
export const P256_POINT_LEN = 65;

export class P256Private {
  readonly publicKey: Uint8Array;
  /** @internal */
  readonly ecdh: ECDH;
  constructor() {
    // createECDH keeps the key inside OpenSSL; no KeyObject export, so none of
    // the generateKeyPairSync/export trap (docs/benchmarks.md).
    this.ecdh = createECDH('prime256v1');
    this.publicKey = new Uint8Array(this.ecdh.generateKeys());
  }
}

export function p256Generate(): P256Private {
  return new P256Private();
}

/**
 * ECDH(sk, peer) → the 32-byte x-coordinate (RFC 8446 §7.4.2). The peer point
 * must be uncompressed (§4.2.8.2: other formats are not allowed in TLS 1.3)
 * and on the curve (OpenSSL checks that while decoding it; the identity
 * cannot be encoded in 65 bytes).
 */
export function p256(sk: P256Private, peer: Uint8Array): Uint8Array {
  if (peer.length !== P256_POINT_LEN || peer[0] !== 0x04) throw arg(`P-256 share must be a ${P256_POINT_LEN}-byte uncompressed point`);
  try {
    return new Uint8Array(sk.ecdh.computeSecret(Buffer.from(peer.buffer, peer.byteOffset, peer.byteLength)));
  } catch (e) {
    throw arg('P-256 share is not a point on the curve', e);
  }
}

// ---- ML-KEM-768 (FIPS 203) ----

export const MLKEM768 = { k: 3, encapsulationKeyLen: 1184, decapsulationKeyLen: 2400, ciphertextLen: 1088, sharedSecretLen: 32 } as const;

export interface MlKemKeyPair {
  /** Encapsulation key ek (1184 bytes), what the client sends. */
  readonly publicKey: Uint8Array;
  /** Decapsulation key dk (2400 bytes). */
  readonly secretKey: Uint8Array;
}

export function mlkem768Generate(): MlKemKeyPair {
  const { publicKey, secretKey } = ml_kem768.keygen(new Uint8Array(randomBytes(64)));
  return { publicKey, secretKey };
}

/**
 * FIPS 203 §7.2 input checking of an encapsulation key: the type check (its
 * length is 384k + 32) and the modulus check (ByteEncode12(ByteDecode12(ek))
 * = ek over the first 384k bytes, i.e. every packed 12-bit coefficient is
 * below q = 3329). Done here rather than trusting the library's own, so the
 * refusal does not depend on which ML-KEM implementation runs.
 */
export function mlkem768CheckEncapsulationKey(ek: Uint8Array): void {
  if (ek.length !== MLKEM768.encapsulationKeyLen) throw arg(`ML-KEM-768 encapsulation key must be ${MLKEM768.encapsulationKeyLen} bytes, got ${ek.length}`);
  const end = 384 * MLKEM768.k;
  for (let i = 0; i < end; i += 3) {
    const b0 = ek[i]!;
    const b1 = ek[i + 1]!;
    const b2 = ek[i + 2]!;
    if ((b0 | ((b1 & 0x0f) << 8)) >= 3329 || ((b1 >> 4) | (b2 << 4)) >= 3329) throw arg('ML-KEM-768 encapsulation key fails the modulus check (FIPS 203 §7.2)');
  }
}

export function mlkem768Encapsulate(ek: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array } {
  mlkem768CheckEncapsulationKey(ek);
  let r: { cipherText: Uint8Array; sharedSecret: Uint8Array };
  try {
    r = ml_kem768.encapsulate(ek, new Uint8Array(randomBytes(32)));
  } catch (e) {
    throw arg('ML-KEM-768 encapsulation failed', e);
  }
  return { ciphertext: r.cipherText, sharedSecret: r.sharedSecret };
}

/**
 * FIPS 203 §7.3 input checking is the ciphertext length (the decapsulation
 * key is ours). A wrong but well-sized ciphertext does not fail: ML-KEM
 * rejects implicitly with a pseudorandom secret, and the handshake then fails
 * at Finished.
 */
export function mlkem768Decapsulate(dk: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  if (ciphertext.length !== MLKEM768.ciphertextLen) throw arg(`ML-KEM-768 ciphertext must be ${MLKEM768.ciphertextLen} bytes, got ${ciphertext.length}`);
  if (dk.length !== MLKEM768.decapsulationKeyLen) throw arg('ML-KEM-768 decapsulation key must be 2400 bytes');
  return ml_kem768.decapsulate(ciphertext, dk);
}
