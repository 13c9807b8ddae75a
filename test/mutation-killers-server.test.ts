/**
 * Tests written against mutants of src/tls13/server.ts that survived (or had no
 * coverage in) the first whole StrykerJS run of the server engine
 * (`npm run mutation -- tls13-server`, docs/mutation.md, "Fifth session").
 * Each drives TlsServer in memory against TlsClient, feeds one wrong thing and
 * checks the exact outcome (the alert, what is sent, what is delivered).
 */
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { EchgateError } from '../src/errors.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import type { CipherSuite, TrafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { type CertifiedKey, type KeyExchangeEvent, type Output, type ServerOptions, TlsServer } from '../src/tls13/server.js';
import { concat } from '../src/bytes/util.js';
import { echOffer } from '../src/ech/client.js';
import { decryptEch, decryptSecondHello } from '../src/ech/server.js';
import { type ClientHello, decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { AlertDescription, ContentType, ExtensionType, HandshakeType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { encodeKeyShares, encodeU16List, type KeyShareEntry } from '../src/wire/tls/extensions.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { decodeServerHello, HRR_RANDOM } from '../src/wire/tls/server-messages.js';
import { certFor, memoryEchKey } from './helpers.js';

const NAME = 'srv.example.test';
const c = certFor(NAME);
const cert = loadCertificate(c.cert, c.key);

interface Peek {
  kind: string;
  read: { keys: TrafficKeys; seq: number };
  write: { keys: TrafficKeys; seq: number };
  suite: CipherSuite;
  ks: { handshakeSecret: Uint8Array | undefined };
  clientHsSecret: Uint8Array;
  clientApSecret: Uint8Array;
  serverApSecret: Uint8Array;
}
/** The server's current handshake state (expect_finished and traffic hold these). */
const peek = (s: TlsServer) => (s as unknown as { state: Peek }).state;

function newServer(extra: Partial<ServerOptions> = {}) {
  return new TlsServer({
    provider: nodeProvider,
    random: (n) => nodeProvider.randomBytes(n),
    certificate: (sni) => (sni === NAME ? cert : undefined),
    ...extra,
  });
}

function clientHello(o: { withholdKeyShare?: boolean } = {}): { client: TlsClient; ch: ClientHello } {
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ...o });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  return { client, ch };
}

/** Up to the client's Finished: the server waits for it (state expect_finished). */
function toFinished(extra: Partial<ServerOptions> = {}) {
  const { client, ch } = clientHello();
  const server = newServer(extra);
  const first = server.start(ch, NAME, { offered: false, accepted: false });
  assert.equal(first.alert, undefined, String(first.error));
  const flight: Uint8Array[] = [];
  for (const r of first.send) flight.push(...client.receive(r).send);
  const finRec = flight.find((r) => r[0] === ContentType.application_data)!;
  return { client, server, first, flight, finRec };
}

/** A completed handshake; `sealer` protects records under the client's application write key. */
function connected() {
  const t = toFinished();
  const out = t.server.receive(t.finRec);
  assert.ok(out.established, String(out.error));
  const st = peek(t.server);
  const sealer = new RecordCipher(st.suite, st.read.keys);
  return { ...t, sealer };
}

/** The server failed with `alert`, its record is last in `send`, and the client reads that alert. */
function refused(out: Output, alert: keyof typeof AlertDescription, client?: TlsClient) {
  assert.equal(out.alert, alert);
  assert.ok(out.closed);
  assert.ok(out.error instanceof EchgateError);
  assert.ok(out.send.length >= 1);
  if (client) assert.equal(client.receive(out.send.at(-1)!).peerAlert, AlertDescription[alert]);
}

