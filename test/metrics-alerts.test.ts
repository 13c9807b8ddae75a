/**
 * echgate_tls_alerts_sent_total{entrypoint,router,alert}: the handshake failures by
 * the alert echgate sent (RFC 8446 §6.2), counted where the alert leaves
 * (proxy/connection.ts fail, handshakeFailed from terminate.ts), with real
 * clients (node:tls) and raw bytes; the label is the alert's RFC name.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { Metrics } from '../src/proxy/metrics.js';
import { encodeAlertRecord, trailingAlert } from '../src/wire/tls/alert.js';
import { caAndLeaf, rawExchange, startGateway } from './helpers.js';

const W = mkdtempSync(join(tmpdir(), 'echgate-alerts-'));
caAndLeaf(W, ['term.example.test']);

const yaml = `
tls:
  certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }]
  options:
    only256: { cipherSuites: [TLS_AES_256_GCM_SHA384], minVersion: VersionTLS13 }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    term: { rule: "HostSNI(\`term.example.test\`)", service: svc, tls: { options: only256 } }
  services:
    svc: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } }
`;

/** A node:tls handshake that must fail; the error message names the alert it received. */
function failingHandshake(port: number, o: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...o });
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.once('secureConnect', () => reject(new Error('handshake completed')));
    s.once('error', (e) => resolve(e.message));
  });
}

describe('echgate_tls_alerts_sent_total (handshake failures by alert)', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  before(async () => {
    g = await startGateway(yaml);
  });
  after(() => g?.close());
  // Summed over the router label (router "-" before a router was chosen, its name after).
  const count = (alert: string) => g.gw.metrics.alertsSent.get({ alert, entrypoint: 'websecure', router: '-' }) + g.gw.metrics.alertsSent.get({ alert, entrypoint: 'websecure', router: 'term' });

  it('RFC 6066 §3: a name no router takes gets unrecognized_name, counted under that label only', async () => {
    const msg = await failingHandshake(g.port(), { servername: 'nobody.example.test' });
    assert.match(msg, /unrecognized name/i);
    assert.equal(count('unrecognized_name'), 1);
    assert.equal(count('decode_error'), 0);
    assert.match(g.gw.metrics.render(), /echgate_tls_alerts_sent_total\{alert="unrecognized_name",entrypoint="websecure",router="-"\} 1/);
  });

  it('RFC 8446 §6.2: a ClientHello that does not decode gets decode_error, counted as decode_error', async () => {
    // A handshake record holding a ClientHello whose body stops after the version.
    const hello = Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03);
    const got = await rawExchange(g.port(), [hello]);
    assert.equal(trailingAlert(got), 'decode_error');
    assert.equal(count('decode_error'), 1);
  });

  it('RFC 8446 §4.1.1: terminating, no common cipher suite: the engine\'s alert is counted by its name', async () => {
    const before = count('handshake_failure') + count('insufficient_security');
    const msg = await failingHandshake(g.port(), { servername: 'term.example.test', minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' });
    const sent = /insufficient security/i.test(msg) ? 'insufficient_security' : 'handshake_failure';
    assert.match(msg, /alert (handshake failure|insufficient security)/i);
    assert.equal(count('handshake_failure') + count('insufficient_security'), before + 1);
    assert.ok(count(sent) >= 1);
  });

  it('sums across processes like every counter (a process group merges snapshots)', () => {
    const a = new Metrics();
    const b = new Metrics();
    a.alertsSent.inc({ entrypoint: 'e', alert: 'decode_error' });
    b.alertsSent.inc({ entrypoint: 'e', alert: 'decode_error' }, 2);
    a.merge(b.snapshot());
    assert.equal(a.alertsSent.get({ entrypoint: 'e', alert: 'decode_error' }), 3);
  });
});

describe('trailingAlert (the alert name read back from a plaintext alert record)', () => {
  it('names the last plaintext alert record; encrypted records and other protocols\' bytes give none', () => {
    assert.equal(trailingAlert(encodeAlertRecord('unrecognized_name')), 'unrecognized_name');
    assert.equal(trailingAlert(Uint8Array.of(0x16, 0x03, 0x03, 0x00, 0x01, 0x00, ...encodeAlertRecord('illegal_parameter'))), 'illegal_parameter');
    // An encrypted record (type 23) and a PostgreSQL ErrorResponse end differently.
    assert.equal(trailingAlert(Uint8Array.of(0x17, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28)), undefined);
    assert.equal(trailingAlert(Buffer.from('E\0\0\0\x08SFATAL\0\0')), undefined);
    assert.equal(trailingAlert(Uint8Array.of(0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0xfe)), undefined);
    assert.equal(trailingAlert(new Uint8Array(0)), undefined);
  });
});
