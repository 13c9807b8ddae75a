/**
 * Guards over the source itself, for traps that bit us twice: `.slice()` on
 * bytes that may be a Buffer is a view, not a copy (the ECH AAD and the ECH
 * accept confirmation were both broken by it). Use bytes/util.ts copy().
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { ROOT } from './helpers.js';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

it('no argument-less .slice() on byte arrays in src/ (Buffer#slice is a view)', () => {
  const offenders: string[] = [];
  for (const f of files(join(ROOT, 'src'))) {
    readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        // view.slice() in the Writer is on a plain Uint8Array it just made.
        if (/\.slice\(\)/.test(line) && !line.includes('view.slice()')) offenders.push(`${f}:${i + 1}: ${line.trim()}`);
      });
  }
  assert.deepEqual(offenders, []);
});
