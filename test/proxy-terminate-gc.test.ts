/**
 * `serve` keeps V8's young generation at its starting size
 * (cli/young-generation.ts): each record that TLS termination sealed for a client owns an off-heap
 * backing store that only a scavenge frees, and with a grown young
 * generation the 64 MiB external limit is passed first and every 64 MiB of
 * records costs a full mark-compact (docs/benchmarks.md, "Cost, fifth pass").
 * Checked in child processes: the same allocation pattern grows the young
 * generation without the call and leaves it alone after it, unless the
 * operator gave node a semi-space flag of their own.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const MODULE = join(import.meta.dirname, '..', 'src', 'cli', 'young-generation.js');

/** new_space size (bytes) in a child after allocations that survive scavenges (as a round of handshakes leaves). */
function newSpaceAfterChurn(load: boolean, nodeArgs: string[] = []): number {
  const code = `
    import v8 from 'node:v8';
    ${load ? `(await import(${JSON.stringify(MODULE)})).keepYoungGenerationSmall();` : ''}
    const keep = [];
    for (let r = 0; r < 40; r++) { const t = []; for (let i = 0; i < 100000; i++) t.push({ r, i }); keep.push(t.length > 0 ? t.slice(0, 1000) : t); }
    process.stdout.write(String(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size));
  `;
  return Number(execFileSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 30_000 }));
}

describe('terminated bulk: the young generation stays small so sealed records are freed by scavenges', () => {
  it('the allocation pattern grows the young generation past 4 MiB in a process without the call', () => {
    assert.ok(newSpaceAfterChurn(false) > 4 << 20);
  });
  it('after keepYoungGenerationSmall() it stays at most 4 MiB', () => {
    assert.ok(newSpaceAfterChurn(true) <= 4 << 20);
  });
  it('an operator-given semi-space flag wins', () => {
    assert.ok(newSpaceAfterChurn(true, ['--semi-space-growth-factor=2']) > 4 << 20);
  });
});
