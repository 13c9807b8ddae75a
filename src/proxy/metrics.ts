/**
 * A small Prometheus registry (text exposition format 0.0.4). Counters and
 * histograms keyed by a pre-joined label string, so the per-connection cost
 * is one Map lookup and an add.
 */
import { createServer, type Server } from 'node:http';

type Labels = Record<string, string>;

function labelKey(l: Labels): string {
  const parts: string[] = [];
  for (const k of Object.keys(l).sort()) parts.push(`${k}="${String(l[k]).replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`);
  return parts.join(',');
}

/**
 * Label sets → rendered key, cached by the values joined in call order
 * (call sites always pass the same keys in the same order), so the hot path
 * does one string join and one Map lookup instead of a sort and escapes.
 */
class KeyCache {
  private readonly cache = new Map<string, string>();
  key(labels: Labels): string {
    let fast = '';
    for (const k in labels) fast += `${k}\u0000${labels[k]}\u0001`;
    let v = this.cache.get(fast);
    if (v === undefined) {
      v = labelKey(labels);
      if (this.cache.size < 10_000) this.cache.set(fast, v);
    }
    return v;
  }
}

class Counter {
  readonly values = new Map<string, number>();
  protected readonly keys = new KeyCache();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels, by = 1): void {
    const k = this.keys.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    let s = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const [k, v] of this.values) s += `${this.name}{${k}} ${v}\n`;
    return s;
  }
}

class Gauge extends Counter {
  dec(labels: Labels, by = 1): void {
    this.inc(labels, -by);
  }
  override render(): string {
    return super.render().replace(' counter\n', ' gauge\n');
  }
}

class Histogram {
  private readonly series = new Map<string, { counts: number[]; sum: number; n: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}
  private readonly keys = new KeyCache();
  observe(labels: Labels, v: number): void {
    const k = this.keys.key(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { counts: new Array(this.buckets.length).fill(0), sum: 0, n: 0 };
      this.series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) s.counts[i]!++;
    s.sum += v;
    s.n++;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : '';
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket{${sep}le="+Inf"} ${s.n}\n${this.name}_sum{${k}} ${s.sum}\n${this.name}_count{${k}} ${s.n}\n`;
    }
    return out;
  }
}

export class Metrics {
  readonly connections = new Counter('echgate_connections_total', 'Connections by entrypoint, router and outcome.');
  readonly open = new Gauge('echgate_open_connections', 'Connections currently open, by entrypoint.');
  readonly peekFailures = new Counter('echgate_peek_failures_total', 'ClientHello peeks that failed, by reason.');
  readonly bytes = new Counter('echgate_bytes_total', 'Bytes relayed, by entrypoint, router and direction.');
  readonly backendErrors = new Counter('echgate_backend_errors_total', 'Backend connect or stream failures, by service.');
  readonly ech = new Counter('echgate_ech_total', 'ECH ClientHellos by entrypoint and result (accepted, rejected, grease, malformed).');
  readonly reloads = new Counter('echgate_config_reloads_total', 'Configuration reloads by result.');
  readonly dnsQueries = new Counter('echgate_dns_queries_total', 'Queries to the embedded DNS, by transport, query type and rcode.');
  readonly dnsErrors = new Counter('echgate_dns_errors_total', 'Queries or connections of the embedded DNS dropped after an internal error, by transport.');
  readonly duration = new Histogram('echgate_connection_duration_seconds', 'Connection lifetime, by entrypoint and router.', [
    0.005, 0.05, 0.5, 1, 5, 30, 120, 600,
  ]);

  render(): string {
    return [this.connections, this.open, this.peekFailures, this.bytes, this.backendErrors, this.ech, this.reloads, this.dnsQueries, this.dnsErrors, this.duration]
      .map((m) => m.render())
      .join('');
  }

  serve(host: string, port: number): Promise<Server> {
    const srv = createServer((req, res) => {
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(this.render());
      } else {
        res.writeHead(404).end();
      }
    });
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => resolve(srv));
    });
  }
}
