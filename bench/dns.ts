/**
 * The embedded DNS beside BIND 9 serving the same zone (SOA, NS, A, and an
 * HTTPS record with the same ech= value): queries answered per CPU-second of
 * the server process (/proc/PID/stat), over UDP with dnsperf and over DoH
 * with bench/doh-load.ts (POST, HTTP/2, one connection), interleaved rounds,
 * medians. BIND runs with one worker thread (`named -n 1`).
 *
 * BENCH_DNS_BASE=DIR (a checkout of another build: DIR/bin/echgate.js and its
 * dist/) runs that build too, as "base", in the same rounds: before/after
 * ratios of one run, for a busy machine. Base and this build swap places
 * every round (base first in odd rounds, this build first in even ones), so
 * neither always follows the previous slice's load.
 * BENCH_DNS_KINDS=udp,dnsperfDoh,doh picks rows (default all three);
 * BENCH_DNS_SECONDS sets the slice length (default 10, 3 with BENCH_QUICK).
 * BENCH_DNS_DOH_STREAMS sets doh-load's streams in flight (default 20): with
 * 1, every query arrives alone (no batching of several requests per wakeup,
 * which the machine's load changes from one slice to the next), so CPU per
 * query compares across builds on a busy machine.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../src/cli/free-port.js';
import { cpuMs } from './cpu.js';
import { children, median, sleep, start, waitPort, SERVE_NODE_FLAGS } from './util.js';

export interface DnsOptions {
  root: string;
  dir: string;
  quick: boolean;
  rounds: number;
}

const DNSPERF_UDP = ['-c', '1', '-q', '100'];
const DNSPERF_DOH = ['-m', 'doh', '-O', 'doh-method=POST', '-c', '100', '-q', '100'];

/** dnsperf slices that lost queries (see `dnsperf`). */
let lostSlices = 0;

function dnsperf(port: number, qfile: string, seconds: number, mode: string[] = DNSPERF_UDP): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', qfile, '-l', String(seconds), ...mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      out += d;
    });
    p.once('exit', () => {
      const m = /Queries completed:\s+(\d+)/.exec(out);
      // dnsperf 2.10's DoH client sometimes drops answers it has read (no octets left in either side's
      // socket queue during such a slice) until every outstanding query has timed out: a slice with lost
      // queries measures that, not the server. Counted and shown; the lead decides whether to rerun.
      const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? 0);
      if (lost > 0) {
        lostSlices++;
        process.stderr.write(`dnsperf on port ${port}: ${lost} queries lost (a dnsperf stall; this slice is not a server figure)\n`);
      }
      if (!m || Number(m[1]) === 0) reject(new Error(`dnsperf: ${out.slice(-400)}`));
      else resolve(Number(m[1]));
    });
  });
}

