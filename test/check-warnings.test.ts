/**
 * `echgate check` warns about what validates but fails traffic, and
 * `--strict` refuses it (exit 1, docs/cli.md). Each warning has a case that
 * triggers it and one that does not. What is already a refusal at load (the
 * DNS TTL above half the rotation grace, a key folder writable by group or
 * others) is checked to stay one.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Args, parseCommand } from '../src/cli/args.js';
import { checkCommand, checkSpec } from '../src/cli/check.js';
import { generateKey } from '../src/keys/manager.js';
import { ROOT } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');

/** A CA and a leaf for `names`, valid `days` days (openssl x509 -days), in `dir` as NAME.pem / NAME.key. */
function leaf(dir: string, name: string, names: string[], days: number): { certFile: string; keyFile: string } {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  const k = join(dir, `${name}.key`);
  const c = join(dir, `${name}.pem`);
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', k, '-out', c, '-days', String(days), '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`);
  return { certFile: c, keyFile: k };
}

const W = mkdtempSync(join(tmpdir(), 'echgate-check-'));
const good = leaf(W, 'good', ['public.example.test', 'app.example.test', '*.wild.example.test'], 90);
const soon = leaf(W, 'soon', ['soon.example.test'], 3);

async function check(yaml: string, strict = false): Promise<{ code: number; text: string }> {
  const f = join(W, `c-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(f, yaml);
  const parsed = parseCommand(checkSpec, ['--config', f, ...(strict ? ['--strict'] : [])]);
  assert.equal(parsed.help, false);
  let text = '';
  const code = await checkCommand(parsed as Args, (s) => {
    text += s;
  });
  return { code, text };
}

const certs = (...c: { certFile: string; keyFile: string }[]) => `tls: { certificates: [${c.map((x) => `{ certFile: "${x.certFile}", keyFile: "${x.keyFile}" }`).join(', ')}] }`;
const base = (routers: string, extra = '') => `${extra}
entryPoints: { websecure: { address: "127.0.0.1:1" } }
tcp:
  routers:
${routers}
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:2" }] } } }
`;

