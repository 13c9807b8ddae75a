/**
 * Tests written against StrykerJS mutants of the client engine
 * (src/tls13/client.ts; `npm run mutation -- tls13-client`, docs/mutation.md):
 * the RSA-PSS schemes of CertificateVerify (RFC 8446 §4.2.3, §4.4.3), the
 * ESNI nonce echo the client demands (draft-ietf-tls-esni-02 §5.1), and the
 * client's own close_notify (§6.1). Driven in memory against TlsServer.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, sign } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { echOffer } from '../src/ech/client.js';
import { decryptEch, decryptSecondHello, prepareServerKey } from '../src/ech/server.js';
import { esniOffer, makeESNIKeys } from '../src/ech/esni.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { decodeECHConfigList, encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { caAndLeaf } from './helpers.js';
import { EchgateError } from '../src/errors.js';
import { loadCertificate, SigScheme } from '../src/tls13/certs.js';
import { type ClientOptions, TlsClient } from '../src/tls13/client.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { certificateVerifyContent, encodeServerHello, HRR_RANDOM } from '../src/wire/tls/server-messages.js';
import { ContentType, ExtensionType, HandshakeType } from '../src/wire/tls/constants.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { inside } from './tls13-craft.js';

const NAME = 'rsa.example.test';

/** An RSA-2048 self-signed certificate for NAME, made by the openssl CLI. */
function rsaCert(): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-rsa-'));
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`],
    { stdio: 'ignore' },
  );
  return { cert: readFileSync(join(dir, 'c.pem'), 'utf8'), key: readFileSync(join(dir, 'k.pem'), 'utf8') };
}
const RSA = rsaCert();
const RSA_CERT = loadCertificate(RSA.cert, RSA.key);

interface Out {
  send: Uint8Array[];
  alert?: string;
  error?: unknown;
  closed: boolean;
  established?: unknown;
}

/**
 * The server's first flight for a client, split into its protected messages
 * (opened with a copy of the client's read keys), and a feeder that seals
 * messages of our choosing for the client.
 */
function flight(cert: ReturnType<typeof loadCertificate>, client: TlsClient, extra: { type: number; data: Uint8Array }[] = []) {
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), certificate: () => cert, extraEncryptedExtensions: extra });
  const first = server.start(ch, NAME, { offered: false, accepted: false });
  assert.equal(first.alert, undefined);
  assert.equal(client.receive(first.send[0]!).error, undefined);
  const cp = inside(client) as unknown as { suite: ConstructorParameters<typeof RecordCipher>[0]; read: { keys: ConstructorParameters<typeof RecordCipher>[1] } };
  const opener = new RecordCipher(cp.suite, cp.read.keys);
  const parts: Uint8Array[] = [];
  for (const r of first.send.slice(1)) if (r[0] === ContentType.application_data) parts.push(opener.open(r.subarray(0, 5), r.subarray(5)).content);
  const plain = concat(...parts);
  const msgs: Uint8Array[] = [];
  for (let i = 0; i < plain.length; ) {
    const len = (plain[i + 1]! << 16) | (plain[i + 2]! << 8) | plain[i + 3]!;
    msgs.push(plain.slice(i, i + 4 + len));
    i += 4 + len;
  }
  const sealer = new RecordCipher(cp.suite, cp.read.keys);
  const feed = (...m: Uint8Array[]): Out => client.receive(sealer.seal(ContentType.handshake, concat(...m))) as Out;
  const [ee, certMsg, cv, fin] = msgs as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  return { server, first, feed, sealer, ee, certMsg, cv, fin };
}

function refused(out: Out, alert: string) {
  assert.equal(out.alert, alert);
  assert.ok(out.closed);
  assert.ok(out.error instanceof EchgateError);
  assert.doesNotMatch(out.error.message, /^internal error/);
  assert.equal(out.established, undefined);
}

const client = (o: Partial<ClientOptions> = {}) => new TlsClient({ provider: nodeProvider, serverName: NAME, ...o });

describe('RFC 8446 §4.2.3, §4.4.3: the client verifies RSA-PSS (rsae) CertificateVerify signatures', () => {
  it('an RSA server signs with rsa_pss_rsae_sha256 and the client connects', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    assert.deepEqual([f.cv[4], f.cv[5]], [0x08, 0x04]);
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin);
    assert.equal(out.error, undefined);
    assert.ok(out.established);
  });

  for (const [scheme, hash] of [
    [SigScheme.rsa_pss_rsae_sha256, 'sha256'],
    [SigScheme.rsa_pss_rsae_sha384, 'sha384'],
    [SigScheme.rsa_pss_rsae_sha512, 'sha512'],
  ] as const) {
    it(`0x${scheme.toString(16)}: a PSS signature with ${hash} verifies; PKCS#1 v1.5 padding, or another scheme's hash, is decrypt_error`, () => {
      const cv = (pss: boolean, h: string) => {
        const c = client();
        const f = flight(RSA_CERT, c);
        assert.equal(f.feed(f.ee, f.certMsg).error, undefined);
        const content = certificateVerifyContent((inside(c) as unknown as { transcript: { hash(): Uint8Array } }).transcript.hash(), true);
        const key = pss ? { key: RSA.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } : RSA.key;
        const sig = sign(h, content, key);
        const body = concat(Uint8Array.of(scheme >> 8, scheme & 0xff, sig.length >> 8, sig.length & 0xff), sig);
        return f.feed(encodeHandshake(HandshakeType.certificate_verify, body));
      };
      const good = cv(true, hash);
      assert.equal(good.error, undefined);
      assert.equal(good.alert, undefined);
      refused(cv(false, hash), 'decrypt_error');
      refused(cv(true, hash === 'sha256' ? 'sha384' : 'sha256'), 'decrypt_error');
    });
  }
});

