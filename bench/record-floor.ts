/**
 * The per-record cost of terminated bulk in one process, no sockets: the bare
 * node:crypto floor (createCipheriv/createDecipheriv + setAAD + update +
 * final + getAuthTag/setAuthTag in a loop) beside echgate's engine on the
 * same records (TlsServer.receive for client → backend, TlsServer.encrypt for
 * backend → client), for full 2^14-byte records and for small ones. What the
 * engine costs beyond the floor is ours; the floor is node:crypto's
 * (docs/benchmarks.md, "Terminated bulk, ninth pass").
 *
 * Usage: node dist/bench/record-floor.js [--mib N] [--small BYTES] [--tries N]
 * Prints CPU µs per record (process.cpuUsage), the best of --tries runs of
 * each (the least disturbed by other load on the machine).
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { concat } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { takeOption } from './util.js';

const args = process.argv.slice(2);
const MIB = Number(takeOption(args, 'mib', '32'));
const SMALL = Number(takeOption(args, 'small', '256'));
const TRIES = Number(takeOption(args, 'tries', '5'));
/** --only open|seal: just the engine's loop of that direction, full records (for --cpu-prof). */
const ONLY = takeOption(args, 'only', '');
/**
 * --reads R (with --only open): the engine opens only the first R reads of
 * the --mib stream, once. Run under `valgrind --tool=callgrind` with two
 * values of R and the same --mib: the difference of the instruction counts is
 * the engine's open of the records in between, without the stream's setup
 * (the client's seal), which also grows with --mib. A count that load does
 * not move (docs/benchmarks.md, "Terminated bulk upload, eleventh pass").
 */
const READS = Number(takeOption(args, 'reads', '0'));
const NAME = 'floor.example.test';
const FULL = 1 << 14;

const dir = mkdtempSync(join(tmpdir(), 'echgate-floor-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
const cert = loadCertificate(readFileSync(join(dir, 'c.pem'), 'utf8'), readFileSync(join(dir, 'k.pem'), 'utf8'));

function pair(): { client: TlsClient; server: TlsServer } {
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
  const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), ephemeral: () => nodeProvider.x25519Generate(), certificate: () => cert });
  const first = server.start(decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message), NAME, { offered: false, accepted: false });
  const fin = client.receive(concat(...first.send));
  if (!server.receive(concat(...fin.send)).established) throw new Error('no handshake');
  return { client, server };
}

/** CPU µs of this process (all threads: GC helpers count), not wall time: the machine is shared, so waiting for a core must not count. */
const now = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const best = (f: () => number) => {
  let b = Infinity;
  for (let i = 0; i < TRIES; i++) b = Math.min(b, f());
  return b;
};

/** `n` bytes of client records cut into reads of 64 KiB (as TCP delivers them: not on record boundaries). */
function clientStream(client: TlsClient, n: number, recSize: number): Uint8Array[] {
  const data = new Uint8Array(randomBytes(recSize));
  const recs: Uint8Array[] = [];
  for (let i = 0; i < n / recSize; i++) recs.push(...client.encrypt(data));
  const all = concat(...recs);
  const reads: Uint8Array[] = [];
  for (let i = 0; i < all.length; i += 65536) reads.push(all.subarray(i, i + 65536));
  return reads;
}

/** µs per record for the engine opening `recSize`-byte records (TlsServer.receive). */
function engineOpen(recSize: number): number {
  const n = recSize === FULL ? MIB << 20 : Math.min(MIB << 20, recSize * 20000);
  const { client, server } = pair();
  const reads = clientStream(client, n, recSize);
  const t0 = now();
  let got = 0;
  const upTo = READS > 0 ? Math.min(READS, reads.length) : reads.length;
  for (let i = 0; i < upTo; i++) for (const d of server.receive(reads[i]!).data) got += d.length;
  const t = now() - t0;
  if (READS > 0) return t;
  if (got !== n) throw new Error(`opened ${got} of ${n}`);
  return t / (n / recSize);
}

