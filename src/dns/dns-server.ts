/**
 * The embedded authoritative DNS over UDP and TCP (RFC 1035 §4.2, RFC 7766):
 * the same zone and answers as the DoH server, for resolvers that delegate a
 * zone to echgate and for dig/kdig.
 *
 * What a remote client can cost us is bounded:
 * - UDP: a reply never exceeds the client's payload size (512 without EDNS)
 *   and carries at most one question, so it is never much larger than the
 *   query (no amplifier).
 * - TCP: a cap on connections overall and per client address; a query must
 *   arrive whole within `queryTimeoutMs` of its first byte (a byte now and
 *   then does not keep a connection); an idle connection closes after
 *   `idleTimeoutMs` (RFC 7766 §6.2.3); replies the client does not read stop
 *   us reading its further queries (RFC 7766 §6.2.1.1 pipelining, with
 *   backpressure), and a client that takes none of them for `idleTimeoutMs`
 *   is closed.
 * - Any exception while handling one datagram or connection ends that one,
 *   goes to `onError`, and never reaches the process.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { answerQuery } from './answer.js';
import type { Zone } from './zone.js';

export interface DnsTcpLimits {
  /** Open TCP connections at most; more are closed at once. */
  maxConnections: number;
  /** Open TCP connections from one client address at most. */
  maxConnectionsPerIP: number;
  /** An idle connection (no partial query, no reply waiting) closes after this long. */
  idleTimeoutMs: number;
  /** A query must arrive whole within this long of its first byte. */
  queryTimeoutMs: number;
}

export const DEFAULT_TCP_LIMITS: DnsTcpLimits = {
  maxConnections: 256,
  maxConnectionsPerIP: 16,
  // RFC 7766 §6.2.3: servers may close idle connections after a few seconds.
  idleTimeoutMs: 10_000,
  queryTimeoutMs: 5_000,
};

/** Replies waiting in a connection's send buffer before we stop reading its queries. */
const MAX_QUEUED_BYTES = 64 * 1024;

export type DnsTransport = 'udp' | 'tcp';

/** Why a connection or query was refused or cut (DnsServerOptions.onLimit). */
export type DnsLimit = 'maxConnections' | 'maxConnectionsPerIP' | 'queryTimeout' | 'idleTimeout' | 'malformed';

export interface DnsServerOptions {
  host: string;
  /** 0 picks a free port; UDP then binds the port TCP got. */
  port: number;
  zone: () => Zone;
  tcp?: Partial<DnsTcpLimits>;
  /** Called for every query answered, with its question and rcode (arguments, not an object: one call per query). */
  onQuery?: (name: string, type: number, rcode: number, transport: DnsTransport) => void;
  /** Called with unexpected internal errors (the query or connection is dropped, the server goes on). */
  onError?: (err: unknown, transport: DnsTransport) => void;
  /**
   * Called when a TCP connection is refused or closed by a limit, or a query is dropped as malformed (UDP: a
   * datagram with no question, answered FORMERR or not at all; TCP: a zero length or a message with no reply,
   * which closes the connection). For echgate_listener_refusals_total and the warning (dns/service.ts).
   */
  onLimit?: (what: DnsLimit, transport: DnsTransport) => void;
}

export interface DnsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The answer options, made once (not an object per query). `shared`: the
 * reply's octets are done with before the next query is answered, so a cached
 * answer is sent from the cache's own buffer (answer.ts QueryOptions). TCP
 * always copies the reply into its length-prefixed frame at once; UDP only
 * when nothing waits in the socket's send queue (see the 'message' handler).
 */
const OVER_UDP = { udp: true };
const OVER_UDP_SHARED = { udp: true, shared: true };
const OVER_TCP = { udp: false, shared: true };
/** The address `literalLookup` checked last, and its family. */
let lastLiteral: string | undefined;
let lastFamily = 0;

/**
 * dgram resolves the address of every datagram it sends; node's own lookup
 * answers an IP literal one tick later (a nextTick and the tick queue per
 * reply). Our replies go to the literal the query came from, and the socket
 * binds the literal the TCP listener got: answered at once, so a datagram is
 * sent inside the send call.
 */
export function literalLookup(address: string, _family: unknown, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  // The last address checked is remembered: replies mostly go to the few addresses of the resolvers
  // that ask, and net.isIP is a pattern match per call.
  if (address === lastLiteral) return cb(null, address, lastFamily);
  const f = net.isIP(address);
  if (f === 0) return cb(Object.assign(new Error(`not an IP address: ${address}`), { code: 'EINVAL' }), address, 0);
  lastLiteral = address;
  lastFamily = f;
  cb(null, address, f);
}

