/**
 * `node --max-old-space-size=4096 dist/soak/heapdiff.js EARLY.heapsnapshot LATE.heapsnapshot [--top N]`
 *
 * Compares two V8 heap snapshots of the same process (from `npm run soak --
 * --snapshots ...`): live objects grouped by constructor (or by node type for
 * strings, arrays, code and hidden objects), count and self size in each,
 * the groups that grew most; and the largest Map and Set objects with what
 * holds them (the retaining object and property), so a growing cache or
 * per-connection map can be named. A snapshot holds only what survived the
 * full collection V8 runs before writing it, so growth here is retained
 * memory, not garbage waiting for the collector. `--who GROUP` also lists
 * what holds the objects of one group (retaining group and edge, counted),
 * in both snapshots.
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] }; node_count: number };
  nodes: number[];
  edges: number[];
  strings: string[];
}

interface Group {
  count: number;
  size: number;
}

interface Collection {
  kind: string;
  /** Self size of the Map/Set's backing hash table: grows with the entries. */
  tableBytes: number;
  heldBy: string;
}

interface Summary {
  totalBytes: number;
  totalNodes: number;
  groups: Map<string, Group>;
  collections: Collection[];
  /** For --who: retaining group and edge → how many of the group's objects it holds. */
  holders: Map<string, number>;
}

function load(file: string, who?: string): Summary {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const { node_fields: nf, node_types: nt, edge_fields: ef, edge_types: et } = snap.snapshot.meta;
  const N = nf.length;
  const E = ef.length;
  const fType = nf.indexOf('type');
  const fName = nf.indexOf('name');
  const fSize = nf.indexOf('self_size');
  const fEdges = nf.indexOf('edge_count');
  const eType = ef.indexOf('type');
  const eName = ef.indexOf('name_or_index');
  const eTo = ef.indexOf('to_node');
  const nodeTypes = nt[0];
  const edgeTypes = et[0];
  const { nodes, edges, strings } = snap;
  const groups = new Map<string, Group>();
  let totalBytes = 0;
  const groupOf = (type: string, name: string): string => {
    if (type === 'object' || type === 'closure' || type === 'regexp') return name;
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') return '(string)';
    if (type === 'array' || type === 'hidden' || type === 'native' || type === 'object shape') return `(${type}) ${name.length > 60 ? `${name.slice(0, 60)}…` : name}`;
    return `(${type})`;
  };
  // First edge index of each node.
  const firstEdge = new Uint32Array(nodes.length / N + 1);
  for (let i = 0, e = 0; i < nodes.length; i += N) {
    firstEdge[i / N] = e;
    e += nodes[i + fEdges]! * E;
  }
  const collections = new Map<number, Collection>();
  for (let i = 0; i < nodes.length; i += N) {
    const type = nodeTypes[nodes[i + fType]!]!;
    const name = strings[nodes[i + fName]!]!;
    const size = nodes[i + fSize]!;
    totalBytes += size;
    const k = groupOf(type, name);
    const g = groups.get(k) ?? { count: 0, size: 0 };
    g.count++;
    g.size += size;
    groups.set(k, g);
    if (type === 'object' && (name === 'Map' || name === 'Set')) {
      let tableBytes = 0;
      for (let e = firstEdge[i / N]!; e < firstEdge[i / N + 1]!; e += E) {
        const en = edgeTypes[edges[e + eType]!];
        if (en === 'internal' && strings[edges[e + eName]!] === 'table') tableBytes += nodes[edges[e + eTo]! + fSize]!;
      }
      collections.set(i, { kind: name, tableBytes, heldBy: '' });
    }
  }
  const holders = new Map<string, number>();
  const groupAt = (i: number) => groupOf(nodeTypes[nodes[i + fType]!]!, strings[nodes[i + fName]!]!);
  // Who holds each Map/Set: the first retaining object and the property name.
  for (let i = 0; i < nodes.length; i += N) {
    for (let e = firstEdge[i / N]!; e < firstEdge[i / N + 1]!; e += E) {
      if (who !== undefined) {
        const to = edges[e + eTo]!;
        const en = edgeTypes[edges[e + eType]!]!;
        if (en !== 'weak' && groupAt(to) === who) {
          const edgeName = en === 'element' || en === 'hidden' ? '[i]' : `.${strings[edges[e + eName]!]}`;
          const k = `${groupAt(i)} ${edgeName}`;
          holders.set(k, (holders.get(k) ?? 0) + 1);
        }
      }
      const c = collections.get(edges[e + eTo]!);
      if (!c || c.heldBy) continue;
      const en = edgeTypes[edges[e + eType]!]!;
      if (en === 'weak' || en === 'shortcut') continue;
      const edgeName = en === 'element' || en === 'hidden' ? `[${edges[e + eName]}]` : `.${strings[edges[e + eName]!]}`;
      c.heldBy = `${strings[nodes[i + fName]!]}${edgeName}`;
    }
  }
  return { totalBytes, totalNodes: nodes.length / N, groups, collections: [...collections.values()].sort((x, y) => y.tableBytes - x.tableBytes), holders };
}

