/**
 * Tests written against StrykerJS mutants of src/ech/esni.ts (experimental
 * ESNI, draft-ietf-tls-esni-02; `npm run mutation -- ech`, docs/mutation.md):
 * the ESNIKeys validity window at its exact bounds, the suite and X25519
 * checks on both ends, the key_share the AAD needs, a share that gives no
 * usable secret, a ServerNameList without host_name, and the _esni TXT text.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { AEADS, nodeProvider } from '../src/crypto/node.js';
import {
  decryptEsni,
  type EsniServerKey,
  esniChecksum,
  esniEncrypt,
  esniFromTxt,
  esniKeyIv,
  makeESNIKeys,
  prepareEsniKey,
  usableEsni,
  verifyESNIKeys,
} from '../src/ech/esni.js';
import { isEchgateError } from '../src/errors.js';
import type { ClientHello } from '../src/wire/tls/client-hello.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import { decodeClientEncryptedSNI, decodeESNIKeys, encodeClientEncryptedSNI, encodeESNIKeys } from '../src/wire/tls/esni.js';

const NB = 1_700_000_000;
const NA = NB + 86_400;
const serverSk = nodeProvider.x25519Generate();
const clientSk = nodeProvider.x25519Generate();
const RAW = makeESNIKeys(nodeProvider, serverSk.publicKey, { notBefore: NB, notAfter: NA });
const KEY = prepareEsniKey(nodeProvider, RAW, serverSk);
const RANDOM = new Uint8Array(32).fill(7);
const NONCE = new Uint8Array(16).fill(5);
const KEY_SHARE_EXT = concat(Uint8Array.of(0, 36, 0, 0x1d, 0, 32), new Uint8Array(32).fill(0x42));
const u16 = (n: number) => Uint8Array.of(n >> 8, n & 0xff);

/** An ESNIKeys record with a valid checksum, for any keys and suites. */
function recordWith(keys: { group: number; keyExchange: Uint8Array }[], cipherSuites: number[]): Uint8Array {
  const contents = { keys, cipherSuites, paddedLength: 260, notBefore: NB, notAfter: NA, extensions: [] };
  return encodeESNIKeys(contents, esniChecksum(nodeProvider, encodeESNIKeys(contents)));
}

function extension(hostName = 'secret.example.test'): Uint8Array {
  return esniEncrypt(nodeProvider, {
    record: decodeESNIKeys(RAW),
    suite: 0x1301,
    hostName,
    clientRandom: RANDOM,
    keyShareExtension: KEY_SHARE_EXT,
    ephemeral: clientSk,
    nonce: NONCE,
  });
}

function hello(esni: Uint8Array, withKeyShare = true): ClientHello {
  return {
    legacyVersion: 0x0303,
    random: RANDOM,
    sessionId: new Uint8Array(0),
    cipherSuites: [0x1301],
    compressionMethods: Uint8Array.of(0),
    extensions: [
      { type: ExtensionType.supported_versions, data: Uint8Array.of(2, 3, 4) },
      ...(withKeyShare ? [{ type: ExtensionType.key_share, data: KEY_SHARE_EXT }] : []),
      { type: ExtensionType.encrypted_server_name, data: esni },
    ],
  };
}

const decrypt = (h: ClientHello, keys: EsniServerKey[] = [KEY]) =>
  decryptEsni(nodeProvider, h, h.extensions.find((e) => e.type === ExtensionType.encrypted_server_name)!, { esniKeys: () => keys });

/** The alert (or error code) a call fails with; anything but an EchgateError fails the test. */
function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isEchgateError(e), String(e));
    return e.alert ?? e.code;
  }
  return 'accepted';
}

describe('draft-ietf-tls-esni-02 §4: not_before and not_after are inclusive bounds', () => {
  it('at not_before and at not_after: valid; one second outside either: illegal_parameter', () => {
    assert.equal(verifyESNIKeys(nodeProvider, RAW, NB).notBefore, NB);
    assert.equal(verifyESNIKeys(nodeProvider, RAW, NA).notAfter, NA);
    assert.equal(failure(() => verifyESNIKeys(nodeProvider, RAW, NB - 1)), 'illegal_parameter');
    assert.equal(failure(() => verifyESNIKeys(nodeProvider, RAW, NA + 1)), 'illegal_parameter');
    // Without a time, no window check (the server loads its own keys this way).
    assert.equal(failure(() => verifyESNIKeys(nodeProvider, RAW)), 'accepted');
  });
  it('usableEsni without a time uses the clock in seconds: a record valid around now is usable', () => {
    const t = Math.floor(Date.now() / 1000);
    const raw = makeESNIKeys(nodeProvider, serverSk.publicKey, { notBefore: t - 3600, notAfter: t + 3600 });
    assert.equal(usableEsni(nodeProvider, raw).suite, 0x1301);
  });
  it('usableEsni applies the window', () => {
    assert.equal(usableEsni(nodeProvider, RAW, NB).suite, 0x1301);
    assert.equal(failure(() => usableEsni(nodeProvider, RAW, NA + 1)), 'illegal_parameter');
  });
});

