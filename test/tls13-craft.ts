/**
 * Tools for tests that talk to the TLS 1.3 engines record by record: a
 * session of our client and server driven in memory, a sealer that makes
 * protected records with any inner plaintext (padding, empty content,
 * several messages, oversize), and a check that a refusal carries the right
 * alert and that the peer can read it.
 */
import assert from 'node:assert/strict';
import { concat } from '../src/bytes/util.js';
import { AEADS } from '../src/crypto/node.js';
import { nodeProvider } from '../src/crypto/node.js';
import type { AlertName } from '../src/errors.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { type ClientOptions, TlsClient } from '../src/tls13/client.js';
import { type CipherSuite, type TrafficKeys, trafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { type Output, type ServerOptions, TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { AlertDescription, ContentType } from '../src/wire/tls/constants.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { certFor } from './helpers.js';

export const NAME = 'conf.example.test';
const c = certFor(NAME);
export const CERT = loadCertificate(c.cert, c.key);

/** Protected records with an inner plaintext of our choosing (RFC 8446 §5.2), sequence numbers from 0. */
export class Sealer {
  private seq = 0n;
  private readonly keys;
  private readonly aead;

  constructor(suite: CipherSuite, secret: Uint8Array) {
    this.keys = trafficKeys(nodeProvider, suite, secret);
    this.aead = AEADS[suite.aead];
  }

  /** One record around this exact TLSInnerPlaintext (content || type || zeros). */
  inner(inner: Uint8Array): Uint8Array {
    const len = inner.length + this.aead.tagLen;
    const header = Uint8Array.of(ContentType.application_data, 3, 3, len >> 8, len & 0xff);
    const nonce = this.keys.iv.slice();
    let s = this.seq++;
    for (let i = 11; i >= 4 && s > 0n; i--, s >>= 8n) nonce[i]! ^= Number(s & 0xffn);
    return concat(header, this.aead.seal(this.keys.key, nonce, header, inner));
  }

  seal(type: number, content: Uint8Array, padding = 0): Uint8Array {
    return this.inner(concat(content, Uint8Array.of(type), new Uint8Array(padding)));
  }

  handshake(...messages: Uint8Array[]): Uint8Array {
    return this.seal(ContentType.handshake, concat(...messages));
  }

  data(text: string | Uint8Array): Uint8Array {
    return this.seal(ContentType.application_data, typeof text === 'string' ? new TextEncoder().encode(text) : text);
  }
}

export const keyUpdate = (request: number) => encodeHandshake(24, Uint8Array.of(request));

interface ClientInside {
  kind: string;
  suite: CipherSuite;
  /** From ServerHello to the server Finished. */
  hs: { client: Uint8Array; server: Uint8Array };
  /** Once connected. */
  app: { client: Uint8Array; server: Uint8Array };
  read: { keys: TrafficKeys };
}
/**
 * The client's current state (client.ts's typed states): tests read its
 * secrets to make records the client itself would never send. Which fields
 * exist depends on `kind` (hs until the server Finished, app after).
 */
export const inside = (client: TlsClient) => (client as unknown as { state: ClientInside }).state;

export function newServer(o: Partial<ServerOptions> = {}): TlsServer {
  return new TlsServer({
    provider: nodeProvider,
    random: (n) => nodeProvider.randomBytes(n),
    ephemeral: () => nodeProvider.x25519Generate(),
    certificate: () => CERT,
    ...o,
  });
}

/** Our client and server in memory, up to the server's first flight. */
export function session(co: Partial<ClientOptions> = {}, so: Partial<ServerOptions> = {}) {
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ...co });
  const server = newServer(so);
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const first = server.start(ch, NAME, { offered: false, accepted: false });
  assert.equal(first.error, undefined);
  const s = {
    client,
    server,
    first,
    /**
     * The client reads the server flight. Returns its Finished record, the
     * Finished message, and a sealer under the client handshake key (at
     * sequence 0, i.e. in place of the Finished record).
     */
    flight() {
      // The plaintext records (ServerHello, CCS) first: then the client holds its handshake secrets, which it drops once its Finished is out.
      const plain = first.send.filter((r) => r[0] !== ContentType.application_data);
      assert.equal(client.receive(concat(...plain)).error, undefined);
      const { suite, hs } = inside(client);
      const o = client.receive(concat(...first.send.filter((r) => r[0] === ContentType.application_data)));
      assert.equal(o.error, undefined, String(o.error));
      const fin = o.send[0]!;
      const finMsg = new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.client)).open(fin.subarray(0, 5), fin.subarray(5)).content;
      return { fin, finMsg, hsSealer: () => new Sealer(suite, hs.client) };
    },
    /** A completed handshake, and a sealer under the client's application key (sequence 0). */
    connected() {
      const { fin } = s.flight();
      const o = server.receive(fin);
      assert.ok(o.established, String(o.error));
      const { suite, app } = inside(client);
      return new Sealer(suite, app.client);
    },
  };
  return s;
}

/**
 * The engine refused with `alert`: the alert record ends what it sends,
 * nothing is read after it, and (when `reader` is given) the peer reads that
 * alert from the record.
 */
export function refused(out: Output | { alert?: AlertName; send: Uint8Array[]; closed: boolean; error?: unknown }, alert: AlertName, reader?: TlsClient | ((records: Uint8Array) => { peerAlert?: number })): void {
  assert.equal(out.alert, alert, `expected ${alert}, got ${out.alert} (${String(out.error)})`);
  assert.ok(out.closed);
  assert.ok(out.send.length > 0);
  if (reader) {
    const r = typeof reader === 'function' ? reader(out.send.at(-1)!) : reader.receive(out.send.at(-1)!);
    assert.equal(r.peerAlert, AlertDescription[alert]);
  }
}
