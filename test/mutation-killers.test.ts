/**
 * Tests written against mutants that survived StrykerJS (npm run mutation, see
 * docs/mutation.md): each one feeds the TLS 1.3 engine a single wrong thing
 * (a verify_data, a length, a limit, a record type) and checks the exact alert
 * that comes back, where the fuzz tests only check that some typed error does.
 * The client side of the handshake is driven by TlsClient; records the server
 * must refuse are sealed with a copy of the keys the server reads with.
 */
import assert from 'node:assert/strict';
import { createECDH } from 'node:crypto';
import { describe, it } from 'node:test';
import { echOffer } from '../src/ech/client.js';
import { decryptEch, decryptSecondHello } from '../src/ech/server.js';
import { concat, fromHex, toHex } from '../src/bytes/util.js';
import { hkdfExtract } from '../src/crypto/hkdf.js';
import { AEAD, baseModeHashes, deriveX25519KeyPair, isSupportedSuite, KDF, KEM_X25519_SHA256, MODE, setupReceiver, setupSender } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { EchgateError } from '../src/errors.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { type CipherSuite, type TrafficKeys, trafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { EARLY_DATA_SKIP_LIMIT, KEY_UPDATE_BURST, type Output, TlsServer } from '../src/tls13/server.js';
import { type ClientHello, decodeClientHello, decodeClientHelloMessage, encodeClientHelloMessage, findExtension } from '../src/wire/tls/client-hello.js';
import { AlertDescription, ContentType, ExtensionType, HandshakeType } from '../src/wire/tls/constants.js';
import { decodeKeyShares, encodeAlpn, encodeKeyShares, encodeSupportedVersions, encodeU16List } from '../src/wire/tls/extensions.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { decodeServerHello, encodeServerHello } from '../src/wire/tls/server-messages.js';
import { certFor, json, memoryEchKey } from './helpers.js';
import { inside } from './tls13-craft.js';

const NAME = 'mut.example.test';
const c = certFor(NAME);
const cert = loadCertificate(c.cert, c.key);

interface Peek {
  read: { keys: TrafficKeys };
  write: { keys: TrafficKeys };
  suite: CipherSuite;
}
/** The server's current handshake state (tls13/server.ts: expect_finished or traffic hold these). */
const peek = (s: TlsServer) => (s as unknown as { state: Peek }).state;

function newServer(extra: { alpn?: string[] } = {}) {
  return new TlsServer({
    provider: nodeProvider,
    random: (n) => nodeProvider.randomBytes(n),
    ephemeral: () => nodeProvider.x25519Generate(),
    certificate: (sni) => (sni === NAME ? cert : undefined),
    ...extra,
  });
}

function clientHello(alpn?: string[]): { client: TlsClient; ch: ClientHello } {
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ...(alpn ? { alpn } : {}) });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  return { client, ch };
}

/** Up to the client's Finished: the server waits for it; `fin` is the client's real Finished message. */
function toFinished() {
  const { client, ch } = clientHello();
  const server = newServer();
  const first = server.start(ch, NAME, { offered: false, accepted: false });
  assert.equal(first.alert, undefined);
  const flight: Uint8Array[] = [];
  for (const r of first.send) flight.push(...client.receive(r).send);
  const hsKeys = peek(server).read.keys;
  const suite = peek(server).suite;
  const finRec = flight.find((r) => r[0] === ContentType.application_data)!;
  const fin = new RecordCipher(suite, hsKeys).open(finRec.subarray(0, 5), finRec.subarray(5)).content;
  assert.equal(fin[0], HandshakeType.finished);
  /** A sealer in step with the server's reader (its first record is read with sequence number 0). */
  const sealer = () => new RecordCipher(suite, hsKeys);
  return { client, server, fin, flight, finRec, sealer, suite };
}

/** A completed handshake; `sealer` protects records under the client's application keys. */
function connected() {
  const t = toFinished();
  const out = t.server.receive(t.finRec);
  assert.equal(out.alert, undefined);
  assert.ok(out.established);
  const sealer = new RecordCipher(t.suite, peek(t.server).read.keys);
  return { ...t, sealer, out };
}

/** The server failed with `alert`, its record is last in `send`, and the client reads that alert. */
function refused(out: Output, alert: keyof typeof AlertDescription, client?: TlsClient) {
  assert.equal(out.alert, alert);
  assert.ok(out.closed);
  assert.ok(out.error instanceof EchgateError);
  assert.equal(out.established, undefined);
  assert.ok(out.send.length >= 1);
  if (client) {
    const back = client.receive(out.send.at(-1)!);
    assert.equal(back.peerAlert, AlertDescription[alert]);
  }
}

const hsMsg = (type: number, body: Uint8Array) => encodeHandshake(type, body);

describe('RFC 8446 §4.4.4: the server checks the client Finished', () => {
  it('the real Finished completes the handshake, and data flows both ways', () => {
    const { client, server, finRec } = toFinished();
    const out = server.receive(finRec);
    assert.equal(out.alert, undefined);
    assert.equal(out.closed, false);
    assert.ok(out.established);
    assert.equal(out.established.sni, NAME);
    assert.ok(server.established);
    const toClient = server.encrypt(Buffer.from('hello'));
    const got = client.receive(toClient[0]!);
    assert.equal(Buffer.from(got.data[0]!).toString(), 'hello');
    const toServer = client.encrypt(Buffer.from('ping'));
    const r = server.receive(toServer[0]!);
    assert.equal(Buffer.from(r.data[0]!).toString(), 'ping');
  });

  it('one wrong byte of verify_data: decrypt_error', () => {
    const { client, server, fin, sealer } = toFinished();
    const bad = fin.slice();
    bad[bad.length - 1]! ^= 1;
    refused(server.receive(sealer().seal(ContentType.handshake, bad)), 'decrypt_error', client);
    assert.equal(server.established, false);
  });

  it('first byte of verify_data wrong: decrypt_error too (the whole value is compared)', () => {
    const { server, fin, sealer } = toFinished();
    const bad = fin.slice();
    bad[4]! ^= 0x80;
    refused(server.receive(sealer().seal(ContentType.handshake, bad)), 'decrypt_error');
  });

  it('verify_data one byte short or long: decode_error', () => {
    for (const delta of [-1, 1]) {
      const { server, fin, sealer } = toFinished();
      const body = new Uint8Array(fin.length - 4 + delta);
      body.set(fin.subarray(4, 4 + Math.min(body.length, fin.length - 4)));
      refused(server.receive(sealer().seal(ContentType.handshake, hsMsg(HandshakeType.finished, body))), 'decode_error');
    }
  });

  it('another handshake message where Finished is due: unexpected_message', () => {
    const { server, fin, sealer } = toFinished();
    refused(server.receive(sealer().seal(ContentType.handshake, hsMsg(HandshakeType.certificate, fin.subarray(4)))), 'unexpected_message');
  });

  it('§5.1: handshake data after Finished in the same record: unexpected_message', () => {
    const { server, fin, sealer } = toFinished();
    const two = new Uint8Array(fin.length + 5);
    two.set(fin);
    two.set(hsMsg(HandshakeType.key_update, Uint8Array.of(0)), fin.length);
    refused(server.receive(sealer().seal(ContentType.handshake, two)), 'unexpected_message');
  });

  it('§5.1: the start of another message after Finished in its record: unexpected_message', () => {
    const { server, fin, sealer } = toFinished();
    const more = new Uint8Array(fin.length + 3);
    more.set(fin);
    more.set([HandshakeType.key_update, 0, 0], fin.length);
    refused(server.receive(sealer().seal(ContentType.handshake, more)), 'unexpected_message');
  });

  it('§5.1: Finished split over two records is reassembled and accepted', () => {
    const { server, fin, sealer } = toFinished();
    const s = sealer();
    const a = server.receive(s.seal(ContentType.handshake, fin.subarray(0, 7)));
    assert.equal(a.alert, undefined);
    assert.equal(a.established, undefined);
    const b = server.receive(s.seal(ContentType.handshake, fin.subarray(7)));
    assert.equal(b.alert, undefined);
    assert.ok(b.established);
  });

  it('§5.1: an alert record inside a fragmented Finished: unexpected_message', () => {
    const { server, fin, sealer } = toFinished();
    const s = sealer();
    server.receive(s.seal(ContentType.handshake, fin.subarray(0, 7)));
    refused(server.receive(s.seal(ContentType.alert, Uint8Array.of(2, 40))), 'unexpected_message');
  });

  it('§5.2: a record that does not deprotect: bad_record_mac', () => {
    const { server, finRec } = toFinished();
    const bad = finRec.slice();
    bad[bad.length - 1]! ^= 1;
    refused(server.receive(bad), 'bad_record_mac');
  });

  it('application data before the client Finished: unexpected_message', () => {
    const { server, sealer } = toFinished();
    refused(server.receive(sealer().seal(ContentType.application_data, Uint8Array.of(1, 2, 3))), 'unexpected_message');
  });

  it('an unknown inner content type: unexpected_message', () => {
    const { server, sealer } = toFinished();
    refused(server.receive(sealer().seal(99, Uint8Array.of(1))), 'unexpected_message');
  });
});

