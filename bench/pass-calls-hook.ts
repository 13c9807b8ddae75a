/**
 * Preload for bench/pass-calls.ts (`node --import …/pass-calls-hook.js`):
 * counts the node API calls a proxy process makes (EventEmitter on/once/
 * removeListener/emit by event, process.nextTick, timers, socket methods and
 * address getters, stream pause/resume/read), so two proxies can be compared
 * per connection with counts that load does not move. SIGWINCH zeroes the
 * counts; SIGPWR writes them as JSON to $PASS_CALLS_OUT. The wrappers cost
 * time: only the counts of a hooked process mean anything.
 */
import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { Readable, Writable } from 'node:stream';

const counts = new Map<string, number>();
const bump = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);

type Fn = (this: unknown, ...a: unknown[]) => unknown;
function wrap(proto: object, name: string, label: (self: unknown, a: unknown[]) => string): void {
  const o = proto as Record<string, Fn>;
  const orig = o[name]!;
  o[name] = function (this: unknown, ...a: unknown[]) {
    bump(label(this, a));
    return orig.apply(this, a);
  };
}
const kind = (self: unknown) => (self instanceof net.Socket ? 'Socket' : self instanceof net.Server ? 'Server' : ((self as object)?.constructor?.name ?? '?'));
const ev = (a: unknown[]) => (typeof a[0] === 'symbol' ? a[0].toString() : String(a[0]));

const ee = EventEmitter.prototype as unknown as Record<string, Fn>;
for (const m of ['on', 'prependListener', 'once', 'removeListener', 'removeAllListeners']) {
  if (m === 'on') {
    // on and addListener are one function: wrap it once, put it under both names.
    wrap(ee, 'on', (s, a) => `${kind(s)}.on(${ev(a)})`);
    ee.addListener = ee.on!;
  } else wrap(ee, m, (s, a) => `${kind(s)}.${m}(${ev(a)})`);
}
ee.off = ee.removeListener!;
wrap(ee, 'emit', (s, a) => `${kind(s)}.emit(${ev(a)})`);
for (const m of ['pause', 'resume', 'read', 'push', 'unshift']) wrap(Readable.prototype, m, (s, a) => `${kind(s)}.${m}(${m === 'read' ? String(a[0]) : ''})`);
for (const m of ['write', 'end', 'cork', 'uncork']) wrap(Writable.prototype, m, (s) => `${kind(s)}.${m}()`);
for (const m of ['_getpeername', '_getsockname', 'pause', 'resume', 'setNoDelay', 'setTimeout', 'setKeepAlive', 'address', 'destroy', 'end', 'ref', 'unref']) wrap(net.Socket.prototype, m, () => `Socket.${m}() [net]`);
for (const p of ['remoteAddress', 'remotePort', 'localAddress', 'localPort', 'bytesRead', 'bytesWritten', 'readyState', 'pending']) {
  const d = Object.getOwnPropertyDescriptor(net.Socket.prototype, p);
  // Some are not configurable (remoteAddress, …): their work is _getpeername/_getsockname, counted below.
  if (!d?.get || !d.configurable) continue;
  const get = d.get;
  Object.defineProperty(net.Socket.prototype, p, {
    ...d,
    get(this: net.Socket) {
      bump(`Socket.${p} (get)`);
      return get.call(this);
    },
  });
}
const nt = process.nextTick;
process.nextTick = ((fn: Fn, ...a: unknown[]) => {
  bump(`nextTick(${fn.name || 'anonymous'})`);
  return nt(fn as () => void, ...a);
}) as typeof process.nextTick;
for (const t of ['setTimeout', 'clearTimeout', 'setImmediate', 'queueMicrotask'] as const) {
  const g = globalThis as unknown as Record<string, Fn>;
  const orig = g[t]!;
  g[t] = function (this: unknown, ...a: unknown[]) {
    bump(t);
    return orig.apply(this, a);
  };
}
const pn = performance.now.bind(performance);
performance.now = () => {
  bump('performance.now');
  return pn();
};

process.on('SIGWINCH', () => counts.clear());
process.on('SIGPWR', () => writeFileSync(process.env.PASS_CALLS_OUT!, JSON.stringify(Object.fromEntries(counts))));
