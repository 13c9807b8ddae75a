/**
 * Forged handshakes: for each verification the engines make, on both sides,
 * the forged message is refused with the alert RFC 8446 / RFC 9849 name, and
 * the other side can read that alert. An untouched handshake is the control.
 * Remove any one of these checks from server.ts or client.ts and a test here fails.
 */
import { echOffer } from '../src/ech/client.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { decryptEch, decryptSecondHello } from '../src/ech/server.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { type ClientOptions, TlsClient } from '../src/tls13/client.js';
import { ECH_CONFIRMATION_AT } from '../src/tls13/ech-confirm.js';
import { trafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import type { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { AlertDescription, ContentType, ExtensionType, HandshakeType } from '../src/wire/tls/constants.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { caAndLeaf, memoryEchKey } from './helpers.js';
import { inside, NAME, newServer, refused, Sealer, session } from './tls13-craft.js';

/** Split handshake record content into messages (header included). */
function messages(content: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < content.length; ) {
    const len = (content[i + 1]! << 16) | (content[i + 2]! << 8) | content[i + 3]!;
    out.push(content.subarray(i, i + 4 + len));
    i += 4 + len;
  }
  return out;
}

/**
 * Give the client the server's plaintext records (ServerHello, CCS), then
 * open the encrypted flight with the server handshake key, let `edit` change
 * its messages, seal them again and feed them. Returns the client's output.
 */
function forgeFlight(client: TlsClient, flight: Uint8Array[], edit: (msgs: Uint8Array[]) => Uint8Array[]) {
  const plain = flight.filter((r) => r[0] !== ContentType.application_data);
  const sealed = flight.filter((r) => r[0] === ContentType.application_data);
  const o = client.receive(concat(...plain));
  assert.equal(o.error, undefined, String(o.error));
  const { suite, hs } = inside(client);
  const opener = new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.server));
  const content = concat(...sealed.map((r) => opener.open(r.subarray(0, 5), r.subarray(5)).content));
  return client.receive(new Sealer(suite, hs.server).handshake(...edit(messages(content))));
}

/** The server reads the client's alert record. */
const serverReads = (server: TlsServer) => (record: Uint8Array) => server.receive(record);

describe('forged client messages, server side', () => {
  it('RFC 8446 §4.4.4: a forged client Finished → decrypt_error', () => {
    const s = session();
    const { finMsg, hsSealer } = s.flight();
    const forged = finMsg.slice();
    forged[forged.length - 1]! ^= 0x80;
    refused(s.server.receive(hsSealer().handshake(forged)), 'decrypt_error', s.client);
  });

  it('RFC 8446 §4.4.4: the genuine client Finished (control) completes the handshake', () => {
    const s = session();
    const { fin } = s.flight();
    assert.ok(s.server.receive(fin).established);
  });

  it('RFC 8446 §5.2: a tampered client record → bad_record_mac', () => {
    const s = session();
    const { fin } = s.flight();
    const t = fin.slice();
    t[8]! ^= 1;
    refused(s.server.receive(t), 'bad_record_mac', s.client);
  });
});

