// Row encoding alone (generated encoders) and the ticker fingerprint.
import assert from 'node:assert/strict';
import { compileEncoders, type DeltaRow, type TickerRow } from '../src/workers/encoders';
import { fnv1a64Signed } from '../src/workers/fnv';
import { tickerContent } from '../src/workers/messages';
import { isMain, runMicro, type MicroResult } from './micro-common';

const BATCH = 1000;

export async function benchEncode(): Promise<MicroResult[]> {
  const enc = compileEncoders();
  const delta: DeltaRow = {
    ticker: 'FED-23DEC-T3.00',
    side: 'yes',
    price: '0.9600',
    delta: '-54.00',
    exchange_ts: 1_779_946_509_623_423,
    occurrence: 0,
    received_at: 1_779_946_510_000_000,
    gatherer: 'g1',
    conn_id: 1,
    sid: 2,
    seq: 2,
    sent_at: 1_779_946_509_700_000,
  };
  const ticker: TickerRow = {
    ticker: 'FED-23DEC-T3.00',
    price: '0.4800',
    yes_bid: '0.4500',
    yes_ask: '0.5300',
    yes_bid_size: '300.00',
    yes_ask_size: '150.00',
    last_trade_size: null,
    volume: '33896.00',
    open_interest: '20422.00',
    dollar_volume: 16948,
    dollar_open_interest: null,
    exchange_ts: 1_669_149_841_123_456,
    fingerprint: '-1',
    occurrence: 0,
    received_at: 1_779_946_510_000_000,
    gatherer: 'g1',
    conn_id: 1,
    sid: 3,
    seq: null,
    sent_at: null,
  };
  const content = tickerContent(ticker);
  let sink = 0;
  return runMicro('encode', [
    {
      name: 'encode orderbook_deltas row',
      opsPerCall: BATCH,
      check: () =>
        assert.equal(enc.orderbook_deltas(delta), 'FED-23DEC-T3.00\tyes\t0.9600\t-54.00\t1779946509623423\t0\t1779946510000000\tg1\t1\t2\t2\t1779946509700000'),
      fn: () => {
        for (let i = 0; i < BATCH; i++) {
          delta.occurrence = i & 7;
          sink += enc.orderbook_deltas(delta).length;
        }
      },
    },
    {
      name: 'encode tickers row',
      opsPerCall: BATCH,
      check: () =>
        assert.equal(
          enc.tickers(ticker),
          'FED-23DEC-T3.00\t0.4800\t0.4500\t0.5300\t300.00\t150.00\t\\N\t33896.00\t20422.00\t16948\t\\N\t1669149841123456\t-1\t0\t1779946510000000\tg1\t1\t3\t\\N\t\\N',
        ),
      fn: () => {
        for (let i = 0; i < BATCH; i++) sink += enc.tickers(ticker).length;
      },
    },
    {
      name: `fnv1a64 ticker content (${content.length} chars)`,
      opsPerCall: BATCH,
      check: () => assert.equal(fnv1a64Signed('a'), BigInt.asIntN(64, 0xaf63dc4c8601ec8cn).toString()),
      fn: () => {
        for (let i = 0; i < BATCH; i++) sink += fnv1a64Signed(content).length;
      },
    },
  ]).finally(() => assert.ok(sink >= 0));
}

if (isMain(module)) void benchEncode();
