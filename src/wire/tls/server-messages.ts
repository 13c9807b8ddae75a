/**
 * Server handshake messages of TLS 1.3 (RFC 8446 §4.1.3, §4.3.1, §4.4.2–4.4.4)
 * and the client-side decoders the test client needs.
 */
import { Reader } from '../../bytes/reader.js';
import { Writer } from '../../bytes/writer.js';
import { EchgateError } from '../../errors.js';
import type { Extension } from './client-hello.js';
import { ContentType, ExtensionType, HandshakeType, MAX_PLAINTEXT } from './constants.js';
import { encodeHandshake } from './handshake.js';

/** §4.1.3: ServerHello.random of a HelloRetryRequest is SHA-256("HelloRetryRequest"). */
export const HRR_RANDOM = Uint8Array.from(Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex'));

export interface ServerHello {
  random: Uint8Array;
  sessionIdEcho: Uint8Array;
  cipherSuite: number;
  extensions: Extension[];
}

export function encodeExtensions(w: Writer, exts: Extension[]): void {
  w.withLen16((w) => {
    for (const e of exts) w.u16(e.type).vec16(e.data);
  });
}

export function encodeServerHello(sh: ServerHello): Uint8Array {
  const w = new Writer(128).u16(0x0303).bytes(sh.random).vec8(sh.sessionIdEcho).u16(sh.cipherSuite).u8(0);
  encodeExtensions(w, sh.extensions);
  return encodeHandshake(HandshakeType.server_hello, w.finish());
}

/**
 * The ServerHello of a full handshake written straight into its plaintext
 * record (RFC 8446 §5.1): legacy_version, random, the session id echo, the
 * suite, null compression, then key_share (our share) and supported_versions,
 * in serverHelloExtensions' order. One buffer, no extension objects or
 * intermediate writers: this runs once per terminated connection. The bytes
 * are exactly those of plaintextRecords(handshake, encodeServerHello(…))
 * (test/tls13-server-flight.test.ts). `message` is the handshake message, a
 * view of `record` (the caller may set the ECH confirmation through it).
 */
export function serverHelloRecord(
  random: Uint8Array,
  sessionIdEcho: Uint8Array,
  cipherSuite: number,
  group: number,
  share: Uint8Array,
  selectedVersion: number,
): { record: Uint8Array; message: Uint8Array } {
  if (random.length !== 32) throw new EchgateError('ERR_ENCODE', 'ServerHello.random must be 32 bytes');
  if (sessionIdEcho.length > 32) throw new EchgateError('ERR_ENCODE', 'legacy_session_id_echo over 32 bytes');
  const exts = 4 + 4 + share.length + 4 + 2;
  const body = 2 + 32 + 1 + sessionIdEcho.length + 2 + 1 + 2 + exts;
  // One record: every share we make (X25519MLKEM768's 1120 bytes the largest) fits; anything else is a bug here.
  if (4 + body > MAX_PLAINTEXT) throw new EchgateError('ERR_ENCODE', 'ServerHello over one record');
  const rec = new Uint8Array(5 + 4 + body);
  let at = 0;
  rec[at++] = ContentType.handshake;
  at = put16(rec, at, 0x0303);
  at = put16(rec, at, 4 + body);
  rec[at++] = HandshakeType.server_hello;
  rec[at++] = 0;
  at = put16(rec, at, body);
  at = put16(rec, at, 0x0303);
  rec.set(random, at);
  at += 32;
  rec[at++] = sessionIdEcho.length;
  rec.set(sessionIdEcho, at);
  at += sessionIdEcho.length;
  at = put16(rec, at, cipherSuite);
  rec[at++] = 0;
  at = put16(rec, at, exts);
  at = put16(rec, at, ExtensionType.key_share);
  at = put16(rec, at, 4 + share.length);
  at = put16(rec, at, group);
  at = put16(rec, at, share.length);
  rec.set(share, at);
  at += share.length;
  at = put16(rec, at, ExtensionType.supported_versions);
  at = put16(rec, at, 2);
  at = put16(rec, at, selectedVersion);
  return { record: rec, message: rec.subarray(5) };
}

function put16(b: Uint8Array, at: number, v: number): number {
  b[at] = v >>> 8;
  b[at + 1] = v & 0xff;
  return at + 2;
}

export function decodeServerHello(body: Uint8Array): ServerHello {
  const r = new Reader(body);
  if (r.u16('legacy_version') !== 0x0303) throw new EchgateError('ERR_DECODE', 'ServerHello legacy_version', { alert: 'illegal_parameter' });
  const random = r.bytes(32);
  const sessionIdEcho = r.vec8('session id');
  const cipherSuite = r.u16();
  if (r.u8() !== 0) throw new EchgateError('ERR_DECODE', 'ServerHello compression', { alert: 'illegal_parameter' });
  const extensions = decodeExtensionBlock(r.sub16('extensions'));
  r.expectEnd('ServerHello');
  return { random, sessionIdEcho, cipherSuite, extensions };
}

export function decodeExtensionBlock(r: Reader): Extension[] {
  const out: Extension[] = [];
  const seen = new Set<number>();
  while (!r.atEnd()) {
    const type = r.u16();
    if (seen.has(type)) throw new EchgateError('ERR_DUPLICATE', `duplicate extension ${type}`, { alert: 'illegal_parameter' });
    seen.add(type);
    out.push({ type, data: r.vec16() });
  }
  return out;
}

/** EncryptedExtensions with no extension (the common case: no ALPN, no ECH retry): shared bytes, never written into. */
export const EMPTY_ENCRYPTED_EXTENSIONS: Uint8Array = Uint8Array.of(HandshakeType.encrypted_extensions, 0, 0, 2, 0, 0);

export function encodeEncryptedExtensions(exts: Extension[]): Uint8Array {
  const w = new Writer(64);
  encodeExtensions(w, exts);
  return encodeHandshake(HandshakeType.encrypted_extensions, w.finish());
}

/** §4.4.2 with an empty request context and no per-certificate extensions. */
export function encodeCertificate(chain: readonly Uint8Array[]): Uint8Array {
  const w = new Writer(2048)
    .u8(0)
    .withLen24((w) => {
      for (const c of chain) w.vec24(c).u16(0);
    });
  return encodeHandshake(HandshakeType.certificate, w.finish());
}

/**
 * Certificate messages already encoded, per chain (the array a loaded
 * certificate keeps for its lifetime; a reload loads new arrays). We send no
 * per-handshake certificate extensions (no OCSP staple, no SCT), so the
 * message depends on the chain alone and a terminating proxy sent the same
 * bytes, re-encoded, on every connection. The returned bytes are shared:
 * callers copy them (transcript, record), never write into them.
 */
const certificateMessages = new WeakMap<readonly Uint8Array[], Uint8Array>();

export function certificateMessage(chain: readonly Uint8Array[]): Uint8Array {
  let m = certificateMessages.get(chain);
  if (!m) {
    m = encodeCertificate(chain);
    certificateMessages.set(chain, m);
  }
  return m;
}

export function decodeCertificate(body: Uint8Array): Uint8Array[] {
  const r = new Reader(body);
  r.vec8('certificate_request_context');
  const list = r.sub24('certificate_list');
  r.expectEnd('Certificate');
  const out: Uint8Array[] = [];
  while (!list.atEnd()) {
    out.push(list.vec24('cert_data'));
    list.vec16('extensions');
  }
  return out;
}

export function decodeCertificateVerify(body: Uint8Array): { scheme: number; signature: Uint8Array } {
  const r = new Reader(body);
  const scheme = r.u16();
  const signature = r.vec16('signature');
  r.expectEnd('CertificateVerify');
  return { scheme, signature };
}

/** §4.4.3: the content a CertificateVerify signs. */
export function certificateVerifyContent(transcriptHash: Uint8Array, server: boolean): Uint8Array {
  const prefix = server ? CV_PREFIX_SERVER : CV_PREFIX_CLIENT;
  const out = new Uint8Array(prefix.length + transcriptHash.length);
  out.set(prefix);
  out.set(transcriptHash, prefix.length);
  return out;
}

/** §4.4.3: 64 spaces, the context string, a zero byte: the same for every CertificateVerify of a side, so built once. */
function cvPrefix(context: string): Uint8Array {
  const ctx = Buffer.from(context, 'latin1');
  const out = new Uint8Array(64 + ctx.length + 1);
  out.fill(0x20, 0, 64);
  out.set(ctx, 64);
  return out;
}
const CV_PREFIX_SERVER = cvPrefix('TLS 1.3, server CertificateVerify');
const CV_PREFIX_CLIENT = cvPrefix('TLS 1.3, client CertificateVerify');

export function encodeFinished(verifyData: Uint8Array): Uint8Array {
  return encodeHandshake(HandshakeType.finished, verifyData);
}

export function serverHelloExtensions(selectedVersion: number, keyShare?: { group: number; key?: Uint8Array }): Extension[] {
  // key_share before supported_versions: any order is valid (RFC 8446 §4.2), this one is RFC 8448's,
  // so the engine reproduces the trace's ServerHello byte for byte (test/tls13-rfc8448-server.test.ts).
  const exts: Extension[] = [];
  if (keyShare) {
    const w = new Writer(40).u16(keyShare.group);
    if (keyShare.key) w.vec16(keyShare.key);
    exts.push({ type: ExtensionType.key_share, data: w.finish() });
  }
  exts.push({ type: ExtensionType.supported_versions, data: new Writer(2).u16(selectedVersion).finish() });
  return exts;
}
