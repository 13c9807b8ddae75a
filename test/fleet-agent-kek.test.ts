/**
 * An instance whose key-encryption key is not the fleet's (docs/fleet.md
 * "Failures", issue #9): the fleet agent (src/fleet/agent.ts) driven against
 * an in-memory stand-in for etcd, the real EtcdKeyStore and real AES-256-GCM
 * seals (keys/sealed.ts). etcd answered, so the store is up; the instance is
 * not ready with a reason naming the KEK; ERR_KEK is logged once per distinct
 * failure and never with key material; the key folder is left as it was.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import pino from 'pino';
import { STORE_DEFAULTS } from '../src/config/store.js';
import { FleetAgent } from '../src/fleet/agent.js';
import { EtcdKeyStore } from '../src/fleet/etcd-store.js';
import { FleetLeader } from '../src/fleet/leader.js';
import { K, type KeyRecordJson } from '../src/fleet/records.js';
import { generateKey, makeKey } from '../src/keys/manager.js';
import { sealPrivateKey } from '../src/keys/sealed.js';
import { sleep } from './helpers.js';

const PREFIX = 'echgate/';
const FLEET_KEK = new Uint8Array(32).fill(7);
const WRONG_KEK = new Uint8Array(32).fill(8);

/** Just the etcd3 calls the agent and the keystore make, answered from a Map; `fail` makes every read throw (etcd down). */
function fakeEtcd() {
  const kv = new Map<string, string>();
  const puts: string[] = [];
  const state = { fail: false };
  const read = <T>(v: () => T) => (state.fail ? Promise.reject(new Error('14 UNAVAILABLE: No connection established')) : Promise.resolve(v()));
  const lease = () => ({
    on() {},
    revoked: () => false,
    grant: () => read(() => '1'),
    revoke: () => Promise.resolve(),
    put: (key: string) => ({
      value: (v: string) =>
        read(() => {
          kv.set(key, v);
          puts.push(key);
        }),
    }),
  });
  const watchBuilder = { prefix: () => watchBuilder, key: () => watchBuilder, create: () => Promise.reject(new Error('no watch in the fake')) };
  const client = {
    lease,
    watch: () => watchBuilder,
    get: (key: string) => ({ string: () => read(() => kv.get(key) ?? null) }),
    getAll: () => ({
      prefix: (p: string) => ({ strings: () => read(() => Object.fromEntries([...kv].filter(([k]) => k.startsWith(p)))) }),
    }),
  };
  return { client: client as unknown as Etcd3, kv, puts, state };
}

function sealedRecord(kek: Uint8Array, configId: number) {
  const k = makeKey(new Set(), { publicName: 'fleet.example.test', configId });
  const rec: KeyRecordJson = { meta: { ...k.meta, state: 'active' }, echConfigList: Buffer.from(k.echConfigList).toString('base64'), sealed: sealPrivateKey(kek, configId, k.echConfigList, k.privateKey) };
  return { rec, privateKey: k.privateKey };
}

function folderSnapshot(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .filter((f) => !f.startsWith('.'))
      .sort()
      .map((f) => [f, readFileSync(join(dir, f), 'utf8')]),
  );
}

