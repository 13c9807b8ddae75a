/**
 * HPKE (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256/384/512, and
 * AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 or export-only. All four modes
 * (base, psk, auth, auth_psk). ECH uses base mode only (RFC 9849 §6.1).
 */
import { concat, copy, i2osp, utf8 } from '../bytes/util.js';
import { EchgateError } from '../errors.js';
import { hkdfExpand, hkdfExtract } from './hkdf.js';
import { AEADS, nodeProvider } from './node.js';
import { type Aead, type CryptoProvider, HASH_SIZE, type HashName, type X25519Private } from './provider.js';
import { hmacSha256Pair, JS_HMAC_MAX } from './sha256.js';

export const KEM_X25519_SHA256 = 0x0020;
export const KDF = { HKDF_SHA256: 0x0001, HKDF_SHA384: 0x0002, HKDF_SHA512: 0x0003 } as const;
export const AEAD = { AES_128_GCM: 0x0001, AES_256_GCM: 0x0002, CHACHA20_POLY1305: 0x0003, EXPORT_ONLY: 0xffff } as const;
export const MODE = { base: 0, psk: 1, auth: 2, auth_psk: 3 } as const;

const KDF_HASH: Record<number, HashName> = { 1: 'sha256', 2: 'sha384', 3: 'sha512' };
const AEAD_BY_ID: Record<number, Aead | null> = {
  1: AEADS['aes-128-gcm'],
  2: AEADS['aes-256-gcm'],
  3: AEADS['chacha20-poly1305'],
  65535: null, // export-only
};

export function isSupportedSuite(kemId: number, kdfId: number, aeadId: number): boolean {
  return kemId === KEM_X25519_SHA256 && kdfId in KDF_HASH && aeadId in AEAD_BY_ID;
}

const HPKE_V1 = utf8('HPKE-v1');
const KEM_SUITE = concat(utf8('KEM'), i2osp(KEM_X25519_SHA256, 2));

// "HPKE-v1" || suite_id || label, per (suite, label): built once, not per
// connection. suite_id arrays are themselves cached, so identity is the key.
const prefixes = new WeakMap<Uint8Array, Map<string, Uint8Array>>();
function labelPrefix(suite: Uint8Array, label: string): Uint8Array {
  let m = prefixes.get(suite);
  if (!m) {
    m = new Map();
    prefixes.set(suite, m);
  }
  let v = m.get(label);
  if (!v) {
    v = concat(HPKE_V1, suite, utf8(label));
    m.set(label, v);
  }
  return v;
}

function labeledExtract(p: CryptoProvider, hash: HashName, suite: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array) {
  return hkdfExtract(p, hash, salt, labelPrefix(suite, label), ikm);
}

/** I2OSP(L, 2) for the short lengths every setup asks for (Nk, Nn, Nsecret, Nh): shared, read-only. */
const LENGTHS: Uint8Array[] = [];
function length2(L: number): Uint8Array {
  if (L >= 256) return i2osp(L, 2);
  let v = LENGTHS[L];
  if (!v) {
    v = i2osp(L, 2);
    LENGTHS[L] = v;
  }
  return v;
}

function labeledExpand(p: CryptoProvider, hash: HashName, suite: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, L: number) {
  return hkdfExpand(p, hash, prk, [length2(L), labelPrefix(suite, label), info], L);
}

/** The empty psk, psk_id and salt: zero-length, so nothing can write to it. */
const EMPTY = new Uint8Array(0);

// ---- DHKEM(X25519, HKDF-SHA256), RFC 9180 §4.1 and §7.1.3 ----

/** DeriveKeyPair(ikm) → raw private key bytes (RFC 9180 §7.1.3, X25519 form). */
export function deriveX25519KeyPair(p: CryptoProvider, ikm: Uint8Array): X25519Private {
  const prk = labeledExtract(p, 'sha256', KEM_SUITE, new Uint8Array(0), 'dkp_prk', ikm);
  return p.x25519Private(labeledExpand(p, 'sha256', KEM_SUITE, prk, 'sk', new Uint8Array(0), 32));
}

function extractAndExpand(p: CryptoProvider, dh: Uint8Array, kemContext: Uint8Array): Uint8Array {
  const prk = labeledExtract(p, 'sha256', KEM_SUITE, EMPTY, 'eae_prk', dh);
  return labeledExpand(p, 'sha256', KEM_SUITE, prk, 'shared_secret', kemContext, 32);
}

function encap(p: CryptoProvider, pkR: Uint8Array, skE: X25519Private, skS?: X25519Private) {
  let dh = p.x25519(skE, pkR);
  const enc = skE.publicKey;
  let kemContext = concat(enc, pkR);
  if (skS) {
    dh = concat(dh, p.x25519(skS, pkR));
    kemContext = concat(kemContext, skS.publicKey);
  }
  return { sharedSecret: extractAndExpand(p, dh, kemContext), enc };
}

