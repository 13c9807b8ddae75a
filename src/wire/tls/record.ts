/**
 * The TLS record codec (RFC 8446 §5.1), the one place record headers are
 * read and written: a stream deframer (`RecordReader`), the framers for
 * plaintext records, alerts and the dummy ChangeCipherSpec, and the
 * ClientHello peek. No crypto here: record protection (§5.2) is
 * tls13/record-protection.ts, which frames its ciphertext with `recordHeader`.
 *
 * `ClientHelloAssembler` accepts bytes exactly as TCP delivers them (any split,
 * down to one byte at a time), walks the plaintext handshake records, and
 * yields the first complete handshake message once it is whole. It insists on
 * what a ClientHello flight must look like: handshake records only, record
 * fragments of 1..2^14 bytes, first message of type client_hello, and a total
 * size under the caller's cap, at most MAX_HELLO_RECORDS records. Anything
 * else is a typed error that names the alert to send.
 *
 * The walk is incremental: each byte is examined once however the bytes are
 * split into reads and records, so 5,000 one-byte records cost what one
 * 5,000-byte record costs (before, every read re-parsed from the first record).
 */
import { EchgateError } from '../../errors.js';
import { ByteQueue } from './byte-queue.js';
import { ContentType, HandshakeType, MAX_PLAINTEXT } from './constants.js';

/** RFC 8446 §5.2: a ciphertext fragment is at most 2^14 + 256 bytes. */
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 256;

/**
 * RFC 8446 §5.1: legacy_record_version is 0x0303 on every record but the
 * first ClientHello (which may say 0x0301 for old middleboxes).
 */
export const RECORD_VERSION = 0x0303;

export interface RawRecord {
  type: number;
  /** The 5-byte header (the AAD of a protected record, §5.2). */
  header: Uint8Array;
  fragment: Uint8Array;
  /** Header and fragment together, as they came (to relay a record unchanged). */
  bytes: Uint8Array;
}

/** The 5-byte record header: type, legacy_record_version, length (RFC 8446 §5.1). */
export function recordHeader(type: number, length: number, version = RECORD_VERSION): Uint8Array {
  return Uint8Array.of(type, version >> 8, version & 0xff, length >> 8, length & 0xff);
}

/**
 * Cuts a byte stream into records (RFC 8446 §5.1). Bytes are queued per read,
 * never concatenated with what is buffered: a record is a view into the read
 * that carried it, or one copy when it spans reads.
 */
/**
 * Where a protected record that spans reads is put together when its reader
 * lends (RecordReader's `lendProtected`): one buffer for the whole process,
 * the largest record §5.2 allows. A new 16 KiB array per such record (one in
 * four of a bulk upload's full records, which do not line up with 64 KiB
 * reads) was a zeroed allocation, a copy and an external backing store for
 * the GC, 5.5 % of the upload profile in docs/benchmarks.md ("Terminated
 * bulk, tenth pass").
 */
const LENT = new Uint8Array(5 + MAX_CIPHERTEXT);

export class RecordReader {
  private readonly q = new ByteQueue();

  /**
   * `lendProtected`: an application_data record (RFC 8446 §5.2: every
   * protected record) that spans reads comes back as a view of LENT, valid
   * only until the next call to next() of any reader that lends. For a caller
   * that opens each protected record before asking for the next and keeps
   * only the plaintext (a new buffer from the AEAD), never the record.
   * Other records are copied into a new array as before.
   */
  constructor(private readonly lendProtected = false) {}

  push(bytes: Uint8Array): void {
    this.q.push(bytes);
  }

  /** The next whole record, or undefined until more bytes arrive. */
  next(): RawRecord | undefined {
    if (this.q.length < 5) return undefined;
    const len = (this.q.at(3) << 8) | this.q.at(4);
    // §5.2: "TLSCiphertext.length larger than 2^14 + 256 octets MUST" end in record_overflow.
    if (len > MAX_CIPHERTEXT) throw new EchgateError('ERR_DECODE', `record of ${len} bytes exceeds 2^14 + 256`, { alert: 'record_overflow' });
    if (this.q.length < 5 + len) return undefined;
    const rec = this.q.take(5 + len, this.lendProtected && this.q.at(0) === ContentType.application_data ? LENT : undefined);
    return { type: rec[0]!, header: rec.subarray(0, 5), fragment: rec.subarray(5), bytes: rec };
  }

