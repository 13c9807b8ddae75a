/**
 * `echgate connect NAME:PORT --doh URL` against BIND 9's DoH (issue #11: "a
 * test runs it against echgate's own embedded DoH and against BIND's"; the
 * embedded case is test/resolver.test.ts). The key is put into BIND the way
 * an operator would: `echgate publish` (RFC 2136 + TSIG, read back over DoH).
 * Then the browser path from the command line: the HTTPS record over BIND's
 * DoH (RFC 8484), its ech= and port= (RFC 9460 §7.2, RFC 9849 §6), and a
 * connection with ECH accepted by `echgate serve`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from '../src/cli/free-port.js';
import { generateKey } from '../src/keys/manager.js';
import { caAndLeaf } from '../test/helpers.js';
import { namedMissing, startBind } from './bind9.js';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'echgate.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}
async function echgate(...args: string[]): Promise<Result> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

describe("echgate connect --doh against BIND 9's DoH: the browser path from the command line", { skip: namedMissing, timeout: 180_000 }, () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-connect-bind-'));
  const T = join(W, 'tls');
  const keysDir = join(W, 'keys');
  const staleDir = join(W, 'stale');
  let named: ChildProcess | undefined;
  let serve: ChildProcess | undefined;
  let backend: net.Server | undefined;
  let dnsPort = 0;
  let doh = '';
  let port = 0;
  let log = '';

  before(async () => {
    const bind = await startBind(W);
    ({ dnsPort, doh } = bind);
    named = bind.proc;
    mkdirSync(T);
    caAndLeaf(T, ['public.example.test', 'svc.example.test']);
    mkdirSync(keysDir, { mode: 0o700 });
    mkdirSync(staleDir, { mode: 0o700 });
    generateKey(keysDir, { publicName: 'public.example.test' });
    // A key of the same public name that the server does not hold: "stale DNS".
    generateKey(staleDir, { publicName: 'public.example.test' });
    backend = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => s.end(`backend got ${d.length} bytes`));
    });
    await new Promise<void>((r) => backend!.listen(0, '127.0.0.1', () => r()));
    port = await freePort();
    const cfg = join(W, 'echgate.yml');
    writeFileSync(
      cfg,
      `
log: { level: info }
tls: { certificates: [{ certFile: "${join(T, 'server.pem')}", keyFile: "${join(T, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:${port}" } }
ech: { keysDir: ${JSON.stringify(keysDir)} }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`svc.example.test\`)", requireECH: true, service: b, tls: {} }
    public: { rule: "HostSNI(\`public.example.test\`)", service: b, tls: {} }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`,
    );
    serve = spawn(process.execPath, [BIN, 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    serve.stdout!.on('data', (d) => {
      log += d;
    });
    serve.stderr!.on('data', (d) => {
      log += d;
    });
    // Up when the entrypoint takes a connection (bounded: 15 s).
    for (let i = 0; ; i++) {
      const ok = await new Promise<boolean>((r) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          r(true);
        });
        s.on('error', () => r(false));
      });
      if (ok) break;
      if (i > 150 || serve.exitCode !== null) throw new Error(`echgate serve did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    serve?.kill('SIGKILL');
    named?.kill();
    await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
  });

  const publish = (dir: string) =>
    echgate('publish', '--dir', dir, '--name', 'svc.example.test', '--server', `127.0.0.1:${dnsPort}`, '--zone', 'example.test', '--tsig-key', join(W, 'upd.key'), '--alpn', 'http/1.1', '--port', String(port), '--ttl', '60', '--verify-doh', doh, '--ca', join(W, 'cert.pem'), '--verify-timeout', '10s');
  const connect = async (...extra: string[]) => {
    // NAME:443 asks svc.example.test HTTPS (RFC 9460 §9.1); the record's port= sends it to echgate's port.
    const r = await echgate('connect', 'svc.example.test:443', '--doh', doh, '--doh-ca', join(W, 'cert.pem'), '--ca', join(T, 'ca.pem'), '--send', 'GET / HTTP/1.1\\r\\n\\r\\n', ...extra);
    let json: Record<string, unknown> & { dns?: Record<string, unknown> } = {};
    try {
      json = JSON.parse(r.stdout);
    } catch {}
    return { ...r, json };
  };

  it('RFC 8484 + RFC 9460 §7.2 + RFC 9849 §6: the published ech= and port= read over BIND\'s DoH; ECH accepted, the hidden router answers', async () => {
    const p = await publish(keysDir);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /read back over .*: ech= matches/);
    const r = await connect();
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${log}`);
    assert.equal(r.json.ech, 'accepted');
    assert.equal(r.json.dns?.queried, 'svc.example.test');
    assert.equal(r.json.dns?.address, '127.0.0.1');
    assert.equal(r.json.dns?.port, port);
    assert.equal(r.json.dns?.ech, true);
    assert.deepEqual(r.json.dns?.alpn, ['http/1.1']);
    assert.match(String(r.json.reply), /backend got/);
  });

  it('RFC 9849 §6.1.6: a key in BIND that the server does not hold is rejected; --retry takes retry_configs and is accepted', async () => {
    const p = await publish(staleDir);
    assert.equal(p.code, 0, p.stderr);
    const r = await connect();
    assert.notEqual(r.code, 0, 'a stale ech= must not reach the hidden router');
    assert.equal(r.json.ech, 'rejected');
    const again = await connect('--retry');
    assert.equal(again.code, 0, `${again.stdout}\n${again.stderr}`);
    assert.equal(again.json.ech, 'accepted');
    assert.equal(again.json.retried, true);
    assert.match(String(again.json.reply), /backend got/);
  });
});
