/**
 * ESNI, draft-ietf-tls-esni-02 (experimental). The draft publishes no test
 * vectors, so the fixed-key case below is computed twice: by echgate
 * (ech/esni.ts on node:crypto) and by an independent recomputation written
 * here from the draft's text with @noble/curves, @noble/hashes and
 * @noble/ciphers (no echgate crypto, no node:crypto). Then every check of
 * §4 (ESNIKeys) and §5.2 (client-facing server) is fed a bad input.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gcm } from '@noble/ciphers/aes.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { extract, expand } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { fromHex, toHex } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { AEADS } from '../src/crypto/node.js';
import {
  decryptEsni,
  type EsniServerKey,
  esniEncrypt,
  esniKeyIv,
  esniOffer,
  esniRecordDigest,
  makeESNIKeys,
  prepareEsniKey,
  usableEsni,
  verifyESNIKeys,
} from '../src/ech/esni.js';
import { isEchgateError } from '../src/errors.js';
import { TlsClient } from '../src/tls13/client.js';
import { type ClientHello, decodeClientHelloMessage, findExtension } from '../src/wire/tls/client-hello.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import {
  decodeClientEncryptedSNI,
  decodeClientESNIInner,
  decodeESNIKeys,
  decodeServerEncryptedSNI,
  encodeClientEncryptedSNI,
  encodeClientESNIInner,
  encodeESNIContents,
} from '../src/wire/tls/esni.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';

const SERVER_SK = fromHex('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf');
const CLIENT_SK = fromHex('c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf');
const NONCE = fromHex('000102030405060708090a0b0c0d0e0f');
const RANDOM = fromHex('202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f');
/** A key_share extension body with one X25519 entry (any 32 bytes: the server never uses it as a key here). */
const KEY_SHARE_EXT = fromHex(`0024001d0020${'42'.repeat(32)}`);
const NOT_BEFORE = 1_700_000_000;
const NOT_AFTER = NOT_BEFORE + 86_400;
const HOST = 'secret.example.test';

const serverKey = () => prepareEsniKey(nodeProvider, record(), nodeProvider.x25519Private(SERVER_SK));
const record = () => makeESNIKeys(nodeProvider, nodeProvider.x25519Private(SERVER_SK).publicKey, { notBefore: NOT_BEFORE, notAfter: NOT_AFTER });

function u16(n: number): Uint8Array {
  return Uint8Array.of(n >> 8, n & 0xff);
}
function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
const ascii = (s: string) => new TextEncoder().encode(s);

/** HKDF-Expand-Label (RFC 8446 §7.1), written out from the RFC. */
function nobleExpandLabel(secret: Uint8Array, label: string, context: Uint8Array, length: number): Uint8Array {
  const full = ascii(`tls13 ${label}`);
  const info = cat(u16(length), Uint8Array.of(full.length), full, Uint8Array.of(context.length), context);
  return expand(sha256, secret, info, length);
}

/** The whole of draft-02 §4 and §5.1 for the fixed inputs, with @noble only. */
function nobleOracle(hostName: string) {
  const serverPub = x25519.getPublicKey(SERVER_SK);
  const clientPub = x25519.getPublicKey(CLIENT_SK);
  // §4 ESNIKeys: version 0xff01, checksum, keys, cipher_suites, padded_length, not_before, not_after, extensions.
  const u64 = (n: number) => cat(u16(0), u16(Math.floor(n / 2 ** 32) & 0xffff), u16((n >>> 16) & 0xffff), u16(n & 0xffff));
  const body = (checksum: Uint8Array) =>
    cat(u16(0xff01), checksum, u16(2 + 2 + 32), u16(0x001d), u16(32), serverPub, u16(2), u16(0x1301), u16(260), u64(NOT_BEFORE), u64(NOT_AFTER), u16(0));
  const checksum = sha256(body(new Uint8Array(4))).subarray(0, 4);
  const esniKeys = body(checksum);
  const recordDigest = sha256(esniKeys);
  // §5.1
  const z = x25519.getSharedSecret(CLIENT_SK, serverPub);
  const zx = extract(sha256, z, new Uint8Array(32));
  const clientShare = cat(u16(0x001d), u16(32), clientPub);
  const contentsHash = sha256(cat(u16(recordDigest.length), recordDigest, clientShare, RANDOM));
  const key = nobleExpandLabel(zx, 'esni key', contentsHash, 16);
  const iv = nobleExpandLabel(zx, 'esni iv', contentsHash, 12);
  const name = ascii(hostName);
  const sniList = cat(u16(name.length + 3), Uint8Array.of(0), u16(name.length), name);
  const inner = cat(NONCE, sniList, new Uint8Array(260 - sniList.length));
  const encryptedSni = gcm(key, iv, KEY_SHARE_EXT).encrypt(inner);
  const extension = cat(u16(0x1301), clientShare, u16(recordDigest.length), recordDigest, u16(encryptedSni.length), encryptedSni);
  return { esniKeys, recordDigest, key, iv, extension };
}