  /** Everything buffered and not yet a whole record, taken out (for a caller that stops deframing and relays the rest). */
  rest(): Uint8Array {
    return this.q.take(this.q.length);
  }

  get buffered(): number {
    return this.q.length;
  }
}

/** §5.1: an unprotected record carries at most 2^14 bytes. */
export function checkPlaintextLength(fragment: Uint8Array): void {
  if (fragment.length > MAX_PLAINTEXT) throw new EchgateError('ERR_DECODE', 'plaintext record over 2^14 bytes', { alert: 'record_overflow' });
}

/**
 * `body` as plaintext records of `type`, fragments of at most `maxFragment`
 * bytes, one record each. An empty body is one empty record (callers that
 * must not send one, §5.1 for handshake and alert, never pass it).
 */
export function plaintextRecords(type: number, body: Uint8Array, maxFragment = MAX_PLAINTEXT, version = RECORD_VERSION): Uint8Array[] {
  if (maxFragment < 1 || maxFragment > MAX_PLAINTEXT) {
    throw new EchgateError('ERR_ENCODE', `fragment size ${maxFragment} out of range`);
  }
  const out: Uint8Array[] = [];
  let i = 0;
  do {
    const frag = body.subarray(i, Math.min(body.length, i + maxFragment));
    const r = new Uint8Array(5 + frag.length);
    r.set(recordHeader(type, frag.length, version));
    r.set(frag, 5);
    out.push(r);
    i += maxFragment;
  } while (i < body.length);
  return out;
}

/** One plaintext alert record around the two bytes of an Alert (RFC 8446 §6): sent before handshake keys exist. */
export function alertRecord(body: Uint8Array): Uint8Array {
  return plaintextRecords(ContentType.alert, body)[0]!;
}

/** RFC 8446 Appendix D.4 / §5: the dummy change_cipher_spec record, a single byte of value 1. */
export function changeCipherSpecRecord(): Uint8Array {
  // Written directly (sent on every connection whose client offered a legacy session id): type 20, 0x0303, length 1, value 1.
  return Uint8Array.of(ContentType.change_cipher_spec, RECORD_VERSION >> 8, RECORD_VERSION & 0xff, 0, 1, 1);
}

export interface AssembledHello {
  /** The handshake message: 4-byte header + ClientHello body. */
  message: Uint8Array;
  /** How many bytes of the stream were consumed (whole records). */
  consumed: number;
  /** How many records carried it. */
  records: number;
  /** The record-layer legacy_version of the first record. */
  recordVersion: number;
}

/** Why the first bytes are not a TLS ClientHello (for metrics and logs). */
export type NotTlsReason = 'not_handshake' | 'sslv2_hello';

/** Classify the very first byte(s) of a connection without waiting for more. */
export function sniffTls(first: Uint8Array): 'tls' | NotTlsReason | 'need_more' {
  if (first.length === 0) return 'need_more';
  const b0 = first[0]!;
  if (b0 === ContentType.handshake) return 'tls';
  // SSL 2.0 compatible CLIENT-HELLO (RFC 6101 App. E / RFC 5246 App. E.2):
  // 2-byte header with the high bit set, then msg_type 1.
  if (b0 & 0x80) {
    if (first.length < 3) return 'need_more';
    if (first[2] === 1) return 'sslv2_hello';
  }
  return 'not_handshake';
}

/**
 * How many records may carry one ClientHello. RFC 8446 §5.1 lets a sender
 * fragment a handshake message however it likes, and some anti-censorship
 * clients do split the hello into many small records; real ClientHellos are
 * under 2 KiB (a post-quantum key share brings them near 1.8 KiB) and come in
 * one record. 256 leaves room for aggressive splitting (records of 8 bytes for
 * a 2 KiB hello) while bounding the per-record work a peer can ask of the peek
 * (a 5-byte header for each 1-byte fragment is 6x the bytes for nothing).
 * More records than this: unexpected_message (the record is not one we take
 * at this point of the flight; record_overflow would wrongly suggest a record
 * that is too long, decode_error a field out of range).
 */
export const MAX_HELLO_RECORDS = 256;

const NO_BYTES = new Uint8Array(0);

