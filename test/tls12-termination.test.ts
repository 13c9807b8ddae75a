/**
 * TLS 1.2 clients on terminating routers (RFC 5246 clients: older database
 * drivers, Java 8, embedded devices): a hello whose best version is TLS 1.2
 * goes to node:tls with the same certificate and the same plaintext relay as
 * the TLS 1.3 path; a hello that offers TLS 1.3 still goes to echgate's own
 * engine; tls.options decide the versions, suites and curves; an ECH hello
 * never goes to TLS 1.2 (RFC 9849 is TLS 1.3 only). Real peers: openssl
 * s_client and curl.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { connectOnce } from '../src/cli/connect.js';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { DEFAULT_TLS_OPTIONS } from '../src/config/tls-options.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { chooseVersion } from '../src/proxy/tls12.js';
import { encodeClientHello } from '../src/wire/tls/client-hello.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { frameHandshake } from '../src/wire/tls/record.js';
import { certFor, memoryEchKey, rawExchange, startGateway } from './helpers.js';

const run = promisify(execFile);
const PROTOCOL_VERSION = [21, 3, 3, 0, 2, 2, 70];

/** openssl s_client with `args`, sending `input`; resolves with stdout+stderr (never rejects). */
async function sClient(port: number, args: string[], input = 'ping\n'): Promise<string> {
  // -ign_eof: wait for the server to close (the backend answers, then ends) rather than quitting at the end of input.
  const cmd = `printf '${input.replace(/\n/g, '\\n')}' | timeout 10 openssl s_client -ign_eof -connect 127.0.0.1:${port} ${args.join(' ')} 2>&1 || true`;
  const { stdout } = await run('sh', ['-c', cmd]);
  return stdout;
}

const dir = mkdtempSync(join(tmpdir(), 'echgate-tls12-'));
const c = certFor('app.example.test');
writeFileSync(join(dir, 'app.crt'), c.cert);
writeFileSync(join(dir, 'app.key'), c.key);

