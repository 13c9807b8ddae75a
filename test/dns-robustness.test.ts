/**
 * What a remote client can do to `echgate serve`'s embedded DNS (UDP, TCP,
 * DoH), each attack run against a real serve process, which must still answer
 * dig and kdig afterwards: names at the 255-octet limit (RFC 1035 §2.3.4),
 * many compressed questions (RFC 9619), amplification over UDP (compared with
 * BIND 9 when installed), an exception inside each listener, idle and slow
 * connections on DoH and TCP (RFC 7766 §6.2.3), a pipelining client that does
 * not read (RFC 7766 §6.2.1.1), classes other than IN. Then the clients:
 * `resolve`'s DoH query and `publish`'s UPDATE against servers that drip or
 * answer the wrong question.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { freePort } from '../src/cli/free-port.js';
import { dohQuery } from '../src/dns/doh-client.js';
import { publishHttps } from '../src/dns/publisher.js';
import { isEchgateError } from '../src/errors.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';
import { decodeName, encodeName } from '../src/wire/dns/name.js';
import { fakeUpdatePrimary, ROOT, sleep, tlsAsk, tlsBackend, updateNoError } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');

/** A wire name of exactly `octets` octets (length octets and the root included), labels of 'a'. */
function wireName(octets: number): number[] {
  const out: number[] = [];
  let left = octets - 1; // the root's zero
  while (left > 0) {
    const l = Math.min(63, left - 1);
    out.push(l, ...new Array<number>(l).fill(0x61));
    left -= l + 1;
  }
  out.push(0);
  return out;
}

/** A query with the given header bits; the first question spelled out, the others pointers to it (RFC 1035 §4.1.4). */
function rawQuery(o: { id?: number; opcode?: number; name?: number[]; questions?: number; type?: number; cls?: number; edns?: number; ednsVersion?: number }): Buffer {
  const n = o.questions ?? 1;
  const h = [(o.id ?? 0x1234) >> 8, (o.id ?? 0x1234) & 0xff, ((o.opcode ?? 0) << 3) & 0x78, 0, n >> 8, n & 0xff, 0, 0, 0, 0, 0, o.edns ? 1 : 0];
  const type = o.type ?? RRType.A;
  const cls = o.cls ?? 1;
  const body = [...(o.name ?? wireName(40)), type >> 8, type & 0xff, cls >> 8, cls & 0xff];
  for (let i = 1; i < n; i++) body.push(0xc0, 12, type >> 8, type & 0xff, cls >> 8, cls & 0xff);
  if (o.edns) body.push(0, 0, 41, o.edns >> 8, o.edns & 0xff, 0, o.ednsVersion ?? 0, 0, 0, 0, 0);
  return Buffer.from([...h, ...body]);
}

async function udpAsk(port: number, q: Uint8Array, waitMs = 1000): Promise<Buffer | undefined> {
  const s = dgram.createSocket('udp4');
  try {
    return await new Promise<Buffer | undefined>((resolve) => {
      const t = setTimeout(() => resolve(undefined), waitMs);
      s.once('message', (m) => {
        clearTimeout(t);
        resolve(m);
      });
      s.send(q, port, '127.0.0.1');
    });
  } finally {
    s.close();
  }
}

/** One framed query over a fresh TCP connection: the reply, or undefined when the server closed first. */
function tcpAsk(port: number, q: Uint8Array): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    c.setTimeout(5000, () => c.destroy(new Error('TCP DNS: no answer and no close')));
    c.on('error', reject);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        c.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
    c.on('close', () => resolve(undefined));
    const framed = Buffer.alloc(2 + q.length);
    framed.writeUInt16BE(q.length, 0);
    framed.set(q, 2);
    c.write(framed);
  });
}

/** A connection from `localAddress` (127.0.0.0/8 is all loopback on Linux): resolves when it is up; `closed` settles when the server ends it. */
function hold(port: number, localAddress = '127.0.0.1'): Promise<{ sock: net.Socket; closed: Promise<void>; isClosed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    let done = false;
    const closed = new Promise<void>((r) =>
      sock.once('close', () => {
        done = true;
        r();
      }),
    );
    sock.on('error', () => {});
    sock.once('connect', () => resolve({ sock, closed, isClosed: () => done }));
    sock.once('error', reject);
  });
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

