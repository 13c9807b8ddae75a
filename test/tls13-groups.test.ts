/**
 * Key-exchange groups on the TLS 1.3 engine: X25519, secp256r1 and
 * X25519MLKEM768 (RFC 8446 §4.2.7, §4.2.8, §7.4; draft-ietf-tls-ecdhe-mlkem),
 * group selection and HelloRetryRequest (§4.1.4), the refusals of bad shares
 * on both sides, and the compatibility rules checked while reading the
 * ClientHello (Appendix D.4, D.5; RFC 9849 §7.1). Real peers: openssl
 * s_client, node:tls, curl, and echgate connect.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { p256 as nobleP256 } from '@noble/curves/nist.js';
import { x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem';
import { concat, ctEqual, fromHex } from '../src/bytes/util.js';
import { connectCommand, connectOnce, connectSpec } from '../src/cli/connect.js';
import { type Args, parseCommand } from '../src/cli/args.js';
import { mlkem768CheckEncapsulationKey, mlkem768Decapsulate, mlkem768Encapsulate, mlkem768Generate, p256, p256Generate } from '../src/crypto/kex.js';
import { nodeProvider } from '../src/crypto/node.js';
import { alertFor } from '../src/wire/tls/alert.js';
import { certificateSelector, loadCertificate } from '../src/tls13/certs.js';
import { type ClientOutput, TlsClient } from '../src/tls13/client.js';
import { DEFAULT_GROUPS, GROUPS, groupById, parseGroupName } from '../src/tls13/groups.js';
import { type KeyExchangeEvent, keyExchangeChannel, type Output, TlsServer } from '../src/tls13/server.js';
import { type ClientHello, decodeClientHelloMessage, encodeClientHello, type Extension, routingView } from '../src/wire/tls/client-hello.js';
import { ContentType, ExtensionType, HandshakeType, NamedGroup } from '../src/wire/tls/constants.js';
import { encodeKeyShares, encodeSupportedVersions, encodeU16List, type KeyShareEntry } from '../src/wire/tls/extensions.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { decodeServerHello, encodeServerHello, HRR_RANDOM } from '../src/wire/tls/server-messages.js';
import { ClientHelloAssembler } from '../src/wire/tls/record.js';
import { attachKeys, certFor, startGateway } from './helpers.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';

const run = promisify(execFile);
const { x25519: X25519, secp256r1: P256, X25519MLKEM768: HYBRID } = NamedGroup;
const HOST = 'app.example.test';
const cert = (() => {
  const c = certFor(HOST);
  return loadCertificate(c.cert, c.key);
})();

const newServer = (groups?: number[]) =>
  new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), certificate: () => cert, ...(groups ? { groups } : {}) });

const helloOf = (c: TlsClient): ClientHello => decodeClientHelloMessage(c.hello()[0]!.subarray(5));

/** A ClientHello with its extensions replaced (by type), re-encoded so `raw` matches. */
function edit(ch: ClientHello, change: { shares?: KeyShareEntry[]; groups?: number[]; versions?: number[]; legacyVersion?: number }): ClientHello {
  const exts: Extension[] = ch.extensions.map((e) => {
    if (e.type === ExtensionType.key_share && change.shares) return { type: e.type, data: encodeKeyShares(change.shares) };
    if (e.type === ExtensionType.supported_groups && change.groups) return { type: e.type, data: encodeU16List(change.groups) };
    if (e.type === ExtensionType.supported_versions && change.versions) return { type: e.type, data: encodeSupportedVersions(change.versions) };
    return e;
  });
  const out: ClientHello = { ...ch, legacyVersion: change.legacyVersion ?? ch.legacyVersion, extensions: exts };
  return { ...out, raw: encodeClientHello(out) };
}

const record = (type: number, body: Uint8Array) => concat(Uint8Array.of(type, 3, 3, body.length >> 8, body.length & 0xff), body);
const helloRecord = (ch: ClientHello) => record(ContentType.handshake, encodeHandshake(HandshakeType.client_hello, ch.raw!));

/**
 * Assert the engine refuses with alert `name`: it returns the failure in its
 * output (the alert record last in `send`), never throws for peer input.
 */
