/**
 * A sans-IO TLS 1.3 client (RFC 8446) with ECH (RFC 9849 §6): for
 * `echgate connect` and for tests. It offers the key-exchange groups of
 * tls13/groups.ts (X25519 by default; a share for the first), verifies the
 * server's Finished and CertificateVerify signature, and reports whether ECH
 * was accepted (by checking the accept confirmation in ServerHello.random) or
 * which retry_configs the server sent when it was not. Certificate chains are
 * checked only when a CA is given.
 */
import { constants, verify as verifySig, X509Certificate } from 'node:crypto';
import { alertBody, alertFor, describeAlert, encodeAlertRecord, isClosureAlert } from '../wire/tls/alert.js';
import { ctEqual } from '../bytes/util.js';
import type { CryptoProvider } from '../crypto/provider.js';
import { type AlertName, EchgateError, } from '../errors.js';
import type { ClientHello } from '../wire/tls/client-hello.js';
import { AlertDescription, ContentType, ExtensionType, HandshakeType, MAX_PLAINTEXT, NamedGroup, ProtocolVersion } from '../wire/tls/constants.js';
import { decodeAlpn } from '../wire/tls/extensions.js';
import { encodeHandshake } from '../wire/tls/handshake.js';
import { Reader } from '../bytes/reader.js';
import {
  certificateVerifyContent,
  decodeCertificate,
  decodeCertificateVerify,
  decodeExtensionBlock,
  decodeServerHello,
  encodeFinished,
  HRR_RANDOM,
} from '../wire/tls/server-messages.js';
import { finishedVerifyData, KeySchedule, suiteById, trafficKeys, type CipherSuite } from './key-schedule.js';
import { SigScheme } from './certs.js';
import { CLIENT_SIG_ALGS, clientHello, type EchFlight, type EchOffer, type EsniOffer, helloExtensions } from './client-hello-builder.js';
import { ECH_CONFIRMATION_AT, echAcceptConfirmation, hrrEchConfirmation } from './ech-confirm.js';
import { type ClientKeyShare, groupById, groupName } from './groups.js';
import { HandshakeBuffer } from './handshake-buffer.js';
import { RecordCipher } from './record-protection.js';
import { checkPlaintextLength, plaintextRecords, RecordReader } from '../wire/tls/record.js';
import { Transcript } from './transcript.js';

export interface ClientOptions {
  provider: CryptoProvider;
  serverName: string;
  alpn?: string[];
  /**
   * Offer ECH: the inner hello carries serverName; the outer, the config's
   * public_name. Built by ech/client.ts's `echOffer(config)` and injected here,
   * so tls13/ does not import ech/.
   */
  ech?: EchOffer;
  /**
   * Offer ESNI (draft-ietf-tls-esni-02, experimental): serverName goes only into
   * the encrypted_server_name extension; the server must echo the nonce in
   * EncryptedExtensions. Built by ech/esni.ts's `esniOffer(record)`.
   */
  esni?: EsniOffer;
  /** PEM CA certificate(s) to verify the chain and name against; absent = not verified. */
  ca?: string;
  /** Offer the groups in supported_groups but send no key share first, so the server must answer with HelloRetryRequest (tests). */
  withholdKeyShare?: boolean;
  /** Key-exchange groups (NamedGroup code points) for supported_groups, in preference order; the first gets the key share. Default: X25519. */
  groups?: number[];
  /** Put an empty early_data extension in the first (non-ECH) ClientHello, as a client attempting 0-RTT would (tests of RFC 8446 §4.2.10; no 0-RTT is sent). */
  offerEarlyData?: boolean;
}

