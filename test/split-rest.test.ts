/**
 * ECH split mode (RFC 9849 §3.1, proxy/split.ts) and the client's bytes that
 * arrive in the same read as its ClientHello (`rest`): a TLS 1.3 client may
 * send records right behind its hello (early data, RFC 8446 §4.2.10; a
 * middlebox-compatibility change_cipher_spec, §D.4), and TCP may cut one of
 * them anywhere. split.ts replays `rest` to the backend as it is but starts
 * its record reader (SplitClientStream) at the client's NEXT read, so when
 * `rest` ends inside a record the reader takes the middle of that record for
 * a record header: the connection ends with record_overflow, or bytes are
 * misread as records. Found by helper "bp" (2026-12-03) while writing
 * relay-backpressure.test.ts.
 *
 * split.ts now pushes `rest` through the stream before the relay starts; this
 * case failed before that ("EOF with 0 of 16300 bytes").
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { frameHandshake } from '../src/wire/tls/record.js';
import { collect } from './backpressure.js';
import { memoryEchKey, startGateway } from './helpers.js';

describe('split mode: client bytes behind the hello, in the same read (`rest`)', () => {
  const k = memoryEchKey(11);
  const socks: net.Socket[] = [];
  let backend: net.Server;
  let g: Awaited<ReturnType<typeof startGateway>>;
  const accepted: ((s: net.Socket) => void)[] = [];

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
    g.gw.setClassifier(echClassifier(k.lookup, g.gw.metrics, { trialDecrypt: false }));
  });
  after(async () => {
    for (const s of socks) s.destroy();
    await g?.close();
    backend?.close();
  });

  it(
    'a record cut at the end of the first read reaches the backend whole, and the relay goes on',
    async () => {
      // An application_data record of 16 KiB whose first 100 bytes come with the hello; its body is 0xff,
      // so a reader that starts inside it sees a record header of type 255 and length 65535.
      const body = Buffer.alloc(16384, 0xff);
      const record = Buffer.concat([Buffer.from([23, 3, 3, 0x40, 0]), body]);
      const tail = Buffer.from('after the record');
      const hello = frameHandshake(buildEchClientHello(nodeProvider, { config: k.config, innerSni: 'split.example.test' }).outerMessage);
      const far = new Promise<net.Socket>((r) => accepted.push(r));
      const c = net.connect({ port: g.port(), host: '127.0.0.1' });
      c.on('error', () => {});
      c.write(Buffer.concat([hello, record.subarray(0, 105)]));
      const b = await far;
      // The inner hello (one record) has reached the backend: the connection is relayed before the rest is sent.
      // Whether the first 105 bytes come with it (replayed as they are) or wait for the record's end (the
      // stream holds a partial record) is the stream's business; the bytes and their order are what counts.
      const first = await collect(b, (h) => 5 + h.readUInt16BE(3));
      const early = first.subarray(5 + first.readUInt16BE(3));
      c.write(Buffer.concat([record.subarray(105), tail]));
      const later = await collect(b, record.length + tail.length - early.length);
      assert.ok(Buffer.concat([early, later]).equals(Buffer.concat([record, tail])), 'the record and what follows, unchanged');
      c.destroy();
    },
  );
});
