/**
 * The index-based extension decoders (wire/tls/extensions.ts decodeServerName,
 * decodeAlpn, decodeECHClientHello) against the Reader-based ones they
 * replaced, kept here word for word as the reference: on the extension bodies
 * of the captures and the RFC 8448 hello, every truncation, every byte
 * mutation and a list of edge cases (RFC 6066 §3, RFC 7301 §3.1, RFC 9849 §5),
 * both give the same value or fail with the same typed error (code, alert,
 * message). And the routing scan gives the same view whether the hello comes
 * as a Buffer (a socket's bytes) or as a plain Uint8Array.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reader } from '../src/bytes/reader.js';
import { fromHex } from '../src/bytes/util.js';
import { EchgateError, isEchgateError } from '../src/errors.js';
import { decodeClientHelloMessage, scanClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import { decodeAlpn, decodeECHClientHello, decodeServerName, type ECHClientHello } from '../src/wire/tls/extensions.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { json, vector } from './helpers.js';

// ---- the reference: the Reader-based decoders as they were (main 1419f49) ----
const decodeErr = (msg: string) => new EchgateError('ERR_DECODE', msg, { alert: 'decode_error' });
const illegal = (msg: string) => new EchgateError('ERR_ILLEGAL', msg, { alert: 'illegal_parameter' });
const latin1 = (b: Uint8Array) => String.fromCharCode.apply(null, b as unknown as number[]);

function refServerName(data: Uint8Array): string | undefined {
  const r = new Reader(data);
  const list = r.sub16('server_name_list');
  r.expectEnd('server_name extension');
  if (list.left === 0) throw decodeErr('empty server_name_list');
  let host: string | undefined;
  let seen = 0;
  let others: number[] | undefined;
  while (!list.atEnd()) {
    const nameType = list.u8('name_type');
    const name = list.vec16('HostName', 1);
    if (nameType < 32 ? seen & (1 << nameType) : others?.includes(nameType)) {
      throw illegal(`server_name_list has two names of type ${nameType}`);
    }
    if (nameType < 32) seen |= 1 << nameType;
    else if (others) others.push(nameType);
    else others = [nameType];
    if (nameType !== 0) continue;
    let upper = false;
    for (const c of name) {
      if (c <= 0x20 || c >= 0x7f) throw illegal('server_name has a byte outside printable ASCII');
      if (c >= 0x41 && c <= 0x5a) upper = true;
    }
    const s = upper ? latin1(name).toLowerCase() : latin1(name);
    host = s.endsWith('.') ? s.slice(0, -1) : s;
  }
  return host;
}

function refAlpn(data: Uint8Array): string[] {
  const r = new Reader(data);
  const list = r.sub16('protocol_name_list');
  r.expectEnd('ALPN extension');
  if (list.left < 2) throw decodeErr('ALPN protocol_name_list shorter than 2 bytes');
  const out: string[] = [];
  while (!list.atEnd()) out.push(latin1(list.vec8('ProtocolName', 1)));
  return out;
}

function refEch(data: Uint8Array): ECHClientHello {
  const r = new Reader(data);
  const t = r.u8('ECHClientHelloType');
  if (t === 1) {
    r.expectEnd('inner ECH extension');
    return { type: 'inner' };
  }
  if (t !== 0) throw illegal(`unknown ECHClientHelloType ${t}`);
  const kdfId = r.u16('kdf_id');
  const aeadId = r.u16('aead_id');
  const configId = r.u8('config_id');
  const enc = r.vec16('enc');
  const plen = r.u16('payload length');
  if (plen === 0) throw decodeErr('empty ECH payload');
  const payloadOffset = r.offset;
  const payload = r.bytes(plen, 'payload');
  r.expectEnd('outer ECH extension');
  return { type: 'outer', kdfId, aeadId, configId, enc, payload, payloadOffset };
}

/** Views as arrays of their bytes, whatever their class (Buffer or Uint8Array). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return Array.from(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

type Result = { ok: unknown } | { err: { code: string; alert: unknown; message: string } };
function outcome(f: () => unknown): Result {
  try {
    const v = f();
    // Views compare by their bytes, whatever their class.
    return { ok: plain(v) };
  } catch (e) {
    if (!isEchgateError(e)) throw e;
    return { err: { code: e.code, alert: (e as { alert?: unknown }).alert, message: e.message } };
  }
}

const PAIRS: [string, (d: Uint8Array) => unknown, (d: Uint8Array) => unknown, number][] = [
  ['server_name', decodeServerName, refServerName, ExtensionType.server_name],
  ['alpn', decodeAlpn, refAlpn, ExtensionType.application_layer_protocol_negotiation],
  ['ech', decodeECHClientHello, refEch, ExtensionType.encrypted_client_hello],
];

function hellos(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const c of json('captures/manifest.json').captures) out.push(parseHelloRecords(vector(`captures/${c.file}`))!.message);
  out.push(fromHex(json('rfc8448-simple-1rtt.json').messages.client_hello));
  return out;
}

/** Every body of extension `type` in the seeds, plus hand-made edge cases. */
function bodies(type: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const m of hellos()) for (const e of decodeClientHelloMessage(m).extensions) if (e.type === type) out.push(new Uint8Array(e.data));
  const b = (...x: number[]) => new Uint8Array(x);
  const name = (t: number, s: string) => [t, 0, s.length, ...Buffer.from(s, 'latin1')];
  const list = (...items: number[][]) => {
    const flat = items.flat();
    return b(flat.length >> 8, flat.length & 0xff, ...flat);
  };
  if (type === ExtensionType.server_name) {
    out.push(
      list(name(0, 'Example.COM.')),
      list(name(0, '.')),
      list(name(0, 'a')),
      list(name(0, 'a'), name(0, 'b')),
      list(name(1, 'x'), name(0, 'a.b')),
      list(name(40, 'x'), name(0, 'a'), name(40, 'y')),
      list(name(40, 'x'), name(41, 'y'), name(0, 'ok')),
      list(name(0, 'sp ace')),
      list(name(0, 'del\x7f')),
      list([0, 0, 0]),
      list(),
      b(0, 5, 0, 0, 1, 0x61),
      b(0, 4, 0, 0, 1, 0x61, 0),
    );
  }
  if (type === ExtensionType.application_layer_protocol_negotiation) {
    out.push(list([2, 0x68, 0x32], [8, ...Buffer.from('http/1.1')]), list([0]), list([1, 0xff]), list([1, 0x61], [0]), list([5, 0x61]), list(), list([1]));
  }
  if (type === ExtensionType.encrypted_client_hello) {
    out.push(b(1), b(1, 0), b(2), b(), b(0, 0, 1, 0, 1, 7, 0, 0, 0, 0), b(0, 0, 1, 0, 1, 7, 0, 1, 0xaa, 0, 2, 1, 2), b(0, 0, 1, 0, 1, 7, 0, 1, 0xaa, 0, 2, 1, 2, 3));
  }
  return out;
}

