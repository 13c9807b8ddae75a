/**
 * A fleet's rotation reuses config_ids as a key folder does (src/keys/manager.ts
 * idUse; docs/fleet.md "Key lifecycle"): a retired id comes back once its rest
 * (ID_REUSE_MARGIN_MS) is over, written over its retired record in etcd only
 * if that record is still what the leader read, never over a live key; and
 * retired records a day old (RETIRED_KEEP_MS) are deleted by the leader, so
 * etcd does not gain a record per rotation for ever.
 *
 * etcd is the in-memory stand-in below (the transactions etcd3 builds, on a
 * Map: Version/Create/Value compares, puts and deletes, all or nothing), as in
 * fleet-leader-fence.test.ts; the clock is injected (LeaderOptions.now).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import pino from 'pino';
import { STORE_DEFAULTS } from '../src/config/store.js';
import type { EchgateError } from '../src/errors.js';
import { FleetAgent } from '../src/fleet/agent.js';
import { EtcdKeyStore } from '../src/fleet/etcd-store.js';
import { FleetLeader } from '../src/fleet/leader.js';
import { configDigest, decidePublish, type InstanceRecord, K, type KeyRecordJson, type RotationRecord } from '../src/fleet/records.js';
import { ID_REUSE_MARGIN_MS, makeKey, RETIRED_KEEP_MS } from '../src/keys/manager.js';
import { sealPrivateKey } from '../src/keys/sealed.js';
import type { KeyMeta } from '../src/keys/store.js';

const PREFIX = 'echgate/';
const KEK = new Uint8Array(32).fill(5);
const FENCE = `${PREFIX}leader/694d8a`;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const MIN = 60_000;
const HOUR = 60 * MIN;
const NAME = 'fleet.example.test';

type Op = { key: string; v: string } | { del: string };
/** etcd's transactions on a Map: Version == 0 (absent), Version/Create > 0 (present), Value == text; `beforeCommit` runs between a transaction's build and its evaluation. */
function txnEtcd() {
  const kv = new Map<string, string>();
  const st = { beforeCommit: undefined as undefined | (() => void) };
  const holds = ([key, target, op, value]: unknown[]): boolean => {
    const has = kv.has(key as string);
    if (target === 'Version' && op === '==' && value === 0) return !has;
    if ((target === 'Version' || target === 'Create') && op === '>' && value === 0) return has;
    if (target === 'Value' && op === '==') return kv.get(key as string) === value;
    throw new Error(`compare not in the stand-in: ${target} ${op} ${value}`);
  };
  const txn = (conds: unknown[][]) => ({
    and: (...c: unknown[]) => txn([...conds, c]),
    // biome-ignore lint/suspicious/noThenProperty: etcd3's transaction builder names this step then()
    then: (...ops: Op[]) => ({
      commit: async () => {
        const f = st.beforeCommit;
        st.beforeCommit = undefined;
        f?.();
        const ok = conds.every(holds);
        if (ok) for (const o of ops) 'del' in o ? kv.delete(o.del) : kv.set(o.key, o.v);
        return { succeeded: ok };
      },
    }),
  });
  const under = (p: string) => [...kv].filter(([k]) => k.startsWith(p));
  const client = {
    if: (...c: unknown[]) => txn([c]),
    put: (key: string) => ({ value: (v: string) => ({ key, v, exec: async () => void kv.set(key, v) }) }),
    delete: () => ({ key: (key: string): Op => ({ del: key }) }),
    get: (key: string) => ({ string: async () => kv.get(key) ?? null }),
    getAll: () => ({
      prefix: (p: string) => ({
        strings: async () => Object.fromEntries(under(p)),
        keys: async () => under(p).map(([k]) => k),
      }),
    }),
  };
  return { client: client as unknown as Etcd3, kv, st };
}

const live = (meta: KeyMeta) => {
  const k = makeKey(new Set(), { publicName: NAME, configId: meta.configId });
  return JSON.stringify({ meta, echConfigList: Buffer.from(k.echConfigList).toString('base64'), sealed: sealPrivateKey(KEK, meta.configId, k.echConfigList, k.privateKey) });
};
const retired = (configId: number, at: number) => JSON.stringify({ meta: { configId, publicName: NAME, state: 'retired', created: new Date(T0 - 48 * HOUR).toISOString(), notAfter: new Date(at).toISOString() } });
const code = async (p: Promise<unknown>) => p.then(
  () => 'no error',
  (e: EchgateError) => e.code,
);

