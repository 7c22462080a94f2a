// A real gatherer (connection manager, rings, worker threads, COPY into embedded PostgreSQL)
// pointed at a plain replay exchange (test/harness/replay-exchange.ts, not the simulator) that
// plays every captured data frame of the conformance corpus: each must be stored exactly as the
// corpus states its row, and nothing else may be stored. The replay server changes only a frame's
// sid and seq to fit the subscription it is played on; the expected rows take those two values
// from what the server sent. Discovery serves the captured GET /markets and GET /events items (they
// must reach the gatherer's registry tables as recorded) and, for the captured book frames'
// markets, which no captured listing holds, hand-made market objects that keep them open.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Simulator } from '../../src/sim/simulator';
import { tableByName, type TimeSeriesTableName } from '../../src/schema/tables';
import { MESSAGE_CHANNEL } from '../../src/kalshi/protocol';
import { gathererOptions, migratedGathererDb, startTestGatherer, waitFor } from '../harness/gatherer';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { startReplayExchange, type ReplayFrame } from '../harness/replay-exchange';
import { loadCorpus, type CorpusRowExpect } from './corpus';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

interface Expected {
  readonly key: string;
  readonly table: TimeSeriesTableName;
  readonly row: Record<string, string | null>;
}

/** Captured REST items of one route, parsed. */
function capturedRest(route: 'market' | 'event' | 'trade'): Record<string, unknown>[] {
  return loadCorpus()
    .filter(({ body }) => body.provenance === 'captured')
    .flatMap(({ body }) =>
      (body.rest ?? []).filter((r) => r.route === route && !('rejected' in r.expect)).map((r) => JSON.parse(r.body) as Record<string, unknown>),
    );
}

/** Every captured frame that makes a row (command replies are answered by the server itself). */
function capturedDataFrames(): { frame: ReplayFrame; expect: CorpusRowExpect }[] {
  const out: { frame: ReplayFrame; expect: CorpusRowExpect }[] = [];
  for (const { file, body } of loadCorpus()) {
    if (body.provenance !== 'captured') continue;
    body.frames.forEach((f, i) => {
      if ('table' in f.expect) out.push({ frame: { key: `${file}#${i}`, message: JSON.parse(f.frame) }, expect: f.expect });
    });
  }
  return out;
}

/** A hand-made GET /markets item (OpenAPI Market fields the registry reads), open for a day. */
function handMadeMarket(ticker: string, nowMs: number): Record<string, unknown> {
  return {
    ticker,
    event_ticker: ticker.split('-').slice(0, 2).join('-'),
    market_type: 'binary',
    status: 'active',
    open_time: new Date(nowMs - 3_600_000).toISOString(),
    close_time: new Date(nowMs + 86_400_000).toISOString(),
    price_level_structure: 'linear_cent',
    result: '',
  };
}

/** Rows of `table` equal to `row` in every listed column (compared as PostgreSQL values of the column's type). */
async function countMatching(db: import('pg').ClientBase, table: TimeSeriesTableName, row: Record<string, string | null>): Promise<number> {
  const columns = tableByName(table).columns;
  const names = Object.keys(row);
  const where = names.map((n, i) => `${n} IS NOT DISTINCT FROM $${i + 1}::${columns.find((c) => c.name === n)!.type}`).join(' AND ');
  const r = await db.query(
    `SELECT count(*)::int AS n FROM ${table} WHERE ${where}`,
    names.map((n) => row[n]),
  );
  return r.rows[0].n as number;
}

