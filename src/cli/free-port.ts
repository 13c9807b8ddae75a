/** Free TCP ports on loopback, for the demo, tests and benchmarks. */
import net from 'node:net';

/** `want` when nothing listens there right now; else (and for 0) a port the kernel picks. */
export async function freePort(host = '127.0.0.1', want = 0): Promise<number> {
  const s = net.createServer();
  const ok = await new Promise<boolean>((r) => {
    s.once('error', () => r(false));
    s.listen(want, host, () => r(true));
  });
  if (!ok) return freePort(host, 0);
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
