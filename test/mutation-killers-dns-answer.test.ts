/**
 * Mutation killers for src/dns/answer.ts (the DNS server's answer to a
 * remote query: RFC 1035 §4.1.1, RFC 9619 one question, RFC 6891 §6.1.1
 * one OPT, §6.2.5 the UDP payload limit, RFC 2181 §9 truncation): the
 * checks the twelfth session's Stryker run (`dns-answer` target, t12) found
 * unguarded by the in-process files. Each case was seen red with its mutant
 * written into dist/ by hand (docs/mutation.md, "Twelfth session (tests)").
 * answerQuery is pure over a Zone, so each check is fed its bad input
 * directly; a fresh zone per case keeps the answer cache out of it. The
 * last case is the TCP framing of src/dns/dns-server.ts (RFC 7766 §8, RFC
 * 1035 §4.2.2): a zero length prefix is no message, and the connection ends.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { answerQuery } from '../src/dns/answer.js';
import { type DnsServer, startDnsServer } from '../src/dns/dns-server.js';
import { type ZoneConfig, Zone } from '../src/dns/zone.js';
import { encodeQuery, RCode, RRType } from '../src/wire/dns/message.js';

// x.example.test encodes in 16 octets: 12 (header) + 20 (question) + 16 × 30 (A records, names
// uncompressed) = 512, RFC 1035 §4.2.1's limit for UDP without EDNS, to the octet.
const config: ZoneConfig = {
  ttl: 30,
  names: {
    'x.example.test': { a: Array.from({ length: 16 }, (_, i) => `10.0.0.${i + 1}`) },
    'y.example.test': { a: Array.from({ length: 17 }, (_, i) => `10.0.0.${i + 1}`) },
    'app.example.test': { a: ['127.0.0.1'] },
  },
};
const zone = () => new Zone(config, () => Uint8Array.of(0, 4, 0xfe, 0x0d, 0, 0));

const u16 = (b: Uint8Array, at: number) => (b[at]! << 8) | b[at + 1]!;
const flags = (b: Uint8Array) => u16(b, 2);
const rcode = (b: Uint8Array) => flags(b) & 0x0f;
const counts = (b: Uint8Array) => ({ qd: u16(b, 4), an: u16(b, 6), ns: u16(b, 8), ar: u16(b, 10) });

/** `q` with `extra` appended and the count at `countAt` set to `n`. */
function withAppended(q: Uint8Array, extra: number[], countAt: number, n: number): Uint8Array {
  const b = Buffer.concat([Buffer.from(q), Buffer.from(extra)]);
  b.writeUInt16BE(n, countAt);
  return new Uint8Array(b);
}
const OPT = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];
const A_RECORD = [0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1];

describe('answer.ts: refusals of remote queries', () => {
  it('RFC 9619: two questions, or none, are FORMERR with the header alone and AA clear', () => {
    const q = encodeQuery('app.example.test', RRType.A, { id: 7 });
    // The same question twice (its 22 octets after the header).
    const two = withAppended(q, [...q.subarray(12)], 4, 2);
    for (const bytes of [two, withAppended(q.subarray(0, 12), [], 4, 0)]) {
      const r = answerQuery(zone(), bytes, { udp: true });
      assert.equal(r.status, 200);
      assert.equal(rcode(r.body!), RCode.FORMERR);
      assert.deepEqual(counts(r.body!), { qd: 0, an: 0, ns: 0, ar: 0 });
      assert.equal(flags(r.body!) & 0x0400, 0, 'AA clear on an error reply');
    }
  });

  it('RFC 6891 §6.1.1: two OPT records are FORMERR', () => {
    const q = encodeQuery('app.example.test', RRType.A, { udpSize: 1232 });
    const r = answerQuery(zone(), withAppended(q, OPT, 10, 2), { udp: true });
    assert.equal(rcode(r.body!), RCode.FORMERR);
    assert.equal(counts(r.body!).an, 0);
    assert.equal(flags(r.body!) & 0x0400, 0, 'AA clear on an error reply');
  });

  it('a message with QR set (a response) is never answered: status 400 and no body', () => {
    const q = encodeQuery('app.example.test', RRType.A, { id: 9 });
    const b = new Uint8Array(q);
    b[2]! |= 0x80;
    assert.deepEqual(answerQuery(zone(), b, { udp: true }), { status: 400 });
  });

  it('another class (CH) is REFUSED with AA clear', () => {
    const q = new Uint8Array(encodeQuery('app.example.test', RRType.A));
    q[q.length - 1] = 3;
    const r = answerQuery(zone(), q, { udp: true });
    assert.equal(rcode(r.body!), RCode.REFUSED);
    assert.equal(flags(r.body!) & 0x0400, 0);
  });
});

