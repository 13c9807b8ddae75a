/**
 * The dashboard in a real browser: `echgate serve` (a child process, the
 * configuration the test writes) with metrics.dashboard on; headless Chromium
 * driven by puppeteer-core loads the page, which must show the router and the
 * ECH key this test created, and a counter must move after the test makes a
 * connection through echgate, without a reload (the page polls /api/).
 * The screenshot for docs/dashboard.md is saved to docs/img/dashboard.png.
 *
 * The browser reaches loopback only: every name except 127.0.0.1 fails to
 * resolve (--host-resolver-rules), anything not on loopback goes to a proxy
 * that is not there, background services are off, and any request the page
 * makes elsewhere is aborted and fails the test.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { freePort } from '../src/cli/free-port.js';
import { generateKey } from '../src/keys/manager.js';
import { caAndLeaf, tlsBackend, type Backend } from '../test/helpers.js';

/** The little of the DOM the page functions below use (they run in the browser; this program has no DOM lib). */
interface DomNode {
  textContent: string | null;
  querySelector(s: string): DomNode | null;
  querySelectorAll?(s: string): Iterable<DomNode>;
}
declare const document: DomNode & { querySelectorAll(s: string): Iterable<DomNode> };

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : 'chromium is not installed (.ci/run installs it)';
const SHOT = join(ROOT, 'docs', 'img', 'dashboard.png');

function getJson(port: number, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false, timeout: 2000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${path}: ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

/** One TLS connection through echgate to the backend: one line out, one line back. */
function ask(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => s.write('hello\n'));
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.once('data', (d) => {
      resolve(d.toString());
      s.end();
    });
    s.once('error', reject);
  });
}

describe('dashboard in headless Chromium (puppeteer-core)', { skip }, () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-dash-e2e-'));
  const keysDir = join(W, 'keys');
  const router = `e2e_router_${process.pid}`;
  let key: ReturnType<typeof generateKey>;
  let backend: Backend;
  let serve: ChildProcess | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let port = 0;
  let metricsPort = 0;
  const blocked: string[] = [];
  let stderr = '';

  before(async () => {
    caAndLeaf(W, ['public.example.test', 'app.example.test', 'secret.example.test']);
    mkdirSync(keysDir, { mode: 0o700 });
    key = generateKey(keysDir, { publicName: 'public.example.test' });
    backend = await tlsBackend('app');
    port = await freePort();
    metricsPort = await freePort();
    const deadPort = await freePort();
    const dnsPort = await freePort();
    const cfg = join(W, 'echgate.yml');
    writeFileSync(
      cfg,
      `
metrics: { address: "127.0.0.1:${metricsPort}", dashboard: true }
log: { level: warn }
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
ech: { keysDir: "${keysDir}", rotation: { every: 24h, grace: 1h, publish: embedded } }
dns: { address: "127.0.0.1:${dnsPort}", ttl: 60, names: { public.example.test: { a: [127.0.0.1], https: { alpn: [h2] } } } }
entryPoints: { websecure: { address: "127.0.0.1:${port}" } }
tcp:
  routers:
    ${router}: { rule: "HostSNI(\`app.example.test\`)", service: app, tls: { passthrough: true } }
    public_site: { rule: "HostSNI(\`public.example.test\`)", service: app, tls: {} }
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: secret, tls: {} }
  services:
    app:
      loadBalancer: { servers: [{ address: "127.0.0.1:${backend.port}" }], healthCheck: { interval: 1s, timeout: 1s } }
    secret:
      loadBalancer: { servers: [{ address: "127.0.0.1:${deadPort}" }], healthCheck: { interval: 1s, timeout: 1s } }
`,
    );
    serve = spawn(process.execPath, [join(ROOT, 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    serve.stderr!.on('data', (d) => {
      stderr += d;
    });
    // Up when the dashboard answers (bounded: 15 s).
    for (let i = 0; ; i++) {
      try {
        await getJson(metricsPort, '/api/overview');
        break;
      } catch (e) {
        if (i > 150 || serve.exitCode !== null) throw new Error(`echgate serve did not start: ${(e as Error).message}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: join(W, 'profile'),
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--no-default-browser-check',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-default-apps',
        '--disable-domain-reliability',
        '--disable-breakpad',
        '--metrics-recording-only',
        // Loopback only: no name resolves, and whatever is not loopback goes to a proxy nobody runs.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
        '--proxy-server=http://127.0.0.1:9',
        '--proxy-bypass-list=<-loopback>;127.0.0.1',
      ],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    await page.setRequestInterception(true);
    page.on('request', (req) => {
      const u = new URL(req.url());
      if (u.protocol === 'data:' || (u.hostname === '127.0.0.1' && Number(u.port) === metricsPort)) return void req.continue();
      blocked.push(req.url());
      void req.abort();
    });
  });

  after(async () => {
    await browser?.close();
    serve?.kill('SIGTERM');
    if (serve && serve.exitCode === null) await new Promise((r) => serve!.once('exit', r));
    await backend?.close();
  });

  it('loads, shows the router and the key the test created, and a counter moves after a connection (no reload)', async () => {
    await page.goto(`http://127.0.0.1:${metricsPort}/`, { waitUntil: 'load', timeout: 15_000 });
    await page.waitForFunction((name: string) => document.querySelector('#routers tbody')?.textContent?.includes(name), { timeout: 15_000 }, router);
    await page.waitForFunction((id: string) => [...document.querySelectorAll('#keys tbody tr')].some((tr) => tr.textContent?.includes('public.example.test') && tr.querySelector('td')?.textContent === id), { timeout: 15_000 }, String(key.configId));
    const routersText = await page.$eval('#routers tbody', (e) => e.textContent ?? '');
    assert.match(routersText, /passthrough/);
    assert.match(routersText, /\(ech\)/, 'the requireECH router shows as (ech)');
    assert.doesNotMatch(await page.content(), /secret\.example\.test/, 'no inner SNI on the page (log.innerSni off)');

    const count = () => page.$eval('#c-total', (e) => Number(e.textContent));
    await page.waitForFunction(() => /^\d+$/.test(document.querySelector('#c-total')?.textContent ?? ''), { timeout: 10_000 });
    const before = await count();
    assert.match(await ask(port, 'app.example.test'), /^app app\.example\.test/);
    // The connection is counted when it closes; the page polls every second.
    await page.waitForFunction((n: number) => Number(document.querySelector('#c-total')?.textContent) > n, { timeout: 15_000 }, before);
    // Handshake failures by alert sent: a name no router takes gets unrecognized_name (RFC 6066 §3).
    await assert.rejects(ask(port, 'nobody.example.test'));
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('#alerts tbody tr')].some((tr) => {
          const td = [...(tr.querySelectorAll?.('td') ?? [])];
          return td[0]?.textContent === 'unrecognized_name' && td[1]?.textContent === '1';
        }),
      { timeout: 15_000 },
    );
    // Health of the services: the backend is up, the dead one down (its address hidden).
    await page.waitForFunction(() => /\bup\b/.test(document.querySelector('#services tbody')?.textContent ?? '') && /\bdown\b/.test(document.querySelector('#services tbody')?.textContent ?? ''), { timeout: 15_000 });
    // Let a full refresh of the tables land before the picture.
    await new Promise((r) => setTimeout(r, 1200));
    mkdirSync(dirname(SHOT), { recursive: true });
    await page.screenshot({ path: SHOT as `${string}.png`, fullPage: true });
    assert.deepEqual(blocked, [], 'the page asked for something off this origin');
  });
});
