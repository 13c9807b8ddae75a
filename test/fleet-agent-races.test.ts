/**
 * The fleet agent's reads, watches and record writes against one another
 * (src/fleet/agent.ts): each case is a change that fell between two of them
 * and reached the instance late or never.
 *
 * - A key put while the watches are being created: the first read waits for
 *   them (bounded by leaseTtl, so etcd down at start does not hold `serve`
 *   up), else the key reached the instance only at the next resync and it
 *   answered ready meanwhile (the fleet end-to-end test once saw an instance
 *   ready, holding nothing, while the others' DNS named the first key).
 * - A watch that etcd answers only after the first read began (etcd slow or
 *   down at start, past start()'s leaseTtl bound) begins at a later revision
 *   than that read: a key put in between was in neither.
 * - A watch etcd cancels (its start revision compacted away after an outage,
 *   a role changed) is dropped by etcd3 after an 'error': nothing more came.
 * - sync() while a read was in flight returned that read: the leader's
 *   syncLocal() right after its flip saw the folder without the flip.
 * - Two record writes in flight landing in the other order left the older
 *   record in etcd, and nothing wrote the newer one again.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import pino from 'pino';
import { STORE_DEFAULTS } from '../src/config/store.js';
import { FleetAgent } from '../src/fleet/agent.js';
import { EtcdKeyStore } from '../src/fleet/etcd-store.js';
import { type InstanceRecord, K } from '../src/fleet/records.js';
import { makeKey } from '../src/keys/manager.js';
import { sealPrivateKey } from '../src/keys/sealed.js';
import { sleep } from './helpers.js';

const PREFIX = 'echgate/';
const KEK = new Uint8Array(32).fill(5);

interface FakeOptions {
  /** How long etcd takes to answer a watch's creation. */
  watchDelayMs?: number;
  /** How long a read of keys/ takes to come back (its snapshot is taken when it is sent). */
  readDelayMs?: number;
  /** Each record write: how long until etcd stores it, and how long until its answer comes back. */
  putTiming?: (n: number) => { storeMs: number; answerMs: number };
}

/**
 * The etcd3 calls the agent makes, from a Map. A watch, like etcd's, sees
 * only puts made after etcd answered its creation; `cancel()` is etcd
 * cancelling every watch (etcd3 emits 'error' and forgets the watcher).
 */
function fakeEtcd(o: FakeOptions = {}) {
  const kv = new Map<string, string>();
  let watchers: { prefix: string; w: EventEmitter }[] = [];
  let created = 0;
  let puts = 0;
  const lease = () => ({
    on() {},
    revoked: () => false,
    grant: () => Promise.resolve('1'),
    revoke: () => Promise.resolve(),
    put: (key: string) => ({
      value: (v: string) => {
        const t = o.putTiming?.(puts++) ?? { storeMs: 0, answerMs: 0 };
        setTimeout(() => kv.set(key, v), t.storeMs);
        return sleep(t.answerMs);
      },
    }),
  });
  const builder = (prefix: string) => ({
    create: () =>
      new Promise((resolve) => {
        setTimeout(() => {
          const w = new EventEmitter();
          const watcher = Object.assign(w, {
            cancel: async () => {
              watchers = watchers.filter((x) => x.w !== w);
            },
          });
          watchers.push({ prefix, w });
          created++;
          resolve(watcher);
        }, o.watchDelayMs ?? 0).unref();
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
          if (o.readDelayMs && p === PREFIX + K.keys) await sleep(o.readDelayMs);
          return snapshot;
        },
      }),
    }),
  };
  return {
    client: client as unknown as Etcd3,
    kv,
    watchCount: () => watchers.length,
    created: () => created,
    /** A put as etcd makes it: stored, then every live watch covering the key is told. */
    put(key: string, v: string) {
      kv.set(key, v);
      for (const { prefix, w } of watchers) if (key.startsWith(prefix)) w.emit('put', { key, value: v });
    },
    /** etcd cancels every watch (as after a compaction past their revision): etcd3 emits 'error' and drops them. */
    cancelWatches() {
      const was = watchers;
      watchers = [];
      for (const { w } of was) w.emit('error', new Error('etcdserver: mvcc: required revision has been compacted'));
    },
  };
}

function sealedRecord(configId: number, state: 'active' | 'staged' = 'active'): string {
  const k = makeKey(new Set(), { publicName: 'fleet.example.test', configId });
  return JSON.stringify({ meta: { ...k.meta, state }, echConfigList: Buffer.from(k.echConfigList).toString('base64'), sealed: sealPrivateKey(KEK, configId, k.echConfigList, k.privateKey) });
}

function agentOn(e: ReturnType<typeof fakeEtcd>, o: { leaseTtlMs?: number } = {}) {
  return new FleetAgent({
    id: 'i2',
    cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS, leaseTtlMs: o.leaseTtlMs ?? STORE_DEFAULTS.leaseTtlMs },
    client: e.client,
    store: new EtcdKeyStore(e.client, PREFIX, KEK),
    log: pino({ level: 'silent' }),
    hooks: { reloadKeys: () => [], addresses: () => [], configRevision: () => 'r1' },
    // No re-read within the test: only reads the agent makes for the case under test can bring the key.
    resyncMs: 3_600_000,
  });
}

const until = async (fn: () => boolean, ms: number) => {
  for (const end = Date.now() + ms; !fn() && Date.now() < end; ) await sleep(20);
};
const ids = (a: FleetAgent) => a.fleetKeys.map((k) => k.configId);

