/**
 * `npm run soak -- [--minutes M] [--rate R] [--hostile H] [--sample S] [--out DIR] [--snapshots T1,T2,...]`
 *
 * One `echgate serve` child on loopback with every feature on: TLS
 * passthrough, termination with ECH, split mode (a client-facing entrypoint
 * forwarding ClientHelloInner to an echBackend entrypoint of the same
 * process), the embedded DNS on UDP/TCP and DoH, and metrics. For M minutes
 * (default 10) it is driven by good clients (node:tls, echgate's own TLS 1.3
 * client with ECH, dig, DoH over HTTP/2) at about R operations per second
 * (default 8) and by hostile ones at about H per second (default 8): garbage
 * bytes, slowloris ClientHellos, truncated hellos, random DNS packets over
 * UDP/TCP, junk DoH requests. Every S seconds (default 10) it samples the
 * child's RSS and open file descriptors (/proc/PID/status, /proc/PID/fd),
 * the event-loop delay (echgate_event_loop_delay_seconds, the longest stall
 * since the previous sample), the child's heap and external memory
 * (echgate_process_memory_bytes), the /metrics response time, open
 * connections, the good-client success rate and this machine's load average.
 * With --snapshots, the child runs with --heapsnapshot-signal=SIGUSR2 and
 * writes a V8 heap snapshot at each of the given minutes into
 * OUT/soak-TS-heap/ (compare two with `node dist/soak/heapdiff.js A B`).
 * Writes OUT/soak-TS.csv, OUT/soak-TS.json (summary) and OUT/soak-TS.svg.
 * Not part of `npm test`.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { connectOnce } from '../src/cli/connect.js';
import { listKeys, publishedList } from '../src/keys/manager.js';
import { encodeQuery, RRType } from '../src/wire/dns/message.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { ageRetired, EchWatch, keyState } from './keys-watch.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'echgate.js');

interface Args {
  minutes: number;
  rate: number;
  hostile: number;
  sample: number;
  out: string;
  /** Minutes after the start at which the child writes a heap snapshot. */
  snapshots: number[];
  /** `workers:` of the configuration (1: a single process, no primary). */
  workers: number;
  /** ech.rotation.every in seconds (0: no rotation). */
  rotate: number;
  /** ech.rotation.grace in seconds (default: 3 × rotate, at least twice the DNS TTL). */
  grace: number;
  /** Good ECH clients use the config DNS gave up to this many seconds ago (default 1.5 × grace). */
  cacheAge: number;
  /** Seconds a retired config_id rests before the harness ages it (see keys-watch.ts ageRetired); 0: never aged, the real hour. */
  rest: number;
  /** SIGHUP (and a touch of the file) every this many seconds (0: never). */
  reload: number;
  /** SIGKILL one worker every this many seconds (0: never; needs --workers 2 or more). */
  killWorker: number;
}

/** The DNS TTL when rotating: short, so a grace of a few seconds is allowed (grace ≥ 2 × TTL, config/rotation.ts). */
const ROTATE_TTL = 2;

