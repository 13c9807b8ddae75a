/**
 * Splits a `perf record -g` profile of `serve` (started with
 * `--perf-basic-prof`, so JS frames have names) into the parts a DoH query
 * costs: the kernel, TLS (OpenSSL and node's TLSWrap), nghttp2 and node's
 * HTTP/2 C++, node's JS (http2, streams, events, timers, ticks), ours (JS under
 * dist/src/), V8's garbage collector, and the rest (V8 runtime and compiler,
 * libuv, malloc outside any of those).
 *
 *   perf script -i FILE.data | node dist/bench/perf-split.js [PID]
 *
 * Each sample of the main thread (tid = PID, or the most sampled thread) is
 * given to the first frame from its leaf that belongs to one of the parts;
 * V8 builtins, runtime stubs and libc (memcpy, malloc) are passed through to
 * their caller, so a `memcpy` called by OpenSSL counts as TLS. Kernel frames
 * are "kernel" whatever called them (the system calls' own cost). Samples of
 * other threads (V8's concurrent GC and compiler) are counted apart.
 */
import { readFileSync } from 'node:fs';

type Part = 'kernel' | 'TLS' | 'nghttp2 + node http2 C++' | 'node JS' | 'ours' | 'GC' | 'other';
const PARTS: Part[] = ['kernel', 'TLS', 'nghttp2 + node http2 C++', 'node JS', 'ours', 'GC', 'other'];

const TLS = /(TLSWrap|^ossl_|^EVP_|^SSL_|^ssl3?_|^tls1|^tls13|^tls_|^aesni|^aes_|gcm|^CRYPTO_|^OPENSSL_|^BIO_|^ERR_|^RAND_|^sha\d|^SHA\d|^HMAC|^ChaCha|^Poly1305|^bn_|^BN_|^ec_|^EC_|^x25519|^OBJ_|^ASN1_|^PACKET_|^WPACKET_|^OSSL_|^evp_|^hmac_|^md_|^ssl_)/;
const H2 = /(^nghttp2_|node::http2::)/;
const GC = /(v8::internal::(Heap|Scavenger|Scavenge|MarkCompact|MinorMarkCompact|Sweeper|Marking|ConcurrentMarking|GCTracer|MemoryAllocator|PagedSpace|NewSpace|SemiSpace|LargeObjectSpace|IncrementalMarking|ObjectVisitor|Evacuat|RememberedSet|SlotSet)|Heap::CollectGarbage|PerformGarbageCollection)/;

function classify(frames: { sym: string; dso: string }[]): Part {
  for (const f of frames) {
    if (f.dso.includes('kernel')) return 'kernel';
    const s = f.sym;
    if (s.startsWith('JS:')) {
      if (s.includes('/dist/src/')) return 'ours';
      return 'node JS';
    }
    if (GC.test(s)) return 'GC';
    if (H2.test(s)) return 'nghttp2 + node http2 C++';
    if (TLS.test(s)) return 'TLS';
  }
  return 'other';
}

const [pidArg] = process.argv.slice(2);
const text = readFileSync(0, 'utf8');
const samples = text.split('\n\n');
const byTid = new Map<string, Map<Part, number>>();
for (const block of samples) {
  const lines = block.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) continue;
  const head = /^\s*\S+\s+(\d+)/.exec(lines[0]!);
  if (!head) continue;
  const tid = head[1]!;
  const frames = lines.slice(1).map((l) => {
    const m = /^\s*[0-9a-f]+\s+(.*?)(?:\+0x[0-9a-f]+)?\s+\(([^)]*)\)\s*$/.exec(l);
    return m ? { sym: m[1]!, dso: m[2]! } : { sym: l.trim(), dso: '' };
  });
  let parts = byTid.get(tid);
  if (!parts) {
    parts = new Map();
    byTid.set(tid, parts);
  }
  const p = classify(frames);
  parts.set(p, (parts.get(p) ?? 0) + 1);
}
const total = (m: Map<Part, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const tids = [...byTid.keys()].sort((a, b) => total(byTid.get(b)!) - total(byTid.get(a)!));
const main = pidArg && byTid.has(pidArg) ? pidArg : tids[0]!;
const m = byTid.get(main)!;
const n = total(m);
let others = 0;
for (const t of tids) if (t !== main) others += total(byTid.get(t)!);
process.stdout.write(`main thread ${main}: ${n} samples; other threads ${others} (${((100 * others) / (n + others)).toFixed(1)} % of all)\n`);
for (const p of PARTS) process.stdout.write(`${(((m.get(p) ?? 0) * 100) / n).toFixed(1).padStart(6)} %  ${p}\n`);