describe('RFC 8446 §4.4.4: the server may send application data before the client Finished, not before its own', () => {
  it('between our Finished and the client Finished, encrypt() gives records the client reads once connected', () => {
    const { client, server, flight } = toFinished();
    assert.equal(peek(server).kind, 'expect_finished');
    const early = server.encrypt(Buffer.from('0.5-RTT'));
    assert.equal(early.length, 1);
    assert.equal(Buffer.from(client.receive(early[0]!).data[0]!).toString(), '0.5-RTT');
    assert.ok(flight.length >= 1);
  });

  it('before start(), and while waiting for the second ClientHello: internal_error, thrown (a caller bug, not client input)', () => {
    const unstarted = newServer();
    assert.throws(() => unstarted.encrypt(Buffer.from('x')), (e) => e instanceof EchgateError && e.alert === 'internal_error');
    const { ch } = clientHello({ withholdKeyShare: true });
    const server = newServer();
    const hrr = server.start(ch, NAME, { offered: false, accepted: false });
    assert.equal(hrr.alert, undefined);
    assert.equal(peek(server).kind, 'expect_second_client_hello');
    assert.throws(() => server.encrypt(Buffer.from('x')), (e) => e instanceof EchgateError && e.alert === 'internal_error');
  });
});

describe('RFC 8446 §5.3: no alert when our sequence number is exhausted', () => {
  it('a failure that would need one more sealed record closes without the alert (and says so: no alert in the output)', () => {
    const { server, sealer } = connected();
    // §5.3: a sequence number must not wrap; RecordCipher refuses past 2^53 - 1.
    peek(server).write.seq = Number.MAX_SAFE_INTEGER;
    const bad = sealer.seal(ContentType.application_data, Buffer.from('x'));
    bad[bad.length - 1]! ^= 1;
    const out = server.receive(bad);
    assert.equal(out.closed, true);
    assert.ok(out.error instanceof EchgateError);
    assert.equal(out.alert, undefined);
    assert.equal(out.send.length, 0);
    assert.equal(server.established, false);
  });

  it('control: with sequence numbers left, the same record gets bad_record_mac', () => {
    const { client, server, sealer } = connected();
    const bad = sealer.seal(ContentType.application_data, Buffer.from('x'));
    bad[bad.length - 1]! ^= 1;
    refused(server.receive(bad), 'bad_record_mac', client);
  });
});

const zero = (b: Uint8Array) => b.length > 0 && b.every((x) => x === 0);
const withEarly = (ch: ClientHello): ClientHello => ({ ...ch, extensions: [...ch.extensions, { type: ExtensionType.early_data, data: new Uint8Array(0) }] });
/** An application_data record that opens under no key: rejected 0-RTT data as the server sees it. */
const junk = (n: number) => {
  const r = new Uint8Array(5 + n).fill(0x3c);
  r.set([ContentType.application_data, 3, 3, n >> 8, n & 0xff]);
  return r;
};


describe('RFC 8446 §4.2.10: skipping rejected 0-RTT data ends where the client flight starts', () => {
  it('once a record opens under the handshake key, a record that does not is bad_record_mac, not skipped', () => {
    const { client, ch } = clientHello();
    const server = newServer();
    const first = server.start(withEarly(ch), NAME, { offered: false, accepted: false });
    for (const r of first.send) client.receive(r);
    const st = peek(server);
    // A copy of the client's handshake key: the Finished in two records (§5.1 allows fragments).
    const hs = new RecordCipher(st.suite, { key: st.read.keys.key.slice(), iv: st.read.keys.iv.slice() });
    assert.equal(server.receive(junk(64)).alert, undefined, 'skipped before the flight');
    const finMsg = encodeHandshake(HandshakeType.finished, new Uint8Array(32));
    assert.equal(server.receive(hs.seal(ContentType.handshake, finMsg.subarray(0, 3))).alert, undefined);
    refused(server.receive(junk(64)), 'bad_record_mac');
  });

  it('after HelloRetryRequest, the second ClientHello ends the skipping: a record that does not open is bad_record_mac', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, withholdKeyShare: true });
    const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const server = newServer();
    const hrr = server.start(withEarly(ch), NAME, { offered: false, accepted: false });
    const second: Uint8Array[] = [];
    for (const r of hrr.send) second.push(...client.receive(r).send);
    assert.equal(server.receive(junk(64)).alert, undefined, 'skipped before the second ClientHello');
    const sh = server.receive(second.find((r) => r[0] === ContentType.handshake)!);
    assert.equal(sh.alert, undefined, String(sh.error));
    assert.equal(peek(server).kind, 'expect_finished');
    refused(server.receive(junk(64)), 'bad_record_mac');
  });
});

