/**
 * What TLS termination costs per connection that is ours to keep small
 * (docs/benchmarks.md, "Termination cost, sixth pass"): the server's first
 * flight leaves in one socket write, and `echgate serve` does not load the
 * DoH client's HTTP stack (undici, ≈ 5 MB of V8 heap) until a DoH query.
 * No timing is measured here: these are the properties the benchmarks rest on.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { certFor, startGateway } from './helpers.js';

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
    const dir = mkdtempSync(join(tmpdir(), 'echgate-flight-'));
    const c = certFor(NAME);
    writeFileSync(join(dir, 'e.crt'), c.cert);
    writeFileSync(join(dir, 'e.key'), c.key);
    const backend = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end('y'));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    const g = await startGateway(`
tls:
  certificates:
    - { certFile: "${join(dir, 'e')}.crt", keyFile: "${join(dir, 'e')}.key" }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    t: { rule: "HostSNI(\`${NAME}\`)", service: s, tls: {} }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
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
    assert.ok(mine[0]!.bytes.length > c.cert.length / 2, `first write is ${mine[0]!.bytes.length} bytes`);
  });
});

describe('echgate serve: the DoH client loads undici on its first query, not at start', () => {
  it("importing the CLI (everything `echgate serve` loads) leaves undici out of the module cache; a DoH query's import brings it in", () => {
    const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
    const doh = fileURLToPath(new URL('../src/dns/doh-client.js', import.meta.url));
    // In a child process: this test process may have loaded undici through other test files.
    const script = `
      import { createRequire } from 'node:module';
      const req = createRequire(${JSON.stringify(main)});
      const loaded = () => Object.keys(req.cache).some((k) => k.includes('/node_modules/undici/'));
      await import(${JSON.stringify(main)});
      const atStart = loaded();
      const { dohQuery } = await import(${JSON.stringify(doh)});
      // A query to a closed port: it fails, but only after undici was loaded for it.
      await dohQuery('https://127.0.0.1:1/dns-query', 'example.test', 1, { timeoutMs: 2000 }).catch(() => {});
      process.stdout.write(JSON.stringify({ atStart, afterQuery: loaded() }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 }));
    assert.deepEqual(out, { atStart: false, afterQuery: true });
  });
});
