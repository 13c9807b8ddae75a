/**
 * The databases of the SNI story (issue 10), each against the real program
 * from Debian 12, started and stopped by the verified launchers in
 * ../shared/recipes/peers/ (they bind 127.0.0.1, run the servers as their own
 * users, and stop them by PID):
 *
 * - PostgreSQL 15 (two clusters, db1 and db2, their own certificates) behind
 *   an entrypoint with `protocol: postgres`: psql with sslmode=verify-full
 *   reaches the cluster its host= names, an unknown name is refused, sslmode=
 *   disable gets the TLS-required error, a CancelRequest (psql on SIGINT)
 *   cancels a query, pgbench runs without errors, a terminating router speaks
 *   plaintext to the cluster, and a direct-TLS ClientHello (ALPN postgresql,
 *   PostgreSQL 17's sslnegotiation=direct) completes with a PostgreSQL 15 server.
 * - MariaDB 10.11 (server speaks first): through a HostSNI(`*`) entrypoint the
 *   greeting reaches a client that sent nothing, and `mariadb --ssl` runs a
 *   query over TLS end to end; behind a HostSNI(`db.example.test`) router the
 *   client waits for a greeting that never comes, and the log says so.
 * - Redis 7 (two TLS servers): redis-cli --tls --sni r1/r2 reach r1/r2 through
 *   one port; without --sni the log says "no SNI", and the connection goes to
 *   the HostSNI(`*`) router when there is one, else gets unrecognized_name.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join, dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { freePort } from '../src/cli/free-port.js';
import { parseConfigText } from '../src/config/load.js';
import { Gateway } from '../src/proxy/gateway.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PEERS = join(ROOT, '..', 'shared', 'recipes', 'peers');
/** Peer folders live in /tmp, whose mode lets the postgres and mysql users reach them. */
const TMP = '/tmp';

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code as number) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

const has = (bin: string) => ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/lib/postgresql/15/bin'].some((d) => existsSync(join(d, bin)));
const notRoot = typeof process.getuid === 'function' && process.getuid() !== 0 ? 'the peer launchers run the servers with runuser (root)' : false;
const skipPg = notRoot || (has('psql') && has('pgbench') && existsSync('/usr/lib/postgresql/15/bin/initdb') ? false : 'PostgreSQL 15 is not installed (.ci/run installs postgresql)');
const skipMdb = notRoot || (has('mariadbd') && has('mariadb') ? false : 'MariaDB is not installed (.ci/run installs mariadb-server)');
const skipRedis = notRoot || (has('redis-server') && has('redis-cli') ? false : 'Redis is not installed (.ci/run installs redis-server redis-tools)');

interface LogLine {
  msg: string;
  [k: string]: unknown;
}

