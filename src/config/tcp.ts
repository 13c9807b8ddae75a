/**
 * `tcp`: the parent of tcp.routers, tcp.services and tcp.middlewares (their own
 * files). Only its type is checked here; `serversTransports` is Traefik's and
 * accepted without effect.
 */
import { type Ctx, mapping, section } from './fields.js';

export const tcpSection = section<void>({
  path: 'tcp',
  keys: { serversTransports: 'any' },
  parse(raw: unknown, ctx: Ctx) {
    mapping(ctx, raw, 'tcp');
  },
});
