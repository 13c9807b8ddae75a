/**
 * Byte relay between a client and a backend, both directions, with
 * backpressure and half-close.
 *
 * backend → client (usually the bulk direction) reads with `onread` into a
 * reused buffer: no Readable machinery and no allocation per chunk. The buffer
 * is reused only when the write to the client completed synchronously;
 * otherwise the queued write still holds it, so a fresh one is taken and
 * reading pauses until the client drains.
 * client → backend uses the socket's 'data' events (an accepted socket cannot
 * take `onread`), pausing the client while the backend's buffer is full.
 * EOF on one side ends the other (allowHalfOpen keeps the reverse open).
 */
import net from 'node:net';

const READ_SIZE = 64 * 1024;

// Read buffers are pooled: a fresh 64 KiB ArrayBuffer per connection showed up
// as GC time in the per-connection profile. A buffer goes back to the pool when
// its connection closes (no queued write can reference it then); one handed to
// a queued write is simply dropped and left to the GC.
const pool: Buffer[] = [];
const POOL_MAX = 256;
const acquire = () => pool.pop() ?? Buffer.allocUnsafe(READ_SIZE);
const release = (b: Buffer) => {
  if (pool.length < POOL_MAX) pool.push(b);
};

export interface BackendTarget {
  host: string;
  port: number;
}

/**
 * Connect to the backend with the backend→client half already wired, so not
 * even a server-first greeting can arrive before the relay is in place.
 */
export function connectRelayed(target: BackendTarget, client: net.Socket): net.Socket {
  let buf: Buffer | undefined;
  const resume = () => backend.resume();
  const backend: net.Socket = net.connect({
    host: target.host,
    port: target.port,
    allowHalfOpen: true,
    noDelay: true,
    onread: {
      buffer: () => {
        buf ??= acquire();
        return buf;
      },
      callback(n: number, b: Uint8Array): boolean {
        if (client.destroyed) return false;
        const ok = client.write(b.subarray(0, n));
        // A queued write still references `b`: the next read gets another buffer.
        if (client.writableLength > 0) buf = undefined;
        if (!ok) client.once('drain', resume);
        return ok;
      },
    },
  });
  backend.once('end', () => client.end());
  backend.once('close', () => {
    if (buf && client.writableLength === 0) release(buf);
    buf = undefined;
  });
  return backend;
}

/**
 * Start the client → backend half once the backend is connected. `rewrite`
 * (split mode) maps client bytes to what the backend gets; when it throws,
 * `onRewriteError` ends the connection.
 */
export function relayClientToBackend(client: net.Socket, backend: net.Socket, rewrite?: { push(d: Uint8Array): Uint8Array[] }, onRewriteError?: (e: unknown) => void): void {
  if (rewrite) {
    client.on('data', (d: Buffer) => {
      let parts: Uint8Array[];
      try {
        parts = rewrite.push(d);
      } catch (e) {
        client.removeAllListeners('data');
        onRewriteError?.(e);
        return;
      }
      let ok = true;
      for (const p of parts) ok = backend.write(p) && ok;
      if (!ok) client.pause();
    });
  } else {
    client.on('data', (d: Buffer) => {
      if (!backend.write(d)) client.pause();
    });
  }
  backend.on('drain', () => client.resume());
  client.once('end', () => backend.end());
  client.resume();
}
