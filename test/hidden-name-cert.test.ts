/**
 * RFC 9849 §6.1.6, §10.5: a hello without ECH, or with ECH rejected, gets the
 * certificate for its outer SNI (the public name); a name that only ECH
 * routers serve must not be on it. `echgate check` names such a certificate
 * and the hidden host (an error with --strict), and the embedded demo does
 * not ship one.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type Args, parseCommand } from '../src/cli/args.js';
import { checkCommand, checkSpec } from '../src/cli/check.js';
import { startDemo } from '../src/cli/demo.js';
import { generateKey } from '../src/keys/manager.js';
import { loadCertificates } from '../src/proxy/certificates.js';
import { certificateSelector } from '../src/tls13/certs.js';
import { waitForOutput } from './helpers.js';

const W = mkdtempSync(join(tmpdir(), 'echgate-hidden-cert-'));

function leaf(name: string, cn: string, sans: string[]): { certFile: string; keyFile: string } {
  const k = join(W, `${name}.key`);
  const c = join(W, `${name}.pem`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', k, '-out', c, '-days', '30', '-subj', `/CN=${cn}`, ...(sans.length ? ['-addext', `subjectAltName=${sans.map((n) => `DNS:${n}`).join(',')}`] : [])],
    { stdio: 'ignore' },
  );
  return { certFile: c, keyFile: k };
}

const both = leaf('both', 'secret.example.test', ['secret.example.test', 'public.example.test']);
const pub = leaf('pub', 'public.example.test', ['public.example.test']);
const sec = leaf('sec', 'secret.example.test', ['secret.example.test']);
const cnOnly = leaf('cnonly', 'secret.example.test', ['public.example.test']);
const appAndSecret = leaf('appsec', 'app.example.test', ['app.example.test', 'secret.example.test']);
const wild = leaf('wild', 'public.example.test', ['public.example.test', '*.example.test']);

const keys = join(W, 'keys');
mkdirSync(keys, { mode: 0o700 });
generateKey(keys, { publicName: 'public.example.test' });

const certs = (...c: { certFile: string; keyFile: string }[]) => `tls: { certificates: [${c.map((x) => `{ certFile: "${x.certFile}", keyFile: "${x.keyFile}" }`).join(', ')}] }`;
const HIDDEN = '    secret: { rule: "HostSNI(`secret.example.test`)", requireECH: true, service: s, tls: {} }';
function config(routers: string, tls: string, ech = true): string {
  return `${tls}
${ech ? `ech: { keysDir: "${keys}" }` : ''}
entryPoints: { websecure: { address: "127.0.0.1:1" } }
tcp:
  routers:
${routers}
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:2" }] } } }
`;
}

async function check(yaml: string, strict = false): Promise<{ code: number; text: string }> {
  const f = join(W, `c-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(f, yaml);
  const parsed = parseCommand(checkSpec, ['--config', f, ...(strict ? ['--strict'] : [])]);
  let text = '';
  const code = await checkCommand(parsed as Args, (s) => {
    text += s;
  });
  return { code, text };
}

describe('a hidden name on a certificate sent without ECH (RFC 9849 §6.1.6, §10.5)', () => {
  it('the public name\'s certificate also names a requireECH host: a warning naming the file and the host; --strict refuses it', async () => {
    const r = await check(config(HIDDEN, certs(both)));
    assert.equal(r.code, 0);
    assert.ok(r.text.includes(`warning: tls.certificates[0]: ${both.certFile} is sent to clients without ECH or with ECH rejected (for public.example.test) and names secret.example.test`), r.text);
    const s = await check(config(HIDDEN, certs(both)), true);
    assert.equal(s.code, 1);
    assert.match(s.text, /error: tls\.certificates\[0\]: .* names secret\.example\.test/);
  });
  it('the hidden name only in the subject CN is found too', async () => {
    const r = await check(config(HIDDEN, certs(cnOnly, sec)));
    assert.match(r.text, /tls\.certificates\[0\]: .*cnonly\.pem .* names secret\.example\.test/);
  });
  it('a plain terminating router\'s certificate naming the hidden host, with no ECH keys at all', async () => {
    const r = await check(config(`${HIDDEN}\n    app: { rule: "HostSNI(\`app.example.test\`)", service: s, tls: {} }`, certs(pub, appAndSecret, sec), false));
    assert.match(r.text, /tls\.certificates\[1\]: .*appsec\.pem .* \(for app\.example\.test\) and names secret\.example\.test/);
    assert.doesNotMatch(r.text, /certificates\[0\]|certificates\[2\]/);
  });
  it('the default certificate, when a plain terminating router takes names no certificate lists', async () => {
    const r = await check(config(`${HIDDEN}\n    any: { rule: "HostSNIRegexp(\`^x-.*\`)", service: s, tls: {} }`, certs(sec, pub)));
    assert.match(r.text, /tls\.certificates\[0\]: .*sec\.pem .*default certificate.* names secret\.example\.test/);
  });
  it('no warning: separate certificates; a wildcard (it does not reveal the name); the name also served without ECH; a passthrough or hidden router\'s own certificate', async () => {
    for (const [routers, tls] of [
      [HIDDEN, certs(pub, sec)],
      [HIDDEN, certs(wild)],
      [`${HIDDEN}\n    plain: { rule: "HostSNI(\`secret.example.test\`)", priority: 1, service: s, tls: {} }`, certs(both)],
      [`${HIDDEN}\n    app: { rule: "HostSNI(\`app.example.test\`)", service: s, tls: { passthrough: true } }`, certs(pub, sec, appAndSecret)],
    ] as const) {
      const r = await check(config(routers, tls));
      assert.doesNotMatch(r.text, /names secret/, r.text);
      assert.doesNotMatch(r.text, /warning/, r.text);
    }
  });
  it('serve warns at start, naming the certificate file and never the hidden host (a log is not the place for it)', async () => {
    const f = join(W, 'serve.yml');
    writeFileSync(f, config(HIDDEN, certs(both)).replace('127.0.0.1:1', '127.0.0.1:0'));
    const child = spawn(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'echgate.js'), 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    try {
      await waitForOutput(() => out, 'names a host only ECH routes serve', 20_000);
      await waitForOutput(() => out, 'ECH keys loaded', 5_000);
      const line = out.split('\n').find((l) => l.includes('names a host only ECH routes serve'))!;
      assert.equal(JSON.parse(line).certificate, both.certFile);
      assert.ok(!out.includes('secret.example.test'), out);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  it('the embedded demo: the certificate chosen for the public name does not name the hidden host', async () => {
    const demo = await startDemo(0, 0);
    try {
      const pick = certificateSelector(loadCertificates(demo.config));
      const c = pick('public.example.test')!;
      assert.deepEqual(c.names, ['public.example.test']);
      // A rejected ECH with an unknown outer name gets the default certificate: the public one too.
      assert.deepEqual(pick('nobody.example.test')!.names, ['public.example.test']);
      assert.deepEqual(pick('secret.example.test')!.names, ['secret.example.test']);
    } finally {
      demo.close();
    }
  });
});
