/**
 * The reference point the issue names: a naive Node peek-and-pipe SNI proxy
 * (no limits, no metrics, no logs, no ECH). It shows how much of echgate's cost
 * per connection is Node's own socket machinery. Usage: naive-proxy PORT BACKEND_PORT [NAME]
 * (NAME: the server name the first chunk must carry, default public.example.test, the outer
 * name of the captured hellos; bench/run.ts's latency rows pass app.example.test).
 */
import net from 'node:net';

const [port, backendPort] = process.argv.slice(2, 4).map(Number);
const name = process.argv[4] ?? 'public.example.test';
net
  .createServer((c) => {
    c.once('data', (hello) => {
      // Find the SNI the cheap way: the name is there in cleartext; we only check it is present.
      if (!hello.includes(name)) return c.destroy();
      const b = net.connect(backendPort!, '127.0.0.1', () => {
        b.write(hello);
        c.pipe(b).pipe(c);
      });
      b.on('error', () => c.destroy());
      c.on('error', () => b.destroy());
    });
  })
  .listen(port, '127.0.0.1', () => process.stdout.write('READY\n'));
