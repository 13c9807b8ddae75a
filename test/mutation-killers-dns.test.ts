/**
 * Mutation killers for src/wire/dns (eleventh session, 2026-12-03): the first
 * mutation run of the DNS codec (`npm run mutation -- wire-dns`, run q1 in
 * docs/mutation.md) left these checks on remote input without a test that
 * fails when the check is removed. Each case feeds the bad input and expects
 * the refusal (or the one exact answer), and was seen red with the mutant
 * applied by hand.
 *
 * - TSIG response verification (RFC 8945 §5.3): before this file only random
 *   bytes reached verifyResponse, which never get past the message decoder, so
 *   no check after it (MAC, key name, algorithm, time, placement) had a test.
 * - The message decoder's trailing-bytes refusal (RFC 1035 §4.1), FORMERR
 *   (§4.1.1), and the answer match of the DoH client (RFC 5452 §9.1).
 * - Names (RFC 1035 §3.1, §4.1.4, §2.3.4): compression pointers, the 255-octet
 *   and 63-octet limits, escaping.
 * - SVCB RDATA from the wire (RFC 9460 §2.2, §7): key order and value lengths.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { EchgateError } from '../src/errors.js';
import { answerMismatch, decodeMessage, encodeFormErr, encodeQuery, encodeResponse, RRType, rcodeName, typeName } from '../src/wire/dns/message.js';
import { decodeName, encodeName, readUncompressedName } from '../src/wire/dns/name.js';
import { decodeSvcb, encodeSvcb, SvcParamKey } from '../src/wire/dns/svcb.js';
import { type SignedRequest, signRequest, type TsigKey, tsigErrorName, verifyResponse } from '../src/wire/dns/tsig.js';
import { encodeUpdate } from '../src/wire/dns/update.js';
import { Reader } from '../src/bytes/reader.js';

const u16 = (n: number) => [n >> 8, n & 0xff];
const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const bytes = (...parts: (ArrayLike<number> | number)[]) => Uint8Array.from(parts.flatMap((p) => (typeof p === 'number' ? [p] : Array.from(p))));
const ascii = (s: string) => Array.from(Buffer.from(s, 'latin1'));
const decodeErr = (code: string) => (e: unknown) => e instanceof EchgateError && e.code === code;

// ---------------------------------------------------------------- TSIG (RFC 8945)

// A key name with dots: the check compares names, so a mutant that mangles dots must fail on it.
const KEY: TsigKey = { name: 'upd.example.test', algorithm: 'hmac-sha256', secret: new Uint8Array(32).fill(7) };
const NOW = 1_700_000_000_000;

interface TsigOpts {
  keyName?: string;
  /** The key name in the signed variables, when it differs from the record's owner name. */
  macKeyName?: string;
  algorithm?: string;
  /** In seconds. */
  timeSigned?: number;
  fudge?: number;
  error?: number;
  /** Replace the MAC (after computing the right one). */
  mac?: (right: Uint8Array) => Uint8Array;
  /** The response header's id (a rewritten id); the TSIG record keeps the request's. */
  headerId?: number;
  /** Additional records before the TSIG record (counted in ARCOUNT and covered by the MAC). */
  before?: Uint8Array[];
}

/** One additional record: an OPT (RFC 6891) with no options. */
const OPT_RR = bytes(0, ...u16(RRType.OPT), ...u16(1232), ...u32(0), ...u16(0));

/**
 * The server's signed answer to `req` (RFC 8945 §4.3.1, §4.3.3), computed here
 * independently of src/wire/dns/tsig.ts: HMAC(request MAC with its length,
 * the response with the original id and without the TSIG record, the TSIG
 * variables).
 */