function parseArgs(argv: string[]): Args {
  const a: Args = { minutes: 10, rate: 8, hostile: 8, sample: 10, out: join(ROOT, 'soak', 'out'), snapshots: [], workers: 1, rotate: 0, grace: 0, cacheAge: 0, rest: 60, reload: 0, killWorker: 0 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = Number(argv[++i]);
    if (k === '--minutes') a.minutes = v;
    else if (k === '--rate') a.rate = v;
    else if (k === '--hostile') a.hostile = v;
    else if (k === '--sample') a.sample = v;
    else if (k === '--out') a.out = argv[i]!;
    else if (k === '--snapshots') a.snapshots = argv[i]!.split(',').map(Number);
    else if (k === '--workers') a.workers = v;
    else if (k === '--rotate') a.rotate = v;
    else if (k === '--grace') a.grace = v;
    else if (k === '--cache-age') a.cacheAge = v;
    else if (k === '--rest') a.rest = v;
    else if (k === '--reload') a.reload = v;
    else if (k === '--kill-worker') a.killWorker = v;
    else throw new Error(`unknown argument ${k}`);
  }
  for (const k of ['minutes', 'rate', 'hostile', 'sample', 'workers'] as const) if (!(a[k] > 0)) throw new Error(`--${k} wants a positive number`);
  for (const k of ['rotate', 'grace', 'cacheAge', 'rest', 'reload', 'killWorker'] as const) if (!(a[k] >= 0)) throw new Error(`--${k} wants a number >= 0`);
  if (!Number.isInteger(a.workers)) throw new Error('--workers wants a whole number');
  if (a.rotate && !Number.isInteger(a.rotate)) throw new Error('--rotate wants whole seconds');
  if (a.killWorker && a.workers < 2) throw new Error('--kill-worker needs --workers 2 or more (a single process has no worker to lose)');
  if (a.rotate) {
    a.grace ||= Math.max(2 * ROTATE_TTL, 3 * a.rotate);
    if (a.grace < 2 * ROTATE_TTL) throw new Error(`--grace is at least ${2 * ROTATE_TTL} s (twice the DNS TTL of ${ROTATE_TTL} s)`);
    a.cacheAge ||= 1.5 * a.grace;
  }
  if (a.snapshots.some((m) => !(m >= 0 && m < a.minutes))) throw new Error('--snapshots wants minutes within the run, comma separated');
  return a;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: timeout`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

// ------------------------------------------------------------------ set-up

interface Setup {
  dir: string;
  ca: string;
  ports: { web: number; back: number; metrics: number; dns: number; doh: number; tlsApp: number; plainApp: number };
  echList: Uint8Array;
  closeBackends: () => void;
  /** With --rotate: what DNS published over time; the ECH clients take their config from it. */
  watch?: EchWatch;
  /** With --rotate: the oldest config a good ECH client may hold (ms). */
  cacheAgeMs: number;
}

async function setUp(a: Args): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-soak-'));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  const names = ['app.example.test', 'secret.example.test', 'split.example.test', 'public.example.test', 'doh.example.test'];
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '2', '-subj', '/CN=soak CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.csr'), '-subj', '/CN=secret.example.test');
  writeFileSync(join(dir, 'ext'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`);
  ssl('x509', '-req', '-in', join(dir, 'server.csr'), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-out', join(dir, 'server.pem'), '-days', '2', '-extfile', join(dir, 'ext'));
  execFileSync('node', [BIN, 'keys', 'generate', '--dir', join(dir, 'keys'), '--public-name', 'public.example.test'], { stdio: 'ignore' });
  const echList = publishedList(listKeys(join(dir, 'keys')).keys);
  if (!echList) throw new Error('no active ECH key after keys generate');

  // Backends: a TLS server behind passthrough, a plain one behind termination (and split mode).
  const cert = { key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.pem')) };
  const tlsApp = tls.createServer(cert, (s) => {
    s.on('error', () => s.destroy());
    s.once('data', () => s.end(`app ${s.servername}\n`));
  });
  const plainApp = net.createServer((s) => {
    s.on('error', () => s.destroy());
    s.once('data', () => s.end('HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nhidden'));
  });
  await new Promise<void>((r) => tlsApp.listen(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => plainApp.listen(0, '127.0.0.1', () => r()));
  const ports = {
    web: await freePort(),
    back: await freePort(),
    metrics: await freePort(),
    dns: await freePort(),
    doh: await freePort(),
    tlsApp: (tlsApp.address() as net.AddressInfo).port,
    plainApp: (plainApp.address() as net.AddressInfo).port,
  };
  const pem = join(dir, 'server.pem');
  const key = join(dir, 'server.key');
  const rotation = a.rotate ? `, rotation: { every: ${a.rotate}s, grace: ${a.grace}s, publish: embedded }` : '';
  writeFileSync(
    join(dir, 'echgate.yml'),
    `
log: { level: warn }
workers: ${a.workers}
metrics: { address: "127.0.0.1:${ports.metrics}" }
ech: { keysDir: "${join(dir, 'keys')}"${rotation} }
tls: { certificates: [{ certFile: "${pem}", keyFile: "${key}" }] }
entryPoints:
  websecure: { address: "127.0.0.1:${ports.web}", clientHelloTimeout: 5s, maxConnections: 2000 }
  echback: { address: "127.0.0.1:${ports.back}", echBackend: true }
dns:
  address: "127.0.0.1:${ports.dns}"
  doh: { address: "127.0.0.1:${ports.doh}", certFile: "${pem}", keyFile: "${key}" }
  zone: example.test
  ttl: ${a.rotate ? ROTATE_TTL : 30}
  names:
    secret.example.test: { a: [127.0.0.1], https: { alpn: [h2, http/1.1], port: ${ports.web}, ech: true } }
    app.example.test: { a: [127.0.0.1], aaaa: ["::1"] }
tcp:
  routers:
    pass: { rule: "HostSNI(\`app.example.test\`)", service: tlsapp, entryPoints: [websecure], tls: { passthrough: true } }
    term: { rule: "HostSNI(\`secret.example.test\`)", service: plainapp, entryPoints: [websecure], tls: {} }
    split: { rule: "HostSNI(\`split.example.test\`)", service: echback, entryPoints: [websecure], requireECH: true, tls: { passthrough: true, echSplit: true } }
    splitback: { rule: "HostSNI(\`split.example.test\`)", service: plainapp, entryPoints: [echback], requireECH: true, tls: {} }
  services:
    tlsapp: { loadBalancer: { servers: [{ address: "127.0.0.1:${ports.tlsApp}" }] } }
    plainapp: { loadBalancer: { servers: [{ address: "127.0.0.1:${ports.plainApp}" }] } }
    echback: { loadBalancer: { servers: [{ address: "127.0.0.1:${ports.back}" }] } }
`,
  );
  return {
    dir,
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    ports,
    echList,
    closeBackends: () => {
      tlsApp.close();
      plainApp.close();
    },
    cacheAgeMs: a.cacheAge * 1000,
  };
}

// ------------------------------------------------------------------ good clients

/** An ECH client's outcome: accepted with the config it held, or rejected and then accepted with retry_configs. */
type EchOutcome = 'first' | 'retried';
// An ECH client resolves with its EchOutcome; the others with nothing.
type Op = (s: Setup) => Promise<unknown>;

/** An Error that carries what the client was doing (the config it used) for the failure log. */
class OpError extends Error {
  constructor(
    message: string,
    readonly detail: Record<string, unknown>,
  ) {
    super(message);
  }
}

/**
 * One good ECH client (RFC 9849 §6.1.6): it offers the config it holds (with
 * --rotate, the one DNS gave some seconds ago, or with `ancient` one from long
 * ago whose config_id may now name another key); a rejection with
 * retry_configs is followed by one retry with them, and that must be accepted.
 */
/** Ancient clients whose config_id had been reused by another key when they connected: the case RFC 9849 §7.1 must cover. */
const reuseStats = { tried: 0, acceptedFirstTry: 0, retriedAndAccepted: 0 };

async function echClient(s: Setup, sni: string, o: { helloRetry?: boolean; ancient?: boolean } = {}): Promise<EchOutcome> {
  let list = s.echList;
  const detail: Record<string, unknown> = {};
  if (s.watch) {
    if (o.ancient) {
      const got = s.watch.ancient(join(s.dir, 'keys'));
      if (got) {
        list = got.seen.list;
        Object.assign(detail, { configId: got.seen.configId, ageS: +((performance.now() - got.seen.t) / 1000).toFixed(1), reusedId: got.reused });
      }
    }
    if (!o.ancient || detail.configId === undefined) {
      const c = s.watch.cached(Math.random() * s.cacheAgeMs);
      list = c.list;
      Object.assign(detail, { configId: c.configId, ageS: +((performance.now() - c.t) / 1000).toFixed(1) });
    }
    detail.dnsNow = s.watch.current.configId;
  }
  const opts = { sni, ca: s.ca, send: 'GET / HTTP/1.0\r\n\r\n', timeoutMs: 10_000, helloRetry: o.helloRetry };
  const ok = (r: Awaited<ReturnType<typeof connectOnce>>) => r.connected && r.ech === 'accepted' && (r.reply ?? '').endsWith('hidden');
  if (detail.reusedId) reuseStats.tried++;
  const r = await connectOnce('127.0.0.1', s.ports.web, { ...opts, ech: list });
  if (ok(r)) {
    // Accepted with a config whose id was reused: only right if the current key under that id is the same key, which `ancient` excludes.
    if (detail.reusedId) reuseStats.acceptedFirstTry++;
    return 'first';
  }
  const first = r.error ?? `ech=${r.ech} reply=${JSON.stringify(r.reply)}`;
  if (!(r.connected && r.ech === 'rejected' && r.retryConfigs)) throw new OpError(`ECH ${sni}: ${first}`, { ...detail, first });
  const retryId = s.watch ? (decodeECHConfigList(r.retryConfigs).find((c) => !('unsupported' in c)) as { configId?: number } | undefined)?.configId : undefined;
  const r2 = await connectOnce('127.0.0.1', s.ports.web, { ...opts, ech: r.retryConfigs });
  if (ok(r2)) {
    if (detail.reusedId) reuseStats.retriedAndAccepted++;
    return 'retried';
  }
  throw new OpError(`ECH ${sni} retry: ${r2.error ?? `ech=${r2.ech} reply=${JSON.stringify(r2.reply)}`}`, { ...detail, first, retryConfigId: retryId });
}

const expect = (cond: boolean, what: string) => {
  if (!cond) throw new Error(what);
};

/** With --rotate only: a client holding a config from long ago, preferably one whose config_id now names another key. */
const ANCIENT: Record<string, Op> = {
  echAncient: (s) => echClient(s, 'secret.example.test', { ancient: true }),
};

const GOOD: Record<string, Op> = {
  async passthrough(s) {
    const got = await withTimeout(
      new Promise<string>((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port: s.ports.web, servername: 'app.example.test', ca: s.ca });
        c.once('secureConnect', () => c.write('hi\n'));
        c.once('data', (d) => {
          resolve(d.toString());
          c.destroy();
        });
        c.once('error', reject);
      }),
      10_000,
      'passthrough',
    );
    expect(got === 'app app.example.test\n', `passthrough answer ${JSON.stringify(got)}`);
  },
  async terminateNodeTls(s) {
    const got = await withTimeout(
      new Promise<string>((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port: s.ports.web, servername: 'secret.example.test', ca: s.ca });
        const chunks: Buffer[] = [];
        c.once('secureConnect', () => c.write('GET / HTTP/1.0\r\n\r\n'));
        c.on('data', (d) => chunks.push(d));
        c.once('end', () => resolve(Buffer.concat(chunks).toString()));
        c.once('error', reject);
      }),
      10_000,
      'terminate',
    );
    expect(got.endsWith('hidden'), `terminated answer ${JSON.stringify(got)}`);
  },
  terminateEch: (s) => echClient(s, 'secret.example.test'),
  terminateEchHrr: (s) => echClient(s, 'secret.example.test', { helloRetry: true }),
  splitEch: (s) => echClient(s, 'split.example.test'),
  async digUdp(s) {
    const out = await withTimeout(digRun(['-p', String(s.ports.dns), '@127.0.0.1', '+norecurse', '+time=3', '+tries=1', `_${s.ports.web}._https.secret.example.test`, 'HTTPS']), 10_000, 'dig');
    expect(/status: NOERROR/.test(out) && /ech=/.test(out), 'dig UDP: no ech= answer');
  },
  async digTcp(s) {
    const out = await withTimeout(digRun(['-p', String(s.ports.dns), '@127.0.0.1', '+tcp', '+norecurse', '+time=3', '+tries=1', 'app.example.test', 'AAAA']), 10_000, 'dig');
    expect(/status: NOERROR/.test(out) && /::1/.test(out), 'dig TCP: no AAAA');
  },
  async doh(s) {
    const q = Buffer.from(encodeQuery('secret.example.test', RRType.A, { id: 0 }));
    const body = await withTimeout(h2(s, { ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, q), 10_000, 'doh');
    expect(body.status === 200 && body.data.length > q.length, `DoH status ${body.status}`);
  },
};

