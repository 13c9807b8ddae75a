/**
 * Mutation killers for proxy/split.ts (ECH split mode, RFC 9849 §3.1, §7.1):
 * the checks the twelfth session's Stryker run (`split` target, t12) found
 * unguarded. Each case was seen red with its mutant written into
 * dist/src/proxy/split.js by hand, green without (docs/mutation.md, "Twelfth
 * session (tests)").
 *
 * - innerHelloRecords: a hello of 2^14 − 3 … 2^14 + 4 body bytes must not go
 *   out as one record (RFC 8446 §5.1: a TLSPlaintext fragment is at most
 *   2^14 bytes, and the backend answers a longer one with record_overflow).
 *   The one-record shortcut is taken only when the handshake header and body
 *   fit (`body.length + 4 > MAX_PLAINTEXT`; the mutant `body.length - 4`
 *   sent a 2^14 + 1 … 2^14 + 8 byte record).
 * - A bad record in the same read as the hello (`rest`) ends the connection
 *   with the alert the split stream names (the `catch` around stream.push;
 *   emptied, `parts` stayed undefined and the spread threw a TypeError: the
 *   connection ended as handler_error with no alert, and the metrics counted
 *   a bug, not a client).
 * - Without a second-hello decryptor (a classifier that gives none), the
 *   bytes behind the hello still reach the backend (`[rest]`; the mutant `[]`
 *   dropped them).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import type { Classifier } from '../src/proxy/context.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { innerHelloRecords } from '../src/proxy/split.js';
import { decodeClientHelloMessage, encodeClientHello, encodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ContentType, ExtensionType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { frameHandshake } from '../src/wire/tls/record.js';
import { collect } from './backpressure.js';
import { memoryEchKey, sleep, startGateway } from './helpers.js';

/** A plain (decoded, not rebuilt) ClientHello whose body is exactly `n` bytes. */
function helloOfBody(n: number) {
  const base = { legacyVersion: 0x0303, random: new Uint8Array(32).fill(5), sessionId: new Uint8Array(0), cipherSuites: [0x1301], compressionMethods: Uint8Array.of(0) };
  const sv = { type: ExtensionType.supported_versions, data: Uint8Array.of(2, 0x03, 0x04) };
  const without = encodeClientHello({ ...base, extensions: [sv, { type: 21, data: new Uint8Array(0) }] }).length;
  const ch = { ...base, extensions: [sv, { type: 21, data: new Uint8Array(n - without) }] };
  const hello = decodeClientHelloMessage(encodeClientHelloMessage(ch));
  assert.equal(hello.raw!.length, n);
  return hello;
}

