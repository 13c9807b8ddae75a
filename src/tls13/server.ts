/**
 * A sans-IO TLS 1.3 server (RFC 8446 §2, one named step per message), with
 * the ECH server behaviour of RFC 9849 §7: accept confirmation in
 * ServerHello.random when the inner hello was accepted, retry_configs in
 * EncryptedExtensions when ECH was offered but not accepted.
 *
 * Bytes in, bytes out: the caller feeds what the client sent and writes what
 * comes back. Randomness, the ephemeral key and the certificate signer are
 * injected, so a handshake can be replayed byte for byte in a test.
 *
 * Scope: full (EC)DHE handshakes with X25519, secp256r1 and X25519MLKEM768
 * (tls13/groups.ts), no PSK/resumption, no client certificates, no 0-RTT
 * (offered early data is skipped, RFC 8446 §4.2.10); HelloRetryRequest for a
 * client that sent no share for a group we take, with ECH accepted or not
 * (RFC 9849 §7.1.1, §7.2.1).
 */
import { channel } from 'node:diagnostics_channel';
import { concat, copy, ctEqual } from '../bytes/util.js';
import type { CryptoProvider, X25519Private } from '../crypto/provider.js';
import { type AlertName, EchgateError } from '../errors.js';
import { alertBody, alertFor, isClosureAlert } from '../wire/tls/alert.js';
import { type ClientHello, decodeClientHelloMessage, findExtension } from '../wire/tls/client-hello.js';
import { AlertDescription, ContentType, ExtensionType, HandshakeType, isGrease, MAX_PLAINTEXT, ProtocolVersion } from '../wire/tls/constants.js';
import { decodeAlpn, decodeKeyShares, decodeSupportedVersions, decodeU16List, encodeAlpn, type KeyShareEntry } from '../wire/tls/extensions.js';
import { encodeHandshake } from '../wire/tls/handshake.js';
import { alertRecord, changeCipherSpecRecord, checkPlaintextLength, plaintextRecords, type RawRecord, RecordReader } from '../wire/tls/record.js';
import {
  certificateVerifyContent,
  encodeCertificate,
  encodeCertificateVerify,
  encodeEncryptedExtensions,
  encodeFinished,
  encodeServerHello,
  HRR_RANDOM,
  serverHelloExtensions,
} from '../wire/tls/server-messages.js';
import { type CipherSuite, CIPHER_SUITES, finishedVerifyData, KeySchedule, trafficKeys } from './key-schedule.js';
import { ECH_CONFIRMATION_AT, echAcceptConfirmation, hrrEchConfirmation } from './ech-confirm.js';
import { DEFAULT_GROUPS, groupById, groupName } from './groups.js';
import { HandshakeBuffer } from './handshake-buffer.js';
import { RecordCipher } from './record-protection.js';
import { Transcript } from './transcript.js';

export interface CertifiedKey {
  /** DER certificates, leaf first. */
  chain: Uint8Array[];
  /** Signature schemes this key can produce, in preference order. */
  schemes: readonly number[];
  sign(scheme: number, data: Uint8Array): Uint8Array;
}

export interface ServerOptions {
  provider: CryptoProvider;
  random: (n: number) => Uint8Array;
  /** The X25519 ephemeral (also the X25519 half of X25519MLKEM768); absent = a fresh provider key. Tests pin it. */
  ephemeral?: () => X25519Private;
  /**
   * Key-exchange groups (NamedGroup code points) in server preference order;
   * absent = DEFAULT_GROUPS. Code points we do not implement are ignored.
   */
  groups?: readonly number[];
  /** The certificate for a server name (the inner SNI when ECH was accepted). */
  certificate: (sni: string | undefined) => CertifiedKey | undefined;
  /** Application protocols we accept, in preference order; absent = no ALPN. */
  alpn?: readonly string[];
  /** ECHConfigList to send as retry_configs when ECH was offered but not accepted. */
  retryConfigs?: Uint8Array;
  /** Cap on a handshake message from the client, header included: binds the second ClientHello (after HelloRetryRequest) like the first. Default 64 KiB. */
  maxClientHelloBytes?: number;
}

