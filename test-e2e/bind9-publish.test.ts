/**
 * End to end with a real primary: BIND 9 (Debian's named) with a TSIG key and
 * native DoH. `echgate publish` replaces the HTTPS RRset with a signed RFC 2136
 * update, reads it back over BIND's DoH, and dig/kdig see the same ech=. Then
 * a rotation is published and read back; a wrong key, an unsigned update and
 * a tampered answer are each refused. Setup follows ../shared/recipes/bind9-ddns-doh.md.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { exchangeTcp, readBackEch } from '../src/dns/publisher.js';
import { DohResolver } from '../src/dns/resolver.js';
import { generateKey, listKeys, publishedList, rotateKeys } from '../src/keys/manager.js';
import { decodeMessage, RCode, RRType } from '../src/wire/dns/message.js';
import { httpsServiceRdata } from '../src/wire/dns/svcb.js';
import { nodeProvider } from '../src/crypto/node.js';
import { parseTsigKeyFile, signRequest, verifyResponse } from '../src/wire/dns/tsig.js';
import { encodeUpdate } from '../src/wire/dns/update.js';
import { namedMissing, startBind } from './bind9.js';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const skip = namedMissing;

async function echgate(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run('node', [join(ROOT, 'bin', 'echgate.js'), ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

describe('publishing ECH keys to BIND 9 with RFC 2136 + TSIG, read back over DoH', { skip }, () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-bind-'));
  const keysDir = join(W, 'keys');
  let named: ChildProcess | undefined;
  let dnsPort = 0;
  let dohPort = 0;
  let doh = '';
  let ca = '';

  before(async () => {
    const bind = await startBind(W, 'alias 60 HTTPS 0 svc.example.test.\n');
    ({ dnsPort, dohPort, doh, ca } = bind);
    named = bind.proc;
    mkdirSync(keysDir, { mode: 0o700 });
    generateKey(keysDir, { publicName: 'public.example.test' });
  });
  after(() => named?.kill());

  const publish = (...extra: string[]) =>
    echgate('publish', '--dir', keysDir, '--name', 'svc.example.test', '--server', `127.0.0.1:${dnsPort}`, '--zone', 'example.test', '--alpn', 'h2,http/1.1', '--ttl', '60', ...extra);

  it('echgate publish: a signed update, then the same ech= read back over BIND\'s DoH, and seen by dig and kdig', async () => {
    const r = await publish('--tsig-key', join(W, 'upd.key'), '--verify-doh', doh, '--ca', join(W, 'cert.pem'), '--verify-timeout', '10s');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /published svc\.example\.test HTTPS .* with TSIG key upd/);
    assert.match(r.stdout, /read back over .*: ech= matches/);
    const b64 = Buffer.from(publishedList(listKeys(keysDir).keys)!).toString('base64');
    const dig = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', 'svc.example.test', 'HTTPS']);
    assert.equal(dig.stdout.trim(), `1 . alpn="h2,http/1.1" ech=${b64}`);
    const kdig = await run('kdig', ['-p', String(dohPort), '@127.0.0.1', '+https', `+tls-ca=${join(W, 'cert.pem')}`, '+tls-hostname=dns.test', '+short', 'svc.example.test', 'HTTPS']);
    assert.equal(kdig.stdout.trim(), `1 . alpn=h2,http/1.1 ech=${b64}`);
  });

  it("the resolver over BIND's DoH (RFC 9460 §2.4.2, RFC 8484 §5.1): an AliasMode record followed to the published ServiceMode record; the answer cached within min(TTL, max-age)", async () => {
    const res = new DohResolver(doh, { ca });
    const svc = await res.https('alias.example.test', 443);
    assert.deepEqual(svc.aliases, ['svc.example.test']);
    assert.equal(svc.address, '127.0.0.1');
    assert.deepEqual(svc.alpn, ['h2', 'http/1.1']);
    assert.deepEqual(svc.ech, publishedList(listKeys(keysDir).keys));
    const sent = res.networkQueries;
    const again = await res.query('svc.example.test', RRType.HTTPS);
    assert.equal(again.cached, true);
    assert.equal(res.networkQueries, sent);
    assert.ok(again.lifetime > 0 && again.lifetime <= 60, `published with TTL 60: lifetime ${again.lifetime}`);
    assert.equal((await res.query('svc.example.test', RRType.HTTPS, { fresh: true })).cached, false);
  });

  it('a rotation is published as one RRset replacement and read back: DNS then holds only the new active key', async () => {
    const before = publishedList(listKeys(keysDir).keys)!;
    rotateKeys(keysDir, { graceMs: 3600_000 });
    const after = publishedList(listKeys(keysDir).keys)!;
    assert.notDeepEqual(after, before);
    const r = await publish('--tsig-key', join(W, 'upd.key'), '--verify-doh', doh, '--ca', join(W, 'cert.pem'), '--verify-timeout', '10s');
    assert.equal(r.code, 0, r.stderr);
    const dig = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', 'svc.example.test', 'HTTPS']);
    assert.equal(dig.stdout.trim().split('\n').length, 1, 'one record: the old one was replaced, not added to');
    assert.ok(dig.stdout.includes(`ech=${Buffer.from(after).toString('base64')}`));
    // And a read-back that wants the old list does not pass.
    await assert.rejects(readBackEch(doh, 'svc.example.test', before, { ca, timeoutMs: 1500, intervalMs: 300 }), { code: 'ERR_DNS_READBACK' });
  });

  it('a wrong TSIG secret is refused (NOTAUTH/BADSIG), an unsigned update is refused, and DNS is unchanged', async () => {
    const held = (await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', 'svc.example.test', 'HTTPS'])).stdout;
    const wrong = await publish('--tsig-key', join(W, 'wrong.key'));
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /NOTAUTH \(BADSIG\)/);
    const unsigned = await publish();
    assert.equal(unsigned.code, 1);
    assert.match(unsigned.stderr, /update refused: REFUSED/);
    assert.equal((await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', 'svc.example.test', 'HTTPS'])).stdout, held);
  });

  it('keys rotate --publish: DNS takes the new key and is read back; with a refused update the rotation is undone', async () => {
    const flags = ['--name', 'svc.example.test', '--server', `127.0.0.1:${dnsPort}`, '--zone', 'example.test', '--alpn', 'h2,http/1.1', '--ttl', '60', '--verify-doh', doh, '--ca', join(W, 'cert.pem'), '--verify-timeout', '10s'];
    const ok = await echgate('keys', 'rotate', '--dir', keysDir, '--grace', '1h', '--publish', '--tsig-key', join(W, 'upd.key'), ...flags);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /read back over .*: ech= matches/);
    assert.match(ok.stdout, /DNS carries the new key; decrypt-only from now: /);
    const held = publishedList(listKeys(keysDir).keys)!;
    assert.ok((await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', 'svc.example.test', 'HTTPS'])).stdout.includes(Buffer.from(held).toString('base64')));

    const activeBefore = listKeys(keysDir).keys.filter((k) => k.meta.state === 'active').map((k) => k.meta.configId);
    const bad = await echgate('keys', 'rotate', '--dir', keysDir, '--grace', '1h', '--publish', '--tsig-key', join(W, 'wrong.key'), ...flags);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /rotation undone/);
    const keys = listKeys(keysDir).keys;
    assert.deepEqual(keys.filter((k) => k.meta.state === 'active').map((k) => k.meta.configId), activeBefore, 'the published key is active again');
    assert.deepEqual(publishedList(keys), held, 'what we would publish is what DNS holds');
    assert.equal(keys.filter((k) => k.meta.state === 'retry').length, 1, 'the new key still decrypts, as retry');
    // Without --verify-doh a rotation is not published at all: nothing changes.
    const count = listKeys(keysDir).keys.length;
    const noReadBack = await echgate('keys', 'rotate', '--dir', keysDir, '--publish', '--tsig-key', join(W, 'upd.key'), '--name', 'svc.example.test', '--server', `127.0.0.1:${dnsPort}`, '--zone', 'example.test');
    assert.equal(noReadBack.code, 2);
    assert.equal(listKeys(keysDir).keys.length, count);
  });

  it("BIND's signed answer verifies; the same answer with one byte changed, or checked with another key, does not", async () => {
    const key = parseTsigKeyFile(readFileSync(join(W, 'upd.key'), 'utf8'));
    const msg = encodeUpdate({ id: 0x1234, zone: 'example.test', deleteRRsets: [], add: [{ name: 'probe.example.test', type: RRType.HTTPS, ttl: 30, rdata: httpsServiceRdata({ alpn: ['h2'] }) }] });
    const req = signRequest(msg, key, nodeProvider.hmac);
    const resp = await exchangeTcp('127.0.0.1', dnsPort, req.message, 5000);
    assert.equal(decodeMessage(resp).rcode, RCode.NOERROR);
    assert.deepEqual(verifyResponse(resp, req, key, nodeProvider.hmac), { signed: true, tsigError: 0 });
    const tampered = new Uint8Array(resp);
    tampered[3]! ^= 0x01; // the rcode bits of the header
    assert.throws(() => verifyResponse(tampered, req, key, nodeProvider.hmac), { code: 'ERR_TSIG' });
    const other = parseTsigKeyFile(readFileSync(join(W, 'wrong.key'), 'utf8'));
    assert.throws(() => verifyResponse(resp, req, other, nodeProvider.hmac), { code: 'ERR_TSIG' });
  });
});
