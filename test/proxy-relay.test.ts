/**
 * The data path's write shaping (proxy/relay.ts writeAll) and split mode's
 * framing of ClientHelloInner (proxy/split.ts innerHelloRecords, RFC 9849
 * §7.1: the backend server gets ClientHelloInner as TLS records).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { concat } from '../src/bytes/util.js';
import { writeAll } from '../src/proxy/relay.js';
import { innerHelloRecords } from '../src/proxy/split.js';
import type { ClientHello } from '../src/wire/tls/client-hello.js';
import { HandshakeType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { frameHandshake } from '../src/wire/tls/record.js';
import { certFor, startGateway } from './helpers.js';

/** A socket stand-in that records what reaches the kernel: one entry per write, or per uncorked batch. */
function recorder() {
  const sends: Uint8Array[][] = [];
  let corked: Uint8Array[] | undefined;
  const s = {
    writableLength: 0,
    writableHighWaterMark: 16384,
    write(b: Uint8Array) {
      if (corked) corked.push(b);
      else sends.push([b]);
      return true;
    },
    cork() {
      corked = [];
    },
    uncork() {
      if (corked) sends.push(corked);
      corked = undefined;
    },
  };
  return { s: s as unknown as net.Socket, sends };
}

describe('relay: several chunks for one socket go out as one send', () => {
  it('small records (a first flight, a short backend chunk): copied into one write, bytes in order', () => {
    const { s, sends } = recorder();
    const parts = [Uint8Array.of(1, 2), Uint8Array.of(3), Uint8Array.of(4, 5, 6)];
    writeAll(s, parts);
    assert.equal(sends.length, 1);
    assert.equal(sends[0]!.length, 1);
    assert.deepEqual([...sends[0]![0]!], [1, 2, 3, 4, 5, 6]);
  });
  it('large records (a 64 KiB backend chunk sealed into four): one corked batch, no copy', () => {
    const { s, sends } = recorder();
    const parts = [0, 1, 2, 3].map((i) => new Uint8Array(MAX_PLAINTEXT + 22).fill(i));
    writeAll(s, parts);
    assert.equal(sends.length, 1);
    assert.equal(sends[0]!.length, 4);
    for (let i = 0; i < 4; i++) assert.equal(sends[0]![i], parts[i]);
  });
  it('one chunk: written as it is', () => {
    const { s, sends } = recorder();
    const one = Uint8Array.of(9);
    writeAll(s, [one]);
    assert.equal(sends[0]![0], one);
  });
});

describe('RFC 9849 §7.1 split mode: ClientHelloInner framed for the backend server', () => {
  const hello = (n: number) => ({ raw: new Uint8Array(n).map((_, i) => i * 7) }) as unknown as ClientHello;
  const reference = (h: ClientHello) => frameHandshake(encodeHandshake(HandshakeType.client_hello, h.raw!), MAX_PLAINTEXT, 0x0303);
  it('a hello that fits one record: the same bytes as the general framing', () => {
    for (const n of [40, 512, MAX_PLAINTEXT - 4]) assert.deepEqual(innerHelloRecords(hello(n)), reference(hello(n)));
  });
  it('a hello larger than one record (RFC 8446 §5.1): fragmented like the general framing', () => {
    const h = hello(MAX_PLAINTEXT + 100);
    const out = innerHelloRecords(h);
    assert.deepEqual(out, reference(h));
    assert.equal(out.length, concat(encodeHandshake(HandshakeType.client_hello, h.raw!)).length + 10);
  });
});

describe('relay through the TLS 1.3 engine, both ways at once', () => {
  it('8 MiB up and echoed back through a terminated connection: every byte, in order; outcome relayed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-relay-'));
    const c = certFor('echo.example.test');
    writeFileSync(join(dir, 'e.crt'), c.cert);
    writeFileSync(join(dir, 'e.key'), c.key);
    // An echo backend that reads late, so write buffers fill on both sides and the relay has to pause and resume.
    const srv = net.createServer((s) => {
      s.on('error', () => {});
      s.pause();
      setTimeout(() => s.pipe(s), 300);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const g = await startGateway(`
tls:
  certificates:
    - { certFile: "${join(dir, 'e.crt')}", keyFile: "${join(dir, 'e.key')}" }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    e: { rule: "HostSNI(\`echo.example.test\`)", service: s, tls: {} }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${(srv.address() as net.AddressInfo).port}" }] } } }
`);
    try {
      const up = randomBytes(8 * 1024 * 1024);
      const back = await new Promise<Buffer>((resolve, reject) => {
        const t = tls.connect({ port: g.port(), host: '127.0.0.1', servername: 'echo.example.test', rejectUnauthorized: false });
        const got: Buffer[] = [];
        let n = 0;
        t.on('data', (d: Buffer) => {
          got.push(d);
          n += d.length;
          if (n >= up.length) {
            resolve(Buffer.concat(got));
            t.end();
          }
        });
        t.once('secureConnect', () => t.write(up));
        t.once('error', reject);
        setTimeout(() => reject(new Error(`timed out with ${n} bytes back`)), 60_000).unref();
      });
      assert.equal(back.length, up.length);
      assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(up).digest('hex'));
      for (let i = 0; i < 100 && g.gw.metrics.open.get({ entrypoint: 'websecure' }) !== 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(g.gw.metrics.connections.get({ entrypoint: 'websecure', router: 'e', outcome: 'relayed' }), 1);
      assert.equal(g.gw.metrics.handlerErrors.get({ listener: 'proxy' }), 0);
    } finally {
      await g.close();
      srv.close();
    }
  });
});
