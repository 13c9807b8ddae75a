/** Helpers shared by the benchmark sections: child processes, ports, medians, RSS. */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { HEAP_FLOOR_FLAG } from '../src/cli/heap-floor.js';

export const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Spawn and wait until its output matches `ready`. */
export function start(cmd: string, args: string[], ready: RegExp): Promise<{ proc: ChildProcess; match: RegExpMatchArray }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(proc);
    let out = '';
    const on = (d: Buffer) => {
      out += d.toString();
      const m = out.match(ready);
      if (m) resolve({ proc, match: m });
    };
    proc.stdout!.on('data', on);
    proc.stderr!.on('data', on);
    proc.once('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${out}`)));
    setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), 15000).unref();
  });
}

export async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The q-quantile (0..1) of xs, nearest rank. */
export const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

/** Resident set size of a process, in KiB (VmRSS from /proc/PID/status). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** N sockets, C at a time; `open` makes one that closes by itself when its exchange is done. Resolves with the wall time in ms. */
export function loop(n: number, c: number, open: () => net.Socket): Promise<number> {
  const t0 = performance.now();
  let started = 0;
  let done = 0;
  return new Promise((resolve, reject) => {
    const one = () => {
      if (started >= n) return;
      started++;
      const s = open();
      s.once('error', reject);
      s.once('close', () => {
        done++;
        if (done === n) resolve(performance.now() - t0);
        else one();
      });
    };
    for (let i = 0; i < c; i++) one();
  });
}

/** The global and defaults sections every HAProxy peer in the bench starts with (one thread, TCP mode). */
export const HAPROXY_HEAD = `global
  maxconn 8000
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
`;

/** `openssl s_time -new -tls1_3` against 127.0.0.1:PORT for `seconds`: the number of full handshakes it made. */
export function sTime(port: number, seconds: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('openssl', ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-tls1_3', '-time', String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d.toString().replace(/\*/g, '');
    });
    p.stderr.on('data', (d) => {
      out += d.toString();
    });
    p.once('exit', () => {
      const m = /(\d+) connections in [\d.]+s;/.exec(out);
      if (!m || Number(m[1]) === 0) reject(new Error(`s_time: ${out.slice(-400)}`));
      else resolve(Number(m[1]));
    });
  });
}

const idleCtx = tls.createSecureContext({});
/**
 * Opens `n` connections to 127.0.0.1:PORT, 50 at a time, and leaves them
 * idle: terminated ones after a TLS 1.3 handshake for `name` and one byte,
 * relayed ones after the captured ClientHello `capture`.
 */
export async function openIdle(port: number, terminated: boolean, n: number, name: string, capture: Uint8Array): Promise<net.Socket[]> {
  const socks: net.Socket[] = [];
  for (let i = 0; i < n; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, async () => {
        if (terminated) {
          const s = tls.connect({ port, host: '127.0.0.1', servername: name, secureContext: idleCtx, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
          socks.push(s);
          await new Promise((r, j) => s.once('secureConnect', r).once('error', j));
          s.write('x');
        } else {
          const s = net.connect(port, '127.0.0.1');
          socks.push(s);
          await new Promise((r, j) => s.once('connect', r).once('error', j));
          s.write(capture);
        }
      }),
    );
  }
  return socks;
}

/** Send `capture` (a captured ClientHello), wait for one byte, close; `n` connections, `c` at a time. */
export function connLoad(port: number, n: number, c: number, capture: Uint8Array): Promise<number> {
  return loop(n, c, () => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    s.once('connect', () => s.write(capture));
    s.once('data', () => s.end());
    return s;
  });
}

/** The idle-memory configuration: one catch-all router to a backend that holds connections, terminated or passed through. */
export function idleMemoryConfig(port: number, hold: number, terminated: boolean, cert: string, key: string): string {
  return `log: { level: warn }
entryPoints:
  e: { address: "127.0.0.1:${port}", maxConnections: 100000 }
tcp:
  routers:
    r: { entryPoints: [e], rule: "HostSNI(\`*\`)", service: hold, tls: ${terminated ? '{}' : '{ passthrough: true }'} }
  services:
    hold: { loadBalancer: { servers: [{ address: "127.0.0.1:${hold}" }] } }
tls:
  certificates:
    - { certFile: ${JSON.stringify(cert)}, keyFile: ${JSON.stringify(key)} }
`;
}

/**
 * The node flags every `serve` the bench starts runs with: the ones the
 * launcher's `#!` line and deploy/ give it (src/cli/heap-floor.ts), so the
 * bench measures serve as an operator runs it.
 */
export const SERVE_NODE_FLAGS: readonly string[] = [HEAP_FLOOR_FLAG];

/**
 * `--name value` taken out of `args` (so what is left are the positional
 * arguments, e.g. the builds to compare); `def` when absent.
 */
export function takeOption(args: string[], name: string, def: string): string {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = args[i + 1]!;
  args.splice(i, 2);
  return v;
}

/**
 * `list` starting at its (r mod length)-th item: round r of an interleaved comparison runs the peers in this
 * order, so over the rounds each takes each position (a fixed order put 5–7 % on the peer in one position:
 * docs/benchmarks.md, "Passthrough cost, ninth pass").
 */
export function rotate<T>(list: readonly T[], r: number): T[] {
  return list.map((_, i) => list[(i + r) % list.length]!);
}