describe('RFC 8446 §6.1: close_notify before the handshake completes', () => {
  it('closes the connection (not a half-close): nothing sent back, no peer alert, no keys kept', () => {
    const { server } = toFinished();
    const st = peek(server);
    const out = server.receive(Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 1, AlertDescription.close_notify));
    assert.equal(out.closed, true);
    assert.equal(out.alert, undefined);
    assert.equal(out.peerAlert, undefined);
    assert.equal(out.send.length, 0);
    assert.equal(peek(server).kind, 'closed');
    assert.ok(zero(st.clientApSecret) && zero(st.serverApSecret) && zero(st.clientHsSecret));
    assert.throws(() => server.encrypt(Buffer.from('x')), (e) => e instanceof EchgateError && e.alert === 'internal_error');
  });

  it('control: once connected, close_notify closes the client side only; we may still send', () => {
    const { client, server, sealer } = connected();
    const out = server.receive(sealer.seal(ContentType.alert, Uint8Array.of(1, AlertDescription.close_notify)));
    assert.equal(out.closed, true);
    assert.equal(out.send.length, 0);
    assert.equal(peek(server).kind, 'traffic');
    assert.equal(Buffer.from(client.receive(server.encrypt(Buffer.from('last'))[0]!).data[0]!).toString(), 'last');
  });
});

/** A certificate whose chain is `n` opaque bytes: the server does not parse it, so the flight length is ours to choose. */
function sizedKey(n: number): CertifiedKey {
  return { chain: [new Uint8Array(n).fill(7)], schemes: [0x0403], sign: () => new Uint8Array(72).fill(9) };
}
/** The content lengths of the protected records of the server's first flight. */
function flightRecords(n: number): number[] {
  const { ch } = clientHello();
  const server = newServer({ certificate: () => sizedKey(n) });
  const out = server.start(ch, NAME, { offered: false, accepted: false });
  assert.equal(out.alert, undefined, String(out.error));
  // content = record length - the inner type byte - the 16-byte AEAD tag (every suite we offer has one).
  return out.send.filter((r) => r[0] === ContentType.application_data).map((r) => ((r[3]! << 8) | r[4]!) - 17);
}

describe('RFC 8446 §5.1: the server flight is cut into records of at most 2^14 bytes, none empty', () => {
  const base = 1000;
  const total = (n: number) => flightRecords(n).reduce((a, b) => a + b, 0);
  const exact = base + MAX_PLAINTEXT - total(base);

  it('a flight of exactly 2^14 bytes: one record', () => {
    assert.deepEqual(flightRecords(exact), [MAX_PLAINTEXT]);
  });

  it('one byte more: two records, the second of one byte', () => {
    assert.deepEqual(flightRecords(exact + 1), [MAX_PLAINTEXT, 1]);
  });

  it('a small flight: one record', () => {
    assert.equal(flightRecords(base).length, 1);
  });
});

describe('RFC 8446 §5.1: no zero-length application data records from encrypt()', () => {
  it('encrypt() of nothing gives no record', () => {
    const { server } = connected();
    assert.deepEqual(server.encrypt(new Uint8Array(0)), []);
  });
});

