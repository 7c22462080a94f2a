import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { ERROR_CODES, KdpError, classifyDbError, isKdpError } from '../../src/core/errors';
import { createLogger } from '../../src/core/log';
import { loadConfig } from '../../src/config/load';
import { resolveOptions, type Spec } from '../../src/config/validate';

const ROOT = join(__dirname, '..', '..', '..');

test('docs/errors.md lists exactly the codes of src/core/errors.ts', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');
  const documented = new Set([...doc.matchAll(/`(KDP_ERR_[A-Z0-9_]+)`/g)].map((m) => m[1]));
  assert.deepEqual([...documented].sort(), Object.keys(ERROR_CODES).sort());
});

test('every error code is raised (or logged) somewhere in src/ besides its registry', () => {
  const sources = (readdirSync(join(ROOT, 'src'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && f !== join('core', 'errors.ts'))
    .map((f) => readFileSync(join(ROOT, 'src', f), 'utf8'))
    .join('\n');
  // classifyDbError raises the database codes inside the registry module itself.
  const raisedInRegistry = new Set(['KDP_ERR_DB_CONNECTION', 'KDP_ERR_DB_TIMEOUT', 'KDP_ERR_DB_CONSTRAINT', 'KDP_ERR_DB_QUERY', 'KDP_ERR_INTERNAL']);
  const unused = Object.keys(ERROR_CODES).filter((c) => !raisedInRegistry.has(c) && !sources.includes(`'${c}'`));
  assert.deepEqual(unused, []);
});

test('a coded error carries its retryable flag from the registry', () => {
  assert.equal(new KdpError('KDP_ERR_DB_CONNECTION', 'x').retryable, true);
  assert.equal(new KdpError('KDP_ERR_MSG_JSON', 'x').retryable, false);
});

test('database errors are classified by SQLSTATE and connection failures as retryable', () => {
  assert.equal(classifyDbError({ code: '23505', message: 'dup' }).code, 'KDP_ERR_DB_CONSTRAINT');
  assert.equal(classifyDbError({ code: '57014', message: 'canceling statement due to statement timeout' }).code, 'KDP_ERR_DB_TIMEOUT');
  assert.equal(classifyDbError({ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' }).code, 'KDP_ERR_DB_CONNECTION');
  assert.equal(classifyDbError({ code: '57P01', message: 'terminating connection' }).retryable, true);
  assert.equal(classifyDbError({ code: '42P01', message: 'no table' }).code, 'KDP_ERR_DB_SCHEMA');
  assert.equal(classifyDbError({ code: '53100', message: 'disk full' }).code, 'KDP_ERR_DB_DISK_FULL');
  assert.equal(classifyDbError({ code: '22012', message: 'division by zero' }).code, 'KDP_ERR_DB_QUERY');
});

const SPEC = {
  name: { kind: 'string', doc: 'name' },
  flushIntervalMs: { kind: 'int', doc: 'flush', default: 100, min: 1, max: 10_000 },
  mode: { kind: 'enum', doc: 'mode', values: ['pause', 'drop'], default: 'pause' },
  db: { kind: 'object', doc: 'db', fields: { url: { kind: 'string', doc: 'url', secret: true } } },
} as const satisfies Spec;

test('options resolve with defaults and reject unknown keys naming the full key', () => {
  const r = resolveOptions(SPEC, { name: 'g1', db: { url: 'postgres://x' } });
  assert.equal(r.flushIntervalMs, 100);
  assert.equal(r.mode, 'pause');
  assert.ok(Object.isFrozen(r));
  assert.throws(
    () => resolveOptions(SPEC, { name: 'g1', db: { url: 'u', urll: 'typo' } }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_UNKNOWN_KEY') && /db\.urll/.test(e.message),
  );
  assert.throws(
    () => resolveOptions(SPEC, { name: 'g1', db: { url: 'u' }, flushIntervalMs: 0 }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID') && /flushIntervalMs/.test(e.message),
  );
  assert.throws(
    () => resolveOptions(SPEC, { name: 'g1', db: { url: 'u' }, mode: 'fast' }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
  );
  assert.throws(
    () => resolveOptions(SPEC, { db: { url: 'u' } }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_MISSING') && /name/.test(e.message),
  );
});

test('environment overrides beat the YAML file and unknown variables are refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kdp-cfg-'));
  const file = join(dir, 'c.yaml');
  writeFileSync(file, 'name: g1\nflushIntervalMs: 50\ndb:\n  url: postgres://file\n');
  const r = loadConfig(SPEC, file, { KDP__FLUSH_INTERVAL_MS: '75', KDP__DB__URL: 'postgres://env' });
  assert.equal(r.flushIntervalMs, 75);
  assert.equal(r.db.url, 'postgres://env');
  assert.throws(
    () => loadConfig(SPEC, file, { KDP__NOPE: '1' }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_UNKNOWN_KEY') && /KDP__NOPE/.test(e.message),
  );
  writeFileSync(file, 'name: [unclosed\n');
  assert.throws(
    () => loadConfig(SPEC, file, {}),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_FILE'),
  );
});

test('log lines are JSON with the component, and secrets are redacted', () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const log = createLogger('gatherer', { destination: sink });
  log.info({ db: { url: 'postgres://u:hunter2@h/db', password: 'hunter2' }, adminToken: 's3cret' }, 'started');
  const line = JSON.parse(lines[0]!);
  assert.equal(line.component, 'gatherer');
  assert.equal(line.msg, 'started');
  assert.ok(!lines[0]!.includes('hunter2') && !lines[0]!.includes('s3cret'));
  assert.equal(line.db.url, 'postgres://u:***@h/db');
});