export async function dnsBench(o: DnsOptions): Promise<string[]> {
  const { root, dir, quick, rounds } = o;
  const SECONDS = Number(process.env.BENCH_DNS_SECONDS) || (quick ? 3 : 10);
  const KINDS = (process.env.BENCH_DNS_KINDS ?? 'udp,dnsperfDoh,doh').split(',') as ('udp' | 'dnsperfDoh' | 'doh')[];
  const d = join(dir, 'dns');
  mkdirSync(d, { recursive: true });
  const cli = join(root, 'bin', 'echgate.js');
  const keysDir = join(d, 'keys');
  execFileSync('node', [cli, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test'], { stdio: 'ignore' });
  const ech = execFileSync('node', [cli, 'keys', 'export', '--dir', keysDir, '--format', 'base64']).toString().trim();
  const cert = join(d, 'c.pem');
  const key = join(d, 'k.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=dns.test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:dns.test', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const qfile = join(d, 'queries.txt');
  writeFileSync(qfile, 'app.example.test A\napp.example.test HTTPS\n');

  const egConfig = (eg: { udp: number; doh: number; ep: number }) =>
    `log: { level: warn }
ech: { keysDir: ${JSON.stringify(keysDir)} }
entryPoints:
  e: { address: "127.0.0.1:${eg.ep}" }
tcp:
  routers:
    r: { entryPoints: [e], rule: "HostSNI(\`*\`)", service: s, tls: { passthrough: true } }
  services:
    s: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } }
dns:
  address: "127.0.0.1:${eg.udp}"
  doh:
    address: "127.0.0.1:${eg.doh}"
    certFile: ${JSON.stringify(cert)}
    keyFile: ${JSON.stringify(key)}
    # dnsperf opens 100 connections from one address; the default per-address cap (16) would refuse 84 of them.
    maxConnectionsPerIP: 200
  zone: example.test
  ttl: 300
  names:
    ns1.example.test: { a: [127.0.0.1] }
    app.example.test: { a: [127.0.0.1], https: { alpn: [h2], ech: true } }
`;
  const startEchgate = async (bin: string, file: string) => {
    const ports = { udp: await freePort(), doh: await freePort(), ep: await freePort() };
    writeFileSync(join(d, file), egConfig(ports));
    const proc = spawn('node', [...SERVE_NODE_FLAGS, bin, 'serve', '--config', join(d, file)], { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(proc);
    await waitPort(ports.doh);
    return { proc, ...ports };
  };
  const eg = await startEchgate(cli, 'echgate.yml');
  const egProc = eg.proc;
  const baseDir = process.env.BENCH_DNS_BASE;
  const base = baseDir ? await startEchgate(join(baseDir, 'bin', 'echgate.js'), 'echgate-base.yml') : undefined;

  const bd = { udp: await freePort(), doh: await freePort() };
  writeFileSync(
    join(d, 'example.test.db'),
    `$TTL 300
@ SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@ NS ns1
ns1 A 127.0.0.1
app A 127.0.0.1
app HTTPS 1 . alpn=h2 ech=${ech}
`,
  );
  writeFileSync(
    join(d, 'named.conf'),
    `tls t { key-file "${key}"; cert-file "${cert}"; };
http h { endpoints { "/dns-query"; }; };
options {
  directory "${d}"; pid-file "${d}/named.pid"; session-keyfile "${d}/session.key";
  listen-on port ${bd.udp} { 127.0.0.1; };
  listen-on port ${bd.doh} tls t http h { 127.0.0.1; };
  listen-on-v6 { none; }; recursion no; dnssec-validation no; allow-transfer { none; };
};
zone "example.test" { type primary; file "example.test.db"; };
`,
  );
  const named = spawn('named', ['-g', '-n', '1', '-c', join(d, 'named.conf')], { stdio: 'ignore' });
  children.push(named);
  await waitPort(bd.doh);
  await sleep(300);
  const bindVersion = /BIND (\S+)/.exec(execFileSync('named', ['-v']).toString())?.[1] ?? '';

  const STREAMS = Number(process.env.BENCH_DNS_DOH_STREAMS) || 20;
  const doh = async (port: number) => {
    const r = await start('node', [join(root, 'dist', 'bench', 'doh-load.js'), `https://127.0.0.1:${port}/dns-query`, String(SECONDS), String(STREAMS)], /DONE (\d+) (\d+)/);
    if (Number(r.match[2]) > 0) throw new Error(`doh-load: ${r.match[2]} failed queries on port ${port}`);
    return Number(r.match[1]);
  };
  const servers = [
    ...(base ? [{ name: 'base', pid: base.proc.pid!, udp: base.udp, doh: base.doh }] : []),
    { name: 'echgate', pid: egProc.pid!, udp: eg.udp, doh: eg.doh },
    { name: 'BIND', pid: named.pid!, udp: bd.udp, doh: bd.doh },
  ];
  const res: Record<string, { udp: number[]; doh: number[]; dnsperfDoh: number[] }> = {};
  for (const s of servers) {
    res[s.name] = { udp: [], doh: [], dnsperfDoh: [] };
    await dnsperf(s.udp, qfile, 1);
  }
  for (let r = 0; r < rounds; r++) {
    for (const kind of KINDS) {
      // base and this build change places every round; BIND last.
      const order = base && r % 2 === 1 ? [servers[1]!, servers[0]!, servers[2]!] : servers;
      for (const s of order) {
        const c0 = cpuMs(s.pid);
        const n = kind === 'udp' ? await dnsperf(s.udp, qfile, SECONDS) : kind === 'dnsperfDoh' ? await dnsperf(s.doh, qfile, SECONDS, DNSPERF_DOH) : await doh(s.doh);
        const rate = n / ((cpuMs(s.pid) - c0) / 1000);
        res[s.name]![kind].push(rate);
        process.stderr.write(`round ${r + 1} ${s.name} ${kind}: ${rate.toFixed(0)} queries per CPU-second (${n} answered)\n`);
        if (s.name === 'BIND' && res.base) process.stderr.write(`round ${r + 1} ${kind}: this build / base ${(res.echgate![kind].at(-1)! / res.base[kind].at(-1)!).toFixed(3)}\n`);
      }
    }
  }
  egProc.kill('SIGTERM');
  base?.proc.kill('SIGTERM');
  named.kill('SIGTERM');
  const e = res.echgate!;
  const b = res.BIND!;
  const baseRows = res.base
    ? [
        '',
        `Before/after in the same rounds (base: ${baseDir}), queries per CPU-second of the server, medians:`,
        '',
        '| | base | this build | BIND | base / BIND | this build / BIND | this build / base |',
        '|---|---|---|---|---|---|---|',
        ...KINDS.map((k) => {
          const [x, y, z] = [median(res.base![k]), median(e[k]), median(b[k])];
          const label = { udp: 'UDP', dnsperfDoh: 'DoH (dnsperf, 100 connections)', doh: `DoH (doh-load, ${STREAMS} streams, 1 connection)` }[k];
          return `| ${label} | ${x.toFixed(0)} | ${y.toFixed(0)} | ${z.toFixed(0)} | ${(x / z).toFixed(2)}× | ${(y / z).toFixed(2)}× | ${(y / x).toFixed(2)}× |`;
        }),
      ]
    : [];
  return [
    `Embedded DNS beside BIND ${bindVersion} (\`named -n 1\`), same zone; UDP: \`dnsperf -s 127.0.0.1 -p PORT -d queries.txt -l ${SECONDS} ${DNSPERF_UDP.join(' ')}\` (A and HTTPS for one name); DoH with dnsperf: \`dnsperf ... ${DNSPERF_DOH.join(' ')}\` (one query in flight per connection); DoH with bench/doh-load.ts (POST, HTTP/2, ${STREAMS} streams outstanding on one connection, ${SECONDS} s); ${rounds} interleaved rounds, medians:`,
    '',
    '| | echgate | BIND | echgate / BIND |',
    '|---|---|---|---|',
    ...KINDS.map((k) => {
      const label = { udp: 'UDP', dnsperfDoh: 'DoH (dnsperf, 100 connections)', doh: `DoH (doh-load, ${STREAMS} streams, 1 connection)` }[k];
      // Issue #8's goals: ≥ 0.5× BIND over UDP, ≥ 1.0× over DoH.
      const goal = k === 'udp' ? '0.5' : '1.0';
      return `| ${label} queries per CPU-second of the server | ${median(e[k]).toFixed(0)} | ${median(b[k]).toFixed(0)} | ${(median(e[k]) / median(b[k])).toFixed(2)}× (goal ≥ ${goal}×) |`;
    }),
    ...baseRows,
    ...(lostSlices ? ['', `dnsperf lost queries in ${lostSlices} slice(s) (stderr names them): those slices' figures are dnsperf stalls, not server cost.`] : []),
  ];
}
