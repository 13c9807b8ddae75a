/**
 * Benchmark backends, run as their own process so the load generator's CPU
 * never mixes with theirs. Modes:
 *   byte   — read the first bytes, answer one byte, close
 *   stream — read the first bytes, stream --bytes N, close
 *   tls    — a node:tls server that answers one byte after the handshake
 *   tls-byte — a node:tls server that does what `byte` does inside TLS: read the
 *            client's first bytes, answer one byte, close (the "direct" peer of
 *            the terminating proxies in front of `byte`, bench/terminate.ts)
 *   hold   — accept and keep the connection open, reading and dropping what comes;
 *            with --bytes N > 0, first answer the first bytes with N bytes (then hold)
 * Prints "PORT <n>" when listening.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [mode = 'byte', bytesArg = '0', certFile = '', keyFile = ''] = process.argv.slice(2);
const total = Number(bytesArg);
const chunk = Buffer.alloc(256 * 1024, 0x61);

function streamTo(s: net.Socket, n: number): void {
  let left = n;
  const pump = () => {
    while (left > 0) {
      const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= c.length;
      if (!s.write(c)) return void s.once('drain', pump);
    }
    s.end();
  };
  pump();
}

let server: net.Server;
if (mode === 'tls') {
  server = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (s) => {
    s.on('error', () => s.destroy());
    s.end('y');
  });
} else if (mode === 'tls-byte') {
  server = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (s) => {
    s.on('error', () => s.destroy());
    s.once('data', () => s.end('y'));
  });
} else if (mode === 'hold') {
  server = net.createServer((s) => {
    s.on('error', () => s.destroy());
    if (total > 0) s.once('data', () => s.write(Buffer.alloc(total, 0x61)));
    s.resume();
  });
} else {
  server = net.createServer((s) => {
    s.on('error', () => s.destroy());
    s.once('data', () => {
      if (mode === 'byte') s.end('y');
      else streamTo(s, total);
    });
  });
}
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${(server.address() as net.AddressInfo).port}\n`);
});