describe('echgate serve: the embedded DNS under attack keeps serving', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-dns-robust-'));
  const cert = join(dir, 'doh.crt');
  const key = join(dir, 'doh.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=dns.test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:dns.test', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const ca = readFileSync(cert, 'utf8');
  let child: ChildProcess;
  let out = '';
  let backend: Awaited<ReturnType<typeof tlsBackend>>;
  let port = 0;
  let dnsPort = 0;
  let dohPort = 0;
  let metricsPort = 0;

  before(async () => {
    backend = await tlsBackend('app');
    [port, dnsPort, dohPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const f = join(dir, 'echgate.yml');
    writeFileSync(
      f,
      `
entryPoints: { websecure: { address: "127.0.0.1:${port}" } }
metrics: { address: "127.0.0.1:${metricsPort}" }
tcp:
  routers:
    r: { entryPoints: [websecure], rule: "HostSNI(\`app.example.test\`)", service: app, tls: { passthrough: true } }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${backend.port}" }] } }
dns:
  address: "127.0.0.1:${dnsPort}"
  tcp: { maxConnections: 12, maxConnectionsPerIP: 4, idleTimeout: 3s, queryTimeout: 1s }
  doh:
    address: "127.0.0.1:${dohPort}"
    certFile: ${JSON.stringify(cert)}
    keyFile: ${JSON.stringify(key)}
    maxConnections: 8
    respondingTimeouts: { readTimeout: 1s, idleTimeout: 2s }
    http2: { maxConcurrentStreams: 7, maxHeaderListSize: 4096 }
  names:
    secret.example.test: { a: [127.0.0.1] }
    many.example.test: { a: [${Array.from({ length: 40 }, (_, i) => `10.0.0.${i + 1}`).join(', ')}] }
`,
    );
    // The test hook: a question for this name makes the zone throw (src/dns/service.ts).
    child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ECHGATE_TEST_DNS_THROW: 'boom.secret.example.test' } });
    child.stdout!.on('data', (d) => {
      out += d;
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    for (let i = 0; i < 200 && !(out.includes('DoH server listening') && out.includes('DNS server listening')); i++) await sleep(50);
    assert.match(out, /DoH server listening/);
  });
  after(async () => {
    child.kill('SIGKILL');
    await backend.close();
  });

  /** The well-behaved clients: dig over UDP and TCP, kdig over DoH (HTTP/2), and the process still running. */
  async function stillServing() {
    assert.equal(child.exitCode, null, `serve exited:\n${out.slice(-2000)}`);
    const dig = async (...a: string[]) => (await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', '+time=2', '+tries=2', ...a, 'secret.example.test', 'A'])).stdout.trim();
    assert.equal(await dig(), '127.0.0.1');
    assert.equal(await dig('+tcp'), '127.0.0.1');
    const { stdout } = await run('kdig', ['-p', String(dohPort), '@127.0.0.1', '+https', `+tls-ca=${cert}`, '+tls-hostname=dns.test', '+short', '+timeout=3', 'secret.example.test', 'A']);
    assert.equal(stdout.trim(), '127.0.0.1');
  }

  /** One DoH request over HTTP/2: status and body. */
  async function doh(method: 'GET' | 'POST', q: Uint8Array, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
    const session = http2.connect(`https://127.0.0.1:${dohPort}`, { ca, servername: 'dns.test' });
    session.on('error', () => {});
    try {
      return await new Promise((resolve, reject) => {
        const path = method === 'GET' ? `/dns-query?dns=${Buffer.from(q).toString('base64url')}` : '/dns-query';
        const req = session.request({ ':method': method, ':path': path, accept: 'application/dns-message', ...(method === 'POST' ? { 'content-type': 'application/dns-message' } : {}), ...headers });
        const chunks: Buffer[] = [];
        let status = 0;
        req.on('response', (h) => {
          status = Number(h[':status']);
        });
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
        req.on('error', reject);
        req.end(method === 'POST' ? Buffer.from(q) : undefined);
      });
    } finally {
      session.close();
    }
  }

  it('RFC 1035 §2.3.4: a 256-octet query name is FORMERR (DoH: 400) on every transport, a 255-octet one is answered; the process lives', async () => {
    const tooLong = rawQuery({ name: wireName(256) });
    const longest = rawQuery({ name: wireName(255) });
    for (const method of ['GET', 'POST'] as const) {
      assert.equal((await doh(method, tooLong)).status, 400);
      const ok = await doh(method, longest);
      assert.equal(ok.status, 200);
      assert.equal(decodeMessage(new Uint8Array(ok.body)).rcode, 5, 'not our name: REFUSED');
    }
    assert.equal((await udpAsk(dnsPort, tooLong))![3]! & 0x0f, 1);
    assert.equal((await tcpAsk(dnsPort, tooLong))![3]! & 0x0f, 1);
    assert.equal(decodeMessage(new Uint8Array((await udpAsk(dnsPort, longest))!)).questions[0]!.name.length, 253);
    await stillServing();
  });

  it('RFC 9619: a 2 KB TCP query of many compressed questions with opcode 1 gets a header-only FORMERR, not a 76 KB reply', async () => {
    for (const opcode of [0, 1, 2]) {
      const q = rawQuery({ opcode, name: wireName(250), questions: 300 });
      assert.ok(q.length < 2100);
      const r = await tcpAsk(dnsPort, q);
      assert.ok(r, 'an answer');
      assert.equal(r.length, 12);
      assert.equal(r[3]! & 0x0f, 1);
    }
    await stillServing();
  });

  it('RFC 1035 §4.2.1, RFC 6891 §6.2.5: UDP replies fit the client and are never larger than the query when they are errors (as BIND 9 answers)', async (t) => {
    const attacks: Record<string, Buffer> = {
      'NOTIMP, 200 questions': rawQuery({ opcode: 1, name: wireName(250), questions: 200 }),
      'FORMERR, 200 questions': rawQuery({ name: wireName(250), questions: 200 }),
      'FORMERR, 200 questions, EDNS 4096': rawQuery({ name: wireName(250), questions: 200, edns: 4096 }),
      'BADVERS, 200 questions': rawQuery({ name: wireName(250), questions: 200, edns: 4096, ednsVersion: 1 }),
      'NOTIMP, 1 question': rawQuery({ opcode: 1, name: wireName(250) }),
      'BADVERS, 1 question': rawQuery({ name: wireName(250), edns: 4096, ednsVersion: 1 }),
    };
    const ratios: Record<string, number> = {};
    for (const [what, q] of Object.entries(attacks)) {
      const r = await udpAsk(dnsPort, q);
      assert.ok(r, what);
      assert.ok(r.length <= 512, `${what}: ${r.length} octets`);
      assert.ok(r.length <= q.length, `${what}: ${r.length} > ${q.length}`);
      assert.ok(r.readUInt16BE(4) <= 1, `${what}: qdcount ${r.readUInt16BE(4)}`);
      ratios[what] = r.length / q.length;
    }
    // A big answer: 512 without EDNS, the client's size with it; TC set when cut.
    for (const edns of [undefined, 600]) {
      const r = (await udpAsk(dnsPort, encodeQuery('many.example.test', RRType.A, { id: 9, udpSize: edns })))!;
      assert.ok(r.length <= (edns ?? 512));
      assert.equal(r[2]! & 0x02, 0x02, 'TC');
    }
    // The same queries to BIND 9, authoritative for a zone, recursion off.
    if (!existsSync('/usr/sbin/named')) return t.diagnostic('BIND 9 not installed: compared with the bound above only');
    const w = mkdtempSync(join(tmpdir(), 'echgate-bind-amp-'));
    const bindPort = await freePort();
    writeFileSync(join(w, 'z.db'), '$TTL 300\n@ SOA ns1.example.test. admin.example.test. 1 3600 600 86400 300\n@ NS ns1\nns1 A 127.0.0.1\n');
    writeFileSync(
      join(w, 'named.conf'),
      `options { directory "${w}"; pid-file "${w}/named.pid"; session-keyfile "${w}/s.key"; listen-on port ${bindPort} { 127.0.0.1; }; listen-on-v6 { none; }; recursion no; dnssec-validation no; };\nzone "example.test" { type primary; file "z.db"; };\n`,
    );
    const named = spawn('/usr/sbin/named', ['-g', '-c', join(w, 'named.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    named.stderr!.on('data', (d) => {
      log += d;
    });
    try {
      // Up when it answers (the machine may be busy: up to 30 s).
      const probe = encodeQuery('ns1.example.test', RRType.A, { id: 3 });
      for (let i = 0; i < 30 && !(await udpAsk(bindPort, probe)); i++) await sleep(100);
      assert.ok(await udpAsk(bindPort, probe, 3000), `named did not answer:\n${log}`);
      for (const [what, q] of Object.entries(attacks)) {
        let r: Buffer | undefined;
        for (let i = 0; i < 3 && !r; i++) r = await udpAsk(bindPort, q, 2000);
        assert.ok(r, `BIND did not answer ${what}`);
        const bind = r.length / q.length;
        t.diagnostic(`${what}: echgate ${ratios[what]!.toFixed(3)}, BIND ${bind.toFixed(3)}`);
        assert.ok(ratios[what]! <= bind + 1e-9, `${what}: echgate ${ratios[what]} > BIND ${bind}`);
      }
    } finally {
      named.kill();
    }
  });

  it('an exception inside each listener (UDP, TCP, DoH GET and POST) ends only that query, is counted, and is logged rate-limited', async () => {
    const boom = encodeQuery('boom.secret.example.test', RRType.A, { id: 7 });
    const s = dgram.createSocket('udp4');
    for (let i = 0; i < 200; i++) s.send(boom, dnsPort, '127.0.0.1');
    await sleep(300);
    s.close();
    assert.equal(await tcpAsk(dnsPort, boom), undefined, 'TCP: the connection ends without a reply');
    assert.equal((await doh('GET', boom)).status, 500);
    assert.equal((await doh('POST', boom)).status, 500);
    await stillServing();
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const n = (transport: string) => Number(new RegExp(`echgate_handler_errors_total\\{listener="dns_${transport}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    assert.ok(n('udp') >= 100, `udp errors counted: ${n('udp')}`);
    assert.equal(n('tcp'), 1);
    assert.equal(n('doh'), 2);
    const lines = out.split('\n').filter((l) => l.includes('internal error'));
    assert.ok(lines.length >= 1 && lines.length <= 30, `${lines.length} log lines for ${n('udp') + 3} errors`);
  });

  it('RFC 1035 §3.2.4: only class IN is answered; CH, HS and ANY get REFUSED without AA (as BIND 9)', async () => {
    for (const cls of ['CH', 'HS', 'ANY']) {
      const { stdout } = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+time=2', '+tries=1', '-c', cls, 'secret.example.test', 'A']);
      assert.match(stdout, /status: REFUSED/, cls);
      assert.doesNotMatch(stdout, /flags: [a-z ]*aa/);
      assert.doesNotMatch(stdout, /ANSWER SECTION/);
    }
  });

  it('DoH: connections past maxConnections close at once, idle ones after the read timeout; the proxy entrypoint keeps serving', async () => {
    const conns = await Promise.all(Array.from({ length: 20 }, () => hold(dohPort)));
    for (let i = 0; i < 30 && conns.filter((c) => c.isClosed()).length < 12; i++) await sleep(100);
    const early = conns.filter((c) => c.isClosed()).length;
    assert.ok(early >= 12, `${early} of 20 closed by the cap of 8`);
    // The proxy's own listener is not starved by a saturated DoH listener.
    assert.match(await tlsAsk(port, 'app.example.test'), /^app /);
    // Connections that never send a TLS hello are closed after readTimeout (1s).
    await within(Promise.all(conns.map((c) => c.closed)), 4000, 'idle DoH connections closed');
    await stillServing();
  });

  it('DoH over HTTP/2: SETTINGS carry the stream and header limits; a silent session closes after the read timeout, an idle one after the idle timeout; an oversized header list is refused', async () => {
    const session = http2.connect(`https://127.0.0.1:${dohPort}`, { ca, servername: 'dns.test' });
    session.on('error', () => {});
    const closed = new Promise<void>((r) => session.once('close', () => r()));
    const settings = await within(new Promise<http2.Settings>((r) => session.once('remoteSettings', r)), 3000, 'SETTINGS');
    assert.equal(settings.maxConcurrentStreams, 7);
    assert.equal(settings.maxHeaderListSize, 4096);
    await within(closed, 3000, 'a session that sends no request closed after readTimeout');
    // An oversized header list: that request fails, the server stays up.
    assert.equal((await doh('GET', encodeQuery('secret.example.test', RRType.A), { 'x-pad': 'p'.repeat(6000) })).status, 431);
    // Idle after one request: closed after idleTimeout (2s).
    const s2 = http2.connect(`https://127.0.0.1:${dohPort}`, { ca, servername: 'dns.test' });
    s2.on('error', () => {});
    const closed2 = new Promise<void>((r) => s2.once('close', () => r()));
    const status = await new Promise<number>((resolve) => {
      const req = s2.request({ ':path': `/dns-query?dns=${Buffer.from(encodeQuery('secret.example.test', RRType.A)).toString('base64url')}` });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.resume();
      req.end();
    });
    assert.equal(status, 200);
    await within(closed2, 5000, 'an idle session closed after idleTimeout');
    // A POST whose body drips: the request ends after readTimeout, however it paces its bytes.
    const s3 = http2.connect(`https://127.0.0.1:${dohPort}`, { ca, servername: 'dns.test' });
    s3.on('error', () => {});
    const req = s3.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' });
    req.on('error', () => {});
    const ended = new Promise<void>((r) => req.once('close', () => r()));
    const q = encodeQuery('secret.example.test', RRType.A);
    const drip = setInterval(() => !req.destroyed && req.write(Buffer.from([q[0]!])), 200);
    try {
      await within(ended, 4000, 'a dripping POST ended by the read timeout');
    } finally {
      clearInterval(drip);
      s3.destroy();
    }
    await stillServing();
  });

  it('RFC 7766 §6.2.3 TCP: a query must arrive whole within queryTimeout of its first byte; dripping clients are closed, the per-address cap refuses the rest', async () => {
    const slow = await Promise.all(Array.from({ length: 6 }, () => hold(dnsPort, '127.0.0.2')));
    // Polled for at most 1.5 s, well inside the idle timeout (3 s) that would close the others too.
    for (let i = 0; i < 15 && slow.filter((c) => c.isClosed()).length < 2; i++) await sleep(100);
    assert.equal(slow.filter((c) => c.isClosed()).length, 2, 'maxConnectionsPerIP 4: two of six closed at once');
    // dig from another address is served meanwhile.
    assert.equal((await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+tcp', '+short', '+time=2', '+tries=1', 'secret.example.test', 'A'])).stdout.trim(), '127.0.0.1');
    const q = encodeQuery('secret.example.test', RRType.A);
    const framed = Buffer.concat([Buffer.from([0, q.length]), q]);
    let i = 0;
    const drip = setInterval(() => {
      for (const c of slow) if (!c.isClosed()) c.sock.write(framed.subarray(i % framed.length, (i % framed.length) + 1));
      i++;
    }, 150);
    try {
      // A byte every 150 ms: the old "any byte resets the idle timer" kept these forever.
      await within(Promise.all(slow.map((c) => c.closed)), 4000, 'dripping TCP clients closed by queryTimeout (1s)');
    } finally {
      clearInterval(drip);
    }
    await stillServing();
  });

  it('TCP: the overall connection cap refuses more, idle connections close after idleTimeout, and dig +tcp is served again', async () => {
    const held = [];
    for (const a of ['127.0.0.3', '127.0.0.4', '127.0.0.5']) for (let k = 0; k < 4; k++) held.push(await hold(dnsPort, a));
    await sleep(200);
    assert.equal(held.filter((c) => c.isClosed()).length, 0);
    const extra = await hold(dnsPort, '127.0.0.6');
    await within(extra.closed, 1500, 'the 13th connection closed at once (maxConnections 12)');
    await within(Promise.all(held.map((c) => c.closed)), 7000, 'idle connections closed after idleTimeout (3s)');
    await stillServing();
  });

  // Issue #7 note (2026-12-02): this check used to time out after earlier tests, and was marked todo. The
  // server was not at fault: it stopped reading, and closed the connection idleTimeout after its replies
  // backed up, every time (traced). The client here wrote its 4 MB, all of which fit in the two kernels'
  // buffers on loopback, and then neither read nor wrote: libuv watches a socket only while it reads or has
  // a write queued, so the client's Node never saw the reset. Whether 4 MB fit depended on how far TCP had
  // grown the buffers, which is why it passed alone on a quiet machine. Now the client keeps sending, as a
  // real flooder does, so the close reaches it whatever the buffer sizes.
  it('RFC 7766 §6.2.1.1 TCP: a pipelining client that never reads its replies is not buffered without bound, and is closed', async () => {
    const pid = child.pid!;
    const before = rssKiB(pid);
    const c = await hold(dnsPort, '127.0.0.7');
    // 37-octet queries for a 1.3 KB answer: 4 MB of them would be 140 MB of queued replies.
    const q = encodeQuery('many.example.test', RRType.A, { id: 1 });
    const one = Buffer.concat([Buffer.from([0, q.length]), q]);
    const batch = Buffer.concat(new Array<Buffer>(1000).fill(one));
    let sent = 0;
    // A liveness bound, not a speed claim: generous, since answering the backlog first is CPU-bound on a loaded machine.
    const deadline = Date.now() + 30_000;
    while (!c.isClosed() && Date.now() < deadline) {
      // 4 MB at full speed, then one more query every 100 ms (never more than 1 MB waiting in our own queue).
      const chunk = sent < 4_000_000 ? batch : one;
      if (c.sock.writableLength < 1 << 20) {
        c.sock.write(chunk);
        sent += chunk.length;
      }
      await Promise.race([c.closed, sleep(chunk === batch && c.sock.writableLength === 0 ? 0 : 100)]);
    }
    assert.ok(c.isClosed(), 'a client that never reads is closed (idleTimeout 3s), within 30 s');
    const grown = (rssKiB(pid) - before) / 1024;
    assert.ok(grown < 60, `RSS grew ${grown.toFixed(1)} MB`);
    await stillServing();
  });
});

describe('RFC 1035 §2.3.4: one name limit for decoding and encoding', () => {
  it('255 octets decode and encode back; 256 do not decode', () => {
    const n = decodeName(Uint8Array.from(wireName(255)), 0);
    assert.equal(encodeName(n.name).length, 255);
    assert.throws(() => decodeName(Uint8Array.from(wireName(256)), 0), (e) => isEchgateError(e) && e.code === 'ERR_DECODE');
  });
  it('every name that decodes encodes back to the same octets', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 63 }), { maxLength: 8 }), (labels) => {
        const wire = Uint8Array.from([...labels.flatMap((l) => [l.length, ...l]), 0]);
        let name: string;
        try {
          name = decodeName(wire, 0).name;
        } catch {
          return wire.length > 255;
        }
        assert.deepEqual(encodeName(name), wire);
        return true;
      }),
      { numRuns: 300 },
    );
  });
});

