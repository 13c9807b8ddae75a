/**
 * ESNI, draft-ietf-tls-esni-02 (experimental; docs/esni.md): the key record,
 * the SNI encryption key schedule (§5.1) and both ends of it — the
 * client-facing server's decryption with every check of §5.2, and the
 * client's `encrypted_server_name` extension for tls13/client.ts (EsniOffer).
 *
 *   Z   = ECDH(ESNI key, ClientEncryptedSNI.key_share)          X25519 only
 *   Zx  = HKDF-Extract(0, Z)
 *   key = HKDF-Expand-Label(Zx, "esni key", Hash(ESNIContents), key_length)
 *   iv  = HKDF-Expand-Label(Zx, "esni iv",  Hash(ESNIContents), iv_length)
 *   ESNIContents = record_digest<0..2^16-1> || the client's ESNI KeyShareEntry || ClientHello.random
 *   encrypted_sni = AEAD-Encrypt(key, iv, aad = the ClientHello key_share extension body, ClientESNIInner)
 *
 * record_digest is Hash(ESNIKeys) over the whole structure, version included:
 * the draft's prose says "from the first byte of checksum", but NSS (the one
 * browser implementation) hashed the whole record, and the interop work that
 * followed (tlswg/draft-ietf-tls-esni issue #119) settled on that; docs/esni.md.
 */
import { equal, toHex } from '../bytes/util.js';
import { hkdfExtract } from '../crypto/hkdf.js';
import { AEADS } from '../crypto/node.js';
import type { CryptoProvider, HashName, X25519Private } from '../crypto/provider.js';
import { EchgateError, isEchgateError } from '../errors.js';
import type { EsniOffer } from '../tls13/client-hello-builder.js';
import { expandLabel, suiteById } from '../tls13/key-schedule.js';
import { type ClientHello, type Extension, findExtension } from '../wire/tls/client-hello.js';
import { ExtensionType, NamedGroup, ProtocolVersion } from '../wire/tls/constants.js';
import {
  checksumInput,
  decodeClientEncryptedSNI,
  decodeClientESNIInner,
  decodeESNIKeys,
  ESNI_NONCE_LENGTH,
  type ESNIKeys,
  type EsniKeyShare,
  encodeClientEncryptedSNI,
  encodeClientESNIInner,
  encodeESNIContents,
  encodeESNIKeys,
} from '../wire/tls/esni.js';
import { decodeSupportedVersions } from '../wire/tls/extensions.js';

/** The one suite and group echgate generates keys for: TLS_AES_128_GCM_SHA256 with X25519. */
export const ESNI_DEFAULT_SUITE = 0x1301;
export const ESNI_GROUP = NamedGroup.x25519;
/** §4: 260 when wildcard names are served; it fits the ServerNameList of any 253-byte host name. */
export const ESNI_DEFAULT_PADDED_LENGTH = 260;

const illegal = (msg: string) => new EchgateError('ERR_ESNI', msg, { alert: 'illegal_parameter' });

/** The first four octets of SHA-256 over the structure with a zeroed checksum (§4). */
export function esniChecksum(p: CryptoProvider, raw: Uint8Array): Uint8Array {
  return p.hash('sha256', checksumInput(raw)).subarray(0, 4);
}

/** Build and checksum an ESNIKeys record for one X25519 public key. */
export function makeESNIKeys(p: CryptoProvider, publicKey: Uint8Array, o: { notBefore: number; notAfter: number; paddedLength?: number; suites?: number[] }): Uint8Array {
  const contents = {
    keys: [{ group: ESNI_GROUP, keyExchange: publicKey }],
    cipherSuites: o.suites ?? [ESNI_DEFAULT_SUITE],
    paddedLength: o.paddedLength ?? ESNI_DEFAULT_PADDED_LENGTH,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    extensions: [],
  };
  const zeroed = encodeESNIKeys(contents);
  return encodeESNIKeys(contents, esniChecksum(p, zeroed));
}

/**
 * Decode an ESNIKeys record and check what a client must (§4): the version
 * (in the decoder), the checksum, and, when `now` (seconds) is given, that it
 * lies within [not_before, not_after].
 */
export function verifyESNIKeys(p: CryptoProvider, raw: Uint8Array, now?: number): ESNIKeys {
  const k = decodeESNIKeys(raw);
  if (!equal(esniChecksum(p, raw), k.checksum)) throw illegal('ESNIKeys checksum does not match (a transmission error, §4)');
  if (now !== undefined && (now < k.notBefore || now > k.notAfter)) {
    throw illegal(`ESNIKeys valid from ${new Date(k.notBefore * 1000).toISOString()} to ${new Date(k.notAfter * 1000).toISOString()}, not now`);
  }
  return k;
}

/** record_digest: Hash(ESNIKeys) with the suite's hash (§5; whole structure, see the file comment). */
export function esniRecordDigest(p: CryptoProvider, hash: HashName, raw: Uint8Array): Uint8Array {
  return p.hash(hash, raw);
}

