/**
 * TSIG (RFC 8945): HMAC signatures on DNS messages with a shared key, as
 * BIND's nsupdate makes them. Requests are signed (§4.3.3); responses are
 * verified against the request's MAC (§5.3) before their rcode is believed.
 * Keys come from BIND key files (`key "name" { algorithm ...; secret "..."; };`).
 * wire/ does no crypto: the HMAC is passed in (dns/publisher.ts passes the
 * crypto provider's `hmac`).
 */
import { Reader } from '../../bytes/reader.js';
import { ctEqual } from '../../bytes/util.js';
import { Writer } from '../../bytes/writer.js';
import { EchgateError } from '../../errors.js';
import { DnsClass, decodeMessage, RRType } from './message.js';
import { encodeName, readUncompressedName } from './name.js';

const ALGORITHMS = { 'hmac-sha256': 'sha256', 'hmac-sha384': 'sha384', 'hmac-sha512': 'sha512' } as const;
export type TsigAlgorithm = keyof typeof ALGORITHMS;

/** TSIG error codes (RFC 8945 §3, IANA "DNS RCODEs"). */
export const TsigError = { BADSIG: 16, BADKEY: 17, BADTIME: 18, BADTRUNC: 22 } as const;
const TSIG_ERROR_NAMES = new Map<number, string>(Object.entries(TsigError).map(([k, v]) => [v, k]));
export const tsigErrorName = (e: number) => TSIG_ERROR_NAMES.get(e) ?? `TSIG error ${e}`;

/** HMAC over the concatenation of `data` (the shape of CryptoProvider.hmac). */
export type TsigHmac = (hash: 'sha256' | 'sha384' | 'sha512', key: Uint8Array, ...data: Uint8Array[]) => Uint8Array;

export interface TsigKey {
  name: string;
  algorithm: TsigAlgorithm;
  secret: Uint8Array;
}

const bad = (msg: string) => new EchgateError('ERR_TSIG', msg);

/** A BIND key file (as `tsig-keygen` writes it). The secret is never put in an error message. */
export function parseTsigKeyFile(text: string): TsigKey {
  const m = /key\s+"?([A-Za-z0-9._-]+)"?\s*\{([^}]*)\}/.exec(text);
  if (!m) throw bad('no key "NAME" { ... } block in the TSIG key file');
  const alg = /algorithm\s+"?([A-Za-z0-9-]+)"?\s*;/.exec(m[2]!)?.[1]?.toLowerCase();
  const secret = /secret\s+"([A-Za-z0-9+/=]+)"\s*;/.exec(m[2]!)?.[1];
  if (!alg || !(alg in ALGORITHMS)) throw bad(`TSIG algorithm ${alg ?? '(none)'} is not one of ${Object.keys(ALGORITHMS).join(', ')}`);
  if (!secret) throw bad('the TSIG key file has no base64 secret');
  const bytes = new Uint8Array(Buffer.from(secret, 'base64'));
  if (bytes.length === 0) throw bad('the TSIG secret is empty');
  return { name: m[1]!.toLowerCase().replace(/\.$/, ''), algorithm: alg as TsigAlgorithm, secret: bytes };
}

interface TsigFields {
  algorithm: string;
  timeSigned: number;
  fudge: number;
  error: number;
  other: Uint8Array;
}

/** The TSIG variables of §4.3.3, in canonical (lower-case, uncompressed) form. */
function variables(keyName: string, f: TsigFields): Uint8Array {
  return new Writer(128)
    .bytes(encodeName(keyName.toLowerCase()))
    .u16(DnsClass.ANY)
    .u32(0)
    .bytes(encodeName(f.algorithm.toLowerCase()))
    .u16(Math.floor(f.timeSigned / 2 ** 32))
    .u32(f.timeSigned % 2 ** 32)
    .u16(f.fudge)
    .u16(f.error)
    .vec16(f.other)
    .finish();
}

function mac(hmac: TsigHmac, key: TsigKey, ...parts: Uint8Array[]): Uint8Array {
  return hmac(ALGORITHMS[key.algorithm], key.secret, ...parts);
}

export interface SignedRequest {
  message: Uint8Array;
  /** The request MAC: the response's MAC covers it (§5.3). */
  mac: Uint8Array;
  id: number;
}