describe('answer.ts: EDNS is what the query carries (RFC 6891)', () => {
  it('a query without OPT gets a response without OPT', () => {
    const r = answerQuery(zone(), encodeQuery('app.example.test', RRType.A, { id: 3 }), { udp: true });
    assert.equal(rcode(r.body!), RCode.NOERROR);
    assert.equal(counts(r.body!).ar, 0);
  });
  it('another record in the additional section is not an OPT: no OPT back, the 512-octet limit stays', () => {
    const q = encodeQuery('y.example.test', RRType.A, { id: 4 });
    const r = answerQuery(zone(), withAppended(q, A_RECORD, 10, 1), { udp: true });
    assert.equal(rcode(r.body!), RCode.NOERROR);
    assert.equal(counts(r.body!).ar, 0, 'no OPT in the response');
    assert.ok(flags(r.body!) & 0x0200, '17 A records (542 octets) are over 512: TC');
  });
  it('one OPT and another additional record: answered (one OPT is not two)', () => {
    const q = encodeQuery('app.example.test', RRType.A, { udpSize: 1232 });
    const r = answerQuery(zone(), withAppended(q, A_RECORD, 10, 2), { udp: true });
    assert.equal(rcode(r.body!), RCode.NOERROR);
    assert.equal(counts(r.body!).an, 1);
    assert.equal(counts(r.body!).ar, 1, 'our OPT');
  });
});

describe('answer.ts: the UDP limit (RFC 1035 §4.2.1, RFC 2181 §9) and the TTL', () => {
  it('a response of exactly 512 octets goes whole; 542 is truncated', () => {
    const fits = answerQuery(zone(), encodeQuery('x.example.test', RRType.A, { id: 5 }), { udp: true });
    assert.equal(fits.body!.length, 512);
    assert.equal(flags(fits.body!) & 0x0200, 0, 'no TC at 512');
    assert.equal(counts(fits.body!).an, 16);
    const over = answerQuery(zone(), encodeQuery('y.example.test', RRType.A, { id: 6 }), { udp: true });
    assert.ok(flags(over.body!) & 0x0200, 'TC over 512');
    assert.equal(counts(over.body!).an, 0);
  });
  it("the result's TTL is the records' (30 s here; what the answer cache and DoH's max-age use)", () => {
    const r = answerQuery(zone(), encodeQuery('app.example.test', RRType.A, { id: 1 }), { udp: false });
    assert.equal(r.ttl, 30);
  });
});

describe('answer.ts: what the answer cache may keep', () => {
  it('a time-dependent answer (_esni TXT, its TTL counting down to the key expiry) is never served from the cache', () => {
    let ttl = 300;
    const z = new Zone(config, () => Uint8Array.of(0, 4, 0xfe, 0x0d, 0, 0), () => ({ records: [Uint8Array.of(1, 2, 3)], ttl }));
    const q = encodeQuery('_esni.app.example.test', RRType.TXT, { id: 1, udpSize: 1232 });
    const first = answerQuery(z, q, { udp: true });
    assert.equal(first.ttl, 300);
    ttl = 120;
    const second = answerQuery(z, q, { udp: true });
    assert.equal(second.ttl, 120, 'the second answer has the TTL of now');
    // The record's own TTL field (after the question and the answer's name, type, class): 120 as well.
    assert.ok(Buffer.from(second.body!).includes(Buffer.from([0, 0, 0, 120, 0])), 'TTL 120 in the answer record');
  });
  it('a FORMERR is not kept: a good query with the same octets but one is answered', () => {
    const z = zone();
    const q = encodeQuery('app.example.test', RRType.A, { id: 2 });
    const two = withAppended(q, [...q.subarray(12)], 4, 2);
    assert.equal(rcode(answerQuery(z, two, { udp: true }).body!), RCode.FORMERR);
    assert.equal(rcode(answerQuery(z, q, { udp: true }).body!), RCode.NOERROR);
    assert.equal(rcode(answerQuery(z, two, { udp: true }).body!), RCode.FORMERR);
  });
});

