/**
 * The fleet's key pieces that need no etcd: private keys sealed with the KEK
 * (AES-256-GCM, NIST SP 800-38D), the folder mirror of etcd's keys, the
 * `staged` state, and ech.store parsing (docs/fleet.md).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseConfigText } from '../src/config/load.js';
import { parseStore } from '../src/config/store.js';
import { ConfigError } from '../src/config/validate.js';
import type { EchgateError } from '../src/errors.js';
import { FolderKeyStore, mirrorToFolder } from '../src/keys/keystore.js';
import { decryptingKeys, generateKey, listKeys, makeKey, publishedList, retryList } from '../src/keys/manager.js';
import { kekId, openPrivateKey, parseKek, sealPrivateKey } from '../src/keys/sealed.js';

const KEK = new Uint8Array(32).fill(7);
const OTHER = new Uint8Array(32).fill(8);
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as EchgateError).code;
  }
  return 'no error';
};

describe('sealed private keys (AES-256-GCM, SP 800-38D)', () => {
  const k = makeKey(new Set(), { publicName: 'public.example.test' });
  const id = k.meta.configId;
  it('seal then open gives the key back; the box carries neither the key nor the KEK', () => {
    const s = sealPrivateKey(KEK, id, k.echConfigList, k.privateKey);
    assert.deepEqual(openPrivateKey(KEK, id, k.echConfigList, s), k.privateKey);
    assert.ok(!Buffer.from(s.box, 'base64').includes(Buffer.from(k.privateKey)));
    assert.equal(s.kek, kekId(KEK));
    assert.notEqual(s.kek, kekId(OTHER));
  });
  it('a fresh random nonce per seal (§8.2.2): two seals of one key differ', () => {
    assert.notEqual(sealPrivateKey(KEK, id, k.echConfigList, k.privateKey).box, sealPrivateKey(KEK, id, k.echConfigList, k.privateKey).box);
  });
  it('wrong KEK → ERR_KEK naming both ids', () => {
    const s = sealPrivateKey(KEK, id, k.echConfigList, k.privateKey);
    assert.throws(() => openPrivateKey(OTHER, id, k.echConfigList, s), (e: EchgateError) => e.code === 'ERR_KEK' && e.message.includes(kekId(KEK)) && e.message.includes(kekId(OTHER)));
    // Same id claimed, another KEK: the tag check refuses it.
    assert.equal(code(() => openPrivateKey(OTHER, id, k.echConfigList, { ...s, kek: kekId(OTHER) })), 'ERR_KEK');
  });
  it('associated data: a sealed key moved to another config_id or ECHConfigList does not open', () => {
    const s = sealPrivateKey(KEK, id, k.echConfigList, k.privateKey);
    assert.equal(code(() => openPrivateKey(KEK, (id + 1) % 256, k.echConfigList, s)), 'ERR_KEK');
    const other = makeKey(new Set(), { publicName: 'public.example.test', configId: id });
    assert.equal(code(() => openPrivateKey(KEK, id, other.echConfigList, s)), 'ERR_KEK');
  });
  it('a flipped ciphertext bit or a short box → ERR_KEK', () => {
    const s = sealPrivateKey(KEK, id, k.echConfigList, k.privateKey);
    const b = Buffer.from(s.box, 'base64');
    b[14]! ^= 1;
    assert.equal(code(() => openPrivateKey(KEK, id, k.echConfigList, { ...s, box: b.toString('base64') })), 'ERR_KEK');
    assert.equal(code(() => openPrivateKey(KEK, id, k.echConfigList, { ...s, box: 'AAAA' })), 'ERR_KEK');
  });
  it('KEK text: 64 hex digits or base64 of 32 bytes; anything else → ERR_KEK', () => {
    assert.deepEqual(parseKek(`${'07'.repeat(32)}\n`, 'f'), KEK);
    assert.deepEqual(parseKek(Buffer.from(KEK).toString('base64'), 'f'), KEK);
    for (const bad of ['', '07'.repeat(31), Buffer.alloc(31).toString('base64'), 'zz'.repeat(32)]) assert.equal(code(() => parseKek(bad, 'f')), 'ERR_KEK', bad);
    assert.equal(code(() => sealPrivateKey(new Uint8Array(16), id, k.echConfigList, k.privateKey)), 'ERR_KEK');
  });
});

describe('keystore: the folder store and the mirror of etcd', () => {
  const dir = () => {
    const d = join(mkdtempSync(join(tmpdir(), 'echgate-fleetkeys-')), 'keys');
    mkdirSync(d, { mode: 0o700 });
    return d;
  };
  it('a staged key decrypts but is neither published nor in retry_configs', () => {
    const d = dir();
    generateKey(d, { publicName: 'public.example.test', configId: 1 });
    generateKey(d, { publicName: 'public.example.test', configId: 2, state: 'staged' });
    const keys = listKeys(d).keys;
    assert.deepEqual(decryptingKeys(keys).map((k) => k.meta.configId), [1, 2]);
    const one = publishedList(keys.filter((k) => k.meta.configId === 1))!;
    assert.deepEqual(publishedList(keys), one);
    assert.deepEqual(retryList(keys), one);
  });
  it('FolderKeyStore: create refuses a config_id in use; update refuses an unknown one and changes nothing', async () => {
    const d = dir();
    const s = new FolderKeyStore(d);
    const k = makeKey(new Set(), { publicName: 'public.example.test', configId: 5 });
    await s.create(k);
    await assert.rejects(s.create(k), (e: EchgateError) => e.code === 'ERR_KEYSTORE');
    await assert.rejects(s.update([{ ...k.meta, state: 'decrypt-only' }, { ...k.meta, configId: 6 }]), (e: EchgateError) => e.code === 'ERR_KEYSTORE');
    assert.equal((await s.load())[0]!.meta.state, 'active');
    await s.retire(5);
    assert.equal((await s.load())[0]!.meta.state, 'retired');
  });
  it('mirrorToFolder: writes new keys, follows state changes, retires, removes keys etcd does not hold', () => {
    const d = dir();
    generateKey(d, { publicName: 'public.example.test', configId: 9 }); // not in etcd: removed
    const a = makeKey(new Set(), { publicName: 'public.example.test', configId: 1 });
    const b = makeKey(new Set(), { publicName: 'public.example.test', configId: 2, state: 'staged' });
    let r = mirrorToFolder(d, [a, b]);
    assert.deepEqual(r, { written: [1, 2], retired: [], removed: [9] });
    assert.deepEqual(listKeys(d).keys.map((k) => [k.meta.configId, k.meta.state]), [[1, 'active'], [2, 'staged']]);
    assert.deepEqual(mirrorToFolder(d, [a, b]), { written: [], retired: [], removed: [] }, 'nothing to do twice');
    r = mirrorToFolder(d, [{ meta: { ...a.meta, state: 'retired' } }, { ...b, meta: { ...b.meta, state: 'active' } }]);
    assert.deepEqual(r, { written: [2], retired: [1], removed: [] });
    const keys = listKeys(d).keys;
    assert.equal(keys.find((k) => k.meta.configId === 1)!.file, undefined, 'private key file deleted');
    assert.equal(keys.find((k) => k.meta.configId === 2)!.meta.state, 'active');
  });
});

describe('ech.store (config/store.ts)', () => {
  const parse = (v: unknown, env: NodeJS.ProcessEnv = {}) => {
    const problems: string[] = [];
    const r = parseStore(v, (p, m) => problems.push(`${p}: ${m}`), () => {}, env);
    return { r, problems };
  };
  const good = { etcd: { endpoints: ['http://127.0.0.1:2379'], kek: { env: 'ECHGATE_KEK' } } };
  it('defaults: prefix echgate/, lease 10s, ack 60s, drain 15s, forget 1h', () => {
    const { r, problems } = parse(good);
    assert.deepEqual(problems, []);
    assert.deepEqual(r, { etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: 'echgate/', kek: { env: 'ECHGATE_KEK' }, leaseTtlMs: 10_000, ackTimeoutMs: 60_000, drainMs: 15_000, forgetAfterMs: 3_600_000 } });
  });
  const table: [string, unknown, RegExp][] = [
    ['no kek', { etcd: { endpoints: ['http://127.0.0.1:2379'] } }, /ech\.store\.etcd\.kek: required/],
    ['kek file and env', { etcd: { ...good.etcd, kek: { file: 'k', env: 'E' } } }, /kek: give one of file or env/],
    ['no endpoints', { etcd: { kek: { env: 'E' } } }, /endpoints: expected a list/],
    ['endpoint without port', { etcd: { ...good.etcd, endpoints: ['http://127.0.0.1'] } }, /endpoints\[0\]: expected http\(s\):\/\/host:port/],
    ['endpoint not http', { etcd: { ...good.etcd, endpoints: ['ftp://h:1'] } }, /endpoints\[0\]/],
    ['tls over http', { etcd: { ...good.etcd, tls: { ca: 'ca.pem' } } }, /tls needs https/],
    ['tls cert without key', { etcd: { ...good.etcd, endpoints: ['https://h:1'], tls: { cert: 'c' } } }, /cert and key go together/],
    ['auth without password', { etcd: { ...good.etcd, auth: { username: 'u' } } }, /auth: give one of password or passwordFile/],
    ['empty prefix', { etcd: { ...good.etcd, prefix: '' } }, /prefix: expected a non-empty/],
    ['lease below 5s', { etcd: { ...good.etcd, leaseTtl: '2s' } }, /leaseTtl: 2s is below the shortest allowed, 5s/],
    ['forgetAfter below 4 x lease', { etcd: { ...good.etcd, leaseTtl: '30s', forgetAfter: '90s' } }, /forgetAfter: must be at least 4 x leaseTtl \(120s\)/],
    ['not a mapping', 'etcd', /ech\.store: expected a mapping/],
  ];
  for (const [desc, v, re] of table) {
    it(`refused: ${desc}`, () => {
      const { r, problems } = parse(v);
      assert.equal(r, undefined);
      assert.match(problems.join('\n'), re);
    });
  }
  it('ECHGATE_ROTATION_SHORT=1 lowers the floors (tests)', () => {
    const { r, problems } = parse({ etcd: { ...good.etcd, leaseTtl: '2s', forgetAfter: '8s', ackTimeout: '1s' } }, { ECHGATE_ROTATION_SHORT: '1' });
    assert.deepEqual(problems, []);
    assert.equal(r!.etcd.leaseTtlMs, 2000);
  });
  it('through the whole validator (the hook in validate.ts)', () => {
    const text = (store: string) => `
entryPoints: { websecure: { address: "127.0.0.1:1" } }
tcp:
  routers: { a: { entryPoints: [websecure], rule: "HostSNI(\`a.example.test\`)", service: s, tls: { passthrough: true } } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:2" }] } } }
ech: { keysDir: keys, store: ${store} }
`;
    assert.equal(parseConfigText(text('{ etcd: { endpoints: ["http://127.0.0.1:2379"], kek: { file: kek } } }'), 'f.yml').ech!.store!.etcd.prefix, 'echgate/');
    assert.throws(() => parseConfigText(text('{ etcd: { endpoints: [] } }'), 'f.yml'), (e: ConfigError) => e instanceof ConfigError && e.problems.some((p) => p.path === 'ech.store.etcd.kek'));
  });
});
