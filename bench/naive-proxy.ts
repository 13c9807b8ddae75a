/**
 * The reference point the issue names: a naive Node peek-and-pipe SNI proxy
 * (no limits, no metrics, no logs, no ECH). It shows how much of echgate's cost
 * per connection is Node's own socket machinery. Usage: naive-proxy PORT BACKEND_PORT
 */
import net from 'node:net';

const [port, backendPort] = process.argv.slice(2).map(Number);
net
  .createServer((c) => {
    c.once('data', (hello) => {
      // Find the SNI the cheap way: the name is there in cleartext; we only check it is present.
      if (!hello.includes('public.example.test')) return c.destroy();
      const b = net.connect(backendPort!, '127.0.0.1', () => {
        b.write(hello);
        c.pipe(b).pipe(c);
      });
      b.on('error', () => c.destroy());
      c.on('error', () => b.destroy());
    });
  })
  .listen(port, '127.0.0.1', () => process.stdout.write('READY\n'));