export interface ClientResult {
  ech: 'accepted' | 'rejected' | 'not_offered';
  /** With ClientOptions.esni: the server echoed the ESNI nonce (a handshake without the echo fails). */
  esni?: 'accepted';
  /** ECHConfigList the server sent when it did not accept ECH. */
  retryConfigs?: Uint8Array;
  alpn?: string;
  cipherSuite: number;
  /** The key-exchange group of the handshake (NamedGroup code point) and its name. */
  group: number;
  groupName: string;
  /** Whether the server answered the first hello with HelloRetryRequest. */
  helloRetry: boolean;
  /** Leaf certificate subject and DNS names. */
  certificate: { subject: string; names: string[] };
  certificateVerified: boolean;
}

export interface ClientOutput {
  /** Records to send to the server, in order. When `alert` is set, its record is the last one. */
  send: Uint8Array[];
  data: Uint8Array[];
  /** The connection is over: the server closed, sent an error alert, or we failed it. */
  closed: boolean;
  /** We failed the connection with this alert (RFC 8446 §6.2); its record ends `send`. */
  alert?: AlertName;
  /** Why the connection failed (our check, or the server's alert). */
  error?: EchgateError;
  /** The server ended the connection with this error alert; nothing is sent back (§6.2). */
  peerAlert?: number;
  established?: ClientResult;
}

const fail = (alert: AlertName, msg: string) => new EchgateError('ERR_ILLEGAL', msg, { alert });

const SIG_ALGS = CLIENT_SIG_ALGS;
/**
 * What each scheme we offer needs (RFC 8446 §4.2.3): the hash, and the key
 * type (and curve: in TLS 1.3 an ECDSA scheme names its curve) the leaf's
 * public key must have for the scheme to apply to it.
 */
const SCHEMES: Record<number, { hash: string | null; key: string; curve?: string; pss?: true }> = {
  [SigScheme.ecdsa_secp256r1_sha256]: { hash: 'sha256', key: 'ec', curve: 'prime256v1' },
  [SigScheme.ecdsa_secp384r1_sha384]: { hash: 'sha384', key: 'ec', curve: 'secp384r1' },
  [SigScheme.rsa_pss_rsae_sha256]: { hash: 'sha256', key: 'rsa', pss: true },
  [SigScheme.rsa_pss_rsae_sha384]: { hash: 'sha384', key: 'rsa', pss: true },
  [SigScheme.rsa_pss_rsae_sha512]: { hash: 'sha512', key: 'rsa', pss: true },
  [SigScheme.ed25519]: { hash: null, key: 'ed25519' },
};

/** A ClientHello without ECH; `again` makes the second one after HelloRetryRequest (same random and session id, RFC 8446 §4.1.2). */
function plainHello(p: CryptoProvider, o: ClientOptions, key: ClientKeyShare | undefined, again?: { first: ClientHello; cookie?: Uint8Array }): ClientHello {
  // §4.2.10: early_data never in the second ClientHello.
  const serverName = o.esni ? o.esni.coverName : o.serverName;
  const exts = helloExtensions({ serverName, groups: clientGroups(o), share: key, cookie: again?.cookie, alpn: o.alpn, earlyData: o.offerEarlyData && !again });
  if (!o.esni) return clientHello(p, exts, again?.first);
  // ESNI (draft-02 §5.1): the extension is bound to this hello's random and key_share, so both are fixed first.
  const same = again?.first ?? { random: p.randomBytes(32), sessionId: p.randomBytes(32) };
  const ks = exts.find((e) => e.type === ExtensionType.key_share)!;
  exts.push(o.esni.extension(o.serverName, same.random, ks.data));
  return clientHello(p, exts, same);
}

function clientGroups(o: ClientOptions): number[] {
  const groups = o.groups ?? [NamedGroup.x25519];
  for (const g of groups) if (!groupById(g)) throw new EchgateError('ERR_USAGE', `key-exchange group ${groupName(g)} is not implemented`);
  if (groups.length === 0) throw new EchgateError('ERR_USAGE', 'no key-exchange group to offer');
  return groups;
}

/**
 * draft-ietf-tls-esni-02 §5.1: no encrypted_server_name in EncryptedExtensions,
 * or a nonce other than ours → illegal_parameter.
 */