function signedResponse(req: SignedRequest, o: TsigOpts = {}): Uint8Array {
  const base = new Uint8Array(req.message.subarray(0, req.message.length));
  // The request without its own TSIG: the response echoes the header and zone, QR set, no additional records but ours.
  const m = decodeMessage(base);
  const cut = m.additionals.length ? m.additionals[0]!.offset : base.length;
  const before = o.before ?? [];
  const body = new Uint8Array(cut + before.reduce((n, b) => n + b.length, 0));
  body.set(base.subarray(0, cut));
  let at = cut;
  for (const b of before) {
    body.set(b, at);
    at += b.length;
  }
  body[2] = body[2]! | 0x80;
  body[10] = 0;
  body[11] = before.length;
  const alg = o.algorithm ?? KEY.algorithm;
  const time = o.timeSigned ?? NOW / 1000;
  const fudge = o.fudge ?? 300;
  const error = o.error ?? 0;
  const timeBytes = [...u16(Math.floor(time / 2 ** 32)), ...u32(time % 2 ** 32)];
  const variables = bytes(encodeName(o.macKeyName ?? o.keyName ?? KEY.name).map((c) => (c >= 0x41 && c <= 0x5a ? c + 32 : c)), ...u16(255), ...u32(0), encodeName(alg.toLowerCase()), ...timeBytes, ...u16(fudge), ...u16(error), ...u16(0));
  const right = new Uint8Array(
    createHmac('sha256', KEY.secret)
      .update(bytes(...u16(req.mac.length), req.mac))
      .update(body)
      .update(variables)
      .digest(),
  );
  const mac = o.mac ? o.mac(right) : right;
  const rdata = bytes(encodeName(alg), ...timeBytes, ...u16(fudge), ...u16(mac.length), mac, ...u16(req.id), ...u16(error), ...u16(0));
  const rr = bytes(encodeName(o.keyName ?? KEY.name), ...u16(RRType.TSIG), ...u16(255), ...u32(0), ...u16(rdata.length), rdata);
  const out = bytes(body, rr);
  out[11] = before.length + 1;
  if (o.headerId !== undefined) out.set(u16(o.headerId), 0);
  return out;
}

const request = () => signRequest(encodeUpdate({ id: 0x1234, zone: 'example.test', deleteRRsets: [], add: [] }), KEY, nodeProvider.hmac, { now: NOW });
const verify = (resp: Uint8Array, now = NOW) => verifyResponse(resp, request(), KEY, nodeProvider.hmac, now);
const tsigErr = decodeErr('ERR_TSIG');

