/** Handshake message framing (RFC 8446 §4): msg_type u8, length u24, body. */
import { Reader } from '../../bytes/reader.js';
import { EchgateError } from '../../errors.js';

export interface HandshakeMessage {
  type: number;
  body: Uint8Array;
}

export function decodeHandshake(message: Uint8Array): HandshakeMessage {
  const r = new Reader(message);
  const type = r.u8('handshake type');
  const body = r.vec24('handshake body');
  r.expectEnd('handshake message');
  return { type, body };
}

export function encodeHandshake(type: number, body: Uint8Array): Uint8Array {
  if (body.length > 0xffffff) throw new EchgateError('ERR_ENCODE', 'handshake body too long');
  const out = new Uint8Array(4 + body.length);
  out[0] = type;
  out[1] = body.length >>> 16;
  out[2] = (body.length >>> 8) & 0xff;
  out[3] = body.length & 0xff;
  out.set(body, 4);
  return out;
}
