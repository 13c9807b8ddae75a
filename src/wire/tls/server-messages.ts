/**
 * Server handshake messages of TLS 1.3 (RFC 8446 §4.1.3, §4.3.1, §4.4.2–4.4.4)
 * and the client-side decoders the test client needs.
 */
import { Reader } from '../../bytes/reader.js';
import { Writer } from '../../bytes/writer.js';
import { EchgateError } from '../../errors.js';
import type { Extension } from './client-hello.js';
import { ExtensionType, HandshakeType } from './constants.js';
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

export function encodeEncryptedExtensions(exts: Extension[]): Uint8Array {
  const w = new Writer(64);
  encodeExtensions(w, exts);
  return encodeHandshake(HandshakeType.encrypted_extensions, w.finish());
}

/** §4.4.2 with an empty request context and no per-certificate extensions. */
export function encodeCertificate(chain: Uint8Array[]): Uint8Array {
  const w = new Writer(2048)
    .u8(0)
    .withLen24((w) => {
      for (const c of chain) w.vec24(c).u16(0);
    });
  return encodeHandshake(HandshakeType.certificate, w.finish());
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

export function encodeCertificateVerify(scheme: number, signature: Uint8Array): Uint8Array {
  return encodeHandshake(HandshakeType.certificate_verify, new Writer(8 + signature.length).u16(scheme).vec16(signature).finish());
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
  const ctx = Buffer.from(server ? 'TLS 1.3, server CertificateVerify' : 'TLS 1.3, client CertificateVerify', 'latin1');
  const out = new Uint8Array(64 + ctx.length + 1 + transcriptHash.length);
  out.fill(0x20, 0, 64);
  out.set(ctx, 64);
  out.set(transcriptHash, 64 + ctx.length + 1);
  return out;
}

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
