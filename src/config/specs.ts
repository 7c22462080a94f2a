// Option specs shared by the services. Each service's full spec composes these sections with
// its own; defaults carry their units in their names.
import type { Spec } from './validate';

export const DATABASE_SPEC = {
  url: { kind: 'string', doc: 'PostgreSQL connection URL', secret: true },
  poolSize: { kind: 'int', doc: 'connections in the pool', default: 4, min: 1, max: 64 },
  statementTimeoutMs: { kind: 'int', doc: 'statement timeout', default: 60_000, min: 100 },
  connectTimeoutMs: { kind: 'int', doc: 'connection attempt timeout', default: 5_000, min: 100 },
} as const satisfies Spec;

export const HTTP_SPEC = {
  host: { kind: 'string', doc: 'address the health and metrics servers bind', default: '0.0.0.0' },
  healthPort: { kind: 'int', doc: 'port of /health and /admin (0 = any free port)', default: 8080, min: 0, max: 65535 },
  metricsPort: { kind: 'int', doc: 'port of /metrics (0 = any free port)', default: 9090, min: 0, max: 65535 },
  adminHost: { kind: 'string', doc: 'address the admin endpoints bind (loopback unless set)', default: '127.0.0.1' },
  adminToken: { kind: 'string', doc: 'bearer token the admin endpoints require', optional: true, secret: true },
} as const satisfies Spec;

export const LOG_SPEC = {
  level: { kind: 'enum', doc: 'log level', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
} as const satisfies Spec;
