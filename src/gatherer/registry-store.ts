// Persistence of the market registry in the gatherer database (tables markets, events, series
// from src/schema/ddl.ts). Upserts go in batches as one jsonb parameter per statement; every
// write stamps updated_at (µs). A re-listing's upsert only overwrites rows not updated since the
// listing started, so a lifecycle event applied meanwhile is never undone by a stale page.
import type { QueryResult } from 'pg';
import type { KalshiEvent, KalshiMarket, KalshiSeries } from './shapes';

/** What the store needs of a pg Pool or Client. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<QueryResult>;
}

export interface MarketPatch {
  status?: string;
  openTimeMs?: number;
  closeTimeMs?: number;
  result?: string;
  priceLevelStructure?: string;
  /** Merged into raw (jsonb ||), e.g. {"status": "closed"}. */
  rawPatch?: Record<string, unknown>;
}

const UPSERT_MARKETS = `
INSERT INTO markets AS m (ticker, event_ticker, series_ticker, status, price_level_structure, open_time, close_time, result, raw, updated_at)
SELECT x.ticker, x.event_ticker, x.series_ticker, x.status, x.price_level_structure, x.open_time, x.close_time, x.result, x.raw, $2
FROM jsonb_to_recordset($1::jsonb) AS x(ticker text, event_ticker text, series_ticker text, status text,
  price_level_structure text, open_time bigint, close_time bigint, result text, raw jsonb)
ON CONFLICT (ticker) DO UPDATE SET
  event_ticker = EXCLUDED.event_ticker,
  series_ticker = COALESCE(EXCLUDED.series_ticker, m.series_ticker),
  status = EXCLUDED.status,
  price_level_structure = EXCLUDED.price_level_structure,
  open_time = EXCLUDED.open_time,
  close_time = EXCLUDED.close_time,
  result = EXCLUDED.result,
  raw = EXCLUDED.raw,
  updated_at = EXCLUDED.updated_at
WHERE m.updated_at < $3`;

const UPSERT_EVENTS = `
INSERT INTO events AS e (event_ticker, series_ticker, title, sub_title, mutually_exclusive, raw, updated_at)
SELECT x.event_ticker, x.series_ticker, x.title, x.sub_title, x.mutually_exclusive, x.raw, $2
FROM jsonb_to_recordset($1::jsonb) AS x(event_ticker text, series_ticker text, title text, sub_title text,
  mutually_exclusive boolean, raw jsonb)
ON CONFLICT (event_ticker) DO UPDATE SET
  series_ticker = COALESCE(EXCLUDED.series_ticker, e.series_ticker),
  title = COALESCE(EXCLUDED.title, e.title),
  sub_title = COALESCE(EXCLUDED.sub_title, e.sub_title),
  mutually_exclusive = COALESCE(EXCLUDED.mutually_exclusive, e.mutually_exclusive),
  raw = e.raw || EXCLUDED.raw,
  updated_at = EXCLUDED.updated_at`;

const UPSERT_SERIES = `
INSERT INTO series AS s (series_ticker, title, category, frequency, raw, updated_at)
SELECT x.series_ticker, x.title, x.category, x.frequency, x.raw, $2
FROM jsonb_to_recordset($1::jsonb) AS x(series_ticker text, title text, category text, frequency text, raw jsonb)
ON CONFLICT (series_ticker) DO UPDATE SET
  title = EXCLUDED.title, category = EXCLUDED.category, frequency = EXCLUDED.frequency,
  raw = EXCLUDED.raw, updated_at = EXCLUDED.updated_at`;

const PATCH_MARKET = `
UPDATE markets SET
  status = COALESCE($2, status),
  open_time = COALESCE($3, open_time),
  close_time = COALESCE($4, close_time),
  result = COALESCE($5, result),
  price_level_structure = COALESCE($6, price_level_structure),
  raw = raw || $7::jsonb,
  updated_at = $8
WHERE ticker = $1`;

const msToUs = (ms: number | null | undefined): number | null => (ms === null || ms === undefined ? null : ms * 1000);

export class RegistryStore {
  constructor(
    private readonly db: Queryable,
    private readonly batchRows: number,
  ) {}

  /**
   * Upserts markets; rows updated at or after `notOverwritingSinceUs` are left alone (pass the
   * listing's start time; pass Infinity-like `Number.MAX_SAFE_INTEGER` to always overwrite).
   */
  async upsertMarkets(
    markets: readonly KalshiMarket[],
    seriesOf: (eventTicker: string | null) => string | null,
    nowUs: number,
    notOverwritingSinceUs: number,
  ): Promise<void> {
    for (let i = 0; i < markets.length; i += this.batchRows) {
      const rows = markets.slice(i, i + this.batchRows).map((m) => ({
        ticker: m.ticker,
        event_ticker: m.eventTicker,
        series_ticker: seriesOf(m.eventTicker),
        status: m.status,
        price_level_structure: m.priceLevelStructure,
        open_time: msToUs(m.openTimeMs),
        close_time: msToUs(m.closeTimeMs),
        result: m.result,
        raw: m.raw,
      }));
      await this.db.query(UPSERT_MARKETS, [JSON.stringify(rows), nowUs, notOverwritingSinceUs]);
    }
  }

  async upsertEvents(events: readonly KalshiEvent[], nowUs: number): Promise<void> {
    for (let i = 0; i < events.length; i += this.batchRows) {
      const rows = events.slice(i, i + this.batchRows).map((e) => ({
        event_ticker: e.eventTicker,
        series_ticker: e.seriesTicker,
        title: e.title,
        sub_title: e.subTitle,
        mutually_exclusive: e.mutuallyExclusive,
        raw: e.raw,
      }));
      await this.db.query(UPSERT_EVENTS, [JSON.stringify(rows), nowUs]);
    }
  }

  async upsertSeries(series: readonly KalshiSeries[], nowUs: number): Promise<void> {
    for (let i = 0; i < series.length; i += this.batchRows) {
      const rows = series.slice(i, i + this.batchRows).map((s) => ({
        series_ticker: s.ticker,
        title: s.title,
        category: s.category,
        frequency: s.frequency,
        raw: s.raw,
      }));
      await this.db.query(UPSERT_SERIES, [JSON.stringify(rows), nowUs]);
    }
  }

  /** Applies a partial update; returns false when the market has no row yet. */
  async patchMarket(ticker: string, p: MarketPatch, nowUs: number): Promise<boolean> {
    const r = await this.db.query(PATCH_MARKET, [
      ticker,
      p.status ?? null,
      msToUs(p.openTimeMs),
      msToUs(p.closeTimeMs),
      p.result ?? null,
      p.priceLevelStructure ?? null,
      JSON.stringify(p.rawPatch ?? {}),
      nowUs,
    ]);
    return (r.rowCount ?? 0) > 0;
  }
}
