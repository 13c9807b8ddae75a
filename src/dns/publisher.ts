/**
 * Publishing ECH keys in an existing DNS: an RFC 2136 UPDATE to the zone's
 * primary, signed with TSIG (RFC 8945), that replaces the name's HTTPS RRset
 * in one message; then a read-back over DoH (RFC 8484) until what resolvers
 * see carries exactly the published ECHConfigList. A rotation step is only
 * trusted after the read-back matches.
 */
import net from 'node:net';
import { equal } from '../bytes/util.js';
import { EchgateError } from '../errors.js';
import { answerMismatch, DnsClass, decodeMessage, RCode, RRType, rcodeName } from '../wire/dns/message.js';
import { decodeSvcb, httpsServiceRdata, SvcParamKey } from '../wire/dns/svcb.js';
import { signRequest, type TsigHmac, type TsigKey, tsigErrorName, verifyResponse } from '../wire/dns/tsig.js';
import { nodeProvider } from '../crypto/node.js';
import { encodeUpdate, OPCODE_UPDATE } from '../wire/dns/update.js';
import { decodeTxtStrings } from '../wire/tls/esni.js';
import { DOH_TIMEOUT_MS } from './doh-client.js';
import { DohResolver } from './resolver.js';
import { randomInt } from 'node:crypto';

export interface UpdateServer {
  host: string;
  port: number;
  zone: string;
  /** Without a key the update goes unsigned (only for servers that allow that by address). */
  key?: TsigKey;
  timeoutMs?: number;
}

/** The default overall deadline of one UPDATE exchange: connect, send, and the whole answer. */
export const UPDATE_TIMEOUT_MS = 5000;

/**
 * One DNS message over TCP (RFC 1035 §4.2.2: two-byte length prefix) and its
 * one response, within `timeoutMs` overall (ERR_DNS_TIMEOUT): a server that
 * sends a byte now and then cannot hold us longer than that.
 */