describe('draft-ietf-tls-esni-02 §4, §5.1: the client uses only an X25519 key and a suite echgate implements', () => {
  const p256 = { group: 0x0017, keyExchange: new Uint8Array(65).fill(4) };
  const x = { group: 0x001d, keyExchange: serverSk.publicKey };
  it('the first implemented suite in the record\'s order is chosen; an unknown one before it is skipped', () => {
    assert.equal(usableEsni(nodeProvider, recordWith([x], [0x1305, 0x1302, 0x1301]), NB).suite, 0x1302);
  });
  it('a record with no implemented suite, or no X25519 key: illegal_parameter', () => {
    assert.equal(failure(() => usableEsni(nodeProvider, recordWith([x], [0x1305]), NB)), 'illegal_parameter');
    assert.equal(failure(() => usableEsni(nodeProvider, recordWith([p256], [0x1301]), NB)), 'illegal_parameter');
    // One X25519 key among others is enough.
    assert.equal(usableEsni(nodeProvider, recordWith([p256, x], [0x1301]), NB).suite, 0x1301);
  });
  it('esniEncrypt refuses an unknown suite and a record without an X25519 key', () => {
    const base = { suite: 0x1301, hostName: 'a.test', clientRandom: RANDOM, keyShareExtension: KEY_SHARE_EXT, ephemeral: clientSk, nonce: NONCE };
    assert.equal(failure(() => esniEncrypt(nodeProvider, { ...base, record: decodeESNIKeys(RAW), suite: 0x1305 })), 'illegal_parameter');
    assert.equal(failure(() => esniEncrypt(nodeProvider, { ...base, record: decodeESNIKeys(recordWith([p256], [0x1301])) })), 'illegal_parameter');
    assert.equal(failure(() => esniEncrypt(nodeProvider, { ...base, record: decodeESNIKeys(recordWith([p256, x], [0x1301])) })), 'accepted');
  });
  it('esniKeyIv: an unknown suite is illegal_parameter', () => {
    const z = new Uint8Array(32).fill(1);
    const share = { group: 0x001d, keyExchange: clientSk.publicKey };
    assert.equal(failure(() => esniKeyIv(nodeProvider, 0x1305, z, new Uint8Array(32), share, RANDOM)), 'illegal_parameter');
    assert.equal(esniKeyIv(nodeProvider, 0x1301, z, new Uint8Array(32), share, RANDOM).key.length, 16);
  });
});

describe('the server loads an ESNI key only with its own X25519 public key in the record', () => {
  it('a record for another key, or one with no X25519 key: ERR_KEYSTORE; a record with both groups: loaded', () => {
    const other = nodeProvider.x25519Generate();
    assert.equal(failure(() => prepareEsniKey(nodeProvider, RAW, other)), 'ERR_KEYSTORE');
    assert.equal(failure(() => prepareEsniKey(nodeProvider, recordWith([{ group: 0x0017, keyExchange: serverSk.publicKey }], [0x1301]), serverSk)), 'ERR_KEYSTORE');
    const both = recordWith([{ group: 0x0017, keyExchange: new Uint8Array(65) }, { group: 0x001d, keyExchange: serverSk.publicKey }], [0x1301, 0x1305, 0x1302]);
    const k = prepareEsniKey(nodeProvider, both, serverSk);
    // One record_digest per hash of the listed suites it implements (SHA-256, SHA-384; 0x1305 is skipped).
    assert.deepEqual([...k.digests.keys()].sort(), ['sha256', 'sha384']);
  });
});

