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
  /** Offer the groups in supported_groups but send no key share first, so the server must answer with HelloRetryRequest (tests). Not with `esni`: ERR_USAGE (its ESNI would be bound to no share). */
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
  // The builder always writes key_share; with withholdKeyShare its body is an empty client_shares
  // list (2 bytes, a zero length, RFC 8446 §4.2.8). draft-02 §5.1 seals the ESNI with that body as
  // AAD to bind it to this hello's shares: an empty list binds it to none, so ESNI needs a share.
  const ks = exts.find((e) => e.type === ExtensionType.key_share);
  if (!ks || ks.data.length <= 2) throw new EchgateError('ERR_USAGE', 'ESNI needs a key share in the ClientHello (draft-02 §5.1); withholdKeyShare cannot be used with it');
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
function newShare(p: CryptoProvider, group: number): ClientKeyShare {
  const g = groupById(group);
  if (!g) throw new EchgateError('ERR_USAGE', `key-exchange group ${groupName(group)} is not implemented`);
  return g.offer(p);
}

/** The handshake message (header + body) of a hello we built: the builder always sets `raw`. */
function helloMessage(h: ClientHello): Uint8Array {
  if (!h.raw) throw new EchgateError('ERR_ILLEGAL', 'internal error: a ClientHello without its encoding', { alert: 'internal_error' });
  return encodeHandshake(HandshakeType.client_hello, h.raw);
}

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

/**
 * The client handshake as states (RFC 8446 Appendix A.1), as the server's
 * are (server.ts): each holds exactly what exists at that point, so nothing
 * is read before it is there. WAIT_SH has only our hellos (and, after a
 * HelloRetryRequest, the suite it fixed); from ServerHello on a state has the
 * suite, the key schedule, the transcript, the handshake traffic secrets and
 * both record ciphers, plus what the flight has told us so far; once the
 * server Finished verifies, CONNECTED keeps only the application traffic
 * secrets and ciphers (the handshake secrets and transcript are dropped: no
 * resumption, no post-handshake authentication).
 */
type ClientState = WaitServerHello | WaitEncryptedExtensions | WaitCertificate | WaitCertificateVerify | WaitFinished | Connected | Closed;

interface WaitServerHello {
  readonly kind: 'wait_sh';
  /** The hellos the server may answer: inner and outer with ECH, else one. */
  readonly candidates: Candidate[];
  /** After a HelloRetryRequest (§4.1.4): its suite, which the ServerHello must repeat. */
  readonly retry: { readonly suite: CipherSuite } | undefined;
}

/** What ServerHello fixed. */
type HelloFacts = Pick<ClientResult, 'ech' | 'cipherSuite' | 'group' | 'groupName' | 'helloRetry'>;

/** From ServerHello to the server Finished: under the handshake traffic keys. */
interface Handshaking {
  readonly suite: CipherSuite;
  readonly sched: KeySchedule;
  readonly transcript: Transcript;
  /** client/server handshake traffic secrets (§7.1). */
  readonly hs: { readonly client: Uint8Array; readonly server: Uint8Array };
  readonly read: RecordCipher;
  readonly write: RecordCipher;
}

interface WaitEncryptedExtensions extends Handshaking {
  readonly kind: 'wait_ee';
  readonly result: HelloFacts;
}

type ExtensionFacts = HelloFacts & Pick<ClientResult, 'alpn' | 'retryConfigs'>;

interface WaitCertificate extends Handshaking {
  readonly kind: 'wait_cert';
  readonly result: ExtensionFacts;
}

interface WaitCertificateVerify extends Handshaking {
  readonly kind: 'wait_cv';
  readonly result: ExtensionFacts;
  /** The server's chain, leaf first (never empty). */
  readonly chain: Uint8Array[];
}

interface WaitFinished extends Handshaking {
  readonly kind: 'wait_fin';
  readonly result: ClientResult;
}

