/**
 * End to end with a real browser: headless Chromium (Debian) resolves over
 * DoH in secure mode against echgate's own DoH server, gets an HTTPS record
 * whose ech= comes from echgate's key folder, sends a real ECH ClientHello to
 * echgate, and must load the page from the hidden backend.
 * Second case: DNS holds a stale key; echgate rejects ECH, sends retry_configs,
 * and Chromium retries with the current key and still reaches the backend.
 * Key exchange: which group each handshake used, from echgate's
 * `echgate:tls-key-exchange` channel and Chromium's NetLog; and a router whose
 * tls.options curvePreferences put X25519MLKEM768 first completes a hybrid
 * handshake with Chromium over accepted ECH (draft-ietf-tls-ecdhe-mlkem
 * interop through echgate, not only echgate ⇄ echgate).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type http2 from 'node:http2';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { parseConfigText } from '../src/config/load.js';
import { startDohServer } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { Gateway } from '../src/proxy/gateway.js';
import { freePort } from '../src/cli/free-port.js';
import type { KeyExchangeEvent, } from '../src/tls13/server.js';
import { NamedGroup } from '../src/wire/tls/constants.js';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RECIPE = process.env.ECHGATE_CHROMIUM_RECIPE ?? join(ROOT, '..', 'shared', 'recipes', 'chromium-ech');
const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) ? 'chromium is not installed (.ci/run installs it)' : !existsSync(join(RECIPE, 'run-chromium.sh')) ? `no Chromium launcher at ${RECIPE}` : false;

function spki(pem: string): string {
  return execFileSync('sh', ['-c', `openssl x509 -in ${pem} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`]).toString().trim();
}

/** Key-exchange groups of Chromium's completed TLS handshakes, from the NetLog (SSL_HANDSHAKE_MESSAGE_RECEIVED is not needed: SSL_CONNECT's end carries key_exchange_group). */
function netlogGroups(path: string): number[] {
  const d = JSON.parse(readFileSync(path, 'utf8')) as { events: { params?: { key_exchange_group?: number } }[] };
  return d.events.flatMap((e) => (typeof e.params?.key_exchange_group === 'number' ? [e.params.key_exchange_group] : []));
}

function leaf(dir: string, name: string, san: string): void {
  execFileSync('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`), '-subj', `/CN=${name}`], { stdio: 'ignore' });
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n`);
  execFileSync('openssl', ['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-out', join(dir, `${name}.pem`), '-days', '5', '-extfile', join(dir, `${name}.ext`)], { stdio: 'ignore' });
}

describe('Chromium with real ECH through echgate', { skip }, () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-chromium-'));
  const keysDir = join(W, 'keys');
  const staleDir = join(W, 'stale-keys');
  let port = 0;
  let splitPort = 0;
  let pqPort = 0;
  let backPort = 0;
  let dohPort = 0;
  let doh: http2.Http2SecureServer | undefined;
  /** What DNS publishes as ech=: the live key folder, or a stale list for the retry case. */
  let publish: () => Uint8Array | undefined = () => ring?.published;
  let backend: http.Server | undefined;
  let gw: Gateway | undefined;
  let ring: Keyring | undefined;
  const routes: { router: string; ech: string }[] = [];
  const onRoute = (m: unknown) => routes.push(m as { router: string; ech: string });
  const kex: KeyExchangeEvent[] = [];
  const onKex = (m: unknown) => kex.push(m as KeyExchangeEvent);
  let spkis = '';
  const hits: string[] = [];
  const zones = new Map<number, Zone>();
  let front = 0;
  let zoneFor: (p: number) => Zone = () => {
    throw new Error('before() has not run');
  };

  before(async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(W, 'ca.key'), '-out', join(W, 'ca.pem'), '-days', '5', '-subj', '/CN=echgate e2e CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'ignore' });
    leaf(W, 'server', 'DNS:public.example.test,DNS:secret.example.test');
    leaf(W, 'doh', 'IP:127.0.0.2,DNS:doh.test');
    spkis = `${spki(join(W, 'doh.pem'))},${spki(join(W, 'server.pem'))}`;
    mkdirSync(keysDir);
    mkdirSync(staleDir);
    generateKey(keysDir, { publicName: 'public.example.test', maxNameLength: 32 });
    generateKey(staleDir, { publicName: 'public.example.test', maxNameLength: 32 });

    backend = http.createServer((req, res) => {
      hits.push(`${req.headers.host} ${req.url}`);
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body><p id="x">hidden backend reached</p></body></html>');
    });
    await new Promise<void>((r) => backend!.listen(0, '127.0.0.1', () => r()));
    const bport = (backend.address() as net.AddressInfo).port;

    port = await freePort();
    splitPort = await freePort();
    backPort = await freePort();
    pqPort = await freePort();
    const log = pino({ level: 'warn' });
    gw = new Gateway({ log });
    await gw.apply(
      parseConfigText(
        `
tls:
  certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }]
  options:
    pq: { curvePreferences: [X25519MLKEM768, X25519] }