function refuses(fn: () => unknown, name: string, msg?: string): void {
  const out = fn() as { alert?: string; error?: unknown; send: Uint8Array[] };
  assert.equal(out.alert, name, `${msg ?? ''} ${(out.error as Error | undefined)?.message ?? 'no failure'}`);
  assert.equal(alertFor(out.error), name);
  const last = out.send.at(-1)!;
  // Before handshake keys the alert is a plaintext alert record; after, a protected one (type 23).
  assert.ok(last[0] === ContentType.alert || last[0] === ContentType.application_data, 'a record ends the output');
}

/** Run client ⇄ server in memory to the end of the handshake; returns both sides' results. */
function handshake(client: TlsClient, server: TlsServer) {
  const first = helloOf(client);
  let toClient = server.start(first, HOST, { offered: false, accepted: false }).send;
  let serverDone: Output['established'];
  let clientDone: ClientOutput['established'];
  for (let i = 0; i < 4 && !(serverDone && clientDone); i++) {
    const co = client.receive(concat(...toClient));
    clientDone ??= co.established;
    if (!co.send.length) break;
    const so = server.receive(concat(...co.send));
    serverDone ??= so.established;
    toClient = so.send;
  }
  assert.ok(clientDone && serverDone, 'handshake did not complete');
  // Data both ways on the new keys.
  const got = server.receive(concat(...client.encrypt(new TextEncoder().encode('ping'))));
  assert.equal(new TextDecoder().decode(got.data[0]), 'ping');
  return { client: clientDone!, server: serverDone! };
}

const LOW_ORDER_X25519 = [
  '0000000000000000000000000000000000000000000000000000000000000000', // 0
  '0100000000000000000000000000000000000000000000000000000000000000', // 1
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', // order 8
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', // order 8
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p - 1
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p (≡ 0)
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p + 1 (≡ 1)
  '0000000000000000000000000000000000000000000000000000000000000080', // 0 with the top bit set
];

describe('RFC 8446 §4.2.8 / draft-ietf-tls-ecdhe-mlkem: each group end to end on the engine', () => {
  for (const g of GROUPS.values()) {
    it(`${g.name}: echgate client ⇄ echgate server, both report the group`, () => {
      const r = handshake(new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [g.id] }), newServer([g.id]));
      assert.equal(r.server.group, g.id);
      assert.equal(r.client.group, g.id);
      assert.equal(r.client.groupName, g.name);
      assert.equal(r.client.helloRetry, false);
    });
  }

  it('share sizes: P-256 65-byte uncompressed point; X25519MLKEM768 1184+32 from the client, 1088+32 from the server', () => {
    assert.equal(groupById(P256)!.offer(nodeProvider).publicKey[0], 0x04);
    assert.equal(groupById(P256)!.offer(nodeProvider).publicKey.length, 65);
    const c = groupById(HYBRID)!.offer(nodeProvider);
    assert.equal(c.publicKey.length, 1216);
    const s = groupById(HYBRID)!.accept(nodeProvider, c.publicKey);
    assert.equal(s.share.length, 1120);
    assert.equal(s.secret.length, 64);
    assert.deepEqual(c.complete(s.share), s.secret);
  });

  it('X25519MLKEM768 layout against independent implementations: secret = ML-KEM secret || X25519 secret', () => {
    // A client built from @noble primitives directly, not from groups.ts.
    const kem = ml_kem768.keygen();
    const xsk = nobleX25519.utils.randomSecretKey();
    const share = concat(kem.publicKey, nobleX25519.getPublicKey(xsk));
    const s = groupById(HYBRID)!.accept(nodeProvider, share);
    const ss = ml_kem768.decapsulate(s.share.subarray(0, 1088), kem.secretKey);
    assert.deepEqual(s.secret, concat(ss, nobleX25519.getSharedSecret(xsk, s.share.subarray(1088))));
  });

  it('P-256 ECDH agrees with @noble/curves (the x-coordinate, RFC 8446 §7.4.2)', () => {
    const sk = nobleP256.utils.randomSecretKey();
    const mine = p256Generate();
    assert.deepEqual(p256(mine, nobleP256.getPublicKey(sk, false)), nobleP256.getSharedSecret(sk, mine.publicKey, true).subarray(1));
  });

  it('parseGroupName takes IANA, Go/Traefik and OpenSSL spellings', () => {
    assert.equal(parseGroupName('X25519'), X25519);
    assert.equal(parseGroupName('CurveP256'), P256);
    assert.equal(parseGroupName('secp256r1'), P256);
    assert.equal(parseGroupName('P-256'), P256);
    assert.equal(parseGroupName('X25519MLKEM768'), HYBRID);
    assert.equal(parseGroupName('x25519mlkem768'), HYBRID);
    assert.equal(parseGroupName('secp384r1'), undefined);
  });

  it('DEFAULT_GROUPS: X25519, then P-256; the hybrid only when configured (docs/benchmarks.md)', () => {
    assert.deepEqual(DEFAULT_GROUPS, [X25519, P256]);
  });
});