describe('TLS 1.2 on terminating routers (node:tls) beside the TLS 1.3 engine', () => {
  let backend: net.Server;
  const seen: string[] = [];
  let g: Awaited<ReturnType<typeof startGateway>>;
  const events: Record<string, unknown>[] = [];
  const onRoute = (m: unknown) => events.push(m as Record<string, unknown>);
  const k = memoryEchKey(5);

  before(async () => {
    backend = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => {
        seen.push(d.toString());
        const body = `backend got ${d.length} bytes\n`;
        if (d.toString('latin1', 0, 4) === 'GET ') s.end(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
        else s.end(body);
      });
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    const port = (backend.address() as net.AddressInfo).port;
    g = await startGateway(`
tls:
  certificates: [{ certFile: "${join(dir, 'app.crt')}", keyFile: "${join(dir, 'app.key')}" }]
  options:
    modern: { minVersion: VersionTLS13 }
    old: { maxVersion: VersionTLS12 }
    picky:
      cipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_AES_256_GCM_SHA384]
      curvePreferences: [CurveP384, X25519]
    strict: { sniStrict: true, alpnProtocols: [http/1.1] }
log: { echRoutes: true }
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 3s } }
tcp:
  routers:
    app: { rule: "HostSNI(\`app.example.test\`)", service: b, tls: { alpn: [h2, http/1.1] } }
    modern: { rule: "HostSNI(\`modern.example.test\`)", service: b, tls: { options: modern } }
    old: { rule: "HostSNI(\`old.example.test\`)", service: b, tls: { options: old@file } }
    picky: { rule: "HostSNI(\`picky.example.test\`)", service: b, tls: { options: picky } }
    strict: { rule: "HostSNI(\`strict.example.test\`) || HostSNI(\`nocert.example.test\`)", service: b, tls: { options: strict } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${port}" }] } } }
`);
    g.gw.setClassifier(echClassifier(k.lookup, g.gw.metrics, { trialDecrypt: false }));
    subscribe('echgate:route', onRoute);
  });
  after(async () => {
    unsubscribe('echgate:route', onRoute);
    await g?.close();
    backend?.close();
  });

  const lastAnswer = (router: string) => events.filter((e) => e.router === router).at(-1)?.answer;

  it('openssl s_client -tls1_2 reaches the backend through node:tls, with ALPN from the router', async () => {
    const out = await sClient(g.port(), ['-tls1_2', '-servername', 'app.example.test', '-alpn', 'h2']);
    assert.match(out, /Protocol\s*: TLSv1\.2/);
    assert.match(out, /ALPN protocol: h2/);
    assert.match(out, /backend got 5 bytes/);
    assert.equal(seen.at(-1), 'ping\n', 'the backend gets plaintext');
    assert.equal(lastAnswer('app'), 'tls1.2');
  });

  it('curl --tls-max 1.2 gets the HTTP answer from the backend', async () => {
    const { stdout } = await run('curl', ['-sk', '--tls-max', '1.2', '--http1.1', '--resolve', `app.example.test:${g.port()}:127.0.0.1`, `https://app.example.test:${g.port()}/`, '-w', '%{ssl_verify_result} %{http_code}']);
    assert.match(stdout, /^backend got \d+ bytes\n/);
    assert.match(stdout, / 200$/);
    assert.equal(lastAnswer('app'), 'tls1.2');
  });

  it('openssl s_client -tls1_3 still goes to echgate’s TLS 1.3 engine', async () => {
    const out = await sClient(g.port(), ['-tls1_3', '-servername', 'app.example.test', '-alpn', 'http/1.1']);
    assert.match(out, /New, TLSv1\.3, Cipher is/);
    assert.match(out, /backend got 5 bytes/);
    assert.equal(lastAnswer('app'), 'tls1.3');
  });

  it('minVersion VersionTLS13: a TLS 1.2-only client gets protocol_version; TLS 1.3 works', async () => {
    const out = await sClient(g.port(), ['-tls1_2', '-servername', 'modern.example.test']);
    assert.match(out, /alert protocol version|alert number 70/);
    assert.doesNotMatch(out, /backend got/);
    assert.match(await sClient(g.port(), ['-servername', 'modern.example.test']), /backend got 5 bytes/);
  });

  it('a client offering only TLS 1.0 (legacy_version 0x0301, no supported_versions) gets protocol_version', async () => {
    const body = encodeClientHello({
      legacyVersion: 0x0301,
      random: new Uint8Array(32).fill(1),
      sessionId: new Uint8Array(0),
      cipherSuites: [0xc013, 0x002f],
      compressionMethods: Uint8Array.of(0),
      extensions: [{ type: 0, data: Uint8Array.from([0, 19, 0, 0, 16, ...Buffer.from('app.example.test')]) }],
    });
    const got = await rawExchange(g.port(), [frameHandshake(encodeHandshake(1, body))]);
    assert.deepEqual([...got], PROTOCOL_VERSION);
  });

  it('maxVersion VersionTLS12: a TLS 1.3-capable client negotiates TLS 1.2 (no downgrade sentinel trips it)', async () => {
    const out = await sClient(g.port(), ['-servername', 'old.example.test']);
    assert.match(out, /Protocol\s*: TLSv1\.2/);
    assert.match(out, /backend got 5 bytes/);
    assert.equal(lastAnswer('old'), 'tls1.2');
  });

  it('cipherSuites: TLS 1.2 restricted to the listed suite (OpenSSL name), TLS 1.3 engine restricted to the listed suite', async () => {
    const t12 = await sClient(g.port(), ['-tls1_2', '-servername', 'picky.example.test']);
    assert.match(t12, /Cipher is ECDHE-ECDSA-AES256-GCM-SHA384/);
    assert.match(t12, /backend got/);
    const refused12 = await sClient(g.port(), ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256', '-servername', 'picky.example.test']);
    assert.match(refused12, /alert handshake failure|alert number 40/);
    const t13 = await sClient(g.port(), ['-tls1_3', '-servername', 'picky.example.test']);
    assert.match(t13, /Cipher is TLS_AES_256_GCM_SHA384/);
    const refused13 = await sClient(g.port(), ['-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256', '-servername', 'picky.example.test']);
    assert.match(refused13, /alert handshake failure|alert number 40/);
  });

  it('curvePreferences: the TLS 1.2 key exchange uses the listed curve', async () => {
    const out = await sClient(g.port(), ['-tls1_2', '-servername', 'picky.example.test']);
    assert.match(out, /Server Temp Key: ECDH, (P-384|secp384r1)/);
  });

  it('sniStrict: a name no certificate covers gets unrecognized_name on both stacks; alpnProtocols from the options', async () => {
    for (const v of ['-tls1_2', '-tls1_3']) {
      const out = await sClient(g.port(), [v, '-servername', 'nocert.example.test']);
      assert.match(out, /unrecognized name|alert number 112/, v);
    }
    // strict.example.test is not covered either (the only certificate is app.example.test's): same answer.
    assert.match(await sClient(g.port(), ['-tls1_2', '-servername', 'strict.example.test']), /alert number 112|unrecognized name/);
  });

  it('an ECH-accepted hello goes to the TLS 1.3 engine; on a router whose options stop at TLS 1.2 it gets protocol_version, never TLS 1.2', async () => {
    const hello = (innerSni: string) => frameHandshake(buildEchClientHello(nodeProvider, { config: k.config, innerSni }).outerMessage);
    const got = await rawExchange(g.port(), [hello('old.example.test')]);
    assert.deepEqual([...got], PROTOCOL_VERSION);
    const ev = events.filter((e) => e.router === 'old').at(-1);
    assert.equal(ev?.ech, 'accepted');
    assert.equal(ev?.answer, undefined);
    const ok = await rawExchange(g.port(), [hello('app.example.test')], { collectMs: 300 });
    assert.equal(ok[0], 22, 'a ServerHello from the engine');
    assert.equal(lastAnswer('app'), 'tls1.3');
  });

  it('echgate connect (TLS 1.3, no ECH) is unchanged', async () => {
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'app.example.test', alpn: ['h2'], send: 'hi' });
    assert.equal(r.error, undefined);
    assert.equal(r.reply, 'backend got 2 bytes\n');
  });
});

