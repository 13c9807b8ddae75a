/** pino JSON logs to stderr-free stdout. Secrets and inner SNI never go through here unless asked. */
import cluster from 'node:cluster';
import { pino, type Logger } from 'pino';

export function createLogger(level: string, dest?: NodeJS.WritableStream): Logger {
  // A worker of a process group (workers > 1, src/cli/workers.ts) says which one it is on every line.
  const slot = Number(process.env.ECHGATE_WORKER);
  const base = cluster.isWorker && slot > 0 ? { app: 'echgate', worker: slot, pid: process.pid } : { app: 'echgate' };
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, dest ?? pino.destination({ sync: false }));
}
