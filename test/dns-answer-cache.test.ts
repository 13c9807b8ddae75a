/**
 * The per-zone cache of encoded responses (src/dns/answer-cache.ts): a
 * response from the cache must be, octet for octet, the one the full path
 * gives for the same query (RFC 1035 §4.1.1: the ID and RD copied from the
 * query; §7.3 and RFC 4343 §4: the question echoed with the query's case;
 * RFC 1035 §4.2.1, RFC 6891 §6.2.5: the size this client may get), whatever
 * was asked before; a new ech= list is in the very next answer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { answerQuery } from '../src/dns/answer.js';
import { cachedEntries } from '../src/dns/answer-cache.js';
import { type ZoneConfig, Zone } from '../src/dns/zone.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';
import { decodeSvcb } from '../src/wire/dns/svcb.js';

const config: ZoneConfig = {
  ttl: 30,
  names: {
    'app.example.test': { a: ['127.0.0.1'], aaaa: ['::1'], https: { alpn: ['h2'], port: 8443 } },
    // 40 A records: past 1232 octets (UDP answers truncated at any size), 20: past 512 only.
    'many.example.test': { a: Array.from({ length: 40 }, (_, i) => `10.0.0.${i + 1}`) },
    'some.example.test': { a: Array.from({ length: 20 }, (_, i) => `10.0.1.${i + 1}`) },
  },
};
const list = (n: number) => Uint8Array.of(0, 4, 0xfe, 0x0d, 0, n);

/** A query for `name` (its case kept), with the given ID, RD bit and optional EDNS payload size. */
function query(name: string, type: number, o: { id: number; rd: boolean; udpSize?: number; cookie?: boolean }): Uint8Array {
  let q = encodeQuery(name, type, { id: o.id, rd: o.rd, udpSize: o.udpSize });
  if (o.cookie && o.udpSize) {
    // An EDNS option (a client COOKIE, RFC 7873 §4): not the cached shape, answered by the full path.
    const b = Buffer.concat([Buffer.from(q), Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])]);
    b.writeUInt16BE(12, b.length - 14);
    q = new Uint8Array(b);
  }
  return q;
}

