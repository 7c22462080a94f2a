// The derived tiers: after each cycle's raw/ pass, derive every due period of processed/ and
// aggregates/ from production, in the same Hive layout, with a manifest naming the rows each file
// came from, and an export_cursors row per dataset and period written last (idempotent and
// resumable like raw/: fixed keys, atomic puts, cursor last). A period is re-derived when a raw
// partition it reads was re-exported after it (late rows); a re-derived processed hour whose books
// at its end changed re-derives the later hours too (they start from those books).
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import type { Client } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { KdpError, classifyDbError } from '../core/errors';
import type { Logger } from '../core/log';
import { SCHEMA_VERSION } from '../schema/migrate';
import { tableByName, type TimeSeriesTableName } from '../schema/tables';
import { decodeState, encodeState, type BookState } from './bookstate';
import { deriveBookHour, type SourceFacts } from './books';
import { candleSourcesSql, candlesSelectSql } from './candles';
import { loadChainGaps } from './chaingaps';
import { CsvOut } from './csvout';
import { DerivedProgress } from './progress';
import { exportFrontierUs, nextHourWithRows, recordExport } from './cursors';
import { DERIVED_DATASETS, cursorName, derivedByName, type DerivedDataset } from './datasets';
import { ARCHIVE_FORMAT_VERSION, HOUR_US, periodPath, type PartitionResult } from './layout';
import type { ArchiveOptions } from './options';
import type { DerivedFileStats, ParquetWriter } from './parquet';
import type { ObjectStore } from './store';

export interface DeriveSession {
  readonly opts: ArchiveOptions;
  readonly client: Client;
  /** Three more connections: the processed tier streams deltas, snapshots and trades at once. */
  readonly readers: readonly [Client, Client, Client] | undefined;
  readonly store: ObjectStore;
  readonly writer: ParquetWriter;
  readonly log: Logger;
  readonly onPartition: (r: PartitionResult) => void;
  readonly signal?: AbortSignal;
  readonly progress?: (line: string) => void;
}

/** export_cursors name of the processed tier's carried books (not a dataset: no Parquet file). */
export const BOOK_STATE_CURSOR = 'processed/_book_state';

const PROCESSED = DERIVED_DATASETS.filter((d) => d.tier === 'processed');

/** Derives every due period of the enabled derived tiers. `dueEndUs` as for raw/ (raw/ is complete below it). */
export async function deriveCycle(s: DeriveSession, nowUs: number, dueEndUs: number): Promise<void> {
  await mkdir(s.opts.workDir, { recursive: true });
  if (s.opts.processed.enabled) await deriveProcessed(s, nowUs, dueEndUs);
  if (s.opts.aggregates.enabled) {
    for (const name of s.opts.aggregates.datasets) {
      if (s.signal?.aborted) return;
      await deriveCandles(s, derivedByName(name), nowUs, dueEndUs);
    }
  }
}

/** Start of the next period at or after fromUs holding a row of any source table, if it ends by dueEndUs. */
async function nextPeriod(s: DeriveSession, d: DerivedDataset, fromUs: number, dueEndUs: number): Promise<number | undefined> {
  let first: number | undefined;
  for (const t of d.sources) {
    const h = await nextHourWithRows(s.client, tableByName(t), fromUs, dueEndUs);
    if (h !== undefined && (first === undefined || h < first)) first = h;
  }
  if (first === undefined) return undefined;
  const start = Math.floor(first / d.periodUs) * d.periodUs;
  return start + d.periodUs <= dueEndUs ? start : undefined;
}

/**
 * Periods to derive again: a raw partition they read was exported after them, or a raw partition
 * exists in a period the derived frontier passed without a derived row (it was empty then).
 */
async function latePeriods(s: DeriveSession, d: DerivedDataset, nowUs: number, frontierUs: number): Promise<number[]> {
  if (s.opts.lateLookbackHours === 0) return [];
  const lookback = Math.floor((nowUs - s.opts.lateLookbackHours * HOUR_US) / d.periodUs) * d.periodUs;
  const r = await s.client.query(
    `SELECT DISTINCT (r.hour_start / $3::bigint) * $3::bigint AS p FROM export_cursors r
      LEFT JOIN export_cursors x ON x.table_name = $1 AND x.hour_start = (r.hour_start / $3::bigint) * $3::bigint
      WHERE r.table_name = ANY($2) AND r.hour_start >= $4 AND r.hour_start < $5
        AND (x.hour_start IS NULL OR r.exported_at > x.exported_at)
      ORDER BY 1`,
    [cursorName(d), d.sources, d.periodUs, lookback, frontierUs],
  );
  return r.rows.map((row: { p: string }) => Number(row.p));
}

