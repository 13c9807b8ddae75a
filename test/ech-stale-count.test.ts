/**
 * A stale ECH key is not GREASE (audit s12 gap 4): a hello whose config_id
 * belongs to a key retired recently (the folder keeps retired metadata for a
 * day, keys/manager.ts RETIRED_KEEP_MS) is counted echgate_ech_total
 * {result="stale"}; an id no key ever had stays grease; and the access line's
 * `ech` says the same as the metric. Both are rejected and answered with
 * retry_configs alike (RFC 9849 §7.1).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectOnce } from '../src/cli/connect.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList, retireKey } from '../src/keys/manager.js';
import { attachKeys, caAndLeaf, sleep, startGateway } from './helpers.js';

const W = mkdtempSync(join(tmpdir(), 'echgate-stale-'));
caAndLeaf(W, ['public.example.test', 'secret.example.test']);
const keysDir = join(W, 'keys');
const otherDir = join(W, 'other');
mkdirSync(keysDir);
mkdirSync(otherDir);

describe('echgate_ech_total: stale (a recently retired config_id) apart from grease (an id never had)', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let ring: Keyring;
  let app: net.Server;
  let staleList: Uint8Array;
  let unknownList: Uint8Array;
  before(async () => {
    const old = generateKey(keysDir, { publicName: 'public.example.test' });
    staleList = publishedList(listKeys(keysDir).keys)!;
    generateKey(keysDir, { publicName: 'public.example.test' });
    retireKey(keysDir, old.configId);
    // A key from elsewhere under an id this folder never used: what GREASE's random id looks like to the server.
    const used = new Set(listKeys(keysDir).keys.map((k) => k.meta.configId));
    let id = 0;
    while (used.has(id)) id++;
    generateKey(otherDir, { publicName: 'public.example.test', configId: id });
    unknownList = publishedList(listKeys(otherDir).keys)!;
    app = net.createServer((s) => s.on('error', () => {}).end('ok'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    g = await startGateway(`
log: { access: true }
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: app, tls: {} }
  services: { app: { loadBalancer: { servers: [{ address: "127.0.0.1:${(app.address() as net.AddressInfo).port}" }] } } }
`);
    ring = attachKeys(g.gw, keysDir);
  });
  after(async () => {
    ring?.close();
    await g?.close();
    app?.close();
  });
  const count = (result: string) => g.gw.metrics.ech.get({ entrypoint: 'websecure', result });
  const accessEch = async (n: number) => {
    for (let i = 0; i < 80 && g.logs.filter((l) => l.msg === 'access').length < n; i++) await sleep(25);
    return (g.logs.filter((l) => l.msg === 'access')[n - 1] as unknown as Record<string, unknown>).ech;
  };

  it('a retired key\'s config_id: rejected with retry_configs, counted stale, and the access line says stale', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: staleList });
    assert.equal(r.ech, 'rejected');
    assert.equal(count('stale'), 1);
    assert.equal(count('grease'), 0);
    assert.equal(await accessEch(1), 'stale');
  });

  it('a config_id no key of the folder had: grease, on the metric and the access line', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'secret.example.test', ech: unknownList });
    assert.equal(r.ech, 'rejected');
    assert.equal(count('grease'), 1);
    assert.equal(count('stale'), 1);
    assert.equal(await accessEch(2), 'grease');
  });
});
