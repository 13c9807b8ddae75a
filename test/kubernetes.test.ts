/**
 * providers.kubernetesCRDFiles: Traefik's IngressRouteTCP, TLSOption, TLSStore
 * and MiddlewareTCP manifests read from files, converted to the file-provider
 * shape and validated by the one validator; served for real; errors name the
 * manifest, the document and the field; `convert` output passes `check`.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkCommand } from '../src/cli/check.js';
import { convertCommand } from '../src/cli/convert.js';
import { loadConfigFile } from '../src/cli/config-file.js';
import { ConfigError } from '../src/config/validate.js';
import { certFor, serverFirstBackend, startGateway, tlsAsk, tlsBackend } from './helpers.js';

/** The two routes a Traefik user typically has: a database by SNI (passthrough) and a catch-all. */
const SEED = `apiVersion: traefik.io/v1alpha1
kind: IngressRouteTCP
metadata:
  name: postgres
  namespace: data
spec:
  entryPoints: [websecure]
  routes:
    - match: HostSNI(\`db.example.test\`)
      services:
        - name: postgres
          port: 5432
  tls:
    passthrough: true
---
apiVersion: traefik.containo.us/v1alpha1
kind: IngressRouteTCP
metadata:
  name: everything-else
spec:
  entryPoints: [websecure]
  routes:
    - match: HostSNI(\`*\`)
      priority: 1
      services:
        - name: web
          port: 8443
  tls:
    passthrough: true
`;

/** Traefik's documented examples, one per kind, with our own names and values. */
const DOCUMENTED = `---
apiVersion: traefik.io/v1alpha1
kind: MiddlewareTCP
metadata: { name: office-only, namespace: apps }
spec:
  ipAllowList:
    sourcerange: [127.0.0.1/32, 192.0.2.7]
---
apiVersion: traefik.io/v1alpha1
kind: MiddlewareTCP
metadata: { name: ten-each, namespace: apps }
spec:
  inFlightConn: { amount: 10 }
---
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: { name: modern, namespace: apps }
spec:
  minVersion: VersionTLS12
  cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curvePreferences: [CurveP256, X25519]
  sniStrict: false
---
apiVersion: traefik.io/v1alpha1
kind: TLSStore
metadata: { name: default, namespace: apps }
spec:
  defaultCertificate: { secretName: fallback-cert }
---
apiVersion: v1
kind: Service
metadata: { name: app }
spec: { ports: [{ port: 9000 }] }
---
apiVersion: traefik.io/v1alpha1
kind: IngressRouteTCP
metadata: { name: app-tls, namespace: apps }
spec:
  entryPoints: [websecure]
  routes:
    - match: HostSNI(\`app.example.test\`)
      priority: 10
      middlewares:
        - { name: office-only }
        - { name: ten-each, namespace: apps }
      services:
        - { name: app, port: 9000, weight: 3 }
        - { name: app-canary, port: 9000, weight: 1 }
  tls:
    secretName: app-cert
    options: { name: modern, namespace: apps }
`;

function fixture(manifests: Record<string, string>, extra = ''): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-k8s-'));
  mkdirSync(join(dir, 'manifests'));
  for (const [f, text] of Object.entries(manifests)) writeFileSync(join(dir, 'manifests', f), text);
  // Secrets as files: <secretsDir>/<namespace>/<secretName>/tls.crt and tls.key.
  for (const [ns, name, host] of [
    ['apps', 'app-cert', 'app.example.test'],
    ['apps', 'fallback-cert', 'fallback.example.test'],
  ] as const) {
    mkdirSync(join(dir, 'secrets', ns, name), { recursive: true });
    const c = certFor(host);
    writeFileSync(join(dir, 'secrets', ns, name, 'tls.crt'), c.cert);
    writeFileSync(join(dir, 'secrets', ns, name, 'tls.key'), c.key);
  }
  const config = join(dir, 'echgate.yml');
  writeFileSync(
    config,
    `entryPoints:
  websecure: { address: "127.0.0.1:0" }
providers:
  kubernetesCRDFiles:
    paths: ["${join(dir, 'manifests')}"]
    secretsDir: "${join(dir, 'secrets')}"
${extra}`,
  );
  return { dir, config };
}

