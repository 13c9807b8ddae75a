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
import { ctEqual, wipe } from '../bytes/util.js';
import { type CryptoProvider, HASH_SIZE, type X25519Private } from '../crypto/provider.js';
import { type AlertName, EchgateError } from '../errors.js';
import { alertBody, alertFor, isClosureAlert } from '../wire/tls/alert.js';
import { type ClientHello, decodeClientHelloMessage, findExtension } from '../wire/tls/client-hello.js';
import { AlertDescription, ContentType, ExtensionType, HandshakeType, isGrease, MAX_PLAINTEXT, ProtocolVersion } from '../wire/tls/constants.js';
import { decodeAlpn, decodeKeyShares, decodeSupportedVersions, decodeU16List, encodeAlpn, type KeyShareEntry } from '../wire/tls/extensions.js';
import { encodeHandshake } from '../wire/tls/handshake.js';
import { alertRecord, changeCipherSpecRecord, checkPlaintextLength, plaintextRecords, type RawRecord, RecordReader } from '../wire/tls/record.js';
import {
  certificateMessage,
  certificateVerifyContent,
  EMPTY_ENCRYPTED_EXTENSIONS,
  encodeEncryptedExtensions,
  encodeServerHello,
  HRR_RANDOM,
  serverHelloExtensions,
  serverHelloRecord,
} from '../wire/tls/server-messages.js';
import { type CipherSuite, CIPHER_SUITES, finishedVerifyDataFrom, handshakeTrafficKeys, KeySchedule, nextTrafficSecret, trafficKeys } from './key-schedule.js';
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
  /**
   * The certificate for a server name (the inner SNI when ECH was accepted),
   * given the client's signature_algorithms: when several cover the name, one
   * the client can verify (RFC 8446 §4.4.2.2; tls13/certs.ts certificateSelector).
   */
  certificate: (sni: string | undefined, sigAlgs: readonly number[]) => CertifiedKey | undefined;
  /** Application protocols we accept, in preference order; absent = no ALPN. */
  alpn?: readonly string[];
  /** ECHConfigList to send as retry_configs when ECH was offered but not accepted. */
  retryConfigs?: Uint8Array;
  /**
   * Extensions added to EncryptedExtensions as given, after echgate's own: the
   * ESNI nonce echo (draft-ietf-tls-esni-02 §5.2, proxy/esni-classifier.ts).
   */
  extraEncryptedExtensions?: readonly { type: number; data: Uint8Array }[];
  /** Cap on a handshake message from the client, header included: binds the second ClientHello (after HelloRetryRequest) like the first. Default 64 KiB. */
  maxClientHelloBytes?: number;
  /** A monotonic clock in milliseconds (the KeyUpdate allowance grows with time); absent = performance.now(). Tests pin it. */
  now?: () => number;
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

/**
 * One message on `echgate:tls-record-limit` each time a connection is failed
 * for a DoS bound the RFC does not set (MAX_USELESS_RECORDS, KEY_UPDATE_BURST):
 * which one. The alert itself is counted with every other we send
 * (echgate_tls_alerts_sent_total{alert="unexpected_message"}); this tells
 * them apart for a metric or a test. No names, no key material.
 */
export const recordLimitChannel = channel('echgate:tls-record-limit');
export interface RecordLimitEvent {
  limit: 'useless_records' | 'key_updates';
}

/**
 * The handshake as a sequence of states (RFC 8446 §4 / Appendix A.2), each
 * holding exactly the secrets and transcript its next step needs. A step
 * consumes the state it was given and installs the next one, so nothing is
 * read before it exists, and what a later state no longer needs (the
 * handshake traffic secrets after the client Finished, the transcript, the
 * handshake secret inside the key schedule) is not kept, and wiped where that
 * is cheap.
 */
type State = ExpectClientHello | ExpectSecondClientHello | ExpectFinished | Traffic | Closed;

/** Before start(): nothing yet. */
interface ExpectClientHello {
  readonly kind: 'expect_client_hello';
}

/** After our HelloRetryRequest (§4.1.4): waiting for the second ClientHello. */
interface ExpectSecondClientHello {
  readonly kind: 'expect_second_client_hello';
  /** The first ClientHello's random (the inner one with ECH accepted): the second must carry it (RFC 9849 §7.1.1) and the ECH confirmation is keyed by it. */
  readonly clientRandom: Uint8Array;
  /** §4.1.4: the suite of the HelloRetryRequest is the suite of the ServerHello. */
  readonly suite: CipherSuite;
  /** The group we asked a key share for. */
  readonly group: number;
  /** message_hash(ClientHello1) .. HelloRetryRequest (§4.4.1). */
  readonly transcript: Transcript;
  /** With ECH accepted: opens the second ClientHelloOuter (RFC 9849 §7.1.1). */
  readonly decryptSecond: ((outer: ClientHello) => ClientHello) | undefined;
}

