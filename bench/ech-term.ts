/**
 * What ECH adds to a server's handshake, in one process and without sockets:
 * the server side of a full TLS 1.3 handshake as `serve` runs it on a
 * terminating router (scan the ClientHello, the ECH classifier, TlsServer
 * start, the client's Finished), with ECH accepted and without, and the
 * route-only (split mode) path (scan, classify, the inner hello's records).
 * Several builds in the same process, their slices interleaved, so a change
 * is read against a base under the same load (docs/benchmarks.md, "ECH cost,
 * eighth pass").
 *
 * The client side (src/tls13/client.ts with src/ech/client.ts, of the build
 * running this script) makes each hello outside the timed sections; every
 * handshake has a fresh client, key share and ECH enc, as in serve.
 *
 * Usage: node dist/bench/ech-term.js [--n N] [--rounds R] [--only term,route] ROOT ...
 * ROOT is a checkout with dist/ built (this worktree, or a base copy built
 * with tsc). Prints per round and build: µs of CPU per handshake plain and
 * with ECH, their difference, and the route-only extra per ECH hello; then
 * the medians. Run one build under `--cpu-prof` to see where the difference
 * goes (hot code: serve runs the same calls colder, see the route-only
 * passes in docs/benchmarks.md).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isSupportedSuite, KDF, KEM_X25519_SHA256 } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { echOffer } from '../src/ech/client.js';
import { TlsClient } from '../src/tls13/client.js';
import { decodeECHConfigList, encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { takeOption } from './util.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => takeOption(args, name, def);
const N = Number(opt('n', '400'));
const ROUNDS = Number(opt('rounds', '5'));
const ONLY = opt('only', 'term,route').split(',');
const roots = args.length ? args.map((a) => resolve(a)) : [resolve(import.meta.dirname, '..', '..')];
const NAME = 'app.example.test';

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

// One ECH key (X25519, HKDF-SHA256, AES-128-GCM) and one ECDSA P-256 certificate for every build.
const dir = mkdtempSync(join(tmpdir(), 'echgate-echterm-'));
execFileSync(
  'openssl',
  ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')],
  { stdio: 'ignore' },
);
const certPem = readFileSync(join(dir, 'c.pem'), 'utf8');
const keyPem = readFileSync(join(dir, 'k.pem'), 'utf8');
const skRaw = nodeProvider.randomBytes(32);
const list = encodeECHConfigList([
  encodeECHConfig({
    configId: 7,
    kemId: KEM_X25519_SHA256,
    publicKey: nodeProvider.x25519Private(skRaw).publicKey,
    cipherSuites: [{ kdfId: KDF.HKDF_SHA256, aeadId: 1 }],
    maximumNameLength: 0,
    publicName: 'public.example.test',
    extensions: [],
  }),
]);
const config = usableConfigs(decodeECHConfigList(list), isSupportedSuite)[0]!;

interface Build {
  name: string;
  /** One server handshake: the first flight for `hello` (a record), then the client's Finished from `finish`. */
  term(record: Uint8Array, finish: (flight: Uint8Array) => Uint8Array): boolean;
  /** The route-only path for one hello: scan, classify, and for accepted ECH the inner hello's records. */
  route(record: Uint8Array): boolean;
}

async function loadBuild(root: string): Promise<Build> {
  const m = async (p: string) => import(pathToFileURL(join(root, 'dist', 'src', p)).href);
  const [{ nodeProvider: prov }, { prepareServerKey }, { echClassifier }, { Metrics }, { TlsServer }, { loadCertificate }, { scanClientHelloMessage }, { parseHelloRecords }, { innerHelloRecords }] =
    await Promise.all([
      m('crypto/node.js'),
      m('ech/server.js'),
      m('proxy/ech-classifier.js'),
      m('proxy/metrics.js'),
      m('tls13/server.js'),
      m('tls13/certs.js'),
      m('wire/tls/client-hello.js'),
      m('wire/tls/record.js'),
      m('proxy/split.js'),
    ]);
  const key = prepareServerKey(prov, config, prov.x25519Private(skRaw));
  const lookup = { byConfigId: (id: number) => (id === key.configId ? [key] : []), all: () => [key] };
  const classify = echClassifier(lookup, new Metrics(), { trialDecrypt: false });
  const cert = loadCertificate(certPem, keyPem);
  const random = (k: number) => prov.randomBytes(k);
  const ephemeral = () => prov.x25519Generate();
  const certificate = () => cert;
  const retryConfigs = () => list;
  const classified = (record: Uint8Array) => {
    const scan = scanClientHelloMessage(parseHelloRecords(record)!.message);
    return classify(scan.hello, scan.view, 'e');
  };
  return {
    name: root,
    term(record, finish) {
      const cls = classified(record);
      const engine = new TlsServer({ provider: prov, random, ephemeral, certificate, retryConfigs: retryConfigs(), maxClientHelloBytes: 1 << 16 });
      const first = engine.start(cls.hello, cls.sni || undefined, { offered: cls.echOffered, accepted: cls.ech === 'accepted', decryptSecond: cls.decryptSecond });
      if (first.error) throw first.error;
      const flight = first.send.length === 1 ? first.send[0]! : Buffer.concat(first.send);
      // The client's work is not the server's: taken out of the timed section by the caller.
      const t = cpuUs();
      const fin = finish(flight);
      clientUs += cpuUs() - t;
      const done = engine.receive(fin);
      if (done.error) throw done.error;
      return done.established !== undefined;
    },
    route(record) {
      const cls = classified(record);
      if (cls.ech === 'accepted') return innerHelloRecords(cls.hello).length > 0;
      return cls.sni === NAME;
    },
  };
}