function decap(p: CryptoProvider, enc: Uint8Array, skR: X25519Private, pkS?: Uint8Array): Uint8Array {
  if (enc.length !== 32) throw new EchgateError('ERR_HPKE', `enc must be 32 bytes for X25519, got ${enc.length}`);
  let dh = p.x25519(skR, enc);
  let kemContext = concat(enc, skR.publicKey);
  if (pkS) {
    dh = concat(dh, p.x25519(skR, pkS));
    kemContext = concat(kemContext, pkS);
  }
  return extractAndExpand(p, dh, kemContext);
}

// ---- key schedule and context, RFC 9180 §5.1 and §5.2 ----

export interface Suite {
  kdfId: number;
  aeadId: number;
}

export interface SetupOptions {
  mode?: number;
  psk?: Uint8Array;
  pskId?: Uint8Array;
  /**
   * A precomputed LabeledExtract("", "info_hash", info) for this suite; ECH
   * computes it once per ECHConfig instead of once per connection.
   */
  infoHash?: Uint8Array;
  /** A precomputed LabeledExtract("", "psk_id_hash", psk_id); constant for base mode per suite. */
  pskIdHash?: Uint8Array;
  /** A precomputed key_schedule_context (mode || psk_id_hash || info_hash), used only with both hashes above. */
  context?: Uint8Array;
}

export class HpkeContext {
  private seq = 0;
  private exporterSecret: Uint8Array | undefined;
  constructor(
    private readonly p: CryptoProvider,
    private readonly hash: HashName,
    private readonly suiteId: Uint8Array,
    private readonly aead: Aead | null,
    readonly key: Uint8Array,
    readonly baseNonce: Uint8Array,
    /** The key schedule's secret and context, kept to derive the exporter secret on first use. */
    private readonly secret: Uint8Array,
    private readonly ksContext: Uint8Array,
  ) {}

  private nonce(): Uint8Array {
    // RFC 9180 §5.2: the sequence number must not wrap; 2^53 is our ceiling.
    if (this.seq >= Number.MAX_SAFE_INTEGER) throw new EchgateError('ERR_HPKE', 'HPKE sequence number overflow');
    // seq 0 (every ECH hello's only open) XORs nothing: the base nonce itself, read-only to the AEAD.
    if (this.seq === 0) return this.baseNonce;
    const n = copy(this.baseNonce);
    const s = i2osp(this.seq, n.length);
    for (let i = 0; i < n.length; i++) n[i] = n[i]! ^ s[i]!;
    return n;
  }

  seal(aad: Uint8Array, pt: Uint8Array): Uint8Array {
    if (!this.aead) throw new EchgateError('ERR_HPKE', 'export-only HPKE context cannot seal');
    const ct = this.aead.seal(this.key, this.nonce(), aad, pt);
    this.seq++;
    return ct;
  }

  open(aad: Uint8Array, ct: Uint8Array): Uint8Array {
    if (!this.aead) throw new EchgateError('ERR_HPKE', 'export-only HPKE context cannot open');
    const pt = this.aead.open(this.key, this.nonce(), aad, ct);
    this.seq++;
    return pt;
  }

  export(exporterContext: Uint8Array, L: number): Uint8Array {
    // Derived lazily: ECH never exports, and this saves an HMAC per connection.
    this.exporterSecret ??= labeledExpand(this.p, this.hash, this.suiteId, this.secret, 'exp', this.ksContext, HASH_SIZE[this.hash]);
    return labeledExpand(this.p, this.hash, this.suiteId, this.exporterSecret, 'sec', exporterContext, L);
  }
}

const suites = new Map<number, { hash: HashName; aead: Aead | null; suiteId: Uint8Array }>();
function suiteParams(s: Suite) {
  const k = s.kdfId * 0x10000 + s.aeadId;
  let v = suites.get(k);
  if (!v) {
    const hash = KDF_HASH[s.kdfId];
    const aead = AEAD_BY_ID[s.aeadId];
    if (!hash || aead === undefined) throw new EchgateError('ERR_HPKE', `unsupported HPKE suite kdf=${s.kdfId} aead=${s.aeadId}`);
    v = { hash, aead, suiteId: concat(utf8('HPKE'), i2osp(KEM_X25519_SHA256, 2), i2osp(s.kdfId, 2), i2osp(s.aeadId, 2)) };
    suites.set(k, v);
  }
  return v;
}

/**
 * The two key-schedule hashes that do not depend on the connection, for base
 * mode: LabeledExtract("", "info_hash", info) and LabeledExtract("", "psk_id_hash", "").
 * ECH computes them once per ECHConfig and suite (RFC 9180 §5.1).
 */
export interface BaseModeHashes {
  infoHash: Uint8Array;
  pskIdHash: Uint8Array;
  /** key_schedule_context = mode_base || psk_id_hash || info_hash */
  context: Uint8Array;
}

