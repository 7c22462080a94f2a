// pino JSON logging: one line per event, a `component` on every line, secrets redacted.
import pino, { type Logger } from 'pino';

export type { Logger };

// Paths that may hold secrets anywhere in a logged object. The API private key, admin tokens and
// database passwords must never reach a log line.
const REDACT_PATHS = [
  'password',
  '*.password',
  'privateKey',
  '*.privateKey',
  'privateKeyPem',
  '*.privateKeyPem',
  'adminToken',
  '*.adminToken',
  'token',
  '*.token',
  'headers["kalshi-access-signature"]',
  'headers.authorization',
  'url',
  '*.url',
];

export interface LogOptions {
  level?: string;
  /** Where lines go; defaults to stdout. Tests pass a stream to read them back. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(component: string, opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.KDP_LOG_LEVEL ?? 'info';
  const options = {
    level,
    base: { component, pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: redactValue },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return opts.destination ? pino(options, opts.destination as pino.DestinationStream) : pino(options);
}

/** Database URLs keep host and database but lose the password; everything else is censored. */
function redactValue(value: unknown, path: string[]): unknown {
  const last = path[path.length - 1];
  if (last === 'url' && typeof value === 'string') return redactUrl(value);
  return '[redacted]';
}

export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]+:)[^@]*@/, '$1***@');
}
