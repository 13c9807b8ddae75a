/**
 * Issue #8, "Done when": `workers: 2` passes the proxy, ECH, termination and
 * DNS suites as `workers: 1` does. One configuration, served once with
 * `workers: 1` and once with `workers: 2` (the kernel hands each connection
 * to either worker); the key case of each suite runs several times against
 * both, and each must give the same, expected, answer:
 *
 * - proxy: TLS passthrough by SNI (a node:tls backend answers), and a name no
 *   router takes is refused with unrecognized_name (RFC 6066 §3);
 * - termination: a node:tls client completes TLS 1.3 with echgate's engine;
 * - ECH (RFC 9849): accepted and terminated (echgate's own client), accepted
 *   in split mode (§3.1, the backend gets ClientHelloInner), and a stale key
 *   rejected with retry_configs from the public name (§6.1.6);
 * - DNS: the HTTPS record with the key folder's ech= over UDP and TCP (dig).
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { connectOnce } from '../src/cli/connect.js';
import { freePort } from '../src/cli/free-port.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { listKeys, publishedList } from '../src/keys/manager.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { frameHandshake } from '../src/wire/tls/record.js';
import { type Backend, certFor, ROOT, sleep, tlsAsk, tlsBackend } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
/** Each case runs this many times per process group: with two workers, both get some (the kernel picks). */
const REPEAT = 6;

interface Group {
  port: number;
  dnsPort: number;
  child: ChildProcessWithoutNullStreams;
  pids: Set<number>;
  /** Access lines logged: one per finished TCP connection. */
  access: { n: number };
}