export function baseModeHashes(p: CryptoProvider, s: Suite, info: Uint8Array): BaseModeHashes {
  const { hash, suiteId } = suiteParams(s);
  const infoHash = labeledExtract(p, hash, suiteId, EMPTY, 'info_hash', info);
  const pskIdHash = labeledExtract(p, hash, suiteId, EMPTY, 'psk_id_hash', EMPTY);
  return { infoHash, pskIdHash, context: concat(Uint8Array.of(MODE.base), pskIdHash, infoHash) };
}

function keySchedule(p: CryptoProvider, s: Suite, sharedSecret: Uint8Array, info: Uint8Array, o: SetupOptions): HpkeContext {
  const { hash, aead, suiteId } = suiteParams(s);
  const mode = o.mode ?? MODE.base;
  const psk = o.psk ?? EMPTY;
  const pskId = o.pskId ?? EMPTY;
  // RFC 9180 §5.1.1: psk and psk_id come together, and only in the psk modes.
  const pskMode = mode === MODE.psk || mode === MODE.auth_psk;
  if ((psk.length === 0) !== (pskId.length === 0)) throw new EchgateError('ERR_HPKE', 'psk and psk_id must both be given or both empty');
  if (pskMode !== psk.length > 0) throw new EchgateError('ERR_HPKE', `mode ${mode} ${pskMode ? 'needs' : 'forbids'} a psk`);
  let ctx: Uint8Array;
  if (o.context && o.pskIdHash && o.infoHash && mode === MODE.base) ctx = o.context;
  else {
    const pskIdHash = o.pskIdHash ?? labeledExtract(p, hash, suiteId, EMPTY, 'psk_id_hash', pskId);
    const ih = o.infoHash ?? labeledExtract(p, hash, suiteId, EMPTY, 'info_hash', info);
    ctx = concat(Uint8Array.of(mode), pskIdHash, ih);
  }
  const secret = labeledExtract(p, hash, suiteId, sharedSecret, 'secret', psk);
  const nk = aead?.keyLen ?? 0;
  const nn = aead?.nonceLen ?? 0;
  if (nk && nn && p === nodeProvider && hash === 'sha256') {
    const pair = keyAndNonce(suiteId, secret, ctx, nk, nn);
    if (pair) return new HpkeContext(p, hash, suiteId, aead, pair.subarray(0, nk), pair.subarray(32, 32 + nn), secret, ctx);
  }
  const key = nk ? labeledExpand(p, hash, suiteId, secret, 'key', ctx, nk) : EMPTY;
  const baseNonce = nn ? labeledExpand(p, hash, suiteId, secret, 'base_nonce', ctx, nn) : EMPTY;
  return new HpkeContext(p, hash, suiteId, aead, key, baseNonce, secret, ctx);
}

const ONE = Uint8Array.of(1);

/**
 * key = LabeledExpand(secret, "key", ctx, Nk) and base_nonce =
 * LabeledExpand(secret, "base_nonce", ctx, Nn) (RFC 9180 §5.1) for
 * HKDF-SHA256, both one HKDF block (T(1) = HMAC(secret, info || 0x01), RFC
 * 5869 §2.3), as two MACs under one key: the node provider's HMAC-SHA-256 is
 * sha256.ts for these sizes, and sharing `secret`'s pad states saves two of
 * the ≈ 23 compressions of an ECH hello's HPKE setup. In one array: key at 0,
 * base_nonce at 32. Undefined when a message is too long for the JS HMAC.
 */
function keyAndNonce(suiteId: Uint8Array, secret: Uint8Array, ctx: Uint8Array, nk: number, nn: number): Uint8Array | undefined {
  const keyLabel = labelPrefix(suiteId, 'key');
  const nonceLabel = labelPrefix(suiteId, 'base_nonce');
  if (nk > 32 || nn > 32 || secret.length > 64 || 3 + nonceLabel.length + ctx.length > JS_HMAC_MAX) return undefined;
  return hmacSha256Pair(secret, [length2(nk), keyLabel, ctx, ONE], [length2(nn), nonceLabel, ctx, ONE]);
}

export interface SenderOptions extends SetupOptions {
  /** Ephemeral key; random when absent (tests pass the vector's). */
  skE?: X25519Private;
  /** Sender key for the auth modes. */
  skS?: X25519Private;
}

export function setupSender(p: CryptoProvider, s: Suite, pkR: Uint8Array, info: Uint8Array, o: SenderOptions = {}) {
  const skE = o.skE ?? p.x25519Generate();
  const { sharedSecret, enc } = encap(p, pkR, skE, o.skS);
  return { enc, ctx: keySchedule(p, s, sharedSecret, info, o), sharedSecret };
}

export interface ReceiverOptions extends SetupOptions {
  /** Sender public key for the auth modes. */
  pkS?: Uint8Array;
}

export function setupReceiver(p: CryptoProvider, s: Suite, enc: Uint8Array, skR: X25519Private, info: Uint8Array, o: ReceiverOptions = {}) {
  const sharedSecret = decap(p, enc, skR, o.pkS);
  return keySchedule(p, s, sharedSecret, info, o);
}
