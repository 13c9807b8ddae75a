/** The dns section's limits: durations and counts validated at load, left-out keys left to the listeners' defaults. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';

const base = (extra: string) => `
entryPoints: { websecure: { address: "127.0.0.1:8443" } }
dns:
  address: "127.0.0.1:5353"
${extra}
  names: { a.example.test: { a: [127.0.0.1] } }
`;

describe('dns.tcp and dns.doh limits', () => {
  it('parsed into milliseconds and counts; absent keys absent', () => {
    const c = parseConfigText(
      base(`  tcp: { maxConnections: 10, queryTimeout: 2s }
  doh:
    address: "127.0.0.1:8053"
    certFile: c.pem
    keyFile: k.pem
    maxConnections: 5
    respondingTimeouts: { readTimeout: 1500ms, idleTimeout: 1m }
    http2: { maxConcurrentStreams: 7, maxHeaderListSize: 4096 }`),
      't.yml',
    );
    assert.deepEqual(c.dns!.tcp, { maxConnections: 10, queryTimeoutMs: 2000 });
    assert.deepEqual(c.dns!.doh!.limits, { maxConnections: 5, readTimeoutMs: 1500, idleTimeoutMs: 60_000, maxConcurrentStreams: 7, maxHeaderListSize: 4096 });
    assert.equal(parseConfigText(base(''), 't.yml').dns!.tcp, undefined);
  });
  it('bad values are refused with their key path', () => {
    const cases: [string, RegExp][] = [
      ['  tcp: { maxConnections: 0 }', /dns\.tcp\.maxConnections/],
      ['  tcp: { maxConnectionsPerIP: 1.5 }', /dns\.tcp\.maxConnectionsPerIP/],
      ['  tcp: { idleTimeout: soon }', /dns\.tcp\.idleTimeout/],
      ['  tcp: { queryTimeout: 0s }', /dns\.tcp\.queryTimeout/],
      ['  tcp: 5', /dns\.tcp: expected a mapping/],
      ['  doh: { address: "127.0.0.1:1", certFile: c, keyFile: k, respondingTimeouts: { readTimeout: x } }', /dns\.doh\.respondingTimeouts\.readTimeout/],
      ['  doh: { address: "127.0.0.1:1", certFile: c, keyFile: k, http2: { maxConcurrentStreams: 5000 } }', /dns\.doh\.http2\.maxConcurrentStreams/],
      ['  doh: { address: "127.0.0.1:1", certFile: c, keyFile: k, maxConnections: -1 }', /dns\.doh\.maxConnections/],
    ];
    for (const [extra, re] of cases) {
      assert.throws(() => parseConfigText(base(extra), 't.yml'), (e) => e instanceof ConfigError && re.test(e.message), extra);
    }
  });
});
