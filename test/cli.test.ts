/** The echgate command as a user runs it: inspect, check, serve with reload and SIGTERM drain. */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { certFor, json, ROOT, serverFirstBackend, sleep, tlsAsk, tlsBackend, VECTORS, waitForOutput } from './helpers.js';
import { freePort } from '../src/cli/free-port.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
const manifest = json('captures/manifest.json');

describe('echgate inspect', () => {
  for (const c of manifest.captures) {
    it(`${c.file}`, async () => {
      const { stdout } = await run('node', [BIN, 'inspect', join(VECTORS, 'captures', c.file)]);
      const r = JSON.parse(stdout);
      assert.equal(r.outerSni, c.outer_sni);
      assert.deepEqual(r.alpn, c.outer_alpn);
      assert.ok(r.versions.includes(0x0304));
      assert.ok(r.keyShareGroups.includes(0x11ec) || r.keyShareGroups.includes(0x1d));
      assert.equal(r.extensions.length, r.extensionNames.length);
      assert.ok(r.extensions.includes(0xfe0d));
      assert.equal(r.ech.present, true);
      assert.equal(r.ech.type, 'outer');
      assert.equal(r.ech.configId, c.config_id);
      assert.equal(r.ech.kdfId, 1);
      assert.equal(r.ech.encLength, 32);
      assert.ok(r.ech.payloadLength > 0);
    });
  }
  it('--hex from stdin; a hello without ECH says present:false', async () => {
    const rfc = json('rfc8448-simple-1rtt.json');
    const child = spawn('node', [BIN, 'inspect', '--hex', '-']);
    child.stdin.end(rfc.records.client_hello);
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    await new Promise((r) => child.on('close', r));
    const r = JSON.parse(out);
    assert.equal(r.outerSni, 'server');
    assert.deepEqual(r.ech, { present: false });
  });
  it('garbage input: non-zero exit with a typed message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-cli-'));
    writeFileSync(join(dir, 'x.bin'), Buffer.from([22, 3, 1, 0, 5, 1, 0, 0, 1, 9]));
    await assert.rejects(run('node', [BIN, 'inspect', join(dir, 'x.bin')]), (e: { stderr: string; code: number }) => e.code === 1 && /ERR_DECODE|ERR_TRAILING/.test(e.stderr));
  });
});

describe('echgate check', () => {
  it('names the file, the key path and the problem', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-cli-'));
    const f = join(dir, 'bad.yml');
    writeFileSync(f, 'entryPoints: { web: { address: "127.0.0.1:1" } }\ntcp:\n  routers:\n    r: { rule: "HostSNI(`a.b`", service: s, tls: {} }\n  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:2" }] } } }\n');
    await assert.rejects(run('node', [BIN, 'check', '--config', f]), (e: { stderr: string; code: number }) => {
      assert.equal(e.code, 1);
      assert.match(e.stderr, new RegExp(`${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: tcp\\.routers\\.r\\.rule: .*column`));
      return true;
    });
    const good = join(dir, 'good.yml');
    writeFileSync(good, 'entryPoints: { web: { address: "127.0.0.1:1" } }\n');
    const { stdout } = await run('node', [BIN, 'check', '--config', good]);
    assert.match(stdout, /ok/);
  });
  it('reads the DoH certificate and key: a missing file or a key of another certificate is named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-cli-'));
    const a = certFor('a.example.test');
    const b = certFor('b.example.test');
    writeFileSync(join(dir, 'a.crt'), a.cert);
    writeFileSync(join(dir, 'b.key'), b.key);
    const f = join(dir, 'dns.yml');
    const yaml = (key: string) => `entryPoints: { web: { address: "127.0.0.1:1" } }\ndns:\n  doh: { address: "127.0.0.1:2", certFile: ${join(dir, 'a.crt')}, keyFile: ${join(dir, key)} }\n`;
    for (const key of ['missing.key', 'b.key']) {
      writeFileSync(f, yaml(key));
      await assert.rejects(run('node', [BIN, 'check', '--config', f]), (e: { stderr: string; code: number }) => e.code === 1 && /: dns\.doh: .*a\.crt/.test(e.stderr));
    }
    writeFileSync(join(dir, 'a.key'), a.key);
    writeFileSync(f, yaml('a.key'));
    assert.match((await run('node', [BIN, 'check', '--config', f])).stdout, /ok/);
  });
});

