/**
 * What TLS termination costs per connection that is ours to keep small
 * (docs/benchmarks.md, "Termination cost, sixth pass"): the server's first
 * flight leaves in one socket write (separate writes were a quarter of a
 * handshake's CPU in an earlier profile). No timing is measured here: this is
 * the property the benchmarks rest on.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { startTerminatingGateway } from './helpers.js';

const NAME = 'flight.example.test';

/** The content types of the complete records in `b` (RFC 8446 §5.1 framing); a partial record at the end is an error. */
function recordTypes(b: Buffer): number[] {
  const types: number[] = [];
  let at = 0;
  while (at < b.length) {
    assert.ok(at + 5 <= b.length, 'a record header cut by the write');
    const len = b.readUInt16BE(at + 3);
    assert.ok(at + 5 + len <= b.length, 'a record cut by the write');
    types.push(b[at]!);
    at += 5 + len;
  }
  return types;
}

describe('TLS termination: the first flight is one socket write (RFC 8446 §4.1.3, §5)', () => {
  it('ServerHello, the compatibility change_cipher_spec and every protected handshake record go out in the first write, before the client answers', async () => {
    const backend = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end('y'));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    const g = await startTerminatingGateway(NAME, (backend.address() as net.AddressInfo).port);
    // Every write echgate makes on an accepted socket of this entry point, in order (the gateway runs in this process).
    const writes: { remote: number; bytes: Buffer }[] = [];
    /** The writes on this test client's connection. */
    const mine: { remote: number; bytes: Buffer }[] = [];
    const write = net.Socket.prototype.write;
    net.Socket.prototype.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
      if (this.localPort === g.port() && (chunk instanceof Uint8Array || typeof chunk === 'string')) writes.push({ remote: this.remotePort!, bytes: Buffer.from(chunk as Uint8Array) });
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof write;
    try {
      const got = await new Promise<string>((resolve, reject) => {
        const t = tls.connect({ port: g.port(), host: '127.0.0.1', servername: NAME, rejectUnauthorized: false, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' }, () => {
          local = t.localPort!;
          t.write('x');
        });
        let local = 0;
        let s = '';
        t.on('data', (d: Buffer) => {
          s += d.toString();
        });
        t.once('error', reject);
        t.once('close', () => {
          mine.push(...writes.filter((w) => w.remote === local));
          resolve(s);
        });
      });
      assert.equal(got, 'y');
    } finally {
      net.Socket.prototype.write = write;
      await g.close();
      backend.close();
    }
    assert.ok(mine.length >= 2, `writes seen: ${mine.length}`);
    // handshake(22) ServerHello, change_cipher_spec(20) (Appendix D.4), then the protected
    // EncryptedExtensions … Finished as application_data(23) records: all in the first write.
    const first = recordTypes(mine[0]!.bytes);
    assert.deepEqual(first.slice(0, 2), [22, 20]);
    assert.ok(first.length >= 3 && first.slice(2).every((t) => t === 23), `first write's record types: ${first.join(',')}`);
    // The first flight's protected part is EncryptedExtensions, Certificate, CertificateVerify and
    // Finished: more than a certificate's worth of bytes, so not a lone small record.
    assert.ok(mine[0]!.bytes.length > g.cert.length / 2, `first write is ${mine[0]!.bytes.length} bytes`);
  });
});
