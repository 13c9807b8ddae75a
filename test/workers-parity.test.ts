/**
 * Issue #8, "Done when": `workers: 2` passes the proxy, ECH, termination and
 * DNS suites as `workers: 1` does. One configuration file (one key folder),
 * served by a spawned `echgate serve` once with `workers: 1` and once with
 * `workers: 2`; one table of cases, the externally observable ones of each
 * in-process suite (proxy.test, middlewares.test, proxy-idle.test,
 * proxy-ech.test, split-mode.test, tls13.test, tls13-groups.test,
 * tls13-forgery.test, dns-server.test, doh-server.test), run against both.
 * Each case must give its expected answer, and the same answers in both groups.
 *
 * Both workers, for every case: with `workers: 2` each case runs twice, once
 * with worker 2 stopped (SIGSTOP) and once with worker 1 stopped. The workers
 * share one listening socket per address (cluster.SCHED_NONE; the UDP DNS
 * socket too), so a stopped worker accepts and reads nothing: the running one
 * serves every connection and query of that run. For the entrypoint cases the
 * access lines (each names its pid) confirm it; DNS and DoH write no access
 * line, and the stop is what tells which worker answered.
 *
 * Documented differences (docs/configuration.md "workers"): limits
 * (`maxConnections`, `inFlightConn`, the DNS TCP and DoH limits) are per
 * worker, so the group admits N times as many. The connection cap case here
 * therefore holds its connections on one worker at a time, which is what
 * one process sees; the group's total is not compared.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { concat } from '../src/bytes/util.js';
import { connectOnce } from '../src/cli/connect.js';
import { freePort } from '../src/cli/free-port.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { listKeys, publishedList } from '../src/keys/manager.js';
import { TlsClient } from '../src/tls13/client.js';
import { trafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { encodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { frameHandshake } from '../src/wire/tls/record.js';
import { type Backend, certFor, json, ROOT, rawExchange, serverFirstBackend, sleep, tlsAsk, tlsBackend, vector } from './helpers.js';
import { inside, Sealer } from './tls13-craft.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
/** Runs of each case per process (per worker with workers: 2): the stop decides which worker serves, so once is enough. */
const RUNS = 1;
const X25519MLKEM768 = 0x11ec;

interface Line {
  msg: string;
  pid?: number;
  worker?: number;
  [k: string]: unknown;
}

interface Ports {
  websecure: number;
  fallback: number;
  idle: number;
  capped: number;
  dns: number;
  doh: number;
}

interface Group {
  workers: 1 | 2;
  ports: Ports;
  child: ChildProcessWithoutNullStreams;
  lines: Line[];
  /** The processes that accept: the one process, or the workers in slot order. */
  servers: number[];
}

interface Case {
  name: string;
  /** Connections each run makes to an entrypoint (each ends in one access line); 0 for DNS and DoH. */
  conns: number;
  run: (g: Group) => Promise<string>;
  /** A function when the answer depends on what before() made (the key folder's ech=). */
  expected: string | RegExp | (() => string);
}