export interface EchInfo {
  /** Whether the client offered ECH (an outer extension, real or GREASE). */
  offered: boolean;
  accepted: boolean;
  /**
   * With accepted ECH: turn the second ClientHelloOuter (after our
   * HelloRetryRequest) into the second ClientHelloInner (RFC 9849 §7.1.1),
   * throwing an error that carries the alert. Without it, accepted ECH and
   * HelloRetryRequest do not mix (split-mode backends: the client-facing
   * server would have to decrypt the second hello on the way through).
   */
  decryptSecond?: (outer: ClientHello) => ClientHello;
}

export interface Output {
  /** Records to send to the client, in order. When `alert` is set, its record is the last one. */
  send: Uint8Array[];
  /** Application data received from the client. */
  data: Uint8Array[];
  /** The connection is over for reading: the client closed (close_notify), sent an error alert, or we failed it. */
  closed: boolean;
  /** We failed the connection with this alert (RFC 8446 §6.2); the alert record ends `send`. Nothing more is read or sent. */
  alert?: AlertName;
  /** Why we failed it: an EchgateError for a protocol failure; anything else is a bug worth logging. */
  error?: unknown;
  /** The client ended the connection with this error alert (its description); per §6.2 nothing is sent back. */
  peerAlert?: number;
  /** Set once when the handshake completes. */
  established?: { sni: string | undefined; alpn: string | undefined; suite: number; ech: boolean; group: number };
}

/**
 * One message per ServerHello on `echgate:tls-key-exchange`: the group chosen
 * and whether HelloRetryRequest came first. No names, no key material.
 */
export const keyExchangeChannel = channel('echgate:tls-key-exchange');
export interface KeyExchangeEvent {
  group: number;
  groupName: string;
  helloRetry: boolean;
  ech: boolean;
}

type State = 'start' | 'wait_ch2' | 'wait_finished' | 'connected' | 'closed';

/**
 * RFC 8446 §4.2.10: a server that does not accept 0-RTT skips the client's
 * early data records, "up to the configured max_early_data_size". We never
 * issue tickets, so no client learnt a max_early_data_size from us; one that
 * offers early_data holds a ticket from some other server for this name.
 * We allow what a common server grants (OpenSSL's default
 * recv_max_early_data is 2^14 bytes of plaintext), counted as ciphertext
 * since we cannot open the records, plus one record's worth of expansion.
 * Past it: unexpected_message (§4.6.1 says the same for a server that
 * accepted early data and receives too much).
 */
export const EARLY_DATA_SKIP_LIMIT = MAX_PLAINTEXT + 256;

/**
 * KeyUpdates (RFC 8446 §4.6.3) a client may send before it has to send
 * application data again. Each one costs us an HKDF-Expand and new cipher
 * state (and, with update_requested, another one plus a record to send),
 * while it costs the client a 22-byte record. §5.1 already limits them to
 * one per record (a message that changes keys must end its record); this
 * limits them per connection: the allowance starts at the burst and grows
 * back by one per non-empty application data record. A real client updates
 * its keys after much data (a record-count limit of its AEAD, §5.5) or on an
 * explicit request, never dozens of times in a row. Over the limit:
 * unexpected_message.
 */
export const KEY_UPDATE_BURST = 8;

const newOutput = (): Output => ({ send: [], data: [], closed: false });

const fail = (alert: AlertName, msg: string) => new EchgateError('ERR_ILLEGAL', msg, { alert });

