/**
 * A TCP port for a process a test stops and starts again on the same port
 * (an etcd member). freePort() draws from the kernel's ephemeral range
 * (ip_local_port_range, 32768-60999 by default), where any outgoing
 * connection on the machine may take a port as its source port while the
 * process is down, and the restart then fails with EADDRINUSE (seen for an
 * echgate instance restarted in test-e2e/fleet.test.ts). A port below that
 * range is never handed out as a source port, nor by another test's
 * freePort(); this one is free on `host` now.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { freePort } from '../src/cli/free-port.js';

const canBind = (port: number, host: string) =>
  new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });

export async function stablePort(host = '127.0.0.1'): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {}
  const bottom = 20_000;
  if (low - 1 <= bottom) return freePort(host); // an unusual range: nothing below it to use
  for (let i = 0; i < 200; i++) {
    const port = bottom + Math.floor(Math.random() * (low - bottom));
    if (await canBind(port, host)) return port;
  }
  return freePort(host);
}