/** µs per record for the engine sealing backend reads of 64 KiB (or `recSize` when smaller) (TlsServer.encrypt). */
function engineSeal(recSize: number): number {
  const { server } = pair();
  const chunk = new Uint8Array(randomBytes(recSize === FULL ? 65536 : recSize));
  const perChunk = Math.ceil(chunk.length / FULL);
  const chunks = recSize === FULL ? (MIB << 20) / 65536 : 20000;
  let into: Uint8Array | undefined;
  const t0 = now();
  for (let i = 0; i < chunks; i++) {
    const out = server.encrypt(chunk, into);
    into = out[0];
  }
  return (now() - t0) / (chunks * perChunk);
}

const KEY = randomBytes(16);
const IV = randomBytes(12);
const HDR = Buffer.from([23, 3, 3, 0, 0]);

const TAG16 = { authTagLength: 16 } as const;
const TYPE = Buffer.from([23]);
/** Records per measurement: the engine's count, over as many distinct bytes (the same cache behaviour: no hot 16 KiB reused). */
const count = (recSize: number) => (recSize === FULL ? (MIB << 20) / FULL : 20000);
const plain = (recSize: number) => randomBytes(count(recSize) * recSize);

/** The bare floor: one createCipheriv … getAuthTag per record, the output as node gives it (a new buffer per update). */
function floorSeal(recSize: number): number {
  const content = plain(recSize);
  const n = count(recSize);
  const t0 = now();
  for (let i = 0; i < n; i++) {
    IV[11] = i & 0xff;
    const c = createCipheriv('aes-128-gcm', KEY, IV, TAG16);
    c.setAAD(HDR);
    c.update(content.subarray(i * recSize, (i + 1) * recSize));
    c.update(TYPE);
    c.final();
    c.getAuthTag();
  }
  return (now() - t0) / n;
}

function floorOpen(recSize: number): number {
  const n = count(recSize);
  // n distinct records (one key and nonce: only the cost matters here), each opened once by a new decipher.
  const content = plain(recSize + 1);
  const cts: Buffer[] = [];
  const tags: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const c = createCipheriv('aes-128-gcm', KEY, IV, TAG16);
    c.setAAD(HDR);
    cts.push(Buffer.concat([c.update(content.subarray(i * (recSize + 1), (i + 1) * (recSize + 1))), c.final()]));
    tags.push(c.getAuthTag());
  }
  const t0 = now();
  for (let i = 0; i < n; i++) {
    const d = createDecipheriv('aes-128-gcm', KEY, IV, TAG16);
    d.setAAD(HDR);
    d.setAuthTag(tags[i]!);
    d.update(cts[i]!);
    d.final();
  }
  return (now() - t0) / n;
}

/** AES-128-GCM alone: one cipher object, many updates (no per-record object): the cost of the bytes. */
function bytesOnly(recSize: number): number {
  const content = plain(recSize);
  const n = count(recSize);
  const c = createCipheriv('aes-128-gcm', KEY, IV, TAG16);
  const t0 = now();
  for (let i = 0; i < n; i++) c.update(content.subarray(i * recSize, (i + 1) * recSize));
  return (now() - t0) / n;
}

if (ONLY) {
  const f = ONLY === 'open' ? engineOpen : engineSeal;
  const t = best(() => f(FULL));
  process.stdout.write(`engine ${ONLY}: ${t.toFixed(2)} µs per record\n`);
  process.exit(0);
}
for (const size of [FULL, SMALL]) {
  // Warm up every path first (tier-up), then the best of TRIES.
  engineOpen(size);
  engineSeal(size);
  floorSeal(size);
  floorOpen(size);
  const r = {
    bytes: best(() => bytesOnly(size)),
    floorSeal: best(() => floorSeal(size)),
    engineSeal: best(() => engineSeal(size)),
    floorOpen: best(() => floorOpen(size)),
    engineOpen: best(() => engineOpen(size)),
  };
  process.stdout.write(
    `${size}-byte records, µs per record (best of ${TRIES}): AES-GCM bytes alone ${r.bytes.toFixed(2)}; ` +
      `seal floor ${r.floorSeal.toFixed(2)}, engine ${r.engineSeal.toFixed(2)} (+${(r.engineSeal - r.floorSeal).toFixed(2)}); ` +
      `open floor ${r.floorOpen.toFixed(2)}, engine ${r.engineOpen.toFixed(2)} (+${(r.engineOpen - r.floorOpen).toFixed(2)})\n`,
  );
}
