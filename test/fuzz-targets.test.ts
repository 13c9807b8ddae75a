/**
 * The fuzz targets added for the ESNI and PostgreSQL decoders: their seeds
 * (built from the fixed-key case of test/esni.test.ts and one of each
 * preamble message) must run clean, so a campaign starts from inputs that
 * reach the deep paths instead of from refusals. `npm run fuzz` does the
 * fuzzing; this only keeps the seeds honest.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TARGETS } from '../fuzz/targets.js';
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
