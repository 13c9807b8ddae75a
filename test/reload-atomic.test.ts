/**
 * A reload is all or nothing: a configuration that validates but cannot be
 * put in place (a certificate file missing, a key folder refused by the
 * trust check, an address already taken) leaves the old routes, the old ECH
 * keys and the old listeners serving, unchanged, and the log names why.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { connectOnce } from '../src/cli/connect.js';
import { freePort } from '../src/cli/free-port.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { certFor, ROOT, serverFirstBackend, sleep, tlsAsk, tlsBackend } from './helpers.js';

const BIN = join(ROOT, 'bin', 'echgate.js');

describe('reload: all or nothing', () => {
  it('a missing certificate, a refused key folder or a taken address: the old routes and keys keep serving; then a good reload applies', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-reload-'));
    const keysA = join(dir, 'keys-a');
    const keysB = join(dir, 'keys-b');
    for (const k of [keysA, keysB]) {
      mkdirSync(k, { mode: 0o700 });
      generateKey(k, { publicName: 'public.example.test' });
    }
    const echA = publishedList(listKeys(keysA).keys)!;
    const echB = publishedList(listKeys(keysB).keys)!;
    const { key, cert } = certFor('secret.example.test');
    writeFileSync(join(dir, 'secret.crt'), cert);
    writeFileSync(join(dir, 'secret.key'), key);
    const alpha = await tlsBackend('alpha');
    const beta = await tlsBackend('beta');
    const hidden = await serverFirstBackend('hidden\n');
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const takenPort = (taken.address() as net.AddressInfo).port;
    const [port, extraPort] = [await freePort(), await freePort()];
    const f = join(dir, 'echgate.yml');
    const cfg = (o: { keys: string; certFile: string; app: string; extra?: number[] }) => `
entryPoints:
  websecure: { address: "127.0.0.1:${port}" }
${(o.extra ?? []).map((p, i) => `  extra${i}: { address: "127.0.0.1:${p}" }`).join('\n')}
ech: { keysDir: ${JSON.stringify(o.keys)} }
tls:
  certificates: [{ certFile: ${JSON.stringify(o.certFile)}, keyFile: ${JSON.stringify(join(dir, 'secret.key'))} }]
tcp:
  routers:
    app: { entryPoints: [websecure], rule: "HostSNI(\`app.example.test\`)", service: ${o.app}, tls: { passthrough: true } }
    secret: { entryPoints: [websecure], rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: hidden, tls: {} }
  services:
    alpha: { loadBalancer: { servers: [{ address: "127.0.0.1:${alpha.port}" }] } }
    beta: { loadBalancer: { servers: [{ address: "127.0.0.1:${beta.port}" }] } }
    hidden: { loadBalancer: { servers: [{ address: "127.0.0.1:${hidden.port}" }] } }
`;
    const good = { keys: keysA, certFile: join(dir, 'secret.crt'), app: 'alpha' };
    writeFileSync(f, cfg(good));
    const child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    /** ECH with `list`: accepted (and the hidden backend answers) or not. */
    const ech = async (list: Uint8Array) => {
      const r = await connectOnce('127.0.0.1', port, { sni: 'secret.example.test', ech: list, timeoutMs: 5000 });
      return r.ech === 'accepted' ? 'accepted' : `not accepted (${r.ech ?? r.error})`;
    };
    const refusedCount = () => out.split('\n').filter((l) => l.includes('reload refused')).length;
    const sighup = async (yaml: string) => {
      const before = refusedCount();
      const reloaded = out.split('configuration reloaded').length;
      writeFileSync(f, yaml);
      child.kill('SIGHUP');
      for (let i = 0; i < 100 && refusedCount() === before && out.split('configuration reloaded').length === reloaded; i++) await sleep(50);
      // The file watcher reloads the same file once more after its debounce: let it finish too.
      await sleep(600);
      return out.split('\n').filter((l) => l.includes('reload refused')).slice(before);
    };
    const oldStateServes = async (why: string) => {
      assert.match(await tlsAsk(port, 'app.example.test'), /^alpha /, `${why}: the old route`);
      assert.equal(await ech(echA), 'accepted', `${why}: the old key`);
      assert.notEqual(await ech(echB), 'accepted', `${why}: the new key is not live`);
    };
    try {
      for (let i = 0; i < 100 && !out.includes('"listening"'); i++) await sleep(50);
      await oldStateServes('at start');

      // 1. A certificate file that is missing, with a new key folder and a changed route.
      const missing = join(dir, 'missing.crt');
      let refused = await sighup(cfg({ keys: keysB, certFile: missing, app: 'beta' }));
      assert.ok(refused.length >= 1, out);
      for (const l of refused) {
        assert.match(l, /previous one keeps serving unchanged/);
        assert.ok(l.includes(missing), `the log names the missing file: ${l}`);
      }
      await oldStateServes('after a reload with a missing certificate');

      // 2. A new key folder others can write (and the changed route).
      chmodSync(keysB, 0o777);
      refused = await sighup(cfg({ keys: keysB, certFile: join(dir, 'secret.crt'), app: 'beta' }));
      assert.ok(refused.length >= 1, out);
      for (const l of refused) assert.match(l, /refusing key folder .*keys-b is writable by group and others.*ERR_KEY_TRUST/);
      await oldStateServes('after a reload with an untrusted key folder');
      chmodSync(keysB, 0o700);

      // 3. Two new entrypoints: one binds, the other's address is taken. Neither stays.
      refused = await sighup(cfg({ keys: keysB, certFile: join(dir, 'secret.crt'), app: 'beta', extra: [extraPort, takenPort] }));
      assert.ok(refused.length >= 1, out);
      for (const l of refused) assert.match(l, /EADDRINUSE/);
      await oldStateServes('after a reload with a taken address');
      await assert.rejects(
        new Promise((res, rej) => net.connect(extraPort, '127.0.0.1').once('connect', res).once('error', rej)),
        'the listener bound by the failed reload is closed again',
      );

      assert.doesNotMatch(out, /keys-b","keys":\d+,"msg":"ECH keys loaded"/, 'a folder read for a refused reload is not reported as loaded');

      // 4. The same change, now possible: it all applies at once.
      const reloaded = out.split('configuration reloaded').length;
      assert.deepEqual(await sighup(cfg({ keys: keysB, certFile: join(dir, 'secret.crt'), app: 'beta' })), []);
      assert.ok(out.split('configuration reloaded').length > reloaded);
      assert.match(await tlsAsk(port, 'app.example.test'), /^beta /);
      assert.equal(await ech(echB), 'accepted');
      assert.notEqual(await ech(echA), 'accepted');
      assert.match(out, /keys-b","keys":1,"msg":"ECH keys loaded"/);
    } finally {
      child.kill('SIGKILL');
      taken.close();
      await Promise.all([alpha.close(), beta.close(), hidden.close()]);
    }
  });
});
