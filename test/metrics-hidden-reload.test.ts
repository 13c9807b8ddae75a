/**
 * A reload that turns log.echRoutes off takes every metric series naming an
 * ECH-only router or service out of /metrics at once (audit s12 gap 9: they
 * stayed until a restart, 29 series in the audit's lab). A router any client
 * reaches without ECH keeps its series.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectOnce } from '../src/cli/connect.js';
import { parseConfigText } from '../src/config/load.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { Metrics } from '../src/proxy/metrics.js';
import { attachKeys, caAndLeaf, sleep, startGateway } from './helpers.js';

const W = mkdtempSync(join(tmpdir(), 'echgate-hidden-reload-'));
caAndLeaf(W, ['public.example.test', 'secret.example.test', 'down.example.test', 'www.example.test']);
const keysDir = join(W, 'keys');
mkdirSync(keysDir);
generateKey(keysDir, { publicName: 'public.example.test' });

describe('log.echRoutes turned off by a reload: the series naming hidden routes go', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let ring: Keyring;
  let app: net.Server;
  let yaml: (echRoutes: boolean) => string;
  before(async () => {
    app = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end('ok'));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    const appPort = (app.address() as net.AddressInfo).port;
    yaml = (echRoutes) => `
log: { echRoutes: ${echRoutes}, innerSni: ${echRoutes} }
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: secretsvc, tls: {} }
    hiddendown: { rule: "HostSNI(\`down.example.test\`)", requireECH: true, service: downsvc, tls: {} }
    www: { rule: "HostSNI(\`www.example.test\`)", service: websvc, tls: {} }
  services:
    secretsvc: { loadBalancer: { servers: [{ address: "127.0.0.1:${appPort}" }] } }
    websvc: { loadBalancer: { servers: [{ address: "127.0.0.1:${appPort}" }] } }
    downsvc: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } }
`;
    g = await startGateway(yaml(true));
    ring = attachKeys(g.gw, keysDir);
  });
  after(async () => {
    ring?.close();
    await g?.close();
    app?.close();
  });
  const ech = () => publishedList(listKeys(keysDir).keys)!;
  const settle = async () => {
    for (let i = 0; i < 40 && g.gw.metrics.open.get({ entrypoint: 'websecure' }) !== 0; i++) await sleep(25);
  };

  it('named while echRoutes is on; gone after the reload that turns it off; (ech) from then on', async () => {
    assert.equal((await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: ech(), send: 'hi' })).ech, 'accepted');
    await connectOnce('127.0.0.1', g.port(), { sni: 'down.example.test', ech: ech(), send: 'hi' });
    await connectOnce('127.0.0.1', g.port(), { sni: 'www.example.test', send: 'hi' });
    await settle();
    const on = g.gw.metrics.render();
    assert.match(on, /router="hidden"/);
    assert.match(on, /service="downsvc"/);

    await g.gw.apply(parseConfigText(yaml(false), 'test.yml'));
    const off = g.gw.metrics.render();
    assert.doesNotMatch(off, /router="hidden"|router="hiddendown"|service="downsvc"|service="secretsvc"/);
    assert.match(off, /echgate_connections_total\{entrypoint="websecure",outcome="relayed",router="www"\} 1/, 'a public router keeps its series');

    assert.equal((await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: ech(), send: 'hi' })).ech, 'accepted');
    await settle();
    const after = g.gw.metrics.render();
    assert.doesNotMatch(after, /router="hidden"/);
    assert.match(after, /echgate_connections_total\{entrypoint="websecure",outcome="relayed",router="\(ech\)"\} 1/);
  });

  it('forgetNames matches a whole label value only, escaped values included', () => {
    const m = new Metrics();
    m.connections.inc({ entrypoint: 'e', router: 'a', outcome: 'relayed' });
    m.connections.inc({ entrypoint: 'e', router: 'ab', outcome: 'relayed' });
    m.connections.inc({ entrypoint: 'e', router: 'x"y', outcome: 'relayed' });
    m.duration.observe({ entrypoint: 'e', router: 'a' }, 1);
    m.backendErrors.inc({ service: 'a', kind: 'connect' });
    assert.equal(m.forgetNames(new Set(['a', 'x"y']), new Set()), 3);
    assert.equal(m.connections.get({ entrypoint: 'e', router: 'ab', outcome: 'relayed' }), 1);
    assert.equal(m.backendErrors.get({ service: 'a', kind: 'connect' }), 1, 'a router name does not remove a service of the same name');
  });
});
