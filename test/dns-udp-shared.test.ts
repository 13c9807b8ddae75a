/**
 * UDP replies from the answer cache's own octets (src/dns/dns-server.ts,
 * answer-cache.ts `cachedAnswer` with `shared`): a cached answer is patched
 * in place (ID, RD) and sent without a copy only while nothing waits in the
 * socket's send queue. A send that is queued keeps its buffer until it goes
 * out, so while the queue is not empty every reply must be a buffer of its
 * own: patching the shared one for the next query would change a reply that
 * has not been sent yet (its ID would be another query's).
 *
 * A full send queue cannot be made on loopback (the kernel hands the datagram
 * to the receiver at once), so the socket's queue count is stubbed; `send`
 * is wrapped to record what each reply's buffer held when it was handed over,
 * then sends it for real.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, afterEach, before, describe, it } from 'node:test';
import { type DnsServer, startDnsServer } from '../src/dns/dns-server.js';
import { Zone } from '../src/dns/zone.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';

const zone = new Zone({ ttl: 30, names: { 'app.example.test': { a: ['127.0.0.1'] } } }, () => undefined);

type Sent = { buf: Uint8Array; asHanded: Uint8Array };
const proto = dgram.Socket.prototype as unknown as { send: (...a: unknown[]) => void; getSendQueueCount: () => number };
const realSend = proto.send;
const realCount = proto.getSendQueueCount;

describe('UDP replies from the answer cache', () => {
  let srv: DnsServer;
  let client: dgram.Socket;
  let sent: Sent[] = [];
  let queued = 0;
  before(async () => {
    srv = await startDnsServer({ host: '127.0.0.1', port: 0, zone: () => zone });
    client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
    // Only the server's replies are recorded (the client sends with a callback, the server never does).
    proto.send = function (this: dgram.Socket, ...a: unknown[]) {
      if (a[0] instanceof Uint8Array && typeof a.at(-1) !== 'function') sent.push({ buf: a[0], asHanded: Uint8Array.from(a[0]) });
      return realSend.apply(this, a);
    };
    proto.getSendQueueCount = () => queued;
  });
  afterEach(() => {
    sent = [];
  });
  after(() => {
    proto.send = realSend;
    proto.getSendQueueCount = realCount;
    client.close();
    return srv.close();
  });

  const ask = (id: number) =>
    new Promise<Uint8Array>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no reply')), 2000);
      client.once('message', (m) => {
        clearTimeout(t);
        resolve(m);
      });
      client.send(encodeQuery('app.example.test', RRType.A, { id }), srv.port, '127.0.0.1', () => {});
    });

  it('while a send is queued, each reply is a buffer of its own: a later query never rewrites an earlier reply', async () => {
    queued = 1;
    const ids = [0x1111, 0x2222, 0x3333];
    for (const id of ids) assert.equal(decodeMessage(await ask(id)).id, id);
    assert.equal(sent.length, 3);
    // The 2nd and 3rd come from the cache; what each send was handed is unchanged after the next query.
    sent.forEach((s, i) => {
      assert.deepEqual(Uint8Array.from(s.buf), s.asHanded, `reply ${i} changed after it was handed to send()`);
      assert.equal(decodeMessage(s.buf).id, ids[i]);
    });
  });

  it('with nothing queued, cache hits go out from the cache\'s own octets, patched for each query', async () => {
    queued = 0;
    await ask(0x4444); // answered in full (or from the cache) and kept
    const a = await ask(0x5555);
    const b = await ask(0x6666);
    assert.equal(decodeMessage(a).id, 0x5555);
    assert.equal(decodeMessage(b).id, 0x6666);
    assert.equal(sent.length, 3);
    assert.equal(sent[1]!.buf, sent[2]!.buf, 'one buffer, no copy per hit');
    assert.equal(decodeMessage(sent[1]!.asHanded).id, 0x5555);
    assert.equal(decodeMessage(sent[2]!.asHanded).id, 0x6666);
  });
});
