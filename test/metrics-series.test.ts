/**
 * Metric series handles (proxy/metrics.ts Series, ConnectionSeries): a
 * connection updates series resolved once per entrypoint and router instead
 * of building a label key per update. The /metrics text must be byte for byte
 * what the label API gives for the same updates in the same order: the same
 * rendered keys (sorted, escaped) and the same series order (first update).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics } from '../src/proxy/metrics.js';

type Step = { ep: string; router: string; outcome: string; bytesIn: number; bytesOut: number; seconds: number; ech?: string };

const steps: Step[] = [
  { ep: 'websecure', router: 'app', outcome: 'relayed', bytesIn: 517, bytesOut: 1, seconds: 0.002, ech: 'grease' },
  { ep: 'websecure', router: '(ech)', outcome: 'relayed', bytesIn: 1900, bytesOut: 4000, seconds: 0.7, ech: 'accepted' },
  { ep: 'websecure', router: 'app', outcome: 'backend_error', bytesIn: 517, bytesOut: 0, seconds: 31 },
  { ep: 'db', router: 'pg "main"\\\n', outcome: 'relayed', bytesIn: 10, bytesOut: 20, seconds: 700, ech: 'malformed' },
  { ep: 'websecure', router: '-', outcome: 'no_route', bytesIn: 0, bytesOut: 0, seconds: 0 },
  { ep: 'websecure', router: 'app', outcome: 'relayed', bytesIn: 1, bytesOut: 2, seconds: 0.01, ech: 'grease' },
];

function byLabels(m: Metrics): void {
  for (const s of steps) {
    m.open.inc({ entrypoint: s.ep });
    if (s.ech) m.ech.inc({ entrypoint: s.ep, result: s.ech });
  }
  for (const s of steps) {
    m.connections.inc({ entrypoint: s.ep, router: s.router, outcome: s.outcome });
    m.open.dec({ entrypoint: s.ep });
    if (s.router === '-') continue;
    m.bytes.inc({ entrypoint: s.ep, router: s.router, direction: 'in' }, s.bytesIn);
    m.bytes.inc({ entrypoint: s.ep, router: s.router, direction: 'out' }, s.bytesOut);
    m.duration.observe({ entrypoint: s.ep, router: s.router }, s.seconds);
  }
}

function bySeries(m: Metrics): void {
  for (const s of steps) {
    const c = m.connectionSeries(s.ep);
    c.open.inc();
    if (s.ech) c.ech(s.ech).inc();
  }
  for (const s of steps) {
    const c = m.connectionSeries(s.ep);
    c.connection(s.router, s.outcome).inc();
    c.open.inc(-1);
    if (s.router === '-') continue;
    const r = c.router(s.router);
    r.bytesIn.inc(s.bytesIn);
    r.bytesOut.inc(s.bytesOut);
    r.duration.observe(s.seconds);
  }
}

describe('metric series handles', () => {
  it('render /metrics byte for byte as the label API does (Prometheus text format 0.0.4)', () => {
    const a = new Metrics();
    const b = new Metrics();
    byLabels(a);
    bySeries(b);
    assert.equal(b.render(), a.render());
    assert.match(a.render(), /echgate_connections_total\{entrypoint="db",outcome="relayed",router="pg \\"main\\"\\\\\\n"\} 1/);
  });

  it('a series made but never updated is not in the output (it appears at its first update)', () => {
    const m = new Metrics();
    const before = m.render();
    m.connectionSeries('e').router('r');
    m.connectionSeries('e').connection('r', 'relayed');
    assert.equal(m.render(), before);
  });

  it('resolves each series once per entrypoint and router', () => {
    const m = new Metrics();
    assert.equal(m.connectionSeries('e'), m.connectionSeries('e'));
    assert.equal(m.connectionSeries('e').router('r'), m.connectionSeries('e').router('r'));
    assert.equal(m.connectionSeries('e').connection('r', 'relayed'), m.connectionSeries('e').connection('r', 'relayed'));
    assert.notEqual(m.connectionSeries('e').router('r'), m.connectionSeries('f').router('r'));
  });
});