function checkEsniEcho(offer: EsniOffer, exts: readonly { type: number; data: Uint8Array }[]): void {
  const echo = exts.find((e) => e.type === ExtensionType.encrypted_server_name);
  if (!echo) throw fail('illegal_parameter', 'the server did not echo the ESNI nonce (no encrypted_server_name in EncryptedExtensions)');
  if (echo.data.length !== offer.nonce.length || !ctEqual(echo.data, offer.nonce)) throw fail('illegal_parameter', 'the server echoed another ESNI nonce');
}

/** A fresh key share for a group (client side). */
const newShare = (p: CryptoProvider, group: number): ClientKeyShare => groupById(group)!.offer(p);

/** One hello the server may answer (inner or outer), with what came before it in the transcript. */
interface Candidate {
  hello: ClientHello;
  /** The key share it carries (the private part); undefined when it carries none (withholdKeyShare). */
  key: ClientKeyShare | undefined;
  ech: boolean;
  /** After HelloRetryRequest: message_hash(ClientHello1) and the HelloRetryRequest (RFC 8446 §4.4.1). */
  before: Uint8Array[];
}

function handshakeRecords(message: Uint8Array): Uint8Array[] {
  return plaintextRecords(ContentType.handshake, message);
}

export class TlsClient {
  private readonly first: Uint8Array;
  private candidates: Candidate[];
  private chosen: Candidate | undefined;
  private readonly echHello: EchFlight | undefined;
  private retried = false;
  private suite: CipherSuite | undefined;
  private transcript: Transcript | undefined;
  private read: RecordCipher | undefined;
  private write: RecordCipher | undefined;
  private hs: { client: Uint8Array; server: Uint8Array } | undefined;
  private app: { client: Uint8Array; server: Uint8Array } | undefined;
  private sched: KeySchedule | undefined;
  private readonly records = new RecordReader();
  // Server certificate chains may be long: a larger cap than the server side needs.
  private readonly hsMessages = new HandshakeBuffer(1 << 20);
  private state: 'wait_sh' | 'wait_ee' | 'wait_cert' | 'wait_cv' | 'wait_fin' | 'connected' | 'closed' = 'wait_sh';
  /** We sent close_notify (§6.1): nothing more is written; reading goes on until the server closes. */
  private writeClosed = false;
  private result: Partial<ClientResult> = {};
  private chain: Uint8Array[] = [];

  constructor(private readonly o: ClientOptions) {
    const p = o.provider;
    const groups = clientGroups(o);
    const offer = !o.withholdKeyShare;
    if (o.ech) {
      const keys = { inner: newShare(p, groups[0]!), outer: newShare(p, groups[0]!) };
      const h = o.ech.start(p, { serverName: o.serverName, alpn: o.alpn, groups, share: offer ? keys.inner : undefined }, offer ? keys.outer : undefined);
      this.echHello = h;
      this.first = h.outerMessage;
      // If the server accepts ECH it answers the inner hello; otherwise the outer one.
      this.candidates = [
        { hello: h.inner, key: offer ? keys.inner : undefined, ech: true, before: [] },
        { hello: h.outer, key: offer ? keys.outer : undefined, ech: false, before: [] },
      ];
    } else {
      const key = offer ? newShare(p, groups[0]!) : undefined;
      const hello = plainHello(p, o, key);
      this.first = encodeHandshake(HandshakeType.client_hello, hello.raw!);
      this.candidates = [{ hello, key, ech: false, before: [] }];
    }
    this.result.helloRetry = false;
  }

  /** The ClientHello record(s) to send first. */
  hello(): Uint8Array[] {
    return handshakeRecords(this.first);
  }

