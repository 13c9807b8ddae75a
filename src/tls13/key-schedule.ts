/**
 * TLS 1.3 key schedule (RFC 8446 §7.1) and traffic keys (§7.3), over the
 * crypto provider's HMAC. Checked against RFC 8448 §3 in test/tls13.test.ts.
 */
import { Writer } from '../bytes/writer.js';
import { concat, utf8, wipe } from '../bytes/util.js';
import { hkdfExpand, hkdfExtract } from '../crypto/hkdf.js';
import { nodeProvider } from '../crypto/node.js';
import { type AeadName, type CryptoProvider, HASH_SIZE, type HashName } from '../crypto/provider.js';
import { HmacSha256Key, hmacSha256Pair, JS_HMAC_MAX } from '../crypto/sha256.js';
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
/** The empty HkdfLabel context (zero bytes: nothing to write into, so one for all). */
const NO_CONTEXT = new Uint8Array(0);

/**
 * HkdfLabel up to and including the context's length byte (§7.1), per
 * (label, length, context length): a handshake expands about twenty labels,
 * all from this small set, so each prefix is encoded once per process.
 * Looked up by the label itself (a string literal at every call site, so its
 * hash is computed once) and then by a number: no key string is built per
 * call (a template-string key cost a string build and hash per expansion;
 * docs/benchmarks.md, "Termination cost, seventh pass").
 */
const labelPrefixes = new Map<string, Map<number, Uint8Array>>();

function labelPrefix(label: string, length: number, contextLength: number): Uint8Array {
  let byShape = labelPrefixes.get(label);
  // length ≤ 0xffff (u16) and contextLength ≤ 0xff are checked below before anything is cached.
  const k = length * 256 + contextLength;
  let prefix = byShape?.get(k);
  if (!prefix) {
    const full = concat(LABEL_PREFIX, utf8(label));
    if (full.length > 255 || contextLength > 255) throw new EchgateError('ERR_ENCODE', 'HKDF label or context too long');
    prefix = new Writer(4 + full.length).u16(length).vec8(full).u8(contextLength).finish();
    // Bounded: labels come from this code, never from the peer; a caller with unusual labels just skips the cache.
    if (!byShape && labelPrefixes.size < 256) {
      byShape = new Map();
      labelPrefixes.set(label, byShape);
    }
    if (byShape && byShape.size < 16) byShape.set(k, prefix);
  }
  return prefix;
}

/** HKDF-Expand-Label (§7.1). */
export function expandLabel(p: CryptoProvider, hash: HashName, secret: Uint8Array, label: string, context: Uint8Array, length: number): Uint8Array {
  const prefix = labelPrefix(label, length, context.length);
  const hl = HASH_SIZE[hash];
  if (length > hl) return hkdfExpand(p, hash, secret, context.length ? [prefix, context] : prefix, length);
  // Every label of the key schedule fits one block (RFC 5869 §2.3: T(1) = HMAC(PRK, info || 0x01), the
  // first `length` bytes): one HMAC with its parts passed as they are, no info array and no spread.
  const t = context.length ? p.hmac(hash, secret, prefix, context, ONE) : p.hmac(hash, secret, prefix, ONE);
  return length === hl ? t : t.subarray(0, length);
}

/**
 * HKDF-Expand-Label (§7.1) for `length` ≤ Hash.length with no context: the
 * whole block T(1), of which the result is the first `length` bytes (the
 * label encodes `length`, so these are not the bytes of a longer expansion).
 */
function expandLabelBlock(p: CryptoProvider, hash: HashName, secret: Uint8Array, label: string, length: number): Uint8Array {
  return p.hmac(hash, secret, labelPrefix(label, length, 0), ONE);
}

/** HKDF-Expand's block counter for the first (here the only) block. */
const ONE = Uint8Array.of(1);

