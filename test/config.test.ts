/** Configuration: Traefik's file-provider shape, defaults, and errors that name file, key path and problem. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDuration } from '../src/config/duration.js';
import { parseConfigText } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';

export const ISSUE_EXAMPLE = `
entryPoints:
  websecure: { address: "127.0.0.1:8443" }
  db: { address: "127.0.0.1:13306" }
tcp:
  routers:
    app:
      entryPoints: [websecure]
      rule: "HostSNI(\`app.example.test\`) || HostSNIRegexp(\`^api-[a-z]+\\\\.example\\\\.test$\`)"
      service: app
      tls: { passthrough: true }
    db:
      entryPoints: [db]
      rule: "HostSNI(\`*\`)"
      service: db
  services:
    app:
      loadBalancer:
        servers: [{ address: "127.0.0.1:9001" }, { address: "127.0.0.1:9002" }]
    db:
      loadBalancer:
        servers: [{ address: "127.0.0.1:3306" }]
`;

const problems = (yaml: string) => {
  try {
    parseConfigText(yaml, 'f.yml');
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
    throw e;
  }
  return [];
};

describe('configuration', () => {
  it('accepts the Traefik file-provider example as is, with defaults', () => {
    const c = parseConfigText(ISSUE_EXAMPLE, 'f.yml');
    const ws = c.entryPoints.get('websecure')!;
    assert.equal(ws.port, 8443);
    assert.equal(ws.clientHelloTimeoutMs, 10_000);
    assert.equal(ws.maxClientHelloBytes, 65536);
    assert.equal(c.routers.length, 2);
    assert.deepEqual(c.routers.find((r) => r.name === 'app')!.tls, { passthrough: true });
    assert.equal(c.routers.find((r) => r.name === 'db')!.tls, undefined);
  });
  it('durations as Traefik writes them', () => {
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration(3), 3000);
    assert.equal(parseDuration('3'), 3000);
    assert.equal(parseDuration('3 s'), undefined);
    assert.equal(parseDuration('ten'), undefined);
  });
  it('errors name the key path', () => {
    assert.deepEqual(problems(ISSUE_EXAMPLE.replace('127.0.0.1:8443', 'nope')), ['entryPoints.websecure.address: expected "host:port", got "nope"']);
    const p = problems(ISSUE_EXAMPLE.replace('service: app', 'service: nosuch'));
    assert.deepEqual(p, ['tcp.routers.app.service: no service named "nosuch"']);
    const r = problems(ISSUE_EXAMPLE.replace('HostSNI(`app.example.test`)', 'HostSNI(`app.example.test`'));
    assert.equal(r.length, 1);
    assert.match(r[0]!, /^tcp\.routers\.app\.rule: .* at column \d+$/);
    assert.match(problems(ISSUE_EXAMPLE.replace('address: "127.0.0.1:8443" }', 'address: "127.0.0.1:8443", clientHelloTimeout: forever }'))[0]!, /entryPoints.websecure.clientHelloTimeout: invalid duration/);
  });
  it('a non-TLS router can only use HostSNI(`*`)', () => {
    const p = problems(ISSUE_EXAMPLE.replace('rule: "HostSNI(`*`)"', 'rule: "HostSNI(`db.example`)"'));
    assert.match(p[0]!, /tcp.routers.db.rule: a router without a tls section/);
  });
  it('requireECH with passthrough is refused, unless the backend is an ECH backend server (split mode)', () => {
    const p = problems(ISSUE_EXAMPLE.replace('tls: { passthrough: true }', 'tls: { passthrough: true }\n      requireECH: true'));
    assert.match(p[0]!, /tcp.routers.app.requireECH: a passthrough backend cannot complete an ECH handshake/);
    const split = parseConfigText(ISSUE_EXAMPLE.replace('tls: { passthrough: true }', 'tls: { passthrough: true, echSplit: true }\n      requireECH: true'), 'f.yml');
    assert.deepEqual(split.routers.find((r) => r.name === 'app')!.tls, { passthrough: true, echSplit: true });
    assert.equal(problems(ISSUE_EXAMPLE.replace('tls: { passthrough: true }', 'tls: { echSplit: true }'))[0], 'tcp.routers.app.tls.echSplit: split mode forwards the hello: it needs passthrough: true');
    const backend = parseConfigText(ISSUE_EXAMPLE.replace('websecure: { address: "127.0.0.1:8443" }', 'websecure: { address: "127.0.0.1:8443", echBackend: true }'), 'f.yml');
    assert.equal(backend.entryPoints.get('websecure')!.echBackend, true);
    assert.equal(backend.entryPoints.get('db')!.echBackend, false);
    assert.deepEqual(problems(ISSUE_EXAMPLE.replace('websecure: { address: "127.0.0.1:8443" }', 'websecure: { address: "127.0.0.1:8443", echBackend: yes-please }')), ['entryPoints.websecure.echBackend: expected true or false']);
  });
  it('dns: plain DNS, DoH or both; bad addresses, records and TTLs are named', () => {
    const c = parseConfigText(`${ISSUE_EXAMPLE}dns:\n  address: "127.0.0.1:5353"\n  names:\n    secret.example.test: { a: [127.0.0.1], https: { alpn: [h2], port: 8443 } }\n`, 'f.yml');
    assert.deepEqual(c.dns?.listen, { host: '127.0.0.1', port: 5353 });
    assert.equal(c.dns?.doh, undefined);
    assert.equal(c.dns?.ttl, 60);
    assert.deepEqual(c.dns?.names['secret.example.test']?.https, { priority: undefined, alpn: ['h2'], port: 8443, ech: true });
    const both = parseConfigText(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  doh: { address: "127.0.0.1:8053", certFile: c.pem, keyFile: k.pem }\n`, 'f.yml');
    assert.deepEqual(both.dns?.doh, { host: '127.0.0.1', port: 8053, certFile: 'c.pem', keyFile: 'k.pem', path: '/dns-query' });
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  ttl: 30\n`), ['dns: give address (plain DNS over UDP and TCP), doh, or both']);
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  address: nope\n`), ['dns.address: expected "host:port"']);
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  doh: { address: "127.0.0.1:1" }\n`), ['dns.doh: certFile and keyFile are required (DoH is HTTPS)']);
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  ttl: -1\n  names:\n    a.test: { a: [::1] }\n`), ['dns.ttl: expected seconds, 0..86400', 'dns.names.a.test.a: expected a list of IPv4 addresses']);
    const apex = parseConfigText(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  zone: example.test\n  nameservers: [ns1.example.test]\n  names:\n    secret.example.test: { a: [127.0.0.1] }\n`, 'f.yml');
    assert.equal(apex.dns?.zone, 'example.test');
    assert.deepEqual(apex.dns?.nameservers, ['ns1.example.test']);
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  zone: example.test\n  names:\n    www.example.org: { a: [127.0.0.1] }\n`), ['dns.names.www.example.org: outside dns.zone example.test: it would never be answered']);
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  nameservers: [ns1.example.test]\n`), ['dns.nameservers: nameservers are the NS records of dns.zone: give zone too']);
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  zone: "not a name"\n`), ['dns.zone: expected a domain name']);
    // RFC 9460 §2.4.2: an AliasMode record names a target and carries no SvcParams.
    assert.equal(parseConfigText(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  names:\n    a.test: { https: { alias: b.test } }\n`, 'f.yml').dns?.names['a.test']?.https?.alias, 'b.test');
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  names:\n    a.test: { https: { alias: "not a name" } }\n`), ['dns.names.a.test.https.alias: expected a host name (the AliasMode TargetName)']);
    assert.deepEqual(problems(`${ISSUE_EXAMPLE}dns:\n  address: ":53"\n  names:\n    a.test: { https: { alias: b.test, alpn: [h2] } }\n`), ['dns.names.a.test.https.alias: an AliasMode record carries no priority or alpn (RFC 9460 §2.4.2)']);
  });
  it('tcp.services.*.loadBalancer.healthCheck: Traefik defaults, echgate extensions, bad values named', () => {
    const hc = (body: string) => `${ISSUE_EXAMPLE}    checked:\n      loadBalancer:\n        servers: [{ address: "127.0.0.1:9003" }]\n        healthCheck: ${body}\n`;
    const svc = (body: string) => parseConfigText(hc(body), 'f.yml').services.get('checked');
    const dflt = svc('{}');
    assert.ok(dflt?.kind === 'loadBalancer');
    assert.deepEqual(dflt.healthCheck, { intervalMs: 30_000, unhealthyIntervalMs: 30_000, timeoutMs: 5_000, tls: false, unhealthyAfter: 1, healthyAfter: 1 });
    const full = svc('{ interval: 10s, unhealthyInterval: 2s, timeout: 3s, port: 8080, send: PING, expect: PONG, tls: true, unhealthyAfter: 3, healthyAfter: 2 }');
    assert.ok(full?.kind === 'loadBalancer');
    assert.deepEqual(full.healthCheck, { intervalMs: 10_000, unhealthyIntervalMs: 2_000, timeoutMs: 3_000, port: 8080, send: 'PING', expect: 'PONG', tls: true, unhealthyAfter: 3, healthyAfter: 2 });
    assert.deepEqual(problems(hc('{ interval: 0s, timeout: soon }')), [
      'tcp.services.checked.loadBalancer.healthCheck.interval: expected a duration above 0',
      'tcp.services.checked.loadBalancer.healthCheck.timeout: invalid duration "soon" (write e.g. 10s, 500ms, 2m, or a number of seconds)',
    ]);
    assert.deepEqual(problems(hc('{ port: 70000, send: "", tls: yes, unhealthyAfter: 0, healthyAfter: 1.5 }')), [
      'tcp.services.checked.loadBalancer.healthCheck.port: expected a port number',
      'tcp.services.checked.loadBalancer.healthCheck.send: expected a non-empty string',
      'tcp.services.checked.loadBalancer.healthCheck.tls: expected true or false',
      'tcp.services.checked.loadBalancer.healthCheck.unhealthyAfter: expected a whole number from 1 to 1000',
      'tcp.services.checked.loadBalancer.healthCheck.healthyAfter: expected a whole number from 1 to 1000',
    ]);
    assert.deepEqual(problems(hc('[1]')), ['tcp.services.checked.loadBalancer.healthCheck: expected a mapping']);
  });
  it('weighted services, proxy protocol, unknown keys', () => {
    const c = parseConfigText(
      `${ISSUE_EXAMPLE}
    both:
      weighted:
        services: [{ name: app, weight: 3 }, { name: db, weight: 1 }]
    pp:
      loadBalancer:
        proxyProtocol: { version: 1 }
        servers: [{ address: "127.0.0.1:1" }]
        sticky: true
http: {}
`,
      'f.yml',
    );
    assert.equal(c.services.get('both')!.kind, 'weighted');
    const pp = c.services.get('pp')!;
    assert.ok(pp.kind === 'loadBalancer' && pp.proxyProtocol === 1);
    assert.ok(c.warnings.some((w) => w.includes('tcp.services.pp.loadBalancer.sticky')));
    assert.ok(c.warnings.some((w) => w.startsWith('http:')));
    assert.match(problems(`${ISSUE_EXAMPLE}\n    w:\n      weighted:\n        services: [{ name: ghost }]\n`)[0]!, /no service named "ghost"/);
  });
  it('YAML syntax errors carry line and column', () => {
    assert.match(problems('entryPoints: [\n')[0]!, /^line \d+, column \d+/);
  });
});
