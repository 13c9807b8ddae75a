/**
 * The leader's fence (src/fleet/leader.ts step()): every write of a rotation
 * step is conditioned on the election key the step started with. Leadership
 * lost while a step waits on etcd (its read slow, etcd busy) clears the
 * leader's fence, or replaces it once elected again; a write that read the
 * fence at write time then went out unfenced (or under the new election) and
 * staged a key as if the old step still led. And a campaign that dies while
 * its election key is being read (after 'elected') must not make the
 * instance lead on it.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import pino from 'pino';
import { STORE_DEFAULTS } from '../src/config/store.js';
import { EtcdKeyStore } from '../src/fleet/etcd-store.js';
import { FleetLeader } from '../src/fleet/leader.js';
import { K } from '../src/fleet/records.js';
import { makeKey } from '../src/keys/manager.js';
import { sealPrivateKey } from '../src/keys/sealed.js';
import { sleep } from './helpers.js';

const PREFIX = 'echgate/';
const KEK = new Uint8Array(32).fill(5);
const FENCE = `${PREFIX}leader/694d8a`;

type Op = { key: string; v: string };
/** etcd's transactions on a Map (Version == 0: absent; Create/Version > 0: present); the next read of keys/ can be held. */
function txnEtcd() {
  const kv = new Map<string, string>();
  let hold: Promise<void> | undefined;
  const holds = ([key, target, op, value]: unknown[]): boolean => {
    const has = kv.has(key as string);
    if (target === 'Version' && op === '==' && value === 0) return !has;
    if ((target === 'Version' || target === 'Create') && op === '>' && value === 0) return has;
    throw new Error(`compare not in the stand-in: ${target} ${op} ${value}`);
  };
  const txn = (conds: unknown[][]) => ({
    and: (...c: unknown[]) => txn([...conds, c]),
    // biome-ignore lint/suspicious/noThenProperty: etcd3's transaction builder names this step then()
    then: (...ops: Op[]) => ({
      commit: async () => {
        const ok = conds.every(holds);
        if (ok) for (const o of ops) kv.set(o.key, o.v);
        return { succeeded: ok };
      },
    }),
  });
  const client = {
    if: (...c: unknown[]) => txn([c]),
    put: (key: string) => ({ value: (v: string): Op & { exec(): Promise<void> } => ({ key, v, exec: async () => void kv.set(key, v) }) }),
    get: (key: string) => ({ string: async () => kv.get(key) ?? null }),
    getAll: () => ({
      prefix: (p: string) => ({
        strings: async () => {
          const h = hold;
          hold = undefined;
          if (h && p === PREFIX + K.keys) await h;
          return Object.fromEntries([...kv].filter(([k]) => k.startsWith(p)));
        },
      }),
    }),
  };
  let release = () => {};
  return {
    client: client as unknown as Etcd3,
    kv,
    /** The next read of keys/ waits until release(). */
    holdNextRead() {
      hold = new Promise((r) => {
        release = r;
      });
    },
    release: () => release(),
  };
}

/** A fleet whose one active key is long due for rotation, and a leader as if elected with FENCE. */
function dueFleet() {
  const e = txnEtcd();
  const k = makeKey(new Set(), { publicName: 'fleet.example.test', configId: 21, now: new Date('2026-01-01T00:00:00Z') });
  e.kv.set(PREFIX + K.key(21), JSON.stringify({ meta: k.meta, echConfigList: Buffer.from(k.echConfigList).toString('base64'), sealed: sealPrivateKey(KEK, 21, k.echConfigList, k.privateKey) }));
  e.kv.set(FENCE, 'i1');
  const leader = new FleetLeader({
    id: 'i1',
    cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
    rotation: { everyMs: 3_600_000, graceMs: 7_200_000, publish: 'embedded', publicName: 'fleet.example.test' },
    client: e.client,
    store: new EtcdKeyStore(e.client, PREFIX, KEK),
    log: pino({ level: 'silent' }),
    syncLocal: async () => {},
    publish: async () => {},
  });
  const l = leader as unknown as { fence?: string; leading: boolean };
  l.fence = FENCE;
  l.leading = true;
  const keys = () => [...e.kv.keys()].filter((x) => x.startsWith(PREFIX + K.keys));
  return { e, leader, l, keys };
}

