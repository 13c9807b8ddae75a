/**
 * The DoH resolver and `echgate connect --doh` against echgate's own
 * embedded DoH server: the browser path (HTTPS record at _PORT._https.NAME,
 * ech=, port, then the TargetName's address) ends in an accepted ECH; an
 * AliasMode record is followed and a loop refused; answers are cached for
 * min(TTL, max-age) and refetched after, counted at the server.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from '../src/cli/free-port.js';
import { readBackEch } from '../src/dns/publisher.js';
import { DohResolver, freshness, MAX_ALIAS_CHAIN, MAX_CACHE_ENTRIES } from '../src/dns/resolver.js';
import { isEchgateError } from '../src/errors.js';
import { generateKey } from '../src/keys/manager.js';
import type { DnsMessage } from '../src/wire/dns/message.js';
import { RRType } from '../src/wire/dns/message.js';
import { caAndLeaf, ROOT, sleep } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');

describe('RFC 8484 §5.1: freshness is min(TTL of the answers, max-age)', () => {
  const rr = (type: number, ttl: number, rdata = new Uint8Array(4)) => ({ name: 'a.test', type, cls: 1, ttl, rdata, rdataOffset: 0, offset: 0 });
  const msg = (answers: ReturnType<typeof rr>[], authorities: ReturnType<typeof rr>[] = []): DnsMessage => ({ id: 0, flags: 0, rcode: 0, questions: [], answers, authorities, additionals: [] });
  it('the smallest TTL of the answer records, capped by max-age; no-store is not cached', () => {
    assert.equal(freshness(msg([rr(1, 300), rr(1, 120)]), { noStore: false }), 120);
    assert.equal(freshness(msg([rr(1, 300)]), { maxAge: 1, noStore: false }), 1);
    assert.equal(freshness(msg([rr(1, 5)]), { maxAge: 60, noStore: false }), 5);
    assert.equal(freshness(msg([rr(1, 300)]), { maxAge: 60, noStore: true }), 0);
  });
  it('RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); without SOA it is not cached', () => {
    const soa = rr(RRType.SOA, 900, Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 30));
    assert.equal(freshness(msg([], [soa]), { noStore: false }), 30);
    assert.equal(freshness(msg([]), { noStore: false }), 0);
  });
});

describe('echgate connect --doh: the browser path against the embedded DoH', () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-resolver-'));
  const keysDir = join(W, 'keys');
  let child: ChildProcess;
  let out = '';
  let backend: net.Server;
  let port = 0;
  let dohPort = 0;
  let metricsPort = 0;
  let url = '';
  const dohCa = join(W, 'doh.pem');

  before(async () => {
    caAndLeaf(W, ['public.example.test', 'secret.example.test', 'alias.example.test']);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=dns.test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(W, 'doh.key'), '-out', dohCa], { stdio: 'ignore' });
    mkdirSync(keysDir);
    generateKey(keysDir, { publicName: 'public.example.test' });
    backend = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => s.end(`backend got ${d.length} bytes`));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    [port, dohPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    url = `https://127.0.0.1:${dohPort}/dns-query`;
    const f = join(W, 'echgate.yml');
    writeFileSync(
      f,
      `
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:${port}" } }
metrics: { address: "127.0.0.1:${metricsPort}" }
ech: { keysDir: ${JSON.stringify(keysDir)} }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`) || HostSNI(\`alias.example.test\`)", requireECH: true, service: b, tls: {} }
    public: { rule: "HostSNI(\`public.example.test\`)", service: b, tls: {} }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
dns:
  ttl: 30
  doh: { address: "127.0.0.1:${dohPort}", certFile: ${JSON.stringify(dohCa)}, keyFile: ${JSON.stringify(join(W, 'doh.key'))} }
  names:
    secret.example.test: { a: [127.0.0.1], https: { alpn: [http/1.1], port: ${port} } }
    alias.example.test: { https: { alias: secret.example.test, port: ${port} } }
    loop1.example.test: { https: { alias: loop2.example.test } }
    loop2.example.test: { https: { alias: loop1.example.test } }
    noaddr.example.test: { https: { alpn: [h2] } }
`,
    );
    child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => {
      out += d;
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    for (let i = 0; i < 200 && !out.includes('DoH server listening'); i++) await sleep(50);
    assert.match(out, /DoH server listening/);
  });
  after(() => {
    child?.kill('SIGKILL');
    backend?.close();
  });

  const connect = async (target: string, ...extra: string[]) => {
    const args = [BIN, 'connect', target, '--doh', url, '--doh-ca', dohCa, '--ca', join(W, 'ca.pem'), '--send', 'GET / HTTP/1.1\\r\\n\\r\\n', ...extra];
    try {
      const { stdout } = await run('node', args);
      return { code: 0, json: JSON.parse(stdout) };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, json: x.stdout ? JSON.parse(x.stdout) : undefined, stderr: x.stderr };
    }
  };

  it('RFC 9460 §9.1 + RFC 9849 §6: NAME:PORT asks _PORT._https.NAME, takes ech=, port and the TargetName address, and ECH is accepted', async () => {
    const r = await connect(`secret.example.test:${port}`);
    assert.equal(r.code, 0, JSON.stringify(r));
    assert.equal(r.json.ech, 'accepted');
    assert.equal(r.json.dns.queried, `_${port}._https.secret.example.test`);
    assert.equal(r.json.dns.target, 'secret.example.test');
    assert.equal(r.json.dns.address, '127.0.0.1');
    assert.equal(r.json.dns.port, port);
    assert.equal(r.json.dns.ech, true);
    assert.deepEqual(r.json.dns.alpn, ['http/1.1']);
    assert.match(r.json.reply, /backend got/);
  });

  it('RFC 9460 §2.4.2: an AliasMode record is followed to its TargetName, whose ServiceMode record gives ech=', async () => {
    const r = await connect(`alias.example.test:${port}`);
    assert.equal(r.code, 0, JSON.stringify(r));
    assert.equal(r.json.ech, 'accepted');
    assert.deepEqual(r.json.dns.aliases, ['secret.example.test']);
    assert.equal(r.json.dns.target, 'secret.example.test');
  });

  it('RFC 9460 §2.4.2: an alias loop is refused (ERR_DNS_ALIAS), as is a target without an address (ERR_DNS_NO_ADDRESS)', async () => {
    const res = new DohResolver(url, { ca: readFileSync(dohCa, 'utf8') });
    await assert.rejects(res.https('loop1.example.test', 443), (e) => isEchgateError(e) && e.code === 'ERR_DNS_ALIAS');
    assert.ok(res.networkQueries <= MAX_ALIAS_CHAIN + 1);
    await assert.rejects(res.https('noaddr.example.test', 443), (e) => isEchgateError(e) && e.code === 'ERR_DNS_NO_ADDRESS');
    const r = await connect('loop1.example.test:443');
    assert.equal(r.code, 1);
    assert.match(r.stderr!, /ERR_DNS_ALIAS/);
  });

  it('RFC 8484 §5.1: a second query within the TTL is answered from the cache, a query after it goes to the server; fresh bypasses', async () => {
    const count = async () => {
      const m = (await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).match(/echgate_dns_queries_total\{rcode="NOERROR",transport="doh",type="A"\} (\d+)/);
      return m ? Number(m[1]) : 0;
    };
    let clock = 1_000_000;
    const res = new DohResolver(url, { ca: readFileSync(dohCa, 'utf8'), now: () => clock });
    const before = await count();
    const first = await res.query('secret.example.test', RRType.A);
    assert.equal(first.cached, false);
    assert.equal(first.lifetime, 30, 'dns.ttl 30, max-age 30');
    clock += 29_000;
    const second = await res.query('secret.example.test', RRType.A);
    assert.equal(second.cached, true);
    assert.equal(await count(), before + 1, 'one query reached the server');
    clock += 2_000;
    const third = await res.query('secret.example.test', RRType.A);
    assert.equal(third.cached, false);
    assert.equal(await count(), before + 2, 'after the TTL the server is asked again');
    const fresh = await res.query('secret.example.test', RRType.A, { fresh: true });
    assert.equal(fresh.cached, false);
    assert.equal(await count(), before + 3, 'fresh: true (the publish read-back) bypasses the cache');
    // RFC 8484 §4.1: POST works the same, and its answer is cached the same.
    const post = new DohResolver(url, { ca: readFileSync(dohCa, 'utf8'), method: 'POST', now: () => clock });
    assert.equal((await post.query('secret.example.test', RRType.A)).cached, false);
    assert.equal((await post.query('secret.example.test', RRType.A)).cached, true);
    assert.equal(await count(), before + 4);
  });

  it('the cache is bounded: past MAX_CACHE_ENTRIES the oldest answer is dropped', async () => {
    const res = new DohResolver(url, { ca: readFileSync(dohCa, 'utf8') });
    // Reach into the cache with names that are answered without the network: fill it through the public path would take 1024 queries.
    const cache = (res as unknown as { cache: Map<string, unknown> }).cache;
    for (let i = 0; i < MAX_CACHE_ENTRIES; i++) cache.set(`filler${i}/1`, { expires: Number.POSITIVE_INFINITY, answer: {} });
    await res.query('secret.example.test', RRType.A);
    assert.equal(res.cacheSize, MAX_CACHE_ENTRIES);
    assert.equal(cache.has('filler0/1'), false, 'the oldest went');
    assert.equal((await res.query('secret.example.test', RRType.A)).cached, true);
  });

  it('the publish read-back polls past the cache: every attempt reaches the server', async () => {
    const count = async () => {
      const m = (await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).match(/echgate_dns_queries_total\{rcode="NOERROR",transport="doh",type="HTTPS"\} (\d+)/);
      return m ? Number(m[1]) : 0;
    };
    const before = await count();
    // A list DNS never serves: the read-back polls until its deadline (TTL 30 s, so a cache would answer all but one).
    const err = await readBackEch(url, 'secret.example.test', Uint8Array.of(1, 2, 3), { ca: readFileSync(dohCa, 'utf8'), timeoutMs: 800, intervalMs: 100 }).catch((e) => e);
    assert.ok(isEchgateError(err) && err.code === 'ERR_DNS_READBACK', String(err));
    const attempts = Number(/after (\d+) attempt/.exec(err.message)![1]);
    assert.ok(attempts >= 2, err.message);
    // The last attempt may be cut by the read-back deadline before the server counts it; a cache would leave 1.
    const reached = (await count()) - before;
    assert.ok(reached >= 2 && reached >= attempts - 1 && reached <= attempts, `${reached} of ${attempts} attempts reached the server`);
  });

  it('usage: --doh excludes --ech-config and --keys; --doh-ca needs --doh', async () => {
    await assert.rejects(run('node', [BIN, 'connect', 'a.test:443', '--doh', url, '--keys', keysDir]), (e: { code: number }) => e.code === 2);
    await assert.rejects(run('node', [BIN, 'connect', 'a.test:443', '--doh-ca', dohCa]), (e: { code: number }) => e.code === 2);
  });
});