export async function startDnsServer(o: DnsServerOptions): Promise<DnsServer> {
  const limits: DnsTcpLimits = { ...DEFAULT_TCP_LIMITS, ...o.tcp };
  const fail = (e: unknown, transport: DnsTransport) => {
    try {
      o.onError?.(e, transport);
    } catch {
      // a failing error hook must not take the listener down either
    }
  };
  const onQuery = o.onQuery;
  const limit = (what: DnsLimit, transport: DnsTransport) => {
    try {
      o.onLimit?.(what, transport);
    } catch (e) {
      fail(e, transport);
    }
  };
  const respond = (msg: Uint8Array, opts: typeof OVER_UDP, transport: DnsTransport): Uint8Array | undefined => {
    const r = answerQuery(o.zone(), msg, opts);
    if (r.question) {
      if (onQuery) onQuery(r.question.name, r.question.type, r.rcode!, transport);
    } else limit('malformed', transport);
    return r.body;
  };

  const open = new Set<net.Socket>();
  const perIp = new Map<string, number>();
  const tcp = net.createServer({ noDelay: true }, (conn) => {
    const ip = conn.remoteAddress ?? '';
    const fromIp = perIp.get(ip) ?? 0;
    if (open.size >= limits.maxConnections || fromIp >= limits.maxConnectionsPerIP) {
      limit(open.size >= limits.maxConnections ? 'maxConnections' : 'maxConnectionsPerIP', 'tcp');
      conn.on('error', () => {});
      return void conn.destroy();
    }
    open.add(conn);
    perIp.set(ip, fromIp + 1);
    let timer: NodeJS.Timeout | undefined;
    /** Whether a query was answered on this connection: its later idle close is routine (RFC 7766 §6.2.3), not reported. */
    let served = false;
    const arm = (ms: number, why: 'queryTimeout' | 'idleTimeout') => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (why === 'queryTimeout' || !served || blocked) limit(why, 'tcp');
        conn.destroy();
      }, ms);
    };
    conn.once('close', () => {
      clearTimeout(timer);
      open.delete(conn);
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n > 0) perIp.set(ip, n);
      else perIp.delete(ip);
    });
    conn.on('error', () => conn.destroy());
    arm(limits.idleTimeoutMs, 'idleTimeout');

    let buf: Buffer = Buffer.alloc(0);
    let blocked = false;
    /** Answer every whole query in `buf` (RFC 7766 §6.2.1: back to back), until the send buffer fills. */
    const drainQueries = () => {
      const hadPartial = buf.length > 0;
      let answered = false;
      while (!blocked && buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len === 0) {
          limit('malformed', 'tcp');
          return void conn.destroy();
        }
        if (buf.length < 2 + len) break;
        const body = respond(buf.subarray(2, 2 + len), OVER_TCP, 'tcp');
        buf = buf.subarray(2 + len);
        answered = true;
        served = true;
        // No reply (a response sent to us, bytes without a header): nothing sensible follows on this stream.
        if (!body || body.length > 0xffff) return void conn.destroy();
        const framed = Buffer.allocUnsafe(2 + body.length);
        framed.writeUInt16BE(body.length, 0);
        framed.set(body, 2);
        if (!conn.write(framed) || conn.writableLength > MAX_QUEUED_BYTES) blocked = true;
      }
      if (blocked) {
        // The client is not reading its replies: read no more of its queries until it does.
        conn.pause();
        arm(limits.idleTimeoutMs, 'idleTimeout');
      } else if (buf.length === 0) arm(limits.idleTimeoutMs, 'idleTimeout');
      else if (answered || !hadPartial) arm(limits.queryTimeoutMs, 'queryTimeout'); // a new query began in this chunk
      // else: more bytes of the query already under way; its deadline stands.
    };
    const guarded = (f: () => void) => {
      try {
        f();
      } catch (e) {
        fail(e, 'tcp');
        conn.destroy();
      }
    };
    conn.on('data', (chunk: Buffer) =>
      guarded(() => {
        const wasEmpty = buf.length === 0;
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        if (wasEmpty) arm(limits.queryTimeoutMs, 'queryTimeout');
        drainQueries();
      }),
    );
    conn.on('drain', () =>
      guarded(() => {
        if (!blocked) return;
        blocked = false;
        const hadPartial = buf.length > 0;
        if (hadPartial) arm(limits.queryTimeoutMs, 'queryTimeout');
        drainQueries();
        if (!blocked && !conn.destroyed) conn.resume();
      }),
    );
  });
  tcp.on('error', (e) => fail(e, 'tcp'));
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(o.port, o.host, () => {
      tcp.removeListener('error', reject);
      resolve();
    });
  });
  // UDP binds where TCP did: a host name is resolved once, by the TCP listen, and both serve the same address.
  const { port, address } = tcp.address() as net.AddressInfo;

  const udp = dgram.createSocket({ type: net.isIPv6(address) ? 'udp6' : 'udp4', lookup: literalLookup });
  udp.on('message', (msg, rinfo) => {
    try {
      if (rinfo.port === 0) return;
      // With nothing in the socket's send queue, the reply leaves inside send() (libuv tries the send at
      // once) and a cached answer can go out from the cache's own octets. If that send is queued instead,
      // it holds the buffer until it is sent; the queue is then not empty, and the replies that follow are
      // copies until it drains. (`getSendQueueCount`: node >= 18.8.)
      const body = respond(msg, udp.getSendQueueCount() === 0 ? OVER_UDP_SHARED : OVER_UDP, 'udp');
      // No send callback: it costs a request object and a tick per reply, and a send that fails is a lost
      // datagram like any other on UDP: the client asks again (RFC 1035 §4.2.1).
      if (body) udp.send(body, rinfo.port, rinfo.address);
    } catch (e) {
      fail(e, 'udp');
    }
  });
  udp.on('error', (e) => fail(e, 'udp'));
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, address, () => {
      udp.removeListener('error', reject);
      resolve();
    });
  }).catch((e) => {
    tcp.close();
    throw e;
  });

  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        udp.close();
        tcp.close(() => resolve());
        // Open TCP connections would hold close() until their idle timeout.
        for (const c of open) c.destroy();
      }),
  };
}
