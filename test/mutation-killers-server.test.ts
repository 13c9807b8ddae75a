/**
 * Tests written against mutants of src/tls13/server.ts that survived (or had no
 * coverage in) the first whole StrykerJS run of the server engine
 * (`npm run mutation -- tls13-server`, docs/mutation.md, "Fifth session").
 * Each drives TlsServer in memory against TlsClient, feeds one wrong thing and
 * checks the exact outcome (the alert, what is sent, what is delivered).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { EchgateError } from '../src/errors.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import type { CipherSuite, TrafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { type Output, type ServerOptions, TlsServer } from '../src/tls13/server.js';
import { type ClientHello, decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { AlertDescription, ContentType } from '../src/wire/tls/constants.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { certFor } from './helpers.js';

const NAME = 'srv.example.test';
const c = certFor(NAME);
const cert = loadCertificate(c.cert, c.key);

interface Peek {
  kind: string;
  read: { keys: TrafficKeys; seq: number };
  write: { keys: TrafficKeys; seq: number };
  suite: CipherSuite;
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