describe('draft-ietf-tls-esni-02 §5.1: the client requires the server to echo its ESNI nonce', () => {
  const now = 1_700_000_100;
  const record = makeESNIKeys(nodeProvider, nodeProvider.x25519Generate().publicKey, { notBefore: now - 100, notAfter: now + 100 });
  const esniClient = () => {
    const offer = esniOffer(nodeProvider, record, { now });
    return { c: client({ esni: offer }), offer };
  };
  const echo = (data: Uint8Array) => [{ type: ExtensionType.encrypted_server_name, data }];
  const { certFor } = { certFor: () => RSA_CERT };

  it('the nonce echoed: connected, and the result says ESNI was accepted', () => {
    const { c, offer } = esniClient();
    const f = flight(certFor(), c, echo(offer.nonce));
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin) as Out & { established?: { esni?: string } };
    assert.equal(out.error, undefined);
    assert.equal(out.established?.esni, 'accepted');
  });

  it('the echo after another EncryptedExtensions entry (ALPN first) is found', () => {
    const offer = esniOffer(nodeProvider, record, { now });
    const c = client({ esni: offer, alpn: ['h2'] });
    const ch = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
    const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), certificate: () => RSA_CERT, alpn: ['h2'], extraEncryptedExtensions: echo(offer.nonce) });
    const out = c.receive(concat(...server.start(ch, NAME, { offered: false, accepted: false }).send)) as Out & { established?: { esni?: string; alpn?: string } };
    assert.equal(out.error, undefined);
    assert.equal(out.established?.alpn, 'h2');
    assert.equal(out.established?.esni, 'accepted');
  });
  it('no encrypted_server_name in EncryptedExtensions: illegal_parameter', () => {
    const { c } = esniClient();
    const f = flight(certFor(), c);
    refused(f.feed(f.ee), 'illegal_parameter');
  });

  it('another nonce (last byte changed), or the nonce cut by one byte: illegal_parameter', () => {
    for (const edit of [(n: Uint8Array) => Uint8Array.from(n, (b, i) => (i === n.length - 1 ? b ^ 1 : b)), (n: Uint8Array) => n.slice(0, n.length - 1)]) {
      const { c, offer } = esniClient();
      const f = flight(certFor(), c, echo(edit(offer.nonce)));
      refused(f.feed(f.ee), 'illegal_parameter');
    }
  });

  it('without an ESNI offer, an echo in EncryptedExtensions is not read and the result has no esni', () => {
    const c = client();
    const f = flight(certFor(), c, echo(new Uint8Array(16)));
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin) as Out & { established?: { esni?: string } };
    assert.equal(out.error, undefined);
    assert.equal(out.established?.esni, undefined);
  });
});

describe('RFC 8446 §6.1: the client closes its write side with close_notify', () => {
  it('before the handshake: unexpected_message; once connected: a close_notify the server reads, and no more data may be sent', () => {
    const c = client();
    assert.throws(
      () => c.encrypt(Uint8Array.of(1)),
      (e: unknown) => e instanceof EchgateError && e.alert === 'unexpected_message',
    );
    assert.throws(
      () => c.close(),
      (e: unknown) => e instanceof EchgateError && e.alert === 'unexpected_message',
    );
    const f = flight(RSA_CERT, c);
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin);
    assert.ok(out.established);
    assert.ok(f.server.receive(out.send[0]!).established);
    const closing = f.server.receive(c.close());
    assert.equal(closing.alert, undefined);
    assert.equal(closing.peerAlert, undefined);
    assert.ok(closing.closed);
    assert.throws(
      () => c.encrypt(Uint8Array.of(1)),
      (e: unknown) => e instanceof EchgateError && e.alert === 'unexpected_message',
    );
  });
});