function main(): void {
  const args = process.argv.slice(2);
  const ti = args.indexOf('--top');
  const top = ti >= 0 ? Number(args.splice(ti, 2)[1]) : 25;
  const wi = args.indexOf('--who');
  const who = wi >= 0 ? args.splice(wi, 2)[1] : undefined;
  if (args.length !== 2) throw new Error('usage: heapdiff EARLY.heapsnapshot LATE.heapsnapshot [--top N] [--who GROUP]');
  const [a, b] = [load(args[0]!, who), load(args[1]!, who)];
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(2)} MiB`;
  console.log(`early: ${a.totalNodes} objects, ${mib(a.totalBytes)}; late: ${b.totalNodes} objects, ${mib(b.totalBytes)}; growth ${mib(b.totalBytes - a.totalBytes)}`);
  const rows = [...new Set([...a.groups.keys(), ...b.groups.keys()])].map((k) => {
    const x = a.groups.get(k) ?? { count: 0, size: 0 };
    const y = b.groups.get(k) ?? { count: 0, size: 0 };
    return { k, c0: x.count, c1: y.count, dc: y.count - x.count, s0: x.size, s1: y.size, ds: y.size - x.size };
  });
  const show = (title: string, sorted: typeof rows) => {
    console.log(`\n${title}\n${'group'.padEnd(64)} ${'count'.padStart(16)} ${'Δcount'.padStart(8)} ${'self bytes'.padStart(22)} ${'Δbytes'.padStart(10)}`);
    for (const r of sorted.slice(0, top)) console.log(`${r.k.slice(0, 64).padEnd(64)} ${`${r.c0}→${r.c1}`.padStart(16)} ${String(r.dc).padStart(8)} ${`${r.s0}→${r.s1}`.padStart(22)} ${String(r.ds).padStart(10)}`);
  };
  show('grew most by self size', [...rows].sort((x, y) => y.ds - x.ds));
  show('grew most by count', [...rows].sort((x, y) => y.dc - x.dc));
  show('shrank most by self size', [...rows].sort((x, y) => x.ds - y.ds));
  const coll = (s: Summary, title: string) => {
    console.log(`\n${title}: largest Map/Set backing tables`);
    for (const c of s.collections.slice(0, 15)) console.log(`  ${c.kind.padEnd(4)} table ${String(c.tableBytes).padStart(9)} B  held by ${c.heldBy || '?'}`);
  };
  coll(a, 'early');
  coll(b, 'late');
  if (who !== undefined) {
    console.log(`\nwhat holds "${who}" (retaining group and edge: early → late)`);
    const keys = [...new Set([...a.holders.keys(), ...b.holders.keys()])].sort((x, y) => (b.holders.get(y) ?? 0) - (a.holders.get(y) ?? 0) - ((b.holders.get(x) ?? 0) - (a.holders.get(x) ?? 0)));
    for (const k of keys.slice(0, top)) console.log(`  ${String(a.holders.get(k) ?? 0).padStart(6)} → ${String(b.holders.get(k) ?? 0).padStart(6)}  ${k}`);
  }
}

main();