function fleet(everyMs: number, graceMs: number) {
  const e = txnEtcd();
  const clock = { now: T0 };
  e.kv.set(PREFIX + K.key(21), live({ configId: 21, publicName: NAME, state: 'active', created: new Date(T0).toISOString() }));
  e.kv.set(FENCE, 'i1');
  const store = new EtcdKeyStore(e.client, PREFIX, KEK);
  const leader = new FleetLeader({
    id: 'i1',
    cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
    rotation: { everyMs, graceMs, publish: 'embedded', publicName: NAME },
    client: e.client,
    store,
    log: pino({ level: 'silent' }),
    syncLocal: async () => {},
    publish: async () => {},
    now: () => clock.now,
  });
  const l = leader as unknown as { fence?: string; leading: boolean };
  l.fence = FENCE;
  l.leading = true;
  const records = () => [...e.kv].filter(([k]) => k.startsWith(PREFIX + K.keys)).map(([, v]) => JSON.parse(v) as KeyRecordJson);
  const rotation = () => JSON.parse(e.kv.get(PREFIX + K.rotation) ?? 'null') as RotationRecord | null;
  return { e, clock, store, leader, records, rotation };
}

describe('fleet: config_ids come back after their rest (etcd store, injected clock)', () => {
  it('rotation every 5 min (grace 10 min) runs 600 rotations, past 256: each new key takes a fresh id or one retired at least the rest ago', async () => {
    const f = fleet(5 * MIN, 10 * MIN);
    const reused: number[] = [];
    for (let i = 0; i < 600; i++) {
      f.clock.now = T0 + (i + 1) * 5 * MIN;
      const before = new Map(f.records().map((r) => [r.meta.configId, r.meta]));
      await f.leader.step(); // retire what is due, stage the new key
      const rot = f.rotation();
      assert.equal(rot?.step, 'staged', `rotation ${i + 1} staged`);
      assert.equal(rot.seq, i + 1);
      const was = before.get(rot.configId);
      if (was) {
        assert.equal(was.state, 'retired', `config_id ${rot.configId} was ${was.state}: a live key overwritten`);
        assert.ok(Date.parse(was.notAfter!) + ID_REUSE_MARGIN_MS <= f.clock.now, `config_id ${rot.configId} reused inside its rest`);
        reused.push(rot.configId);
      }
      await f.leader.step(); // every instance holds it (none registered): flip and publish
      assert.equal(f.rotation()?.step, 'done');
      assert.equal(f.records().filter((r) => r.meta.state === 'active').length, 1);
    }
    assert.ok(reused.length >= 600 - 256, `${reused.length} ids reused`);
    assert.ok(f.records().length <= 256);
  });

  it('hourly rotation for 3 days: retired records a day old are deleted, so etcd holds the keys in their window and a day of retirements', async () => {
    const f = fleet(HOUR, 2 * HOUR);
    let most = 0;
    for (let i = 0; i < 72; i++) {
      f.clock.now = T0 + (i + 1) * HOUR;
      await f.leader.step();
      await f.leader.step();
      assert.equal(f.rotation()?.step, 'done');
      for (const r of f.records()) {
        if (r.meta.state === 'retired') assert.ok(f.clock.now - Date.parse(r.meta.notAfter!) < RETIRED_KEEP_MS + HOUR, `config_id ${r.meta.configId} retired at ${r.meta.notAfter} still in etcd at ${new Date(f.clock.now).toISOString()}`);
      }
      most = Math.max(most, f.records().length);
    }
    // 1 active + 2 decrypt-only + 24 h of retirements (+1 for the step that retires before it forgets).
    assert.ok(most <= 28, `etcd held ${most} key records`);
  });
});

