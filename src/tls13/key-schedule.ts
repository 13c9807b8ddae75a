/**
 * TLS 1.3 key schedule (RFC 8446 §7.1) and traffic keys (§7.3), over the
 * crypto provider's HMAC. Checked against RFC 8448 §3 in test/tls13.test.ts.
 */
import { Writer } from '../bytes/writer.js';
import { concat, utf8 } from '../bytes/util.js';
import { hkdfExpand, hkdfExtract } from '../crypto/hkdf.js';
import { type AeadName, type CryptoProvider, HASH_SIZE, type HashName } from '../crypto/provider.js';
import { EchgateError } from '../errors.js';

export interface CipherSuite {
  id: number;
  hash: HashName;
  aead: AeadName;
  keyLen: number;
}

/** RFC 8446 §B.4, in our order of preference. */
export const CIPHER_SUITES: readonly CipherSuite[] = [
  { id: 0x1301, hash: 'sha256', aead: 'aes-128-gcm', keyLen: 16 },
  { id: 0x1303, hash: 'sha256', aead: 'chacha20-poly1305', keyLen: 32 },
  { id: 0x1302, hash: 'sha384', aead: 'aes-256-gcm', keyLen: 32 },
];

export function suiteById(id: number): CipherSuite | undefined {
  return CIPHER_SUITES.find((s) => s.id === id);
}

const LABEL_PREFIX = utf8('tls13 ');

/** HKDF-Expand-Label (§7.1). */
export function expandLabel(p: CryptoProvider, hash: HashName, secret: Uint8Array, label: string, context: Uint8Array, length: number): Uint8Array {
  const full = concat(LABEL_PREFIX, utf8(label));
  if (full.length > 255 || context.length > 255) throw new EchgateError('ERR_ENCODE', 'HKDF label or context too long');
  const info = new Writer(4 + full.length + context.length).u16(length).vec8(full).vec8(context).finish();
  return hkdfExpand(p, hash, secret, info, length);
}

export function deriveSecret(p: CryptoProvider, hash: HashName, secret: Uint8Array, label: string, transcriptHash: Uint8Array): Uint8Array {
  return expandLabel(p, hash, secret, label, transcriptHash, HASH_SIZE[hash]);
}

export interface TrafficKeys {
  key: Uint8Array;
  iv: Uint8Array;
}

export function trafficKeys(p: CryptoProvider, suite: CipherSuite, secret: Uint8Array): TrafficKeys {
  const empty = new Uint8Array(0);
  return { key: expandLabel(p, suite.hash, secret, 'key', empty, suite.keyLen), iv: expandLabel(p, suite.hash, secret, 'iv', empty, 12) };
}

/** Finished verify_data (§4.4.4). */
export function finishedVerifyData(p: CryptoProvider, hash: HashName, baseKey: Uint8Array, transcriptHash: Uint8Array): Uint8Array {
  const fk = expandLabel(p, hash, baseKey, 'finished', new Uint8Array(0), HASH_SIZE[hash]);
  return p.hmac(hash, fk, transcriptHash);
}

/** The secrets of one full (EC)DHE handshake without PSK. */
export class KeySchedule {
  readonly zeros: Uint8Array;
  private handshakeSecret: Uint8Array | undefined;
  private masterSecret: Uint8Array | undefined;

  constructor(
    private readonly p: CryptoProvider,
    readonly hash: HashName,
  ) {
    this.zeros = new Uint8Array(HASH_SIZE[hash]);
  }

  private emptyHash(): Uint8Array {
    return this.p.hash(this.hash, new Uint8Array(0));
  }

  /** Early secret with no PSK, then the handshake secret from the (EC)DHE shared secret. */
  handshake(ecdhe: Uint8Array, chShHash: Uint8Array): { client: Uint8Array; server: Uint8Array } {
    const early = hkdfExtract(this.p, this.hash, this.zeros, this.zeros);
    const derived = deriveSecret(this.p, this.hash, early, 'derived', this.emptyHash());
    this.handshakeSecret = hkdfExtract(this.p, this.hash, derived, ecdhe);
    return {
      client: deriveSecret(this.p, this.hash, this.handshakeSecret, 'c hs traffic', chShHash),
      server: deriveSecret(this.p, this.hash, this.handshakeSecret, 's hs traffic', chShHash),
    };
  }

  /** Application traffic secrets from the transcript through the server Finished. */
  application(throughServerFinished: Uint8Array): { client: Uint8Array; server: Uint8Array; exporter: Uint8Array } {
    if (!this.handshakeSecret) throw new EchgateError('ERR_ILLEGAL', 'key schedule: handshake secret first');
    const derived = deriveSecret(this.p, this.hash, this.handshakeSecret, 'derived', this.emptyHash());
    this.masterSecret = hkdfExtract(this.p, this.hash, derived, this.zeros);
    return {
      client: deriveSecret(this.p, this.hash, this.masterSecret, 'c ap traffic', throughServerFinished),
      server: deriveSecret(this.p, this.hash, this.masterSecret, 's ap traffic', throughServerFinished),
      exporter: deriveSecret(this.p, this.hash, this.masterSecret, 'exp master', throughServerFinished),
    };
  }

  /** The next application traffic secret after a KeyUpdate (§7.2). */
  nextTrafficSecret(secret: Uint8Array): Uint8Array {
    return expandLabel(this.p, this.hash, secret, 'traffic upd', new Uint8Array(0), HASH_SIZE[this.hash]);
  }
}
