/**
 * The embedded authoritative DNS over DoH: answers from the zone with ech=
 * from the key folder, the RFC 8484 HTTP rules, and bad input that never
 * takes it down. Queried with our DoH client and raw HTTP.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Agent, request } from 'undici';
import { describeAnswers, dohQuery } from '../src/dns/doh-client.js';
import { answerQuery } from '../src/dns/answer.js';
import { startDohServer } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { decodeMessage, encodeQuery, RCode, RRType } from '../src/wire/dns/message.js';
import { decodeSvcb, SvcParamKey } from '../src/wire/dns/svcb.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cfg = (id: number) =>
  encodeECHConfigList([
    encodeECHConfig({ configId: id, kemId: 0x20, publicKey: new Uint8Array(32).fill(id), cipherSuites: [{ kdfId: 1, aeadId: 1 }], maximumNameLength: 0, publicName: 'public.example.test', extensions: [] }),
  ]);
let echList: Uint8Array | undefined = cfg(1);
const zone = new Zone(
  {
    ttl: 30,
    names: {
      'secret.example.test': { a: ['127.0.0.1'], aaaa: ['::1'], https: { alpn: ['h2', 'http/1.1'], port: 8443 } },
      'plain.example.test': { a: ['127.0.0.2'] },
    },
  },
  () => echList,
);

describe('zone answers', () => {
  const ask = (name: string, type: number) => decodeMessage(answerQuery(zone, encodeQuery(name, type, { id: 7 })).body!);
  it('A, AAAA, HTTPS with ech=, and the _PORT._https name with an explicit target', () => {
    assert.deepEqual(describeAnswers(ask('secret.example.test', RRType.A)).map((a) => a.data), ['127.0.0.1']);
    assert.deepEqual(describeAnswers(ask('Secret.Example.Test.', RRType.AAAA)).map((a) => a.data), ['0:0:0:0:0:0:0:1']);
    const h = ask('secret.example.test', RRType.HTTPS);
    assert.equal(h.id, 7);
    assert.equal(h.flags & 0x0400, 0x0400, 'authoritative');
    const s = decodeSvcb(h.answers[0]!.rdata);
    assert.deepEqual(s.params.get(SvcParamKey.ech), echList);
    assert.equal(s.target, '');
    const p = decodeSvcb(ask('_8443._https.secret.example.test', RRType.HTTPS).answers[0]!.rdata);
    assert.equal(p.target, 'secret.example.test');
  });
  it('a rotation shows in the next answer; no keys → no ech=', () => {
    echList = cfg(2);
    assert.deepEqual(decodeSvcb(ask('secret.example.test', RRType.HTTPS).answers[0]!.rdata).params.get(SvcParamKey.ech), echList);
    const saved = echList;
    echList = undefined;
    assert.equal(decodeSvcb(ask('secret.example.test', RRType.HTTPS).answers[0]!.rdata).params.has(SvcParamKey.ech), false);
    echList = saved;
  });
  it('NXDOMAIN, NODATA, FORMERR, NOTIMP, and 400 for non-queries', () => {
    assert.equal(ask('nothing.secret.example.test', RRType.A).rcode, RCode.NXDOMAIN);
    assert.equal(ask('nothing.example.test', RRType.A).rcode, RCode.REFUSED, 'no dns.zone: not ours');
    const nodata = ask('plain.example.test', RRType.HTTPS);
    assert.equal(nodata.rcode, RCode.NOERROR);
    assert.equal(nodata.answers.length, 0);
    const q = encodeQuery('a.test', RRType.A);
    q[5] = 2; // two questions, one present: malformed
    assert.equal(answerQuery(zone, q).status, 400);
    const op = encodeQuery('a.test', RRType.A);
    op[2] = 0x28; // opcode UPDATE
    assert.equal(decodeMessage(answerQuery(zone, op).body!).rcode, RCode.NOTIMP);
    const resp = encodeQuery('a.test', RRType.A);
    resp[2]! |= 0x80;
    assert.equal(answerQuery(zone, resp).status, 400);
  });
  it('random bytes: 400 or an answer, never a throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const r = answerQuery(zone, b);
        assert.ok(r.status === 400 || r.status === 200);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('DoH server over HTTPS', () => {
  let srv: http2.Http2SecureServer;
  let url = '';
  // DoH is addressed by IP literal (as browsers are configured): the certificate needs an IP SAN.
  const dir = mkdtempSync(join(tmpdir(), 'echgate-dohsrv-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=doh', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
  const c = { cert: readFileSync(join(dir, 'c'), 'utf8'), key: readFileSync(join(dir, 'k'), 'utf8') };
  before(async () => {
    srv = await startDohServer({ host: '127.0.0.1', port: 0, cert: c.cert, key: c.key, zone: () => zone });
    url = `https://127.0.0.1:${(srv.address() as { port: number }).port}/dns-query`;
  });
  after(() => srv.close());

  for (const method of ['GET', 'POST'] as const) {
    it(`${method} with our DoH client`, async () => {
      const m = await dohQuery(url, 'secret.example.test', RRType.HTTPS, { ca: c.cert, method });
      assert.equal(m.rcode, RCode.NOERROR);
      const [rr] = describeAnswers(m, m.raw);
      assert.equal(rr!.type, 'HTTPS');
      assert.equal(rr!.ech![0]!.publicName, 'public.example.test');
    });
  }

  it('HTTP errors: 404 path, 405 method, 415 media type, 400 bad dns=, 413 too large', async () => {
    const agent = new Agent({ connect: { ca: c.cert } });
    const st = async (u: string, o: Parameters<typeof request>[1] = {}) => {
      const r = await request(u, { ...o, dispatcher: agent });
      await r.body.dump();
      return r.statusCode;
    };
    try {
      assert.equal(await st(url.replace('/dns-query', '/other')), 404);
      assert.equal(await st(url, { method: 'PUT', body: 'x' }), 405);
      assert.equal(await st(url, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } }), 415);
      assert.equal(await st(`${url}?dns=!!!`), 400);
      assert.equal(await st(`${url}?dns=AAAA`), 400);
      assert.equal(await st(url, { method: 'POST', body: Buffer.alloc(70000), headers: { 'content-type': 'application/dns-message' } }).catch(() => 413), 413);
      // and it still answers
      assert.equal((await dohQuery(url, 'plain.example.test', RRType.A, { ca: c.cert })).answers.length, 1);
    } finally {
      await agent.close();
    }
  });

  it('RFC 8484 §4.1 over HTTP/2 (the core stream path): 404, 405, 415, 400, 413, and answers to GET and POST with their headers', async () => {
    const session = http2.connect(url, { ca: c.cert });
    session.on('error', () => {});
    const ask = (headers: http2.OutgoingHttpHeaders, body?: Uint8Array) =>
      new Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        const req = session.request(headers);
        const chunks: Buffer[] = [];
        let h: http2.IncomingHttpHeaders = {};
        req.on('response', (r) => {
          h = r;
        });
        req.on('data', (d: Buffer) => chunks.push(d));
        req.on('end', () => resolve({ status: Number(h[':status']), headers: h, body: Buffer.concat(chunks) }));
        req.on('error', reject);
        req.end(body);
      });
    const q = encodeQuery('plain.example.test', RRType.A, { id: 0x4242 });
    const dns = Buffer.from(q).toString('base64url');
    try {
      assert.equal((await ask({ ':path': '/other' })).status, 404);
      assert.equal((await ask({ ':path': '/dns-query/' })).status, 404);
      assert.equal((await ask({ ':method': 'PUT', ':path': '/dns-query' }, Buffer.from('x'))).status, 405);
      assert.equal((await ask({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'text/plain' }, Buffer.from('x'))).status, 415);
      assert.equal((await ask({ ':path': '/dns-query' })).status, 400, 'GET without dns=');
      assert.equal((await ask({ ':path': '/dns-query?dns=!!!' })).status, 400);
      assert.equal((await ask({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, Buffer.alloc(12))).status, 200, 'a header alone: FORMERR or an empty answer, not a crash');
      const big = await ask({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, Buffer.alloc(70000)).catch(() => ({ status: 413 }));
      assert.equal(big.status, 413);
      for (const r of [
        await ask({ ':path': `/dns-query?dns=${dns}` }),
        await ask({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, q),
        await ask({ ':method': 'POST', ':path': '/dns-query?x=1', 'content-type': 'application/dns-message' }, q),
      ]) {
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], 'application/dns-message');
        assert.equal(Number(r.headers['content-length']), r.body.length);
        assert.equal(r.headers['cache-control'], 'max-age=30');
        const m = decodeMessage(r.body);
        assert.equal(m.id, 0x4242);
        assert.equal(m.answers.length, 1);
      }
      // Another length, another content-length (the header lists are kept by TTL and length).
      const other = await ask({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, encodeQuery('secret.example.test', RRType.AAAA));
      assert.equal(Number(other.headers['content-length']), other.body.length);
      assert.equal(decodeMessage(other.body).answers.length, 1);
    } finally {
      session.close();
    }
  });
});
