/**
 * providers.etcd (src/providers/etcd.ts): its reads and its watch against one
 * another, on a stand-in for the etcd3 client. Each case is a change written
 * between the two that was never delivered.
 *
 * - etcd cancels the watch (its start revision compacted away while it was
 *   disconnected, a role changed): etcd3 emits 'error' and drops the watcher;
 *   the provider read once and never watched again.
 * - etcd down at start: the watch, created without a start revision, begins
 *   when etcd answers it, later than the provider's first successful read.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { type EtcdSnapshot, EtcdProvider } from '../src/providers/etcd.js';
import { sleep } from './helpers.js';

const ROOT = 'traefik';

/** etcd as the provider uses it: range reads of the prefix, and watches that see only puts made after etcd answered their creation. */
function fakeEtcd(o: { watchDelayMs?: number } = {}) {
  const kv = new Map<string, string>();
  let revision = 1;
  let down = false;
  let watchers: EventEmitter[] = [];
  let watchesCreated = 0;
  const builder = () => {
    const b = {
      prefix: () => b,
      startRevision: () => b,
      create: () =>
        new Promise((resolve) => {
          const answer = () => {
            // etcd3 retries the watch stream until etcd answers.
            if (down) return void setTimeout(answer, 20).unref();
            const w = Object.assign(new EventEmitter(), {
              cancel: async () => {
                watchers = watchers.filter((x) => x !== w);
              },
            });
            watchers.push(w);
            watchesCreated++;
            resolve(w);
          };
          setTimeout(answer, o.watchDelayMs ?? 0).unref();
        }),
    };
    return b;
  };
  const client = {
    getAll: () => ({
      prefix: (p: string) => ({
        options: () => ({
          exec: async () => {
            if (down) throw new Error('14 UNAVAILABLE: No connection established');
            const kvs = [...kv].filter(([k]) => k.startsWith(p)).map(([k, v]) => ({ key: Buffer.from(k), value: Buffer.from(v) }));
            return { kvs, header: { revision: String(revision) } };
          },
        }),
      }),
    }),
    watch: builder,
    close() {},
  };
  return {
    client: client as unknown as Etcd3,
    watchesCreated: () => watchesCreated,
    setDown(v: boolean) {
      down = v;
    },
    put(key: string, value: string) {
      kv.set(key, value);
      revision++;
      for (const w of watchers) w.emit('data', { events: [{ type: 'Put' }] });
    },
    /** etcd cancels every watch: etcd3 emits 'error' on each and forgets it. */
    cancelWatches() {
      const was = watchers;
      watchers = [];
      for (const w of was) w.emit('error', new Error('etcdserver: mvcc: required revision has been compacted'));
    },
  };
}

function providerOn(e: ReturnType<typeof fakeEtcd>) {
  const snapshots: EtcdSnapshot[] = [];
  const p = new EtcdProvider({ endpoints: ['http://127.0.0.1:1'], rootKey: ROOT }, { snapshot: (s) => snapshots.push(s), store: () => {} }, e.client);
  const rule = () => snapshots.at(-1)?.pairs.find((x) => x.key === `${ROOT}/tcp/routers/r/rule`)?.value;
  return { p, snapshots, rule };
}

const until = async (fn: () => boolean, ms: number) => {
  for (const end = Date.now() + ms; !fn() && Date.now() < end; ) await sleep(20);
};

describe('providers.etcd: a change between a read and the watch', () => {
  it('a watch etcd cancels is watched again: a change written after the cancel and its read is delivered', async () => {
    const e = fakeEtcd();
    e.put(`${ROOT}/tcp/routers/r/rule`, 'HostSNI(`a.test`)');
    const { p, rule } = providerOn(e);
    try {
      const first = await p.start();
      assert.equal(first?.pairs.length, 1);
      e.cancelWatches();
      await sleep(600); // the read that follows the cancel (250 ms) is over
      e.put(`${ROOT}/tcp/routers/r/rule`, 'HostSNI(`b.test`)');
      await until(() => rule() === 'HostSNI(`b.test`)', 3_000);
      assert.equal(rule(), 'HostSNI(`b.test`)');
      assert.equal(e.watchesCreated(), 2);
    } finally {
      p.close();
    }
  });

  it('etcd down at start: a change between the first read that succeeds and the watch beginning is delivered', async () => {
    // The first read fails (etcd down); it comes back at 100 ms; the retried read (250 ms) succeeds; the
    // watch, asked for at start, is answered at 600 ms; the change lands at 400 ms, between the two.
    const e = fakeEtcd({ watchDelayMs: 600 });
    e.put(`${ROOT}/tcp/routers/r/rule`, 'HostSNI(`a.test`)');
    e.setDown(true);
    const { p, snapshots, rule } = providerOn(e);
    try {
      setTimeout(() => e.setDown(false), 100).unref();
      setTimeout(() => e.put(`${ROOT}/tcp/routers/r/rule`, 'HostSNI(`b.test`)'), 400).unref();
      assert.equal(await p.start(), undefined, 'etcd down: nothing read at start');
      await until(() => snapshots.length > 0, 1_000);
      assert.equal(rule(), 'HostSNI(`a.test`)', 'the retried read came before the change');
      await until(() => rule() === 'HostSNI(`b.test`)', 2_000);
      assert.equal(rule(), 'HostSNI(`b.test`)');
    } finally {
      p.close();
    }
  });
});
