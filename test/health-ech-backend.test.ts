/**
 * Health-check lines and the echgate_backend_up gauge treat a service that
 * only routers on an `echBackend: true` entrypoint reach (the split-mode
 * backend, RFC 9849 §7.2: its rules are inner SNIs) as they treat a service
 * only requireECH routers reach: hidden unless the operator opted in. Red
 * when echOnlyServices looks at requireECH alone (the gauge then names
 * `inner_svc` and its address).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../src/config/load.js';
import { backendUpLabels, echOnlyServices, healthLogPrivacy } from '../src/proxy/health.js';

const yaml = (log: string) => `
log: ${log}
entryPoints:
  web: { address: "127.0.0.1:0" }
  echback: { address: "127.0.0.1:0", echBackend: true }
tcp:
  routers:
    front: { entryPoints: [web], rule: "HostSNI(\`public.example.test\`)", service: open_svc, tls: { passthrough: true } }
    splitback: { entryPoints: [echback], rule: "HostSNI(\`hidden-split.example.test\`)", service: inner_svc, tls: { passthrough: true } }
  services:
    open_svc: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }], healthCheck: { interval: 1s } } }
    inner_svc: { loadBalancer: { servers: [{ address: "127.0.0.1:7" }], healthCheck: { interval: 1s } } }
`;

describe('echBackend routers: health lines and echgate_backend_up hide the services only they reach', () => {
  it('echOnlyServices counts a router on an echBackend entrypoint as ECH-only', () => {
    assert.deepEqual([...echOnlyServices(parseConfigText(yaml('{}'), 't.yml'))], ['inner_svc']);
  });

  it('without log.echRoutes the gauge says (ech), with it the service and address', () => {
    const hidden = parseConfigText(yaml('{ echRoutes: false, innerSni: false }'), 't.yml');
    const l = backendUpLabels(hidden.services, healthLogPrivacy(hidden).metricsHidden ?? new Set());
    assert.deepEqual(l.get('inner_svc'), [{ service: '(ech)', server: '(ech)#1' }]);
    assert.deepEqual(l.get('open_svc'), [{ service: 'open_svc', server: '127.0.0.1:9' }]);
    assert.ok(healthLogPrivacy(hidden).hidden.has('inner_svc'));
    const shown = parseConfigText(yaml('{ echRoutes: true }'), 't.yml');
    assert.deepEqual(backendUpLabels(shown.services, healthLogPrivacy(shown).metricsHidden ?? new Set()).get('inner_svc'), [{ service: 'inner_svc', server: '127.0.0.1:7' }]);
  });
});
