/**
 * ECH accepted on a terminating router whose `tls.options` restrict the TLS
 * 1.3 cipher suites (docs/configuration.md `cipherSuites`): the engine
 * negotiates from the restricted list, but the transcript hashes
 * ClientHelloInner as the client sent it (RFC 8446 §4.4.1, RFC 9849 §7.2).
 * Before the eighth pass the inner hello was re-encoded with the restricted
 * list and the handshake failed ("bad record MAC" at the client).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectOnce } from '../src/cli/connect.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey } from '../src/keys/manager.js';
import { attachKeys, caAndLeaf, startGateway } from './helpers.js';

const W = mkdtempSync(join(tmpdir(), 'echgate-ech-tls-options-'));
const keysDir = join(W, 'keys');
mkdirSync(keysDir);
generateKey(keysDir, { publicName: 'public.example.test' });
const ca = caAndLeaf(W, ['secret.example.test', 'public.example.test']);

describe('ECH accepted with tls.options cipherSuites (a restricted TLS 1.3 suite list)', () => {
  let app: net.Server;
  let g: Awaited<ReturnType<typeof startGateway>>;
  let ring: Keyring;

  before(async () => {
    app = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => s.end(`app got ${d.length} bytes`));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    const appPort = (app.address() as net.AddressInfo).port;
    g = await startGateway(`
tls:
  certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }]
  options:
    only256: { minVersion: VersionTLS13, cipherSuites: [TLS_AES_256_GCM_SHA384] }
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 3s } }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: app, tls: { options: only256 } }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${appPort}" }] } }
`);
    ring = attachKeys(g.gw, keysDir);
  });
  after(async () => {
    ring?.close();
    await g?.close();
    app?.close();
  });

  it('the handshake completes with ECH accepted, on the one allowed suite, and reaches the backend', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: ring.retryConfigs, send: 'hello', ca });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.cipherSuite, 0x1302);
    assert.equal(r.reply, 'app got 5 bytes');
  });
});
