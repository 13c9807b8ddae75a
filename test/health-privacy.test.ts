/**
 * Health-check log lines follow the privacy rule of ECH routes (docs/ech.md
 * "Logging and privacy"): a service reached only through `requireECH` routers
 * serves names a client sent inside ECH (RFC 9849 §1: the inner SNI is
 * meant to stay private), so unless log.echRoutes or log.innerSni its health
 * lines say `(ech)` and name neither the service nor the server address.
 * A service that a plain router also reaches is named, as that router's own
 * lines name it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { freePort } from '../src/cli/free-port.js';
import { parseConfigText } from '../src/config/load.js';
import { echOnlyServices } from '../src/proxy/health.js';
import { caAndLeaf, sleep, startGateway } from './helpers.js';

async function until(what: string, ok: () => boolean, ms = 10_000) {
  // A liveness bound only: the checks run every 50 ms.
  for (const end = Date.now() + ms; Date.now() < end; await sleep(25)) if (ok()) return;
  assert.fail(`${what}: not within ${ms} ms`);
}

const W = mkdtempSync(join(tmpdir(), 'echgate-health-privacy-'));
caAndLeaf(W, ['public.example.test', 'secret.example.test']);

const yaml = (deadPort: number, log: string) => `
log: ${log}
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    hidden_router: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: secret_origin, tls: {} }
    public: { rule: "HostSNI(\`public.example.test\`)", service: shared_origin, tls: {} }
    hidden_too: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: shared_origin, tls: {} }
  services:
    secret_origin:
      loadBalancer: { servers: [{ address: "127.0.0.1:${deadPort}" }], healthCheck: { interval: 50ms, timeout: 1s } }
    shared_origin:
      loadBalancer: { servers: [{ address: "127.0.0.1:${deadPort}" }], healthCheck: { interval: 50ms, timeout: 1s } }
`;

describe('RFC 9849 §1 privacy: health-check log lines of ECH-only services', () => {
  it('echOnlyServices: only services every router of which requires ECH (through weighted services too)', () => {
    const cfg = parseConfigText(
      `
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    a: { rule: "HostSNI(\`a.test\`)", requireECH: true, service: w, tls: { passthrough: true, echSplit: true } }
    b: { rule: "HostSNI(\`b.test\`)", service: open, tls: { passthrough: true } }
    c: { rule: "HostSNI(\`c.test\`)", requireECH: true, service: open, tls: { passthrough: true, echSplit: true } }
  services:
    w: { weighted: { services: [{ name: x, weight: 1 }, { name: open, weight: 1 }] } }
    x: { loadBalancer: { servers: [{ address: "127.0.0.1:1" }] } }
    open: { loadBalancer: { servers: [{ address: "127.0.0.1:2" }] } }
    unused: { loadBalancer: { servers: [{ address: "127.0.0.1:3" }] } }
`,
      't.yml',
    );
    assert.deepEqual([...echOnlyServices(cfg)].sort(), ['w', 'x']);
  });

  // The gauge follows the rule of every metric: only log.echRoutes names ECH routes there (docs/ech.md).
  for (const [log, names] of [
    ['{ echRoutes: false, innerSni: false }', false],
    ['{ innerSni: true }', false],
    ['{ echRoutes: true }', true],
  ] as const) {
    it(`log ${log}: echgate_backend_up ${names ? 'names the ECH-only service' : 'labels the ECH-only service\'s server (ech)#1, no name or address'}`, async () => {
      const deadPort = await freePort();
      const g = await startGateway(yaml(deadPort, log));
      try {
        const m = g.gw.metrics;
        const hiddenLabel = names ? { service: 'secret_origin', server: `127.0.0.1:${deadPort}` } : { service: '(ech)', server: '(ech)#1' };
        // Servers start healthy (1); the dead port takes them down.
        await until('both series down', () => m.backendUp.get(hiddenLabel) === 0 && m.backendUp.get({ service: 'shared_origin', server: `127.0.0.1:${deadPort}` }) === 0 && m.render().includes('shared_origin'));
        const text = m.render().split('\n').filter((l) => l.startsWith('echgate_backend_up{'));
        assert.equal(text.length, 2, text.join('\n'));
        // The service a plain router reaches is named in every case.
        assert.ok(text.some((l) => l.includes('service="shared_origin"')));
        if (names) assert.ok(text.some((l) => l.includes('service="secret_origin"')));
        else {
          assert.ok(text.includes('echgate_backend_up{server="(ech)#1",service="(ech)"} 0'), text.join('\n'));
          assert.doesNotMatch(text.join('\n'), /secret_origin/);
        }
      } finally {
        await g.close();
      }
    });
  }

  for (const [log, shows] of [
    ['{ echRoutes: false, innerSni: false }', false],
    ['{ echRoutes: true }', true],
    ['{ innerSni: true }', true],
  ] as const) {
    it(`log ${log}: the ECH-only service is ${shows ? 'named' : 'shown as (ech), no address or error text'}`, async () => {
      const deadPort = await freePort();
      const g = await startGateway(yaml(deadPort, log));
      try {
        const down = () => g.logs.filter((l) => l.msg.startsWith('backend server unhealthy'));
        await until('both services reported down', () => down().length >= 2);
        const lines = down();
        // The shared service is reached by a plain router: named in every case.
        assert.ok(
          lines.some((l) => l.service === 'shared_origin' && l.server === `127.0.0.1:${deadPort}`),
          JSON.stringify(lines),
        );
        const hidden = lines.find((l) => l.service !== 'shared_origin')!;
        if (shows) {
          assert.equal(hidden.service, 'secret_origin');
          assert.equal(hidden.server, `127.0.0.1:${deadPort}`);
          assert.match(String(hidden.err), new RegExp(String(deadPort)));
        } else {
          assert.equal(hidden.service, '(ech)');
          assert.equal(hidden.server, undefined);
          assert.equal(hidden.err, 'ECONNREFUSED');
          const text = JSON.stringify(g.logs.filter((l) => l !== lines.find((x) => x.service === 'shared_origin')));
          assert.doesNotMatch(text, /secret_origin/);
        }
      } finally {
        await g.close();
      }
    });
  }
});