describe('RFC 8446 §4.2.8, §4.1.4: group selection in server preference order', () => {
  it('a share for a preferred group wins without HelloRetryRequest, even if the server prefers another group more', () => {
    // Go's order: the first preferred group the client sent a share for; P-256 is preferred but has no share.
    const r = handshake(new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [X25519, P256] }), newServer([P256, X25519]));
    assert.equal(r.server.group, X25519);
    assert.equal(r.client.helloRetry, false);
  });

  it('with shares for two groups the server takes its preferred one', () => {
    const c = new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [X25519, P256] });
    const ch = edit(helloOf(c), {
      shares: [
        { group: X25519, keyExchange: nodeProvider.x25519Generate().publicKey },
        { group: P256, keyExchange: p256Generate().publicKey },
      ],
    });
    const sh = newServer([P256, X25519]).start(ch, HOST, { offered: false, accepted: false }).send[0]!;
    const ks = decodeServerHello(sh.subarray(9)).extensions.find((e) => e.type === ExtensionType.key_share)!;
    assert.equal((ks.data[0]! << 8) | ks.data[1]!, P256);
  });

  it('no share for any group the server takes → HelloRetryRequest for its first preferred supported group, then that group', () => {
    const events: KeyExchangeEvent[] = [];
    const on = (m: unknown) => events.push(m as KeyExchangeEvent);
    subscribe('echgate:tls-key-exchange', on);
    try {
      const r = handshake(new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [P256, HYBRID, X25519] }), newServer([X25519, HYBRID]));
      assert.equal(r.server.group, X25519);
      assert.equal(r.client.group, X25519);
      assert.equal(r.client.helloRetry, true);
      assert.deepEqual(events, [{ group: X25519, groupName: 'x25519', helloRetry: true, ech: false }]);
    } finally {
      unsubscribe('echgate:tls-key-exchange', on);
    }
    assert.equal(keyExchangeChannel.name, 'echgate:tls-key-exchange');
  });

  it('HelloRetryRequest to the hybrid group when that is what the server takes', () => {
    const r = handshake(new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [X25519, HYBRID], withholdKeyShare: true }), newServer([HYBRID, X25519]));
    assert.equal(r.server.group, HYBRID);
    assert.equal(r.client.helloRetry, true);
  });

  it('no group in common → handshake_failure', () => {
    const ch = helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [P256] }));
    refuses(() => newServer([X25519, HYBRID]).start(ch, HOST, { offered: false, accepted: false }), 'handshake_failure');
  });

  it('§4.2.8: a key share for a group not in supported_groups → illegal_parameter', () => {
    const ch = edit(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [X25519] })), { groups: [P256] });
    refuses(() => newServer().start(ch, HOST, { offered: false, accepted: false }), 'illegal_parameter');
  });

  it('§4.2.8: two key shares for one group → illegal_parameter', () => {
    const k = nodeProvider.x25519Generate().publicKey;
    const ch = edit(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST })), { shares: [{ group: X25519, keyExchange: k }, { group: X25519, keyExchange: k }] });
    refuses(() => newServer().start(ch, HOST, { offered: false, accepted: false }), 'illegal_parameter');
  });

  describe('§4.2.8: the second ClientHello must carry exactly one share, for the group HelloRetryRequest named', () => {
    const x = () => ({ group: X25519, keyExchange: nodeProvider.x25519Generate().publicKey });
    const p = () => ({ group: P256, keyExchange: p256Generate().publicKey });
    const cases: [string, KeyShareEntry[]][] = [
      ['no share', []],
      ['a share for another group', [p()]],
      ['two shares, one of them right', [x(), p()]],
    ];
    for (const [name, shares] of cases) {
      it(`${name} → illegal_parameter`, () => {
        const ch1 = helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [X25519, P256], withholdKeyShare: true }));
        const s = newServer([X25519]);
        s.start(ch1, HOST, { offered: false, accepted: false });
        refuses(() => s.receive(helloRecord(edit(ch1, { shares }))), 'illegal_parameter');
      });
    }
    it('the right single share goes on (control)', () => {
      const ch1 = helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [X25519, P256], withholdKeyShare: true }));
      const s = newServer([X25519]);
      s.start(ch1, HOST, { offered: false, accepted: false });
      assert.ok(s.receive(helloRecord(edit(ch1, { shares: [x()] }))).send.length > 0);
    });
  });
});

