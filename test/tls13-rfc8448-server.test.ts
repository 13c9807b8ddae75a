/**
 * RFC 8448 §3 (Simple 1-RTT Handshake) driving TlsServer itself: the
 * trace's ClientHello goes in, with the trace's server random, X25519
 * ephemeral key and certificate injected, and what the engine writes is
 * compared with the trace.
 *
 * Byte for byte: ServerHello (so the handshake secrets and keys are the
 * trace's), and the Certificate message inside the encrypted flight.
 * Not byte for byte, by design: the trace's server (NSS) puts three
 * extensions in EncryptedExtensions that this engine does not send —
 * supported_groups (RFC 8446 §4.2.7, optional), record_size_limit
 * (RFC 8449, not implemented) and an empty server_name (RFC 6066 §3
 * acknowledgement, optional) — so EncryptedExtensions differs, and with it
 * the transcript hash under CertificateVerify and both Finished messages and
 * the application secrets; CertificateVerify is RSA-PSS, whose salt is random,
 * so it could not match anyway. Those are checked by recomputing them from
 * the trace's secrets over the transcript the engine did send.
 */
import assert from 'node:assert/strict';
import { constants, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import { concat, fromHex, toHex } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { SigScheme } from '../src/tls13/certs.js';
import { finishedVerifyData, KeySchedule, suiteById, trafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ContentType, HandshakeType, NamedGroup } from '../src/wire/tls/constants.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { certificateVerifyContent, decodeCertificateVerify, decodeExtensionBlock } from '../src/wire/tls/server-messages.js';
import { Reader } from '../src/bytes/reader.js';
import { json } from './helpers.js';

const v = json('rfc8448-simple-1rtt.json');
const m = (k: string) => fromHex(v.messages[k]);
const rec = (k: string) => fromHex(v.records[k]);
const suite = suiteById(0x1301)!;
const th = (...parts: Uint8Array[]) => nodeProvider.hash('sha256', concat(...parts));
const b64u = (hex: string) => Buffer.from(hex.replace(/^(00)+(?=..)/, ''), 'hex').toString('base64url');

/** The trace's RSA key (RFC 8448 §3 lists its components). */
function traceKey() {
  const k = v.server_rsa_private_key;
  const jwk = { kty: 'RSA', n: b64u(k.modulus), e: b64u(k.public_exponent), d: b64u(k.private_exponent), p: b64u(k.prime1), q: b64u(k.prime2), dp: b64u(k.exponent1), dq: b64u(k.exponent2), qi: b64u(k.coefficient) };
  const priv = createPrivateKey({ key: jwk, format: 'jwk' });
  return { priv, pub: createPublicKey(priv) };
}

/** The leaf DER out of the trace's Certificate message: context 0, list length, entry length, DER, entry extensions. */
function traceCertificate(): Uint8Array {
  const body = m('certificate').subarray(4);
  assert.equal(body[0], 0, 'empty certificate_request_context');
  const len = (body[4]! << 16) | (body[5]! << 8) | body[6]!;
  return body.subarray(7, 7 + len);
}

function traceServer() {
  const { priv, pub } = traceKey();
  const signed: Uint8Array[] = [];
  const server = new TlsServer({
    provider: nodeProvider,
    random: (n) => {
      assert.equal(n, 32);
      return fromHex(v.server_random);
    },
    ephemeral: () => nodeProvider.x25519Private(fromHex(v.server_ephemeral_x25519_private_key)),
    // The trace negotiates x25519: the engine's preference must pick it from the trace's supported_groups.
    groups: [NamedGroup.x25519],
    certificate: (sni) => {
      assert.equal(sni, 'server');
      return {
        chain: [traceCertificate()],
        schemes: [SigScheme.rsa_pss_rsae_sha256],
        sign: (scheme, data) => {
          assert.equal(scheme, SigScheme.rsa_pss_rsae_sha256);
          signed.push(data);
          return new Uint8Array(sign('sha256', data, { key: priv, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }));
        },
      };
    },
  });
  return { server, pub, signed };
}

describe('RFC 8448 §3 simple 1-RTT handshake through TlsServer', () => {
  it('the trace ClientHello in: ServerHello out byte for byte (suite, group, extension order, random, key share)', () => {
    const { server } = traceServer();
    const ch = decodeClientHelloMessage(m('client_hello'));
    const out = server.start(ch, 'server', { offered: false, accepted: false });
    assert.equal(out.error, undefined, String(out.error));
    // No legacy_session_id in the trace's hello: no middlebox CCS (RFC 8446 Appendix D.4), just two records.
    assert.equal(out.send.length, 2);
    assert.equal(toHex(out.send[0]!), toHex(rec('server_hello')));
    assert.equal(toHex(out.send[0]!.subarray(5)), v.messages.server_hello);
  });

  it('the encrypted flight opens under the trace handshake key; Certificate is the trace message; EE differs only by the extensions we do not send; CV and Finished verify; the trace client Finished recomputed completes the handshake', () => {
    const { server, pub, signed } = traceServer();
    const out = server.start(decodeClientHelloMessage(m('client_hello')), 'server', { offered: false, accepted: false });
    const flight = out.send[1]!;
    assert.equal(flight[0], ContentType.application_data);
    const hs = { client: fromHex(v.key_schedule.client_handshake_traffic_secret), server: fromHex(v.key_schedule.server_handshake_traffic_secret) };
    const opened = new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.server)).open(flight.subarray(0, 5), flight.subarray(5));
    assert.equal(opened.type, ContentType.handshake);
    const c = opened.content;

    // EncryptedExtensions: empty here (no ALPN offered, no ECH); the trace's carries supported_groups, record_size_limit, server_name.
    const ee = c.subarray(0, 6);
    assert.equal(toHex(ee), '080000020000');
    assert.notEqual(toHex(ee), v.messages.encrypted_extensions);
    const cert = c.subarray(6, 6 + m('certificate').length);
    assert.equal(toHex(cert), v.messages.certificate);
    let at = 6 + cert.length;
    const cvLen = 4 + ((c[at + 1]! << 16) | (c[at + 2]! << 8) | c[at + 3]!);
    const cv = c.subarray(at, at + cvLen);
    at += cvLen;
    const sf = c.subarray(at);
    assert.equal(cv[0], HandshakeType.certificate_verify);
    assert.equal(sf[0], HandshakeType.finished);

    // §4.4.3: CertificateVerify over the transcript the engine sent, checked with the trace's public key.
    const upToCert = [m('client_hello'), m('server_hello'), ee, cert];
    const { scheme, signature } = decodeCertificateVerify(cv.subarray(4));
    assert.equal(scheme, SigScheme.rsa_pss_rsae_sha256);
    const content = certificateVerifyContent(th(...upToCert), true);
    assert.deepEqual(signed, [content]);
    assert.ok(verify('sha256', content, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature));
    // §4.4.4: server Finished under the trace's server handshake secret.
    assert.equal(toHex(sf), toHex(encodeHandshake(HandshakeType.finished, finishedVerifyData(nodeProvider, 'sha256', hs.server, th(...upToCert, cv)))));

    // The client's Finished, as the trace's client would compute it over these bytes, sealed like the trace's (client handshake key, sequence 0).
    const throughSF = th(...upToCert, cv, sf);
    const cf = encodeHandshake(HandshakeType.finished, finishedVerifyData(nodeProvider, 'sha256', hs.client, throughSF));
    const done = server.receive(new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.client)).seal(ContentType.handshake, cf));
    assert.equal(done.error, undefined, String(done.error));
    assert.deepEqual(done.established, { sni: 'server', alpn: undefined, suite: 0x1301, ech: false, group: NamedGroup.x25519 });

    // Application data both ways under secrets from the trace's shared secret and the engine's transcript.
    const ks = new KeySchedule(nodeProvider, 'sha256');
    ks.handshake(fromHex(v.key_schedule.ecdhe_shared_secret), th(m('client_hello'), m('server_hello')));
    const ap = ks.application(throughSF);
    const data = fromHex(v.application_data_plaintext);
    const fromClient = server.receive(new RecordCipher(suite, trafficKeys(nodeProvider, suite, ap.client)).seal(ContentType.application_data, data));
    assert.deepEqual(fromClient.data, [data]);
    const toClient = server.encrypt(data)[0]!;
    assert.deepEqual(new RecordCipher(suite, trafficKeys(nodeProvider, suite, ap.server)).open(toClient.subarray(0, 5), toClient.subarray(5)).content, data);
  });
});

