/**
 * The fuzz targets added for the ESNI and PostgreSQL decoders: their seeds
 * (built from the fixed-key case of test/esni.test.ts and one of each
 * preamble message) must run clean, so a campaign starts from inputs that
 * reach the deep paths instead of from refusals. `npm run fuzz` does the
 * fuzzing; this only keeps the seeds honest.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setSnapshots } from '../fuzz/harness.js';
import { mutate, Rng } from '../fuzz/mutate.js';
import { clientRun, serverRun, TARGETS } from '../fuzz/targets.js';
import { isEchgateError } from '../src/errors.js';

const target = (name: string) => {
  const t = TARGETS.find((x) => x.name === name);
  assert.ok(t, `no fuzz target ${name}`);
  t.setup?.();
  return t;
};

describe('fuzz targets for draft-ietf-tls-esni-02 and the PostgreSQL preamble', () => {
  it('esni: every seed is accepted (§5.2 decryption of the fixed-key case, §4 ESNIKeys, the TXT form)', () => {
    const t = target('esni');
    const seeds = t.seeds();
    assert.ok(seeds.length >= 6);
    for (const mode of [0, 1, 2, 3, 4, 5]) assert.ok(seeds.some((s) => s[0] === mode), `no seed for mode ${mode}`);
    for (const s of seeds) t.run(s);
  });

  it('esni: a truncated ClientEncryptedSNI is a typed refusal, not a crash', () => {
    const t = target('esni');
    const first = t.seeds()[0]!;
    assert.throws(() => t.run(first.subarray(0, first.length - 1)), (e: unknown) => isEchgateError(e));
  });

  it('postgres-preamble: every message seed runs clean, both directions', () => {
    const t = target('postgres-preamble');
    const seeds = t.seeds();
    assert.ok(seeds.some((s) => (s[0]! & 1) === 0) && seeds.some((s) => (s[0]! & 1) === 1));
    for (const s of seeds) t.run(s);
  });
});

describe('every fuzz target and its fixtures (issue #7)', () => {
  it('every target sets up and runs its seeds: no exception other than EchgateError', () => {
    // The engine fixtures read the engines' internal state: a refactor of it must show up here, not as a
    // campaign whose engine targets die in set-up.
    for (const t of TARGETS) {
      t.setup?.();
      const seeds = t.seeds();
      assert.ok(seeds.length > 0, `${t.name}: no seeds`);
      for (const s of seeds) {
        try {
          t.run(s);
        } catch (e) {
          assert.ok(isEchgateError(e), `${t.name}: seed ${Buffer.from(s.subarray(0, 24)).toString('hex')} threw ${(e as Error).stack}`);
        }
      }
    }
  });

  it('tls13-server/tls13-client: an engine copied from a snapshot answers every input exactly as one built afresh', () => {
    const hex = (o: unknown) => JSON.stringify(o, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v));
    for (const [name, run] of [
      ['tls13-server', serverRun],
      ['tls13-client', clientRun],
    ] as const) {
      const t = target(name);
      const seeds = t.seeds();
      const rng = new Rng(5);
      const inputs = [...seeds];
      for (let i = 0; i < 60; i++) inputs.push(mutate(seeds[rng.below(seeds.length)]!, { rng, maxLen: t.maxLen, dict: t.dict ?? [], other: () => seeds[0]! }));
      try {
        for (const d of inputs) {
          setSnapshots(true);
          const copied = hex(run(d));
          const again = hex(run(d));
          setSnapshots(false);
          const fresh = hex(run(d));
          assert.equal(copied, fresh, `${name}: input ${Buffer.from(d).toString('hex').slice(0, 40)}`);
          assert.equal(again, fresh, `${name}: a second copy differs (the snapshot was changed by the first)`);
        }
      } finally {
        setSnapshots(true);
      }
    }
  });

  it('tls13-server mode 1 / tls13-client mode 1: the recorded flight sealed by the harness completes the handshake (RFC 8446 §4.4.4)', () => {
    // The server wipes the client handshake secret once the Finished is in; the fixture must keep its own
    // copy, or every mode-1 input is sealed under zeros and stops at bad_record_mac.
    const s = target('tls13-server').seeds().find((x) => x[0] === 1)!;
    assert.ok(serverRun(s).some((o) => o.established !== undefined && o.send.length === 0 && !o.closed));
    const c = target('tls13-client').seeds().find((x) => x[0] === 1)!;
    assert.ok(clientRun(c).some((o) => o.established !== undefined && !o.closed));
  });
});
