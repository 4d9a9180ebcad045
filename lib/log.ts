// Operational logs: JSON lines on stderr (stdout belongs to audit events). Secrets never go here.
import { pino, type Logger } from 'pino';

export type { Logger };
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** To standard error, unless given another file descriptor or a file path (appended to). */
export function createLogger(component: string, level: LogLevel = 'info', destination: number | string = 2): Logger {
  return pino(
    {
      name: `chaperone-${component}`,
      level,
      base: { component },
      redact: { paths: ['token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'key', '*.key'], censor: '[redacted]' },
    },
    pino.destination(destination),
  );
}
