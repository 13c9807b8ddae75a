/**
 * The embedded default behind `npm start`: echgate on 127.0.0.1:8443 in front
 * of two small TLS backends it starts itself, each with its own self-signed
 * certificate, so a first-time user can see SNI routing with curl at once.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { parseConfigText } from '../config/load.js';
import type { Config } from '../config/types.js';

export interface Demo {
  config: Config;
  port: number;
  close(): void;
}

export function selfSigned(dir: string, host: string): { key: string; cert: string } {
  const key = join(dir, `${host}.key`);
  const cert = join(dir, `${host}.crt`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${host}`, '-addext', `subjectAltName=DNS:${host}`, '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
}

function startBackend(name: string, creds: { key: string; cert: string }): Promise<tls.Server> {
  const srv = tls.createServer({ ...creds, ALPNProtocols: ['http/1.1'] }, (s) => {
    s.once('data', () => {
      const body = `hello from the "${name}" backend (SNI ${s.servername || 'none'}), reached through echgate\n`;
      s.end(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
    s.on('error', () => s.destroy());
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

export async function startDemo(port: number): Promise<Demo> {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-demo-'));
  try {
    const app = await startBackend('app', selfSigned(dir, 'app.example.test'));
    const api = await startBackend('api', selfSigned(dir, 'api-demo.example.test'));
    const p = (s: tls.Server) => (s.address() as { port: number }).port;
    const yaml = `
entryPoints:
  websecure: { address: "127.0.0.1:${port}" }
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
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${p(app)}" }] } }
    api: { loadBalancer: { servers: [{ address: "127.0.0.1:${p(api)}" }] } }
`;
    return {
      config: parseConfigText(yaml, '(embedded demo)'),
      port,
      close: () => {
        app.close();
        api.close();
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