async function gateway(yaml: string): Promise<{ gw: Gateway; logs: LogLine[]; port(ep: string): number }> {
  const logs: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => logs.push(JSON.parse(s)) } as unknown as NodeJS.WritableStream);
  const gw = new Gateway({ log });
  await gw.apply(parseConfigText(yaml, 'databases.yml'));
  return { gw, logs, port: (ep) => gw.addresses().get(ep)!.port };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PostgreSQL 15 behind protocol: postgres', { skip: skipPg, timeout: 240_000 }, () => {
  let dir = '';
  let g: Awaited<ReturnType<typeof gateway>>;
  let ca = '';
  const conn = (host: string, port: number, extra = '') => `host=${host} hostaddr=127.0.0.1 port=${port} sslmode=verify-full sslrootcert=${ca} user=postgres dbname=postgres connect_timeout=10 ${extra}`;
  const psql = (c: string, sql: string) => run('psql', [c, '-XAtc', sql]);

  before(async () => {
    dir = mkdtempSync(join(TMP, 'echgate-pg-'));
    const [p1, p2] = [await freePort(), await freePort()];
    const up = await run(join(PEERS, 'pg-pair.sh'), [dir, String(p1), String(p2)], { timeoutMs: 180_000 });
    assert.equal(up.code, 0, up.stderr);
    await run(join(PEERS, 'mkcerts.sh'), [dir, 'pgterm.example.test']);
    ca = join(dir, 'ca.pem');
    g = await gateway(`
entryPoints:
  pg: { address: "127.0.0.1:0", protocol: postgres, clientHelloTimeout: 2s }
tls:
  certificates:
    - { certFile: "${dir}/pgterm.example.test.pem", keyFile: "${dir}/pgterm.example.test.key" }
tcp:
  routers:
    db1: { entryPoints: [pg], rule: "HostSNI(\`db1.example.test\`)", service: db1, tls: { passthrough: true } }
    db2: { entryPoints: [pg], rule: "HostSNI(\`db2.example.test\`)", service: db2, tls: { passthrough: true } }
    term: { entryPoints: [pg], rule: "HostSNI(\`pgterm.example.test\`)", service: db1, tls: {} }
  services:
    db1: { loadBalancer: { servers: [{ address: "127.0.0.1:${p1}" }] } }
    db2: { loadBalancer: { servers: [{ address: "127.0.0.1:${p2}" }] } }
`);
  });
  after(async () => {
    await g?.gw.shutdown(0);
    if (dir) await run(join(PEERS, 'pg-pair-stop.sh'), [dir], { timeoutMs: 90_000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('psql verify-full to db1.example.test reaches cluster db1, TLS end to end (pg_stat_ssl)', async () => {
    const r = await psql(conn('db1.example.test', g.port('pg')), "select current_setting('cluster_name'), ssl from pg_stat_ssl where pid = pg_backend_pid()");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'db1|t');
  });

  it('the same port, db2.example.test: cluster db2', async () => {
    const r = await psql(conn('db2.example.test', g.port('pg')), "select current_setting('cluster_name')");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'db2');
  });

  it('an unknown name is refused (unrecognized_name)', async () => {
    const r = await psql(conn('db3.example.test', g.port('pg')), 'select 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unrecognized name/i);
    assert.ok(g.logs.some((l) => l.msg === 'no router for SNI' && l.sni === 'db3.example.test'));
  });

  it('sslmode=disable gets the TLS-required ErrorResponse', async () => {
    const r = await psql(`host=127.0.0.1 port=${g.port('pg')} sslmode=disable gssencmode=disable user=postgres dbname=postgres`, 'select 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /FATAL: {1,2}TLS required/);
  });

  it('gssencmode=prefer: GSSENCRequest answered N, then SSLRequest, then db1', async () => {
    const r = await psql(conn('db1.example.test', g.port('pg'), 'gssencmode=prefer'), "select current_setting('cluster_name')");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'db1');
  });

  it('a terminating router: echgate completes TLS (its certificate verified), the cluster sees a plaintext session', async () => {
    const r = await psql(conn('pgterm.example.test', g.port('pg')), "select current_setting('cluster_name'), ssl from pg_stat_ssl where pid = pg_backend_pid()");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'db1|f');
  });

  it('CancelRequest: psql interrupted during pg_sleep sends one through echgate, and the query is cancelled', async () => {
    const child = spawn('psql', [conn('db2.example.test', g.port('pg')), '-Xc', 'select pg_sleep(30)'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    // Wait until the query runs on db2 (seen from a second session through echgate).
    for (let i = 0; i < 100; i++) {
      const r = await psql(conn('db2.example.test', g.port('pg')), "select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'");
      if (r.stdout.trim() === '1') break;
      await sleep(100);
    }
    const started = Date.now();
    child.kill('SIGINT');
    const code = await exited;
    assert.match(out, /canceling statement due to user request/);
    assert.notEqual(code, 0);
    assert.ok(Date.now() - started < 20_000);
    assert.ok(g.logs.some((l) => l.msg.includes('forwarded to every server')));
  });

  it('pg_cancel_backend from a second session through echgate cancels the first', async () => {
    const child = spawn('psql', [conn('db1.example.test', g.port('pg')), '-Xc', "select pg_sleep(30) /* victim */"], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Listen for the exit at once: the cancelled psql may end before the canceller's own psql does.
    const exited = new Promise((r) => child.once('exit', r));
    let out = '';
    child.stdout.resume();
    child.stderr.on('data', (d) => {
      out += d;
    });
    let cancelled = '';
    for (let i = 0; i < 100 && cancelled !== 't'; i++) {
      await sleep(100);
      const r = await psql(conn('db1.example.test', g.port('pg')), "select pg_cancel_backend(pid) from pg_stat_activity where query like '%victim%' and pid <> pg_backend_pid()");
      cancelled = r.stdout.trim();
    }
    await exited;
    assert.equal(cancelled, 't');
    assert.match(out, /canceling statement due to user request/);
  });

  // 5 s by default (a bounded e2e); ECHGATE_E2E_PGBENCH_SECONDS=60 is the minute (docs/databases.md).
  const pgbenchSeconds = Math.max(1, Math.min(600, Number(process.env.ECHGATE_E2E_PGBENCH_SECONDS) || 5));
  it(`pgbench through echgate: a select-only run of ${pgbenchSeconds} s without errors`, async () => {
    const env = { PGHOST: 'db1.example.test', PGHOSTADDR: '127.0.0.1', PGPORT: String(g.port('pg')), PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca, PGUSER: 'postgres', PGDATABASE: 'postgres' };
    const init = await run('pgbench', ['-i', '-s', '1', '-q'], { env, timeoutMs: 120_000 });
    assert.equal(init.code, 0, init.stderr);
    const r = await run('pgbench', ['-S', '-c', '4', '-j', '2', '-T', String(pgbenchSeconds), '-n'], { env, timeoutMs: 60_000 + pgbenchSeconds * 2000 });
    assert.equal(r.code, 0, r.stderr);
    const done = /number of transactions actually processed: (\d+)/.exec(r.stdout);
    assert.ok(done && Number(done[1]) > 0, r.stdout);
    assert.match(r.stdout, /number of failed transactions: 0 /);
  });

  it('a direct-TLS ClientHello (ALPN postgresql, as PostgreSQL 17 sends) completes with the PostgreSQL 15 cluster', async () => {
    // echgate asks the backend with SSLRequest first, so a server without direct TLS still completes it.
    const r = await run('sh', ['-c', `echo | openssl s_client -connect 127.0.0.1:${g.port('pg')} -servername db2.example.test -alpn postgresql -CAfile ${ca} -verify_return_error -verify_hostname db2.example.test 2>&1`], { timeoutMs: 20_000 });
    assert.match(r.stdout, /subject=CN ?= ?db2\.example\.test/);
    assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
  });
});

describe('MariaDB 10.11: the server speaks first', { skip: skipMdb, timeout: 240_000 }, () => {
  let dir = '';
  let g: Awaited<ReturnType<typeof gateway>>;
  let ca = '';

  before(async () => {
    dir = mkdtempSync(join(TMP, 'echgate-mdb-'));
    const p = await freePort();
    const up = await run(join(PEERS, 'mariadb-tls.sh'), [dir, String(p)], { timeoutMs: 180_000 });
    assert.equal(up.code, 0, up.stderr + up.stdout);
    ca = join(dir, 'ca.pem');
    g = await gateway(`
entryPoints:
  mdb: { address: "127.0.0.1:0" }
  tlsonly: { address: "127.0.0.1:0", clientHelloTimeout: 1s }
tcp:
  routers:
    mdb: { entryPoints: [mdb], rule: "HostSNI(\`*\`)", service: mdb }
    named: { entryPoints: [tlsonly], rule: "HostSNI(\`db.example.test\`)", service: mdb, tls: { passthrough: true } }
  services:
    mdb: { loadBalancer: { servers: [{ address: "127.0.0.1:${p}" }] } }
`);
  });
  after(async () => {
    await g?.gw.shutdown(0);
    if (dir) await run(join(PEERS, 'mariadb-tls-stop.sh'), [dir], { timeoutMs: 90_000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('HostSNI(`*`) without tls: the greeting reaches a client that has sent nothing', async () => {
    const s = net.connect(g.port('mdb'), '127.0.0.1');
    const first = await new Promise<Buffer>((resolve, reject) => {
      s.setTimeout(10_000, () => reject(new Error('no greeting')));
      s.once('data', resolve);
      s.once('error', reject);
    });
    s.destroy();
    // Protocol::HandshakeV10: 3-byte length, sequence 0, protocol version 10, then the server version string.
    assert.equal(first[3], 0);
    assert.equal(first[4], 10);
    assert.match(first.subarray(5, 40).toString('latin1'), /MariaDB/);
  });

  it('mariadb --ssl through it: TLS end to end with the server (certificate verified), a query runs', async () => {
    const r = await run('mariadb', ['-h', '127.0.0.1', '-P', String(g.port('mdb')), '-u', 'root', '--ssl', `--ssl-ca=${ca}`, '--ssl-verify-server-cert', '-N', '-B', '-e', "SHOW STATUS LIKE 'Ssl_cipher'; SELECT 6*7"]);
    assert.equal(r.code, 0, r.stderr);
    const [cipher, answer] = r.stdout.trim().split('\n');
    assert.match(cipher!, /^Ssl_cipher\t\S+/);
    assert.equal(answer, '42');
  });

  it('behind HostSNI(`db.example.test`) on a TLS entrypoint: no ClientHello ever comes; the log says what was seen instead', async () => {
    const r = await run('mariadb', ['-h', '127.0.0.1', '-P', String(g.port('tlsonly')), '-u', 'root', '--ssl', `--ssl-ca=${ca}`, '--connect-timeout=10', '-e', 'select 1'], { timeoutMs: 30_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /initial communication packet|Lost connection/i);
    assert.ok(g.logs.some((l) => l.msg.includes('the client sent nothing before clientHelloTimeout: a server-first protocol?')));
  });
});

describe('Redis 7 with TLS: SNI only with --sni', { skip: skipRedis, timeout: 120_000 }, () => {
  let dir = '';
  let g: Awaited<ReturnType<typeof gateway>>;
  let ca = '';
  const cli = (port: number, ...args: string[]) => run('redis-cli', ['--tls', '--cacert', ca, '-h', '127.0.0.1', '-p', String(port), ...args], { timeoutMs: 15_000 });

  before(async () => {
    dir = mkdtempSync(join(TMP, 'echgate-redis-'));
    const [p1, p2] = [await freePort(), await freePort()];
    const up = await run(join(PEERS, 'redis-tls-pair.sh'), [dir, String(p1), String(p2)], { timeoutMs: 120_000 });
    assert.equal(up.code, 0, up.stderr + up.stdout);
    ca = join(dir, 'ca.pem');
    g = await gateway(`
entryPoints:
  redis: { address: "127.0.0.1:0" }
  redisall: { address: "127.0.0.1:0" }
tcp:
  routers:
    r1: { entryPoints: [redis, redisall], rule: "HostSNI(\`r1.example.test\`)", service: r1, tls: { passthrough: true } }
    r2: { entryPoints: [redis, redisall], rule: "HostSNI(\`r2.example.test\`)", service: r2, tls: { passthrough: true } }
    any: { entryPoints: [redisall], rule: "HostSNI(\`*\`)", service: r2, tls: { passthrough: true } }
  services:
    r1: { loadBalancer: { servers: [{ address: "127.0.0.1:${p1}" }] } }
    r2: { loadBalancer: { servers: [{ address: "127.0.0.1:${p2}" }] } }
`);
  });
  after(async () => {
    await g?.gw.shutdown(0);
    if (dir) await run(join(PEERS, 'redis-tls-pair-stop.sh'), [dir], { timeoutMs: 60_000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('--sni r1.example.test reaches r1 and --sni r2.example.test reaches r2, through one port', async () => {
    const a = await cli(g.port('redis'), '--sni', 'r1.example.test', 'get', 'peer');
    const b = await cli(g.port('redis'), '--sni', 'r2.example.test', 'get', 'peer');
    assert.equal(a.stdout.trim(), 'r1', a.stderr);
    assert.equal(b.stdout.trim(), 'r2', b.stderr);
  });

  it('without --sni and no HostSNI(`*`) router: unrecognized_name, and the log line says no SNI and why', async () => {
    const r = await cli(g.port('redis'), 'get', 'peer');
    assert.notEqual(r.stdout.trim(), 'r1');
    assert.match(r.stdout + r.stderr, /unrecognized name|TLS/i);
    const line = g.logs.find((l) => l.msg.startsWith('no router for ClientHello: no SNI') && l.entrypoint === 'redis');
    assert.ok(line, 'no "no SNI" log line');
    assert.match(line.msg, /redis-cli --tls sends one only with --sni/);
  });

  it('without --sni and a HostSNI(`*`) router: routed there, and logged as no SNI', async () => {
    const r = await cli(g.port('redisall'), 'get', 'peer');
    assert.equal(r.stdout.trim(), 'r2', r.stderr);
    assert.ok(g.logs.some((l) => l.msg.startsWith('no SNI') && l.router === 'any'));
  });
});
