/**
 * One DNS query in, one response out, whatever carried it (UDP, TCP or DoH):
 * the zone's answer, EDNS(0) (RFC 6891), and truncation for UDP. Total: any
 * bytes give a response, a FORMERR, or nothing, never an exception.
 */
import { isEchgateError } from '../errors.js';
import { type AnswerRecord, DnsClass, type DnsMessage, type DnsQuestion, decodeMessage, encodeFormErr, encodeResponse, RCode, type ResponseOptions, RRType } from '../wire/dns/message.js';
import { cachedAnswer, probe, rememberAnswer } from './answer-cache.js';
import type { Zone } from './zone.js';

/** The UDP payload size we advertise and accept (the DNS flag day 2020 value: no IP fragmentation). */
export const EDNS_UDP_SIZE = 1232;
/** RFC 1035 §4.2.1: without EDNS a UDP response is at most 512 octets. */
const PLAIN_UDP_SIZE = 512;

export interface QueryResult {
  /** 200: `body` is the response. 400: the bytes are not a query we can decode; `body` is a FORMERR when the header was readable. */
  status: 200 | 400;
  body?: Uint8Array;
  /** Cache lifetime for DoH (RFC 8484 §5.1): the smallest answer TTL. */
  ttl?: number;
  question?: DnsQuestion;
  rcode?: number;
  /** The zone's answer changes with the clock (zone.ts ZoneAnswer.timeDependent): not for the answer cache. */
  timeDependent?: boolean;
}

export interface QueryOptions {
  /** Set for UDP: responses larger than the client's payload size are truncated (TC). */
  udp?: boolean;
  /**
   * The caller is done with `body` before it answers another query and does
   * not keep it (a UDP send that went out at once, TCP's copy into its
   * frame): a cached response may then be returned as the cache's own octets,
   * patched for this query, instead of a copy (answer-cache.ts `cachedAnswer`).
   */
  shared?: boolean;
  /**
   * The caller keeps `body` past later queries and never changes it (DoH:
   * the write holds it until HTTP/2 sends it): a cached response whose ID and
   * RD already fit may be returned as the cache's own octets
   * (answer-cache.ts `cachedAnswer`).
   */
  held?: boolean;
}

/** RFC 1035 §4.2.2: a TCP (and DoH) message is at most 65,535 octets. */
const MAX_MESSAGE = 65535;

/**
 * The largest response this client may get: for UDP the payload size it
 * advertised in its OPT (RFC 6891 §6.2.5, never below 512 nor above ours),
 * else 512 (RFC 1035 §4.2.1); over TCP and DoH what the length field holds.
 */
function responseLimit(opt: DnsMessage['additionals'][number] | undefined, udp: boolean): number {
  if (!udp) return MAX_MESSAGE;
  return opt ? Math.max(PLAIN_UDP_SIZE, Math.min(opt.cls, EDNS_UDP_SIZE)) : PLAIN_UDP_SIZE;
}

export function answerQuery(zone: Zone, bytes: Uint8Array, o: QueryOptions = {}): QueryResult {
  // The common shape of query is answered from the zone's cache of encoded responses (answer-cache.ts).
  const udp = o.udp === true;
  const held = o.held === true;
  const hash = probe(bytes, udp, held);
  if (hash < 0) return answerFully(zone, bytes, o);
  const hit = cachedAnswer(zone, hash, bytes, o.shared === true, held);
  if (hit) return hit;
  const r = answerFully(zone, bytes, o);
  if (r.status === 200 && r.body && r.question && r.ttl !== undefined && !r.timeDependent) rememberAnswer(zone, bytes, udp, { status: 200, body: r.body, ttl: r.ttl, question: r.question, rcode: r.rcode! }, held);
  return r;
}

function answerFully(zone: Zone, bytes: Uint8Array, o: QueryOptions): QueryResult {
  let decoded: DnsMessage;
  try {
    decoded = decodeMessage(bytes);
  } catch (e) {
    if (isEchgateError(e)) return { status: 400, body: encodeFormErr(bytes) };
    throw e;
  }
  if (decoded.flags & 0x8000) return { status: 400 }; // a response, not a query: never answered
  // Error replies are shaped as BIND 9 shapes them, and are never larger than the query that drew them:
  // QDCOUNT other than one (RFC 9619) is FORMERR with the header alone; an opcode we do not implement is
  // NOTIMP without the question; two OPTs or an EDNS version above 0 echo the one question. Echoing every
  // question, decompressed, let a small query draw a reply many times its size: an amplifier over UDP,
  // and past 65,535 octets over TCP.
  const bare: DnsMessage = { ...decoded, questions: [] };
  const opts = decoded.additionals.filter((r) => r.type === RRType.OPT);
  const limit = responseLimit(opts[0], o.udp === true);
  const edns = opts.length > 0 ? { ednsUdpSize: EDNS_UDP_SIZE } : {};
  /** Encode, and when the result is larger than this client may get, set TC and drop the records (RFC 2181 §9). */
  const fit = (q: DnsMessage, rcode: number, answers: AnswerRecord[], shape: ResponseOptions): Uint8Array => {
    const body = encodeResponse(q, rcode, answers, shape);
    return body.length <= limit ? body : encodeResponse(q, rcode, answers, { ...shape, truncated: true });
  };
  const reply = (q: DnsMessage, rcode: number, extra: ResponseOptions = {}) => ({ status: 200 as const, body: fit(q, rcode, [], { authoritative: false, ...extra }), rcode });
  if (decoded.questions.length !== 1) return reply(bare, RCode.FORMERR);
  const q = decoded;
  const opcode = (q.flags >> 11) & 0x0f;
  if (opcode !== 0) return reply(bare, RCode.NOTIMP, edns);
  // RFC 6891 §6.1.1: more than one OPT is FORMERR; §6.1.3: a version above 0 is BADVERS.
  if (opts.length > 1) return reply(q, RCode.FORMERR);
  if (opts.length === 1 && (opts[0]!.ttl >>> 16) & 0xff) return reply(q, 0, { ...edns, ednsExtendedRcode: 1 });
  const question = q.questions[0]!;
  // Only class IN is served. BIND 9 answers a question in another class it holds no zone for
  // (CH, HS, ANY) with REFUSED and no AA bit; so do we (docs/configuration.md, DNS hardening).
  if (question.cls !== DnsClass.IN) return reply(q, RCode.REFUSED, edns);
  const { rcode, answers, authority, authoritative, timeDependent } = zone.answer(question.name, question.type);
  const body = fit(q, rcode, answers, { ...edns, authority, authoritative });
  const ttl = answers.length ? Math.min(...answers.map((a) => a.ttl)) : 60;
  return { status: 200, body, ttl, question, rcode, timeDependent };
}
