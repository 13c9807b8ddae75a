/**
 * The server flight built from bytes prepared once (RFC 8446 §4.1.3 ServerHello,
 * §4.4.2 Certificate, §4.4.3 CertificateVerify, §4.4.4 Finished): the
 * Certificate message is encoded once per certificate chain and reused, the
 * ServerHello is written straight into its record, and the ECH confirmation
 * (RFC 9849 §7.2) hashes without forking the transcript. Each must give the
 * bytes the generic encoders give, and a cached Certificate must never be
 * another certificate's.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { type LoadedCertificate, loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { Transcript } from '../src/tls13/transcript.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ContentType, HandshakeType, ProtocolVersion } from '../src/wire/tls/constants.js';
import { parseHelloRecords, plaintextRecords } from '../src/wire/tls/record.js';
import { certificateMessage, decodeCertificate, encodeCertificate, encodeServerHello, serverHelloExtensions, serverHelloRecord } from '../src/wire/tls/server-messages.js';
import { certFor } from './helpers.js';
import { newServer } from './tls13-craft.js';

const load = (host: string): LoadedCertificate => {
  const c = certFor(host);
  return loadCertificate(c.cert, c.key);
};

/** A full handshake against `server` for `name`; the names of the leaf the client received (its CertificateVerify checked under that leaf's key). */
function leafNames(server: ReturnType<typeof newServer>, name: string): string[] {
  const client = new TlsClient({ provider: nodeProvider, serverName: name });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const first = server.start(ch, name, { offered: false, accepted: false });
  assert.equal(first.error, undefined, String(first.error));
  const o = client.receive(concat(...first.send));
  assert.equal(o.error, undefined, String(o.error));
  assert.ok(o.established, 'the client completed the handshake');
  return o.established.certificate.names;
}

describe('RFC 8446 §4.4.2: the Certificate message, encoded once per chain', () => {
  it('two certificates, then a reload: every handshake carries the certificate chosen for it, signed by its key', () => {
    const a = load('a.flight.test');
    const b = load('b.flight.test');
    let current: Record<string, LoadedCertificate> = { 'a.flight.test': a, 'b.flight.test': b };
    const opts = { certificate: (sni: string | undefined) => current[sni!] };
    assert.deepEqual(leafNames(newServer(opts), 'a.flight.test'), ['a.flight.test']);
    assert.deepEqual(leafNames(newServer(opts), 'b.flight.test'), ['b.flight.test']);
    assert.deepEqual(leafNames(newServer(opts), 'a.flight.test'), ['a.flight.test']);
    // A reload: new certificate objects for the same server name (here another certificate and key).
    current = { 'a.flight.test': load('c.flight.test'), 'b.flight.test': b };
    assert.deepEqual(leafNames(newServer(opts), 'a.flight.test'), ['c.flight.test']);
    assert.deepEqual(leafNames(newServer(opts), 'b.flight.test'), ['b.flight.test']);
  });

  it('the cached message is the generic encoding of that chain, and one object per chain', () => {
    const a = load('a.flight.test');
    const b = load('b.flight.test');
    assert.deepEqual(certificateMessage(a.chain), encodeCertificate(a.chain));
    assert.deepEqual(certificateMessage(b.chain), encodeCertificate(b.chain));
    assert.equal(certificateMessage(a.chain), certificateMessage(a.chain));
    assert.equal(certificateMessage(a.chain)[0], HandshakeType.certificate);
    assert.deepEqual(decodeCertificate(certificateMessage(b.chain).subarray(4)), b.chain);
  });
});

describe('RFC 8446 §4.1.3, §5.1: ServerHello written straight into its record', () => {
  const random = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
  for (const [group, len] of [
    [0x001d, 32],
    [0x0017, 65],
    [0x11ec, 1120],
  ] as const) {
    for (const sid of [0, 32]) {
      it(`group 0x${group.toString(16)}, a ${len}-byte share, a ${sid}-byte session id: the bytes of the generic encoder`, () => {
        const share = Uint8Array.from({ length: len }, (_, i) => (i * 7) & 0xff);
        const sessionId = Uint8Array.from({ length: sid }, (_, i) => 0xa0 + i);
        const generic = encodeServerHello({ random, sessionIdEcho: sessionId, cipherSuite: 0x1302, extensions: serverHelloExtensions(ProtocolVersion.TLS13, { group, key: share }) });
        const { record, message } = serverHelloRecord(random, sessionId, 0x1302, group, share, ProtocolVersion.TLS13);
        assert.deepEqual(message, generic);
        const recs = plaintextRecords(ContentType.handshake, generic);
        assert.equal(recs.length, 1);
        assert.deepEqual(record, recs[0]);
        // The message is a view of the record: what is set through it (the ECH confirmation) is sent.
        assert.equal(message.buffer, record.buffer);
        assert.equal(message.byteOffset, record.byteOffset + 5);
      });
    }
  }

  it('a random that is not 32 bytes, or a session id over 32 bytes, is refused (ERR_ENCODE)', () => {
    assert.throws(() => serverHelloRecord(new Uint8Array(31), new Uint8Array(0), 0x1301, 0x1d, new Uint8Array(32), ProtocolVersion.TLS13), { code: 'ERR_ENCODE' });
    assert.throws(() => serverHelloRecord(random, new Uint8Array(33), 0x1301, 0x1d, new Uint8Array(32), ProtocolVersion.TLS13), { code: 'ERR_ENCODE' });
    assert.throws(() => serverHelloRecord(random, new Uint8Array(0), 0x1301, 0x1d, new Uint8Array(1 << 14), ProtocolVersion.TLS13), { code: 'ERR_ENCODE' });
  });
});

describe('RFC 9849 §7.2: the confirmation hash, without forking the transcript', () => {
  it('Hash(transcript .. message with 8 bytes zeroed), and the transcript itself unchanged by it', () => {
    const msgs = [Uint8Array.from({ length: 700 }, (_, i) => i & 0xff), Uint8Array.from({ length: 90 }, (_, i) => 255 - i)];
    const sh = Uint8Array.from({ length: 122 }, (_, i) => (i * 3) & 0xff);
    const t = new Transcript(nodeProvider, 'sha256');
    for (const m of msgs) t.add(m);
    const zeroed = sh.slice();
    zeroed.fill(0, 30, 38);
    const got = t.hashWithZeroed(sh, 30, 8);
    assert.deepEqual(got, nodeProvider.hash('sha256', concat(...msgs, zeroed)));
    // The zeroed copy is not part of the transcript, and the next message replaces it.
    assert.deepEqual(t.hash(), nodeProvider.hash('sha256', concat(...msgs)));
    t.add(sh);
    assert.deepEqual(t.hash(), nodeProvider.hash('sha256', concat(...msgs, sh)));
    // The caller's message is untouched.
    assert.notDeepEqual(sh.subarray(30, 38), new Uint8Array(8));
  });

  it('past the transcript buffer\'s room: it grows, and what was there stays', () => {
    const t = new Transcript(nodeProvider, 'sha384');
    const first = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
    t.add(first);
    const big = Uint8Array.from({ length: 3000 }, (_, i) => (i * 5) & 0xff);
    const zeroed = big.slice();
    zeroed.fill(0, 100, 108);
    assert.deepEqual(t.hashWithZeroed(big, 100, 8), nodeProvider.hash('sha384', concat(first, zeroed)));
    assert.deepEqual(t.hash(), nodeProvider.hash('sha384', first));
  });
});