describe('RFC 8446 §6: alerts from the client', () => {
  it('close_notify closes without an alert back; later bytes are not read', () => {
    const { server, sealer } = connected();
    const out = server.receive(sealer.seal(ContentType.alert, Uint8Array.of(1, 0)));
    assert.ok(out.closed);
    assert.equal(out.alert, undefined);
    assert.equal(out.peerAlert, undefined);
    assert.equal(out.send.length, 0);
    const later = server.receive(sealer.seal(ContentType.application_data, Uint8Array.of(1)));
    assert.ok(later.closed);
    assert.equal(later.data.length, 0);
  });

  it('§6.2: an error alert ends the connection, is reported, and nothing is sent back', () => {
    const { server, sealer } = connected();
    const out = server.receive(sealer.seal(ContentType.alert, Uint8Array.of(2, AlertDescription.handshake_failure)));
    assert.ok(out.closed);
    assert.equal(out.peerAlert, AlertDescription.handshake_failure);
    assert.equal(out.alert, undefined);
    assert.equal(out.send.length, 0);
    assert.equal(server.established, false);
  });

  it('§6.1: user_canceled alone does not close', () => {
    const { server, sealer } = connected();
    const out = server.receive(sealer.seal(ContentType.alert, Uint8Array.of(1, AlertDescription.user_canceled)));
    assert.equal(out.closed, false);
    assert.equal(out.peerAlert, undefined);
    const data = server.receive(sealer.seal(ContentType.application_data, Uint8Array.of(7)));
    assert.deepEqual([...data.data[0]!], [7]);
  });

  it('an empty alert record: unexpected_message; one of 1 or 3 bytes: decode_error', () => {
    const e = connected();
    refused(e.server.receive(e.sealer.seal(ContentType.alert, new Uint8Array(0))), 'unexpected_message');
    for (const n of [1, 3]) {
      const { server, sealer } = connected();
      refused(server.receive(sealer.seal(ContentType.alert, new Uint8Array(n).fill(1))), 'decode_error');
    }
  });

  it('a plaintext error alert during the handshake is read (the client may have no keys)', () => {
    const { server } = toFinished();
    const out = server.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 2, AlertDescription.bad_certificate));
    assert.ok(out.closed);
    assert.equal(out.peerAlert, AlertDescription.bad_certificate);
    assert.equal(out.send.length, 0);
  });
});

describe('RFC 8446 §5 and Appendix D.4: change_cipher_spec and record types', () => {
  const ccs = (v = 1, n = 1) => Uint8Array.of(ContentType.change_cipher_spec, 3, 3, 0, n, ...new Array(n).fill(v));
  it('one CCS of value 1 before the Finished is skipped; a second is unexpected_message', () => {
    const { server } = toFinished();
    assert.equal(server.receive(ccs()).alert, undefined);
    refused(server.receive(ccs()), 'unexpected_message');
  });

  it('a CCS of value 2, or of two bytes: unexpected_message', () => {
    refused(toFinished().server.receive(ccs(2)), 'unexpected_message');
    refused(toFinished().server.receive(ccs(1, 2)), 'unexpected_message');
  });

  it('a CCS after the handshake: unexpected_message', () => {
    const { server } = connected();
    refused(server.receive(ccs()), 'unexpected_message');
  });

  it('a CCS then the Finished: connected', () => {
    const { server, finRec } = toFinished();
    server.receive(ccs());
    assert.ok(server.receive(finRec).established);
  });

  it('an unknown plaintext record type, or a plaintext handshake record after ServerHello: unexpected_message', () => {
    refused(toFinished().server.receive(Uint8Array.of(24, 3, 3, 0, 1, 0)), 'unexpected_message');
    refused(toFinished().server.receive(Uint8Array.of(ContentType.handshake, 3, 3, 0, 4, 20, 0, 0, 0)), 'unexpected_message');
  });

  it('§5.1: a plaintext record over 2^14 bytes: record_overflow', () => {
    const { server } = toFinished();
    const len = 2 ** 14 + 1;
    const r = new Uint8Array(5 + len);
    r.set([ContentType.alert, 3, 3, len >> 8, len & 0xff]);
    refused(server.receive(r), 'record_overflow');
  });
});

describe('RFC 8446 §4.6.3: KeyUpdate from the client', () => {
  const ku = (b: number[]) => hsMsg(HandshakeType.key_update, Uint8Array.from(b));

  it('update_not_requested: the server reads under the next key and sends nothing', () => {
    const { server, suite, sealer } = connected();
    const out = server.receive(sealer.seal(ContentType.handshake, ku([0])));
    assert.equal(out.alert, undefined);
    assert.equal(out.send.length, 0);
    const next = new RecordCipher(suite, peek(server).read.keys);
    const d = server.receive(next.seal(ContentType.application_data, Uint8Array.of(5)));
    assert.deepEqual([...d.data[0]!], [5]);
    // The old key no longer opens.
    refused(server.receive(sealer.seal(ContentType.application_data, Uint8Array.of(5))), 'bad_record_mac');
  });

  it('update_requested: the server answers with its own KeyUpdate, and the client follows it', () => {
    const { client, server, sealer } = connected();
    const out = server.receive(sealer.seal(ContentType.handshake, ku([1])));
    assert.equal(out.alert, undefined);
    assert.equal(out.send.length, 1);
    // The client reads the server's KeyUpdate(update_not_requested) and then data under the new key.
    const a = client.receive(out.send[0]!);
    assert.equal(a.error, undefined);
    assert.equal(a.send.length, 0);
    const b = client.receive(server.encrypt(Buffer.from('after'))[0]!);
    assert.equal(Buffer.from(b.data[0]!).toString(), 'after');
  });

  it('a KeyUpdate of 0 or 2 bytes: decode_error; request_update 2: illegal_parameter', () => {
    const w = connected();
    refused(w.server.receive(w.sealer.seal(ContentType.handshake, ku([]))), 'decode_error');
    const x = connected();
    refused(x.server.receive(x.sealer.seal(ContentType.handshake, ku([0, 0]))), 'decode_error');
    const y = connected();
    refused(y.server.receive(y.sealer.seal(ContentType.handshake, ku([2]))), 'illegal_parameter');
  });

  it('§5.1: a KeyUpdate that does not end its record: unexpected_message', () => {
    const { server, sealer } = connected();
    const two = new Uint8Array(10);
    two.set(ku([0]));
    two.set(ku([0]), 5);
    refused(server.receive(sealer.seal(ContentType.handshake, two)), 'unexpected_message');
  });

  it('§5.1: a KeyUpdate followed by the start of another message in its record: unexpected_message', () => {
    const { server, sealer } = connected();
    const more = new Uint8Array(8);
    more.set(ku([0]));
    more.set([HandshakeType.key_update, 0, 0], 5);
    refused(server.receive(sealer.seal(ContentType.handshake, more)), 'unexpected_message');
  });

  it(`at most ${KEY_UPDATE_BURST} KeyUpdates in a row without application data; data earns one more`, () => {
    const { server, suite, sealer } = connected();
    let s = sealer;
    for (let i = 0; i < KEY_UPDATE_BURST; i++) {
      const out = server.receive(s.seal(ContentType.handshake, ku([0])));
      assert.equal(out.alert, undefined, `KeyUpdate ${i + 1}`);
      s = new RecordCipher(suite, peek(server).read.keys);
    }
    // Empty application data earns nothing (§5.4 padding-only records are cover traffic).
    assert.equal(server.receive(s.seal(ContentType.application_data, new Uint8Array(0))).alert, undefined);
    // One byte of data earns one more KeyUpdate, and only one.
    assert.equal(server.receive(s.seal(ContentType.application_data, Uint8Array.of(1))).alert, undefined);
    assert.equal(server.receive(s.seal(ContentType.handshake, ku([0]))).alert, undefined);
    s = new RecordCipher(suite, peek(server).read.keys);
    refused(server.receive(s.seal(ContentType.handshake, ku([0]))), 'unexpected_message');
  });

  it('the allowance does not grow past the burst however much data comes first', () => {
    const { server, suite, sealer } = connected();
    for (let i = 0; i < 3; i++) server.receive(sealer.seal(ContentType.application_data, Uint8Array.of(1)));
    let s = sealer;
    for (let i = 0; i < KEY_UPDATE_BURST; i++) {
      assert.equal(server.receive(s.seal(ContentType.handshake, ku([0]))).alert, undefined);
      s = new RecordCipher(suite, peek(server).read.keys);
    }
    refused(server.receive(s.seal(ContentType.handshake, ku([0]))), 'unexpected_message');
  });

  it('another post-handshake message (NewSessionTicket from a client): unexpected_message', () => {
    const { server, sealer } = connected();
    refused(server.receive(sealer.seal(ContentType.handshake, hsMsg(HandshakeType.new_session_ticket, Uint8Array.of(0)))), 'unexpected_message');
  });
});