describe('RFC 8446 §4.2.8.2, §7.4.2, RFC 7748 §6.1, FIPS 203 §7.2: the server refuses bad client shares with illegal_parameter', () => {
  const offer = (group: number, keyExchange: Uint8Array, groups = [group]) => {
    const ch = edit(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST, groups })), { shares: [{ group, keyExchange }] });
    return () => newServer([group]).start(ch, HOST, { offered: false, accepted: false });
  };

  for (const hex of LOW_ORDER_X25519) {
    it(`X25519 share ${hex.slice(0, 8)}… gives an all-zero secret → illegal_parameter (not internal_error)`, () => {
      refuses(offer(X25519, fromHex(hex)), 'illegal_parameter');
    });
  }
  it('X25519MLKEM768 whose X25519 half is low-order → illegal_parameter', () => {
    refuses(offer(HYBRID, concat(mlkem768Generate().publicKey, fromHex(LOW_ORDER_X25519[1]!))), 'illegal_parameter');
  });

  const good = { [X25519]: () => nodeProvider.x25519Generate().publicKey, [P256]: () => p256Generate().publicKey, [HYBRID]: () => groupById(HYBRID)!.offer(nodeProvider).publicKey };
  for (const g of GROUPS.values()) {
    it(`${g.name}: a share one byte short or one byte long → illegal_parameter`, () => {
      const k = good[g.id as keyof typeof good]();
      refuses(offer(g.id, k.subarray(0, k.length - 1)), 'illegal_parameter', 'short');
      refuses(offer(g.id, concat(k, Uint8Array.of(0))), 'illegal_parameter', 'long');
    });
  }

  it('P-256: a compressed point (33 bytes), a 65-byte share not starting with 0x04, a point off the curve → illegal_parameter', () => {
    const pt = p256Generate().publicKey;
    refuses(offer(P256, concat(Uint8Array.of(2 + (pt[64]! & 1)), pt.subarray(1, 33))), 'illegal_parameter', 'compressed');
    const hybridForm = pt.slice(0, 65);
    hybridForm[0] = 0x06;
    refuses(offer(P256, hybridForm), 'illegal_parameter', '0x06 prefix');
    const off = pt.slice(0, 65);
    off[64]! ^= 1;
    refuses(offer(P256, off), 'illegal_parameter', 'off the curve');
    refuses(offer(P256, new Uint8Array(65).fill(0, 1).fill(4, 0, 1)), 'illegal_parameter', '(0, 0)');
  });

  it('hostile bytes as a share, for every group, on both sides: a typed refusal or a handshake, never a crash', () => {
    for (const g of GROUPS.values()) {
      const size = g.id === HYBRID ? 1216 : g.id === P256 ? 65 : 32;
      // Mostly the right length (where the interesting checks are), sometimes any length.
      const bytes = fc.oneof(fc.uint8Array({ minLength: size, maxLength: size }), fc.uint8Array({ minLength: 1, maxLength: size + 2 }));
      fc.assert(
        fc.property(bytes, (k) => {
          try {
            offer(g.id, k)();
          } catch (e) {
            assert.ok(['illegal_parameter', 'decode_error'].includes(alertFor(e)), `${g.name}: ${(e as Error).message}`);
          }
          try {
            g.offer(nodeProvider).complete(k);
          } catch (e) {
            assert.equal(alertFor(e), 'illegal_parameter', `${g.name} client: ${(e as Error).message}`);
          }
        }),
        { numRuns: g.id === HYBRID ? 30 : 150 },
      );
    }
  });

  it('X25519MLKEM768: an encapsulation key failing the modulus check → illegal_parameter', () => {
    const share = groupById(HYBRID)!.offer(nodeProvider).publicKey.slice(0, 1216);
    share[0] = 0xff;
    share[1]! |= 0x0f; // first coefficient 0xfff ≥ q
    refuses(offer(HYBRID, share), 'illegal_parameter');
  });

  it('FIPS 203 §7.2 modulus check on its own: coefficient 3328 passes, 3329 fails, in either half of a byte triple', () => {
    const ek = mlkem768Generate().publicKey.slice(0, 1184);
    const set = (i: number, lo: number, hi: number) => {
      const e = ek.slice(0, 1184);
      e[3 * i] = lo & 0xff;
      e[3 * i + 1] = ((lo >> 8) & 0x0f) | ((hi & 0x0f) << 4);
      e[3 * i + 2] = hi >> 4;
      return e;
    };
    mlkem768CheckEncapsulationKey(set(0, 3328, 3328));
    assert.throws(() => mlkem768CheckEncapsulationKey(set(0, 3329, 0)), { code: 'ERR_CRYPTO_ARG' });
    assert.throws(() => mlkem768CheckEncapsulationKey(set(383, 0, 3329)), { code: 'ERR_CRYPTO_ARG' });
    // The 32-byte seed ρ at the end is not checked.
    const seed = ek.slice(0, 1184);
    seed.fill(0xff, 1152);
    mlkem768CheckEncapsulationKey(seed);
    assert.throws(() => mlkem768Encapsulate(set(0, 4095, 0)), { code: 'ERR_CRYPTO_ARG' });
    assert.throws(() => mlkem768Decapsulate(mlkem768Generate().secretKey, new Uint8Array(1087)), { code: 'ERR_CRYPTO_ARG' });
  });
});

