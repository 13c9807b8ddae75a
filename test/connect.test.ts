/**
 * Our TLS 1.3 client (echgate connect) against echgate's termination: ECH
 * accepted and routed to the hidden backend; a stale config rejected with
 * retry_configs, and the retry accepted; the certificate checked against a CA.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { connectOnce } from '../src/cli/connect.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { attachKeys, caAndLeaf, ROOT, startGateway } from './helpers.js';

const run = promisify(execFile);

describe('echgate connect against echgate termination', () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-connect-'));
  const keysDir = join(W, 'keys');
  const staleDir = join(W, 'stale');
  let g: Awaited<ReturnType<typeof startGateway>>;
  let ring: Keyring;
  let backend: net.Server;
  const seen: string[] = [];

  before(async () => {
    caAndLeaf(W, ['public.example.test', 'secret.example.test']);
    mkdirSync(keysDir);
    mkdirSync(staleDir);
    generateKey(keysDir, { publicName: 'public.example.test', maxNameLength: 32, aead: 'chacha20poly1305' });
    generateKey(staleDir, { publicName: 'public.example.test' });
    backend = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => {
        seen.push(d.toString());
        s.end(`backend got ${d.length} bytes`);
      });
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    g = await startGateway(`
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: b, tls: { alpn: [h2, http/1.1] } }
    public: { rule: "HostSNI(\`public.example.test\`)", service: b, tls: {} }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
    ring = attachKeys(g.gw, keysDir);
  });
  after(async () => {
    ring?.close();
    await g?.close();
    backend?.close();
  });

  it('ECH accepted: the hidden router serves it, certificate verified against the CA', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), {
      sni: 'secret.example.test',
      ech: publishedList(listKeys(keysDir).keys),
      alpn: ['h2'],
      send: 'hello hidden',
      ca: readFileSync(join(W, 'ca.pem'), 'utf8'),
    });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.alpn, 'h2');
    assert.equal(r.certificateVerified, true);
    assert.equal(r.reply, 'backend got 12 bytes');
    assert.equal(seen.at(-1), 'hello hidden');
  });

  it('a stale config: rejected with retry_configs that hold the current key; the retry is accepted', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: publishedList(listKeys(staleDir).keys), send: 'x', ca: readFileSync(join(W, 'ca.pem'), 'utf8') });
    assert.equal(r.ech, 'rejected');
    assert.ok(r.retryConfigs);
    assert.deepEqual(r.retryConfigs, ring.retryConfigs);
    assert.equal(r.reply, undefined, 'a rejected ECH connection is never used for data');
    const again = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: r.retryConfigs, send: 'retry' });
    assert.equal(again.ech, 'accepted');
    assert.equal(again.reply, 'backend got 5 bytes');
  });

  it('HelloRetryRequest with ECH accepted (RFC 9849 §7.1.1, §7.2.1): confirmed in the HRR and in ServerHello, the second hello decrypted with the same context', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: publishedList(listKeys(keysDir).keys), alpn: ['h2'], send: 'after hrr', helloRetry: true, ca: readFileSync(join(W, 'ca.pem'), 'utf8') });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.certificateVerified, true);
    assert.equal(r.reply, 'backend got 9 bytes');
  });

  it('HelloRetryRequest with a stale key: rejected in the HRR, the outer hello goes on, retry_configs arrive; without ECH a plain HRR completes', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: publishedList(listKeys(staleDir).keys), send: 'x', helloRetry: true, ca: readFileSync(join(W, 'ca.pem'), 'utf8') });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'rejected');
    assert.deepEqual(r.retryConfigs, ring.retryConfigs);
    const plain = await connectOnce('127.0.0.1', g.port(), { sni: 'public.example.test', send: 'plain', helloRetry: true });
    assert.equal(plain.error, undefined);
    assert.equal(plain.ech, 'not_offered');
    assert.equal(plain.reply, 'backend got 5 bytes');
  });

  it('without ECH the hidden host is not served (requireECH): unrecognized_name', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', send: 'x' });
    assert.equal(r.connected, false);
    assert.match(r.error ?? '', /alert 112/);
  });

  it('the CLI: --keys, --retry, JSON report, exit status', async () => {
    const { stdout } = await run('node', [join(ROOT, 'bin', 'echgate.js'), 'connect', `127.0.0.1:${g.port()}`, '--sni', 'secret.example.test', '--keys', keysDir, '--send', 'cli']);
    const r = JSON.parse(stdout);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.reply, 'backend got 3 bytes');
    const { stdout: s2 } = await run('node', [join(ROOT, 'bin', 'echgate.js'), 'connect', `127.0.0.1:${g.port()}`, '--sni', 'secret.example.test', '--keys', staleDir, '--send', 'cli', '--retry']);
    const r2 = JSON.parse(s2);
    assert.equal(r2.retried, true);
    assert.equal(r2.ech, 'accepted');
  });
});
