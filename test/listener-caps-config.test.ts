/**
 * metrics.maxConnectionsPerIP and dns.doh.maxConnectionsPerIP: accepted in
 * range, refused with a clear error outside it, and handed to the listeners.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../src/config/load.js';
import { METRICS_LISTENER_LIMITS, metricsLimits } from '../src/proxy/metrics.js';
import { DEFAULT_DOH_LIMITS } from '../src/dns/doh-server.js';

const metricsYaml = (v: string) => `metrics: { address: "127.0.0.1:9100", maxConnectionsPerIP: ${v} }\nentryPoints: { web: { address: "127.0.0.1:0" } }\n`;
const dohYaml = (v: string) => `entryPoints: { web: { address: "127.0.0.1:0" } }
dns: { doh: { address: "127.0.0.1:8053", certFile: a.pem, keyFile: a.key, maxConnectionsPerIP: ${v} }, names: {} }
`;

describe('per-address caps of the metrics and DoH listeners (configuration)', () => {
  it('metrics.maxConnectionsPerIP: 1..16 taken, to the listener limits; absent: the default 8', () => {
    assert.equal(parseConfigText(metricsYaml('4'), 'm.yml').metrics?.maxConnectionsPerIP, 4);
    assert.deepEqual(metricsLimits({ maxConnectionsPerIP: 4 }), { maxConnectionsPerIP: 4 });
    assert.deepEqual(metricsLimits({}), {});
    assert.equal(METRICS_LISTENER_LIMITS.maxConnectionsPerIP, 8);
  });
  for (const bad of ['0', '17', '2.5', '"x"']) {
    it(`metrics.maxConnectionsPerIP: ${bad} is refused, naming the key and the range`, () => {
      assert.throws(() => parseConfigText(metricsYaml(bad), 'm.yml'), /metrics\.maxConnectionsPerIP[^\n]*1\.\.16/);
    });
  }
  it('dns.doh.maxConnectionsPerIP: taken into the DoH limits; absent: the default 16', () => {
    assert.equal(parseConfigText(dohYaml('3'), 'd.yml').dns?.doh?.limits?.maxConnectionsPerIP, 3);
    assert.equal(DEFAULT_DOH_LIMITS.maxConnectionsPerIP, 16);
  });
  for (const bad of ['0', '70000', '-1']) {
    it(`dns.doh.maxConnectionsPerIP: ${bad} is refused`, () => {
      assert.throws(() => parseConfigText(dohYaml(bad), 'd.yml'), /dns\.doh\.maxConnectionsPerIP[^\n]*1\.\.65535/);
    });
  }
});
