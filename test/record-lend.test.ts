/**
 * RFC 8446 §5.1–5.2 on the upload path: a protected record that spans reads
 * is put together in one buffer shared by the process (RecordReader with
 * `lendProtected`, ByteQueue.take's scratch) instead of a new array per
 * record. Only application_data records are lent (a handshake fragment may be
 * kept by the caller), the lent view is overwritten by the next spanning
 * record, and what the server hands to the backend never aliases it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { TlsServer } from '../src/tls13/server.js';
import { ByteQueue } from '../src/wire/tls/byte-queue.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ContentType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { MAX_CIPHERTEXT, parseHelloRecords, RecordReader, recordHeader } from '../src/wire/tls/record.js';
import { certFor } from './helpers.js';

/** A record of `type` with `len` fragment bytes, each `fill`. */
const record = (type: number, len: number, fill: number) => concat(recordHeader(type, len), new Uint8Array(len).fill(fill));

describe('ByteQueue.take with a scratch buffer', () => {
  it('bytes spanning chunks are copied into the scratch (a view of it); bytes inside one chunk stay a view of that chunk', () => {
    const q = new ByteQueue();
    const a = Uint8Array.of(1, 2, 3);
    const b = Uint8Array.of(4, 5, 6);
    q.push(a);
    q.push(b);
    const scratch = new Uint8Array(8).fill(0xee);
    const one = q.take(2, scratch);
    assert.equal(one.buffer, a.buffer, 'inside the first chunk: a view of it');
    const span = q.take(3, scratch);
    assert.deepEqual([...span], [3, 4, 5]);
    assert.equal(span.buffer, scratch.buffer, 'spanning: written into the scratch');
    assert.equal(span.byteOffset, scratch.byteOffset);
    assert.equal(q.length, 1);
  });

  it('a scratch too small for the bytes is not used: a new array', () => {
    const q = new ByteQueue();
    q.push(Uint8Array.of(1, 2));
    q.push(Uint8Array.of(3, 4));
    const scratch = new Uint8Array(3);
    const span = q.take(4, scratch);
    assert.deepEqual([...span], [1, 2, 3, 4]);
    assert.notEqual(span.buffer, scratch.buffer);
  });
});

describe('RecordReader lendProtected', () => {
  it('an application_data record spanning reads is lent (the next one overwrites it); a handshake record is not', () => {
    const r = new RecordReader(true);
    const hs = record(ContentType.handshake, 100, 0x11);
    const app1 = record(ContentType.application_data, 300, 0x22);
    const app2 = record(ContentType.application_data, 300, 0x33);
    const all = concat(hs, app1, app2);
    // Cut every record in two: each spans two reads.
    const cuts = [0, 50, 105 + 150, 105 + 305 + 150, all.length];
    const got: Uint8Array[] = [];
    for (let i = 1; i < cuts.length; i++) {
      r.push(all.slice(cuts[i - 1], cuts[i]));
      for (let rec = r.next(); rec; rec = r.next()) got.push(rec.bytes);
    }
    assert.equal(got.length, 3);
    // The handshake record was copied into an array of its own: still intact after two lent records.
    assert.deepEqual(Buffer.from(got[0]!), Buffer.from(hs));
    // The two application_data records were lent the same buffer: the first now shows the second.
    assert.equal(got[1]!.buffer, got[2]!.buffer);
    assert.deepEqual(Buffer.from(got[1]!), Buffer.from(app2));
    assert.deepEqual(Buffer.from(got[2]!), Buffer.from(app2));
  });

  it('without lendProtected every spanning record has an array of its own', () => {
    const r = new RecordReader();
    const a = record(ContentType.application_data, 300, 0x22);
    const b = record(ContentType.application_data, 300, 0x33);
    const all = concat(a, b);
    const got: Uint8Array[] = [];
    for (const [s, e] of [
      [0, 150],
      [150, 455],
      [455, all.length],
    ] as const) {
      r.push(all.slice(s, e));
      for (let rec = r.next(); rec; rec = r.next()) got.push(rec.bytes);
    }
    assert.deepEqual(Buffer.from(got[0]!), Buffer.from(a));
    assert.deepEqual(Buffer.from(got[1]!), Buffer.from(b));
  });

  it('the largest record §5.2 allows (2^14 + 256 bytes of fragment) is put together whole when it spans reads', () => {
    const r = new RecordReader(true);
    const big = concat(recordHeader(ContentType.application_data, MAX_CIPHERTEXT), new Uint8Array(randomBytes(MAX_CIPHERTEXT)));
    r.push(big.slice(0, 7000));
    assert.equal(r.next(), undefined);
    r.push(big.slice(7000));
    const rec = r.next()!;
    assert.deepEqual(Buffer.from(rec.bytes), Buffer.from(big));
    assert.equal(rec.fragment.length, MAX_CIPHERTEXT);
  });
});

describe('TlsServer: protected records across reads reach the backend whole and in order', () => {
  const NAME = 'lend.example.test';
  const c = certFor(NAME);
  const cert = loadCertificate(c.cert, c.key);

  for (const readSize of [1000, 16_411, 65_536, 7]) {
    it(`full and short records cut into reads of ${readSize} bytes: the plaintext is what the client sent, never a view of the shared buffer`, () => {
      const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
      const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), ephemeral: () => nodeProvider.x25519Generate(), certificate: () => cert });
      const first = server.start(decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message), NAME, { offered: false, accepted: false });
      const fin = client.receive(concat(...first.send));
      assert.ok(server.receive(concat(...fin.send)).established);
      const data = new Uint8Array(randomBytes(readSize === 7 ? 40_000 : 5 * MAX_PLAINTEXT + 123));
      const wire = concat(...client.encrypt(data));
      const got: Uint8Array[] = [];
      for (let i = 0; i < wire.length; i += readSize) {
        const out = server.receive(wire.slice(i, i + readSize));
        assert.equal(out.error, undefined);
        got.push(...out.data);
      }
      // Compared only after every read: a plaintext that aliased the reassembly buffer would have changed.
      assert.deepEqual(Buffer.from(concat(...got)), Buffer.from(data));
    });
  }
});
