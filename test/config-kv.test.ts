/**
 * Traefik's KV layout (its etcd provider's keys) → the same configuration the
 * file gives: table-driven, each row a set of etcd keys and what the validator
 * makes of them merged into a file with one entrypoint.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type KvPair, kvToRaw } from '../src/config/kv.js';
import { parseConfigText } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { ConfigError } from '../src/errors.js';

const FILE = 'entryPoints:\n  websecure: { address: "127.0.0.1:8443" }\n  other: { address: "127.0.0.1:8444" }\n';
const kv = (o: Record<string, string>, root = 'traefik'): KvPair[] => Object.entries(o).map(([k, value]) => ({ key: `${root}/${k}`, value }));
const load = (pairs: KvPair[], file = FILE, root = 'traefik'): Config => parseConfigText(file, 'f.yml', { etcd: { ...kvToRaw(pairs, root), revision: '7' } });
const problems = (pairs: KvPair[], file = FILE): string[] => {
  try {
    load(pairs, file);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
    throw e;
  }
  assert.fail('expected a ConfigError');
};

const APP = {
  'tcp/routers/app/rule': 'HostSNI(`app.example.test`)',
  'tcp/routers/app/service': 'app',
  'tcp/routers/app/entryPoints/0': 'websecure',
  'tcp/routers/app/tls/passthrough': 'true',
  'tcp/services/app/loadBalancer/servers/0/address': '127.0.0.1:9001',
  'tcp/services/app/loadBalancer/servers/1/address': '127.0.0.1:9002',
};

describe('providers.etcd: Traefik KV keys → configuration', () => {
  it('a passthrough router and its load balancer, as the file would give them', () => {
    const c = load(kv(APP));
    assert.deepEqual(c.routers.map((r) => [r.name, r.rule, r.service, r.entryPoints, r.tls]), [['app', 'HostSNI(`app.example.test`)', 'app', ['websecure'], { passthrough: true }]]);
    const s = c.services.get('app');
    assert.ok(s?.kind === 'loadBalancer');
    assert.deepEqual(s.servers, [{ host: '127.0.0.1', port: 9001 }, { host: '127.0.0.1', port: 9002 }]);
  });

  const table: { desc: string; keys: Record<string, string>; check: (c: Config) => void }[] = [
    { desc: 'keys are matched without regard to case (Traefik: "keys are case-insensitive")', keys: { ...APP, 'tcp/routers/app/entrypoints/0': 'other', 'tcp/routers/app/PRIORITY': '42' }, check: (c) => assert.deepEqual([c.routers[0]!.entryPoints, c.routers[0]!.priority], [['other'], 42]) },
    { desc: 'list items in index order, not key order', keys: { ...APP, 'tcp/routers/app/entryPoints/1': 'other', 'tcp/routers/app/entryPoints/0': 'websecure' }, check: (c) => assert.deepEqual(c.routers[0]!.entryPoints, ['websecure', 'other']) },
    {
      desc: 'weighted services with weights, a middleware list, ipAllowList sourceRange',
      keys: {
        ...APP,
        'tcp/routers/app/service': 'both',
        'tcp/routers/app/middlewares/0': 'office@etcd',
        'tcp/middlewares/office/ipAllowList/sourceRange/0': '192.0.2.0/24',
        'tcp/middlewares/office/ipAllowList/sourceRange/1': '127.0.0.1',
        'tcp/services/b/loadBalancer/servers/0/address': '127.0.0.1:9003',
        'tcp/services/both/weighted/services/0/name': 'app',
        'tcp/services/both/weighted/services/0/weight': '3',
        'tcp/services/both/weighted/services/1/name': 'b',
      },
      check: (c) => {
        assert.deepEqual(c.services.get('both'), { kind: 'weighted', name: 'both', services: [{ name: 'app', weight: 3 }, { name: 'b', weight: 1 }] });
        assert.deepEqual(c.routers[0]!.middlewares, [{ kind: 'ipAllowList', name: 'office', sourceRange: ['192.0.2.0/24', '127.0.0.1'] }]);
      },
    },
    {
      desc: 'tls = true alone terminates (tls: {}), with tls/options and tls.options from the store',
      keys: { ...APP, 'tcp/routers/app/tls/passthrough': 'false', 'tcp/routers/app/tls': 'true', 'tcp/routers/app/tls/options': 'modern', 'tls/options/modern/minVersion': 'VersionTLS13', 'tls/certificates/0/certFile': 'c.pem', 'tls/certificates/0/keyFile': 'k.pem' },
      check: (c) => {
        assert.equal(c.routers[0]!.tls?.passthrough, false);
        assert.equal(c.routers[0]!.tls?.options?.name, 'modern');
        assert.deepEqual(c.certificates, [{ certFile: 'c.pem', keyFile: 'k.pem' }]);
      },
    },
    { desc: 'http/ and udp/ keys are ignored with one warning each', keys: { ...APP, 'http/routers/x/rule': 'Host(`x`)', 'http/routers/x/service': 'x' }, check: (c) => assert.equal(c.warnings.filter((w) => w.includes('traefik/http/')).length, 1) },
    { desc: 'a key echgate does not know is warned about with its path', keys: { ...APP, 'tcp/routers/app/frobnicate': '1' }, check: (c) => assert.ok(c.warnings.includes('tcp.routers.app.frobnicate: unknown key, ignored'), c.warnings.join('\n')) },
  ];
  for (const t of table) it(t.desc, () => t.check(load(kv(t.keys))));

  it('only keys under the root key are read (rootKey)', () => {
    const c = load([...kv(APP, 'prod/traefik'), ...kv({ 'tcp/routers/stray/rule': 'HostSNI(`*`)', 'tcp/routers/stray/service': 'app' }, 'traefik')], FILE, 'prod/traefik');
    assert.deepEqual(
      c.routers.map((r) => r.name),
      ['app'],
    );
  });

  it('a problem in an entry from etcd names its etcd key', () => {
    const p = problems(kv({ ...APP, 'tcp/routers/app/priority': 'high' }));
    assert.deepEqual(p, ['etcd traefik/tcp/routers/app (converted to tcp.routers.app.priority): expected a whole number']);
  });
  it('a value that is not a boolean where one is expected is refused, not read as false', () => {
    assert.match(problems(kv({ ...APP, 'tcp/routers/app/tls/echSplit': 'yes' })).join('\n'), /tcp\.routers\.app\.tls\.echSplit\): expected true or false/);
  });
  it('a router that names a service etcd does not hold is refused like in the file', () => {
    assert.match(problems(kv({ ...APP, 'tcp/routers/app/service': 'nope' })).join('\n'), /no service named "nope"/);
  });
  it('one namespace: a router defined in the file and in etcd is refused', () => {
    const file = `${FILE}tcp:\n  routers:\n    app: { rule: "HostSNI(\`*\`)", service: app }\n  services:\n    app2: { loadBalancer: { servers: [{ address: "127.0.0.1:1" }] } }\n`;
    assert.deepEqual(problems(kv(APP), file), ['tcp.routers.app: defined both in the file and in etcd']);
  });
  it('a value on a key that has keys below it, other than true/false, is refused', () => {
    const expected = ['etcd traefik/tcp/routers/app/tls: expected keys below it (or true), got "maybe"'];
    assert.deepEqual(problems(kv({ ...APP, 'tcp/routers/app/tls': 'maybe' })), expected);
    assert.deepEqual(problems(kv({ 'tcp/routers/app/tls': 'maybe', ...APP })), expected);
  });
});

describe('providers.etcd settings', () => {
  const with_ = (etcd: string) => `${FILE}providers:\n  etcd: ${etcd}\n`;
  const bad = (etcd: string) => {
    try {
      parseConfigText(with_(etcd), 'f.yml');
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
      throw e;
    }
    assert.fail('expected a ConfigError');
  };
  it('endpoints get their scheme (https with tls), rootKey defaults to traefik', () => {
    assert.deepEqual(parseConfigText(with_('{ endpoints: ["127.0.0.1:2379", "http://[::1]:2379"] }'), 'f.yml').providers?.etcd, { endpoints: ['http://127.0.0.1:2379', 'http://[::1]:2379'], rootKey: 'traefik' });
    assert.deepEqual(parseConfigText(with_('{ endpoints: ["e1:2379"], tls: { ca: ca.pem } }'), 'f.yml').providers?.etcd?.endpoints, ['https://e1:2379']);
  });
  const refused: [string, string, RegExp][] = [
    ['no endpoints', '{ rootKey: x }', /providers\.etcd\.endpoints: expected a list/],
    ['an endpoint that is not a URL', '{ endpoints: ["ftp://x:1"] }', /providers\.etcd\.endpoints\[0\]: not an etcd client URL/],
    ['a port out of range', '{ endpoints: ["x:70000"] }', /providers\.etcd\.endpoints\[0\]: not an etcd client URL/],
    ['http:// with tls', '{ endpoints: ["http://x:1"], tls: {} }', /write https:\/\//],
    ['a rootKey with a leading /', '{ endpoints: ["x:1"], rootKey: /traefik }', /providers\.etcd\.rootKey/],
    ['an inline password', '{ endpoints: ["x:1"], username: u, password: p }', /providers\.etcd\.password: write the password in a file/],
    ['a username without passwordFile', '{ endpoints: ["x:1"], username: u }', /username and passwordFile go together/],
    ['a client cert without its key', '{ endpoints: ["x:1"], tls: { cert: c.pem } }', /cert and key go together/],
  ];
  for (const [desc, etcd, re] of refused) it(`refuses ${desc}`, () => assert.match(bad(etcd).join('\n'), re));
});
