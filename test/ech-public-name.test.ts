/**
 * RFC 9849 §6.1.6 / §7.1: the client-facing server answers for its public
 * names itself. A client with a stale ECH config reaches echgate with the
 * public name as outer SNI; with no router for that name, echgate completes
 * the handshake as the public name (a certificate that covers it) and sends
 * retry_configs, and the client's retry is accepted. A router for the public
 * name keeps it. A client that does not abort gets unrecognized_name after the
 * handshake. `echgate check` warns when no certificate covers a public name.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { connectOnce } from '../src/cli/connect.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { TlsClient } from '../src/tls13/client.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { attachKeys, caAndLeaf, certFor, ROOT, rawExchange, sleep, startGateway, tlsBackend } from './helpers.js';

const run = promisify(execFile);
const W = mkdtempSync(join(tmpdir(), 'echgate-public-name-'));
const keysDir = join(W, 'keys');
const staleDir = join(W, 'stale');
mkdirSync(keysDir);
mkdirSync(staleDir);
generateKey(keysDir, { publicName: 'public.example.test' });
// The same public name, a key the server no longer has: what a client with an old DNS answer holds.
generateKey(staleDir, { publicName: 'public.example.test' });
const ca = caAndLeaf(W, ['public.example.test', 'secret.example.test']);
const stale = () => publishedList(listKeys(staleDir).keys)!;

async function appServer(): Promise<{ port: number; seen: string[]; close(): void }> {
  const seen: string[] = [];
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', (d) => {
      seen.push(d.toString());
      s.end(`app got ${d.length} bytes`);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return { port: (srv.address() as net.AddressInfo).port, seen, close: () => srv.close() };
}

const gatewayYaml = (cert: { certFile: string; keyFile: string }, appPort: number, extraRouters = '', extraServices = '') => `
tls: { certificates: [{ certFile: "${cert.certFile}", keyFile: "${cert.keyFile}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 3s } }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: app, tls: {} }
${extraRouters}
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${appPort}" }] } }
${extraServices}
`;

describe('RFC 9849 §6.1.6/§7.1: echgate answers for the public name when no router does', () => {
  let app: Awaited<ReturnType<typeof appServer>>;
  let g: Awaited<ReturnType<typeof startGateway>>;
  let ring: Keyring;
  const events: Record<string, unknown>[] = [];
  const onRoute = (m: unknown) => events.push(m as Record<string, unknown>);

  before(async () => {
    app = await appServer();
    // Only the hidden name has a router: nothing routes public.example.test.
    g = await startGateway(gatewayYaml({ certFile: join(W, 'server.pem'), keyFile: join(W, 'server.key') }, app.port));
    ring = attachKeys(g.gw, keysDir);
    subscribe('echgate:route', onRoute);
  });
  after(async () => {
    unsubscribe('echgate:route', onRoute);
    ring?.close();
    await g?.close();
    app?.close();
  });

  it('a stale config gets retry_configs from a handshake authenticated as the public name; the retry is accepted', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: stale(), send: 'x', ca });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'rejected');
    assert.equal(r.certificateVerified, true, 'the certificate verified for public.example.test (§6.1.7)');
    assert.deepEqual(r.retryConfigs, ring.retryConfigs);
    assert.equal(r.reply, undefined);
    assert.equal(app.seen.length, 0, 'nothing reached a backend');
    const ev = events.find((e) => e.answer === 'public_name');
    assert.equal(ev?.router, '-');
    assert.equal(ev?.sni, 'public.example.test');
    const again = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: r.retryConfigs, send: 'retry', ca });
    assert.equal(again.ech, 'accepted');
    assert.equal(again.reply, 'app got 5 bytes');
    assert.ok(g.gw.metrics.connections.get({ entrypoint: 'websecure', router: '-', outcome: 'public_name' }) >= 1);
  });

  it('echgate connect --retry: rejected, retried with the retry configs, accepted (the CLI)', async () => {
    const { stdout } = await run('node', [join(ROOT, 'bin', 'echgate.js'), 'connect', `127.0.0.1:${g.port()}`, '--sni', 'secret.example.test', '--keys', staleDir, '--send', 'cli', '--retry']);
    const r = JSON.parse(stdout);
    assert.equal(r.retried, true);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.reply, 'app got 3 bytes');
  });

  it('a client that does not abort (it ignores retry_configs, as a GREASE client does) gets unrecognized_name after its Finished', async () => {
    const config = usableConfigs(decodeECHConfigList(stale()), isSupportedSuite)[0]!;
    const client = new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', ech: config });
    const outcome = await new Promise<{ established?: string; error?: string; data: number }>((resolve) => {
      const res: { established?: string; error?: string; data: number } = { data: 0 };
      const s = net.connect(g.port(), '127.0.0.1');
      s.setTimeout(5000, () => s.destroy());
      s.once('connect', () => {
        for (const r of client.hello()) s.write(r);
      });
      s.on('data', (d) => {
        try {
          const out = client.receive(d);
          // receive() reports a server alert in out.error rather than throwing.
          if (out.error) {
            res.error = out.error.message;
            s.destroy();
            return;
          }
          for (const r of out.send) s.write(r);
          res.data += out.data.length;
          if (out.established) {
            res.established = out.established.ech;
            // Carry on regardless, as a client that only sent GREASE would.
            for (const r of client.encrypt(Buffer.from('GET / HTTP/1.1\r\n\r\n'))) s.write(r);
          }
        } catch (e) {
          res.error = (e as Error).message;
          s.destroy();
        }
      });
      s.once('close', () => resolve(res));
      s.once('error', () => {});
    });
    assert.equal(outcome.established, 'rejected');
    assert.match(outcome.error ?? '', /alert 112 \(unrecognized_name\)/);
    assert.equal(outcome.data, 0);
  });

  it('without any ECH extension the public name is still refused (nothing to deliver): unrecognized_name during the handshake', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'public.example.test', send: 'x' });
    assert.equal(r.connected, false);
    assert.match(r.error ?? '', /alert 112/);
  });

  it('a name that is not a public name, with a rejected ECH extension, is refused as before', async () => {
    // Same stale key, but a config whose public_name is not one of ours: the outer SNI names nothing we know.
    const other = mkdtempSync(join(W, 'other-'));
    generateKey(other, { publicName: 'elsewhere.example.test' });
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: publishedList(listKeys(other).keys), send: 'x' });
    assert.equal(r.connected, false);
    assert.match(r.error ?? '', /alert 112/);
  });
});

describe('public name: a router for it keeps it; no certificate for it → refused', () => {
  it('a passthrough router for the public name gets the rejected connection (no retry_configs from echgate)', async () => {
    const app = await appServer();
    const site = await tlsBackend('site', 'public.example.test');
    const g = await startGateway(
      gatewayYaml(
        { certFile: join(W, 'server.pem'), keyFile: join(W, 'server.key') },
        app.port,
        '    public: { rule: "HostSNI(`public.example.test`)", service: site, tls: { passthrough: true } }',
        `    site: { loadBalancer: { servers: [{ address: "127.0.0.1:${site.port}" }] } }`,
      ),
    );
    const ring = attachKeys(g.gw, keysDir);
    try {
      const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: stale(), send: 'x' });
      assert.equal(r.ech, 'rejected');
      assert.equal(r.retryConfigs, undefined, 'the site behind passthrough knows nothing of ECH');
      for (let i = 0; i < 50 && site.connections === 0; i++) await sleep(20);
      assert.equal(site.connections, 1);
    } finally {
      ring.close();
      await g.close();
      await site.close();
      app.close();
    }
  });

  it('no certificate covers the public name: unrecognized_name, a warning in the log; `echgate check` warns too', async () => {
    const app = await appServer();
    const only = certFor('secret.example.test');
    const dir = mkdtempSync(join(W, 'nocover-'));
    writeFileSync(join(dir, 's.crt'), only.cert);
    writeFileSync(join(dir, 's.key'), only.key);
    const cert = { certFile: join(dir, 's.crt'), keyFile: join(dir, 's.key') };
    const yaml = gatewayYaml(cert, app.port);
    const g = await startGateway(yaml);
    const ring = attachKeys(g.gw, keysDir);
    try {
      const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: stale(), send: 'x' });
      assert.equal(r.connected, false);
      assert.match(r.error ?? '', /alert 112/);
      assert.ok(g.logs.some((l) => /no certificate covers/.test(l.msg) && l.sni === 'public.example.test'));
    } finally {
      ring.close();
      await g.close();
      app.close();
    }
    const cfgFile = join(dir, 'echgate.yml');
    writeFileSync(cfgFile, `${yaml}\nech: { keysDir: "${keysDir}" }\n`);
    const { stdout } = await run('node', [join(ROOT, 'bin', 'echgate.js'), 'check', '--config', cfgFile]);
    assert.match(stdout, /warning: ech\.keysDir: no certificate in tls\.certificates covers the public name public\.example\.test/);
    // With a certificate for the public name, no such warning.
    const good = join(dir, 'good.yml');
    writeFileSync(good, `${gatewayYaml({ certFile: join(W, 'server.pem'), keyFile: join(W, 'server.key') }, app.port)}\nech: { keysDir: "${keysDir}" }\n`);
    const { stdout: ok } = await run('node', [join(ROOT, 'bin', 'echgate.js'), 'check', '--config', good]);
    assert.doesNotMatch(ok, /covers the public name/);
  });

  it('a raw GREASE-like hello that stops after ClientHello is cut at the handshake deadline', async () => {
    const app = await appServer();
    const g = await startGateway(gatewayYaml({ certFile: join(W, 'server.pem'), keyFile: join(W, 'server.key') }, app.port).replace('clientHelloTimeout: 3s', 'clientHelloTimeout: 300ms'));
    const ring = attachKeys(g.gw, keysDir);
    try {
      const config = usableConfigs(decodeECHConfigList(stale()), isSupportedSuite)[0]!;
      const client = new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', ech: config });
      const got = await rawExchange(g.port(), client.hello(), { timeoutMs: 5000 });
      assert.equal(got[0], 22, 'the server flight came, then the connection closed at the deadline');
    } finally {
      ring.close();
      await g.close();
      app.close();
    }
  });
});