const problems = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems.map((p) => `${p.path}: ${p.message}`).join('\n');
  }
  assert.fail('expected a ConfigError');
};

describe('Kubernetes CRD manifests from files (providers.kubernetesCRDFiles)', () => {
  it('the two seed IngressRouteTCPs become two passthrough routers with cluster DNS addresses', () => {
    const { config } = fixture({ 'routes.yaml': SEED });
    const cfg = loadConfigFile(config);
    const db = cfg.routers.find((r) => r.name === 'data-postgres-0')!;
    assert.equal(db.rule, 'HostSNI(`db.example.test`)');
    assert.deepEqual(db.entryPoints, ['websecure']);
    assert.equal(db.tls?.passthrough, true);
    assert.deepEqual(cfg.services.get('data-postgres-0'), {
      kind: 'loadBalancer',
      name: 'data-postgres-0',
      servers: [{ host: 'postgres.data.svc.cluster.local', port: 5432 }],
      proxyProtocol: 0,
      connectTimeoutMs: 5000,
    });
    const all = cfg.routers.find((r) => r.name === 'default-everything-else-0')!;
    assert.equal(all.rule, 'HostSNI(`*`)');
    assert.equal(all.priority, 1);
    const web = cfg.services.get('default-everything-else-0');
    assert.deepEqual(web?.kind === 'loadBalancer' ? web.servers : undefined, [{ host: 'web.default.svc.cluster.local', port: 8443 }]);
    assert.ok(!cfg.warnings.some((w) => /providers/.test(w)), 'the providers section is consumed, not warned about');
  });

  it("Traefik's documented examples for each kind: middlewares, TLS options, TLS store, weighted services, secrets", () => {
    const { dir, config } = fixture({ 'docs.yaml': DOCUMENTED });
    const cfg = loadConfigFile(config);
    const r = cfg.routers.find((x) => x.name === 'apps-app-tls-0')!;
    assert.equal(r.priority, 10);
    assert.deepEqual(
      r.middlewares.map((m) => m.name),
      ['apps-office-only', 'apps-ten-each'],
    );
    assert.deepEqual(cfg.tcpMiddlewares.get('apps-office-only'), { kind: 'ipAllowList', name: 'apps-office-only', sourceRange: ['127.0.0.1/32', '192.0.2.7'] });
    assert.deepEqual(cfg.tcpMiddlewares.get('apps-ten-each'), { kind: 'inFlightConn', name: 'apps-ten-each', amount: 10 });
    assert.equal(r.tls?.passthrough, false);
    assert.equal(r.tls?.options?.name, 'apps-modern');
    assert.equal(r.tls?.options?.minVersion, 0x0303);
    assert.deepEqual(cfg.services.get('apps-app-tls-0'), {
      kind: 'weighted',
      name: 'apps-app-tls-0',
      services: [
        { name: 'apps-app-tls-0-0', weight: 3 },
        { name: 'apps-app-tls-0-1', weight: 1 },
      ],
    });
    // The default store's certificate first, then the route's secret.
    assert.deepEqual(cfg.certificates, [
      { certFile: join(dir, 'secrets', 'apps', 'fallback-cert', 'tls.crt'), keyFile: join(dir, 'secrets', 'apps', 'fallback-cert', 'tls.key') },
      { certFile: join(dir, 'secrets', 'apps', 'app-cert', 'tls.crt'), keyFile: join(dir, 'secrets', 'apps', 'app-cert', 'tls.key') },
    ]);
    assert.ok(cfg.warnings.some((w) => /document 5: Service: not a kind echgate reads, ignored/.test(w)));
  });

  it('served for real: a passthrough route and a terminating route with its certificate from the secret layout, addresses mapped', async () => {
    const db = await tlsBackend('db', 'db.example.test');
    const plain = await serverFirstBackend('PLAIN\n');
    const manifests = `${SEED}---
apiVersion: traefik.io/v1alpha1
kind: IngressRouteTCP
metadata: { name: app-tls, namespace: apps }
spec:
  entryPoints: [websecure]
  routes:
    - match: HostSNI(\`app.example.test\`)
      services: [{ name: app, port: http }]
  tls: { secretName: app-cert }
`;
    const { config } = fixture(
      { 'all.yml': manifests },
      `    addresses:
      postgres.data: "127.0.0.1:${db.port}"
      app.apps: "127.0.0.1:${plain.port}"
      web.default: "127.0.0.1:1"
`,
    );
    const g = await startGateway(readFileSync(config, 'utf8'));
    try {
      assert.match(await tlsAsk(g.port(), 'db.example.test'), /^db db.example.test/);
      assert.equal(await tlsAsk(g.port(), 'app.example.test'), 'PLAIN');
    } finally {
      await g.close();
      await db.close();
      await plain.close();
    }
  });

  it('kind: List, a TLSOption named default, an address without a port, TraefikService refused', () => {
    const list = `apiVersion: v1
kind: List
items:
  - apiVersion: traefik.io/v1alpha1
    kind: TLSOption
    metadata: { name: default, namespace: kube-system }
    spec: { minVersion: VersionTLS13 }
  - apiVersion: traefik.io/v1alpha1
    kind: IngressRouteTCP
    metadata: { name: web }
    spec:
      routes: [{ match: "HostSNI(\`*\`)", services: [{ name: web, port: 8080, nativeLB: true }] }]
`;
    const { config } = fixture({ 'list.yaml': list }, '    addresses: { web.default: "10.1.2.3" }\n');
    const cfg = loadConfigFile(config);
    assert.equal(cfg.tlsOptions.get('default')?.minVersion, 0x0304);
    const web = cfg.services.get('default-web-0');
    assert.deepEqual(web?.kind === 'loadBalancer' ? web.servers : undefined, [{ host: '10.1.2.3', port: 8080 }]);
    assert.ok(cfg.warnings.some((w) => /document 1, items\[1\] \(IngressRouteTCP default\/web\): spec\.routes\[0\]\.services\[0\]\.nativeLB: not supported/.test(w)), cfg.warnings.join('\n'));
    const ts = fixture({ 'ts.yaml': list.replace('nativeLB: true', 'kind: TraefikService') });
    assert.match(problems(() => loadConfigFile(ts.config)), /items\[1\] \(IngressRouteTCP default\/web\): spec\.routes\[0\]\.services\[0\]\.kind: only Service/);
  });

  it('malformed manifests: errors name the file, the document and the field', () => {
    const run = (text: string, extra = '') => {
      const { dir, config } = fixture({ 'bad.yaml': text }, extra);
      return { msg: problems(() => loadConfigFile(config)), file: join(dir, 'manifests', 'bad.yaml') };
    };
    const irt = (spec: string, md = '{ name: x }', api = 'traefik.io/v1alpha1') => `---\napiVersion: ${api}\nkind: IngressRouteTCP\nmetadata: ${md}\nspec:\n${spec}\n`;
    const ok = irt('  routes: [{ match: "HostSNI(`*`)", services: [{ name: a, port: 1 }] }]');

    let r = run(`${ok}${irt('  routes: [{ services: [{ name: a, port: 1 }] }]', '{ name: y }')}`);
    assert.ok(r.msg.includes(`${r.file}: document 2 (IngressRouteTCP default/y): spec.routes[0].match: a rule is required`), r.msg);

    r = run(irt('  routes: [{ match: "HostSNI(`*`)", services: [{ name: a, port: 1 }] }]', '{ name: x }', 'traefik.io/v1'));
    assert.match(r.msg, /document 1: apiVersion: expected traefik\.io\/v1alpha1 or traefik\.containo\.us\/v1alpha1/);

    r = run(irt('  routes: [{ match: "HostSNI(`*`)", services: [{ name: a, port: http }] }]'));
    assert.match(r.msg, /spec\.routes\[0\]\.services\[0\]\.port: a named port \("http"\) needs an entry "a\.default"/);

    r = run(irt('  routes: [{ match: "HostSNI(`*`)", middlewares: [{ name: nope }], services: [{ name: a, port: 1 }] }]'));
    assert.match(r.msg, /spec\.routes\[0\]\.middlewares\[0\]: no MiddlewareTCP default\/nope/);

    r = run(irt('  routes: [{ match: "HostSNI(`*`)", services: [{ name: a, port: 1 }] }]\n  tls: { options: { name: strict } }'));
    assert.match(r.msg, /spec\.tls\.options: no TLSOption default\/strict/);

    r = run(`${ok}---\nkind: [unclosed\n`);
    assert.match(r.msg, /document 2: line \d+, column \d+/);

    r = run(`${ok}${ok}`);
    assert.match(r.msg, /document 2 \(IngressRouteTCP default\/x\): defined twice/);

    r = run(irt('  routes: [{ match: "HostSNI(`*`)", services: [{ name: a, port: 1 }] }]', '{ name: Bad_Name }'));
    assert.match(r.msg, /document 1: metadata\.name: expected a Kubernetes object name/);

    r = run('apiVersion: traefik.io/v1alpha1\nkind: TLSStore\nmetadata: { name: other }\nspec: {}\n');
    assert.match(r.msg, /TLSStore default\/other\): metadata\.name: only the TLSStore named default/);

    // Found by the one validator, reported against the manifest it came from.
    r = run(irt('  routes: [{ match: "HostSNI(`db.example.test`) &&", services: [{ name: a, port: 1 }] }]\n  tls: { passthrough: true }'));
    assert.ok(r.msg.includes(`${r.file}: document 1 (IngressRouteTCP default/x): spec.routes[0] (converted to tcp.routers.default-x-0.rule)`), r.msg);
    r = run('apiVersion: traefik.io/v1alpha1\nkind: MiddlewareTCP\nmetadata: { name: m }\nspec: { rateLimit: { average: 1 } }\n');
    assert.match(r.msg, /document 1 \(MiddlewareTCP default\/m\): spec \(converted to tcp\.middlewares\.default-m\.rateLimit\): unknown TCP middleware/);
    r = run('apiVersion: traefik.io/v1alpha1\nkind: TLSOption\nmetadata: { name: o }\nspec: { minVersion: VersionTLS99 }\n');
    assert.match(r.msg, /document 1 \(TLSOption default\/o\): spec \(converted to tls\.options\.default-o\.minVersion\)/);

    // Hostile YAML: exponential aliases are refused, not expanded.
    const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`)].join('\n');
    r = run(`${ok}---\n${laughs}\n`);
    assert.match(r.msg, /document 2: .*alias/i);

    // The section itself.
    const { config } = fixture({});
    writeFileSync(config, 'entryPoints: { a: { address: "127.0.0.1:0" } }\nproviders: { kubernetesCRDFiles: { paths: ["/nonexistent/echgate-k8s"] } }\n');
    assert.match(problems(() => loadConfigFile(config)), /providers\.kubernetesCRDFiles\.paths\[0\]: \/nonexistent\/echgate-k8s: ENOENT/);
  });

  it('convert → check round trip: the printed file-provider YAML validates to the same routers, services, middlewares and certificates', async () => {
    const { dir, config } = fixture({ 'a.yaml': SEED, 'b.yml': DOCUMENTED });
    let printed = '';
    assert.equal(await convertCommand({ positional: [config], flags: new Map() }, (s) => {
      printed += s;
    }), 0);
    assert.doesNotMatch(printed, /kubernetesCRDFiles/);
    const out = join(dir, 'converted.yml');
    writeFileSync(out, printed);
    let checked = '';
    assert.equal(await checkCommand({ positional: [out], flags: new Map() }, (s) => {
      checked += s;
    }), 0);
    assert.match(checked, /ok \(1 entrypoints, 3 routers, 5 services\)/);
    const a = loadConfigFile(config);
    const b = loadConfigFile(out);
    assert.deepEqual(b.routers, a.routers);
    assert.deepEqual([...b.services], [...a.services]);
    assert.deepEqual([...b.tcpMiddlewares], [...a.tcpMiddlewares]);
    assert.deepEqual([...b.tlsOptions], [...a.tlsOptions]);
    assert.deepEqual(b.certificates, a.certificates);
  });
});
