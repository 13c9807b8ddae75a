/**
 * Automatic ECH key rotation (ech.rotation, docs/ech.md "Automatic rotation"):
 * the schedule comes from the key folder's metadata; serve rotates on its own,
 * the embedded DNS hands out the new ech= and the old key decrypts within its
 * grace period; a refused RFC 2136 update leaves the old key active and is
 * retried; a grace shorter than twice the DNS TTL is refused.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { freePort } from '../src/cli/free-port.js';
import { parseConfigText } from '../src/config/load.js';
import { ConfigError } from '../src/config/validate.js';
import { generateKey, listKeys, publishedList, rotateKeys } from '../src/keys/manager.js';
import { planRotation } from '../src/keys/schedule.js';
import { KeyDir, type KeyMeta } from '../src/keys/store.js';
import { certFor, fakeUpdatePrimary, ROOT, serverFirstBackend, sleep } from './helpers.js';

const BIN = join(ROOT, 'bin', 'echgate.js');
const run = promisify(execFile);
const H = 3_600_000;
const T0 = Date.parse('2025-01-10T12:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const meta = (configId: number, state: KeyMeta['state'], created: number, more: Partial<KeyMeta> = {}): KeyMeta => ({ configId, publicName: 'public.example.test', state, created: iso(created), ...more });

describe('rotation schedule from key metadata (pure, fake clock)', () => {
  it('due now: the active key is older than every', () => {
    const p = planRotation([meta(1, 'active', T0 - 25 * H)], T0, { everyMs: 24 * H });
    assert.equal(p.rotateAt, T0 - H);
    assert.ok(p.rotateAt! <= T0);
  });
  it('a serve started 23 h after the last rotation with every 24h rotates in 1 h', () => {
    const p = planRotation([meta(1, 'active', T0 - 23 * H)], T0, { everyMs: 24 * H });
    assert.equal(p.rotateAt, T0 + H);
    assert.equal(p.nextAt, T0 + H);
    assert.deepEqual(p.retire, []);
  });
  it('activation time counts over creation (a staged key promoted later)', () => {
    const p = planRotation([meta(1, 'active', T0 - 30 * H, { activated: iso(T0 - 2 * H) })], T0, { everyMs: 24 * H });
    assert.equal(p.rotateAt, T0 + 22 * H);
  });
  it('retire after grace: a decrypt-only key past notAfter is retired, one before it is the next event', () => {
    const keys = [meta(1, 'active', T0 - H), meta(2, 'decrypt-only', T0 - 50 * H, { notAfter: iso(T0 - 1) }), meta(3, 'decrypt-only', T0 - 30 * H, { notAfter: iso(T0 + 10 * 60_000) })];
    const p = planRotation(keys, T0, { everyMs: 24 * H });
    assert.deepEqual(p.retire, [2]);
    assert.equal(p.nextAt, T0 + 10 * 60_000);
  });
  it('a retry key made after the active one (a failed publish) is promoted, not a new config_id', () => {
    const keys = [meta(1, 'active', T0 - 25 * H), meta(7, 'retry', T0 - 60_000), meta(9, 'retry', T0 - 26 * H)];
    assert.equal(planRotation(keys, T0, { everyMs: 24 * H }).promote, 7);
  });
  it('no active key: nothing to rotate', () => {
    const p = planRotation([meta(1, 'retry', T0)], T0, { everyMs: 24 * H });
    assert.equal(p.rotateAt, undefined);
  });
});

describe('ech.rotation: grace against the DNS TTL', () => {
  const base = (rot: string, dns = '') => `
entryPoints:
  websecure: { address: "127.0.0.1:1" }
tcp:
  routers: { a: { entryPoints: [websecure], rule: "HostSNI(\`a.example.test\`)", service: s, tls: { passthrough: true } } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:2" }] } } }
ech:
  keysDir: keys
  rotation: ${rot}
${dns}`;
  const problems = (text: string) => {
    try {
      parseConfigText(text, 'f.yml');
      return [];
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.problems.map((p) => `${p.path}: ${p.message}`);
    }
  };
  it('embedded: grace below 2 x dns.ttl is refused, naming both values; at 2 x TTL it is accepted', () => {
    const dns = 'dns: { address: "127.0.0.1:3", ttl: 600, names: {} }';
    const p = problems(base('{ every: 24h, grace: 10m, publish: embedded }', dns));
    assert.equal(p.length, 1, p.join('\n'));
    assert.match(p[0]!, /^ech\.rotation\.grace: grace 600s is shorter than twice the DNS TTL \(dns\.ttl 600s\)/);
    assert.deepEqual(problems(base('{ every: 24h, grace: 20m, publish: embedded }', dns)), []);
  });
  it('RFC 2136: the publish ttl (default 300) is the one compared', () => {
    const pub = (ttl: string) => `{ every: 24h, grace: 9m, publish: { name: a.example.test, server: "127.0.0.1:53", zone: example.test, verifyDoh: "https://127.0.0.1/dns-query"${ttl} } }`;
    assert.match(problems(base(pub('')))[0]!, /grace 540s is shorter than twice the DNS TTL \(ech\.rotation\.publish\.ttl 300s\)/);
    assert.deepEqual(problems(base(pub(', ttl: 270'))), []);
  });
  it('every below 1m is refused unless ECHGATE_ROTATION_SHORT=1 (tests)', () => {
    const dns = 'dns: { address: "127.0.0.1:3", ttl: 1, names: {} }';
    const saved = process.env.ECHGATE_ROTATION_SHORT;
    delete process.env.ECHGATE_ROTATION_SHORT;
    try {
      assert.match(problems(base('{ every: 2s, grace: 10s, publish: embedded }', dns))[0]!, /^ech\.rotation\.every: 2s is below the shortest allowed, 60s/);
      process.env.ECHGATE_ROTATION_SHORT = '1';
      assert.deepEqual(problems(base('{ every: 2s, grace: 10s, publish: embedded }', dns)), []);
    } finally {
      if (saved === undefined) delete process.env.ECHGATE_ROTATION_SHORT;
      else process.env.ECHGATE_ROTATION_SHORT = saved;
    }
  });
  it('echgate check exits non-zero with both values', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-rotcheck-'));
    const f = join(dir, 'echgate.yml');
    writeFileSync(f, base('{ every: 24h, grace: 1m, publish: embedded }', 'dns: { address: "127.0.0.1:3", ttl: 60, names: {} }'));
    const r = await run('node', [BIN, 'check', f]).then(
      () => assert.fail('check accepted a grace below 2 x TTL'),
      (e) => e as { code: number; stderr: string; stdout: string },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr + r.stdout, /grace 60s is shorter than twice the DNS TTL \(dns\.ttl 60s\): give at least 120s/);
  });
});

/** A spawned `echgate serve`, its output collected. */
function serve(f: string): { child: ChildProcess; out: () => string; waitFor(re: RegExp, count?: number, ms?: number): Promise<void> } {
  const child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ECHGATE_ROTATION_SHORT: '1' } });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  return {
    child,
    out: () => out,
    async waitFor(re, count = 1, ms = 30_000) {
      const g = new RegExp(re.source, 'g');
      for (let i = 0; i < ms / 50 && (out.match(g)?.length ?? 0) < count; i++) await sleep(50);
      assert.ok((out.match(g)?.length ?? 0) >= count, `waited for ${count} x ${re}:\n${out}`);
    },
  };
}