describe('the answer cache gives what the full path gives', () => {
  it('RFC 1035 §4.1.1, §7.3: for any query, the cached response equals a fresh zone’s, ID and RD and case included', () => {
    const names = ['app.example.test', 'many.example.test', 'some.example.test', 'nope.app.example.test', 'other.test', '_8443._https.app.example.test'];
    fc.assert(
      fc.property(
        fc.constantFrom(...names),
        fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
        fc.constantFrom(RRType.A, RRType.AAAA, RRType.HTTPS, RRType.TXT, RRType.NS),
        fc.option(fc.constantFrom(512, 600, 1000, 1232, 4096, 65535), { nil: undefined }),
        fc.boolean(),
        fc.boolean(),
        fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })),
        fc.tuple(fc.boolean(), fc.boolean()),
        fc.tuple(fc.boolean(), fc.option(fc.constantFrom(512, 1232, 65535), { nil: undefined })),
        (name, upper, type, udpSize, cookie, udp, [id1, id2], [rd1, rd2], [udpBefore, sizeBefore]) => {
          const cased = [...name].map((c, i) => (upper[i % upper.length] ? c.toUpperCase() : c)).join('');
          const warm = new Zone(config, () => list(1));
          // First the same question with another ID and RD bit, over this and another transport or size
          // (fills the cache), then the one compared.
          answerQuery(warm, query(cased, type, { id: id1, rd: rd1, udpSize: sizeBefore }), { udp: udpBefore });
          answerQuery(warm, query(cased, type, { id: id1, rd: rd1, udpSize, cookie }), { udp });
          const q = query(cased, type, { id: id2, rd: rd2, udpSize, cookie });
          const cached = answerQuery(warm, q, { udp });
          const fresh = answerQuery(new Zone(config, () => list(1)), q, { udp });
          assert.deepEqual(Buffer.from(cached.body!), Buffer.from(fresh.body!));
          assert.equal(cached.rcode, fresh.rcode);
          assert.equal(cached.ttl, fresh.ttl);
          assert.deepEqual(cached.question, fresh.question);
          const m = decodeMessage(cached.body!);
          assert.equal(m.id, id2);
          assert.equal(Boolean(m.flags & 0x0100), rd2);
          assert.equal(m.questions[0]!.name, cased);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('RFC 1035 §4.2.1, RFC 6891 §6.2.5: the same question over UDP at 512, at 4096, at 65535 and over TCP gets the size each may have, asked in any order', () => {
    const z = new Zone(config, () => list(1));
    const asks = [
      { name: 'some', udp: true, udpSize: undefined, n: 0 },
      { name: 'some', udp: true, udpSize: 4096, n: 20 },
      { name: 'some', udp: false, udpSize: undefined, n: 20 },
      { name: 'some', udp: true, udpSize: 512, n: 0 },
      // The same OPT over TCP and over UDP: 65,535 octets may come back over TCP, 1232 over UDP.
      { name: 'many', udp: false, udpSize: 65535, n: 40 },
      { name: 'many', udp: true, udpSize: 65535, n: 0 },
    ];
    for (let round = 0; round < 2; round++) {
      for (const a of asks) {
        const r = decodeMessage(answerQuery(z, query(`${a.name}.example.test`, RRType.A, { id: 1, rd: false, udpSize: a.udpSize }), { udp: a.udp }).body!);
        assert.equal(Boolean(r.flags & 0x0200), a.n === 0, `TC: ${JSON.stringify(a)}`);
        assert.equal(r.answers.length, a.n);
      }
    }
  });

  it('a new ech= list is in the very next answer, and the SOA serial moves with it', () => {
    let n = 1;
    const z = new Zone({ ...config, zone: 'example.test' }, () => list(n));
    const ech = () => decodeSvcb(decodeMessage(answerQuery(z, query('app.example.test', RRType.HTTPS, { id: 2, rd: false }), { udp: true }).body!).answers[0]!.rdata).params.get(5)!;
    const serial = () => {
      const rdata = decodeMessage(answerQuery(z, query('example.test', RRType.SOA, { id: 3, rd: false }), { udp: true }).body!).answers[0]!.rdata;
      return Buffer.from(rdata).readUInt32BE(rdata.length - 20); // SERIAL, then REFRESH, RETRY, EXPIRE, MINIMUM (RFC 1035 §3.3.13)
    };
    const [e1, s1] = [Buffer.from(ech()), serial()];
    assert.deepEqual([Buffer.from(ech()), serial()], [e1, s1], 'unchanged while the list is');
    n = 2;
    assert.deepEqual(Buffer.from(ech()), Buffer.from(list(2)));
    assert.ok(serial() > s1);
  });

  it('a flood of distinct names holds at most 4096 entries', () => {
    const z = new Zone(config, () => list(1));
    for (let i = 0; i < 5000; i++) answerQuery(z, query(`n${i}.app.example.test`, RRType.A, { id: i, rd: true }), { udp: true });
    assert.ok(cachedEntries(z) <= 4096, String(cachedEntries(z)));
    assert.ok(cachedEntries(z) > 0);
  });
});

describe('a cached response answers only the query it was made for', () => {
  /** `q` with byte 2 (QR, opcode, AA, TC, RD) and QCLASS replaced. */
  const variant = (q: Uint8Array, o: { byte2?: number; cls?: number }) => {
    const b = Uint8Array.from(q);
    if (o.byte2 !== undefined) b[2] = o.byte2;
    if (o.cls !== undefined) new DataView(b.buffer).setUint16(b.length - 2, o.cls);
    return b;
  };

  it('RFC 1035 §4.1.2: the same name and type in class CH after a cached IN answer is REFUSED, not the IN answer', () => {
    const z = new Zone(config, () => list(1));
    const q = query('app.example.test', RRType.A, { id: 1, rd: false });
    answerQuery(z, q, { udp: true });
    assert.equal(decodeMessage(answerQuery(z, q, { udp: true }).body!).answers.length, 1, 'IN: answered (from the cache)');
    const ch = decodeMessage(answerQuery(z, variant(q, { cls: 3 }), { udp: true }).body!);
    assert.equal(ch.rcode, 5); // REFUSED
    assert.equal(ch.answers.length, 0);
  });

  it('RFC 1035 §4.1.1: another opcode (STATUS) with a cached question is NOTIMP; a response (QR set) gets nothing', () => {
    const z = new Zone(config, () => list(1));
    const q = query('app.example.test', RRType.A, { id: 1, rd: true });
    answerQuery(z, q, { udp: true });
    answerQuery(z, q, { udp: true });
    const status = decodeMessage(answerQuery(z, variant(q, { byte2: (2 << 3) | 1 }), { udp: true }).body!);
    assert.equal(status.rcode, 4); // NOTIMP
    assert.equal(status.answers.length, 0);
    const r = answerQuery(z, variant(q, { byte2: 0x81 }), { udp: true });
    assert.equal(r.body, undefined);
  });

  it('two questions whose octets hash alike (FNV-1a) each get their own answer, their own name echoed', () => {
    // h4vl8 and hlpd6 under app.example.test collide in the cache's 32-bit hash: only the octet comparison tells them apart.
    const z = new Zone({ ...config, zone: 'example.test' }, () => list(1));
    for (const [first, second] of [
      ['h4vl8.app.example.test', 'hlpd6.app.example.test'],
      ['hlpd6.app.example.test', 'h4vl8.app.example.test'],
    ] as const) {
      answerQuery(z, query(first, RRType.A, { id: 1, rd: false }), { udp: true });
      const m = decodeMessage(answerQuery(z, query(second, RRType.A, { id: 2, rd: false }), { udp: true }).body!);
      assert.equal(m.questions[0]!.name, second);
      assert.equal(m.id, 2);
    }
  });

  it('RFC 6891 §6.2.5: a response cached for a 4096-octet client comes back with TC to a 512-octet one asking the same question', () => {
    const z = new Zone(config, () => list(1));
    const big = query('some.example.test', RRType.A, { id: 1, rd: false, udpSize: 4096 });
    answerQuery(z, big, { udp: true });
    assert.equal(decodeMessage(answerQuery(z, big, { udp: true }).body!).answers.length, 20, 'cached, whole');
    // The same octets but the OPT's payload size 512.
    const small = Uint8Array.from(big);
    new DataView(small.buffer).setUint16(small.length - 8, 512);
    const m = decodeMessage(answerQuery(z, small, { udp: true }).body!);
    assert.ok(m.flags & 0x0200, 'TC');
    assert.equal(m.answers.length, 0);
  });
});

describe('answers that change with the clock are not cached', () => {
  it('draft-ietf-tls-esni-02 §4: the `_esni` TXT TTL counts down to not_after, so every answer is computed afresh', () => {
    let ttl = 300;
    const zone = new Zone(config, () => list(1), () => ({ records: [Uint8Array.of(1, 2, 3)], ttl }));
    const ask = () => decodeMessage(answerQuery(zone, query('_esni.app.example.test', RRType.TXT, { id: 7, rd: false }), { udp: true }).body!).answers[0]!.ttl;
    assert.equal(ask(), 300);
    ttl = 120; // later: fewer seconds left before the key's not_after
    assert.equal(ask(), 120);
    assert.equal(cachedEntries(zone), 0);
  });
});