function fixedExtension(hostName = HOST): Uint8Array {
  return esniEncrypt(nodeProvider, {
    record: decodeESNIKeys(record()),
    suite: 0x1301,
    hostName,
    clientRandom: RANDOM,
    keyShareExtension: KEY_SHARE_EXT,
    ephemeral: nodeProvider.x25519Private(CLIENT_SK),
    nonce: NONCE,
  });
}

/** A ClientHello carrying `esni` as encrypted_server_name, the fixed random and key_share. */
function helloWith(esni: Uint8Array, o: { keyShare?: Uint8Array; versions?: Uint8Array } = {}): ClientHello {
  return {
    legacyVersion: 0x0303,
    random: RANDOM,
    sessionId: new Uint8Array(0),
    cipherSuites: [0x1301],
    compressionMethods: Uint8Array.of(0),
    extensions: [
      { type: ExtensionType.supported_versions, data: o.versions ?? fromHex('020304') },
      { type: ExtensionType.key_share, data: o.keyShare ?? KEY_SHARE_EXT },
      { type: ExtensionType.encrypted_server_name, data: esni },
    ],
  };
}

const lookup = (...keys: EsniServerKey[]) => ({ esniKeys: () => keys });

function decrypt(hello: ClientHello, keys = lookup(serverKey())) {
  return decryptEsni(nodeProvider, hello, findExtension(hello, ExtensionType.encrypted_server_name)!, keys);
}

function expectAlert(fn: () => unknown, alert: string, code = 'ERR_ESNI'): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isEchgateError(e), `not an EchgateError: ${e}`);
    assert.equal(e.alert, alert, e.message);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** Re-encrypt a chosen ClientESNIInner plaintext with the fixed keys (for padding/length attacks past the AEAD). */
function sealInner(plain: Uint8Array): Uint8Array {
  const ces = decodeClientEncryptedSNI(fixedExtension());
  const z = nodeProvider.x25519(nodeProvider.x25519Private(CLIENT_SK), nodeProvider.x25519Private(SERVER_SK).publicKey);
  const { key, iv } = esniKeyIv(nodeProvider, 0x1301, z, ces.recordDigest, ces.keyShare, RANDOM);
  return encodeClientEncryptedSNI({ ...ces, encryptedSni: AEADS['aes-128-gcm'].seal(key, iv, KEY_SHARE_EXT, plain) });
}

