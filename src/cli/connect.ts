/**
 * `echgate connect HOST:PORT --sni NAME [--ech-config BASE64 | --keys DIR] [--alpn h2,http/1.1]
 *  [--send TEXT] [--ca FILE] [--retry] [--hello-retry] [--groups x25519,p256,x25519mlkem768]`: a TLS 1.3
 * handshake with (optionally) ECH, then one request; prints JSON with whether ECH was accepted,
 * retry_configs, ALPN, the key-exchange group and the reply. The first of --groups gets the key share.
 * With --retry, a rejected ECH is retried once with the server's retry_configs (RFC 9849 §6.1.6).
 * With --doh URL, HOST is found as a browser finds it (src/dns/resolver.ts): the HTTPS record over DoH
 * gives ech=, port and alpn (AliasMode followed), the A/AAAA of its TargetName the address.
 */
import { echOffer } from '../ech/client.js';
import { esniFromTxt, esniOffer } from '../ech/esni.js';
import { loadEsniKeys, publishedEsni } from '../keys/esni-store.js';
import { RRType } from '../wire/dns/message.js';
import { decodeTxtStrings } from '../wire/tls/esni.js';
import net from 'node:net';
import { isSupportedSuite } from '../crypto/hpke.js';
import { nodeProvider } from '../crypto/node.js';
import { EchgateError, isEchgateError } from '../errors.js';
import { DohResolver } from '../dns/resolver.js';
import { listKeys, publishedList } from '../keys/manager.js';
import { type ClientResult, TlsClient } from '../tls13/client.js';
import { parseGroupName } from '../tls13/groups.js';
import { decodeECHConfigList, type ECHConfigContents } from '../wire/ech/config.js';
import { usableConfigs } from '../wire/ech/usable.js';
import { type Args, type CommandSpec, dohFailure, dohUrlOption, duration, flag, has, ms, readCaFile, readNamedFile, str, text } from './args.js';
import type { Command } from './command.js';

export const connectSpec: CommandSpec = {
  name: 'connect',
  args: 'HOST:PORT',
  positionals: { min: 1, max: 1 },
  summary: 'a TLS 1.3 (+ECH) handshake and one request; JSON report (exit 1 unless it connected with ECH accepted or not offered)',
  options: {
    sni: text('NAME', 'the server name (with ECH: the inner, hidden one); default HOST'),
    'ech-config': text('BASE64', 'offer ECH with this ECHConfigList'),
    keys: text('DIR', 'offer ECH with the active keys of this key folder'),
    alpn: text('LIST', 'ALPN protocols, comma separated (h2,http/1.1)'),
    send: text('TEXT', 'send this once connected (\\r\\n for CRLF) and print the reply: what arrives until the server closes or is quiet for 1 s'),
    timeout: duration('give up when the server is silent this long: before the handshake completes, or before any reply (default 10s)'),
    ca: text('FILE', 'verify the server certificate against this CA (PEM)'),
    retry: flag('if ECH is rejected, retry once with the server\'s retry_configs (RFC 9849 §6.1.6)'),
    'hello-retry': flag('send no key share first, so the server must answer with HelloRetryRequest'),
    groups: text('LIST', 'key-exchange groups to offer, in order (x25519, p256, x25519mlkem768); the first gets the key share'),
    doh: text('URL', 'find HOST like a browser: its HTTPS record over this DoH endpoint (ech=, port, alpn, aliases followed), then its address'),
    'doh-ca': text('FILE', 'trust this CA (PEM) for the DoH server (default: --ca)'),
    esni: flag('experimental: send the name in ESNI (draft-ietf-tls-esni-02) instead of ECH; keys from --doh (the _esni TXT), --esni-keys or --keys'),
    'esni-keys': text('FILE', '--esni: a file with the base64 ESNIKeys record'),
    cover: text('NAME', '--esni: a cleartext server_name to send beside ESNI (default none)'),
  },
};

/** How long the server may be quiet after reply bytes before the reply is taken as whole (connect --send). */
const REPLY_QUIET_MS = 1_000;

export interface ConnectReport extends Partial<ClientResult> {
  connected: boolean;
  reply?: string;
  /** The server sent its reply and kept the connection open (it was closed by us after REPLY_QUIET_MS). */
  keptOpen?: boolean;
  error?: string;
  retried?: boolean;
  /** With --doh: what DNS said (the names asked, the target, address, port, alpn, whether ech= was there). */
  dns?: { queried: string; aliases: string[]; target: string; address: string; port: number; alpn?: string[]; ech: boolean; queries: number };
}

