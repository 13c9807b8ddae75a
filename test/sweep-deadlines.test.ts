/**
 * proxy/sweep-deadlines.ts: deadlines whose list timer is not cleared when
 * the list empties. An entry must still expire no earlier than its own
 * duration after it was added — also when the timer left armed was set for
 * an earlier, removed entry — a removed entry must never expire, and an
 * empty list must end up with no timer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SweepDeadlines, type SweepEntry } from '../src/proxy/sweep-deadlines.js';

const entry = (): SweepEntry & { added: number } => ({ swAt: 0, swPrev: undefined, swNext: undefined, swList: undefined, added: 0 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sweep deadlines', () => {
  it('an entry added while the timer is armed for a removed one expires at its own deadline, not earlier', async () => {
    const fired: { e: SweepEntry; at: number }[] = [];
    const d = new SweepDeadlines((e) => fired.push({ e, at: performance.now() }));
    const l = d.list(80);
    const a = entry();
    l.add(a);
    l.remove(a);
    assert.ok(l.armed, 'the timer stays armed when the list empties');
    await sleep(40);
    const b = entry();
    b.added = performance.now();
    l.add(b);
    await sleep(150);
    assert.deepEqual(
      fired.map((f) => f.e),
      [b],
      'only the entry still in the list expires',
    );
    assert.ok(fired[0]!.at - b.added >= 79, `expired ${(fired[0]!.at - b.added).toFixed(1)} ms after it was added, before its 80 ms`);
    assert.equal(l.size, 0);
    assert.equal(l.armed, false, 'an empty list holds no timer once its timer has fired');
  });

  it('entries expire in order; one removed in between never does, and re-adding restarts a deadline', async () => {
    const fired: SweepEntry[] = [];
    const l = new SweepDeadlines((e) => fired.push(e)).list(30);
    const [a, b, c] = [entry(), entry(), entry()];
    l.add(a);
    l.add(b);
    l.add(c);
    l.remove(b);
    await sleep(15);
    l.add(a);
    await sleep(25);
    assert.deepEqual(fired, [c]);
    await sleep(30);
    assert.deepEqual(fired, [c, a]);
    assert.equal(l.armed, false);
  });
});
