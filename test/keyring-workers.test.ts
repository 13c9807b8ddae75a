/**
 * `workers: N`: every worker holds its own Keyring on the one key folder and
 * reloads it from its own folder watch (100 ms debounce, then a read of the
 * folder), so right after a rotation the workers disagree for a moment. The
 * soak of the twelfth session (docs/soak.md, `--workers 2 --rotate 2`) saw a
 * good client fail for good: its stale config was rejected by a worker that
 * had already loaded the new key, that worker's retry_configs named the new
 * key, and the retry (RFC 9849 §6.1.6: one retry) landed on the other worker,
 * which had not, and was rejected again.
 *
 * The rule these tests hold: retry_configs name a key for which every worker
 * may be assumed to have it, i.e. one that has been active KEY_SETTLE_MS;
 * until then the key it replaced (still decrypting, in its grace) is offered
 * first.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { decryptEch } from '../src/ech/server.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { KEY_SETTLE_MS, Keyring } from '../src/keys/keyring.js';
import { generateKey, rotateKeys } from '../src/keys/manager.js';
import { KeyDir, type LoadResult } from '../src/keys/store.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';

const PN = 'public.example.test';
const T0 = Date.parse('2026-12-04T03:00:00Z');
const tmp = () => mkdtempSync(join(tmpdir(), 'echgate-ring-workers-'));

/** What a client does with retry_configs (connect.ts): the first usable config of the list. */
function firstRetryConfig(ring: Keyring) {
  assert.ok(ring.retryConfigs, 'retry_configs to send');
  return usableConfigs(decodeECHConfigList(ring.retryConfigs), isSupportedSuite)[0]!;
}

/** The retry: a ClientHello on that config, decrypted by (possibly) another worker's keyring. */
function retryAt(other: Keyring, cfg: ReturnType<typeof firstRetryConfig>): string {
  const h = buildEchClientHello(nodeProvider, { config: cfg, innerSni: 'hidden.example.test' });
  return decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), other).status;
}

describe('keyring with workers: retry_configs another worker can decrypt', () => {
  it('right after a rotation, a worker that has reloaded offers a key the worker that has not still decrypts', () => {
    const dir = tmp();
    generateKey(dir, { publicName: PN, now: new Date(T0) });
    const fast = new Keyring(dir);
    const slow = new Keyring(dir);
    fast.reload(new Date(T0 + 60_000));
    slow.reload(new Date(T0 + 60_000));
    // Worker 1 rotates; its own ring (and the DNS it serves) has the new key 100 ms later, worker 2's not yet.
    const r = rotateKeys(dir, { graceMs: 6_000, now: new Date(T0 + 60_000) });
    fast.reload(new Date(T0 + 60_100));
    assert.equal(fast.published && usableConfigs(decodeECHConfigList(fast.published), isSupportedSuite)[0]!.configId, r.created.configId, 'DNS has the new key at once');
    const cfg = firstRetryConfig(fast);
    assert.equal(retryAt(slow, cfg), 'accepted', `retry_configs named config_id ${cfg.configId}, which the other worker cannot decrypt yet`);
    // And the fast worker itself accepts that retry too (the replaced key is in its grace).
    assert.equal(retryAt(fast, cfg), 'accepted');
    fast.close();
    slow.close();
  });

  it('once the new key has been active KEY_SETTLE_MS, retry_configs name it first', () => {
    const dir = tmp();
    generateKey(dir, { publicName: PN, now: new Date(T0) });
    const r = rotateKeys(dir, { graceMs: 60_000, now: new Date(T0 + 60_000) });
    const ring = new Keyring(dir);
    ring.reload(new Date(T0 + 60_000 + KEY_SETTLE_MS));
    assert.equal(firstRetryConfig(ring).configId, r.created.configId);
    ring.close();
  });

  it('without a replaced key still in its grace, the new key is offered at once (never no retry_configs)', () => {
    const dir = tmp();
    generateKey(dir, { publicName: PN, now: new Date(T0) });
    // Grace 0: the old key stops decrypting at the rotation; offering it would be worse than the new one.
    const r = rotateKeys(dir, { graceMs: 0, now: new Date(T0 + 60_000) });
    const ring = new Keyring(dir);
    ring.reload(new Date(T0 + 60_001));
    assert.equal(firstRetryConfig(ring).configId, r.created.configId);
    ring.close();
  });

  it('the first key of a folder (nothing replaced) is offered at once', () => {
    const dir = tmp();
    const k = generateKey(dir, { publicName: PN });
    const ring = new Keyring(dir);
    ring.reload();
    assert.equal(firstRetryConfig(ring).configId, k.configId);
    ring.close();
  });

  it('the switch to the new key happens without an outside reload (a timer at the end of the settle time)', async () => {
    const dir = tmp();
    generateKey(dir, { publicName: PN, now: new Date(Date.now() - 120_000) });
    const r = rotateKeys(dir, { graceMs: 60_000, now: new Date(Date.now() - KEY_SETTLE_MS + 150) });
    const ring = new Keyring(dir);
    ring.reload();
    assert.notEqual(firstRetryConfig(ring).configId, r.created.configId, 'still settling: the replaced key first');
    await new Promise((res) => setTimeout(res, 400));
    assert.equal(firstRetryConfig(ring).configId, r.created.configId);
    ring.close();
  });
});

describe('keyring with workers: no reload while another process writes the folder', () => {
  // refresh() is what the folder watch and the keyring's timers call (a watch here would only add its debounce).
  it('a retirement half done by another process (key file beside retired metadata) is not read, nor logged as a broken file', () => {
    const dir = tmp();
    const k = generateKey(dir, { publicName: PN });
    const problems: LoadResult['problems'] = [];
    const ring = new Keyring(dir, { onLoad: (r) => problems.push(...r.problems) });
    ring.reload();
    // Another process (this one's pid stands in: alive) takes ticket 7 and is half way through retireKey:
    // the metadata says retired, the key file is not deleted yet.
    writeFileSync(join(dir, '.lock.7'), `${process.pid}\n${new Date().toISOString()}\n`, { mode: 0o600 });
    assert.equal(new KeyDir(dir).lockState().held, true);
    new KeyDir(dir).writeMeta({ ...k, state: 'retired', notAfter: new Date().toISOString() });
    assert.equal(ring.refresh(), false, 'read while another process held the folder');
    assert.deepEqual(problems, [], 'a torn state was read and reported');
    assert.equal(ring.size, 1, 'the previous keys stay in use while the writer works');
    // The writer finishes: key file deleted, lock released.
    unlinkSync(new KeyDir(dir).pemPath(k.configId));
    writeFileSync(join(dir, '.lock.7.free'), '', { mode: 0o600 });
    assert.equal(ring.refresh(), true);
    assert.deepEqual(problems, []);
    assert.equal(ring.size, 0, 'reloaded once the writer released the folder');
    ring.close();
  });

  it('a lock left by a process that died is no reason to wait', () => {
    const dir = tmp();
    generateKey(dir, { publicName: PN });
    const ring = new Keyring(dir);
    ring.reload();
    // pid 2^22 + 1 is above Linux's pid_max: no such process.
    writeFileSync(join(dir, '.lock.3'), `${2 ** 22 + 1}\n${new Date().toISOString()}\n`, { mode: 0o600 });
    assert.equal(new KeyDir(dir).lockState().held, false);
    generateKey(dir, { publicName: PN, state: 'retry' });
    assert.equal(ring.refresh(), true);
    assert.equal(ring.size, 2);
    ring.close();
  });
});