describe('RFC 8448 §3: why EncryptedExtensions is not the trace\'s', () => {
  /** The extensions of an EncryptedExtensions message (RFC 8446 §4.3.1): type and data, in order. */
  const extensionsOf = (msg: Uint8Array) => {
    assert.equal(msg[0], HandshakeType.encrypted_extensions);
    const r = new Reader(msg.subarray(4));
    const exts = decodeExtensionBlock(r.sub16('extensions'));
    r.expectEnd('EncryptedExtensions');
    return exts.map((e) => ({ type: e.type, data: toHex(e.data) }));
  };

  it('the trace\'s server (NSS) sends exactly supported_groups, record_size_limit and an empty server_name; without them it is the engine\'s message', () => {
    const trace = extensionsOf(m('encrypted_extensions'));
    assert.deepEqual(trace, [
      // RFC 8446 §4.2.7 (a server MAY send its groups in EncryptedExtensions): x25519, secp256r1, secp384r1,
      // secp521r1, ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192. The engine implements three groups
      // of its own list (x25519, secp256r1, X25519MLKEM768), so it could not send this list truthfully.
      { type: 10, data: '0012001d00170018001901000101010201030104' },
      // RFC 8449 record_size_limit, 2^14 + 1: the engine does not implement RFC 8449 (and the client offered it).
      { type: 28, data: '4001' },
      // RFC 6066 §3: the server "MAY" acknowledge the server_name it used with an empty extension; the engine does not.
      { type: 0, data: '' },
    ]);
    // The engine's EncryptedExtensions for the same hello (no ALPN offered, no ECH): an empty block, i.e. the trace's minus these three.
    const { server } = traceServer();
    const out = server.start(decodeClientHelloMessage(m('client_hello')), 'server', { offered: false, accepted: false });
    const hs = fromHex(v.key_schedule.server_handshake_traffic_secret);
    const flight = out.send[1]!;
    const c = new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs)).open(flight.subarray(0, 5), flight.subarray(5)).content;
    assert.deepEqual(extensionsOf(c.subarray(0, 6)), []);
    // The trace's client offered all three (so NSS could answer them): the engine's choice, not a parse difference.
    const offered = decodeClientHelloMessage(m('client_hello')).extensions.map((e) => e.type);
    for (const t of [0, 10, 28]) assert.ok(offered.includes(t), `the trace ClientHello offers extension ${t}`);
  });
});