async function digEch(dnsPort: number, name: string): Promise<string> {
  const { stdout } = await run('dig', ['+short', '+norecurse', '-p', String(dnsPort), '@127.0.0.1', name, 'TYPE65']);
  return stdout.trim();
}

describe('serve rotates on its own', () => {
  it('embedded DNS: ech= changes, the old config still connects within grace, an expired key is retired', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-autorot-'));
    const keys = join(dir, 'keys');
    mkdirSync(keys, { mode: 0o700 });
    // A key whose grace ended: serve retires it at its first look.
    generateKey(keys, { publicName: 'public.example.test' });
    const old = rotateKeys(keys, { graceMs: 0 }).demoted[0]!;
    const oldList = publishedList(listKeys(keys).keys)!;
    const { key, cert } = certFor('secret.example.test');
    writeFileSync(join(dir, 'secret.crt'), cert);
    writeFileSync(join(dir, 'secret.key'), key);
    const hidden = await serverFirstBackend('hidden\n');
    const [port, dnsPort] = [await freePort(), await freePort()];
    const f = join(dir, 'echgate.yml');
    writeFileSync(
      f,
      `
entryPoints:
  websecure: { address: "127.0.0.1:${port}" }
ech:
  keysDir: ${JSON.stringify(keys)}
  rotation: { every: 4s, grace: 60s, publish: embedded }
tls:
  certificates: [{ certFile: ${JSON.stringify(join(dir, 'secret.crt'))}, keyFile: ${JSON.stringify(join(dir, 'secret.key'))} }]
tcp:
  routers:
    secret: { entryPoints: [websecure], rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: hidden, tls: {} }
  services:
    hidden: { loadBalancer: { servers: [{ address: "127.0.0.1:${hidden.port}" }] } }
dns:
  address: "127.0.0.1:${dnsPort}"
  ttl: 1
  names:
    secret.example.test: { a: [127.0.0.1], https: { port: ${port} } }
`,
    );
    const s = serve(f);
    try {
      await s.waitFor(/"listening"/);
      await s.waitFor(/ECH key retired/);
      assert.equal(listKeys(keys).keys.find((k) => k.meta.configId === old.configId)?.meta.state, 'retired');
      // What DNS hands out matches the folder: read both until they agree (a rotation may land in between).
      const b64 = (l: Uint8Array) => Buffer.from(l).toString('base64');
      const consistent = async () => {
        for (let i = 0; i < 100; i++) {
          const list = b64(publishedList(listKeys(keys).keys)!);
          const d = await digEch(dnsPort, 'secret.example.test');
          if (d.includes(`ech=${list}`)) return list;
          await sleep(100);
        }
        return assert.fail('the HTTPS record never carried the folder\'s active list');
      };
      const before = await consistent();
      const rotations = (s.out().match(/ECH keys rotated/g) ?? []).length;
      await s.waitFor(/ECH keys rotated/, rotations + 1);
      // The keyring picks the new key up from the folder; the embedded DNS answers from it.
      let after = before;
      for (let i = 0; i < 100 && after === before; i++) {
        await sleep(100);
        after = await consistent();
      }
      assert.notEqual(after, before, 'the HTTPS record changed with the rotation');
      assert.notEqual(after, b64(oldList));
      // echgate's own client with the config from before the rotation: the demoted key decrypts within grace.
      const { stdout } = await run('node', [BIN, 'connect', `127.0.0.1:${port}`, '--sni', 'secret.example.test', '--ech-config', Buffer.from(oldList).toString('base64')]);
      assert.equal(JSON.parse(stdout).ech, 'accepted', stdout);
      assert.doesNotMatch(s.out(), /PRIVATE KEY|"privateKey"/, 'no key material in the log');
    } finally {
      s.child.kill('SIGKILL');
      await hidden.close();
    }
  });

  it('RFC 2136 server answering REFUSED: the old key stays active, the rotation is retried with backoff, no config_id is spent per retry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-autorot-refused-'));
    const keys = join(dir, 'keys');
    mkdirSync(keys, { mode: 0o700 });
    const first = generateKey(keys, { publicName: 'public.example.test', now: new Date(Date.now() - H) });
    // A fake primary: every UPDATE gets REFUSED (RFC 2136 §2.2 rcode 5), id and opcode echoed.
    let updates = 0;
    const fake = await fakeUpdatePrimary((u) => {
      updates++;
      const b = Buffer.alloc(12); // header only, every count 0
      u.copy(b, 0, 0, 2); // id
      b.writeUInt16BE(0x8000 | (5 << 11) | 5, 2); // QR, opcode UPDATE, REFUSED
      return b;
    });
    const fakePort = fake.port;
    const [port, metricsPort] = [await freePort(), await freePort()];
    const f = join(dir, 'echgate.yml');
    writeFileSync(
      f,
      `
entryPoints:
  websecure: { address: "127.0.0.1:${port}" }
metrics: { address: "127.0.0.1:${metricsPort}", dashboard: true }
ech:
  keysDir: ${JSON.stringify(keys)}
  rotation:
    every: 2s
    grace: 10s
    publish: { name: secret.example.test, server: "127.0.0.1:${fakePort}", zone: example.test, ttl: 1, verifyDoh: "https://127.0.0.1:1/dns-query" }
tcp:
  routers:
    a: { entryPoints: [websecure], rule: "HostSNI(\`a.example.test\`)", service: s, tls: { passthrough: true } }
  services:
    s: { loadBalancer: { servers: [{ address: "127.0.0.1:1" }] } }
`,
    );
    const s = serve(f);
    try {
      await s.waitFor(/ECH key rotation failed: the previous key stays active/, 3);
      assert.ok(updates >= 3, `the update was retried (${updates})`);
      assert.match(s.out(), /update refused: REFUSED/);
      assert.match(s.out(), /"attempt":2.*"retryIn":"2s"/);
      const m = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(m, /echgate_key_rotations_total\{result="failed"\} [3-9]/);
      assert.match(m, /echgate_key_rotation_next_timestamp_seconds\{\} \d+/);
      // The dashboard's DNS publication state (issue #11): the failed UPDATE serve's rotation made, with its error.
      const dns = (await (await fetch(`http://127.0.0.1:${metricsPort}/api/dns`)).json()) as { mode: string; target: { name: string }; lastPublish: { ok: boolean; name: string; error?: string } | null };
      assert.equal(dns.mode, 'rfc2136');
      assert.equal(dns.target.name, 'secret.example.test');
      assert.equal(dns.lastPublish?.ok, false, JSON.stringify(dns));
      assert.equal(dns.lastPublish?.name, 'secret.example.test');
      assert.match(String(dns.lastPublish?.error), /REFUSED/);
      await s.child.kill('SIGKILL');
      await sleep(200);
      const ks = listKeys(keys).keys.map((k) => k.meta);
      assert.equal(ks.find((k) => k.configId === first.configId)?.state, 'active', 'the old key is active again');
      assert.equal(ks.filter((k) => k.state === 'active').length, 1);
      assert.equal(ks.length, 2, `one retry key, reused by every retry: ${JSON.stringify(ks)}`);
      assert.equal(ks.find((k) => k.configId !== first.configId)?.state, 'retry');
      // The folder lock was released each time: a hand rotation goes through.
      new KeyDir(keys).withLock(() => undefined, { waitMs: 2000 });
    } finally {
      s.child.kill('SIGKILL');
      fake.close();
    }
  });
});
