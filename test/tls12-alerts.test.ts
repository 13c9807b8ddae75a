/**
 * echgate_tls_alerts_sent_total for TLS 1.2 terminating routers (node:tls):
 * the alert OpenSSL sent is named from node:tls's error code where OpenSSL
 * always sends that one alert (RFC 5246 §7.2: handshake_failure for no
 * common suite, protocol_version for no common version), with openssl
 * s_client as the client; what cannot be named is not counted.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { nodeTlsAlert } from '../src/proxy/tls12.js';
import { certFor, startGateway } from './helpers.js';

const run = promisify(execFile);

async function sClient(port: number, args: string[]): Promise<string> {
  const cmd = `printf 'ping\\n' | timeout 10 openssl s_client -ign_eof -connect 127.0.0.1:${port} ${args.join(' ')} 2>&1 || true`;
  return (await run('sh', ['-c', cmd])).stdout;
}

const dir = mkdtempSync(join(tmpdir(), 'echgate-tls12-alerts-'));
const c = certFor('app.example.test');
writeFileSync(join(dir, 'app.crt'), c.cert);
writeFileSync(join(dir, 'app.key'), c.key);

describe('RFC 5246 §7.2 alerts node:tls sends on a TLS 1.2 router are counted by name', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let backend: net.Server;
  const count = (alert: string) => g.gw.metrics.alertsSent.get({ alert, entrypoint: 'websecure', router: 'picky' });

  before(async () => {
    backend = net.createServer((s) => s.on('error', () => {}).end('hi\n'));
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    g = await startGateway(`
tls:
  certificates: [{ certFile: "${join(dir, 'app.crt')}", keyFile: "${join(dir, 'app.key')}" }]
  options:
    picky: { maxVersion: VersionTLS12, cipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384] }
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 3s } }
tcp:
  routers:
    picky: { rule: "HostSNI(\`app.example.test\`)", service: b, tls: { options: picky } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
  });
  after(async () => {
    await g?.close();
    backend?.close();
  });

  it('no suite in common (openssl s_client -tls1_2 -cipher ...): handshake_failure on the wire and in the counter', async () => {
    const before = count('handshake_failure');
    const out = await sClient(g.port(), ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256', '-servername', 'app.example.test']);
    assert.match(out, /alert handshake failure|alert number 40/);
    assert.equal(count('handshake_failure'), before + 1);
  });

  it('a TLS 1.0 client (openssl s_client -tls1) on the TLS 1.2 router: protocol_version on the wire and in the counter', async () => {
    const before = count('protocol_version');
    const out = await sClient(g.port(), ['-tls1', '-cipher', 'DEFAULT@SECLEVEL=0', '-servername', 'app.example.test']);
    assert.match(out, /alert protocol version|alert number 70/);
    assert.equal(count('protocol_version'), before + 1);
  });

  it('the mapping names only what OpenSSL always answers with one alert', () => {
    const e = (code: string) => Object.assign(new Error(code), { code });
    assert.equal(nodeTlsAlert(e('ERR_SSL_NO_SHARED_CIPHER')), 'handshake_failure');
    assert.equal(nodeTlsAlert(e('ERR_SSL_UNSUPPORTED_PROTOCOL')), 'protocol_version');
    assert.equal(nodeTlsAlert(e('ERR_SSL_VERSION_TOO_LOW')), 'protocol_version');
    assert.equal(nodeTlsAlert(e('ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC')), 'bad_record_mac');
    // A client's own alert, a reset, the timeout: echgate sent nothing it can name.
    assert.equal(nodeTlsAlert(e('ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE')), undefined);
    assert.equal(nodeTlsAlert(e('ECONNRESET')), undefined);
    assert.equal(nodeTlsAlert(new Error('TLS 1.2 handshake timeout')), undefined);
    assert.equal(nodeTlsAlert(e('toString')), undefined);
  });
});
