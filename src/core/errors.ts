// The one owner of the platform's error codes. Every code listed here is documented in
// docs/errors.md (a test checks both lists agree). Code switches on `err.code`, never on text.

export interface ErrorSpec {
  readonly retryable: boolean;
  readonly summary: string;
}

export const ERROR_CODES = {
  // configuration and command line
  KDP_ERR_CONFIG_UNKNOWN_KEY: { retryable: false, summary: 'A configuration key is not known.' },
  KDP_ERR_CONFIG_INVALID: { retryable: false, summary: 'A configuration value has the wrong type or range.' },
  KDP_ERR_CONFIG_MISSING: { retryable: false, summary: 'A required configuration value is missing.' },
  KDP_ERR_CONFIG_FILE: { retryable: false, summary: 'The configuration file cannot be read or parsed.' },
  KDP_ERR_USAGE: { retryable: false, summary: 'The command line is malformed.' },
  // schema and database
  KDP_ERR_SCHEMA_TOO_NEW: {
    retryable: false,
    summary: 'The database schema is newer than this build; refusing to migrate or run.',
  },
  KDP_ERR_SCHEMA_KIND: {
    retryable: false,
    summary: 'The database holds the other kind of schema (gatherer vs production).',
  },
  KDP_ERR_DB_CONNECTION: { retryable: true, summary: 'The database cannot be reached or dropped the connection.' },
  KDP_ERR_DB_TIMEOUT: { retryable: true, summary: 'A database statement or connection attempt timed out.' },
  KDP_ERR_DB_CONSTRAINT: { retryable: false, summary: 'A row violated a database constraint.' },
  KDP_ERR_DB_DISK_FULL: {
    retryable: true,
    summary: 'The database could not write: its disk is full (SQLSTATE 53100). Writers keep their rows and retry until space is freed.',
  },
  KDP_ERR_DB_SCHEMA: {
    retryable: true,
    summary:
      'A statement names a table, column, type or function the database does not have (SQLSTATE class 42 but 42501, or 3F000): the schema does not match this build. Writers keep their rows and retry until `kdp migrate` fixes it.',
  },
  KDP_ERR_DB_QUERY: { retryable: false, summary: 'A database statement failed for a reason other than the above.' },
  KDP_ERR_GATHERER_BITS_EXHAUSTED: {
    retryable: false,
    summary:
      "Every one of production's 63 `delivered_by` bits (`gatherer_bits`) belongs to another gatherer name: the deduplicator cannot record this gatherer's copies. Free a retired name's bit (delete its `gatherer_bits` row) only once no production row carries it (docs/semantics.md, per-row provenance).",
  },
  KDP_ERR_TIMESCALE_UNAVAILABLE: {
    retryable: false,
    summary: 'The TimescaleDB engine was requested but the extension is not available on the server.',
  },
  KDP_ERR_PG_BINARIES_ACCESS: {
    retryable: false,
    summary:
      'As root, the embedded PostgreSQL runs as the `postgres` user, which cannot be created or cannot execute its binaries (nor a copy of them in the temporary directory).',
  },
  KDP_ERR_PG_DATA_DIR_ACCESS: {
    retryable: false,
    summary: 'As root, the `postgres` user the embedded PostgreSQL runs as cannot reach or write its data directory.',
  },
  // bus, frames and messages
  KDP_ERR_FRAME_TRUNCATED: { retryable: false, summary: 'A bus frame ended before its declared length.' },
  KDP_ERR_FRAME_TOO_LARGE: { retryable: false, summary: 'A frame or message exceeds the configured size limit.' },
  KDP_ERR_FRAME_DECODE: { retryable: false, summary: 'A bus frame has a wrong magic, version, kind or field, or bytes past its payload.' },
  KDP_ERR_RING_CORRUPT: { retryable: false, summary: 'A ring index invariant is broken; the process must stop.' },
  KDP_ERR_MSG_JSON: { retryable: false, summary: 'A WebSocket message is not valid JSON (or not UTF-8).' },
  KDP_ERR_MSG_SHAPE: {
    retryable: false,
    summary: 'A message lacks a required field or a field has the wrong type.',
  },
  KDP_ERR_MSG_DECIMAL: { retryable: false, summary: 'A price or quantity is not an exact decimal string in range.' },
  KDP_ERR_MSG_TIMESTAMP: { retryable: false, summary: 'A timestamp is missing, malformed or out of range.' },
  KDP_ERR_MSG_UNKNOWN_TYPE: { retryable: false, summary: 'A message type the platform does not know.' },
  KDP_ERR_SEQ_INVARIANT: { retryable: false, summary: 'A sequence-tracking invariant is broken; the process must stop.' },
  KDP_ERR_WORKER_FAILED: {
    retryable: false,
    summary: 'A worker thread kept dying right after each relaunch; the gatherer stops instead of relaunching it again.',
  },
  // exchange connectivity
  KDP_ERR_WS_CONNECT: {
    retryable: true,
    summary: "kdp capture's WebSocket connection failed or was refused (the gatherer counts its own in ws_client_errors_total).",
  },
  KDP_ERR_WS_STALE: { retryable: true, summary: 'No frame arrived within the silence limit; the connection is presumed dead.' },
  KDP_ERR_WS_PROTOCOL: { retryable: true, summary: 'The exchange answered a command with an error.' },
  KDP_ERR_REST_RATE_LIMITED: { retryable: true, summary: 'The exchange REST API answered 429.' },
  KDP_ERR_REST_SERVER: { retryable: true, summary: 'The exchange REST API answered 5xx.' },
  KDP_ERR_REST_CLIENT: { retryable: false, summary: 'The exchange REST API answered 4xx (other than 429).' },
  KDP_ERR_REST_NETWORK: { retryable: true, summary: 'A REST request failed on the network or timed out.' },
  KDP_ERR_REST_PAGE_LIMIT: {
    retryable: false,
    summary: 'A paginated REST listing exceeded its page limit or repeated a cursor.',
  },
  KDP_ERR_AUTH_KEY: { retryable: false, summary: 'The API private key cannot be read or used to sign.' },
  // services
  KDP_ERR_ADMIN_UNAUTHORIZED: { retryable: false, summary: 'An admin request lacked the right token.' },
  KDP_ERR_NOT_READY: {
    retryable: true,
    summary: 'A service did not become ready (every market subscribed) within its start-up bound.',
  },
  KDP_ERR_SHUTDOWN: { retryable: false, summary: 'The operation was abandoned because the service is stopping.' },
  KDP_ERR_INTERNAL: { retryable: false, summary: 'An unexpected internal failure (a bug).' },
  KDP_ERR_VERIFY_FAILED: { retryable: false, summary: 'An integrity check found a problem.' },
  KDP_ERR_BOOK_NO_ANCHOR: {
    retryable: false,
    summary: 'No WebSocket snapshot can be placed in the delta stream at or before the requested time, so no book can be rebuilt; the message names why.',
  },
  KDP_ERR_BOOK_UNTRUSTED: {
    retryable: false,
    summary: 'The rebuilt book cannot be trusted (every gatherer lost deltas after its anchor, or it is crossed); the message names why.',
  },
  KDP_ERR_ARCHIVE_STORE: { retryable: true, summary: 'The archive object store failed a read or write.' },
  KDP_ERR_ARCHIVE_BUSY: { retryable: true, summary: 'Another archiver holds the production archive lock.' },
  KDP_ERR_ARCHIVE_DISK: { retryable: true, summary: 'The archiver could not write a scratch file in workDir (disk full, directory gone).' },
  KDP_ERR_ARCHIVE_STATE: {
    retryable: false,
    summary: "The processed tier's carried book state is unreadable or of another format: re-derive from an earlier hour (docs/archive.md).",
  },
  KDP_ERR_MAINTAIN_BUSY: { retryable: true, summary: 'Another kdp maintain holds the maintenance lock of the database.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class KdpError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'KdpError';
    this.code = code;
    this.retryable = ERROR_CODES[code].retryable;
    this.details = details;
  }
}