/** Our flight is out, written under the application key; the client's Finished (§4.4.4) is next, under its handshake key. */
interface ExpectFinished {
  readonly kind: 'expect_finished';
  readonly suite: CipherSuite;
  readonly group: number;
  readonly alpn: string | undefined;
  /** Holds the handshake secret until the client Finished. */
  readonly ks: KeySchedule;
  /** ClientHello .. server Finished. */
  readonly transcript: Transcript;
  /** Under client_handshake_traffic_secret. */
  readonly read: RecordCipher;
  /** Under server_application_traffic_secret_0 (§4.4.4: we may send data before the client's Finished). */
  write: RecordCipher;
  readonly clientHsSecret: Uint8Array;
  /** finished_key of clientHsSecret (§4.4.4), expanded with its read key (key-schedule.ts handshakeTrafficKeys). */
  readonly clientFinishedKey: Uint8Array;
  readonly clientApSecret: Uint8Array;
  readonly serverApSecret: Uint8Array;
}

/** Application traffic (§4.6.3: KeyUpdate moves a direction to its next secret). */
interface Traffic {
  readonly kind: 'traffic';
  readonly suite: CipherSuite;
  read: RecordCipher;
  write: RecordCipher;
  clientApSecret: Uint8Array;
  serverApSecret: Uint8Array;
}

interface Closed {
  readonly kind: 'closed';
}

const CLOSED: Closed = { kind: 'closed' };
const EXPECT_CLIENT_HELLO: ExpectClientHello = { kind: 'expect_client_hello' };
/** EchInfo without the opener of a second ClientHelloOuter, one constant per verdict (start() sets the real one). */
const ECH_FACTS: readonly EchInfo[] = [
  { offered: false, accepted: false },
  { offered: true, accepted: false },
  { offered: false, accepted: true },
  { offered: true, accepted: true },
];
const echFacts = (e: EchInfo): EchInfo => ECH_FACTS[(e.offered ? 1 : 0) + (e.accepted ? 2 : 0)]!;

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
 * KeyUpdates (RFC 8446 §4.6.3) a client may send in a row without
 * application data. Each one costs us an HKDF-Expand and new cipher state
 * (and, with update_requested, another one plus a record to send), while it
 * costs the client a 22-byte record. §5.1 already limits them to one per
 * record (a message that changes keys must end its record); the RFC sets no
 * other limit, so this one is a DoS bound a real client never meets: the
 * allowance starts at the burst, grows back by one per non-empty application
 * data record and by one per KEY_UPDATE_REFILL_MS of time (a client that
 * only downloads and rekeys on its own schedule, or on a user's command, is
 * never cut). 32 is what BoringSSL (kMaxKeyUpdates), OpenSSL and rustls
 * allow in a row; they refill only on application data, never by time.
 * Over the limit: unexpected_message.
 */
export const KEY_UPDATE_BURST = 32;
/** One more KeyUpdate is allowed per this many milliseconds, up to KEY_UPDATE_BURST. */
export const KEY_UPDATE_REFILL_MS = 10_000;

/**
 * Records in a row that carry nothing (RFC 8446 §5.4 empty application data,
 * padding only; §6.1 user_canceled warning alerts) before the connection is
 * failed with unexpected_message. The RFC allows both without a limit, but
 * each costs an AEAD open and a pass through the read loop for nothing: 10^5
 * empty records were 380 ms of CPU on a connection that stayed open.
 * Go's crypto/tls allows 16 such records in a row (maxUselessRecords) and
 * starts the count again at any record that carries data; OpenSSL allows 32
 * empty records and 5 warning alerts, rustls 32 empty fragments and 4
 * warning alerts. We count as Go does: one count for both, reset by a
 * non-empty application data record.
 */
export const MAX_USELESS_RECORDS = 16;

const NO_SESSION_ID = new Uint8Array(0);

const newOutput = (): Output => ({ send: [], data: [], closed: false });

/** `reason`: the access line's stable token for the failures an operator most needs told apart (docs/configuration.md). */
const fail = (alert: AlertName, msg: string, reason?: string) => new EchgateError('ERR_ILLEGAL', msg, { alert, reason });

/**
 * The configured groups we implement, in preference order: per groups list
 * (DEFAULT_GROUPS, or a router's list, which lives as long as its
 * configuration), not per connection.
 */
