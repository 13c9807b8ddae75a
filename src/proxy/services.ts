/**
 * Server selection: round-robin inside a load balancer, smooth weighted
 * round-robin (the nginx algorithm, as Traefik's wrr) across weighted services.
 * With health checks (src/proxy/health.ts), servers that are down are
 * skipped, and weighted services skip children with no server up; when
 * nothing is up, pick() says so (`unavailable`) so the connection fails fast.
 */
import type { ServerConfig, ServiceConfig } from '../config/types.js';
import type { ServiceHealth } from './health.js';

export interface Upstream {
  service: string;
  server: ServerConfig;
  proxyProtocol: 0 | 1 | 2;
  connectTimeoutMs: number;
  /** Every server of the service failed its health checks: close the client instead of trying one. */
  unavailable?: true;
}

export interface Picker {
  pick(): Upstream;
  /** Whether some server can be picked (false only when health checks took every one out). */
  available(): boolean;
}

class RoundRobin implements Picker {
  private next = 0;
  constructor(
    private readonly svc: Extract<ServiceConfig, { kind: 'loadBalancer' }>,
    private readonly health?: ServiceHealth,
  ) {}
  available(): boolean {
    return this.health?.anyUp() ?? true;
  }
  pick(): Upstream {
    const n = this.svc.servers.length;
    const up = (server: ServerConfig, unavailable?: true): Upstream => ({
      service: this.svc.name,
      server,
      proxyProtocol: this.svc.proxyProtocol,
      connectTimeoutMs: this.svc.connectTimeoutMs,
      ...(unavailable ? { unavailable } : {}),
    });
    for (let tries = 0; tries < n; tries++) {
      const i = this.next % n;
      this.next = (this.next + 1) % n;
      if (!this.health || this.health.isUp(i)) return up(this.svc.servers[i]!);
    }
    return up(this.svc.servers[this.next % n]!, true);
  }
}

class SmoothWeighted implements Picker {
  private readonly current: number[];
  constructor(private readonly children: { picker: Picker; weight: number }[]) {
    this.current = children.map(() => 0);
  }
  available(): boolean {
    return this.children.some((c) => c.weight > 0 && c.picker.available());
  }
  pick(): Upstream {
    // The nginx algorithm over the children that can take a connection now; the total is theirs.
    let best = -1;
    let total = 0;
    for (let i = 0; i < this.children.length; i++) {
      const c = this.children[i]!;
      if (c.weight === 0 || !c.picker.available()) continue;
      total += c.weight;
      this.current[i]! += c.weight;
      if (best < 0 || this.current[i]! > this.current[best]!) best = i;
    }
    // None can: the first weighted child answers (with unavailable set).
    if (best < 0) return this.children.find((c) => c.weight > 0)!.picker.pick();
    this.current[best]! -= total;
    return this.children[best]!.picker.pick();
  }
}

export function buildPickers(services: Map<string, ServiceConfig>, health: Map<string, ServiceHealth> = new Map()): Map<string, Picker> {
  const out = new Map<string, Picker>();
  for (const s of services.values()) if (s.kind === 'loadBalancer') out.set(s.name, new RoundRobin(s, health.get(s.name)));
  for (const s of services.values()) {
    if (s.kind !== 'weighted') continue;
    out.set(s.name, new SmoothWeighted(s.services.map((w) => ({ picker: out.get(w.name)!, weight: w.weight }))));
  }
  return out;
}