describe('RFC 8446 §7.1, §7.2: secrets that are done are wiped', () => {
  it('the client Finished ends the handshake secret, the client handshake traffic secret and its read key', () => {
    const { server, finRec } = toFinished();
    const st = peek(server);
    assert.ok(st.ks.handshakeSecret && !zero(st.ks.handshakeSecret));
    const hsSecret = st.ks.handshakeSecret;
    const readKey = st.read.keys.key;
    assert.ok(server.receive(finRec).established);
    assert.equal(st.ks.handshakeSecret, undefined);
    assert.ok(zero(hsSecret), 'handshake secret');
    assert.ok(zero(st.clientHsSecret), 'client handshake traffic secret');
    assert.ok(zero(readKey), 'client handshake read key');
    assert.ok(!zero(peek(server).clientApSecret));
  });

  it('§4.6.3: KeyUpdate wipes the client secret and key it replaces; with update_requested ours too', () => {
    const { server, sealer } = connected();
    const before = peek(server);
    const oldClient = before.clientApSecret;
    const oldServer = before.serverApSecret;
    const oldRead = before.read.keys.key;
    const oldWrite = before.write.keys.key;
    const out = server.receive(sealer.seal(ContentType.handshake, encodeHandshake(HandshakeType.key_update, Uint8Array.of(1))));
    assert.equal(out.alert, undefined);
    assert.ok(zero(oldClient) && zero(oldRead), 'client side');
    assert.ok(zero(oldServer) && zero(oldWrite), 'server side');
    assert.ok(!zero(peek(server).clientApSecret) && !zero(peek(server).serverApSecret));
  });

  it('update_not_requested leaves our secret alone', () => {
    const { server, sealer } = connected();
    const oldServer = peek(server).serverApSecret;
    assert.equal(server.receive(sealer.seal(ContentType.handshake, encodeHandshake(HandshakeType.key_update, Uint8Array.of(0)))).alert, undefined);
    assert.ok(!zero(oldServer));
    assert.equal(peek(server).serverApSecret, oldServer);
  });

  it('a failure during the handshake wipes the handshake and application secrets and the read key', () => {
    const { server } = toFinished();
    const st = peek(server);
    const hsSecret = st.ks.handshakeSecret!;
    refused(server.receive(junk(64)), 'bad_record_mac');
    assert.ok(zero(hsSecret) && zero(st.clientHsSecret) && zero(st.clientApSecret) && zero(st.serverApSecret) && zero(st.read.keys.key));
  });

  it('a failure once connected wipes the application secrets and the read key', () => {
    const { server } = connected();
    const st = peek(server);
    refused(server.receive(junk(64)), 'bad_record_mac');
    assert.ok(zero(st.clientApSecret) && zero(st.serverApSecret) && zero(st.read.keys.key));
  });
});

/** An ECH client and a server that accepted its inner hello (as the gateway wires them). */
function echPair(withholdKeyShare: boolean, extra: Partial<ServerOptions> = {}) {
  const { config, lookup } = memoryEchKey(12);
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ech: echOffer(config), withholdKeyShare });
  const r = decryptEch(nodeProvider, decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message), lookup);
  if (r.status !== 'accepted') throw new Error(`ECH not accepted: ${r.status}`);
  const server = newServer(extra);
  const first = server.start(r.inner, NAME, { offered: true, accepted: true, decryptSecond: (o) => decryptSecondHello(r, o) });
  return { client, server, first };
}

describe('established connections keep neither the legacy_session_id nor the second-hello opener', () => {
  it('after the client Finished: no session id, no decryptSecond; the ECH verdict stays', () => {
    const { client, server, first } = echPair(true);
    const ch2 = client.receive(concat(...first.send));
    const sh = server.receive(concat(...ch2.send));
    assert.equal(sh.alert, undefined, String(sh.error));
    const inner = server as unknown as { sessionId: Uint8Array; ech: { offered: boolean; accepted: boolean; decryptSecond?: unknown } };
    assert.equal(inner.sessionId.length, 32);
    assert.equal(typeof inner.ech.decryptSecond, 'function');
    const fin = client.receive(concat(...sh.send));
    assert.equal(fin.established?.ech, 'accepted', String(fin.error));
    const done = server.receive(concat(...fin.send));
    assert.equal(done.established?.ech, true);
    assert.equal(inner.sessionId.length, 0);
    assert.deepEqual(inner.ech, { offered: true, accepted: true });
  });
});