export function deriveSecret(p: CryptoProvider, hash: HashName, secret: Uint8Array, label: string, transcriptHash: Uint8Array): Uint8Array {
  return expandLabel(p, hash, secret, label, transcriptHash, HASH_SIZE[hash]);
}

export interface TrafficKeys {
  key: Uint8Array;
  iv: Uint8Array;
}

export function trafficKeys(p: CryptoProvider, suite: CipherSuite, secret: Uint8Array): TrafficKeys {
  // Key and IV side by side in one allocation: a connection keeps a pair per direction for its whole
  // life, and each separate buffer costs an ArrayBuffer and a backing store once node:crypto reads it
  // (idle memory, docs/benchmarks.md "Termination cost, fourth pass").
  const both = new Uint8Array(new ArrayBuffer(suite.keyLen + 12));
  // Each is the first bytes of one HMAC block (keyLen and 12 are below every hash length), copied by
  // index and the blocks wiped. Not through a subarray of each block: a view of a small array V8
  // keeps inside its heap first moves that array out of the heap (a new ArrayBuffer and a malloc'd
  // backing store), two per call, eight per handshake (docs/benchmarks.md, "Termination handshake,
  // eighth pass").
  if (pairable(p, suite.hash, secret)) {
    const parts = keyIvParts(suite.keyLen);
    const pair = hmacSha256Pair(secret, parts.key, parts.iv);
    // HMAC(secret, key label) at 0, HMAC(secret, iv label) at 32: one pair of pad compressions for both.
    for (let i = 0; i < suite.keyLen; i++) both[i] = pair[i]!;
    for (let i = 0; i < 12; i++) both[suite.keyLen + i] = pair[32 + i]!;
    wipe(pair);
  } else {
    const kb = expandLabelBlock(p, suite.hash, secret, 'key', suite.keyLen);
    const vb = expandLabelBlock(p, suite.hash, secret, 'iv', 12);
    for (let i = 0; i < suite.keyLen; i++) both[i] = kb[i]!;
    for (let i = 0; i < 12; i++) both[suite.keyLen + i] = vb[i]!;
    wipe(kb, vb);
  }
  return { key: both.subarray(0, suite.keyLen), iv: both.subarray(suite.keyLen) };
}

/**
 * A handshake traffic secret's record keys (§7.3) and its finished_key
 * (§4.4.4). `keys` is a plain TrafficKeys, the shape every RecordCipher gets
 * (one shape keeps the record code's property loads monomorphic).
 */
export interface HandshakeTrafficKeys {
  keys: TrafficKeys;
  finishedKey: Uint8Array;
}

/** Scratch for one HMAC block of which only the first bytes are kept (wiped after each use). */
const block32 = new Uint8Array(32);
/**
 * The pad states of the secret whose HMACs are being made, set and forgotten
 * within one synchronous call: one instance for the process, so keying a
 * secret's three HMACs allocates nothing.
 */
const transient = new HmacSha256Key();

/**
 * trafficKeys(secret) and finished_key = HKDF-Expand-Label(secret, "finished",
 * "", Hash.length) (§4.4.4) of a handshake traffic secret: all three are
 * HMACs under the secret, so on the paired path the secret's pad states are
 * made once for the three (two compressions fewer than trafficKeys and a
 * separate finishedVerifyData; docs/benchmarks.md, "Termination handshake,
 * tenth pass"). Give the finished key to finishedVerifyDataFrom.
 */