describe('RFC 8446 §5, §6: the client\'s alert is protected once it has handshake keys, plaintext before', () => {
  it('a forged CertificateVerify: the decrypt_error alert goes in a protected record the server opens and reads', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    const cv = f.cv.slice();
    cv[cv.length - 3]! ^= 1;
    const out = f.feed(f.ee, f.certMsg, cv);
    refused(out, 'decrypt_error');
    const last = out.send[out.send.length - 1]!;
    // §5.2: a protected record's outer type is application_data.
    assert.equal(last[0], ContentType.application_data);
    assert.equal(f.server.receive(last).peerAlert, 51);
  });
  it('a ServerHello that does not decode: the decode_error alert is a plaintext alert record', () => {
    const c = client();
    c.hello();
    const out = c.receive(Uint8Array.of(ContentType.handshake, 3, 3, 0, 5, HandshakeType.server_hello, 0, 0, 1, 0)) as Out;
    assert.equal(out.alert, 'decode_error');
    assert.deepEqual(out.send[out.send.length - 1], Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 2, 50));
  });
});

describe('RFC 8446 §5: records the client refuses by handshake state', () => {
  it('protected application data before the server Finished: unexpected_message', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    const cp = inside(c) as unknown as { suite: ConstructorParameters<typeof RecordCipher>[0]; read: { keys: ConstructorParameters<typeof RecordCipher>[1] } };
    const sealer = new RecordCipher(cp.suite, cp.read.keys);
    const out = c.receive(sealer.seal(ContentType.application_data, Uint8Array.of(1, 2, 3))) as Out & { data: Uint8Array[] };
    refused(out, 'unexpected_message');
    assert.equal(out.data.length, 0);
    assert.ok(f.first.send.length > 0);
  });
  it('§6: once connected, a plaintext alert record is unexpected_message, not the server\'s alert', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    assert.ok(f.feed(f.ee, f.certMsg, f.cv, f.fin).established);
    const out = c.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 2, 40)) as Out & { peerAlert?: number };
    assert.equal(out.peerAlert, undefined);
    refused(out, 'unexpected_message');
  });
});

describe('RFC 8446 §5.4, §6: an empty alert is unexpected_message, a short or long one decode_error', () => {
  const afterServerHello = () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    const cp = inside(c) as unknown as { suite: ConstructorParameters<typeof RecordCipher>[0]; read: { keys: ConstructorParameters<typeof RecordCipher>[1] } };
    return { c, f, sealer: new RecordCipher(cp.suite, cp.read.keys) };
  };
  it('a protected alert of 0 bytes: unexpected_message; of 1 or 3 bytes: decode_error', () => {
    const a = afterServerHello();
    refused(a.c.receive(a.sealer.seal(ContentType.alert, new Uint8Array(0))) as Out, 'unexpected_message');
    for (const body of [Uint8Array.of(2), Uint8Array.of(2, 40, 0)]) {
      const b = afterServerHello();
      refused(b.c.receive(b.sealer.seal(ContentType.alert, body)) as Out, 'decode_error');
    }
  });
  it('a plaintext alert record of 0 bytes before ServerHello: unexpected_message', () => {
    const c = client();
    c.hello();
    refused(c.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 0)) as Out, 'unexpected_message');
  });
});

describe('RFC 8446 §5.1: application data is cut into records of at most 2^14 bytes', () => {
  it('0 bytes: no record; 2^14: one; 2^14 + 1: two', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    assert.ok(f.feed(f.ee, f.certMsg, f.cv, f.fin).established);
    assert.equal(c.encrypt(new Uint8Array(0)).length, 0);
    assert.equal(c.encrypt(new Uint8Array(1 << 14)).length, 1);
    assert.equal(c.encrypt(new Uint8Array((1 << 14) + 1)).length, 2);
  });
});