describe('RFC 9849 §7.1: retry_configs only when ECH was offered and not accepted', () => {
  const retryConfigs = Uint8Array.of(0, 4, 0xfe, 0x0d, 0, 0);
  /** A plain client; the server is told what the gateway would have decided about ECH. */
  function handshake(ech: { offered: boolean; accepted: boolean }, configured: Uint8Array | undefined) {
    // When ECH is offered, a real offer: the server sees only ClientHelloOuter (a config it has no key for).
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ...(ech.offered ? { ech: echOffer(memoryEchKey(13).config) } : {}) });
    const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const server = newServer(configured ? { retryConfigs: configured } : {});
    const first = server.start(ch, NAME, ech);
    assert.equal(first.alert, undefined, String(first.error));
    const o = client.receive(concat(...first.send));
    assert.equal(o.error, undefined, String(o.error));
    assert.ok(o.established);
    return o.established;
  }

  it('offered and rejected (GREASE, unknown config_id): the configured list goes out in EncryptedExtensions', () => {
    const done = handshake({ offered: true, accepted: false }, retryConfigs);
    assert.equal(done.ech, 'rejected');
    assert.deepEqual(done.retryConfigs, retryConfigs);
  });

  it('not offered: none, even with keys configured', () => {
    assert.equal(handshake({ offered: false, accepted: false }, retryConfigs).retryConfigs, undefined);
  });

  it('offered and rejected, but no keys configured: none (and no empty extension)', () => {
    assert.equal(handshake({ offered: true, accepted: false }, undefined).retryConfigs, undefined);
  });

  it('accepted: none (the client would refuse them with illegal_parameter, §6.1.6)', () => {
    const { client, first } = echPair(false, { retryConfigs });
    const o = client.receive(concat(...first.send));
    assert.equal(o.error, undefined, String(o.error));
    assert.equal(o.established?.ech, 'accepted');
    assert.equal(o.established?.retryConfigs, undefined);
  });
});

describe('the echgate:tls-key-exchange event says whether ECH was accepted and whether HelloRetryRequest came first', () => {
  function events(run: () => void): KeyExchangeEvent[] {
    const got: KeyExchangeEvent[] = [];
    const on = (m: unknown) => got.push(m as KeyExchangeEvent);
    subscribe('echgate:tls-key-exchange', on);
    try {
      run();
    } finally {
      unsubscribe('echgate:tls-key-exchange', on);
    }
    return got;
  }

  it('ECH accepted, a key share in the first hello: ech true, helloRetry false', () => {
    assert.deepEqual(
      events(() => assert.equal(echPair(false).first.alert, undefined)),
      [{ group: 0x001d, groupName: 'x25519', helloRetry: false, ech: true }],
    );
  });

  it('no ECH, a key share in the first hello: ech false, helloRetry false', () => {
    assert.deepEqual(
      events(() => toFinished()),
      [{ group: 0x001d, groupName: 'x25519', helloRetry: false, ech: false }],
    );
  });
});

describe('TlsServer used out of order (caller bugs, refused, never a silent second handshake)', () => {
  it('start() twice: thrown, unexpected_message; the first handshake goes on', () => {
    const { server, finRec } = toFinished();
    const { ch } = clientHello();
    assert.throws(() => server.start(ch, NAME, { offered: false, accepted: false }), (e) => e instanceof EchgateError && e.alert === 'unexpected_message');
    assert.ok(server.receive(finRec).established);
  });

  it('receive() before start(): internal_error, plaintext alert, closed', () => {
    const { client } = clientHello();
    const out = newServer().receive(client.hello()[0]!);
    assert.equal(out.alert, 'internal_error');
    assert.ok(out.closed);
    assert.equal(out.send.length, 1);
    assert.deepEqual([...out.send[0]!], [ContentType.alert, 3, 3, 0, 2, 2, AlertDescription.internal_error]);
  });
});

describe('RFC 8446 §6.1, §6.2: nothing is read after a closure or error alert, even in the same read', () => {
  it('§6.1: close_notify and a data record in one read: the data is ignored', () => {
    const { server, sealer } = connected();
    const chunk = concat(sealer.seal(ContentType.alert, Uint8Array.of(1, AlertDescription.close_notify)), sealer.seal(ContentType.application_data, Buffer.from('late')));
    const out = server.receive(chunk);
    assert.equal(out.closed, true);
    assert.deepEqual(out.data, []);
    assert.equal(out.error, undefined);
    assert.equal(out.send.length, 0);
  });

  it('§6.2: an error alert and another record in one read: reported, the rest not read (no error of ours, nothing sent)', () => {
    const { server, sealer } = connected();
    const chunk = concat(sealer.seal(ContentType.alert, Uint8Array.of(2, AlertDescription.bad_certificate)), sealer.seal(ContentType.application_data, Buffer.from('late')));
    const out = server.receive(chunk);
    assert.equal(out.peerAlert, AlertDescription.bad_certificate);
    assert.equal(out.closed, true);
    assert.deepEqual(out.data, []);
    assert.equal(out.error, undefined);
    assert.equal(out.alert, undefined);
    assert.equal(out.send.length, 0);
  });

  it('§6.2: after we failed the connection, later bytes are not read at all (closed, no new error, nothing sent)', () => {
    const { server, sealer } = connected();
    const bad = sealer.seal(ContentType.application_data, Buffer.from('x'));
    bad[bad.length - 1]! ^= 1;
    assert.equal(server.receive(bad).alert, 'bad_record_mac');
    const later = server.receive(sealer.seal(ContentType.application_data, Buffer.from('y')));
    assert.equal(later.closed, true);
    assert.equal(later.error, undefined);
    assert.equal(later.alert, undefined);
    assert.deepEqual(later.send, []);
    assert.deepEqual(later.data, []);
  });
});