describe('RFC 8446 §4.1.3, §4.2.8: the client refuses a bad ServerHello key share with illegal_parameter', () => {
  /** The client's first hello answered by a real server, with the ServerHello's key_share data replaced. */
  function answer(groups: number[], change: (share: Uint8Array, group: number) => { group: number; share: Uint8Array }) {
    const c = new TlsClient({ provider: nodeProvider, serverName: HOST, groups });
    const out = newServer(groups).start(helloOf(c), HOST, { offered: false, accepted: false }).send;
    const shRec = out[0]!;
    const sh = decodeServerHello(shRec.subarray(9));
    const exts = sh.extensions.map((e) => {
      if (e.type !== ExtensionType.key_share) return e;
      const n = change(e.data.subarray(4), (e.data[0]! << 8) | e.data[1]!);
      return { type: e.type, data: concat(Uint8Array.of(n.group >> 8, n.group & 0xff, n.share.length >> 8, n.share.length & 0xff), n.share) };
    });
    const rec = record(ContentType.handshake, encodeServerHello({ ...sh, extensions: exts }));
    return { client: c, feed: () => c.receive(concat(rec, ...out.slice(1))) };
  }

  it('X25519: a low-order server share → illegal_parameter, sent as the plaintext alert record', () => {
    const out = answer([X25519], (_s, group) => ({ group, share: new Uint8Array(32) })).feed();
    assert.equal(out.alert, 'illegal_parameter');
    assert.deepEqual(out.send.at(-1), Uint8Array.of(21, 3, 3, 0, 2, 2, 47));
  });
  it('P-256: a server point off the curve → illegal_parameter', () => {
    refuses(
      answer([P256], (s, group) => {
        const t = s.slice(0, 65);
        t[64]! ^= 1;
        return { group, share: t };
      }).feed,
      'illegal_parameter',
    );
  });
  it('X25519MLKEM768: a ciphertext one byte short, or a low-order X25519 half → illegal_parameter', () => {
    refuses(answer([HYBRID], (s, group) => ({ group, share: concat(s.subarray(0, 1087), s.subarray(1088)) })).feed, 'illegal_parameter', 'short');
    // One byte too many in the ciphertext part: refused for its length, before any ML-KEM work.
    const long = answer([HYBRID], (s, group) => ({ group, share: concat(s.subarray(0, 1088), Uint8Array.of(0), s.subarray(1088)) })).feed();
    assert.match(long.error?.message ?? '', /must be 1120 bytes/);
    refuses(answer([HYBRID], (s, group) => ({ group, share: concat(s.subarray(0, 1088), new Uint8Array(32)) })).feed, 'illegal_parameter', 'low order');
  });
  it('a ServerHello for a group the client sent no share for → illegal_parameter', () => {
    refuses(answer([X25519, P256], () => ({ group: P256, share: p256Generate().publicKey })).feed, 'illegal_parameter');
    // Even when the bytes would fit the share we did send (32 bytes, as X25519).
    refuses(answer([X25519, P256], () => ({ group: P256, share: nodeProvider.x25519Generate().publicKey })).feed, 'illegal_parameter');
  });
});