/** The SNI encryption key and IV (§5.1). Exported for the fixed-key test. */
export function esniKeyIv(
  p: CryptoProvider,
  suiteId: number,
  z: Uint8Array,
  recordDigest: Uint8Array,
  esniShare: EsniKeyShare,
  clientRandom: Uint8Array,
): { key: Uint8Array; iv: Uint8Array } {
  const suite = suiteById(suiteId);
  if (!suite) throw illegal(`cipher suite 0x${suiteId.toString(16)} is not a TLS 1.3 suite echgate implements`);
  const zx = hkdfExtract(p, suite.hash, new Uint8Array(0), z);
  const h = p.hash(suite.hash, encodeESNIContents(recordDigest, esniShare, clientRandom));
  const key = expandLabel(p, suite.hash, zx, 'esni key', h, suite.keyLen);
  const iv = expandLabel(p, suite.hash, zx, 'esni iv', h, AEADS[suite.aead].nonceLen);
  zx.fill(0);
  return { key, iv };
}

// ---- server ----

/** A loaded ESNI private key with its record, prepared once per key-folder load. */
export interface EsniServerKey {
  /** A short id for logs and `keys list`: the record's checksum in hex. */
  id: string;
  raw: Uint8Array;
  record: ESNIKeys;
  sk: X25519Private;
  /** record_digest per hash of the suites the record lists. */
  digests: Map<HashName, Uint8Array>;
}

export function prepareEsniKey(p: CryptoProvider, raw: Uint8Array, sk: X25519Private): EsniServerKey {
  const record = verifyESNIKeys(p, raw);
  const mine = record.keys.find((k) => k.group === ESNI_GROUP);
  if (!mine || !equal(mine.keyExchange, sk.publicKey)) throw new EchgateError('ERR_KEYSTORE', 'the ESNIKeys record does not carry this private key\'s X25519 public key');
  const digests = new Map<HashName, Uint8Array>();
  for (const s of record.cipherSuites) {
    const suite = suiteById(s);
    if (suite && !digests.has(suite.hash)) digests.set(suite.hash, esniRecordDigest(p, suite.hash, raw));
  }
  return { id: toHex(record.checksum), raw, record, sk, digests };
}

export interface EsniLookup {
  esniKeys(): readonly EsniServerKey[];
}

export interface EsniAccepted {
  /** The decrypted server name: routed on, as ECH's inner SNI is. */
  hostName: string;
  /** ClientESNIInner.nonce, echoed in EncryptedExtensions when echgate terminates (§5.2 Shared Mode). */
  nonce: Uint8Array;
  key: EsniServerKey;
}

/**
 * Decrypt the encrypted_server_name extension of `hello` (the client-facing
 * server, §5.2). Every failure throws an EchgateError carrying the alert the
 * draft names: handshake_failure without TLS 1.3; illegal_parameter for an
 * unknown record_digest (and so an unknown suite, whose hash cannot produce
 * one), a suite or group the record does not list, a length that does not fit
 * padded_length, bad padding; decrypt_error when the AEAD does not open.
 */
export function decryptEsni(p: CryptoProvider, hello: ClientHello, ext: Extension, keys: EsniLookup): EsniAccepted {
  const ces = decodeClientEncryptedSNI(ext.data);
  // "If it is unable to negotiate TLS 1.3 or greater, it MUST abort the connection with a handshake_failure alert."
  const sv = findExtension(hello, ExtensionType.supported_versions);
  if (!sv || !decodeSupportedVersions(sv.data).includes(ProtocolVersion.TLS13)) {
    throw new EchgateError('ERR_ESNI', 'encrypted_server_name in a ClientHello that does not offer TLS 1.3', { alert: 'handshake_failure' });
  }
  const suite = suiteById(ces.suite);
  const key = suite ? keys.esniKeys().find((k) => { const d = k.digests.get(suite.hash); return d !== undefined && equal(d, ces.recordDigest); }) : undefined;
  // "does not match the cryptographic hash of any known ESNIKeys structure ... illegal_parameter" (prevents downgrade).
  if (!suite || !key) throw illegal(suite ? 'record_digest matches no loaded ESNIKeys' : `cipher suite 0x${ces.suite.toString(16)} is unknown: no record_digest can match`);
  // §5.1: the client MUST NOT use a suite or group the record does not advertise.
  if (!key.record.cipherSuites.includes(ces.suite)) throw illegal(`cipher suite 0x${ces.suite.toString(16)} is not in the ESNIKeys record`);
  if (ces.keyShare.group !== ESNI_GROUP || !key.record.keys.some((k) => k.group === ces.keyShare.group)) {
    throw illegal(`key_share group ${ces.keyShare.group} is not one of the ESNIKeys record's`);
  }
  const aead = AEADS[suite.aead];
  // "inconsistent with the advertised padding length (plus AEAD expansion)": refused before decrypting.
  if (ces.encryptedSni.length !== ESNI_NONCE_LENGTH + key.record.paddedLength + aead.tagLen) {
    throw illegal(`encrypted_sni of ${ces.encryptedSni.length} bytes does not fit padded_length ${key.record.paddedLength}`);
  }
  // The AAD binds the extension to this hello's key shares (§5.1).
  const ks = findExtension(hello, ExtensionType.key_share);
  if (!ks) throw new EchgateError('ERR_ESNI', 'encrypted_server_name without a key_share extension to bind it to', { alert: 'missing_extension' });
  let z: Uint8Array;
  try {
    z = p.x25519(key.sk, ces.keyShare.keyExchange);
  } catch (e) {
    if (isEchgateError(e)) throw new EchgateError('ERR_ESNI', 'the ESNI key_share is not a usable X25519 public key', { alert: 'illegal_parameter', cause: e });
    throw e;
  }
  const { key: k, iv } = esniKeyIv(p, ces.suite, z, ces.recordDigest, ces.keyShare, hello.random);
  z.fill(0);
  let plain: Uint8Array;
  try {
    plain = aead.open(k, iv, ks.data, ces.encryptedSni);
  } catch (e) {
    if (isEchgateError(e)) throw new EchgateError('ERR_ESNI', 'encrypted_sni does not decrypt', { alert: 'decrypt_error', cause: e });
    throw e;
  } finally {
    k.fill(0);
  }
  const inner = decodeClientESNIInner(plain, key.record.paddedLength);
  if (!inner.hostName) throw illegal('the decrypted ServerNameList has no host_name');
  return { hostName: inner.hostName, nonce: Uint8Array.from(inner.nonce), key };
}