describe('clients: resolve (DoH) and publish (UPDATE) against servers that drip or answer the wrong query', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-dns-clients-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=dns.test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
  const ca = readFileSync(join(dir, 'c'), 'utf8');

  /** A DoH server that answers every request with `answer(query)`, dripped a byte every `dripMs` when set. */
  async function fakeDoh(answer: (q: Uint8Array) => Uint8Array, dripMs?: number) {
    const timers = new Set<NodeJS.Timeout>();
    const srv = http2.createSecureServer({ cert: readFileSync(join(dir, 'c')), key: readFileSync(join(dir, 'k')) }, (req, res) => {
      const url = new URL(req.url, 'https://x');
      const q = new Uint8Array(Buffer.from(url.searchParams.get('dns') ?? '', 'base64url'));
      const body = Buffer.from(answer(q));
      res.writeHead(200, { 'content-type': 'application/dns-message' });
      if (!dripMs) return void res.end(body);
      let i = 0;
      const t = setInterval(() => {
        if (res.destroyed) return clearInterval(t);
        if (i < body.length) res.write(body.subarray(i, ++i));
        else {
          clearInterval(t);
          res.end();
        }
      }, dripMs);
      timers.add(t);
    });
    srv.on('sessionError', () => {});
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return {
      url: `https://127.0.0.1:${(srv.address() as net.AddressInfo).port}/dns-query`,
      close: () => {
        for (const t of timers) clearInterval(t);
        srv.close();
      },
    };
  }
  /** A well-formed answer to `q` (QR set, the question echoed, one A record), then edited by `edit`. */
  const answerTo = (q: Uint8Array, edit: (b: Buffer) => void = () => {}) => {
    const b = Buffer.concat([Buffer.from(q), Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1])]);
    b[2]! |= 0x80;
    b.writeUInt16BE(1, 6); // ANCOUNT
    b.writeUInt16BE(0, 10); // the OPT is left out
    const at = b.length - 16 - 11;
    const out = Buffer.concat([b.subarray(0, at), b.subarray(at + 11)]);
    edit(out);
    return new Uint8Array(out);
  };

  it('RFC 8484 §4.1: a DoH answer that drips a byte every 300 ms fails at the overall deadline (ERR_DNS_TIMEOUT)', async () => {
    const srv = await fakeDoh((q) => answerTo(q), 300);
    try {
      await assert.rejects(
        dohQuery(srv.url, 'secret.example.test', RRType.A, { ca, timeoutMs: 1500 }),
        (e) => isEchgateError(e) && e.code === 'ERR_DNS_TIMEOUT',
      );
    } finally {
      srv.close();
    }
  });

  it('RFC 8484 §4.1, RFC 5452 §9.1: a DoH answer with another id, QR clear, or another question is refused (ERR_DNS_MISMATCH); the right one is taken', async () => {
    const good = await fakeDoh((q) => answerTo(q));
    try {
      const m = await dohQuery(good.url, 'secret.example.test', RRType.A, { ca });
      assert.equal(m.answers.length, 1);
    } finally {
      good.close();
    }
    const edits: Record<string, (b: Buffer) => void> = {
      'id 0x1234': (b) => b.writeUInt16BE(0x1234, 0),
      'QR clear': (b) => {
        b[2]! &= 0x7f;
      },
      'another name': (b) => {
        b[13] = 0x78; // 's' → 'x'
      },
      'another type': (b) => b.writeUInt16BE(RRType.AAAA, 12 + 21),
    };
    for (const [what, edit] of Object.entries(edits)) {
      const srv = await fakeDoh((q) => answerTo(q, edit));
      try {
        await assert.rejects(dohQuery(srv.url, 'secret.example.test', RRType.A, { ca, method: 'GET' }), (e) => isEchgateError(e) && e.code === 'ERR_DNS_MISMATCH', what);
      } finally {
        srv.close();
      }
    }
    // The CLI reports it and fails.
    const srv = await fakeDoh((q) => answerTo(q, edits['id 0x1234']!));
    writeFileSync(join(dir, 'ca.pem'), ca);
    try {
      await assert.rejects(run('node', [BIN, 'resolve', 'secret.example.test', '--type', 'A', '--doh', srv.url, '--ca', join(dir, 'ca.pem')]), (e: { code: number; stderr: string }) => e.code !== 0 && /ERR_DNS_MISMATCH|not the answer/.test(e.stderr));
    } finally {
      srv.close();
    }
  });

  const publication = { name: 'secret.example.test', ttl: 60, echConfigList: new Uint8Array([0, 0]) };

  it('RFC 2136 §3.8: an UPDATE answer dripped a byte every 300 ms fails at the overall deadline (ERR_DNS_TIMEOUT)', async () => {
    const srv = await fakeUpdatePrimary((u) => updateNoError(u), 300);
    try {
      await assert.rejects(publishHttps({ host: '127.0.0.1', port: srv.port, zone: 'example.test', timeoutMs: 1500 }, publication), (e) => isEchgateError(e) && e.code === 'ERR_DNS_TIMEOUT');
    } finally {
      srv.close();
    }
  });

  it('RFC 2136 §3.8: an UPDATE answer with another id, QR clear, another opcode or another zone is refused (ERR_DNS_MISMATCH); the right one is taken', async () => {
    const good = await fakeUpdatePrimary((u) => updateNoError(u));
    try {
      await publishHttps({ host: '127.0.0.1', port: good.port, zone: 'example.test' }, publication);
    } finally {
      good.close();
    }
    const edits: Record<string, (b: Buffer) => void> = {
      'another id': (b) => b.writeUInt16BE((b.readUInt16BE(0) + 1) & 0xffff, 0),
      'QR clear': (b) => {
        b[2]! &= 0x7f;
      },
      'opcode QUERY': (b) => {
        b[2]! &= 0x87;
      },
      'another zone': (b) => {
        b[13] = 0x78;
      },
    };
    for (const [what, edit] of Object.entries(edits)) {
      const srv = await fakeUpdatePrimary((u) => updateNoError(u, edit));
      try {
        await assert.rejects(publishHttps({ host: '127.0.0.1', port: srv.port, zone: 'example.test' }, publication), (e) => isEchgateError(e) && e.code === 'ERR_DNS_MISMATCH', what);
      } finally {
        srv.close();
      }
    }
  });
});
