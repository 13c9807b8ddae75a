/** Shared test fixtures: real TLS backends with their own certificates, a running gateway on port 0. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { decodeName } from '../src/wire/dns/name.js';
import { selfSigned } from '../src/cli/demo.js';
import { parseConfigText } from '../src/config/load.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { prepareServerKey } from '../src/ech/server.js';
import { Keyring } from '../src/keys/keyring.js';
import { decodeECHConfigList, encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { Gateway } from '../src/proxy/gateway.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VECTORS = join(ROOT, 'test', 'vectors');

export function vector(rel: string): Uint8Array {
  return new Uint8Array(readFileSync(join(VECTORS, rel)));
}

export function json<T = any>(rel: string): T {
  return JSON.parse(readFileSync(join(VECTORS, rel), 'utf8')) as T;
}

const certDir = mkdtempSync(join(tmpdir(), 'echgate-test-certs-'));
const certCache = new Map<string, { key: string; cert: string }>();

/** A self-signed certificate for `host`, made by the openssl CLI (cached per run). */
export function certFor(host: string): { key: string; cert: string } {
  let c = certCache.get(host);
  if (!c) {
    c = selfSigned(certDir, host);
    certCache.set(host, c);
  }
  return c;
}

/**
 * A test CA (ca.pem, ca.key) and a leaf it signed for `names` (server.pem,
 * server.key), made by the openssl CLI in `dir`. Returns the CA certificate.
 */