/** Streams a COPY into a file; returns the rows PostgreSQL reported copying. */
async function copyToFile(client: Client, sql: string, path: string): Promise<number> {
  const copy = client.query(copyTo(sql));
  try {
    await pipeline(copy, createWriteStream(path));
  } catch (err) {
    throw classifyDbError(err);
  }
  return copy.rowCount;
}

/** Raw partitions (as exported) of the source tables within the period: the manifest's provenance. */
async function rawPartitions(s: DeriveSession, d: DerivedDataset, startUs: number): Promise<unknown[]> {
  const r = await s.client.query(
    `SELECT table_name, hour_start::text AS h, row_count::text AS n, object_key, checksum FROM export_cursors
      WHERE table_name = ANY($1) AND hour_start >= $2 AND hour_start < $3 ORDER BY table_name, hour_start`,
    [d.sources, startUs, startUs + d.periodUs],
  );
  return r.rows.map((x: { table_name: string; h: string; n: string; object_key: string; checksum: string }) => ({
    table: x.table_name,
    hourStartUs: Number(x.h),
    rowCount: Number(x.n),
    object: x.object_key,
    sha256: x.checksum,
  }));
}

interface Published {
  readonly objectKey: string;
  readonly file: DerivedFileStats;
}

/**
 * Writes the dataset's Parquet file with `produce` and puts file + manifest; no object when the
 * file has no rows (the cursor row still records the period, with row_count 0).
 */
async function publish(
  s: DeriveSession,
  d: DerivedDataset,
  startUs: number,
  parquetPath: string,
  produce: (parquetPath: string) => Promise<DerivedFileStats>,
  extra: Record<string, unknown>,
): Promise<Published> {
  const prefix = d.tier === 'processed' ? s.opts.processed.prefix : s.opts.aggregates.prefix;
  const path = periodPath(prefix, d.name, startUs, d.periodUs);
  try {
    const file = await produce(parquetPath);
    if (file.rowCount === 0) return { objectKey: '', file: { ...file, sha256: '', bytes: 0 } };
    await s.store.putFile(path.objectKey, parquetPath, 'application/vnd.apache.parquet');
    const manifest = {
      formatVersion: ARCHIVE_FORMAT_VERSION,
      schemaVersion: SCHEMA_VERSION,
      tier: d.tier,
      dataset: d.name,
      date: path.date,
      ...(path.hour ? { hour: path.hour } : {}),
      periodStartUs: startUs,
      periodEndUs: startUs + d.periodUs,
      timeColumn: d.timeColumn,
      object: path.objectKey,
      ...file,
      compression: s.opts.compression,
      sortedBy: d.sortColumns,
      columns: d.columns,
      rawPartitions: await rawPartitions(s, d, startUs),
      ...extra,
      exportedAtUs: Date.now() * 1000,
    };
    await s.store.putBytes(path.manifestKey, Buffer.from(JSON.stringify(manifest, null, 2) + '\n'), 'application/json');
    return { objectKey: path.objectKey, file };
  } finally {
    await rm(parquetPath, { force: true });
  }
}

/** A CSV the replay wrote -> the dataset's Parquet (no conversion when it holds no row). */
const fromCsv =
  (s: DeriveSession, d: DerivedDataset, out: CsvOut) =>
  async (parquetPath: string): Promise<DerivedFileStats> =>
    out.rows === 0 ? { rowCount: 0, minTimeUs: 0, maxTimeUs: 0, sha256: '', bytes: 0 } : s.writer.convertDerived(d, out.path, parquetPath);

async function record(s: DeriveSession, table: string, startUs: number, p: Published, reason: 'new' | 'late'): Promise<void> {
  const exportedAtUs = Date.now() * 1000;
  await recordExport(
    s.client,
    table,
    { hourStartUs: startUs, rowCount: p.file.rowCount, maxMergedAtUs: 0, objectKey: p.objectKey, checksum: p.file.sha256 },
    exportedAtUs,
  ).catch((err: unknown) => {
    throw classifyDbError(err);
  });
  s.onPartition({ table, hourStartUs: startUs, objectKey: p.objectKey, rows: p.file.rowCount, bytes: p.file.bytes, sha256: p.file.sha256, reason });
}