describe('draft-ietf-tls-esni-02 §5.2: what the client-facing server refuses', () => {
  it('control: the extension decrypts to the name', () => {
    assert.equal(decrypt(hello(extension())).hostName, 'secret.example.test');
  });
  it('no key_share extension to bind the AAD to: missing_extension', () => {
    assert.equal(failure(() => decrypt(hello(extension(), false))), 'missing_extension');
  });
  it('an ESNI key_share that gives no usable secret (all zeros, a low-order point): illegal_parameter, not a crash', () => {
    const ces = decodeClientEncryptedSNI(extension());
    for (const bad of [new Uint8Array(32), Uint8Array.of(1, ...new Uint8Array(31))]) {
      assert.equal(failure(() => decrypt(hello(encodeClientEncryptedSNI({ ...ces, keyShare: { group: 0x001d, keyExchange: bad } })))), 'illegal_parameter');
    }
  });
  it('a key_share labelled with another group the record also lists (P-256): illegal_parameter, though its bytes would work as X25519', () => {
    const both = recordWith([{ group: 0x0017, keyExchange: new Uint8Array(65).fill(4) }, { group: 0x001d, keyExchange: serverSk.publicKey }], [0x1301]);
    const key = prepareEsniKey(nodeProvider, both, serverSk);
    const ext = esniEncrypt(nodeProvider, { record: decodeESNIKeys(both), suite: 0x1301, hostName: 'a.test', clientRandom: RANDOM, keyShareExtension: KEY_SHARE_EXT, ephemeral: clientSk, nonce: NONCE });
    assert.equal(decrypt(hello(ext), [key]).hostName, 'a.test');
    const ces = decodeClientEncryptedSNI(ext);
    // ESNI is X25519 only in echgate (the group is in ESNIContents, so the relabelled share must be refused before decryption).
    assert.equal(failure(() => decrypt(hello(encodeClientEncryptedSNI({ ...ces, keyShare: { ...ces.keyShare, group: 0x0017 } })), [key])), 'illegal_parameter');
  });
  it('a suite whose hash the record has no record_digest for (SHA-384 against a SHA-256-only record): illegal_parameter, not a crash', () => {
    // prepareEsniKey keeps one digest per hash of the record's suites; RAW lists 0x1301 only, so the lookup under
    // SHA-384 finds none and no key matches (§5.2: "does not match ... any known ESNIKeys structure").
    const ces = decodeClientEncryptedSNI(extension());
    assert.equal(KEY.digests.get('sha384'), undefined);
    assert.equal(failure(() => decrypt(hello(encodeClientEncryptedSNI({ ...ces, suite: 0x1302, recordDigest: new Uint8Array(48) })))), 'illegal_parameter');
  });
  it('the SNI key is zeroed once the AEAD has opened the extension, or failed to', () => {
    const aead = AEADS['aes-128-gcm'];
    const seen: Uint8Array[] = [];
    const open = aead.open.bind(aead);
    // An own property in front of the prototype's method, removed again below.
    Object.defineProperty(aead, 'open', {
      configurable: true,
      value: (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array) => {
        seen.push(key);
        assert.ok(key.some((b) => b !== 0), 'the key is not zero while in use');
        return open(key, nonce, aad, ct);
      },
    });
    try {
      assert.equal(decrypt(hello(extension())).hostName, 'secret.example.test');
      const ces = decodeClientEncryptedSNI(extension());
      const bad = Uint8Array.from(ces.encryptedSni);
      bad[0] = (bad[0] ?? 0) ^ 1;
      assert.equal(failure(() => decrypt(hello(encodeClientEncryptedSNI({ ...ces, encryptedSni: bad })))), 'decrypt_error');
    } finally {
      delete (aead as { open?: unknown }).open;
    }
    assert.equal(seen.length, 2);
    for (const k of seen) assert.ok(k.every((b) => b === 0), 'the key is zeroed after use');
  });
  it('a ServerNameList with no host_name entry: illegal_parameter', () => {
    // ClientESNIInner = nonce || ServerNameList padded to 260, here with one name of type 1 only.
    const name = new TextEncoder().encode('x.test');
    const list = concat(u16(name.length + 3), Uint8Array.of(1), u16(name.length), name);
    const plain = concat(NONCE, list, new Uint8Array(260 - list.length));
    const ces = decodeClientEncryptedSNI(extension());
    const z = nodeProvider.x25519(clientSk, serverSk.publicKey);
    const { key, iv } = esniKeyIv(nodeProvider, 0x1301, z, ces.recordDigest, ces.keyShare, RANDOM);
    const sealed = encodeClientEncryptedSNI({ ...ces, encryptedSni: AEADS['aes-128-gcm'].seal(key, iv, KEY_SHARE_EXT, plain) });
    assert.equal(failure(() => decrypt(hello(sealed))), 'illegal_parameter');
  });
});

describe('draft-ietf-tls-esni-02 §4: the _esni TXT record is base64 of ESNIKeys', () => {
  const b64 = Buffer.from(RAW).toString('base64');
  it('one string, several strings joined, surrounding whitespace: the record bytes', () => {
    assert.deepEqual(esniFromTxt([b64]), RAW);
    assert.deepEqual(esniFromTxt([b64.slice(0, 10), b64.slice(10)]), RAW);
    assert.deepEqual(esniFromTxt([` ${b64}\n`]), RAW);
    assert.deepEqual(esniFromTxt(['AQ==']), Uint8Array.of(1));
    assert.deepEqual(esniFromTxt(['AQI=']), Uint8Array.of(1, 2));
    assert.deepEqual(esniFromTxt(['AQID']), Uint8Array.of(1, 2, 3));
  });
  it('anything but base64 (a character outside the alphabet at either end, three "=", empty): illegal_parameter', () => {
    for (const t of ['*AQID', 'AQID*', 'AQ*D', 'A===', '', '==']) assert.equal(failure(() => esniFromTxt([t])), 'illegal_parameter', t);
  });
});