export class TlsServer {
  private state: State = 'start';
  private suite: CipherSuite | undefined;
  private ks: KeySchedule | undefined;
  private transcript: Transcript | undefined;
  private read: RecordCipher | undefined;
  private write: RecordCipher | undefined;
  private clientHsSecret: Uint8Array | undefined;
  private clientApSecret: Uint8Array | undefined;
  private serverApSecret: Uint8Array | undefined;
  private pendingAppKeys: { client: Uint8Array; server: Uint8Array } | undefined;
  private readonly records = new RecordReader();
  private readonly hs: HandshakeBuffer;
  /** §4.2.10: ciphertext bytes of rejected 0-RTT we may still skip; 0 = skip nothing. */
  private earlySkip: number | undefined;
  private keyUpdateAllowance = KEY_UPDATE_BURST;
  /** The client sent close_notify: we read nothing more, but may still write until we close (§6.1 half-close). */
  private peerClosed = false;
  private hello: ClientHello | undefined;
  private sessionId: Uint8Array = new Uint8Array(0);
  private ech: EchInfo = { offered: false, accepted: false };
  private sni: string | undefined;
  private alpn: string | undefined;
  private ccsSeen = false;
  /** Appendix D.4: one dummy change_cipher_spec after our first handshake message, HRR or ServerHello. */
  private ccsSent = false;
  /** The key-exchange group: asked for in HelloRetryRequest, then used in ServerHello. */
  private group: number | undefined;

  constructor(private readonly o: ServerOptions) {
    this.hs = new HandshakeBuffer(o.maxClientHelloBytes ?? 1 << 16);
  }

  /** Step 1: the first ClientHello (the inner one when ECH was accepted) and the ECH verdict. */
  start(hello: ClientHello, sni: string | undefined, ech: EchInfo): Output {
    if (this.state !== 'start') throw fail('unexpected_message', 'start() called twice');
    this.hello = hello;
    this.sni = sni;
    this.ech = ech;
    this.sessionId = hello.sessionId;
    return this.guard(() => this.onClientHello(hello, false));
  }

  /**
   * Feed bytes from the client. Never throws for anything the client sends:
   * a failure comes back as `alert` (its record last in `send`) and `error`.
   */
  receive(bytes: Uint8Array): Output {
    const out = newOutput();
    if (this.state === 'closed' || this.peerClosed) {
      out.closed = true;
      return out;
    }
    return this.guard(() => {
      this.records.push(bytes);
      this.earlySkip ??= findExtension(this.hello!, ExtensionType.early_data) ? EARLY_DATA_SKIP_LIMIT : 0;
      for (let rec = this.records.next(); rec; rec = this.records.next()) {
        this.onRecord(rec, out);
        // After close_notify or an error alert, later bytes are not read (§6.1, §6.2).
        if ((this.state as State) === 'closed' || this.peerClosed) break;
      }
      return out;
    }, out);
  }

