/**
 * Domain names on the wire (RFC 1035 §3.1, §4.1.4): length-prefixed labels,
 * compression pointers when decoding (never when encoding), the 63/255 limits.
 * RFC 1035 §2.3.4: a name is at most 255 octets on the wire, counting every
 * length octet and the terminating root label; decoding and encoding apply
 * the same count, so every name we decode can be written back.
 * Names are returned in presentation form without the trailing dot, lower case
 * preserved as sent; the root is "".
 */
import type { Reader } from '../../bytes/reader.js';
import { EchgateError } from '../../errors.js';

const bad = (msg: string) => new EchgateError('ERR_DECODE', msg);

/** RFC 1035 §2.3.4: 255 octets in wire form, length octets and the root label included. */
export const MAX_NAME_OCTETS = 255;

/** Decode the name at `offset` of the whole message `msg`; returns it and the offset after it. */
export function decodeName(msg: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let at = offset;
  let next = -1;
  let jumps = 0;
  let total = 1; // the root label's length octet
  for (;;) {
    if (at >= msg.length) throw bad('truncated name');
    const len = msg[at]!;
    if (len === 0) {
      if (next < 0) next = at + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (at + 1 >= msg.length) throw bad('truncated compression pointer');
      const ptr = ((len & 0x3f) << 8) | msg[at + 1]!;
      // Pointers must go backwards: no loops, bounded work.
      if (ptr >= at || ++jumps > 64) throw bad('bad compression pointer');
      if (next < 0) next = at + 2;
      at = ptr;
      continue;
    }
    if (len & 0xc0) throw bad(`unsupported label type 0x${len.toString(16)}`);
    if (at + 1 + len > msg.length) throw bad('truncated label');
    total += len + 1;
    if (total > MAX_NAME_OCTETS) throw bad('name longer than 255 octets');
    labels.push(escapeLabel(msg.subarray(at + 1, at + 1 + len)));
    at += 1 + len;
  }
  return { name: labels.join('.'), next };
}

function escapeLabel(b: Uint8Array): string {
  let s = '';
  for (const c of b) {
    if (c === 0x2e || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\${String(c).padStart(3, '0')}`;
  }
  return s;
}

/** Presentation name ("a.example.", "a.example", "." or "") → uncompressed wire form. */
export function encodeName(name: string): Uint8Array {
  const out: number[] = [];
  let label: number[] = [];
  const flush = () => {
    if (label.length === 0) throw new EchgateError('ERR_ENCODE', `empty label in "${name}"`);
    if (label.length > 63) throw new EchgateError('ERR_ENCODE', `label longer than 63 octets in "${name}"`);
    out.push(label.length, ...label);
    label = [];
  };
  const n = name === '.' ? '' : name;
  for (let i = 0; i < n.length; i++) {
    const ch = n[i]!;
    if (ch === '\\') {
      const d = /^\d{3}/.exec(n.slice(i + 1));
      if (d) {
        label.push(Number(d[0]));
        i += 3;
      } else {
        label.push(n.charCodeAt(i + 1));
        i += 1;
      }
    } else if (ch === '.') {
      // The root's dot ends the name; an empty label before it ("a..") is refused as any empty label is.
      if (i === n.length - 1 && label.length > 0) break;
      flush();
    } else label.push(n.charCodeAt(i));
  }
  if (label.length) flush();
  out.push(0);
  if (out.length > MAX_NAME_OCTETS) throw new EchgateError('ERR_ENCODE', `name longer than 255 octets: "${name}"`);
  return Uint8Array.from(out);
}

/** Read an uncompressed name from a Reader (SVCB TargetName, RFC 9460 §2.2: never compressed). */
export function readUncompressedName(r: Reader): string {
  const labels: string[] = [];
  let total = 1; // the root label's length octet
  for (;;) {
    const len = r.u8('label length');
    if (len === 0) break;
    if (len > 63) throw bad('compressed or oversized label where none is allowed');
    total += len + 1;
    if (total > MAX_NAME_OCTETS) throw bad('name longer than 255 octets');
    labels.push(escapeLabel(r.bytes(len, 'label')));
  }
  return labels.join('.');
}
