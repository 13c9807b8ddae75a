/** pino JSON logs to stderr-free stdout. Secrets and inner SNI never go through here unless asked. */
import { pino, type Logger } from 'pino';

export function createLogger(level: string, dest?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { app: 'echgate' }, timestamp: pino.stdTimeFunctions.isoTime }, dest ?? pino.destination({ sync: false }));
}
