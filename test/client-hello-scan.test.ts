/**
 * The proxy's routing scan (wire/tls/client-hello.ts scanClientHelloMessage)
 * against the full decoder it stands in for: over the Chromium captures, the
 * RFC 8448 hello and the NSS ECH vectors, and over every truncation and many
 * byte mutations of them, the scan must give the same routing view as
 * `routingView(decodeClientHelloMessage(m))` or fail with the same typed error
 * (code, alert and message). Its lazy hello must decode to the same fields.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex } from '../src/bytes/util.js';
import { isEchgateError } from '../src/errors.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import { type ClientHello, decodeClientHelloMessage, encodeClientHelloMessage, routingView, scanClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { json, vector } from './helpers.js';

function seeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const c of json('captures/manifest.json').captures) out.push(parseHelloRecords(vector(`captures/${c.file}`))!.message);
  out.push(fromHex(json('rfc8448-simple-1rtt.json').messages.client_hello));
  const nss = JSON.stringify(json('ech/nss-fixed-key-ech-decrypt-vectors.json'));
  for (const m of nss.matchAll(/"client_hello[a-z_]*"\s*:\s*"(01[0-9a-f]+)"/g)) out.push(fromHex(m[1]!));
  return out;
}

type Result = { ok: unknown } | { err: { code: string; alert: unknown; message: string } };

function outcome(f: () => unknown): Result {
  try {
    return { ok: f() };
  } catch (e) {
    if (!isEchgateError(e)) throw e;
    return { err: { code: e.code, alert: (e as { alert?: unknown }).alert, message: e.message } };
  }
}

const full = (m: Uint8Array) => outcome(() => routingView(decodeClientHelloMessage(m)));
const scanned = (m: Uint8Array) => outcome(() => scanClientHelloMessage(m).view);

function same(m: Uint8Array, what: string): void {
  assert.deepEqual(scanned(m), full(m), what);
}

/** Re-frame a body-level change: the handshake length follows the body, so the body's own checks are reached. */
function reframe(body: Uint8Array): Uint8Array {
  const m = new Uint8Array(4 + body.length);
  m[0] = 1;
  m[1] = body.length >>> 16;
  m[2] = (body.length >>> 8) & 0xff;
  m[3] = body.length & 0xff;
  m.set(body, 4);
  return m;
}

describe('scanClientHelloMessage: same answer as decode + routingView (RFC 8446 §4.1.2, §4.2)', () => {
  const all = seeds();

  it('has seeds: the four captures, RFC 8448 and NSS vectors', () => {
    assert.ok(all.length >= 5, `only ${all.length} seeds`);
  });

  it('gives the same routing view on every seed, and its lazy hello decodes to the same fields', () => {
    for (const m of all) {
      const want = decodeClientHelloMessage(m);
      const got = scanClientHelloMessage(m);
      assert.deepEqual(got.view, routingView(want));
      const h: ClientHello = got.hello;
      assert.deepEqual(
        { legacyVersion: h.legacyVersion, random: h.random, sessionId: h.sessionId, cipherSuites: h.cipherSuites, compressionMethods: h.compressionMethods, extensions: h.extensions, raw: h.raw },
        { ...want },
      );
    }
  });

  it('fails like the decoder on every truncation, framed and re-framed', () => {
    for (const m of all) {
      for (let n = 0; n < m.length; n++) {
        same(m.subarray(0, n), `truncated to ${n}`);
        if (n >= 4) same(reframe(m.subarray(4, n)), `body truncated to ${n - 4}`);
      }
      const longer = new Uint8Array(m.length + 3);
      longer.set(m);
      same(longer, 'trailing bytes after the message');
      same(reframe(longer.subarray(4)), 'trailing bytes after the extensions');
    }
  });

  it('agrees on byte mutations at every offset (lengths, types, names)', () => {
    for (const m of all.slice(0, 3)) {
      for (let i = 0; i < m.length; i++) {
        for (const v of [0x00, 0xff, m[i]! ^ 0x01, m[i]! ^ 0x80]) {
          const x = new Uint8Array(m);
          x[i] = v;
          same(x, `byte ${i} = ${v}`);
        }
      }
    }
  });

  it('refuses duplicate extensions and a pre_shared_key that is not last, as the decoder does', () => {
    const base = decodeClientHelloMessage(all[0]!);
    const ext = base.extensions;
    const dup = encodeClientHelloMessage({ ...base, extensions: [...ext, ext.find((e) => e.type === ExtensionType.server_name)!] });
    assert.equal((scanned(dup) as { err: { code: string } }).err.code, 'ERR_DUPLICATE');
    same(dup, 'duplicate server_name');
    const psk = { type: ExtensionType.pre_shared_key, data: new Uint8Array([0, 0, 0, 0]) };
    const early = encodeClientHelloMessage({ ...base, extensions: [psk, ...ext] });
    assert.equal((scanned(early) as { err: { code: string } }).err.code, 'ERR_ILLEGAL');
    same(early, 'pre_shared_key first');
    same(encodeClientHelloMessage({ ...base, extensions: [...ext, psk] }), 'pre_shared_key last');
    // Extensions absent entirely (a TLS 1.2 hello, RFC 5246 §7.4.1.2), and many of them (the scan's scratch grows).
    const none = encodeClientHelloMessage({ ...base, extensions: [] });
    same(reframe(none.subarray(4, none.length - 2)), 'no extensions block');
    const many = Array.from({ length: 300 }, (_, i) => ({ type: 0x3000 + i, data: new Uint8Array(i % 3) }));
    same(encodeClientHelloMessage({ ...base, extensions: [...many, ...ext] }), '300 unknown extensions first');
    assert.equal(scanClientHelloMessage(encodeClientHelloMessage({ ...base, extensions: [...many, ...ext] })).view.sni, routingView(base).sni);
  });

  it('accepts a single cipher suite and sees an ESNI extension, as the decoder does (RFC 8446 §4.1.2; ESNI draft §5)', () => {
    const base = decodeClientHelloMessage(all[0]!);
    // cipher_suites<2..2^16-2>: one suite is the shortest valid list.
    const one = encodeClientHelloMessage({ ...base, cipherSuites: [0x1301] });
    assert.ok('ok' in scanned(one), 'a hello with one cipher suite is refused by the scan');
    same(one, 'one cipher suite');
    // The legacy encrypted_server_name extension (0xffce) marks the hello as ESNI for the router.
    const esni = encodeClientHelloMessage({ ...base, extensions: [{ type: ExtensionType.encrypted_server_name, data: new Uint8Array([0, 0]) }, ...base.extensions] });
    assert.equal(scanClientHelloMessage(esni).view.esni, true);
    same(esni, 'an encrypted_server_name extension');
  });

  it('does not decode the hello until a field is read', () => {
    const s = scanClientHelloMessage(all[0]!);
    assert.equal((s.hello as unknown as { full?: unknown }).full, undefined);
    assert.ok(s.hello.extensions.length > 0);
    assert.notEqual((s.hello as unknown as { full?: unknown }).full, undefined);
  });
});
