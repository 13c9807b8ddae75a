/**
 * The fleet on an etcd that authenticates (docs/fleet.md "etcd with TLS and
 * authentication"), end to end with Debian's etcd 3.4 on free loopback ports:
 *
 * - etcd T: TLS only (https, --client-cert-auth: a client certificate signed
 *   by the test CA is required), auth enabled: the user is the certificate's
 *   CN (etcd 3.4 takes it when no token is sent), its role limited to the
 *   fleet's prefix. Two `echgate serve` instances with ech.store.etcd.tls
 *   { ca, cert, key }: a scheduled rotation reaches both.
 * - etcd P: plain http, auth enabled, user/password, role limited to the
 *   prefix. Two instances with ech.store.etcd.auth { username, passwordFile }:
 *   a rotation reaches both.
 * - Refusals, each a clear error naming the setting, the instance not ready
 *   and never registered (no fallback to another way of connecting): a CA
 *   that did not sign etcd's certificate; a client certificate from another
 *   CA; a wrong password; a user whose role does not cover the prefix.
 *   `echgate fleet status` says the same and exits non-zero.
 *
 * Schedules are seconds long (ECHGATE_ROTATION_SHORT=1).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Etcd3, type IOptions } from 'etcd3';
import { freePort } from '../src/cli/free-port.js';
import { ROOT, sleep } from '../test/helpers.js';

const run = promisify(execFile);
const ETCD = '/usr/bin/etcd';
const ETCDCTL = '/usr/bin/etcdctl';
const skip = existsSync(ETCD) && existsSync(ETCDCTL) ? false : 'etcd is not installed (apt-get install etcd-server etcd-client)';
const BIN = join(ROOT, 'bin', 'echgate.js');
const KEK = 'c3'.repeat(32);
const PREFIX = 'secure-fleet/';

const waitUntil = async (what: string, fn: () => Promise<boolean> | boolean, ms = 30_000, every = 200) => {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(every);
  }
};

interface Instance {
  id: string;
  metricsPort: number;
  config: string;
  proc?: ChildProcess;
  out: string;
}

interface Etcd {
  url: string;
  proc: ChildProcess;
  /** An etcd3 client as root (certificate CN=root, or root's password). */
  admin: Etcd3;
  /** etcdctl arguments that authenticate as root. */
  ctl: string[];
}

