/**
 * The termination rows of `npm run bench` (issue #8, "terminate and decrypt
 * at the peers' cost"), each as the measured process's own CPU time
 * (/proc/PID/stat), interleaved rounds, medians:
 *
 * 1. full TLS 1.3 handshakes (no ECH), client `openssl s_time -new -tls1_3`:
 *    echgate serve (terminating router), a node:tls terminating proxy
 *    (bench/tls-proxy.ts) and HAProxy `bind ... ssl crt`, all with the same
 *    ECDSA P-256 certificate and the same plain backend; then handshake
 *    latency p50/p99 through each and direct to a node:tls server answering
 *    as the backend does (bench/backend.ts `tls-byte`), node:tls client, one
 *    handshake at a time, interleaved sample by sample, connect → the
 *    backend's first byte, and what each proxy adds (bench/latency.ts);
 * 2. echgate terminating with ECH accepted vs without, echgate's own TLS
 *    client as load generator (bench/ech-load.ts, its own process): CPU per
 *    connection, and the latency ECH adds (same end event, alternating);
 * 3. ECH on a route-only path (split mode: decrypt, route, forward the inner
 *    hello), fresh hellos built ahead by the load generator, extra CPU per
 *    ECH connection beside a plain one of the same shape;
 * 4. 1 GiB through one terminated connection: MB per CPU-second, in both
 *    directions: backend → client (the proxy seals records) and client →
 *    backend (the proxy opens them; the backend, bench/sink.ts, answers one
 *    byte once it has everything);
 * 5. RSS per idle relayed and per idle terminated connection, 10,000 open
 *    (fewer when the open-file limit cannot be raised; the label says), read
 *    also at half way in the same process.
 *
 * TERM_ONLY (with BENCH_ONLY=term), for checking some rows without the rest
 * of the section: `bulk` (4), `lat` (the latency rows of 1 and 2), `mem` (5).
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { freePort } from '../src/cli/free-port.js';
import { cpuMs, cpuNs, pin } from './cpu.js';
import { addedP50P99, firstByteMs, interleavedLatency, p50p99, pairedMedian } from './latency.js';
import { children, HAPROXY_HEAD, idleMemoryConfig, median, openFileLimit, openIdle, rotate, rssKiB, sleep, sTime, start, waitPort, SERVE_NODE_FLAGS } from './util.js';

export interface TermOptions {
  root: string;
  dir: string;
  quick: boolean;
  rounds: number;
  /** µs per ECH decryption at the floor (bench/ech.ts, same run). */
  floorUs: number;
}

const NAME = 'app.example.test';

/** backend → client: `bytes` streamed by the backend; resolves when the client has them all and the connection closed. */
function bulk(port: number, bytes: number, ctx: tls.SecureContext): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const s = tls.connect({ port, host: '127.0.0.1', servername: NAME, secureContext: ctx, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => s.write('g'));
    s.on('data', (d: Buffer) => {
      got += d.length;
    });
    s.once('error', reject);
    s.once('close', () => (got === bytes ? resolve() : reject(new Error(`bulk got ${got} of ${bytes}`))));
  });
}

const UP_CHUNK = Buffer.alloc(64 * 1024, 0x62);

/**
 * client → backend: `bytes` written by the client (node:tls cuts them into
 * 2^14-byte records); resolves on the sink's one-byte answer, which it sends
 * once all of them reached it, and the close after it.
 */
function upload(port: number, bytes: number, ctx: tls.SecureContext): Promise<void> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const s = tls.connect({ port, host: '127.0.0.1', servername: NAME, secureContext: ctx, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
      let left = bytes;
      const pump = () => {
        while (left > 0) {
          const c = left >= UP_CHUNK.length ? UP_CHUNK : UP_CHUNK.subarray(0, left);
          left -= c.length;
          if (!s.write(c)) return void s.once('drain', pump);
        }
      };
      pump();
    });
    s.on('data', () => {
      answered = true;
    });
    s.once('error', reject);
    s.once('close', () => (answered ? resolve() : reject(new Error(`upload of ${bytes} bytes: no answer from the sink`))));
  });
}