interface Connected {
  readonly kind: 'connected';
  readonly suite: CipherSuite;
  readonly sched: KeySchedule;
  read: RecordCipher;
  write: RecordCipher;
  /** client/server application traffic secrets (§7.2: KeyUpdate moves each on). */
  readonly app: { client: Uint8Array; server: Uint8Array };
  /** We sent close_notify (§6.1): nothing more is written; reading goes on until the server closes. */
  writeClosed: boolean;
}

interface Closed {
  readonly kind: 'closed';
}

const CLOSED: Closed = { kind: 'closed' };

export class TlsClient {
  private readonly first: Uint8Array;
  private readonly echHello: EchFlight | undefined;
  private state: ClientState;
  /** The ECH verdict once ServerHello is read (kept after a failure, for the caller and tests). */
  private echVerdict: ClientResult['ech'] | undefined;
  private readonly records = new RecordReader();
  // Server certificate chains may be long: a larger cap than the server side needs.
  private readonly hsMessages = new HandshakeBuffer(1 << 20);

  constructor(private readonly o: ClientOptions) {
    const p = o.provider;
    const groups = clientGroups(o);
    const offer = !o.withholdKeyShare;
    const group = groups[0] ?? NamedGroup.x25519;
    if (o.ech) {
      const keys = { inner: newShare(p, group), outer: newShare(p, group) };
      const h = o.ech.start(p, { serverName: o.serverName, alpn: o.alpn, groups, share: offer ? keys.inner : undefined }, offer ? keys.outer : undefined);
      this.echHello = h;
      this.first = h.outerMessage;
      // If the server accepts ECH it answers the inner hello; otherwise the outer one.
      this.state = {
        kind: 'wait_sh',
        retry: undefined,
        candidates: [
          { hello: h.inner, key: offer ? keys.inner : undefined, ech: true, before: [] },
          { hello: h.outer, key: offer ? keys.outer : undefined, ech: false, before: [] },
        ],
      };
    } else {
      const key = offer ? newShare(p, group) : undefined;
      const hello = plainHello(p, o, key);
      this.first = helloMessage(hello);
      this.state = { kind: 'wait_sh', retry: undefined, candidates: [{ hello, key, ech: false, before: [] }] };
    }
  }

  /** The ClientHello record(s) to send first. */
  hello(): Uint8Array[] {
    return handshakeRecords(this.first);
  }

  /** The ECH verdict once the server's ServerHello was read; undefined before. */
  get ech(): ClientResult['ech'] | undefined {
    return this.echVerdict;
  }

  /** The cipher we write with now: handshake or application keys; none before ServerHello or once closed. */
  private writer(): RecordCipher | undefined {
    const st = this.state;
    return st.kind === 'wait_sh' || st.kind === 'closed' ? undefined : st.write;
  }

  /**
   * Feed bytes from the server. Never throws for what the server sends: a
   * failed check comes back as `alert` (its record last in `send`, to be
   * sent) and `error`; an error alert from the server as `peerAlert`.
   */
  receive(bytes: Uint8Array): ClientOutput {
    const out: ClientOutput = { send: [], data: [], closed: this.state.kind === 'closed' };
    if (this.state.kind === 'closed') return out;
    try {
      this.records.push(bytes);
      for (let rec = this.records.next(); rec; rec = this.records.next()) {
        this.onRecord(rec.type, rec.header, rec.fragment, out);
        // onRecord may have closed the connection (TypeScript keeps the narrowing from above).
        if ((this.state as ClientState).kind === 'closed') break;
      }
    } catch (e) {
      // Anything but an EchgateError is our bug, not the server's doing: internal_error.
      const err = e instanceof EchgateError ? e : new EchgateError('ERR_ILLEGAL', `internal error: ${(e as Error)?.message}`, { alert: 'internal_error', cause: e });
      out.error = err;
      out.alert = alertFor(err);
      out.closed = true;
      // Protected under whatever keys we write with by now (handshake or application), plaintext before ServerHello.
      const w = this.writer();
      this.state = CLOSED;
      out.send.push(w ? w.seal(ContentType.alert, alertBody(out.alert)) : encodeAlertRecord(out.alert));
    }
    return out;
  }