function firstUsable(list: Uint8Array): ECHConfigContents & { raw: Uint8Array } {
  const c = usableConfigs(decodeECHConfigList(list), isSupportedSuite)[0];
  if (!c) throw new EchgateError('ERR_ECH_CONFIG', 'no usable ECHConfig in the list');
  return c;
}

export function connectOnce(
  host: string,
  port: number,
  o: { sni: string; ech?: Uint8Array; alpn?: string[]; send?: string; ca?: string; timeoutMs?: number; quietMs?: number; helloRetry?: boolean; groups?: number[]; esni?: Uint8Array; cover?: string },
): Promise<ConnectReport> {
  const client = new TlsClient({
    provider: nodeProvider,
    serverName: o.sni,
    alpn: o.alpn,
    ech: o.ech ? echOffer(firstUsable(o.ech)) : undefined,
    esni: o.esni ? esniOffer(nodeProvider, o.esni, { coverName: o.cover }) : undefined,
    ca: o.ca,
    withholdKeyShare: o.helloRetry,
    groups: o.groups,
  });
  return new Promise((resolve) => {
    const report: ConnectReport = { connected: false };
    const sock = net.connect(port, host);
    const reply: Buffer[] = [];
    const done = () => {
      if (reply.length) report.reply = Buffer.concat(reply).toString('utf8');
      sock.destroy();
      resolve(report);
    };
    const timeoutMs = o.timeoutMs ?? 10_000;
    sock.setTimeout(timeoutMs, () => {
      // A reply came and the server kept the connection open (HTTP/1.1 keep-alive, an echo server): that is
      // the exchange done, not a failure (audit s12 gap 8: exit 1 after 10 s, although the reply was in).
      if (reply.length) report.keptOpen = true;
      else report.error ??= `timeout: nothing from the server for ${timeoutMs} ms`;
      done();
    });
    sock.once('connect', () => {
      for (const r of client.hello()) sock.write(r);
    });
    sock.on('data', (d) => {
      try {
        const out = client.receive(d);
        for (const r of out.send) sock.write(r);
        if (out.error) {
          // Our alert (if we failed the handshake) went out above; a server alert gets no answer.
          report.error = out.error.message;
          return done();
        }
        for (const x of out.data) reply.push(Buffer.from(x));
        // Once reply bytes are in, the reply is what arrives until the server closes or goes quiet.
        if (out.data.length && reply.length) sock.setTimeout(Math.min(o.quietMs ?? REPLY_QUIET_MS, timeoutMs));
        if (out.established) {
          Object.assign(report, out.established, { connected: true });
          // RFC 9849 §6.1.6: a client whose ECH was rejected must not use the connection; it aborts with ech_required.
          if (out.established.ech === 'rejected') return done();
          if (o.send !== undefined) for (const r of client.encrypt(Buffer.from(o.send))) sock.write(r);
          else return done();
        }
        if (out.closed) done();
      } catch (e) {
        // Not the server's bytes (receive() returns those failures with their alert): a bug of ours.
        report.error = (e as Error).message;
        done();
      }
    });
    sock.once('error', (e) => {
      report.error = e.message;
      done();
    });
    sock.once('end', done);
  });
}

