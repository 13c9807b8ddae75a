/**
 * The fleet agent's first read and its watches (src/fleet/agent.ts start()):
 * a key put after the first read but before the watches began would reach the
 * instance only at the next full re-read, and meanwhile it would answer ready
 * from a view without that key (the fleet end-to-end test once saw an
 * instance ready, holding nothing, while the others' DNS named the fleet's
 * first key). The first read therefore waits for the watches, bounded by
 * leaseTtl so that etcd down at start does not hold `serve` up.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import pino from 'pino';
import { STORE_DEFAULTS } from '../src/config/store.js';
import { FleetAgent } from '../src/fleet/agent.js';
import { EtcdKeyStore } from '../src/fleet/etcd-store.js';
import { K } from '../src/fleet/records.js';
import { makeKey } from '../src/keys/manager.js';
import { sealPrivateKey } from '../src/keys/sealed.js';
import { sleep } from './helpers.js';

const PREFIX = 'echgate/';
const KEK = new Uint8Array(32).fill(5);

/**
 * The etcd3 calls the agent makes, from a Map. A watch, like etcd's, sees only
 * puts made after it was created; `watchDelayMs` is how long creating one
 * takes (a gRPC round trip), and `onFirstRead` runs right after the first
 * read of keys/ has been answered.
 */
function fakeEtcd(o: { watchDelayMs: number; onFirstRead?: () => void }) {
  const kv = new Map<string, string>();
  const watchers: { prefix: string; put: () => void }[] = [];
  let reads = 0;
  const lease = () => ({
    on() {},
    revoked: () => false,
    grant: () => Promise.resolve('1'),
    revoke: () => Promise.resolve(),
    put: (key: string) => ({ value: async (v: string) => void kv.set(key, v) }),
  });
  const builder = (prefix: string) => ({
    create: () =>
      new Promise((resolve) => {
        setTimeout(() => {
          const handlers = new Map<string, () => void>();
          watchers.push({ prefix, put: () => handlers.get('put')?.() });
          resolve({ on: (ev: string, f: () => void) => handlers.set(ev, f), cancel: async () => {} });
        }, o.watchDelayMs).unref();
      }),
  });
  const client = {
    lease,
    watch: () => ({ prefix: builder, key: builder }),
    get: (key: string) => ({ string: async () => kv.get(key) ?? null }),
    getAll: () => ({
      prefix: (p: string) => ({
        strings: async () => {
          const snapshot = Object.fromEntries([...kv].filter(([k]) => k.startsWith(p)));
          if (p === PREFIX + K.keys && reads++ === 0) setImmediate(() => o.onFirstRead?.());
          return snapshot;
        },
      }),
    }),
  };
  /** A put as etcd makes it: stored, then every watch created by now and covering the key is told. */
  const put = (key: string, v: string) => {
    kv.set(key, v);
    for (const w of watchers) if (key.startsWith(w.prefix)) w.put();
  };
  return { client: client as unknown as Etcd3, kv, put };
}

function sealedRecord(configId: number): string {
  const k = makeKey(new Set(), { publicName: 'fleet.example.test', configId });
  return JSON.stringify({ meta: { ...k.meta, state: 'active' }, echConfigList: Buffer.from(k.echConfigList).toString('base64'), sealed: sealPrivateKey(KEK, configId, k.echConfigList, k.privateKey) });
}

function agentOn(e: ReturnType<typeof fakeEtcd>, leaseTtlMs = STORE_DEFAULTS.leaseTtlMs) {
  return new FleetAgent({
    id: 'i2',
    cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS, leaseTtlMs },
    client: e.client,
    store: new EtcdKeyStore(e.client, PREFIX, KEK),
    log: pino({ level: 'silent' }),
    hooks: { reloadKeys: () => [], addresses: () => [], configRevision: () => 'r1' },
    // No re-read within the test: only the first read and the watches can bring the key.
    resyncMs: 3_600_000,
  });
}

describe('fleet agent: the first read and the watches', () => {
  it('a key put while the watches are being created is in the first read: the instance is not ready without it', async () => {
    // The leader's first key lands 20 ms in, while the watches take 60 ms to begin.
    const e = fakeEtcd({ watchDelayMs: 60 });
    setTimeout(() => e.put(PREFIX + K.key(204), sealedRecord(204)), 20);
    const agent = agentOn(e);
    try {
      await agent.start();
      assert.deepEqual(
        agent.fleetKeys.map((k) => k.configId),
        [204],
      );
      const r = agent.readiness();
      assert.equal(r.ready, false, 'holds nothing while the fleet has config_id 204');
      assert.match(r.reason, /does not hold config_id 204/);
    } finally {
      await agent.stop();
    }
  });

  it('a key put after the first read reaches the instance through its watch', async () => {
    let e: ReturnType<typeof fakeEtcd>;
    e = fakeEtcd({ watchDelayMs: 30, onFirstRead: () => e.put(PREFIX + K.key(7), sealedRecord(7)) });
    const agent = agentOn(e);
    try {
      await agent.start();
      for (let i = 0; i < 40 && !agent.fleetKeys.some((k) => k.configId === 7); i++) await sleep(25);
      assert.deepEqual(
        agent.fleetKeys.map((k) => k.configId),
        [7],
      );
    } finally {
      await agent.stop();
    }
  });

  it('etcd slow to start the watches: the first read waits no longer than leaseTtl', async () => {
    const e = fakeEtcd({ watchDelayMs: 10_000 });
    const agent = agentOn(e, 300);
    try {
      const t0 = Date.now();
      await agent.start();
      const took = Date.now() - t0;
      assert.ok(took >= 250 && took < 3_000, `start took ${took} ms`);
      assert.equal(agent.synced, true);
    } finally {
      await agent.stop();
    }
  });
});
