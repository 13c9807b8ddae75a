/**
 * The proxy with ECH: real Chromium ECH hellos are decrypted and routed on the
 * inner SNI by the same rules as plaintext; requireECH never serves a hidden
 * host to a cleartext SNI; keys are picked up without a restart; the inner
 * SNI stays out of logs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Keyring } from '../src/keys/keyring.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { concat, fromHex } from '../src/bytes/util.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { decryptEch, prepareServerKey } from '../src/ech/server.js';
import { expandLabel, suiteById } from '../src/tls13/key-schedule.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { certFor, json, rawExchange, sleep, startGateway, vector } from './helpers.js';

const run = promisify(execFile);
const manifest = json('captures/manifest.json');
const cap = (kind: 'secret' | 'app' | 'grease') =>
  manifest.captures.find((c: any) => (kind === 'grease' ? !c.real_ech : c.real_ech && c.inner_sni === `${kind}.example.test`));

interface RouteEvent {
  entrypoint: string;
  router: string;
  sni?: string;
  ech: string;
  echReason?: string;
}

function recordRoutes(): { events: RouteEvent[]; stop(): void } {
  const events: RouteEvent[] = [];
  const fn = (m: unknown) => events.push(m as RouteEvent);
  subscribe('echgate:route', fn);
  return { events, stop: () => unsubscribe('echgate:route', fn) };
}

async function sink(): Promise<{ port: number; conns: number; close(): void }> {
  const b = { port: 0, conns: 0, close: () => {} };
  const srv = net.createServer((s) => {
    b.conns++;
    s.on('data', () => s.end('x'));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  b.port = (srv.address() as net.AddressInfo).port;
  b.close = () => srv.close();
  return b;
}

// Certificate files for the terminating router: the hidden name and the public name.
const certDir = mkdtempSync(join(tmpdir(), 'echgate-ech-certs-'));
const certFiles = ['secret.example.test', 'public.example.test'].map((h) => {
  const c = certFor(h);
  writeFileSync(join(certDir, `${h}.crt`), c.cert);
  writeFileSync(join(certDir, `${h}.key`), c.key);
  return { certFile: join(certDir, `${h}.crt`), keyFile: join(certDir, `${h}.key`) };
});

const yaml = (pub: number, app: number, innerSni = false) => `
tls:
  certificates:
${certFiles.map((c) => `    - { certFile: "${c.certFile}", keyFile: "${c.keyFile}" }`).join('\n')}
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 2s } }
# echRoutes: these tests read routing decisions from the route channel's router names.
log: { innerSni: ${innerSni}, echRoutes: true }
tcp:
  routers:
    public: { rule: "HostSNI(\`public.example.test\`)", service: pub, tls: { passthrough: true } }
    app: { rule: "HostSNI(\`app.example.test\`) && ALPN(\`h2\`)", service: app, tls: { passthrough: true } }
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: app, tls: {} }
  services:
    pub: { loadBalancer: { servers: [{ address: "127.0.0.1:${pub}" }] } }
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${app}" }] } }
`;

describe('ECH routing in the proxy', () => {
  let pub: Awaited<ReturnType<typeof sink>>;
  let app: Awaited<ReturnType<typeof sink>>;
  let g: Awaited<ReturnType<typeof startGateway>>;
  let ring: Keyring;
  let dir: string;
  const routes = recordRoutes();

  before(async () => {
    pub = await sink();
    app = await sink();
    dir = mkdtempSync(join(tmpdir(), 'echgate-ech-'));
    g = await startGateway(yaml(pub.port, app.port));
    ring = new Keyring(dir);
    ring.reload();
    ring.watch();
    g.gw.setClassifier(echClassifier(ring, g.gw.metrics, { trialDecrypt: false }));
  });
  after(async () => {
    routes.stop();
    ring?.close();
    await g?.close();
    pub?.close();
    app?.close();
  });

  const send = async (kind: 'secret' | 'app' | 'grease', collectMs?: number) => {
    const n = routes.events.length;
    const got = await rawExchange(g.port(), [vector(`captures/${cap(kind).file}`)], { timeoutMs: 3000, collectMs });
    await sleep(20);
    return { got, event: routes.events[n] };
  };

  it('without the key: ECH is rejected and the connection routes on the outer SNI (public_name)', async () => {
    const { event } = await send('app');
    assert.equal(event?.router, 'public');
    assert.equal(event?.ech, 'rejected');
  });

  it('the key appears in the folder: picked up without a restart; a connection mid-hello is untouched', async () => {
    // A connection that has sent half its hello before the reload ...
    const bytes = vector(`captures/${cap('app').file}`);
    const open = net.connect(g.port(), '127.0.0.1');
    const closed = new Promise<Buffer>((r) => {
      const got: Buffer[] = [];
      open.on('data', (d) => got.push(d));
      open.once('close', () => r(Buffer.concat(got)));
    });
    await new Promise((r) => open.once('connect', r));
    open.write(bytes.subarray(0, 100));
    await sleep(50);
    writeFileSync(join(dir, 'ech.pem'), cap('app').keys.pem, { mode: 0o600 });
    for (let i = 0; i < 50 && ring.size === 0; i++) await sleep(50);
    assert.equal(ring.size, 1);
    // ... finishes it afterwards and is served (with the new key).
    const n = routes.events.length;
    open.write(bytes.subarray(100));
    assert.equal((await closed).toString(), 'x');
    assert.equal(routes.events[n]?.router, 'app');
  });

  it('a real Chromium ECH hello routes on the inner SNI and ALPN (same rules as plaintext)', async () => {
    const { event } = await send('app');
    assert.equal(event?.router, 'app');
    assert.equal(event?.ech, 'accepted');
    assert.equal(event?.sni, undefined, 'the inner SNI is not published unless log.innerSni');
    assert.equal(g.gw.metrics.ech.get({ entrypoint: 'websecure', result: 'accepted_on_passthrough' }) >= 1, true);
  });

  it('a requireECH router terminates the real Chromium ECH hello and proves acceptance (RFC 9849 §7.2)', async () => {
    const { event, got } = await send('secret', 500);
    assert.equal(event?.router, 'hidden');
    assert.equal(event?.ech, 'accepted');
    // The reply starts with a plaintext ServerHello record whose random ends in the accept confirmation.
    assert.equal(got[0], 22);
    const shLen = (got[3]! << 8) | got[4]!;
    const sh = new Uint8Array(got.subarray(5, 5 + shLen));
    assert.equal(sh[0], 2, 'ServerHello');
    const c = cap('secret');
    const key = prepareServerKey(
      nodeProvider,
      usableConfigs(decodeECHConfigList(new Uint8Array(Buffer.from(c.keys.echconfiglist_b64, 'base64'))), isSupportedSuite)[0]!,
      nodeProvider.x25519Private(fromHex(c.keys.private_key_hex)),
    );
    const outer = decodeClientHelloMessage(parseHelloRecords(vector(`captures/${c.file}`))!.message);
    const r = decryptEch(nodeProvider, outer, { byConfigId: () => [key], all: () => [key] });
    assert.ok(r.status === 'accepted');
    const suite = suiteById((sh[4 + 2 + 32 + 1 + sh[4 + 2 + 32]!]! << 8) | sh[4 + 2 + 32 + 1 + sh[4 + 2 + 32]! + 1]!)!;
    const zeroed = sh.slice();
    zeroed.fill(0, 30, 38);
    const th = nodeProvider.hash(suite.hash, concat(encodeHandshake(1, r.inner.raw!), zeroed));
    const prk = nodeProvider.hmac(suite.hash, new Uint8Array(th.length), r.inner.random);
    assert.deepEqual(sh.subarray(30, 38), expandLabel(nodeProvider, suite.hash, prk, 'ech accept confirmation', th, 8));
  });

  it('GREASE ECH with the hidden name as cleartext SNI is never served by the requireECH router', async () => {
    const { got } = await send('grease');
    assert.deepEqual([...got], [21, 3, 3, 0, 2, 2, 112], 'unrecognized_name');
    assert.ok(g.gw.metrics.ech.get({ entrypoint: 'websecure', result: 'grease' }) >= 1);
  });

  it('openssl s_client with cleartext SNI of the hidden host: unrecognized_name', async () => {
    const { stdout } = await run('sh', ['-c', `timeout 10 openssl s_client -connect 127.0.0.1:${g.port()} -servername secret.example.test </dev/null 2>&1 || true`]);
    assert.match(stdout, /unrecognized name|alert number 112/);
  });

  it('a retired key stops decrypting without a restart', async () => {
    // Move the key to its retired state the way `keys retire` leaves it: metadata kept, key file gone.
    const { unlinkSync } = await import('node:fs');
    writeFileSync(join(dir, 'ech-042.json'), JSON.stringify({ configId: 42, publicName: 'public.example.test', state: 'retired', created: new Date().toISOString() }));
    unlinkSync(join(dir, 'ech.pem'));
    for (let i = 0; i < 50 && ring.size !== 0; i++) await sleep(50);
    assert.equal(ring.size, 0);
    const { event } = await send('app');
    assert.equal(event?.router, 'public');
    assert.equal(event?.ech, 'rejected');
  });

  it('the inner SNI never appears in the logs (log.innerSni: false)', () => {
    const text = JSON.stringify(g.logs);
    assert.ok(!text.includes('app.example.test'), 'inner SNI app.example.test leaked into logs');
    // secret.example.test appears only as the cleartext SNI of the GREASE/openssl connections
    for (const l of g.logs) if (l.sni === 'secret.example.test') assert.notEqual(l.ech, 'accepted');
  });
});

describe('log.innerSni: true', () => {
  it('publishes the inner SNI when the operator asks for it', async () => {
    const pub = await sink();
    const app = await sink();
    const dir = mkdtempSync(join(tmpdir(), 'echgate-ech-'));
    writeFileSync(join(dir, 'ech.pem'), cap('app').keys.pem, { mode: 0o600 });
    const g = await startGateway(yaml(pub.port, app.port, true));
    const ring = new Keyring(dir);
    ring.reload();
    g.gw.setClassifier(echClassifier(ring, g.gw.metrics, { trialDecrypt: true }));
    const routes = recordRoutes();
    try {
      await rawExchange(g.port(), [vector(`captures/${cap('app').file}`)], { timeoutMs: 3000 });
      await sleep(20);
      assert.equal(routes.events.at(-1)?.sni, 'app.example.test');
    } finally {
      routes.stop();
      await g.close();
      pub.close();
      app.close();
    }
  });
});
