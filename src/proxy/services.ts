/**
 * Server selection: round-robin inside a load balancer, smooth weighted
 * round-robin (the nginx algorithm, as Traefik's wrr) across weighted services.
 */
import type { ServerConfig, ServiceConfig } from '../config/types.js';

export interface Upstream {
  service: string;
  server: ServerConfig;
  proxyProtocol: 0 | 1 | 2;
  connectTimeoutMs: number;
}

export interface Picker {
  pick(): Upstream;
}

class RoundRobin implements Picker {
  private next = 0;
  constructor(private readonly svc: Extract<ServiceConfig, { kind: 'loadBalancer' }>) {}
  pick(): Upstream {
    const server = this.svc.servers[this.next % this.svc.servers.length]!;
    this.next = (this.next + 1) % this.svc.servers.length;
    return { service: this.svc.name, server, proxyProtocol: this.svc.proxyProtocol, connectTimeoutMs: this.svc.connectTimeoutMs };
  }
}

class SmoothWeighted implements Picker {
  private readonly current: number[];
  private readonly total: number;
  constructor(
    private readonly children: { picker: Picker; weight: number }[],
  ) {
    this.current = children.map(() => 0);
    this.total = children.reduce((a, c) => a + c.weight, 0);
  }
  pick(): Upstream {
    let best = -1;
    for (let i = 0; i < this.children.length; i++) {
      this.current[i]! += this.children[i]!.weight;
      if (this.children[i]!.weight > 0 && (best < 0 || this.current[i]! > this.current[best]!)) best = i;
    }
    this.current[best]! -= this.total;
    return this.children[best]!.picker.pick();
  }
}

export function buildPickers(services: Map<string, ServiceConfig>): Map<string, Picker> {
  const out = new Map<string, Picker>();
  for (const s of services.values()) if (s.kind === 'loadBalancer') out.set(s.name, new RoundRobin(s));
  for (const s of services.values()) {
    if (s.kind !== 'weighted') continue;
    out.set(s.name, new SmoothWeighted(s.services.map((w) => ({ picker: out.get(w.name)!, weight: w.weight }))));
  }
  return out;
}
