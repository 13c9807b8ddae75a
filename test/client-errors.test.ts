/**
 * A client that resets its connection is counted in
 * echgate_client_errors_total{entrypoint, code} (the connection ends, the
 * process goes on). Red without the count in connection.ts's onClientError.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { sleep, startGateway } from './helpers.js';

const yaml = `
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    r: { rule: "HostSNI(\`a.example.test\`)", service: s, tls: { passthrough: true } }
  services:
    s: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } }
`;

describe('client socket errors are counted by code', () => {
  it('a client that sends half a record header and resets: ECONNRESET counted once per connection', async () => {
    const g = await startGateway(yaml);
    try {
      const port = g.port();
      for (let i = 0; i < 3; i++) {
        const c = net.connect(port, '127.0.0.1');
        await new Promise<void>((r) => c.once('connect', () => r()));
        c.write(Buffer.from([0x16, 0x03]));
        await sleep(30); // the proxy is waiting for the rest of the ClientHello
        c.resetAndDestroy();
      }
      for (let t = 0; t < 100 && g.gw.metrics.clientErrors.get({ entrypoint: 'websecure', code: 'ECONNRESET' }) !== 3; t++) await sleep(20);
      assert.equal(g.gw.metrics.clientErrors.get({ entrypoint: 'websecure', code: 'ECONNRESET' }), 3);
      assert.match(g.gw.metrics.render(), /echgate_client_errors_total\{code="ECONNRESET",entrypoint="websecure"\} 3/);
      assert.equal(g.gw.metrics.open.get({ entrypoint: 'websecure' }) ?? 0, 0);
    } finally {
      await g.close();
    }
  });
});