describe('fleet leader: a step writes under the election it started in', () => {
  it('the due rotation is staged when the leadership holds (the case below, without the loss)', async () => {
    const { leader, keys, e } = dueFleet();
    await leader.step();
    assert.equal(keys().length, 2, 'a new key staged');
    assert.equal(JSON.parse(e.kv.get(PREFIX + K.rotation)!).step, 'staged');
  });

  it('leadership lost while the step read etcd (fence cleared, election key gone): nothing staged', async () => {
    const { e, leader, l, keys } = dueFleet();
    e.holdNextRead();
    const step = leader.step();
    await new Promise((r) => setImmediate(r));
    // lost(): the campaign's lease ran out; etcd deleted the election key with it.
    l.fence = undefined;
    l.leading = false;
    e.kv.delete(FENCE);
    e.release();
    await assert.rejects(step, { code: 'ERR_KEYSTORE', message: /no longer leads/ });
    assert.deepEqual(keys(), [PREFIX + K.key(21)]);
    assert.equal(e.kv.get(PREFIX + K.rotation), undefined);
  });

  it('lost and elected again while the step read etcd (a new election key): the old step writes nothing', async () => {
    const { e, leader, l, keys } = dueFleet();
    e.holdNextRead();
    const step = leader.step();
    await new Promise((r) => setImmediate(r));
    e.kv.delete(FENCE);
    const again = `${PREFIX}leader/694d9f`;
    e.kv.set(again, 'i1');
    l.fence = again; // the new term's own step will look at etcd afresh
    e.release();
    await assert.rejects(step, { code: 'ERR_KEYSTORE', message: /no longer leads/ });
    assert.deepEqual(keys(), [PREFIX + K.key(21)]);
  });

  it("a campaign that dies while its election key is read: not leading on it, and the next campaign is left alone", async () => {
    // etcd3's Campaign as the leader uses it: 'elected', then getCampaignKey() (a read, here answered at 100 ms).
    const campaigns: (EventEmitter & { getCampaignKey(): Promise<string>; resign(): Promise<void> })[] = [];
    const client = {
      namespace: () => ({
        election: () => ({
          campaign: () => {
            const c = Object.assign(new EventEmitter(), { getCampaignKey: () => sleep(100).then(() => FENCE), resign: async () => {} });
            campaigns.push(c);
            return c;
          },
        }),
      }),
    };
    const leaderGauge: number[] = [];
    const leader = new FleetLeader({
      id: 'i1',
      cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
      rotation: { everyMs: 3_600_000, graceMs: 7_200_000, publish: 'embedded', publicName: 'fleet.example.test' },
      client: client as unknown as Etcd3,
      store: new EtcdKeyStore(client as unknown as Etcd3, PREFIX, KEK),
      log: pino({ level: 'silent' }),
      gauges: { set: (n, v) => (n === 'leader' ? void leaderGauge.push(v) : undefined) },
      syncLocal: async () => {},
      publish: async () => {},
      tickMs: 3_600_000,
    });
    try {
      leader.start();
      campaigns[0]!.emit('elected');
      campaigns[0]!.emit('error', new Error('lease lost')); // while its key is being read
      await sleep(1_300); // the key read answers; lost() stands again after 1 s
      assert.equal(leader.leading, false, 'not leading on the dead campaign');
      assert.equal((leader as unknown as { fence?: string }).fence, undefined);
      assert.ok(!leaderGauge.includes(1), `leader gauge: ${leaderGauge}`);
      assert.equal(campaigns.length, 2, 'campaigning again');
      assert.equal((leader as unknown as { campaign?: unknown }).campaign, campaigns[1], 'the new campaign stands');
    } finally {
      await leader.stop();
    }
  });
});