export function handshakeTrafficKeys(p: CryptoProvider, suite: CipherSuite, secret: Uint8Array): HandshakeTrafficKeys {
  if (!pairable(p, suite.hash, secret)) {
    return { keys: trafficKeys(p, suite, secret), finishedKey: expandLabel(p, suite.hash, secret, 'finished', NO_CONTEXT, HASH_SIZE[suite.hash]) };
  }
  const both = new Uint8Array(new ArrayBuffer(suite.keyLen + 12));
  const parts = keyIvParts(suite.keyLen);
  const k = transient;
  k.set(secret);
  const finishedKey = new Uint8Array(32);
  try {
    // Copied by index out of a scratch block, as trafficKeys does (no views of small arrays).
    k.macInto(parts.key, block32);
    for (let i = 0; i < suite.keyLen; i++) both[i] = block32[i]!;
    k.macInto(parts.iv, block32);
    for (let i = 0; i < 12; i++) both[suite.keyLen + i] = block32[i]!;
    k.macInto(FINISHED_PARTS, finishedKey);
  } finally {
    k.forget();
    block32.fill(0);
  }
  return { keys: { key: both.subarray(0, suite.keyLen), iv: both.subarray(suite.keyLen) }, finishedKey };
}

/** The HMAC message of the "finished" label for SHA-256 (no context, 32 bytes): a constant. */
const FINISHED_PARTS: readonly Uint8Array[] = [labelPrefix('finished', 32, 0), ONE];

/** The HMAC messages of the "key" and "iv" labels (no context, one block), per key length: constants. */
const keyIvPartsByLen = new Map<number, { key: readonly Uint8Array[]; iv: readonly Uint8Array[] }>();
function keyIvParts(keyLen: number): { key: readonly Uint8Array[]; iv: readonly Uint8Array[] } {
  let parts = keyIvPartsByLen.get(keyLen);
  if (!parts) {
    parts = { key: [labelPrefix('key', keyLen, 0), ONE], iv: [labelPrefix('iv', 12, 0), ONE] };
    keyIvPartsByLen.set(keyLen, parts);
  }
  return parts;
}

/**
 * Whether two HMACs under `secret` can be one hmacSha256Pair (crypto/sha256.ts):
 * the node provider's HMAC-SHA-256 is that module's for keys up to 64 bytes
 * and short messages (crypto/node.ts), so the pair gives the bytes two
 * p.hmac calls would, and makes the key's two pad compressions once instead
 * of twice (RFC 2104 §2: H(K ⊕ ipad ‖ m) and H(K ⊕ opad ‖ ·) start from the
 * same two blocks for every m). The key schedule keys two or three HMACs with
 * each secret it derives (§7.1, §7.3); labels and contexts here stay far below
 * JS_HMAC_MAX (a 32-byte context and a prefix under 30 bytes). As
 * crypto/hpke.ts does for its key and base_nonce.
 */
function pairable(p: CryptoProvider, hash: HashName, secret: Uint8Array): boolean {
  return p === nodeProvider && hash === 'sha256' && secret.length <= 64;
}

/**
 * Derive-Secret(secret, a, context) and Derive-Secret(secret, b, context)
 * (§7.1), each Hash.length bytes: the client and server traffic secrets of one
 * stage, from the same secret and transcript hash.
 */
function deriveSecretPair(p: CryptoProvider, hash: HashName, secret: Uint8Array, a: string, b: string, context: Uint8Array): [Uint8Array, Uint8Array] {
  const hl = HASH_SIZE[hash];
  const pa = labelPrefix(a, hl, context.length);
  const pb = labelPrefix(b, hl, context.length);
  if (!pairable(p, hash, secret) || pa.length + context.length + 1 > JS_HMAC_MAX || pb.length + context.length + 1 > JS_HMAC_MAX) {
    return [deriveSecret(p, hash, secret, a, context), deriveSecret(p, hash, secret, b, context)];
  }
  const pair = hmacSha256Pair(secret, [pa, context, ONE], [pb, context, ONE]);
  // Copied out, not viewed: each secret is an HMAC key later and lives in the connection's state.
  const x = new Uint8Array(32);
  const y = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    x[i] = pair[i]!;
    y[i] = pair[32 + i]!;
  }
  wipe(pair);
  return [x, y];
}