export function exchangeTcp(host: string, port: number, msg: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let buf: Buffer = Buffer.alloc(0);
    const fail = (e: Error) => {
      clearTimeout(deadline);
      sock.destroy();
      reject(e);
    };
    const deadline = setTimeout(() => fail(new EchgateError('ERR_DNS_TIMEOUT', `no complete answer from ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    sock.once('error', (e) => fail(new EchgateError('ERR_DNS_UPDATE', `${host}:${port}: ${e.message}`, { cause: e })));
    sock.once('connect', () => {
      const framed = Buffer.allocUnsafe(2 + msg.length);
      framed.writeUInt16BE(msg.length, 0);
      framed.set(msg, 2);
      sock.write(framed);
    });
    sock.on('data', (c: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        clearTimeout(deadline);
        sock.destroy();
        resolve(new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      }
    });
    sock.once('end', () => {
      if (!sock.destroyed) fail(new EchgateError('ERR_DNS_UPDATE', `${host}:${port} closed the connection after ${buf.length} bytes`));
    });
  });
}

export interface HttpsPublication {
  /** Owner name of the HTTPS record (the service name clients look up). */
  name: string;
  ttl: number;
  echConfigList: Uint8Array;
  alpn?: string[];
  port?: number;
  /**
   * ESNI (draft-ietf-tls-esni-02, experimental): replace the `_esni.NAME` TXT
   * RRset in the same UPDATE with these base64 ESNIKeys records (none: delete it).
   */
  esni?: { records: string[]; ttl: number };
}

/** TXT RDATA: `text` in character-strings of at most 255 octets (RFC 1035 §3.3.14; draft-esni-02 §4). */
function txtRdata(text: string): Uint8Array {
  const parts = text.match(/.{1,255}/g) ?? [];
  const out = new Uint8Array(text.length + parts.length);
  let at = 0;
  for (const part of parts) {
    out[at++] = part.length;
    for (let i = 0; i < part.length; i++) out[at++] = part.charCodeAt(i);
  }
  return out;
}

/**
 * Replace the HTTPS RRset at `p.name` with one ServiceMode record carrying
 * ech=. Delete and add travel in one UPDATE, which the primary applies
 * atomically (RFC 2136 §3.4): resolvers never see the name without a record.
 */
/** TSIG's HMAC (RFC 8945 §4.3.3) comes from the crypto provider: wire/dns/tsig.ts does no crypto itself. */
const tsigHmac: TsigHmac = nodeProvider.hmac;

export async function publishHttps(s: UpdateServer, p: HttpsPublication): Promise<void> {
  const id = randomInt(0, 0x10000);
  const msg = encodeUpdate({
    id,
    zone: s.zone,
    deleteRRsets: [{ name: p.name, type: RRType.HTTPS }, ...(p.esni ? [{ name: `_esni.${p.name}`, type: RRType.TXT }] : [])],
    add: [
      { name: p.name, type: RRType.HTTPS, ttl: p.ttl, rdata: httpsServiceRdata({ alpn: p.alpn, port: p.port, ech: p.echConfigList }) },
      ...(p.esni?.records.map((r) => ({ name: `_esni.${p.name}`, type: RRType.TXT, ttl: p.esni!.ttl, rdata: txtRdata(r) })) ?? []),
    ],
  });
  const req = s.key ? signRequest(msg, s.key, tsigHmac) : undefined;
  const resp = await exchangeTcp(s.host, s.port, req?.message ?? msg, s.timeoutMs ?? UPDATE_TIMEOUT_MS);
  const m = decodeMessage(resp);
  // RFC 2136 §3.8: the answer carries our id and opcode UPDATE; its zone section, when present, is ours.
  const wrong = answerMismatch({ id, opcode: OPCODE_UPDATE, question: { name: s.zone, type: RRType.SOA, cls: DnsClass.IN }, questionOptional: true }, m);
  if (wrong) throw new EchgateError('ERR_DNS_MISMATCH', `the answer from ${s.host}:${s.port} does not belong to our update: ${wrong}`);
  if (req && s.key) {
    const check = verifyResponse(resp, req, s.key, tsigHmac);
    if (check.signed && check.tsigError) throw new EchgateError('ERR_DNS_UPDATE', `update refused: ${rcodeName(m.rcode)} (${tsigErrorName(check.tsigError)}): the server does not accept key "${s.key.name}"`);
    // RFC 8945 §5.3.2: only a key/signature failure may come back unsigned.
    if (!check.signed && m.rcode === RCode.NOERROR) throw new EchgateError('ERR_TSIG', 'the server accepted the update but did not sign its answer');
  }
  if (m.rcode !== RCode.NOERROR) throw new EchgateError('ERR_DNS_UPDATE', `update refused: ${rcodeName(m.rcode)} for ${p.name} in zone ${s.zone}`);
}

export interface ReadBackOptions {
  ca?: string;
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * Ask `qname`/`type` over DoH until `check` accepts the answer (it returns
 * true, or what it saw instead), within the overall deadline; throws
 * ERR_DNS_READBACK with what was seen last.
 */
async function pollOverDoh(
  dohUrl: string,
  qname: string,
  type: number,
  typeName: string,
  check: (m: Awaited<ReturnType<DohResolver['query']>>) => true | string,
  wanted: string,
  o: ReadBackOptions,
): Promise<{ attempts: number }> {
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  let attempts = 0;
  let seen = 'nothing yet';
  const resolver = new DohResolver(dohUrl, { ca: o.ca });
  for (;;) {
    attempts++;
    try {
      // Each query within what is left of the overall read-back deadline (and at most DOH_TIMEOUT_MS).
      // fresh: the read-back polls for a change, so a cached answer would hide it.
      const r = check(await resolver.query(qname, type, { fresh: true, timeoutMs: Math.max(1, Math.min(DOH_TIMEOUT_MS, deadline - Date.now())) }));
      if (r === true) return { attempts };
      seen = r;
    } catch (e) {
      seen = (e as Error).message;
    }
    if (Date.now() >= deadline) throw new EchgateError('ERR_DNS_READBACK', `${qname} ${typeName} over ${dohUrl} does not ${wanted} after ${attempts} attempt(s): ${seen}`);
    await new Promise((r) => setTimeout(r, Math.min(o.intervalMs ?? 1000, Math.max(0, deadline - Date.now()))));
  }
}

/**
 * Ask over DoH until the HTTPS record at `name` carries exactly `expected`
 * as its ech= value; throws ERR_DNS_READBACK with what was seen last.
 */
export function readBackEch(dohUrl: string, name: string, expected: Uint8Array, o: ReadBackOptions = {}): Promise<{ attempts: number }> {
  return pollOverDoh(
    dohUrl,
    name,
    RRType.HTTPS,
    'HTTPS',
    (m) => {
      const lists = m.answers.filter((a) => a.type === RRType.HTTPS).map((a) => decodeSvcb(a.rdata).params.get(SvcParamKey.ech));
      if (lists.some((l) => l && equal(l, expected))) return true;
      return lists.length ? `${lists.length} HTTPS record(s) with other ech= values` : `${rcodeName(m.rcode)} with no HTTPS record`;
    },
    'carry the published ECHConfigList',
    o,
  );
}

/**
 * ESNI (draft-ietf-tls-esni-02 §4, experimental): ask over DoH until the
 * `_esni.NAME` TXT RRset holds exactly `expected` (base64 ESNIKeys records,
 * in any order; none: no TXT record at all), as readBackEch does for the
 * HTTPS record. Throws ERR_DNS_READBACK with what was seen last.
 */
export function readBackEsni(dohUrl: string, name: string, expected: readonly string[], o: ReadBackOptions = {}): Promise<{ attempts: number }> {
  const want = [...expected].sort();
  const text = (rdata: Uint8Array) => {
    try {
      return decodeTxtStrings(rdata).join(''); // RFC 1035 §3.3.14: the character-strings, joined
    } catch {
      return '(malformed TXT)';
    }
  };
  return pollOverDoh(
    dohUrl,
    `_esni.${name}`,
    RRType.TXT,
    'TXT',
    (m) => {
      const got = m.answers
        .filter((a) => a.type === RRType.TXT)
        .map((a) => text(a.rdata))
        .sort();
      if (got.length === want.length && got.every((g, i) => g === want[i])) return true;
      return got.length ? `${got.length} TXT record(s), ${got.filter((g) => want.includes(g)).length} of them expected` : `${rcodeName(m.rcode)} with no TXT record`;
    },
    `hold the ${want.length} published ESNIKeys record(s)`,
    o,
  );
}
