/**
 * docs/configuration.md and the validator cannot disagree: every key a
 * section accepts (its `keys` shape, config/sections.ts) has a row in a key
 * table of the reference, and every key a table names is accepted.
 *
 * Convention read from the doc: a table whose header starts with `| key |`
 * documents the keys in the backticks of its first cell, relative to the
 * heading above it when the heading starts with a key path (`## tcp.routers.NAME`,
 * `### tls.options.NAME (…)`), or as full paths when they start with the
 * heading's top-level key (`dns.doh.address` under `## dns`).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { keyPaths, type Section } from '../src/config/fields.js';
import { configShape, SECTIONS } from '../src/config/sections.js';
import { ROOT } from './helpers.js';

/** The keys the doc's key tables name, with the line each comes from. */
export function documentedKeys(md: string, tops: Set<string>): Map<string, number> {
  const out = new Map<string, number>();
  let base: string | undefined;
  let inKeyTable = false;
  md.split('\n').forEach((line, i) => {
    const h = /^#{2,4}\s+([A-Za-z][\w.]*)/.exec(line);
    if (h) {
      base = tops.has(h[1]!.split('.')[0]!) ? h[1] : undefined;
      inKeyTable = false;
      return;
    }
    if (!line.startsWith('|')) {
      inKeyTable = false;
      return;
    }
    if (/^\|\s*key\s*\|/.test(line)) {
      inKeyTable = base !== undefined;
      return;
    }
    if (!inKeyTable || /^\|\s*-/.test(line)) return;
    const first = line.split('|')[1] ?? '';
    for (const m of first.matchAll(/`([^`]+)`/g)) {
      const k = m[1]!;
      const top = base!.split('.')[0]!;
      out.set(k === top || k.startsWith(`${top}.`) ? k : `${base}.${k}`, i + 1);
    }
  });
  return out;
}

function accepted(sections: readonly Section<unknown>[]) {
  const all = keyPaths(configShape(sections), '');
  return { leaves: new Set(all.filter((k) => k.leaf).map((k) => k.path)), nodes: new Set(all.filter((k) => !k.leaf).map((k) => k.path)) };
}

describe('docs/configuration.md documents exactly the keys the validator accepts', () => {
  const md = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
  const tops = new Set(SECTIONS.map((s) => s.path.split('.')[0]!));
  const doc = documentedKeys(md, tops);
  const { leaves, nodes } = accepted(SECTIONS);

  it('every accepted key has a row', () => {
    const missing = [...leaves].filter((k) => !doc.has(k));
    assert.deepEqual(missing, [], `keys the validator accepts that docs/configuration.md does not document:\n${missing.join('\n')}`);
  });
  it('every documented key is accepted', () => {
    const unknown = [...doc].filter(([k]) => !leaves.has(k) && !nodes.has(k)).map(([k, line]) => `line ${line}: ${k}`);
    assert.deepEqual(unknown, [], `keys docs/configuration.md documents that no section accepts:\n${unknown.join('\n')}`);
  });
  it('the check sees a key added to a section without a row, and a row without a key', () => {
    const extra: Section<unknown> = { path: 'log.colour', keys: 'boolean', parse: () => undefined };
    assert.ok(accepted([...SECTIONS, extra]).leaves.has('log.colour'));
    assert.ok(!doc.has('log.colour'));
    const more = documentedKeys(`${md}\n## log\n\n| key | default | meaning |\n|---|---|---|\n| \`log.colour\` | off | x |\n`, tops);
    assert.ok(more.has('log.colour') && !leaves.has('log.colour'));
  });
});
