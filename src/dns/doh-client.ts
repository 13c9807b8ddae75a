/**
 * DNS-over-HTTPS client (RFC 8484) on undici: GET with ?dns= (base64url,
 * unpadded) or POST with an application/dns-message body, id 0, a size cap and
 * an overall deadline; the answer must echo id 0 and the question (RFC 8484 §4.1). HTTPS/SVCB answers are decoded with their ech= SvcParam.
 */
import { Agent, request } from 'undici';
import { EchgateError } from '../errors.js';
import { decodeECHConfigList } from '../wire/ech/config.js';
import { answerMismatch, DnsClass, type DnsMessage, decodeMessage, encodeQuery, RRType, typeName } from '../wire/dns/message.js';
import { decodeName } from '../wire/dns/name.js';
import { decodeSvcb, formatSvcb, SvcParamKey } from '../wire/dns/svcb.js';

/** RFC 8484 §6 suggests nothing larger than a DNS message can be (64 KiB). */
const MAX_RESPONSE = 65535;
/** The default overall deadline of one DoH query: connect, TLS, request, and the whole answer. */
export const DOH_TIMEOUT_MS = 5000;

export interface DohOptions {
  /** PEM CA for a private DoH server (tests, local resolvers). */
  ca?: string;
  method?: 'GET' | 'POST';
  /**
   * The overall deadline (default DOH_TIMEOUT_MS): the query fails with
   * ERR_DNS_TIMEOUT when the whole answer is not in by then, however the
   * server paces its bytes.
   */
  timeoutMs?: number;
}

/**
 * What the HTTP layer says about how long the answer may be reused (RFC 8484
 * §5.1, RFC 9111 §5.2.2): max-age in seconds, or noStore for no-store /
 * no-cache (we do not revalidate, so no-cache means "do not reuse").
 */
export interface HttpFreshness {
  maxAge?: number;
  noStore: boolean;
}

export function parseCacheControl(header: string | string[] | undefined): HttpFreshness {
  const out: HttpFreshness = { noStore: false };
  for (const part of (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',')) {
    const [k, v] = part.trim().toLowerCase().split('=', 2) as [string, string | undefined];
    if (k === 'no-store' || k === 'no-cache') out.noStore = true;
    else if (k === 'max-age') {
      const n = /^"?(\d{1,10})"?$/.exec(v ?? '');
      // RFC 9111 §1.2.2: an invalid delta-seconds is treated as stale (0).
      out.maxAge = Math.min(out.maxAge ?? Number.POSITIVE_INFINITY, n ? Number(n[1]) : 0);
    }
  }
  return out;
}

export async function dohQuery(url: string, name: string, type: number, o: DohOptions = {}): Promise<DnsMessage & { raw: Uint8Array; http: HttpFreshness }> {
  // RFC 8484 §4.1: id 0 in every request, so answers stay cacheable; the answer must carry it back.
  const query = encodeQuery(name, type, { id: 0, udpSize: 1232 });
  const timeoutMs = o.timeoutMs ?? DOH_TIMEOUT_MS;
  // allowH2: RFC 8484 §5.2 names HTTP/2 as the minimum; BIND 9.18 speaks nothing else.
  const dispatcher = new Agent({ allowH2: true, connect: o.ca ? { ca: o.ca, timeout: timeoutMs } : { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  // undici's timeouts above are per stage and reset by every chunk; this one is not.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new EchgateError('ERR_DNS_TIMEOUT', `DoH query ${name} to ${url}: no complete answer within ${timeoutMs} ms`)), timeoutMs);
  try {
    const method = o.method ?? 'GET';
    const target = method === 'GET' ? `${url}${url.includes('?') ? '&' : '?'}dns=${Buffer.from(query).toString('base64url')}` : url;
    const res = await request(target, {
      method,
      dispatcher,
      signal: abort.signal,
      headers: {
        accept: 'application/dns-message',
        // BIND 9.18 answers 400 to a POST without content-length (shared notes).
        ...(method === 'POST' ? { 'content-type': 'application/dns-message', 'content-length': String(query.length) } : {}),
      },
      body: method === 'POST' ? Buffer.from(query) : undefined,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body) {
      size += c.length;
      if (size > MAX_RESPONSE) throw new EchgateError('ERR_LIMIT', 'DoH response larger than a DNS message can be');
      chunks.push(c);
    }
    if (res.statusCode !== 200) throw new EchgateError('ERR_DECODE', `DoH server answered HTTP ${res.statusCode}`);
    const ct = String(res.headers['content-type'] ?? '');
    if (!ct.startsWith('application/dns-message')) throw new EchgateError('ERR_DECODE', `DoH content-type ${ct}`);
    const raw = new Uint8Array(Buffer.concat(chunks));
    const m = decodeMessage(raw);
    const wrong = answerMismatch({ id: 0, opcode: 0, question: { name, type, cls: DnsClass.IN } }, m);
    if (wrong) throw new EchgateError('ERR_DNS_MISMATCH', `DoH answer from ${url} is not the answer to ${name}: ${wrong}`);
    return { ...m, raw, http: parseCacheControl(res.headers['cache-control']) };
  } catch (e) {
    if (abort.signal.aborted) throw abort.signal.reason;
    throw e;
  } finally {
    clearTimeout(timer);
    await dispatcher.destroy().catch(() => {});
  }
}

export interface ResolvedRecord {
  name: string;
  type: string;
  ttl: number;
  data: string;
  ech?: { configId: number; publicName: string; kemId: number; cipherSuites: { kdfId: number; aeadId: number }[] }[];
  echConfigList?: string;
  echError?: string;
}


/** Decode the answers into JSON-friendly records (A, AAAA, CNAME, SVCB/HTTPS with ech). */
export function describeAnswers(m: DnsMessage, msg?: Uint8Array): ResolvedRecord[] {
  return m.answers.map((rr) => {
    const type = typeName(rr.type) ?? `TYPE${rr.type}`;
    const base = { name: rr.name, type, ttl: rr.ttl };
    if (rr.type === RRType.A && rr.rdata.length === 4) return { ...base, data: Array.from(rr.rdata).join('.') };
    if (rr.type === RRType.AAAA && rr.rdata.length === 16) {
      return { ...base, data: Array.from({ length: 8 }, (_, i) => ((rr.rdata[2 * i]! << 8) | rr.rdata[2 * i + 1]!).toString(16)).join(':') };
    }
    if (rr.type === RRType.CNAME && msg) return { ...base, data: `${decodeName(msg, rr.rdataOffset).name}.` };
    if (rr.type === RRType.HTTPS || rr.type === RRType.SVCB) {
      const s = decodeSvcb(rr.rdata);
      const ech = s.params.get(SvcParamKey.ech);
      const out: ResolvedRecord = { ...base, data: formatSvcb(s) };
      if (ech) {
        out.echConfigList = Buffer.from(ech).toString('base64');
        try {
          out.ech = decodeECHConfigList(ech).flatMap((c) =>
            'cipherSuites' in c ? [{ configId: c.configId, publicName: c.publicName, kemId: c.kemId, cipherSuites: c.cipherSuites }] : [],
          );
        } catch (e) {
          // Show what DNS holds even when it is broken: that is what an operator needs to see.
          out.echError = (e as Error).message;
        }
      }
      return out;
    }
    return { ...base, data: Buffer.from(rr.rdata).toString('hex') };
  });
}