async function deriveCandles(s: DeriveSession, d: DerivedDataset, nowUs: number, dueEndUs: number): Promise<void> {
  const name = cursorName(d);
  const frontier = await exportFrontierUs(s.client, name, d.periodUs);
  const one = async (startUs: number, reason: 'new' | 'late'): Promise<number> => {
    const base = join(s.opts.workDir, `${d.name}-${startUs}`);
    const files = { trades: join(s.opts.workDir, `ctrades-${startUs}.csv`), tickers: join(s.opts.workDir, `ctickers-${startUs}.csv`) };
    try {
      const sql = candleSourcesSql(d, startUs);
      const sourceRows = (await copyToFile(s.client, sql.trades, files.trades)) + (await copyToFile(s.client, sql.tickers, files.tickers));
      const select = candlesSelectSql(d, startUs, files.trades, files.tickers);
      await record(s, name, startUs, await publish(s, d, startUs, `${base}.parquet`, (p) => s.writer.writeDerivedQuery(d, select, p), {}), reason);
      return sourceRows;
    } finally {
      for (const f of Object.values(files)) await rm(f, { force: true });
    }
  };
  const late = frontier === undefined ? [] : await latePeriods(s, d, nowUs, frontier);
  let from = frontier ?? (await nextPeriod(s, d, Number.NEGATIVE_INFINITY, dueEndUs)) ?? dueEndUs;
  const progress = new DerivedProgress(name, late.length + Math.max(0, (dueEndUs - from) / d.periodUs), s.opts.progressIntervalMs, s.progress);
  for (const p of late) if (!s.signal?.aborted) progress.advance(await one(p, 'late'));
  while (!s.signal?.aborted) {
    const p = await nextPeriod(s, d, from, dueEndUs);
    if (p === undefined) break;
    progress.advance(await one(p, 'new'));
    from = p + d.periodUs;
  }
  progress.finish();
}

/** The books at the end of the newest processed hour before startUs (undefined: none yet). */
async function priorState(s: DeriveSession, startUs: number): Promise<{ state: BookState | undefined; key: string }> {
  const r = await s.client.query(`SELECT object_key FROM export_cursors WHERE table_name = $1 AND hour_start < $2 ORDER BY hour_start DESC LIMIT 1`, [
    BOOK_STATE_CURSOR,
    startUs,
  ]);
  if (r.rows.length === 0) return { state: undefined, key: '' };
  const key = r.rows[0].object_key as string;
  const bytes = await s.store.get(key);
  if (!bytes) throw new KdpError('KDP_ERR_ARCHIVE_STATE', `book state ${key} is recorded in export_cursors but missing from the store`);
  return { state: decodeState(bytes, key), key };
}

/** Books of markets closed more than a day before the hour are not carried further (bounded state). */
async function retiredMarkets(s: DeriveSession, state: BookState | undefined, startUs: number): Promise<Set<string>> {
  if (!state || state.books.size === 0) return new Set();
  const r = await s.client.query(`SELECT ticker FROM markets WHERE ticker = ANY($1) AND close_time < $2`, [[...state.books.keys()], startUs - 24 * HOUR_US]);
  return new Set(r.rows.map((x: { ticker: string }) => x.ticker));
}

async function deriveProcessed(s: DeriveSession, nowUs: number, dueEndUs: number): Promise<void> {
  const quotes = derivedByName('quotes');
  const frontier = await exportFrontierUs(s.client, cursorName(quotes));
  const plan = { ...quotes, sources: unionSources() };
  const late = frontier === undefined ? [] : await latePeriods(s, plan, nowUs, frontier);
  let from = frontier ?? (await nextPeriod(s, plan, Number.NEGATIVE_INFINITY, dueEndUs)) ?? dueEndUs;
  const progress = new DerivedProgress('processed', late.length + Math.max(0, (dueEndUs - from) / HOUR_US), s.opts.progressIntervalMs, s.progress);
  // A re-derived hour whose end-of-hour books changed makes every later processed hour late too.
  for (let i = 0; i < late.length && !s.signal?.aborted; i++) {
    const { changed, sourceRows } = await deriveHour(s, late[i]!, 'late');
    progress.advance(sourceRows);
    if (changed) {
      const later = await s.client.query(`SELECT hour_start::text AS h FROM export_cursors WHERE table_name = $1 AND hour_start > $2 ORDER BY 1`, [
        BOOK_STATE_CURSOR,
        late[i],
      ]);
      for (const row of later.rows as { h: string }[]) if (!late.includes(Number(row.h))) late.push(Number(row.h));
      late.sort((a, b) => a - b);
    }
  }
  while (!s.signal?.aborted) {
    const h = await nextPeriod(s, plan, from, dueEndUs);
    if (h === undefined) break;
    progress.advance((await deriveHour(s, h, 'new')).sourceRows);
    from = h + HOUR_US;
  }
  progress.finish();
}