export function caAndLeaf(dir: string, names: string[]): string {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '2', '-subj', '/CN=test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.csr'), '-subj', `/CN=${names[0]}`);
  writeFileSync(join(dir, 'ext'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`);
  ssl('x509', '-req', '-in', join(dir, 'server.csr'), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-out', join(dir, 'server.pem'), '-days', '2', '-extfile', join(dir, 'ext'));
  return readFileSync(join(dir, 'ca.pem'), 'utf8');
}

export interface Backend {
  port: number;
  name: string;
  connections: number;
  close(): Promise<void>;
}

/** A real node:tls server that answers each line with "<name> <sni>\n". */
export async function tlsBackend(name: string, host = `${name}.example.test`): Promise<Backend> {
  const b: Backend = { port: 0, name, connections: 0, close: async () => {} };
  const srv = tls.createServer({ ...certFor(host), ALPNProtocols: ['h2', 'http/1.1'] }, (s) => {
    b.connections++;
    s.on('data', (d) => {
      const line = `${name} ${s.servername || '-'} ${s.alpnProtocol || '-'}\n`;
      // Answer HTTP clients (curl) with a response, anything else with the bare line.
      if (d.toString('latin1', 0, 4) === 'GET ') s.end(`HTTP/1.1 200 OK\r\ncontent-length: ${line.length}\r\nconnection: close\r\n\r\n${line}`);
      else s.write(line);
    });
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  b.port = (srv.address() as net.AddressInfo).port;
  b.close = () => new Promise((r) => srv.close(() => r()));
  return b;
}

/** A plain TCP server that speaks first (the MySQL case) and echoes what it receives. */
export async function serverFirstBackend(greeting: string): Promise<Backend & { received: Buffer[] }> {
  const b = { port: 0, name: 'server-first', connections: 0, received: [] as Buffer[], close: async () => {} };
  const srv = net.createServer((s) => {
    b.connections++;
    s.write(greeting);
    s.on('data', (d) => {
      b.received.push(d);
      s.write(d);
    });
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  b.port = (srv.address() as net.AddressInfo).port;
  b.close = () => new Promise((r) => srv.close(() => r()));
  return b;
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export async function startGateway(yaml: string): Promise<{ gw: Gateway; port: (ep?: string) => number; logs: LogLine[]; close(): Promise<void> }> {
  const logs: LogLine[] = [];
  const dest = { write: (s: string) => logs.push(JSON.parse(s)) };
  const log = pino({ level: 'debug' }, dest as unknown as NodeJS.WritableStream);
  const gw = new Gateway({ log });
  await gw.apply(parseConfigText(yaml, 'test.yml'));
  return {
    gw,
    logs,
    port: (ep = 'websecure') => gw.addresses().get(ep)!.port,
    close: () => gw.shutdown(0),
  };
}

/** A gateway terminating TLS 1.3 for `name` (a fresh certificate from certFor, returned as `cert`) to a plain backend on `backendPort`. */
export async function startTerminatingGateway(name: string, backendPort: number): Promise<Awaited<ReturnType<typeof startGateway>> & { cert: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-term-'));
  const c = certFor(name);
  writeFileSync(join(dir, 'e.crt'), c.cert);
  writeFileSync(join(dir, 'e.key'), c.key);
  const g = await startGateway(`
tls:
  certificates:
    - { certFile: "${join(dir, 'e.crt')}", keyFile: "${join(dir, 'e.key')}" }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    t: { rule: "HostSNI(\`${name}\`)", service: s, tls: {} }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${backendPort}" }] } } }
`);
  return { ...g, cert: c.cert };
}

/** A fresh in-memory ECH key for `public.example.test` (X25519, HKDF-SHA256, AES-128-GCM) and a lookup that finds it. */
export function memoryEchKey(configId: number) {
  const sk = nodeProvider.x25519Generate();
  const raw = encodeECHConfigList([encodeECHConfig({ configId, kemId: 0x20, publicKey: sk.publicKey, cipherSuites: [{ kdfId: 1, aeadId: 1 }], maximumNameLength: 0, publicName: 'public.example.test', extensions: [] })]);
  const config = usableConfigs(decodeECHConfigList(raw), isSupportedSuite)[0]!;
  const key = prepareServerKey(nodeProvider, config, sk);
  return { config, key, lookup: { byConfigId: (id: number) => (id === configId ? [key] : []), all: () => [key] } };
}

/** Give a test gateway the key folder `dir`: ECH decryption and retry_configs, as `serve` wires them. */
export function attachKeys(gw: Gateway, dir: string, trialDecrypt = false): Keyring {
  const ring = new Keyring(dir);
  ring.reload();
  gw.setClassifier(echClassifier(ring, gw.metrics, { trialDecrypt }), () => ring.retryConfigs);
  return ring;
}

/** Connect with node:tls, send one line, return the backend's answer. */
export function tlsAsk(port: number, servername: string | undefined, alpn?: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: alpn });
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.once('secureConnect', () => s.write('hi\n'));
    s.once('data', (d) => {
      resolve(d.toString().trim());
      s.end();
    });
    s.once('error', reject);
  });
}

/** Send raw bytes; resolve with everything the server sent until it closed. */
export function rawExchange(port: number, chunks: Uint8Array[], opts: { gapMs?: number; timeoutMs?: number; collectMs?: number } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    // collectMs: the server is expected to keep the connection open; take what arrived by then.
    if (opts.collectMs) setTimeout(() => s.destroy(), opts.collectMs);
    else s.setTimeout(opts.timeoutMs ?? 5000, () => s.destroy(new Error('timeout waiting for close')));
    s.on('data', (d) => got.push(d));
    s.once('close', () => resolve(Buffer.concat(got)));
    s.once('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve(Buffer.concat(got)) : reject(e)));
    s.once('connect', async () => {
      for (const c of chunks) {
        if (s.destroyed) break;
        s.write(c);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (bounded) until a child's collected output holds `needle`, and fails
 * naming what never came. A CLI start takes 6–8 s when the machine is loaded,
 * so a fixed short wait that then goes on anyway tests the load, not the code.
 */
export async function waitForOutput(out: () => string, needle: string, ms = 30_000): Promise<void> {
  for (let waited = 0; waited < ms && !out().includes(needle); waited += 50) await sleep(50);
  if (!out().includes(needle)) throw new Error(`no "${needle}" within ${ms} ms; output so far:\n${out()}`);
}

/** A fake RFC 2136 primary over TCP: answers each UPDATE with `answer(update)` (framed, RFC 1035 §4.2.2), or drips it a byte every `dripMs`. */
export async function fakeUpdatePrimary(answer: (u: Buffer) => Buffer, dripMs?: number) {
  const timers = new Set<NodeJS.Timeout>();
  const srv = net.createServer((c) => {
    c.on('error', () => {});
    let buf = Buffer.alloc(0);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const a = answer(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      const framed = Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]);
      if (!dripMs) return void c.end(framed);
      let i = 0;
      const t = setInterval(() => (i < framed.length && !c.destroyed ? c.write(framed.subarray(i, ++i)) : clearInterval(t)), dripMs);
      timers.add(t);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => {
      for (const t of timers) clearInterval(t);
      srv.close();
    },
  };
}
/** NOERROR to an UPDATE: its header with QR set and its zone section, nothing else (RFC 2136 §3.8). */
export const updateNoError = (u: Buffer, edit: (b: Buffer) => void = () => {}) => {
  const zoneEnd = decodeName(new Uint8Array(u), 12).next + 4; // the zone name, its type and class
  const b = Buffer.from(u.subarray(0, zoneEnd));
  b[2]! |= 0x80;
  b.writeUInt16BE(0, 8);
  b.writeUInt16BE(0, 10);
  edit(b);
  return b;
};