/** The records of `bytes` as [type, fragment] (a test-side reader, no limit checks of its own). */
function records(bytes: Uint8Array): { type: number; fragment: Uint8Array }[] {
  const out: { type: number; fragment: Uint8Array }[] = [];
  for (let at = 0; at < bytes.length; ) {
    const len = (bytes[at + 3]! << 8) | bytes[at + 4]!;
    out.push({ type: bytes[at]!, fragment: bytes.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

describe('split.ts innerHelloRecords: RFC 8446 §5.1, no record over 2^14 bytes', () => {
  it('a hello of 2^14 − 4 … 2^14 + 4 body bytes: every record at most 2^14, the message whole', () => {
    for (let n = MAX_PLAINTEXT - 4; n <= MAX_PLAINTEXT + 4; n++) {
      const hello = helloOfBody(n);
      const out = innerHelloRecords(hello);
      const recs = records(out);
      for (const r of recs) {
        assert.equal(r.type, ContentType.handshake);
        assert.ok(r.fragment.length <= MAX_PLAINTEXT, `body ${n}: a record of ${r.fragment.length} bytes (> 2^14)`);
      }
      const message = Buffer.concat(recs.map((r) => r.fragment));
      assert.deepEqual(new Uint8Array(message), encodeClientHelloMessage(hello), `body ${n}: the handshake message, whole`);
      assert.equal(recs.length, n + 4 <= MAX_PLAINTEXT ? 1 : 2, `body ${n}: record count`);
    }
  });
});

describe('split.ts: bytes behind the hello in the same read (`rest`)', () => {
  const k = memoryEchKey(12);
  const socks: net.Socket[] = [];
  let backend: net.Server;
  let g: Awaited<ReturnType<typeof startGateway>>;
  const accepted: ((s: net.Socket) => void)[] = [];
  let stripDecryptor = false;

  before(async () => {
    backend = net.createServer((s) => {
      s.on('error', () => {});
      socks.push(s);
      s.pause();
      accepted.shift()?.(s);
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    split: { rule: "HostSNI(\`split.example.test\`)", requireECH: true, service: b, tls: { passthrough: true, echSplit: true } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
    const ech = echClassifier(k.lookup, g.gw.metrics, { trialDecrypt: false });
    const classify: Classifier = (hello, view, ep) => {
      const c = ech(hello, view, ep);
      return stripDecryptor ? { ...c, decryptSecond: undefined } : c;
    };
    g.gw.setClassifier(classify);
  });
  after(async () => {
    for (const s of socks) s.destroy();
    await g?.close();
    backend?.close();
  });

  const outerHello = () => frameHandshake(buildEchClientHello(nodeProvider, { config: k.config, innerSni: 'split.example.test' }).outerMessage);

  /** Everything the client gets until the proxy closes. */
  function readAll(c: net.Socket): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      const timer = setTimeout(() => reject(new Error('the proxy did not close')), 20_000);
      c.on('data', (d: Buffer) => parts.push(d));
      c.once('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(parts));
      });
    });
  }

  it('a second hello that does not decode, in the same read: the alert the stream names, then close (RFC 8446 §6.2)', async () => {
    stripDecryptor = false;
    // A handshake record holding a client_hello message of 4 bytes of garbage: decode_error (50).
    const bad = Uint8Array.of(22, 3, 3, 0, 8, 1, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef);
    const c = net.connect({ port: g.port(), host: '127.0.0.1' });
    c.on('error', () => {});
    const all = readAll(c);
    c.write(Buffer.concat([outerHello(), bad]));
    const got = await all;
    assert.deepEqual([...got], [21, 3, 3, 0, 2, 2, 50], 'one fatal decode_error alert record');
  });

  it('a record over 2^14 + 256 bytes in the same read: record_overflow (RFC 8446 §5.1), then close', async () => {
    stripDecryptor = false;
    const c = net.connect({ port: g.port(), host: '127.0.0.1' });
    c.on('error', () => {});
    const all = readAll(c);
    c.write(Buffer.concat([outerHello(), Uint8Array.of(22, 3, 3, 0xff, 0xff)]));
    const got = await all;
    assert.deepEqual([...got], [21, 3, 3, 0, 2, 2, 22], 'one fatal record_overflow alert record');
  });

  it('without a second-hello decryptor, the bytes behind the hello still reach the backend', async () => {
    stripDecryptor = true;
    try {
      const tail = Buffer.from([20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 3, 0x61, 0x62, 0x63]);
      const far = new Promise<net.Socket>((r) => accepted.push(r));
      const c = net.connect({ port: g.port(), host: '127.0.0.1' });
      c.on('error', () => {});
      c.write(Buffer.concat([outerHello(), tail]));
      const b = await far;
      const first = await collect(b, (h) => 5 + h.readUInt16BE(3));
      const early = first.subarray(5 + first.readUInt16BE(3));
      const later = early.length < tail.length ? await collect(b, tail.length - early.length) : Buffer.alloc(0);
      assert.ok(Buffer.concat([early, later]).equals(tail), 'the change_cipher_spec and application_data records behind the hello, unchanged');
      c.destroy();
      await sleep(10);
    } finally {
      stripDecryptor = false;
    }
  });
});