describe('draft-ietf-tls-esni-02: fixed-key case, two independent computations', () => {
  it('§4 ESNIKeys: the same bytes, checksum and record_digest as the @noble recomputation', () => {
    const o = nobleOracle(HOST);
    assert.equal(toHex(record()), toHex(o.esniKeys));
    assert.equal(toHex(esniRecordDigest(nodeProvider, 'sha256', record())), toHex(o.recordDigest));
    const k = verifyESNIKeys(nodeProvider, record());
    assert.equal(k.version, 0xff01);
    assert.equal(k.paddedLength, 260);
    assert.deepEqual([k.notBefore, k.notAfter], [NOT_BEFORE, NOT_AFTER]);
    assert.deepEqual(k.cipherSuites, [0x1301]);
  });

  it('§5.1 key, iv and the whole ClientEncryptedSNI match the @noble recomputation', () => {
    const o = nobleOracle(HOST);
    const ext = fixedExtension();
    assert.equal(toHex(ext), toHex(o.extension));
    const ces = decodeClientEncryptedSNI(ext);
    const z = nodeProvider.x25519(nodeProvider.x25519Private(SERVER_SK), ces.keyShare.keyExchange);
    const { key, iv } = esniKeyIv(nodeProvider, 0x1301, z, ces.recordDigest, ces.keyShare, RANDOM);
    assert.equal(toHex(key), toHex(o.key));
    assert.equal(toHex(iv), toHex(o.iv));
    // Pinned: a change to either computation shows here first.
    assert.equal(toHex(sha256(ext)).slice(0, 16), toHex(sha256(o.extension)).slice(0, 16));
  });

  it('§5.2 the server decrypts the fixed case: the name and the nonce', () => {
    const r = decrypt(helloWith(fixedExtension()));
    assert.equal(r.hostName, HOST);
    assert.equal(toHex(r.nonce), toHex(NONCE));
  });

  it('§5.1 a real client hello from TlsClient with esniOffer decrypts, and it sends no cleartext server_name', () => {
    const offer = esniOffer(nodeProvider, record(), { now: NOT_BEFORE + 10 });
    const client = new TlsClient({ provider: nodeProvider, serverName: HOST, esni: offer });
    const bytes = Buffer.concat(client.hello());
    const hello = decodeClientHelloMessage(parseHelloRecords(new Uint8Array(bytes))!.message);
    assert.equal(findExtension(hello, ExtensionType.server_name), undefined);
    const r = decrypt(hello);
    assert.equal(r.hostName, HOST);
    assert.equal(toHex(r.nonce), toHex(offer.nonce));
  });

  it('§5.1 the encrypted length does not depend on the name (padding to padded_length)', () => {
    assert.equal(fixedExtension('a.test').length, fixedExtension(`${'x'.repeat(60)}.example.test`).length);
  });
});

describe('draft-ietf-tls-esni-02 §4: ESNIKeys a client must ignore', () => {
  it('a bad checksum is refused', () => {
    const bad = record();
    bad[3]! ^= 1;
    expectAlert(() => verifyESNIKeys(nodeProvider, bad), 'illegal_parameter');
    expectAlert(() => usableEsni(nodeProvider, bad, NOT_BEFORE + 1), 'illegal_parameter');
  });

  it('another version is refused before anything else is read', () => {
    const v2 = record();
    v2[1] = 0x02;
    expectAlert(() => decodeESNIKeys(v2), 'illegal_parameter');
  });

  it('a record outside not_before..not_after is not used by the client', () => {
    expectAlert(() => usableEsni(nodeProvider, record(), NOT_AFTER + 1), 'illegal_parameter');
    expectAlert(() => usableEsni(nodeProvider, record(), NOT_BEFORE - 1), 'illegal_parameter');
    assert.equal(usableEsni(nodeProvider, record(), NOT_BEFORE).suite, 0x1301);
  });

  it('every truncation, and trailing bytes, give a typed error (the decoder is total)', () => {
    const r = record();
    for (let n = 0; n < r.length; n++) assert.throws(() => decodeESNIKeys(r.subarray(0, n)), isEchgateError);
    assert.throws(() => decodeESNIKeys(cat(r, Uint8Array.of(0))), (e: unknown) => isEchgateError(e) && e.code === 'ERR_TRAILING');
  });

  it('two keys of one group are refused (§4 "Every key being listed MUST belong to a different group")', () => {
    const r = decodeESNIKeys(record());
    const twice = cat(r.raw.subarray(0, 6), u16(72), r.raw.subarray(8, 44), r.raw.subarray(8, 44), r.raw.subarray(44));
    assert.throws(() => decodeESNIKeys(twice), (e: unknown) => isEchgateError(e) && e.code === 'ERR_DUPLICATE');
  });

  it('random bytes never crash the decoders', () => {
    const rnd = (n: number) => nodeProvider.randomBytes(n);
    for (let i = 0; i < 300; i++) {
      const b = rnd(i % 120);
      if (i % 3 === 0 && b.length > 2) b.set([0xff, 0x01]);
      for (const f of [decodeESNIKeys, decodeClientEncryptedSNI, decodeServerEncryptedSNI, (x: Uint8Array) => decodeClientESNIInner(x, 260)]) {
        try {
          f(b);
        } catch (e) {
          assert.ok(isEchgateError(e), `${f.name}: ${e}`);
        }
      }
    }
  });
});