/** This process's open-file limit (soft, hard) from /proc/self/limits; Infinity for "unlimited". */
export function nofileLimits(): { soft: number; hard: number } {
  const m = /Max open files\s+(\S+)\s+(\S+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  const n = (x: string | undefined) => (x === undefined || x === 'unlimited' ? Number.POSITIVE_INFINITY : Number(x));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

/**
 * An open-file limit of `want` for the children that hold many sockets (the
 * idle-memory rows: a relayed connection holds two descriptors in the proxy),
 * and for this process, which holds the client ends. When the hard limit is
 * already `want` or more, nothing changes (Node raises its own soft limit to
 * the hard one at start-up, and children inherit both). Otherwise it is raised
 * with `prlimit` (util-linux; raising a hard limit needs CAP_SYS_RESOURCE, up to
 * fs.nr_open: root on a host; root in a Docker container by default lacks it, as
 * on the bench machine of 2026-12-03): children are spawned through
 * `prlimit --nofile=N:N --`, which execs the command (same pid, so
 * /proc/PID/stat and VmRSS still read the child), and this process gets the
 * same limit by `prlimit --pid`. When that fails (not root, no prlimit) the
 * limit is the hard one we have, and the caller sizes its run to it.
 */
export function openFileLimit(want: number): { limit: number; wrap: (cmd: string, args: string[]) => [string, string[]] } {
  const same = (cmd: string, args: string[]): [string, string[]] => [cmd, args];
  const { hard } = nofileLimits();
  if (hard >= want) return { limit: hard, wrap: same };
  try {
    execFileSync('prlimit', [`--nofile=${want}:${want}`, '--', 'true'], { stdio: 'ignore' });
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${want}`], { stdio: 'ignore' });
  } catch {
    return { limit: hard, wrap: same };
  }
  return { limit: want, wrap: (cmd, args) => ['prlimit', [`--nofile=${want}:${want}`, '--', cmd, ...args]] };
}

/**
 * A self-signed ECDSA P-256 certificate for `name` (CN and subjectAltName) by
 * `openssl req`, written to DIR/c.pem and DIR/k.pem (or the names given).
 */
export function selfSigned(dir: string, name: string, files = { cert: 'c.pem', key: 'k.pem' }): { cert: string; key: string } {
  const cert = join(dir, files.cert);
  const key = join(dir, files.key);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

/** Full TLS 1.3 handshakes to `name`, `n` of them, `c` at a time, each sending one byte and closing on the answer. Resolves with the wall time in ms. */
export function tlsByteLoad(port: number, n: number, c: number, name: string): Promise<number> {
  return loop(n, c, () => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: name, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    s.once('secureConnect', () => s.write('x'));
    s.once('data', () => s.end());
    return s;
  });
}

/** Resolves once GET /metrics on 127.0.0.1:PORT answers 200; `tries` × `everyMs` at the most. */
export async function waitMetrics(port: number, tries: number, everyMs: number, what = 'echgate did not start'): Promise<void> {
  for (let i = 0; i < tries; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/metrics`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await sleep(everyMs);
  }
  throw new Error(what);
}

/**
 * The process-group configuration of bench/workers.ts and workers-icount.ts:
 * `workers` processes, metrics on `metrics`, a passthrough entrypoint `conn`
 * (captured hellos, outer name public.example.test) and a terminating one
 * `term` (term.example.test, certificate DIR/c.pem), both to the backend.
 */
export function workersConfig(o: { workers: number; metrics: number; conn: number; term: number; dir: string; backend: number }): string {
  return `
workers: ${o.workers}
log: { level: warn }
metrics: { address: "127.0.0.1:${o.metrics}" }
entryPoints:
  conn: { address: "127.0.0.1:${o.conn}", maxConnections: 100000 }
  term: { address: "127.0.0.1:${o.term}", maxConnections: 100000 }
tls:
  certificates: [{ certFile: "${join(o.dir, 'c.pem')}", keyFile: "${join(o.dir, 'k.pem')}" }]
tcp:
  routers:
    conn: { entryPoints: [conn], rule: "HostSNI(\`public.example.test\`)", service: byte, tls: { passthrough: true } }
    term: { entryPoints: [term], rule: "HostSNI(\`term.example.test\`)", service: byte, tls: {} }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${o.backend}" }] } }
`;
}

/** Minor faults (whole process, /proc/PID/stat) and voluntary / involuntary context switches summed over its threads. */
export function procCounts(pid: number): { minflt: number; vcs: number; ivcs: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const minflt = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
  let vcs = 0;
  let ivcs = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      vcs += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]);
      ivcs += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]);
    } catch {
      // the thread ended
    }
  }
  return { minflt, vcs, ivcs };
}

/**
 * A reader of `perf script -F pid,ip,sym,dso` output, fed line by line (so a
 * caller may stream it): `each(pid, syms, dsos)` gets every sample with at
 * least one frame, its frames leaf first. A sample is a header line (its pid,
 * right-aligned: it may start with spaces) and then one tab-led line per
 * frame (`ip sym (dso)`); a blank line or the next header ends it.
 */
export function perfSamples(each: (pid: string, syms: string[], dsos: string[]) => void): { line: (l: string) => void; end: () => void } {
  let pid: string | undefined;
  let syms: string[] = [];
  let dsos: string[] = [];
  const flush = () => {
    if (pid !== undefined && syms.length) each(pid, syms, dsos);
    syms = [];
    dsos = [];
  };
  return {
    line: (line) => {
      if (line.trim() === '') {
        flush();
        pid = undefined;
        return;
      }
      if (!line.startsWith('\t')) {
        flush();
        pid = line.trim().split(/\s+/)[0];
        return;
      }
      const body = line.trim().replace(/^[0-9a-f]+\s+/, '');
      const m = /^(.*) \(([^()]*)\)$/.exec(body);
      syms.push(m ? m[1]! : body);
      dsos.push(m ? m[2]! : '');
    },
    end: flush,
  };
}
