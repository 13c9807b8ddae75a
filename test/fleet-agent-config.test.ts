/**
 * The fleet agent and the configuration (docs/fleet.md "GET /ready", issue
 * #9): driven against an in-memory stand-in for etcd. The other instances'
 * records are read only while this instance's last reload was refused (a
 * grace after the refusal, then each resync period), never while it runs the
 * newest configuration it was told of, and never without providers.etcd;
 * readiness follows configBehind() (records.ts) and the record says so.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import pino from 'pino';
import { STORE_DEFAULTS } from '../src/config/store.js';
import { FleetAgent } from '../src/fleet/agent.js';
import { EtcdKeyStore } from '../src/fleet/etcd-store.js';
import { type ConfigInForce, type InstanceRecord, K } from '../src/fleet/records.js';
import { sleep } from './helpers.js';

const PREFIX = 'echgate/';

/** The etcd3 calls the agent makes, from a Map; counts the range reads of instances/. */
function fakeEtcd() {
  const kv = new Map<string, string>();
  const count = { instanceReads: 0 };
  const lease = () => ({
    on() {},
    revoked: () => false,
    grant: () => Promise.resolve('1'),
    revoke: () => Promise.resolve(),
    put: (key: string) => ({ value: async (v: string) => void kv.set(key, v) }),
  });
  const watchBuilder = { prefix: () => watchBuilder, key: () => watchBuilder, create: () => Promise.reject(new Error('no watch in the fake')) };
  const client = {
    lease,
    watch: () => watchBuilder,
    get: (key: string) => ({ string: async () => kv.get(key) ?? null }),
    getAll: () => ({
      prefix: (p: string) => ({
        strings: async () => {
          if (p === PREFIX + K.instances) count.instanceReads++;
          return Object.fromEntries([...kv].filter(([k]) => k.startsWith(p)));
        },
      }),
    }),
  };
  return { client: client as unknown as Etcd3, kv, count };
}

const peer = (id: string, config: ConfigInForce): InstanceRecord => ({ id, addresses: [], keys: [], configRevision: String(config.revision), config, ready: true, started: new Date().toISOString(), updated: new Date().toISOString() });

function agentWith(e: ReturnType<typeof fakeEtcd>, mine: () => ConfigInForce | undefined) {
  return new FleetAgent({
    id: 'two',
    cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
    client: e.client,
    store: new EtcdKeyStore(e.client, PREFIX, new Uint8Array(32)),
    log: pino({ level: 'silent' }),
    hooks: { reloadKeys: () => [], addresses: () => [], configRevision: () => String(mine()?.revision ?? 'abc'), configInForce: mine },
    resyncMs: 150,
    configGraceMs: 100,
  });
}

describe('fleet agent: readiness and the configuration the other instances run', () => {
  it('a refused reload while another ready instance runs a newer configuration: not ready after the grace; applied: ready, reads stop', async () => {
    const e = fakeEtcd();
    const old: ConfigInForce = { rootKey: 'traefik', revision: 100, digest: 'd-old', since: new Date().toISOString() };
    let mine: ConfigInForce = old;
    e.kv.set(PREFIX + K.instance('one'), JSON.stringify(peer('one', { rootKey: 'traefik', revision: 112, digest: 'd-new', since: new Date(Date.now() - 60_000).toISOString() })));
    const agent = agentWith(e, () => mine);
    try {
      await agent.start();
      // Running the newest it knows of: nothing read, ready.
      await sleep(400);
      assert.equal(e.count.instanceReads, 0, 'no read of instances/ while nothing was refused');
      assert.equal(agent.readiness().ready, true);

      agent.configChanged(true);
      for (let i = 0; i < 40 && agent.readiness().ready; i++) await sleep(50);
      const r = agent.readiness();
      assert.equal(r.ready, false);
      assert.match(r.reason, /^runs configuration revision 100, instance one runs 112 /);
      for (let i = 0; i < 40 && JSON.parse(e.kv.get(PREFIX + K.instance('two')) ?? '{}').ready !== false; i++) await sleep(50);
      const rec = JSON.parse(e.kv.get(PREFIX + K.instance('two'))!) as InstanceRecord;
      assert.equal(rec.ready, false);
      assert.deepEqual(rec.config, old, 'the record carries the configuration it runs');
      // While the refusal stands, read again each resync period (bounded: not on every tick).
      const n = e.count.instanceReads;
      await sleep(500);
      assert.ok(e.count.instanceReads > n && e.count.instanceReads <= n + 5, `reads while refused: ${n} → ${e.count.instanceReads}`);

      // Applied the newer one: ready at once, and no more reads.
      mine = { rootKey: 'traefik', revision: 113, digest: 'd-new', since: new Date().toISOString() };
      agent.configChanged(false);
      assert.equal(agent.readiness().ready, true, agent.readiness().reason);
      await sleep(50);
      const m = e.count.instanceReads;
      await sleep(500);
      assert.equal(e.count.instanceReads, m, 'no read of instances/ once applied');
    } finally {
      await agent.stop();
    }
  });

  it('every instance refused it (the others run the same keys): stays ready', async () => {
    const e = fakeEtcd();
    const mine: ConfigInForce = { rootKey: 'traefik', revision: 100, digest: 'd-old', since: new Date().toISOString() };
    e.kv.set(PREFIX + K.instance('one'), JSON.stringify(peer('one', { ...mine, revision: 104, since: new Date(Date.now() - 60_000).toISOString() })));
    const agent = agentWith(e, () => mine);
    try {
      await agent.start();
      agent.configChanged(true);
      for (let i = 0; i < 40 && e.count.instanceReads === 0; i++) await sleep(50);
      assert.ok(e.count.instanceReads > 0);
      assert.equal(agent.readiness().ready, true, agent.readiness().reason);
    } finally {
      await agent.stop();
    }
  });

  it('a configuration file per instance (no etcd configuration in force): never reads instances/, stays ready', async () => {
    const e = fakeEtcd();
    e.kv.set(PREFIX + K.instance('one'), JSON.stringify(peer('one', { rootKey: 'traefik', revision: 112, digest: 'd-new', since: new Date(0).toISOString() })));
    const agent = agentWith(e, () => undefined);
    try {
      await agent.start();
      agent.configChanged(true);
      await sleep(500);
      assert.equal(e.count.instanceReads, 0);
      assert.equal(agent.readiness().ready, true);
    } finally {
      await agent.stop();
    }
  });
});
