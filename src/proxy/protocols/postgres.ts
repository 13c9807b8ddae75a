/**
 * PostgreSQL's TLS preamble (protocol 3.0, "Message Flow" / "SSL Session
 * Encryption" and "Message Formats" in the PostgreSQL documentation, chapter 55):
 *
 *   client → Int32 8, Int32 80877103       SSLRequest
 *   server → 'S'                           go ahead: the client's ClientHello follows
 *          | 'N'                           no TLS: the client may go on in cleartext
 *
 * The first message of a connection is one of these "startup packets": an
 * Int32 length that counts itself, then an Int32 code. Codes other than a
 * protocol version are the special requests: SSLRequest 80877103,
 * GSSENCRequest 80877104, CancelRequest 80877102 (then Int32 process id and
 * Int32 secret key). A StartupMessage carries the protocol version
 * (3.0 = 196608) and the session parameters. PostgreSQL 17 adds direct TLS
 * (sslnegotiation=direct): the ClientHello comes first, with ALPN "postgresql".
 *
 * Only messages here, no I/O: proxy/preamble.ts does the rest.
 */
import type { BackendStep, ClientStep, PreambleProtocol } from '../preamble.js';

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** Protocol 3.0: major 3 in the high 16 bits, minor in the low ones. */
const PROTOCOL_MAJOR_3 = 3;
/** The server's limit on a startup packet (src/include/libpq/pqcomm.h MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET = 10_000;
/** The first byte of a TLS handshake record: a direct-TLS client (RFC 8446 §5.1, ContentType handshake). */
const TLS_HANDSHAKE = 0x16;

function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** An 8-byte special request (SSLRequest, GSSENCRequest). */
export function specialRequest(code: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, 8);
  v.setUint32(4, code);
  return b;
}

export const SSL_REQUEST = specialRequest(SSL_REQUEST_CODE);

/**
 * ErrorResponse ('E'): severity FATAL, the SQLSTATE and the message, each a
 * field type byte and a NUL-terminated string, the list ending in a NUL.
 * 28000 is invalid_authorization_specification, what the server itself
 * answers when pg_hba.conf has no line for a cleartext connection;
 * 08P01 is protocol_violation.
 */
export function errorResponse(message: string, sqlstate = '28000'): Uint8Array {
  const enc = new TextEncoder();
  const fields = [
    ['S', 'FATAL'],
    ['V', 'FATAL'],
    ['C', sqlstate],
    ['M', message],
  ].map(([t, v]) => enc.encode(`${t}${v}\0`));
  const body = fields.reduce((n, f) => n + f.length, 0) + 1;
  const out = new Uint8Array(1 + 4 + body);
  out[0] = 0x45; // 'E'
  new DataView(out.buffer).setUint32(1, 4 + body);
  let at = 5;
  for (const f of fields) {
    out.set(f, at);
    at += f.length;
  }
  out[at] = 0;
  return out;
}

const ANSWER_S = Uint8Array.of(0x53);
const ANSWER_N = Uint8Array.of(0x4e);

export const TLS_REQUIRED = 'TLS required: this echgate entrypoint routes PostgreSQL by the server name in the TLS handshake (connect with sslmode=require or stronger)';

function clientReader(): { step(buf: Uint8Array): ClientStep } {
  let gssAnswered = false;
  return {
    step(buf) {
      if (buf.length === 0) return { kind: 'more' };
      if (buf[0] === TLS_HANDSHAKE) return { kind: 'direct' };
      if (buf.length < 8) return { kind: 'more' };
      const len = u32(buf, 0);
      const code = u32(buf, 4);
      // The server's own check (postmaster ProcessStartupPacket): a length outside this range is not a startup packet.
      if (len < 8 || len > MAX_STARTUP_PACKET) return { kind: 'refuse', why: `startup packet length ${len} (8..${MAX_STARTUP_PACKET})`, reply: errorResponse('invalid length of startup packet', '08P01') };
      if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
        const what = code === SSL_REQUEST_CODE ? 'SSLRequest' : 'GSSENCRequest';
        if (len !== 8) return { kind: 'refuse', why: `${what} with length ${len} (must be 8)`, reply: errorResponse(`invalid length of ${what}`, '08P01') };
        // Bytes sent before the answer would be taken as part of the encrypted session by a
        // careless server (CVE-2021-23214): the client must wait for 'S'/'N'. Refused, as the server does.
        if (buf.length > 8) return { kind: 'refuse', why: `${buf.length - 8} bytes after the ${what} before its answer`, reply: errorResponse(`received unencrypted data after ${what}`, '08P01') };
        if (code === SSL_REQUEST_CODE) return { kind: 'tls', consumed: 8, reply: ANSWER_S };
        // GSSAPI encryption is not routable (no name in the clear): 'N', then the client may send SSLRequest.
        if (gssAnswered) return { kind: 'refuse', why: 'second GSSENCRequest', reply: errorResponse('duplicate GSSENCRequest', '08P01') };
        gssAnswered = true;
        return { kind: 'answer', consumed: 8, reply: ANSWER_N };
      }
      if (code === CANCEL_REQUEST_CODE) {
        if (len !== 16) return { kind: 'refuse', why: `CancelRequest with length ${len} (must be 16)`, reply: errorResponse('invalid length of CancelRequest', '08P01') };
        if (buf.length < 16) return { kind: 'more' };
        if (buf.length > 16) return { kind: 'refuse', why: 'bytes after the CancelRequest', reply: errorResponse('unexpected data after CancelRequest', '08P01') };
        return { kind: 'forward' };
      }
      if (code >>> 16 === PROTOCOL_MAJOR_3) {
        if (buf.length < len) return { kind: 'more' };
        return { kind: 'plain', refusal: errorResponse(TLS_REQUIRED) };
      }
      return { kind: 'refuse', why: `startup code ${code} (not protocol 3.x nor a known request)`, reply: errorResponse('unsupported frontend protocol', '0A000') };
    },
  };
}

export const postgres: PreambleProtocol = {
  name: 'postgres',
  client: clientReader,
  backendRequest: SSL_REQUEST,
  backendReply(buf): BackendStep {
    if (buf.length === 0) return { kind: 'more' };
    const a = buf[0];
    if (a === 0x53) {
      // The server waits for our ClientHello after 'S'; anything more was sent before TLS
      // and must not be trusted as part of the session (CVE-2021-23222, the client-side twin).
      if (buf.length > 1) return { kind: 'refuse', why: `${buf.length - 1} bytes after the backend's 'S'` };
      return { kind: 'ok' };
    }
    if (a === 0x4e) return { kind: 'refuse', why: "the backend answered 'N' to SSLRequest: it has ssl = off" };
    if (a === 0x45) return { kind: 'refuse', why: 'the backend answered SSLRequest with an ErrorResponse (a server older than 7.0, or out of connections)' };
    return { kind: 'refuse', why: `the backend answered SSLRequest with byte 0x${a!.toString(16).padStart(2, '0')}, not 'S' or 'N'` };
  },
  refusal: (message) => errorResponse(message),
};
