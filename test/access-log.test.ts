/**
 * log.access: one line per connection when it ends, with router, outcome,
 * bytes and duration; the SNI of an accepted ECH hello stays out of it unless
 * log.innerSni says otherwise.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectOnce } from '../src/cli/connect.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { attachKeys, caAndLeaf, sleep, startGateway } from './helpers.js';

for (const innerSni of [false, true]) {
  describe(`access log (log.innerSni: ${innerSni})`, () => {
    const W = mkdtempSync(join(tmpdir(), 'echgate-access-'));
    const keysDir = join(W, 'keys');
    let g: Awaited<ReturnType<typeof startGateway>>;
    let ring: Keyring;
    let app: net.Server;
    before(async () => {
      caAndLeaf(W, ['public.example.test', 'secret.example.test']);
      mkdirSync(keysDir);
      generateKey(keysDir, { publicName: 'public.example.test' });
      app = net.createServer((s) => {
        s.on('error', () => {});
        s.once('data', () => s.end('ok'));
      });
      await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
      g = await startGateway(`
log: { access: true, innerSni: ${innerSni} }
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: app, tls: {} }
    public: { rule: "HostSNI(\`public.example.test\`)", service: app, tls: {} }
  services: { app: { loadBalancer: { servers: [{ address: "127.0.0.1:${(app.address() as net.AddressInfo).port}" }] } } }
`);
      ring = attachKeys(g.gw, keysDir);
    });
    after(async () => {
      ring?.close();
      await g?.close();
      app?.close();
    });
    const accessLines = () => g.logs.filter((l) => l.msg === 'access');

    it('an ECH connection and a refused one each leave one line', async () => {
      const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: publishedList(listKeys(keysDir).keys), send: 'hi' });
      assert.equal(r.ech, 'accepted');
      const refused = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', send: 'hi' });
      assert.match(refused.error ?? '', /unrecognized_name/);
      for (let i = 0; i < 40 && accessLines().length < 2; i++) await sleep(25);
      const [ech, plain] = accessLines() as unknown as Record<string, unknown>[];
      // The router of an ECH connection is named only when the inner SNI may be (log.echRoutes aside).
      assert.equal(ech!.router, innerSni ? 'hidden' : '(ech)');
      assert.equal(ech!.ech, 'accepted');
      assert.equal(ech!.outcome, 'relayed');
      assert.equal(ech!.client, '127.0.0.1');
      assert.ok((ech!.bytesIn as number) > 0 && (ech!.bytesOut as number) > 0 && typeof ech!.ms === 'number');
      assert.equal(ech!.sni, innerSni ? 'secret.example.test' : undefined);
      assert.equal(plain!.outcome, 'no_route');
      assert.equal(plain!.sni, 'secret.example.test', 'a cleartext SNI is no secret');
      // Without log.innerSni, only the lines about the cleartext attempt carry the name.
      if (!innerSni) {
        const leaks = g.logs.filter((l) => JSON.stringify(l).includes('secret.example.test') && l !== plain && l.msg !== 'no router for SNI');
        assert.deepEqual(leaks, []);
      }
    });
  });
}