const implementedGroupLists = new WeakMap<readonly number[], readonly number[]>();
function implementedGroups(groups: readonly number[]): readonly number[] {
  let g = implementedGroupLists.get(groups);
  if (!g) {
    g = groups.filter((x) => groupById(x) !== undefined);
    implementedGroupLists.set(groups, g);
  }
  return g;
}

/**
 * Our first preference the client also lists: loops, not `find` with a
 * closure over the client's list (one closure per call, on every handshake).
 */
function firstIn(ours: readonly number[], theirs: readonly number[]): number | undefined {
  for (const x of ours) if (theirs.includes(x)) return x;
  return undefined;
}
function firstCommon(ours: readonly CipherSuite[], theirs: readonly number[]): CipherSuite | undefined {
  for (const s of ours) if (theirs.includes(s.id)) return s;
  return undefined;
}

/** A handshake message header (§4: msg_type u8, length u24) at `at`. */
function writeHandshakeHeader(b: Uint8Array, at: number, type: number, length: number): void {
  if (length > 0xffffff) throw new EchgateError('ERR_ENCODE', 'handshake body too long');
  b[at] = type;
  b[at + 1] = length >>> 16;
  b[at + 2] = (length >>> 8) & 0xff;
  b[at + 3] = length & 0xff;
}

export class TlsServer {
  private state: State = EXPECT_CLIENT_HELLO;
  // Lending: a protected record is opened before the next is taken, and only its plaintext is kept (onProtected).
  private readonly records = new RecordReader(true);
  private readonly hs: HandshakeBuffer;
  // Facts of the connection, fixed by start().
  private sessionId: Uint8Array = NO_SESSION_ID;
  private ech: EchInfo = ECH_FACTS[0]!;
  private sni: string | undefined;
  /** §4.2.10: ciphertext bytes of rejected 0-RTT we may still skip; 0 = skip nothing. */
  private earlySkip = 0;
  private keyUpdateAllowance = KEY_UPDATE_BURST;
  /** When the KeyUpdate allowance last grew by time, or was last full: the next one is earned KEY_UPDATE_REFILL_MS later. */
  private keyUpdateClock = 0;
  /** Records in a row that carried nothing (MAX_USELESS_RECORDS). */
  private uselessRecords = 0;
  /** The client sent close_notify: we read nothing more, but may still write until we close (§6.1 half-close). */
  private peerClosed = false;
  private ccsSeen = false;
  /** Appendix D.4: one dummy change_cipher_spec after our first handshake message, HRR or ServerHello. */
  private ccsSent = false;

  constructor(private readonly o: ServerOptions) {
    this.hs = new HandshakeBuffer(o.maxClientHelloBytes ?? 1 << 16);
  }

  /** Step 1: the first ClientHello (the inner one when ECH was accepted) and the ECH verdict. */
  start(hello: ClientHello, sni: string | undefined, ech: EchInfo): Output {
    if (this.state.kind !== 'expect_client_hello') throw fail('unexpected_message', 'start() called twice');
    this.sni = sni;
    this.ech = ech;
    this.sessionId = hello.sessionId;
    this.earlySkip = findExtension(hello, ExtensionType.early_data) ? EARLY_DATA_SKIP_LIMIT : 0;
    // try/catch here rather than a closure handed to guard(): one closure fewer per call.
    try {
      return this.onClientHello(hello, undefined);
    } catch (e) {
      return this.failed(e, newOutput());
    }
  }

  /** Closed, or the client sent close_notify: nothing more is read. */
  private readingDone(): boolean {
    return this.state.kind === 'closed' || this.peerClosed;
  }

  /**
   * Feed bytes from the client. Never throws for anything the client sends:
   * a failure comes back as `alert` (its record last in `send`) and `error`.
   */
  receive(bytes: Uint8Array): Output {
    const out = newOutput();
    if (this.readingDone()) {
      out.closed = true;
      return out;
    }
    try {
      if (this.state.kind === 'expect_client_hello') throw fail('internal_error', 'receive() before start()');
      this.records.push(bytes);
      for (let rec = this.records.next(); rec; rec = this.records.next()) {
        this.onRecord(rec, out);
        // After close_notify or an error alert, later bytes are not read (§6.1, §6.2).
        if (this.readingDone()) break;
      }
      return out;
    } catch (e) {
      return this.failed(e, out);
    }
  }

  /**
   * Application data to the client, as protected records (RFC 8446 §5.1: at
   * most 2^14 bytes each), all in one buffer. `into`: a buffer the caller no
   * longer needs (its last write completed), reused for the records when it is
   * large enough; the result is then a view of it.
   */
  encrypt(data: Uint8Array, into?: Uint8Array): Uint8Array[] {
    // Allowed from our Finished on: RFC 8446 §4.4.4 lets a server send data before the client's Finished.
    const st = this.state;
    if (st.kind !== 'traffic' && st.kind !== 'expect_finished') throw fail('internal_error', 'not connected');
    // All records of this chunk in one buffer: one allocation and one socket write (bulk path).
    return data.length ? [st.write.sealAll(ContentType.application_data, data, into)] : [];
  }

