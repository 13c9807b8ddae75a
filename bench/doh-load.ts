/**
 * DoH load generator (RFC 8484 POST over one HTTP/2 connection), in a process
 * of its own: `doh-load URL SECONDS CONCURRENCY` keeps CONCURRENCY queries
 * outstanding (A and HTTPS for app.example.test, alternating) and prints
 * "DONE <answered> <failed>". It measures many streams on one connection,
 * which dnsperf 2.10's DoH mode cannot read from node:http2 (see bench/dns.ts).
 */
import http2 from 'node:http2';
import tls from 'node:tls';

const [url = '', seconds = '3', conc = '20'] = process.argv.slice(2);
const u = new URL(url);

function query(type: number): Buffer {
  const labels = 'app.example.test'.split('.');
  const name = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.of(l.length), Buffer.from(l)])), Buffer.of(0)]);
  return Buffer.concat([Buffer.of(0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0), name, Buffer.of(type >> 8, type & 0xff, 0, 1)]);
}
const queries = [query(1), query(65)];
const session = http2.connect(u.origin, {
  createConnection: () => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ALPNProtocols: ['h2'], rejectUnauthorized: false });
    // Without it, delayed ACKs pace the small requests at a few hundred per second.
    s.setNoDelay(true);
    return s;
  },
});
let ok = 0;
let failed = 0;
let stop = false;
let inflight = 0;
const one = (i: number) => {
  if (stop) {
    if (--inflight === 0) finish();
    return;
  }
  const body = queries[i % 2]!;
  const req = session.request({ ':method': 'POST', ':path': u.pathname, 'content-type': 'application/dns-message', accept: 'application/dns-message', 'content-length': body.length });
  let status = 0;
  req.on('response', (h) => {
    status = Number(h[':status']);
  });
  req.on('data', () => {});
  req.on('end', () => {
    if (status === 200) ok++;
    else failed++;
    one(i + 1);
  });
  req.on('error', () => {
    failed++;
    one(i + 1);
  });
  req.end(body);
};
const finish = () => {
  process.stdout.write(`DONE ${ok} ${failed}\n`);
  session.close();
};
session.once('connect', () => {
  for (let i = 0; i < Number(conc); i++) {
    inflight++;
    one(i);
  }
  setTimeout(() => {
    stop = true;
  }, Number(seconds) * 1000);
});
session.on('error', (e) => {
  process.stderr.write(`doh-load: ${e.message}\n`);
  process.exit(1);
});
