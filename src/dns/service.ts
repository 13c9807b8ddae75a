/**
 * The embedded authoritative DNS as `serve` runs it: one zone, answered over
 * plain DNS (UDP+TCP) and/or DoH as configured, with ech= read from the key
 * folder at query time. A reload swaps the zone's names; listener addresses
 * change only with a restart.
 */
import { readFileSync } from 'node:fs';
import { LogLimiter } from '../observe/log-limit.js';
import { createSecureContext } from 'node:tls';
import type { DnsConfig } from '../config/types.js';
import { ConfigError } from '../errors.js';
import type { Logger } from 'pino';
import { rcodeName, typeName } from '../wire/dns/message.js';
import { type DnsLimit, startDnsServer } from './dns-server.js';
import { startDohServer } from './doh-server.js';
import { type EchListSource, type EsniSource, Zone } from './zone.js';

export interface DnsService {
  /** The port plain DNS listens on (UDP and TCP), when it does. */
  readonly port: number | undefined;
  /** Apply a reloaded `dns` section (names and TTL). */
  update(cfg: DnsConfig): void;
  close(): void;
}

/** The DoH listener's certificate and key, read and checked as the TLS stack will use them. */
export function readDohCredentials(doh: NonNullable<DnsConfig['doh']>, file = '(config)'): { cert: string; key: string } {
  try {
    const c = { cert: readFileSync(doh.certFile, 'utf8'), key: readFileSync(doh.keyFile, 'utf8') };
    createSecureContext(c); // a key that does not match the certificate fails here, not at the first query
    return c;
  } catch (e) {
    throw new ConfigError(file, [{ path: 'dns.doh', message: `${doh.certFile} / ${doh.keyFile}: ${(e as Error).message}` }]);
  }
}

/** The label of each DNS limit, in the style of the proxy's outcomes (snake case). */
const DNS_LIMIT_REASON: Record<DnsLimit, string> = {
  maxConnections: 'max_connections',
  maxConnectionsPerIP: 'max_connections_per_ip',
  queryTimeout: 'query_timeout',
  idleTimeout: 'idle_timeout',
  malformed: 'malformed',
};

const where = (cfg: DnsConfig) => JSON.stringify([cfg.listen, cfg.tcp, cfg.doh && { ...cfg.doh, certFile: undefined, keyFile: undefined }]);

/**
 * Counts a query; `type` is a name for the types we serve, else "other", so a client cannot grow the label set.
 * `error` counts a query or connection dropped by an unexpected exception, as
 * echgate_handler_errors_total{listener="dns_udp"|"dns_tcp"|"dns_doh"}: one counter for every listener.
 */
export type QueryCounter = ((q: { transport: string; type: number; rcode: number }) => void) & {
  /** The same count from arguments (no object per query): what the listeners call. */
  add: (transport: string, type: number, rcode: number) => void;
  error?: (transport: string) => void;
  /** echgate_listener_refusals_total{listener="dns_udp"|"dns_tcp"|"dns_doh", reason}. */
  refused?: (listener: string, reason: string) => void;
};

type CounterLike = { inc(labels: Record<string, string>, by?: number): void };

export function queryCounter(metrics: { dnsQueries: CounterLike; handlerErrors?: CounterLike; listenerRefusals?: CounterLike }): QueryCounter {
  // One label object per (transport, type, rcode) seen, built once and kept (at most 1024 of them), and the
  // counts added to the registry once per turn of the event loop (setImmediate, before any scrape can read
  // them): a query costs a Map lookup by number and an add, not two name lookups, a fresh object and the
  // registry's label-key string.
  const labels = new Map<number, { l: Record<string, string>; n: number }>();
  const dirty: { l: Record<string, string>; n: number }[] = [];
  const flush = () => {
    for (const e of dirty) {
      metrics.dnsQueries.inc(e.l, e.n);
      e.n = 0;
    }
    dirty.length = 0;
  };
  const add = (transport: string, type: number, rcode: number) => {
    const t = transport === 'udp' ? 1 : transport === 'tcp' ? 2 : transport === 'doh' ? 3 : 0;
    const k = (t * 0x10000 + (type & 0xffff)) * 0x10000 + (rcode & 0xffff);
    let e = t ? labels.get(k) : undefined;
    if (e === undefined) {
      const l = { transport, type: typeName(type) ?? 'other', rcode: rcodeName(rcode) };
      if (!t || labels.size >= 1024) return metrics.dnsQueries.inc(l);
      e = { l, n: 0 };
      labels.set(k, e);
    }
    if (e.n++ === 0) {
      if (dirty.length === 0) setImmediate(flush);
      dirty.push(e);
    }
  };
  const count: QueryCounter = Object.assign((q: { transport: string; type: number; rcode: number }) => add(q.transport, q.type, q.rcode), { add });
  count.error = (transport) => metrics.handlerErrors?.inc({ listener: `dns_${transport}` });
  count.refused = (listener, reason) => metrics.listenerRefusals?.inc({ listener, reason });
  return count;
}

