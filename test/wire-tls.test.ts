/**
 * TLS wire layer: RFC 8446 §4.1.2 ClientHello, RFC 8446 §5.1 records, against the
 * RFC 8448 trace, real Chromium captures, and property tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../src/bytes/util.js';
import { EchgateError } from '../src/errors.js';
import {
  decodeClientHello,
  decodeClientHelloMessage,
  encodeClientHello,
  firstDuplicateType,
  encodeClientHelloMessage,
  summarize,
} from '../src/wire/tls/client-hello.js';
import { ExtensionType, extensionName, isGrease } from '../src/wire/tls/constants.js';
import {
  decodeAlpn,
  decodeECHClientHello,
  decodeKeyShares,
  decodeOfferedPsks,
  decodeOuterExtensions,
  decodePskModes,
  decodeServerName,
  decodeSupportedVersions,
  decodeU16List,
  encodeAlpn,
  encodeECHClientHello,
  encodeKeyShares,
  encodeOfferedPsks,
  encodeOuterExtensions,
  encodePskModes,
  encodeServerName,
  encodeSupportedVersions,
  encodeU16List,
} from '../src/wire/tls/extensions.js';
import { ClientHelloAssembler, frameHandshake, parseHelloRecords } from '../src/wire/tls/record.js';
import { json, vector } from './helpers.js';

const manifest = json('captures/manifest.json');
const rfc8448 = json('rfc8448-simple-1rtt.json');

function typed(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof EchgateError) return;
    throw new Error(`untyped error: ${(e as Error).stack}`);
  }
}

describe('RFC 8448 §3 ClientHello', () => {
  const msg = fromHex(rfc8448.messages.client_hello);
  it('decodes and re-encodes byte for byte', () => {
    const ch = decodeClientHelloMessage(msg);
    assert.equal(ch.legacyVersion, 0x0303);
    assert.equal(toHex(ch.random), rfc8448.client_random);
    const s = summarize(ch);
    assert.equal(s.sni, 'server');
    assert.deepEqual(s.versions, [0x0304]);
    assert.deepEqual(s.keyShareGroups, [0x001d]);
    assert.deepEqual(encodeClientHelloMessage(ch), msg);
  });
  it('the first record of the trace assembles to the same message', () => {
    const rec = fromHex(rfc8448.records.client_hello);
    const a = parseHelloRecords(rec)!;
    assert.deepEqual(a.message, msg);
  });
});

describe('real Chromium ClientHellos (captures)', () => {
  for (const c of manifest.captures) {
    it(`${c.file}: outer SNI, ALPN, ECH fields, exact round trip`, () => {
      const bytes = vector(`captures/${c.file}`);
      const a = parseHelloRecords(bytes)!;
      assert.equal(a.consumed, bytes.length);
      const ch = decodeClientHelloMessage(a.message);
      const s = summarize(ch);
      assert.equal(s.sni, c.outer_sni);
      assert.deepEqual(s.alpn, c.outer_alpn ?? s.alpn);
      assert.ok(s.versions.includes(0x0304));
      assert.ok(s.ech && s.ech.type === 'outer');
      if (s.ech.type === 'outer') assert.equal(s.ech.configId, c.config_id);
      assert.ok(ch.extensions.some((e) => isGrease(e.type)), 'Chromium sends GREASE extensions; they must survive');
      assert.deepEqual(encodeClientHelloMessage(ch), a.message);
    });
    it(`${c.file}: split into 1-byte TCP segments and into small records, parses the same`, () => {
      const bytes = vector(`captures/${c.file}`);
      const whole = parseHelloRecords(bytes)!;
      const asm = new ClientHelloAssembler(65536);
      let got: ReturnType<ClientHelloAssembler['push']>;
      for (let i = 0; i < bytes.length; i++) {
        got = asm.push(bytes.subarray(i, i + 1));
        if (i < bytes.length - 1) assert.equal(got, undefined);
      }
      assert.deepEqual(got!.message, whole.message);
      for (const frag of [1, 7, 100, 512]) {
        const reframed = frameHandshake(whole.message, frag);
        const a2 = parseHelloRecords(reframed)!;
        assert.deepEqual(a2.message, whole.message);
        assert.equal(a2.records, Math.ceil(whole.message.length / frag));
      }
    });
  }
});

describe('ClientHello strictness', () => {
  const base = decodeClientHelloMessage(fromHex(rfc8448.messages.client_hello));
  it('rejects a duplicate extension with illegal_parameter', () => {
    const dup = { ...base, extensions: [...base.extensions, base.extensions[0]!] };
    assert.throws(() => decodeClientHello(encodeClientHello(dup)), (e: EchgateError) => e.code === 'ERR_DUPLICATE' && e.alert === 'illegal_parameter');
  });
  it('rejects trailing bytes', () => {
    const body = encodeClientHello(base);
    const longer = new Uint8Array(body.length + 1);
    longer.set(body);
    assert.throws(() => decodeClientHello(longer), (e: EchgateError) => e.code === 'ERR_TRAILING');
  });
  it('rejects pre_shared_key that is not last', () => {
    const psk = { type: ExtensionType.pre_shared_key, data: encodeOfferedPsks({ identities: [{ identity: new Uint8Array(5), obfuscatedTicketAge: 1 }], binders: [new Uint8Array(32)] }) };
    const bad = { ...base, extensions: [psk, ...base.extensions] };
    assert.throws(() => decodeClientHello(encodeClientHello(bad)), (e: EchgateError) => e.alert === 'illegal_parameter');
  });
  it('names ESNI (0xffce), ECH and outer_extensions', () => {
    assert.equal(extensionName(0xffce), 'encrypted_server_name');
    assert.equal(extensionName(0xfe0d), 'encrypted_client_hello');
    assert.equal(extensionName(0xfd00), 'ech_outer_extensions');
    assert.equal(extensionName(0x1a1a), 'grease');
  });
  it('SNI is lower-cased and loses a trailing dot', () => {
    assert.equal(decodeServerName(encodeServerName('App.Example.TEST.')), 'app.example.test');
  });
  it('server_name list rules (RFC 6066 §3): one name per type, host_name found after other types, bad bytes refused', () => {
    const entry = (type: number, name: string) => [type, 0, name.length, ...Buffer.from(name, 'latin1')];
    const list = (...entries: number[][]) => {
      const body = entries.flat();
      return Uint8Array.from([body.length >> 8, body.length & 0xff, ...body]);
    };
    assert.equal(decodeServerName(list(entry(200, 'x'), entry(0, 'A.b'))), 'a.b');
    assert.equal(decodeServerName(list(entry(7, 'x'))), undefined);
    for (const t of [0, 7, 31, 32, 200]) {
      assert.throws(() => decodeServerName(list(entry(t, 'a'), entry(t, 'b'))), (e: unknown) => e instanceof EchgateError && e.alert === 'illegal_parameter');
    }
    assert.throws(() => decodeServerName(list(entry(0, 'a b'))), EchgateError);
    assert.throws(() => decodeServerName(list(entry(0, 'caf\xe9'))), EchgateError);
    assert.throws(() => decodeServerName(list()), EchgateError);
  });
  it('no strict prefix of a capture parses, but for the extension-less TLS 1.2 cut', () => {
    const a = parseHelloRecords(vector('captures/chr-ech2a-secret-alpn.bin'))!;
    const body = a.message.subarray(4);
    // RFC 5246 §7.4.1.2: a hello may end after the compression methods. That
    // one cut is a different, valid hello; every other prefix must fail.
    const cut = extensionlessLength(body);
    for (let n = 0; n < body.length; n++) {
      if (n === cut) continue;
      assert.throws(() => decodeClientHello(body.subarray(0, n)), EchgateError, `prefix ${n}`);
    }
    for (let n = 0; n < a.message.length; n++) {
      assert.throws(() => decodeClientHelloMessage(a.message.subarray(0, n)), EchgateError, `message prefix ${n}`);
    }
  });
});

function extensionlessLength(body: Uint8Array): number {
  let at = 2 + 32;
  at += 1 + body[at]!;
  at += 2 + ((body[at]! << 8) | body[at + 1]!);
  return at + 1 + body[at]!;
}

describe('record layer errors', () => {
  it('bad record length (> 2^14) → record_overflow', () => {
    assert.throws(() => parseHelloRecords(Uint8Array.from([22, 3, 1, 0x40, 0x01, 1])), (e: EchgateError) => e.alert === 'record_overflow');
  });
  it('zero-length handshake record → unexpected_message', () => {
    assert.throws(() => parseHelloRecords(Uint8Array.from([22, 3, 1, 0, 0])), (e: EchgateError) => e.alert === 'unexpected_message');
  });
  it('a first handshake message that is not a ClientHello', () => {
    assert.throws(() => parseHelloRecords(Uint8Array.from([22, 3, 3, 0, 4, 2, 0, 0, 0])), (e: EchgateError) => e.alert === 'unexpected_message');
  });
  it('cap on ClientHello size', () => {
    const asm = new ClientHelloAssembler(100);
    assert.throws(() => asm.push(Uint8Array.from([22, 3, 1, 0x10, 0, 1, 0, 0x0f, 0xfc])), (e: EchgateError) => e.code === 'ERR_PEEK_TOO_LARGE');
  });
});

// ---- property tests ----

const u16 = fc.integer({ min: 0, max: 0xffff });
const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
const host = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}$/);

const arbClientHello = fc
  .record({
    legacyVersion: u16,
    random: bytes(32, 32),
    sessionId: bytes(0, 32),
    cipherSuites: fc.array(u16, { minLength: 1, maxLength: 20 }),
    compressionMethods: bytes(1, 3),
    extensions: fc.uniqueArray(fc.record({ type: u16.filter((t) => t !== ExtensionType.pre_shared_key), data: bytes(0, 40) }), {
      maxLength: 12,
      selector: (e) => e.type,
    }),
  })
  .map((ch) => ch);

describe('properties', () => {
  it('ClientHello: decode(encode(x)) == x and encode(decode(b)) == b', () => {
    fc.assert(
      fc.property(arbClientHello, (ch) => {
        const enc = encodeClientHello(ch);
        const dec = decodeClientHello(enc);
        assert.deepEqual(dec.extensions.map((e) => [e.type, toHex(e.data)]), ch.extensions.map((e) => [e.type, toHex(e.data)]));
        assert.deepEqual(encodeClientHello(dec), enc);
      }),
      { numRuns: 300 },
    );
  });
  it('duplicate extension types are found, and the shared table is clean after every call', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 }), (types) => {
        const list = types.map((type) => ({ type }));
        const firstDup = types.findIndex((t, i) => types.indexOf(t) !== i);
        assert.equal(firstDuplicateType(list), firstDup < 0 ? -1 : types[firstDup]);
        // The same types again, deduplicated: nothing left over from the call before.
        assert.equal(firstDuplicateType([...new Set(types)].map((type) => ({ type }))), -1);
      }),
      { numRuns: 300 },
    );
  });
  it('ClientHello: no strict prefix parses, but for the extension-less cut', () => {
    fc.assert(
      fc.property(arbClientHello, fc.nat(), (ch, k) => {
        const enc = encodeClientHello(ch);
        const n = k % enc.length;
        if (n === extensionlessLength(enc)) return;
        assert.throws(() => decodeClientHello(enc.subarray(0, n)), EchgateError);
        const msg = encodeClientHelloMessage(ch);
        assert.throws(() => decodeClientHelloMessage(msg.subarray(0, k % msg.length)), EchgateError);
      }),
      { numRuns: 300 },
    );
  });
  it('random bytes never throw anything but EchgateError (ClientHello, records, every extension)', () => {
    const decoders = [
      decodeClientHello,
      (b: Uint8Array) => parseHelloRecords(b, 65536),
      decodeServerName,
      decodeAlpn,
      decodeSupportedVersions,
      decodeKeyShares,
      (b: Uint8Array) => decodeU16List(b, 'x'),
      decodePskModes,
      decodeOfferedPsks,
      decodeECHClientHello,
      decodeOuterExtensions,
    ];
    fc.assert(
      fc.property(bytes(0, 300), (b) => {
        for (const d of decoders) typed(() => d(b));
      }),
      { numRuns: 2000 },
    );
  });
  it('mutated real ClientHellos never throw anything but EchgateError', () => {
    const cap = vector('captures/chr-ech2a-app-alpn.bin');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (muts) => {
        const m = cap.slice();
        for (const [at, v] of muts) m[at % m.length] = v;
        typed(() => {
          const a = parseHelloRecords(m, 65536);
          if (a) summarize(decodeClientHelloMessage(a.message));
        });
      }),
      { numRuns: 2000 },
    );
  });
  it('typed extensions round-trip', () => {
    fc.assert(
      fc.property(host, fc.array(fc.stringMatching(/^[a-z0-9/.]{1,12}$/), { minLength: 1, maxLength: 4 }), fc.array(u16, { minLength: 1, maxLength: 10 }), (h, alpn, list) => {
        assert.equal(decodeServerName(encodeServerName(h)), h);
        assert.deepEqual(decodeAlpn(encodeAlpn(alpn)), alpn);
        assert.deepEqual(decodeU16List(encodeU16List(list), 'l'), list);
        assert.deepEqual(decodeSupportedVersions(encodeSupportedVersions(list)), list);
        assert.deepEqual(decodeOuterExtensions(encodeOuterExtensions(list)), list);
        assert.deepEqual(decodePskModes(encodePskModes(list.map((x) => x & 0xff))), list.map((x) => x & 0xff));
        const shares = [...new Set(list)].map((g) => ({ group: g, keyExchange: new Uint8Array([g & 0xff, 1]) }));
        assert.deepEqual(decodeKeyShares(encodeKeyShares(shares)), shares);
      }),
    );
    const outer = { type: 'outer' as const, kdfId: 1, aeadId: 1, configId: 7, enc: new Uint8Array(32).fill(3), payload: new Uint8Array(50).fill(9), payloadOffset: 1 + 2 + 2 + 1 + 2 + 32 + 2 };
    assert.deepEqual(decodeECHClientHello(encodeECHClientHello(outer)), outer);
    assert.deepEqual(decodeECHClientHello(encodeECHClientHello({ type: 'inner' })), { type: 'inner' });
  });
});