describe('TSIG responses (RFC 8945 §5.3)', () => {
  it('a response signed with the right key verifies; one with its header id rewritten too (§4.3.1: the original id is signed)', () => {
    assert.deepEqual(verify(signedResponse(request())), { signed: true, tsigError: 0 });
    assert.deepEqual(verify(signedResponse(request(), { headerId: 0x9999 })), { signed: true, tsigError: 0 });
  });

  it('§5.3: a MAC that does not verify is refused (one bit flipped, or the MAC of another key)', () => {
    assert.throws(() => verify(signedResponse(request(), { mac: (m) => Uint8Array.from(m, (x, i) => (i === 0 ? x ^ 1 : x)) })), tsigErr);
    assert.throws(() => verify(signedResponse(request(), { mac: (m) => new Uint8Array(m.length) })), tsigErr);
  });

  it('§5.2: a response signed with another key name or algorithm is refused; names compare case-insensitively', () => {
    assert.throws(() => verify(signedResponse(request(), { keyName: 'other.example.test' })), tsigErr);
    // The MAC made over our key name, the record under another owner name: only the name check refuses it.
    assert.throws(() => verify(signedResponse(request(), { keyName: 'other.example.test', macKeyName: KEY.name })), tsigErr);
    assert.throws(() => verify(signedResponse(request(), { algorithm: 'hmac-sha512' })), tsigErr);
    assert.deepEqual(verify(signedResponse(request(), { keyName: 'UPD.Example.TEST' })), { signed: true, tsigError: 0 });
    assert.deepEqual(verify(signedResponse(request(), { algorithm: 'HMAC-SHA256' })), { signed: true, tsigError: 0 });
  });

  it('§5.2.3: a time signed outside the fudge is refused; exactly at the fudge is accepted', () => {
    const t = NOW / 1000;
    assert.throws(() => verify(signedResponse(request(), { timeSigned: t - 301 })), tsigErr);
    assert.throws(() => verify(signedResponse(request(), { timeSigned: t + 301 })), tsigErr);
    assert.deepEqual(verify(signedResponse(request(), { timeSigned: t - 300 })), { signed: true, tsigError: 0 });
    assert.deepEqual(verify(signedResponse(request(), { timeSigned: t + 300 })), { signed: true, tsigError: 0 });
    assert.throws(() => verify(signedResponse(request(), { timeSigned: t, fudge: 0 }), NOW + 1000), tsigErr);
  });

  it('the 48-bit time: a time past 2^32 s is read with its upper 16 bits', () => {
    const now = (2 ** 32 + 5000) * 1000;
    const req = signRequest(encodeUpdate({ id: 7, zone: 'example.test', deleteRRsets: [], add: [] }), KEY, nodeProvider.hmac, { now });
    assert.deepEqual(verifyResponse(signedResponse(req, { timeSigned: now / 1000 }), req, KEY, nodeProvider.hmac, now), { signed: true, tsigError: 0 });
  });

  it('§5.1: a TSIG record that is not the last additional record is refused; other additionals before it are fine', () => {
    assert.deepEqual(verify(signedResponse(request(), { before: [OPT_RR] })), { signed: true, tsigError: 0 });
    // A first TSIG record (well formed, but not last), then the right one: the MAC covers the first, so only the placement refuses it.
    const first = signedResponse(request());
    const firstRr = first.subarray(decodeMessage(first).additionals[0]!.offset);
    assert.throws(() => verify(signedResponse(request(), { before: [firstRr] })), (e: unknown) => tsigErr(e) && /last/.test((e as Error).message));
  });

  it('§5.3.2: an unsigned response is reported as unsigned; BADSIG/BADKEY with an empty MAC are reported, an empty MAC without an error is refused', () => {
    const unsigned = new Uint8Array(request().message.subarray(0, decodeMessage(request().message).additionals[0]!.offset));
    unsigned[2]! |= 0x80;
    unsigned[11] = 0;
    assert.deepEqual(verify(unsigned), { signed: false });
    unsigned[11] = 1;
    assert.deepEqual(verify(bytes(unsigned, OPT_RR)), { signed: false });
    assert.deepEqual(verify(signedResponse(request(), { error: 17, mac: () => new Uint8Array(0) })), { signed: true, tsigError: 17 });
    assert.throws(() => verify(signedResponse(request(), { error: 0, mac: () => new Uint8Array(0) })), tsigErr);
    // A signed answer that carries a TSIG error with a good MAC (BADTIME, §5.2.3) reports it; with a bad MAC it is refused.
    assert.deepEqual(verify(signedResponse(request(), { error: 18 })), { signed: true, tsigError: 18 });
    assert.throws(() => verify(signedResponse(request(), { error: 18, mac: (m) => Uint8Array.from(m, (x, i) => (i === 0 ? x ^ 1 : x)) })), tsigErr);
  });

  it('TSIG error names (RFC 8945 §3)', () => {
    assert.equal(tsigErrorName(16), 'BADSIG');
    assert.equal(tsigErrorName(99), 'TSIG error 99');
  });
});

// ---------------------------------------------------------------- messages (RFC 1035 §4.1)

