/**
 * One DNS query in, one response out, whatever carried it (UDP, TCP or DoH):
 * the zone's answer, EDNS(0) (RFC 6891), and truncation for UDP. Total: any
 * bytes give a response, a FORMERR, or nothing, never an exception.
 */
import { isEchgateError } from '../errors.js';
import { type DnsMessage, type DnsQuestion, decodeMessage, encodeFormErr, encodeResponse, RCode, RRType } from '../wire/dns/message.js';
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
}

export interface QueryOptions {
  /** Set for UDP: responses larger than the client's payload size are truncated (TC). */
  udp?: boolean;
}

export function answerQuery(zone: Zone, bytes: Uint8Array, o: QueryOptions = {}): QueryResult {
  let q: DnsMessage;
  try {
    q = decodeMessage(bytes);
  } catch (e) {
    if (isEchgateError(e)) return { status: 400, body: encodeFormErr(bytes) };
    throw e;
  }
  if (q.flags & 0x8000) return { status: 400 }; // a response, not a query: never answered
  const opts = q.additionals.filter((r) => r.type === RRType.OPT);
  const edns = opts.length > 0 ? { ednsUdpSize: EDNS_UDP_SIZE } : {};
  const reply = (rcode: number, extra: { ednsExtendedRcode?: number } = {}) => ({ status: 200 as const, body: encodeResponse(q, rcode, [], { ...edns, ...extra }), rcode });
  const opcode = (q.flags >> 11) & 0x0f;
  if (opcode !== 0) return reply(RCode.NOTIMP);
  // RFC 6891 §6.1.1: more than one OPT is FORMERR; §6.1.3: a version above 0 is BADVERS.
  if (opts.length > 1) return reply(RCode.FORMERR);
  if (opts.length === 1 && (opts[0]!.ttl >>> 16) & 0xff) return reply(0, { ednsExtendedRcode: 1 });
  if (q.questions.length !== 1) return reply(RCode.FORMERR);
  const question = q.questions[0]!;
  const { rcode, answers, authority, authoritative } = zone.answer(question.name, question.type);
  const shape = { ...edns, authority, authoritative };
  let body = encodeResponse(q, rcode, answers, shape);
  if (o.udp) {
    const limit = opts.length ? Math.max(PLAIN_UDP_SIZE, Math.min(opts[0]!.cls, EDNS_UDP_SIZE)) : PLAIN_UDP_SIZE;
    if (body.length > limit) body = encodeResponse(q, rcode, answers, { ...shape, truncated: true });
  }
  const ttl = answers.length ? Math.min(...answers.map((a) => a.ttl)) : 60;
  return { status: 200, body, ttl, question, rcode };
}
