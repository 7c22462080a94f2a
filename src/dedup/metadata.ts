// Series, events and markets: the gatherers' registry tables upserted into production (newest
// updated_at wins), and production's coarse `markets.market_status` derived from Kalshi's status.
// Gap ledger rows: synced by updated_at with an overlap window (their `recovered` flags change
// after insert), upserted on (gatherer, gap_id).
import type { ClientBase } from 'pg';
import { onSide } from './merge';

/** Kalshi market status -> production market_status (the runbooks query market_status = 'open'). */
export const MARKET_STATUS_MAP: Readonly<Record<string, string>> = {
  initialized: 'unopened',
  unopened: 'unopened',
  active: 'open',
  open: 'open',
  inactive: 'paused',
  paused: 'paused',
  closed: 'closed',
  determined: 'determined',
  disputed: 'determined',
  amended: 'determined',
  finalized: 'settled',
  settled: 'settled',
};
export const UNKNOWN_MARKET_STATUS = 'unknown';

export function marketStatusOf(kalshiStatus: string): string {
  return MARKET_STATUS_MAP[kalshiStatus.toLowerCase()] ?? UNKNOWN_MARKET_STATUS;
}

const statusCaseSql = (expr: string): string =>
  `CASE lower(${expr}) ${Object.entries(MARKET_STATUS_MAP)
    .map(([k, v]) => `WHEN '${k}' THEN '${v}'`)
    .join(' ')} ELSE '${UNKNOWN_MARKET_STATUS}' END`;

interface RegistrySync {
  readonly table: string;
  readonly key: string;
  readonly columns: readonly string[];
  /** Extra production column and its SQL expression over the incoming row `r`. */
  readonly extra?: { readonly column: string; readonly expr: string };
}

const REGISTRY: readonly RegistrySync[] = [
  {
    table: 'series',
    key: 'series_ticker',
    columns: ['series_ticker', 'title', 'category', 'frequency', 'raw', 'updated_at'],
  },
  {
    table: 'events',
    key: 'event_ticker',
    columns: ['event_ticker', 'series_ticker', 'title', 'sub_title', 'mutually_exclusive', 'raw', 'updated_at'],
  },
  {
    table: 'markets',
    key: 'ticker',
    columns: ['ticker', 'event_ticker', 'series_ticker', 'status', 'price_level_structure', 'open_time', 'close_time', 'result', 'raw', 'updated_at'],
    extra: { column: 'market_status', expr: statusCaseSql('r.status') },
  },
];

/** Keyset position of a paged sync: (updated_at, key) of the last row read. */
export interface PagePos {
  updatedAt: bigint;
  key: string;
}

function readPageSql(s: RegistrySync): string {
  return `SELECT coalesce(json_agg(t), '[]')::text AS rows, count(*)::int AS n,
    (array_agg(t.updated_at::text ORDER BY t.updated_at DESC, t.${s.key} DESC))[1] AS last_at,
    (array_agg(t.${s.key} ORDER BY t.updated_at DESC, t.${s.key} DESC))[1] AS last_key
    FROM (SELECT ${s.columns.join(', ')} FROM ${s.table} WHERE (updated_at, ${s.key}) > ($1::bigint, $2::text)
          ORDER BY updated_at, ${s.key} LIMIT $3) t`;
}

function upsertSql(s: RegistrySync): string {
  const cols = [...s.columns, ...(s.extra ? [s.extra.column] : [])];
  const select = [...s.columns.map((c) => `r.${c}`), ...(s.extra ? [s.extra.expr] : [])];
  const sets = cols.filter((c) => c !== s.key).map((c) => `${c} = EXCLUDED.${c}`);
  return `INSERT INTO ${s.table} (${cols.join(', ')})
    SELECT ${select.join(', ')} FROM json_populate_recordset(NULL::${s.table}, $1::json) r ORDER BY r.${s.key}
    ON CONFLICT (${s.key}) DO UPDATE SET ${sets.join(', ')} WHERE ${s.table}.updated_at < EXCLUDED.updated_at`;
}

const PREPARED = REGISTRY.map((s) => ({ spec: s, read: readPageSql(s), upsert: upsertSql(s) }));

/**
 * Copies registry rows changed after `since` (per table) from a gatherer into production.
 * Returns the new positions; bounded by `pageRowsMax` rows per statement and `pagesMax` pages.
 */
