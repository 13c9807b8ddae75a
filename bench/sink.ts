/**
 * The upload backend of the terminated-bulk rows (bench/terminate.ts): a
 * process of its own (its CPU never mixes with the load generator's), which
 * counts what each connection sends and, once BYTES have arrived, answers one
 * byte and closes. The client learns from that byte, relayed back through the
 * proxy, that the whole upload reached the backend.
 * Usage: node dist/bench/sink.js BYTES. Prints "PORT <n>" when listening.
 */
import net from 'node:net';

const total = Number(process.argv[2] ?? '0');
if (!(total > 0)) {
  process.stderr.write('usage: sink BYTES\n');
  process.exit(2);
}
const server = net.createServer((s) => {
  let got = 0;
  s.on('error', () => s.destroy());
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= total && got - d.length < total) s.end('y');
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${(server.address() as net.AddressInfo).port}\n`);
});
