/**
 * The registry of configuration sections, in the order they run: a section
 * may read the result of any section above it (ctx.get). Adding a section is
 * one file exporting a `Section` (config/fields.ts) and one entry here; its
 * keys then count as known (no "unknown key" warning), are converted from
 * etcd when they are dynamic (config/kv.ts), and must be documented in
 * docs/configuration.md (test/config-doc.test.ts fails otherwise).
 */
import { echSection } from './ech.js';
import { dnsSection } from './dns.js';
import { entryPointsSection } from './entry-points.js';
import { graft, type Section, type Shape } from './fields.js';
import { logSection } from './log.js';
import { metricsSection } from './metrics.js';
import { providersSection } from './providers.js';
import { rotationSection } from './rotation.js';
import { storeSection } from './store.js';
import { tcpSection } from './tcp.js';
import { tcpMiddlewaresSection } from './tcp-middlewares.js';
import { tcpRoutersSection } from './tcp-routers.js';
import { tcpServicesSection } from './tcp-services.js';
import { tlsSection } from './tls.js';
import { workersSection } from './workers.js';

// biome-ignore lint/suspicious/noExplicitAny: a heterogeneous list; each section is typed where it is declared.
export const SECTIONS: readonly Section<any>[] = [
  entryPointsSection,
  tcpSection,
  tcpServicesSection,
  tlsSection, // before tcp.routers: routers name tls.options
  tcpMiddlewaresSection,
  tcpRoutersSection,
  workersSection,
  metricsSection,
  logSection,
  echSection,
  rotationSection, // after ech: it fills cfg.ech.rotation
  storeSection, // after ech: it fills cfg.ech.store
  dnsSection,
  providersSection,
];

/** Top-level sections of Traefik's that echgate does not use: a warning, not an error. */
export const IGNORED_TOP = new Set(['http', 'udp', 'api', 'global', 'serversTransport', 'accessLog', 'ping']);

/** Every key the registered sections accept, as one tree. */
export function configShape(sections: readonly Section<unknown>[] = SECTIONS): Shape {
  let shape: Shape = {};
  for (const s of sections) shape = graft(shape, s.path.split('.'), s.keys);
  return shape;
}
