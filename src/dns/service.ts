/**
 * The embedded authoritative DNS as `serve` runs it: one zone, answered over
 * plain DNS (UDP+TCP) and/or DoH as configured, with ech= read from the key
 * folder at query time. A reload swaps the zone's names; listener addresses
 * change only with a restart.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { DnsConfig } from '../config/types.js';
import { ConfigError } from '../config/validate.js';
import type { Logger } from 'pino';
import { rcodeName, typeName } from '../wire/dns/message.js';
import { startDnsServer } from './dns-server.js';
import { startDohServer } from './doh-server.js';
import { type EchListSource, Zone } from './zone.js';

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

const where = (cfg: DnsConfig) => JSON.stringify([cfg.listen, cfg.doh && { ...cfg.doh, certFile: undefined, keyFile: undefined }]);

/** Counts a query; `type` is a name for the types we serve, else "other", so a client cannot grow the label set. */
export type QueryCounter = (q: { transport: string; type: number; rcode: number }) => void;

export function queryCounter(metrics: { dnsQueries: { inc(labels: Record<string, string>): void } }): QueryCounter {
  return (q) => metrics.dnsQueries.inc({ transport: q.transport, type: typeName(q.type) ?? 'other', rcode: rcodeName(q.rcode) });
}

export async function startDnsService(cfg: DnsConfig, ech: EchListSource, log: Logger, count?: QueryCounter): Promise<DnsService> {
  let zone = new Zone(cfg, ech);
  const closers: (() => void)[] = [];
  let port: number | undefined;
  try {
    if (cfg.listen) {
      const s = await startDnsServer({ ...cfg.listen, zone: () => zone, onQuery: count, onError: (e) => log.error({ err: String(e) }, 'DNS server: query dropped') });
      closers.push(() => void s.close());
      port = s.port;
      log.info({ address: `${cfg.listen.host}:${s.port}`, names: Object.keys(cfg.names).length }, 'DNS server listening (UDP and TCP)');
    }
    if (cfg.doh) {
      const d = cfg.doh;
      const s = await startDohServer({ host: d.host, port: d.port, path: d.path, ...readDohCredentials(d), zone: () => zone, onQuery: count && ((q) => count({ ...q, transport: 'doh' })) });
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
      zone = new Zone(next, ech);
      if (where(next) !== started) log.warn('dns listener addresses changed: they take effect at the next restart');
    },
    close() {
      for (const c of closers) c();
    },
  };
}
