/**
 * The TLS 1.3 engine alone, no sockets: CPU time of the server side of one
 * full handshake (decode the ClientHello, TlsServer.start, receive the
 * client's Finished), ECDSA P-256 certificate, X25519, AES-128-GCM. The
 * client side (src/tls13/client.ts) runs in the same process but outside the
 * timed sections. Used to check changes to src/crypto and src/tls13 before
 * measuring them through `serve`.
 * Usage: node dist/bench/handshake.js [N] — prints JSON.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeProvider } from '../src/crypto/node.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';

export interface HandshakeBenchResult {
  /** Median µs of server CPU per handshake, and its two parts. */
  serverUs: number;
  startUs: number;
  finishUs: number;
}

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

export function handshakeBench(n: number, certPem: string, keyPem: string): HandshakeBenchResult {
  const cert = loadCertificate(certPem, keyPem);
  const one = (acc: { start: number; finish: number }) => {
    const client = new TlsClient({ provider: nodeProvider, serverName: 'app.example.test' });
    const hello = client.hello();
    let t = cpuUs();
    const server = new TlsServer({
      provider: nodeProvider,
      random: (k) => nodeProvider.randomBytes(k),
      ephemeral: () => nodeProvider.x25519Generate(),
      certificate: () => cert,
    });
    const ch = decodeClientHelloMessage(parseHelloRecords(hello[0]!)!.message);
    const first = server.start(ch, 'app.example.test', { offered: false, accepted: false });
    acc.start += cpuUs() - t;
    const flight = Buffer.concat(first.send);
    const c = client.receive(flight);
    if (!c.established) throw new Error('bench: the client did not finish');
    const fin = Buffer.concat(c.send);
    t = cpuUs();
    const done = server.receive(fin);
    acc.finish += cpuUs() - t;
    if (!done.established) throw new Error('bench: the server did not finish');
  };
  const warm = { start: 0, finish: 0 };
  for (let i = 0; i < Math.min(500, n); i++) one(warm);
  const rounds: { start: number; finish: number }[] = [];
  for (let r = 0; r < 5; r++) {
    const acc = { start: 0, finish: 0 };
    for (let i = 0; i < Math.ceil(n / 5); i++) one(acc);
    rounds.push({ start: acc.start / Math.ceil(n / 5), finish: acc.finish / Math.ceil(n / 5) });
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[2]!;
  return {
    serverUs: med(rounds.map((r) => r.start + r.finish)),
    startUs: med(rounds.map((r) => r.start)),
    finishUs: med(rounds.map((r) => r.finish)),
  };
}

if (process.argv[1]?.endsWith('handshake.js')) {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-hs-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=app.example.test', '-addext', 'subjectAltName=DNS:app.example.test', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
  const r = handshakeBench(Number(process.argv[2] ?? 5000), readFileSync(join(dir, 'c.pem'), 'utf8'), readFileSync(join(dir, 'k.pem'), 'utf8'));
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
