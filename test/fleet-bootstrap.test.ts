/**
 * A fleet's first start (docs/fleet.md "First start (import)"): the first
 * leader of an empty prefix imports its key folder; `echgate fleet import`
 * does the same through EtcdKeyStore.createAll. Driven against an in-memory
 * stand-in for etcd that evaluates the transactions' compares (Version == 0:
 * absent; Create > 0: present), with the real keystore and real AES-256-GCM
 * seals. A key in etcd is never overwritten; an import is all or nothing;
 * retired config_ids travel as metadata so they are never reused.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import pino from 'pino';
import { STORE_DEFAULTS } from '../src/config/store.js';
import { EtcdKeyStore } from '../src/fleet/etcd-store.js';
import { FleetLeader, importable } from '../src/fleet/leader.js';
import { K } from '../src/fleet/records.js';
import { generateKey, listKeys, retireKey } from '../src/keys/manager.js';

const PREFIX = 'echgate/';
const KEK = new Uint8Array(32).fill(5);
const FENCE = `${PREFIX}leader/694d8a`;

type Op = { key: string; v: string };
function txnEtcd() {
  const kv = new Map<string, string>();
  const commits: string[][] = [];
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
        if (ok) {
          for (const o of ops) kv.set(o.key, o.v);
          commits.push(ops.map((o) => o.key));
        }
        return { succeeded: ok };
      },
    }),
  });
  const client = {
    if: (...c: unknown[]) => txn([c]),
    put: (key: string) => ({ value: (v: string): Op & { exec(): Promise<void> } => ({ key, v, exec: async () => void kv.set(key, v) }) }),
    get: (key: string) => ({ string: async () => kv.get(key) ?? null }),
    getAll: () => ({ prefix: (p: string) => ({ strings: async () => Object.fromEntries([...kv].filter(([k]) => k.startsWith(p))) }) }),
  };
  return { client: client as unknown as Etcd3, kv, commits };
}

function leaderOver(e: ReturnType<typeof txnEtcd>, importFrom: string, lines: string[]) {
  const leader = new FleetLeader({
    id: 'i1',
    cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
    rotation: { everyMs: 3_600_000, graceMs: 7_200_000, publish: 'embedded', publicName: 'fleet.example.test' },
    client: e.client,
    store: new EtcdKeyStore(e.client, PREFIX, KEK),
    log: pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) }),
    syncLocal: async () => {},
    publish: async () => {},
    importFrom,
  });
  // As if elected: its election key exists (the fence every write is conditioned on).
  const l = leader as unknown as { fence: string; leading: boolean };
  l.fence = FENCE;
  l.leading = true;
  e.kv.set(FENCE, 'i1');
  return leader;
}

describe('fleet first start: importing a key folder into an empty prefix', () => {
  const dirs: string[] = [];
  const folder = () => {
    const d = mkdtempSync(join(tmpdir(), 'echgate-import-'));
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('the first leader of an empty prefix imports its folder in one transaction: keys sealed (and open to the same private key), retired config_ids as metadata', async () => {
    const dir = folder();
    const a = generateKey(dir, { publicName: 'fleet.example.test', configId: 21 });
    generateKey(dir, { publicName: 'old.example.test', configId: 22 });
    retireKey(dir, 22);
    const e = txnEtcd();
    const lines: string[] = [];
    await leaderOver(e, dir, lines).step();
    assert.equal(e.commits.length, 1, 'one transaction');
    assert.deepEqual(e.commits[0]!.sort(), [PREFIX + K.key(21), PREFIX + K.key(22)]);
    const r21 = JSON.parse(e.kv.get(PREFIX + K.key(21))!);
    const r22 = JSON.parse(e.kv.get(PREFIX + K.key(22))!);
    assert.equal(r21.meta.configId, a.configId);
    assert.ok(r21.sealed?.box);
    assert.equal(r22.meta.state, 'retired');
    assert.equal(r22.sealed, undefined, 'no private key for a retired config_id');
    const opened = await new EtcdKeyStore(e.client, PREFIX, KEK).load();
    const local = listKeys(dir).keys.find((k) => k.meta.configId === 21)!;
    assert.deepEqual(opened.find((k) => k.meta.configId === 21)!.privateKey, local.privateKey);
    assert.ok(lines.some((l) => /imported the key folder/.test(l)));
    assert.ok(!lines.join('').includes(Buffer.from(local.privateKey!).toString('base64')), 'no key material logged');
  });

  it('a prefix that already holds a key: nothing imported, the record byte for byte as it was', async () => {
    const e = txnEtcd();
    const theirs = folder();
    generateKey(theirs, { publicName: 'fleet.example.test', configId: 30 });
    await new EtcdKeyStore(e.client, PREFIX, KEK).createAll(importable(theirs));
    const before = new Map(e.kv);
    const mine = folder();
    generateKey(mine, { publicName: 'fleet.example.test', configId: 30 });
    generateKey(mine, { publicName: 'fleet.example.test', configId: 31 });
    await leaderOver(e, mine, []).step();
    for (const [k, v] of before) assert.equal(e.kv.get(k), v, k);
    assert.equal(e.kv.has(PREFIX + K.key(31)), false, 'nothing added');
  });

  it('createAll (echgate fleet import) with one config_id already in etcd: refused, ERR_KEYSTORE, nothing written (all or nothing)', async () => {
    const e = txnEtcd();
    const theirs = folder();
    generateKey(theirs, { publicName: 'fleet.example.test', configId: 40 });
    const store = new EtcdKeyStore(e.client, PREFIX, KEK);
    await store.createAll(importable(theirs));
    const before = new Map(e.kv);
    const mine = folder();
    generateKey(mine, { publicName: 'fleet.example.test', configId: 40 });
    generateKey(mine, { publicName: 'fleet.example.test', configId: 41 });
    await assert.rejects(store.createAll(importable(mine)), { code: 'ERR_KEYSTORE', message: /config_id 40, 41: already in etcd.*nothing written/ });
    assert.deepEqual(new Map(e.kv), before);
  });

  it('a deposed leader (its election key gone) imports nothing', async () => {
    const dir = folder();
    generateKey(dir, { publicName: 'fleet.example.test', configId: 50 });
    const e = txnEtcd();
    const leader = leaderOver(e, dir, []);
    e.kv.delete(FENCE);
    await assert.rejects(leader.step(), { code: 'ERR_KEYSTORE', message: /no longer leads/ });
    assert.equal([...e.kv.keys()].filter((k) => k.startsWith(PREFIX + K.keys)).length, 0);
  });
});