describe('workers: 2 answers every case of the proxy, ECH, termination, DNS and DoH suites as workers: 1 does, on each worker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-parity-'));
  const keysDir = join(dir, 'keys');
  const staleDir = join(dir, 'stale');
  const backends: Backend[] = [];
  let plain: net.Server;
  let proxied: net.Server;
  let app: Backend;
  let api: Backend;
  let any: Backend;
  let greet: Backend;
  const groups = {} as Record<1 | 2, Group>;
  const children: ChildProcessWithoutNullStreams[] = [];
  let exported = '';
  const many = Array.from({ length: 40 }, (_, i) => `10.0.0.${i + 1}`);
  const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;
  const file = (n: string) => JSON.stringify(join(dir, n));

  const config = (workers: number, p: Ports) => `
workers: ${workers}
entryPoints:
  websecure: { address: "127.0.0.1:${p.websecure}", clientHelloTimeout: 3s }
  fallback: { address: "127.0.0.1:${p.fallback}" }
  idle: { address: "127.0.0.1:${p.idle}", transport: { respondingTimeouts: { idleTimeout: 300ms } } }
  capped: { address: "127.0.0.1:${p.capped}", maxConnections: 2 }
log: { access: true }
ech: { keysDir: ${JSON.stringify(keysDir)} }
tls:
  certificates:
    - { certFile: ${file('term.pem')}, keyFile: ${file('term.key')} }
    - { certFile: ${file('public.pem')}, keyFile: ${file('public.key')} }
    - { certFile: ${file('pq.pem')}, keyFile: ${file('pq.key')} }
  options:
    pq: { curvePreferences: [X25519MLKEM768, X25519] }
dns:
  address: "127.0.0.1:${p.dns}"
  doh: { address: "127.0.0.1:${p.doh}", certFile: ${file('dns.pem')}, keyFile: ${file('dns.key')} }
  zone: example.test
  names:
    secret.example.test: { a: [127.0.0.1], https: { alpn: [h2] } }
    many.example.test: { a: [${many.join(', ')}] }
tcp:
  middlewares:
    office: { ipAllowList: { sourceRange: ["192.0.2.0/24"] } }
    loopback: { ipAllowList: { sourceRange: ["127.0.0.0/8"] } }
  routers:
    app: { entryPoints: [websecure], rule: "HostSNI(\`app.example.test\`)", service: app, tls: { passthrough: true } }
    api: { entryPoints: [websecure], rule: "HostSNI(\`api.example.test\`) && ALPN(\`h2\`)", service: api, tls: { passthrough: true } }
    deny: { entryPoints: [websecure], rule: "HostSNI(\`deny.example.test\`)", service: app, middlewares: [office], tls: { passthrough: true } }
    allow: { entryPoints: [websecure], rule: "HostSNI(\`allow.example.test\`)", service: app, middlewares: [loopback], tls: { passthrough: true } }
    pp: { entryPoints: [websecure], rule: "HostSNI(\`pp.example.test\`)", service: proxied, tls: { passthrough: true } }
    term: { entryPoints: [websecure], rule: "HostSNI(\`term.example.test\`)", service: plain, tls: { alpn: [h2, http/1.1] } }
    pq: { entryPoints: [websecure], rule: "HostSNI(\`pq.example.test\`)", service: plain, tls: { options: pq } }
    secret: { entryPoints: [websecure], rule: "HostSNI(\`secret.example.test\`)", service: plain, tls: {}, requireECH: true }
    split: { entryPoints: [websecure], rule: "HostSNI(\`split.example.test\`)", service: plain, requireECH: true, tls: { passthrough: true, echSplit: true } }
    any: { entryPoints: [fallback], rule: "HostSNI(\`*\`)", service: any, tls: { passthrough: true } }
    idle: { entryPoints: [idle], rule: "HostSNI(\`*\`)", service: greet }
    capped: { entryPoints: [capped], rule: "HostSNI(\`*\`)", service: greet }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${app.port}" }] } }
    api: { loadBalancer: { servers: [{ address: "127.0.0.1:${api.port}" }] } }
    any: { loadBalancer: { servers: [{ address: "127.0.0.1:${any.port}" }] } }
    greet: { loadBalancer: { servers: [{ address: "127.0.0.1:${greet.port}" }] } }
    plain: { loadBalancer: { servers: [{ address: "127.0.0.1:${portOf(plain)}" }] } }
    proxied: { loadBalancer: { proxyProtocol: { version: 2 }, servers: [{ address: "127.0.0.1:${portOf(proxied)}" }] } }
`;

  const startGroup = async (workers: 1 | 2): Promise<Group> => {
    const ports: Ports = { websecure: await freePort(), fallback: await freePort(), idle: await freePort(), capped: await freePort(), dns: await freePort(), doh: await freePort() };
    const f = join(dir, `w${workers}.yml`);
    writeFileSync(f, config(workers, ports));
    const child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    const lines: Line[] = [];
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const p of parts) if (p.startsWith('{')) lines.push(JSON.parse(p));
    });
    child.stderr.on('data', (d) => process.stderr.write(d));
    // Ready: serve logs "listening" per entrypoint once the embedded DNS (UDP, TCP, DoH) and every entrypoint are up; with
    // workers, the primary logs "all workers ready" once each worker has. No probe connections: a probe that connects and
    // closes is a connection the entrypoint counts (and the capped one would start full).
    const ready = () => (workers === 1 ? lines.filter((l) => l.msg === 'listening').length === 4 : lines.some((l) => l.msg === 'all workers ready'));
    for (const end = Date.now() + 60_000; Date.now() < end && !ready() && child.exitCode === null; ) await sleep(100);
    assert.ok(ready(), `workers: ${workers} did not start`);
    const servers = workers === 1 ? [child.pid!] : [1, 2].map((n) => lines.find((l) => l.msg === 'worker ready' && l.worker === n)!.pid!);
    assert.equal(new Set(servers).size, workers);
    return { workers, ports, child, lines, servers };
  };

  before(async () => {
    [app, api, any] = await Promise.all([tlsBackend('app'), tlsBackend('api'), tlsBackend('any')]);
    greet = await serverFirstBackend('hi\n');
    backends.push(app, api, any, greet);
    plain = net.createServer((s) => {
      s.on('error', () => s.destroy());
      s.once('data', (d) => s.end(`backend got ${d.length} bytes`));
    });
    // PROXY protocol v2 (§2.2): parse the header, then answer with what it said and a digest of the bytes after it (once the first TLS record is whole).
    proxied = net.createServer((s) => {
      s.on('error', () => s.destroy());
      let got = Buffer.alloc(0);
      s.on('data', (d) => {
        got = Buffer.concat([got, d]);
        if (got.length < 16) return;
        const end = 16 + got.readUInt16BE(14);
        if (got.length < end + 5 || got.length < end + 5 + got.readUInt16BE(end + 3)) return;
        const sig = got.subarray(0, 12).toString('hex') === '0d0a0d0a000d0a515549540a' ? 'v2' : 'no signature';
        const [src, dst] = [got.subarray(16, 20).join('.'), got.subarray(20, 24).join('.')];
        const rest = got.subarray(end);
        s.end(`${sig} ${got[12]!.toString(16)} ${got[13]!.toString(16)} ${src}:${got.readUInt16BE(24)} ${dst}:${got.readUInt16BE(26)} ${createHash('sha256').update(rest).digest('hex')}`);
      });
    });
    await Promise.all([plain, proxied].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))));
    for (const n of ['term', 'public', 'pq', 'dns']) {
      const c = certFor(`${n}.example.test`);
      writeFileSync(join(dir, `${n}.pem`), c.cert);
      writeFileSync(join(dir, `${n}.key`), c.key);
    }
    await run('node', [BIN, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test']);
    await run('node', [BIN, 'keys', 'generate', '--dir', staleDir, '--public-name', 'public.example.test']);
    exported = (await run('node', [BIN, 'keys', 'export', '--dir', keysDir, '--format', 'base64'])).stdout.trim();
    [groups[1], groups[2]] = await Promise.all([startGroup(1), startGroup(2)]);
  });
  after(async () => {
    // A stopped worker would outlive its primary: SIGKILL reaches a stopped process.
    for (const g of Object.values(groups)) for (const pid of g.servers) tryKill(pid, 'SIGKILL');
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await Promise.all([...backends.map((b) => b.close()), ...[plain, proxied].map((s) => new Promise((r) => s?.close(r)))]);
  });

  /** Stop every server process of the group but `keep`; resolves once the kernel reports them stopped. */
  const pinTo = async (g: Group, keep: number) => {
    const others = g.servers.filter((p) => p !== keep);
    for (const p of others) process.kill(p, 'SIGSTOP');
    for (const p of others) {
      for (let i = 0; i < 100 && procState(p) !== 'T'; i++) await sleep(10);
      assert.equal(procState(p), 'T', `worker ${p} stopped`);
    }
    return () => {
      for (const p of others) process.kill(p, 'SIGCONT');
    };
  };

  /** Run a case RUNS times on `g` (pinned to `pid` with workers: 2); the answers, and the pids of the access lines it caused. */
  const runOn = async (g: Group, c: Case, pid?: number) => {
    const resume = pid === undefined ? () => {} : await pinTo(g, pid);
    const from = g.lines.length;
    const answers: string[] = [];
    const access = () => g.lines.slice(from).filter((l) => l.msg === 'access');
    try {
      for (let i = 0; i < RUNS; i++) answers.push(await c.run(g));
      // Every connection of the run logs its access line when it ends (on the pinned worker: wait while it still runs alone).
      for (const end = Date.now() + 5_000; Date.now() < end && access().length < c.conns * RUNS; ) await sleep(20);
    } finally {
      resume();
    }
    return { answers, pids: access().map((l) => l.pid!) };
  };

  const parity = (c: Case) =>
    it(c.name, async () => {
      const expected = typeof c.expected === 'function' ? c.expected() : c.expected;
      const check = (a: string, where: string) => (typeof expected === 'string' ? assert.equal(a, expected, where) : assert.match(a, expected, where));
      const one = await runOn(groups[1], c);
      for (const a of one.answers) check(a, 'workers: 1');
      assert.equal(one.pids.length, c.conns * RUNS, 'workers: 1, access lines');
      const two: string[] = [];
      for (const [slot, pid] of groups[2].servers.entries()) {
        const r = await runOn(groups[2], c, pid);
        for (const a of r.answers) check(a, `workers: 2, worker ${slot + 1} alone`);
        // The stopped worker served nothing: every access line is the running worker's.
        assert.equal(r.pids.length, c.conns * RUNS, `workers: 2, worker ${slot + 1}: access lines`);
        assert.ok(
          r.pids.every((p) => p === pid),
          `workers: 2, worker ${slot + 1} (pid ${pid}) alone served: ${r.pids}`,
        );
        two.push(...r.answers);
      }
      assert.deepEqual([...new Set(two)].sort(), [...new Set(one.answers)].sort(), 'the same answers with workers: 1 and workers: 2');
    });

  // ---- proxy (proxy.test, middlewares.test, proxy-idle.test)

  const sClient = async (port: number, args: string[], send = '') => {
    const { stdout } = await run('sh', ['-c', `(printf '${send}'; sleep 0.5) | timeout 10 openssl s_client -connect 127.0.0.1:${port} ${args.join(' ')} 2>&1 || true`]);
    return stdout;
  };
  const tlsError = (port: number, servername: string, alpn?: string[]) =>
    tlsAsk(port, servername, alpn).then(
      (a) => `answered ${a}`,
      (e: Error) => (/unrecognized name|alert number 112/i.test(e.message) ? 'unrecognized_name' : /disconnected|ECONNRESET|socket hang up/i.test(e.message) ? 'closed' : e.message),
    );

  for (const c of [
    { name: 'proxy: passthrough by SNI (node:tls) reaches the backend, which completes the handshake', conns: 1, run: (g: Group) => tlsAsk(g.ports.websecure, 'app.example.test'), expected: 'app app.example.test -' },
    {
      name: 'proxy: passthrough by SNI (openssl s_client): the backend’s certificate and answer',
      conns: 1,
      run: async (g: Group) => {
        const out = await sClient(g.ports.websecure, ['-servername', 'app.example.test'], 'hello\\n');
        return `${/subject=CN ?= ?app\.example\.test/.test(out) ? 'backend certificate' : 'no certificate'} ${/^app app\.example\.test/m.test(out) ? 'backend answered' : out}`;
      },
      expected: 'backend certificate backend answered',
    },
    { name: 'proxy: ALPN is part of the rule: SNI and h2 reach the api router', conns: 1, run: (g: Group) => tlsAsk(g.ports.websecure, 'api.example.test', ['h2']), expected: 'api api.example.test h2' },
    { name: 'proxy: ALPN is part of the rule: without h2 no router matches → unrecognized_name', conns: 1, run: (g: Group) => tlsError(g.ports.websecure, 'api.example.test', ['http/1.1']), expected: 'unrecognized_name' },
    { name: 'proxy: a name no router takes → unrecognized_name (RFC 6066 §3)', conns: 1, run: (g: Group) => tlsError(g.ports.websecure, 'nobody.example.test'), expected: 'unrecognized_name' },
    {
      name: 'proxy: no SNI at all and no HostSNI(`*`) router → unrecognized_name (openssl -noservername)',
      conns: 1,
      run: async (g: Group) => (/unrecognized name|alert number 112/.test(await sClient(g.ports.websecure, ['-noservername'])) ? 'unrecognized_name' : 'other'),
      expected: 'unrecognized_name',
    },
    { name: 'proxy: the default route HostSNI(`*`) takes any name', conns: 1, run: (g: Group) => tlsAsk(g.ports.fallback, 'whatever.example.test'), expected: 'any whatever.example.test -' },
    {
      name: 'proxy: the default route HostSNI(`*`) takes a hello without SNI (openssl -noservername)',
      conns: 1,
      run: async (g: Group) => (/^any - -$/m.test(await sClient(g.ports.fallback, ['-noservername'], 'hello\\n')) ? 'any - -' : 'other'),
      expected: 'any - -',
    },
    { name: 'proxy: ipAllowList refuses (closes) a client outside sourceRange', conns: 1, run: (g: Group) => tlsError(g.ports.websecure, 'deny.example.test'), expected: 'closed' },
    { name: 'proxy: ipAllowList lets a client inside sourceRange through', conns: 1, run: (g: Group) => tlsAsk(g.ports.websecure, 'allow.example.test'), expected: 'app allow.example.test -' },
    {
      name: 'proxy: PROXY protocol v2 (§2.2) carries the client’s address, then the ClientHello unchanged',
      conns: 1,
      run: (g: Group) =>
        new Promise<string>((resolve, reject) => {
          const hello = concat(...new TlsClient({ provider: nodeProvider, serverName: 'pp.example.test' }).hello());
          const s = net.connect(g.ports.websecure, '127.0.0.1', () => s.write(hello));
          s.setTimeout(5000, () => s.destroy(new Error('timeout')));
          s.once('data', (d) => {
            const want = `v2 21 11 127.0.0.1:${s.localPort} 127.0.0.1:${g.ports.websecure} ${createHash('sha256').update(hello).digest('hex')}`;
            resolve(d.toString() === want ? 'header with the client address, hello unchanged' : `${d} (wanted ${want})`);
            s.end();
          });
          s.once('error', reject);
        }),
      expected: 'header with the client address, hello unchanged',
    },
    {
      name: 'proxy: idleTimeout closes an idle relayed connection (300 ms)',
      conns: 1,
      run: async (g: Group) => {
        const t0 = Date.now();
        const got = await rawExchange(g.ports.idle, [], { timeoutMs: 5000 });
        const took = Date.now() - t0;
        return `${got.toString().trim()} then closed ${took >= 250 && took < 3000 ? 'after idleTimeout' : `after ${took} ms`}`;
      },
      expected: 'hi then closed after idleTimeout',
    },
    {
      name: 'proxy: maxConnections 2 (per process): two held connections are relayed, a third is closed unanswered',
      // The refused one is counted (over_limit) but logs no access line.
      conns: 2,
      run: async (g: Group) => {
        const held = [0, 1].map(() => net.connect(g.ports.capped, '127.0.0.1'));
        try {
          const greetings = await Promise.all(
            held.map(
              (s) =>
                new Promise<string>((r) =>
                  s
                    .setTimeout(5000, () => r('timeout'))
                    .once('data', (d) => r(d.toString().trim()))
                    .once('error', (e) => r(e.message))
                    .once('close', () => r('closed')),
                ),
            ),
          );
          const third = await rawExchange(g.ports.capped, [], { timeoutMs: 3000 });
          return `${greetings.join(',')} third: ${third.length === 0 ? 'closed' : third.toString()}`;
        } finally {
          for (const s of held) s.destroy();
        }
      },
      expected: 'hi,hi third: closed',
    },
  ])
    parity(c);

  // ---- termination on the TLS 1.3 engine (tls13.test, tls13-groups.test, tls13-forgery.test)

  const groupOf = (out: string) => /Server Temp Key: ([^\n]*)/.exec(out)?.[1]?.trim() ?? 'no group';
  for (const c of [
    {
      name: 'termination: node:tls completes TLS 1.3 (X25519), ALPN from the router, data reaches the backend',
      conns: 1,
      run: (g: Group) =>
        new Promise<string>((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: g.ports.websecure, servername: 'term.example.test', rejectUnauthorized: false, ALPNProtocols: ['h2'] });
          s.once('secureConnect', () => s.write('hello'));
          s.once('data', (d) => resolve(`${s.getProtocol()} ${s.getEphemeralKeyInfo() && (s.getEphemeralKeyInfo() as { name?: string }).name} ${s.alpnProtocol} ${d}`));
          s.once('error', reject);
        }),
      expected: 'TLSv1.3 X25519 h2 backend got 5 bytes',
    },
    {
      name: 'termination: openssl s_client -groups P-256 (a P-256 share, no HelloRetryRequest)',
      conns: 1,
      run: async (g: Group) => {
        const out = await sClient(g.ports.websecure, ['-servername', 'term.example.test', '-tls1_3', '-groups', 'P-256', '-msg'], 'hello');
        return `${groupOf(out)} hellos=${out.match(/>>> TLS 1\.3, Handshake \[length [0-9a-f]+\], ClientHello/g)?.length} ${/backend got 5 bytes/.test(out) ? 'relayed' : 'not relayed'}`;
      },
      expected: 'ECDH, prime256v1, 256 bits hellos=1 relayed',
    },
    {
      name: 'termination: HelloRetryRequest (openssl offers an X448 share the engine lacks, then X25519)',
      conns: 1,
      run: async (g: Group) => {
        const out = await sClient(g.ports.websecure, ['-servername', 'term.example.test', '-tls1_3', '-groups', 'X448:X25519', '-msg'], 'hello');
        // RFC 8446 §4.1.3: OpenSSL prints the HRR as a ServerHello; its random is the HRR constant, and a second ClientHello follows.
        return `${groupOf(out)} hellos=${out.match(/>>> TLS 1\.3, Handshake \[length [0-9a-f]+\], ClientHello/g)?.length} hrr=${/cf 21 ad 74 e5 9a 61 11/.test(out)} ${/backend got 5 bytes/.test(out) ? 'relayed' : 'not relayed'}`;
      },
      expected: 'X25519, 253 bits hellos=2 hrr=true relayed',
    },
    {
      name: 'termination: ALPN chosen from the router’s list (openssl -alpn http/1.1)',
      conns: 1,
      run: async (g: Group) => /ALPN protocol: ([^\n]*)/.exec(await sClient(g.ports.websecure, ['-servername', 'term.example.test', '-alpn', 'http/1.1']))?.[1] ?? 'no ALPN',
      expected: 'http/1.1',
    },
    {
      name: 'termination: X25519MLKEM768 where the router’s tls.options offer it (echgate’s client; OpenSSL 3.0 has no ML-KEM)',
      conns: 1,
      run: async (g: Group) => {
        const r = await connectOnce('127.0.0.1', g.ports.websecure, { sni: 'pq.example.test', groups: [X25519MLKEM768], send: 'hello' });
        return `${r.groupName} ${r.reply ?? r.error}`;
      },
      expected: 'X25519MLKEM768 backend got 5 bytes',
    },
    { name: 'termination: a forged client Finished → decrypt_error (RFC 8446 §4.4.4)', conns: 1, run: (g: Group) => forgedFinished(g.ports.websecure, 'term.example.test'), expected: 'decrypt_error (51)' },
    {
      name: 'termination: a TLS 1.2-only client is terminated too (node:tls behind the engine, proxy/tls12.ts)',
      conns: 1,
      run: (g: Group) =>
        new Promise<string>((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port: g.ports.websecure, servername: 'term.example.test', rejectUnauthorized: false, maxVersion: 'TLSv1.2' });
          s.once('secureConnect', () => s.write('hello'));
          s.once('data', (d) => {
            resolve(`${s.getProtocol()} ${d}`);
            s.end();
          });
          s.once('error', (e) => resolve(e.message));
        }),
      expected: 'TLSv1.2 backend got 5 bytes',
    },
  ])
    parity(c);

  // ---- ECH (proxy-ech.test, split-mode.test, RFC 9849)

  const currentList = () => publishedList(listKeys(keysDir).keys)!;
  for (const c of [
    {
      name: 'ECH accepted and terminated: the hidden name reaches its requireECH router',
      conns: 1,
      run: async (g: Group) => {
        const r = await connectOnce('127.0.0.1', g.ports.websecure, { sni: 'secret.example.test', ech: currentList(), send: 'hello' });
        return `${r.ech} ${r.reply}`;
      },
      expected: 'accepted backend got 5 bytes',
    },
    {
      name: 'ECH with a stale key: rejected, the public name answers with retry_configs = the current keys (RFC 9849 §6.1.6)',
      conns: 1,
      run: async (g: Group) => {
        const r = await connectOnce('127.0.0.1', g.ports.websecure, { sni: 'secret.example.test', ech: publishedList(listKeys(staleDir).keys) });
        const got = r.retryConfigs ? Buffer.from(r.retryConfigs).toString('base64') : 'none';
        return `${r.ech} ${got === Buffer.from(currentList()).toString('base64') ? 'retry_configs are the current keys' : got}`;
      },
      expected: 'rejected retry_configs are the current keys',
    },
    {
      name: 'ECH GREASE (a captured Chromium hello) routes on the outer name; the requireECH router refuses it → unrecognized_name',
      conns: 1,
      run: async (g: Group) => {
        const grease = json('captures/manifest.json').captures.find((x: { real_ech: boolean }) => !x.real_ech).file as string;
        const got = await rawExchange(g.ports.websecure, [vector(`captures/${grease}`)], { timeoutMs: 5000 });
        return [...got].join(',');
      },
      expected: '21,3,3,0,2,2,112',
    },
    {
      name: 'ECH required: the hidden name in cleartext (openssl s_client) → unrecognized_name',
      conns: 1,
      run: async (g: Group) => (/unrecognized name|alert number 112/.test(await sClient(g.ports.websecure, ['-servername', 'secret.example.test'])) ? 'unrecognized_name' : 'other'),
      expected: 'unrecognized_name',
    },
    {
      name: 'ECH split mode (RFC 9849 §3.1): the backend gets ClientHelloInner, not the outer hello',
      conns: 1,
      run: (g: Group) =>
        new Promise<string>((resolve, reject) => {
          const config = usableConfigs(decodeECHConfigList(currentList()), isSupportedSuite)[0]!;
          const h = buildEchClientHello(nodeProvider, { config, innerSni: 'split.example.test' });
          const outer = frameHandshake(h.outerMessage);
          const inner = frameHandshake(encodeClientHelloMessage(h.inner));
          const s = net.connect(g.ports.websecure, '127.0.0.1', () => s.write(outer));
          s.once('data', (d) => {
            resolve(d.toString() === `backend got ${inner.length} bytes` ? 'inner forwarded' : `got ${d} (outer ${outer.length}, inner ${inner.length})`);
            s.end();
          });
          s.once('error', reject);
        }),
      expected: 'inner forwarded',
    },
  ])
    parity(c);

  // ---- DNS over UDP and TCP (dns-server.test), asked by dig and kdig

  const dig = async (g: Group, ...args: string[]) => (await run('dig', ['-p', String(g.ports.dns), '@127.0.0.1', '+time=2', '+tries=2', ...args])).stdout;
  const status = (out: string) => `${/status: (\w+)/.exec(out)?.[1]} flags:${/flags: ([a-z ]+);/.exec(out)?.[1]}`;
  for (const c of [
    { name: 'DNS UDP (dig): the HTTPS record with the key folder’s ech=', conns: 0, run: async (g: Group) => (await dig(g, '+short', 'secret.example.test', 'HTTPS')).trim(), expected: () => `1 . alpn="h2" ech=${exported}` },
    {
      name: 'DNS TCP (kdig +tcp): the HTTPS record with the key folder’s ech=',
      conns: 0,
      run: async (g: Group) => (await run('kdig', ['-p', String(g.ports.dns), '@127.0.0.1', '+tcp', '+short', 'secret.example.test', 'HTTPS'])).stdout.trim(),
      expected: () => `1 . alpn=h2 ech=${exported}`,
    },
    { name: 'DNS: A, authoritative (aa)', conns: 0, run: async (g: Group) => `${status(await dig(g, 'secret.example.test', 'A'))} ${(await dig(g, '+short', 'secret.example.test', 'A')).trim()}`, expected: () => 'NOERROR flags:qr aa rd 127.0.0.1' },
    { name: 'DNS: a name below the zone we do not hold → NXDOMAIN', conns: 0, run: async (g: Group) => status(await dig(g, 'nothing.example.test', 'A')), expected: () => 'NXDOMAIN flags:qr aa rd' },
    { name: 'DNS: a name outside the zone → REFUSED', conns: 0, run: async (g: Group) => status(await dig(g, 'nothing.invalid', 'A')), expected: () => 'REFUSED flags:qr rd' },
    { name: 'DNS: EDNS version 1 → BADVERS', conns: 0, run: async (g: Group) => status(await dig(g, '+edns=1', '+noednsneg', 'secret.example.test', 'A')), expected: () => 'BADVERS flags:qr rd' },
    { name: 'DNS: a UDP answer past 512 octets without EDNS is truncated (TC)', conns: 0, run: async (g: Group) => status(await dig(g, '+noedns', '+ignore', 'many.example.test', 'A')), expected: () => 'NOERROR flags:qr aa tc rd' },
    {
      name: 'DNS: after TC dig retries over TCP and gets all 40 addresses',
      conns: 0,
      run: async (g: Group) => String((await dig(g, '+noedns', '+short', 'many.example.test', 'A')).trim().split('\n').sort().join(',') === [...many].sort().join(',')),
      expected: () => 'true',
    },
  ])
    parity(c);

  // ---- DNS over HTTPS (doh-server.test, RFC 8484), asked by curl over HTTP/2

  let seq = 0;
  const doh = async (...args: string[]) => {
    const out = join(dir, `doh-${seq++}`);
    const { stdout } = await run('curl', ['-sk', '--http2', '--max-time', '10', '-o', out, '-w', '%{http_code} %{content_type} %{http_version}', ...args]);
    const body = readFileSync(out);
    // RFC 8484 §4.2.1: the answer is a DNS message; the same bytes from every process (the digest is compared across the groups).
    if (!stdout.startsWith('200 ')) return stdout;
    const ech = body.includes(Buffer.from(exported, 'base64')) ? ' ech=current' : '';
    return `${stdout} ${RCODES[body[3]! & 0xf]} an=${body.readUInt16BE(6)}${ech} ${createHash('sha256').update(body).digest('hex').slice(0, 12)}`;
  };
  const url = (g: Group) => `https://127.0.0.1:${g.ports.doh}/dns-query`;
  const post = (g: Group, q: Buffer, type = 'application/dns-message') => {
    const f = join(dir, `q-${seq++}`);
    writeFileSync(f, q);
    return doh('-H', `content-type: ${type}`, '-H', 'accept: application/dns-message', '--data-binary', `@${f}`, url(g));
  };
  const get = (g: Group, q: Buffer | string) => doh('-H', 'accept: application/dns-message', `${url(g)}?dns=${typeof q === 'string' ? q : q.toString('base64url')}`);
  for (const c of [
    { name: 'DoH GET (RFC 8484 §4.1): the HTTPS record with ech=, application/dns-message', conns: 0, run: (g: Group) => get(g, dnsQuery('secret.example.test', 65)), expected: /^200 application\/dns-message 2 NOERROR an=1 ech=current [0-9a-f]{12}$/ },
    { name: 'DoH POST (RFC 8484 §4.1): the A record', conns: 0, run: (g: Group) => post(g, dnsQuery('secret.example.test', 1)), expected: /^200 application\/dns-message 2 NOERROR an=1 [0-9a-f]{12}$/ },
    { name: 'DoH POST: NXDOMAIN below the zone', conns: 0, run: (g: Group) => post(g, dnsQuery('nothing.example.test', 1)), expected: /^200 application\/dns-message 2 NXDOMAIN an=0 [0-9a-f]{12}$/ },
    { name: 'DoH POST with another media type → 415', conns: 0, run: (g: Group) => post(g, dnsQuery('secret.example.test', 1), 'text/plain'), expected: /^415 / },
    { name: 'DoH GET with a dns= that is not base64url → 400', conns: 0, run: (g: Group) => get(g, '!!!'), expected: /^400 / },
    { name: 'DoH GET with a dns= that is not a DNS query → 400', conns: 0, run: (g: Group) => get(g, 'AAAA'), expected: /^400 / },
  ])
    parity(c);
});

