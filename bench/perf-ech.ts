/**
 * Reads `perf script -F pid,ip,sym,dso` of a perfpair or termpair run
 * (bench/ab-proxy.ts: one serve given only ECH connections, one only plain
 * ones, recorded by one `perf record -F 997 -g` over the same ABBA slices) and
 * prints µs per connection by item, ECH minus plain: the accounting of
 * docs/benchmarks.md, "ECH cost, ninth pass".
 *
 * Usage:
 *   perf script -i DIR/pair.perf.data -F pid,ip,sym,dso | node dist/bench/perf-ech.js ECHPID PLAINPID N [HZ]
 * N is the connections (handshakes) of each kind in the recorded slices (the
 * run prints it), HZ the sampling rate (997). A sample is charged to the
 * innermost ECH item on its stack (the markers below, JS frames and the
 * native frames under them, so inlined JS still lands in its item); samples
 * with no item are "the same connection code" and are split by what runs at
 * the leaf (kernel by system call, V8, node, OpenSSL, JS). The X25519
 * assembly of OpenSSL keeps no frame pointer: a leaf there whose stack lost
 * its caller is counted as its own row.
 */
import { createInterface } from 'node:readline';
import { perfSamples } from './util.js';

const [echPid, plainPid, nArg, hzArg] = process.argv.slice(2);
if (!echPid || !plainPid || !nArg) {
  process.stderr.write('usage: perf script -F pid,ip,sym,dso | node dist/bench/perf-ech.js ECHPID PLAINPID N [HZ]\n');
  process.exit(2);
}
const us = 1e6 / Number(hzArg ?? 997) / Number(nArg);

const ITEMS: [RegExp, string][] = [
  [/node::crypto::KeyObjectHandle::InitEDRaw|JS:\S*(getKeyObjectHandleFromJwk|prepareAsymmetricKey|createPublicKey) /, 'X25519 key import (createPublicKey, JWK)'],
  [/node::crypto::\S*DiffieHellman|JS:\S*diffieHellman /, 'X25519 (diffieHellman)'],
  [/node::crypto::CipherBase|JS:\S*(Decipheriv|createCipherWithIV|setAuthTag|setAAD) |JS:\S*(update|final) node:internal\/crypto\/cipher/, 'AES-GCM (createDecipheriv … final)'],
  [/JS:\S*(hmac|hmacSha256|hmacSha256Pair|keyAndNonce|labeledExtract|labeledExpand|hkdfExpand|hkdfExtract|compress|macInto|keyStates|finish|padState) \S*crypto\/(sha256|hkdf|hpke|node)\.js/, 'HMAC-SHA-256 (JS, sha256.ts)'],
  [/JS:\S*rebuildInner /, 'rebuildInner (decode, checks)'],
  [/JS:\S*(echAcceptConfirmation|confirmation) /, 'accept confirmation'],
  [/JS:\S*get raw /, 'ClientHelloInner encode (get raw)'],
  [/JS:\S*innerHelloRecords /, 'inner records (split)'],
  [/JS:\S*routingView /, 'routingView'],
  [/JS:\S*(decryptEch|setupReceiver|keySchedule|decap|outerAad) /, 'decryptEch glue (AAD copy, key schedule JS, b64u, …)'],
];
const ASM = /^(x25519_|ecx_|ossl_x25519)/;

function rest(leaf: string, dso: string, stack: string[]): string {
  if (dso.includes('kernel')) {
    const sys = stack.map((s) => /^(__x64_sys_\w+|asm_exc_page_fault)/.exec(s)?.[1]).find(Boolean);
    return `kernel ${sys ?? '(irq, softirq, scheduler)'}`;
  }
  if (dso.includes('perf-')) return leaf.includes('dist/src') ? 'JS, echgate' : 'JS, node library';
  if (dso.includes('libc')) return 'libc';
  if (/v8::internal::(Heap|Scaveng|MarkCompact|Sweep|Marking|Minor|Evacuat|ConcurrentMarking)|GC/.test(leaf)) return 'V8 GC';
  if (/compiler::|Compil|Maglev|Deoptim|Parser/.test(leaf)) return 'V8 compiler';
  if (leaf.startsWith('Builtins_') || leaf.startsWith('v8::')) return 'V8 builtins and runtime';
  if (leaf.startsWith('node::') || leaf.startsWith('uv_') || leaf.startsWith('uv__')) return 'node and libuv (C++)';
  return 'other native (OpenSSL, …)';
}

type Counts = Map<string, number>;
const counts: Record<string, Counts> = { [echPid]: new Map(), [plainPid]: new Map() };
const add = (m: Counts, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
const total: Record<string, number> = { [echPid]: 0, [plainPid]: 0 };

const reader = perfSamples((pid, syms, dsos) => {
  const m = counts[pid];
  if (!m) return;
  total[pid]!++;
  let item: string | undefined;
  for (const s of syms) {
    item = ITEMS.find(([re]) => re.test(s))?.[1];
    if (item) break;
  }
  if (!item && ASM.test(syms[0]!)) item = 'X25519 assembly, caller lost';
  add(m, item ? `ECH item: ${item}` : `same code: ${rest(syms[0]!, dsos[0]!, syms)}`);
});
const rl = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
for await (const line of rl) reader.line(line);
reader.end();

const e = counts[echPid]!;
const p = counts[plainPid]!;
const keys = [...new Set([...e.keys(), ...p.keys()])].sort((a, b) => (e.get(b) ?? 0) - (p.get(b) ?? 0) - ((e.get(a) ?? 0) - (p.get(a) ?? 0)));
const f = (x: number) => (x * us).toFixed(1).padStart(7);
process.stdout.write(`µs per connection (samples × ${us.toFixed(4)}): ECH ${f(total[echPid]!)}, plain ${f(total[plainPid]!)}, extra ${f(total[echPid]! - total[plainPid]!)}\n`);
process.stdout.write(`${'extra'.padStart(7)} ${'ECH'.padStart(7)} ${'plain'.padStart(7)}\n`);
for (const k of keys) {
  const a = e.get(k) ?? 0;
  const b = p.get(k) ?? 0;
  process.stdout.write(`${f(a - b)} ${f(a)} ${f(b)}  ${k}\n`);
}