describe('RFC 8446 §4.1.2, §4.2: ClientHello checks in the server', () => {
  const start = (edit: (ch: ClientHello) => ClientHello, o: { alpn?: string[]; sni?: string } = {}) => {
    const { ch } = clientHello(['h2']);
    const server = newServer(o.alpn ? { alpn: o.alpn } : {});
    return server.start(edit(ch), o.sni ?? NAME, { offered: false, accepted: false });
  };
  const without = (ch: ClientHello, type: number) => ({ ...ch, extensions: ch.extensions.filter((e) => e.type !== type) });
  const replace = (ch: ClientHello, type: number, data: Uint8Array) => ({ ...ch, extensions: ch.extensions.map((e) => (e.type === type ? { type, data } : e)) });

  it('the unedited hello gets a ServerHello flight', () => {
    const out = start((ch) => ch);
    assert.equal(out.alert, undefined);
    assert.ok(out.send.length >= 2);
  });

  it('Appendix D.5: legacy_version 0x0300: protocol_version (0x0301 is accepted)', () => {
    const out = start((ch) => ({ ...ch, legacyVersion: 0x0300 }));
    assert.equal(out.alert, 'protocol_version');
    assert.equal(out.send.at(-1)![0], ContentType.alert);
    assert.equal(start((ch) => ({ ...ch, legacyVersion: 0x0301 })).alert, undefined);
  });

  it('§4.2.1: no TLS 1.3 in supported_versions, or no supported_versions: protocol_version', () => {
    assert.equal(start((ch) => replace(ch, ExtensionType.supported_versions, encodeSupportedVersions([0x0303]))).alert, 'protocol_version');
    assert.equal(start((ch) => without(ch, ExtensionType.supported_versions)).alert, 'protocol_version');
    // TLS 1.2 beside 1.3 is fine outside ECH.
    assert.equal(start((ch) => replace(ch, ExtensionType.supported_versions, encodeSupportedVersions([0x0303, 0x0304]))).alert, undefined);
  });

  it('§4.1.2: compression other than exactly [null]: illegal_parameter', () => {
    assert.equal(start((ch) => ({ ...ch, compressionMethods: Uint8Array.of(0, 1) })).alert, 'illegal_parameter');
    assert.equal(start((ch) => ({ ...ch, compressionMethods: Uint8Array.of(1) })).alert, 'illegal_parameter');
    assert.equal(start((ch) => ({ ...ch, compressionMethods: Uint8Array.of() })).alert, 'illegal_parameter');
  });

  it('no cipher suite in common: handshake_failure', () => {
    assert.equal(start((ch) => ({ ...ch, cipherSuites: [0x00ff, 0xc02f] })).alert, 'handshake_failure');
  });

  it('§9.2: no key_share, no supported_groups, or no signature_algorithms: missing_extension', () => {
    assert.equal(start((ch) => without(ch, ExtensionType.key_share)).alert, 'missing_extension');
    assert.equal(start((ch) => without(ch, ExtensionType.supported_groups)).alert, 'missing_extension');
    assert.equal(start((ch) => without(ch, ExtensionType.signature_algorithms)).alert, 'missing_extension');
  });

  it('§4.2.8: a key share for a group supported_groups does not list: illegal_parameter', () => {
    assert.equal(start((ch) => replace(ch, ExtensionType.supported_groups, encodeU16List([0x0017]))).alert, 'illegal_parameter');
  });

  it('no certificate for the name: unrecognized_name', () => {
    assert.equal(start((ch) => ch, { sni: 'other.example.test' }).alert, 'unrecognized_name');
  });

  it('§4.2.3: no signature scheme the certificate can make: handshake_failure', () => {
    assert.equal(start((ch) => replace(ch, ExtensionType.signature_algorithms, encodeU16List([0x0201]))).alert, 'handshake_failure');
  });

  it('RFC 7301 §3.2: ALPN offered with nothing in common: no_application_protocol; a common one is chosen', () => {
    assert.equal(start((ch) => ch, { alpn: ['http/1.1'] }).alert, 'no_application_protocol');
    assert.equal(start((ch) => replace(ch, ExtensionType.application_layer_protocol_negotiation, encodeAlpn(['x', 'h2'])), { alpn: ['h2'] }).alert, undefined);
  });
});

// ---- the client engine (src/tls13/client.ts) against a doctored server flight ----


/**
 * The server's first flight split into its messages: ServerHello (plaintext)
 * and the protected EncryptedExtensions, Certificate, CertificateVerify and
 * Finished, opened with a copy of the keys the client reads with.
 */
function serverFlight(o: { ca?: string; serverName?: string } = {}) {
  const client = new TlsClient({ provider: nodeProvider, serverName: o.serverName ?? NAME, ...(o.ca ? { ca: o.ca } : {}) });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const server = newServer();
  const first = server.start(ch, NAME, { offered: false, accepted: false });
  const sh = first.send[0]!;
  assert.equal(client.receive(sh).error, undefined);
  const cp = inside(client);
  const opener = new RecordCipher(cp.suite, cp.read.keys);
  let plain = new Uint8Array(0);
  for (const r of first.send.slice(1)) {
    if (r[0] !== ContentType.application_data) continue;
    const { content } = opener.open(r.subarray(0, 5), r.subarray(5));
    const next = new Uint8Array(plain.length + content.length);
    next.set(plain);
    next.set(content, plain.length);
    plain = next;
  }
  const msgs: Uint8Array[] = [];
  for (let i = 0; i < plain.length; ) {
    const len = (plain[i + 1]! << 16) | (plain[i + 2]! << 8) | plain[i + 3]!;
    msgs.push(plain.slice(i, i + 4 + len));
    i += 4 + len;
  }
  assert.deepEqual(
    msgs.map((m) => m[0]),
    [HandshakeType.encrypted_extensions, HandshakeType.certificate, HandshakeType.certificate_verify, HandshakeType.finished],
  );
  const sealer = new RecordCipher(cp.suite, cp.read.keys);
  /** Feed these handshake messages to the client in one protected record. */
  const feed = (...m: Uint8Array[]) => {
    const all = new Uint8Array(m.reduce((n, x) => n + x.length, 0));
    let at = 0;
    for (const x of m) {
      all.set(x, at);
      at += x.length;
    }
    return client.receive(sealer.seal(ContentType.handshake, all));
  };
  const [ee, certMsg, cv, fin] = msgs as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  return { client, server, first, sealer, feed, ee, certMsg, cv, fin, suite: cp.suite };
}

/** The client failed with `alert`, its alert record is last in `send`, and the server reads that alert. */
function clientRefused(out: { alert?: string; error?: unknown; closed: boolean; send: Uint8Array[]; established?: unknown }, alert: keyof typeof AlertDescription) {
  assert.equal(out.alert, alert);
  assert.ok(out.closed);
  assert.ok(out.error instanceof EchgateError);
  // Refused by the check itself, not by a TypeError further on that receive() wraps as an internal error.
  assert.doesNotMatch(out.error.message, /^internal error/);
  assert.equal(out.established, undefined);
  assert.ok(out.send.length >= 1);
}

function connectedClient() {
  const f = serverFlight();
  const out = f.feed(f.ee, f.certMsg, f.cv, f.fin);
  assert.equal(out.error, undefined);
  assert.ok(out.established);
  assert.equal(f.server.receive(out.send[0]!).alert, undefined);
  const app = new RecordCipher(f.suite, inside(f.client).read.keys);
  return { ...f, app };
}

