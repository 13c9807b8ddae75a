/**
 * Killers for the survivors of the ninth session's Stryker run over the lines the
 * eighth session changed for cost (docs/mutation.md, "Ninth session: the eighth
 * session's engine changes"; runs m9a, m9b, m9c): the server's per-verdict ECH
 * facts after establishment, failed() on a closed connection, and HPKE's
 * two-MAC key/nonce shortcut being taken for HKDF-SHA-256 only.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { hkdfExpand } from '../src/crypto/hkdf.js';
import { deriveX25519KeyPair, setupReceiver, setupSender } from '../src/crypto/hpke.js';
import { nobleProvider } from '../src/crypto/noble.js';
import { nodeProvider } from '../src/crypto/node.js';
import { echOffer } from '../src/ech/client.js';
import { EchgateError } from '../src/errors.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { type Output, TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { certFor, memoryEchKey } from './helpers.js';

const NAME = 'srv.example.test';
const c = certFor(NAME);
const cert = loadCertificate(c.cert, c.key);

function newServer() {
  return new TlsServer({
    provider: nodeProvider,
    random: (n) => nodeProvider.randomBytes(n),
    certificate: (sni) => (sni === NAME ? cert : undefined),
  });
}

/** A full handshake with the server told `verdict` about ECH; returns the server once established. */
function established(verdict: { offered: boolean; accepted: boolean }) {
  // Offered and not accepted: a real ECH offer for a config the server has no key for (it sees
  // ClientHelloOuter). Accepted: a plain TLS 1.3-only hello stands for the decrypted ClientHelloInner.
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ...(verdict.offered && !verdict.accepted ? { ech: echOffer(memoryEchKey(13).config) } : {}) });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const server = newServer();
  const first = server.start(ch, NAME, { ...verdict });
  assert.equal(first.alert, undefined, String(first.error));
  const fin = client.receive(concat(...first.send));
  assert.equal(fin.error, undefined, String(fin.error));
  const done = server.receive(concat(...fin.send));
  assert.equal(done.error, undefined, String(done.error));
  assert.equal(done.established?.ech, verdict.accepted);
  return server;
}

describe('server.ts ECH_FACTS: the verdict kept after the client Finished is the one given to start()', () => {
  // The constant table (one object per verdict, the opener dropped) must map each verdict to itself:
  // nothing reads it again today, but a wrong entry would make a later reader (a post-handshake
  // step, a log) see another verdict than the one the handshake ran with.
  for (const verdict of [
    { offered: false, accepted: false },
    { offered: true, accepted: false },
    { offered: false, accepted: true },
    { offered: true, accepted: true },
  ]) {
    it(`offered ${verdict.offered}, accepted ${verdict.accepted}`, () => {
      const server = established(verdict);
      assert.deepEqual((server as unknown as { ech: unknown }).ech, verdict);
    });
  }
});

describe('server.ts failed(): no alert on a connection already closed (RFC 8446 §6: nothing after the closing alert)', () => {
  it('a failure reported after close adds no alert record and no alert name', () => {
    const server = established({ offered: false, accepted: false });
    server.alert('close_notify');
    assert.equal(server.established, false);
    // Not reachable from receive() today (it reads nothing once closed); the guard keeps a failure
    // raised after a close from sealing a second, plaintext alert. Called directly.
    const out: Output = (server as unknown as { failed(e: unknown, o: Output): Output }).failed(
      new EchgateError('ERR_DECODE', 'late', { alert: 'decode_error' }),
      server.receive(new Uint8Array(0)),
    );
    assert.equal(out.closed, true);
    assert.equal(out.alert, undefined);
    assert.equal(out.send.length, 0);
  });
});

describe('hpke.ts key/nonce shortcut: HKDF-SHA-256 only (RFC 9180 §5.1 with the suite KDF)', () => {
  // The two-MAC shortcut is HMAC-SHA-256; a suite with HKDF-SHA-384/512 must take labeledExpand with
  // its own hash. Reference: LabeledExpand written out from RFC 9180 §4 / §5.1 over the context's
  // secret and key_schedule_context, for both providers.
  const ikm = (b: number) => new Uint8Array(32).fill(b);
  const HASH = { 1: 'sha256', 2: 'sha384', 3: 'sha512' } as const;
  const NK = { 1: 16, 2: 32, 3: 32 } as const;
  const u16 = (n: number) => Uint8Array.of(n >> 8, n & 0xff);
  const ascii = (t: string) => new TextEncoder().encode(t);
  for (const provider of [nodeProvider, nobleProvider]) {
    for (const kdfId of [1, 2, 3] as const) {
      for (const aeadId of [1, 2, 3] as const) {
        it(`${provider.name}: kdf ${kdfId} aead ${aeadId}: key and base_nonce are LabeledExpand with the suite's hash`, () => {
          const suite = { kdfId, aeadId };
          const info = Uint8Array.of(1, 2, 3);
          const skE = deriveX25519KeyPair(provider, ikm(1));
          const skR = deriveX25519KeyPair(provider, ikm(2));
          const s = setupSender(provider, suite, skR.publicKey, info, { skE });
          const r = setupReceiver(provider, suite, s.enc, skR, info);
          const inner = r as unknown as { secret: Uint8Array; ksContext: Uint8Array };
          const suiteId = concat(ascii('HPKE'), u16(0x0020), u16(kdfId), u16(aeadId));
          const expand = (label: string, L: number) =>
            hkdfExpand(nobleProvider, HASH[kdfId], inner.secret, concat(u16(L), ascii('HPKE-v1'), suiteId, ascii(label), inner.ksContext), L);
          assert.equal(inner.secret.length, { sha256: 32, sha384: 48, sha512: 64 }[HASH[kdfId]]);
          assert.deepEqual(r.key, expand('key', NK[aeadId]));
          assert.deepEqual(r.baseNonce, expand('base_nonce', 12));
        });
      }
    }
  }
});