describe('RFC 9849 §6.1.7: with ECH rejected, the client authenticates the server as the public name', () => {
  const sk = nodeProvider.x25519Generate();
  const raw = encodeECHConfigList([
    encodeECHConfig({ configId: 3, kemId: 0x20, publicKey: sk.publicKey, cipherSuites: [{ kdfId: 1, aeadId: 1 }], maximumNameLength: 32, publicName: 'public.example.test', extensions: [] }),
  ]);
  const config = usableConfigs(decodeECHConfigList(raw), isSupportedSuite)[0]!;
  /** A CA and a leaf it signed for `names`; an ECH client for secret.example.test against a server that cannot decrypt. */
  const rejected = (names: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-ca-'));
    const ca = caAndLeaf(dir, names);
    const leaf = loadCertificate(readFileSync(join(dir, 'server.pem'), 'utf8'), readFileSync(join(dir, 'server.key'), 'utf8'));
    const c = new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', ca, ech: echOffer(config) });
    const ch = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
    const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), certificate: () => leaf, retryConfigs: raw });
    const first = server.start(ch, 'public.example.test', { offered: true, accepted: false });
    return c.receive(concat(...first.send)) as Out & { established?: { ech?: string; certificateVerified?: boolean; certificate?: { names: string[] } } };
  };
  it('a certificate for the public name (and another name): verified, ECH rejected, its names listed', () => {
    const out = rejected(['public.example.test', 'www.public.example.test']);
    assert.equal(out.error, undefined);
    assert.equal(out.established?.ech, 'rejected');
    assert.equal(out.established?.certificateVerified, true);
    assert.deepEqual(out.established?.certificate?.names, ['public.example.test', 'www.public.example.test']);
  });
  it('a certificate for the inner name only: certificate_unknown (the public name is what the server must prove)', () => {
    refused(rejected(['secret.example.test']), 'certificate_unknown');
  });
  /** The same client against a server that holds the ECH key and answers the inner hello (as the gateway wires them). */
  const accepted = (names: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-ca-'));
    const ca = caAndLeaf(dir, names);
    const leaf = loadCertificate(readFileSync(join(dir, 'server.pem'), 'utf8'), readFileSync(join(dir, 'server.key'), 'utf8'));
    const c = new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', ca, ech: echOffer(config) });
    const key = prepareServerKey(nodeProvider, config, sk);
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message), { byConfigId: () => [key], all: () => [key] });
    if (r.status !== 'accepted') throw new Error(`ECH not accepted: ${r.status}`);
    const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), certificate: () => leaf });
    const first = server.start(r.inner, 'secret.example.test', { offered: true, accepted: true, decryptSecond: (o) => decryptSecondHello(r, o) });
    return c.receive(concat(...first.send)) as Out & { established?: { ech?: string; certificateVerified?: boolean } };
  };
  it('ECH accepted: a certificate for the inner name only is verified (RFC 9849 §6.1.7 applies to a rejection only)', () => {
    const out = accepted(['secret.example.test']);
    assert.equal(out.error, undefined, String(out.error));
    assert.equal(out.established?.ech, 'accepted');
    assert.equal(out.established?.certificateVerified, true);
  });
  it('ECH accepted: a certificate for the public name only is certificate_unknown', () => {
    refused(accepted(['public.example.test']), 'certificate_unknown');
  });
});

describe('RFC 8446 §4.2.3: ECDSA P-384 and Ed25519 server certificates verify', () => {
  for (const [name, args, scheme] of [
    ['ecdsa_secp384r1_sha384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], 0x0503],
    ['ed25519', ['-newkey', 'ed25519'], 0x0807],
  ] as const) {
    it(`${name}: the server signs with 0x${scheme.toString(16)} and the client connects`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'echgate-cert-'));
      execFileSync('openssl', ['req', '-x509', ...args, '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`], { stdio: 'ignore' });
      const cert = loadCertificate(readFileSync(join(dir, 'c.pem'), 'utf8'), readFileSync(join(dir, 'k.pem'), 'utf8'));
      const c = client();
      const f = flight(cert, c);
      assert.equal((f.cv[4]! << 8) | f.cv[5]!, scheme);
      const out = f.feed(f.ee, f.certMsg, f.cv, f.fin);
      assert.equal(out.error, undefined);
      assert.ok(out.established);
    });
  }
});

