/**
 * ECH decryption cost, in CPU time of this process (process.cpuUsage), beside
 * the floor: what any implementation must spend per hello — one X25519 DH with
 * the peer key imported from raw, five HMACs (HKDF, with psk_id_hash and
 * info_hash cached per config) and one AES-128-GCM open of the payload.
 */
import { createCipheriv, createDecipheriv, createHmac, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { x25519 } from '@noble/curves/ed25519.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nobleProvider } from '../src/crypto/noble.js';
import { nodeProvider } from '../src/crypto/node.js';
import { decryptEch, prepareServerKey } from '../src/ech/server.js';
import type { ConnData } from '../src/routing/ast.js';
import { RoutingTable } from '../src/routing/table.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { decodeClientHelloMessage, routingView } from '../src/wire/tls/client-hello.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function cpu(fn: () => void, n: number): number {
  // Warm up past the optimizing compiler's thresholds: a short run would
  // otherwise compare interpreted parse code against native crypto.
  for (let i = 0; i < Math.min(2000, n); i++) fn();
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn();
  const t = process.cpuUsage(t0);
  return n / ((t.user + t.system) / 1e6);
}

export interface EchBenchResult {
  rows: { name: string; perSec: number }[];
  ratio: number;
}

export function echBench(n: number): EchBenchResult {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'manifest.json'), 'utf8'));
  const c = manifest.captures.find((x: { real_ech: boolean; inner_sni: string }) => x.real_ech && x.inner_sni === 'app.example.test');
  const bytes = new Uint8Array(readFileSync(join(ROOT, 'test', 'vectors', 'captures', c.file)));
  const cfg = usableConfigs(decodeECHConfigList(new Uint8Array(Buffer.from(c.keys.echconfiglist_b64, 'base64'))), isSupportedSuite)[0]!;
  const skRaw = new Uint8Array(Buffer.from(c.keys.private_key_hex, 'hex'));
  const key = prepareServerKey(nodeProvider, cfg, nodeProvider.x25519Private(skRaw));
  const nobleKey = prepareServerKey(nobleProvider, cfg, nobleProvider.x25519Private(skRaw));
  const lookup = { byConfigId: () => [key], all: () => [key] };
  const nobleLookup = { byConfigId: () => [nobleKey], all: () => [nobleKey] };
  const table = new RoutingTable([{ name: 'app', rule: 'HostSNI(`app.example.test`) && ALPN(`h2`)', tls: true, target: 1 }]);

  const full = () => {
    const a = parseHelloRecords(bytes)!;
    const outer = decodeClientHelloMessage(a.message);
    const v = routingView(outer);
    const r = decryptEch(nodeProvider, outer, lookup, { ech: v.ech });
    if (r.status !== 'accepted') throw new Error('bench: capture did not decrypt');
    const s = routingView(r.inner);
    const conn: ConnData = { sni: s.sni ?? '', alpn: s.alpn, clientIp: '127.0.0.1', tls: true, ech: 'accepted' };
    if (!table.match(conn)) throw new Error('bench: no route');
  };
  const nobleOnly = () => {
    const outer = decodeClientHelloMessage(parseHelloRecords(bytes)!.message);
    if (decryptEch(nobleProvider, outer, nobleLookup).status !== 'accepted') throw new Error('bench: noble did not decrypt');
  };

  // The floor, written directly on node:crypto.
  const outer = decodeClientHelloMessage(parseHelloRecords(bytes)!.message);
  const ech = routingView(outer).ech!;
  if (ech.type !== 'outer') throw new Error('bench: no ECH');
  const enc = Buffer.from(ech.enc).toString('base64url');
  const skObj = (key.sk as unknown as { key: Parameters<typeof diffieHellman>[0]['privateKey'] }).key;
  const hk = Buffer.alloc(32, 1);
  const aesKey = Buffer.alloc(16, 2);
  const nonce = Buffer.alloc(12, 3);
  const aad = Buffer.from(outer.raw!);
  const pt = Buffer.alloc(ech.payload.length - 16, 4);
  const cp = createCipheriv('aes-128-gcm', aesKey, nonce);
  cp.setAAD(aad);
  const ct = Buffer.concat([cp.update(pt), cp.final()]);
  const tag = cp.getAuthTag();
  const floor = () => {
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: enc }, format: 'jwk' });
    const dh = diffieHellman({ privateKey: skObj, publicKey: pub });
    let k: Buffer = dh;
    for (let i = 0; i < 5; i++) k = createHmac('sha256', hk).update(k).digest();
    const d = createDecipheriv('aes-128-gcm', aesKey, nonce);
    d.setAAD(aad);
    d.setAuthTag(tag);
    d.update(ct);
    d.final();
  };

  const sk2 = new Uint8Array(32).fill(7);
  const pk2 = x25519.getPublicKey(new Uint8Array(32).fill(9));
  const nodeSk = nodeProvider.x25519Private(sk2);
  const nobleSk = nobleProvider.x25519Private(sk2);
  const ikm = Buffer.alloc(32, 5);
  // Floor and echgate interleaved in 5 rounds (A, B, A, B, ...), medians: the VM's speed drifts.
  const fl: number[] = [];
  const eg: number[] = [];
  for (let r = 0; r < 5; r++) {
    fl.push(cpu(floor, Math.ceil(n / 5)));
    eg.push(cpu(full, Math.ceil(n / 5)));
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[2]!;
  const rows = [
    { name: 'floor: X25519 (JWK import) + 5 HMAC + AES-128-GCM open (node:crypto)', perSec: med(fl) },
    { name: 'echgate: parse + ECH decrypt + rebuild inner + route (node:crypto)', perSec: med(eg) },
    { name: 'echgate ECH decrypt on the @noble provider', perSec: cpu(nobleOnly, Math.max(200, n / 20)) },
    { name: 'X25519 DH, raw peer key (node:crypto provider)', perSec: cpu(() => nodeProvider.x25519(nodeSk, pk2), n) },
    { name: 'X25519 DH, raw peer key (@noble provider)', perSec: cpu(() => nobleProvider.x25519(nobleSk, pk2), Math.max(200, n / 20)) },
    { name: 'HKDF extract+expand 32 B: two createHmac', perSec: cpu(() => createHmac('sha256', createHmac('sha256', hk).update(ikm).digest()).update(Buffer.of(1)).digest(), n) },
    { name: 'HKDF extract+expand 32 B: hkdfSync', perSec: cpu(() => hkdfSync('sha256', ikm, hk, Buffer.alloc(0), 32), n) },
  ];
  return { rows, ratio: rows[1]!.perSec / rows[0]!.perSec };
}