describe('dns-server.ts TCP framing (RFC 1035 §4.2.2, RFC 7766 §8)', () => {
  let srv: DnsServer;
  const queries: string[] = [];
  const limits: string[] = [];
  before(async () => {
    srv = await startDnsServer({
      host: '127.0.0.1',
      port: 0,
      zone: zone,
      onQuery: (name, type, rcode, transport) => queries.push(`${name} ${type} ${rcode} ${transport}`),
      onLimit: (what, transport) => limits.push(`${what} ${transport}`),
    });
  });
  after(async () => {
    await srv.close();
  });

  /** Send `bytes` on a fresh TCP connection; everything received until the server closes. */
  function exchange(bytes: Uint8Array, end = true): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const c = net.connect(srv.port, '127.0.0.1');
      const got: Buffer[] = [];
      const timer = setTimeout(() => {
        c.destroy();
        reject(new Error(`the server did not close (got ${Buffer.concat(got).toString('hex')})`));
      }, 2500);
      c.on('data', (d: Buffer) => got.push(d));
      c.on('error', () => {});
      c.once('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(got));
      });
      c.once('connect', () => (end ? c.end(bytes) : c.write(bytes)));
    });
  }
  const framed = (m: Uint8Array) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), Buffer.from(m)]);

  it('a query is answered, length-prefixed, and reported to onQuery (not onLimit)', async () => {
    const q0 = queries.length;
    const l0 = limits.length;
    const got = await exchange(framed(encodeQuery('app.example.test', RRType.A, { id: 77 })));
    assert.equal(got.readUInt16BE(0), got.length - 2);
    assert.equal(got.readUInt16BE(2), 77);
    assert.deepEqual(queries.slice(q0), ['app.example.test 1 0 tcp']);
    assert.deepEqual(limits.slice(l0), []);
  });

  it('RFC 7766 §6.2.1.1: three queries in one write get three replies, in order, each framed', async () => {
    const qs = [81, 82, 83].map((id) => framed(encodeQuery('app.example.test', RRType.A, { id })));
    const got = await exchange(Buffer.concat(qs));
    const ids: number[] = [];
    for (let at = 0; at + 2 <= got.length; ) {
      const len = got.readUInt16BE(at);
      ids.push(got.readUInt16BE(at + 2));
      at += 2 + len;
    }
    assert.deepEqual(ids, [81, 82, 83]);
  });

  it('a query whose first read is one byte (half its length prefix) is answered once the rest comes', async () => {
    const q = framed(encodeQuery('app.example.test', RRType.A, { id: 91 }));
    const got = await new Promise<Buffer>((resolve, reject) => {
      const c = net.connect(srv.port, '127.0.0.1');
      const parts: Buffer[] = [];
      const timer = setTimeout(() => reject(new Error('no answer')), 2500);
      c.on('error', () => {});
      c.on('data', (d: Buffer) => {
        parts.push(d);
        const all = Buffer.concat(parts);
        if (all.length >= 2 && all.length >= 2 + all.readUInt16BE(0)) {
          clearTimeout(timer);
          c.destroy();
          resolve(all);
        }
      });
      c.once('connect', () => {
        c.write(q.subarray(0, 1));
        setTimeout(() => c.write(q.subarray(1)), 100);
      });
    });
    assert.equal(got.readUInt16BE(2), 91);
  });

  it('a zero length prefix closes the connection: nothing answered, not even the query behind it', async () => {
    const got = await exchange(Buffer.concat([Buffer.from([0, 0]), framed(encodeQuery('app.example.test', RRType.A, { id: 78 }))]));
    assert.equal(got.length, 0, got.toString('hex'));
  });

  it('a framed message too short for a header: no reply, counted as malformed, the connection closed', async () => {
    const l0 = limits.length;
    const got = await exchange(Uint8Array.of(0, 3, 1, 2, 3), false);
    assert.equal(got.length, 0, got.toString('hex'));
    assert.deepEqual(limits.slice(l0), ['malformed tcp']);
  });

  it('a zero length prefix alone, the connection left open: closed at once, not at queryTimeout (5 s)', async () => {
    const l0 = limits.length;
    const got = await exchange(Uint8Array.of(0, 0), false);
    assert.equal(got.length, 0);
    assert.deepEqual(limits.slice(l0), ['malformed tcp'], 'counted as malformed');
  });
});
