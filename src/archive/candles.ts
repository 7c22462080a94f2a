// aggregates/: candles per market from production's trades and tickers, computed by PostgreSQL in
// NUMERIC (exact) and streamed out as CSV in the column order of src/archive/datasets.ts.
//
// Rules (docs/archive.md "aggregates/"):
// - A market has rows in a file when it has at least one trade or ticker message in the file's
//   period (the hour for 1m and 1h candles, the UTC day for 1d), and then one row for EVERY
//   interval of the period: an interval without trades is explicit (open/high/low/close/vwap
//   NULL, volume 0, dollar_volume 0, trade_count 0), never a missing row.
// - OHLC are YES prices of the interval's trades in (exchange_ts, trade_id) order.
// - vwap = dollar_volume / volume, rounded half away from zero to 6 decimals with integer
//   arithmetic (div), so it is exact and reproducible in any engine.
// - open_interest: of the last ticker message (exchange_ts, then occurrence, then fingerprint
//   order) with a non-NULL open interest at or before the interval's end, within the file's
//   period (NULL until the period's first one: a file never depends on another file).
import { invariant } from '../core/errors';
import { CANDLE_INTERVAL_US, type DerivedDataset } from './datasets';

/** `COPY (…) TO STDOUT (FORMAT csv)` of one period's candles. Literals: COPY takes no parameters. */
export function candlesCopySql(d: DerivedDataset, periodStartUs: number): string {
  const step = CANDLE_INTERVAL_US[d.name];
  invariant(step !== undefined && d.periodUs % step === 0, `${d.name} is not a candle dataset`);
  invariant(Number.isSafeInteger(periodStartUs) && periodStartUs % d.periodUs === 0, `bad period start ${periodStartUs}`);
  const from = periodStartUs;
  const to = periodStartUs + d.periodUs;
  const n = d.periodUs / step;
  return `COPY (
  WITH t AS (
    SELECT ticker, (exchange_ts - ${from}) / ${step} AS k, exchange_ts, trade_id, yes_price, count
      FROM trades WHERE exchange_ts >= ${from} AND exchange_ts < ${to}),
  agg AS (
    SELECT ticker, k,
           (array_agg(yes_price ORDER BY exchange_ts, trade_id))[1] AS open,
           max(yes_price) AS high, min(yes_price) AS low,
           (array_agg(yes_price ORDER BY exchange_ts DESC, trade_id DESC))[1] AS close,
           sum(count) AS volume, sum(count * yes_price) AS dollar_volume, count(*) AS trade_count
      FROM t GROUP BY ticker, k),
  tk AS (
    SELECT ticker, (exchange_ts - ${from}) / ${step} AS k, exchange_ts, occurrence, fingerprint, open_interest
      FROM tickers WHERE exchange_ts >= ${from} AND exchange_ts < ${to}),
  oi AS (
    SELECT DISTINCT ON (ticker, k) ticker, k, open_interest FROM tk WHERE open_interest IS NOT NULL
     ORDER BY ticker, k, exchange_ts DESC, occurrence DESC, fingerprint DESC),
  mk AS (SELECT ticker FROM t UNION SELECT ticker FROM tk),
  j AS (
    SELECT mk.ticker, g.k, a.open, a.high, a.low, a.close, a.volume, a.dollar_volume, a.trade_count, oi.open_interest,
           count(oi.open_interest) OVER (PARTITION BY mk.ticker ORDER BY g.k) AS oi_group
      FROM mk CROSS JOIN generate_series(0::bigint, ${n - 1}) AS g(k)
      LEFT JOIN agg a ON a.ticker = mk.ticker AND a.k = g.k
      LEFT JOIN oi ON oi.ticker = mk.ticker AND oi.k = g.k)
  SELECT ticker, ${from} + k * ${step}, ${from} + (k + 1) * ${step}, open, high, low, close,
         coalesce(volume, 0), coalesce(dollar_volume, 0), coalesce(trade_count, 0),
         CASE WHEN volume > 0 THEN (div(2 * dollar_volume * 1000000 + volume, 2 * volume) / 1000000)::numeric(12,6) END,
         first_value(open_interest) OVER (PARTITION BY ticker, oi_group ORDER BY k)
    FROM j ORDER BY ticker COLLATE "C", k
) TO STDOUT (FORMAT csv)`;
}