describe('fleet agent: changes between reads, watches and writes', () => {
  it('a key put while the watches are being created is in the first read: the instance is not ready without it', async () => {
    // The leader's first key lands 20 ms in, while the watches take 60 ms to begin.
    const e = fakeEtcd({ watchDelayMs: 60 });
    setTimeout(() => e.put(PREFIX + K.key(204), sealedRecord(204)), 20);
    const agent = agentOn(e);
    try {
      await agent.start();
      assert.deepEqual(ids(agent), [204]);
      const r = agent.readiness();
      assert.equal(r.ready, false, 'holds nothing while the fleet has config_id 204');
      assert.match(r.reason, /does not hold config_id 204/);
    } finally {
      await agent.stop();
    }
  });

  it('a key put after the first read reaches the instance through its watch', async () => {
    const e = fakeEtcd({ watchDelayMs: 30 });
    const agent = agentOn(e);
    try {
      await agent.start();
      assert.deepEqual(ids(agent), []);
      e.put(PREFIX + K.key(7), sealedRecord(7));
      await until(() => ids(agent).length > 0, 1_000);
      assert.deepEqual(ids(agent), [7]);
    } finally {
      await agent.stop();
    }
  });

  it('etcd slow to start the watches: the first read waits no longer than leaseTtl', async () => {
    const e = fakeEtcd({ watchDelayMs: 10_000 });
    const agent = agentOn(e, { leaseTtlMs: 300 });
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

  it('a watch etcd answers after the first read began is followed by a read: a key put in between arrives', async () => {
    // leaseTtl 200 ms bounds the wait for the watches; etcd answers them at 500 ms; the key lands at 350 ms,
    // after the first read and before the watches begin.
    const e = fakeEtcd({ watchDelayMs: 500 });
    const agent = agentOn(e, { leaseTtlMs: 200 });
    try {
      setTimeout(() => e.put(PREFIX + K.key(31), sealedRecord(31)), 350);
      await agent.start();
      assert.deepEqual(ids(agent), [], 'the first read came before the key');
      await until(() => ids(agent).length > 0, 2_000);
      assert.equal(e.created(), 2);
      assert.deepEqual(ids(agent), [31]);
      assert.equal(agent.readiness().ready, false, 'holds nothing while the fleet has config_id 31');
    } finally {
      await agent.stop();
    }
  });

  it('a watch etcd cancels is created again and followed by a read: a key put after the cancel arrives', async () => {
    const e = fakeEtcd({ watchDelayMs: 10 });
    const agent = agentOn(e);
    try {
      await agent.start();
      assert.equal(e.watchCount(), 2);
      e.cancelWatches();
      e.put(PREFIX + K.key(32), sealedRecord(32)); // told to no watch
      await until(() => ids(agent).length > 0, 3_000);
      assert.deepEqual(ids(agent), [32]);
      assert.equal(e.watchCount(), 2, 'both watches again');
      e.put(PREFIX + K.key(33), sealedRecord(33)); // through the new watch
      await until(() => ids(agent).length > 1, 2_000);
      assert.deepEqual(ids(agent), [32, 33]);
    } finally {
      await agent.stop();
    }
  });

  it('sync() while a read is in flight settles after a read made after the call (the leader flips, then syncs its copy)', async () => {
    const e = fakeEtcd({ readDelayMs: 150 });
    e.put(PREFIX + K.key(40), sealedRecord(40, 'staged'));
    const agent = agentOn(e);
    try {
      await agent.start();
      const inFlight = agent.sync(); // a watch event's read, sent before the flip
      await sleep(20);
      e.kv.set(PREFIX + K.key(40), sealedRecord(40, 'active')); // the flip (its watch event not yet handled)
      await agent.sync(); // the leader's syncLocal()
      assert.equal(agent.fleetKeys.find((k) => k.configId === 40)?.state, 'active');
      await inFlight;
    } finally {
      await agent.stop();
    }
  });

  it('record writes one at a time: a newer record is never left behind an older one stored later', async () => {
    // etcd3 sends each put to a host of its choosing: a put answered by a lagging member is answered after it
    // was stored. Write A (the revision changed) is stored and answered at 200 ms; write B (config_id 50 now
    // held), made while A is in flight, is stored at once and answered at 250 ms. Both in flight together
    // leave A in etcd while the agent believes B went out last, and it never writes B again.
    const timings: { storeMs: number; answerMs: number }[] = [];
    const e = fakeEtcd({ putTiming: () => timings.shift() ?? { storeMs: 0, answerMs: 0 } });
    let held: number[] = [];
    let revision = 'r1';
    const agent = new FleetAgent({
      id: 'i2',
      cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
      client: e.client,
      store: new EtcdKeyStore(e.client, PREFIX, KEK),
      log: pino({ level: 'silent' }),
      hooks: { reloadKeys: () => held, addresses: () => [], configRevision: () => revision },
      resyncMs: 3_600_000,
    });
    try {
      await agent.start();
      timings.push({ storeMs: 200, answerMs: 200 }, { storeMs: 0, answerMs: 250 });
      revision = 'r2';
      agent.configChanged(false); // write A
      held = [50];
      e.put(PREFIX + K.key(50), sealedRecord(50)); // its watch event: read, write B
      await sleep(1_500); // past the agent's once-a-second look at its record
      const rec = JSON.parse(e.kv.get(PREFIX + K.instance('i2')) ?? '{}') as InstanceRecord;
      assert.deepEqual(rec.keys, [50], 'the record in etcd lists the key this instance holds');
      assert.equal(rec.configRevision, 'r2');
    } finally {
      await agent.stop();
    }
  });
});