describe('EtcdKeyStore: a reused id never overwrites a live key', () => {
  const setup = () => {
    const e = txnEtcd();
    e.kv.set(FENCE, 'i1');
    return { e, store: new EtcdKeyStore(e.client, PREFIX, KEK), key: PREFIX + K.key(7) };
  };
  const now = T0 + 10 * HOUR;
  const fresh = () => makeKey(new Set(), { publicName: NAME, configId: 7, state: 'staged', now: new Date(now) });

  it('over a retired record whose rest is over: replaced', async () => {
    const { e, store, key } = setup();
    e.kv.set(key, retired(7, now - ID_REUSE_MARGIN_MS));
    await store.create(fresh(), FENCE, [], now);
    assert.equal(JSON.parse(e.kv.get(key)!).meta.state, 'staged');
  });

  it('over a retired record still resting: ERR_KEYSTORE, nothing written', async () => {
    const { e, store, key } = setup();
    const was = retired(7, now - ID_REUSE_MARGIN_MS + MIN);
    e.kv.set(key, was);
    assert.equal(await code(store.create(fresh(), FENCE, [], now)), 'ERR_KEYSTORE');
    assert.equal(e.kv.get(key), was);
  });

  it('over a decrypt-only key whose grace ended hours ago (not yet retired): ERR_KEYSTORE, the key stays', async () => {
    const { e, store, key } = setup();
    const was = live({ configId: 7, publicName: NAME, state: 'decrypt-only', created: new Date(T0).toISOString(), notAfter: new Date(now - 5 * HOUR).toISOString() });
    e.kv.set(key, was);
    assert.equal(await code(store.create(fresh(), FENCE, [], now)), 'ERR_KEYSTORE');
    assert.equal(e.kv.get(key), was);
  });

  it('a live key written over the retired record after the read (another leader, an import): the create fails, that key stays', async () => {
    const { e, store, key } = setup();
    e.kv.set(key, retired(7, now - 2 * ID_REUSE_MARGIN_MS));
    const theirs = live({ configId: 7, publicName: NAME, state: 'staged', created: new Date(now).toISOString() });
    e.st.beforeCommit = () => e.kv.set(key, theirs);
    assert.equal(await code(store.create(fresh(), FENCE, [], now)), 'ERR_KEYSTORE');
    assert.equal(e.kv.get(key), theirs);
  });

  it('without the election key (leadership lost): nothing replaced', async () => {
    const { e, store, key } = setup();
    const was = retired(7, now - 2 * ID_REUSE_MARGIN_MS);
    e.kv.set(key, was);
    e.kv.delete(FENCE);
    assert.equal(await code(store.create(fresh(), FENCE, [], now)), 'ERR_KEYSTORE');
    assert.equal(e.kv.get(key), was);
  });
});

describe('EtcdKeyStore.forget: retired records a day old', () => {
  const now = T0 + 100 * HOUR;
  const setup = () => {
    const e = txnEtcd();
    e.kv.set(FENCE, 'i1');
    e.kv.set(PREFIX + K.key(1), retired(1, now - RETIRED_KEEP_MS));
    e.kv.set(PREFIX + K.key(2), retired(2, now - RETIRED_KEEP_MS + MIN));
    e.kv.set(PREFIX + K.key(3), live({ configId: 3, publicName: NAME, state: 'decrypt-only', created: new Date(T0).toISOString(), notAfter: new Date(T0).toISOString() }));
    e.kv.set(PREFIX + K.key(4), JSON.stringify({ meta: { configId: 4, publicName: NAME, state: 'retired', created: new Date(T0).toISOString() } }));
    return { e, store: new EtcdKeyStore(e.client, PREFIX, KEK), ids: () => [...e.kv.keys()].filter((k) => k.startsWith(PREFIX + K.keys)).map((k) => Number(k.slice((PREFIX + K.keys).length))) };
  };
  it('deletes only those retired RETIRED_KEEP_MS or longer ago (a live key, a younger one, one without a date stay)', async () => {
    const { store, ids } = setup();
    assert.deepEqual(await store.forget(now, FENCE), [1]);
    assert.deepEqual(ids().sort(), [2, 3, 4]);
    assert.deepEqual(await store.forget(now, FENCE), []);
  });
  it('fenced: without the election key nothing is deleted', async () => {
    const { e, store, ids } = setup();
    e.kv.delete(FENCE);
    assert.equal(await code(store.forget(now, FENCE)), 'ERR_KEYSTORE');
    assert.deepEqual(ids().sort(), [1, 2, 3, 4]);
  });
  it('a record rewritten since the read (the id taken again): not deleted', async () => {
    const { e, store } = setup();
    const theirs = live({ configId: 1, publicName: NAME, state: 'staged', created: new Date(now).toISOString() });
    e.st.beforeCommit = () => e.kv.set(PREFIX + K.key(1), theirs);
    assert.equal(await code(store.forget(now, FENCE)), 'ERR_KEYSTORE');
    assert.equal(e.kv.get(PREFIX + K.key(1)), theirs);
  });
});

