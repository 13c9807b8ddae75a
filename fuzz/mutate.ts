/**
 * Byte-level mutations for the fuzzer: the libFuzzer/AFL set (bit flips,
 * interesting values, insert/delete/duplicate ranges, splicing two corpus
 * entries, dictionary tokens) plus length-field edits, since every format
 * fuzzed here (TLS, ECH, DNS, SVCB, TSIG) is length-prefixed: a mutation that
 * rewrites a u8/u16/u24 to "the bytes that remain" or off by one reaches the
 * code behind the length check far more often than a random byte does.
 */

/** xorshift128+: fast, seedable, good enough to pick mutations. */
export class Rng {
  private a: number;
  private b: number;

  constructor(seed: number) {
    this.a = (seed ^ 0x9e3779b9) >>> 0 || 1;
    this.b = (seed * 2654435761) >>> 0 || 2;
  }

  u32(): number {
    let s1 = this.a;
    const s0 = this.b;
    this.a = s0;
    s1 ^= s1 << 11;
    s1 ^= s1 >>> 8;
    this.b = (s1 ^ s0 ^ (s0 >>> 19)) >>> 0;
    return (this.a + this.b) >>> 0;
  }

  /** 0 ≤ r < n */
  below(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }

  chance(oneIn: number): boolean {
    return this.below(oneIn) === 0;
  }
}

const INTERESTING_8 = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0f, 0x10, 0x16, 0x17, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xc0, 0xfe, 0xff];
const INTERESTING_16 = [0x0000, 0x0001, 0x00ff, 0x0100, 0x0303, 0x0304, 0x3fff, 0x4000, 0x4001, 0x7fff, 0x8000, 0xfe0d, 0xfd00, 0xffff];

export interface MutateContext {
  rng: Rng;
  maxLen: number;
  dict: Uint8Array[];
  /** Another corpus entry to splice with. */
  other: () => Uint8Array;
}

type Mutator = (b: Uint8Array, c: MutateContext) => Uint8Array;

const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

const randomBytes = (c: MutateContext, n: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = c.rng.below(256);
  return out;
};

/** A position biased towards the start, where headers and length fields live. */
const pos = (c: MutateContext, len: number) => (c.rng.chance(2) ? c.rng.below(Math.min(len, 64)) : c.rng.below(len));