  private onRecord(type: number, header: Uint8Array, frag: Uint8Array, out: ClientOutput): void {
    const st = this.state;
    if (type === ContentType.application_data) {
      if (st.kind === 'wait_sh' || st.kind === 'closed') throw fail('unexpected_message', 'protected record before ServerHello');
      const { type: inner, content } = st.read.open(header, frag);
      if (inner !== ContentType.handshake && this.hsMessages.pending) throw fail('unexpected_message', 'a record of another type inside a fragmented handshake message');
      if (inner === ContentType.alert) this.onAlert(content, out);
      else if (inner === ContentType.handshake) this.onHandshake(content, out);
      else if (inner === ContentType.application_data && st.kind === 'connected') out.data.push(content);
      else throw fail('unexpected_message', 'unexpected content');
      return;
    }
    checkPlaintextLength(frag);
    // §5: a change_cipher_spec of the single byte 0x01 before the server Finished is dropped; any
    // other value (or length), or one once connected, is unexpected_message.
    if (type === ContentType.change_cipher_spec && st.kind !== 'connected') {
      if (frag.length !== 1 || frag[0] !== 1) throw fail('unexpected_message', 'change_cipher_spec other than the single byte 1');
      return;
    }
    // The server may not have keys yet when it refuses our hello: plaintext alerts until its Finished.
    if (type === ContentType.alert && st.kind !== 'connected') return this.onAlert(frag, out);
    if (type === ContentType.handshake && st.kind === 'wait_sh') {
      if (frag.length === 0) throw fail('unexpected_message', 'empty handshake record');
      const msgs = this.hsMessages.push(frag);
      const msg = msgs[0];
      // §5.1: ServerHello (and HelloRetryRequest) change keys or restart: each must end its record.
      if (msgs.length > 1 || (msg !== undefined && this.hsMessages.pending)) throw fail('unexpected_message', 'handshake data after ServerHello in the same record');
      if (msg !== undefined) this.onServerHello(st, msg, out);
      return;
    }
    throw fail('unexpected_message', `unexpected record type ${type}`);
  }

  /** RFC 8446 §6 (see TlsServer.onAlert): two bytes; close_notify closes, an error alert ends the connection with nothing sent back. */
  private onAlert(body: Uint8Array, out: ClientOutput): void {
    if (body.length === 0) throw fail('unexpected_message', 'empty alert record');
    const desc = body[1];
    if (body.length !== 2 || desc === undefined) throw new EchgateError('ERR_DECODE', `alert record of ${body.length} bytes`, { alert: 'decode_error' });
    if (desc === AlertDescription.user_canceled) return;
    out.closed = true;
    this.state = CLOSED;
    if (!isClosureAlert(desc)) {
      out.peerAlert = desc;
      out.error = new EchgateError('ERR_ILLEGAL', `server sent alert ${describeAlert(desc)}`);
    }
  }