test('a real gatherer fed every captured frame and REST item by a plain replay exchange stores each exactly as recorded, and nothing else', async () => {
  const data = capturedDataFrames();
  const channels = new Set(data.map((d) => MESSAGE_CHANNEL[String(d.frame.message.type)]));
  for (const ch of ['orderbook_delta', 'ticker', 'trade', 'market_lifecycle_v2']) assert.ok(channels.has(ch as never), `captured frames of ${ch} are replayed`);
  const bookTickers = [
    ...new Set(
      data
        .filter((d) => MESSAGE_CHANNEL[String(d.frame.message.type)] === 'orderbook_delta')
        .map((d) => String((d.frame.message.msg as Record<string, unknown>).market_ticker)),
    ),
  ];
  const capturedMarkets = capturedRest('market');
  const capturedEvents = capturedRest('event');
  assert.ok(capturedMarkets.length > 0 && capturedEvents.length > 0, 'captured REST items to serve');
  const exchange = await startReplayExchange({
    frames: data.map((d) => d.frame),
    markets: [...bookTickers.map((t) => handMadeMarket(t, Date.now())), ...capturedMarkets],
    events: capturedEvents,
    trades: capturedRest('trade'),
    pingIntervalMs: 500,
  });
  const dbUrl = await migratedGathererDb(pg);
  const { gatherer, logLines } = await startTestGatherer(
    // The captured listing is of multivariate markets: track them so the listing carries them.
    gathererOptions(dbUrl, { wsUrl: exchange.wsUrl, restUrl: exchange.restUrl } as unknown as Simulator, { rest: { includeMultivariate: true } }),
  );
  try {
    await waitFor('every captured frame played', () => exchange.allPlayed(), 60_000);
    const sentBy = new Map(exchange.sent.map((s) => [s.key, s]));
    const expected: Expected[] = data.map((d) => {
      const s = sentBy.get(d.frame.key)!;
      return { key: d.frame.key, table: d.expect.table, row: { ...d.expect.row, sid: String(s.sid), seq: s.seq === null ? null : String(s.seq) } };
    });
    await withClient(dbUrl, async (db) => {
      const missing = async () => {
        const out: string[] = [];
        for (const e of expected) if ((await countMatching(db, e.table, e.row)) !== 1) out.push(e.key);
        return out;
      };
      await waitFor('every captured frame stored as its corpus row', async () => (await missing()).length === 0, 30_000).catch(async (err) => {
        throw new Error(`${(err as Error).message}; not stored exactly once: ${(await missing()).join(', ')}`);
      });
      for (const table of new Set(expected.map((e) => e.table))) {
        const n = (await db.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number;
        assert.equal(n, expected.filter((e) => e.table === table).length, `${table}: no rows beyond the captured frames`);
      }
      for (const table of ['trades', 'orderbook_deltas', 'orderbook_snapshots', 'tickers', 'lifecycle_events'] as const) {
        if (expected.some((e) => e.table === table)) continue;
        assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n, 0, `${table}: nothing invented`);
      }
      // The captured REST items reached the registry tables as recorded.
      await waitFor('captured markets and events in the registry tables', async () => {
        const m = await db.query('SELECT count(*)::int AS n FROM markets WHERE ticker = ANY($1)', [capturedMarkets.map((x) => x.ticker)]);
        const e = await db.query('SELECT count(*)::int AS n FROM events WHERE event_ticker = ANY($1)', [capturedEvents.map((x) => x.event_ticker)]);
        return m.rows[0].n === capturedMarkets.length && e.rows[0].n === capturedEvents.length;
      });
      for (const x of capturedMarkets) {
        const r = await db.query('SELECT event_ticker, status, price_level_structure, raw FROM markets WHERE ticker = $1', [x.ticker]);
        assert.deepEqual(
          r.rows[0],
          { event_ticker: x.event_ticker, status: x.status, price_level_structure: x.price_level_structure, raw: x },
          `market ${String(x.ticker)}`,
        );
      }
      for (const x of capturedEvents) {
        const r = await db.query('SELECT series_ticker, title, sub_title, mutually_exclusive, raw FROM events WHERE event_ticker = $1', [x.event_ticker]);
        assert.deepEqual(
          r.rows[0],
          { series_ticker: x.series_ticker, title: x.title, sub_title: x.sub_title || null, mutually_exclusive: x.mutually_exclusive, raw: x },
          `event ${String(x.event_ticker)}`,
        );
      }
      const gaps = await db.query(`SELECT kind FROM gap_ledger WHERE kind NOT IN ('new_market')`);
      assert.deepEqual(gaps.rows, [], 'the replay (its seq rewritten per sid) shows no gap');
    });
  } catch (err) {
    process.stderr.write(logLines.slice(-30).join(''));
    throw err;
  } finally {
    await gatherer.stop();
    await exchange.stop();
  }
});