/** Finished verify_data (§4.4.4). */
export function finishedVerifyData(p: CryptoProvider, hash: HashName, baseKey: Uint8Array, transcriptHash: Uint8Array): Uint8Array {
  const fk = expandLabel(p, hash, baseKey, 'finished', NO_CONTEXT, HASH_SIZE[hash]);
  return p.hmac(hash, fk, transcriptHash);
}

/** Finished verify_data (§4.4.4) from a finished_key already expanded (handshakeTrafficKeys). */
export function finishedVerifyDataFrom(p: CryptoProvider, hash: HashName, finishedKey: Uint8Array, transcriptHash: Uint8Array): Uint8Array {
  return p.hmac(hash, finishedKey, transcriptHash);
}

/**
 * Without a PSK, the early secret and the "derived" secret after it are the
 * same for every handshake (§7.1: HKDF-Extract(0, 0), then Derive-Secret(.,
 * "derived", "")), and so is Hash(""): computed once per provider and hash.
 */
interface Constants {
  emptyHash: Uint8Array;
  /** Derive-Secret(Early Secret, "derived", "") with no PSK. */
  derivedFromEarly: Uint8Array;
  /**
   * derivedFromEarly as HMAC pad states, on the paired path (node provider,
   * SHA-256): it keys the handshake secret's HKDF-Extract in every handshake
   * and is the same public value every time, so its two pad compressions are
   * made once per process. Never forgotten: it is not a secret.
   */
  derivedFromEarlyKey: HmacSha256Key | undefined;
  /** The HkdfLabel of Derive-Secret(., "derived", ""): its HMAC message, a constant. */
  derivedParts: readonly Uint8Array[];
}
const constantsCache = new WeakMap<CryptoProvider, Partial<Record<HashName, Constants>>>();

function constantsFor(p: CryptoProvider, hash: HashName): Constants {
  let byHash = constantsCache.get(p);
  if (!byHash) {
    byHash = {};
    constantsCache.set(p, byHash);
  }
  let c = byHash[hash];
  if (!c) {
    const zeros = new Uint8Array(HASH_SIZE[hash]);
    const emptyHash = p.hash(hash, new Uint8Array(0));
    const early = hkdfExtract(p, hash, zeros, zeros);
    const derivedFromEarly = deriveSecret(p, hash, early, 'derived', emptyHash);
    c = {
      emptyHash,
      derivedFromEarly,
      derivedFromEarlyKey: pairable(p, hash, derivedFromEarly) ? new HmacSha256Key(derivedFromEarly) : undefined,
      derivedParts: [labelPrefix('derived', HASH_SIZE[hash], emptyHash.length), emptyHash, ONE],
    };
    byHash[hash] = c;
  }
  return c;
}

/**
 * The application traffic secrets of a handshake (§7.1), and the exporter
 * master secret derived when first read. A class with the getter on its
 * prototype, not an object literal with `get exporter()`: V8 defines a
 * literal's accessor through the runtime on every call
 * (Runtime_DefineAccessorPropertyUnchecked, ≈ 9.6 µs per handshake through
 * serve in the perf profile of docs/benchmarks.md, "Termination handshake,
 * tenth pass").
 */
export class ApplicationSecrets {
  private exporterSecret: Uint8Array | undefined;

  constructor(
    private readonly p: CryptoProvider,
    private readonly hash: HashName,
    private readonly master: Uint8Array,
    private readonly throughServerFinished: Uint8Array,
    readonly client: Uint8Array,
    readonly server: Uint8Array,
  ) {}

  get exporter(): Uint8Array {
    this.exporterSecret ??= deriveSecret(this.p, this.hash, this.master, 'exp master', this.throughServerFinished);
    return this.exporterSecret;
  }
}

/** The secrets of one full (EC)DHE handshake without PSK. */
export class KeySchedule {
  readonly zeros: Uint8Array;
  private handshakeSecret: Uint8Array | undefined;
  /** Derive-Secret(handshake secret, "derived", ""), when handshake() made it with the traffic secrets. */
  private derived: Uint8Array | undefined;
  private readonly k: Constants;