describe('acknowledgement of a staged key whose config_id held another key before', () => {
  const T = T0;
  const inst = (keys: number[], configs?: Record<string, string>): [string, InstanceRecord] => [
    'a',
    { id: 'a', addresses: [], keys, ...(configs ? { configs } : {}), configRevision: 'r', ready: true, started: new Date(T).toISOString(), updated: new Date(T).toISOString() },
  ];
  const o = { ackTimeoutMs: 3000, drainMs: 1000 };
  const NEW = configDigest(new Uint8Array([1, 2, 3]));
  const OLD = configDigest(new Uint8Array([4, 5, 6]));
  it('decidePublish: the id listed with the digest of another key → waited for; with this key\'s → publish; without configs (older version) → the id acknowledges', () => {
    assert.deepEqual(decidePublish(9, T - 100, ['a'], new Map([inst([9], { 9: OLD })]), T, o, NEW).waitingFor, ['a']);
    assert.equal(decidePublish(9, T - 100, ['a'], new Map([inst([9], { 9: NEW })]), T, o, NEW).publish, true);
    assert.equal(decidePublish(9, T - 100, ['a'], new Map([inst([9])]), T, o, NEW).publish, true);
  });
  it('the leader does not publish while the one member lists the id with the old key\'s digest', async () => {
    const f = fleet(HOUR, 2 * HOUR);
    f.clock.now = T0 + HOUR;
    await f.leader.step();
    const rot = f.rotation()!;
    assert.equal(rot.step, 'staged');
    const rec = JSON.parse(f.e.kv.get(PREFIX + K.key(rot.configId))!) as KeyRecordJson;
    const digest = configDigest(Buffer.from(rec.echConfigList!, 'base64'));
    f.e.kv.set(PREFIX + K.member('a'), '');
    const put = (configs: Record<string, string>) => f.e.kv.set(PREFIX + K.instance('a'), JSON.stringify(inst([21, rot.configId], configs)[1]));
    put({ 21: OLD, [rot.configId]: OLD });
    await f.leader.step();
    assert.equal(f.rotation()?.step, 'staged', 'published on an acknowledgement of another key');
    put({ 21: OLD, [rot.configId]: digest });
    await f.leader.step();
    assert.equal(f.rotation()?.step, 'done');
  });
});

describe('the agent names what it copied under each id (instance record configs)', () => {
  /** The etcd3 calls the agent makes, from a Map (as test/fleet-agent-races.test.ts; no watch events needed here). */
  function agentEtcd() {
    const kv = new Map<string, string>();
    const lease = () => ({
      on() {},
      revoked: () => false,
      grant: () => Promise.resolve('1'),
      revoke: () => Promise.resolve(),
      put: (key: string) => ({ value: async (v: string) => void kv.set(key, v) }),
    });
    const builder = () => ({ create: async () => Object.assign(new EventEmitter(), { cancel: async () => {} }) });
    const client = {
      lease,
      watch: () => ({ prefix: builder, key: builder }),
      get: (key: string) => ({ string: async () => kv.get(key) ?? null }),
      getAll: () => ({ prefix: (p: string) => ({ strings: async () => Object.fromEntries([...kv].filter(([k]) => k.startsWith(p))) }) }),
    };
    return { client: client as unknown as Etcd3, kv };
  }
  it('configs carries the digest of the key held under the id; a sync whose copy fails keeps the last one (not the new key\'s)', async () => {
    const e = agentEtcd();
    const record = () => live({ configId: 50, publicName: NAME, state: 'active', created: new Date(T0).toISOString() });
    const digestOf = (v: string) => configDigest(Buffer.from((JSON.parse(v) as KeyRecordJson).echConfigList!, 'base64'));
    const first = record();
    e.kv.set(PREFIX + K.key(50), first);
    let fail = false;
    const agent = new FleetAgent({
      id: 'i2',
      cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
      client: e.client,
      store: new EtcdKeyStore(e.client, PREFIX, KEK),
      log: pino({ level: 'silent' }),
      hooks: {
        reloadKeys: () => {
          if (fail) throw new Error('key folder full');
          return [50];
        },
        addresses: () => [],
        configRevision: () => 'r1',
      },
      resyncMs: 3_600_000,
    });
    const rec = () => JSON.parse(e.kv.get(PREFIX + K.instance('i2')) ?? '{}') as InstanceRecord;
    try {
      await agent.start();
      await agent.sync();
      assert.deepEqual(rec().keys, [50]);
      assert.deepEqual(rec().configs, { 50: digestOf(first) });
      const second = record(); // the id taken again by a new key
      e.kv.set(PREFIX + K.key(50), second);
      fail = true;
      await agent.sync();
      assert.equal(rec().ready, false);
      assert.deepEqual(rec().configs, { 50: digestOf(first) }, 'a failed copy must not acknowledge the new key');
      fail = false;
      await agent.sync();
      assert.deepEqual(rec().configs, { 50: digestOf(second) });
    } finally {
      await agent.stop();
    }
  });
});
