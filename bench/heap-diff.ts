/**
 * What N new objects hold: the self size and count per constructor (node
 * type + name) in heap snapshot B minus snapshot A, divided by N (e.g. the
 * idle connections opened between the two snapshots; `term-ab --mem N --heap DIR`).
 * Usage: node dist/bench/heap-diff.js A.heapsnapshot B.heapsnapshot N [TOP]
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

function byConstructor(file: string): Map<string, { n: number; size: number }> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const f = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const w = f.length;
  const iType = f.indexOf('type');
  const iName = f.indexOf('name');
  const iSize = f.indexOf('self_size');
  const m = new Map<string, { n: number; size: number }>();
  for (let i = 0; i < s.nodes.length; i += w) {
    const type = types[s.nodes[i + iType]!]!;
    // Strings and code by type only; objects by constructor name.
    const name = type === 'object' || type === 'native' || type === 'closure' ? `${type} ${s.strings[s.nodes[i + iName]!]}` : type;
    const e = m.get(name) ?? { n: 0, size: 0 };
    e.n++;
    e.size += s.nodes[i + iSize]!;
    m.set(name, e);
  }
  return m;
}

const [a, b, nArg, topArg = '40'] = process.argv.slice(2);
if (!a || !b || !nArg) {
  process.stderr.write('usage: heap-diff A.heapsnapshot B.heapsnapshot N [TOP]\n');
  process.exit(2);
}
const n = Number(nArg);
const before = byConstructor(a);
const after = byConstructor(b);
const rows = [...after].map(([k, v]) => {
  const o = before.get(k) ?? { n: 0, size: 0 };
  return { k, n: (v.n - o.n) / n, size: (v.size - o.size) / n };
});
rows.sort((x, y) => y.size - x.size);
const total = rows.reduce((t, r) => t + r.size, 0);
process.stdout.write(`per object (÷ ${n}): ${total.toFixed(0)} bytes of JS heap (self sizes; native/external memory such as OpenSSL contexts and socket buffers not included)\n`);
for (const r of rows.slice(0, Number(topArg))) process.stdout.write(`${r.size.toFixed(0).padStart(7)} B ${r.n.toFixed(2).padStart(6)} × ${r.k}\n`);