function digRun(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => execFile('dig', args, { timeout: 9000 }, (e, stdout) => (e ? reject(e) : resolve(stdout))));
}

function h2(s: Setup, headers: http2.OutgoingHttpHeaders, body?: Uint8Array): Promise<{ status: number; data: Buffer }> {
  return new Promise((resolve, reject) => {
    const c = http2.connect(`https://127.0.0.1:${s.ports.doh}`, { ca: s.ca, servername: 'doh.example.test' });
    c.on('error', reject);
    const req = c.request(headers);
    let status = 0;
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
    });
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      c.close();
      resolve({ status, data: Buffer.concat(chunks) });
    });
    req.on('error', (e) => {
      c.destroy();
      reject(e);
    });
    req.end(body ? Buffer.from(body) : undefined);
  });
}

// ------------------------------------------------------------------ hostile clients

/** A plausible ClientHello from node:tls, captured once from a local listener. */
let sampleHello: Buffer | undefined;
async function captureHello(): Promise<Buffer> {
  if (sampleHello) return sampleHello;
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const got = new Promise<Buffer>((resolve) =>
    srv.once('connection', (sock) => {
      sock.once('data', (d) => {
        resolve(d);
        sock.destroy();
      });
    }),
  );
  const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, servername: 'app.example.test', rejectUnauthorized: false });
  c.on('error', () => {});
  sampleHello = await got;
  c.destroy();
  srv.close();
  return sampleHello;
}

const slowloris = new Set<net.Socket>();
const MAX_SLOWLORIS = 40;

function rawTcp(port: number, chunks: Buffer[], o: { gapMs?: number; holdMs?: number } = {}): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const end = () => {
      s.destroy();
      resolve();
    };
    s.setTimeout(15_000, end);
    s.on('error', end);
    s.on('close', end);
    s.on('data', () => {});
    s.once('connect', async () => {
      for (const c of chunks) {
        if (s.destroyed) return;
        s.write(c);
        if (o.gapMs) await sleep(o.gapMs);
      }
      if (o.holdMs) setTimeout(end, o.holdMs);
      else s.end();
    });
  });
}

const HOSTILE: Record<string, Op> = {
  async garbage(s) {
    await rawTcp(s.ports.web, [randomBytes(1 + Math.floor(Math.random() * 3000))]);
  },
  async garbageTls(s) {
    // A handshake record header, then junk.
    await rawTcp(s.ports.web, [Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), randomBytes(600)])]);
  },
  async truncatedHello(s) {
    const h = await captureHello();
    await rawTcp(s.ports.web, [h.subarray(0, 1 + Math.floor(Math.random() * (h.length - 1)))]);
  },
  async flippedHello(s) {
    const h = Buffer.from(await captureHello());
    for (let i = 0; i < 4; i++) h[Math.floor(Math.random() * h.length)] = Math.floor(Math.random() * 256);
    await rawTcp(s.ports.web, [h], { holdMs: 500 });
  },
  async slowloris(s) {
    if (slowloris.size >= MAX_SLOWLORIS) return;
    const h = await captureHello();
    const sock = net.connect(s.ports.web, '127.0.0.1');
    slowloris.add(sock);
    let i = 0;
    const t = setInterval(() => {
      if (sock.destroyed || i >= h.length) return void clearInterval(t);
      sock.write(h.subarray(i, i + 1));
      i++;
    }, 500);
    const done = () => {
      clearInterval(t);
      slowloris.delete(sock);
      sock.destroy();
    };
    sock.on('error', done);
    sock.on('close', done);
    sock.on('data', () => {});
    setTimeout(done, 60_000);
  },
  async dnsUdpJunk(s) {
    const sock = dgram.createSocket('udp4');
    const q = Buffer.from(encodeQuery('secret.example.test', RRType.HTTPS));
    const pkt = Math.random() < 0.5 ? randomBytes(Math.floor(Math.random() * 600)) : Buffer.from(q.map((b) => (Math.random() < 0.1 ? Math.floor(Math.random() * 256) : b)));
    await new Promise<void>((r) => sock.send(pkt, s.ports.dns, '127.0.0.1', () => r()));
    await sleep(200);
    sock.close();
  },
  async dnsTcpJunk(s) {
    const body = randomBytes(Math.floor(Math.random() * 400));
    const len = Buffer.from([Math.floor(Math.random() * 256), Math.floor(Math.random() * 256)]);
    await rawTcp(s.ports.dns, [Math.random() < 0.5 ? Buffer.concat([Buffer.from([body.length >> 8, body.length & 0xff]), body]) : Buffer.concat([len, body])], { holdMs: 300 });
  },
  async dohJunk(s) {
    const pick = Math.random();
    const req =
      pick < 0.3
        ? h2(s, { ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, randomBytes(Math.floor(Math.random() * 500)))
        : pick < 0.6
          ? h2(s, { ':method': 'GET', ':path': `/dns-query?dns=${randomBytes(40).toString('base64url')}` })
          : pick < 0.8
            ? h2(s, { ':method': 'GET', ':path': `/dns-query?dns=%%%${randomBytes(8).toString('hex')}` })
            : rawTcp(s.ports.doh, [randomBytes(500)]).then(() => ({ status: 0, data: Buffer.alloc(0) }));
    await withTimeout(req, 10_000, 'doh junk').catch(() => {});
  },
};

// ------------------------------------------------------------------ sampling

