/**
 * tls.options (Traefik's spellings): versions, cipher suites (Go names →
 * OpenSSL names and TLS 1.3 code points), curvePreferences (→ NamedGroup code
 * points and OpenSSL names), alpnProtocols, sniStrict; a router's reference;
 * and a clear error naming the key for every value echgate cannot honour.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../src/config/load.js';
import { opensslCurves } from '../src/config/tls-options.js';
import { ConfigError } from '../src/errors.js';

const base = (options: string, routerTls = '{ options: x }', extra = '') => `
tls:
  certificates: [{ certFile: a.pem, keyFile: a.key }]
  options:
${options}
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    r: { rule: "HostSNI(\`a.example.test\`)", service: s, tls: ${routerTls} ${extra} }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:1" }] } } }
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

describe('tls.options', () => {
  it('defaults: every terminating router gets the `default` set (TLS 1.2 to 1.3); passthrough routers none', () => {
    const c = parseConfigText(base('    x: {}', '{}'), 'f.yml');
    assert.deepEqual(c.routers[0]!.tls!.options, { name: 'default', minVersion: 0x0303, maxVersion: 0x0304, sniStrict: false });
    assert.ok(c.tlsOptions.has('default'));
    const p = parseConfigText(base('    x: {}', '{ passthrough: true }'), 'f.yml');
    assert.equal(p.routers[0]!.tls!.options, undefined);
  });

  it('a defined `default` replaces Traefik’s defaults for routers that name none', () => {
    const c = parseConfigText(base('    default: { minVersion: VersionTLS13 }', '{}'), 'f.yml');
    assert.equal(c.routers[0]!.tls!.options!.minVersion, 0x0304);
  });

  it('maps names: Go cipher suites to OpenSSL (1.2) and code points (1.3); curves to code points and OpenSSL names', () => {
    const c = parseConfigText(
      base(`    x:
      minVersion: VersionTLS12
      maxVersion: VersionTLS13
      cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256]
      curvePreferences: [X25519MLKEM768, X25519, CurveP256, secp384r1, P-521]
      alpnProtocols: [h2, http/1.1]
      sniStrict: true`),
      'f.yml',
    );
    const o = c.routers[0]!.tls!.options!;
    assert.equal(o.name, 'x');
    assert.deepEqual(o.ciphers12, ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305']);
    assert.deepEqual(o.suites13, [0x1302, 0x1303]);
    assert.deepEqual(o.groups, [0x11ec, 0x001d, 0x0017, 0x0018, 0x0019]);
    assert.equal(opensslCurves(o.groups!), 'X25519:P-256:P-384:P-521', 'the hybrid group is TLS 1.3 only');
    assert.deepEqual(o.alpnProtocols, ['h2', 'http/1.1']);
    assert.equal(o.sniStrict, true);
  });

  it('a router refers to options by name, also as NAME@file (Traefik’s provider suffix)', () => {
    const c = parseConfigText(base('    x: { maxVersion: VersionTLS12 }', '{ options: x@file }'), 'f.yml');
    assert.equal(c.routers[0]!.tls!.options!.maxVersion, 0x0303);
  });

  it('errors name the key: unknown option set, versions, suites, curves, clientAuth', () => {
    assert.deepEqual(problems(base('    y: {}')), ['tcp.routers.r.tls.options: no TLS options named "x" in tls.options']);
    assert.deepEqual(problems(base('    x: { minVersion: VersionTLS10 }')), [
      'tls.options.x.minVersion: VersionTLS10 is not served: TLS 1.0 and 1.1 are deprecated (RFC 8996); use VersionTLS12 or VersionTLS13',
    ]);
    assert.deepEqual(problems(base('    x: { maxVersion: TLS13 }')), ['tls.options.x.maxVersion: expected VersionTLS12 or VersionTLS13, got "TLS13"']);
    assert.deepEqual(problems(base('    x: { minVersion: VersionTLS13, maxVersion: VersionTLS12 }')), ['tls.options.x: minVersion is above maxVersion']);
    assert.match(problems(base('    x: { cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_NOPE] }'))[0]!, /^tls\.options\.x\.cipherSuites\[1\]: unknown cipher suite "TLS_NOPE"/);
    assert.match(problems(base('    x: { cipherSuites: [TLS_RSA_WITH_RC4_128_SHA] }'))[0]!, /^tls\.options\.x\.cipherSuites\[0\]: .*RC4/);
    assert.match(problems(base('    x: { curvePreferences: [CurveP256, brainpool] }'))[0]!, /^tls\.options\.x\.curvePreferences\[1\]: unknown curve "brainpool"/);
    assert.deepEqual(problems(base('    x: { curvePreferences: [] }')), ['tls.options.x.curvePreferences: expected a non-empty list']);
    // Only TLS 1.2 curves while TLS 1.3 is allowed: the engine would have no group for any TLS 1.3 client.
    assert.match(problems(base('    x: { curvePreferences: [CurveP384] }'))[0]!, /^tls\.options\.x\.curvePreferences: no group the TLS 1\.3 engine implements/);
    assert.deepEqual(problems(base('    x: { curvePreferences: [CurveP384], maxVersion: VersionTLS12 }')), []);
    assert.deepEqual(problems(base('    x: { sniStrict: yes please }')), ['tls.options.x.sniStrict: expected true or false']);
    assert.deepEqual(problems(base('    x: { clientAuth: { clientAuthType: RequireAndVerifyClientCert, caFiles: [ca.pem] } }')), [
      'tls.options.x.clientAuth: client certificate authentication is not supported by echgate',
    ]);
    assert.deepEqual(problems(base('    x: { clientAuth: { clientAuthType: NoClientCert } }')), []);
  });

  it('requireECH with options that stop at TLS 1.2 is refused (ECH is TLS 1.3 only, RFC 9849)', () => {
    assert.deepEqual(problems(base('    x: { maxVersion: VersionTLS12 }', '{ options: x }', ', requireECH: true')), [
      'tcp.routers.r.tls.options: requireECH needs TLS 1.3, but tls.options.x.maxVersion is VersionTLS12',
    ]);
  });

  it('warnings: options on a passthrough router, keys echgate ignores, a TLS 1.3-only curve list', () => {
    const c = parseConfigText(base('    x: { preferServerCipherSuites: true, curvePreferences: [X25519MLKEM768], frobnicate: 1 }', '{ passthrough: true, options: x }'), 'f.yml');
    assert.ok(c.warnings.includes('tcp.routers.r.tls.options: ignored with passthrough (the backend terminates TLS)'));
    assert.ok(c.warnings.includes('tls.options.x.frobnicate: unknown key, ignored'));
    assert.ok(c.warnings.some((w) => w.startsWith('tls.options.x.preferServerCipherSuites:')));
    assert.ok(c.warnings.some((w) => w.startsWith('tls.options.x.curvePreferences: no group usable with TLS 1.2')));
  });
});