describe('RFC 8446 §4.4.3, §4.4.4: the client checks CertificateVerify and the server Finished', () => {
  it('the untouched flight connects, and the server accepts the client Finished', () => {
    const f = serverFlight();
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin);
    assert.equal(out.error, undefined);
    assert.ok(out.established);
    assert.equal(out.send.length, 1);
    assert.ok(f.server.receive(out.send[0]!).established);
  });

  it('a flipped bit in the signature: decrypt_error', () => {
    const f = serverFlight();
    const cv = f.cv.slice();
    cv[cv.length - 3]! ^= 1;
    clientRefused(f.feed(f.ee, f.certMsg, cv, f.fin), 'decrypt_error');
  });

  it('a scheme we did not offer (rsa_pkcs1_sha256), or one that does not fit the P-256 key (secp384r1, rsa_pss_rsae_sha256, ed25519): illegal_parameter', () => {
    for (const scheme of [0x0401, 0x0503, 0x0804, 0x0807]) {
      const f = serverFlight();
      const cv = f.cv.slice();
      cv[4] = scheme >> 8;
      cv[5] = scheme & 0xff;
      clientRefused(f.feed(f.ee, f.certMsg, cv, f.fin), 'illegal_parameter');
    }
  });

  it('a leaf that does not parse: bad_certificate; an empty chain: decode_error', () => {
    const f = serverFlight();
    // Certificate: context 0, list of one entry of 3 junk bytes, no extensions.
    const junk = hsMsg(HandshakeType.certificate, Uint8Array.of(0, 0, 0, 8, 0, 0, 3, 1, 2, 3, 0, 0));
    clientRefused(f.feed(f.ee, junk, f.cv), 'bad_certificate');
    const g = serverFlight();
    clientRefused(g.feed(g.ee, hsMsg(HandshakeType.certificate, Uint8Array.of(0, 0, 0, 0))), 'decode_error');
  });

  it('messages out of order: unexpected_message at each step', () => {
    const a = serverFlight();
    clientRefused(a.feed(a.certMsg), 'unexpected_message');
    const b = serverFlight();
    clientRefused(b.feed(b.ee, b.cv), 'unexpected_message');
    const c2 = serverFlight();
    clientRefused(c2.feed(c2.ee, c2.certMsg, c2.fin), 'unexpected_message');
    const d = serverFlight();
    clientRefused(d.feed(d.ee, d.certMsg, d.cv, d.cv), 'unexpected_message');
  });

  it('one wrong byte of the server verify_data: decrypt_error; a short or long one: decode_error', () => {
    for (const at of [4, -1]) {
      const f = serverFlight();
      const fin = f.fin.slice();
      fin[at < 0 ? fin.length + at : at]! ^= 1;
      clientRefused(f.feed(f.ee, f.certMsg, f.cv, fin), 'decrypt_error');
    }
    for (const delta of [-1, 1]) {
      const f = serverFlight();
      const body = new Uint8Array(f.fin.length - 4 + delta);
      body.set(f.fin.subarray(4, 4 + Math.min(body.length, f.fin.length - 4)));
      clientRefused(f.feed(f.ee, f.certMsg, f.cv, hsMsg(HandshakeType.finished, body)), 'decode_error');
    }
  });

  it('§5.1: anything after the server Finished in its record: unexpected_message', () => {
    const f = serverFlight();
    clientRefused(f.feed(f.ee, f.certMsg, f.cv, f.fin, hsMsg(HandshakeType.new_session_ticket, Uint8Array.of(0))), 'unexpected_message');
  });

  it('§5.2: a server record that does not deprotect: bad_record_mac', () => {
    const f = serverFlight();
    const rec = f.sealer.seal(ContentType.handshake, f.ee);
    rec[rec.length - 1]! ^= 1;
    clientRefused(f.client.receive(rec), 'bad_record_mac');
  });
});

describe('RFC 8446 §4.4.2.4, RFC 6125: the client checks the chain against a given CA', () => {
  it('a self-signed leaf that is not the CA: unknown_ca; the CA itself for a name it lacks: certificate_unknown; for its name: verified', () => {
    const other = certFor('ca-other.example.test');
    const f = serverFlight({ ca: other.cert });
    clientRefused(f.feed(f.ee, f.certMsg, f.cv, f.fin), 'unknown_ca');
    // The self-signed leaf is its own CA: it verifies, and then the name decides.
    const g = serverFlight({ ca: c.cert, serverName: 'not-mut.example.test' });
    clientRefused(g.feed(g.ee, g.certMsg, g.cv, g.fin), 'certificate_unknown');
    const h = serverFlight({ ca: c.cert });
    const ok = h.feed(h.ee, h.certMsg, h.cv, h.fin);
    assert.equal(ok.error, undefined);
    assert.equal(ok.established?.certificateVerified, true);
  });

  it('without a CA the certificate is not verified, and says so', () => {
    const f = serverFlight();
    const out = f.feed(f.ee, f.certMsg, f.cv, f.fin);
    assert.equal(out.established?.certificateVerified, false);
    assert.deepEqual(out.established?.certificate.names, [NAME]);
  });
});

describe('RFC 8446 §4.6, §6: the client after the handshake', () => {
  const ku = (b: number[]) => hsMsg(HandshakeType.key_update, Uint8Array.from(b));

  it('NewSessionTicket is ignored; another post-handshake message: unexpected_message', () => {
    const a = connectedClient();
    const t = a.client.receive(a.app.seal(ContentType.handshake, hsMsg(HandshakeType.new_session_ticket, Uint8Array.of(0, 0, 0, 0))));
    assert.equal(t.error, undefined);
    assert.equal(t.closed, false);
    clientRefused(a.client.receive(a.app.seal(ContentType.handshake, hsMsg(HandshakeType.certificate_request, Uint8Array.of(0, 0, 0)))), 'unexpected_message');
  });

  it('KeyUpdate: 0 or 2 bytes decode_error, request_update 2 illegal_parameter, not ending its record unexpected_message', () => {
    for (const [body, alert] of [
      [[], 'decode_error'],
      [[0, 0], 'decode_error'],
      [[2], 'illegal_parameter'],
    ] as const) {
      const a = connectedClient();
      clientRefused(a.client.receive(a.app.seal(ContentType.handshake, ku([...body]))), alert);
    }
    const b = connectedClient();
    const two = new Uint8Array(10);
    two.set(ku([0]));
    two.set(ku([0]), 5);
    clientRefused(b.client.receive(b.app.seal(ContentType.handshake, two)), 'unexpected_message');
  });

  it('KeyUpdate(update_requested) from the server: the client answers, and both sides go on under new keys', () => {
    const a = connectedClient();
    const srv = a.server;
    const ask = srv.receive(a.client.keyUpdate(1));
    assert.equal(ask.alert, undefined);
    assert.equal(ask.send.length, 1);
    const back = a.client.receive(ask.send[0]!);
    assert.equal(back.error, undefined);
    const d = a.client.receive(srv.encrypt(Buffer.from('new keys'))[0]!);
    assert.equal(Buffer.from(d.data[0]!).toString(), 'new keys');
    // And the client's own request is answered by the client when the server asks.
    const b = connectedClient();
    const r = b.client.receive(b.app.seal(ContentType.handshake, ku([1])));
    assert.equal(r.error, undefined);
    assert.equal(r.send.length, 1);
    assert.equal(b.server.receive(r.send[0]!).alert, undefined);
    assert.equal(Buffer.from(b.server.receive(b.client.encrypt(Buffer.from('x'))[0]!).data[0]!).toString(), 'x');
  });

  it('alerts: empty unexpected_message, 3 bytes decode_error, user_canceled ignored, close_notify closes quietly, an error alert is reported', () => {
    const a = connectedClient();
    clientRefused(a.client.receive(a.app.seal(ContentType.alert, new Uint8Array(0))), 'unexpected_message');
    const b = connectedClient();
    clientRefused(b.client.receive(b.app.seal(ContentType.alert, Uint8Array.of(2, 40, 0))), 'decode_error');
    const c3 = connectedClient();
    const u = c3.client.receive(c3.app.seal(ContentType.alert, Uint8Array.of(1, AlertDescription.user_canceled)));
    assert.equal(u.closed, false);
    assert.equal(u.error, undefined);
    const cn = c3.client.receive(c3.app.seal(ContentType.alert, Uint8Array.of(1, 0)));
    assert.ok(cn.closed);
    assert.equal(cn.error, undefined);
    assert.equal(cn.peerAlert, undefined);
    assert.equal(cn.send.length, 0);
    const d = connectedClient();
    const e = d.client.receive(d.app.seal(ContentType.alert, Uint8Array.of(2, AlertDescription.internal_error)));
    assert.ok(e.closed);
    assert.equal(e.peerAlert, AlertDescription.internal_error);
    assert.ok(e.error instanceof EchgateError);
    assert.equal(e.alert, undefined);
    assert.equal(e.send.length, 0);
  });

  it('an unknown inner content type, or application data with a fragmented handshake message pending: unexpected_message', () => {
    const a = connectedClient();
    clientRefused(a.client.receive(a.app.seal(99, Uint8Array.of(1))), 'unexpected_message');
    const b = connectedClient();
    b.client.receive(b.app.seal(ContentType.handshake, ku([0]).subarray(0, 3)));
    clientRefused(b.client.receive(b.app.seal(ContentType.application_data, Uint8Array.of(1))), 'unexpected_message');
  });
});

