/**
 * The DNS query counter (src/dns/service.ts queryCounter): label objects kept
 * per (transport, type, rcode) and counts added to the registry once per turn
 * of the event loop. Whatever the batching, every query is counted once,
 * under the right labels, before anything later in the loop can read them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { queryCounter } from '../src/dns/service.js';

function registry() {
  const totals = new Map<string, number>();
  const inc = (labels: Record<string, string>, by = 1) => {
    const k = JSON.stringify(labels);
    totals.set(k, (totals.get(k) ?? 0) + by);
  };
  return { totals, dnsQueries: { inc }, handlerErrors: { inc } };
}
const turn = () => new Promise((r) => setImmediate(r));
const key = (transport: string, type: string, rcode: string) => JSON.stringify({ transport, type, rcode });

describe('DNS query counter', () => {
  it('every query counted once under its labels, by the next turn of the event loop', async () => {
    const m = registry();
    const count = queryCounter(m);
    for (let i = 0; i < 1000; i++) count({ transport: 'udp', type: 1, rcode: 0 });
    for (let i = 0; i < 7; i++) count({ transport: 'doh', type: 65, rcode: 3 });
    count({ transport: 'tcp', type: 1, rcode: 0 });
    await turn();
    assert.equal(m.totals.get(key('udp', 'A', 'NOERROR')), 1000);
    assert.equal(m.totals.get(key('doh', 'HTTPS', 'NXDOMAIN')), 7);
    assert.equal(m.totals.get(key('tcp', 'A', 'NOERROR')), 1);
    // Counting again after a flush adds to the totals (no count lost or repeated by the batching).
    for (let i = 0; i < 5; i++) count({ transport: 'udp', type: 1, rcode: 0 });
    await turn();
    assert.equal(m.totals.get(key('udp', 'A', 'NOERROR')), 1005);
    assert.equal(m.totals.size, 3);
  });

  it('types we do not name are "other"; a flood of distinct types past the kept label sets is still counted', async () => {
    const m = registry();
    const count = queryCounter(m);
    for (let t = 1000; t < 3000; t++) count({ transport: 'udp', type: t, rcode: 0 });
    count({ transport: 'quic', type: 1, rcode: 0 });
    await turn();
    assert.equal(m.totals.get(key('udp', 'other', 'NOERROR')), 2000);
    assert.equal(m.totals.get(key('quic', 'A', 'NOERROR')), 1);
  });
});