// ---- client ----

export interface EsniEncryptInput {
  record: ESNIKeys;
  suite: number;
  hostName: string;
  clientRandom: Uint8Array;
  /** The body of the ClientHello's key_share extension (the AAD). */
  keyShareExtension: Uint8Array;
  ephemeral: X25519Private;
  nonce: Uint8Array;
}

/** The ClientEncryptedSNI body for one hello (§5.1); deterministic given the ephemeral key and nonce. */
export function esniEncrypt(p: CryptoProvider, i: EsniEncryptInput): Uint8Array {
  const suite = suiteById(i.suite);
  if (!suite) throw illegal(`cipher suite 0x${i.suite.toString(16)} is not implemented`);
  const server = i.record.keys.find((k) => k.group === ESNI_GROUP);
  if (!server) throw illegal('the ESNIKeys record has no X25519 key');
  const recordDigest = esniRecordDigest(p, suite.hash, i.record.raw);
  const share = { group: ESNI_GROUP, keyExchange: i.ephemeral.publicKey };
  const z = p.x25519(i.ephemeral, server.keyExchange);
  const { key, iv } = esniKeyIv(p, i.suite, z, recordDigest, share, i.clientRandom);
  z.fill(0);
  const inner = encodeClientESNIInner(i.nonce, i.hostName, i.record.paddedLength);
  const encryptedSni = AEADS[suite.aead].seal(key, iv, i.keyShareExtension, inner);
  key.fill(0);
  return encodeClientEncryptedSNI({ suite: i.suite, keyShare: share, recordDigest, encryptedSni });
}

/**
 * Choose what a client may use from an ESNIKeys record (§4, §5.1): checksum
 * and validity at `now`, an X25519 key, and a suite echgate implements (the
 * record's order). Throws ERR_ESNI when nothing is usable.
 */
export function usableEsni(p: CryptoProvider, raw: Uint8Array, now = Math.floor(Date.now() / 1000)): { record: ESNIKeys; suite: number } {
  const record = verifyESNIKeys(p, raw, now);
  if (!record.keys.some((k) => k.group === ESNI_GROUP)) throw illegal('the ESNIKeys record offers no X25519 key');
  const suite = record.cipherSuites.find((s) => suiteById(s) !== undefined);
  if (suite === undefined) throw illegal('the ESNIKeys record offers no cipher suite echgate implements');
  return { record, suite };
}

/** An ESNI offer for tls13/client.ts (ClientOptions.esni): a fresh ephemeral key and nonce per hello. */
export function esniOffer(p: CryptoProvider, raw: Uint8Array, o: { coverName?: string; now?: number } = {}): EsniOffer {
  const { record, suite } = usableEsni(p, raw, o.now);
  const nonce = p.randomBytes(ESNI_NONCE_LENGTH);
  return {
    nonce,
    coverName: o.coverName,
    extension(hostName, clientRandom, keyShareExtension) {
      const data = esniEncrypt(p, { record, suite, hostName, clientRandom, keyShareExtension, ephemeral: p.x25519Generate(), nonce });
      return { type: ExtensionType.encrypted_server_name, data };
    },
  };
}

/** Decode ESNIKeys from the text of `_esni` TXT strings (base64; several strings are concatenated, §4). */
export function esniFromTxt(strings: readonly string[]): Uint8Array {
  const text = strings.join('').trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw illegal('the _esni TXT record is not base64');
  return new Uint8Array(Buffer.from(text, 'base64'));
}
