// FrameProcessor throughput per message type: decoded bus frame in, COPY row line out (JSON
// parse, validation, seq check, occurrence / fingerprint, encoding). Frames are prepared up front;
// each message of a batch has its own exchange time, so replaying the batch does not pile up
// occurrence numbers (which would, correctly, end in rejects after 32767 identical changes).
import assert from 'node:assert/strict';
import { FrameCodec, FrameKind, type BusFrame } from '../src/ingest/frame';
import { FrameProcessor } from '../src/workers/processor';
import type { TimeSeriesTableName } from '../src/schema/tables';
import { isMain, runMicro, type MicroResult } from './micro-common';

const BATCH = 1000;
const RECV = 1_779_946_510_000_000;
const codec = new FrameCodec(1 << 20);
const frame = (message: unknown): BusFrame => codec.decode(codec.encode(FrameKind.data, 1, RECV, Buffer.from(JSON.stringify(message))));
const hex = (i: number): string => i.toString(16).padStart(12, '0');

const MESSAGES: Record<string, { table: TimeSeriesTableName; make: (i: number) => unknown; first: string }> = {
  orderbook_delta: {
    table: 'orderbook_deltas',
    make: (i) => ({
      type: 'orderbook_delta',
      sid: 2,
      seq: i + 1,
      msg: {
        market_ticker: 'FED-23DEC-T3.00',
        market_id: '9b0f6b43',
        price_dollars: '0.9600',
        delta_fp: '-54.00',
        side: 'yes',
        ts: `2026-05-28T05:35:09.${623423 + i}Z`,
        ts_ms: 1779946509623,
      },
    }),
    first: 'FED-23DEC-T3.00\tyes\t0.9600\t-54.00\t1779946509623423\t0\t1779946510000000\tg1\t1\t2\t1',
  },
  orderbook_snapshot: {
    table: 'orderbook_snapshots',
    make: (i) => ({
      type: 'orderbook_snapshot',
      sid: 2,
      seq: i + 1,
      msg: {
        market_ticker: 'FED-23DEC-T3.00',
        yes_dollars_fp: Array.from({ length: 10 }, (_, k) => [`0.${10 + k}00`, '300.00']),
        no_dollars_fp: [['0.5400', '20.00']],
      },
    }),
    first:
      'FED-23DEC-T3.00\t[["0.1000","300.00"],["0.1100","300.00"],["0.1200","300.00"],["0.1300","300.00"],["0.1400","300.00"],["0.1500","300.00"],["0.1600","300.00"],["0.1700","300.00"],["0.1800","300.00"],["0.1900","300.00"]]\t[["0.5400","20.00"]]\t1779946510000000\tws\t\\N\t\\N\t1779946510000000\tg1\t1\t2\t1',
  },
  trade: {
    table: 'trades',
    make: (i) => ({
      type: 'trade',
      sid: 11,
      msg: {
        trade_id: `d91bc706-ee49-470d-82d8-${hex(i)}`,
        market_ticker: 'HIGHNY-22DEC23-B53.5',
        yes_price_dollars: '0.3600',
        no_price_dollars: '0.6400',
        count_fp: '136.00',
        taker_side: 'no',
        taker_outcome_side: 'no',
        taker_book_side: 'ask',
        ts: 1669149841,
        ts_ms: 1669149841000,
      },
    }),
    first:
      'd91bc706-ee49-470d-82d8-000000000000\tHIGHNY-22DEC23-B53.5\t0.3600\t0.6400\t136.00\tno\tno\task\t\\N\t1669149841000000\tws\t1779946510000000\tg1\t1\t11\t\\N',
  },
  ticker: {
    table: 'tickers',
    make: (i) => ({
      type: 'ticker',
      sid: 3,
      msg: {
        market_ticker: 'FED-23DEC-T3.00',
        price_dollars: '0.4800',
        yes_bid_dollars: '0.4500',
        yes_ask_dollars: '0.5300',
        yes_bid_size_fp: '300.00',
        yes_ask_size_fp: '150.00',
        last_trade_size_fp: '25.00',
        volume_fp: `${33896 + i}.00`,
        open_interest_fp: '20422.00',
        dollar_volume: 16948,
        dollar_open_interest: 10211,
        ts: 1669149841,
        ts_ms: 1669149841000,
        time: `2022-11-22T20:44:01.${123456 + i}Z`,
      },
    }),
    first: 'FED-23DEC-T3.00\t0.4800\t0.4500\t0.5300\t300.00\t150.00\t25.00\t33896.00\t20422.00\t16948\t10211\t1669149841123456\t',
  },
  market_lifecycle_v2: {
    table: 'lifecycle_events',
    make: (i) => ({
      type: 'market_lifecycle_v2',
      sid: 5,
      msg: { market_ticker: `KXBTC-26-T${i}`, event_type: 'close_date_updated', close_ts: 1669149841 + i },
    }),
    first:
      'market_lifecycle_v2\tKXBTC-26-T0\t\\N\tclose_date_updated\t{"close_ts":1669149841,"event_type":"close_date_updated","market_ticker":"KXBTC-26-T0"}\t',
  },
};

export async function benchParse(): Promise<MicroResult[]> {
  const lines: string[] = [];
  let rows = 0;
  const processor = new FrameProcessor(
    { gathererId: 'g1', recentTradeIdsMax: BATCH / 2 },
    {
      rows: { append: (_t, line) => (rows++, lines.length < 1 && lines.push(line), true) },
      control: () => undefined,
      gap: () => assert.fail('no gaps expected'),
      reject: (code, sample) => assert.fail(`reject ${code}: ${sample}`),
      lifecycle: () => undefined,
    },
  );
  const tasks = Object.entries(MESSAGES).map(([type, spec]) => {
    const frames = Array.from({ length: BATCH }, (_, i) => frame(spec.make(i)));
    const runBatch = (): void => {
      processor.resetConnection(1); // seq restarts at 1 for the next prepared batch
      for (let i = 0; i < BATCH; i++) processor.process(frames[i]!);
      // A WS snapshot row waits for its sid's next delta (next_delta_ts): release it as a drain does.
      processor.releaseHeldSnapshots(performance.now(), true);
    };
    return {
      name: `process ${type}`,
      opsPerCall: BATCH,
      check: () => {
        lines.length = 0;
        const before = rows;
        runBatch();
        assert.equal(rows - before, BATCH, `${type}: one row per message`);
        assert.ok(lines[0]!.startsWith(spec.first), `${type}: ${lines[0]}`);
        lines.push('x'); // stop capturing
      },
      fn: runBatch,
    };
  });
  return runMicro('parse', tasks);
}

if (isMain(module)) void benchParse();