  encrypt(data: Uint8Array): Uint8Array[] {
    const st = this.state;
    if (st.kind !== 'connected' || st.writeClosed) throw fail('unexpected_message', 'not connected');
    const out: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += MAX_PLAINTEXT) out.push(st.write.seal(ContentType.application_data, data.subarray(i, i + MAX_PLAINTEXT)));
    return out;
  }

  /**
   * Our close_notify (RFC 8446 §6.1): it closes our write side only; the
   * server's remaining data and its own close_notify are still read.
   */
  close(): Uint8Array {
    const st = this.state;
    if (st.kind !== 'connected') throw fail('unexpected_message', 'not connected');
    st.writeClosed = true;
    return st.write.seal(ContentType.alert, Uint8Array.of(1, 0));
  }

  private onServerHello(st: WaitServerHello, msg: Uint8Array, out: ClientOutput): void {
    if (msg[0] !== HandshakeType.server_hello) throw fail('unexpected_message', 'expected ServerHello');
    const sh = decodeServerHello(msg.subarray(4));
    // §4.1.3 (and §4.1.4 for HelloRetryRequest): legacy_session_id_echo must be the session id we sent, else illegal_parameter.
    const sent = st.candidates[0]?.hello.sessionId;
    if (!sent || !ctEqual(sh.sessionIdEcho, sent)) throw fail('illegal_parameter', 'ServerHello legacy_session_id_echo is not our legacy_session_id');
    if (ctEqual(sh.random, HRR_RANDOM)) return this.onHelloRetry(st, msg, sh, out);
    const suite = this.selectSuite(st, sh, 'ServerHello');
    const ks = sh.extensions.find((e) => e.type === ExtensionType.key_share);
    if (!ks) throw fail('illegal_parameter', 'no key_share');
    const r = new Reader(ks.data);
    const group = r.u16();
    const serverKey = r.vec16();
    r.expectEnd('key_share');
    // §4.2.8: the server's share must be for the group we sent a share for (every candidate's share is of one group).
    const sentKey = st.candidates[0]?.key;
    if (!sentKey || group !== sentKey.group) throw fail('illegal_parameter', `server chose group ${groupName(group)}, for which we sent no key share`);
    // RFC 9849 §6.1.4: ECH is accepted iff the confirmation in ServerHello.random verifies against the inner transcript.
    let chosen = st.candidates[st.candidates.length - 1];
    const inner = st.candidates.find((c) => c.ech);
    if (inner) {
      const conf = echAcceptConfirmation(this.o.provider, suite.hash, inner.hello.random, this.transcriptThrough(inner, suite), msg);
      if (ctEqual(conf, msg.subarray(ECH_CONFIRMATION_AT, ECH_CONFIRMATION_AT + 8))) chosen = inner;
      else if (st.candidates.length === 1) throw fail('illegal_parameter', 'ECH accepted in HelloRetryRequest but not confirmed in ServerHello');
    }
    const key = chosen?.key;
    if (!chosen || !key) throw fail('illegal_parameter', 'ServerHello for a hello that carried no key share');
    const ech = !this.o.ech ? 'not_offered' : chosen.ech ? 'accepted' : 'rejected';
    this.echVerdict = ech;
    const transcript = this.transcriptThrough(chosen, suite);
    transcript.add(msg);
    // A bad share (length, point, low order, ML-KEM ciphertext size) → illegal_parameter.
    const shared = key.complete(serverKey);
    const sched = new KeySchedule(this.o.provider, suite.hash);
    const hs = sched.handshake(shared, transcript.hash());
    this.state = {
      kind: 'wait_ee',
      suite,
      sched,
      transcript,
      hs,
      read: new RecordCipher(suite, trafficKeys(this.o.provider, suite, hs.server)),
      write: new RecordCipher(suite, trafficKeys(this.o.provider, suite, hs.client)),
      result: { ech, cipherSuite: suite.id, group, groupName: groupName(group), helloRetry: st.retry !== undefined },
    };
  }

  /** Both ServerHello and HelloRetryRequest: a suite we offered, and TLS 1.3 in supported_versions (RFC 8446 §4.1.3, §4.1.4). */
  private selectSuite(st: WaitServerHello, m: ReturnType<typeof decodeServerHello>, what: string): CipherSuite {
    const suite = suiteById(m.cipherSuite);
    if (!suite || (st.retry && st.retry.suite !== suite)) throw fail('illegal_parameter', `${what} chose a suite we did not offer (or another than before)`);
    const sv = m.extensions.find((e) => e.type === ExtensionType.supported_versions);
    if (!sv || sv.data.length !== 2 || ((sv.data[0] ?? 0) << 8 | (sv.data[1] ?? 0)) !== ProtocolVersion.TLS13) throw fail('illegal_parameter', `${what} did not select TLS 1.3`);
    return suite;
  }

  private transcriptThrough(c: Candidate, suite: CipherSuite): Transcript {
    const t = new Transcript(this.o.provider, suite.hash);
    for (const m of c.before) t.add(m);
    t.add(helloMessage(c.hello));
    return t;
  }

  /**
   * RFC 8446 §4.1.4 with RFC 9849 §6.1.5: the ECH verdict from the HRR's
   * extension, then a second ClientHello with a new share for the group
   * asked for (and the cookie), sealed with the same HPKE context when ECH
   * is still in play.
   */
  private onHelloRetry(st: WaitServerHello, msg: Uint8Array, hrr: ReturnType<typeof decodeServerHello>, out: ClientOutput): void {
    if (st.retry) throw fail('unexpected_message', 'a second HelloRetryRequest');
    const p = this.o.provider;
    const suite = this.selectSuite(st, hrr, 'HelloRetryRequest');
    const ks = hrr.extensions.find((e) => e.type === ExtensionType.key_share);
    const cookie = hrr.extensions.find((e) => e.type === ExtensionType.cookie);
    if (!ks && !cookie) throw fail('illegal_parameter', 'HelloRetryRequest that would change nothing');
    // §4.1.4: selected_group must be one we offered and not the one we already sent a share for.
    const sentGroup = st.candidates[0]?.key?.group;
    let group = sentGroup;
    if (ks) {
      // §4.2.8: KeyShareHelloRetryRequest is exactly one NamedGroup; another length is a message that does not decode (§6.2).
      if (ks.data.length !== 2) throw fail('decode_error', 'HelloRetryRequest key_share is not one NamedGroup');
      group = ((ks.data[0] ?? 0) << 8) | (ks.data[1] ?? 0);
      if (!clientGroups(this.o).includes(group) || group === sentGroup) throw fail('illegal_parameter', 'HelloRetryRequest asks for a group we did not offer or already sent');
    }
    if (group === undefined) throw fail('illegal_parameter', 'HelloRetryRequest names no group and we sent no key share');
    // The ECH verdict (§6.1.4): an extension whose 8 bytes confirm against the inner transcript.
    let accepted = false;
    const inner = st.candidates.find((c) => c.ech);
    const outer = st.candidates.find((c) => !c.ech);
    const echExt = hrr.extensions.find((e) => e.type === ExtensionType.encrypted_client_hello);
    // RFC 8446 §4.1.4: a HelloRetryRequest extension the client did not offer is unsupported_extension
    // (the ECH confirmation of RFC 9849 §7.2.1 answers only a client that sent encrypted_client_hello).
    if (echExt && !this.o.ech) throw fail('unsupported_extension', 'encrypted_client_hello in HelloRetryRequest, which we did not offer');
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
      return [...t.snapshot(), msg];
    };
    const innerKey = newShare(p, group);
    const outerKey = newShare(p, group);
    let next: Candidate;
    if (this.echHello && inner && outer) {
      const h2 = this.echHello.retry({ innerKey, outerKey, cookie: cookie?.data });
      // Accepted: only the inner hello can go on. Rejected: only the outer one.
      next = accepted
        ? { hello: h2.inner, key: innerKey, ech: true, before: firstMessageHash(inner) }
        : { hello: h2.outer, key: outerKey, ech: false, before: firstMessageHash(outer) };
      out.send.push(...handshakeRecords(h2.outerMessage));
    } else {
      const c = outer ?? inner;
      if (!c) throw fail('internal_error', 'no hello to retry');
      const hello = plainHello(p, this.o, innerKey, { first: c.hello, cookie: cookie?.data });
      next = { hello, key: innerKey, ech: false, before: firstMessageHash(c) };
      out.send.push(...handshakeRecords(helloMessage(hello)));
    }
    this.state = { kind: 'wait_sh', candidates: [next], retry: { suite } };
  }

  private onHandshake(content: Uint8Array, out: ClientOutput): void {
    const msgs = this.hsMessages.push(content);
    msgs.forEach((m, i) => {
      this.onMessage(m, i === msgs.length - 1 && this.hsMessages.pending === 0, out);
    });
  }

  /** A test hook: ask the server to update its keys and update ours (RFC 8446 §4.6.3). */
  keyUpdate(requestUpdate: 0 | 1 = 1): Uint8Array {
    const st = this.state;
    if (st.kind !== 'connected') throw fail('unexpected_message', 'not connected');
    const rec = st.write.seal(ContentType.handshake, encodeHandshake(HandshakeType.key_update, Uint8Array.of(requestUpdate)));
    st.app.client = st.sched.nextTrafficSecret(st.app.client);
    st.write = new RecordCipher(st.suite, trafficKeys(this.o.provider, st.suite, st.app.client));
    return rec;
  }

  private onMessage(msg: Uint8Array, endsRecord: boolean, out: ClientOutput): void {
    const type = msg[0];
    const body = msg.subarray(4);
    const st = this.state;
    switch (st.kind) {
      case 'wait_ee':
        return this.onEncryptedExtensions(st, type, msg, body);
      case 'wait_cert': {
        if (type !== HandshakeType.certificate) throw fail('unexpected_message', 'expected Certificate');
        const chain = decodeCertificate(body);
        if (chain.length === 0) throw fail('decode_error', 'empty certificate chain');
        st.transcript.add(msg);
        this.state = { ...st, kind: 'wait_cv', chain };
        return;
      }
      case 'wait_cv':
        return this.onCertificateVerify(st, type, msg, body);
      case 'wait_fin':
        return this.onFinished(st, type, msg, body, endsRecord, out);
      case 'connected':
        // NewSessionTicket and KeyUpdate from the server: tickets are ignored (no resumption).
        if (type === HandshakeType.new_session_ticket) return;
        if (type === HandshakeType.key_update) return this.onKeyUpdate(st, body, endsRecord, out);
        throw fail('unexpected_message', `unexpected post-handshake message ${type}`);
      default:
        throw fail('unexpected_message', 'unexpected handshake message');
    }
  }

  private onEncryptedExtensions(st: WaitEncryptedExtensions, type: number | undefined, msg: Uint8Array, body: Uint8Array): void {
    if (type !== HandshakeType.encrypted_extensions) throw fail('unexpected_message', 'expected EncryptedExtensions');
    const r = new Reader(body);
    const exts = decodeExtensionBlock(r.sub16('extensions'));
    r.expectEnd('EncryptedExtensions');
    let alpn: string | undefined;
    let retryConfigs: Uint8Array | undefined;
    for (const e of exts) {
      // RFC 8446 §4.2: a server answers only extensions the client sent; an answer to one we did not
      // send ends the handshake with unsupported_extension.
      if (e.type === ExtensionType.application_layer_protocol_negotiation) {
        if (!this.o.alpn?.length) throw fail('unsupported_extension', 'ALPN in EncryptedExtensions, which we did not offer');
        alpn = decodeAlpn(e.data)[0];
      }
      // RFC 9849 §6.1.6: retry_configs are only valid when ECH was not accepted.
      if (e.type === ExtensionType.encrypted_client_hello) {
        if (!this.o.ech) throw fail('unsupported_extension', 'encrypted_client_hello in EncryptedExtensions, which we did not offer');
        if (st.result.ech === 'accepted') throw fail('illegal_parameter', 'retry_configs after ECH acceptance');
        retryConfigs = e.data;
      }
    }
    if (this.o.esni) checkEsniEcho(this.o.esni, exts);
    st.transcript.add(msg);
    this.state = { ...st, kind: 'wait_cert', result: { ...st.result, alpn, retryConfigs, ...(this.o.esni ? { esni: 'accepted' as const } : {}) } };
  }

  private onCertificateVerify(st: WaitCertificateVerify, type: number | undefined, msg: Uint8Array, body: Uint8Array): void {
    if (type !== HandshakeType.certificate_verify) throw fail('unexpected_message', 'expected CertificateVerify');
    const { scheme, signature } = decodeCertificateVerify(body);
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(Buffer.from(st.chain[0] ?? new Uint8Array(0)));
    } catch (e) {
      throw new EchgateError('ERR_ILLEGAL', `server certificate does not parse: ${(e as Error).message}`, { alert: 'bad_certificate' });
    }
    const content = certificateVerifyContent(st.transcript.hash(), true);
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
    const expectName = st.result.ech === 'rejected' && this.o.ech ? this.o.ech.publicName : this.o.serverName;
    const certificate = {
      subject: leaf.subject,
      names: (leaf.subjectAltName ?? '').split(',').map((s) => s.trim()).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
    };
    let certificateVerified = false;
    if (this.o.ca) {
      const ca = new X509Certificate(this.o.ca);
      // §6.2: unknown_ca — "the certificate was not accepted because the CA certificate could not be located or could not be matched with a known trust anchor".
      if (!leaf.verify(ca.publicKey)) throw new EchgateError('ERR_ILLEGAL', 'certificate is not signed by the given CA', { alert: 'unknown_ca' });
      // A sound certificate from our CA, only not for this name: neither corrupt (bad_certificate) nor
      // from an unknown CA; §6.2's certificate_unknown ("some other issue ... rendering it unacceptable").
      if (!leaf.checkHost(expectName)) throw new EchgateError('ERR_ILLEGAL', `certificate is not valid for ${expectName}`, { alert: 'certificate_unknown' });
      certificateVerified = true;
    }
    st.transcript.add(msg);
    const { chain: _chain, ...rest } = st;
    this.state = { ...rest, kind: 'wait_fin', result: { ...st.result, certificate, certificateVerified } };
  }

  private onFinished(st: WaitFinished, type: number | undefined, msg: Uint8Array, body: Uint8Array, endsRecord: boolean, out: ClientOutput): void {
    if (type !== HandshakeType.finished) throw fail('unexpected_message', 'expected Finished');
    const p = this.o.provider;
    const { suite, transcript } = st;
    const expected = finishedVerifyData(p, suite.hash, st.hs.server, transcript.hash());
    // §4.4.4: a verify_data of the wrong length is malformed; a wrong value does not verify.
    if (body.length !== expected.length) throw new EchgateError('ERR_DECODE', `Finished of ${body.length} bytes`, { alert: 'decode_error' });
    if (!ctEqual(body, expected)) throw fail('decrypt_error', 'server Finished does not verify');
    // §5.1: keys change after the server Finished; nothing may follow it in its record.
    if (!endsRecord) throw fail('unexpected_message', 'handshake data after the server Finished in the same record');
    transcript.add(msg);
    const app = st.sched.application(transcript.hash());
    const fin = encodeFinished(finishedVerifyData(p, suite.hash, st.hs.client, transcript.hash()));
    out.send.push(st.write.seal(ContentType.handshake, fin));
    // The handshake secret, the handshake traffic secrets and the transcript end here.
    st.sched.forget();
    this.state = {
      kind: 'connected',
      suite,
      sched: st.sched,
      read: new RecordCipher(suite, trafficKeys(p, suite, app.server)),
      write: new RecordCipher(suite, trafficKeys(p, suite, app.client)),
      app: { client: app.client, server: app.server },
      writeClosed: false,
    };
    out.established = st.result;
  }

  /** §4.6.3, as the server checks it. */
  private onKeyUpdate(st: Connected, body: Uint8Array, endsRecord: boolean, out: ClientOutput): void {
    const p = this.o.provider;
    const request = body[0];
    if (body.length !== 1 || request === undefined) throw new EchgateError('ERR_DECODE', `KeyUpdate of ${body.length} bytes`, { alert: 'decode_error' });
    if (request > 1) throw fail('illegal_parameter', `KeyUpdate request_update ${request}`);
    if (!endsRecord) throw fail('unexpected_message', 'handshake data after KeyUpdate in the same record');
    st.app.server = st.sched.nextTrafficSecret(st.app.server);
    st.read = new RecordCipher(st.suite, trafficKeys(p, st.suite, st.app.server));
    if (request === 1) {
      out.send.push(st.write.seal(ContentType.handshake, encodeHandshake(HandshakeType.key_update, Uint8Array.of(0))));
      st.app.client = st.sched.nextTrafficSecret(st.app.client);
      st.write = new RecordCipher(st.suite, trafficKeys(p, st.suite, st.app.client));
    }
  }
}