describe('draft-ietf-tls-esni-02 §5.2: the client-facing server refuses', () => {
  it('a record_digest that matches no loaded ESNIKeys: illegal_parameter', () => {
    const ces = decodeClientEncryptedSNI(fixedExtension());
    const digest = Uint8Array.from(ces.recordDigest);
    digest[0]! ^= 0x80;
    expectAlert(() => decrypt(helloWith(encodeClientEncryptedSNI({ ...ces, recordDigest: digest }))), 'illegal_parameter');
    // And a key that is not loaded at all.
    expectAlert(() => decrypt(helloWith(fixedExtension()), lookup()), 'illegal_parameter');
  });

  it('an unknown cipher suite (no hash, so no record_digest can match): illegal_parameter', () => {
    const ces = decodeClientEncryptedSNI(fixedExtension());
    expectAlert(() => decrypt(helloWith(encodeClientEncryptedSNI({ ...ces, suite: 0x1305 }))), 'illegal_parameter');
  });

  it('a known suite the record does not list: illegal_parameter', () => {
    const ces = decodeClientEncryptedSNI(fixedExtension());
    // TLS_CHACHA20_POLY1305_SHA256 shares SHA-256, so the digest matches; the record lists only 0x1301.
    expectAlert(() => decrypt(helloWith(encodeClientEncryptedSNI({ ...ces, suite: 0x1303 }))), 'illegal_parameter');
  });

  it('a key_share group the record does not list: illegal_parameter', () => {
    const ces = decodeClientEncryptedSNI(fixedExtension());
    expectAlert(() => decrypt(helloWith(encodeClientEncryptedSNI({ ...ces, keyShare: { ...ces.keyShare, group: 0x0017 } }))), 'illegal_parameter');
  });

  it('a length inconsistent with padded_length: illegal_parameter before decrypting', () => {
    const ces = decodeClientEncryptedSNI(fixedExtension());
    expectAlert(() => decrypt(helloWith(encodeClientEncryptedSNI({ ...ces, encryptedSni: ces.encryptedSni.subarray(1) }))), 'illegal_parameter');
  });

  it('a ciphertext that does not open (tampered, or pasted into another hello): decrypt_error', () => {
    const ces = decodeClientEncryptedSNI(fixedExtension());
    const ct = Uint8Array.from(ces.encryptedSni);
    ct[5]! ^= 1;
    expectAlert(() => decrypt(helloWith(encodeClientEncryptedSNI({ ...ces, encryptedSni: ct }))), 'decrypt_error');
    // §5.1: the AAD is the hello's key_share: cut and paste into a hello with another share fails.
    const other = Uint8Array.from(KEY_SHARE_EXT);
    other[10]! ^= 1;
    expectAlert(() => decrypt(helloWith(fixedExtension(), { keyShare: other })), 'decrypt_error');
  });

  it('padding that is not all zeros: illegal_parameter', () => {
    const good = encodeClientESNIInner(NONCE, HOST, 260);
    assert.equal(decrypt(helloWith(sealInner(good))).hostName, HOST);
    const bad = Uint8Array.from(good);
    bad[bad.length - 1] = 1;
    expectAlert(() => decrypt(helloWith(sealInner(bad))), 'illegal_parameter');
  });

  it('a ClientHello without TLS 1.3: handshake_failure', () => {
    expectAlert(() => decrypt(helloWith(fixedExtension(), { versions: fromHex('020303') })), 'handshake_failure');
  });

  it('a truncated extension, at every length: decode_error, never a crash', () => {
    const ext = fixedExtension();
    for (let n = 0; n < ext.length; n += 7) {
      assert.throws(() => decrypt(helloWith(ext.subarray(0, n))), (e: unknown) => isEchgateError(e) && e.alert === 'decode_error');
    }
  });

  it('ServerEncryptedSNI is exactly 16 bytes', () => {
    assert.throws(() => decodeServerEncryptedSNI(new Uint8Array(15)), isEchgateError);
    assert.equal(decodeServerEncryptedSNI(NONCE).length, 16);
  });

  it('ESNIContents is record_digest<..>, the client KeyShareEntry and the random', () => {
    const c = encodeESNIContents(Uint8Array.of(9), { group: 0x1d, keyExchange: Uint8Array.of(7, 7) }, RANDOM);
    assert.equal(toHex(c.subarray(0, 9)), '000109001d00020707');
    assert.equal(c.length, 9 + 32);
  });

  it('a ServerNameList longer than padded_length is not sent (§5.1)', () => {
    assert.throws(() => encodeClientESNIInner(NONCE, 'x'.repeat(300), 260), isEchgateError);
  });
});

