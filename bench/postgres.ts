/**
 * PostgreSQL through echgate (`protocol: postgres`, passthrough) against the
 * same cluster directly, in one run: pgbench select-only (-S), 8 clients,
 * persistent connections (the TLS handshake happens once per client, so the
 * figure is the per-query cost of the relay, not of handshakes).
 *
 *   npm run build && node dist/bench/postgres.js
 *   BENCH_ONLY=pg npm run bench     (the same, as the `pg` section of bench/run.ts)
 *
 * Starts two PostgreSQL 15 clusters with ../shared/recipes/peers/pg-pair.sh
 * (as root), `echgate serve` as a child process, initialises pgbench's tables
 * (scale 1) on db1, then runs direct and through echgate interleaved
 * (ROUNDS × SECONDS each), and a last one-minute run through echgate that must
 * end without a failed transaction. Reports the median of each: tps, average
 * latency, the latency echgate adds, and echgate's CPU time (utime+stime of
 * the serve process) per transaction.
 * Env: PG_BENCH_SECONDS (default 15), PG_BENCH_ROUNDS (3), PG_BENCH_MINUTE=0 skips the one-minute run.
 * Inside `npm run bench` (postgresBench): the rounds of the other sections,
 * 5 s each with BENCH_QUICK, no one-minute run unless PG_BENCH_MINUTE=1, and
 * skipped with one line saying why when PostgreSQL's programs are missing.
 */
import { execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { cpuMs } from './cpu.js';
import { children, median, waitPort, SERVE_NODE_FLAGS } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PEERS = join(ROOT, '..', 'shared', 'recipes', 'peers');
const CLIENTS = 8;

/** Why the PostgreSQL section cannot run here, or undefined when it can. */
export function postgresMissing(): string | undefined {
  const onPath = (name: string) =>
    (process.env.PATH ?? '').split(':').some((d) => {
      try {
        accessSync(join(d, name), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  const missing = ['pgbench', 'initdb', 'pg_ctl', 'runuser'].filter((n) => !onPath(n));
  if (missing.length) return `${missing.join(', ')} not on PATH (Debian: apt-get install postgresql)`;
  if (!existsSync(join(PEERS, 'pg-pair.sh'))) return `${join(PEERS, 'pg-pair.sh')} not found`;
  if (process.getuid?.() !== 0) return 'needs root (pg-pair.sh runs the clusters through runuser)';
  return undefined;
}

interface Run {
  tps: number;
  latencyMs: number;
  txns: number;
  failed: number;
}

function pgbench(env: Record<string, string>, seconds: number): Run {
  const out = execFileSync('pgbench', ['-S', '-n', '-c', String(CLIENTS), '-j', '2', '-T', String(seconds)], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: (seconds + 60) * 1000 });
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? Number.NaN);
  return {
    tps: num(/tps = ([\d.]+) \(without initial connection time\)/),
    latencyMs: num(/latency average = ([\d.]+) ms/),
    txns: num(/number of transactions actually processed: (\d+)/),
    failed: num(/number of failed transactions: (\d+)/),
  };
}

export interface PostgresBenchOptions {
  seconds: number;
  rounds: number;
  /** The one-minute run through echgate that must end with no failed transaction. */
  minute: boolean;
}

/** The section's lines (markdown); a run with a failed transaction sets process.exitCode. */
export async function postgresBench(o: PostgresBenchOptions): Promise<string[]> {
  const { seconds: SECONDS, rounds: ROUNDS, minute: MINUTE } = o;
  const dir = mkdtempSync('/tmp/echgate-pgbench-');
  const [p1, p2, ep] = [await freePort(), await freePort(), await freePort()];
  execFileSync(join(PEERS, 'pg-pair.sh'), [dir, String(p1), String(p2)], { stdio: 'ignore', timeout: 180_000 });
  try {
    writeFileSync(
      join(dir, 'echgate.yml'),
      `entryPoints:
  pg: { address: "127.0.0.1:${ep}", protocol: postgres }
log: { level: warn }
tcp:
  routers:
    db1: { entryPoints: [pg], rule: "HostSNI(\`db1.example.test\`)", service: db1, tls: { passthrough: true } }
  services:
    db1: { loadBalancer: { servers: [{ address: "127.0.0.1:${p1}" }] } }
`,
    );
    const eg = spawn('node', [...SERVE_NODE_FLAGS, join(ROOT, 'bin', 'echgate.js'), 'serve', '--config', join(dir, 'echgate.yml')], { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(eg);
    await waitPort(ep);
    const common = { PGHOST: 'db1.example.test', PGHOSTADDR: '127.0.0.1', PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(dir, 'ca.pem'), PGUSER: 'postgres', PGDATABASE: 'postgres' };
    const direct = { ...common, PGPORT: String(p1) };
    const via = { ...common, PGPORT: String(ep) };
    execFileSync('pgbench', ['-i', '-s', '1', '-q'], { env: { ...process.env, ...direct }, stdio: 'ignore' });
    pgbench(via, 2); // warm-up (JIT, pools)
    const d: Run[] = [];
    const e: Run[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      d.push(pgbench(direct, SECONDS));
      const c0 = cpuMs(eg.pid!);
      const r = pgbench(via, SECONDS);
      cpu.push((cpuMs(eg.pid!) - c0) / r.txns);
      e.push(r);
    }
    // Latency per transaction from the throughput (Little's law: clients / tps), so tps and latency
    // describe the same run; pgbench's own "latency average" is printed beside it.
    const lat = (r: Run) => (1000 * CLIENTS) / r.tps;
    const rows = [
      'PostgreSQL through echgate (bench/postgres.ts: `protocol: postgres`, passthrough; direct and through echgate interleaved):',
      '',
      `pgbench -S, ${CLIENTS} clients, scale 1, TLS (verify-full), ${ROUNDS} rounds × ${SECONDS} s, direct and through echgate interleaved; ${cpus().length} cores`,
      '',
      `| round | direct tps | echgate tps | direct ms/txn | echgate ms/txn | added ms | echgate CPU µs/txn | failed |`,
      `|---|---:|---:|---:|---:|---:|---:|---:|`,
      ...d.map((x, i) => `| ${i + 1} | ${x.tps.toFixed(0)} | ${e[i]!.tps.toFixed(0)} | ${lat(x).toFixed(3)} (${x.latencyMs}) | ${lat(e[i]!).toFixed(3)} (${e[i]!.latencyMs}) | ${(lat(e[i]!) - lat(x)).toFixed(3)} | ${(cpu[i]! * 1000).toFixed(1)} | ${x.failed + e[i]!.failed} |`),
      '',
      `median: added latency ${median(d.map((x, i) => lat(e[i]!) - lat(x))).toFixed(3)} ms per transaction; echgate CPU ${(median(cpu) * 1000).toFixed(1)} µs per transaction`,
    ];
    if (MINUTE) {
      const m = pgbench(via, 60);
      rows.push(`one-minute run through echgate: ${m.txns} transactions, ${m.failed} failed, ${m.tps.toFixed(0)} tps`);
      if (m.failed !== 0 || !(m.txns > 0)) process.exitCode = 1;
    }
    eg.kill('SIGTERM');
    return rows;
  } finally {
    execFileSync(join(PEERS, 'pg-pair-stop.sh'), [dir], { stdio: 'ignore', timeout: 90_000 });
    rmSync(dir, { recursive: true, force: true });
  }
}

// Run on its own: node dist/bench/postgres.js
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const why = postgresMissing();
  if (why) {
    console.log(`PostgreSQL through echgate: skipped: ${why}`);
  } else {
    const rows = await postgresBench({ seconds: Number(process.env.PG_BENCH_SECONDS ?? 15), rounds: Number(process.env.PG_BENCH_ROUNDS ?? 3), minute: process.env.PG_BENCH_MINUTE !== '0' });
    console.log(rows.join('\n'));
  }
  for (const c of children) c.kill('SIGTERM');
}
