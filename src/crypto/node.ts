/** node:crypto implementation of the provider interfaces (the hot path). */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hash as oneShotHash,
  type KeyObject,
  randomFillSync,
} from 'node:crypto';
import { EchgateError } from '../errors.js';
import type { Aead, AeadName, CryptoProvider, HashName, X25519Private } from './provider.js';
import { hmacSha256, JS_HMAC_MAX } from './sha256.js';

/**
 * Random bytes from a 4 KiB pool refilled from OpenSSL's CSPRNG: one
 * randomBytes(32) call costs ≈ 6 µs here (a handshake makes two or three),
 * one copy from the pool ≈ 0.3 µs (see docs/benchmarks.md). Node's own
 * randomUUID pools the same way. Each byte is handed out once and zeroed.
 */
const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let poolAt = POOL_SIZE;

function randomBytes(n: number): Uint8Array {
  if (n > POOL_SIZE / 4) return randomFillSync(new Uint8Array(n));
  if (poolAt + n > POOL_SIZE) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const out = new Uint8Array(n);
  out.set(pool.subarray(poolAt, poolAt + n));
  pool.fill(0, poolAt, poolAt + n);
  poolAt += n;
  return out;
}

const b64u = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
const ZERO32 = b64u(new Uint8Array(32));

class NodeX25519Private implements X25519Private {
  readonly key: KeyObject;
  readonly publicKey: Uint8Array;
  /** `d`: the private key, base64url (RFC 8037 §2). */
  constructor(d: string) {
    // Imported through JWK, never made by generateKeyPairSync: exporting
    // public keys of generated keys can deadlock Node 20 (see docs/benchmarks.md).
    // `x` is required by the JWK importer but ignored for private keys.
    this.key = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x: ZERO32 }, format: 'jwk' });
    // The private key's own JWK carries the public `x` OpenSSL derived at import (RFC 8037 §2): no
    // public KeyObject made just to export it (createPublicKey + export: ≈ 2.5 µs per handshake here).
    const jwk = this.key.export({ format: 'jwk' });
    this.publicKey = new Uint8Array(Buffer.from(jwk.x!, 'base64url'));
  }
}

function publicKeyObject(pk: Uint8Array): KeyObject {
  if (pk.length !== 32) throw new EchgateError('ERR_CRYPTO_ARG', `X25519 public key must be 32 bytes, got ${pk.length}`);
  // JWK import is ~3× cheaper than wrapping the raw key in SPKI DER (OpenSSL's DER decoder).
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64u(pk) }, format: 'jwk' });
}

export const nodeProvider: CryptoProvider = {
  name: 'node',
  hmac(hash: HashName, key: Uint8Array, ...data: Uint8Array[]): Uint8Array {
    // Short HMAC-SHA-256 (every HKDF call of HPKE and of TLS 1.3's SHA-256
    // suites) in JS: no native Hmac object per call (see sha256.ts).
    if (hash === 'sha256' && key.length <= 64) {
      let n = 0;
      for (const d of data) n += d.length;
      if (n <= JS_HMAC_MAX) return hmacSha256(key, data);
    }
    const h = createHmac(hash, key);
    for (const d of data) h.update(d);
    const out = h.digest();
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  },
  hash(hash: HashName, data: Uint8Array): Uint8Array {
    // One-shot hash (Node ≥ 20.12): no Hash object, ≈ 1 µs instead of ≈ 2.5 µs for short inputs.
    const out = oneShotHash(hash, data, 'buffer');
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  },
  x25519Private(sk: Uint8Array): X25519Private {
    if (sk.length !== 32) throw new EchgateError('ERR_CRYPTO_ARG', 'X25519 private key must be 32 bytes');
    return new NodeX25519Private(b64u(sk));
  },
  x25519Generate(): X25519Private {
    // The private key is encoded straight from the random pool (then zeroed there): no array of its
    // own, which b64u's view would first move out of V8's heap (docs/benchmarks.md, "Termination
    // handshake, eighth pass"). One per terminated handshake.
    if (poolAt + 32 > POOL_SIZE) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const d = pool.toString('base64url', poolAt, poolAt + 32);
    pool.fill(0, poolAt, poolAt + 32);
    poolAt += 32;
    return new NodeX25519Private(d);
  },
  x25519(sk: X25519Private, pk: Uint8Array): Uint8Array {
    if (!(sk instanceof NodeX25519Private)) throw new EchgateError('ERR_CRYPTO_ARG', 'key from another provider');
    try {
      // A view of node's Buffer (its own ArrayBuffer, never the shared pool), not a copy.
      const z = diffieHellman({ privateKey: sk.key, publicKey: publicKeyObject(pk) });
      return new Uint8Array(z.buffer, z.byteOffset, z.byteLength);
    } catch (e) {
      if (e instanceof EchgateError) throw e;
      // OpenSSL refuses an all-zero shared secret (small-order peer key).
      throw new EchgateError('ERR_CRYPTO_ARG', 'X25519 produced no usable shared secret', { cause: e });
    }
  },
  randomBytes,
};

class NodeAead implements Aead {
  readonly nonceLen = 12;
  readonly tagLen = 16;
  constructor(
    readonly name: AeadName,
    readonly keyLen: number,
  ) {}

  private check(key: Uint8Array, nonce: Uint8Array): void {
    if (key.length !== this.keyLen) throw new EchgateError('ERR_CRYPTO_ARG', `${this.name}: key must be ${this.keyLen} bytes`);
    if (nonce.length !== this.nonceLen) throw new EchgateError('ERR_CRYPTO_ARG', `${this.name}: nonce must be 12 bytes`);
  }

  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
    this.check(key, nonce);
    const c = createCipheriv(this.name as 'aes-128-gcm', key, nonce, { authTagLength: 16 });
    c.setAAD(aad);
    const head = c.update(pt);
    const tail = c.final();
    const tag = c.getAuthTag();
    const out = new Uint8Array(head.length + tail.length + 16);
    out.set(head, 0);
    out.set(tail, head.length);
    out.set(tag, head.length + tail.length);
    return out;
  }

  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array {
    this.check(key, nonce);
    if (ct.length < 16) throw new EchgateError('ERR_AEAD_OPEN', `${this.name}: ciphertext shorter than the tag`);
    const d = createDecipheriv(this.name as 'aes-128-gcm', key, nonce, { authTagLength: 16 });
    d.setAAD(aad);
    d.setAuthTag(ct.subarray(ct.length - 16));
    const head = d.update(ct.subarray(0, ct.length - 16));
    try {
      const tail = d.final();
      if (tail.length === 0) return new Uint8Array(head.buffer, head.byteOffset, head.byteLength);
      return new Uint8Array(Buffer.concat([head, tail]));
    } catch (e) {
      throw new EchgateError('ERR_AEAD_OPEN', `${this.name}: authentication failed`, { cause: e });
    }
  }
}

export const AEADS: Record<AeadName, Aead> = {
  'aes-128-gcm': new NodeAead('aes-128-gcm', 16),
  'aes-256-gcm': new NodeAead('aes-256-gcm', 32),
  'chacha20-poly1305': new NodeAead('chacha20-poly1305', 32),
};

