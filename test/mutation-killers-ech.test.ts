/**
 * Tests written against StrykerJS mutants of src/ech (`npm run mutation --
 * src/ech`, docs/mutation.md): the outcome fields a caller acts on (why a hello
 * was rejected, which key opened it), trial decryption, the §6.1.3 padding
 * that hides the inner name's length, and the AAD guard.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello, type EchHelloOptions, echOffer } from '../src/ech/client.js';
import { decryptEch, type EchServerKey, type InnerHello, outerAad, prepareServerKey, rebuildInner } from '../src/ech/server.js';
import { EchgateError } from '../src/errors.js';
import { TlsClient } from '../src/tls13/client.js';
import { decodeECHConfigList, encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { decodeClientHello, decodeClientHelloMessage, encodeClientHello, findExtension, summarize } from '../src/wire/tls/client-hello.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { decodeECHClientHello, encodeOuterExtensions } from '../src/wire/tls/extensions.js';

function makeKey(configId: number, maximumNameLength = 32) {
  const sk = nodeProvider.x25519Generate();
  const raw = encodeECHConfigList([
    encodeECHConfig({
      configId,
      kemId: 0x20,
      publicKey: sk.publicKey,
      cipherSuites: [{ kdfId: 1, aeadId: 1 }],
      maximumNameLength,
      publicName: 'public.example.test',
      extensions: [],
    }),
  ]);
  const config = usableConfigs(decodeECHConfigList(raw), isSupportedSuite)[0]!;
  return { config, key: prepareServerKey(nodeProvider, config, sk) };
}

const A = makeKey(9);
const B = makeKey(10);
const lookupOf = (keys: EchServerKey[]) => ({ byConfigId: (id: number) => keys.filter((k) => k.configId === id), all: () => keys });
const hello = (o: Partial<EchHelloOptions> = {}) =>
  decodeClientHelloMessage(buildEchClientHello(nodeProvider, { config: A.config, innerSni: 'secret.example.test', ...o }).outerMessage);

describe('RFC 9849 §7.1: which key opens the hello, and why a hello is rejected', () => {
  it('the key with the hello\'s config_id opens it and is named in the outcome', () => {
    const r = decryptEch(nodeProvider, hello(), lookupOf([B.key, A.key]));
    assert.equal(r.status, 'accepted');
    if (r.status !== 'accepted') return;
    assert.equal(r.configId, 9);
    assert.equal(r.key, A.key);
    assert.equal(summarize(r.inner).sni, 'secret.example.test');
  });

  it('§7: a ClientHello from the network with an encrypted_client_hello of type inner: illegal_parameter (shared and split mode alike)', () => {
    const h = hello();
    const exts = h.extensions.map((e) => (e.type === ExtensionType.encrypted_client_hello ? { type: e.type, data: Uint8Array.of(1) } : { type: e.type, data: e.data }));
    const forged = decodeClientHello(encodeClientHello({ ...h, extensions: exts }));
    for (const trialDecrypt of [false, true]) {
      assert.throws(
        () => decryptEch(nodeProvider, forged, lookupOf([A.key]), { trialDecrypt }),
        (e: unknown) => e instanceof EchgateError && e.alert === 'illegal_parameter',
      );
    }
  });

  it('no key with that config_id: rejected as no_config (GREASE or an unknown key), with the config_id', () => {
    assert.deepEqual(decryptEch(nodeProvider, hello(), lookupOf([B.key])), { status: 'rejected', reason: 'no_config', configId: 9 });
  });

  it('a key with that config_id that cannot open it: decrypt_failed; also when it does not offer the suite', () => {
    const wrong = { ...B.key, configId: 9 };
    assert.deepEqual(decryptEch(nodeProvider, hello(), lookupOf([wrong])), { status: 'rejected', reason: 'decrypt_failed', configId: 9 });
    const noSuite = { ...A.key, suiteHashes: new Map() };
    assert.deepEqual(decryptEch(nodeProvider, hello(), lookupOf([noSuite])), { status: 'rejected', reason: 'decrypt_failed', configId: 9 });
  });

  it('§10.4 trial decryption: with it, a key under another config_id opens the hello; without it, no_config', () => {
    const renamed = { ...A.key, configId: 77 };
    const h = hello();
    assert.equal(decryptEch(nodeProvider, h, lookupOf([renamed])).status, 'rejected');
    const r = decryptEch(nodeProvider, h, lookupOf([B.key, renamed]), { trialDecrypt: true });
    assert.equal(r.status, 'accepted');
    if (r.status === 'accepted') assert.deepEqual([r.key, r.configId], [renamed, 77]);
    // Trial decryption that finds nothing: no key matched the config_id, so no_config.
    assert.deepEqual(decryptEch(nodeProvider, h, lookupOf([B.key]), { trialDecrypt: true }), { status: 'rejected', reason: 'no_config', configId: 9 });
  });

  it('the caller\'s decoded extension (opts.ech, from the routing scan) for a hello without encrypted_client_hello: absent, nothing opened', () => {
    const h = hello();
    const ech = decodeECHClientHello(findExtension(h, ExtensionType.encrypted_client_hello)!.data);
    // Control: the same decoded extension with its own hello opens it.
    assert.equal(decryptEch(nodeProvider, h, lookupOf([A.key]), { ech }).status, 'accepted');
    // The same hello with the extension removed (so its bytes no longer hold one): no ECH offer to open.
    const bare = decodeClientHello(encodeClientHello({ ...h, extensions: h.extensions.filter((e) => e.type !== ExtensionType.encrypted_client_hello) }));
    assert.deepEqual(decryptEch(nodeProvider, bare, lookupOf([A.key]), { ech }), { status: 'absent' });
  });

  it('the AAD needs the outer hello\'s own bytes: a hello without them is a typed error, not a crash', () => {
    const h = hello();
    const ext = findExtension(h, ExtensionType.encrypted_client_hello)!;
    const ech = decodeECHClientHello(ext.data);
    assert.equal(ech.type, 'outer');
    if (ech.type !== 'outer') return;
    assert.throws(() => outerAad({ ...h, raw: undefined }, ext, ech), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ILLEGAL');
    assert.throws(() => outerAad(h, { ...ext, offset: undefined }, ech), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ILLEGAL');
    // decryptEch reaches the same guard (it sizes its scratch buffer from the bytes first).
    assert.throws(() => decryptEch(nodeProvider, { ...h, raw: undefined }, lookupOf([A.key])), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ILLEGAL');
    // With the bytes: a copy with the payload zeroed, the hello itself untouched; a too-small scratch buffer is not used.
    const aad = outerAad(h, ext, ech, new Uint8Array(1));
    assert.equal(aad.length, h.raw!.length);
    const at = ext.offset! + ech.payloadOffset;
    assert.ok(aad.subarray(at, at + ech.payload.length).every((b) => b === 0));
    assert.deepEqual(aad.subarray(0, at), h.raw!.subarray(0, at));
    assert.ok(h.raw!.subarray(at, at + ech.payload.length).some((b) => b !== 0));
  });
});

describe('RFC 9849 §6.1.3: padding hides the length of the inner name', () => {
  const payloadLength = (o: Partial<EchHelloOptions>) => {
    const ech = summarize(hello(o)).ech!;
    assert.equal(ech.type, 'outer');
    return ech.type === 'outer' ? ech.payload.length : -1;
  };
  it('names up to maximum_name_length give one payload length; a longer name a longer one', () => {
    const short = payloadLength({ innerSni: 'a.test' });
    assert.equal(payloadLength({ innerSni: 'abcdefghijklmnopqrstuvwxyz.test' }), short); // 31 bytes
    assert.equal(payloadLength({ innerSni: 'abcdefghijklmnopqrstuvwxyz0.test' }), short); // 32 bytes = maximum_name_length
    assert.ok(payloadLength({ innerSni: 'abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop.test' }) > short);
  });
  it('without an inner name the padding stands in for a whole server_name extension (maximum_name_length + 9 bytes)', () => {
    // server_name with an n-byte name is 9 + n bytes, padded by maximum_name_length - n: the same
    // maximum_name_length + 9 bytes as the padding of a hello without one. Over a range of
    // maximum_name_length values the two round to the same 32-byte step only if they are equal.
    for (let m = 8; m <= 40; m++) {
      const { config } = makeKey(9, m);
      assert.equal(payloadLength({ config, innerSni: undefined }), payloadLength({ config, innerSni: 'abc.test' }), `maximum_name_length ${m}`);
    }
  });
});

describe('RFC 9849 §5.1 / §7.1: rebuilding ClientHelloInner from its encoding', () => {
  // A real outer hello and an inner one made from it: empty session id, the inner ECH extension, and the
  // extensions the test names; `rebuildInner` gets the encoded inner, as decryptEch hands it over.
  const outer = hello();
  const innerEch = { type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(1) };
  const tls13 = { type: ExtensionType.supported_versions, data: Uint8Array.of(2, 0x03, 0x04) }; // §7.1: TLS 1.3 only
  const keyShare = outer.extensions.find((e) => e.type === ExtensionType.key_share)!;
  const encoded = (extensions: { type: number; data: Uint8Array }[]) => encodeClientHello({ ...outer, raw: undefined, sessionId: new Uint8Array(0), extensions });
  const refs = (...types: number[]) => ({ type: ExtensionType.ech_outer_extensions, data: encodeOuterExtensions(types) });
  const illegal = (e: unknown) => e instanceof EchgateError && e.alert === 'illegal_parameter';
  const inOuterOrder = (...types: number[]) => types.sort((a, b) => outer.extensions.findIndex((e) => e.type === a) - outer.extensions.findIndex((e) => e.type === b));

  it('a well-formed inner with key_share referenced from the outer hello rebuilds, with the outer bytes', () => {
    const inner = rebuildInner(outer, encoded([innerEch, tls13, refs(ExtensionType.key_share)]));
    assert.deepEqual(inner.extensions.find((e) => e.type === ExtensionType.key_share)?.data, keyShare.data);
  });

  it('§5.1: two ech_outer_extensions → illegal_parameter', () => {
    // Each list alone is well-formed (see the test above); only their number is wrong.
    const two = encoded([innerEch, tls13, refs(ExtensionType.key_share), refs(ExtensionType.supported_groups)]);
    assert.doesNotThrow(() => rebuildInner(outer, encoded([innerEch, tls13, refs(...inOuterOrder(ExtensionType.supported_groups, ExtensionType.key_share))])));
    // The hello decoder already refuses a repeated extension type (RFC 8446 §4.2), so rebuildInner's own
    // "two ech_outer_extensions" check is a second line that no encoding reaches (docs/mutation.md: equivalent).
    assert.throws(() => rebuildInner(outer, two), illegal);
  });

  it('§5.1: ech_outer_extensions naming encrypted_client_hello → illegal_parameter', () => {
    // Refused for what it names, before the rebuilt list could be refused for a duplicate extension.
    assert.throws(
      () => rebuildInner(outer, encoded([innerEch, tls13, refs(ExtensionType.encrypted_client_hello)])),
      (e: unknown) => illegal(e) && /references encrypted_client_hello/.test((e as Error).message),
    );
  });

  it('an extension twice in the rebuilt inner (inline and referenced) → illegal_parameter', () => {
    assert.throws(() => rebuildInner(outer, encoded([innerEch, tls13, keyShare, refs(ExtensionType.key_share)])), illegal);
  });

  it('server_name (type 0, the first outer extension) inline and referenced → illegal_parameter (RFC 8446 §4.2: no type twice)', () => {
    const sni = outer.extensions[0]!;
    assert.equal(sni.type, ExtensionType.server_name);
    assert.throws(
      () => rebuildInner(outer, encoded([innerEch, tls13, { type: sni.type, data: sni.data }, refs(ExtensionType.server_name)])),
      (e: unknown) => illegal(e) && /appears twice/.test((e as Error).message),
    );
  });

  it('§7.1: a referenced supported_versions is the one checked: the outer\'s TLS 1.3 + 1.2 list → "offers TLS 1.2 or below"', () => {
    // The outer hello offers TLS 1.2 too (§6.1.2); an inner that takes its list by reference offers it as well.
    assert.deepEqual(findExtension(outer, ExtensionType.supported_versions)!.data, Uint8Array.of(4, 0x03, 0x04, 0x03, 0x03));
    assert.throws(
      () => rebuildInner(outer, encoded([innerEch, refs(ExtensionType.supported_versions)])),
      (e: unknown) => illegal(e) && /TLS 1\.2 or below/.test((e as Error).message),
    );
  });

  it('the rebuilt inner is encoded as encodeClientHello encodes it, also with 200 cipher suites (a list length over 255 bytes)', () => {
    const many = Array.from({ length: 200 }, (_, i) => 0x1300 + i);
    const inner = rebuildInner(outer, encodeClientHello({ ...outer, raw: undefined, cipherSuites: many, sessionId: new Uint8Array(0), extensions: [innerEch, tls13] }));
    // The session id is the outer hello's (§5.1).
    assert.deepEqual(inner.raw, encodeClientHello({ ...outer, raw: undefined, cipherSuites: many, extensions: [innerEch, tls13] }));
  });

  it('the rebuilt extension block past 2^16 - 1 bytes (inline plus referenced) is ERR_ENCODE when encoded; at exactly 2^16 - 1 it encodes', () => {
    // Each part fits its own hello; only the rebuilt inner's sum can pass the u16 length (RFC 8446 §4.1.2).
    const big = { ...outer, extensions: [...outer.extensions, { type: 0x7777, data: new Uint8Array(40000) }] };
    // innerEch 4 + 1, tls13 4 + 3, the inline one 4 + n, the referenced one 4 + 40000: 40020 + n bytes.
    const inner = (n: number) => rebuildInner(big, encoded([innerEch, tls13, { type: 0x7778, data: new Uint8Array(n) }, refs(0x7777)]));
    const exact = inner(65535 - 40020).raw!;
    assert.equal((exact[exact.length - 65535 - 2]! << 8) | exact[exact.length - 65535 - 1]!, 65535);
    assert.throws(() => inner(65536 - 40020).raw, (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ENCODE');
  });
});

describe('RFC 9849 §5.1: a compressed extension is copied from ClientHelloInner into ClientHelloOuter', () => {
  it('key_share compressed: the outer carries the inner share, and the server rebuilds the inner the client meant', () => {
    const h = buildEchClientHello(nodeProvider, { config: A.config, innerSni: 'secret.example.test', compress: [ExtensionType.key_share] });
    const innerKs = findExtension(h.inner, ExtensionType.key_share)!;
    const outerKs = findExtension(h.outer, ExtensionType.key_share)!;
    // §5.1: the referenced extension's data is the outer hello's; so the outer must hold the inner's share.
    assert.deepEqual(outerKs.data, innerKs.data);
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), lookupOf([A.key]));
    assert.equal(r.status, 'accepted');
    if (r.status !== 'accepted') return;
    assert.deepEqual(findExtension(r.inner, ExtensionType.key_share)!.data, innerKs.data);
    assert.deepEqual(r.inner.raw, h.inner.raw);
  });
  it('the first outer extension (server_name, index 0) compressed: copied too, so the rebuilt inner is the client\'s', () => {
    const h = buildEchClientHello(nodeProvider, { config: A.config, innerSni: 'secret.example.test', compress: [ExtensionType.server_name] });
    assert.equal(h.outer.extensions[0]!.type, ExtensionType.server_name);
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), lookupOf([A.key]));
    assert.equal(r.status, 'accepted');
    if (r.status === 'accepted') assert.deepEqual(r.inner.raw, h.inner.raw);
  });
  it('a type to compress that only the outer hello carries (no inner SNI) is skipped, not a crash', () => {
    const h = buildEchClientHello(nodeProvider, { config: A.config, compress: [ExtensionType.server_name, ExtensionType.supported_groups] });
    assert.equal(findExtension(h.inner, ExtensionType.server_name), undefined);
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), lookupOf([A.key]));
    assert.equal(r.status, 'accepted');
    if (r.status === 'accepted') assert.deepEqual(r.inner.raw, h.inner.raw);
  });
  it('a type to compress that neither hello carries is skipped, not a crash', () => {
    const h = buildEchClientHello(nodeProvider, { config: A.config, innerSni: 'secret.example.test', compress: [0x7777, ExtensionType.supported_groups] });
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), lookupOf([A.key]));
    assert.equal(r.status, 'accepted');
    if (r.status === 'accepted') assert.deepEqual(r.inner.raw, h.inner.raw);
  });
});

describe('RFC 9849 §5.1: supported_versions compressed (inner and outer TLS 1.3 only)', () => {
  it('the server takes the referenced list for the §7.1 check and accepts', () => {
    const h = buildEchClientHello(nodeProvider, { config: A.config, innerSni: 'secret.example.test', compress: [ExtensionType.supported_versions] });
    assert.deepEqual(findExtension(h.outer, ExtensionType.supported_versions)!.data, Uint8Array.of(2, 0x03, 0x04));
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), lookupOf([A.key]));
    assert.equal(r.status, 'accepted');
    if (r.status === 'accepted') assert.deepEqual(r.inner.raw, h.inner.raw);
  });
});

describe('split mode: ClientHelloInner as one handshake record (RFC 8446 §5.1), or undefined when it does not fit', () => {
  it('a record of type 22, version 0x0303, the hello behind a 4-byte handshake header; undefined one byte under its size', () => {
    const r = decryptEch(nodeProvider, hello(), lookupOf([A.key]));
    assert.equal(r.status, 'accepted');
    if (r.status !== 'accepted') return;
    const inner = r.inner as InnerHello;
    const body = inner.raw;
    const n = body.length + 4;
    for (const max of [n, 1 << 14]) {
      const rec = inner.record(max);
      assert.ok(rec, `maxPlain ${max}`);
      assert.deepEqual([...rec.subarray(0, 9)], [22, 3, 3, n >> 8, n & 0xff, 1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]);
      assert.deepEqual(rec.subarray(9), body);
    }
    assert.equal(inner.record(n - 1), undefined);
  });
});

describe('RFC 9849 §6.1: the TLS client\'s ECH offer carries its ALPN list into ClientHelloInner', () => {
  it('TlsClient with ALPN h2 and http/1.1: the inner hello the server opens offers both, in order', () => {
    const c = new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', alpn: ['h2', 'http/1.1'], ech: echOffer(A.config) });
    const outer = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
    const r = decryptEch(nodeProvider, outer, lookupOf([A.key]));
    assert.equal(r.status, 'accepted');
    if (r.status === 'accepted') assert.deepEqual(summarize(r.inner).alpn, ['h2', 'http/1.1']);
  });
});
