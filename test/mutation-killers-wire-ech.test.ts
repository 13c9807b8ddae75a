/**
 * Mutation killers for src/wire/ech/config.ts and usable.ts (ECHConfigList,
 * RFC 9849 §4, §4.2, §6.1.7): the lists a client takes from DNS or from
 * retry_configs (remote bytes) and the server's key files. The checks the
 * twelfth session's Stryker run (`wire-ech` target, t12) found unguarded;
 * each case was seen red with its mutant written into dist/ by hand
 * (docs/mutation.md, "Twelfth session (tests)").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { EchgateError } from '../src/errors.js';
import { decodeECHConfigList, ECH_VERSION, encodeECHConfig, encodeECHConfigList, isValidPublicName } from '../src/wire/ech/config.js';
import { unusableReason, usableConfigs } from '../src/wire/ech/usable.js';

const good = { configId: 7, kemId: 0x0020, publicKey: new Uint8Array(32).fill(9), cipherSuites: [{ kdfId: 1, aeadId: 1 }], maximumNameLength: 0, publicName: 'public.example.test', extensions: [] };

/** An ECHConfig (version 0xfe0d) whose contents are `contents` as they are (no re-encoding). */
function config(contents: Uint8Array, version = ECH_VERSION): Uint8Array {
  return Uint8Array.of(version >> 8, version & 0xff, contents.length >> 8, contents.length & 0xff, ...contents);
}
function list(...configs: Uint8Array[]): Uint8Array {
  return encodeECHConfigList(configs);
}
/** The contents of `good` with the cipher_suites vector replaced by `cs` (its bytes after the u16 length). */
function contentsWithSuites(cs: Uint8Array): Uint8Array {
  return Uint8Array.of(7, 0x00, 0x20, 0, 32, ...new Uint8Array(32).fill(9), cs.length >> 8, cs.length & 0xff, ...cs, 0, 1, 0x61, 0, 0);
}
const eccErr = (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ECH_CONFIG' && e.alert === 'decode_error';

describe('wire/ech/config.ts: decoding refusals (RFC 9849 §4)', () => {
  it('the contents built by hand decode (the base of the cases below)', () => {
    const [c] = decodeECHConfigList(list(config(contentsWithSuites(Uint8Array.of(0, 1, 0, 1)))));
    assert.ok(c && !('unsupported' in c));
    assert.deepEqual(c.cipherSuites, [{ kdfId: 1, aeadId: 1 }]);
    assert.equal(c.publicName, 'a');
  });

  it('cipher_suites empty, or not a multiple of 4 bytes: ERR_ECH_CONFIG with decode_error', () => {
    for (const cs of [new Uint8Array(0), Uint8Array.of(0, 1), Uint8Array.of(0, 1, 0, 1, 0, 1), Uint8Array.of(0, 1, 0, 1, 0, 1, 0)]) {
      assert.throws(() => decodeECHConfigList(list(config(contentsWithSuites(cs)))), eccErr, `${cs.length} bytes of cipher_suites`);
    }
  });

  it('a repeated extension type: ERR_ECH_CONFIG with decode_error', () => {
    const dup = encodeECHConfig({ ...good, extensions: [{ type: 0x1234, data: Uint8Array.of(1) }, { type: 0x1234, data: Uint8Array.of(2) }] });
    assert.throws(() => decodeECHConfigList(list(dup)), eccErr);
    const two = encodeECHConfig({ ...good, extensions: [{ type: 0x1234, data: Uint8Array.of(1) }, { type: 0x1235, data: Uint8Array.of(2) }] });
    assert.equal(decodeECHConfigList(list(two)).length, 1);
  });

  it('an empty list: ERR_ECH_CONFIG (ECHConfigList<4..2^16-1>); a list of exactly 4 bytes decodes', () => {
    assert.throws(() => decodeECHConfigList(Uint8Array.of(0, 0)), eccErr);
    // One config of an unknown version with no contents: 4 bytes, the smallest list there is.
    const four = decodeECHConfigList(Uint8Array.of(0, 4, 0xfe, 0x0c, 0, 0));
    assert.deepEqual(four, [{ version: 0xfe0c, raw: Uint8Array.of(0xfe, 0x0c, 0, 0), unsupported: true }]);
  });

  it('a config of another version is kept as unsupported, with its bytes, and skipped by usableConfigs (§4)', () => {
    const other = config(Uint8Array.of(1, 2, 3), 0xfe0c);
    const ours = encodeECHConfig(good);
    const decoded = decodeECHConfigList(list(other, ours));
    assert.deepEqual(decoded[0], { version: 0xfe0c, raw: other, unsupported: true });
    assert.equal(unusableReason(decoded[0]!, isSupportedSuite), 'version');
    const usable = usableConfigs(decoded, isSupportedSuite);
    assert.equal(usable.length, 1);
    assert.equal(usable[0]!.configId, 7);
  });
});

describe('wire/ech/usable.ts: why a config cannot be used (RFC 9849 §4, §6.1.7)', () => {
  const reason = (c: typeof good) => unusableReason(decodeECHConfigList(list(encodeECHConfig(c)))[0]!, isSupportedSuite);
  it('the base config is usable', () => {
    assert.equal(reason(good), undefined);
  });
  it('a KEM other than X25519: kem (not a later reason)', () => {
    assert.equal(reason({ ...good, kemId: 0x0010 }), 'kem');
  });
  it('an X25519 key of 31 or 33 bytes: public_key (it would reach HPKE otherwise)', () => {
    assert.equal(reason({ ...good, publicKey: new Uint8Array(31).fill(1) }), 'public_key');
    assert.equal(reason({ ...good, publicKey: new Uint8Array(33).fill(1) }), 'public_key');
  });
});

describe('wire/ech/config.ts isValidPublicName (RFC 9849 §4, §6.1.7)', () => {
  const label63 = 'a'.repeat(63);
  it('255 octets is the longest name; 256 is refused', () => {
    const n255 = [label63, label63, label63, 'b'.repeat(63)].join('.');
    assert.equal(n255.length, 255);
    assert.equal(isValidPublicName(n255), true);
    const n256 = [label63, label63, label63, 'b'.repeat(62), 'c'].join('.');
    assert.equal(n256.length, 256);
    assert.equal(isValidPublicName(n256), false);
  });
  it('labels: one character is a label; a leading or trailing hyphen or another character is not', () => {
    assert.equal(isValidPublicName('a.example'), true);
    assert.equal(isValidPublicName('x.y.z'), true);
    for (const bad of ['-a.example', '_a.example', 'a.-example', 'a-.example', 'a.exa_mple', 'a..example', '.example', 'example.', '']) {
      assert.equal(isValidPublicName(bad), false, bad);
    }
  });
  it('a last label that is a number (IPv4, the WHATWG parser) is refused; one that only contains digits is not', () => {
    for (const ip of ['a.10', 'a.12', 'a.0x12', 'a.0X1f', 'a.0x', '192.0.2.1']) assert.equal(isValidPublicName(ip), false, ip);
    for (const ok of ['a.a1', 'a.1a', 'a.b0x1', 'a.0xg', 'a.0x1g', '1.example']) assert.equal(isValidPublicName(ok), true, ok);
  });
});