export class ClientHelloAssembler {
  // One growable buffer: the first chunk is held without a copy (the common
  // case is a whole ClientHello in one read); later chunks append with
  // capacity doubling, so a 1-byte-at-a-time sender costs O(n), not O(n^2).
  // Nothing allocated per assembler until it is needed: an accepted connection makes one, and
  // two typed arrays made up front (this buffer and the header's) were garbage for the common
  // one-read hello (the passthrough profile; docs/benchmarks.md, "Passthrough cost, eighth pass").
  private buf: Uint8Array = NO_BYTES;
  private len = 0;
  private owned = false;
  private readonly maxBytes: number;
  private readonly maxRecords: number;
  // Incremental parse state: bytes before `pos` have been examined and are
  // never looked at again, so a sender of tiny records costs O(bytes), not
  // O(records × bytes).
  private pos = 0;
  /** Fragment bytes of the current record not yet taken into the message. */
  private recLeft = 0;
  private records = 0;
  private recordVersion = 0;
  /** The handshake message as it fills (allocated once its length is known). */
  private msg: Uint8Array | undefined;
  /** The handshake header while it spans pieces (made only then). */
  private head: Uint8Array | undefined;
  private have = 0;
  private hsLen = -1;
  private result: AssembledHello | undefined;
  /** Bytes examined so far (record headers + fragment bytes). For tests that bound the work. */
  visits = 0;

  /**
   * `maxBytes` caps everything buffered (headers included); `maxRecords`
   * caps how many records may carry the ClientHello (see MAX_HELLO_RECORDS).
   */
  constructor(maxBytes: number, maxRecords = MAX_HELLO_RECORDS) {
    this.maxBytes = maxBytes;
    this.maxRecords = maxRecords;
  }

  get buffered(): number {
    return this.len;
  }

  /** The raw bytes received so far (to replay to a backend). A view, not a copy. */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /**
   * Add bytes. Returns the assembled ClientHello once complete, or undefined
   * when more bytes are needed. Throws EchgateError when the stream cannot be
   * a ClientHello flight or exceeds a cap. After completion, further bytes are
   * only buffered.
   */
  push(chunk: Uint8Array): AssembledHello | undefined {
    if (chunk.length === 0 || this.result) {
      if (chunk.length) this.append(chunk);
      return undefined;
    }
    this.append(chunk);
    const r = this.advance();
    if (r === undefined && this.len > this.maxBytes) {
      throw new EchgateError('ERR_PEEK_TOO_LARGE', `ClientHello exceeds ${this.maxBytes} bytes`, {
        alert: 'record_overflow',
      });
    }
    return r;
  }

  /** Buffer bytes without parsing them (for streams already known not to be TLS). */
  append(chunk: Uint8Array): void {
    if (this.len === 0) {
      this.buf = chunk;
      this.owned = false;
    } else {
      if (!this.owned || this.len + chunk.length > this.buf.length) {
        const next = new Uint8Array(Math.max(this.len + chunk.length, this.len * 2, 1024));
        next.set(this.buf.subarray(0, this.len));
        this.buf = next;
        this.owned = true;
      }
      this.buf.set(chunk, this.len);
    }
    this.len += chunk.length;
  }

  /** Walk from `pos` over what arrived; each byte is examined once. */
  private advance(): AssembledHello | undefined {
    const buf = this.buf;
    while (true) {
      if (this.recLeft > 0) {
        const n = Math.min(this.recLeft, this.len - this.pos);
        if (n === 0) return undefined;
        this.take(buf.subarray(this.pos, this.pos + n));
        this.pos += n;
        this.recLeft -= n;
        // Whole records only: the hello is complete at the end of the record that finishes it.
        if (this.recLeft === 0 && this.hsLen >= 0 && this.have >= this.hsLen + 4) {
          this.result = { message: this.msg!, consumed: this.pos, records: this.records, recordVersion: this.recordVersion };
          return this.result;
        }
        continue;
      }
      const avail = this.len - this.pos;
      if (avail < 5) {
        // A partial header: its content type is already enough to refuse.
        if (avail > 0 && buf[this.pos] !== ContentType.handshake) this.badType(buf[this.pos]!);
        return undefined;
      }
      const p = this.pos;
      this.visits += 5;
      const type = buf[p]!;
      const version = (buf[p + 1]! << 8) | buf[p + 2]!;
      const len = (buf[p + 3]! << 8) | buf[p + 4]!;
      if (type !== ContentType.handshake) this.badType(type);
      if (version >> 8 !== 3) {
        throw new EchgateError('ERR_NOT_TLS', `record version 0x${version.toString(16)} is not TLS`);
      }
      if (this.records === 0) this.recordVersion = version;
      if (len === 0) {
        // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
        throw new EchgateError('ERR_DECODE', 'zero-length handshake record', { alert: 'unexpected_message' });
      }
      if (len > MAX_PLAINTEXT) {
        throw new EchgateError('ERR_DECODE', `record length ${len} exceeds 2^14`, { alert: 'record_overflow' });
      }
      if (this.records >= this.maxRecords) {
        // RFC 8446 §5.1 allows any fragmentation, so this is our limit, not the
        // protocol's: the record is not one we accept at this point of the flight.
        throw new EchgateError('ERR_LIMIT', `ClientHello spread over more than ${this.maxRecords} records`, {
          alert: 'unexpected_message',
        });
      }
      this.records++;
      this.pos += 5;
      this.recLeft = len;
    }
  }