/** Append a TSIG record to `msg` (which has no additional records of its own counted after it). */
export function signRequest(msg: Uint8Array, key: TsigKey, hmac: TsigHmac, o: { now?: number; fudge?: number } = {}): SignedRequest {
  const f: TsigFields = { algorithm: key.algorithm, timeSigned: Math.floor((o.now ?? Date.now()) / 1000), fudge: o.fudge ?? 300, error: 0, other: new Uint8Array(0) };
  const m = mac(hmac, key, msg, variables(key.name, f));
  const id = (msg[0]! << 8) | msg[1]!;
  const rdata = new Writer(128)
    .bytes(encodeName(f.algorithm))
    .u16(Math.floor(f.timeSigned / 2 ** 32))
    .u32(f.timeSigned % 2 ** 32)
    .u16(f.fudge)
    .vec16(m)
    .u16(id)
    .u16(f.error)
    .vec16(f.other)
    .finish();
  const rr = new Writer(64 + rdata.length).bytes(encodeName(key.name)).u16(RRType.TSIG).u16(DnsClass.ANY).u32(0).vec16(rdata).finish();
  const out = new Uint8Array(msg.length + rr.length);
  out.set(msg);
  out.set(rr, msg.length);
  const arcount = ((msg[10]! << 8) | msg[11]!) + 1;
  out[10] = arcount >> 8;
  out[11] = arcount & 0xff;
  return { message: out, mac: m, id };
}

export type ResponseCheck =
  | { signed: true; tsigError: number }
  | { signed: false };

/**
 * Verify the TSIG on a response to `req` (§5.3). Returns whether it was
 * signed and the TSIG error it carries; throws ERR_TSIG for a MAC that does
 * not verify, a wrong key or algorithm, or a time outside the fudge. An
 * unsigned response is reported, not trusted: the caller decides (§5.3.2
 * allows unsigned BADKEY/BADSIG answers, nothing else).
 */
export function verifyResponse(resp: Uint8Array, req: SignedRequest, key: TsigKey, hmac: TsigHmac, now = Date.now()): ResponseCheck {
  const m = decodeMessage(resp);
  const last = m.additionals.at(-1);
  if (!last || last.type !== RRType.TSIG) return { signed: false };
  if (m.additionals.some((r, i) => r.type === RRType.TSIG && i !== m.additionals.length - 1)) throw bad('TSIG record is not the last one (RFC 8945 §5.1)');
  if (last.name.toLowerCase().replace(/\.$/, '') !== key.name) throw bad(`response signed with key ${last.name}, not ${key.name}`);
  const r = new Reader(last.rdata);
  const algorithm = readUncompressedName(r).toLowerCase();
  const timeSigned = r.u16() * 2 ** 32 + r.u32();
  const fudge = r.u16();
  const theirMac = r.vec16('MAC');
  const originalId = r.u16();
  const error = r.u16();
  const other = r.vec16('other data');
  r.expectEnd('TSIG RDATA');
  if (algorithm !== key.algorithm) throw bad(`response uses TSIG algorithm ${algorithm}, not ${key.algorithm}`);
  // §5.3.2: BADSIG/BADKEY answers carry an empty MAC; report the error as given.
  if (theirMac.length === 0 && error !== 0) return { signed: true, tsigError: error };
  // The signed bytes: the message up to the TSIG record, with ARCOUNT one less and the original id (§4.3.1).
  const body = new Uint8Array(resp.subarray(0, last.offset));
  const arcount = m.additionals.length - 1;
  body[0] = originalId >> 8;
  body[1] = originalId & 0xff;
  body[10] = arcount >> 8;
  body[11] = arcount & 0xff;
  const reqMac = new Writer(2 + req.mac.length).vec16(req.mac).finish();
  const expected = mac(hmac, key, reqMac, body, variables(key.name, { algorithm, timeSigned, fudge, error, other }));
  if (!ctEqual(expected, theirMac)) throw bad('response TSIG MAC does not verify');
  if (Math.abs(now / 1000 - timeSigned) > fudge) throw bad(`response TSIG time ${timeSigned} is outside the fudge of ${fudge} s`);
  return { signed: true, tsigError: error };
}