// ---- Sixth session: src/tls13/server.ts 383-569 (docs/mutation.md, "Sixth session") ----

/** The ServerHello (or HelloRetryRequest) that starts the server's answer, decoded. */
function serverHelloOf(out: Output) {
  const rec = out.send[0]!;
  assert.equal(rec[0], ContentType.handshake);
  assert.equal(rec[5], HandshakeType.server_hello);
  return decodeServerHello(rec.subarray(9));
}
/** The group of a ServerHello's or HelloRetryRequest's key_share (its first two bytes, §4.2.8). */
function keyShareGroup(out: Output): number {
  const ks = serverHelloOf(out).extensions.find((e) => e.type === ExtensionType.key_share)!;
  return (ks.data[0]! << 8) | ks.data[1]!;
}
/** A ClientHello from TlsClient with its supported_groups and key_share replaced (the server reads the decoded lists). */
function withGroups(groups: number[], shares: KeyShareEntry[]): ClientHello {
  const { ch } = clientHello();
  const swap = (e: { type: number; data: Uint8Array }) =>
    e.type === ExtensionType.supported_groups ? { type: e.type, data: encodeU16List(groups) } : e.type === ExtensionType.key_share ? { type: e.type, data: encodeKeyShares(shares) } : e;
  return { ...ch, extensions: ch.extensions.map(swap) };
}

describe('RFC 8446 §4.2.7, §4.2.8: configured groups the engine does not implement are skipped', () => {
  // src/config/tls-options.ts passes curvePreferences on as given, TLS 1.2-only curves
  // (secp384r1) included; ServerOptions.groups says code points we do not implement are ignored.
  const P384 = 0x0018;
  const X25519 = 0x001d;
  const x25519Share = () => ({ group: X25519, keyExchange: nodeProvider.x25519Generate().publicKey });

  it('a P-384 share first and an X25519 share, P-384 preferred by the configuration: ServerHello for X25519', () => {
    const ch = withGroups([P384, X25519], [{ group: P384, keyExchange: new Uint8Array(97).fill(4) }, x25519Share()]);
    const out = newServer({ groups: [P384, X25519] }).start(ch, NAME, { offered: false, accepted: false });
    assert.equal(out.alert, undefined, String(out.error));
    assert.notDeepEqual(serverHelloOf(out).random, HRR_RANDOM);
    assert.equal(keyShareGroup(out), X25519);
  });

  it('no share, P-384 listed and preferred: HelloRetryRequest asks for X25519, never for P-384', () => {
    const out = newServer({ groups: [P384, X25519] }).start(withGroups([P384, X25519], []), NAME, { offered: false, accepted: false });
    assert.equal(out.alert, undefined, String(out.error));
    assert.deepEqual(serverHelloOf(out).random, HRR_RANDOM);
    assert.equal(keyShareGroup(out), X25519);
  });

  it('only P-384 in common: handshake_failure (no group we can run)', () => {
    const out = newServer({ groups: [P384, X25519] }).start(withGroups([P384], []), NAME, { offered: false, accepted: false });
    assert.equal(out.alert, 'handshake_failure');
  });
});

