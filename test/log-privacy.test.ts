/**
 * RFC 9849 §10.2 (the hidden name must not leak): routers are commonly named
 * after the host they serve, so for an ECH-accepted connection the router,
 * service and backend address give the inner SNI away as surely as the SNI
 * itself. Unless log.echRoutes (or log.innerSni, for logs only) says so, none
 * of them reaches a log line, the echgate:route channel or a metric label.
 */
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdirSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectOnce } from '../src/cli/connect.js';
import { parseConfigText } from '../src/config/load.js';
import { freePort } from '../src/cli/free-port.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { attachKeys, caAndLeaf, sleep, startGateway } from './helpers.js';

const HIDDEN = ['secret.example.test', 'secret-down.example.test', 'secret-pt.example.test'];

for (const { innerSni, echRoutes } of [
  { innerSni: false, echRoutes: false },
  { innerSni: false, echRoutes: true },
  { innerSni: true, echRoutes: false },
]) {
  describe(`ECH route names (log.innerSni: ${innerSni}, log.echRoutes: ${echRoutes})`, () => {
    const W = mkdtempSync(join(tmpdir(), 'echgate-privacy-'));
    const keysDir = join(W, 'keys');
    let g: Awaited<ReturnType<typeof startGateway>>;
    let ring: Keyring;
    let app: net.Server;
    let appPort = 0;
    let deadPort = 0;
    const routes: unknown[] = [];
    const onRoute = (m: unknown) => routes.push(m);
    before(async () => {
      caAndLeaf(W, ['public.example.test', ...HIDDEN]);
      mkdirSync(keysDir);
      generateKey(keysDir, { publicName: 'public.example.test' });
      app = net.createServer((s) => {
        s.on('error', () => {});
        s.once('data', () => s.end('ok'));
      });
      await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
      appPort = (app.address() as net.AddressInfo).port;
      deadPort = await freePort();
      g = await startGateway(`
log: { access: true, innerSni: ${innerSni}, echRoutes: ${echRoutes} }
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    secret_example_test: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: secret_backend, tls: {} }
    secret_down: { rule: "HostSNI(\`secret-down.example.test\`)", requireECH: true, service: secret_down_backend, tls: {} }
    secret_pt: { rule: "HostSNI(\`secret-pt.example.test\`)", service: secret_pt_backend, tls: { passthrough: true } }
    public: { rule: "HostSNI(\`public.example.test\`)", service: secret_backend, tls: {} }
  services:
    secret_backend: { loadBalancer: { servers: [{ address: "127.0.0.1:${appPort}" }] } }
    secret_down_backend: { loadBalancer: { servers: [{ address: "127.0.0.1:${deadPort}" }] } }
    secret_pt_backend: { loadBalancer: { servers: [{ address: "127.0.0.1:${appPort}" }] } }
`);
      ring = attachKeys(g.gw, keysDir);
      subscribe('echgate:route', onRoute);
    });
    after(async () => {
      unsubscribe('echgate:route', onRoute);
      ring?.close();
      await g?.close();
      app?.close();
    });

    it('routing by the inner SNI: logs, the route channel and metrics name routes only as configured', async () => {
      const ech = publishedList(listKeys(keysDir).keys);
      const ok = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech, send: 'hi', timeoutMs: 5000 });
      assert.equal(ok.ech, 'accepted');
      assert.equal(ok.reply, 'ok');
      // Backend down: the error line and backend_errors_total would name the service and address.
      await connectOnce('127.0.0.1', g.port(), { sni: 'secret-down.example.test', ech, send: 'hi', timeoutMs: 5000 });
      // Passthrough: the warning that the backend cannot complete ECH names the router.
      await connectOnce('127.0.0.1', g.port(), { sni: 'secret-pt.example.test', ech, send: 'hi', timeoutMs: 3000 });
      const accessLines = () => g.logs.filter((l) => l.msg === 'access');
      for (let i = 0; i < 80 && accessLines().length < 3; i++) await sleep(25);
      assert.equal(accessLines().length, 3);
      assert.ok(g.logs.some((l) => l.msg === 'backend connect failed'));
      assert.ok(g.logs.some((l) => /passthrough router/.test(l.msg)));
      assert.equal(routes.length, 3);

      const logs = JSON.stringify(g.logs);
      const channel = JSON.stringify(routes);
      const metrics = g.gw.metrics.render();
      const deadAddr = `127.0.0.1:${deadPort}`;
      // The inner SNI itself: only with log.innerSni, never in metrics.
      for (const h of HIDDEN) {
        assert.equal(logs.includes(h), innerSni, `logs and ${h}`);
        assert.equal(channel.includes(h), innerSni, `route channel and ${h}`);
        assert.ok(!metrics.includes(h));
      }
      // Route names (all start with "secret") and the backend address.
      const logsShow = innerSni || echRoutes;
      assert.equal(/secret_example_test/.test(logs), logsShow);
      assert.equal(/secret_down/.test(logs), logsShow);
      assert.equal(/secret_pt/.test(logs), logsShow);
      assert.equal(logs.includes(deadAddr), logsShow);
      assert.equal(/secret_/.test(channel), logsShow);
      assert.equal(/secret/.test(metrics), echRoutes, metrics);
      if (!logsShow) {
        assert.ok(accessLines().every((l) => l.router === '(ech)' && l.sni === undefined));
        assert.ok(!/secret/.test(logs), logs);
      }
      if (!echRoutes) {
        assert.match(metrics, /echgate_connections_total\{entrypoint="websecure",outcome="relayed",router="\(ech\)"\} [12]/);
        assert.match(metrics, /echgate_connections_total\{entrypoint="websecure",outcome="backend_error",router="\(ech\)"\} 1/);
        assert.match(metrics, /echgate_backend_errors_total\{kind="connect",service="\(ech\)"\} 1/);
      } else {
        assert.match(metrics, /echgate_connections_total\{entrypoint="websecure",outcome="relayed",router="secret_example_test"\} 1/);
        assert.match(metrics, /echgate_backend_errors_total\{kind="connect",service="secret_down_backend"\} 1/);
      }
    });
  });
}

describe('log.echRoutes in the configuration', () => {
  it('defaults to false, takes only a boolean, and a misspelt key under log is reported', () => {
    const base = 'entryPoints: { web: { address: "127.0.0.1:0" } }\n';
    assert.equal(parseConfigText(base, 't.yml').log.echRoutes, false);
    assert.equal(parseConfigText(`${base}log: { echRoutes: true }\n`, 't.yml').log.echRoutes, true);
    assert.throws(() => parseConfigText(`${base}log: { echRoutes: "yes" }\n`, 't.yml'), /log\.echRoutes: expected true or false/);
    assert.deepEqual(parseConfigText(`${base}log: { echroutes: true }\n`, 't.yml').warnings, ['log.echroutes: unknown key, ignored']);
  });
});