describe('RFC 8446 §4.1.3, §5: the client checks ServerHello and plaintext records', () => {
  const withSh = (edit: (sh: ReturnType<typeof decodeServerHello>) => ReturnType<typeof decodeServerHello>) => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
    const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const first = newServer().start(ch, NAME, { offered: false, accepted: false });
    const shMsg = first.send[0]!.subarray(5);
    const sh = encodeServerHello(edit(decodeServerHello(shMsg.subarray(4))));
    const rec = new Uint8Array(5 + sh.length);
    rec.set([ContentType.handshake, 3, 3, sh.length >> 8, sh.length & 0xff]);
    rec.set(sh, 5);
    return client.receive(rec);
  };
  const ext = (sh: ReturnType<typeof decodeServerHello>, type: number, data?: Uint8Array) => ({
    ...sh,
    extensions: data ? sh.extensions.map((e) => (e.type === type ? { type, data } : e)) : sh.extensions.filter((e) => e.type !== type),
  });

  it('the unedited ServerHello is taken', () => {
    const out = withSh((sh) => sh);
    assert.equal(out.error, undefined);
    assert.equal(out.closed, false);
  });

  it('a suite we did not offer: illegal_parameter', () => {
    clientRefused(withSh((sh) => ({ ...sh, cipherSuite: 0x1304 })), 'illegal_parameter');
  });

  it('supported_versions missing, of 3 bytes, or naming TLS 1.2: illegal_parameter', () => {
    clientRefused(withSh((sh) => ext(sh, ExtensionType.supported_versions)), 'illegal_parameter');
    clientRefused(withSh((sh) => ext(sh, ExtensionType.supported_versions, Uint8Array.of(3, 4, 0))), 'illegal_parameter');
    clientRefused(withSh((sh) => ext(sh, ExtensionType.supported_versions, Uint8Array.of(3, 3))), 'illegal_parameter');
  });

  it('§4.2.8: no key_share, or a share for a group we sent none for: illegal_parameter', () => {
    clientRefused(withSh((sh) => ext(sh, ExtensionType.key_share)), 'illegal_parameter');
    clientRefused(
      withSh((sh) => {
        const ks = sh.extensions.find((e) => e.type === ExtensionType.key_share)!.data.slice();
        ks[0] = 0x00;
        ks[1] = 0x17;
        return ext(sh, ExtensionType.key_share, ks);
      }),
      'illegal_parameter',
    );
  });

  it('a protected record before ServerHello, or an unknown plaintext record type: unexpected_message', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
    client.hello();
    clientRefused(client.receive(Uint8Array.of(ContentType.application_data, 3, 3, 0, 1, 0)), 'unexpected_message');
    const k = new TlsClient({ provider: nodeProvider, serverName: NAME });
    k.hello();
    clientRefused(k.receive(Uint8Array.of(24, 3, 3, 0, 1, 0)), 'unexpected_message');
  });

  it('§5.1: a plaintext record over 2^14 bytes: record_overflow; an empty handshake record: unexpected_message', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
    client.hello();
    const len = 2 ** 14 + 1;
    const r = new Uint8Array(5 + len);
    r.set([ContentType.handshake, 3, 3, len >> 8, len & 0xff]);
    clientRefused(client.receive(r), 'record_overflow');
    const k = new TlsClient({ provider: nodeProvider, serverName: NAME });
    k.hello();
    clientRefused(k.receive(Uint8Array.of(ContentType.handshake, 3, 3, 0, 0)), 'unexpected_message');
  });

  it('a plaintext error alert before ServerHello is reported, and nothing is sent back', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
    client.hello();
    const out = client.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 2, AlertDescription.handshake_failure));
    assert.ok(out.closed);
    assert.equal(out.peerAlert, AlertDescription.handshake_failure);
    assert.equal(out.send.length, 0);
  });
});

// ---- HelloRetryRequest, rejected 0-RTT data and ECH-accepted inner versions in the server ----

const plainHandshake = (msg: Uint8Array) => {
  const r = new Uint8Array(5 + msg.length);
  r.set([ContentType.handshake, 3, 1, msg.length >> 8, msg.length & 0xff]);
  r.set(msg, 5);
  return r;
};

/** A client that withholds its key share: the server answers HelloRetryRequest; `ch2` is the client's second ClientHello message. */
function toSecondHello(edit: (ch: ClientHello) => ClientHello = (ch) => ch) {
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, withholdKeyShare: true });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const server = newServer();
  const hrr = server.start(edit(ch), NAME, { offered: false, accepted: false });
  assert.equal(hrr.alert, undefined);
  const second: Uint8Array[] = [];
  for (const r of hrr.send) second.push(...client.receive(r).send);
  const chRec = second.find((r) => r[0] === ContentType.handshake)!;
  const ch2 = chRec.subarray(5);
  return { client, server, hrr, ch2, chRec };
}

describe('RFC 8446 §4.1.4, §4.2.8: the second ClientHello after HelloRetryRequest', () => {
  it('the client follows the HelloRetryRequest and the handshake completes with X25519', () => {
    const { client, server, chRec } = toSecondHello();
    const sh = server.receive(chRec);
    assert.equal(sh.alert, undefined);
    let fin: Uint8Array[] = [];
    for (const r of sh.send) {
      const o = client.receive(r);
      assert.equal(o.error, undefined);
      if (o.established) {
        assert.equal(o.established.helloRetry, true);
        assert.equal(o.established.group, 0x001d);
      }
      fin = [...fin, ...o.send];
    }
    let done: Output | undefined;
    for (const r of fin) done = server.receive(r);
    assert.ok(done?.established);
    assert.equal(done.established.group, 0x001d);
  });

  it('the second ClientHello split over two records is reassembled', () => {
    const { server, ch2 } = toSecondHello();
    const a = server.receive(plainHandshake(ch2.subarray(0, 40)));
    assert.equal(a.alert, undefined);
    assert.equal(a.send.length, 0);
    const b = server.receive(plainHandshake(ch2.subarray(40)));
    assert.equal(b.alert, undefined);
    assert.ok(b.send.length >= 2);
  });

  it('§5.1: anything after the second ClientHello in its record, or a CCS inside it: unexpected_message', () => {
    const a = toSecondHello();
    const two = new Uint8Array(a.ch2.length + 5);
    two.set(a.ch2);
    two.set(hsMsg(HandshakeType.finished, Uint8Array.of(0)), a.ch2.length);
    refused(a.server.receive(plainHandshake(two)), 'unexpected_message');
    const b = toSecondHello();
    b.server.receive(plainHandshake(b.ch2.subarray(0, 40)));
    refused(b.server.receive(Uint8Array.of(ContentType.change_cipher_spec, 3, 3, 0, 1, 1)), 'unexpected_message');
  });

  it('§5.1: an empty handshake record: unexpected_message', () => {
    refused(toSecondHello().server.receive(Uint8Array.of(ContentType.handshake, 3, 3, 0, 0)), 'unexpected_message');
  });

  it('§4.1.4: a second share, or a share for another group than the one asked for: illegal_parameter', () => {
    const edit = (shares: (ks: { group: number; keyExchange: Uint8Array }) => { group: number; keyExchange: Uint8Array }[]) => {
      const { server, ch2 } = toSecondHello();
      const ch = decodeClientHelloMessage(ch2);
      const ks = decodeKeyShares(findExtension(ch, ExtensionType.key_share)!.data)[0]!;
      const edited: ClientHello = {
        ...ch,
        extensions: ch.extensions.map((e) => {
          if (e.type === ExtensionType.key_share) return { type: e.type, data: encodeKeyShares(shares(ks)) };
          if (e.type === ExtensionType.supported_groups) return { type: e.type, data: encodeU16List([0x001d, 0x0017]) };
          return e;
        }),
      };
      return server.receive(plainHandshake(encodeClientHelloMessage(edited)));
    };
    const p256 = { group: 0x0017, keyExchange: Uint8Array.of(4, ...new Array(64).fill(1)) };
    refused(edit((ks) => [ks, p256]), 'illegal_parameter');
    refused(edit(() => [p256]), 'illegal_parameter');
    refused(edit(() => []), 'illegal_parameter');
  });

  it('§4.2.8: no group in common for a HelloRetryRequest: handshake_failure', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, withholdKeyShare: true });
    const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const noCommon = { ...ch, extensions: ch.extensions.map((e) => (e.type === ExtensionType.supported_groups ? { type: e.type, data: encodeU16List([0x0019]) } : e)) };
    assert.equal(newServer().start(noCommon, NAME, { offered: false, accepted: false }).alert, 'handshake_failure');
  });
});

describe('RFC 8446 §4.2.10: rejected 0-RTT data is skipped, within a bound', () => {
  const withEarly = (ch: ClientHello): ClientHello => ({ ...ch, extensions: [...ch.extensions, { type: ExtensionType.early_data, data: new Uint8Array(0) }] });
  const junk = (n: number) => {
    const r = new Uint8Array(5 + n).fill(0x5a);
    r.set([ContentType.application_data, 3, 3, n >> 8, n & 0xff]);
    return r;
  };

  function offeringEarly(early: boolean) {
    const { client, ch } = clientHello();
    const server = newServer();
    const first = server.start(early ? withEarly(ch) : ch, NAME, { offered: false, accepted: false });
    const flight: Uint8Array[] = [];
    for (const r of first.send) flight.push(...client.receive(r).send);
    const finRec = flight.find((r) => r[0] === ContentType.application_data)!;
    return { server, finRec };
  }

  it('with early_data offered, records that do not open under the handshake key are skipped, then the Finished is read', () => {
    const { server, finRec } = offeringEarly(true);
    assert.equal(server.receive(junk(100)).alert, undefined);
    assert.equal(server.receive(junk(200)).alert, undefined);
    const out = server.receive(finRec);
    assert.equal(out.alert, undefined);
    assert.ok(out.established);
    // After the Finished, no more skipping: a record that does not open is bad_record_mac.
    refused(server.receive(junk(50)), 'bad_record_mac');
  });

  it('more rejected early data than the bound: unexpected_message', () => {
    const { server } = offeringEarly(true);
    assert.equal(server.receive(junk(2 ** 14)).alert, undefined);
    refused(server.receive(junk(300)), 'unexpected_message');
  });

  it('without early_data offered, a record that does not open is bad_record_mac', () => {
    const { server } = offeringEarly(false);
    refused(server.receive(junk(100)), 'bad_record_mac');
  });

  it('after HelloRetryRequest: application_data records are skipped only if early_data was offered', () => {
    const a = toSecondHello(withEarly);
    assert.equal(a.server.receive(junk(100)).alert, undefined);
    assert.equal(a.server.receive(a.chRec).alert, undefined);
    const b = toSecondHello();
    refused(b.server.receive(junk(100)), 'unexpected_message');
  });
});