/**
 * Test hook, for the tests that show an exception inside one listener ends
 * only that query: with ECHGATE_TEST_DNS_THROW=NAME in the environment, a
 * question for NAME makes the zone throw. Unset, nothing changes.
 */
function faultInjected(zone: Zone): Zone {
  const name = process.env.ECHGATE_TEST_DNS_THROW?.toLowerCase();
  if (!name) return zone;
  return Object.assign(Object.create(zone) as Zone, {
    answer: (qname: string, qtype: number) => {
      if (qname.toLowerCase().replace(/\.$/, '') === name) throw new Error(`injected fault for ${name} (ECHGATE_TEST_DNS_THROW)`);
      return zone.answer(qname, qtype);
    },
  });
}

export async function startDnsService(cfg: DnsConfig, ech: EchListSource, log: Logger, count?: QueryCounter, esni?: EsniSource): Promise<DnsService> {
  let zone = faultInjected(new Zone(cfg, ech, esni));
  // One line per unexpected error would let a client write our disk at its packet rate.
  const limiter = new LogLimiter(5, 20);
  const onError = (transport: string) => (e: unknown) => {
    count?.error?.(transport);
    limiter.log(log, 'warn', { transport, err: e instanceof Error ? e.message : String(e) }, 'DNS: query dropped after an internal error');
  };
  // Refusals and cuts (over a cap, a timeout, a malformed query, an HTTP 4xx the DoH listener answers):
  // counted, and a warning with its own budget, so a flood of them neither writes the disk at the client's
  // rate nor hides the error lines above.
  const refusalLog = new LogLimiter(5, 20);
  const refused = (listener: 'dns_udp' | 'dns_tcp' | 'dns_doh', reason: string) => {
    count?.refused?.(listener, reason);
    refusalLog.log(log, 'warn', { listener, reason }, 'DNS listener refused or cut a connection or query');
  };
  const closers: (() => void)[] = [];
  let port: number | undefined;
  try {
    if (cfg.listen) {
      const s = await startDnsServer({ ...cfg.listen, tcp: cfg.tcp, zone: () => zone, onQuery: count && ((_name, type, rcode, transport) => count.add(transport, type, rcode)), onError: (e, transport) => onError(transport)(e), onLimit: (what, transport) => refused(transport === 'udp' ? 'dns_udp' : 'dns_tcp', DNS_LIMIT_REASON[what]) });
      closers.push(() => void s.close());
      port = s.port;
      log.info({ address: `${cfg.listen.host}:${s.port}`, names: Object.keys(cfg.names).length }, 'DNS server listening (UDP and TCP)');
    }
    if (cfg.doh) {
      const d = cfg.doh;
      const s = await startDohServer({
        host: d.host,
        port: d.port,
        path: d.path,
        ...readDohCredentials(d),
        limits: d.limits,
        zone: () => zone,
        onQuery: count && ((_name, type, rcode) => count.add('doh', type, rcode)),
        onError: onError('doh'),
        onRefuse: (reason) => refused('dns_doh', reason),
      });
      closers.push(() => s.close());
      log.info({ address: `${d.host}:${d.port}`, path: d.path, names: Object.keys(cfg.names).length }, 'DoH server listening');
    }
  } catch (e) {
    for (const c of closers) c();
    throw e;
  }
  const started = where(cfg);
  return {
    port,
    update(next) {
      zone = faultInjected(new Zone(next, ech, esni));
      if (where(next) !== started) log.warn('dns listener addresses changed: they take effect at the next restart');
    },
    close() {
      for (const c of closers) c();
    },
  };
}