function procState(pid: number): string {
  try {
    // /proc/PID/stat: "pid (comm) S ..."; comm may hold spaces, the state follows the last ')'.
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
  } catch {
    return 'gone';
  }
}

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * A TLS 1.3 handshake with echgate's client whose Finished is forged (its
 * verify_data changed, sealed again under the client handshake key, RFC 8446
 * §4.4.4): the server must answer decrypt_error, which the client reads.
 */
function forgedFinished(port: number, sni: string): Promise<string> {
  return new Promise((resolve) => {
    const client = new TlsClient({ provider: nodeProvider, serverName: sni });
    const s = net.connect(port, '127.0.0.1', () => {
      for (const r of client.hello()) s.write(r);
    });
    s.setTimeout(5000, () => {
      resolve('timeout');
      s.destroy();
    });
    let forged = false;
    let pending = Buffer.alloc(0);
    let keys: { suite: ReturnType<typeof inside>['suite']; client: Uint8Array } | undefined;
    s.on('data', (d) => {
      // Record by record: the client drops its handshake secrets once its Finished is out, so read them in between.
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
        const record = pending.subarray(0, 5 + pending.readUInt16BE(3));
        pending = pending.subarray(record.length);
        const out = client.receive(record);
        const st = inside(client);
        if (st.hs) keys = { suite: st.suite, client: st.hs.client };
        if (!forged && out.established && keys) {
          forged = true;
          const fin = out.send.at(-1)!;
          const msg = new RecordCipher(keys.suite, trafficKeys(nodeProvider, keys.suite, keys.client)).open(fin.subarray(0, 5), fin.subarray(5)).content.slice();
          msg[msg.length - 1]! ^= 0x80;
          for (const r of out.send.slice(0, -1)) s.write(r);
          s.write(new Sealer(keys.suite, keys.client).handshake(msg));
          continue;
        }
        if (out.peerAlert !== undefined) {
          resolve(`${out.peerAlert === 51 ? 'decrypt_error' : 'alert'} (${out.peerAlert})`);
          return s.destroy();
        }
        if (out.error) {
          resolve(`error ${String(out.error)}`);
          return s.destroy();
        }
      }
    });
    s.once('error', (e) => resolve(`socket ${e.message}`));
    s.once('close', () => resolve('closed without an alert'));
  });
}

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

/** A DNS query message (RFC 1035 §4.1), ID 0 as RFC 8484 §4.1 asks of DoH clients, RD set. */
function dnsQuery(name: string, type: number): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.of(l.length), Buffer.from(l, 'ascii')]));
  return Buffer.concat([Buffer.from([0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.of(0, type >> 8, type & 0xff, 0, 1)]);
}
