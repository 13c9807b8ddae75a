/**
 * TLS termination, backend → client: the process-wide buffer the records of a
 * backend read are sealed into (proxy/terminate.ts, spareSeal). It is reused
 * only once the write that carried it completed; a write still queued for a
 * slow client keeps its buffer. RFC 8446 §5.2: a record changed after it was
 * sealed does not deprotect, so the slow client would see bad_record_mac.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { Relay } from '../src/proxy/relay.js';
import { startTerminatingGateway } from './helpers.js';

const NAME = 'bulk.example.test';
const SIZE = 6 * 1024 * 1024;

/** The bytes backend connection `tag` sends: a pattern of its own, so one connection's records in another's stream are seen. */
function pattern(tag: number): Buffer {
  const b = Buffer.allocUnsafe(SIZE);
  for (let i = 0; i < SIZE; i += 4) b.writeUInt32LE((i * 2654435761 + tag * 40503) >>> 0, i);
  return b;
}

describe('RFC 8446 §5.2 terminated bulk: records sealed into the shared buffer reach each client intact', () => {
  it('two terminated connections at once, one client reading slowly (its writes queue): every byte, in order, no alert', async () => {
    const data = [pattern(1), pattern(2)];
    // The client's first byte picks the stream; 64 KiB writes so echgate reads full chunks (the sizes it keeps buffers for).
    const srv = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => {
        const src = data[d[0]! - 1]!;
        let at = 0;
        const pump = () => {
          while (at < src.length) {
            const ok = s.write(src.subarray(at, at + 65536));
            at += 65536;
            if (!ok) return void s.once('drain', pump);
          }
          s.end();
        };
        pump();
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const g = await startTerminatingGateway(NAME, (srv.address() as net.AddressInfo).port);
    const fetch = (tag: number, slow: boolean) =>
      new Promise<Buffer>((resolve, reject) => {
        const t = tls.connect({ port: g.port(), host: '127.0.0.1', servername: NAME, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
        const got: Buffer[] = [];
        let n = 0;
        let paused = false;
        t.on('data', (d: Buffer) => {
          got.push(d);
          n += d.length;
          if (slow && !paused) {
            // Stop reading for a while: the kernel's buffers fill, and echgate's last write to this
            // client stays queued (and holds its records' buffer) while the other connection runs.
            paused = true;
            t.pause();
            setTimeout(() => t.resume(), 1500);
          }
        });
        t.once('secureConnect', () => t.write(Uint8Array.of(tag)));
        t.once('end', () => resolve(Buffer.concat(got)));
        t.once('error', reject);
        setTimeout(() => reject(new Error(`timed out with ${n} bytes`)), 60_000).unref();
      });
    try {
      const slowDone = fetch(1, true);
      await new Promise((r) => setTimeout(r, 500));
      const [slow, fast] = await Promise.all([slowDone, fetch(2, false)]);
      const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
      assert.equal(slow.length, SIZE);
      assert.equal(fast.length, SIZE);
      assert.equal(digest(slow), digest(data[0]!));
      assert.equal(digest(fast), digest(data[1]!));
      assert.equal(g.gw.metrics.handlerErrors.get({ listener: 'proxy' }), 0);
    } finally {
      await g.close();
      srv.close();
    }
  });
});

describe('relay with a transform (TLS termination): backend reads need no private buffer', () => {
  it('after full 64 KiB reads, a relay whose fromBackend seals the chunk still reads into the shared buffer and holds none of its own', async () => {
    const srv = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end(Buffer.alloc(1024 * 1024, 0x61)));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    let ended = () => {};
    const done = new Promise<void>((r) => {
      ended = r;
    });
    // A client stand-in whose writes complete at once.
    const client = {
      destroyed: false,
      writableLength: 0,
      writableHighWaterMark: 1 << 30,
      write: () => true,
      once() {},
      on() {},
      removeAllListeners() {},
      pause() {},
      resume() {},
      end: () => ended(),
      destroy() {},
    } as unknown as net.Socket;
    const sizes: number[] = [];
    const views = new Set<ArrayBufferLike>();
    try {
      const relay = new Relay(client, { host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port }, {
        fromBackend: (chunk) => {
          sizes.push(chunk.length);
          views.add(chunk.buffer);
          return [Uint8Array.from(chunk)];
        },
      });
      relay.toBackend([Uint8Array.of(1)]);
      await done;
      relay.backend.destroy();
      assert.equal(
        sizes.reduce((a, b) => a + b, 0),
        1024 * 1024,
      );
      assert.ok(Math.max(...sizes) >= 16 * 1024, 'at least one read large enough to mark the connection as bulk');
      assert.equal((relay as unknown as { buf?: Uint8Array }).buf, undefined, 'no private read buffer');
      assert.equal(views.size, 1, 'every read landed in the one shared buffer');
    } finally {
      srv.close();
    }
  });
});
