/**
 * The fleet's two decisions as pure functions (src/fleet/records.ts,
 * docs/fleet.md): GET /ready of one instance, and whether the leader may let
 * DNS name a staged key. Table-driven, fake clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decidePublish, type InstanceRecord, type ReadinessInput, readiness } from '../src/fleet/records.js';
import type { KeyMeta } from '../src/keys/store.js';

const T = Date.parse('2026-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const key = (configId: number, state: KeyMeta['state'], more: Partial<KeyMeta> = {}): KeyMeta => ({ configId, publicName: 'p.example.test', state, created: iso(T - 60_000), ...more });
const base = (more: Partial<ReadinessInput> = {}): ReadinessInput => ({
  now: T,
  synced: true,
  lastSynced: T,
  storeUp: true,
  fleetKeys: [key(1, 'active')],
  stagedSeen: new Map(),
  held: new Set([1]),
  ackTimeoutMs: 3000,
  forgetAfterMs: 60_000,
  ...more,
});

describe('GET /ready (readiness)', () => {
  const table: [string, Partial<ReadinessInput>, boolean, RegExp][] = [
    ['holds the active key', {}, true, /holds the current keys/],
    ['never synced', { synced: false }, false, /not yet synced/],
    ['wrong KEK', { error: 'sealed with another KEK [ERR_KEK]' }, false, /ERR_KEK/],
    ['missing the active key', { held: new Set() }, false, /does not hold config_id 1/],
    ['missing a decrypt-only key still in grace', { fleetKeys: [key(1, 'active'), key(2, 'decrypt-only', { notAfter: iso(T + 1000) })] }, false, /config_id 2/],
    ['a decrypt-only key past its grace is not needed', { fleetKeys: [key(1, 'active'), key(2, 'decrypt-only', { notAfter: iso(T - 1) })] }, true, /holds/],
    ['a staged key missing within ackTimeout: still ready (DNS does not name it)', { fleetKeys: [key(1, 'active'), key(3, 'staged')], stagedSeen: new Map([[3, T - 2000]]) }, true, /holds/],
    ['a staged key missing past ackTimeout: not ready', { fleetKeys: [key(1, 'active'), key(3, 'staged')], stagedSeen: new Map([[3, T - 3001]]) }, false, /did not acknowledge staged config_id 3/],
    ['store down briefly: stays ready with what it holds', { storeUp: false, lastSynced: T - 29_000 }, true, /unreachable: serving the keys it holds/],
    ['store down over half of forgetAfter: not ready', { storeUp: false, lastSynced: T - 30_001 }, false, /unreachable for 30s/],
    // A process frozen (SIGSTOP, paused VM) past half of forgetAfter wakes believing the store up: its copy may be stale all the same.
    ['last read over half of forgetAfter ago with the store believed up (woken from a freeze): not ready', { storeUp: true, lastSynced: T - 30_001 }, false, /last read from the fleet store 30s ago/],
  ];
  for (const [desc, more, ready, re] of table) {
    it(desc, () => {
      const r = readiness(base(more));
      assert.equal(r.ready, ready, r.reason);
      assert.match(r.reason, re);
    });
  }
});

describe('decidePublish: DNS names a staged key only when every member holds it or is drained', () => {
  const inst = (id: string, keys: number[], more: Partial<InstanceRecord> = {}): [string, InstanceRecord] => [
    id,
    { id, addresses: [], keys, configRevision: 'r', ready: true, started: iso(T), updated: iso(T), ...more },
  ];
  const o = { ackTimeoutMs: 3000, drainMs: 1000 };
  it('all members hold it → publish', () => {
    const d = decidePublish(9, T - 100, ['a', 'b'], new Map([inst('a', [1, 9]), inst('b', [9])]), T, o);
    assert.deepEqual(d, { publish: true, waitingFor: [], late: [], excused: [] });
  });
  it('one member without it, within ackTimeout → wait, not late', () => {
    const d = decidePublish(9, T - 100, ['a', 'b'], new Map([inst('a', [9]), inst('b', [1])]), T, o);
    assert.deepEqual(d, { publish: false, waitingFor: ['b'], late: [], excused: [] });
  });
  it('past ackTimeout and still ready → late, still waited for (not drained yet)', () => {
    const d = decidePublish(9, T - 5000, ['a', 'b'], new Map([inst('a', [9]), inst('b', [1])]), T, o);
    assert.deepEqual(d, { publish: false, waitingFor: ['b'], late: ['b'], excused: [] });
  });
  it('not ready for less than drain → waited for', () => {
    const d = decidePublish(9, T - 5000, ['a', 'b'], new Map([inst('a', [9]), inst('b', [1], { ready: false, notReadySince: iso(T - 999) })]), T, o);
    assert.equal(d.publish, false);
  });
  it('not ready for drain or longer → excused, publish', () => {
    const d = decidePublish(9, T - 5000, ['a', 'b'], new Map([inst('a', [9]), inst('b', [1], { ready: false, notReadySince: iso(T - 1000) })]), T, o);
    assert.deepEqual(d, { publish: true, waitingFor: [], late: [], excused: ['b'] });
  });
  it('a member with no live registration (cut off, or dead) is waited for, however long', () => {
    const d = decidePublish(9, T - 3_600_000, ['a', 'b'], new Map([inst('a', [9])]), T, o);
    assert.deepEqual(d, { publish: false, waitingFor: ['b'], late: ['b'], excused: [] });
  });
  it('a registered instance whose membership is not (yet) listed still counts', () => {
    const d = decidePublish(9, T - 100, ['a'], new Map([inst('a', [9]), inst('c', [])]), T, o);
    assert.deepEqual(d.waitingFor, ['c']);
  });
});
