// aggregates/: candles per market from production's trades and tickers. PostgreSQL streams the
// period's rows out (a range scan on the time-leading key, no sort); DuckDB aggregates them and
// writes the Parquet file. Every value is exact: DECIMAL sums and products, and the VWAP by
// integer division, never a float (DuckDB's DECIMAL / DECIMAL would be a DOUBLE).
//
// Rules (docs/archive.md "aggregates/"):
// - A market has rows in a file when it has at least one trade or ticker message in the file's
//   period (the hour for 1m and 1h candles, the UTC day for 1d), and then one row for EVERY
//   interval of the period: an interval without trades is explicit (open/high/low/close/vwap
//   NULL, volume 0, dollar_volume 0, trade_count 0), never a missing row.
// - OHLC are YES prices of the interval's trades in (exchange_ts, trade_id) order.
// - vwap = dollar_volume / volume, rounded half away from zero to 6 decimals.
// - open_interest: of the last ticker message (exchange_ts, then occurrence, then fingerprint
//   order) with a non-NULL open interest at or before the interval's end, within the file's
//   period (NULL until the period's first one: a file never depends on another file).
import { invariant } from '../core/errors';
import { CANDLE_INTERVAL_US, type DerivedDataset } from './datasets';

/** The period's trades and tickers out of production (COPY text; literals: COPY takes no parameters). */
export function candleSourcesSql(d: DerivedDataset, periodStartUs: number): { trades: string; tickers: string } {
  invariant(Number.isSafeInteger(periodStartUs) && periodStartUs % d.periodUs === 0, `bad period start ${periodStartUs}`);
  const range = `exchange_ts >= ${periodStartUs} AND exchange_ts < ${periodStartUs + d.periodUs}`;
  return {
    trades: `COPY (SELECT ticker, exchange_ts, trade_id, yes_price, count FROM trades WHERE ${range}) TO STDOUT`,
    tickers: `COPY (SELECT ticker, exchange_ts, occurrence, fingerprint, open_interest FROM tickers WHERE ${range} AND open_interest IS NOT NULL) TO STDOUT`,
  };
}

const TRADE_COLUMNS = `{'ticker': 'VARCHAR', 'exchange_ts': 'BIGINT', 'trade_id': 'VARCHAR', 'yes_price': 'DECIMAL(12,6)', 'count': 'DECIMAL(20,2)'}`;
const TICKER_COLUMNS = `{'ticker': 'VARCHAR', 'exchange_ts': 'BIGINT', 'occurrence': 'SMALLINT', 'fingerprint': 'BIGINT', 'open_interest': 'DECIMAL(20,2)'}`;
const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const readCopyText = (path: string, columns: string): string =>
  `read_csv(${sqlString(path)}, header = false, auto_detect = false, delim = '\\t', quote = '', escape = '', nullstr = '\\N', columns = ${columns})`;

/** DuckDB SELECT of one period's candles, in the dataset's column order and types. */
export function candlesSelectSql(d: DerivedDataset, periodStartUs: number, tradesPath: string, tickersPath: string): string {
  const step = CANDLE_INTERVAL_US[d.name];
  invariant(step !== undefined && d.periodUs % step === 0, `${d.name} is not a candle dataset`);
  const from = periodStartUs;
  const n = d.periodUs / step;
  const expr: Record<string, string> = {
    ticker: 'ticker',
    interval_start: `${from} + k * ${step}`,
    interval_end: `${from} + (k + 1) * ${step}`,
    open: 'open',
    high: 'high',
    low: 'low',
    close: 'close',
    volume: 'coalesce(volume, 0)',
    dollar_volume: 'coalesce(dollar_volume, 0)',
    trade_count: 'coalesce(trade_count, 0)',
    // Half away from zero in µ$: (2·dv·10^8 + v·10^2) // (2·v·10^2) over integers (dv has 8 decimals, v 2).
    vwap:
      'CASE WHEN volume > 0 THEN CAST((2 * CAST(dollar_volume * 100000000 AS HUGEINT) + CAST(volume * 100 AS HUGEINT)) // ' +
      '(2 * CAST(volume * 100 AS HUGEINT)) AS DECIMAL(18,0)) * CAST(0.000001 AS DECIMAL(7,6)) END',
    open_interest: 'last_value(open_interest IGNORE NULLS) OVER (PARTITION BY ticker ORDER BY k)',
  };
  const select = d.columns.map((c) => `CAST(${expr[c.name]} AS ${c.parquetType}) AS "${c.name}"`).join(',\n  ');
  return `WITH t AS (SELECT ticker, (exchange_ts - ${from}) // ${step} AS k, exchange_ts, trade_id, yes_price, count FROM ${readCopyText(tradesPath, TRADE_COLUMNS)}),
tk AS (SELECT ticker, (exchange_ts - ${from}) // ${step} AS k, exchange_ts, occurrence, fingerprint, open_interest FROM ${readCopyText(tickersPath, TICKER_COLUMNS)}),
agg AS (SELECT ticker, k, first(yes_price ORDER BY exchange_ts, trade_id) AS open, max(yes_price) AS high, min(yes_price) AS low,
               last(yes_price ORDER BY exchange_ts, trade_id) AS close, sum(count) AS volume, sum(count * yes_price) AS dollar_volume, count(*) AS trade_count
          FROM t GROUP BY ticker, k),
oi AS (SELECT ticker, k, last(open_interest ORDER BY exchange_ts, occurrence, fingerprint) AS open_interest FROM tk GROUP BY ticker, k),
mk AS (SELECT ticker FROM t UNION SELECT ticker FROM tk),
j AS (SELECT mk.ticker, g.range AS k, agg.open, agg.high, agg.low, agg.close, agg.volume, agg.dollar_volume, agg.trade_count, oi.open_interest
        FROM mk CROSS JOIN range(0, ${n}) g
        LEFT JOIN agg ON agg.ticker = mk.ticker AND agg.k = g.range
        LEFT JOIN oi ON oi.ticker = mk.ticker AND oi.k = g.range)
SELECT ${select} FROM j`;
}