describe('fleet agent with the wrong key-encryption key (docs/fleet.md failures, ERR_KEK)', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('store up, not ready naming the key-encryption key, ERR_KEK logged once per distinct failure, folder untouched', async () => {
    const e = fakeEtcd();
    const one = sealedRecord(FLEET_KEK, 11);
    e.kv.set(PREFIX + K.key(11), JSON.stringify(one.rec));
    const keysDir = mkdtempSync(join(tmpdir(), 'echgate-kek-'));
    dirs.push(keysDir);
    generateKey(keysDir, { publicName: 'mine.example.test', configId: 3 });
    const before = folderSnapshot(keysDir);

    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
    const gauges: Record<string, number[]> = {};
    let reloads = 0;
    const agent = new FleetAgent({
      id: 'i4',
      cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
      client: e.client,
      store: new EtcdKeyStore(e.client, PREFIX, WRONG_KEK),
      keysDir,
      log,
      gauges: {
        set: (n, v) => {
          gauges[n] = [...(gauges[n] ?? []), v];
        },
      },
      hooks: {
        reloadKeys: () => {
          reloads++;
          return [3];
        },
        addresses: () => [],
        configRevision: () => 'r1',
      },
      resyncMs: 3_600_000,
    });
    try {
      await agent.start();
      for (let i = 0; i < 4; i++) await agent.sync(); // the 30 s re-read and watch events repeat the same failure

      // (a) etcd answered: not a store outage.
      assert.equal(agent.storeUp, true);
      assert.ok(!(gauges.storeUp ?? []).includes(0), `storeUp gauge: ${gauges.storeUp}`);
      assert.ok(!lines.some((l) => /store unreachable/.test(l)), 'not logged as an outage');
      // (b) not ready, and the reason says why.
      const r = agent.readiness();
      assert.equal(r.ready, false);
      assert.match(r.reason, /key-encryption key/);
      assert.match(r.reason, /ERR_KEK/);
      assert.equal(gauges.ready?.at(-1), 0);
      const rec = JSON.parse(e.kv.get(PREFIX + K.instance('i4'))!);
      assert.equal(rec.ready, false);
      assert.match(rec.reason, /key-encryption key/);
      // (c) once for five syncs with the same failure; no key material in the log.
      const kekLines = () => lines.filter((l) => /ERR_KEK/.test(l));
      assert.equal(kekLines().length, 1, kekLines().join(''));
      const logText = lines.join('');
      for (const secret of [one.privateKey, FLEET_KEK, WRONG_KEK]) {
        assert.ok(!logText.includes(Buffer.from(secret).toString('hex')), 'no key in hex');
        assert.ok(!logText.includes(Buffer.from(secret).toString('base64')), 'no key in base64');
      }
      // (d) nothing copied into the folder, nothing reloaded from it.
      assert.deepEqual(folderSnapshot(keysDir), before);
      assert.equal(reloads, 0);
      assert.deepEqual(e.puts.filter((k) => k.startsWith(PREFIX + K.keys)), [], 'nothing written to etcd keys/');

      // A different failure (a second key, sealed under yet another KEK) is logged once more.
      const two = sealedRecord(new Uint8Array(32).fill(9), 12);
      e.kv.set(PREFIX + K.key(12), JSON.stringify(two.rec));
      e.kv.delete(PREFIX + K.key(11));
      await agent.sync();
      await agent.sync();
      assert.equal(kekLines().length, 2, kekLines().join(''));

      // A record whose box was damaged (same KEK id, GCM tag fails) still reads as a KEK problem, not an outage.
      const three = sealedRecord(WRONG_KEK, 13);
      const box = Buffer.from(three.rec.sealed!.box, 'base64');
      box[box.length - 1]! ^= 1;
      e.kv.set(PREFIX + K.key(13), JSON.stringify({ ...three.rec, sealed: { ...three.rec.sealed!, box: box.toString('base64') } }));
      e.kv.delete(PREFIX + K.key(12));
      await agent.sync();
      assert.equal(agent.storeUp, true);
      assert.match(agent.readiness().reason, /key-encryption key/);
      assert.equal(kekLines().length, 3);
      assert.deepEqual(folderSnapshot(keysDir), before);

      // A real outage still reads as one.
      e.state.fail = true;
      await agent.sync();
      assert.equal(agent.storeUp, false);
      assert.equal(gauges.storeUp?.at(-1), 0);
      assert.ok(lines.some((l) => /store unreachable/.test(l)));
    } finally {
      await agent.stop();
    }
  });
  it('a key folder that cannot take the keys: not ready, logged once, the store still up', async () => {
    const e = fakeEtcd();
    e.kv.set(PREFIX + K.key(11), JSON.stringify(sealedRecord(FLEET_KEK, 11).rec));
    const d = mkdtempSync(join(tmpdir(), 'echgate-kek-'));
    dirs.push(d);
    const keysDir = join(d, 'not-a-folder');
    writeFileSync(keysDir, 'a file where the key folder should be\n');
    const lines: string[] = [];
    const agent = new FleetAgent({
      id: 'i5',
      cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
      client: e.client,
      store: new EtcdKeyStore(e.client, PREFIX, FLEET_KEK),
      keysDir,
      log: pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) }),
      hooks: { reloadKeys: () => [11], addresses: () => [], configRevision: () => 'r1' },
      resyncMs: 3_600_000,
    });
    try {
      await agent.start();
      for (let i = 0; i < 3; i++) await agent.sync();
      assert.equal(agent.storeUp, true);
      const r = agent.readiness();
      assert.equal(r.ready, false);
      assert.match(r.reason, /key folder could not take/);
      assert.equal(lines.filter((l) => /could not be copied/.test(l)).length, 1);
      assert.ok(!lines.some((l) => /copied again/.test(l)), 'no recovery logged while it still fails');
    } finally {
      await agent.stop();
    }
  });
  it('a leader with the wrong KEK writes nothing, resigns (another instance leads), logs ERR_KEK once, and stands again only once the keys open', async () => {
    const e = fakeEtcd();
    e.kv.set(PREFIX + K.key(11), JSON.stringify(sealedRecord(FLEET_KEK, 11).rec));
    const lines: string[] = [];
    const leaderGauge: number[] = [];
    const leader = new FleetLeader({
      id: 'i4',
      cfg: { endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, kek: { env: 'UNUSED' }, ...STORE_DEFAULTS },
      rotation: { everyMs: 1, graceMs: 1, publish: 'embedded', publicName: 'fleet.example.test' },
      client: e.client,
      store: new EtcdKeyStore(e.client, PREFIX, WRONG_KEK),
      log: pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) }),
      gauges: { set: (n, v) => (n === 'leader' ? void leaderGauge.push(v) : undefined) },
      syncLocal: async () => {},
      publish: async () => {},
      tickMs: 5,
      kekRetryMs: 10,
    });
    // As if elected (the election needs etcd): a campaign whose resign() is seen, a fence, leading, the first look now.
    let resigned = 0;
    let stood = 0;
    const campaign = { resign: async () => void resigned++, removeAllListeners() {}, on() {} };
    const l = leader as unknown as { fence?: string; leading: boolean; campaign?: unknown; tick(ms: number): void; start(): void };
    l.campaign = campaign;
    l.fence = `${PREFIX}leader/x`;
    l.leading = true;
    l.start = () => void stood++; // what the election would do: stand again
    try {
      l.tick(0);
      await sleep(200); // ~20 re-reads of the keys while resigned
      assert.equal(resigned, 1, 'resigned its campaign');
      assert.equal(leader.leading, false);
      assert.equal(leader.benched, true);
      assert.equal(l.fence, undefined, 'no fence left to write with');
      assert.equal(leaderGauge.at(-1), 0);
      assert.equal(stood, 0, 'does not stand again while the keys do not open');
      const kek = lines.filter((x) => /ERR_KEK/.test(x));
      assert.equal(kek.length, 1, kek.join(''));
      assert.match(kek[0]!, /resigning leadership/);
      assert.deepEqual(e.puts, [], 'nothing written');
      // The fleet re-keyed to this instance's KEK (or its KEK fixed): the next re-read opens, it stands again.
      e.kv.set(PREFIX + K.key(11), JSON.stringify(sealedRecord(WRONG_KEK, 11).rec));
      await sleep(100);
      assert.equal(stood, 1);
      assert.equal(leader.benched, false);
      assert.ok(lines.some((x) => /standing for leader/.test(x)));
    } finally {
      await leader.stop();
    }
  });
});