/** A forked bench/ech-load.js and one request/answer over IPC. */
function loadGen(root: string): Promise<{ ask: (m: object) => Promise<Record<string, unknown>>; proc: ChildProcess }> {
  const proc = fork(join(root, 'dist', 'bench', 'ech-load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(proc);
  const ask = (m: object) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      proc.send(m);
      proc.once('message', (r: Record<string, unknown>) => (r.error ? reject(new Error(String(r.error))) : resolve(r)));
    });
  return new Promise((resolve) => proc.once('message', () => resolve({ ask, proc })));
}

const f = (x: number, d = 3) => x.toFixed(d);

export async function terminateBench(o: TermOptions): Promise<string[]> {
  const { root, dir, quick, rounds } = o;
  const SECONDS = quick ? 3 : 10;
  // About 2.5 ms per sample here: 4 peers × 1000 ≈ 10 s; p99 is then the 10th largest of each.
  const LAT_N = quick ? 200 : 1000;
  const LAT_WARM = quick ? 20 : 50;
  const ECH_N = quick ? 300 : 2000;
  const ROUTE_N = quick ? 1000 : 4000;
  const BULK = quick ? 256 << 20 : 1 << 30;
  const MEM_N = quick ? 1000 : 10000;
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const bulkOnly = process.env.TERM_ONLY === 'bulk';
  const latOnly = process.env.TERM_ONLY === 'lat';

  // Certificate (ECDSA P-256), the HAProxy PEM (chain + key), ECH keys.
  const cert = join(dir, 'term-c.pem');
  const key = join(dir, 'term-k.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  writeFileSync(join(dir, 'term-hp.pem'), readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
  // The label names the open-file limit when it, not MEM_N, set n (not root: see util.ts openFileLimit).
  const memRows = (mem: Awaited<ReturnType<typeof memoryBench>>) => {
    const note = mem.n < MEM_N ? `, not ${MEM_N}: open-file limit ${mem.limit}` : '';
    return [
      `| RSS per idle terminated connection (KiB, ${mem.n} open${note}; the first ${mem.n / 2}: in brackets; goal ≤ 16) | ${f(mem.term.echgate.full, 1)} (${f(mem.term.echgate.half, 1)}) | ${f(mem.term.node.full, 1)} (${f(mem.term.node.half, 1)}) | | | |`,
      `| RSS per idle relayed connection (KiB, ${mem.n} open${note}, TLS passthrough; the first ${mem.n / 2}: in brackets; goal ≤ 16) | ${f(mem.relay.full, 1)} (${f(mem.relay.half, 1)}) | | | | |`,
    ];
  };
  const head = `| | echgate | node:tls proxy | ${haproxyName()} \`bind ssl\` | echgate / node:tls | echgate / HAProxy |`;
  if (process.env.TERM_ONLY === 'mem') {
    const m0 = performance.now();
    const rows = memRows(await memoryBench(root, dir, cert, key, MEM_N));
    log(`memory rows: ${f((performance.now() - m0) / 1000, 1)} s`);
    return ['Idle memory only (TERM_ONLY=mem; a fresh proxy process per case):', '', head, '|---|---|---|---|---|---|', ...rows];
  }
  const keysDir = join(dir, 'ech-keys');
  const cli = join(root, 'bin', 'echgate.js');
  execFileSync('node', [cli, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test'], { stdio: 'ignore' });
  const echList = execFileSync('node', [cli, 'keys', 'export', '--dir', keysDir, '--format', 'base64']).toString().trim();

  const backend = (mode: string, ...args: string[]) => start('node', [join(root, 'dist', 'bench', 'backend.js'), mode, ...args], /PORT (\d+)/);
  const byteBackend = await backend('byte');
  const byte = Number(byteBackend.match[1]);
  const stream = Number((await backend('stream', String(BULK))).match[1]);
  const sink = Number((await start('node', [join(root, 'dist', 'bench', 'sink.js'), String(BULK)], /PORT (\d+)/)).match[1]);
  // The direct peer of the latency rows: the `byte` backend's answer inside TLS, same certificate, a process of its own.
  const direct = Number((await backend('tls-byte', '0', cert, key)).match[1]);

  const ep = { term: await freePort(), termech: await freePort(), routeech: await freePort(), routeplain: await freePort(), bulk: await freePort(), up: await freePort() };
  const certs = `tls:\n  certificates:\n    - { certFile: ${JSON.stringify(cert)}, keyFile: ${JSON.stringify(key)} }\n`;
  writeFileSync(
    join(dir, 'term.yml'),
    `log: { level: warn }
ech: { keysDir: ${JSON.stringify(keysDir)} }
entryPoints:
${Object.entries(ep)
  .map(([n, p]) => `  ${n}: { address: "127.0.0.1:${p}", maxConnections: 100000 }`)
  .join('\n')}
tcp:
  routers:
    term: { entryPoints: [term], rule: "HostSNI(\`*\`)", service: byte, tls: {} }
    termech: { entryPoints: [termech], rule: "HostSNI(\`${NAME}\`)", service: byte, tls: {} }
    routeech: { entryPoints: [routeech], rule: "HostSNI(\`${NAME}\`)", requireECH: true, service: byte, tls: { passthrough: true, echSplit: true } }
    routeplain: { entryPoints: [routeplain], rule: "HostSNI(\`${NAME}\`)", service: byte, tls: { passthrough: true } }
    bulk: { entryPoints: [bulk], rule: "HostSNI(\`*\`)", service: stream, tls: {} }
    up: { entryPoints: [up], rule: "HostSNI(\`*\`)", service: sink, tls: {} }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${byte}" }] } }
    stream: { loadBalancer: { servers: [{ address: "127.0.0.1:${stream}" }] } }
    sink: { loadBalancer: { servers: [{ address: "127.0.0.1:${sink}" }] } }
${certs}`,
  );
  const eg = spawn('node', [...SERVE_NODE_FLAGS, cli, 'serve', '--config', join(dir, 'term.yml')], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(eg);
  for (const p of Object.values(ep)) await waitPort(p);

  const tp = await start('node', [join(root, 'dist', 'bench', 'tls-proxy.js'), cert, key, `0:${byte}`, `0:${stream}`, `0:${sink}`], /PORTS (\d+) (\d+) (\d+)/);
  const tpPorts = [Number(tp.match[1]), Number(tp.match[2]), Number(tp.match[3])];

  const hpPorts = [await freePort(), await freePort(), await freePort()];
  writeFileSync(
    join(dir, 'haproxy-term.cfg'),
    `${HAPROXY_HEAD}frontend fe_term
  bind 127.0.0.1:${hpPorts[0]} ssl crt ${join(dir, 'term-hp.pem')} ssl-min-ver TLSv1.3
  default_backend be_byte
frontend fe_bulk
  bind 127.0.0.1:${hpPorts[1]} ssl crt ${join(dir, 'term-hp.pem')} ssl-min-ver TLSv1.3
  default_backend be_stream
frontend fe_up
  bind 127.0.0.1:${hpPorts[2]} ssl crt ${join(dir, 'term-hp.pem')} ssl-min-ver TLSv1.3
  default_backend be_sink
backend be_byte
  server s1 127.0.0.1:${byte}
backend be_stream
  server s1 127.0.0.1:${stream}
backend be_sink
  server s1 127.0.0.1:${sink}
`,
  );
  const hp = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy-term.cfg')], { stdio: 'ignore' });
  children.push(hp);
  for (const p of hpPorts) await waitPort(p);

  const proxies = [
    { name: 'echgate', pid: eg.pid!, term: ep.term, bulk: ep.bulk, up: ep.up },
    { name: 'node:tls proxy', pid: tp.proc.pid!, term: tpPorts[0]!, bulk: tpPorts[1]!, up: tpPorts[2]! },
    { name: 'HAProxy', pid: hp.pid!, term: hpPorts[0]!, bulk: hpPorts[1]!, up: hpPorts[2]! },
  ];
  const ctx = tls.createSecureContext({});
  const hs: Record<string, number[]> = {};
  const bulkRate: Record<string, number[]> = {};
  const upRate: Record<string, number[]> = {};
  for (const p of proxies) {
    hs[p.name] = [];
    bulkRate[p.name] = [];
    upRate[p.name] = [];
    await sTime(p.term, 1); // warm-up
  }

  // 1. handshakes, 4. bulk both ways; the peers' order rotated each round (util.ts rotate).
  const t0 = performance.now();
  let upMs = 0;
  for (let r = 0; r < (latOnly ? 0 : rounds); r++) {
    for (const p of bulkOnly ? [] : rotate(proxies, r)) {
      const c0 = cpuMs(p.pid);
      const n = await sTime(p.term, SECONDS);
      hs[p.name]!.push((cpuMs(p.pid) - c0) / n);
      log(`round ${r + 1} ${p.name}: ${f(hs[p.name]!.at(-1)!)} ms CPU per TLS 1.3 handshake (${n} by s_time)`);
    }
    for (const p of rotate(proxies, r)) {
      const c0 = cpuMs(p.pid);
      await bulk(p.bulk, BULK, ctx);
      bulkRate[p.name]!.push(BULK / 1e6 / ((cpuMs(p.pid) - c0) / 1000));
      log(`round ${r + 1} ${p.name}: ${f(bulkRate[p.name]!.at(-1)!, 0)} MB per CPU-second terminated`);
    }
    const u0 = performance.now();
    for (const p of rotate(proxies, r)) {
      const c0 = cpuMs(p.pid);
      await upload(p.up, BULK, ctx);
      upRate[p.name]!.push(BULK / 1e6 / ((cpuMs(p.pid) - c0) / 1000));
      log(`round ${r + 1} ${p.name}: ${f(upRate[p.name]!.at(-1)!, 0)} MB per CPU-second terminated, client → backend`);
    }
    upMs += performance.now() - u0;
  }
  log(`bulk rows: ${f((performance.now() - t0) / 1000, 1)} s, of which client → backend ${f(upMs / 1000, 1)} s`);
  const m = (x: Record<string, number[]>, k: string) => median(x[k]!);
  const e = 'echgate';
  const nt = 'node:tls proxy';
  const hpn = 'HAProxy';
  const bulkRows = () => [
    `| bulk through a terminated connection (${BULK / 2 ** 20} MiB, backend → client): MB per CPU-second of the proxy | ${f(m(bulkRate, e), 0)} | ${f(m(bulkRate, nt), 0)} | ${f(m(bulkRate, hpn), 0)} | ${f(m(bulkRate, e) / m(bulkRate, nt), 2)}× (target ≥ 0.9×) | ${f(m(bulkRate, e) / m(bulkRate, hpn), 2)}× |`,
    `| bulk through a terminated connection (${BULK / 2 ** 20} MiB, client → backend): MB per CPU-second of the proxy | ${f(m(upRate, e), 0)} | ${f(m(upRate, nt), 0)} | ${f(m(upRate, hpn), 0)} | ${f(m(upRate, e) / m(upRate, nt), 2)}× (target ≥ 0.9×) | ${f(m(upRate, e) / m(upRate, hpn), 2)}× |`,
  ];
  if (bulkOnly) {
    for (const c of [eg, tp.proc, hp]) c.kill('SIGTERM');
    return [`Terminated bulk only (TERM_ONLY=bulk; one connection per transfer; ${rounds} interleaved rounds (the order rotated each round), medians):`, '', head, '|---|---|---|---|---|---|', ...bulkRows()];
  }
  // Latency: each peer and the direct server, one handshake at a time, interleaved (bench/latency.ts).
  const l0 = performance.now();
  const DIRECT = 'direct';
  const lat = await interleavedLatency(
    [{ name: DIRECT, sample: () => firstByteMs(direct, NAME, ctx, true) }, ...proxies.map((p) => ({ name: p.name, sample: () => firstByteMs(p.term, NAME, ctx, true) }))],
    LAT_N,
    LAT_WARM,
  );
  for (const p of proxies) log(`latency ${p.name}: added p50/p99 ${addedP50P99(lat[p.name]!, lat[DIRECT]!)} ms (quantile differences); median of paired differences ${f(pairedMedian(lat[p.name]!, lat[DIRECT]!), 2)} ms`);
  log(`latency rows: ${f((performance.now() - l0) / 1000, 1)} s`);
  const latRows = [
    `| handshake latency, connect → the backend's first byte, p50 / p99 (ms, ${LAT_N} sequential per peer, interleaved one by one, node:tls client; direct to a node:tls server: ${p50p99(lat[DIRECT]!)}) | ${p50p99(lat[e]!)} | ${p50p99(lat[nt]!)} | ${p50p99(lat[hpn]!)} | | |`,
    `| added latency over direct, p50 / p99 (ms; quantile through the proxy − the same quantile direct) | ${addedP50P99(lat[e]!, lat[DIRECT]!)} | ${addedP50P99(lat[nt]!, lat[DIRECT]!)} | ${addedP50P99(lat[hpn]!, lat[DIRECT]!)} | | |`,
  ];
  // 2. ECH accepted vs not, echgate's own client; 3. route-only ECH vs plain.
  const lg = await loadGen(root);
  await lg.ask({ cmd: 'term', port: ep.termech, n: 100, c: 4, ech: echList });
  // ECH's added latency: echgate's own client, one handshake at a time, plain and ECH alternating (ech-load `lat`).
  const el0 = performance.now();
  const echLat = (await lg.ask({ cmd: 'lat', port: ep.termech, n: LAT_N / 2, ech: echList })) as { plain: number[]; ech: number[] };
  log(`ECH latency rows: ${f((performance.now() - el0) / 1000, 1)} s; median of paired differences ${f(pairedMedian(echLat.ech, echLat.plain), 2)} ms`);
  const echLatRow = `| terminating, latency connect → the backend's first byte, p50 / p99 (ms, ${LAT_N / 2} of each, one at a time, alternating; echgate's client, hello built before the clock starts) | ${p50p99(echLat.plain)} | ${p50p99(echLat.ech)} | added by ECH ${addedP50P99(echLat.ech, echLat.plain)} ms |`;
  const echHead = ['| | without ECH | ECH accepted | ratio |', '|---|---|---|---|'];
  if (latOnly) {
    lg.proc.kill();
    for (const c of [eg, tp.proc, hp]) c.kill('SIGTERM');
    return ['Termination latency only (TERM_ONLY=lat):', '', head, '|---|---|---|---|---|---|', ...latRows, '', ...echHead, echLatRow];
  }

  const echTerm = { plain: [] as number[], ech: [] as number[] };
  const route = { plain: [] as number[], ech: [] as number[] };
  // Plain and ECH alternate in slices, in ABBA order: whichever kind ran first after a pause cost
  // more in one-kind-then-the-other runs (the route-only "extra" moved by ~200 µs with the order on
  // the busy VM), and both kinds share one backend, so they must also share its TIME_WAIT history.
  const SLICES = 4;
  /** Route-only slices per round: ROUTE_N is cut into this many alternating slices (200 hellos each at the default 4000). */
  const ROUTE_SLICES = 20;
  let routePinned = false;
  const orderOf = (i: number) => (i % 2 === 0 ? (['plain', 'ech'] as const) : (['ech', 'plain'] as const));
  for (let r = 0; r < rounds; r++) {
    const termCpu = { plain: 0, ech: 0 };
    for (let i = 0; i < SLICES; i++) {
      for (const kind of orderOf(i)) {
        const c0 = cpuMs(eg.pid!);
        await lg.ask({ cmd: 'term', port: ep.termech, n: ECH_N / SLICES, c: 8, ech: kind === 'ech' ? echList : undefined });
        termCpu[kind] += cpuMs(eg.pid!) - c0;
      }
    }
    for (const kind of ['plain', 'ech'] as const) {
      echTerm[kind].push(termCpu[kind] / ECH_N);
      log(`round ${r + 1} echgate terminating, ${kind}: ${f(echTerm[kind].at(-1)!)} ms CPU per connection`);
    }
    // Route-only: the extra of ECH is a difference of two totals about 1.7× apart, so their noise
    // is amplified about fourfold. As bench/ab-proxy.ts does (docs/benchmarks.md, "Relaying cost,
    // third pass"): CPU to the nanosecond (schedstat), ROUTE_SLICES short ABBA slices, and, when
    // taskset works and there are two CPUs or more, serve pinned to the last CPU and the load
    // generator and backend to CPU 0 for this section only (no migration between cores).
    const all = `0-${availableParallelism() - 1}`;
    const last = String(availableParallelism() - 1);
    const pinned = availableParallelism() > 1 && pin(eg.pid!, last) && pin(lg.proc.pid!, '0') && pin(byteBackend.proc.pid!, '0');
    routePinned ||= pinned;
    await lg.ask({ cmd: 'prepare', n: ROUTE_N, ech: echList });
    const routeCpu = { plain: 0, ech: 0 };
    for (let i = 0; i < ROUTE_SLICES; i++) {
      for (const kind of orderOf(i)) {
        const c0 = cpuNs(eg.pid!);
        await lg.ask({ cmd: 'route', port: kind === 'ech' ? ep.routeech : ep.routeplain, kind, c: 16, n: ROUTE_N / ROUTE_SLICES });
        routeCpu[kind] += (cpuNs(eg.pid!) - c0) / 1e6;
      }
    }
    if (availableParallelism() > 1) for (const pid of [eg.pid!, lg.proc.pid!, byteBackend.proc.pid!]) pin(pid, all);
    for (const kind of ['plain', 'ech'] as const) {
      route[kind].push(routeCpu[kind] / ROUTE_N);
      log(`round ${r + 1} echgate route-only, ${kind}: ${f(route[kind].at(-1)!)} ms CPU per connection${pinned ? ' (pinned)' : ''}`);
    }
  }
  lg.proc.kill();
  for (const c of [eg, tp.proc, hp]) c.kill('SIGTERM');

  // 5. memory, each in a fresh process
  const m0 = performance.now();
  const mem = await memoryBench(root, dir, cert, key, MEM_N);
  log(`memory rows: ${f((performance.now() - m0) / 1000, 1)} s`);

  const extra = median(route.ech.map((x, i) => x - route.plain[i]!)) * 1000;
  return [
    `Termination (${SECONDS} s of \`openssl s_time -connect 127.0.0.1:PORT -new -tls1_3 -time ${SECONDS}\` per proxy per round; ECDSA P-256 certificate; plain backend; ${rounds} interleaved rounds (the order rotated each round), medians):`,
    '',
    head,
    '|---|---|---|---|---|---|',
    `| proxy CPU per full TLS 1.3 handshake (ms) | ${f(m(hs, e))} | ${f(m(hs, nt))} | ${f(m(hs, hpn))} | ${f(m(hs, e) / m(hs, nt), 2)}× (target ≤ 1.0×) | ${f(m(hs, e) / m(hs, hpn), 2)}× |`,
    ...latRows,
    ...bulkRows(),
    ...memRows(mem),
    '',
    `ECH through echgate, load from echgate's own TLS client in a process of its own (bench/ech-load.ts), echgate CPU per connection:`,
    '',
    ...echHead,
    `| terminating (full handshake, ${ECH_N} connections at concurrency 8) (ms) | ${f(median(echTerm.plain))} | ${f(median(echTerm.ech))} | ${f(median(echTerm.ech) / median(echTerm.plain), 2)}× (target ≤ 1.10×) |`,
    echLatRow,
    `| route-only, split mode (hello → backend's one byte → close, ${ROUTE_N} fresh hellos per round in ${ROUTE_SLICES} ABBA slices, CPU from schedstat${routePinned ? ', serve pinned to one CPU' : ''}) (ms) | ${f(median(route.plain))} | ${f(median(route.ech))} | extra ${f(extra, 1)} µs per ECH connection = ${f(extra / o.floorUs, 2)}× the ${f(o.floorUs, 1)} µs HPKE-open floor (target ≤ 1.25×) |`,
  ];
}

let hpVersion = '';
function haproxyName(): string {
  hpVersion ||= /HAProxy version (\d+\.\d+)/.exec(execFileSync('haproxy', ['-v']).toString())?.[1] ?? '';
  return `HAProxy ${hpVersion}`;
}

/**
 * Open n idle connections through a fresh proxy; RSS growth per connection,
 * read twice in the same process: after the first n/2 and after all n (the
 * figure falls as n grows, fixed growth spread wider; the two readings show
 * by how much in the same run). The processes that hold the sockets (the
 * proxy: two descriptors per connection; the backend; this process, the
 * client ends) get an open-file limit raised for n when the hard limit allows
 * (util.ts openFileLimit: root, prlimit); otherwise n is cut to what the
 * limit we have allows, and the row's label says the n used.
 */
async function memoryBench(root: string, dir: string, cert: string, key: string, want: number) {
  // 256 spare descriptors: serve and the node:tls proxy hold 21–22 of their own when idle (listener,
  // stdio, epoll, node's pipes; counted in /proc/PID/fd), the 200 warm-up connections are closed by then.
  // With a hard limit of 20,000 that cannot be raised (no CAP_SYS_RESOURCE: this machine's root in its
  // container, Docker's default) n is 9800.
  const { limit, wrap } = openFileLimit(2 * want + 256);
  const n = Math.min(want, Math.floor((limit - 256) / 2 / 100) * 100);
  const launch = (cmd: string, args: string[], ready: RegExp) => start(...wrap(cmd, args), ready);
  const hold = Number((await launch('node', [join(root, 'dist', 'bench', 'backend.js'), 'hold'], /PORT (\d+)/)).match[1]);
  const capture = readFileSync(join(root, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));
  const open = (port: number, terminated: boolean, k: number) => openIdle(port, terminated, k, NAME, capture);
  const measure = async (pid: number, port: number, terminated: boolean) => {
    // Warm up the code paths first, then the baseline.
    for (const s of await open(port, terminated, 200)) s.destroy();
    await sleep(1000);
    const before = rssKiB(pid);
    const socks = await open(port, terminated, n / 2);
    await sleep(2000);
    const mid = rssKiB(pid);
    socks.push(...(await open(port, terminated, n / 2)));
    await sleep(2000);
    const after = rssKiB(pid);
    for (const s of socks) s.destroy();
    return { half: (mid - before) / (n / 2), full: (after - before) / n };
  };
  const egRun = async (terminated: boolean) => {
    const port = await freePort();
    const cfg = join(dir, `mem-${terminated}.yml`);
    writeFileSync(cfg, idleMemoryConfig(port, hold, terminated, cert, key));
    const p = spawn(...wrap('node', [...SERVE_NODE_FLAGS, join(root, 'bin', 'echgate.js'), 'serve', '--config', cfg]), { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(p);
    await waitPort(port);
    const kib = await measure(p.pid!, port, terminated);
    p.kill('SIGTERM');
    return kib;
  };
  const relay = await egRun(false);
  const term = await egRun(true);
  const tp = await launch('node', [join(root, 'dist', 'bench', 'tls-proxy.js'), cert, key, `0:${hold}`], /PORTS (\d+)/);
  const nodeTerm = await measure(tp.proc.pid!, Number(tp.match[1]), true);
  tp.proc.kill('SIGTERM');
  return { n, limit, relay, term: { echgate: term, node: nodeTerm } };
}