describe('RFC 9849 §7.1: with ECH accepted, ClientHelloInner must offer TLS 1.3 and nothing older', () => {
  const versions = (v: number[]) => {
    const { ch } = clientHello();
    const edited = { ...ch, extensions: ch.extensions.map((e) => (e.type === ExtensionType.supported_versions ? { type: e.type, data: encodeSupportedVersions(v) } : e)) };
    return newServer().start(edited, NAME, { offered: true, accepted: true });
  };
  it('TLS 1.3 alone, or beside GREASE: accepted', () => {
    assert.equal(versions([0x0304]).alert, undefined);
    assert.equal(versions([0x0a0a, 0x0304]).alert, undefined);
  });
  it('TLS 1.2 beside TLS 1.3, or TLS 1.2 alone: illegal_parameter (not protocol_version)', () => {
    assert.equal(versions([0x0304, 0x0303]).alert, 'illegal_parameter');
    assert.equal(versions([0x0303]).alert, 'illegal_parameter');
    assert.equal(versions([0x0a0a]).alert, 'illegal_parameter');
  });
});

// ---- HPKE (src/crypto/hpke.ts): suite checks, limits and the precomputed base-mode hashes ----

describe('RFC 9180: HPKE limits and suite checks', () => {
  const hpkeVectors = json<any[]>('hpke-x25519.json');
  const code = (c: string) => (e: unknown) => e instanceof EchgateError && e.code === c;
  const skR = deriveX25519KeyPair(nodeProvider, new Uint8Array(32).fill(7));
  const sender = (kdfId: number, aeadId: number, o = {}) => setupSender(nodeProvider, { kdfId, aeadId }, skR.publicKey, Uint8Array.of(1), o);

  it('§7: only DHKEM(X25519, HKDF-SHA256) with a listed KDF and AEAD is supported', () => {
    assert.equal(isSupportedSuite(KEM_X25519_SHA256, KDF.HKDF_SHA256, AEAD.AES_128_GCM), true);
    assert.equal(isSupportedSuite(KEM_X25519_SHA256, KDF.HKDF_SHA512, AEAD.EXPORT_ONLY), true);
    assert.equal(isSupportedSuite(0x0010, KDF.HKDF_SHA256, AEAD.AES_128_GCM), false);
    assert.equal(isSupportedSuite(KEM_X25519_SHA256, 4, AEAD.AES_128_GCM), false);
    assert.equal(isSupportedSuite(KEM_X25519_SHA256, KDF.HKDF_SHA256, 4), false);
  });

  it('§7.2, §7.3: an unknown KDF or AEAD id is refused with ERR_HPKE', () => {
    assert.throws(() => sender(9, AEAD.AES_128_GCM), code('ERR_HPKE'));
    assert.throws(() => sender(KDF.HKDF_SHA256, 9), code('ERR_HPKE'));
  });

  it('§7.3: each (KDF, AEAD) pair gets its own parameters (key sizes 16, 32, 32, whatever the order)', () => {
    for (const order of [
      [1, 2, 3],
      [3, 1, 2],
    ]) {
      for (const aead of order) assert.equal(sender(KDF.HKDF_SHA256, aead).ctx.key.length, aead === 1 ? 16 : 32);
    }
  });

  it('§5.2: the sequence number never wraps: the last nonce is used, the one after is refused', () => {
    const { ctx } = sender(KDF.HKDF_SHA256, AEAD.AES_128_GCM);
    (ctx as unknown as { seq: number }).seq = Number.MAX_SAFE_INTEGER - 1;
    ctx.seal(new Uint8Array(0), Uint8Array.of(1));
    assert.throws(() => ctx.seal(new Uint8Array(0), Uint8Array.of(1)), code('ERR_HPKE'));
    const r = setupReceiver(nodeProvider, { kdfId: 1, aeadId: 1 }, sender(1, 1).enc, skR, Uint8Array.of(1));
    (r as unknown as { seq: number }).seq = Number.MAX_SAFE_INTEGER;
    assert.throws(() => r.open(new Uint8Array(0), new Uint8Array(17)), code('ERR_HPKE'));
  });

  it('§5.3: an export-only context can neither seal nor open', () => {
    const { ctx } = sender(KDF.HKDF_SHA256, AEAD.EXPORT_ONLY);
    assert.throws(() => ctx.seal(new Uint8Array(0), Uint8Array.of(1)), code('ERR_HPKE'));
    assert.throws(() => ctx.open(new Uint8Array(0), new Uint8Array(17)), code('ERR_HPKE'));
    assert.equal(ctx.export(Uint8Array.of(1), 32).length, 32);
  });

  it('§5.1.1: psk and psk_id come together: one without the other is refused in any mode', () => {
    assert.throws(() => sender(1, 1, { mode: MODE.psk, psk: new Uint8Array(32).fill(1) }), code('ERR_HPKE'));
    assert.throws(() => sender(1, 1, { mode: MODE.psk, pskId: Uint8Array.of(1) }), code('ERR_HPKE'));
    assert.throws(() => sender(1, 1, { pskId: Uint8Array.of(1) }), code('ERR_HPKE'));
    assert.throws(() => sender(1, 1, { mode: MODE.base, psk: new Uint8Array(32).fill(1), pskId: Uint8Array.of(1) }), code('ERR_HPKE'));
  });

  it('§5.1: the precomputed base-mode hashes give the vector key_schedule_context, and are ignored outside base mode', () => {
    for (const mode of [MODE.base, MODE.psk]) {
      const v = hpkeVectors.find((x) => x.mode === mode && x.kdf_id === 1 && x.aead_id === 1)!;
      const suite = { kdfId: 1, aeadId: 1 };
      const info = fromHex(v.info);
      const h = baseModeHashes(nodeProvider, suite, info);
      assert.equal(toHex(h.context), toHex(concat(Uint8Array.of(0), h.pskIdHash, h.infoHash)));
      if (mode === MODE.base && v.key_schedule_context) assert.equal(toHex(h.context), v.key_schedule_context);
      const skRv = deriveX25519KeyPair(nodeProvider, fromHex(v.ikmR));
      const o = { mode: v.mode, psk: v.psk ? fromHex(v.psk) : undefined, pskId: v.psk_id ? fromHex(v.psk_id) : undefined };
      // Outside base mode the psk_id_hash must be the psk mode's own (LabeledExtract("", "psk_id_hash", psk_id));
      // the base-mode context passed beside it must then be ignored.
      const suiteId = concat(Buffer.from('HPKE'), Uint8Array.of(0, 0x20, 0, 1, 0, 1));
      const pskIdHash = mode === MODE.base ? h.pskIdHash : hkdfExtract(nodeProvider, 'sha256', new Uint8Array(0), concat(Buffer.from('HPKE-v1'), suiteId, Buffer.from('psk_id_hash')), o.pskId!);
      const r = setupReceiver(nodeProvider, suite, fromHex(v.enc), skRv, info, { ...o, context: h.context, infoHash: h.infoHash, pskIdHash });
      assert.equal(toHex(r.key), v.key, `mode ${mode}`);
      assert.equal(toHex(r.baseNonce), v.base_nonce);
      const plain = setupReceiver(nodeProvider, suite, fromHex(v.enc), skRv, info, o);
      assert.equal(toHex(plain.key), v.key);
    }
  });
});

