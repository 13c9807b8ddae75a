/**
 * DNS messages (RFC 1035 §4.1) for the DoH resolver: queries out, responses
 * in. Decoding is total: counts are checked against the bytes present, names
 * may be compressed, trailing bytes are an error.
 */
import { Reader } from '../../bytes/reader.js';
import { Writer } from '../../bytes/writer.js';
import { EchgateError } from '../../errors.js';
import { decodeName, encodeName } from './name.js';

export const RRType = { A: 1, NS: 2, CNAME: 5, SOA: 6, TXT: 16, AAAA: 28, OPT: 41, SVCB: 64, HTTPS: 65, TSIG: 250, ANY: 255 } as const;
export const RCode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, YXDOMAIN: 6, YXRRSET: 7, NXRRSET: 8, NOTAUTH: 9, NOTZONE: 10 } as const;
export const DnsClass = { IN: 1, NONE: 254, ANY: 255 } as const;

const RCODE_NAMES = new Map<number, string>(Object.entries(RCode).map(([k, v]) => [v, k]));
export const rcodeName = (r: number): string => RCODE_NAMES.get(r) ?? `RCODE${r}`;

const TYPE_NAMES = new Map<number, string>(Object.entries(RRType).map(([k, v]) => [v, k]));
/** The name of a type we know, else undefined (callers choose the fallback: RFC 3597 TYPEnn, or a bounded label). */
export const typeName = (t: number): string | undefined => TYPE_NAMES.get(t);

export interface DnsQuestion {
  name: string;
  type: number;
  cls: number;
}

export interface DnsRecord {
  name: string;
  type: number;
  cls: number;
  ttl: number;
  rdata: Uint8Array;
  /** Offset of rdata in the message (names inside some rdata may point back into it). */
  rdataOffset: number;
  /** Offset of the record's first byte (its owner name) in the message: TSIG verification cuts the message there. */
  offset: number;
}

export interface DnsMessage {
  id: number;
  flags: number;
  rcode: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

export function encodeQuery(name: string, type: number, o: { id?: number; rd?: boolean; udpSize?: number } = {}): Uint8Array {
  const w = new Writer(64)
    .u16(o.id ?? 0) // RFC 8484 §4.1: 0 keeps DoH responses cacheable
    .u16(o.rd === false ? 0 : 0x0100)
    .u16(1)
    .u16(0)
    .u16(0)
    .u16(o.udpSize ? 1 : 0)
    .bytes(encodeName(name))
    .u16(type)
    .u16(1);
  // EDNS(0) OPT (RFC 6891) when a payload size is given.
  if (o.udpSize) w.u8(0).u16(RRType.OPT).u16(o.udpSize).u32(0).u16(0);
  return w.finish();
}

export function decodeMessage(msg: Uint8Array): DnsMessage {
  const r = new Reader(msg);
  const id = r.u16('id');
  const flags = r.u16('flags');
  const counts = [r.u16(), r.u16(), r.u16(), r.u16()];
  // Every question takes ≥ 5 octets and every RR ≥ 11: refuse counts the bytes cannot hold.
  if (counts[0]! * 5 + (counts[1]! + counts[2]! + counts[3]!) * 11 > msg.length - 12) {
    throw new EchgateError('ERR_DECODE', 'DNS section counts exceed the message');
  }
  let at = 12;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < counts[0]!; i++) {
    const n = decodeName(msg, at);
    const q = new Reader(msg, n.next);
    questions.push({ name: n.name, type: q.u16(), cls: q.u16() });
    at = q.offset;
  }
  const section = (count: number): DnsRecord[] => {
    const out: DnsRecord[] = [];
    for (let i = 0; i < count; i++) {
      const offset = at;
      const n = decodeName(msg, at);
      const rr = new Reader(msg, n.next);
      const type = rr.u16();
      const cls = rr.u16();
      const ttl = rr.u32();
      const len = rr.u16();
      const rdataOffset = rr.offset;
      const rdata = rr.bytes(len, 'rdata');
      out.push({ name: n.name, type, cls, ttl, rdata, rdataOffset, offset });
      at = rr.offset;
    }
    return out;
  };
  const answers = section(counts[1]!);
  const authorities = section(counts[2]!);
  const additionals = section(counts[3]!);
  if (at !== msg.length) throw new EchgateError('ERR_TRAILING', 'bytes after the last DNS record');
  return { id, flags, rcode: flags & 0x0f, questions, answers, authorities, additionals };
}

