// Row-line builders and small waits shared by the COPY writer tests.
import type { Client } from 'pg';
import { migrate } from '../../src/schema/migrate';
import { copyNullable, copyText } from '../../src/copy/text';
import { withClient, type TestPg } from '../harness/pg';

export const NOW_US = Date.UTC(2026, 10, 23, 12) * 1000;

export interface DeltaRow {
  ticker: string;
  side: string | null;
  price: string;
  delta: string;
  exchangeTs: number;
  occurrence: number;
  receivedAt: number;
  seq: number | null;
}

export function deltaLine(r: DeltaRow): string {
  return [
    copyText(r.ticker),
    copyNullable(r.side),
    r.price,
    r.delta,
    String(r.exchangeTs),
    String(r.occurrence),
    String(r.receivedAt),
    'g1',
    '3',
    '7',
    r.seq === null ? '\\N' : String(r.seq),
    String(r.exchangeTs + 3), // sent_at
  ].join('\t');
}

export function delta(i: number, over: Partial<DeltaRow> = {}): DeltaRow {
  return {
    ticker: `KX-${i % 7}`,
    side: i % 2 === 0 ? 'yes' : 'no',
    price: `0.${String(1000 + (i % 9000)).slice(-4)}`,
    delta: `${(i % 50) - 25}.5`,
    exchangeTs: NOW_US + i,
    occurrence: 0,
    receivedAt: NOW_US + i + 10,
    seq: i,
    ...over,
  };
}

export function tradeLine(tradeId: string, exchangeTs: number, source: 'ws' | 'rest', count = '10.00'): string {
  const connSid = source === 'rest' ? ['0', '0', '\\N', '\\N'] : ['1', '2', '99', String(exchangeTs + 3)]; // conn_id, sid, seq, sent_at
  return [tradeId, 'KX-T', '0.360000', '0.640000', count, 'yes', '\\N', '\\N', 'f', String(exchangeTs), source, String(exchangeTs + 5), 'g1', ...connSid].join(
    '\t',
  );
}

export function tradeId(n: number): string {
  return `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
}

export async function gathererDb(pg: TestPg): Promise<string> {
  const url = await pg.newDatabase();
  await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: NOW_US }));
  return url;
}

/** Polls `check` until it returns true; fails after `limitMs` (a bound, not a timing assertion). */
export async function waitUntil(check: () => Promise<boolean> | boolean, what: string, limitMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function count(c: Client, sql: string, params: unknown[] = []): Promise<number> {
  const r = await c.query<{ n: string }>(sql, params);
  return Number(r.rows[0]!.n);
}
