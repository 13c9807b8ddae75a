/**
 * @noble implementation of the provider (pure JS). Used as the independent
 * oracle in differential tests and as the fallback where node:crypto lacks
 * X25519. Not on the hot path: ≈ 40× slower for X25519 on this machine.
 */
import { randomBytes as nodeRandom } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha384, sha512 } from '@noble/hashes/sha2.js';
import { EchgateError } from '../errors.js';
import type { CryptoProvider, HashName, X25519Private } from './provider.js';

const HASHES = { sha256, sha384, sha512 } as const;

class NobleX25519Private implements X25519Private {
  readonly sk: Uint8Array;
  readonly publicKey: Uint8Array;
  constructor(sk: Uint8Array) {
    if (sk.length !== 32) throw new EchgateError('ERR_CRYPTO_ARG', 'X25519 private key must be 32 bytes');
    this.sk = Uint8Array.from(sk);
    this.publicKey = x25519.getPublicKey(this.sk);
  }
}

export const nobleProvider: CryptoProvider = {
  name: 'noble',
  hmac: (h: HashName, key: Uint8Array, ...data: Uint8Array[]) => {
    const m = hmac.create(HASHES[h], key);
    for (const d of data) m.update(d);
    return m.digest();
  },
  hash: (h: HashName, data: Uint8Array) => HASHES[h](data),
  x25519Private: (sk: Uint8Array) => new NobleX25519Private(sk),
  x25519Generate: () => new NobleX25519Private(new Uint8Array(nodeRandom(32))),
  x25519(sk: X25519Private, pk: Uint8Array): Uint8Array {
    if (!(sk instanceof NobleX25519Private)) throw new EchgateError('ERR_CRYPTO_ARG', 'key from another provider');
    if (pk.length !== 32) throw new EchgateError('ERR_CRYPTO_ARG', 'X25519 public key must be 32 bytes');
    let out: Uint8Array;
    try {
      out = x25519.getSharedSecret(sk.sk, pk);
    } catch (e) {
      throw new EchgateError('ERR_CRYPTO_ARG', 'X25519 produced no usable shared secret', { cause: e });
    }
    if (out.every((b) => b === 0)) throw new EchgateError('ERR_CRYPTO_ARG', 'X25519 produced no usable shared secret');
    return out;
  },
  randomBytes: (n: number) => new Uint8Array(nodeRandom(n)),
};