  /** A fatal alert (or close_notify), protected when keys are in place. */
  alert(name: AlertName): Uint8Array {
    const body = alertBody(name);
    const st = this.state;
    this.close();
    return st.kind === 'traffic' || st.kind === 'expect_finished' ? st.write.seal(ContentType.alert, body) : alertRecord(body);
  }

  get established(): boolean {
    return this.state.kind === 'traffic';
  }

  /** To Closed: traffic secrets are dropped and wiped (the cipher states too: nothing more is read or sent). */
  private close(): void {
    const st = this.state;
    this.state = CLOSED;
    if (st.kind === 'expect_finished') {
      st.ks.forget();
      wipe(st.clientHsSecret, st.clientFinishedKey, st.clientApSecret, st.serverApSecret);
      st.read.wipe();
    } else if (st.kind === 'traffic') {
      wipe(st.clientApSecret, st.serverApSecret);
      st.read.wipe();
    }
    // The write cipher may just have sealed the alert this close is for; it goes with the state.
  }

  /**
   * Any error while handling client input fails the connection: the alert
   * for it (alertFor, the one table) goes out as the last record, and the
   * output carries it. What was produced before the failure (records to
   * send, authenticated data) is kept in `partial`.
   */
  private failed(e: unknown, partial: Output): Output {
    partial.closed = true;
    partial.error = e;
    if (this.state.kind !== 'closed') {
      partial.alert = alertFor(e);
      try {
        partial.send.push(this.alert(partial.alert));
      } catch {
        // Sealing can only fail on an exhausted sequence number; then close without the alert.
        partial.alert = undefined;
      }
    }
    this.close();
    return partial;
  }

  // ---- RFC 8446 §4.1.2 → §4.1.3: ClientHello → ServerHello (or HelloRetryRequest) ----

