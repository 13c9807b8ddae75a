/**
 * The embedded default behind `npm start`: echgate on 127.0.0.1:8443 in front
 * of two small TLS backends it starts itself, each with its own self-signed
 * certificate, so a first-time user can see SNI routing with curl at once;
 * and a hidden name served only over ECH (a fresh key in a temporary key
 * folder, termination on echgate's TLS 1.3 engine), with the HTTPS record
 * that carries its key answered by the embedded DNS on 127.0.0.1:8053.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { parseConfigText } from '../config/load.js';
import type { Config, DnsConfig } from '../config/types.js';
import { generateKey, listKeys, publishedList } from '../keys/manager.js';

export interface Demo {
  config: Config;
  /** The ECHConfigList of the demo's key, base64 (what `echgate connect --ech-config` takes). */
  echConfig: string;
  /** The embedded DNS for the demo, once the entrypoint's real port is known. */
  dns(entryPort: number): DnsConfig;
  close(): void;
}

/** A self-signed certificate for `host` (and `alsoFor`), made by the openssl CLI; the files stay in `dir`. */
export function selfSigned(dir: string, host: string, alsoFor: string[] = []): { key: string; cert: string; keyFile: string; certFile: string } {
  const keyFile = join(dir, `${host}.key`);
  const certFile = join(dir, `${host}.crt`);
  const san = [host, ...alsoFor].map((h) => `DNS:${h}`).join(',');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${host}`, '-addext', `subjectAltName=${san}`, '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), keyFile, certFile };
}

/** The hidden service: plain HTTP, since echgate terminates TLS in front of it. */
function startPlainBackend(): Promise<net.Server> {
  const srv = net.createServer((s) => {
    s.once('data', () => {
      const body = 'hello from the hidden "secret" backend: its name travelled encrypted (ECH), and echgate terminated TLS\n';
      s.end(`HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    s.on('error', () => s.destroy());
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

function startBackend(name: string, creds: { key: string; cert: string }): Promise<net.Server> {
  const srv = tls.createServer({ ...creds, ALPNProtocols: ['http/1.1'] }, (s) => {
    s.once('data', () => {
      const body = `hello from the "${name}" backend (SNI ${s.servername || 'none'}), reached through echgate\n`;
      s.end(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
    s.on('error', () => s.destroy());
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

/**
 * The demo's configuration. Ports are bound, never picked ahead (a port
 * picked and released can be taken by anyone before it is bound again): the
 * entrypoint listens on `port` (0: any), and the DNS section, whose HTTPS
 * record names the entrypoint's real port, is made by `dns()` once the
 * entrypoint listens.
 */
export async function startDemo(port: number, dnsPort: number): Promise<Demo> {
  // Kept while the demo runs: the key folder is watched, certificates are read from files.
  const dir = mkdtempSync(join(tmpdir(), 'echgate-demo-'));
  const servers: net.Server[] = [];
  try {
    const app = await startBackend('app', selfSigned(dir, 'app.example.test'));
    const api = await startBackend('api', selfSigned(dir, 'api-demo.example.test'));
    const secret = await startPlainBackend();
    servers.push(app, api, secret);
    // Two certificates, never one for both names: a client whose ECH is rejected (a stale or random
    // config) is answered as the public name, with the public name's certificate (RFC 9849 §6.1.6),
    // which it reads in full; a hidden name on it would be handed to any prober (§10.5).
    const publicCert = selfSigned(dir, 'public.example.test');
    const hidden = selfSigned(dir, 'secret.example.test');
    const keysDir = join(dir, 'keys');
    mkdirSync(keysDir, { mode: 0o700 });
    generateKey(keysDir, { publicName: 'public.example.test' });
    const echConfig = Buffer.from(publishedList(listKeys(keysDir).keys)!).toString('base64');
    const p = (s: net.Server) => (s.address() as { port: number }).port;
    const yaml = `
entryPoints:
  websecure: { address: "127.0.0.1:${port}" }
ech: { keysDir: ${JSON.stringify(keysDir)} }
tls:
  certificates:
    - { certFile: ${JSON.stringify(publicCert.certFile)}, keyFile: ${JSON.stringify(publicCert.keyFile)} }
    - { certFile: ${JSON.stringify(hidden.certFile)}, keyFile: ${JSON.stringify(hidden.keyFile)} }
tcp:
  routers:
    app:
      rule: "HostSNI(\`app.example.test\`)"
      service: app
      tls: { passthrough: true }
    api:
      rule: "HostSNIRegexp(\`^api-[a-z]+\\\\.example\\\\.test$\`)"
      service: api
      tls: { passthrough: true }
    secret:
      rule: "HostSNI(\`secret.example.test\`)"
      requireECH: true
      service: secret
      tls: { alpn: [http/1.1] }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${p(app)}" }] } }
    api: { loadBalancer: { servers: [{ address: "127.0.0.1:${p(api)}" }] } }
    secret: { loadBalancer: { servers: [{ address: "127.0.0.1:${p(secret)}" }] } }
`;
    return {
      config: parseConfigText(yaml, '(embedded demo)'),
      echConfig,
      dns: (entryPort) => ({
        listen: { host: '127.0.0.1', port: dnsPort },
        zone: 'example.test',
        ttl: 30,
        names: {
          'ns1.example.test': { a: ['127.0.0.1'] },
          'secret.example.test': { a: ['127.0.0.1'], https: { alpn: ['http/1.1'], port: entryPort, ech: true } },
        },
      }),
      close: () => {
        for (const s of servers) s.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