  constructor(
    private readonly p: CryptoProvider,
    readonly hash: HashName,
  ) {
    this.zeros = new Uint8Array(HASH_SIZE[hash]);
    this.k = constantsFor(p, hash);
  }

  /** Early secret with no PSK, then the handshake secret from the (EC)DHE shared secret. */
  handshake(ecdhe: Uint8Array, chShHash: Uint8Array): { client: Uint8Array; server: Uint8Array } {
    const fromEarly = this.k.derivedFromEarlyKey;
    const pc = labelPrefix('c hs traffic', 32, chShHash.length);
    const ps = labelPrefix('s hs traffic', 32, chShHash.length);
    // fromEarly is set only on the paired path (constantsFor), where the handshake secret is 32 bytes;
    // each message must stay within what crypto/sha256.ts hashes (a transcript hash is far below it).
    if (!fromEarly || ecdhe.length > JS_HMAC_MAX || pc.length + chShHash.length + 1 > JS_HMAC_MAX || ps.length + chShHash.length + 1 > JS_HMAC_MAX) {
      this.handshakeSecret = hkdfExtract(this.p, this.hash, this.k.derivedFromEarly, ecdhe);
      const [client, server] = deriveSecretPair(this.p, this.hash, this.handshakeSecret, 'c hs traffic', 's hs traffic', chShHash);
      return { client, server };
    }
    // The paired path (SHA-256 on the node provider): the extract under the constant's cached pad
    // states, then the handshake secret's three HMACs under its pad states made once — c/s hs
    // traffic now and Derive-Secret(., "derived", "") for application() (§7.1), which would
    // otherwise make them again there.
    const hs = fromEarly.mac([ecdhe]);
    this.handshakeSecret = hs;
    const k = transient;
    k.set(hs);
    const client = new Uint8Array(32);
    const server = new Uint8Array(32);
    const derived = new Uint8Array(32);
    try {
      k.macInto([pc, chShHash, ONE], client);
      k.macInto([ps, chShHash, ONE], server);
      k.macInto(this.k.derivedParts, derived);
    } finally {
      k.forget();
    }
    this.derived = derived;
    return { client, server };
  }

  /**
   * Application traffic secrets from the transcript through the server
   * Finished. The exporter master secret is derived when first read: neither
   * side of a connection here exports keying material, so it costs one HMAC
   * per handshake for nothing otherwise.
   */
  application(throughServerFinished: Uint8Array): ApplicationSecrets {
    if (!this.handshakeSecret) throw new EchgateError('ERR_ILLEGAL', 'key schedule: handshake secret first');
    const derived = this.derived ?? deriveSecret(this.p, this.hash, this.handshakeSecret, 'derived', this.k.emptyHash);
    const master = hkdfExtract(this.p, this.hash, derived, this.zeros);
    const [client, server] = deriveSecretPair(this.p, this.hash, master, 'c ap traffic', 's ap traffic', throughServerFinished);
    return new ApplicationSecrets(this.p, this.hash, master, throughServerFinished, client, server);
  }

  /** The next application traffic secret after a KeyUpdate (§7.2). */
  nextTrafficSecret(secret: Uint8Array): Uint8Array {
    return nextTrafficSecret(this.p, this.hash, secret);
  }

  /** Wipe and drop the handshake secret (once both Finished messages are done, nothing derives from it again). */
  forget(): void {
    this.handshakeSecret?.fill(0);
    this.handshakeSecret = undefined;
    this.derived?.fill(0);
    this.derived = undefined;
  }
}

/** RFC 8446 §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length). */
export function nextTrafficSecret(p: CryptoProvider, hash: HashName, secret: Uint8Array): Uint8Array {
  return expandLabel(p, hash, secret, 'traffic upd', NO_CONTEXT, HASH_SIZE[hash]);
}