  /** The first ClientHello (`retry` undefined) or the second, after our HelloRetryRequest. */
  private onClientHello(received: ClientHello, retry: ExpectSecondClientHello | undefined): Output {
    let ch = received;
    if (retry?.decryptSecond) {
      // The second ClientHelloOuter, opened with the first hello's HPKE context; from here on, the inner one.
      ch = retry.decryptSecond(received);
      if (!ctEqual(ch.random, retry.clientRandom)) throw fail('illegal_parameter', 'the second ClientHelloInner changed its random');
    }
    // Appendix D.5: a hello claiming SSL 3.0 or older is refused outright.
    if (ch.legacyVersion <= 0x0300) throw fail('protocol_version', `ClientHello.legacy_version 0x${ch.legacyVersion.toString(16)}`);
    this.checkVersions(ch);
    if (!ch.compressionMethods.includes(0) || ch.compressionMethods.length !== 1) throw fail('illegal_parameter', 'compression');
    const suite = retry?.suite ?? firstCommon(CIPHER_SUITES, ch.cipherSuites);
    if (!suite || !ch.cipherSuites.includes(suite.id)) throw fail('handshake_failure', 'no common cipher suite', 'no_common_cipher_suite');
    const ksExt = findExtension(ch, ExtensionType.key_share);
    const groupsExt = findExtension(ch, ExtensionType.supported_groups);
    if (!ksExt || !groupsExt) throw fail('missing_extension', 'key_share and supported_groups are required', 'no_key_share');
    // Duplicate shares for one group are refused while decoding (illegal_parameter, §4.2.8).
    const shares = decodeKeyShares(ksExt.data);
    const groups = decodeU16List(groupsExt.data, 'supported_groups');
    const sigExt = findExtension(ch, ExtensionType.signature_algorithms);
    if (!sigExt) throw fail('missing_extension', 'signature_algorithms is required', 'no_signature_algorithms');
    const sigAlgs = decodeU16List(sigExt.data, 'signature_algorithms');
    const { group, share } = this.selectShare(shares, groups, retry?.group);

    const transcript = retry?.transcript ?? new Transcript(this.o.provider, suite.hash);
    transcript.addMessage(HandshakeType.client_hello, ch.raw!);

    if (!share) {
      let decryptSecond: ExpectSecondClientHello['decryptSecond'];
      if (this.ech.accepted) {
        decryptSecond = this.ech.decryptSecond;
        if (!decryptSecond) throw fail('handshake_failure', 'HelloRetryRequest after ECH acceptance needs the first hello\'s HPKE context (not available in split mode)');
      }
      return this.helloRetry({ kind: 'expect_second_client_hello', clientRandom: ch.random, suite, group, transcript, decryptSecond });
    }

    const cert = this.o.certificate(this.sni, sigAlgs);
    if (!cert) throw fail('unrecognized_name', 'no certificate for this name', 'no_certificate');
    const scheme = firstIn(cert.schemes, sigAlgs);
    if (scheme === undefined) throw fail('handshake_failure', 'no common signature scheme', 'no_common_signature_scheme');

    let alpn: string | undefined;
    const alpnExt = findExtension(ch, ExtensionType.application_layer_protocol_negotiation);
    if (alpnExt && this.o.alpn) {
      const offered = decodeAlpn(alpnExt.data);
      alpn = this.o.alpn.find((p) => offered.includes(p));
      if (!alpn) throw fail('no_application_protocol', 'no common application protocol', 'no_common_alpn');
    }

    // ServerHello
    // Invalid shares (wrong length, off the curve, low order, failing FIPS 203 §7.2) → illegal_parameter.
    const kx = groupById(share.group)!.accept(this.o.provider, share.keyExchange, this.o.ephemeral);
    const shared = kx.secret;
    if (keyExchangeChannel.hasSubscribers) {
      keyExchangeChannel.publish({ group: share.group, groupName: groupName(share.group), helloRetry: retry !== undefined, ech: this.ech.accepted } satisfies KeyExchangeEvent);
    }
    const random = this.o.random(32);
    // Straight into its record: ServerHello goes out in plaintext (§5.1).
    const { record: shRecord, message: sh } = serverHelloRecord(random, this.sessionId, suite.id, share.group, kx.share, ProtocolVersion.TLS13);
    if (this.ech.accepted) {
      // RFC 9849 §7.2: the last 8 bytes of ServerHello.random are
      // HKDF-Expand-Label(HKDF-Extract(0, ClientHelloInner.random), "ech accept confirmation",
      // Hash(ClientHelloInner .. ServerHello with those 8 bytes zeroed), 8).
      sh.set(echAcceptConfirmation(this.o.provider, suite.hash, ch.random, transcript, sh), ECH_CONFIRMATION_AT);
    }
    transcript.add(sh);
    const send: Uint8Array[] = [shRecord];
    this.pushCcs(send);

    const ks = new KeySchedule(this.o.provider, suite.hash);
    const hs = ks.handshake(shared, transcript.hash());
    wipe(shared);
    // Each handshake traffic secret's key, iv and finished_key in one go (three HMACs under one secret).
    const serverHs = handshakeTrafficKeys(this.o.provider, suite, hs.server);
    const clientHs = handshakeTrafficKeys(this.o.provider, suite, hs.client);
    const hsWrite = new RecordCipher(suite, serverHs.keys);
    const read = new RecordCipher(suite, clientHs.keys);

    // EncryptedExtensions, Certificate, CertificateVerify, Finished
    const ee: { type: number; data: Uint8Array }[] = [];
    if (alpn) ee.push({ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn([alpn]) });
    // RFC 9849 §7.1: ECH offered but not accepted → retry_configs, if we have keys.
    if (this.ech.offered && !this.ech.accepted && this.o.retryConfigs) {
      ee.push({ type: ExtensionType.encrypted_client_hello, data: this.o.retryConfigs });
    }
    if (this.o.extraEncryptedExtensions) ee.push(...this.o.extraEncryptedExtensions);
    const eeMsg = ee.length ? encodeEncryptedExtensions(ee) : EMPTY_ENCRYPTED_EXTENSIONS;
    // Encoded once per certificate chain (wire/tls/server-messages.ts): no per-handshake certificate extensions.
    const certMsg = certificateMessage(cert.chain);
    transcript.add(eeMsg);
    transcript.add(certMsg);
    const signature = cert.sign(scheme, certificateVerifyContent(transcript.hash(), true));
    // The whole flight in one buffer, each message written in place (§4.4.3 CertificateVerify: scheme u16,
    // signature<0..2^16-1>; §4.4.4 Finished: verify_data), then added to the transcript as a view.
    const hashLen = HASH_SIZE[suite.hash];
    const cvAt = eeMsg.length + certMsg.length;
    const finAt = cvAt + 4 + 4 + signature.length;
    const all = new Uint8Array(finAt + 4 + hashLen);
    all.set(eeMsg);
    all.set(certMsg, eeMsg.length);
    writeHandshakeHeader(all, cvAt, HandshakeType.certificate_verify, 4 + signature.length);
    all[cvAt + 4] = scheme >>> 8;
    all[cvAt + 5] = scheme & 0xff;
    all[cvAt + 6] = signature.length >>> 8;
    all[cvAt + 7] = signature.length & 0xff;
    all.set(signature, cvAt + 8);
    transcript.add(all.subarray(cvAt, finAt));
    all.set(finishedVerifyDataFrom(this.o.provider, suite.hash, serverHs.finishedKey, transcript.hash()), finAt + 4);
    writeHandshakeHeader(all, finAt, HandshakeType.finished, hashLen);
    transcript.add(all.subarray(finAt));
    for (let i = 0; i < all.length; i += MAX_PLAINTEXT) send.push(hsWrite.seal(ContentType.handshake, all.subarray(i, i + MAX_PLAINTEXT)));
    // Our handshake write key has done its work: the server handshake secret is not needed again.
    hsWrite.wipe();
    wipe(hs.server, serverHs.finishedKey);

    const app = ks.application(transcript.hash());
    this.state = {
      kind: 'expect_finished',
      suite,
      group,
      alpn,
      ks,
      transcript,
      read,
      write: new RecordCipher(suite, trafficKeys(this.o.provider, suite, app.server)),
      clientHsSecret: hs.client,
      clientFinishedKey: clientHs.finishedKey,
      clientApSecret: app.client,
      serverApSecret: app.server,
    };
    return { send, data: [], closed: false };
  }