describe('echgate serve', () => {
  it('reload: an invalid file keeps the old config; a valid one takes effect; SIGTERM drains', async () => {
    const a = await tlsBackend('alpha');
    const b = await tlsBackend('beta');
    const db = await serverFirstBackend('hello\n');
    const dir = mkdtempSync(join(tmpdir(), 'echgate-cli-'));
    const f = join(dir, 'echgate.yml');
    const port = await freePort();
    const dbPort = await freePort();
    const cfg = (svc: string) => `
entryPoints:
  websecure: { address: "127.0.0.1:${port}" }
  db: { address: "127.0.0.1:${dbPort}", transport: { lifeCycle: { graceTimeOut: 3s } } }
tcp:
  routers:
    r: { entryPoints: [websecure], rule: "HostSNI(\`app.example.test\`)", service: ${svc}, tls: { passthrough: true } }
    d: { entryPoints: [db], rule: "HostSNI(\`*\`)", service: db }
  services:
    alpha: { loadBalancer: { servers: [{ address: "127.0.0.1:${a.port}" }] } }
    beta: { loadBalancer: { servers: [{ address: "127.0.0.1:${b.port}" }] } }
    db: { loadBalancer: { servers: [{ address: "127.0.0.1:${db.port}" }] } }
`;
    writeFileSync(f, cfg('alpha'));
    const child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    try {
      await waitForOutput(() => out, '"listening"');
      assert.match(out, new RegExp(`"address":"127.0.0.1:${port}"`));
      assert.match(await tlsAsk(port, 'app.example.test'), /^alpha /);

      writeFileSync(f, `${cfg('alpha')}\n  broken: [`);
      child.kill('SIGHUP');
      await waitForOutput(() => out, 'reload refused');
      assert.match(out, /reload refused/);
      assert.match(await tlsAsk(port, 'app.example.test'), /^alpha /);

      writeFileSync(f, cfg('beta'));
      child.kill('SIGHUP');
      await waitForOutput(() => out, 'configuration reloaded');
      assert.match(await tlsAsk(port, 'app.example.test'), /^beta /);

      // An open connection survives SIGTERM until it finishes; new ones are refused.
      const s = net.connect(dbPort, '127.0.0.1');
      await new Promise((r) => s.once('data', r));
      child.kill('SIGTERM');
      await sleep(300);
      await assert.rejects(new Promise((res, rej) => net.connect(port, '127.0.0.1').once('connect', res).once('error', rej)));
      s.write('still here\n');
      const echo = await new Promise<string>((r) => s.once('data', (d) => r(d.toString())));
      assert.equal(echo, 'still here\n');
      s.end();
      const code = await new Promise((r) => child.once('exit', r));
      assert.equal(code, 0);
    } finally {
      child.kill('SIGKILL');
      await Promise.all([a.close(), b.close(), db.close()]);
    }
  });
  it('a listener that cannot bind ends serve at once (exit 1, the error named), with nothing left running', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as net.AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), 'echgate-cli-'));
    const f = join(dir, 'echgate.yml');
    writeFileSync(f, `entryPoints: { websecure: { address: "127.0.0.1:${port}" } }\n`);
    try {
      await assert.rejects(run('node', [BIN, 'serve', '--config', f], { timeout: 10_000 }), (e: { code: number; stderr: string; killed: boolean }) => {
        assert.equal(e.killed, false, 'serve hung instead of exiting');
        assert.equal(e.code, 1);
        assert.match(e.stderr, /EADDRINUSE/);
        return true;
      });
      // The demo too: its backends and key folder must not keep a failed start alive.
      await assert.rejects(run('node', [BIN, 'serve', '--demo'], { timeout: 10_000, env: { ...process.env, ECHGATE_DEMO_PORT: String(port) } }), (e: { code: number; killed: boolean }) => {
        assert.equal(e.killed, false, 'the demo hung instead of exiting');
        assert.equal(e.code, 1);
        return true;
      });
    } finally {
      taken.close();
    }
  });
  it('the embedded DNS follows the key folder and a reload of its names', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-cli-'));
    const keysDir = join(dir, 'keys');
    const f = join(dir, 'echgate.yml');
    const [port, dnsPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const cfg = (name: string) => `
entryPoints: { websecure: { address: "127.0.0.1:${port}" } }
metrics: { address: "127.0.0.1:${metricsPort}" }
ech: { keysDir: ${JSON.stringify(keysDir)} }
dns:
  address: "127.0.0.1:${dnsPort}"
  zone: example.test
  names:
    ${name}: { a: [127.0.0.1], https: { alpn: [h2] } }
`;
    await run('node', [BIN, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test']);
    writeFileSync(f, cfg('one.example.test'));
    const child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    const dig = async (name: string) => (await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', '+time=2', '+tries=1', name, 'HTTPS'])).stdout.trim();
    const exported = async () => (await run('node', [BIN, 'keys', 'export', '--dir', keysDir, '--format', 'base64'])).stdout.trim();
    try {
      await waitForOutput(() => out, 'DNS server listening');
      assert.equal(await dig('one.example.test'), `1 . alpn="h2" ech=${await exported()}`);
      // A rotation reaches DNS without a restart.
      await run('node', [BIN, 'keys', 'rotate', '--dir', keysDir]);
      const fresh = await exported();
      let seen = '';
      for (let i = 0; i < 60 && !seen.includes(fresh); i++) {
        await sleep(100);
        seen = await dig('one.example.test');
      }
      assert.equal(seen, `1 . alpn="h2" ech=${fresh}`);
      // A reload swaps the names.
      writeFileSync(f, cfg('two.example.test'));
      child.kill('SIGHUP');
      await waitForOutput(() => out, 'configuration reloaded');
      assert.equal(await dig('two.example.test'), `1 . alpn="h2" ech=${fresh}`);
      assert.equal(await dig('one.example.test'), '');
      // Counted by transport, type name and rcode; a type we do not name is "other".
      await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', '+time=2', '+tries=1', 'two.example.test', 'TYPE4242']);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /echgate_dns_queries_total\{rcode="NXDOMAIN",transport="udp",type="HTTPS"\} 1/);
      assert.match(metrics, /echgate_dns_queries_total\{rcode="NOERROR",transport="udp",type="other"\} 1/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
