/**
 * GET /ready and the configuration (issue #9: "200 only once an instance
 * holds the current keys and configuration"; docs/fleet.md "GET /ready"):
 * with providers.etcd an instance is not ready when another live, ready
 * instance has run a newer etcd configuration for longer than the grace.
 * Pure functions (src/fleet/records.ts configBehind(), readiness()), fake clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ConfigInForce, configBehind, type InstanceRecord, type ReadinessInput, readiness } from '../src/fleet/records.js';

const T = Date.parse('2026-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const GRACE = 5000;
const conf = (revision: number, digest: string, sinceMs: number, rootKey = 'traefik'): ConfigInForce => ({ rootKey, revision, digest, since: iso(sinceMs) });
const rec = (id: string, config: ConfigInForce | undefined, ready = true): InstanceRecord => ({
  id,
  addresses: ['127.0.0.1:1'],
  keys: [1],
  configRevision: config ? String(config.revision) : 'a1b2c3d4e5f6',
  ...(config ? { config } : {}),
  ready,
  started: iso(T - 600_000),
  updated: iso(T),
});
const MINE = conf(100, 'd-old', T - 600_000);

describe('configBehind: not ready while another ready instance runs a newer etcd configuration', () => {
  const table: [string, ConfigInForce | undefined, InstanceRecord[], string | RegExp | undefined][] = [
    ['behind, the other has run it past the grace: not ready, the reason names both revisions', MINE, [rec('b', conf(112, 'd-new', T - GRACE - 1))], /^runs configuration revision 100, instance b runs 112 /],
    ['behind, the other applied it within the grace (this one may be applying it now): ready', MINE, [rec('b', conf(112, 'd-new', T - GRACE + 1))], undefined],
    ['every instance refused the new revision: all run the old one, nobody is behind', MINE, [rec('b', conf(100, 'd-old', T - 600_000)), rec('c', conf(100, 'd-old', T - 600_000))], undefined],
    // The revision is the one each instance read the keys at: the same keys read later carry a higher number.
    ['the same keys read at a later revision by another instance: not behind', MINE, [rec('b', conf(130, 'd-old', T - 60_000))], undefined],
    ['the other instance runs it but is not ready: ignored', MINE, [rec('b', conf(112, 'd-new', T - 60_000), false)], undefined],
    // A dead instance's record goes with its lease: it is not in the list read from instances/.
    ['no live instance runs a newer one (the one that did is gone): ready', MINE, [], undefined],
    ['the other runs an older revision: this one is not behind', conf(112, 'd-new', T - 60_000), [rec('b', MINE)], undefined],
    ['another root key (another configuration altogether): ignored', MINE, [rec('b', conf(112, 'd-new', T - 60_000, 'other'))], undefined],
    ['a configuration file per instance (revisions are hashes): nothing compared', undefined, [rec('b', undefined)], undefined],
    ['this instance runs the file alone, the others an etcd configuration: nothing compared', undefined, [rec('b', conf(112, 'd-new', T - 60_000))], undefined],
    ['its own record in the list is skipped', MINE, [rec('a', conf(112, 'd-new', T - 60_000))], undefined],
    ['two instances ahead: the reason names the newest', MINE, [rec('b', conf(112, 'd-new', T - 60_000)), rec('c', conf(120, 'd-newer', T - 60_000))], /instance c runs 120/],
  ];
  for (const [desc, mine, peers, want] of table) {
    it(desc, () => {
      const r = configBehind('a', mine, peers, T, GRACE);
      if (want === undefined) assert.equal(r, undefined);
      else assert.match(r ?? '(ready)', want as RegExp);
    });
  }
});

describe('GET /ready (readiness) with providers.etcd', () => {
  const base = (config: ReadinessInput['config']): ReadinessInput => ({
    now: T,
    synced: true,
    lastSynced: T,
    storeUp: true,
    fleetKeys: [{ configId: 1, publicName: 'p.example.test', state: 'active', created: iso(T - 60_000) }],
    stagedSeen: new Map(),
    held: new Set([1]),
    ackTimeoutMs: 3000,
    forgetAfterMs: 60_000,
    ...(config ? { config } : {}),
  });
  const ahead = [rec('b', conf(112, 'd-new', T - GRACE - 1))];

  it('behind past the grace: 503 with the reason', () => {
    const r = readiness(base({ id: 'a', mine: MINE, peers: ahead, graceMs: GRACE }));
    assert.equal(r.ready, false);
    assert.match(r.reason, /runs configuration revision 100, instance b runs 112/);
  });

  it('ready again once it applies that revision (or a newer one)', () => {
    for (const mine of [conf(113, 'd-new', T), conf(140, 'd-newer', T)]) {
      const r = readiness(base({ id: 'a', mine, peers: ahead, graceMs: GRACE }));
      assert.equal(r.ready, true, r.reason);
    }
  });

  it('without providers.etcd (no config input): unchanged', () => {
    assert.equal(readiness(base(undefined)).ready, true);
  });
});