describe('while reading the ClientHello: RFC 8446 Appendix D.4, D.5 and RFC 9849 §7.1', () => {
  const ccsCount = (recs: Uint8Array[]) => recs.filter((r) => r[0] === ContentType.change_cipher_spec).length;

  it('Appendix D.4: one change_cipher_spec in all, right after HelloRetryRequest, none after the ServerHello that follows', () => {
    const c = new TlsClient({ provider: nodeProvider, serverName: HOST, groups: [X25519], withholdKeyShare: true });
    const s = newServer();
    const hrr = s.start(helloOf(c), HOST, { offered: false, accepted: false }).send;
    assert.equal(ccsCount(hrr), 1);
    assert.equal(hrr[1]![0], ContentType.change_cipher_spec, 'right after the HRR');
    const second = c.receive(concat(...hrr)).send;
    const flight = s.receive(concat(...second)).send;
    assert.equal(ccsCount(flight), 0);
  });

  it('Appendix D.4: without HelloRetryRequest, the one CCS follows ServerHello', () => {
    const out = newServer().start(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST })), HOST, { offered: false, accepted: false }).send;
    assert.equal(ccsCount(out), 1);
    assert.equal(out[1]![0], ContentType.change_cipher_spec);
  });

  for (const v of [0x0300, 0x0200, 0x0002]) {
    it(`Appendix D.5: ClientHello.legacy_version 0x${v.toString(16).padStart(4, '0')} → protocol_version`, () => {
      const ch = edit(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST })), { legacyVersion: v });
      refuses(() => newServer().start(ch, HOST, { offered: false, accepted: false }), 'protocol_version');
    });
  }
  it('Appendix D.5 control: legacy_version 0x0301 (as some clients send) is fine', () => {
    const ch = edit(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST })), { legacyVersion: 0x0301 });
    assert.ok(newServer().start(ch, HOST, { offered: false, accepted: false }).send.length > 0);
  });

  const accepted = { offered: true, accepted: true };
  it('RFC 9849 §7.1: with ECH accepted, an inner hello offering TLS 1.3 and 1.2 → illegal_parameter', () => {
    const ch = edit(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST })), { versions: [0x0304, 0x0303] });
    refuses(() => newServer().start(ch, HOST, accepted), 'illegal_parameter');
    // Without ECH the same hello is a normal TLS 1.3 hello.
    assert.ok(newServer().start(ch, HOST, { offered: false, accepted: false }).send.length > 0);
  });
  it('RFC 9849 §7.1: with ECH accepted, an inner hello offering only TLS 1.2 → illegal_parameter (protocol_version without ECH)', () => {
    const ch = edit(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST })), { versions: [0x0303] });
    refuses(() => newServer().start(ch, HOST, accepted), 'illegal_parameter');
    refuses(() => newServer().start(ch, HOST, { offered: false, accepted: false }), 'protocol_version');
  });
  it('RFC 9849 §7.1 control: GREASE beside TLS 1.3 in the inner hello is fine', () => {
    const ch = edit(helloOf(new TlsClient({ provider: nodeProvider, serverName: HOST })), { versions: [0x3a3a, 0x0304] });
    assert.ok(newServer().start(ch, HOST, accepted).send.length > 0);
  });
});

