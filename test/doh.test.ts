/**
 * RFC 8484 examples, the DNS message codec, and the DoH client against a real
 * DoH server (the recipe's dohzone.py over HTTPS, until echgate serves DoH).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { fromHex, toHex } from '../src/bytes/util.js';
import { describeAnswers, dohQuery } from '../src/dns/doh-client.js';
import { EchgateError } from '../src/errors.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { decodeMessage, encodeQuery, RCode, RRType } from '../src/wire/dns/message.js';
import { json, ROOT } from './helpers.js';

const run = promisify(execFile);
const doh = json('rfc8484-doh-examples.json');
const RECIPE = join(ROOT, '..', 'shared', 'recipes', 'chromium-ech');

describe('RFC 8484 §4.1.1 / §4.2.2 examples', () => {
  it('queries encode to the RFC bytes and GET parameters', () => {
    for (const r of doh.requests) {
      // The POST example names no qname field: take the question from its own bytes.
      const question = decodeMessage(fromHex(r.dns_message_hex)).questions[0]!;
      assert.equal(question.name, r.qname ?? 'www.example.com');
      const q = encodeQuery(question.name, question.type, { id: 0 });
      assert.equal(toHex(q), r.dns_message_hex, r.name);
      if (r.method === 'GET') assert.equal(Buffer.from(q).toString('base64url'), r.dns_param);
    }
  });
  it('the response decodes (with a compressed owner name)', () => {
    const res = doh.responses[0];
    const m = decodeMessage(fromHex(res.body_hex));
    assert.equal(m.rcode, RCode.NOERROR);
    const [a] = describeAnswers(m);
    assert.deepEqual([a!.name, a!.type, a!.ttl, a!.data], [res.answer.name, 'AAAA', res.answer.ttl, res.answer.address]);
  });
  it('random bytes and truncations never throw anything but EchgateError', () => {
    const body = fromHex(doh.responses[0].body_hex);
    for (let n = 0; n < body.length; n++) assert.throws(() => decodeMessage(body.subarray(0, n)), EchgateError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        try {
          decodeMessage(b);
        } catch (e) {
          assert.ok(e instanceof EchgateError, String(e));
        }
      }),
      { numRuns: 3000 },
    );
  });
});

const skip = !existsSync(join(RECIPE, 'dohzone.py')) ? `no DoH scaffolding at ${RECIPE}` : false;

describe('DoH client and echgate resolve against a real DoH server', { skip }, () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-doh-'));
  let port = 0;
  let proc: ChildProcess | undefined;
  let list = '';
  before(async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=doh', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(W, 'doh.key'), '-out', join(W, 'doh.pem')], { stdio: 'ignore' });
    generateKey(join(W), { publicName: 'public.example.test' });
    list = Buffer.from(publishedList(listKeys(W).keys)!).toString('base64');
    writeFileSync(
      join(W, 'zone.json'),
      JSON.stringify({
        'secret.example.test': { A: ['127.0.0.1'], HTTPS: { priority: 1, target: '.', alpn: ['h2', 'http/1.1'], ech: list } },
      }),
    );
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    port = (s.address() as net.AddressInfo).port;
    await new Promise((r) => s.close(r));
    proc = spawn('python3', [join(RECIPE, 'dohzone.py'), '--zone', join(W, 'zone.json'), '--cert', join(W, 'doh.pem'), '--key', join(W, 'doh.key'), '--listen', `127.0.0.1:${port}`, '--no-h2'], { stdio: 'ignore' });
    // Wait for python's listener: a liveness bound (30 s), generous for a loaded machine.
    for (let i = 0; i < 300; i++) {
      const ok = await new Promise<boolean>((r) => net.connect(port, '127.0.0.1').once('connect', function (this: net.Socket) { this.destroy(); r(true); }).once('error', () => r(false)));
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(() => proc?.kill());

  for (const method of ['GET', 'POST'] as const) {
    it(`${method}: the HTTPS record with ech= decodes to the published ECHConfigList`, async () => {
      const m = await dohQuery(`https://127.0.0.1:${port}/dns-query`, 'secret.example.test', RRType.HTTPS, { ca: readFileSync(join(W, 'doh.pem'), 'utf8'), method });
      assert.equal(m.rcode, RCode.NOERROR);
      const [rr] = describeAnswers(m, m.raw);
      assert.equal(rr!.type, 'HTTPS');
      assert.equal(rr!.echConfigList, list);
      assert.equal(rr!.ech![0]!.publicName, 'public.example.test');
      assert.match(rr!.data, /^1 \. alpn="h2,http\/1\.1" ech="/);
    });
  }

  it('NXDOMAIN for a name the server does not hold; the CLI reports it', async () => {
    const m = await dohQuery(`https://127.0.0.1:${port}/dns-query`, 'nothing.example.test', RRType.A, { ca: readFileSync(join(W, 'doh.pem'), 'utf8') });
    assert.equal(m.rcode, RCode.NXDOMAIN);
    const { stdout } = await run('node', [join(ROOT, 'bin', 'echgate.js'), 'resolve', 'secret.example.test', '--doh', `https://127.0.0.1:${port}/dns-query`, '--ca', join(W, 'doh.pem')]);
    const r = JSON.parse(stdout);
    assert.equal(r.rcode, 'NOERROR');
    assert.equal(r.answers[0].echConfigList, list);
  });

  it('a DoH server with an untrusted certificate is refused', async () => {
    await assert.rejects(dohQuery(`https://127.0.0.1:${port}/dns-query`, 'secret.example.test', RRType.HTTPS), /certificate|self.signed/i);
  });
});
