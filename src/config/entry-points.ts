/** `entryPoints.NAME`: the listening addresses and their per-connection limits (Traefik's static entryPoints). */
import { bool, type Ctx, duration, isObj, parseAddress, section, wholeNumber } from './fields.js';
import { DEFAULTS, type EntryPointConfig, PREAMBLE_PROTOCOLS } from './types.js';

export interface EntryPoints {
  byName: Map<string, EntryPointConfig>;
  /** Names declared, even when their settings are wrong, so a router naming one is not a second problem. */
  declared: Set<string>;
}

export const entryPointsSection = section<EntryPoints>({
  path: 'entryPoints',
  keys: {
    '*': {
      address: 'string',
      clientHelloTimeout: 'value',
      handshakeTimeout: 'value',
      maxClientHelloBytes: 'number',
      maxConnections: 'number',
      maxConnectionsPerIP: 'number',
      transport: { respondingTimeouts: { idleTimeout: 'value' }, lifeCycle: { graceTimeOut: 'value' } },
      echBackend: 'boolean',
      protocol: 'string',
    },
  },
  parse(eps: unknown, ctx: Ctx): EntryPoints {
    const byName = new Map<string, EntryPointConfig>();
    const declared = new Set(isObj(eps) ? Object.keys(eps) : []);
    if (!isObj(eps) || Object.keys(eps).length === 0) {
      ctx.bad('entryPoints', 'at least one entrypoint is required');
      return { byName, declared };
    }
    for (const [name, e] of Object.entries(eps)) {
      const p = `entryPoints.${name}`;
      if (!isObj(e)) {
        ctx.bad(p, 'expected a mapping');
        continue;
      }
      const echBackend = bool(ctx, e.echBackend, `${p}.echBackend`);
      // A cleartext preamble before the ClientHello (proxy/preamble.ts, docs/databases.md).
      const protocol = PREAMBLE_PROTOCOLS.find((x) => x === e.protocol);
      if (e.protocol !== undefined && !protocol) ctx.bad(`${p}.protocol`, `expected one of: ${PREAMBLE_PROTOCOLS.join(', ')}`);
      const addr = parseAddress(e.address);
      if (!addr) {
        ctx.bad(`${p}.address`, `expected "host:port", got ${JSON.stringify(e.address)}`);
        continue;
      }
      const transport = isObj(e.transport) ? e.transport : {};
      const responding = isObj(transport.respondingTimeouts) ? transport.respondingTimeouts : {};
      const lifeCycle = isObj(transport.lifeCycle) ? transport.lifeCycle : {};
      const maxConnections = wholeNumber(ctx, e.maxConnections, `${p}.maxConnections`, DEFAULTS.maxConnections);
      // Off unless set: carrier NAT puts many clients behind one address, and no cap fits every entrypoint (docs/configuration.md).
      let maxConnectionsPerIP = 0;
      if (e.maxConnectionsPerIP !== undefined) {
        const v = e.maxConnectionsPerIP;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > maxConnections) {
          ctx.bad(`${p}.maxConnectionsPerIP`, `expected a whole number from 1 to the entrypoint's maxConnections (${maxConnections}); leave it out for no per-address cap`);
        } else maxConnectionsPerIP = v;
      }
      byName.set(name, {
        name,
        ...addr,
        clientHelloTimeoutMs: duration(ctx, e.clientHelloTimeout, `${p}.clientHelloTimeout`, DEFAULTS.clientHelloTimeoutMs),
        handshakeTimeoutMs: duration(ctx, e.handshakeTimeout, `${p}.handshakeTimeout`, DEFAULTS.handshakeTimeoutMs),
        maxClientHelloBytes: wholeNumber(ctx, e.maxClientHelloBytes, `${p}.maxClientHelloBytes`, DEFAULTS.maxClientHelloBytes, 16 * 1024 * 1024),
        maxConnections,
        maxConnectionsPerIP,
        idleTimeoutMs: duration(ctx, responding.idleTimeout, `${p}.transport.respondingTimeouts.idleTimeout`, DEFAULTS.idleTimeoutMs),
        graceTimeoutMs: duration(ctx, lifeCycle.graceTimeOut, `${p}.transport.lifeCycle.graceTimeOut`, DEFAULTS.graceTimeoutMs),
        echBackend,
        ...(protocol ? { protocol } : {}),
      });
    }
    return { byName, declared };
  },
  assign(cfg, v) {
    cfg.entryPoints = v.byName;
  },
});