describe('RFC 9849 §7.2.1, RFC 8446 §4.1.4: HelloRetryRequest carries encrypted_client_hello only with ECH accepted', () => {
  // §4.1.4: a client aborts on an HRR extension it did not offer; a client whose ECH was
  // rejected must not see an acceptance signal (RFC 9849 §6.1.5 reads the extension's 8 bytes).
  const hrrExtensions = (ech: { offered: boolean; accepted: boolean }) => {
    const { ch } = clientHello({ withholdKeyShare: true });
    const out = newServer().start(ch, NAME, ech);
    assert.equal(out.alert, undefined, String(out.error));
    const hrr = serverHelloOf(out);
    assert.deepEqual(hrr.random, HRR_RANDOM);
    return hrr.extensions.map((e) => e.type);
  };

  it('no ECH: key_share and supported_versions only', () => {
    assert.deepEqual(hrrExtensions({ offered: false, accepted: false }), [ExtensionType.key_share, ExtensionType.supported_versions]);
  });

  it('ECH offered and rejected: no encrypted_client_hello either', () => {
    assert.deepEqual(hrrExtensions({ offered: true, accepted: false }), [ExtensionType.key_share, ExtensionType.supported_versions]);
  });

  it('control: ECH accepted: encrypted_client_hello last, its 8 bytes ending the message and not zero', () => {
    const { first } = echPair(true);
    assert.equal(first.alert, undefined, String(first.error));
    const hrr = serverHelloOf(first);
    const last = hrr.extensions.at(-1)!;
    assert.equal(last.type, ExtensionType.encrypted_client_hello);
    assert.equal(last.data.length, 8);
    assert.ok(!zero(last.data));
  });
});

describe('RFC 8446 §5, §4.1.4: a plaintext ClientHello is read only as the second ClientHello, in a handshake record', () => {
  /** The records of a retyped copy: `type` in every header. */
  const retype = (recs: Uint8Array[], type: number) => recs.map((r) => Uint8Array.from(r, (b, i) => (i === 0 ? type : b)));

  it('after our flight, the ClientHello again in a plaintext handshake record: unexpected_message, no second ServerHello', () => {
    const { client, ch } = clientHello();
    const server = newServer();
    const first = server.start(ch, NAME, { offered: false, accepted: false });
    assert.equal(first.alert, undefined, String(first.error));
    const out = server.receive(client.hello()[0]!);
    refused(out, 'unexpected_message');
    assert.equal(out.send.length, 1, 'the alert only');
  });

  it('once connected, the same: unexpected_message', () => {
    const { client, server } = connected();
    refused(server.receive(client.hello()[0]!), 'unexpected_message');
  });

  it('waiting for the second ClientHello, that hello in a record of an unknown type (24): unexpected_message', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, withholdKeyShare: true });
    const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const server = newServer();
    const hrr = server.start(ch, NAME, { offered: false, accepted: false });
    const second = client.receive(concat(...hrr.send)).send.filter((r) => r[0] === ContentType.handshake);
    assert.equal(second.length, 1);
    const out = server.receive(retype(second, 24)[0]!);
    refused(out, 'unexpected_message');
    assert.equal(out.send.length, 1, 'no ServerHello');
  });

  it('control: the same record as a handshake record gets the ServerHello', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, withholdKeyShare: true });
    const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const server = newServer();
    const hrr = server.start(ch, NAME, { offered: false, accepted: false });
    const second = client.receive(concat(...hrr.send)).send.filter((r) => r[0] === ContentType.handshake);
    const out = server.receive(second[0]!);
    assert.equal(out.alert, undefined, String(out.error));
    assert.equal(peek(server).kind, 'expect_finished');
  });
});

describe('RFC 8446 §4.2.10: without early_data offered, nothing of type application_data is skipped before the second ClientHello', () => {
  it('an empty application_data record after HelloRetryRequest: unexpected_message (no allowance, not even for 0 bytes)', () => {
    const { ch } = clientHello({ withholdKeyShare: true });
    const server = newServer();
    assert.equal(server.start(ch, NAME, { offered: false, accepted: false }).alert, undefined);
    assert.equal(peek(server).kind, 'expect_second_client_hello');
    refused(server.receive(Uint8Array.of(ContentType.application_data, 3, 3, 0, 0)), 'unexpected_message');
  });
});