describe('the server certificate\'s names the client reports are its DNS subjectAltNames only', () => {
  it('a leaf with DNS, IP and email entries: names holds the DNS ones, without their "DNS:" prefix', () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-san-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=IP:127.0.0.1,DNS:${NAME},email:ops@example.test,DNS:b.example.test`], { stdio: 'ignore' });
    const cert = loadCertificate(readFileSync(join(dir, 'c.pem'), 'utf8'), readFileSync(join(dir, 'k.pem'), 'utf8'));
    const c = client();
    const f = flight(cert, c);
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin) as Out & { established?: { certificate?: { names: string[] } } };
    assert.equal(out.error, undefined);
    assert.deepEqual(out.established?.certificate?.names, [NAME, 'b.example.test']);
  });
});

describe('RFC 8446 §4.1.4, §4.2.2, §4.2.8: the client follows a HelloRetryRequest made by hand', () => {
  const hrrRecord = (c: TlsClient, extensions: { type: number; data: Uint8Array }[]) => {
    const ch = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
    const msg = encodeServerHello({ random: HRR_RANDOM, sessionIdEcho: ch.sessionId, cipherSuite: 0x1301, extensions });
    return concat(Uint8Array.of(ContentType.handshake, 3, 3, msg.length >> 8, msg.length & 0xff), msg);
  };
  const sv13 = { type: ExtensionType.supported_versions, data: Uint8Array.of(3, 4) };
  const secondHello = (out: Out) => {
    assert.equal(out.error, undefined, String(out.error));
    return decodeClientHelloMessage(parseHelloRecords(concat(...out.send))!.message);
  };
  const ext = (ch: ReturnType<typeof decodeClientHelloMessage>, type: number) => ch.extensions.find((e) => e.type === type)?.data;

  it('§4.2.2: a cookie-only HelloRetryRequest (supported_versions first): the cookie is copied byte for byte, a new share for the same group', () => {
    const c = client();
    const cookie = Uint8Array.of(0, 5, 1, 2, 3, 4, 5);
    const ch2 = secondHello(c.receive(hrrRecord(c, [sv13, { type: ExtensionType.cookie, data: cookie }])) as Out);
    assert.deepEqual(ext(ch2, ExtensionType.cookie), cookie);
    const ks = ext(ch2, ExtensionType.key_share)!;
    assert.equal((ks[2]! << 8) | ks[3]!, 0x001d);
  });

  it('§4.2.8: selected_group X25519MLKEM768 (0x11ec, a group with a high byte): the second hello carries a share for it', () => {
    const c = client({ groups: [0x001d, 0x11ec] });
    const ch2 = secondHello(c.receive(hrrRecord(c, [sv13, { type: ExtensionType.key_share, data: Uint8Array.of(0x11, 0xec) }])) as Out);
    const ks = ext(ch2, ExtensionType.key_share)!;
    assert.equal((ks[2]! << 8) | ks[3]!, 0x11ec);
    assert.equal((ks[4]! << 8) | ks[5]!, 1184 + 32);
  });

  it('§4.1.4: encrypted_client_hello in a HelloRetryRequest when no ECH was offered is unsupported_extension', () => {
    const c = client();
    const confirmation = { type: ExtensionType.encrypted_client_hello, data: new Uint8Array(8) };
    refused(c.receive(hrrRecord(c, [sv13, { type: ExtensionType.cookie, data: Uint8Array.of(0, 1, 7) }, confirmation])) as Out, 'unsupported_extension');
  });

  it('§4.2.8, §6.2: a HelloRetryRequest key_share that is not exactly one NamedGroup (1 or 3 bytes) is decode_error', () => {
    for (const data of [Uint8Array.of(0x00), Uint8Array.of(0x00, 0x17, 0x00)]) {
      const c = client({ groups: [0x001d, 0x0017] });
      refused(c.receive(hrrRecord(c, [sv13, { type: ExtensionType.key_share, data }])) as Out, 'decode_error');
    }
  });
});

describe('RFC 8446 §5.1: the server Finished must end its record, also when what follows is only a fragment', () => {
  it('Finished, then the first two bytes of another handshake message in the same record: unexpected_message', () => {
    const c = client();
    const f = flight(loadCertificate(RSA.cert, RSA.key), c);
    refused(f.feed(f.ee, f.certMsg, f.cv, f.fin, Uint8Array.of(HandshakeType.new_session_ticket, 0)), 'unexpected_message');
  });
});

describe('RFC 9849 §6.1.6: only an encrypted_client_hello extension in EncryptedExtensions is read as retry_configs', () => {
  it('without ECH, an ALPN answer in EncryptedExtensions is the ALPN, and no retry_configs are reported', () => {
    const c = client({ alpn: ['h2'] });
    const alpn = Uint8Array.of(0, 3, 2, 0x68, 0x32);
    const f = flight(RSA_CERT, c, [{ type: ExtensionType.application_layer_protocol_negotiation, data: alpn }]);
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin);
    assert.equal(out.error, undefined);
    const est = out.established as { alpn?: string; retryConfigs?: Uint8Array };
    assert.equal(est.alpn, 'h2');
    assert.equal(est.retryConfigs, undefined);
  });
});

describe('RFC 8446 §4.2: an answer to an extension the client did not send is unsupported_extension', () => {
  it('encrypted_client_hello (retry_configs) in EncryptedExtensions when no ECH was offered', () => {
    const c = client();
    const f = flight(RSA_CERT, c, [{ type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(0, 0) }]);
    refused(f.feed(f.ee, f.certMsg, f.cv, f.fin), 'unsupported_extension');
  });
  it('ALPN in EncryptedExtensions when no ALPN was offered', () => {
    const c = client();
    const f = flight(RSA_CERT, c, [{ type: ExtensionType.application_layer_protocol_negotiation, data: Uint8Array.of(0, 3, 2, 0x68, 0x32) }]);
    refused(f.feed(f.ee, f.certMsg, f.cv, f.fin), 'unsupported_extension');
  });
});

describe('RFC 8446 §4.2.7, §4.2.8: the client offers only groups it implements', () => {
  const usage = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      assert.ok(e instanceof EchgateError, String(e));
      return e.code;
    }
    return 'accepted';
  };

  it('an empty group list or an unimplemented group (secp384r1, 0x0018) is ERR_USAGE; the first listed group gets the share', () => {
    assert.equal(usage(() => client({ groups: [] })), 'ERR_USAGE');
    assert.equal(usage(() => client({ groups: [0x001d, 0x0018] })), 'ERR_USAGE');
    const ch = decodeClientHelloMessage(parseHelloRecords(client({ groups: [0x0017, 0x001d] }).hello()[0]!)!.message);
    const ks = ch.extensions.find((e) => e.type === ExtensionType.key_share)!.data;
    assert.equal((ks[2]! << 8) | ks[3]!, 0x0017);
  });
});

// Sixth session (docs/mutation.md): client.ts lines 1-300 and 420-461 under Stryker.

describe('RFC 8446 §4.1.4: after a HelloRetryRequest, the ServerHello must repeat its cipher suite', () => {
  const record = (msg: Uint8Array) => concat(Uint8Array.of(ContentType.handshake, 3, 3, msg.length >> 8, msg.length & 0xff), msg);
  const sv13 = { type: ExtensionType.supported_versions, data: Uint8Array.of(3, 4) };
  const afterHrr = (shSuite: number) => {
    const c = client();
    const ch = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
    const hrr = encodeServerHello({ random: HRR_RANDOM, sessionIdEcho: ch.sessionId, cipherSuite: 0x1301, extensions: [sv13, { type: ExtensionType.cookie, data: Uint8Array.of(0, 1, 7) }] });
    assert.equal((c.receive(record(hrr)) as Out).error, undefined);
    const pub = nodeProvider.x25519Generate().publicKey;
    const share = concat(Uint8Array.of(0x00, 0x1d, 0, pub.length), pub);
    const sh = encodeServerHello({ random: nodeProvider.randomBytes(32), sessionIdEcho: ch.sessionId, cipherSuite: shSuite, extensions: [sv13, { type: ExtensionType.key_share, data: share }] });
    return c.receive(record(sh)) as Out;
  };

  it('TLS_AES_128_GCM_SHA256 in both: the ServerHello is taken; TLS_AES_256_GCM_SHA384 (offered, but not the HRR\'s): illegal_parameter', () => {
    const same = afterHrr(0x1301);
    assert.equal(same.error, undefined, String(same.error));
    assert.equal(same.closed, false);
    refused(afterHrr(0x1302), 'illegal_parameter');
  });
});

describe('RFC 8446 §4.1.4: the result says whether the server sent a HelloRetryRequest', () => {
  it('a handshake without HelloRetryRequest: helloRetry false', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin) as Out & { established?: { helloRetry?: boolean } };
    assert.equal(out.error, undefined);
    assert.equal(out.established?.helloRetry, false);
  });
});

describe('RFC 8446 §4.2.10, §4.1.2: early_data is offered in the first ClientHello only', () => {
  it('offerEarlyData: an empty early_data extension in the first hello, none in the hello after HelloRetryRequest', () => {
    const c = client({ offerEarlyData: true });
    const ch = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
    assert.deepEqual(ch.extensions.find((e) => e.type === ExtensionType.early_data)?.data, new Uint8Array(0));
    const hrr = encodeServerHello({
      random: HRR_RANDOM,
      sessionIdEcho: ch.sessionId,
      cipherSuite: 0x1301,
      extensions: [
        { type: ExtensionType.supported_versions, data: Uint8Array.of(3, 4) },
        { type: ExtensionType.cookie, data: Uint8Array.of(0, 1, 7) },
      ],
    });
    const out = c.receive(concat(Uint8Array.of(ContentType.handshake, 3, 3, hrr.length >> 8, hrr.length & 0xff), hrr)) as Out;
    assert.equal(out.error, undefined, String(out.error));
    const ch2 = decodeClientHelloMessage(parseHelloRecords(concat(...out.send))!.message);
    assert.ok(ch2.extensions.some((e) => e.type === ExtensionType.cookie));
    assert.equal(ch2.extensions.find((e) => e.type === ExtensionType.early_data), undefined);
    const plain = decodeClientHelloMessage(parseHelloRecords(client().hello()[0]!)!.message);
    assert.equal(plain.extensions.find((e) => e.type === ExtensionType.early_data), undefined);
  });
});

describe('draft-ietf-tls-esni-02 §5.1: the client\'s encrypted_server_name is bound to its key_share extension', () => {
  const now = 1_700_000_100;
  const record = makeESNIKeys(nodeProvider, nodeProvider.x25519Generate().publicKey, { notBefore: now - 100, notAfter: now + 100 });
  /** An ESNI offer that records what the client binds the extension to. */
  const watched = (coverName?: string) => {
    const offer = esniOffer(nodeProvider, record, { now, coverName });
    const seen: { host: string; random: Uint8Array; ks: Uint8Array }[] = [];
    return {
      seen,
      offer: {
        ...offer,
        extension: (host: string, random: Uint8Array, ks: Uint8Array) => {
          seen.push({ host, random, ks });
          return offer.extension(host, random, ks);
        },
      },
    };
  };

  it('the hello carries encrypted_server_name, sealed over this hello\'s random and key_share body; only the cover name is in server_name', () => {
    const w = watched('cover.example.test');
    const c = client({ esni: w.offer, groups: [0x0017, 0x001d] });
    const ch = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
    assert.ok(ch.extensions.find((e) => e.type === ExtensionType.encrypted_server_name));
    assert.equal(w.seen.length, 1);
    assert.equal(w.seen[0]!.host, NAME);
    assert.deepEqual(w.seen[0]!.random, ch.random);
    assert.deepEqual(w.seen[0]!.ks, ch.extensions.find((e) => e.type === ExtensionType.key_share)!.data);
    const sni = ch.extensions.find((e) => e.type === ExtensionType.server_name)!.data;
    assert.match(Buffer.from(sni).toString('latin1'), /cover\.example\.test$/);
    assert.doesNotMatch(Buffer.from(sni).toString('latin1'), /rsa\.example/);
  });

  it('withholdKeyShare with ESNI (an empty client_shares list to bind to) is ERR_USAGE; with a share it is built', () => {
    const w = watched();
    assert.throws(
      () => client({ esni: w.offer, withholdKeyShare: true }),
      (e) => e instanceof EchgateError && e.code === 'ERR_USAGE',
    );
    assert.equal(w.seen.length, 0);
    client({ esni: w.offer });
    assert.equal(w.seen.length, 1);
  });
});

// Found by the 2026-12-03 Stryker run over client.ts 304-422 (docs/mutation.md, "Scores per folder").
describe('RFC 8446 §5.1: the server\'s handshake messages may be fragmented across protected records', () => {
  it('Certificate split over two records: connected; an alert between the two halves: unexpected_message', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    const half = f.feed(f.ee, f.certMsg.subarray(0, 10));
    assert.equal(half.error, undefined);
    assert.equal(half.established, undefined);
    assert.ok(f.feed(f.certMsg.subarray(10), f.cv, f.fin).established);
    const d = client();
    const g = flight(RSA_CERT, d);
    assert.equal(g.feed(g.ee, g.certMsg.subarray(0, 10)).error, undefined);
    const out = d.receive(g.sealer.seal(ContentType.alert, Uint8Array.of(2, 40))) as Out & { peerAlert?: number };
    assert.equal(out.peerAlert, undefined);
    refused(out, 'unexpected_message');
  });
});

describe('RFC 8446 §5: a protected record before ServerHello', () => {
  it('is unexpected_message (there are no keys to open it with), not an internal error', () => {
    const c = client();
    c.hello();
    refused(c.receive(Uint8Array.of(ContentType.application_data, 3, 3, 0, 20, ...new Uint8Array(20))) as Out, 'unexpected_message');
  });
});

describe('RFC 8446 §6.1, §6.2: once the server has closed, the client reads nothing more and sends nothing back', () => {
  /** A protected-looking record no key opens: read at all, it would be refused with an alert. */
  const junk = () => Uint8Array.of(ContentType.application_data, 3, 3, 0, 20, ...new Uint8Array(20));
  type Res = Out & { data: Uint8Array[]; peerAlert?: number };
  const quiet = (out: Res) => {
    assert.ok(out.closed);
    assert.equal(out.alert, undefined);
    assert.deepEqual(out.send, []);
    assert.deepEqual(out.data, []);
  };
  for (const [name, desc] of [
    ['close_notify', undefined],
    ['handshake_failure', 40],
  ] as const) {
    it(`${name}, then a record in the same read: closed, the record not read; a later read: closed, nothing read or sent`, () => {
      const c = client();
      const f = flight(RSA_CERT, c);
      assert.ok(f.feed(f.ee, f.certMsg, f.cv, f.fin).established);
      const out = c.receive(concat(f.server.alert(name), junk())) as Res;
      quiet(out);
      assert.equal(out.peerAlert, desc);
      // An error alert is reported as the peer's (out.error names it); close_notify is no error.
      if (desc === undefined) assert.equal(out.error, undefined);
      else assert.ok(out.error instanceof EchgateError && out.error.alert === undefined && out.error.message.includes(String(desc)));
      const later = c.receive(junk()) as Res;
      quiet(later);
      assert.equal(later.error, undefined);
      assert.equal(later.peerAlert, undefined);
    });
  }
});

describe('RFC 8446 §5: change_cipher_spec at the client', () => {
  const ccs = (...body: number[]) => Uint8Array.of(ContentType.change_cipher_spec, 3, 3, 0, body.length, ...body);
  it('the single byte 1 before the server Finished is dropped (before ServerHello and after it); the handshake goes on', () => {
    const c = client();
    c.hello();
    const early = c.receive(ccs(1)) as Out;
    assert.equal(early.error, undefined);
    assert.ok(!early.closed);
    const d = client();
    const f = flight(RSA_CERT, d);
    assert.equal(d.receive(ccs(1)).error, undefined);
    assert.ok(f.feed(f.ee, f.certMsg, f.cv, f.fin).established);
  });
  it('any other value or length, before or after ServerHello: unexpected_message', () => {
    for (const body of [[2], [0], [1, 1], []]) {
      const c = client();
      c.hello();
      refused(c.receive(ccs(...body)) as Out, 'unexpected_message');
      const d = client();
      flight(RSA_CERT, d);
      refused(d.receive(ccs(...body)) as Out, 'unexpected_message');
    }
  });
  it('once connected (after the server Finished), even the single byte 1: unexpected_message', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    assert.ok(f.feed(f.ee, f.certMsg, f.cv, f.fin).established);
    refused(c.receive(ccs(1)) as Out, 'unexpected_message');
  });
});

describe('RFC 8446 §5, §5.1: plaintext handshake records at the client', () => {
  it('a plaintext handshake record after ServerHello (the ServerHello again): unexpected_message', () => {
    const c = client();
    const f = flight(RSA_CERT, c);
    refused(c.receive(f.first.send[0]!) as Out, 'unexpected_message');
  });
  it('ServerHello and the start of another handshake message in one record: unexpected_message (it changes keys, so it must end its record)', () => {
    /** A client whose hello is sent, and the ServerHello record a TlsServer answers it with. */
    const pair = () => {
      const c = client();
      const ch = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
      const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), certificate: () => RSA_CERT });
      return { c, sh: server.start(ch, NAME, { offered: false, accepted: false }).send[0]! };
    };
    for (const extra of [Uint8Array.of(HandshakeType.encrypted_extensions, 0), Uint8Array.of(HandshakeType.encrypted_extensions, 0, 0, 0)]) {
      const { c, sh } = pair();
      const body = concat(sh.subarray(5), extra);
      refused(c.receive(concat(Uint8Array.of(ContentType.handshake, 3, 3, body.length >> 8, body.length & 0xff), body)) as Out, 'unexpected_message');
    }
    const { c, sh } = pair();
    assert.equal(c.receive(sh).error, undefined);
  });
  it('§5.1: a ServerHello fragmented over two plaintext records is read once whole', () => {
    const c = client();
    const ch = decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message);
    const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), certificate: () => RSA_CERT });
    const msg = server.start(ch, NAME, { offered: false, accepted: false }).send[0]!.subarray(5);
    const rec = (b: Uint8Array) => concat(Uint8Array.of(ContentType.handshake, 3, 3, b.length >> 8, b.length & 0xff), b);
    const first = c.receive(rec(msg.subarray(0, 30))) as Out;
    assert.equal(first.error, undefined);
    assert.ok(!first.closed);
    const second = c.receive(rec(msg.subarray(30))) as Out;
    assert.equal(second.error, undefined);
    assert.equal((inside(c) as unknown as { kind: string }).kind, 'wait_ee');
  });
});