export interface AnswerRecord {
  name: string;
  type: number;
  ttl: number;
  rdata: Uint8Array;
}

export interface ResponseOptions {
  authoritative?: boolean;
  /** EDNS(0) (RFC 6891 §6.1.2): add an OPT record advertising this UDP payload size. */
  ednsUdpSize?: number;
  /** The upper 8 bits of a 12-bit EDNS rcode (RFC 6891 §6.1.3), carried in the OPT record: 1 with rcode 0 is BADVERS. */
  ednsExtendedRcode?: number;
  /** Set TC (RFC 1035 §4.1.1) and leave the answers out: the client retries over TCP. */
  truncated?: boolean;
  /** The authority section (the SOA of a negative answer, RFC 2308 §3). */
  authority?: AnswerRecord[];
}

/** An authoritative response to `query` (RFC 1035 §4.1.1): id, RD and the question echoed. */
export function encodeResponse(query: DnsMessage, rcode: number, answers: AnswerRecord[], o: ResponseOptions = {}): Uint8Array {
  const rd = query.flags & 0x0100;
  const opcode = query.flags & 0x7800;
  const tc = o.truncated ? 0x0200 : 0;
  const flags = 0x8000 | opcode | (o.authoritative === false ? 0 : 0x0400) | tc | rd | (rcode & 0x0f);
  const shown = o.truncated ? [] : answers;
  const authority = o.truncated ? [] : (o.authority ?? []);
  const w = new Writer(256).u16(query.id).u16(flags).u16(query.questions.length).u16(shown.length).u16(authority.length).u16(o.ednsUdpSize ? 1 : 0);
  for (const q of query.questions) w.bytes(encodeName(q.name || '.')).u16(q.type).u16(q.cls);
  for (const a of [...shown, ...authority]) w.bytes(encodeName(a.name || '.')).u16(a.type).u16(1).u32(a.ttl).vec16(a.rdata);
  if (o.ednsUdpSize) w.u8(0).u16(RRType.OPT).u16(o.ednsUdpSize).u32(((o.ednsExtendedRcode ?? 0) & 0xff) * 0x1000000).u16(0);
  return w.finish();
}

/**
 * FORMERR for a message whose header could be read but not the rest
 * (RFC 1035 §4.1.1): the id echoed, no sections. Undefined when even the
 * header is missing or the message is a response: those get no answer.
 */
export function encodeFormErr(msg: Uint8Array): Uint8Array | undefined {
  if (msg.length < 12 || msg[2]! & 0x80) return undefined;
  return Uint8Array.of(msg[0]!, msg[1]!, 0x80 | (msg[2]! & 0x78), RCode.FORMERR, 0, 0, 0, 0, 0, 0, 0, 0);
}

/** What an answer must echo of the query it answers. */
export interface ExpectedAnswer {
  id: number;
  opcode: number;
  /** The question (or UPDATE zone) sent. */
  question: DnsQuestion;
  /** UPDATE answers may leave the zone section out (RFC 2136 §3.8 does not require it); query answers may not. */
  questionOptional?: boolean;
}

/**
 * Why `m` is not the answer to the message described by `e`, or undefined when
 * it is: the same id, QR set, the same opcode, and the question echoed (RFC
 * 1035 §7.3, RFC 5452 §9.1: a resolver accepts only an answer whose id and
 * question match what it asked). Names compare case-insensitively.
 */
export function answerMismatch(e: ExpectedAnswer, m: DnsMessage): string | undefined {
  if (m.id !== e.id) return `id ${m.id}, expected ${e.id}`;
  if (!(m.flags & 0x8000)) return 'QR bit clear: a query, not an answer';
  const opcode = (m.flags >> 11) & 0x0f;
  if (opcode !== e.opcode) return `opcode ${opcode}, expected ${e.opcode}`;
  if (m.questions.length === 0 && e.questionOptional) return undefined;
  const q = m.questions[0];
  const norm = (n: string) => n.toLowerCase().replace(/\.$/, '');
  if (m.questions.length !== 1 || !q || norm(q.name) !== norm(e.question.name) || q.type !== e.question.type || q.cls !== e.question.cls) {
    return `question ${m.questions.map((x) => `${x.name}/${x.type}/${x.cls}`).join(', ') || '(none)'} is not ${e.question.name}/${e.question.type}/${e.question.cls}`;
  }
  return undefined;
}