  /** Take fragment bytes into the handshake message. */
  private take(frag: Uint8Array): void {
    this.visits += frag.length;
    let f = frag;
    if (this.hsLen < 0) {
      // Read the handshake header as soon as its 4 bytes exist, even in a
      // partial record, so an oversized or wrong message fails before we wait.
      if (this.have === 0 && f.length >= 4) {
        // The header in one piece (nearly every client): read in place.
        this.hsLen = checkHelloHeader(f, this.maxBytes);
        const total = this.hsLen + 4;
        if (frag.length >= total) {
          // Fast path: the whole message inside one piece: a view, no copy.
          this.msg = frag.subarray(0, total);
          this.have = total;
          return;
        }
        this.msg = new Uint8Array(total);
        this.msg.set(f.subarray(0, 4));
        this.have = 4;
        f = f.subarray(4);
      } else {
        if (!this.head) this.head = new Uint8Array(4);
        const head = this.head;
        const k = Math.min(4 - this.have, f.length);
        head.set(f.subarray(0, k), this.have);
        this.have += k;
        f = f.subarray(k);
        if (this.have < 4) return;
        this.hsLen = checkHelloHeader(head, this.maxBytes);
        this.msg = new Uint8Array(this.hsLen + 4);
        this.msg.set(head);
        this.head = undefined;
      }
    }
    const room = this.hsLen + 4 - this.have;
    if (room > 0) {
      const k = Math.min(room, f.length);
      this.msg!.set(f.subarray(0, k), this.have);
      this.have += k;
    }
  }

  private badType(type: number): never {
    if (this.records === 0) throw new EchgateError('ERR_NOT_TLS', `first record has content type ${type}, not handshake`);
    throw new EchgateError('ERR_DECODE', `record of type ${type} inside the ClientHello flight`, {
      alert: 'unexpected_message',
    });
  }
}

/**
 * Parse as many whole records as `buf` holds. Returns undefined when the
 * ClientHello is not yet complete. Offline use (inspect, tests): no record
 * count limit unless one is given.
 */
export function parseHelloRecords(buf: Uint8Array, maxBytes = Number.MAX_SAFE_INTEGER, maxRecords = Number.MAX_SAFE_INTEGER): AssembledHello | undefined {
  return new ClientHelloAssembler(maxBytes, maxRecords).push(buf);
}

/** A ClientHello handshake header in `head`'s first 4 bytes: the body length. */
function checkHelloHeader(head: Uint8Array, maxBytes: number): number {
  if (head[0] !== HandshakeType.client_hello) {
    throw new EchgateError('ERR_DECODE', `first handshake message is type ${head[0]}, not client_hello`, {
      alert: 'unexpected_message',
    });
  }
  const hsLen = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
  if (hsLen + 4 > maxBytes) {
    throw new EchgateError('ERR_PEEK_TOO_LARGE', `ClientHello of ${hsLen} bytes exceeds cap ${maxBytes}`, {
      alert: 'record_overflow',
    });
  }
  return hsLen;
}

/**
 * A handshake message as plaintext records of at most `maxFragment` bytes,
 * joined into one buffer. The default record version 0x0301 is what a first
 * ClientHello may carry (§5.1); everything else says 0x0303.
 */
export function frameHandshake(message: Uint8Array, maxFragment = MAX_PLAINTEXT, recordVersion = 0x0301): Uint8Array {
  const recs = plaintextRecords(ContentType.handshake, message, maxFragment, recordVersion);
  if (recs.length === 1) return recs[0]!;
  const out = new Uint8Array(recs.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const r of recs) {
    out.set(r, o);
    o += r.length;
  }
  return out;
}
