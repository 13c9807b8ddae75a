/**
 * The dashboard hides the routers of an `echBackend: true` entrypoint (the
 * split-mode backend server, RFC 9849 §7.2) as it hides requireECH routers:
 * their rules are the inner SNIs the client-facing server decrypted, which
 * the access lines and metrics of the same connections show as `(ech)`.
 * Shown only with log.innerSni (the rule) / log.echRoutes (name and service).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Dashboard, ErrorRing, localView, teeLog } from '../src/cli/dashboard.js';
import { parseConfigText } from '../src/config/load.js';
import { Gateway } from '../src/proxy/gateway.js';
import { caAndLeaf } from './helpers.js';

const W = mkdtempSync(join(tmpdir(), 'echgate-dash-echback-'));
caAndLeaf(W, ['public.example.test', 'hidden-split.example.test']);

const yaml = (log: string) => `
log: ${log}
metrics: { address: "127.0.0.1:0", dashboard: true }
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints:
  web: { address: "127.0.0.1:0" }
  echback: { address: "127.0.0.1:0", echBackend: true }
tcp:
  routers:
    front: { entryPoints: [web], rule: "HostSNI(\`public.example.test\`)", service: open_svc, tls: {} }
    splitback: { entryPoints: [echback], rule: "HostSNI(\`hidden-split.example.test\`)", service: inner_svc, tls: {} }
  services:
    open_svc: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } }
    inner_svc: { loadBalancer: { servers: [{ address: "127.0.0.1:7" }] } }
`;

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

async function withDashboard(log: string, f: (port: number) => Promise<void>) {
  const cfg = parseConfigText(yaml(log), 'dash.yml');
  const ring = new ErrorRing();
  const gw = new Gateway({ log: pino({ level: 'silent' }, teeLog({ write: () => {} }, ring)) });
  await gw.apply(cfg);
  const dash = new Dashboard({ view: localView({ gateway: gw, config: () => gw.current!, errors: ring }), settings: cfg.metrics?.dashboard });
  const srv = await gw.metrics.serve('127.0.0.1', 0, { routes: dash.routes });
  try {
    await f((srv.address() as net.AddressInfo).port);
  } finally {
    dash.close();
    srv.close();
    await gw.shutdown(0);
  }
}

describe('dashboard: routers of an echBackend entrypoint', () => {
  it('log.innerSni false: rule, name and service are (ech); no answer names the inner SNI or its server', async () => {
    await withDashboard('{ innerSni: false, echRoutes: false }', async (port) => {
      const r = JSON.parse(await get(port, '/api/routers'));
      const back = r.find((x: { entryPoints: string[] }) => x.entryPoints.includes('echback'));
      assert.deepEqual({ name: back.name, rule: back.rule, service: back.service }, { name: '(ech)', rule: '(ech)', service: '(ech)' });
      // The ordinary entrypoint's router stays in clear.
      assert.ok(r.some((x: { name: string; rule: string }) => x.name === 'front' && x.rule === 'HostSNI(`public.example.test`)'));
      for (const a of ['routers', 'services', 'overview', 'entrypoints', 'counters']) {
        const body = await get(port, `/api/${a}`);
        assert.doesNotMatch(body, /hidden-split|splitback|inner_svc|127\.0\.0\.1:7\b/, a);
      }
    });
  });
  it('log.innerSni true: the rule is shown (the operator opted in)', async () => {
    await withDashboard('{ innerSni: true }', async (port) => {
      const r = JSON.parse(await get(port, '/api/routers'));
      assert.ok(r.some((x: { name: string; rule: string }) => x.name === 'splitback' && x.rule === 'HostSNI(`hidden-split.example.test`)'));
    });
  });
});