describe('RFC 8446 §4.1.4: the client checks HelloRetryRequest', () => {
  /** The server's HelloRetryRequest to a client that withheld its share, edited, fed to a client built with `o`. */
  const hrrTo = (o: { withholdKeyShare?: boolean }, edit: (sh: ReturnType<typeof decodeServerHello>) => ReturnType<typeof decodeServerHello>) => {
    const { hrr } = toSecondHello();
    const msg = hrr.send.find((r) => r[0] === ContentType.handshake)!.subarray(5);
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ...o });
    // Made for another client: echo this one's session id (RFC 8446 §4.1.3), so only `edit` is wrong.
    const sessionIdEcho = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message).sessionId;
    const edited = encodeServerHello(edit({ ...decodeServerHello(msg.subarray(4)), sessionIdEcho }));
    return client.receive(plainHandshake(edited));
  };
  const ks = (data?: Uint8Array) => (sh: ReturnType<typeof decodeServerHello>) => ({
    ...sh,
    extensions: data ? sh.extensions.map((e) => (e.type === ExtensionType.key_share ? { type: e.type, data } : e)) : sh.extensions.filter((e) => e.type !== ExtensionType.key_share),
  });

  it('the unedited HelloRetryRequest is followed', () => {
    const out = hrrTo({ withholdKeyShare: true }, (sh) => sh);
    assert.equal(out.error, undefined);
    assert.equal(out.send.length, 1);
  });

  it('a second HelloRetryRequest: unexpected_message', () => {
    const { client, hrr } = toSecondHello();
    const again = client.receive(hrr.send.find((r) => r[0] === ContentType.handshake)!);
    clientRefused(again, 'unexpected_message');
  });

  it('asking for the group we already sent a share for or one we did not offer: illegal_parameter; a malformed group: decode_error', () => {
    clientRefused(hrrTo({}, (sh) => sh), 'illegal_parameter');
    clientRefused(hrrTo({ withholdKeyShare: true }, ks(Uint8Array.of(0, 0x17))), 'illegal_parameter');
    // §4.2.8: KeyShareHelloRetryRequest is one NamedGroup; 3 bytes do not decode (§6.2 decode_error).
    clientRefused(hrrTo({ withholdKeyShare: true }, ks(Uint8Array.of(0, 0x1d, 0))), 'decode_error');
  });

  it('neither key_share nor cookie (it would change nothing): illegal_parameter, with or without a share sent', () => {
    clientRefused(hrrTo({}, ks()), 'illegal_parameter');
    clientRefused(hrrTo({ withholdKeyShare: true }, ks()), 'illegal_parameter');
  });

  it('a cookie alone, when we sent no share, names no group: illegal_parameter', () => {
    clientRefused(
      hrrTo({ withholdKeyShare: true }, (sh) => ({ ...ks()(sh), extensions: [...ks()(sh).extensions, { type: ExtensionType.cookie, data: Uint8Array.of(0, 1, 9) }] })),
      'illegal_parameter',
    );
  });

  it('a handshake message other than ServerHello first: unexpected_message', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
    client.hello();
    clientRefused(client.receive(plainHandshake(hsMsg(HandshakeType.encrypted_extensions, Uint8Array.of(0, 0)))), 'unexpected_message');
  });

  it('keyUpdate() before the handshake completes is refused', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
    client.hello();
    assert.throws(() => client.keyUpdate(), EchgateError);
  });
});

// ---- Server gaps after the first mutation run (docs/mutation.md "Left to do") ----

describe('RFC 8446 §5, §6: what the server refuses once connected', () => {
  it('a plaintext alert after the handshake: unexpected_message (alerts are protected from the Finished on)', () => {
    const { server } = connected();
    refused(server.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 2, AlertDescription.bad_certificate)), 'unexpected_message');
    const b = connected();
    refused(b.server.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 1, 0)), 'unexpected_message');
  });

  it('an unknown inner content type after the handshake: unexpected_message, and nothing is delivered', () => {
    const { server, sealer } = connected();
    const out = server.receive(sealer.seal(99, Uint8Array.of(1, 2, 3)));
    refused(out, 'unexpected_message');
    assert.equal(out.data.length, 0);
  });

  it('§6: an empty plaintext alert during the handshake: unexpected_message (not decode_error)', () => {
    const { server } = toFinished();
    refused(server.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 0)), 'unexpected_message');
    const b = toFinished();
    refused(b.server.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 1, 2)), 'decode_error');
  });
});

describe('RFC 8446 §4.2.10: the 0-RTT skip bound is exact', () => {
  const withEarly = (ch: ClientHello): ClientHello => ({ ...ch, extensions: [...ch.extensions, { type: ExtensionType.early_data, data: new Uint8Array(0) }] });
  const junk = (n: number) => {
    const r = new Uint8Array(5 + n).fill(0xa5);
    r.set([ContentType.application_data, 3, 3, n >> 8, n & 0xff]);
    return r;
  };
  const early = () => {
    const { client, ch } = clientHello();
    const server = newServer();
    const first = server.start(withEarly(ch), NAME, { offered: false, accepted: false });
    const flight: Uint8Array[] = [];
    for (const r of first.send) flight.push(...client.receive(r).send);
    return { server, finRec: flight.find((r) => r[0] === ContentType.application_data)! };
  };

  it(`exactly EARLY_DATA_SKIP_LIMIT (${EARLY_DATA_SKIP_LIMIT}) bytes of rejected early data are skipped, then the Finished is read`, () => {
    const { server, finRec } = early();
    assert.equal(server.receive(junk(EARLY_DATA_SKIP_LIMIT - 100)).alert, undefined);
    assert.equal(server.receive(junk(100)).alert, undefined);
    const out = server.receive(finRec);
    assert.equal(out.alert, undefined, String(out.error));
    assert.ok(out.established);
  });

  it('one byte more: unexpected_message', () => {
    const { server } = early();
    assert.equal(server.receive(junk(EARLY_DATA_SKIP_LIMIT - 100)).alert, undefined);
    refused(server.receive(junk(101)), 'unexpected_message');
  });
});

describe('RFC 8446 §4.1.4: a valid share for the wrong group in the second ClientHello', () => {
  it('the HelloRetryRequest asked for X25519; a well-formed P-256 point instead: illegal_parameter', () => {
    const { server, ch2 } = toSecondHello();
    const ch = decodeClientHelloMessage(ch2);
    const point = new Uint8Array(createECDH('prime256v1').generateKeys());
    assert.equal(point.length, 65);
    const edited: ClientHello = {
      ...ch,
      extensions: ch.extensions.map((e) => {
        if (e.type === ExtensionType.key_share) return { type: e.type, data: encodeKeyShares([{ group: 0x0017, keyExchange: point }]) };
        if (e.type === ExtensionType.supported_groups) return { type: e.type, data: encodeU16List([0x001d, 0x0017]) };
        return e;
      }),
    };
    const out = server.receive(plainHandshake(encodeClientHelloMessage(edited)));
    refused(out, 'illegal_parameter');
    assert.equal(out.send.length, 1, 'no ServerHello before the alert');
  });
});

/** An ECH client and a server that accepted its inner hello (as the gateway wires them). */
function echPair(co: { withholdKeyShare?: boolean } = {}, decryptSecond: 'open' | 'split' | ((o: ClientHello) => ClientHello) = 'open') {
  const { config, lookup } = memoryEchKey(11);
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ech: echOffer(config), ...co });
  const r = decryptEch(nodeProvider, decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message), lookup);
  if (r.status !== 'accepted') throw new Error(`ECH not accepted: ${r.status}`);
  const server = newServer();
  const open = (o: ClientHello) => decryptSecondHello(r, o);
  const ds = decryptSecond === 'open' ? open : decryptSecond === 'split' ? undefined : (o: ClientHello) => decryptSecond(open(o));
  const first = server.start(r.inner, NAME, { offered: true, accepted: true, decryptSecond: ds });
  return { client, server, first };
}

describe('RFC 9849 §7.1.1: HelloRetryRequest with ECH accepted, in the server', () => {
  it('control: the second ClientHelloOuter opens to an inner hello with the first random; the handshake completes with ECH', () => {
    const { client, server, first } = echPair({ withholdKeyShare: true });
    const ch2 = client.receive(concat(...first.send));
    assert.equal(ch2.error, undefined);
    const sh = server.receive(concat(...ch2.send));
    assert.equal(sh.alert, undefined, String(sh.error));
    const o = client.receive(concat(...sh.send));
    assert.equal(o.established?.ech, 'accepted', String(o.error));
  });

  it('a second ClientHelloInner with another random: illegal_parameter', () => {
    const { client, server, first } = echPair({ withholdKeyShare: true }, (inner) => ({ ...inner, random: inner.random.map((b, i) => (i === 0 ? b ^ 1 : b)) }));
    const ch2 = client.receive(concat(...first.send));
    refused(server.receive(concat(...ch2.send)), 'illegal_parameter', client);
  });

  it('split mode (no HPKE context for the second hello): handshake_failure instead of a HelloRetryRequest', () => {
    const { first } = echPair({ withholdKeyShare: true }, 'split');
    assert.equal(first.alert, 'handshake_failure');
    assert.equal(first.send.length, 1);
    assert.equal(first.send[0]![0], ContentType.alert);
  });

  it('control: split mode with a key share needs no HelloRetryRequest and completes', () => {
    const { client, first } = echPair({}, 'split');
    assert.equal(first.alert, undefined);
    assert.equal(client.receive(concat(...first.send)).established?.ech, 'accepted');
  });
});