/** A terminating echo server on the engine with a given group preference, for real clients; records the group per connection. */
async function groupServer(groups?: number[]): Promise<{ port: number; close(): void; seen: { group: number; helloRetry: boolean }[] }> {
  const certs = [cert];
  const seen: { group: number; helloRetry: boolean }[] = [];
  const srv = net.createServer((sock) => {
    const asm = new ClientHelloAssembler(65536);
    let engine: TlsServer | undefined;
    let hrr = false;
    const flush = (o: Output) => {
      for (const r of o.send) sock.write(r);
      if (o.established) seen.push({ group: o.established.group, helloRetry: hrr });
      for (const d of o.data) {
        if (Buffer.from(d).toString('latin1', 0, 4) === 'GET ') {
          const body = 'echo:GET\n';
          for (const r of engine!.encrypt(Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`))) sock.write(r);
          sock.end(engine!.alert('close_notify'));
          return;
        }
        for (const r of engine!.encrypt(concat(Buffer.from('echo:'), d))) sock.write(r);
        // "bye…": echo, then close_notify (echgate connect waits for the close).
        if (Buffer.from(d).toString('latin1', 0, 3) === 'bye') sock.end(engine!.alert('close_notify'));
      }
      if (o.closed || o.alert) sock.end();
    };
    sock.on('error', () => {});
    sock.on('data', (d) => {
      try {
        if (engine) return flush(engine.receive(d));
        const h = asm.push(d);
        if (!h) return;
        const ch = decodeClientHelloMessage(h.message);
        engine = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), certificate: certificateSelector(certs), ...(groups ? { groups } : {}) });
        const out = engine.start(ch, routingView(ch).sni, { offered: false, accepted: false });
        // Record header (5), handshake header (4), legacy_version (2), then the random.
        hrr = ctEqual(out.send[0]!.subarray(11, 43), HRR_RANDOM);
        flush(out);
        const rest = asm.bytes().subarray(h.consumed);
        if (rest.length) flush(engine.receive(rest));
      } catch {
        sock.destroy();
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close(), seen };
}

// "bye": the server echoes it and closes; -ign_eof keeps s_client reading until then (no timing guess).
const sClient = (port: number, groups: string, extra = '') =>
  run('sh', ['-c', `printf 'bye' | timeout 10 openssl s_client -ign_eof -connect 127.0.0.1:${port} -servername ${HOST} -tls1_3 -groups ${groups} ${extra} 2>&1`]);

describe('RFC 8446 §4.2.7, §4.1.4 with real peers', () => {
  let s: Awaited<ReturnType<typeof groupServer>>;
  let x: Awaited<ReturnType<typeof groupServer>>;
  before(async () => {
    s = await groupServer();
    x = await groupServer([X25519]);
  });
  after(() => {
    s.close();
    x.close();
  });

  it('openssl s_client -groups P-256: a P-256 handshake (default preference)', async () => {
    const { stdout } = await sClient(s.port, 'P-256');
    assert.match(stdout, /Server Temp Key: ECDH, prime256v1/);
    assert.match(stdout, /echo:bye/);
    assert.deepEqual(s.seen.at(-1), { group: P256, helloRetry: false });
  });

  it('openssl s_client -groups X25519', async () => {
    const { stdout } = await sClient(s.port, 'X25519');
    assert.match(stdout, /Server Temp Key: X25519/);
    assert.match(stdout, /echo:bye/);
    assert.deepEqual(s.seen.at(-1), { group: X25519, helloRetry: false });
  });

  it('openssl s_client -groups P-256:X25519 against an X25519-only server: HelloRetryRequest, then X25519', async () => {
    const { stdout } = await sClient(x.port, 'P-256:X25519', '-msg');
    assert.equal(stdout.match(/>>> TLS 1.3, Handshake \[length [0-9a-f]+\], ClientHello/g)?.length, 2);
    assert.match(stdout, /Server Temp Key: X25519/);
    assert.match(stdout, /echo:bye/);
    assert.deepEqual(x.seen.at(-1), { group: X25519, helloRetry: true });
  });

  it('openssl s_client offering only P-256 to an X25519-only server → handshake_failure alert', async () => {
    const { stdout } = await sClient(x.port, 'P-256').catch((e: { stdout: string }) => e);
    assert.match(stdout, /alert handshake failure|alert number 40/);
  });

  it("node:tls with ecdhCurve 'P-256'", async () => {
    const got = await new Promise<{ data: string; curve: unknown }>((resolve, reject) => {
      const c = tls.connect({ port: s.port, host: '127.0.0.1', servername: HOST, rejectUnauthorized: false, ecdhCurve: 'P-256', minVersion: 'TLSv1.3' });
      c.once('secureConnect', () => {
        const curve = c.getEphemeralKeyInfo();
        c.write('node');
        c.once('data', (d) => {
          resolve({ data: d.toString(), curve });
          c.end();
        });
      });
      c.once('error', reject);
      c.setTimeout(5000, () => c.destroy(new Error('timeout')));
    });
    assert.equal(got.data, 'echo:node');
    assert.equal((got.curve as { name?: string }).name, 'prime256v1');
    assert.equal(s.seen.at(-1)?.group, P256);
  });

  it('curl --curves P-256', async () => {
    const { stdout } = await run('curl', ['-sk', '--tlsv1.3', '--http1.1', '--curves', 'P-256', '--max-time', '10', '--resolve', `${HOST}:${s.port}:127.0.0.1`, `https://${HOST}:${s.port}/`]);
    assert.match(stdout, /^echo:GET/);
    assert.equal(s.seen.at(-1)?.group, P256);
  });
});

describe('echgate connect --groups (echgate client against echgate)', () => {
  let s: Awaited<ReturnType<typeof groupServer>>;
  before(async () => {
    s = await groupServer([HYBRID, X25519, P256]);
  });
  after(() => s.close());

  it('X25519MLKEM768: connectOnce reports the group', async () => {
    const r = await connectOnce('127.0.0.1', s.port, { sni: HOST, groups: [HYBRID], send: 'bye pq' });
    assert.equal(r.error, undefined);
    assert.equal(r.group, HYBRID);
    assert.equal(r.groupName, 'X25519MLKEM768');
    assert.equal(r.reply, 'echo:bye pq');
  });

  it('the CLI: --groups p256,x25519mlkem768 --hello-retry → HelloRetryRequest for the hybrid (server preference), JSON says so', async () => {
    const lines: string[] = [];
    const rc = await connectCommand(parseCommand(connectSpec, [`127.0.0.1:${s.port}`, '--sni', HOST, '--groups', 'p256,x25519mlkem768', '--hello-retry']) as Args, (l) => lines.push(l));
    const j = JSON.parse(lines.join(''));
    assert.equal(rc, 0, lines.join(''));
    assert.equal(j.groupName, 'X25519MLKEM768');
    assert.equal(j.helloRetry, true);
  });

  it('the CLI: an unknown group name is a usage error', async () => {
    await assert.rejects(connectCommand(parseCommand(connectSpec, [`127.0.0.1:${s.port}`, '--groups', 'ffdhe2048']) as Args, () => {}), { code: 'ERR_USAGE' });
  });
});

describe('RFC 8446 §4.2.8.2 through a gateway: openssl -groups P-256 to a terminating router', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let backend: net.Server;
  let ring: Keyring;
  const keysDir = mkdtempSync(join(tmpdir(), 'echgate-kex-keys-'));
  before(async () => {
    backend = net.createServer((sock) => {
      sock.on('error', () => {});
      sock.on('data', (d) => sock.end(`backend:${d}`));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    const c = certFor(HOST);
    const dir = mkdtempSync(join(tmpdir(), 'echgate-kex-'));
    writeFileSync(join(dir, 'c.pem'), c.cert);
    writeFileSync(join(dir, 'c.key'), c.key);
    g = await startGateway(`
tls: { certificates: [{ certFile: "${join(dir, 'c.pem')}", keyFile: "${join(dir, 'c.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    app: { rule: "HostSNI(\`${HOST}\`)", service: b, tls: {} }
    public: { rule: "HostSNI(\`public.example.test\`)", service: b, tls: {} }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
    generateKey(keysDir, { publicName: 'public.example.test' });
    ring = attachKeys(g.gw, keysDir);
  });
  after(async () => {
    ring?.close();
    await g?.close();
    backend?.close();
  });

  it('P-256 handshake, data reaches the backend, the engine reports secp256r1', async () => {
    const events: KeyExchangeEvent[] = [];
    const on = (m: unknown) => events.push(m as KeyExchangeEvent);
    subscribe('echgate:tls-key-exchange', on);
    try {
      const { stdout } = await sClient(g.port(), 'P-256');
      assert.match(stdout, /Server Temp Key: ECDH, prime256v1/);
      assert.match(stdout, /backend:bye/);
    } finally {
      unsubscribe('echgate:tls-key-exchange', on);
    }
    assert.deepEqual(events, [{ group: P256, groupName: 'secp256r1', helloRetry: false, ech: false }]);
  });

  it('RFC 9849 with a P-256 key share: ECH accepted, the inner hello\'s P-256 share used', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: HOST, ech: publishedList(listKeys(keysDir).keys), groups: [P256], send: 'bye' });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.group, P256);
    assert.equal(r.reply, 'backend:bye');
  });

  it('RFC 9849 §7.1.1 with groups: ECH accepted, shares withheld, HelloRetryRequest for X25519 (first of the default preference the client lists)', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: HOST, ech: publishedList(listKeys(keysDir).keys), groups: [P256, X25519], helloRetry: true, send: 'bye' });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.helloRetry, true);
    assert.equal(r.group, X25519);
    assert.equal(r.reply, 'backend:bye');
  });

  it('echgate connect --groups x25519mlkem768 to the default preference → HelloRetryRequest is impossible, handshake_failure', async () => {
    // The default preference leaves the hybrid out: a client that supports nothing else gets handshake_failure.
    const r = await connectOnce('127.0.0.1', g.port(), { sni: HOST, groups: [HYBRID] });
    assert.equal(r.connected, false);
    assert.match(r.error ?? '', /handshake_failure/);
  });
});
