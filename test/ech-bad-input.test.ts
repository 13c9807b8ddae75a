/**
 * RFC 9849 §5.1 / §7.1 bad input, each built with the ECH client builder:
 * every case is a typed error with the RFC's alert, or a clean fallback to
 * the outer hello.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { concat } from '../src/bytes/util.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello, type EchHelloOptions } from '../src/ech/client.js';
import { decryptEch, decryptSecondHello, type EchServerKey, prepareServerKey } from '../src/ech/server.js';
import { EchgateError } from '../src/errors.js';
import { decodeECHConfigList, encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { decodeClientHello, decodeClientHelloMessage, encodeClientHello, summarize } from '../src/wire/tls/client-hello.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import { encodeECHClientHello } from '../src/wire/tls/extensions.js';

const sk = nodeProvider.x25519Generate();
const raw = encodeECHConfigList([
  encodeECHConfig({
    configId: 9,
    kemId: 0x20,
    publicKey: sk.publicKey,
    cipherSuites: [
      { kdfId: 1, aeadId: 1 },
      { kdfId: 1, aeadId: 3 },
    ],
    maximumNameLength: 32,
    publicName: 'public.example.test',
    extensions: [],
  }),
]);
const config = usableConfigs(decodeECHConfigList(raw), isSupportedSuite)[0]!;
const key: EchServerKey = prepareServerKey(nodeProvider, config, sk);
const lookup = { byConfigId: (id: number) => (id === 9 ? [key] : []), all: () => [key] };

function attempt(o: Partial<EchHelloOptions>) {
  const h = buildEchClientHello(nodeProvider, { config, innerSni: 'secret.example.test', alpn: ['h2'], ...o });
  return decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), lookup);
}

const alert = (name: string) => (e: unknown) => e instanceof EchgateError && e.alert === name;

describe('ECH bad input (built hellos)', () => {
  it('a well-formed hello decrypts, with both suites', () => {
    for (const suite of config.cipherSuites) {
      const r = attempt({ suite });
      assert.equal(r.status, 'accepted');
      if (r.status === 'accepted') {
        assert.equal(summarize(r.inner).sni, 'secret.example.test');
        assert.deepEqual(summarize(r.inner).alpn, ['h2']);
      }
    }
  });
  it('hellos of any size decrypt in any order (the shared AAD scratch grows and never leaks into the next)', () => {
    const big = { type: 0xff01, data: new Uint8Array(5000).fill(7) };
    const sizes = [0, 1, 0, 1, 1, 0];
    for (const s of sizes) {
      const h = buildEchClientHello(nodeProvider, { config, innerSni: `n${s}.example.test`, extraInnerExtensions: s ? [big] : [] });
      const outer = decodeClientHelloMessage(h.outerMessage);
      const before = encodeClientHello(outer);
      const r = decryptEch(nodeProvider, outer, lookup);
      assert.equal(r.status, 'accepted');
      if (r.status === 'accepted') assert.equal(summarize(r.inner).sni, `n${s}.example.test`);
      // The outer hello's bytes are untouched (the AAD is a zeroed copy).
      assert.deepEqual(outer.raw, before);
    }
  });
  it('padding follows §6.1.3: the encoded inner is a multiple of 32 bytes', () => {
    for (const name of ['a.example', 'secret.example.test', 'a-very-long-hidden-name.example.test']) {
      const h = buildEchClientHello(nodeProvider, { config, innerSni: name });
      const ech = summarize(decodeClientHelloMessage(h.outerMessage)).ech!;
      assert.ok(ech.type === 'outer' && (ech.payload.length - 16) % 32 === 0);
    }
  });
  it('unknown suite: not this config, clean reject', () => {
    assert.deepEqual(attempt({ suite: { kdfId: 1, aeadId: 2 } }).status, 'rejected');
  });
  it('unknown config_id: clean reject (GREASE-like)', () => {
    assert.deepEqual(attempt({ configId: 10 }), { status: 'rejected', reason: 'no_config', configId: 10 });
  });
  it('wrong enc length for the KEM, truncated or oversized enc: clean reject', () => {
    for (const f of [(e: Uint8Array) => e.subarray(0, 31), (e: Uint8Array) => concat(e, Uint8Array.of(0)), () => new Uint8Array(0)]) {
      assert.deepEqual(attempt({ enc: f }).status, 'rejected');
    }
  });
  it('payload truncated or oversized: clean reject', () => {
    const h = buildEchClientHello(nodeProvider, { config, innerSni: 'secret.example.test' });
    const outer = decodeClientHelloMessage(h.outerMessage);
    const i = outer.extensions.findIndex((e) => e.type === ExtensionType.encrypted_client_hello);
    const e = summarize(outer).ech!;
    assert.ok(e.type === 'outer');
    for (const payload of [e.payload.subarray(0, e.payload.length - 1), concat(e.payload, Uint8Array.of(0))]) {
      const exts = [...outer.extensions];
      exts[i] = { type: ExtensionType.encrypted_client_hello, data: encodeECHClientHello({ ...e, payload }) };
      assert.equal(decryptEch(nodeProvider, decodeClientHello(encodeClientHello({ ...outer, extensions: exts })), lookup).status, 'rejected');
    }
  });
  it('outer_extensions pointing at a missing extension → illegal_parameter', () => {
    assert.throws(() => attempt({ outerExtensionsList: [ExtensionType.supported_groups, 0x1234] }), alert('illegal_parameter'));
  });
  it('outer_extensions in the wrong order → illegal_parameter', () => {
    assert.throws(() => attempt({ outerExtensionsList: [ExtensionType.signature_algorithms, ExtensionType.supported_groups] }), alert('illegal_parameter'));
  });
  it('outer_extensions referencing encrypted_client_hello → illegal_parameter', () => {
    assert.throws(() => attempt({ outerExtensionsList: [ExtensionType.encrypted_client_hello] }), alert('illegal_parameter'));
  });
  it('outer_extensions referencing an extension twice → illegal_parameter', () => {
    assert.throws(() => attempt({ outerExtensionsList: [ExtensionType.supported_groups, ExtensionType.supported_groups] }), alert('illegal_parameter'));
  });
  it('non-zero padding → illegal_parameter', () => {
    assert.throws(
      () =>
        attempt({
          mutateEncoded: (b) => {
            const c = b.slice();
            c[c.length - 1] = 1;
            return c;
          },
        }),
      alert('illegal_parameter'),
    );
  });
  it('RFC 9849 §7.1: inner offering only TLS 1.2, or 1.3 and 1.2, or no version at all → illegal_parameter', () => {
    assert.throws(() => attempt({ innerVersions: [0x0303] }), alert('illegal_parameter'));
    assert.throws(() => attempt({ innerVersions: [0x2a2a] }), alert('illegal_parameter'));
    assert.throws(() => attempt({ innerVersions: [0x0303, 0x0304] }), alert('illegal_parameter'));
    assert.throws(() => attempt({ innerVersions: [0x0304, 0x0303] }), alert('illegal_parameter'));
    assert.equal(attempt({ innerVersions: [0x2a2a, 0x0304] }).status, 'accepted', 'GREASE versions are fine');
  });
  it('a second 0xfe0d inside the inner → illegal_parameter', () => {
    assert.throws(
      () => attempt({ extraInnerExtensions: [{ type: ExtensionType.encrypted_client_hello, data: encodeECHClientHello({ type: 'inner' }) }] }),
      alert('illegal_parameter'),
    );
  });
  it('no inner ECH extension → illegal_parameter', () => {
    assert.throws(() => attempt({ omitInnerEch: true }), alert('illegal_parameter'));
  });
  it('RFC 9849 §7.1: the inner hello\'s encrypted_client_hello of the outer type → illegal_parameter', () => {
    const outerType = encodeECHClientHello({ type: 'outer', kdfId: 1, aeadId: 1, configId: 9, enc: new Uint8Array(32), payload: new Uint8Array(16), payloadOffset: 0 });
    assert.throws(() => attempt({ omitInnerEch: true, extraInnerExtensions: [{ type: ExtensionType.encrypted_client_hello, data: outerType }] }), alert('illegal_parameter'));
  });
  it('RFC 9849 §5.1: an EncodedClientHelloInner with a non-empty legacy_session_id → illegal_parameter (control: the empty one is accepted)', () => {
    assert.equal(attempt({ mutateEncoded: (b) => b }).status, 'accepted');
    // legacy_version (2), random (32), then the session id's length byte, 0 in an encoded inner.
    const withSid = (b: Uint8Array) => {
      assert.equal(b[34], 0);
      return concat(b.subarray(0, 34), Uint8Array.of(1, 7), b.subarray(35));
    };
    assert.throws(() => attempt({ mutateEncoded: withSid }), alert('illegal_parameter'));
  });
  it('trailing garbage in the encoded inner is padding and must be zero; truncation is decode_error', () => {
    assert.throws(() => attempt({ mutateEncoded: (b) => b.subarray(0, 40) }), alert('decode_error'));
  });
  it('fuzz: mutated encoded inners never throw anything but typed errors', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (muts) => {
        try {
          attempt({
            mutateEncoded: (b) => {
              const c = b.slice();
              for (const [at, v] of muts) c[at % c.length] = v;
              return c;
            },
          });
        } catch (e) {
          assert.ok(e instanceof EchgateError, String(e));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('the second ClientHelloOuter after HelloRetryRequest (RFC 9849 §7.1.1)', () => {
  const start = () => {
    const h = buildEchClientHello(nodeProvider, { config, innerSni: 'secret.example.test', alpn: ['h2'], keyShare: false });
    const first = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), lookup);
    assert.equal(first.status, 'accepted');
    const second = h.retry({ innerKey: nodeProvider.x25519Generate(), outerKey: nodeProvider.x25519Generate() });
    return { h, first: first as Extract<typeof first, { status: 'accepted' }>, outer2: decodeClientHelloMessage(second.outerMessage) };
  };
  const withEch = (outer: ReturnType<typeof decodeClientHelloMessage>, data: Uint8Array | undefined) => {
    const exts = outer.extensions.filter((e) => e.type !== ExtensionType.encrypted_client_hello);
    if (data) exts.push({ type: ExtensionType.encrypted_client_hello, data });
    return decodeClientHello(encodeClientHello({ ...outer, raw: undefined, extensions: exts }));
  };

  it('opens with the same HPKE context: the second inner keeps the name and now carries a key share', () => {
    const { first, outer2 } = start();
    const inner2 = decryptSecondHello(first, outer2);
    assert.equal(summarize(inner2).sni, 'secret.example.test');
    assert.deepEqual(summarize(inner2).keyShareGroups, [0x001d]);
  });
  it('no ECH extension → missing_extension; enc not empty, another config_id or suite → illegal_parameter; a wrong payload → decrypt_error', () => {
    const { h, first, outer2 } = start();
    assert.throws(() => decryptSecondHello(first, withEch(outer2, undefined)), alert('missing_extension'));
    const ext = summarize(outer2).ech!;
    assert.ok(ext.type === 'outer');
    const re = (o: Partial<typeof ext>) => encodeECHClientHello({ ...ext, ...o });
    assert.throws(() => decryptSecondHello(first, withEch(outer2, re({ enc: new Uint8Array(32).fill(9) }))), alert('illegal_parameter'));
    assert.throws(() => decryptSecondHello(first, withEch(outer2, re({ configId: 10 }))), alert('illegal_parameter'));
    assert.throws(() => decryptSecondHello(first, withEch(outer2, re({ aeadId: 3 }))), alert('illegal_parameter'));
    // The KDF alone changed (it is in the AAD too, so without the check this would be decrypt_error).
    assert.throws(() => decryptSecondHello(first, withEch(outer2, re({ kdfId: 3 }))), alert('illegal_parameter'));
    const flipped = new Uint8Array(ext.payload);
    flipped[0]! ^= 1;
    assert.throws(() => decryptSecondHello(first, withEch(outer2, re({ payload: flipped }))), alert('decrypt_error'));
    // The first outer hello sent again is not a second hello: its enc is not empty.
    assert.throws(() => decryptSecondHello(first, decodeClientHelloMessage(h.outerMessage)), alert('illegal_parameter'));
  });
});
