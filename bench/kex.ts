/**
 * Key-exchange cost per TLS group, in CPU time of this process
 * (process.cpuUsage): the server's part (keygen + DH, or encapsulation), the
 * client's part (keygen, then DH or decapsulation), and the server's whole
 * first flight on the engine (ServerHello … Finished: key exchange, key
 * schedule, ECDSA P-256 signature, record protection) for one ClientHello
 * per group. The last row is what decides whether X25519MLKEM768 may lead
 * the default preference (docs/benchmarks.md, "Key exchange").
 *
 * Run: `npm run build && node dist/bench/kex.js [iterations]` (add --json for JSON).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { selfSigned } from '../src/cli/demo.js';
import { mlkem768Encapsulate, mlkem768Generate } from '../src/crypto/kex.js';
import { nodeProvider } from '../src/crypto/node.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { GROUPS } from '../src/tls13/groups.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';

function cpu(fn: () => void, n: number): number {
  for (let i = 0; i < Math.min(200, n); i++) fn();
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn();
  const t = process.cpuUsage(t0);
  return n / ((t.user + t.system) / 1e6);
}

export interface KexBenchResult {
  rows: { name: string; perSec: number }[];
  /** Server first flight with X25519MLKEM768 over the same with X25519 (CPU per handshake). */
  hybridFlightRatio: number;
}

export function kexBench(n: number): KexBenchResult {
  const p = nodeProvider;
  const host = 'app.example.test';
  const c = selfSigned(mkdtempSync(join(tmpdir(), 'echgate-bench-kex-')), host);
  const cert = loadCertificate(c.cert, c.key);
  const rows: { name: string; perSec: number }[] = [];
  const flight: Record<number, number> = {};
  // Rounds interleaved over the groups (the VM's speed drifts), medians of 3.
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
  for (const g of GROUPS.values()) {
    // The pure-JS ML-KEM is ~100× slower per call than node:crypto ECDH: fewer iterations keep the run short.
    const iters = g.name.includes('MLKEM') ? Math.max(50, Math.ceil(n / 20)) : n;
    const clientShare = g.offer(p);
    const srv = g.accept(p, clientShare.publicKey);
    const hello = decodeClientHelloMessage(new TlsClient({ provider: p, serverName: host, groups: [g.id] }).hello()[0]!.subarray(5));
    const a: number[] = [];
    const b: number[] = [];
    const f: number[] = [];
    for (let r = 0; r < 3; r++) {
      a.push(cpu(() => g.accept(p, clientShare.publicKey), iters));
      b.push(cpu(() => g.offer(p).complete(srv.share), iters));
      f.push(cpu(() => new TlsServer({ provider: p, random: (k) => p.randomBytes(k), certificate: () => cert, groups: [g.id] }).start(hello, host, { offered: false, accepted: false }), iters));
    }
    rows.push({ name: `${g.name}: server keygen + ${g.name.includes('MLKEM') ? 'encapsulate + DH' : 'DH'}`, perSec: med(a) });
    rows.push({ name: `${g.name}: client keygen + ${g.name.includes('MLKEM') ? 'decapsulate + DH' : 'DH'}`, perSec: med(b) });
    rows.push({ name: `${g.name}: server first flight (key exchange, key schedule, ECDSA P-256 sign, records)`, perSec: med(f) });
    flight[g.id] = med(f);
  }
  const kem = mlkem768Generate();
  rows.push({ name: 'ML-KEM-768 encapsulate alone (@noble/post-quantum, with the FIPS 203 §7.2 check)', perSec: cpu(() => mlkem768Encapsulate(kem.publicKey), Math.max(50, Math.ceil(n / 20))) });
  return { rows, hybridFlightRatio: flight[0x001d]! / flight[0x11ec]! };
}

export function kexTable(r: KexBenchResult): string[] {
  return [
    '| | per CPU-second | µs each |',
    '|---|---|---|',
    ...r.rows.map((x) => `| ${x.name} | ${x.perSec.toFixed(0)} | ${(1e6 / x.perSec).toFixed(1)} |`),
    '',
    `Server first flight, X25519MLKEM768 over X25519: ${r.hybridFlightRatio.toFixed(2)}× the CPU per handshake.`,
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const r = kexBench(Number(args.find((x) => /^\d+$/.test(x)) ?? 2000));
  process.stdout.write(args.includes('--json') ? `${JSON.stringify(r)}\n` : `${kexTable(r).join('\n')}\n`);
}
