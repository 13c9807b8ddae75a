/**
 * The reference point for termination: a small node:tls terminating proxy
 * (TLS 1.3 and 1.2 as node:tls offers them, no limits, no logs, no routing):
 * decrypt, connect to the plain backend, pipe both ways. It shows what
 * Node's own TLS (OpenSSL in C++) costs per handshake and per GiB in a Node
 * process. Usage: tls-proxy CERT KEY PORT:BACKEND_PORT [PORT:BACKEND_PORT ...]
 * (PORT 0 = any free port); prints "PORTS p1 p2 ..." when listening.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [certFile, keyFile, ...pairs] = process.argv.slice(2);
const opts = { cert: readFileSync(certFile!), key: readFileSync(keyFile!) };
const ports: number[] = [];
let pending = pairs.length;
for (const [i, pair] of pairs.entries()) {
  const [port, backendPort] = pair.split(':').map(Number);
  const server = tls.createServer(opts, (c) => {
    const b = net.connect({ port: backendPort!, host: '127.0.0.1', noDelay: true });
    c.pipe(b).pipe(c);
    b.on('error', () => c.destroy());
    c.on('error', () => b.destroy());
    c.on('close', () => b.destroy());
  });
  server.on('tlsClientError', () => {});
  server.listen(port, '127.0.0.1', () => {
    ports[i] = (server.address() as net.AddressInfo).port;
    if (--pending === 0) process.stdout.write(`PORTS ${ports.join(' ')}\n`);
  });
}