/** CPU spent in the client inside a timed section, subtracted from it. */
let clientUs = 0;

function clientFor(ech: boolean) {
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ech: ech ? echOffer(config) : undefined });
  const hello = client.hello();
  const record = hello.length === 1 ? hello[0]! : Buffer.concat(hello);
  const finish = (flight: Uint8Array) => {
    const out = client.receive(flight);
    if (!out.established || (ech && out.established.ech !== 'accepted')) throw new Error('bench: the client did not finish as expected');
    return out.send.length === 1 ? out.send[0]! : Buffer.concat(out.send);
  };
  return { record, finish };
}

/** µs of server CPU per handshake over n handshakes of one kind with one build. */
function termSlice(b: Build, ech: boolean, n: number): number {
  const clients = Array.from({ length: n }, () => clientFor(ech));
  clientUs = 0;
  const t = cpuUs();
  for (const c of clients) if (!b.term(c.record, c.finish)) throw new Error('bench: handshake failed');
  return (cpuUs() - t - clientUs) / n;
}

const routeHellos = { ech: [] as Uint8Array[], plain: [] as Uint8Array[] };
function routeSlice(b: Build, ech: boolean): number {
  const hellos = ech ? routeHellos.ech : routeHellos.plain;
  const t = cpuUs();
  for (const h of hellos) if (!b.route(h)) throw new Error('bench: route failed');
  return (cpuUs() - t) / hellos.length;
}

const builds: Build[] = [];
for (const r of roots) builds.push(await loadBuild(r));
if (ONLY.includes('route')) {
  // Fresh hellos (each its own enc), made once and reused by every slice: the server's DH costs the same for any peer key.
  for (let i = 0; i < N * 2; i++) {
    routeHellos.ech.push(clientFor(true).record);
    routeHellos.plain.push(clientFor(false).record);
  }
}
// Warm-up past V8's tiers for every build.
for (const b of builds) {
  if (ONLY.includes('term')) {
    termSlice(b, true, 300);
    termSlice(b, false, 300);
  }
  if (ONLY.includes('route')) for (let i = 0; i < 3; i++) routeSlice(b, i % 2 === 0);
}

const res = new Map<string, { plain: number[]; ech: number[]; rplain: number[]; rech: number[] }>();
for (const b of builds) res.set(b.name, { plain: [], ech: [], rplain: [], rech: [] });
for (let r = 0; r < ROUNDS; r++) {
  // Builds in a rotating order, kinds in ABBA order within each.
  const order = builds.map((_, i) => builds[(i + r) % builds.length]!);
  for (const b of order) {
    const x = res.get(b.name)!;
    if (ONLY.includes('term')) {
      const s = { plain: 0, ech: 0 };
      for (const kind of ['plain', 'ech', 'ech', 'plain'] as const) s[kind] += termSlice(b, kind === 'ech', N / 4) / 2;
      x.plain.push(s.plain);
      x.ech.push(s.ech);
    }
    if (ONLY.includes('route')) {
      const s = { plain: 0, ech: 0 };
      for (const kind of ['plain', 'ech', 'ech', 'plain'] as const) s[kind] += routeSlice(b, kind === 'ech') / 2;
      x.rplain.push(s.plain);
      x.rech.push(s.ech);
    }
    const last = (a: number[]) => (a.length ? a[a.length - 1]!.toFixed(1) : '-');
    process.stdout.write(
      `round ${r + 1} ${b.name}: term plain ${last(x.plain)} ECH ${last(x.ech)} µs; route plain ${last(x.rplain)} ECH ${last(x.rech)} µs\n`,
    );
  }
}
process.stdout.write('medians (µs of CPU per handshake / per hello):\n');
for (const b of builds) {
  const x = res.get(b.name)!;
  const d = (a: number[], z: number[]) => median(a.map((v, i) => v - z[i]!));
  const parts = [];
  if (x.plain.length) parts.push(`term plain ${median(x.plain).toFixed(1)} ECH ${median(x.ech).toFixed(1)} extra ${d(x.ech, x.plain).toFixed(1)} (×${median(x.ech.map((v, i) => v / x.plain[i]!)).toFixed(3)})`);
  if (x.rplain.length) parts.push(`route plain ${median(x.rplain).toFixed(1)} ECH ${median(x.rech).toFixed(1)} extra ${d(x.rech, x.rplain).toFixed(1)}`);
  process.stdout.write(`${b.name}: ${parts.join('; ')}\n`);
}