interface Sample {
  t: number;
  rssKb: number;
  /** VmRSS split (/proc/PID/status): anonymous memory (heaps, malloc) and file-backed pages (the node binary's code as it is touched). */
  rssAnonKb: number;
  rssFileKb: number;
  fds: number;
  metricsMs: number;
  /** echgate_event_loop_delay_seconds quantile 1 (the longest stall) since the previous sample, in ms. */
  loopMaxMs: number;
  /** echgate_process_memory_bytes{process="main"} at the scrape, in KiB (-1 when the scrape failed). */
  heapUsedKb: number;
  heapTotalKb: number;
  externalKb: number;
  arrayBuffersKb: number;
  /** This machine's 1-minute load average (the machine is shared). */
  load1: number;
  openConnections: number;
  goodOk: number;
  goodFail: number;
  hostile: number;
  slowloris: number;
  /** Processes alive (the primary and its workers; 1 without workers). */
  procs?: number;
  rssPrimaryKb?: number;
  /** RSS of the worker in each slot (-1: none at the sample). */
  rssSlotKb?: number[];
  /** Cumulative: echgate_key_rotations_total, what the harness's DNS poll saw change, config reloads, worker restarts, kills sent. */
  rotationsOk?: number;
  rotationsFailed?: number;
  dnsChanges?: number;
  reloadsOk?: number;
  workerRestarts?: number;
  kills?: number;
  /** In the interval: ECH clients accepted with the config they held / after a retry with retry_configs; good operations cut by a kill. */
  echFirst?: number;
  echRetried?: number;
  cutByKill?: number;
}

/** undefined when the process is gone (a worker killed between the listing and the read). */
function procStats(pid: number): { rssKb: number; rssAnonKb: number; rssFileKb: number; fds: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? -1);
    return { rssKb: field('VmRSS'), rssAnonKb: field('RssAnon'), rssFileKb: field('RssFile'), fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return undefined;
  }
}

/** The workers of `serve` (its child processes), each with its slot (ECHGATE_WORKER in its environment). */
function groupPids(primary: number): { workers: { slot: number; pid: number }[] } {
  const workers: { slot: number; pid: number }[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${primary}/task`);
  } catch {
    return { workers };
  }
  for (const t of tasks) {
    let kids: string[] = [];
    try {
      kids = readFileSync(`/proc/${primary}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      continue;
    }
    for (const k of kids) {
      try {
        const env = readFileSync(`/proc/${k}/environ`, 'utf8').split('\0');
        const slot = Number(env.find((e) => e.startsWith('ECHGATE_WORKER='))?.slice('ECHGATE_WORKER='.length));
        if (slot > 0) workers.push({ slot, pid: Number(k) });
      } catch {
        // gone already
      }
    }
  }
  return { workers: workers.sort((x, y) => x.slot - y.slot) };
}

function scrapeMetrics(port: number): Promise<{ ms: number; text: string }> {
  const t0 = performance.now();
  return withTimeout(
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => resolve({ ms: performance.now() - t0, text }));
        })
        .on('error', reject);
    }),
    10_000,
    'metrics',
  );
}

function svg(samples: Sample[], file: string, marks: number[] = [], markLabel = 'heap snapshot'): void {
  const W = 900;
  const H = 120;
  const panels: { label: string; get: (s: Sample) => number; unit: string }[] = [
    { label: 'RSS (VmRSS)', get: (s) => s.rssKb / 1024, unit: 'MiB' },
    { label: 'RSS anonymous (RssAnon: V8 heap, malloc)', get: (s) => s.rssAnonKb / 1024, unit: 'MiB' },
    { label: 'RSS file-backed (RssFile: node binary pages touched)', get: (s) => s.rssFileKb / 1024, unit: 'MiB' },
    { label: 'V8 heap used (after the last GC + garbage since)', get: (s) => s.heapUsedKb / 1024, unit: 'MiB' },
    { label: 'V8 heap total', get: (s) => s.heapTotalKb / 1024, unit: 'MiB' },
    { label: 'external (C++ objects bound to JS, Buffers included)', get: (s) => s.externalKb / 1024, unit: 'MiB' },
    { label: 'array buffers (part of external)', get: (s) => s.arrayBuffersKb / 1024, unit: 'MiB' },
    { label: 'open fds', get: (s) => s.fds, unit: '' },
    { label: 'good-client success (interval)', get: (s) => (s.goodOk + s.goodFail ? (100 * s.goodOk) / (s.goodOk + s.goodFail) : 100), unit: '%' },
    { label: '/metrics response time', get: (s) => s.metricsMs, unit: 'ms' },
    { label: 'event-loop delay (longest stall per sample)', get: (s) => s.loopMaxMs, unit: 'ms' },
    { label: 'machine load average (1 min, shared machine)', get: (s) => s.load1, unit: '' },
  ];
  // The group runs (--workers, --rotate, --kill-worker): each worker's RSS, the ECH outcomes and the rotations.
  const slots = Math.max(0, ...samples.map((s) => s.rssSlotKb?.length ?? 0));
  if (slots) panels.splice(1, 0, { label: 'RSS of the primary', get: (s) => (s.rssPrimaryKb ?? -1) / 1024, unit: 'MiB' }, ...Array.from({ length: slots }, (_, i) => ({ label: `RSS of the worker in slot ${i + 1} (-1: none at the sample)`, get: (s: Sample) => (s.rssSlotKb?.[i] ?? -1024) / 1024, unit: 'MiB' })));
  if (samples.some((s) => s.rotationsOk)) {
    panels.push(
      { label: 'key rotations (cumulative, echgate_key_rotations_total ok)', get: (s) => s.rotationsOk ?? 0, unit: '' },
      { label: 'ECH accepted with the cached config (interval)', get: (s) => s.echFirst ?? 0, unit: '' },
      { label: 'ECH rejected, retried with retry_configs, accepted (interval)', get: (s) => s.echRetried ?? 0, unit: '' },
    );
  }
  if (samples.some((s) => s.goodFail)) panels.push({ label: 'good-client failures (interval)', get: (s) => s.goodFail, unit: '' });
  if (samples.some((s) => s.kills)) panels.push({ label: 'good operations cut by a worker SIGKILL (interval)', get: (s) => s.cutByKill ?? 0, unit: '' });
  const tMax = Math.max(1, ...samples.map((s) => s.t));
  const parts = panels.map((p, i) => {
    const ys = samples.map(p.get);
    const lo = Math.min(0, ...ys);
    const hi = Math.max(1, ...ys) * 1.1;
    const pts = samples.map((s, k) => `${(60 + (s.t / tMax) * (W - 80)).toFixed(1)},${(i * (H + 30) + 20 + H - ((ys[k]! - lo) / (hi - lo)) * H).toFixed(1)}`).join(' ');
    const y0 = i * (H + 30) + 20;
    // A faint line every `step` minutes, and a red one where a heap snapshot was asked (serve stalls, RSS jumps).
    const step = tMax > 1800 ? 10 : tMax > 300 ? 1 : 0.5;
    let grid = '';
    for (let m = step; m * 60 < tMax; m += step) grid += `<line x1="${(60 + ((m * 60) / tMax) * (W - 80)).toFixed(1)}" x2="${(60 + ((m * 60) / tMax) * (W - 80)).toFixed(1)}" y1="${y0}" y2="${y0 + H}" stroke="#eee"/>`;
    for (const t of marks) grid += `<line x1="${(60 + (t / tMax) * (W - 80)).toFixed(1)}" x2="${(60 + (t / tMax) * (W - 80)).toFixed(1)}" y1="${y0}" y2="${y0 + H}" stroke="#d62728" stroke-dasharray="3,3"/>`;
    return `${grid}<text x="60" y="${y0 - 4}" font-size="12">${p.label} (max ${Math.max(...ys).toFixed(1)} ${p.unit})</text><rect x="60" y="${y0}" width="${W - 80}" height="${H}" fill="none" stroke="#ccc"/><text x="4" y="${y0 + 10}" font-size="10">${hi.toFixed(0)}</text><text x="4" y="${y0 + H}" font-size="10">${lo.toFixed(0)}</text><polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${pts}"/>`;
  });
  const h = panels.length * (H + 30) + 30;
  writeFileSync(file, `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" font-family="sans-serif">${parts.join('')}<text x="60" y="${h - 8}" font-size="11">time → ${tMax.toFixed(0)} s (grid: every ${tMax > 1800 ? 10 : tMax > 300 ? 1 : 0.5} min${marks.length ? `; red dashes: ${markLabel}` : ''})</text></svg>\n`);
}

