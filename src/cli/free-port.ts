/**
 * A TCP port free on `host` right now (bound to 0, read, released), for tests
 * and benchmarks that must write a port into a configuration before the
 * process that binds it starts. Anyone may take it in between: where the
 * binding code is our own, bind to 0 instead.
 */
import net from 'node:net';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
