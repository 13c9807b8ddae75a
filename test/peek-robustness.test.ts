/**
 * RFC 8446 §5.1 fragmentation during the ClientHello peek: a peer may cut the
 * hello into records as small as one byte. The peek must examine each byte a
 * bounded number of times however it is cut (work counted, not timed), and
 * refuse a hello spread over more than MAX_HELLO_RECORDS records with
 * unexpected_message.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { EchgateError } from '../src/errors.js';
import { ClientHelloAssembler, frameHandshake, MAX_HELLO_RECORDS, parseHelloRecords } from '../src/wire/tls/record.js';
import { rawExchange, sleep, startGateway, vector } from './helpers.js';

const capture = vector('captures/chr-ech2a-secret-alpn.bin');
const message = parseHelloRecords(capture)!.message;

/** `message` in records: `ones` records of one byte, then one record with the rest. */
function oneByteRecords(ones: number): Uint8Array {
  const head = frameHandshake(message.subarray(0, ones), 1);
  const tail = frameHandshake(message.subarray(ones), 16384);
  return Buffer.concat([head, tail]);
}

describe('RFC 8446 §5.1: a ClientHello cut into tiny records (assembler)', () => {
  it('each byte is examined once: 1-byte records, 1-byte reads', () => {
    const bytes = frameHandshake(message, 1); // ~1,900 records, 6 bytes each
    const asm = new ClientHelloAssembler(1 << 20, Number.MAX_SAFE_INTEGER);
    let got: ReturnType<ClientHelloAssembler['push']>;
    for (let i = 0; i < bytes.length; i++) got = asm.push(bytes.subarray(i, i + 1));
    assert.deepEqual(got!.message, message);
    assert.equal(got!.records, message.length);
    // Re-parsing from the first record on every read would be ~records²/2 visits.
    assert.equal(asm.visits, bytes.length);
  });
  it('each byte is examined once: 5,000 one-byte records in 1-byte reads (work grows linearly)', () => {
    // A hello whose length says 5,000 body bytes: the work for n records is n × 6 visits.
    const big = new Uint8Array(5004);
    big.set([1, 0, 0x13, 0x88]);
    const bytes = frameHandshake(big, 1);
    const asm = new ClientHelloAssembler(1 << 20, Number.MAX_SAFE_INTEGER);
    let done = false;
    for (let i = 0; i < bytes.length; i++) done = asm.push(bytes.subarray(i, i + 1)) !== undefined || done;
    assert.ok(done);
    assert.equal(asm.visits, bytes.length);
  });
  it('whole records per read: each byte examined once too', () => {
    const bytes = frameHandshake(message, 7);
    const asm = new ClientHelloAssembler(1 << 20, Number.MAX_SAFE_INTEGER);
    let got: ReturnType<ClientHelloAssembler['push']>;
    for (let i = 0; i < bytes.length; i += 12) got = asm.push(bytes.subarray(i, i + 12));
    assert.deepEqual(got!.message, message);
    assert.equal(asm.visits, bytes.length);
  });
  it(`up to MAX_HELLO_RECORDS (${MAX_HELLO_RECORDS}) records: assembled; one more: unexpected_message`, () => {
    const ok = new ClientHelloAssembler(65536).push(oneByteRecords(MAX_HELLO_RECORDS - 1));
    assert.equal(ok?.records, MAX_HELLO_RECORDS);
    assert.deepEqual(ok?.message, message);
    assert.throws(
      () => new ClientHelloAssembler(65536).push(oneByteRecords(MAX_HELLO_RECORDS)),
      (e: EchgateError) => e.code === 'ERR_LIMIT' && e.alert === 'unexpected_message',
    );
  });
  it('the record limit applies across reads, before the hello is complete', () => {
    const asm = new ClientHelloAssembler(65536);
    const bytes = frameHandshake(message, 1);
    assert.throws(() => {
      for (let i = 0; i < bytes.length; i += 6) asm.push(bytes.subarray(i, i + 6));
    }, /more than 256 records/);
    assert.ok(asm.visits <= (MAX_HELLO_RECORDS + 1) * 6);
  });
});

describe('RFC 8446 §5.1: a ClientHello cut into tiny records (running gateway, passthrough)', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let backend: net.Server;
  const received: Buffer[] = [];
  before(async () => {
    backend = net.createServer((s) => {
      const got: Buffer[] = [];
      s.on('data', (d) => {
        got.push(d);
        if (Buffer.concat(got).length >= capture.length) {
          received.push(Buffer.concat(got));
          s.end('ok');
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 5s } }
tcp:
  routers:
    pub: { rule: "HostSNI(\`public.example.test\`)", service: b, tls: { passthrough: true } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
  });
  after(async () => {
    await g?.close();
    backend?.close();
  });

  it(`${MAX_HELLO_RECORDS} records (${MAX_HELLO_RECORDS - 1} of one byte), written one record per write: routed, the backend gets the bytes unchanged`, async () => {
    const bytes = oneByteRecords(MAX_HELLO_RECORDS - 1);
    const records: Uint8Array[] = [];
    for (let i = 0; i < MAX_HELLO_RECORDS - 1; i++) records.push(bytes.subarray(i * 6, i * 6 + 6));
    records.push(bytes.subarray((MAX_HELLO_RECORDS - 1) * 6));
    const answer = await rawExchange(g.port(), records, { timeoutMs: 5000 });
    assert.equal(answer.toString(), 'ok');
    assert.deepEqual(received.at(-1), Buffer.from(bytes));
    for (let i = 0; i < 40 && g.gw.metrics.connections.get({ entrypoint: 'websecure', router: 'pub', outcome: 'relayed' }) < 1; i++) await sleep(25);
    assert.equal(g.gw.metrics.connections.get({ entrypoint: 'websecure', router: 'pub', outcome: 'relayed' }), 1);
  });
  it('one record more: an unexpected_message alert, counted as too_many_records, nothing reaches the backend', async () => {
    const before = received.length;
    const bytes = oneByteRecords(MAX_HELLO_RECORDS);
    const answer = await rawExchange(g.port(), [bytes], { timeoutMs: 5000 });
    // RFC 8446 §6: alert record, level fatal (2), unexpected_message (10).
    assert.deepEqual([...answer.subarray(0, 7)], [21, 3, 3, 0, 2, 2, 10]);
    assert.equal(received.length, before);
    assert.equal(g.gw.metrics.peekFailures.get({ entrypoint: 'websecure', reason: 'too_many_records' }), 1);
    assert.equal(g.gw.metrics.connections.get({ entrypoint: 'websecure', router: '-', outcome: 'too_many_records' }), 1);
  });
});