const MUTATORS: Mutator[] = [
  // flip one bit
  (b, c) => {
    if (!b.length) return b;
    const o = b.slice();
    const i = pos(c, o.length);
    o[i]! ^= 1 << c.rng.below(8);
    return o;
  },
  // random byte
  (b, c) => {
    if (!b.length) return b;
    const o = b.slice();
    o[pos(c, o.length)] = c.rng.below(256);
    return o;
  },
  // interesting byte
  (b, c) => {
    if (!b.length) return b;
    const o = b.slice();
    o[pos(c, o.length)] = INTERESTING_8[c.rng.below(INTERESTING_8.length)]!;
    return o;
  },
  // interesting u16 (big endian)
  (b, c) => {
    if (b.length < 2) return b;
    const o = b.slice();
    const i = pos(c, o.length - 1);
    const v = INTERESTING_16[c.rng.below(INTERESTING_16.length)]!;
    o[i] = v >> 8;
    o[i + 1] = v & 0xff;
    return o;
  },
  // add/subtract a small number to a byte
  (b, c) => {
    if (!b.length) return b;
    const o = b.slice();
    const i = pos(c, o.length);
    o[i] = (o[i]! + c.rng.below(35) - 17) & 0xff;
    return o;
  },
  // length-field edit: treat 1..3 bytes as a big-endian length; set it to what remains, or nudge it by ±1..4
  (b, c) => {
    if (b.length < 3) return b;
    const o = b.slice();
    const w = 1 + c.rng.below(3);
    const i = pos(c, o.length - w);
    let v = 0;
    for (let k = 0; k < w; k++) v = v * 256 + o[i + k]!;
    const remain = o.length - i - w;
    const pick = c.rng.below(4);
    v = pick === 0 ? remain : pick === 1 ? v + 1 + c.rng.below(4) : pick === 2 ? v - 1 - c.rng.below(4) : c.rng.below(remain + 1);
    v = Math.max(0, Math.min(v, 256 ** w - 1));
    for (let k = w - 1; k >= 0; k--) {
      o[i + k] = v & 0xff;
      v = Math.floor(v / 256);
    }
    return o;
  },
  // insert random bytes
  (b, c) => {
    const i = c.rng.below(b.length + 1);
    return cat(b.subarray(0, i), randomBytes(c, 1 + c.rng.below(c.rng.chance(4) ? 128 : 8)), b.subarray(i));
  },
  // insert a run of one byte
  (b, c) => {
    const i = c.rng.below(b.length + 1);
    return cat(b.subarray(0, i), new Uint8Array(1 + c.rng.below(64)).fill(INTERESTING_8[c.rng.below(INTERESTING_8.length)]!), b.subarray(i));
  },
  // delete a range
  (b, c) => {
    if (b.length < 2) return b;
    const i = c.rng.below(b.length);
    const n = 1 + c.rng.below(Math.min(b.length - i, c.rng.chance(4) ? 256 : 16));
    return cat(b.subarray(0, i), b.subarray(i + n));
  },
  // duplicate a range in place
  (b, c) => {
    if (!b.length) return b;
    const i = c.rng.below(b.length);
    const n = 1 + c.rng.below(Math.min(b.length - i, 64));
    return cat(b.subarray(0, i + n), b.subarray(i, i + n), b.subarray(i + n));
  },
  // copy a range over another place
  (b, c) => {
    if (b.length < 2) return b;
    const o = b.slice();
    const from = c.rng.below(b.length);
    const to = c.rng.below(b.length);
    const n = 1 + c.rng.below(Math.min(b.length - Math.max(from, to), 64));
    o.set(b.subarray(from, from + n), to);
    return o;
  },
  // truncate
  (b, c) => (b.length ? b.subarray(0, c.rng.below(b.length)) : b),
  // dictionary token: insert
  (b, c) => {
    if (!c.dict.length) return b;
    const t = c.dict[c.rng.below(c.dict.length)]!;
    const i = c.rng.below(b.length + 1);
    return cat(b.subarray(0, i), t, b.subarray(i));
  },
  // dictionary token: overwrite
  (b, c) => {
    if (!c.dict.length || !b.length) return b;
    const t = c.dict[c.rng.below(c.dict.length)]!;
    const o = b.slice();
    const i = pos(c, o.length);
    o.set(t.subarray(0, o.length - i), i);
    return o;
  },
  // splice: head of this entry + tail of another
  (b, c) => {
    const x = c.other();
    if (!x.length) return b;
    const i = c.rng.below(b.length + 1);
    const j = c.rng.below(x.length);
    return cat(b.subarray(0, i), x.subarray(j));
  },
  // splice: insert a piece of another entry
  (b, c) => {
    const x = c.other();
    if (!x.length) return b;
    const j = c.rng.below(x.length);
    const n = 1 + c.rng.below(Math.min(x.length - j, 128));
    const i = c.rng.below(b.length + 1);
    return cat(b.subarray(0, i), x.subarray(j, j + n), b.subarray(i));
  },
];

/** 1..8 stacked mutations (mostly few), result capped at maxLen. */
export function mutate(input: Uint8Array, c: MutateContext): Uint8Array {
  let b = input;
  const rounds = 1 + (c.rng.chance(2) ? 0 : c.rng.below(c.rng.chance(4) ? 8 : 3));
  for (let r = 0; r < rounds; r++) b = MUTATORS[c.rng.below(MUTATORS.length)]!(b, c);
  if (b === input) b = input.slice();
  return b.length > c.maxLen ? b.subarray(0, c.maxLen) : b;
}