export async function connectCommand(a: Args, out: (s: string) => void): Promise<number> {
  const target = a.positional[0]!;
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(target);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new EchgateError('ERR_USAGE', `"${target}" is not HOST:PORT (see: echgate connect --help)`);
  const dohUrl = dohUrlOption(a, 'doh');
  if (dohUrl && (str(a, 'ech-config') || str(a, 'keys'))) throw new EchgateError('ERR_USAGE', '--doh finds the ECHConfigList in DNS: it excludes --ech-config and --keys (see: echgate connect --help)');
  if (str(a, 'doh-ca') && !dohUrl) throw new EchgateError('ERR_USAGE', '--doh-ca goes with --doh (see: echgate connect --help)');
  if (str(a, 'ech-config') && str(a, 'keys')) throw new EchgateError('ERR_USAGE', '--ech-config and --keys exclude each other (see: echgate connect --help)');
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const sni = str(a, 'sni') ?? host;
  let ech: Uint8Array | undefined;
  const b64 = str(a, 'ech-config');
  if (b64) {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new EchgateError('ERR_USAGE', '--ech-config takes a base64 ECHConfigList');
    ech = new Uint8Array(Buffer.from(b64, 'base64'));
    try {
      firstUsable(ech);
    } catch (e) {
      // Name the option: "1 trailing bytes after ECHConfigList" alone did not say which input (audit s12 gap 11).
      if (!isEchgateError(e)) throw e;
      throw new EchgateError('ERR_USAGE', `--ech-config is not a usable ECHConfigList: ${(e as Error).message} (${e.code})`);
    }
  }
  const keys = str(a, 'keys');
  const esni = has(a, 'esni');
  for (const o of ['esni-keys', 'cover']) if (a.flags.has(o) && !esni) throw new EchgateError('ERR_USAGE', `--${o} goes with --esni (see: echgate connect --help)`);
  if (esni && (b64 || has(a, 'retry'))) throw new EchgateError('ERR_USAGE', '--esni offers ESNI, not ECH: it excludes --ech-config and --retry');
  if (esni && [str(a, 'esni-keys'), keys, dohUrl].filter(Boolean).length !== 1) throw new EchgateError('ERR_USAGE', '--esni takes its key from one of --doh, --esni-keys FILE or --keys DIR');
  let esniRecord: Uint8Array | undefined;
  if (esni && keys) {
    const e = publishedEsni(loadEsniKeys(keys).keys, Math.floor(Date.now() / 1000), 300);
    if (!e) throw new EchgateError('ERR_ESNI', `no valid ESNI key in ${keys}`);
    esniRecord = e.records[0];
  } else if (keys) ech = publishedList(listKeys(keys).keys);
  const esniFile = str(a, 'esni-keys');
  if (esniFile) esniRecord = esniFromTxt([readNamedFile('--esni-keys', esniFile, 'utf8')]);
  const caFile = str(a, 'ca');
  const groups = str(a, 'groups')
    ?.split(',')
    .map((n) => {
      const g = parseGroupName(n);
      if (g === undefined) throw new EchgateError('ERR_USAGE', `--groups: unknown group ${n} (x25519, p256, x25519mlkem768)`);
      return g;
    });
  let address = host;
  let port = Number(m[2]);
  let dns: ConnectReport['dns'];
  let alpn = str(a, 'alpn')?.split(',');
  if (dohUrl) {
    const dohCa = str(a, 'doh-ca') ?? caFile;
    const resolver = new DohResolver(dohUrl, { ca: dohCa ? readCaFile(str(a, 'doh-ca') ? '--doh-ca' : '--ca', dohCa) : undefined });
    const svc = await resolver.https(host, port).catch((e) => {
      throw dohFailure(dohUrl, e);
    });
    ({ address, port } = svc);
    ech = esni ? undefined : svc.ech;
    if (esni) {
      // draft-02 §4: the record is the TXT at _esni.NAME (base64, possibly in several strings).
      const txt = await resolver.query(`_esni.${host}`, RRType.TXT).catch((e) => {
        throw dohFailure(dohUrl, e);
      });
      const found = txt.answers.filter((rr) => rr.type === RRType.TXT).map((rr) => decodeTxtStrings(rr.rdata));
      if (found.length === 0) throw new EchgateError('ERR_ESNI', `no _esni.${host} TXT record at ${dohUrl}`);
      esniRecord = esniFromTxt(found[0]!);
    }
    alpn ??= svc.alpn;
    dns = { queried: svc.queried, aliases: svc.aliases, target: svc.target, address, port, alpn: svc.alpn, ech: svc.ech !== undefined, queries: resolver.networkQueries };
  }
  const opts = {
    groups,
    sni,
    ech,
    alpn,
    send: str(a, 'send')?.replace(/\\r\\n/g, '\r\n'),
    ca: caFile ? readCaFile('--ca', caFile) : undefined,
    timeoutMs: ms(a, 'timeout'),
    // No key share in the first hello: the server must answer with HelloRetryRequest.
    helloRetry: has(a, 'hello-retry'),
    esni: esniRecord,
    cover: str(a, 'cover'),
  };
  let r = await connectOnce(address, port, opts);
  if (r.ech === 'rejected' && r.retryConfigs && has(a, 'retry')) {
    r = { ...(await connectOnce(address, port, { ...opts, ech: r.retryConfigs })), retried: true };
  }
  const json = { ...r, dns, retryConfigs: r.retryConfigs ? Buffer.from(r.retryConfigs).toString('base64') : undefined };
  out(`${JSON.stringify(json, null, 2)}\n`);
  return r.connected && r.ech !== 'rejected' && !r.error ? 0 : 1;
}

export const connect: Command = { spec: connectSpec, run: connectCommand };
