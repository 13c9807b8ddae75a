/**
 * Why a TLS connection failed, as an operator reads it (audit s12 gap 3): the
 * access line of a failed connection names the alert echgate sent and the
 * engine's stable reason; echgate_tls_alerts_sent_total carries the router
 * once one was chosen; a failure after the handshake is outcome
 * tls_session_error and no peek failure; one hello that ends in the
 * public-name answer and an EOF is one peek failure, not two.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { echOffer } from '../src/ech/client.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { TlsClient } from '../src/tls13/client.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { attachKeys, caAndLeaf, rawExchange, sleep, startGateway } from './helpers.js';

const W = mkdtempSync(join(tmpdir(), 'echgate-tls-why-'));
caAndLeaf(W, ['term.example.test', 'public.example.test', 'secret.example.test']);
const keysDir = join(W, 'keys');
const staleDir = join(W, 'stale');
mkdirSync(keysDir);
mkdirSync(staleDir);
generateKey(keysDir, { publicName: 'public.example.test' });
generateKey(staleDir, { publicName: 'public.example.test' });

describe('access line and metrics of a failed TLS connection', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let ring: Keyring;
  let echo: net.Server;
  before(async () => {
    echo = net.createServer((s) => s.on('error', () => {}).pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    g = await startGateway(`
log: { access: true }
tls:
  certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }]
  options:
    only256: { cipherSuites: [TLS_AES_256_GCM_SHA384], minVersion: VersionTLS13 }
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 3s } }
tcp:
  routers:
    term: { rule: "HostSNI(\`term.example.test\`)", service: svc, tls: { options: only256 } }
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: svc, tls: {} }
  services:
    svc: { loadBalancer: { servers: [{ address: "127.0.0.1:${(echo.address() as net.AddressInfo).port}" }] } }
`);
    ring = attachKeys(g.gw, keysDir);
  });
  after(async () => {
    ring?.close();
    await g?.close();
    echo?.close();
  });
  const m = () => g.gw.metrics;
  const lastAccess = async (n: number) => {
    for (let i = 0; i < 80 && g.logs.filter((l) => l.msg === 'access').length < n; i++) await sleep(25);
    const lines = g.logs.filter((l) => l.msg === 'access') as unknown as Record<string, unknown>[];
    assert.equal(lines.length, n, 'access lines');
    return lines[n - 1]!;
  };

  it('a handshake the engine refuses: alert and reason on the access line, the router on the alert counter', async () => {
    const msg = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: g.port(), servername: 'term.example.test', rejectUnauthorized: false, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' });
      s.setTimeout(5000, () => s.destroy(new Error('timeout')));
      s.once('secureConnect', () => reject(new Error('handshake completed')));
      s.once('error', (e) => resolve(e.message));
    });
    assert.match(msg, /handshake failure/i);
    const line = await lastAccess(1);
    assert.equal(line.outcome, 'tls_alert');
    assert.equal(line.router, 'term');
    assert.equal(line.alert, 'handshake_failure');
    assert.equal(line.reason, 'no_common_cipher_suite');
    assert.equal(m().alertsSent.get({ entrypoint: 'websecure', router: 'term', alert: 'handshake_failure' }), 1);
    assert.equal(m().peekFailures.get({ entrypoint: 'websecure', reason: 'tls_handshake' }), 1);
  });

  it('a name no router takes: the alert on the line, router "-" on the counter', async () => {
    await rawExchange(g.port(), [helloFor('nobody.example.test')]);
    const line = await lastAccess(2);
    assert.equal(line.outcome, 'no_route');
    assert.equal(line.alert, 'unrecognized_name');
    assert.equal(m().alertsSent.get({ entrypoint: 'websecure', router: '-', alert: 'unrecognized_name' }), 1);
  });

  it('a bad record after the handshake: tls_session_error, not a peek failure; the line says bad_record_mac', async () => {
    const raw = net.connect(g.port(), '127.0.0.1');
    raw.on('error', () => {});
    await new Promise<void>((r) => raw.once('connect', () => r()));
    const t = tls.connect({ socket: raw, servername: 'term.example.test', rejectUnauthorized: false, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_256_GCM_SHA384' });
    t.on('error', () => {});
    await new Promise<void>((r) => t.once('secureConnect', () => r()));
    // The echo proves the session is established before the bad record.
    t.write('ping');
    await new Promise<void>((r) => t.once('data', () => r()));
    const closed = new Promise<void>((r) => raw.once('close', () => r()));
    raw.write(Buffer.concat([Buffer.from([23, 3, 3, 0, 32]), Buffer.alloc(32, 0xa5)]));
    await closed;
    const line = await lastAccess(3);
    assert.equal(line.outcome, 'tls_session_error');
    assert.equal(line.alert, 'bad_record_mac');
    assert.equal(line.reason, 'ERR_AEAD_OPEN');
    assert.equal(m().peekFailures.get({ entrypoint: 'websecure', reason: 'tls_handshake' }), 1, 'still only the refused handshake of the first test');
    assert.equal(m().connections.get({ entrypoint: 'websecure', router: 'term', outcome: 'tls_session_error' }), 1);
    assert.equal(m().alertsSent.get({ entrypoint: 'websecure', router: 'term', alert: 'bad_record_mac' }), 1);
  });

  it('a stale ECH hello answered for the public name, then EOF: one peek failure (tls_handshake), not closed_early as well', async () => {
    const config = usableConfigs(decodeECHConfigList(publishedList(listKeys(staleDir).keys)!), isSupportedSuite)[0]!;
    const client = new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', ech: echOffer(config) });
    const before = m().peekFailures.get({ entrypoint: 'websecure', reason: 'tls_handshake' });
    // The hello, then the client's EOF once the server flight is in (rawExchange half-closes only by destroy: do it by hand).
    const s = net.connect(g.port(), '127.0.0.1');
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    for (const r of client.hello()) s.write(r);
    await new Promise<void>((r) => s.once('data', () => r()));
    s.end();
    s.resume();
    await new Promise<void>((r) => s.once('close', () => r()));
    const line = await lastAccess(4);
    assert.equal(line.outcome, 'tls_alert');
    assert.equal(line.reason, 'client_closed');
    assert.equal(m().peekFailures.get({ entrypoint: 'websecure', reason: 'tls_handshake' }), before + 1);
    assert.equal(m().peekFailures.get({ entrypoint: 'websecure', reason: 'closed_early' }), 0);
  });
});

/** A minimal TLS 1.3 ClientHello naming `sni` (echgate's own client builds it). */
function helloFor(sni: string): Uint8Array {
  const c = new TlsClient({ provider: nodeProvider, serverName: sni });
  return Buffer.concat(c.hello());
}
