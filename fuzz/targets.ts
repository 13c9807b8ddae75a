/**
 * Fuzz targets: every decoder that reads bytes from the network, and the two
 * TLS 1.3 engines fed whole flights. A target's run() must return or throw an
 * EchgateError; anything else thrown is a crash (the runner classifies).
 * Seeds come from test/vectors, /work/shared (captures and vectors, when
 * present) and live deterministic handshakes.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Reader } from '../src/bytes/reader.js';
import { concat, fromHex } from '../src/bytes/util.js';
import { EchgateError, isEchgateError } from '../src/errors.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { AEADS, nodeProvider } from '../src/crypto/node.js';
import { answerQuery } from '../src/dns/answer.js';
import { describeAnswers } from '../src/dns/doh-client.js';
import { DEFAULT_DOH_LIMITS, type DohRequestHead, dohAnswer, dohRequestStep } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { buildEchClientHello, echOffer } from '../src/ech/client.js';
import { decryptEsni, type EsniServerKey, esniEncrypt, esniFromTxt, esniKeyIv, makeESNIKeys, prepareEsniKey, usableEsni, verifyESNIKeys } from '../src/ech/esni.js';
import { decryptEch, decryptSecondHello, type EchServerKey, prepareServerKey, rebuildInner } from '../src/ech/server.js';
import { parseIp } from '../src/bytes/ip.js';
import type { CipherSuite } from '../src/tls13/key-schedule.js';
import { type ClientOptions, TlsClient } from '../src/tls13/client.js';
import { type ServerOptions, TlsServer } from '../src/tls13/server.js';
import type { CryptoProvider } from '../src/crypto/provider.js';
import { decodeMessage, encodeFormErr, encodeQuery, encodeResponse, RRType } from '../src/wire/dns/message.js';
import { decodeSvcb, encodeSvcb, formatSvcb, parseSvcbPresentation } from '../src/wire/dns/svcb.js';
import { parseTsigKeyFile, signRequest, verifyResponse } from '../src/wire/dns/tsig.js';
import { decodeECHConfigList, encodeECHConfig, hasUnknownMandatoryExtension } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { encodeProxyV1, encodeProxyV2 } from '../src/wire/proxy/proxy-protocol.js';
import { type ClientHello, decodeClientHello, decodeClientHelloMessage, decodeClientHelloPrefix, encodeClientHello, firstDuplicateType, routingView, scanClientHelloMessage, summarize } from '../src/wire/tls/client-hello.js';
import { ContentType, ExtensionType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { checksumInput, decodeClientEncryptedSNI, decodeClientESNIInner, decodeESNIKeys, decodeServerEncryptedSNI, decodeTxtStrings, encodeClientEncryptedSNI, encodeClientESNIInner, encodeESNIKeys } from '../src/wire/tls/esni.js';
import {
  decodeAlpn,
  decodeECHClientHello,
  decodeKeyShares,
  decodeOfferedPsks,
  decodeOuterExtensions,
  decodePskModes,
  decodeServerName,
  decodeSupportedVersions,
  decodeU16List,
  describeExtension,
} from '../src/wire/tls/extensions.js';
import { decodeHandshake } from '../src/wire/tls/handshake.js';
import { ClientHelloAssembler, parseHelloRecords, sniffTls } from '../src/wire/tls/record.js';
import { decodeCertificate, decodeCertificateVerify, decodeExtensionBlock, decodeServerHello } from '../src/wire/tls/server-messages.js';
import type { ClientStep } from '../src/proxy/preamble.js';
import { SplitClientStream } from '../src/proxy/split.js';
import { errorResponse, postgres, SSL_REQUEST_CODE, CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, specialRequest } from '../src/proxy/protocols/postgres.js';
import { cloneDeep, deterministicProvider, ed25519Certificate, fixedEchKey, memoProvider, openRecords, peek, sealRecords, snapshot } from './harness.js';
import { Rng } from './mutate.js';

export interface Target {
  name: string;
  /** What it feeds and to which functions (for docs and --list). */
  about: string;
  maxLen: number;
  dict?: Uint8Array[];
  /** Heavy set-up (certificates, handshakes) done once per worker. */
  setup?: () => void;
  seeds(): Uint8Array[];
  run(data: Uint8Array): void;
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const VECTORS = join(ROOT, 'test', 'vectors');
const SHARED = '/work/shared';
const b = (...v: number[]) => Uint8Array.from(v);
const latin1 = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
const text = (d: Uint8Array) => Buffer.from(d).toString('latin1');
const tag = (mode: number, ...parts: Uint8Array[]) => concat(b(mode), ...parts);

function readJson(rel: string): unknown {
  for (const dir of [VECTORS, join(SHARED, 'vectors'), SHARED]) {
    const f = join(dir, rel);
    if (existsSync(f)) return JSON.parse(readFileSync(f, 'utf8'));
  }
  return undefined;
}

/** Every hex string value (≥ 4 bytes) in a JSON vector file whose key matches `key`. */
function hexValues(rel: string, key: RegExp = /./): Uint8Array[] {
  const out: Uint8Array[] = [];
  const walk = (v: unknown, k: string) => {
    if (typeof v === 'string') {
      if (key.test(k) && v.length >= 8 && v.length % 2 === 0 && /^[0-9a-f]+$/i.test(v)) out.push(fromHex(v));
    } else if (Array.isArray(v)) for (const x of v) walk(x, k);
    else if (v && typeof v === 'object') for (const [kk, x] of Object.entries(v)) walk(x, kk);
  };
  walk(readJson(rel), '');
  return out;
}

/** The capture files: raw TLS records as Chromium sent them. */
function captures(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const dir of [join(VECTORS, 'captures'), join(SHARED, 'captures')]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.endsWith('.bin')) out.push(new Uint8Array(readFileSync(join(dir, f))));
  }
  return out;
}

const helloMessages = () => captures().map((c) => parseHelloRecords(c)!.message);

const TLS_DICT = [
  b(0x16, 0x03, 0x01),
  b(0x16, 0x03, 0x03),
  b(0x17, 0x03, 0x03),
  b(0x14, 0x03, 0x03, 0x00, 0x01, 0x01),
  b(0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32),
  b(0x03, 0x03),
  b(0x03, 0x04),
  b(0x01, 0x00, 0x00),
  b(0x02, 0x00, 0x00),
  b(0x08, 0x00, 0x00),
  b(0x0b, 0x00, 0x00),
  b(0x0f, 0x00, 0x00),
  b(0x14, 0x00, 0x00, 0x20),
  b(0x18, 0x00, 0x00, 0x01, 0x00),
  b(0x04, 0x00, 0x00),
  b(0x00, 0x00),
  b(0x00, 0x10),
  b(0x00, 0x0a),
  b(0x00, 0x0d),
  b(0x00, 0x29),
  b(0x00, 0x2b),
  b(0x00, 0x2d),
  b(0x00, 0x33),
  b(0x00, 0x2c),
  b(0xfe, 0x0d),
  b(0xfd, 0x00),
  b(0x00, 0x1d, 0x00, 0x20),
  b(0x13, 0x01),
  b(0x13, 0x02),
  b(0x13, 0x03),
  b(0x08, 0x07),
  b(0x04, 0x03),
  b(0x0a, 0x0a),
  latin1('\x02h2'),
  latin1('\x08http/1.1'),
  b(0x00, 0x01, 0x00, 0x01),
  b(0x00, 0x20),
];

