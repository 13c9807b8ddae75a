/**
 * Multi-step commands report each step as it happens. Not on a terminal (a
 * pipe here, as under a supervisor or in a script): one JSON line per step,
 * in order: staged (the new key in the folder), published (the RFC 2136
 * UPDATE answered NOERROR, RFC 2136 §3.8), read back (RFC 8484 DoH serves the
 * new ech=), active. On a terminal: `[step] sentence` lines (stepWriter).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { stepWriter } from '../src/cli/publish.js';
import { startDohServer } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { caAndLeaf, fakeUpdatePrimary, ROOT, updateNoError } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');

/** An RFC 2136 primary over TCP that answers every UPDATE NOERROR. */
const okPrimary = () => fakeUpdatePrimary((u) => updateNoError(u));

const lines = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as { time: string; step: string; msg: string; [k: string]: unknown });

describe('steps of multi-step commands, not on a terminal: one JSON line each', () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-steps-'));
  const keys = join(W, 'keys');
  let primary: Awaited<ReturnType<typeof okPrimary>>;
  let doh: http2.Http2SecureServer;
  let dohUrl = '';
  before(async () => {
    mkdirSync(keys, { mode: 0o700 });
    generateKey(keys, { publicName: 'public.example.test' });
    // The DoH endpoint's certificate names its address (RFC 6125: an IP in the URL is checked against IP SANs).
    caAndLeaf(W, ['doh.example.test']);
    const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
    writeFileSync(join(W, 'ip.ext'), 'subjectAltName=IP:127.0.0.1\n');
    ssl('x509', '-req', '-in', join(W, 'server.csr'), '-CA', join(W, 'ca.pem'), '-CAkey', join(W, 'ca.key'), '-CAcreateserial', '-out', join(W, 'server.pem'), '-days', '2', '-extfile', join(W, 'ip.ext'));
    primary = await okPrimary();
    // The resolver the read-back asks serves whatever the key folder has active now (what the UPDATE put in DNS).
    const zone = new Zone({ ttl: 1, names: { 'svc.example.test': { https: { alpn: ['h2'], ech: true } } } }, () => publishedList(listKeys(keys).keys));
    doh = await startDohServer({ host: '127.0.0.1', port: 0, cert: readFileSync(join(W, 'server.pem'), 'utf8'), key: readFileSync(join(W, 'server.key'), 'utf8'), zone: () => zone });
    dohUrl = `https://127.0.0.1:${(doh.address() as net.AddressInfo).port}/dns-query`;
  });
  after(() => {
    primary?.close();
    doh?.close();
  });

  it('keys rotate: staged, then active', async () => {
    const r = await run(process.execPath, [BIN, 'keys', 'rotate', '--dir', keys]);
    const s = lines(r.stdout);
    assert.deepEqual(
      s.map((l) => l.step),
      ['staged', 'active'],
    );
    assert.equal(typeof s[0]!.configId, 'number');
    assert.ok(Array.isArray(s[0]!.decryptOnly));
    assert.match(s[0]!.msg, /new active key config_id \d+/);
    assert.ok(!Number.isNaN(Date.parse(s[0]!.time)));
  });

  it('keys rotate --publish: staged, published, read back, active (RFC 2136 UPDATE, RFC 8484 read-back)', async () => {
    const r = await run(process.execPath, [
      BIN, 'keys', 'rotate', '--dir', keys, '--publish', '--name', 'svc.example.test', '--server', `127.0.0.1:${primary.port}`, '--zone', 'example.test',
      '--ttl', '1', '--verify-doh', dohUrl, '--ca', join(W, 'ca.pem'), '--verify-timeout', '10s',
    ]);
    const s = lines(r.stdout);
    assert.deepEqual(
      s.map((l) => l.step),
      ['staged', 'published', 'read back', 'active'],
    );
    assert.equal(s[1]!.name, 'svc.example.test');
    assert.deepEqual(s[1]!.configIds, [s[0]!.configId]);
    assert.equal(s[2]!.doh, dohUrl);
    assert.equal(s[3]!.configId, s[0]!.configId);
  });

  it('keys rotate --publish with DNS failing: staged, then undone, exit non-zero', async () => {
    const dead = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (dead.address() as net.AddressInfo).port;
      const r = await run(process.execPath, [BIN, 'keys', 'rotate', '--dir', keys, '--publish', '--name', 'svc.example.test', '--server', `127.0.0.1:${port}`, '--zone', 'example.test', '--verify-doh', dohUrl]).then(
        () => assert.fail('exit 0'),
        (e: { code: number; stdout: string }) => e,
      );
      assert.notEqual(r.code, 0);
      assert.deepEqual(
        lines(r.stdout).map((l) => l.step),
        ['staged', 'undone'],
      );
    } finally {
      dead.close();
    }
  });

  it('on a terminal: one readable line per step, no JSON', () => {
    const out: string[] = [];
    const w = stepWriter((s) => out.push(s), true);
    w({ step: 'published', msg: 'published a.test HTTPS', name: 'a.test' });
    assert.deepEqual(out, ['[published] published a.test HTTPS\n']);
    const j: string[] = [];
    stepWriter((s) => j.push(s), false, () => new Date(0))({ step: 'active', msg: 'ok', configId: 3 });
    assert.deepEqual(JSON.parse(j[0]!), { time: '1970-01-01T00:00:00.000Z', step: 'active', msg: 'ok', configId: 3 });
  });
});