describe('RFC 9849 §6.1.4, §6.1.6: the client with ECH accepted', () => {
  /** The server's flight (ECH accepted) opened with the client's handshake read key; `edit` changes its messages before they are sealed again. */
  function forge(edit: (msgs: Uint8Array[]) => Uint8Array[]) {
    const { client, first } = echPair();
    const plain = first.send.filter((r) => r[0] !== ContentType.application_data);
    assert.equal(client.receive(concat(...plain)).error, undefined);
    assert.equal(client.ech, 'accepted');
    const { suite, hs } = inside(client);
    const keys = trafficKeys(nodeProvider, suite, hs.server);
    const opener = new RecordCipher(suite, { key: keys.key.slice(), iv: keys.iv.slice() });
    const content = concat(...first.send.filter((r) => r[0] === ContentType.application_data).map((r) => opener.open(r.subarray(0, 5), r.subarray(5)).content));
    const msgs: Uint8Array[] = [];
    for (let i = 0; i < content.length; ) {
      const len = (content[i + 1]! << 16) | (content[i + 2]! << 8) | content[i + 3]!;
      msgs.push(content.subarray(i, i + 4 + len));
      i += 4 + len;
    }
    return client.receive(new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.server)).seal(ContentType.handshake, concat(...edit(msgs))));
  }

  it('control: the untouched flight connects with ECH accepted', () => {
    assert.equal(forge((m) => m).established?.ech, 'accepted');
  });

  it('§6.1.6: retry_configs in EncryptedExtensions after ECH was accepted: illegal_parameter', () => {
    const out = forge(([ee, ...rest]) => {
      assert.equal(ee![0], HandshakeType.encrypted_extensions);
      const ech = { type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(0, 0) };
      const block = concat(Uint8Array.of(ech.type >> 8, ech.type & 0xff, 0, ech.data.length), ech.data);
      return [hsMsg(HandshakeType.encrypted_extensions, concat(Uint8Array.of(block.length >> 8, block.length & 0xff), block)), ...rest];
    });
    clientRefused(out, 'illegal_parameter');
  });
});

describe('RFC 9849 §6.1.5: ECH rejected at a HelloRetryRequest, the client goes on with ClientHelloOuter', () => {
  it('a server that cannot decrypt (it sees only the outer hello) asks for a share; the client completes on the outer hello with ECH rejected and learns the retry_configs', () => {
    const { config } = memoryEchKey(12);
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ech: echOffer(config), withholdKeyShare: true });
    const outer = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const retryConfigs = Uint8Array.of(0, 3, 1, 2, 3);
    const server = new TlsServer({
      provider: nodeProvider,
      random: (n) => nodeProvider.randomBytes(n),
      certificate: () => cert,
      retryConfigs,
    });
    const hrr = server.start(outer, 'public.example.test', { offered: true, accepted: false });
    assert.equal(hrr.alert, undefined);
    const ch2 = client.receive(concat(...hrr.send));
    assert.equal(ch2.error, undefined, String(ch2.error));
    const sh = server.receive(concat(...ch2.send));
    assert.equal(sh.alert, undefined, String(sh.error));
    const o = client.receive(concat(...sh.send));
    assert.equal(o.error, undefined, String(o.error));
    assert.equal(o.established?.ech, 'rejected');
    assert.equal(o.established?.helloRetry, true);
    assert.deepEqual(o.established?.retryConfigs, retryConfigs);
    assert.equal(server.receive(concat(...o.send)).established?.ech, false);
  });
});

describe('RFC 8446 §4.1.3, §4.2: the ServerHello fields the client decodes', () => {
  /** The server's ServerHello to a fresh client, its body edited byte-wise, fed to that client. */
  const withShBody = (edit: (body: Uint8Array) => Uint8Array, o: { withholdKeyShare?: boolean } = {}) => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ...o });
    const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const first = newServer().start(ch, NAME, { offered: false, accepted: false });
    const body = edit(first.send[0]!.slice(5 + 4));
    return client.receive(plainHandshake(hsMsg(HandshakeType.server_hello, body)));
  };
  const SID_AT = 2 + 32; // legacy_version, random, then the session id's length byte

  it('control: the unedited ServerHello, and HelloRetryRequest, are taken', () => {
    assert.equal(withShBody((b) => b).error, undefined);
    assert.equal(withShBody((b) => b, { withholdKeyShare: true }).error, undefined);
  });

  it('legacy_version other than 0x0303: illegal_parameter', () => {
    clientRefused(
      withShBody((b) => {
        b[1] = 0x04;
        return b;
      }),
      'illegal_parameter',
    );
  });

  it('legacy_compression_method other than 0: illegal_parameter', () => {
    clientRefused(
      withShBody((b) => {
        b[SID_AT + 1 + b[SID_AT]! + 2] = 1;
        return b;
      }),
      'illegal_parameter',
    );
  });

  it('§4.1.3: legacy_session_id_echo that is not our session id (one byte changed, or empty): illegal_parameter, in ServerHello and HelloRetryRequest', () => {
    for (const o of [{}, { withholdKeyShare: true }]) {
      clientRefused(
        withShBody((b) => {
          b[SID_AT + 1]! ^= 1;
          return b;
        }, o),
        'illegal_parameter',
      );
      clientRefused(
        withShBody((b) => {
          const n = b[SID_AT]!;
          assert.equal(n, 32);
          return concat(b.subarray(0, SID_AT), Uint8Array.of(0), b.subarray(SID_AT + 1 + n));
        }, o),
        'illegal_parameter',
      );
    }
  });

  it('§4.2: the same extension twice in ServerHello: illegal_parameter', () => {
    clientRefused(
      withShBody((b) => {
        const blockAt = SID_AT + 1 + b[SID_AT]! + 3;
        const block = b.subarray(blockAt + 2);
        const sv = Uint8Array.of(0, 43, 0, 2, 3, 4);
        const n = block.length + sv.length;
        return concat(b.subarray(0, blockAt), Uint8Array.of(n >> 8, n & 0xff), block, sv);
      }),
      'illegal_parameter',
    );
  });
});

// ---- src/wire/tls codecs: the bounds and checks the engine relies on ----

describe('RFC 8446 §4.1.2, §4.2.8, §5.1: codec bounds (src/wire/tls)', () => {
  /** A real ClientHello body from our client. */
  const body = () => clientHello().ch.raw!.slice();
  const SID = 2 + 32;
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      assert.ok(e instanceof EchgateError, String(e));
      return e.alert;
    }
    return 'accepted';
  };

  it('§4.1.2: legacy_session_id of 32 bytes is read; of 33 bytes: decode_error', () => {
    const b = body();
    assert.equal(b[SID], 32);
    assert.equal(codeOf(() => decodeClientHello(b)), 'accepted');
    const longer = concat(b.subarray(0, SID), Uint8Array.of(33, 0), b.subarray(SID + 1));
    assert.equal(codeOf(() => decodeClientHello(longer)), 'decode_error');
  });

  it('§4.1.2: cipher_suites of 2 bytes is read; empty or of an odd length: decode_error', () => {
    const b = body();
    const at = SID + 1 + 32;
    const n = (b[at]! << 8) | b[at + 1]!;
    const withSuites = (s: Uint8Array) => concat(b.subarray(0, at), Uint8Array.of(s.length >> 8, s.length & 0xff), s, b.subarray(at + 2 + n));
    assert.equal(codeOf(() => decodeClientHello(withSuites(Uint8Array.of(0x13, 0x01)))), 'accepted');
    assert.equal(codeOf(() => decodeClientHello(withSuites(new Uint8Array(0)))), 'decode_error');
    assert.equal(codeOf(() => decodeClientHello(withSuites(Uint8Array.of(0x13, 0x01, 0x13)))), 'decode_error');
  });

  it('§4.2.8: two shares for one group: illegal_parameter; an empty key_exchange: decode_error; distinct groups are read', () => {
    const share = (g: number, k: Uint8Array) => concat(Uint8Array.of(g >> 8, g & 0xff, k.length >> 8, k.length & 0xff), k);
    const list = (...s: Uint8Array[]) => {
      const all = concat(...s);
      return concat(Uint8Array.of(all.length >> 8, all.length & 0xff), all);
    };
    assert.equal(decodeKeyShares(list(share(0x1d, new Uint8Array(32)), share(0x17, new Uint8Array(65)))).length, 2);
    assert.equal(codeOf(() => decodeKeyShares(list(share(0x1d, new Uint8Array(32)), share(0x1d, new Uint8Array(32))))), 'illegal_parameter');
    assert.equal(codeOf(() => decodeKeyShares(list(share(0x1d, new Uint8Array(0))))), 'decode_error');
  });

  it('§5.1: a plaintext record of exactly 2^14 bytes is not an overflow (here a bad alert: decode_error); 2^14 + 1: record_overflow', () => {
    const rec = (n: number) => concat(Uint8Array.of(ContentType.alert, 3, 3, n >> 8, n & 0xff), new Uint8Array(n).fill(2));
    const a = new TlsClient({ provider: nodeProvider, serverName: NAME });
    a.hello();
    assert.equal(a.receive(rec(2 ** 14)).alert, 'decode_error');
    const b = new TlsClient({ provider: nodeProvider, serverName: NAME });
    b.hello();
    assert.equal(b.receive(rec(2 ** 14 + 1)).alert, 'record_overflow');
  });

  it('§5.2: a protected record of exactly 2^14 + 256 bytes is read (here it does not open: bad_record_mac); one byte more: record_overflow before the body', () => {
    const junk = (n: number) => concat(Uint8Array.of(ContentType.application_data, 3, 3, n >> 8, n & 0xff), new Uint8Array(n).fill(7));
    assert.equal(connected().server.receive(junk(2 ** 14 + 256)).alert, 'bad_record_mac');
    assert.equal(connected().server.receive(junk(2 ** 14 + 257).subarray(0, 5)).alert, 'record_overflow');
  });
});