// ------------------------------------------------------------------ main

/**
 * `node dist/soak/run.js --replot RUN.csv [--marks S1,S2]`: draw RUN.svg again from a CSV (columns by header
 * name; one a run did not record is drawn as -1), e.g. after columns were added to an older run's samples.
 */
function replot(csvFile: string, marks: number[]): void {
  const [head, ...rows] = readFileSync(csvFile, 'utf8').trim().split(/\r?\n/);
  const cols = head!.split(',');
  const col = (row: string[], name: string) => {
    const i = cols.indexOf(name);
    return i >= 0 ? Number(row[i]) : -1;
  };
  const samples = rows.map((line): Sample => {
    const r = line.split(',');
    return {
      t: col(r, 't_s'),
      rssKb: col(r, 'rss_kb'),
      rssAnonKb: col(r, 'rss_anon_kb'),
      rssFileKb: col(r, 'rss_file_kb'),
      heapUsedKb: col(r, 'heap_used_kb'),
      heapTotalKb: col(r, 'heap_total_kb'),
      externalKb: col(r, 'external_kb'),
      arrayBuffersKb: col(r, 'array_buffers_kb'),
      fds: col(r, 'fds'),
      metricsMs: col(r, 'metrics_ms'),
      loopMaxMs: col(r, 'loop_max_ms'),
      openConnections: col(r, 'open_connections'),
      goodOk: col(r, 'good_ok'),
      goodFail: col(r, 'good_fail'),
      hostile: col(r, 'hostile'),
      slowloris: col(r, 'slowloris'),
      load1: col(r, 'load1'),
      // The group columns (--workers, --rotate, --reload, --kill-worker), when the run recorded them.
      ...(cols.includes('procs')
        ? {
            procs: col(r, 'procs'),
            rssPrimaryKb: col(r, 'rss_primary_kb'),
            rssSlotKb: cols.filter((c) => /^rss_w\d+_kb$/.test(c)).map((c) => col(r, c)),
            rotationsOk: col(r, 'rotations_ok'),
            rotationsFailed: col(r, 'rotations_failed'),
            dnsChanges: col(r, 'dns_changes'),
            reloadsOk: col(r, 'reloads_ok'),
            workerRestarts: col(r, 'worker_restarts'),
            kills: col(r, 'kills'),
            echFirst: col(r, 'ech_first'),
            echRetried: col(r, 'ech_retried'),
            cutByKill: col(r, 'cut_by_kill'),
          }
        : {}),
    };
  });
  // With kills recorded and no marks given: the kills (the sample where the kills column steps up).
  const killMarks = marks.length ? [] : samples.filter((x, i) => i > 0 && (x.kills ?? 0) > (samples[i - 1]!.kills ?? 0)).map((x) => x.t);
  svg(samples, csvFile.replace(/\.csv$/, '.svg'), marks.length ? marks : killMarks, marks.length ? 'heap snapshot' : 'worker SIGKILL (in the sample before)');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--replot') {
    const mi = argv.indexOf('--marks');
    return replot(argv[1]!, mi >= 0 ? argv[mi + 1]!.split(',').map(Number) : []);
  }
  const a = parseArgs(argv);
  mkdirSync(a.out, { recursive: true });
  const s = await setUp(a);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const base = join(a.out, `soak-${stamp}`);
  // Heap snapshots land in the child's working directory (node names them Heap.DATE.TIME.PID.TID.SEQ.heapsnapshot).
  const heapDir = `${base}-heap`;
  if (a.snapshots.length) mkdirSync(heapDir, { recursive: true });
  const nodeFlags = a.snapshots.length ? ['--heapsnapshot-signal=SIGUSR2'] : [];
  // ECHGATE_ROTATION_SHORT=1: ech.rotation.every below a minute (config/rotation.ts; tests only).
  const env = { ...process.env, ...(a.rotate && a.rotate < 60 ? { ECHGATE_ROTATION_SHORT: '1' } : {}) };
  const child: ChildProcess = spawn(process.execPath, [...nodeFlags, BIN, 'serve', '--config', join(s.dir, 'echgate.yml')], { stdio: ['ignore', 'pipe', 'pipe'], cwd: a.snapshots.length ? heapDir : s.dir, env });
  const childLog: string[] = [];
  // Every line serve writes (level warn: errors, refusals, worker deaths), kept whole in a file beside the CSV.
  const serveLog = `${base}-serve.log`;
  writeFileSync(serveLog, '');
  const keep = (d: Buffer) => {
    childLog.push(d.toString());
    if (childLog.length > 200) childLog.shift();
    appendFileSync(serveLog, d);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited: string | undefined;
  child.once('exit', (code, sig) => {
    exited = `exit code ${code} signal ${sig}`;
  });
  // Wait for the listeners.
  for (let i = 0; ; i++) {
    try {
      await scrapeMetrics(s.ports.metrics);
      break;
    } catch {
      if (i > 100 || exited) throw new Error(`echgate serve did not start: ${exited ?? ''}\n${childLog.join('')}`);
      await sleep(200);
    }
  }
  const pid = child.pid!;
  const keysDir = join(s.dir, 'keys');
  if (a.rotate) {
    // The good ECH clients' "DNS cache": the embedded DNS asked every 250 ms; kept a little longer than the oldest age a client uses.
    s.watch = new EchWatch(s.ports.dns, `_${s.ports.web}._https.secret.example.test`, s.cacheAgeMs + 10_000);
    await s.watch.start(250);
  }
  console.log(
    `echgate serve pid ${pid}; ${a.minutes} min, good ≈${a.rate}/s, hostile ≈${a.hostile}/s, workers ${a.workers}` +
      `${a.rotate ? `, rotate every ${a.rotate}s grace ${a.grace}s (clients' configs up to ${a.cacheAge}s old; retired ids rest ${a.rest || 3600}s)` : ''}` +
      `${a.reload ? `, reload every ${a.reload}s` : ''}${a.killWorker ? `, SIGKILL a worker every ${a.killWorker}s` : ''}; work dir ${s.dir}`,
  );
  /** Good-client failures, one JSON line each: what it was doing and the key state at that moment. */
  const failLog = `${base}-failures.jsonl`;
  writeFileSync(failLog, '');

  const samples: Sample[] = [];
  const perOp: Record<string, { ok: number; fail: number; first: number; retried: number; cut: number; errors: Record<string, number>; ms: number[] }> = {};
  let interval = { ok: 0, fail: 0, hostile: 0, echFirst: 0, echRetried: 0, cut: 0 };
  /** Good operations in flight; a worker kill marks every one of them `cut` (its failure is an expected loss). */
  const goodInFlight = new Set<{ cut: boolean }>();
  const kills: { t: number; slot: number; pid: number }[] = [];
  let reloadsSent = 0;
  let agedIds = 0;
  let lastMetrics = { rotationsOk: 0, rotationsFailed: 0, reloadsOk: 0, reloadsOther: 0, workerRestarts: 0 };
  const started = performance.now();
  const deadline = started + a.minutes * 60_000;
  let inflight = 0;
  const MAX_INFLIGHT = 64;

  const good = Object.entries(a.rotate ? { ...GOOD, ...ANCIENT } : GOOD);
  const hostile = Object.entries(HOSTILE);
  const runGood = async () => {
    const [name, op] = good[Math.floor(Math.random() * good.length)]!;
    perOp[name] ??= { ok: 0, fail: 0, first: 0, retried: 0, cut: 0, errors: {}, ms: [] };
    const st = perOp[name]!;
    const t0 = performance.now();
    const token = { cut: false };
    goodInFlight.add(token);
    inflight++;
    try {
      const outcome = await op(s);
      st.ok++;
      interval.ok++;
      if (outcome === 'first') {
        st.first++;
        interval.echFirst++;
      } else if (outcome === 'retried') {
        st.retried++;
        interval.echRetried++;
      }
      if (st.ms.length < 20000) st.ms.push(performance.now() - t0);
    } catch (e) {
      const m = ((e as Error).message ?? String(e)).slice(0, 160);
      if (token.cut) {
        // In flight when a worker was killed: the kill may have cut its connection (counted apart).
        st.cut++;
        interval.cut++;
      } else {
        st.fail++;
        interval.fail++;
        st.errors[m] = (st.errors[m] ?? 0) + 1;
      }
      let keys = '';
      try {
        keys = a.rotate ? keyState(keysDir) : '';
      } catch (err) {
        keys = `unreadable: ${(err as Error).message}`;
      }
      const entry = {
        t: +((performance.now() - started) / 1000).toFixed(1),
        at: new Date().toISOString(),
        op: name,
        cutByKill: token.cut,
        error: m,
        ms: Math.round(performance.now() - t0),
        ...(e instanceof OpError ? e.detail : {}),
        keys,
        rotations: lastMetrics.rotationsOk,
        dnsChanges: s.watch?.changes,
        lastKill: kills.at(-1),
      };
      appendFileSync(failLog, `${JSON.stringify(entry)}\n`);
      if (!token.cut) console.log(`FAIL ${JSON.stringify(entry)}`);
    } finally {
      goodInFlight.delete(token);
      inflight--;
    }
  };
  const runHostile = async () => {
    const [, op] = hostile[Math.floor(Math.random() * hostile.length)]!;
    inflight++;
    interval.hostile++;
    try {
      await op(s);
    } catch {
      // hostile clients expect to be refused
    } finally {
      inflight--;
    }
  };
  // Poisson-ish arrivals at bounded rates; never more than MAX_INFLIGHT at once.
  const pump = (rate: number, fn: () => Promise<void>) =>
    (async () => {
      while (performance.now() < deadline && !exited) {
        await sleep((-Math.log(1 - Math.random()) * 1000) / rate);
        if (inflight < MAX_INFLIGHT) void fn();
      }
    })();

  // Heap snapshots at the asked minutes: SIGUSR2, then wait until the file stops growing and name it by minute.
  const snapshotFiles: { minute: number; file: string; writeMs: number }[] = [];
  /** When the first snapshot was asked (s since start): writing one stalls the child for seconds and leaves RSS higher (the serializer's malloc'd buffers stay with the allocator), so the memory summary uses the samples before it. */
  let firstSnapshotT = Number.POSITIVE_INFINITY;
  const snapshotter = (async () => {
    for (const minute of [...a.snapshots].sort((x, y) => x - y)) {
      const at = started + minute * 60_000;
      while (performance.now() < at && !exited) await sleep(Math.min(1000, at - performance.now()));
      if (exited) return;
      const before = new Set(readdirSync(heapDir));
      const t0 = performance.now();
      firstSnapshotT = Math.min(firstSnapshotT, (t0 - started) / 1000);
      child.kill('SIGUSR2');
      let file: string | undefined;
      let size = -1;
      for (let i = 0; i < 600 && !exited; i++) {
        await sleep(500);
        file ??= readdirSync(heapDir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
        if (!file) continue;
        const now = statSync(join(heapDir, file)).size;
        if (now > 0 && now === size) break;
        size = now;
      }
      if (!file) continue;
      const named = join(heapDir, `min${String(minute).padStart(3, '0')}.heapsnapshot`);
      renameSync(join(heapDir, file), named);
      snapshotFiles.push({ minute, file: named, writeMs: Math.round(performance.now() - t0) });
      console.log(`heap snapshot at minute ${minute}: ${named} (${(size / 2 ** 20).toFixed(1)} MiB)`);
    }
  })();

  // --reload: touch the file (every process's watcher reloads) and SIGHUP the parent (relayed to the workers).
  const reloader = (async () => {
    if (!a.reload) return;
    const file = join(s.dir, 'echgate.yml');
    while (performance.now() < deadline && !exited) {
      await sleep(a.reload * 1000);
      if (exited || performance.now() >= deadline) break;
      const now = new Date();
      utimesSync(file, now, now);
      child.kill('SIGHUP');
      reloadsSent++;
    }
  })();
  // --kill-worker: SIGKILL the workers in turn (slot 1 runs the rotation, so it is among them).
  const killer = (async () => {
    if (!a.killWorker) return;
    let next = 1;
    while (performance.now() < deadline && !exited) {
      await sleep(a.killWorker * 1000);
      if (exited || performance.now() >= deadline) break;
      const w = groupPids(pid).workers.find((x) => x.slot === next) ?? groupPids(pid).workers[0];
      if (!w) continue;
      for (const tk of goodInFlight) tk.cut = true;
      try {
        process.kill(w.pid, 'SIGKILL');
      } catch {
        continue;
      }
      const t = (performance.now() - started) / 1000;
      kills.push({ t, slot: w.slot, pid: w.pid });
      console.log(`t=${t.toFixed(0)}s SIGKILL worker slot ${w.slot} pid ${w.pid} (${goodInFlight.size} good operations in flight)`);
      next = (w.slot % a.workers) + 1;
    }
  })();
  // --rotate with --rest: retired ids rest `rest` seconds instead of an hour (keys-watch.ts ageRetired).
  const ager = (async () => {
    if (!a.rotate || !a.rest) return;
    while (performance.now() < deadline && !exited) {
      await sleep(1000);
      try {
        agedIds += ageRetired(keysDir, a.rest * 1000);
      } catch (e) {
        console.log(`ageRetired: ${(e as Error).message}`);
      }
    }
  })();

  const slotCols = Array.from({ length: a.workers > 1 ? a.workers : 0 }, (_, i) => `rss_w${i + 1}_kb`);
  const csv = [
    [
      't_s,rss_kb,rss_anon_kb,rss_file_kb,heap_used_kb,heap_total_kb,external_kb,array_buffers_kb,fds,metrics_ms,loop_max_ms,open_connections,good_ok,good_fail,hostile,slowloris,load1',
      'procs,rss_primary_kb',
      ...slotCols,
      'rotations_ok,rotations_failed,dns_changes,aged_ids,reloads_ok,reloads_other,worker_restarts,kills,ech_first,ech_retried,cut_by_kill',
    ].join(','),
  ];
  const sampler = (async () => {
    while (performance.now() < deadline && !exited) {
      await sleep(a.sample * 1000);
      if (exited) break;
      let metricsMs = -1;
      let loopMaxMs = -1;
      let open = -1;
      const mem: Record<string, number> = {};
      try {
        const m = await scrapeMetrics(s.ports.metrics);
        metricsMs = m.ms;
        // With workers: the longest stall of any process, and every process's memory summed.
        for (const x of m.text.matchAll(/^echgate_event_loop_delay_seconds\{[^}]*quantile="1"[^}]*\} ([\d.e+-]+)/gm)) loopMaxMs = Math.max(loopMaxMs, Number(x[1]) * 1000);
        open = [...m.text.matchAll(/^echgate_open_connections\{[^}]*\} (\d+)/gm)].reduce((n, x) => n + Number(x[1]), 0);
        for (const x of m.text.matchAll(/^echgate_process_memory_bytes\{kind="(\w+)",process="[^"]+"\} (\d+)/gm)) mem[x[1]!] = (mem[x[1]!] ?? 0) + Math.round(Number(x[2]) / 1024);
        const sum = (re: RegExp) => [...m.text.matchAll(re)].reduce((n, x) => n + Number(x[1]), 0);
        lastMetrics = {
          rotationsOk: sum(/^echgate_key_rotations_total\{result="ok"\} (\d+)/gm),
          rotationsFailed: sum(/^echgate_key_rotations_total\{result="failed"\} (\d+)/gm),
          reloadsOk: sum(/^echgate_config_reloads_total\{result="ok"\} (\d+)/gm),
          reloadsOther: sum(/^echgate_config_reloads_total\{result="(?!ok")[^"]*"\} (\d+)/gm),
          workerRestarts: sum(/^echgate_worker_restarts_total\{[^}]*\} (\d+)/gm),
        };
      } catch {
        // recorded as -1
      }
      const g = groupPids(pid);
      const per = [pid, ...g.workers.map((w) => w.pid)].map((x) => ({ pid: x, st: procStats(x) }));
      const p = per.reduce((acc, x) => (x.st ? { rssKb: acc.rssKb + x.st.rssKb, rssAnonKb: acc.rssAnonKb + x.st.rssAnonKb, rssFileKb: acc.rssFileKb + x.st.rssFileKb, fds: acc.fds + x.st.fds } : acc), { rssKb: 0, rssAnonKb: 0, rssFileKb: 0, fds: 0 });
      const slotRss = slotCols.map((_, i) => per.find((x) => x.pid === g.workers.find((w) => w.slot === i + 1)?.pid)?.st?.rssKb ?? -1);
      const smp: Sample = {
        t: (performance.now() - started) / 1000,
        ...p,
        procs: per.filter((x) => x.st).length,
        rssPrimaryKb: per[0]!.st?.rssKb ?? -1,
        rssSlotKb: slotRss,
        rotationsOk: lastMetrics.rotationsOk,
        rotationsFailed: lastMetrics.rotationsFailed,
        dnsChanges: s.watch?.changes ?? 0,
        reloadsOk: lastMetrics.reloadsOk,
        workerRestarts: lastMetrics.workerRestarts,
        kills: kills.length,
        echFirst: interval.echFirst,
        echRetried: interval.echRetried,
        cutByKill: interval.cut,
        heapUsedKb: mem.heap_used ?? -1,
        heapTotalKb: mem.heap_total ?? -1,
        externalKb: mem.external ?? -1,
        arrayBuffersKb: mem.array_buffers ?? -1,
        metricsMs,
        loopMaxMs,
        openConnections: open,
        goodOk: interval.ok,
        goodFail: interval.fail,
        hostile: interval.hostile,
        slowloris: slowloris.size,
        load1: loadavg()[0]!,
      };
      interval = { ok: 0, fail: 0, hostile: 0, echFirst: 0, echRetried: 0, cut: 0 };
      samples.push(smp);
      csv.push(
        [
          smp.t.toFixed(1), smp.rssKb, smp.rssAnonKb, smp.rssFileKb, smp.heapUsedKb, smp.heapTotalKb, smp.externalKb, smp.arrayBuffersKb, smp.fds, smp.metricsMs.toFixed(1), smp.loopMaxMs.toFixed(1), smp.openConnections, smp.goodOk, smp.goodFail, smp.hostile, smp.slowloris, smp.load1.toFixed(2),
          smp.procs, smp.rssPrimaryKb, ...slotRss,
          smp.rotationsOk, smp.rotationsFailed, smp.dnsChanges, agedIds, smp.reloadsOk, lastMetrics.reloadsOther, smp.workerRestarts, smp.kills, smp.echFirst, smp.echRetried, smp.cutByKill,
        ].join(','),
      );
      writeFileSync(`${base}.csv`, `${csv.join('\n')}\n`);
      console.log(`t=${smp.t.toFixed(0)}s rss=${(smp.rssKb / 1024).toFixed(1)}MiB heap=${(smp.heapUsedKb / 1024).toFixed(1)}/${(smp.heapTotalKb / 1024).toFixed(1)}MiB ext=${(smp.externalKb / 1024).toFixed(1)}MiB load=${smp.load1.toFixed(2)} fds=${smp.fds} metrics=${smp.metricsMs.toFixed(1)}ms loopMax=${smp.loopMaxMs.toFixed(1)}ms open=${smp.openConnections} good ok/fail=${smp.goodOk}/${smp.goodFail} hostile=${smp.hostile} slowloris=${smp.slowloris}${a.workers > 1 ? ` procs=${smp.procs} rss/slot=${slotRss.map((x) => (x / 1024).toFixed(1)).join('/')}MiB` : ''}${a.rotate ? ` rotations=${smp.rotationsOk}(+${smp.rotationsFailed} failed) dnsChanges=${smp.dnsChanges} aged=${agedIds} ech first/retried=${smp.echFirst}/${smp.echRetried}` : ''}${a.reload ? ` reloads=${smp.reloadsOk}` : ''}${a.killWorker ? ` kills=${smp.kills} restarts=${smp.workerRestarts} cut=${smp.cutByKill}` : ''}`);
    }
  })();
  await Promise.all([pump(a.rate, runGood), pump(a.hostile, runHostile), sampler, snapshotter, reloader, killer, ager]);
  s.watch?.stop();
  for (const sock of slowloris) sock.destroy();
  await sleep(2000);

  // Summary: success rate, and growth after warm-up (first 20% of samples).
  const okAll = Object.values(perOp).reduce((n, x) => n + x.ok, 0);
  const failAll = Object.values(perOp).reduce((n, x) => n + x.fail, 0);
  // Memory and fds: the samples before the first heap snapshot (all of them without --snapshots), less the first 20 % as warm-up.
  const memSamples = samples.filter((x) => x.t < firstSnapshotT);
  const warm = memSamples.slice(Math.floor(memSamples.length * 0.2));
  const half = Math.floor(warm.length / 2);
  const avg = (xs: number[]) => (xs.length ? xs.reduce((x, y) => x + y, 0) / xs.length : Number.NaN);
  const firstHalf = warm.slice(0, half);
  const lastHalf = warm.slice(half);
  const pct = (xs: number[], q: number) => {
    const v = [...xs].sort((x, y) => x - y);
    return v.length ? v[Math.min(v.length - 1, Math.floor(q * v.length))]! : Number.NaN;
  };
  // Least-squares slope per minute over the samples after warm-up, and the two halves' averages.
  const slopePerMin = (get: (x: Sample) => number) => {
    const pts = warm.filter((x) => get(x) >= 0);
    const n = pts.length;
    if (n < 2) return Number.NaN;
    const mt = avg(pts.map((x) => x.t));
    const mv = avg(pts.map(get));
    let num = 0;
    let den = 0;
    for (const x of pts) {
      num += (x.t - mt) * (get(x) - mv);
      den += (x.t - mt) ** 2;
    }
    return (num / den) * 60;
  };
  const memStats = (get: (x: Sample) => number) => {
    const xs = memSamples.map(get).filter((v) => v >= 0);
    return {
      min: Math.min(...xs) / 1024,
      max: Math.max(...xs) / 1024,
      afterWarmupFirstHalfAvg: avg(firstHalf.map(get).filter((v) => v >= 0)) / 1024,
      afterWarmupLastHalfAvg: avg(lastHalf.map(get).filter((v) => v >= 0)) / 1024,
      slopeMiBPerMinAfterWarmup: slopePerMin(get) / 1024,
    };
  };
  const summary = {
    command: `npm run soak -- --minutes ${a.minutes} --rate ${a.rate} --hostile ${a.hostile} --sample ${a.sample}${a.snapshots.length ? ` --snapshots ${a.snapshots.join(',')}` : ''}${a.workers > 1 ? ` --workers ${a.workers}` : ''}${a.rotate ? ` --rotate ${a.rotate} --grace ${a.grace} --cache-age ${a.cacheAge} --rest ${a.rest}` : ''}${a.reload ? ` --reload ${a.reload}` : ''}${a.killWorker ? ` --kill-worker ${a.killWorker}` : ''}`,
    node: process.version,
    minutes: a.minutes,
    serveExited: exited ?? null,
    good: { ok: okAll, fail: failAll, successRate: okAll / Math.max(1, okAll + failAll), failedInSamplesFromFirstSnapshotOn: samples.filter((x) => x.t >= firstSnapshotT).reduce((n, x) => n + x.goodFail, 0) },
    memorySummaryFrom: { samples: memSamples.length, warmupSamples: memSamples.length - warm.length, untilSeconds: Number.isFinite(firstSnapshotT) ? Math.round(firstSnapshotT) : null },
    perOp: Object.fromEntries(Object.entries(perOp).map(([k, v]) => [k, { ok: v.ok, fail: v.fail, ...(v.first || v.retried ? { acceptedFirstTry: v.first, retriedAndAccepted: v.retried } : {}), ...(v.cut ? { cutByKill: v.cut } : {}), p50ms: Math.round(pct(v.ms, 0.5)), p99ms: Math.round(pct(v.ms, 0.99)), errors: v.errors }])),
    ech: {
      acceptedFirstTry: Object.values(perOp).reduce((n, x) => n + x.first, 0),
      retriedAndAccepted: Object.values(perOp).reduce((n, x) => n + x.retried, 0),
      failed: ['terminateEch', 'terminateEchHrr', 'splitEch', 'echAncient'].reduce((n, k) => n + (perOp[k]?.fail ?? 0), 0),
      cutByKill: ['terminateEch', 'terminateEchHrr', 'splitEch', 'echAncient'].reduce((n, k) => n + (perOp[k]?.cut ?? 0), 0),
      ancientWithReusedId: { ...reuseStats },
    },
    cutByKillAllOps: Object.values(perOp).reduce((n, x) => n + x.cut, 0),
    rotation: a.rotate
      ? {
          rotationsOk: lastMetrics.rotationsOk,
          rotationsFailed: lastMetrics.rotationsFailed,
          dnsChangesSeen: s.watch?.changes ?? 0,
          dnsPollFailures: s.watch?.pollFailures ?? 0,
          retiredIdsAged: agedIds,
          // How many different keys DNS published under each config_id during the run (2 = the id was reused once).
          keysPerConfigId: (() => {
            const per = new Map<number, number>();
            for (const x of s.watch?.archive.values() ?? []) per.set(x.configId, (per.get(x.configId) ?? 0) + 1);
            const v = [...per.values()].sort((x, y) => x - y);
            return { ids: v.length, min: v[0] ?? 0, p50: v[Math.floor(v.length / 2)] ?? 0, max: v.at(-1) ?? 0, distinctKeys: s.watch?.archive.size ?? 0 };
          })(),
        }
      : undefined,
    reloads: a.reload ? { sent: reloadsSent, ok: lastMetrics.reloadsOk, other: lastMetrics.reloadsOther } : undefined,
    kills: a.killWorker ? { sent: kills.length, workerRestarts: lastMetrics.workerRestarts, at: kills } : undefined,
    rssPerProcessMiB: a.workers > 1 ? { primary: memStats((x) => x.rssPrimaryKb ?? -1), ...Object.fromEntries(slotCols.map((_, i) => [`slot${i + 1}`, memStats((x) => x.rssSlotKb?.[i] ?? -1)])) } : undefined,
    hostileTotal: samples.reduce((n, x) => n + x.hostile, 0),
    rssMiB: memStats((x) => x.rssKb),
    rssAnonMiB: memStats((x) => x.rssAnonKb),
    rssFileMiB: memStats((x) => x.rssFileKb),
    heapUsedMiB: memStats((x) => x.heapUsedKb),
    heapTotalMiB: memStats((x) => x.heapTotalKb),
    externalMiB: memStats((x) => x.externalKb),
    arrayBuffersMiB: memStats((x) => x.arrayBuffersKb),
    fds: { min: Math.min(...memSamples.map((x) => x.fds)), max: Math.max(...memSamples.map((x) => x.fds)), afterWarmupFirstHalfAvg: avg(firstHalf.map((x) => x.fds)), afterWarmupLastHalfAvg: avg(lastHalf.map((x) => x.fds)), slopePerMinAfterWarmup: slopePerMin((x) => x.fds) },
    loadAverage1: { min: Math.min(...samples.map((x) => x.load1)), p50: pct(samples.map((x) => x.load1), 0.5), max: Math.max(...samples.map((x) => x.load1)) },
    heapSnapshots: snapshotFiles,
    metricsMs: { p50: pct(samples.map((x) => x.metricsMs), 0.5), max: Math.max(...samples.map((x) => x.metricsMs)) },
    eventLoopMaxMs: { p50: pct(samples.map((x) => x.loopMaxMs), 0.5), max: Math.max(...samples.map((x) => x.loopMaxMs)) },
    files: { csv: `${base}.csv`, svg: `${base}.svg`, failures: failLog, serveLog },
    serveLogTail: childLog.join('').split('\n').slice(-20),
  };
  writeFileSync(`${base}.json`, JSON.stringify(summary, null, 2));
  svg(
    samples,
    `${base}.svg`,
    snapshotFiles.length ? snapshotFiles.map((f) => f.minute * 60) : kills.map((k) => k.t),
    snapshotFiles.length ? 'heap snapshot' : 'worker SIGKILL',
  );
  console.log(JSON.stringify({ ...summary, serveLogTail: undefined }, null, 2));
  child.kill('SIGTERM');
  s.closeBackends();
  await sleep(500);
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