const DNS_DICT = [
  b(0xc0, 0x0c),
  b(0xc0, 0x00),
  b(0x00, 0x01, 0x00, 0x01),
  b(0x00, 0x41, 0x00, 0x01),
  b(0x00, 0x40, 0x00, 0x01),
  b(0x00, 0x1c, 0x00, 0x01),
  b(0x00, 0x06, 0x00, 0x01),
  b(0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
  b(0x00, 0xfa, 0x00, 0xff),
  b(0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
  b(0x28, 0x00),
  b(0x81, 0x80),
  latin1('\x06secret\x07example\x04test\x00'),
  latin1('\x07example\x03com\x00'),
  b(0x00, 0x01),
  b(0x00, 0x05),
  b(0x00, 0x03, 0x00, 0x02, 0x01, 0xbb),
  b(0x00, 0x04, 0x00, 0x04, 0x7f, 0x00, 0x00, 0x01),
  b(0xfe, 0x0d),
  latin1('\x0bhmac-sha256\x00'),
  latin1('alpn='),
  latin1('ech='),
  latin1('mandatory='),
  latin1('port='),
  latin1('ipv6hint='),
  latin1('\\'),
  latin1('"'),
  latin1('key65535='),
];

/** Walk a decoded ClientHello the way the data path does. */
function exerciseHello(ch: ClientHello): void {
  routingView(ch);
  summarize(ch);
  firstDuplicateType(ch.extensions);
  for (const e of ch.extensions) describeExtension(e.type, e.data);
}

// ---------------------------------------------------------------- TLS codecs

const tlsRecords: Target = {
  name: 'tls-records',
  about: 'ClientHelloAssembler.push (the peek) with the stream split at input-chosen points, sniffTls, parseHelloRecords, then ClientHello decode + routingView/summarize/describeExtension',
  maxLen: 20000,
  dict: TLS_DICT,
  seeds: () => [...captures().map((c) => tag(0, c)), ...hexValues('rfc8448-simple-1rtt.json', /record|client_hello/i).map((c) => tag(1, c))],
  run(data) {
    if (data.length < 1) return;
    const body = data.subarray(1);
    const rng = new Rng(data[0]!);
    sniffTls(body.subarray(0, 3));
    parseHelloRecords(body, 4096);
    const a = new ClientHelloAssembler(data[0]! & 1 ? 2048 : 16 * 1024 + 2048);
    for (let o = 0; o < body.length; ) {
      const n = data[0]! & 2 ? body.length : 1 + rng.below(300);
      const r = a.push(body.subarray(o, o + n));
      o += n;
      if (r) {
        exerciseHello(decodeClientHelloMessage(r.message));
        break;
      }
    }
  },
};

const clientHello: Target = {
  name: 'client-hello',
  about: 'decodeClientHello / decodeClientHelloPrefix on a ClientHello body, then routingView, summarize, describeExtension on every extension, and re-encoding',
  maxLen: 8192,
  dict: TLS_DICT,
  seeds: () => [...helloMessages().map((m) => m.subarray(4)), ...hexValues('ech/nss-fixed-key-ech-decrypt-vectors.json', /client_hello/).map((m) => m.subarray(4))],
  run(data) {
    decodeClientHelloPrefix(data);
    const ch = decodeClientHello(data);
    exerciseHello(ch);
    encodeClientHello(ch);
  },
};

const EXT_DECODERS: ((d: Uint8Array) => unknown)[] = [
  decodeServerName,
  decodeAlpn,
  (d) => decodeU16List(d, 'fuzz'),
  decodeSupportedVersions,
  decodeKeyShares,
  decodePskModes,
  decodeOfferedPsks,
  decodeECHClientHello,
  decodeOuterExtensions,
  decodeServerHello,
  decodeCertificate,
  decodeCertificateVerify,
  decodeHandshake,
  (d) => decodeExtensionBlock(new Reader(d)),
];

const tlsMessages: Target = {
  name: 'tls-messages',
  about: 'the extension decoders (server_name, ALPN, u16 lists, supported_versions, key_share, psk modes, pre_shared_key, encrypted_client_hello, ech_outer_extensions) and the server-message decoders (ServerHello, Certificate, CertificateVerify, handshake header, extension block); the first byte picks the decoder',
  maxLen: 4096,
  dict: TLS_DICT,
  seeds() {
    const out: Uint8Array[] = [];
    for (const m of helloMessages()) {
      const ch = decodeClientHelloMessage(m);
      for (const e of ch.extensions) {
        const i = [ExtensionType.server_name, ExtensionType.application_layer_protocol_negotiation, ExtensionType.supported_groups, ExtensionType.supported_versions, ExtensionType.key_share, ExtensionType.psk_key_exchange_modes, ExtensionType.pre_shared_key, ExtensionType.encrypted_client_hello].indexOf(e.type as never);
        if (i >= 0) out.push(tag(i === 7 ? 7 : i === 6 ? 6 : i === 5 ? 5 : i === 4 ? 4 : i === 3 ? 3 : i === 2 ? 2 : i, e.data));
      }
    }
    for (const h of hexValues('rfc8448-simple-1rtt.json', /server_hello|certificate|encrypted_extensions|finished/i)) {
      for (let k = 9; k < 14; k++) out.push(tag(k, h), tag(k, h.subarray(4)));
    }
    return out;
  },
  run(data) {
    if (!data.length) return;
    EXT_DECODERS[data[0]! % EXT_DECODERS.length]!(data.subarray(1));
  },
};

/** A decoder's answer, reduced to what the scan must agree on: the view, or the typed error's code, alert and message. */
function verdict(f: () => unknown): string {
  try {
    return JSON.stringify({ ok: f() });
  } catch (e) {
    if (!isEchgateError(e)) throw e;
    return JSON.stringify({ err: [e.code, (e as { alert?: unknown }).alert, e.message] });
  }
}

const helloScan: Target = {
  name: 'hello-scan',
  about: 'the proxy\'s routing scan (scanClientHelloMessage) against routingView(decodeClientHelloMessage): same routing view or the same typed error, and the lazy hello decodes to the full decoder\'s fields',
  maxLen: 4096,
  dict: TLS_DICT,
  seeds: helloMessages,
  run(data) {
    const scanned = verdict(() => scanClientHelloMessage(data).view);
    const full = verdict(() => routingView(decodeClientHelloMessage(data)));
    if (scanned !== full) throw new Error(`scan and decoder disagree: ${scanned} against ${full}`);
    if (scanned.startsWith('{"ok"')) {
      const lazy = scanClientHelloMessage(data).hello;
      const ch = decodeClientHelloMessage(data);
      if (lazy.extensions.length !== ch.extensions.length || Buffer.compare(Buffer.from(lazy.random), Buffer.from(ch.random)) !== 0) throw new Error('the lazy hello decodes to other fields');
    }
  },
};

// ---------------------------------------------------------------- ECH

/** X25519 memoized: most inputs keep the capture's `enc`, so the DH with the fixed server keys repeats. */
const echProvider = memoProvider(nodeProvider);

let echKeys: { lookup: { byConfigId(id: number): EchServerKey[]; all(): EchServerKey[] } } | undefined;

/** Server keys for the Chromium captures and the NSS fixed-key vectors: real ECH opens. */
function vectorEchKeys() {
  if (echKeys) return echKeys;
  const keys: EchServerKey[] = [];
  const manifest = readJson('captures/manifest.json') as { captures: { keys?: { private_key_hex: string }; published_echconfiglist_b64?: string }[] } | undefined;
  for (const c of manifest?.captures ?? []) {
    if (!c.keys || !c.published_echconfiglist_b64) continue;
    const cfg = usableConfigs(decodeECHConfigList(new Uint8Array(Buffer.from(c.published_echconfiglist_b64, 'base64'))), isSupportedSuite)[0];
    if (cfg && !keys.some((k) => k.configId === cfg.configId)) keys.push(prepareServerKey(nodeProvider, cfg, nodeProvider.x25519Private(fromHex(c.keys.private_key_hex))));
  }
  const nss = readJson('ech/nss-fixed-key-ech-decrypt-vectors.json') as { server_x25519_private_key: string; ech_config_list: string } | undefined;
  if (nss) {
    for (const cfg of usableConfigs(decodeECHConfigList(fromHex(nss.ech_config_list)), isSupportedSuite)) keys.push(prepareServerKey(nodeProvider, cfg, nodeProvider.x25519Private(fromHex(nss.server_x25519_private_key))));
  }
  echKeys = { lookup: { byConfigId: (id) => keys.filter((k) => k.configId === id), all: () => keys } };
  return echKeys;
}

const echOuter: Target = {
  name: 'ech-outer',
  about: 'ClientHelloOuter handshake message → decodeClientHelloMessage → decryptEch with the capture and NSS vector keys (outer extension parse, AAD, HPKE open, inner rebuild when it opens); odd lengths use trial decryption',
  maxLen: 8192,
  dict: TLS_DICT,
  setup: () => void vectorEchKeys(),
  seeds: () => [...helloMessages(), ...hexValues('ech/nss-fixed-key-ech-decrypt-vectors.json', /client_hello_outer/)],
  run(data) {
    const ch = decodeClientHelloMessage(data);
    const r = decryptEch(echProvider, ch, vectorEchKeys().lookup, { trialDecrypt: (data.length & 1) === 1 });
    if (r.status === 'accepted') exerciseHello(r.inner);
  },
};

let echInner: { outer: ClientHello; seeds: Uint8Array[]; build: (enc: Uint8Array) => void } | undefined;

function echInnerSetup() {
  if (echInner) return echInner;
  const det = memoProvider(deterministicProvider(3));
  const k = fixedEchKey(9, new Uint8Array(32).fill(5));
  const seeds: Uint8Array[] = [];
  const variants = [{}, { compress: [] }, { compress: [ExtensionType.key_share, ExtensionType.supported_groups, ExtensionType.signature_algorithms] }, { alpn: ['h2', 'http/1.1'] }];
  let outer: ClientHello | undefined;
  for (const v of variants) {
    const h = buildEchClientHello(det, { config: k.config, innerSni: 'secret.example.test', ...v, mutateEncoded: (e) => {
        seeds.push(e);
        return e;
      } });
    outer ??= decodeClientHelloMessage(h.outerMessage);
  }
  const build = (enc: Uint8Array) => {
    // The whole path: the fuzzed EncodedClientHelloInner sealed into a real outer hello, then opened by the server.
    const h = buildEchClientHello(det, { config: k.config, innerSni: 'secret.example.test', mutateEncoded: () => enc });
    const r = decryptEch(echProvider, decodeClientHelloMessage(h.outerMessage), k.lookup);
    if (r.status === 'accepted') exerciseHello(r.inner);
  };
  echInner = { outer: outer!, seeds, build };
  return echInner;
}

const echInnerTarget: Target = {
  name: 'ech-inner',
  about: 'EncodedClientHelloInner → rebuildInner against a real ClientHelloOuter (ech_outer_extensions expansion, §5.1/§7.1 checks); one input in eight goes the whole way: sealed under a fixed ECH key by buildEchClientHello and opened by decryptEch',
  maxLen: 4096,
  dict: TLS_DICT,
  setup: () => void echInnerSetup(),
  seeds: () => echInnerSetup().seeds.flatMap((s) => [tag(1, s), tag(0, s)]),
  run(data) {
    if (!data.length) return;
    const s = echInnerSetup();
    const enc = data.subarray(1);
    if ((data[0]! & 7) === 0) s.build(enc);
    else exerciseHello(rebuildInner(s.outer, enc));
  },
};

const echConfig: Target = {
  name: 'ech-config',
  about: 'ECHConfigList bytes (as read from DNS or a key file) → decodeECHConfigList, usableConfigs, hasUnknownMandatoryExtension, re-encoding',
  maxLen: 2048,
  dict: [...TLS_DICT, b(0x00, 0x20), b(0x00, 0x04, 0x00, 0x01, 0x00, 0x01)],
  seeds: () => [...hexValues('ech/openssl-echconfiglist-vectors.json', /ech_config|hex/), ...hexValues('ech/go-ech-parse-vectors.json', /hex/), ...hexValues('ech/rfc9848-echconfiglist-example.json')],
  run(data) {
    const list = decodeECHConfigList(data);
    for (const c of usableConfigs(list, isSupportedSuite)) {
      hasUnknownMandatoryExtension(c);
      encodeECHConfig(c);
    }
  },
};

// ---------------------------------------------------------------- TLS 1.3 engines

const SNI = 'fuzz.example.test';

/** What an engine said in one run: every output in order (tests compare snapshot runs with fresh ones). */
type Outputs = { send: Uint8Array[]; data: Uint8Array[]; closed: boolean; established?: unknown }[];

interface ServerFixture {
  det: CryptoProvider;
  ch: ClientHello;
  suite: CipherSuite;
  clientHs: Uint8Array;
  clientAp: Uint8Array;
  flight: Uint8Array;
  finishedPlain: Uint8Array;
  secondHello: Uint8Array;
  /** Engines in a recorded state, one copy per input: after start(); after the client Finished; after ECH + HelloRetryRequest. */
  started: () => TlsServer;
  finished: () => TlsServer;
  retried: () => TlsServer;
}

let serverFx: ServerFixture | undefined;

function serverFixture(): ServerFixture {
  if (serverFx) return serverFx;
  // Memoized X25519: the ephemeral key and ECH key are fixed, so every DH repeats.
  const det = memoProvider(deterministicProvider(7));
  const cert = ed25519Certificate(SNI);
  const ech = fixedEchKey(4, new Uint8Array(32).fill(11));
  const opts: ServerOptions = { provider: det, random: (n) => det.randomBytes(n), ephemeral: () => det.x25519Generate(), certificate: () => cert, alpn: ['h2', 'http/1.1'], retryConfigs: ech.config.raw };
  const mk = () => new TlsServer(opts);
  const client = new TlsClient({ provider: det, serverName: SNI, alpn: ['h2'] });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const s = mk();
  const first = s.start(ch, SNI, { offered: false, accepted: false });
  const flight = concat(...client.receive(concat(...first.send)).send);
  // The engine keeps its secrets in its state (expect_finished until the client Finished), and wipes
  // the client handshake secret once the Finished is in: copies, so the fixture keeps the real keys.
  const st = peek<{ kind: string; suite: CipherSuite; clientHsSecret: Uint8Array; clientApSecret: Uint8Array }>(s, 'state');
  if (st.kind !== 'expect_finished') throw new Error(`fixture: server in ${st.kind}, not expect_finished`);
  const suite = st.suite;
  const clientHs = st.clientHsSecret.slice();
  const clientAp = st.clientApSecret.slice();
  const finishedPlain = openRecords(det, suite, clientHs, flight);
  // ECH accepted, then HelloRetryRequest: the client's second hello pair.
  const ec = new TlsClient({ provider: det, serverName: SNI, ech: echOffer(ech.config), withholdKeyShare: true });
  const echOuterHello = decodeClientHelloMessage(parseHelloRecords(ec.hello()[0]!)!.message);
  const hrrServer = () => {
    const r = decryptEch(det, echOuterHello, ech.lookup);
    if (r.status !== 'accepted') throw new Error('fixture: ECH not accepted');
    const s2 = mk();
    // decryptSecondHello advances r's HPKE context: every engine copy opens with its own copy of it.
    const hrr = s2.start(r.inner, SNI, { offered: true, accepted: true, decryptSecond: (o) => decryptSecondHello(cloneDeep(r, new Set([det])), o) });
    return { s2, hrr };
  };
  const secondHello = concat(...ec.receive(concat(...hrrServer().hrr.send)).send);
  const share = [opts, det, cert];
  const started = snapshot(() => {
    const x = mk();
    x.start(ch, SNI, { offered: false, accepted: false });
    return x;
  }, share);
  const finished = snapshot(() => {
    const x = started();
    x.receive(flight);
    return x;
  }, share);
  const retried = snapshot(() => hrrServer().s2, share);
  serverFx = { det, ch, suite, clientHs, clientAp, flight, finishedPlain, secondHello, started, finished, retried };
  return serverFx;
}

/** Feed `bytes` in two pieces split at an input-chosen point. */
function feedSplit<O>(receive: (b: Uint8Array) => O, bytes: Uint8Array, at: number): O[] {
  const k = bytes.length ? at % (bytes.length + 1) : 0;
  return [receive(bytes.subarray(0, k)), receive(bytes.subarray(k))];
}

/** One tls13-server input; what the engine answered. */
export function serverRun(data: Uint8Array): Outputs {
  if (data.length < 2) return [];
  const f = serverFixture();
  const mode = data[0]! & 3;
  const at = data[1]!;
  const body = data.subarray(2);
  if (mode === 3) {
    const s = f.retried();
    return feedSplit((x) => s.receive(x), body, at);
  }
  if (mode === 2) {
    if (!body.length) return [];
    const s = f.finished();
    return feedSplit((x) => s.receive(x), sealRecords(f.det, f.suite, f.clientAp, body[0]!, body.subarray(1)), at);
  }
  const s = f.started();
  if (mode === 0) return feedSplit((x) => s.receive(x), body, at);
  return feedSplit((x) => s.receive(x), sealRecords(f.det, f.suite, f.clientHs, ContentType.handshake, body, at === 0 ? MAX_PLAINTEXT : 1 + (at << 6)), at);
}

const tlsServer: Target = {
  name: 'tls13-server',
  about:
    'TlsServer.start with a valid ClientHello, then receive(): mode 0 raw bytes; mode 1 a handshake-message stream sealed under the client handshake key (the Finished handler); mode 2 the valid Finished, then records of an input-chosen content type under the client application key (KeyUpdate, alerts, data); mode 3 ECH accepted + HelloRetryRequest, then raw bytes as the second ClientHelloOuter. The engine state before the fuzzed bytes is built once per mode and deep-copied per input',
  maxLen: 20000,
  dict: TLS_DICT,
  setup: () => void serverFixture(),
  seeds() {
    const f = serverFixture();
    return [
      tag(0, b(0), f.flight),
      tag(1, b(0), f.finishedPlain),
      tag(1, b(0), f.finishedPlain, f.finishedPlain),
      tag(2, b(0, ContentType.application_data), latin1('GET / HTTP/1.1\r\n\r\n')),
      tag(2, b(0, ContentType.alert, 1, 0)),
      tag(2, b(0, ContentType.handshake, 0x18, 0, 0, 1, 1)),
      tag(3, b(0), f.secondHello),
    ];
  },
  run(data) {
    serverRun(data);
  },
};

interface ClientFixture {
  det: CryptoProvider;
  suite: CipherSuite;
  serverHs: Uint8Array;
  flightPlain: Uint8Array;
  flight: Uint8Array;
  serverAp: Uint8Array;
  echServerHs: Uint8Array;
  echFlightPlain: Uint8Array;
  /** Clients in a recorded state: hello sent; ServerHello read; the whole flight read; ECH offered and the outer ServerHello read. */
  hello: () => TlsClient;
  afterSh: () => TlsClient;
  connected: () => TlsClient;
  echAfterSh: () => TlsClient;
}

let clientFx: ClientFixture | undefined;

/** The client's state after a ServerHello: waiting for EncryptedExtensions, under the handshake keys. */
function clientWaitEe(c: TlsClient): { suite: CipherSuite; hs: { client: Uint8Array; server: Uint8Array } } {
  const st = peek<{ kind: string; suite: CipherSuite; hs: { client: Uint8Array; server: Uint8Array } }>(c, 'state');
  if (st.kind !== 'wait_ee') throw new Error(`fixture: client in ${st.kind}, not wait_ee`);
  return st;
}

function clientFixture(): ClientFixture {
  if (clientFx) return clientFx;
  const det = memoProvider(deterministicProvider(9));
  const cert = ed25519Certificate(SNI);
  const ech = fixedEchKey(6, new Uint8Array(32).fill(13));
  const mk = () => new TlsServer({ provider: det, random: (n) => det.randomBytes(n), ephemeral: () => det.x25519Generate(), certificate: () => cert, alpn: ['h2', 'http/1.1'], retryConfigs: ech.config.raw });
  const plainOpts: ClientOptions = { provider: det, serverName: SNI, alpn: ['h2'] };
  const echOpts: ClientOptions = { provider: det, serverName: SNI, alpn: ['h2'], ech: echOffer(ech.config) };
  // Plain handshake.
  const c = new TlsClient(plainOpts);
  const s = mk();
  const first = s.start(decodeClientHelloMessage(parseHelloRecords(c.hello()[0]!)!.message), SNI, { offered: false, accepted: false });
  const serverHello = first.send[0]!;
  const flight = concat(...first.send);
  c.receive(serverHello);
  // Both engines keep their secrets in their state (copied: the engines wipe them as they move on).
  const cst = clientWaitEe(c);
  const suite = cst.suite;
  const serverHs = cst.hs.server.slice();
  const flightPlain = openRecords(det, suite, serverHs, concat(...first.send.slice(1)));
  const sst = peek<{ kind: string; serverApSecret: Uint8Array }>(s, 'state');
  if (sst.kind !== 'expect_finished') throw new Error(`fixture: server in ${sst.kind}, not expect_finished`);
  const serverAp = sst.serverApSecret.slice();
  // ECH offered, server answers the outer hello (not accepted): EncryptedExtensions carries retry_configs.
  const ec = new TlsClient(echOpts);
  const s2 = mk();
  const f2 = s2.start(decodeClientHelloMessage(parseHelloRecords(ec.hello()[0]!)!.message), 'public.example.test', { offered: true, accepted: false });
  const echServerHello = f2.send[0]!;
  ec.receive(echServerHello);
  const echServerHs = clientWaitEe(ec).hs.server.slice();
  const echFlightPlain = openRecords(det, suite, echServerHs, concat(...f2.send.slice(1)));
  const share = [plainOpts, echOpts, det];
  const hello = snapshot(() => {
    const x = new TlsClient(plainOpts);
    x.hello();
    return x;
  }, share);
  const afterSh = snapshot(() => {
    const x = hello();
    x.receive(serverHello);
    return x;
  }, share);
  const connected = snapshot(() => {
    const x = hello();
    x.receive(flight);
    return x;
  }, share);
  const echAfterSh = snapshot(() => {
    const x = new TlsClient(echOpts);
    x.hello();
    x.receive(echServerHello);
    return x;
  }, share);
  clientFx = { det, suite, serverHs, flightPlain, flight, serverAp, echServerHs, echFlightPlain, hello, afterSh, connected, echAfterSh };
  return clientFx;
}

/** One tls13-client input; what the engine answered. */
export function clientRun(data: Uint8Array): Outputs {
  if (data.length < 2) return [];
  const f = clientFixture();
  const mode = data[0]! & 3;
  const at = data[1]!;
  const body = data.subarray(2);
  if (mode === 0) {
    const c = f.hello();
    return feedSplit((x) => c.receive(x), body, at);
  }
  if (mode === 2) {
    if (!body.length) return [];
    const c = f.connected();
    return feedSplit((x) => c.receive(x), sealRecords(f.det, f.suite, f.serverAp, body[0]!, body.subarray(1)), at);
  }
  const c = mode === 3 ? f.echAfterSh() : f.afterSh();
  return feedSplit((x) => c.receive(x), sealRecords(f.det, f.suite, mode === 3 ? f.echServerHs : f.serverHs, ContentType.handshake, body, at === 0 ? MAX_PLAINTEXT : 1 + (at << 6)), at);
}

const tlsClient: Target = {
  name: 'tls13-client',
  about:
    'TlsClient (behind `echgate connect`) fed server flights: mode 0 raw bytes (ServerHello parsing, record layer); mode 1 the valid ServerHello, then a handshake stream sealed under the server handshake key (EncryptedExtensions, Certificate, CertificateVerify, Finished handlers); mode 2 the whole valid flight, then records of an input-chosen type under the server application key; mode 3 like 1 with an ECH-offering client the server did not accept (retry_configs). The client state before the fuzzed bytes is built once per mode and deep-copied per input',
  maxLen: 20000,
  dict: TLS_DICT,
  setup: () => void clientFixture(),
  seeds() {
    const f = clientFixture();
    return [
      tag(0, b(0), f.flight),
      tag(1, b(0), f.flightPlain),
      tag(2, b(0, ContentType.application_data), latin1('HTTP/1.1 200 OK\r\n\r\n')),
      tag(2, b(0, ContentType.handshake, 0x04, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0)),
      tag(2, b(0, ContentType.alert, 1, 0)),
      tag(3, b(0), f.echFlightPlain),
    ];
  },
  run(data) {
    clientRun(data);
  },
};

// ---------------------------------------------------------------- DNS

const dnsSeeds = () => [
  ...hexValues('rfc8484-doh-examples.json', /dns_message_hex/),
  encodeQuery('secret.example.test', RRType.HTTPS, { udpSize: 1232 }),
  encodeQuery('secret.example.test', RRType.A),
  encodeQuery('_8443._https.secret.example.test', RRType.HTTPS, { id: 7 }),
  encodeQuery('example.test', RRType.SOA, { udpSize: 4096 }),
  encodeQuery('nope.example.test', RRType.AAAA),
];

let zone: Zone | undefined;
function fuzzZone(): Zone {
  zone ??= new Zone(
    {
      ttl: 30,
      zone: 'example.test',
      names: {
        'secret.example.test': { a: ['127.0.0.1'], aaaa: ['::1'], https: { alpn: ['h2', 'http/1.1'], port: 8443, ech: true } },
        'public.example.test': { a: ['127.0.0.1'], https: { alpn: ['h2'], ech: true } },
        'many.example.test': { a: Array.from({ length: 40 }, (_, i) => `10.0.0.${i + 1}`) },
        'deep.a.b.example.test': { a: ['10.1.1.1'] },
      },
    },
    () => fixedEchKey(3, new Uint8Array(32).fill(3)).config.raw,
  );
  return zone;
}

const dnsMessage: Target = {
  name: 'dns-message',
  about: 'decodeMessage (names with compression, all sections, OPT), encodeFormErr, and the DoH client answer walk describeAnswers (SVCB/HTTPS RDATA included)',
  maxLen: 4096,
  dict: DNS_DICT,
  seeds() {
    const z = fuzzZone();
    const out = dnsSeeds();
    for (const q of [...out]) {
      const r = answerQuery(z, q);
      if (r.body) out.push(r.body);
    }
    return out;
  },
  run(data) {
    encodeFormErr(data);
    const m = decodeMessage(data);
    describeAnswers(m, data);
    encodeResponse(m, 0, []);
  },
};

const dnsAnswer: Target = {
  name: 'dns-answer',
  about: 'answerQuery (what UDP, TCP and DoH requests reach after transport framing) against a zone with A/AAAA/HTTPS+ech names: EDNS, FORMERR, NOTIMP, truncation; UDP mode on odd first bytes',
  maxLen: 4096,
  dict: DNS_DICT,
  seeds: dnsSeeds,
  run(data) {
    answerQuery(fuzzZone(), data, { udp: data.length > 0 && (data[0]! & 1) === 1 });
  },
};

/** What a DoH target input holds: method choice, then request target, content-type, raw headers and body, split at the first three newlines. */
function dohHead(data: Uint8Array): { head: DohRequestHead; body: Uint8Array; limit: number } {
  const flags = data[0] ?? 0;
  const rest = data.subarray(1);
  const cut: number[] = [];
  for (let i = 0; i < rest.length && cut.length < 3; i++) if (rest[i] === 0x0a) cut.push(i);
  const part = (k: number) => {
    const from = k === 0 ? 0 : (cut[k - 1] ?? rest.length) + 1;
    const to = k < 3 ? (cut[k] ?? rest.length) : rest.length;
    return rest.subarray(Math.min(from, rest.length), Math.min(to, rest.length));
  };
  const url = text(part(0));
  const [method, ct] = [['GET', 'POST', 'PUT', undefined][flags & 3], text(part(1))];
  // Raw headers: "name:value" pairs separated by ';' (only their sizes matter to the server).
  const rawHeaders = text(part(2))
    .split(';')
    .filter((h) => h.length)
    .flatMap((h) => {
      const i = h.indexOf(':');
      return i < 0 ? [h, ''] : [h.slice(0, i), h.slice(i + 1)];
    });
  return { head: { method, url, contentType: flags & 4 ? undefined : ct, rawHeaders }, body: part(3), limit: flags & 8 ? 256 : DEFAULT_DOH_LIMITS.maxHeaderListSize };
}

/** A 200 from the DoH server carries a DNS response our own decoder reads back, with QR set. */
function checkDohReply(r: ReturnType<typeof dohAnswer>): void {
  if (r.status !== 200) return;
  if (!r.body) throw new Error('DoH 200 without a DNS message');
  let m: ReturnType<typeof decodeMessage>;
  try {
    m = decodeMessage(r.body);
  } catch (e) {
    throw new Error(`DoH answered with a DNS message it cannot decode itself: ${(e as Error).message}`);
  }
  if (!(m.flags & 0x8000)) throw new Error('DoH answer without the QR bit');
}

const doh: Target = {
  name: 'doh-request',
  about:
    'the DoH server before any socket work (src/dns/doh-server.ts): dohRequestStep on a fuzzed request head (method, request target with ?dns= base64url, content-type, header list size against maxHeaderListSize) → 400/404/405/415/431, the GET query, or a POST body; then dohAnswer (answerQuery against the fuzz zone) on the query or body, checking that every 200 carries a DNS response the decoder reads back',
  maxLen: 8192,
  dict: [...DNS_DICT, latin1('/dns-query'), latin1('?dns='), latin1('&dns='), latin1('&'), latin1('%2F'), latin1('%00'), latin1('#'), latin1('application/dns-message'), latin1('\n'), latin1('-_'), latin1('=='), latin1('//'), latin1('http://x'), latin1('content-type:')],
  setup: () => void fuzzZone(),
  seeds() {
    const out: Uint8Array[] = [];
    for (const q of dnsSeeds()) {
      const b64 = Buffer.from(q).toString('base64url');
      out.push(tag(0, latin1(`/dns-query?dns=${b64}\n\n:authority:doh.example.test;accept:application/dns-message\n`)));
      out.push(tag(1, latin1('/dns-query\napplication/dns-message\ncontent-length:33\n'), q));
    }
    const q = Buffer.from(dnsSeeds()[0]!).toString('base64url');
    out.push(
      tag(0, latin1(`/dns-query?ct=application/dns-message&dns=${q}&x=1\n`)),
      tag(0, latin1(`/dns-query?dns=${q}==\n`)),
      tag(0, latin1(`/other?dns=${q}\n`)),
      tag(0, latin1('/dns-query?dns=\n')),
      tag(1, latin1('/dns-query\ntext/plain\n\n'), dnsSeeds()[1]!),
      tag(2, latin1(`/dns-query?dns=${q}\n`)),
      tag(8, latin1(`/dns-query?dns=${q}\n\n${'x-pad:'.padEnd(300, 'a')}\n`)),
    );
    return out;
  },
  run(data) {
    if (!data.length) return;
    const { head, body, limit } = dohHead(data);
    const step = dohRequestStep(head, '/dns-query', limit);
    if (step.kind === 'refuse') {
      if (![400, 404, 405, 415, 431].includes(step.status)) throw new Error(`unexpected refusal ${step.status}`);
      return;
    }
    checkDohReply(dohAnswer(fuzzZone(), step.kind === 'query' ? step.query : body));
  },
};

const svcb: Target = {
  name: 'svcb',
  about: 'mode 0: SVCB/HTTPS RDATA → decodeSvcb → formatSvcb → parseSvcbPresentation → encodeSvcb; mode 1: presentation text → parseSvcbPresentation → encodeSvcb → decodeSvcb',
  maxLen: 2048,
  dict: DNS_DICT,
  seeds() {
    const v = (readJson('svcb-vectors.json') as { vectors: { wire_hex?: string; rdata_presentation?: string }[] } | undefined)?.vectors ?? [];
    const out: Uint8Array[] = [];
    for (const x of v) {
      if (x.wire_hex) out.push(tag(0, fromHex(x.wire_hex)));
      if (x.rdata_presentation) out.push(tag(1, latin1(x.rdata_presentation)));
    }
    for (const h of hexValues('ech/rfc9848-echconfiglist-example.json', /https_rdata/)) out.push(tag(0, h));
    return out;
  },
  run(data) {
    if (!data.length) return;
    const body = data.subarray(1);
    if (data[0]! & 1) decodeSvcb(encodeSvcb(parseSvcbPresentation(text(body))));
    else encodeSvcb(parseSvcbPresentation(formatSvcb(decodeSvcb(body))));
  },
};

const TSIG_KEY = 'key "upd" {\n\talgorithm hmac-sha256;\n\tsecret "oY7hSOd1DXuV3L3bkX7mJ3sJY3eHWz7mLCz0O4UrrGk=";\n};\n';
const TSIG_NOW = 1_760_000_000_000;
let tsigFx: { key: ReturnType<typeof parseTsigKeyFile>; req: ReturnType<typeof signRequest> } | undefined;
const tsigFixture = () => {
  if (!tsigFx) {
    const key = parseTsigKeyFile(TSIG_KEY);
    tsigFx = { key, req: signRequest(encodeQuery('example.test', RRType.SOA, { id: 0x1234 }), key, nodeProvider.hmac, { now: TSIG_NOW }) };
  }
  return tsigFx;
};

const tsig: Target = {
  name: 'tsig-verify',
  about: 'verifyResponse (RFC 8945 §5.3) on a response to a fixed signed request: message decode, TSIG placement, key/algorithm names, RDATA fields, MAC, time',
  maxLen: 4096,
  dict: DNS_DICT,
  seeds() {
    const { key, req } = tsigFixture();
    const resp = new Uint8Array(req.message);
    resp[2]! |= 0x80;
    return [req.message, resp, signRequest(resp, key, nodeProvider.hmac, { now: TSIG_NOW }).message];
  },
  run(data) {
    const { key, req } = tsigFixture();
    verifyResponse(data, req, key, nodeProvider.hmac, TSIG_NOW);
  },
};

// ---------------------------------------------------------------- PROXY protocol

const proxyProtocol: Target = {
  name: 'proxy-protocol',
  about: 'echgate only sends PROXY headers (there is no decoder): encodeProxyV1/V2 and parseIp with arbitrary address strings and ports, as a socket might report them',
  maxLen: 512,
  dict: [latin1('127.0.0.1'), latin1('::1'), latin1('::ffff:'), latin1('fe80::1%eth0'), latin1(':'), latin1('.'), latin1('255'), latin1(' ')],
  seeds: () => ['127.0.0.1 10.0.0.1', '::1 fe80::1', '::ffff:1.2.3.4 ::1', '1.2.3.4 ::1', '2001:db8::1 2001:db8:0:0:0:0:0:2'].map((s) => tag(0, b(1, 2, 3, 4), latin1(s))),
  run(data) {
    if (data.length < 5) return;
    const [src = '', dst = ''] = text(data.subarray(5)).split(' ');
    parseIp(src);
    const a = { srcIp: src, dstIp: dst, srcPort: (data[1]! << 8) | data[2]!, dstPort: (data[3]! << 8) | data[4]! };
    encodeProxyV1(a);
    encodeProxyV2(a);
  },
};

// ---------------------------------------------------------------- ESNI (draft-ietf-tls-esni-02)

// The fixed-key case of test/esni.test.ts: server and client X25519 keys, nonce, ClientHello.random, key_share body.
const ESNI_SERVER_SK = fromHex('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf');
const ESNI_CLIENT_SK = fromHex('c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf');
const ESNI_NONCE = fromHex('000102030405060708090a0b0c0d0e0f');
const ESNI_RANDOM = fromHex('202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f');
const ESNI_KEY_SHARE_EXT = fromHex(`0024001d0020${'42'.repeat(32)}`);
const ESNI_NOT_BEFORE = 1_700_000_000;
const ESNI_HOST = 'secret.example.test';

interface EsniFixture {
  record: Uint8Array;
  key: EsniServerKey;
  lookup: { esniKeys(): readonly EsniServerKey[] };
  /** The fixed ClientEncryptedSNI for a host name. */
  extension(host: string): Uint8Array;
  /** Seal a chosen ClientESNIInner under the fixed keys: an extension that passes the AEAD. */
  seal(plain: Uint8Array): Uint8Array;
}

let esniFx: EsniFixture | undefined;

function esniFixture(): EsniFixture {
  if (esniFx) return esniFx;
  const sk = nodeProvider.x25519Private(ESNI_SERVER_SK);
  const record = makeESNIKeys(nodeProvider, sk.publicKey, { notBefore: ESNI_NOT_BEFORE, notAfter: ESNI_NOT_BEFORE + 86_400 });
  const key = prepareEsniKey(nodeProvider, record, sk);
  const extension = (host: string) =>
    esniEncrypt(nodeProvider, { record: key.record, suite: 0x1301, hostName: host, clientRandom: ESNI_RANDOM, keyShareExtension: ESNI_KEY_SHARE_EXT, ephemeral: nodeProvider.x25519Private(ESNI_CLIENT_SK), nonce: ESNI_NONCE });
  const ces = decodeClientEncryptedSNI(extension(ESNI_HOST));
  const z = nodeProvider.x25519(nodeProvider.x25519Private(ESNI_CLIENT_SK), sk.publicKey);
  const { key: k, iv } = esniKeyIv(nodeProvider, 0x1301, z, ces.recordDigest, ces.keyShare, ESNI_RANDOM);
  const seal = (plain: Uint8Array) => encodeClientEncryptedSNI({ ...ces, encryptedSni: AEADS['aes-128-gcm'].seal(k, iv, ESNI_KEY_SHARE_EXT, plain) });
  esniFx = { record, key, lookup: { esniKeys: () => [key] }, extension, seal };
  return esniFx;
}

/** A valid TLS 1.3 ClientHello (fixed random and key_share) carrying `esni` as encrypted_server_name, through the real decoder. */
function esniHello(esni: Uint8Array): ClientHello {
  return decodeClientHello(
    encodeClientHello({
      legacyVersion: 0x0303,
      random: ESNI_RANDOM,
      sessionId: new Uint8Array(0),
      cipherSuites: [0x1301],
      compressionMethods: b(0),
      extensions: [
        { type: ExtensionType.supported_versions, data: b(2, 3, 4) },
        { type: ExtensionType.key_share, data: ESNI_KEY_SHARE_EXT },
        { type: ExtensionType.encrypted_server_name, data: esni },
      ],
    }),
  );
}

function esniDecrypt(ext: Uint8Array): void {
  const f = esniFixture();
  const hello = esniHello(ext);
  const r = decryptEsni(nodeProvider, hello, hello.extensions[2]!, f.lookup);
  // An accepted name must be one the decoder let through: non-empty, and the nonce 16 bytes.
  if (!r.hostName || r.nonce.length !== 16) throw new Error(`decryptEsni accepted ${JSON.stringify(r.hostName)} with a ${r.nonce.length}-byte nonce`);
}

const esni: Target = {
  name: 'esni',
  about:
    'ESNI (draft-ietf-tls-esni-02) with the fixed key of test/esni.test.ts; the first byte picks: 0 ClientEncryptedSNI (0xffce) bytes in a valid TLS 1.3 ClientHello → decryptEsni; 1 a ClientESNIInner sealed under the fixed keys → decryptEsni (past the AEAD: length, padding, ServerNameList); 2 ESNIKeys → decodeESNIKeys, checksumInput, verifyESNIKeys, usableEsni, prepareEsniKey, re-encoding; 3 `_esni` TXT RDATA → decodeTxtStrings → esniFromTxt → ESNIKeys; 4 the EncryptedExtensions nonce (decodeServerEncryptedSNI); 5 decodeClientESNIInner with an input-chosen padded_length',
  maxLen: 4096,
  dict: [...TLS_DICT, b(0xff, 0xce), b(0xff, 0x01), b(0x01, 0x04), b(0x00, 0x1d, 0x00, 0x20), latin1('=')],
  setup: () => void esniFixture(),
  seeds() {
    const f = esniFixture();
    const inner = encodeClientESNIInner(ESNI_NONCE, ESNI_HOST, f.key.record.paddedLength);
    const b64 = Buffer.from(f.record).toString('base64');
    const txt = (parts: string[]) => concat(...parts.map((p) => concat(b(p.length), latin1(p))));
    const pl = f.key.record.paddedLength;
    return [
      tag(0, f.extension(ESNI_HOST)),
      tag(0, f.extension('a.test')),
      tag(0, f.extension(`${'x'.repeat(60)}.example.test`)),
      tag(1, inner),
      tag(1, encodeClientESNIInner(ESNI_NONCE, 'a.test', pl)),
      tag(2, f.record),
      tag(3, txt([b64])),
      tag(3, txt([b64.slice(0, 40), b64.slice(40)])),
      tag(4, ESNI_NONCE),
      tag(5, b(pl >> 8, pl & 0xff), inner),
    ];
  },
  run(data) {
    if (!data.length) return;
    const body = data.subarray(1);
    switch (data[0]! % 6) {
      case 0:
        return esniDecrypt(body);
      case 1:
        return esniDecrypt(esniFixture().seal(body));
      case 2: {
        decodeESNIKeys(body);
        checksumInput(body);
        const k = verifyESNIKeys(nodeProvider, body, ESNI_NOT_BEFORE + 1);
        encodeESNIKeys(k, k.checksum);
        usableEsni(nodeProvider, body, ESNI_NOT_BEFORE + 1);
        prepareEsniKey(nodeProvider, body, esniFixture().key.sk);
        return;
      }
      case 3:
        decodeESNIKeys(esniFromTxt(decodeTxtStrings(body)));
        return;
      case 4:
        decodeServerEncryptedSNI(body);
        return;
      default:
        if (body.length < 2) return;
        decodeClientESNIInner(body.subarray(2), (body[0]! << 8) | body[1]!);
    }
  },
};

// ---------------------------------------------------------------- PostgreSQL preamble

const u32be = (n: number) => b(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
const startupMessage = (params: string) => {
  const rest = concat(u32be(196608), latin1(params));
  return concat(u32be(4 + rest.length), rest);
};

/** An ErrorResponse must be framed: 'E', an Int32 length counting itself and the rest, the field list ending in NUL. */
function checkErrorResponse(reply: Uint8Array): void {
  const len = ((reply[1]! << 24) | (reply[2]! << 16) | (reply[3]! << 8) | reply[4]!) >>> 0;
  if (reply[0] !== 0x45 || len !== reply.length - 1 || reply[reply.length - 1] !== 0) throw new Error('malformed ErrorResponse');
}

/** Check one ClientStep against the contract proxy/preamble.ts relies on; returns the bytes consumed, or -1 when the reader is done. */
function checkStep(s: ClientStep, have: number): number {
  switch (s.kind) {
    case 'more':
      return 0;
    case 'answer':
    case 'tls':
      // consumed 0 would loop the preamble reader forever; more than it has would drop bytes.
      if (s.consumed <= 0 || s.consumed > have) throw new Error(`${s.kind} consumed ${s.consumed} of ${have} bytes`);
      return s.kind === 'answer' ? s.consumed : -1;
    case 'refuse':
      checkErrorResponse(s.reply);
      return -1;
    case 'plain':
      checkErrorResponse(s.refusal);
      return -1;
    default:
      return -1;
  }
}

const postgresPreamble: Target = {
  name: 'postgres-preamble',
  about:
    "PostgreSQL preamble readers of src/proxy/protocols/postgres.ts (pure functions, no sockets): odd first byte → the backend's answer to SSLRequest (backendReply); even → the client reader (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage, direct TLS) fed the stream in input-chosen chunks the way proxy/preamble.ts does, checking the step contract (0 < consumed ≤ buffered, ErrorResponse framing)",
  maxLen: 2048,
  dict: [u32be(8), u32be(16), u32be(SSL_REQUEST_CODE), u32be(GSSENC_REQUEST_CODE), u32be(CANCEL_REQUEST_CODE), u32be(196608), b(0x16, 0x03, 0x01), latin1('user\0'), latin1('database\0'), b(0)],
  seeds() {
    const ssl = specialRequest(SSL_REQUEST_CODE);
    const gss = specialRequest(GSSENC_REQUEST_CODE);
    const cancel = concat(u32be(16), u32be(CANCEL_REQUEST_CODE), u32be(4242), u32be(0xdeadbeef));
    const startup = startupMessage('user\0postgres\0database\0app\0\0');
    const hello = captures()[0]?.subarray(0, 64) ?? b(0x16, 0x03, 0x01, 0x00, 0x05);
    return [
      tag(0, ssl),
      tag(2, gss, ssl),
      tag(4, gss, gss),
      tag(6, cancel),
      tag(8, startup),
      tag(10, hello),
      tag(12, ssl, hello),
      tag(14, u32be(1 << 30), u32be(196608)),
      tag(1, b(0x53)),
      tag(3, b(0x4e)),
      tag(5, errorResponse('no pg_hba.conf entry')),
      tag(7, b(0x53, 0x16, 0x03, 0x03)),
    ];
  },
  run(data) {
    if (!data.length) return;
    const body = data.subarray(1);
    if (data[0]! & 1) {
      postgres.backendReply(body);
      return;
    }
    const rng = new Rng(data[0]!);
    const reader = postgres.client();
    let buf: Uint8Array = new Uint8Array(0);
    for (let o = 0; o < body.length; ) {
      const n = data[0]! & 2 ? body.length : 1 + rng.below(24);
      buf = concat(buf, body.subarray(o, o + n));
      o += n;
      for (;;) {
        const c = checkStep(reader.step(buf), buf.length);
        if (c < 0) return;
        if (c === 0) break;
        buf = buf.subarray(c);
        if (!buf.length) break;
      }
    }
  },
};

// ---------------------------------------------------------------- ECH split mode, the client's later records

/** A record of `type` around `body` (legacy_record_version 0x0303). */
const record = (type: number, body: Uint8Array) => concat(b(type, 0x03, 0x03, body.length >> 8, body.length & 0xff), body);

const splitStream: Target = {
  name: 'split-stream',
  about:
    "SplitClientStream (src/proxy/split.ts, ECH split mode): the client's bytes after its first hello, in input-chosen chunks: records deframed (§5.1 record_overflow), handshake messages reassembled under a per-message cap (256 B or 16 KiB by the first byte), every ClientHello decoded and handed to decryptSecond (here: the hello itself, or a refusal on odd lengths) and re-framed as records; once application_data is seen, the rest must come out unchanged",
  maxLen: 4096,
  dict: TLS_DICT,
  seeds() {
    const hellos = helloMessages();
    const ccs = record(ContentType.change_cipher_spec, b(1));
    const app = record(ContentType.application_data, latin1('early data'));
    const out = [tag(0, ccs, app), tag(2, ccs, ...hellos.slice(0, 1).map((h) => record(ContentType.handshake, h)), app)];
    for (const h of hellos.slice(0, 3)) out.push(tag(4, record(ContentType.handshake, h.subarray(0, 40)), record(ContentType.handshake, h.subarray(40))));
    return out;
  },
  run(data) {
    if (!data.length) return;
    const mode = data[0]!;
    const body = data.subarray(1);
    const rng = new Rng(mode);
    // decryptSecond stands in for ech/server.ts decryptSecondHello (fuzzed by ech-outer): it returns the hello it
    // was given, whose raw bytes innerHelloRecords re-frames, or refuses it as that function does.
    const stream = new SplitClientStream((outer) => {
      if (outer.raw!.length & 1 && mode & 8) throw new EchgateError('ERR_ECH_INNER', 'refused', { alert: 'illegal_parameter' });
      return outer;
    }, mode & 1 ? 256 : 1 << 14);
    let through = -1;
    for (let o = 0; o < body.length; ) {
      const n = mode & 2 ? body.length : 1 + rng.below(64);
      const chunk = body.subarray(o, o + n);
      const out = stream.push(chunk);
      // Once application_data went out, the stream relays the rest untouched (RFC 9849 §7.1.1: nothing more can be a hello).
      if (through >= 0 && (out.length !== 1 || out[0] !== chunk)) throw new Error('bytes after application_data were changed');
      for (const x of out) if (x.length > 0 && x[0] === ContentType.application_data) through = o;
      o += n;
    }
  },
};

export const TARGETS: Target[] = [tlsRecords, clientHello, helloScan, tlsMessages, echOuter, echInnerTarget, echConfig, esni, tlsServer, tlsClient, dnsMessage, dnsAnswer, doh, svcb, tsig, proxyProtocol, postgresPreamble, splitStream];