const unionSources = (): TimeSeriesTableName[] => [...new Set(PROCESSED.flatMap((d) => d.sources))];

/** Derives one processed hour (all three datasets and the carried books); true when the books at its end changed. */
async function deriveHour(s: DeriveSession, startUs: number, reason: 'new' | 'late'): Promise<{ changed: boolean; sourceRows: number }> {
  const t0 = Date.now();
  const prior = await priorState(s, startUs);
  const gaps = await loadChainGaps(s.client, startUs, startUs + HOUR_US);
  const paths = { quotes: 'quotes', snapshots: 'book_snapshots_25', trades: 'trades' } as const;
  const out = {
    quotes: new CsvOut(join(s.opts.workDir, `quotes-${startUs}.csv`)),
    snapshots: new CsvOut(join(s.opts.workDir, `book_snapshots_25-${startUs}.csv`)),
    trades: new CsvOut(join(s.opts.workDir, `ptrades-${startUs}.csv`)),
  };
  try {
    const result = await deriveBookHour(s.readers!, {
      hourStartUs: startUs,
      bookIntervalUs: s.opts.processed.bookIntervalMs * 1000,
      prior: prior.state,
      gaps,
      retired: await retiredMarkets(s, prior.state, startUs),
      out,
    });
    for (const o of Object.values(out)) await o.close();
    const replayedAt = Date.now();
    const chain = {
      chainGapRows: result.chainGapRows,
      unrecoveredLedgerRows: gaps.unrecovered,
      marketsWithSharedGaps: gaps.marketsWithBreaks,
      badSourceRows: result.badRows,
    };
    if (result.badRows > 0)
      s.log.warn(
        { hourStartUs: startUs, badRows: result.badRows, example: result.badRowExample },
        'production rows that cannot be applied to a book were skipped',
      );
    const extra = {
      sources: result.sources.map((f: SourceFacts) => ({ ...f, fromUs: startUs, toUs: startUs + HOUR_US })),
      chain: { ...chain, flagged: chain.chainGapRows > 0 },
      bookState: { from: prior.key || null, markets: result.state.books.size },
      bookIntervalMs: s.opts.processed.bookIntervalMs,
    };
    const published: [string, Published][] = [];
    const timingsMs: Record<string, number> = { replay: replayedAt - t0 };
    for (const [k, name] of Object.entries(paths)) {
      const o = out[k as keyof typeof out];
      const d = derivedByName(name);
      const t = Date.now();
      published.push([cursorName(d), await publish(s, d, startUs, o.path.replace(/\.csv$/, '.parquet'), fromCsv(s, d, o), extra)]);
      timingsMs[name] = Date.now() - t;
    }
    const stateBytes = encodeState(result.state);
    const statePath = periodPath(s.opts.processed.prefix, '_book_state', startUs, HOUR_US);
    const stateKey = statePath.objectKey.replace(/part-00000\.parquet$/, 'books.json.gz');
    const stateSha = createHash('sha256').update(stateBytes).digest('hex');
    const old = await s.client.query(`SELECT checksum FROM export_cursors WHERE table_name = $1 AND hour_start = $2`, [BOOK_STATE_CURSOR, startUs]);
    await s.store.putBytes(stateKey, stateBytes, 'application/gzip');
    // Cursor rows last: a crash before them re-derives the hour onto the same keys.
    for (const [name, p] of published) await record(s, name, startUs, p, reason);
    const stateFile = { rowCount: result.state.books.size, minTimeUs: 0, maxTimeUs: 0, sha256: stateSha, bytes: stateBytes.length };
    await recordExport(
      s.client,
      BOOK_STATE_CURSOR,
      { hourStartUs: startUs, rowCount: stateFile.rowCount, maxMergedAtUs: 0, objectKey: stateKey, checksum: stateSha },
      Date.now() * 1000,
    );
    const rows = result.sources.reduce((a, f) => a + f.rows, 0);
    s.log.info(
      { tier: 'processed', hourStartUs: startUs, reason, sourceRows: rows, rows: result.rows, chain, timingsMs, elapsedMs: Date.now() - t0 },
      'processed hour derived',
    );
    return { changed: old.rows.length > 0 && old.rows[0].checksum !== stateSha, sourceRows: rows };
  } finally {
    for (const o of Object.values(out)) await rm(o.path, { force: true });
  }
}