describe('forged server messages, client side', () => {
  it('control: the untouched flight is accepted', () => {
    const s = session();
    const o = forgeFlight(s.client, s.first.send, (m) => m);
    assert.ok(o.established, String(o.error));
  });

  it('RFC 8446 §4.4.4: a forged server Finished → decrypt_error', () => {
    const s = session();
    const o = forgeFlight(s.client, s.first.send, (m) => {
      const fin = m.at(-1)!.slice();
      fin[6]! ^= 1;
      return [...m.slice(0, -1), fin];
    });
    refused(o, 'decrypt_error', serverReads(s.server));
    assert.equal(o.established, undefined);
  });

  it('RFC 8446 §4.4.4: a server Finished of the wrong length → decode_error', () => {
    const s = session();
    const o = forgeFlight(s.client, s.first.send, (m) => [...m.slice(0, -1), encodeHandshake(HandshakeType.finished, m.at(-1)!.subarray(4, 20))]);
    refused(o, 'decode_error', serverReads(s.server));
  });

  /** CertificateVerify = scheme(2) || vec16 signature. */
  const editCv = (m: Uint8Array[], f: (body: Uint8Array) => Uint8Array) =>
    m.map((x) => (x[0] === HandshakeType.certificate_verify ? encodeHandshake(HandshakeType.certificate_verify, f(x.slice(4))) : x));

  it('RFC 8446 §4.4.3: a forged CertificateVerify signature → decrypt_error', () => {
    const s = session();
    const o = forgeFlight(s.client, s.first.send, (m) =>
      editCv(m, (b) => {
        b[b.length - 3]! ^= 1;
        return b;
      }),
    );
    refused(o, 'decrypt_error', serverReads(s.server));
    assert.match(String(o.error), /CertificateVerify/);
  });

  it('RFC 8446 §4.4.3: a CertificateVerify signed over another transcript → decrypt_error', () => {
    // The server signs a transcript the client did not see: a server flight with an EncryptedExtensions changed after signing.
    const s = session();
    const o = forgeFlight(s.client, s.first.send, (m) => m.map((x) => (x[0] === HandshakeType.encrypted_extensions ? encodeHandshake(HandshakeType.encrypted_extensions, Uint8Array.of(0, 4, 0xfa, 0xfa, 0, 0)) : x)));
    refused(o, 'decrypt_error', serverReads(s.server));
  });

  it('RFC 8446 §4.4.3: a CertificateVerify scheme we did not offer (rsa_pkcs1_sha256) → illegal_parameter', () => {
    const s = session();
    const o = forgeFlight(s.client, s.first.send, (m) => editCv(m, (b) => concat(Uint8Array.of(0x04, 0x01), b.subarray(2))));
    refused(o, 'illegal_parameter', serverReads(s.server));
  });

  for (const [name, scheme] of [
    ['ecdsa_secp384r1_sha384 (wrong curve)', 0x0503],
    ['rsa_pss_rsae_sha256 (wrong key type)', 0x0804],
    ['ed25519 (wrong key type)', 0x0807],
  ] as const) {
    it(`RFC 8446 §4.2.3: a CertificateVerify scheme that does not fit the P-256 key, ${name} → illegal_parameter`, () => {
      const s = session();
      const o = forgeFlight(s.client, s.first.send, (m) => editCv(m, (b) => concat(Uint8Array.of(scheme >> 8, scheme & 0xff), b.subarray(2))));
      refused(o, 'illegal_parameter', serverReads(s.server));
    });
  }

  it('RFC 8446 §5.2: a tampered server record → bad_record_mac', () => {
    const s = session();
    const t = s.first.send.map((r) => r.slice());
    const enc = t.find((r) => r[0] === ContentType.application_data)!;
    enc[enc.length - 1]! ^= 1;
    const o = s.client.receive(concat(...t));
    refused(o, 'bad_record_mac', serverReads(s.server));
  });
});

describe('RFC 8446 §6.2 certificate checks with a CA (client side)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-forge-'));
  const ca = caAndLeaf(dir, [NAME]);
  const signed = loadCertificate(readFileSync(join(dir, 'server.pem'), 'utf8'), readFileSync(join(dir, 'server.key'), 'utf8'));
  const withCa = (serverName: string, caPem = ca) => {
    const client = new TlsClient({ provider: nodeProvider, serverName, ca: caPem });
    const server = newServer({ certificate: () => signed });
    const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
    const first = server.start(ch, serverName, { offered: false, accepted: false });
    return { client, server, out: client.receive(concat(...first.send)) };
  };

  it('control: the CA-signed certificate for the name verifies', () => {
    const { out } = withCa(NAME);
    assert.equal(out.established?.certificateVerified, true, String(out.error));
  });

  it('a certificate that does not match the server name → certificate_unknown', () => {
    // §6.2: bad_certificate is for a corrupt certificate or one whose signatures do not verify; this one is
    // intact and from our CA, only not for this name: "some other issue ... rendering it unacceptable".
    const { out, server } = withCa('other.example.test');
    refused(out, 'certificate_unknown', serverReads(server));
  });

  it('a certificate not signed by the given CA → unknown_ca', () => {
    const other = mkdtempSync(join(tmpdir(), 'echgate-forge2-'));
    const { out, server } = withCa(NAME, caAndLeaf(other, [NAME]));
    refused(out, 'unknown_ca', serverReads(server));
  });
});