  private helloRetry(next: ExpectSecondClientHello): Output {
    const { suite, transcript } = next;
    // §4.4.1: the transcript restarts with message_hash(ClientHello1).
    transcript.replaceWithMessageHash();
    const extensions = serverHelloExtensions(ProtocolVersion.TLS13, { group: next.group });
    // RFC 9849 §7.2.1: with ECH accepted, an encrypted_client_hello extension (last, so its 8 bytes end the message) confirms it.
    if (this.ech.accepted) extensions.push({ type: ExtensionType.encrypted_client_hello, data: new Uint8Array(8) });
    const hrr = encodeServerHello({ random: HRR_RANDOM, sessionIdEcho: this.sessionId, cipherSuite: suite.id, extensions });
    if (this.ech.accepted) hrr.set(hrrEchConfirmation(this.o.provider, suite.hash, next.clientRandom, transcript, hrr, hrr.length - 8), hrr.length - 8);
    transcript.add(hrr);
    this.state = next;
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
   * HelloRetryRequest, no share); else handshake_failure. After a
   * HelloRetryRequest (`asked` = the group we asked for), exactly that share.
   */
  private selectShare(shares: KeyShareEntry[], supported: number[], asked: number | undefined): { group: number; share: KeyShareEntry | undefined } {
    // §4.2.8: every share must be for a group the client lists (servers MAY check: we do).
    for (const s of shares) {
      if (!supported.includes(s.group)) throw fail('illegal_parameter', `key share for ${groupName(s.group)}, which supported_groups does not list`);
    }
    if (asked !== undefined) {
      // §4.2.8: after HelloRetryRequest, exactly one share, for the group we asked for.
      const only = shares[0];
      if (shares.length !== 1 || only?.group !== asked) {
        throw fail('illegal_parameter', `the second ClientHello must carry one key share for ${groupName(asked)}`);
      }
      return { group: asked, share: only };
    }
    const preference = implementedGroups(this.o.groups ?? DEFAULT_GROUPS);
    for (const g of preference) {
      for (const share of shares) if (share.group === g) return { group: g, share };
    }
    const g = preference.find((x) => supported.includes(x));
    if (g === undefined) throw fail('handshake_failure', 'no key-exchange group in common', 'no_common_group');
    return { group: g, share: undefined };
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
      throw fail('protocol_version', 'client does not offer TLS 1.3', 'no_tls13');
    }
  }

  // ---- records (RFC 8446 §5) ----

  private onRecord(rec: RawRecord, out: Output): void {
    const { type, header, fragment } = rec;
    if (type === ContentType.application_data) return this.onProtected(header, fragment, out);
    checkPlaintextLength(fragment);
    const st = this.state;
    // §5.1: "if a handshake message is split over two or more records, there MUST NOT be any other records between them."
    if (type !== ContentType.handshake && this.hs.pending) throw fail('unexpected_message', 'a record of another type inside a fragmented handshake message');
    if (type === ContentType.change_cipher_spec) {
      // §5: one CCS of value 1 may arrive between the first ClientHello and the client Finished.
      if (st.kind === 'traffic' || this.ccsSeen || fragment.length !== 1 || fragment[0] !== 1) throw fail('unexpected_message', 'unexpected change_cipher_spec');
      this.ccsSeen = true;
      return;
    }
    // A client that cannot use our ServerHello has no keys to protect its alert: plaintext alerts until its Finished.
    if (type === ContentType.alert && st.kind !== 'traffic') return this.onAlert(fragment, out);
    if (type === ContentType.handshake && st.kind === 'expect_second_client_hello') {
      // §5.1: no zero-length handshake fragments.
      if (fragment.length === 0) throw fail('unexpected_message', 'empty handshake record');
      const msgs = this.hs.push(fragment);
      const msg = msgs[0];
      if (msg === undefined) return;
      // §5.1: the second ClientHello makes us change keys, so it must end its record.
      if (msgs.length > 1 || this.hs.pending) throw fail('unexpected_message', 'handshake data after the second ClientHello');
      out.send.push(...this.onClientHello(decodeClientHelloMessage(msg), st).send);
      // §4.2.10: the second ClientHello cannot offer early data; from here on nothing is skipped.
      this.earlySkip = 0;
      return;
    }
    throw fail('unexpected_message', `unexpected record type ${type}`);
  }

  /** An application_data record: protected content, or rejected 0-RTT data to skip (§4.2.10). */
  private onProtected(header: Uint8Array, fragment: Uint8Array, out: Output): void {
    const st = this.state;
    if (st.kind === 'expect_second_client_hello') {
      // §4.2.10: after HelloRetryRequest the server skips "all records with an external content type of application_data".
      if (!this.earlySkip) throw fail('unexpected_message', 'application data before the second ClientHello');
      return this.skipEarly(fragment);
    }
    if (st.kind !== 'expect_finished' && st.kind !== 'traffic') throw fail('unexpected_message', 'protected record before keys');
    let opened: { type: number; content: Uint8Array } | undefined;
    if (st.kind === 'expect_finished' && this.earlySkip) {
      // §4.2.10: records that fail under the handshake key are rejected 0-RTT data; the first that opens starts the client's flight.
      opened = st.read.tryOpen(header, fragment);
      if (!opened) return this.skipEarly(fragment);
      this.earlySkip = 0;
    } else {
      opened = st.read.open(header, fragment);
    }
    const { type: inner, content } = opened;
    if (inner !== ContentType.handshake && this.hs.pending) throw fail('unexpected_message', 'a record of another type inside a fragmented handshake message');
    if (inner === ContentType.alert) return this.onAlert(content, out);
    if (inner === ContentType.handshake) return this.onHandshakeData(content, out);
    if (inner === ContentType.application_data) {
      if (st.kind !== 'traffic') throw fail('unexpected_message', 'application data before Finished');
      // §5.4: zero-length application data is allowed (traffic analysis cover); it earns no KeyUpdate allowance,
      // and only MAX_USELESS_RECORDS of them in a row are read.
      if (content.length) {
        out.data.push(content);
        this.uselessRecords = 0;
        if (this.keyUpdateAllowance < KEY_UPDATE_BURST) this.keyUpdateAllowance++;
      } else this.uselessRecord('empty application data');
      return;
    }
    throw fail('unexpected_message', `unexpected inner content type ${inner}`);
  }

  /** A record that carried nothing: past MAX_USELESS_RECORDS in a row, unexpected_message (RFC 8446 §6.2: "an inappropriate message … was received"). */
  private uselessRecord(what: string): void {
    if (++this.uselessRecords <= MAX_USELESS_RECORDS) return;
    if (recordLimitChannel.hasSubscribers) recordLimitChannel.publish({ limit: 'useless_records' } satisfies RecordLimitEvent);
    throw fail('unexpected_message', `more than ${MAX_USELESS_RECORDS} records in a row without data (the last: ${what})`, 'useless_records_cap');
  }

  private skipEarly(fragment: Uint8Array): void {
    this.earlySkip -= fragment.length;
    if (this.earlySkip < 0) throw fail('unexpected_message', 'more rejected early data than we skip');
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
    if (desc === AlertDescription.user_canceled) return this.uselessRecord('a user_canceled alert');
    out.closed = true;
    if (isClosureAlert(desc) && this.state.kind === 'traffic') {
      // §6.1: close_notify closes the client's write side only; the backend's answer may still go out.
      this.peerClosed = true;
      return;
    }
    this.close();
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
    const st = this.state;
    if (st.kind === 'expect_finished') return this.onFinished(st, type, msg, endsRecord, out);
    if (st.kind === 'traffic' && type === HandshakeType.key_update) return this.onKeyUpdate(st, body, endsRecord, out);
    throw fail('unexpected_message', `unexpected handshake message ${type}`);
  }

  /** §4.4.4: the client Finished verifies; from here on, application traffic keys only. */
  private onFinished(st: ExpectFinished, type: number, msg: Uint8Array, endsRecord: boolean, out: Output): void {
    const body = msg.subarray(4);
    if (type !== HandshakeType.finished) throw fail('unexpected_message', `expected Finished, got ${type}`);
    if (!endsRecord) throw fail('unexpected_message', 'handshake data after Finished in the same record');
    const expected = finishedVerifyDataFrom(this.o.provider, st.suite.hash, st.clientFinishedKey, st.transcript.hash());
    // §4.4.4: verify_data is Hash.length bytes; a wrong length is malformed (decode_error), a wrong value decrypt_error.
    if (body.length !== expected.length) throw new EchgateError('ERR_DECODE', `Finished of ${body.length} bytes`, { alert: 'decode_error' });
    if (!ctEqual(body, expected)) throw fail('decrypt_error', 'client Finished does not verify', 'bad_finished');
    // The handshake secrets, the handshake read key and the transcript end here (no resumption, no post-handshake auth).
    st.ks.forget();
    wipe(st.clientHsSecret, st.clientFinishedKey);
    st.read.wipe();
    this.state = {
      kind: 'traffic',
      suite: st.suite,
      read: new RecordCipher(st.suite, trafficKeys(this.o.provider, st.suite, st.clientApSecret)),
      write: st.write,
      clientApSecret: st.clientApSecret,
      serverApSecret: st.serverApSecret,
    };
    out.established = { sni: this.sni, alpn: st.alpn, suite: st.suite.id, ech: this.ech.accepted, group: st.group };
    // Nor does anything read the hello's legacy_session_id again (a view that keeps the whole ClientHello's
    // bytes alive) or the opener of a second ClientHelloOuter (the HPKE context): an idle connection
    // holds neither (docs/benchmarks.md, "Termination cost, fourth pass").
    this.sessionId = NO_SESSION_ID;
    this.ech = echFacts(this.ech);
  }

  /** The KeyUpdate allowance's growth by time (KEY_UPDATE_BURST): one per KEY_UPDATE_REFILL_MS since it was last full. */
  private earnKeyUpdates(): void {
    const now = this.o.now ? this.o.now() : performance.now();
    if (this.keyUpdateAllowance >= KEY_UPDATE_BURST) {
      this.keyUpdateClock = now;
      return;
    }
    const earned = Math.floor((now - this.keyUpdateClock) / KEY_UPDATE_REFILL_MS);
    if (earned <= 0) return;
    this.keyUpdateAllowance = Math.min(KEY_UPDATE_BURST, this.keyUpdateAllowance + earned);
    this.keyUpdateClock = this.keyUpdateAllowance === KEY_UPDATE_BURST ? now : this.keyUpdateClock + earned * KEY_UPDATE_REFILL_MS;
  }

  /** §4.6.3: the client moves to its next traffic secret; with update_requested we follow. */
  private onKeyUpdate(st: Traffic, body: Uint8Array, endsRecord: boolean, out: Output): void {
    // §4.6.3: struct { KeyUpdateRequest request_update; } — one byte, 0 or 1.
    const request = body[0];
    if (body.length !== 1 || request === undefined) throw new EchgateError('ERR_DECODE', `KeyUpdate of ${body.length} bytes`, { alert: 'decode_error' });
    if (request > 1) throw fail('illegal_parameter', `KeyUpdate request_update ${request}`);
    if (!endsRecord) throw fail('unexpected_message', 'handshake data after KeyUpdate in the same record');
    this.earnKeyUpdates();
    if (this.keyUpdateAllowance === 0) {
      if (recordLimitChannel.hasSubscribers) recordLimitChannel.publish({ limit: 'key_updates' } satisfies RecordLimitEvent);
      throw fail('unexpected_message', `more than ${KEY_UPDATE_BURST} KeyUpdates without application data, and more than one per ${KEY_UPDATE_REFILL_MS} ms since`, 'key_update_cap');
    }
    this.keyUpdateAllowance--;
    const p = this.o.provider;
    const client = nextTrafficSecret(p, st.suite.hash, st.clientApSecret);
    wipe(st.clientApSecret);
    st.read.wipe();
    st.clientApSecret = client;
    st.read = new RecordCipher(st.suite, trafficKeys(p, st.suite, client));
    if (request === 1) {
      out.send.push(st.write.seal(ContentType.handshake, encodeHandshake(HandshakeType.key_update, Uint8Array.of(0))));
      const server = nextTrafficSecret(p, st.suite.hash, st.serverApSecret);
      wipe(st.serverApSecret);
      st.write.wipe();
      st.serverApSecret = server;
      st.write = new RecordCipher(st.suite, trafficKeys(p, st.suite, server));
    }
  }
}
