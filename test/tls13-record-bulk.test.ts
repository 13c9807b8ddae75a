/**
 * RFC 8446 §5.1–5.3 on the bulk path: the server seals all the records of one
 * backend chunk into one buffer (RecordCipher.sealAll). Each record carries at
 * most 2^14 bytes of content, the records are in order with consecutive
 * sequence numbers, and the bytes are those record-by-record sealing gives.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { CIPHER_SUITES } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ContentType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { certFor } from './helpers.js';

const NAME = 'bulk.example.test';
const c = certFor(NAME);
const cert = loadCertificate(c.cert, c.key);

/** The records in `buf`: [type, length] of each, after checking they tile it exactly. */
function records(buf: Uint8Array): [number, number][] {
  const out: [number, number][] = [];
  let at = 0;
  while (at < buf.length) {
    assert.ok(at + 5 <= buf.length, 'a record header is cut off');
    const len = (buf[at + 3]! << 8) | buf[at + 4]!;
    out.push([buf[at]!, len]);
    at += 5 + len;
  }
  assert.equal(at, buf.length, 'the last record is cut off');
  return out;
}

describe('RFC 8446 §5.2–5.3: sealAll is record-by-record sealing in one buffer', () => {
  for (const suite of CIPHER_SUITES) {
    it(`${suite.aead}: same bytes as seal() per 2^14-byte piece, for lengths around the record limit`, () => {
      const keys = () => ({ key: new Uint8Array(randomBytes(suite.keyLen)), iv: new Uint8Array(randomBytes(12)) });
      for (const n of [1, 100, MAX_PLAINTEXT - 1, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, 3 * MAX_PLAINTEXT + 7, 65536]) {
        const k = keys();
        const one = new RecordCipher(suite, { key: k.key.slice(), iv: k.iv.slice() });
        const all = new RecordCipher(suite, { key: k.key.slice(), iv: k.iv.slice() });
        // A record sealed before moves both to the same sequence number.
        one.seal(ContentType.application_data, Uint8Array.of(1));
        all.seal(ContentType.application_data, Uint8Array.of(1));
        const data = new Uint8Array(randomBytes(n));
        const pieces: Uint8Array[] = [];
        for (let i = 0; i < n; i += MAX_PLAINTEXT) pieces.push(one.seal(ContentType.application_data, data.subarray(i, i + MAX_PLAINTEXT)));
        const got = all.sealAll(ContentType.application_data, data);
        assert.deepEqual(Buffer.from(got), Buffer.from(concat(...pieces)), `length ${n}`);
        // §5.2: each record's ciphertext is content + type + tag, content ≤ 2^14.
        for (const [type, len] of records(got)) {
          assert.equal(type, ContentType.application_data);
          assert.ok(len <= MAX_PLAINTEXT + 1 + 16, `record of ${len} bytes`);
        }
        // And the next record continues the sequence (§5.3).
        assert.deepEqual(Buffer.from(all.seal(ContentType.application_data, Uint8Array.of(2))), Buffer.from(one.seal(ContentType.application_data, Uint8Array.of(2))));
      }
    });
  }

  it('empty content gives no record (and no sequence number)', () => {
    const suite = CIPHER_SUITES[0]!;
    const k = { key: new Uint8Array(16), iv: new Uint8Array(12) };
    const a = new RecordCipher(suite, { key: new Uint8Array(suite.keyLen), iv: k.iv.slice() });
    const b = new RecordCipher(suite, { key: new Uint8Array(suite.keyLen), iv: k.iv.slice() });
    assert.equal(a.sealAll(ContentType.application_data, new Uint8Array(0)).length, 0);
    assert.deepEqual(Buffer.from(a.seal(ContentType.application_data, Uint8Array.of(9))), Buffer.from(b.seal(ContentType.application_data, Uint8Array.of(9))));
  });

  it('TlsServer.encrypt: 100 000 bytes reach the client whole and in order, in records of at most 2^14 bytes', () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
    const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), ephemeral: () => nodeProvider.x25519Generate(), certificate: () => cert });
    const first = server.start(decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message), NAME, { offered: false, accepted: false });
    const fin = client.receive(concat(...first.send));
    assert.ok(fin.established);
    assert.ok(server.receive(concat(...fin.send)).established);
    const data = new Uint8Array(randomBytes(100_000));
    const out = server.encrypt(data);
    assert.equal(out.length, 1, 'one buffer for one write');
    assert.equal(records(out[0]!).length, Math.ceil(100_000 / MAX_PLAINTEXT));
    const got = client.receive(out[0]!);
    assert.deepEqual(Buffer.from(concat(...got.data)), Buffer.from(data));
    assert.deepEqual(server.encrypt(new Uint8Array(0)), []);
  });
});

describe('RFC 8446 §5.2–5.3: sealAll into a reused output buffer', () => {
  const suite = CIPHER_SUITES[0]!;
  const pair = () => {
    const k = { key: new Uint8Array(randomBytes(suite.keyLen)), iv: new Uint8Array(randomBytes(12)) };
    return [new RecordCipher(suite, { key: k.key.slice(), iv: k.iv.slice() }), new RecordCipher(suite, { key: k.key.slice(), iv: k.iv.slice() })] as const;
  };

  it('a large enough buffer receives the same records, and the result is a view of it', () => {
    const [fresh, reused] = pair();
    const into = new Uint8Array(70_000).fill(0xee);
    for (const n of [65536, 1000, 3 * MAX_PLAINTEXT + 7]) {
      const data = new Uint8Array(randomBytes(n));
      const want = fresh.sealAll(ContentType.application_data, data);
      const got = reused.sealAll(ContentType.application_data, data, into);
      assert.equal(got.buffer, into.buffer, `length ${n}: written into the given buffer`);
      assert.equal(got.byteOffset, into.byteOffset);
      assert.deepEqual(Buffer.from(got), Buffer.from(want), `length ${n}`);
    }
  });

  it('a buffer too small for the records is left alone and a new one is returned', () => {
    const [fresh, reused] = pair();
    const into = new Uint8Array(1000).fill(0xee);
    const data = new Uint8Array(randomBytes(2000));
    const got = reused.sealAll(ContentType.application_data, data, into);
    assert.notEqual(got.buffer, into.buffer);
    assert.ok(into.every((b) => b === 0xee), 'the small buffer was not written');
    assert.deepEqual(Buffer.from(got), Buffer.from(fresh.sealAll(ContentType.application_data, data)));
  });
});