describe('fleet on an etcd with TLS client certificates and with user/password, RBAC limited to the prefix', { skip, timeout: 300_000 }, () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-fleet-secure-'));
  const f = (n: string) => join(W, n);
  const all: Instance[] = [];
  let T: Etcd;
  let P: Etcd;

  const openssl = (...args: string[]) => run('openssl', args, { cwd: W, timeout: 30_000 });
  const ca = async (name: string) => {
    await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', `/CN=${name} test CA`, '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  };
  /** A leaf signed by `by`: CN = cn (etcd's user name for a client certificate), SAN 127.0.0.1. */
  const leaf = async (name: string, cn: string, eku: string, by: string) => {
    await openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    writeFileSync(f(`${name}.ext`), `basicConstraints=CA:FALSE\nextendedKeyUsage=${eku}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`);
    await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${by}.pem`, '-CAkey', `${by}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
  };

  const startEtcd = async (name: string, tls: boolean, admin: Omit<IOptions, 'hosts'>, ctlAuth: string[]): Promise<Etcd> => {
    const [client, peer] = [await freePort(), await freePort()];
    const url = `${tls ? 'https' : 'http'}://127.0.0.1:${client}`;
    const proc = spawn(ETCD, [
      '--name', name, '--data-dir', f(name),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `${name}=http://127.0.0.1:${peer}`, '--log-outputs', f(`${name}.log`), '--logger', 'zap',
      ...(tls ? ['--cert-file', f('server.pem'), '--key-file', f('server.key'), '--client-cert-auth', '--trusted-ca-file', f('ca.pem')] : []),
    ], { stdio: 'ignore' });
    const e: Etcd = { url, proc, admin: new Etcd3({ ...admin, hosts: url, dialTimeout: 1000 }), ctl: ['--endpoints', url, '--dial-timeout', '2s', ...ctlAuth] };
    await waitUntil(`etcd ${name}`, async () => run(ETCDCTL, [...e.ctl, 'endpoint', 'health'], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 5000 }).then(() => true, () => false));
    return e;
  };
  const ctl = (e: Etcd, ...args: string[]) => run(ETCDCTL, [...e.ctl, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 10_000 });
  /** Users root and echgate; echgate's role reads and writes the fleet's prefix and nothing else; auth on. */
  const rbac = async (e: Etcd, rootUser: string[], echgateUser: string[]) => {
    await ctl(e, 'user', 'add', ...rootUser);
    await ctl(e, 'user', 'grant-role', 'root', 'root');
    await ctl(e, 'role', 'add', 'echgate');
    await ctl(e, 'role', 'grant-permission', 'echgate', 'readwrite', '--prefix=true', PREFIX);
    await ctl(e, 'user', 'add', ...echgateUser);
    await ctl(e, 'user', 'grant-role', 'echgate', 'echgate');
    await ctl(e, 'auth', 'enable');
  };

  const instance = async (id: string, store: string): Promise<Instance> => {
    const dir = f(id);
    mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'kek'), `${KEK}\n`, { mode: 0o600 });
    const i: Instance = { id, metricsPort: await freePort(), config: join(dir, 'echgate.yml'), out: '' };
    writeFileSync(
      i.config,
      `entryPoints:
  websecure: { address: "127.0.0.1:${await freePort()}" }
metrics: { address: "127.0.0.1:${i.metricsPort}" }
ech:
  keysDir: ${JSON.stringify(join(dir, 'keys'))}
  rotation: { every: 5s, grace: 4s, publish: embedded, publicName: public.example.test }
  store:
    etcd:
${store}
      kek: { file: ${JSON.stringify(join(dir, 'kek'))} }
      leaseTtl: 2s
      ackTimeout: 3s
      drain: 1s
      forgetAfter: 12s
tcp:
  routers:
    r: { entryPoints: [websecure], rule: "HostSNI(\`a.example.test\`)", service: s, tls: { passthrough: true } }
  services:
    s: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } }
dns:
  address: "127.0.0.1:${await freePort()}"
  ttl: 1
  names:
    a.example.test: { a: [127.0.0.1], https: {} }
`,
    );
    all.push(i);
    return i;
  };
  const start = (i: Instance) => {
    i.out = '';
    i.proc = spawn('node', [BIN, 'serve', '--config', i.config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ECHGATE_ROTATION_SHORT: '1', ECHGATE_INSTANCE: i.id } });
    i.proc.stdout!.on('data', (d) => {
      i.out += d;
    });
    i.proc.stderr!.on('data', (d) => {
      i.out += d;
    });
  };
  const stop = async (i: Instance) => {
    const p = i.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await Promise.race([gone, sleep(20_000)]);
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  };
  const ready = async (i: Instance) => {
    try {
      const r = await fetch(`http://127.0.0.1:${i.metricsPort}/ready`, { signal: AbortSignal.timeout(1000) });
      return { code: r.status, body: await r.text() };
    } catch (e) {
      return { code: 0, body: String(e) };
    }
  };
  const metric = async (i: Instance, name: string) => {
    const r = await fetch(`http://127.0.0.1:${i.metricsPort}/metrics`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
    const m = r ? new RegExp(`^${name}\\{\\} (\\S+)$`, 'm').exec(await r.text()) : null;
    return m ? Number(m[1]) : undefined;
  };
  const fleetStatus = async (i: Instance) => {
    try {
      const r = await run('node', [BIN, 'fleet', 'status', '--config', i.config], { timeout: 30_000, env: { ...process.env, ECHGATE_ROTATION_SHORT: '1' } });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, stdout: x.stdout, stderr: x.stderr };
    }
  };

  /**
   * Two instances on `e`: a rotation started after both are ready is published only once both hold the new key
   * (their instance records list it), and both serve it (ready, the key in their folders' copy).
   */
  const rotationReachesBoth = async (e: Etcd, a: Instance, b: Instance) => {
    start(a);
    start(b);
    await waitUntil('both ready', async () => {
      for (const i of [a, b]) assert.equal(i.proc!.exitCode, null, i.out);
      return (await ready(a)).code === 200 && (await ready(b)).code === 200;
    }, 60_000);
    const rot = async () => {
      const t = await e.admin.get(`${PREFIX}rotation`).string();
      return t ? (JSON.parse(t) as { seq: number; step: string; configId: number; leader: string; waitingFor: string[] }) : undefined;
    };
    const from = (await rot())?.seq ?? 0;
    let done: Awaited<ReturnType<typeof rot>>;
    await waitUntil('a rotation after both joined', async () => {
      done = await rot();
      return !!done && done.seq > from && done.step === 'done';
    }, 60_000);
    const recs = await e.admin.getAll().prefix(`${PREFIX}instances/`).strings();
    const held = Object.fromEntries(Object.values(recs).map((v) => JSON.parse(v) as { id: string; keys: number[] }).map((r) => [r.id, r.keys]));
    for (const i of [a, b]) assert.ok(held[i.id]?.includes(done!.configId), `${i.id} holds config_id ${done!.configId} (records: ${JSON.stringify(held)})`);
    assert.ok([a.id, b.id].includes(done!.leader));
    for (const i of [a, b]) {
      assert.equal((await ready(i)).code, 200, i.out);
      assert.equal(await metric(i, 'echgate_fleet_store_up'), 1);
      assert.doesNotMatch(i.out, /refused this instance|store unreachable/);
    }
  };

  /** An instance etcd refuses: the log says why once, /ready 503 with the reason, nothing registered, fleet status fails the same way. */
  const refused = async (e: Etcd, i: Instance, says: RegExp) => {
    start(i);
    await waitUntil(`${i.id} refused`, () => /fleet store refused this instance/.test(i.out) || assert.equal(i.proc!.exitCode, null, i.out) || false, 30_000);
    const line = i.out.split('\n').find((l) => /fleet store refused this instance/.test(l))!;
    assert.match(line, says);
    await sleep(3000); // retries meanwhile (each second): still refused, said once
    assert.equal(i.out.split('\n').filter((l) => /fleet store refused this instance/.test(l)).length, 1, i.out);
    const r = await ready(i);
    assert.equal(r.code, 503);
    assert.match(r.body, says);
    assert.equal(await metric(i, 'echgate_fleet_store_up'), 0);
    assert.equal(await e.admin.get(`${PREFIX}instances/${i.id}`).string(), null, 'never registered');
    assert.equal(await e.admin.get(`${PREFIX}members/${i.id}`).string(), null, 'never registered');
    assert.equal(i.proc!.exitCode, null, 'serve keeps running (its proxy serves; the store is what is refused)');
    const s = await fleetStatus(i);
    assert.notEqual(s.code, 0);
    assert.match(s.stderr, says);
    await stop(i);
  };

  before(async () => {
    await ca('ca');
    await ca('other');
    await leaf('server', 'etcd', 'serverAuth,clientAuth', 'ca');
    await leaf('root', 'root', 'clientAuth', 'ca');
    await leaf('client', 'echgate', 'clientAuth', 'ca');
    await leaf('rogue', 'echgate', 'clientAuth', 'other');
    const certs = (n: string) => ({ rootCertificate: readFileSync(f('ca.pem')), certChain: readFileSync(f(`${n}.pem`)), privateKey: readFileSync(f(`${n}.key`)) });
    T = await startEtcd('t1', true, { credentials: certs('root') }, ['--cacert', f('ca.pem'), '--cert', f('root.pem'), '--key', f('root.key')]);
    // With --client-cert-auth and auth on, etcd 3.4 takes the user from the certificate's CN: no password is used.
    await rbac(T, ['root', '--no-password'], ['echgate', '--no-password']);
    P = await startEtcd('p1', false, { auth: { username: 'root', password: 'rootpw' } }, ['--user', 'root:rootpw']);
    await rbac(P, ['root:rootpw'], ['echgate:s3cret-pw']);
    writeFileSync(f('pw-good'), 's3cret-pw\n', { mode: 0o600 });
    writeFileSync(f('pw-bad'), 'not-the-password\n', { mode: 0o600 });
  });

  after(async () => {
    for (const i of all) {
      writeFileSync(f(`${i.id}.out`), i.out);
      if (i.proc && i.proc.exitCode === null && i.proc.signalCode === null) i.proc.kill('SIGKILL');
    }
    for (const e of [T, P]) {
      if (!e) continue;
      e.admin.close();
      if (e.proc.exitCode === null) {
        const gone = new Promise((r) => e.proc.once('exit', r));
        e.proc.kill('SIGTERM');
        await gone;
      }
    }
    // The data folders go (etcd preallocates 64 MB of WAL each: etcd-member.ts); the logs stay.
    for (const n of ['t1', 'p1']) rmSync(f(n), { recursive: true, force: true });
    process.stderr.write(`fleet secure e2e: logs in ${W}\n`);
  });

  const tlsStore = (caFile: string, cert: string) =>
    `      endpoints: ["${T.url}"]\n      prefix: ${PREFIX}\n      tls: { ca: ${JSON.stringify(f(caFile))}, cert: ${JSON.stringify(f(`${cert}.pem`))}, key: ${JSON.stringify(f(`${cert}.key`))} }`;
  const authStore = (pw: string, prefix = PREFIX) =>
    `      endpoints: ["${P.url}"]\n      prefix: ${prefix}\n      auth: { username: echgate, passwordFile: ${JSON.stringify(f(pw))} }`;

  it('TLS with client certificates (user = the certificate CN, RBAC on the prefix): a rotation reaches both instances', async () => {
    const a = await instance('ta', tlsStore('ca.pem', 'client'));
    const b = await instance('tb', tlsStore('ca.pem', 'client'));
    await rotationReachesBoth(T, a, b);
    // The role is what limits the user: outside the prefix etcd refuses the same certificate.
    const c = new Etcd3({ hosts: T.url, credentials: { rootCertificate: readFileSync(f('ca.pem')), certChain: readFileSync(f('client.pem')), privateKey: readFileSync(f('client.key')) } });
    await assert.rejects(async () => c.put('elsewhere/x').value('1'), /permission denied/);
    c.close();
    await stop(a);
    await stop(b);
  });

  it('user and password (RBAC on the prefix): a rotation reaches both instances', async () => {
    const a = await instance('pa', authStore('pw-good'));
    const b = await instance('pb', authStore('pw-good'));
    await rotationReachesBoth(P, a, b);
    await stop(a);
    await stop(b);
  });

  it('a CA that did not sign etcd\'s certificate: refused, named, not ready, never registered', async () => {
    await refused(T, await instance('wrong-ca', tlsStore('other.pem', 'client')), /TLS: the etcd server's certificate does not verify against ech\.store\.etcd\.tls\.ca \(.*other\.pem\)/);
  });

  it('a client certificate from another CA: refused by etcd, named, not ready, never registered', async () => {
    await refused(T, await instance('rogue-cert', tlsStore('ca.pem', 'rogue')), /TLS: etcd refused this instance's client certificate \(ech\.store\.etcd\.tls\.cert .*rogue\.pem\)/);
  });

  it('a wrong password: refused, named, not ready, never registered', async () => {
    await refused(P, await instance('wrong-pw', authStore('pw-bad')), /etcd refused the credentials of user \\?"echgate\\?" \(ech\.store\.etcd\.auth\).*authentication failed/);
  });

  it('a prefix the user\'s role does not cover: permission denied, named, not ready, never registered', async () => {
    const i = await instance('outside', authStore('pw-good', 'not-granted/'));
    start(i);
    await waitUntil('outside refused', () => /fleet store refused this instance/.test(i.out), 30_000);
    assert.match(i.out, /etcd denied user \\?"echgate\\?" access under the prefix not-granted\/ \(its role needs readwrite on the prefix/);
    assert.equal((await ready(i)).code, 503);
    assert.deepEqual(await P.admin.getAll().prefix('not-granted/').strings(), {}, 'nothing written');
    await stop(i);
  });
});