describe('draft-ietf-tls-esni-02 §5.1 client: the server must echo the nonce', () => {
  it('a TLS 1.3 server that ignores ESNI (node:tls) completes no handshake with connect --esni: illegal_parameter', async () => {
    const { tlsBackend } = await import('./helpers.js');
    const { connectOnce } = await import('../src/cli/connect.js');
    const b = await tlsBackend('plain', 'secret.example.test');
    try {
      const now = Math.floor(Date.now() / 1000);
      const rec = makeESNIKeys(nodeProvider, nodeProvider.x25519Private(SERVER_SK).publicKey, { notBefore: now - 10, notAfter: now + 600 });
      const r = await connectOnce('127.0.0.1', b.port, { sni: HOST, esni: rec, send: 'x' });
      assert.equal(r.connected, false);
      assert.match(r.error ?? '', /did not echo the ESNI nonce/);
    } finally {
      await b.close();
    }
  });
});

describe('draft-ietf-tls-esni-02 §4: the _esni TXT record in the embedded zone', () => {
  it('TTL never reaches past the earliest not_after; expired records are not published', async () => {
    const { Zone } = await import('../src/dns/zone.js');
    const { publishedEsni } = await import('../src/keys/esni-store.js');
    const { RRType } = await import('../src/wire/dns/message.js');
    const { decodeTxtStrings } = await import('../src/wire/tls/esni.js');
    const now = Math.floor(Date.now() / 1000);
    const pub = nodeProvider.x25519Private(SERVER_SK).publicKey;
    const soon = makeESNIKeys(nodeProvider, pub, { notBefore: now - 100, notAfter: now + 40 });
    const later = makeESNIKeys(nodeProvider, pub, { notBefore: now - 100, notAfter: now + 4000 });
    const gone = makeESNIKeys(nodeProvider, pub, { notBefore: now - 100, notAfter: now - 1 });
    const keys = [soon, later, gone].map((raw) => ({ raw, record: decodeESNIKeys(raw) }));
    const zone = new Zone({ ttl: 300, names: { 'secret.example.test': { a: ['127.0.0.1'] } } }, () => undefined, (max) => publishedEsni(keys, Math.floor(Date.now() / 1000), max));
    const a = zone.answer('_esni.secret.example.test', RRType.TXT);
    assert.equal(a.answers.length, 2);
    for (const rr of a.answers) assert.ok(rr.ttl <= 40 && rr.ttl >= 35, String(rr.ttl));
    // Newest not_after first; base64 of the record, split in strings of at most 255 octets.
    assert.equal(decodeTxtStrings(a.answers[0]!.rdata).join(''), Buffer.from(later).toString('base64'));
    assert.ok(decodeTxtStrings(a.answers[0]!.rdata).every((x) => x.length <= 255));
    // Another type at the name: NODATA; a name the zone does not hold: nothing.
    assert.equal(zone.answer('_esni.secret.example.test', RRType.A).answers.length, 0);
    assert.equal(zone.answer('_esni.nope.example.test', RRType.TXT).answers.length, 0);
    const none = new Zone({ ttl: 300, names: { 'secret.example.test': {} } }, () => undefined, (max) => publishedEsni([keys[2]!], now, max));
    assert.equal(none.answer('_esni.secret.example.test', RRType.TXT).answers.length, 0);
  });
});