export function isKdpError(err: unknown, code?: ErrorCode): err is KdpError {
  return err instanceof KdpError && (code === undefined || err.code === code);
}

/** Invariant assertion: a broken invariant is a bug, so it throws and the process crashes. */
export function invariant(condition: unknown, message: string, code: ErrorCode = 'KDP_ERR_INTERNAL'): asserts condition {
  if (!condition) throw new KdpError(code, `invariant violated: ${message}`);
}

// PostgreSQL SQLSTATE classes that mean "the server or the link went away": retry these.
const PG_CONNECTION_CLASSES = ['08', '57P01', '57P02', '57P03', '53300'];

// The driver's connection timeouts are plain Errors with no code, so their message is the only
// thing to match (the one exception to "switch on codes, not text"; checked against the real
// driver by test/core/db-errors.test.ts):
// - pg-pool, no client free within connectionTimeoutMillis: "timeout exceeded when trying to connect"
// - pg-pool, a new client's connect ran past it: "Connection terminated due to connection timeout"
// - pg Client's own connectionTimeoutMillis: "timeout expired"
const DRIVER_CONNECT_TIMEOUT = /^(timeout exceeded when trying to connect|Connection terminated due to connection timeout|timeout expired)$/;

/** Maps an error thrown by `pg` (or the network) onto a coded KdpError. */
export function classifyDbError(err: unknown): KdpError {
  if (err instanceof KdpError) return err;
  const e = err as { code?: string; message?: string } | undefined;
  const sqlState = typeof e?.code === 'string' ? e.code : '';
  const message = e?.message ?? String(err);
  if (sqlState === '57014' || (sqlState === '' && DRIVER_CONNECT_TIMEOUT.test(message))) {
    return new KdpError('KDP_ERR_DB_TIMEOUT', message, { sqlState }, err);
  }
  if (sqlState.startsWith('23')) return new KdpError('KDP_ERR_DB_CONSTRAINT', message, { sqlState }, err);
  if (
    PG_CONNECTION_CLASSES.some((c) => sqlState.startsWith(c)) ||
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH'].includes(sqlState) ||
    /Connection terminated|connection.*(closed|ended)|not queryable|Client has encountered a connection error/i.test(message)
  ) {
    return new KdpError('KDP_ERR_DB_CONNECTION', message, { sqlState }, err);
  }
  if (sqlState === '53100') return new KdpError('KDP_ERR_DB_DISK_FULL', message, { sqlState }, err);
  // Class 42 is "syntax error or access rule violation": for statements built from this build's
  // own schema it means the database's schema differs (42P01 table, 42703 column, 42883 function).
  // 42501 (a missing grant) is a deployment error, left as a query error.
  if ((sqlState.startsWith('42') && sqlState !== '42501') || sqlState === '3F000') {
    return new KdpError('KDP_ERR_DB_SCHEMA', message, { sqlState }, err);
  }
  return new KdpError('KDP_ERR_DB_QUERY', message, { sqlState }, err);
}