  /**
   * Feed bytes from the server. Never throws for what the server sends: a
   * failed check comes back as `alert` (its record last in `send`, to be
   * sent) and `error`; an error alert from the server as `peerAlert`.
   */
  receive(bytes: Uint8Array): ClientOutput {
    const out: ClientOutput = { send: [], data: [], closed: this.state === 'closed' };
    if (this.state === 'closed') return out;
    try {
      this.records.push(bytes);
      for (let rec = this.records.next(); rec; rec = this.records.next()) {
        this.onRecord(rec.type, rec.header, rec.fragment, out);
        if ((this.state as string) === 'closed') break;
      }
    } catch (e) {
      // Anything but an EchgateError is our bug, not the server's doing: internal_error.
      const err = e instanceof EchgateError ? e : new EchgateError('ERR_ILLEGAL', `internal error: ${(e as Error)?.message}`, { alert: 'internal_error', cause: e });
      out.error = err;
      out.alert = alertFor(err);
      out.closed = true;
      this.state = 'closed';
      // Protected under whatever keys we write with by now (handshake or application), plaintext before ServerHello.
      out.send.push(this.write ? this.write.seal(ContentType.alert, alertBody(out.alert)) : encodeAlertRecord(out.alert));
    }
    return out;
  }

  private onRecord(type: number, header: Uint8Array, frag: Uint8Array, out: ClientOutput): void {
    if (type === ContentType.application_data) {
      if (!this.read) throw fail('unexpected_message', 'protected record before ServerHello');
      const { type: inner, content } = this.read.open(header, frag);
      if (inner !== ContentType.handshake && this.hsMessages.pending) throw fail('unexpected_message', 'a record of another type inside a fragmented handshake message');
      if (inner === ContentType.alert) this.onAlert(content, out);
      else if (inner === ContentType.handshake) this.onHandshake(content, out);
      else if (inner === ContentType.application_data && this.state === 'connected') out.data.push(content);
      else throw fail('unexpected_message', 'unexpected content');
      return;
    }
    checkPlaintextLength(frag);
    if (type === ContentType.change_cipher_spec && this.state !== 'connected') return;
    // The server may not have keys yet when it refuses our hello: plaintext alerts until its Finished.
    if (type === ContentType.alert && this.state !== 'connected') return this.onAlert(frag, out);
    if (type === ContentType.handshake && this.state === 'wait_sh') {
      if (frag.length === 0) throw fail('unexpected_message', 'empty handshake record');
      const msgs = this.hsMessages.push(frag);
      // §5.1: ServerHello (and HelloRetryRequest) change keys or restart: each must end its record.
      if (msgs.length > 1 || (msgs.length === 1 && this.hsMessages.pending)) throw fail('unexpected_message', 'handshake data after ServerHello in the same record');
      if (msgs.length) this.onServerHello(msgs[0]!, out);
      return;
    }
    throw fail('unexpected_message', `unexpected record type ${type}`);
  }

  /** RFC 8446 §6 (see TlsServer.onAlert): two bytes; close_notify closes, an error alert ends the connection with nothing sent back. */
  private onAlert(body: Uint8Array, out: ClientOutput): void {
    if (body.length === 0) throw fail('unexpected_message', 'empty alert record');
    if (body.length !== 2) throw new EchgateError('ERR_DECODE', `alert record of ${body.length} bytes`, { alert: 'decode_error' });
    const desc = body[1]!;
    if (desc === AlertDescription.user_canceled) return;
    out.closed = true;
    this.state = 'closed';
    if (!isClosureAlert(desc)) {
      out.peerAlert = desc;
      out.error = new EchgateError('ERR_ILLEGAL', `server sent alert ${describeAlert(desc)}`);
    }
  }