ech: { keysDir: "${keysDir}" }
# The test asserts which router took each ECH connection; by default their names stay out of the route channel.
log: { echRoutes: true }
entryPoints:
  websecure: { address: "127.0.0.1:${port}" }
  split: { address: "127.0.0.1:${splitPort}" }
  echbackend: { address: "127.0.0.1:${backPort}", echBackend: true }
  pq: { address: "127.0.0.1:${pqPort}" }
tcp:
  routers:
    hidden: { entryPoints: [websecure], rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: web, tls: { alpn: [http/1.1] } }
    public: { entryPoints: [websecure, split], rule: "HostSNI(\`public.example.test\`)", service: web, tls: { alpn: [http/1.1] } }
    splitHidden: { entryPoints: [split], rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: echbackend, tls: { passthrough: true, echSplit: true } }
    hiddenPq: { entryPoints: [pq], rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: web, tls: { alpn: [http/1.1], options: pq } }
    backendHidden: { entryPoints: [echbackend], rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: web, tls: { alpn: [http/1.1] } }
  services:
    web: { loadBalancer: { servers: [{ address: "127.0.0.1:${bport}" }] } }
    echbackend: { loadBalancer: { servers: [{ address: "127.0.0.1:${backPort}" }] } }
`,
        'e2e.yml',
      ),
    );
    ring = new Keyring(keysDir);
    ring.reload();
    const r = ring;
    gw.setClassifier(echClassifier(r, gw.metrics, { trialDecrypt: false }), () => r.retryConfigs);
    subscribe('echgate:route', onRoute);
    subscribe('echgate:tls-key-exchange', onKex);

    // One zone per front port: the HTTPS record for a port other than 443 lives at _PORT._https.NAME.
    zoneFor = (p: number) =>
      new Zone(
        {
          ttl: 5,
          names: {
            'secret.example.test': { a: ['127.0.0.1'], https: { alpn: ['http/1.1'], port: p } },
            'public.example.test': { a: ['127.0.0.1'] },
          },
        },
        () => publish(),
      );
    zones.set(port, zoneFor(port));
    zones.set(splitPort, zoneFor(splitPort));
    doh = await startDohServer({ host: '127.0.0.2', port: 0, cert: readFileSync(join(W, 'doh.pem'), 'utf8'), key: readFileSync(join(W, 'doh.key'), 'utf8'), zone: () => zones.get(front)! });
    dohPort = (doh.address() as net.AddressInfo).port;
  });

  after(async () => {
    unsubscribe('echgate:route', onRoute);
    unsubscribe('echgate:tls-key-exchange', onKex);
    doh?.close();
    ring?.close();
    await gw?.shutdown(0);
    backend?.close();
  });

  async function browse(tag: string, to = port): Promise<{ rc: number; dom: string; netlog: string }> {
    front = to;
    const netlog = join(W, `${tag}.netlog.json`);
    const env = { ...process.env, ECH_WORK: W, SPKI_HASHES: spkis, DOH_TEMPLATE: `https://127.0.0.2:${dohPort}/dns-query{?dns}`, NETLOG: netlog, TIMEOUT: '30' };
    try {
      const { stdout } = await run('sh', [join(RECIPE, 'run-chromium.sh'), `https://secret.example.test:${to}/${tag}`], { env });
      return { rc: 0, dom: stdout, netlog };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { rc: err.code, dom: `${err.stdout}\n${err.stderr}`, netlog };
    }
  }

  it('loads the page from the hidden backend over accepted ECH', async () => {
    publish = () => ring?.published;
    routes.length = 0;
    kex.length = 0;
    const r = await browse('fresh');
    assert.equal(r.rc, 0, r.dom);
    assert.match(r.dom, /hidden backend reached/);
    assert.ok(hits.some((h) => h.endsWith('/fresh')));
    assert.ok(routes.some((e) => e.router === 'hidden' && e.ech === 'accepted'), JSON.stringify(routes));
    // Chromium's own NetLog: real ECH with the hidden name inside, and the server accepted it.
    const { stdout } = await run('python3', [join(RECIPE, 'ech-netlog.py'), r.netlog]);
    assert.match(stdout, /REAL ECH inner_sni=secret\.example\.test\s+result=OK ech_accepted=True/);
    // Key exchange: Chromium sends X25519MLKEM768 and X25519 shares; the default preference (X25519, P-256) takes X25519.
    assert.ok(kex.some((e) => e.ech && e.group === NamedGroup.x25519 && !e.helloRetry), JSON.stringify(kex));
    assert.ok(netlogGroups(r.netlog).includes(NamedGroup.x25519), `NetLog groups: ${netlogGroups(r.netlog)}`);
  });

  it('a router whose curvePreferences put X25519MLKEM768 first takes Chromium\'s hybrid share, with ECH accepted (draft-ietf-tls-ecdhe-mlkem)', async () => {
    zones.set(pqPort, zoneFor(pqPort));
    kex.length = 0;
    routes.length = 0;
    const r = await browse('hybrid', pqPort);
    assert.equal(r.rc, 0, r.dom);
    assert.match(r.dom, /hidden backend reached/);
    assert.ok(routes.some((e) => e.router === 'hiddenPq' && e.ech === 'accepted'), JSON.stringify(routes));
    // echgate's key-exchange event and Chromium's own NetLog agree on the group: the hybrid one, without a HelloRetryRequest.
    assert.ok(kex.some((e) => e.ech && e.group === NamedGroup.X25519MLKEM768 && !e.helloRetry), JSON.stringify(kex));
    assert.ok(netlogGroups(r.netlog).includes(NamedGroup.X25519MLKEM768), `NetLog groups: ${netlogGroups(r.netlog)}`);
  });

  it('a stale key in DNS: ECH rejected, retry_configs sent, Chromium retries and reaches the backend', async () => {
    const stale = publishedList(listKeys(staleDir).keys);
    publish = () => stale;
    routes.length = 0;
    const r = await browse('stale');
    assert.equal(r.rc, 0, r.dom);
    assert.match(r.dom, /hidden backend reached/);
    assert.ok(routes.some((e) => e.router === 'public' && e.ech === 'rejected'), JSON.stringify(routes));
    assert.ok(routes.some((e) => e.router === 'hidden' && e.ech === 'accepted'), JSON.stringify(routes));
    const { stdout } = await run('python3', [join(RECIPE, 'ech-netlog.py'), r.netlog]);
    assert.match(stdout, /ECH RETRY .* restarted with the server's retry_configs/);
    assert.match(stdout, /ERR_ECH_NOT_NEGOTIATED/);
    assert.match(stdout, /REAL ECH inner_sni=secret\.example\.test\s+result=OK ech_accepted=True/);
  });

  it('split mode: a client-facing entrypoint forwards ClientHelloInner to an ECH backend entrypoint, which confirms ECH', async () => {
    publish = () => ring?.published;
    routes.length = 0;
    const r = await browse('split', splitPort);
    assert.equal(r.rc, 0, r.dom);
    assert.match(r.dom, /hidden backend reached/);
    assert.ok(hits.some((h) => h.endsWith('/split')));
    assert.ok(routes.some((e) => e.router === 'splitHidden' && e.ech === 'accepted'), JSON.stringify(routes));
    assert.ok(routes.some((e) => e.router === 'backendHidden' && e.ech === 'accepted'), JSON.stringify(routes));
    const { stdout } = await run('python3', [join(RECIPE, 'ech-netlog.py'), r.netlog]);
    assert.match(stdout, /REAL ECH inner_sni=secret\.example\.test\s+result=OK ech_accepted=True/);
  });
});