describe('chooseVersion (RFC 8446 §4.2.1, RFC 9849)', () => {
  const hello = (legacyVersion: number, versions?: number[]) => ({
    legacyVersion,
    random: new Uint8Array(32),
    sessionId: new Uint8Array(0),
    cipherSuites: [0x1301],
    compressionMethods: Uint8Array.of(0),
    extensions: versions ? [{ type: 43, data: Uint8Array.from([versions.length * 2, ...versions.flatMap((v) => [v >> 8, v & 0xff])]) }] : [],
  });
  const dflt = DEFAULT_TLS_OPTIONS;
  const old = { ...DEFAULT_TLS_OPTIONS, name: 'old', maxVersion: 0x0303 as const };
  const modern = { ...DEFAULT_TLS_OPTIONS, name: 'modern', minVersion: 0x0304 as const };
  it('supported_versions decides; legacy_version counts only without it', () => {
    assert.equal(chooseVersion(hello(0x0303, [0x0304, 0x0303]), false, dflt), 'tls1.3');
    assert.equal(chooseVersion(hello(0x0303, [0x0303]), false, dflt), 'tls1.2');
    assert.equal(chooseVersion(hello(0x0303), false, dflt), 'tls1.2');
    assert.equal(chooseVersion(hello(0x0302), false, dflt), 'protocol_version');
    assert.equal(chooseVersion(hello(0x0303, [0x0302]), false, dflt), 'protocol_version', 'legacy_version ignored beside supported_versions');
  });
  it('the options bound the choice', () => {
    assert.equal(chooseVersion(hello(0x0303, [0x0304, 0x0303]), false, old), 'tls1.2');
    assert.equal(chooseVersion(hello(0x0303, [0x0304]), false, old), 'protocol_version');
    assert.equal(chooseVersion(hello(0x0303, [0x0303]), false, modern), 'protocol_version');
  });
  it('an ECH-accepted hello never goes to TLS 1.2, even one that offers it', () => {
    assert.equal(chooseVersion(hello(0x0303, [0x0304, 0x0303]), true, old), 'protocol_version');
    assert.equal(chooseVersion(hello(0x0303, [0x0304, 0x0303]), true, dflt), 'tls1.3');
  });
});
