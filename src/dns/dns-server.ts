/**
 * The embedded authoritative DNS over UDP and TCP (RFC 1035 §4.2, RFC 7766):
 * the same zone and answers as the DoH server, for resolvers that delegate a
 * zone to echgate and for dig/kdig. TCP connections are capped in number and
 * idle time, lengths are checked before anything is buffered, and no input
 * reaches the process as an exception.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { answerQuery } from './answer.js';
import type { Zone } from './zone.js';

const TCP_IDLE_MS = 10_000; // RFC 7766 §6.2.3: servers may close idle connections after a few seconds
const TCP_MAX_CONNECTIONS = 256;

export interface DnsServerOptions {
  host: string;
  /** 0 picks a free port; UDP then binds the port TCP got. */
  port: number;
  zone: () => Zone;
  onQuery?: (q: { name: string; type: number; rcode: number; transport: 'udp' | 'tcp' }) => void;
  /** Called with unexpected internal errors (the query is dropped, the server goes on). */
  onError?: (err: unknown) => void;
}

export interface DnsServer {
  port: number;
  close(): Promise<void>;
}

export async function startDnsServer(o: DnsServerOptions): Promise<DnsServer> {
  const respond = (msg: Uint8Array, transport: 'udp' | 'tcp'): Uint8Array | undefined => {
    try {
      const r = answerQuery(o.zone(), msg, { udp: transport === 'udp' });
      if (r.question && o.onQuery) o.onQuery({ name: r.question.name, type: r.question.type, rcode: r.rcode!, transport });
      return r.body;
    } catch (e) {
      o.onError?.(e);
      return undefined;
    }
  };

  const open = new Set<net.Socket>();
  const tcp = net.createServer({ noDelay: true }, (conn) => {
    if (open.size >= TCP_MAX_CONNECTIONS) return void conn.destroy();
    open.add(conn);
    conn.once('close', () => open.delete(conn));
    conn.setTimeout(TCP_IDLE_MS, () => conn.destroy());
    conn.on('error', () => conn.destroy());
    let buf: Buffer = Buffer.alloc(0);
    conn.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      // RFC 7766 §6.2.1: several queries may arrive back to back; answer each in turn.
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len === 0) return void conn.destroy();
        if (buf.length < 2 + len) break;
        const body = respond(new Uint8Array(buf.buffer, buf.byteOffset + 2, len), 'tcp');
        buf = buf.subarray(2 + len);
        if (!body) return void conn.destroy();
        const framed = Buffer.allocUnsafe(2 + body.length);
        framed.writeUInt16BE(body.length, 0);
        framed.set(body, 2);
        conn.write(framed);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(o.port, o.host, () => {
      tcp.removeListener('error', reject);
      resolve();
    });
  });
  const port = (tcp.address() as net.AddressInfo).port;

  const udp = dgram.createSocket({ type: net.isIPv6(o.host) ? 'udp6' : 'udp4' });
  udp.on('message', (msg, rinfo) => {
    if (rinfo.port === 0) return;
    const body = respond(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), 'udp');
    if (body) udp.send(body, rinfo.port, rinfo.address);
  });
  udp.on('error', (e) => o.onError?.(e));
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, o.host, () => {
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