describe('DNS messages', () => {
  const q = encodeQuery('www.example.test', RRType.A, { id: 0x4242 });

  it('§4.1: bytes after the last record are refused (ERR_TRAILING)', () => {
    assert.equal(decodeMessage(q).questions.length, 1);
    assert.throws(() => decodeMessage(bytes(q, 0)), decodeErr('ERR_TRAILING'));
  });

  it('§4.1.1: FORMERR echoes the id and opcode, sets QR, drops RD; none for a response or a message shorter than the header', () => {
    const hdr = bytes(0xab, 0xcd, 0x29, 0x00, 0, 0, 0, 0, 0, 0, 0, 0); // opcode 5, RD
    assert.deepEqual([...encodeFormErr(hdr)!], [0xab, 0xcd, 0xa8, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(encodeFormErr(hdr.subarray(0, 11)), undefined);
    const resp = new Uint8Array(hdr);
    resp[2]! |= 0x80;
    assert.equal(encodeFormErr(resp), undefined);
  });

  it('responses: AA unless asked not to; the EDNS extended rcode (RFC 6891 §6.1.3) in the OPT TTL', () => {
    const m = decodeMessage(q);
    assert.equal(decodeMessage(encodeResponse(m, 0, [])).flags & 0x0400, 0x0400);
    assert.equal(decodeMessage(encodeResponse(m, 0, [], { authoritative: false })).flags & 0x0400, 0);
    const opt = decodeMessage(encodeResponse(m, 0, [], { ednsUdpSize: 1232, ednsExtendedRcode: 1 })).additionals[0]!;
    assert.equal(opt.type, RRType.OPT);
    assert.equal(opt.ttl, 0x01000000);
    assert.equal(decodeMessage(encodeResponse(m, 0, [], { ednsUdpSize: 1232 })).additionals[0]!.ttl, 0);
  });

  it('names of rcodes and types', () => {
    assert.equal(rcodeName(3), 'NXDOMAIN');
    assert.equal(rcodeName(99), 'RCODE99');
    assert.equal(typeName(65), 'HTTPS');
    assert.equal(typeName(999), undefined);
  });

  it('RFC 5452 §9.1: an answer must carry our id, QR, our opcode and our one question (names compared case-insensitively)', () => {
    const question = { name: 'www.example.test', type: RRType.A, cls: 1 };
    const e = { id: 0x4242, opcode: 0, question };
    const answer = (f: (m: Uint8Array) => void = () => {}) => {
      const r = encodeResponse(decodeMessage(q), 0, []);
      f(r);
      return decodeMessage(r);
    };
    assert.equal(answerMismatch(e, answer()), undefined);
    assert.equal(answerMismatch({ ...e, question: { ...question, name: 'WWW.Example.test.' } }, answer()), undefined);
    assert.match(answerMismatch(e, answer((r) => {
        r[1] = 0x43;
      })) ?? '', /id/);
    assert.match(answerMismatch(e, answer((r) => {
        r[2]! &= 0x7f;
      })) ?? '', /QR/);
    assert.match(answerMismatch(e, answer((r) => {
        r[2]! |= 0x28;
      })) ?? '', /opcode/);
    assert.ok(answerMismatch({ ...e, question: { ...question, name: 'other.example.test' } }, answer()));
    assert.ok(answerMismatch({ ...e, question: { ...question, name: 'www.example.tes' } }, answer()));
    assert.ok(answerMismatch({ ...e, question: { ...question, type: RRType.AAAA } }, answer()));
    assert.ok(answerMismatch({ ...e, question: { ...question, cls: 3 } }, answer()));
    // No question: refused for a query, allowed for UPDATE (RFC 2136 §3.8) only when the caller says so.
    const none = decodeMessage(encodeResponse({ ...decodeMessage(q), questions: [] }, 0, []));
    assert.equal(none.questions.length, 0);
    assert.ok(answerMismatch(e, none));
    assert.equal(answerMismatch({ ...e, questionOptional: true }, none), undefined);
    // Optional, but when present it must still be ours.
    assert.ok(answerMismatch({ ...e, questionOptional: true, question: { ...question, name: 'other.example.test' } }, answer()));
    assert.ok(answerMismatch({ ...e, questionOptional: true }, answer((r) => {
        r[1] = 0x43;
      })));
    // Two questions, the first ours: refused.
    const two = encodeResponse({ ...decodeMessage(q), questions: [question, question] }, 0, []);
    assert.ok(answerMismatch(e, decodeMessage(two)));
  });
});

// ---------------------------------------------------------------- names (RFC 1035 §3.1, §4.1.4, §2.3.4)

describe('DNS names', () => {
  it('encodeName: an empty label before the root dot ("a..") is refused, "a." and "." are names', () => {
    assert.throws(() => encodeName('a..'), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ENCODE');
    assert.throws(() => encodeName('..'), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ENCODE');
    assert.deepEqual([...encodeName('a.')], [1, 0x61, 0]);
    assert.deepEqual([...encodeName('.')], [0]);
  });

  const dnsErr = decodeErr('ERR_DECODE');

  it('§4.1.4: a compression pointer cut at the end of the message is refused', () => {
    const msg = bytes(1, ...ascii('a'), 0, 0xc0);
    assert.throws(() => decodeName(msg, 3), dnsErr);
  });

  it('§4.1.4: pointers must go backwards; a forward pointer is refused', () => {
    // At 0 a pointer to 2, where "a" lies: forward.
    assert.throws(() => decodeName(bytes(0xc0, 2, 1, ...ascii('a'), 0), 0), dnsErr);
  });

  it('at most 64 pointers are followed', () => {
    // "a" at 0, then a chain of pointers, each to the one before it.
    const chain = (n: number) => {
      const out = [1, ...ascii('a'), 0, 0xc0, 0];
      for (let i = 1; i < n; i++) out.push(0xc0, 3 + 2 * (i - 1));
      return { msg: Uint8Array.from(out), last: 3 + 2 * (n - 1) };
    };
    const ok = chain(64);
    assert.deepEqual(decodeName(ok.msg, ok.last), { name: 'a', next: ok.last + 2 });
    const tooMany = chain(65);
    assert.throws(() => decodeName(tooMany.msg, tooMany.last), dnsErr);
  });

  it('the offset after a name is the one after its first pointer', () => {
    // "a" at 0; "b" + pointer to 0 at 3; a pointer to 3 at 7.
    const msg = bytes(1, ...ascii('a'), 0, 1, ...ascii('b'), 0xc0, 0, 0xc0, 3);
    assert.deepEqual(decodeName(msg, 7), { name: 'b.a', next: 9 });
    assert.deepEqual(decodeName(msg, 3), { name: 'b.a', next: 7 });
  });

  it('§2.3.4: 255 octets decode (four labels), 256 do not; the same for uncompressed names and for encoding', () => {
    const name = (sizes: number[]) => bytes(...sizes.flatMap((n) => [n, ...new Array(n).fill(0x61)]), 0);
    const n255 = name([63, 63, 63, 61]);
    const n256 = name([63, 63, 63, 62]);
    assert.equal(n255.length, 255);
    assert.equal(decodeName(n255, 0).next, 255);
    assert.throws(() => decodeName(n256, 0), dnsErr);
    assert.equal(readUncompressedName(new Reader(n255)).length, 253);
    assert.throws(() => readUncompressedName(new Reader(n256)), dnsErr);
    assert.deepEqual([...encodeName(decodeName(n255, 0).name)], [...n255]);
    assert.throws(() => encodeName(`${decodeName(n255, 0).name}a`), decodeErr('ERR_ENCODE'));
  });

  it('§3.1: a label longer than 63 octets or a compression pointer is refused where names are uncompressed; encoding refuses empty and long labels', () => {
    assert.throws(() => readUncompressedName(new Reader(bytes(64, ...new Array(64).fill(0x61), 0))), dnsErr);
    assert.equal(readUncompressedName(new Reader(bytes(63, ...new Array(63).fill(0x61), 0))).length, 63);
    assert.throws(() => readUncompressedName(new Reader(bytes(0xc0, 0))), dnsErr);
    assert.throws(() => encodeName('a..b'), decodeErr('ERR_ENCODE'));
    assert.throws(() => encodeName(`${'a'.repeat(64)}.test`), decodeErr('ERR_ENCODE'));
    assert.equal(encodeName(`${'a'.repeat(63)}.test`).length, 70);
  });

  it('presentation escapes both ways: "." and "\\\\" escaped, other non-printables as \\DDD', () => {
    const label = bytes(0x2e, 0x5c, 0x20, 0x21, 0x7e, 0x7f, 0x00);
    const name = decodeName(bytes(label.length, label, 0), 0).name;
    assert.equal(name, '\\.\\\\\\032!~\\127\\000');
    assert.deepEqual([...encodeName(name)], [label.length, ...label, 0]);
    assert.deepEqual([...encodeName('a\\.b.c')], [3, 0x61, 0x2e, 0x62, 1, 0x63, 0]);
    assert.deepEqual([...encodeName('\\065b.')], [2, 65, 0x62, 0]);
  });
});

// ---------------------------------------------------------------- SVCB RDATA (RFC 9460 §2.2, §7)

describe('SVCB RDATA from the wire', () => {
  const rdata = (...params: [number, number[]][]) => bytes(...u16(1), 0, ...params.flatMap(([k, v]) => [...u16(k), ...u16(v.length), ...v]));
  const err = decodeErr('ERR_DECODE');

  it('§2.2: keys must be strictly increasing: a repeated key is refused', () => {
    assert.equal(decodeSvcb(rdata([SvcParamKey.port, [1, 187]], [SvcParamKey.ech, [1]])).params.size, 2);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.port, [1, 187]], [SvcParamKey.port, [1, 188]])), err);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.ech, [1]], [SvcParamKey.port, [1, 187]])), err);
  });

  it('§7: each value has its wire length', () => {
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.mandatory, [0]])), err);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.mandatory, [0, 3, 0]])), err);
    // Lengths the mandatory walk alone would not refuse: empty, and odd with the half key naming a present key (768).
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.mandatory, []])), err);
    assert.equal(decodeSvcb(rdata([SvcParamKey.mandatory, [0, 3, 3, 0]], [SvcParamKey.port, [1, 187]], [768, [1]])).params.size, 3);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.mandatory, [0, 3, 3]], [SvcParamKey.port, [1, 187]], [768, [1]])), err);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.alpn, []])), err);
    // alpn-ids are length-prefixed and non-empty (§7.1.1).
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.alpn, [5, ...ascii('h2')]])), err);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.alpn, [2, ...ascii('h2'), 0]])), err);
    assert.equal(decodeSvcb(rdata([SvcParamKey.alpn, [2, ...ascii('h2')]])).params.size, 1);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey['no-default-alpn'], [0]])), err);
    assert.equal(decodeSvcb(rdata([SvcParamKey.alpn, [2, ...ascii('h2')]], [SvcParamKey['no-default-alpn'], []])).params.size, 2);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.port, [1]])), err);
    for (const n of [0, 3, 5]) assert.throws(() => decodeSvcb(rdata([SvcParamKey.ipv4hint, new Array(n).fill(1)])), err);
    assert.equal(decodeSvcb(rdata([SvcParamKey.ipv4hint, new Array(8).fill(1)])).params.size, 1);
    for (const n of [0, 15, 17]) assert.throws(() => decodeSvcb(rdata([SvcParamKey.ipv6hint, new Array(n).fill(1)])), err);
    assert.equal(decodeSvcb(rdata([SvcParamKey.ipv6hint, new Array(32).fill(1)])).params.size, 1);
    assert.throws(() => decodeSvcb(rdata([SvcParamKey.ech, []])), err);
  });

  it('encoding writes keys in increasing order whatever the order of the map', () => {
    const s = { priority: 1, target: '', params: new Map<number, Uint8Array>([[SvcParamKey.ech, Uint8Array.of(9)], [SvcParamKey.port, Uint8Array.of(1, 187)]]) };
    assert.deepEqual([...encodeSvcb(s)], [...rdata([SvcParamKey.port, [1, 187]], [SvcParamKey.ech, [9]])]);
  });
});