describe('workers: 2 answers the proxy, termination, ECH and DNS cases as workers: 1 does', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-parity-'));
  const keysDir = join(dir, 'keys');
  const staleDir = join(dir, 'stale');
  let app: Backend;
  let plain: net.Server;
  const groups: Record<1 | 2, Group> = {} as Record<1 | 2, Group>;
  /** Every serve started, killed in after() even when its start failed (or the test process would wait on it). */
  const children: ChildProcessWithoutNullStreams[] = [];

  const config = (workers: number, port: number, dnsPort: number) => `
workers: ${workers}
entryPoints:
  websecure: { address: "127.0.0.1:${port}" }
log: { access: true }
ech: { keysDir: ${JSON.stringify(keysDir)} }
tls:
  certificates:
    - { certFile: ${JSON.stringify(join(dir, 'c.pem'))}, keyFile: ${JSON.stringify(join(dir, 'c.key'))} }
    - { certFile: ${JSON.stringify(join(dir, 'p.pem'))}, keyFile: ${JSON.stringify(join(dir, 'p.key'))} }
dns:
  address: "127.0.0.1:${dnsPort}"
  zone: example.test
  names:
    secret.example.test: { a: [127.0.0.1], https: { alpn: [h2] } }
tcp:
  routers:
    app: { entryPoints: [websecure], rule: "HostSNI(\`app.example.test\`)", service: app, tls: { passthrough: true } }
    term: { entryPoints: [websecure], rule: "HostSNI(\`term.example.test\`)", service: plain, tls: {} }
    secret: { entryPoints: [websecure], rule: "HostSNI(\`secret.example.test\`)", service: plain, tls: {}, requireECH: true }
    split: { entryPoints: [websecure], rule: "HostSNI(\`split.example.test\`)", service: plain, requireECH: true, tls: { passthrough: true, echSplit: true } }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${app.port}" }] } }
    plain: { loadBalancer: { servers: [{ address: "127.0.0.1:${(plain.address() as net.AddressInfo).port}" }] } }
`;

  const startGroup = async (workers: 1 | 2): Promise<Group> => {
    const [port, dnsPort] = [await freePort(), await freePort()];
    const f = join(dir, `w${workers}.yml`);
    writeFileSync(f, config(workers, port, dnsPort));
    const child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    const pids = new Set<number>();
    const access = { n: 0 };
    let buf = '';
    let ready = false;
    child.stdout.on('data', (d) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const p of parts) {
        if (!p.startsWith('{')) continue;
        const l = JSON.parse(p) as { msg?: string; pid?: number };
        if (l.msg === 'access') access.n++;
        if (l.msg === 'access' && l.pid) pids.add(l.pid);
        if (l.msg === 'all workers ready' || (workers === 1 && l.msg === 'listening')) ready = true;
      }
    });
    child.stderr.on('data', (d) => process.stderr.write(d));
    for (const end = Date.now() + 60_000; Date.now() < end && !ready; ) {
      // One worker logs no "all workers ready": accept the DNS port answering instead.
      if (workers === 1 && (await portOpen(port))) ready = true;
      else await sleep(100);
    }
    assert.ok(ready, `workers: ${workers} did not start`);
    return { port, dnsPort, child, pids, access };
  };

  before(async () => {
    app = await tlsBackend('app');
    plain = net.createServer((s) => {
      s.on('error', () => s.destroy());
      s.once('data', (d) => s.end(`backend got ${d.length} bytes`));
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', () => r()));
    const c = certFor('term.example.test');
    writeFileSync(join(dir, 'c.pem'), c.cert);
    writeFileSync(join(dir, 'c.key'), c.key);
    // The public name's certificate: echgate answers a rejected hello for it with retry_configs (proxy/public-name.ts).
    const p = certFor('public.example.test');
    writeFileSync(join(dir, 'p.pem'), p.cert);
    writeFileSync(join(dir, 'p.key'), p.key);
    await run('node', [BIN, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test']);
    await run('node', [BIN, 'keys', 'generate', '--dir', staleDir, '--public-name', 'public.example.test']);
    groups[1] = await startGroup(1);
    groups[2] = await startGroup(2);
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await Promise.all([app.close(), new Promise((r) => plain.close(r))]);
  });

  /** Run `one` REPEAT times (a few at a time) against each group; every answer must be `expected`, in both. */
  const same = async (what: string, one: (g: Group) => Promise<string>, expected: string | RegExp) => {
    for (const w of [1, 2] as const) {
      const answers: string[] = [];
      for (let i = 0; i < REPEAT; i += 3) answers.push(...(await Promise.all([0, 1, 2].map(() => one(groups[w])))));
      for (const a of answers) {
        if (typeof expected === 'string') assert.equal(a, expected, `${what}, workers: ${w}`);
        else assert.match(a, expected, `${what}, workers: ${w}`);
      }
    }
  };

  it('proxy: TLS passthrough by SNI reaches the backend, which completes the handshake', async () => {
    await same('passthrough', (g) => tlsAsk(g.port, 'app.example.test'), /^app app\.example\.test/);
  });

  it('proxy: a name no router takes gets unrecognized_name (RFC 6066 §3)', async () => {
    await same(
      'no route',
      (g) =>
        new Promise((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port: g.port, servername: 'nobody.example.test', rejectUnauthorized: false });
          s.once('secureConnect', () => resolve('connected'));
          s.once('error', (e) => resolve(/unrecognized name/i.test(e.message) ? 'unrecognized_name' : e.message));
        }),
      'unrecognized_name',
    );
  });

  it('termination: a node:tls client completes TLS 1.3 with echgate and reaches the backend', async () => {
    await same(
      'termination',
      (g) =>
        new Promise((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: g.port, servername: 'term.example.test', rejectUnauthorized: false, minVersion: 'TLSv1.3' });
          s.once('secureConnect', () => s.write('hello'));
          s.once('data', (d) => resolve(`${s.getProtocol()} ${d.toString()}`));
          s.once('error', reject);
        }),
      'TLSv1.3 backend got 5 bytes',
    );
  });

  it('ECH (RFC 9849): accepted and terminated; the hidden name reaches its backend', async () => {
    const ech = publishedList(listKeys(keysDir).keys);
    await same(
      'ECH terminated',
      async (g) => {
        const r = await connectOnce('127.0.0.1', g.port, { sni: 'secret.example.test', ech, send: 'hello' });
        return `${r.ech} ${r.reply}`;
      },
      'accepted backend got 5 bytes',
    );
  });

  it('ECH split mode (RFC 9849 §3.1): the backend gets ClientHelloInner, not the outer hello', async () => {
    const config = usableConfigs(decodeECHConfigList(publishedList(listKeys(keysDir).keys)!), isSupportedSuite)[0]!;
    await same(
      'ECH split',
      (g) =>
        new Promise((resolve, reject) => {
          const h = buildEchClientHello(nodeProvider, { config, innerSni: 'split.example.test' });
          const outer = frameHandshake(h.outerMessage);
          const s = net.connect(g.port, '127.0.0.1', () => s.write(outer));
          s.once('data', (d) => {
            const m = /^backend got (\d+) bytes$/.exec(d.toString());
            // The inner hello is framed anew: a record of its own, shorter than the padded outer one.
            resolve(m && Number(m[1]) !== outer.length && Number(m[1]) > 0 ? 'inner forwarded' : `got ${d.toString()}`);
            s.end();
          });
          s.once('error', reject);
        }),
      'inner forwarded',
    );
  });

  it('ECH with a stale key: rejected, the public name answers with retry_configs (RFC 9849 §6.1.6)', async () => {
    const stale = publishedList(listKeys(staleDir).keys);
    const current = Buffer.from(publishedList(listKeys(keysDir).keys)!).toString('base64');
    await same(
      'ECH rejected',
      async (g) => {
        const r = await connectOnce('127.0.0.1', g.port, { sni: 'secret.example.test', ech: stale });
        const got = r.retryConfigs ? Buffer.from(r.retryConfigs).toString('base64') : 'none';
        return `${r.ech} ${got === current ? 'retry_configs are the current keys' : got}`;
      },
      'rejected retry_configs are the current keys',
    );
  });

  it('DNS: the HTTPS record carries the key folder’s ech=, over UDP and TCP (dig)', async () => {
    const { stdout: exported } = await run('node', [BIN, 'keys', 'export', '--dir', keysDir, '--format', 'base64']);
    for (const tcp of [[], ['+tcp']]) {
      await same(
        `DNS ${tcp.length ? 'TCP' : 'UDP'}`,
        async (g) => (await run('dig', ['-p', String(g.dnsPort), '@127.0.0.1', '+short', '+time=2', '+tries=2', ...tcp, 'secret.example.test', 'HTTPS'])).stdout.trim(),
        `1 . alpn="h2" ech=${exported.trim()}`,
      );
    }
  });

  it('with workers: 2 both workers served some of these connections; both groups logged every connection', () => {
    assert.equal(groups[2].pids.size, 2, `both workers served: ${[...groups[2].pids]}`);
    assert.ok(!groups[2].pids.has(groups[2].child.pid!), 'the primary accepts nothing itself');
    // Six TCP cases, REPEAT connections each (the ECH rejection is one connection per attempt).
    for (const w of [1, 2] as const) assert.ok(groups[w].access.n >= 6 * REPEAT, `workers: ${w}: ${groups[w].access.n} access lines`);
  });
});

function portOpen(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      r(true);
    });
    s.once('error', () => r(false));
  });
}