export async function syncRegistry(
  gatherer: ClientBase,
  production: ClientBase,
  since: Map<string, PagePos>,
  pageRowsMax: number,
  pagesMax = 50,
): Promise<number> {
  let rows = 0;
  for (const p of PREPARED) {
    let pos = since.get(p.spec.table) ?? { updatedAt: -1n, key: '' };
    for (let page = 0; page < pagesMax; page++) {
      const r = await onSide('gatherer', () => gatherer.query(p.read, [pos.updatedAt.toString(), pos.key, pageRowsMax]));
      const row = r.rows[0] as {
        rows: string;
        n: number;
        last_at: string | null;
        last_key: string | null;
      };
      if (row.n === 0 || row.last_at === null || row.last_key === null) break;
      await onSide('production', () => production.query(p.upsert, [row.rows]));
      rows += row.n;
      pos = { updatedAt: BigInt(row.last_at), key: row.last_key };
      since.set(p.spec.table, pos);
      if (row.n < pageRowsMax) break;
    }
  }
  return rows;
}

// ---- gap ledger ---------------------------------------------------------------------------
const LEDGER_COLUMNS = [
  'gap_id',
  'conn_id',
  'sid',
  'channel',
  'kind',
  'tickers',
  'expected_seq',
  'got_seq',
  'error_code',
  'window_start',
  'window_end',
  'detected_at',
  'recovered',
  'recovered_at',
  'recovery_method',
  'updated_at',
];

const READ_LEDGER = `SELECT coalesce(json_agg(t), '[]')::text AS rows, count(*)::int AS n,
  max(t.updated_at)::text AS max_at,
  (array_agg(t.updated_at::text ORDER BY t.updated_at DESC, t.gap_id DESC))[1] AS last_at,
  (array_agg(t.gap_id::text ORDER BY t.updated_at DESC, t.gap_id DESC))[1] AS last_id
  FROM (SELECT ${LEDGER_COLUMNS.join(', ')} FROM gap_ledger WHERE (updated_at, gap_id) > ($1::bigint, $2::bigint)
        ORDER BY updated_at, gap_id LIMIT $3) t`;

// $1 rows, $2 gatherer name, $3 short instance id. A rebuilt gatherer restarts gap ids at 1: a
// row whose (gatherer, gap_id) already names a different gap (other detected_at / conn_id) is
// kept under `<name>@<instance>` instead of overwriting history.
const UPSERT_LEDGER = `WITH incoming AS (
    SELECT ${LEDGER_COLUMNS.map((c) => `r.${c}`).join(', ')} FROM json_populate_recordset(NULL::gap_ledger, $1::json) r),
  keyed AS (
    SELECT CASE WHEN p.gap_id IS NOT NULL AND (p.detected_at <> i.detected_at OR p.conn_id <> i.conn_id)
                THEN $2 || '@' || $3 ELSE $2 END AS gatherer, i.*
    FROM incoming i LEFT JOIN gap_ledger p ON p.gatherer = $2 AND p.gap_id = i.gap_id)
  INSERT INTO gap_ledger (gatherer, ${LEDGER_COLUMNS.join(', ')})
  SELECT gatherer, ${LEDGER_COLUMNS.join(', ')} FROM keyed
  ON CONFLICT (gatherer, gap_id) DO UPDATE SET ${LEDGER_COLUMNS.filter((c) => c !== 'gap_id')
    .map((c) => `${c} = EXCLUDED.${c}`)
    .join(', ')}
  WHERE gap_ledger.updated_at <= EXCLUDED.updated_at`;

export interface LedgerSyncResult {
  rows: number;
  /** Largest updated_at seen (µs), or the input when nothing was read. */
  maxUpdatedAt: bigint;
}

/** Upserts gap-ledger rows updated after `sinceUs - overlapUs` from a gatherer into production. */
export async function syncGapLedger(
  gatherer: ClientBase,
  production: ClientBase,
  who: { name: string; instanceId: string },
  sinceUs: bigint,
  overlapUs: bigint,
  pageRowsMax: number,
  pagesMax = 50,
): Promise<LedgerSyncResult> {
  let pos = { at: sinceUs > overlapUs ? sinceUs - overlapUs : 0n, id: 0n };
  let maxUpdatedAt = sinceUs;
  let rows = 0;
  for (let page = 0; page < pagesMax; page++) {
    const r = await onSide('gatherer', () => gatherer.query(READ_LEDGER, [pos.at.toString(), pos.id.toString(), pageRowsMax]));
    const row = r.rows[0] as {
      rows: string;
      n: number;
      max_at: string | null;
      last_at: string | null;
      last_id: string | null;
    };
    if (row.n === 0 || row.last_at === null || row.last_id === null || row.max_at === null) break;
    await onSide('production', () => production.query(UPSERT_LEDGER, [row.rows, who.name, who.instanceId.slice(0, 8)]));
    rows += row.n;
    if (BigInt(row.max_at) > maxUpdatedAt) maxUpdatedAt = BigInt(row.max_at);
    pos = { at: BigInt(row.last_at), id: BigInt(row.last_id) };
    if (row.n < pageRowsMax) break;
  }
  return { rows, maxUpdatedAt };
}