  encrypt(data: Uint8Array): Uint8Array[] {
    if (this.state !== 'connected' || !this.write || this.writeClosed) throw fail('unexpected_message', 'not connected');
    const out: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += MAX_PLAINTEXT) out.push(this.write.seal(ContentType.application_data, data.subarray(i, i + MAX_PLAINTEXT)));
    return out;
  }

  /**
   * Our close_notify (RFC 8446 §6.1): it closes our write side only; the
   * server's remaining data and its own close_notify are still read.
   */
  close(): Uint8Array {
    if (this.state !== 'connected' || !this.write) throw fail('unexpected_message', 'not connected');
    this.writeClosed = true;
    return this.write.seal(ContentType.alert, Uint8Array.of(1, 0));
  }

  private onServerHello(msg: Uint8Array, out: ClientOutput): void {
    if (msg[0] !== HandshakeType.server_hello) throw fail('unexpected_message', 'expected ServerHello');
    const sh = decodeServerHello(msg.subarray(4));
    if (ctEqual(sh.random, HRR_RANDOM)) return this.onHelloRetry(msg, sh, out);
    const suite = this.selectSuite(sh, 'ServerHello');
    const ks = sh.extensions.find((e) => e.type === ExtensionType.key_share);
    if (!ks) throw fail('illegal_parameter', 'no key_share');
    const r = new Reader(ks.data);
    const group = r.u16();
    const serverKey = r.vec16();
    r.expectEnd('key_share');
    // §4.2.8: the server's share must be for the group we sent a share for.
    const sent = this.candidates[0]!.key;
    if (!sent || group !== sent.group) throw fail('illegal_parameter', `server chose group ${groupName(group)}, for which we sent no key share`);
    const shBytes = msg;
    // RFC 9849 §6.1.4: ECH is accepted iff the confirmation in ServerHello.random verifies against the inner transcript.
    this.chosen = this.candidates[this.candidates.length - 1];
    const inner = this.candidates.find((c) => c.ech);
    if (inner) {
      const conf = echAcceptConfirmation(this.o.provider, suite.hash, inner.hello.random, this.transcriptThrough(inner, suite), shBytes);
      if (ctEqual(conf, shBytes.subarray(ECH_CONFIRMATION_AT, ECH_CONFIRMATION_AT + 8))) this.chosen = inner;
      else if (this.candidates.length === 1) throw fail('illegal_parameter', 'ECH accepted in HelloRetryRequest but not confirmed in ServerHello');
    }
    const c = this.chosen!;
    this.result.ech = !this.o.ech ? 'not_offered' : c.ech ? 'accepted' : 'rejected';
    this.transcript = this.transcriptThrough(c, suite);
    this.transcript.add(shBytes);
    // A bad share (length, point, low order, ML-KEM ciphertext size) → illegal_parameter.
    const shared = c.key!.complete(serverKey);
    this.result.group = group;
    this.result.groupName = groupName(group);
    const sched = new KeySchedule(this.o.provider, suite.hash);
    this.hs = sched.handshake(shared, this.transcript.hash());
    this.read = new RecordCipher(suite, trafficKeys(this.o.provider, suite, this.hs.server));
    this.write = new RecordCipher(suite, trafficKeys(this.o.provider, suite, this.hs.client));
    this.sched = sched;
    this.result.cipherSuite = suite.id;
    this.state = 'wait_ee';
  }

  /** Both ServerHello and HelloRetryRequest: a suite we offered, and TLS 1.3 in supported_versions (RFC 8446 §4.1.3, §4.1.4). */
  private selectSuite(m: ReturnType<typeof decodeServerHello>, what: string): CipherSuite {
    const suite = suiteById(m.cipherSuite);
    if (!suite || (this.suite && this.suite !== suite)) throw fail('illegal_parameter', `${what} chose a suite we did not offer (or another than before)`);
    const sv = m.extensions.find((e) => e.type === ExtensionType.supported_versions);
    if (!sv || sv.data.length !== 2 || ((sv.data[0]! << 8) | sv.data[1]!) !== ProtocolVersion.TLS13) throw fail('illegal_parameter', `${what} did not select TLS 1.3`);
    this.suite = suite;
    return suite;
  }

  private transcriptThrough(c: Candidate, suite: CipherSuite): Transcript {
    const t = new Transcript(this.o.provider, suite.hash);
    for (const m of c.before) t.add(m);
    t.add(encodeHandshake(HandshakeType.client_hello, c.hello.raw!));
    return t;
  }

  /**
   * RFC 8446 §4.1.4 with RFC 9849 §6.1.5: the ECH verdict from the HRR's
   * extension, then a second ClientHello with a new X25519 share (and the
   * cookie), sealed with the same HPKE context when ECH is still in play.
   */
  private onHelloRetry(msg: Uint8Array, hrr: ReturnType<typeof decodeServerHello>, out: ClientOutput): void {
    if (this.retried) throw fail('unexpected_message', 'a second HelloRetryRequest');
    this.retried = true;
    const p = this.o.provider;
    const suite = this.selectSuite(hrr, 'HelloRetryRequest');
    const ks = hrr.extensions.find((e) => e.type === ExtensionType.key_share);
    const cookie = hrr.extensions.find((e) => e.type === ExtensionType.cookie);
    if (!ks && !cookie) throw fail('illegal_parameter', 'HelloRetryRequest that would change nothing');
    // §4.1.4: selected_group must be one we offered and not the one we already sent a share for.
    const sentGroup = this.candidates[0]!.key?.group;
    let group = sentGroup;
    if (ks) {
      group = ks.data.length === 2 ? (ks.data[0]! << 8) | ks.data[1]! : -1;
      if (!clientGroups(this.o).includes(group) || group === sentGroup) throw fail('illegal_parameter', 'HelloRetryRequest asks for a group we did not offer or already sent');
    }
    if (group === undefined) throw fail('illegal_parameter', 'HelloRetryRequest names no group and we sent no key share');
    this.result.helloRetry = true;
    // The ECH verdict (§6.1.4): an extension whose 8 bytes confirm against the inner transcript.
    let accepted = false;
    const inner = this.candidates.find((c) => c.ech);
    const echExt = hrr.extensions.find((e) => e.type === ExtensionType.encrypted_client_hello);
    if (inner && echExt) {
      if (echExt.data.length !== 8) throw fail('decode_error', 'HelloRetryRequest ECH extension is not 8 bytes');
      const before = this.transcriptThrough(inner, suite);
      before.replaceWithMessageHash();
      const at = echExt.data.byteOffset - msg.byteOffset;
      accepted = ctEqual(hrrEchConfirmation(p, suite.hash, inner.hello.random, before, msg, at), echExt.data);
    }
    const firstMessageHash = (c: Candidate) => {
      const t = this.transcriptThrough(c, suite);
      t.replaceWithMessageHash();
      return t;
    };
    const innerKey = newShare(p, group);
    const outerKey = newShare(p, group);
    if (this.echHello) {
      const h2 = this.echHello.retry({ innerKey, outerKey, cookie: cookie?.data });
      const next: Candidate[] = [];
      // Accepted: only the inner hello can go on. Rejected: only the outer one.
      if (accepted) next.push({ hello: h2.inner, key: innerKey, ech: true, before: [...firstMessageHash(inner!).snapshot(), msg] });
      else next.push({ hello: h2.outer, key: outerKey, ech: false, before: [...firstMessageHash(this.candidates.find((c) => !c.ech)!).snapshot(), msg] });
      this.candidates = next;
      out.send.push(...handshakeRecords(h2.outerMessage));
    } else {
      const c = this.candidates[0]!;
      const hello = plainHello(p, this.o, innerKey, { first: c.hello, cookie: cookie?.data });
      this.candidates = [{ hello, key: innerKey, ech: false, before: [...firstMessageHash(c).snapshot(), msg] }];
      out.send.push(...handshakeRecords(encodeHandshake(HandshakeType.client_hello, hello.raw!)));
    }
  }

  private onHandshake(content: Uint8Array, out: ClientOutput): void {
    const msgs = this.hsMessages.push(content);
    for (let i = 0; i < msgs.length; i++) this.onMessage(msgs[i]!, i === msgs.length - 1 && this.hsMessages.pending === 0, out);
  }

  /** A test hook: ask the server to update its keys and update ours (RFC 8446 §4.6.3). */
  keyUpdate(requestUpdate: 0 | 1 = 1): Uint8Array {
    if (this.state !== 'connected' || !this.app) throw fail('unexpected_message', 'not connected');
    const rec = this.write!.seal(ContentType.handshake, encodeHandshake(HandshakeType.key_update, Uint8Array.of(requestUpdate)));
    this.app.client = this.sched!.nextTrafficSecret(this.app.client);
    this.write = new RecordCipher(this.suite!, trafficKeys(this.o.provider, this.suite!, this.app.client));
    return rec;
  }

  private onMessage(msg: Uint8Array, endsRecord: boolean, out: ClientOutput): void {
    const type = msg[0]!;
    const body = msg.subarray(4);
    const p = this.o.provider;
    const suite = this.suite!;
    switch (this.state) {
      case 'wait_ee': {
        if (type !== HandshakeType.encrypted_extensions) throw fail('unexpected_message', 'expected EncryptedExtensions');
        const r = new Reader(body);
        const exts = decodeExtensionBlock(r.sub16('extensions'));
        r.expectEnd('EncryptedExtensions');
        for (const e of exts) {
          if (e.type === ExtensionType.application_layer_protocol_negotiation) this.result.alpn = decodeAlpn(e.data)[0];
          // RFC 9849 §6.1.6: retry_configs are only valid when ECH was not accepted.
          if (e.type === ExtensionType.encrypted_client_hello) {
            if (this.result.ech === 'accepted') throw fail('illegal_parameter', 'retry_configs after ECH acceptance');
            this.result.retryConfigs = e.data;
          }
        }
        if (this.o.esni) checkEsniEcho(this.o.esni, exts);
        if (this.o.esni) this.result.esni = 'accepted';
        this.transcript!.add(msg);
        this.state = 'wait_cert';
        return;
      }
      case 'wait_cert': {
        if (type !== HandshakeType.certificate) throw fail('unexpected_message', 'expected Certificate');
        this.chain = decodeCertificate(body);
        if (this.chain.length === 0) throw fail('decode_error', 'empty certificate chain');
        this.transcript!.add(msg);
        this.state = 'wait_cv';
        return;
      }
      case 'wait_cv': {
        if (type !== HandshakeType.certificate_verify) throw fail('unexpected_message', 'expected CertificateVerify');
        const { scheme, signature } = decodeCertificateVerify(body);
        let leaf: X509Certificate;
        try {
          leaf = new X509Certificate(Buffer.from(this.chain[0]!));
        } catch (e) {
          throw new EchgateError('ERR_ILLEGAL', `server certificate does not parse: ${(e as Error).message}`, { alert: 'bad_certificate' });
        }
        const content = certificateVerifyContent(this.transcript!.hash(), true);
        // §4.4.3: the server's scheme "MUST be one offered in the client's signature_algorithms"; and
        // it must fit the leaf's key (§4.2.3: ECDSA schemes name their curve; rsa_pss_rsae needs an RSA key).
        // Either failing is a field inconsistent with the rest of the handshake: illegal_parameter.
        const want = SCHEMES[scheme];
        if (!SIG_ALGS.includes(scheme) || !want) throw fail('illegal_parameter', `CertificateVerify uses signature scheme 0x${scheme.toString(16)}, which we did not offer`);
        const key = leaf.publicKey;
        if (key.asymmetricKeyType !== want.key || (want.curve && key.asymmetricKeyDetails?.namedCurve !== want.curve)) {
          throw fail('illegal_parameter', `CertificateVerify scheme 0x${scheme.toString(16)} does not fit the certificate's ${key.asymmetricKeyType} key`);
        }
        let ok = false;
        try {
          ok = verifySig(want.hash, content, want.pss ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } : key, signature);
        } catch {
          ok = false;
        }
        // §4.4.3: "If the verification fails, the receiver MUST terminate the handshake with a decrypt_error alert."
        if (!ok) throw fail('decrypt_error', 'CertificateVerify signature does not verify');
        // With ECH rejected the server authenticates as the public name (RFC 9849 §6.1.7).
        const expectName = this.result.ech === 'rejected' ? this.o.ech!.publicName : this.o.serverName;
        this.result.certificate = {
          subject: leaf.subject,
          names: (leaf.subjectAltName ?? '').split(',').map((s) => s.trim()).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
        };
        this.result.certificateVerified = false;
        if (this.o.ca) {
          const ca = new X509Certificate(this.o.ca);
          // §6.2: unknown_ca — "the certificate was not accepted because the CA certificate could not be located or could not be matched with a known trust anchor".
          if (!leaf.verify(ca.publicKey)) throw new EchgateError('ERR_ILLEGAL', 'certificate is not signed by the given CA', { alert: 'unknown_ca' });
          // A sound certificate from our CA, only not for this name: neither corrupt (bad_certificate) nor
          // from an unknown CA; §6.2's certificate_unknown ("some other issue ... rendering it unacceptable").
          if (!leaf.checkHost(expectName)) throw new EchgateError('ERR_ILLEGAL', `certificate is not valid for ${expectName}`, { alert: 'certificate_unknown' });
          this.result.certificateVerified = true;
        }
        this.transcript!.add(msg);
        this.state = 'wait_fin';
        return;
      }
      case 'wait_fin': {
        if (type !== HandshakeType.finished) throw fail('unexpected_message', 'expected Finished');
        const expected = finishedVerifyData(p, suite.hash, this.hs!.server, this.transcript!.hash());
        // §4.4.4: a verify_data of the wrong length is malformed; a wrong value does not verify.
        if (body.length !== expected.length) throw new EchgateError('ERR_DECODE', `Finished of ${body.length} bytes`, { alert: 'decode_error' });
        if (!ctEqual(body, expected)) throw fail('decrypt_error', 'server Finished does not verify');
        // §5.1: keys change after the server Finished; nothing may follow it in its record.
        if (!endsRecord) throw fail('unexpected_message', 'handshake data after the server Finished in the same record');
        this.transcript!.add(msg);
        const app = this.sched!.application(this.transcript!.hash());
        const fin = encodeFinished(finishedVerifyData(p, suite.hash, this.hs!.client, this.transcript!.hash()));
        out.send.push(this.write!.seal(ContentType.handshake, fin));
        this.read = new RecordCipher(suite, trafficKeys(p, suite, app.server));
        this.write = new RecordCipher(suite, trafficKeys(p, suite, app.client));
        this.app = { client: app.client, server: app.server };
        this.state = 'connected';
        out.established = this.result as ClientResult;
        return;
      }
      case 'connected':
        // NewSessionTicket and KeyUpdate from the server: tickets are ignored (no resumption).
        if (type === HandshakeType.new_session_ticket) return;
        if (type === HandshakeType.key_update) {
          // §4.6.3, as the server checks it.
          if (body.length !== 1) throw new EchgateError('ERR_DECODE', `KeyUpdate of ${body.length} bytes`, { alert: 'decode_error' });
          if (body[0]! > 1) throw fail('illegal_parameter', `KeyUpdate request_update ${body[0]}`);
          if (!endsRecord) throw fail('unexpected_message', 'handshake data after KeyUpdate in the same record');
          this.app!.server = this.sched!.nextTrafficSecret(this.app!.server);
          this.read = new RecordCipher(suite, trafficKeys(p, suite, this.app!.server));
          if (body[0] === 1) {
            out.send.push(this.write!.seal(ContentType.handshake, encodeHandshake(HandshakeType.key_update, Uint8Array.of(0))));
            this.app!.client = this.sched!.nextTrafficSecret(this.app!.client);
            this.write = new RecordCipher(suite, trafficKeys(p, suite, this.app!.client));
          }
          return;
        }
        throw fail('unexpected_message', `unexpected post-handshake message ${type}`);
      default:
        throw fail('unexpected_message', 'unexpected handshake message');
    }
  }
}

