/**
 * Mutation killers for the DNS answers echgate reads (remote bytes and
 * headers): src/dns/doh-client.ts parseCacheControl (RFC 9111 §5.2.2.1
 * max-age, §1.2.2 an invalid delta-seconds is stale, RFC 8484 §5.1) and
 * src/dns/resolver.ts freshness (the smallest answer TTL; RFC 2308 §5 a
 * negative answer lives min(SOA TTL, SOA MINIMUM); capped by max-age). The
 * checks the twelfth session's Stryker run (`dns-client` target, t12) found
 * unguarded; each case was seen red with its mutant written into dist/ by
 * hand (docs/mutation.md, "Twelfth session (tests)"). The last cases feed
 * dohQuery bad answers from a plain HTTP/1.1 server (RFC 8484 §4.2.1: status
 * 200 and application/dns-message, at most one DNS message, the answer to
 * the question asked).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { dohQuery, parseCacheControl } from '../src/dns/doh-client.js';
import { EchgateError } from '../src/errors.js';
import { freshness } from '../src/dns/resolver.js';
import { type DnsMessage, decodeMessage, encodeResponse, RRType } from '../src/wire/dns/message.js';

describe('doh-client.ts parseCacheControl', () => {
  it('no header: cacheable, no max-age', () => {
    assert.deepEqual(parseCacheControl(undefined), { noStore: false });
    assert.deepEqual(parseCacheControl(''), { noStore: false });
  });
  it('no-store and no-cache forbid reuse; other directives do not', () => {
    assert.equal(parseCacheControl('no-store').noStore, true);
    assert.equal(parseCacheControl('No-Cache').noStore, true);
    assert.equal(parseCacheControl('public, must-revalidate').noStore, false);
    assert.equal(parseCacheControl('no-transform').noStore, false);
  });
  it('max-age: digits, quoted digits, case and spaces; the smallest of several; an array header joined', () => {
    assert.equal(parseCacheControl('max-age=60').maxAge, 60);
    assert.equal(parseCacheControl(' Max-Age=7 , public').maxAge, 7);
    assert.equal(parseCacheControl('max-age="60"').maxAge, 60);
    assert.equal(parseCacheControl('max-age=300, max-age=30').maxAge, 30);
    assert.equal(parseCacheControl('max-age=30, max-age=300').maxAge, 30);
    assert.deepEqual(parseCacheControl(['max-age=100', 'no-store']), { noStore: true, maxAge: 100 });
    assert.equal(parseCacheControl('max-age=9999999999').maxAge, 9999999999);
  });
  it('an invalid max-age is stale (0): not a number, a sign, 11 digits, empty, other characters around it', () => {
    for (const bad of ['max-age=abc', 'max-age=-5', 'max-age=12345678901', 'max-age=', 'max-age', 'max-age=5x', 'max-age=x5', 'max-age=1.5']) {
      assert.equal(parseCacheControl(bad).maxAge, 0, bad);
    }
  });
});

function msg(answers: { ttl: number }[], soa?: { ttl: number; minimum: number; rdataLength?: number }): DnsMessage {
  const authorities = soa
    ? [
        {
          name: 'example.test',
          type: RRType.SOA,
          cls: 1,
          ttl: soa.ttl,
          rdata: (() => {
            const b = Buffer.alloc(soa.rdataLength ?? 30);
            if (b.length >= 4) b.writeUInt32BE(soa.minimum, b.length - 4);
            return new Uint8Array(b);
          })(),
          rdataOffset: 0,
        },
      ]
    : [];
  return {
    id: 0,
    flags: 0x8000,
    rcode: 0,
    questions: [],
    answers: answers.map((a) => ({ name: 'x.example.test', type: RRType.A, cls: 1, ttl: a.ttl, rdata: Uint8Array.of(1, 2, 3, 4), rdataOffset: 0 })),
    authorities,
    additionals: [],
  } as unknown as DnsMessage;
}

describe('resolver.ts freshness', () => {
  const http = { noStore: false };
  it('the smallest answer TTL, capped by max-age; no-store is 0', () => {
    assert.equal(freshness(msg([{ ttl: 300 }, { ttl: 60 }, { ttl: 120 }]), http), 60);
    assert.equal(freshness(msg([{ ttl: 300 }]), { noStore: false, maxAge: 30 }), 30);
    assert.equal(freshness(msg([{ ttl: 20 }]), { noStore: false, maxAge: 30 }), 20);
    assert.equal(freshness(msg([{ ttl: 300 }]), { noStore: true, maxAge: 30 }), 0);
  });
  it('RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); a SOA too short to hold MINIMUM, or none, is 0', () => {
    assert.equal(freshness(msg([], { ttl: 900, minimum: 60 }), http), 60);
    assert.equal(freshness(msg([], { ttl: 45, minimum: 600 }), http), 45);
    assert.equal(freshness(msg([], { ttl: 900, minimum: 60, rdataLength: 4 }), http), 60);
    assert.equal(freshness(msg([], { ttl: 900, minimum: 60, rdataLength: 3 }), http), 0);
    assert.equal(freshness(msg([]), http), 0);
    // The SOA is found by type: an NS record before it in the authority section is not it.
    const withNs = msg([], { ttl: 900, minimum: 60 });
    withNs.authorities.unshift({ ...withNs.authorities[0]!, type: RRType.NS, ttl: 5, rdata: new Uint8Array(8) });
    assert.equal(freshness(withNs, http), 60);
    // An answer present: the SOA (in authority) does not count.
    assert.equal(freshness(msg([{ ttl: 500 }], { ttl: 900, minimum: 60 }), http), 500);
  });
});

describe('doh-client.ts dohQuery: what a DoH answer must be (RFC 8484 §4.2.1)', () => {
  let srv: http.Server;
  let url = '';
  /** What the server sends next: status, content-type and body, given the query it got. */
  let answer: (q: DnsMessage) => { status: number; type: string; body: Uint8Array };
  const good = (q: DnsMessage) => encodeResponse(q, 0, [{ name: q.questions[0]!.name, type: RRType.A, ttl: 60, rdata: Uint8Array.of(192, 0, 2, 1) }]);

  before(async () => {
    srv = http.createServer((req, res) => {
      const dns = new URL(req.url ?? '/', 'http://x').searchParams.get('dns') ?? '';
      const a = answer(decodeMessage(new Uint8Array(Buffer.from(dns, 'base64url'))));
      res.writeHead(a.status, { 'content-type': a.type });
      res.end(Buffer.from(a.body));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/dns-query`;
  });
  after(() => {
    srv.close();
  });

  const code = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
      return 'ok';
    } catch (e) {
      return e instanceof EchgateError ? e.code : String(e);
    }
  };

  it('a good answer (content-type with a parameter too) is taken', async () => {
    answer = (q) => ({ status: 200, type: 'application/dns-message', body: good(q) });
    const m = await dohQuery(url, 'x.example.test', RRType.A);
    assert.equal(m.answers.length, 1);
    answer = (q) => ({ status: 200, type: 'application/dns-message; charset=binary', body: good(q) });
    assert.equal(await code(dohQuery(url, 'x.example.test', RRType.A)), 'ok');
  });
  it('another status, or another content-type: ERR_DECODE', async () => {
    answer = (q) => ({ status: 500, type: 'application/dns-message', body: good(q) });
    assert.equal(await code(dohQuery(url, 'x.example.test', RRType.A)), 'ERR_DECODE');
    answer = (q) => ({ status: 200, type: 'text/plain', body: good(q) });
    assert.equal(await code(dohQuery(url, 'x.example.test', RRType.A)), 'ERR_DECODE');
  });
  it('the answer to another question (another name, another id): ERR_DNS_MISMATCH (RFC 5452 §9.1)', async () => {
    answer = (q) => ({ status: 200, type: 'application/dns-message', body: good({ ...q, questions: [{ ...q.questions[0]!, name: 'y.example.test' }] }) });
    assert.equal(await code(dohQuery(url, 'x.example.test', RRType.A)), 'ERR_DNS_MISMATCH');
    answer = (q) => ({ status: 200, type: 'application/dns-message', body: good({ ...q, id: 7 }) });
    assert.equal(await code(dohQuery(url, 'x.example.test', RRType.A)), 'ERR_DNS_MISMATCH');
  });
  it('a body over 65,535 octets: ERR_LIMIT; exactly 65,535 is read (then refused for its trailing bytes)', async () => {
    const padded = (q: DnsMessage, n: number) => {
      const b = new Uint8Array(n);
      b.set(good(q));
      return b;
    };
    answer = (q) => ({ status: 200, type: 'application/dns-message', body: padded(q, 65536) });
    assert.equal(await code(dohQuery(url, 'x.example.test', RRType.A)), 'ERR_LIMIT');
    answer = (q) => ({ status: 200, type: 'application/dns-message', body: padded(q, 65535) });
    assert.equal(await code(dohQuery(url, 'x.example.test', RRType.A)), 'ERR_TRAILING');
  });
});