describe('echgate check: warnings, --strict refuses them', () => {
  it('RFC 6125 §6: a terminating router whose HostSNI name no certificate covers (a wildcard covers one label)', async () => {
    const bad = await check(base('    r: { rule: "HostSNI(`other.example.test`) || HostSNI(`x.wild.example.test`)", service: s, tls: {} }', certs(good)));
    assert.match(bad.text, /warning: tcp\.routers\.r: terminates TLS for other\.example\.test but no certificate/);
    assert.doesNotMatch(bad.text, /x\.wild/);
    assert.equal(bad.code, 0);
    const ok = await check(base('    r: { rule: "HostSNI(`app.example.test`)", service: s, tls: {} }', certs(good)));
    assert.doesNotMatch(ok.text, /warning/);
    // Passthrough: the backend holds the certificate; nothing to say.
    const pt = await check(base('    r: { rule: "HostSNI(`other.example.test`)", service: s, tls: { passthrough: true } }', certs(good)));
    assert.doesNotMatch(pt.text, /warning/);
  });

  it('a certificate that expires within 14 days is named; one valid for 90 days is not', async () => {
    const r = await check(base('    r: { rule: "HostSNI(`soon.example.test`)", service: s, tls: {} }', certs(good, soon)));
    assert.match(r.text, /warning: tls\.certificates\[1\]: .*soon\.pem expires in [23] days/);
    assert.doesNotMatch(r.text, /certificates\[0\]/);
  });

  it('a router that can never match: the same rule, or HostSNI(`*`) with a higher priority, tried first', async () => {
    const same = await check(base('    a: { rule: "HostSNI(`app.example.test`)", service: s, tls: { passthrough: true } }\n    b: { rule: "HostSNI(`APP.example.test`)", service: s, tls: { passthrough: true } }', certs(good)));
    assert.match(same.text, /warning: tcp\.routers\.b: never matches on entrypoint websecure: router a /);
    const all = await check(base('    any: { rule: "HostSNI(`*`)", priority: 100, service: s, tls: { passthrough: true } }\n    app: { rule: "HostSNI(`app.example.test`)", service: s, tls: { passthrough: true } }', certs(good)));
    assert.match(all.text, /tcp\.routers\.app: never matches .*router any \(priority 100/);
    const names = await check(base('    two: { rule: "HostSNI(`a.example.test`, `app.example.test`)", priority: 50, service: s, tls: { passthrough: true } }\n    app: { rule: "HostSNI(`app.example.test`)", service: s, tls: { passthrough: true } }', certs(good)));
    assert.match(names.text, /tcp\.routers\.app: never matches .*router two/);
  });

  it('not shadowed: a catch-all tried last (its default priority), requireECH above a plain router, another entrypoint, an ALPN rule', async () => {
    const r = await check(
      base(
        [
          '    any: { rule: "HostSNI(`*`)", entryPoints: [websecure], service: s, tls: { passthrough: true } }',
          '    app: { rule: "HostSNI(`app.example.test`)", entryPoints: [websecure], service: s, tls: { passthrough: true } }',
          '    hidden: { rule: "HostSNI(`public.example.test`)", requireECH: true, priority: 90, service: s, tls: {} }',
          '    open: { rule: "HostSNI(`public.example.test`)", service: s, tls: {} }',
          '    h2: { rule: "HostSNI(`app.example.test`) && ALPN(`h2`)", entryPoints: [websecure], priority: 80, service: s, tls: { passthrough: true } }',
          '    other: { rule: "HostSNI(`app.example.test`)", entryPoints: [second], service: s, tls: { passthrough: true } }',
        ].join('\n'),
        certs(good),
      ).replace('entryPoints: { websecure: { address: "127.0.0.1:1" } }', 'entryPoints: { websecure: { address: "127.0.0.1:1" }, second: { address: "127.0.0.1:3" } }'),
    );
    assert.doesNotMatch(r.text, /never matches/, r.text);
  });

  it('RFC 9849 §6.1.6: a key whose public_name no certificate covers (retry_configs cannot be sent); covered: no warning', async () => {
    const keys = join(W, 'keys-pn');
    mkdirSync(keys, { mode: 0o700 });
    generateKey(keys, { publicName: 'nocert.example.test' });
    const r = await check(base('    r: { rule: "HostSNI(`app.example.test`)", service: s, tls: {} }', `${certs(good)}\nech: { keysDir: "${keys}" }`));
    assert.match(r.text, /warning: ech\.keysDir: no certificate .* covers the public name nocert\.example\.test/);
    const keys2 = join(W, 'keys-ok');
    mkdirSync(keys2, { mode: 0o700 });
    generateKey(keys2, { publicName: 'public.example.test' });
    const ok = await check(base('    r: { rule: "HostSNI(`app.example.test`)", service: s, tls: {} }', `${certs(good)}\nech: { keysDir: "${keys2}" }`));
    assert.doesNotMatch(ok.text, /warning/);
  });

  it('--strict: any warning is an error, exit 1 (and a clean file still exits 0)', async () => {
    const bad = await check(base('    r: { rule: "HostSNI(`other.example.test`)", service: s, tls: {} }', certs(good)), true);
    assert.equal(bad.code, 1);
    assert.match(bad.text, /error: tcp\.routers\.r: terminates TLS/);
    assert.match(bad.text, /refused with --strict: 1 warning/);
    const ok = await check(base('    r: { rule: "HostSNI(`app.example.test`)", service: s, tls: {} }', certs(good)), true);
    assert.equal(ok.code, 0);
    assert.match(ok.text, /: ok \(/);
  });

  it('the command line: exit 1 with --strict, 0 without', async () => {
    const f = join(W, 'cli.yml');
    writeFileSync(f, base('    r: { rule: "HostSNI(`other.example.test`)", service: s, tls: {} }', certs(good)));
    assert.match((await run(process.execPath, [BIN, 'check', f])).stdout, /warning: tcp\.routers\.r/);
    await assert.rejects(run(process.execPath, [BIN, 'check', '--strict', f]), (e: { code: number }) => e.code === 1);
  });

  it('already refusals: a DNS TTL above half the rotation grace; a key folder writable by group or others', async () => {
    const keys = join(W, 'keys-rot');
    mkdirSync(keys, { mode: 0o700 });
    generateKey(keys, { publicName: 'public.example.test' });
    const dns = (ttl: number) => `dns: { address: "127.0.0.1:5", ttl: ${ttl}, names: { public.example.test: { a: [127.0.0.1] } } }`;
    const rot = (ttl: number) => `${certs(good)}\n${dns(ttl)}\nech: { keysDir: "${keys}", rotation: { every: 24h, grace: 1h, publish: embedded } }`;
    await assert.rejects(check(base('    r: { rule: "HostSNI(`app.example.test`)", service: s, tls: {} }', rot(1801))), /grace 3600s is shorter than twice the DNS TTL/);
    assert.equal((await check(base('    r: { rule: "HostSNI(`app.example.test`)", service: s, tls: {} }', rot(1800)))).code, 0);
    chmodSync(keys, 0o770);
    try {
      await assert.rejects(check(base('    r: { rule: "HostSNI(`app.example.test`)", service: s, tls: {} }', rot(60))), /writable by group/);
    } finally {
      chmodSync(keys, 0o700);
    }
  });
});