  /** Application data to the client, as protected records. */
  encrypt(data: Uint8Array): Uint8Array[] {
    // Allowed from our Finished on: RFC 8446 §4.4.4 lets a server send data before the client's Finished.
    if ((this.state !== 'connected' && this.state !== 'wait_finished') || !this.write) throw fail('internal_error', 'not connected');
    const out: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += MAX_PLAINTEXT) {
      out.push(this.write.seal(ContentType.application_data, data.subarray(i, Math.min(data.length, i + MAX_PLAINTEXT))));
    }
    return out;
  }

  /** A fatal alert (or close_notify), protected when keys are in place. */
  alert(name: AlertName): Uint8Array {
    const body = alertBody(name);
    this.state = 'closed';
    return this.write ? this.write.seal(ContentType.alert, body) : alertRecord(body);
  }

  get established(): boolean {
    return this.state === 'connected';
  }

  /**
   * Any error while handling client input fails the connection: the alert
   * for it (alertFor, the one table) goes out as the last record, and the
   * output carries it. What was produced before the failure (records to
   * send, authenticated data) is kept in `partial`.
   */
  private guard(fn: () => Output, partial: Output = newOutput()): Output {
    try {
      return fn();
    } catch (e) {
      partial.closed = true;
      partial.error = e;
      if (this.state !== 'closed') {
        partial.alert = alertFor(e);
        try {
          partial.send.push(this.alert(partial.alert));
        } catch {
          // Sealing can only fail on an exhausted sequence number; then close without the alert.
          partial.alert = undefined;
        }
      }
      this.state = 'closed';
      return partial;
    }
  }

  // ---- RFC 8446 §4.1.2 → §4.1.3: ClientHello → ServerHello (or HelloRetryRequest) ----

  private onClientHello(received: ClientHello, second: boolean): Output {
    let ch = received;
    if (second && this.ech.accepted) {
      // The second ClientHelloOuter, opened with the first hello's HPKE context; from here on, the inner one.
      ch = this.ech.decryptSecond!(received);
      if (!ctEqual(ch.random, this.hello!.random)) throw fail('illegal_parameter', 'the second ClientHelloInner changed its random');
      this.hello = ch;
    }
    // Appendix D.5: a hello claiming SSL 3.0 or older is refused outright.
    if (ch.legacyVersion <= 0x0300) throw fail('protocol_version', `ClientHello.legacy_version 0x${ch.legacyVersion.toString(16)}`);
    this.checkVersions(ch);
    if (!ch.compressionMethods.includes(0) || ch.compressionMethods.length !== 1) throw fail('illegal_parameter', 'compression');
    const suite = this.suite ?? CIPHER_SUITES.find((s) => ch.cipherSuites.includes(s.id));
    if (!suite || !ch.cipherSuites.includes(suite.id)) throw fail('handshake_failure', 'no common cipher suite');
    this.suite = suite;
    const ksExt = findExtension(ch, ExtensionType.key_share);
    const groupsExt = findExtension(ch, ExtensionType.supported_groups);
    if (!ksExt || !groupsExt) throw fail('missing_extension', 'key_share and supported_groups are required');
    // Duplicate shares for one group are refused while decoding (illegal_parameter, §4.2.8).
    const shares = decodeKeyShares(ksExt.data);
    const groups = decodeU16List(groupsExt.data, 'supported_groups');
    const sigExt = findExtension(ch, ExtensionType.signature_algorithms);
    if (!sigExt) throw fail('missing_extension', 'signature_algorithms is required');
    const sigAlgs = decodeU16List(sigExt.data, 'signature_algorithms');
    const share = this.selectShare(shares, groups, second);

    if (!this.transcript) this.transcript = new Transcript(this.o.provider, suite.hash);
    this.transcript.add(encodeHandshake(HandshakeType.client_hello, ch.raw!));

    if (!share) {
      if (this.ech.accepted && !this.ech.decryptSecond) throw fail('handshake_failure', 'HelloRetryRequest after ECH acceptance needs the first hello\'s HPKE context (not available in split mode)');
      return this.helloRetry(suite);
    }

    const cert = this.o.certificate(this.sni);
    if (!cert) throw fail('unrecognized_name', 'no certificate for this name');
    const scheme = cert.schemes.find((s) => sigAlgs.includes(s));
    if (scheme === undefined) throw fail('handshake_failure', 'no common signature scheme');

    const alpnExt = findExtension(ch, ExtensionType.application_layer_protocol_negotiation);
    if (alpnExt && this.o.alpn) {
      const offered = decodeAlpn(alpnExt.data);
      this.alpn = this.o.alpn.find((p) => offered.includes(p));
      if (!this.alpn) throw fail('no_application_protocol', 'no common application protocol');
    }

    // ServerHello
    // Invalid shares (wrong length, off the curve, low order, failing FIPS 203 §7.2) → illegal_parameter.
    const kx = groupById(share.group)!.accept(this.o.provider, share.keyExchange, this.o.ephemeral);
    const shared = kx.secret;
    if (keyExchangeChannel.hasSubscribers) {
      keyExchangeChannel.publish({ group: share.group, groupName: groupName(share.group), helloRetry: second, ech: this.ech.accepted } satisfies KeyExchangeEvent);
    }
    const random = this.o.random(32);
    const shExts = serverHelloExtensions(ProtocolVersion.TLS13, { group: share.group, key: kx.share });
    let sh = encodeServerHello({ random, sessionIdEcho: this.sessionId, cipherSuite: suite.id, extensions: shExts });
    if (this.ech.accepted) sh = this.confirmEch(sh);
    this.transcript.add(sh);
    const send: Uint8Array[] = [...plaintextRecords(ContentType.handshake, sh)];
    this.pushCcs(send);

    const ks = new KeySchedule(this.o.provider, suite.hash);
    this.ks = ks;
    const hs = ks.handshake(shared, this.transcript.hash());
    this.clientHsSecret = hs.client;
    this.write = new RecordCipher(suite, trafficKeys(this.o.provider, suite, hs.server));
    this.read = new RecordCipher(suite, trafficKeys(this.o.provider, suite, hs.client));

    // EncryptedExtensions, Certificate, CertificateVerify, Finished
    const ee: { type: number; data: Uint8Array }[] = [];
    if (this.alpn) ee.push({ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn([this.alpn]) });
    // RFC 9849 §7.1: ECH offered but not accepted → retry_configs, if we have keys.
    if (this.ech.offered && !this.ech.accepted && this.o.retryConfigs) {
      ee.push({ type: ExtensionType.encrypted_client_hello, data: this.o.retryConfigs });
    }
    const flight: Uint8Array[] = [encodeEncryptedExtensions(ee), encodeCertificate(cert.chain)];
    for (const m of flight) this.transcript.add(m);
    const cv = encodeCertificateVerify(scheme, cert.sign(scheme, certificateVerifyContent(this.transcript.hash(), true)));
    this.transcript.add(cv);
    const fin = encodeFinished(finishedVerifyData(this.o.provider, suite.hash, hs.server, this.transcript.hash()));
    this.transcript.add(fin);
    const all = concat(...flight, cv, fin);
    for (let i = 0; i < all.length; i += MAX_PLAINTEXT) send.push(this.write.seal(ContentType.handshake, all.subarray(i, i + MAX_PLAINTEXT)));

    this.pendingAppKeys = ks.application(this.transcript.hash());
    this.write = new RecordCipher(suite, trafficKeys(this.o.provider, suite, this.pendingAppKeys.server));
    this.serverApSecret = this.pendingAppKeys.server;
    this.state = 'wait_finished';
    return { send, data: [], closed: false };
  }

  private helloRetry(suite: CipherSuite): Output {
    // §4.4.1: the transcript restarts with message_hash(ClientHello1).
    this.transcript!.replaceWithMessageHash();
    const extensions = serverHelloExtensions(ProtocolVersion.TLS13, { group: this.group! });
    // RFC 9849 §7.2.1: with ECH accepted, an encrypted_client_hello extension (last, so its 8 bytes end the message) confirms it.
    if (this.ech.accepted) extensions.push({ type: ExtensionType.encrypted_client_hello, data: new Uint8Array(8) });
    const hrr = encodeServerHello({ random: HRR_RANDOM, sessionIdEcho: this.sessionId, cipherSuite: suite.id, extensions });
    if (this.ech.accepted) hrr.set(hrrEchConfirmation(this.o.provider, suite.hash, this.hello!.random, this.transcript!, hrr, hrr.length - 8), hrr.length - 8);
    this.transcript!.add(hrr);
    this.state = 'wait_ch2';
    const send = plaintextRecords(ContentType.handshake, hrr);
    this.pushCcs(send);
    return { send, data: [], closed: false };
  }

  /**
   * Appendix D.4 middlebox compatibility: when the client sent a legacy
   * session id, one dummy change_cipher_spec right after our first handshake
   * message — after HelloRetryRequest if there is one, never again after
   * ServerHello.
   */
  private pushCcs(send: Uint8Array[]): void {
    if (this.sessionId.length === 0 || this.ccsSent) return;
    this.ccsSent = true;
    send.push(changeCipherSpecRecord());
  }

  /**
   * RFC 8446 §4.2.8 / §4.1.4 group selection, in server preference order as
   * Go's crypto/tls does it: the first preferred group the client sent a
   * share for; else the first preferred group in its supported_groups (→
   * HelloRetryRequest, returns undefined); else handshake_failure. Sets
   * this.group.
   */
  private selectShare(shares: KeyShareEntry[], supported: number[], second: boolean): KeyShareEntry | undefined {
    // §4.2.8: every share must be for a group the client lists (servers MAY check: we do).
    for (const s of shares) {
      if (!supported.includes(s.group)) throw fail('illegal_parameter', `key share for ${groupName(s.group)}, which supported_groups does not list`);
    }
    if (second) {
      // §4.2.8: after HelloRetryRequest, exactly one share, for the group we asked for.
      if (shares.length !== 1 || shares[0]!.group !== this.group) {
        throw fail('illegal_parameter', `the second ClientHello must carry one key share for ${groupName(this.group!)}`);
      }
      return shares[0];
    }
    const preference = (this.o.groups ?? DEFAULT_GROUPS).filter((g) => groupById(g) !== undefined);
    for (const g of preference) {
      const share = shares.find((s) => s.group === g);
      if (share) {
        this.group = g;
        return share;
      }
    }
    const g = preference.find((x) => supported.includes(x));
    if (g === undefined) throw fail('handshake_failure', 'no key-exchange group in common');
    this.group = g;
    return undefined;
  }

  /**
   * supported_versions must offer TLS 1.3 (RFC 8446 §4.2.1 → protocol_version).
   * With ECH accepted this is ClientHelloInner, which must offer TLS 1.3 and
   * nothing older (RFC 9849 §7.1: illegal_parameter either way; GREASE aside).
   */
  private checkVersions(ch: ClientHello): void {
    const ext = findExtension(ch, ExtensionType.supported_versions);
    const versions = ext ? decodeSupportedVersions(ext.data) : [];
    const tls13 = versions.includes(ProtocolVersion.TLS13);
    if (this.ech.accepted) {
      const older = versions.some((v) => v !== ProtocolVersion.TLS13 && !isGrease(v));
      if (!tls13 || older) throw fail('illegal_parameter', 'ClientHelloInner must offer TLS 1.3 and nothing older');
    } else if (!tls13) {
      throw fail('protocol_version', 'client does not offer TLS 1.3');
    }
  }

  /**
   * RFC 9849 §7.2: the last 8 bytes of ServerHello.random are
   * HKDF-Expand-Label(HKDF-Extract(0, ClientHelloInner.random), "ech accept confirmation",
   * Hash(ClientHelloInner .. ServerHello with those 8 bytes zeroed), 8).
   */
  private confirmEch(sh: Uint8Array): Uint8Array {
    const out = copy(sh);
    out.set(echAcceptConfirmation(this.o.provider, this.suite!.hash, this.hello!.random, this.transcript!, sh), ECH_CONFIRMATION_AT);
    return out;
  }

  // ---- records (RFC 8446 §5) ----

  private onRecord(rec: RawRecord, out: Output): void {
    const { type, header, fragment } = rec;
    if (type === ContentType.application_data) return this.onProtected(header, fragment, out);
    checkPlaintextLength(fragment);
    // §5.1: "if a handshake message is split over two or more records, there MUST NOT be any other records between them."
    if (type !== ContentType.handshake && this.hs.pending) throw fail('unexpected_message', 'a record of another type inside a fragmented handshake message');
    if (type === ContentType.change_cipher_spec) {
      // §5: one CCS of value 1 may arrive between the first ClientHello and the client Finished.
      if (this.state === 'connected' || this.ccsSeen || fragment.length !== 1 || fragment[0] !== 1) throw fail('unexpected_message', 'unexpected change_cipher_spec');
      this.ccsSeen = true;
      return;
    }
    // A client that cannot use our ServerHello has no keys to protect its alert: plaintext alerts until its Finished.
    if (type === ContentType.alert && this.state !== 'connected') return this.onAlert(fragment, out);
    if (type === ContentType.handshake && this.state === 'wait_ch2') {
      // §5.1: no zero-length handshake fragments.
      if (fragment.length === 0) throw fail('unexpected_message', 'empty handshake record');
      const msgs = this.hs.push(fragment);
      if (msgs.length === 0) return;
      // §5.1: the second ClientHello makes us change keys, so it must end its record.
      if (msgs.length > 1 || this.hs.pending) throw fail('unexpected_message', 'handshake data after the second ClientHello');
      out.send.push(...this.onClientHello(decodeClientHelloMessage(msgs[0]!), true).send);
      // §4.2.10: the second ClientHello cannot offer early data; from here on nothing is skipped.
      this.earlySkip = 0;
      return;
    }
    throw fail('unexpected_message', `unexpected record type ${type}`);
  }

  /** An application_data record: protected content, or rejected 0-RTT data to skip (§4.2.10). */
  private onProtected(header: Uint8Array, fragment: Uint8Array, out: Output): void {
    if (this.state === 'wait_ch2') {
      // §4.2.10: after HelloRetryRequest the server skips "all records with an external content type of application_data".
      if (!this.earlySkip) throw fail('unexpected_message', 'application data before the second ClientHello');
      return this.skipEarly(fragment);
    }
    if (!this.read) throw fail('unexpected_message', 'protected record before keys');
    let opened: { type: number; content: Uint8Array } | undefined;
    if (this.state === 'wait_finished' && this.earlySkip) {
      // §4.2.10: records that fail under the handshake key are rejected 0-RTT data; the first that opens starts the client's flight.
      opened = this.read.tryOpen(header, fragment);
      if (!opened) return this.skipEarly(fragment);
      this.earlySkip = 0;
    } else {
      opened = this.read.open(header, fragment);
    }
    const { type: inner, content } = opened;
    if (inner !== ContentType.handshake && this.hs.pending) throw fail('unexpected_message', 'a record of another type inside a fragmented handshake message');
    if (inner === ContentType.alert) return this.onAlert(content, out);
    if (inner === ContentType.handshake) return this.onHandshakeData(content, out);
    if (inner === ContentType.application_data) {
      if (this.state !== 'connected') throw fail('unexpected_message', 'application data before Finished');
      // §5.4: zero-length application data is allowed (traffic analysis cover); it earns no KeyUpdate allowance.
      if (content.length) {
        out.data.push(content);
        if (this.keyUpdateAllowance < KEY_UPDATE_BURST) this.keyUpdateAllowance++;
      }
      return;
    }
    throw fail('unexpected_message', `unexpected inner content type ${inner}`);
  }

  private skipEarly(fragment: Uint8Array): void {
    this.earlySkip! -= fragment.length;
    if (this.earlySkip! < 0) throw fail('unexpected_message', 'more rejected early data than we skip');
  }

  /**
   * §6: an alert is exactly two bytes, never fragmented or coalesced. The
   * level is implicit in the description: close_notify closes gracefully,
   * user_canceled waits for the close_notify that should follow (§6.1),
   * anything else is an error alert and ends the connection, and "upon
   * receiving an error alert, the TLS implementation SHOULD indicate an error
   * to the application and MUST NOT allow any further data to be sent or
   * received" (§6.2) — so nothing goes back, not even a close_notify.
   */
  private onAlert(body: Uint8Array, out: Output): void {
    if (body.length === 0) throw fail('unexpected_message', 'empty alert record');
    if (body.length !== 2) throw new EchgateError('ERR_DECODE', `alert record of ${body.length} bytes`, { alert: 'decode_error' });
    const desc = body[1]!;
    if (desc === AlertDescription.user_canceled) return;
    out.closed = true;
    if (isClosureAlert(desc) && this.state === 'connected') {
      // §6.1: close_notify closes the client's write side only; the backend's answer may still go out.
      this.peerClosed = true;
      return;
    }
    this.state = 'closed';
    if (!isClosureAlert(desc)) out.peerAlert = desc;
  }

  private onHandshakeData(content: Uint8Array, out: Output): void {
    const msgs = this.hs.push(content);
    for (let i = 0; i < msgs.length; i++) {
      // §5.1: "Handshake messages MUST NOT span key changes": a message after which keys change must end its record.
      this.onHandshakeMessage(msgs[i]!, i === msgs.length - 1 && this.hs.pending === 0, out);
    }
  }

  // ---- §4.4.4 client Finished, then §4.6.3 KeyUpdate ----

  private onHandshakeMessage(msg: Uint8Array, endsRecord: boolean, out: Output): void {
    const type = msg[0]!;
    const body = msg.subarray(4);
    if (this.state === 'wait_finished') {
      if (type !== HandshakeType.finished) throw fail('unexpected_message', `expected Finished, got ${type}`);
      if (!endsRecord) throw fail('unexpected_message', 'handshake data after Finished in the same record');
      const expected = finishedVerifyData(this.o.provider, this.suite!.hash, this.clientHsSecret!, this.transcript!.hash());
      // §4.4.4: verify_data is Hash.length bytes; a wrong length is malformed (decode_error), a wrong value decrypt_error.
      if (body.length !== expected.length) throw new EchgateError('ERR_DECODE', `Finished of ${body.length} bytes`, { alert: 'decode_error' });
      if (!ctEqual(body, expected)) throw fail('decrypt_error', 'client Finished does not verify');
      this.transcript!.add(msg);
      this.read = new RecordCipher(this.suite!, trafficKeys(this.o.provider, this.suite!, this.pendingAppKeys!.client));
      this.clientApSecret = this.pendingAppKeys!.client;
      this.pendingAppKeys = undefined;
      this.state = 'connected';
      out.established = { sni: this.sni, alpn: this.alpn, suite: this.suite!.id, ech: this.ech.accepted, group: this.group! };
      return;
    }
    if (this.state === 'connected' && type === HandshakeType.key_update) {
      // §4.6.3: struct { KeyUpdateRequest request_update; } — one byte, 0 or 1.
      if (body.length !== 1) throw new EchgateError('ERR_DECODE', `KeyUpdate of ${body.length} bytes`, { alert: 'decode_error' });
      if (body[0]! > 1) throw fail('illegal_parameter', `KeyUpdate request_update ${body[0]}`);
      if (!endsRecord) throw fail('unexpected_message', 'handshake data after KeyUpdate in the same record');
      if (this.keyUpdateAllowance === 0) throw fail('unexpected_message', `more than ${KEY_UPDATE_BURST} KeyUpdates without application data`);
      this.keyUpdateAllowance--;
      this.clientApSecret = this.ks!.nextTrafficSecret(this.clientApSecret!);
      this.read = new RecordCipher(this.suite!, trafficKeys(this.o.provider, this.suite!, this.clientApSecret));
      if (body[0] === 1) {
        out.send.push(this.write!.seal(ContentType.handshake, encodeHandshake(HandshakeType.key_update, Uint8Array.of(0))));
        this.serverApSecret = this.ks!.nextTrafficSecret(this.serverApSecret!);
        this.write = new RecordCipher(this.suite!, trafficKeys(this.o.provider, this.suite!, this.serverApSecret));
      }
      return;
    }
    throw fail('unexpected_message', `unexpected handshake message ${type}`);
  }
}
