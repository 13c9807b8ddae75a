/**
 * The serving fleet client's watch backoff: 250 ms doubling to 5 s, as providers.etcd's (etcd3's own default
 * grows to 30 s, and a watch then lags an etcd that is back by up to that long).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fleetClient } from '../src/cli/fleet.js';
import type { EtcdStoreConfig } from '../src/config/store.js';
import { EtcdWatchBackoff } from '../src/providers/etcd.js';

describe('etcd watch backoff', () => {
  it('250 ms, doubling, at most 5 s', () => {
    const seen: number[] = [];
    for (let b = new EtcdWatchBackoff(), i = 0; i < 7; b = b.next(), i++) seen.push(b.duration);
    assert.deepEqual(seen, [250, 500, 1000, 2000, 4000, 5000, 5000]);
  });

  it("the serving instance's fleet client is built with it", async () => {
    const cfg = { endpoints: ['http://127.0.0.1:1'], prefix: 'echgate/', kek: { env: 'X' }, leaseTtlMs: 10_000, ackTimeoutMs: 1, drainMs: 1, forgetAfterMs: 1 } as EtcdStoreConfig;
    const client = await fleetClient(cfg);
    try {
      // etcd3 keeps its options as given (namespace.js reads faultHandling.watchBackoff from them when it makes its watch manager).
      const backoff = (client as unknown as { options: { faultHandling?: { watchBackoff?: unknown } } }).options.faultHandling?.watchBackoff;
      assert.ok(backoff instanceof EtcdWatchBackoff, 'the fleet client has no watch backoff of its own: etcd3 would wait up to 30 s');
      assert.equal(backoff.duration, 250);
    } finally {
      client.close();
    }
  });
});