describe('index-based extension decoders: same answers as the Reader-based ones (RFC 6066 §3, RFC 7301 §3.1, RFC 9849 §5)', () => {
  for (const [what, got, want, type] of PAIRS) {
    it(`${what}: every seed, every truncation, every byte mutation`, () => {
      const seeds = bodies(type);
      assert.ok(seeds.length >= 5, `only ${seeds.length} ${what} seeds`);
      let ok = 0;
      for (const d of seeds) {
        const check = (x: Uint8Array, why: string) => {
          const w = outcome(() => want(x));
          if ('ok' in w) ok++;
          assert.deepEqual(outcome(() => got(x)), w, `${what}: ${why} of ${Buffer.from(d).toString('hex')}`);
          // A Buffer view of the same bytes (what a socket delivers) decodes the same.
          assert.deepEqual(outcome(() => got(Buffer.from(x))), w, `${what} on a Buffer: ${why}`);
        };
        check(d, 'as is');
        for (let n = 0; n < d.length; n++) check(d.subarray(0, n), `truncated to ${n}`);
        const longer = new Uint8Array(d.length + 2);
        longer.set(d);
        check(longer, 'two trailing bytes');
        for (let i = 0; i < Math.min(d.length, 400); i++) {
          for (const v of [0x00, 0x01, 0x20, 0x41, 0x7f, 0xff, d[i]! ^ 0x01, d[i]! ^ 0x80]) {
            const x = new Uint8Array(d);
            x[i] = v;
            check(x, `byte ${i} = ${v}`);
          }
        }
      }
      assert.ok(ok > seeds.length, `${what}: too few inputs decoded (${ok}): the mutations test only errors`);
    });
  }

  it('the routing scan gives the same view for a Buffer (a socket read) as for a plain Uint8Array', () => {
    for (const m of hellos()) {
      const asBuffer = Buffer.concat([Buffer.from([9, 9, 9]), Buffer.from(m)]).subarray(3);
      const a = scanClientHelloMessage(asBuffer);
      const b = scanClientHelloMessage(new Uint8Array(m));
      assert.deepEqual(outcome(() => a.view), outcome(() => b.view));
      assert.deepEqual(Array.from(a.hello.raw!), Array.from(b.hello.raw!));
      assert.deepEqual(a.hello.extensions.length, b.hello.extensions.length);
    }
  });
});