describe('RFC 9849 §6.1.4 ECH acceptance confirmation (client side)', () => {
  const { config, lookup } = memoryEchKey(7);
  const echSession = (co: Partial<ClientOptions> = {}) => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ech: echOffer(config), ...co });
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message), lookup);
    assert.equal(r.status, 'accepted');
    if (r.status !== 'accepted') throw new Error('unreachable');
    const server = newServer();
    const first = server.start(r.inner, NAME, { offered: true, accepted: true, decryptSecond: (o) => decryptSecondHello(r, o) });
    return { client, server, first };
  };
  const verdict = (c: TlsClient) => c.ech;

  it('control: a genuine confirmation in ServerHello means accepted', () => {
    const { client, first } = echSession();
    const o = client.receive(concat(...first.send));
    assert.equal(o.established?.ech, 'accepted', String(o.error));
  });

  it('a wrong confirmation in ServerHello.random: ECH counts as rejected, so the inner handshake cannot complete (bad_record_mac)', () => {
    const { client, server, first } = echSession();
    const sh = first.send[0]!.slice();
    sh[5 + ECH_CONFIRMATION_AT + 7]! ^= 1;
    const o = client.receive(concat(sh, ...first.send.slice(1)));
    assert.equal(verdict(client), 'rejected');
    assert.equal(o.established, undefined);
    // The client keyed itself for the outer hello; the server's records are under the inner one's keys.
    refused(o, 'bad_record_mac');
    void server;
  });

  it('control: a genuine confirmation in HelloRetryRequest, then in ServerHello, means accepted', () => {
    const { client, server, first } = echSession({ withholdKeyShare: true });
    const ch2 = client.receive(concat(...first.send));
    assert.equal(ch2.error, undefined, String(ch2.error));
    const o = client.receive(concat(...server.receive(concat(...ch2.send)).send));
    assert.equal(o.established?.ech, 'accepted', String(o.error));
  });

  /** The HelloRetryRequest's encrypted_client_hello extension payload: its 8 bytes end the message (we put it last). */
  const hrrConfirmationAt = (rec: Uint8Array) => rec.length - 8;

  it('a wrong confirmation in HelloRetryRequest: ECH counts as rejected; the client goes on with the outer hello and never reports acceptance', () => {
    const { client, server, first } = echSession({ withholdKeyShare: true });
    const hrr = first.send[0]!.slice();
    const at = hrrConfirmationAt(hrr);
    assert.equal((hrr[at - 4]! << 8) | hrr[at - 3]!, ExtensionType.encrypted_client_hello);
    hrr[at]! ^= 1;
    const ch2 = client.receive(concat(hrr, ...first.send.slice(1)));
    assert.equal(ch2.error, undefined);
    const o = client.receive(concat(...server.receive(concat(...ch2.send)).send));
    assert.equal(o.established, undefined);
    assert.notEqual(verdict(client), 'accepted');
    assert.ok(o.alert, 'the client fails the handshake');
  });

  it('a HelloRetryRequest confirmation that is not 8 bytes → decode_error', () => {
    const { client, first } = echSession({ withholdKeyShare: true });
    const rec = first.send[0]!;
    // Drop the last confirmation byte and fix the three lengths around it (record, handshake, extensions block, extension).
    const body = rec.slice(5, rec.length - 1);
    const msgLen = body.length - 4;
    body[1] = msgLen >> 16;
    body[2] = (msgLen >> 8) & 0xff;
    body[3] = msgLen & 0xff;
    const extLenAt = body.length - 7 - 2;
    body[extLenAt] = 0;
    body[extLenAt + 1] = 7;
    // extensions block length: it sits after random(32), session id, suite(2), compression(1).
    const sidLen = body[4 + 2 + 32]!;
    const blockAt = 4 + 2 + 32 + 1 + sidLen + 2 + 1;
    const block = ((body[blockAt]! << 8) | body[blockAt + 1]!) - 1;
    body[blockAt] = block >> 8;
    body[blockAt + 1] = block & 0xff;
    const forged = concat(Uint8Array.of(22, 3, 3, body.length >> 8, body.length & 0xff), body);
    const o = client.receive(forged);
    refused(o, 'decode_error');
    assert.equal(o.send.at(-1)![0], ContentType.alert, 'plaintext alert: no keys yet');
  });

  it('RFC 9849 §6.1.5: ECH accepted in HelloRetryRequest but not confirmed in ServerHello → illegal_parameter', () => {
    const { client, server, first } = echSession({ withholdKeyShare: true });
    const ch2 = client.receive(concat(...first.send));
    const flight = server.receive(concat(...ch2.send)).send.map((r) => r.slice());
    flight[0]![5 + ECH_CONFIRMATION_AT]! ^= 1;
    const o = client.receive(concat(...flight));
    refused(o, 'illegal_parameter');
    assert.equal(o.peerAlert, undefined);
  });
});

void AlertDescription;
