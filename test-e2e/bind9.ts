/**
 * BIND 9 for end-to-end tests (../shared/recipes/bind9-ddns-doh.md): a
 * primary for example.test on loopback that takes RFC 2136 updates signed
 * with the TSIG key `upd` and serves DoH with a self-signed certificate.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../src/cli/free-port.js';

export const NAMED = '/usr/sbin/named';
export const namedMissing = existsSync(NAMED) ? false : 'BIND 9 (named) is not installed (.ci/run installs bind9)';

export interface Bind {
  proc: ChildProcess;
  dnsPort: number;
  dohPort: number;
  /** https://127.0.0.1:PORT/dns-query */
  doh: string;
  /** The DoH certificate (PEM), to trust; its file is W/cert.pem. */
  ca: string;
}

/**
 * Writes W/upd.key (and W/wrong.key, another key of the same name), the DoH
 * certificate, the zone (SOA, NS, ns1 and svc A records, then `extraRecords`)
 * and named.conf in W, starts named and waits until it runs.
 */
export async function startBind(W: string, extraRecords = ''): Promise<Bind> {
  const [dnsPort, dohPort] = [await freePort(), await freePort()];
  execFileSync('sh', ['-c', `tsig-keygen -a hmac-sha256 upd > ${W}/upd.key && tsig-keygen -a hmac-sha256 upd > ${W}/wrong.key`]);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-keyout', join(W, 'key.pem'), '-out', join(W, 'cert.pem'), '-subj', '/CN=dns.test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:dns.test'], { stdio: 'ignore' });
  writeFileSync(join(W, 'example.test.db'), `$TTL 300\n@ SOA ns1.example.test. admin.example.test. 1 3600 600 86400 300\n@ NS ns1\nns1 A 127.0.0.1\nsvc A 127.0.0.1\n${extraRecords}`);
  writeFileSync(
    join(W, 'named.conf'),
    `include "${W}/upd.key";
tls t { key-file "${W}/key.pem"; cert-file "${W}/cert.pem"; };
http h { endpoints { "/dns-query"; }; };
options {
  directory "${W}"; pid-file "${W}/named.pid"; session-keyfile "${W}/session.key";
  listen-on port ${dnsPort} { 127.0.0.1; };
  listen-on port ${dohPort} tls t http h { 127.0.0.1; };
  listen-on-v6 { none; }; recursion no; dnssec-validation no; allow-transfer { none; };
};
zone "example.test" { type primary; file "example.test.db"; update-policy { grant upd zonesub ANY; }; };
`,
  );
  const proc = spawn(NAMED, ['-g', '-c', join(W, 'named.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d) => {
    log += d;
  });
  const t0 = Date.now();
  while (!/running/.test(log)) {
    if (Date.now() - t0 > 15_000 || proc.exitCode !== null) {
      proc.kill();
      throw new Error(`named did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, dnsPort, dohPort, doh: `https://127.0.0.1:${dohPort}/dns-query`, ca: readFileSync(join(W, 'cert.pem'), 'utf8') };
}
