// The gatherer's options are validated once, at start-up, with the rules its workers apply: a config
// that starts must never be refused inside every worker thread.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { isKdpError } from '../../src/core/errors';
import { createLogger } from '../../src/core/log';
import { resolveOptions } from '../../src/config/validate';
import { GATHERER_SPEC, loadGathererConfig } from '../../src/gatherer/config';
import { startGatherer } from '../../src/gatherer/service';

/** A port nothing listens on: whatever connects to it is refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function rawConfig(over: Record<string, Record<string, unknown>>): Promise<Record<string, unknown>> {
  const port = await closedPort();
  const base: Record<string, Record<string, unknown> | string> = {
    gathererId: 'g1',
    database: { url: `postgres://kdp@127.0.0.1:${port}/kdp` },
    exchange: { wsUrl: `ws://127.0.0.1:${port}/` },
    rest: { restBaseUrl: `http://127.0.0.1:${port}`, pollEnabled: false },
    http: { host: '127.0.0.1', healthPort: 0, metricsPort: 0 },
    log: { level: 'warn' },
  };
  for (const [k, v] of Object.entries(over)) base[k] = { ...(base[k] as object | undefined), ...v };
  return base;
}

function configFile(raw: Record<string, unknown>): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kdp-gcfg-')), 'gatherer.yaml');
  writeFileSync(file, stringify(raw));
  return file;
}

const namesBoth = (a: string, b: string) => (e: unknown) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID') && e.message.includes(a) && e.message.includes(b);

test('writer.pendingRowsMax below writer.batchRowsMax fails gatherer start-up with a coded error naming both fields, before any database or worker is touched', async () => {
  const raw = await rawConfig({ writer: { batchRowsMax: 5_000, pendingRowsMax: 1_000 } });
  assert.throws(() => loadGathererConfig(configFile(raw), {}), namesBoth('writer.pendingRowsMax', 'writer.batchRowsMax'));
  // A caller that resolves the spec itself still cannot start it. The database URL points at a
  // closed port: had start-up opened the database (or started workers) first, the error would be
  // a connection error, not the config error.
  const lines: string[] = [];
  const log = createLogger('gatherer', { level: 'warn', destination: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) });
  await assert.rejects(startGatherer(resolveOptions(GATHERER_SPEC, raw), log), namesBoth('writer.pendingRowsMax', 'writer.batchRowsMax'));
});

test('writer retry ceilings and limits a worker would refuse are refused when the gatherer config is loaded', async () => {
  const load = async (over: Record<string, Record<string, unknown>>) => loadGathererConfig(configFile(await rawConfig(over)), {});
  await assert.rejects(
    load({ writer: { retryBackoffInitialMs: 500, retryBackoffMaxMs: 100 } }),
    namesBoth('writer.retryBackoffMaxMs', 'writer.retryBackoffInitialMs'),
  );
  // Beyond what a worker's COPY writer or frame processor accepts.
  await assert.rejects(
    load({ writer: { batchRowsMax: 2_000_000, pendingRowsMax: 4_000_000 } }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID') && /writer\.batchRowsMax/.test(e.message),
  );
  await assert.rejects(
    load({ pipeline: { recentTradeIdsMax: 50_000_000 } }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID') && /pipeline\.recentTradeIdsMax/.test(e.message),
  );
  await assert.rejects(
    load({ writer: { flushIntervalMs: 120_000 } }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID') && /writer\.flushIntervalMs/.test(e.message),
  );
  // The defaults start.
  const o = await load({});
  assert.ok(o.writer.pendingRowsMax >= o.writer.batchRowsMax);
});
