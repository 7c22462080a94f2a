// Every message type of the protocol sheet -> exact row lines / control events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TIME_SERIES_TABLES } from '../../src/schema/tables';
import { compileEncoders, encodedColumns } from '../../src/workers/encoders';
import { Capture, referenceFnv } from './harness';

const RECV = 1_779_946_510_000_000;
const N = '\\N';
const row = (...cols: (string | number)[]): string => cols.join('\t');

const SNAPSHOT = {
  type: 'orderbook_snapshot',
  sid: 2,
  seq: 1,
  msg: {
    market_ticker: 'FED-23DEC-T3.00',
    market_id: '9b0f6b43-5b0e-4c4c-9a0e-000000000001',
    yes_dollars_fp: [
      ['0.0800', '300.00'],
      ['0.2200', '333.00'],
    ],
    no_dollars_fp: [['0.5400', '20.00']],
  },
};
const DELTA = {
  type: 'orderbook_delta',
  sid: 2,
  seq: 2,
  msg: {
    market_ticker: 'FED-23DEC-T3.00',
    market_id: '9b0f6b43-5b0e-4c4c-9a0e-000000000001',
    price_dollars: '0.9600',
    delta_fp: '-54.00',
    side: 'yes',
    ts: '2026-05-28T05:35:09.623423Z',
    ts_ms: 1779946509623,
  },
  sending_ts_ms: 1779946509701,
};
const TRADE = {
  type: 'trade',
  sid: 11,
  msg: {
    trade_id: 'd91bc706-ee49-470d-82d8-11418bda6fed',
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
};
const TICKER = {
  type: 'ticker',
  sid: 3,
  msg: {
    market_ticker: 'FED-23DEC-T3.00',
    market_id: '9b0f',
    price_dollars: '0.4800',
    yes_bid_dollars: '0.4500',
    yes_ask_dollars: '0.5300',
    yes_bid_size_fp: '300.00',
    yes_ask_size_fp: '150.00',
    last_trade_size_fp: '25.00',
    volume_fp: '33896.00',
    open_interest_fp: '20422.00',
    dollar_volume: 16948,
    dollar_open_interest: 10211,
    ts: 1669149841,
    ts_ms: 1669149841000,
    time: '2022-11-22T20:44:01.123456Z',
  },
};

test('each encoder writes the columns of tables.ts minus batch_id, in order', () => {
  const encoders = compileEncoders() as unknown as Record<string, (r: unknown) => string>;
  for (const table of TIME_SERIES_TABLES) {
    const cols = encodedColumns(table);
    assert.equal(cols.length, table.columns.length - 1);
    assert.ok(!cols.some((c) => c.name === 'batch_id'));
    // A row whose every value names its column shows count and order in one line.
    const probe = Object.fromEntries(cols.map((c) => [c.name, c.type.startsWith('bool') ? true : c.name]));
    const line = encoders[table.name]!(probe);
    const expected = cols.map((c) => (c.type === 'boolean' ? 't' : c.name));
    assert.deepEqual(line.split('\t'), expected, table.name);
    const nulls = Object.fromEntries(cols.map((c) => [c.name, null]));
    const nullLine = encoders[table.name]!({ ...probe, ...nulls });
    assert.deepEqual(
      nullLine.split('\t').map((v, i) => (v === N) === cols[i]!.nullable),
      cols.map(() => true),
      `${table.name} NULLs`,
    );
  }
});

test('orderbook_snapshot then orderbook_delta (sheet examples) -> exact rows', () => {
  const c = new Capture();
  c.feed(SNAPSHOT, 4, RECV);
  c.feed(DELTA, 4, RECV + 5);
  assert.deepEqual(c.lines('orderbook_snapshots'), [
    row('FED-23DEC-T3.00', '[["0.0800","300.00"],["0.2200","333.00"]]', '[["0.5400","20.00"]]', RECV, 'ws', N, 1_779_946_509_623_423, RECV, 'g1', 4, 2, 1, N),
  ]);
  assert.deepEqual(c.lines('orderbook_deltas'), [
    row('FED-23DEC-T3.00', 'yes', '0.9600', '-54.00', 1_779_946_509_623_423, 0, RECV + 5, 'g1', 4, 2, 2, 1_779_946_509_701_000),
  ]);
  // The snapshot waited for the sid's next delta: its exchange time is next_delta_ts. A later snapshot
  // on the same sid is anchored at the last delta's exchange time; an empty side is [].
  c.feed({ ...SNAPSHOT, seq: 3, msg: { market_ticker: 'FED-23DEC-T3.00', no_dollars_fp: [['0.5400', '20.00']] } }, 4, RECV + 9);
  c.processor.releaseHeldSnapshots(undefined, true);
  assert.equal(
    c.lines('orderbook_snapshots')[1],
    row('FED-23DEC-T3.00', '[]', '[["0.5400","20.00"]]', RECV + 9, 'ws', 1_779_946_509_623_423, N, RECV + 9, 'g1', 4, 2, 3, N),
  );
  assert.deepEqual(c.rejects, []);
  assert.deepEqual(c.gaps, []);
});

test('sending_ts_ms is kept as sent_at (µs); a bad one leaves sent_at NULL and keeps the row', () => {
  const c = new Capture();
  c.feed(DELTA, 4, RECV);
  c.feed({ ...DELTA, seq: 3, sending_ts_ms: 'soon' }, 4, RECV);
  c.feed({ ...DELTA, seq: 4, sending_ts_ms: 1.5 }, 4, RECV);
  assert.deepEqual(
    c.lines('orderbook_deltas').map((l) => l.split('\t').at(-1)),
    ['1779946509701000', N, N],
  );
  assert.deepEqual(c.rejects, []);
});

test('delta without ts uses ts_ms x 1000', () => {
  const c = new Capture();
  const { ts: _ts, ...msg } = DELTA.msg;
  c.feed({ ...DELTA, seq: 1, msg });
  assert.equal(c.lines('orderbook_deltas')[0]!.split('\t')[4], '1779946509623000');
});

test('trade (sheet example) -> exact row; exchange_ts = ts_ms x 1000 (the millisecond the REST copy keys at too); duplicate trade_id dropped', () => {
  const c = new Capture();
  c.feed(TRADE, 2, RECV);
  c.feed(TRADE, 3, RECV + 1); // the same trade on another connection
  const expected = row(
    'd91bc706-ee49-470d-82d8-11418bda6fed',
    'HIGHNY-22DEC23-B53.5',
    '0.3600',
    '0.6400',
    '136.00',
    'no',
    'no',
    'ask',
    N,
    1_669_149_841_000_000,
    'ws',
    RECV,
    'g1',
    2,
    11,
    N,
    N,
  );
  assert.deepEqual(c.lines('trades'), [expected]);
  assert.equal(c.processor.counters.duplicateTradesDropped, 1);
  c.feed({ ...TRADE, msg: { ...TRADE.msg, trade_id: 'D91BC706-EE49-470D-82D8-11418BDA6FEE', is_block_trade: true, ts_ms: 1669149841999 } }, 2, RECV);
  const cols = c.lines('trades')[1]!.split('\t');
  assert.equal(cols[0], 'd91bc706-ee49-470d-82d8-11418bda6fee');
  assert.equal(cols[8], 't');
  assert.equal(cols[9], '1669149841999000');
});

test('ticker (sheet example) -> exact row with µs time, fingerprint and occurrence', () => {
  const c = new Capture();
  c.feed(TICKER, 1, RECV);
  const content = [
    'FED-23DEC-T3.00',
    '0.4800',
    '0.4500',
    '0.5300',
    '300.00',
    '150.00',
    '25.00',
    '33896.00',
    '20422.00',
    '16948',
    '10211',
    '1669149841123456',
  ].join('\x1f');
  const fp = referenceFnv(content);
  assert.deepEqual(c.lines('tickers'), [
    row(
      'FED-23DEC-T3.00',
      '0.4800',
      '0.4500',
      '0.5300',
      '300.00',
      '150.00',
      '25.00',
      '33896.00',
      '20422.00',
      16948,
      10211,
      1_669_149_841_123_456,
      fp,
      0,
      RECV,
      'g1',
      1,
      3,
      N,
      N,
    ),
  ]);
  // Same content again at the same µs: occurrence 1, same fingerprint. Different content: own fingerprint, occurrence 0.
  c.feed(TICKER, 1, RECV + 1);
  c.feed({ ...TICKER, msg: { ...TICKER.msg, volume_fp: '33897.00' } }, 1, RECV + 2);
  const [, second, third] = c.lines('tickers').map((l) => l.split('\t'));
  assert.equal(second![12], fp);
  assert.equal(second![13], '1');
  assert.notEqual(third![12], fp);
  assert.equal(third![13], '0');
});

test('ticker: price "" is NULL, time falls back to ts_ms then ts; missing optional fields are NULL', () => {
  const c = new Capture();
  const { time: _t, ...noTime } = TICKER.msg;
  c.feed({ ...TICKER, msg: { ...noTime, price_dollars: '' } });
  const { ts_ms: _m, ...noMs } = noTime;
  c.feed({ ...TICKER, msg: { market_ticker: 'A-1', ts: noMs.ts } });
  const [a, b] = c.lines('tickers').map((l) => l.split('\t'));
  assert.equal(a![1], N);
  assert.equal(a![11], '1669149841000000');
  assert.deepEqual(b!.slice(1, 11), Array(10).fill(N));
  assert.equal(b![11], '1669149841000000');
  assert.equal(b![12], referenceFnv(['A-1', ...Array(10).fill('\x00'), '1669149841000000'].join('\x1f')));
});

test('lifecycle channels -> canonical payload (sorted keys), fingerprint over it, event_type', () => {
  const c = new Capture();
  const msg = { market_ticker: 'KXBTC-26-T1', result: 'yes', event_type: 'determined', determination_ts: 1669149841, settlement_value: '1.0000' };
  c.feed({ type: 'market_lifecycle_v2', sid: 5, msg }, 1, RECV);
  const payload = '{"determination_ts":1669149841,"event_type":"determined","market_ticker":"KXBTC-26-T1","result":"yes","settlement_value":"1.0000"}';
  assert.deepEqual(c.lines('lifecycle_events'), [
    row('market_lifecycle_v2', 'KXBTC-26-T1', N, 'determined', payload, referenceFnv(payload), RECV, 'g1', 1, 5, N, N),
  ]);
  // Key order does not change the payload or fingerprint.
  c.feed({ type: 'market_lifecycle_v2', sid: 5, msg: Object.fromEntries(Object.entries(msg).reverse()) }, 1, RECV);
  assert.equal(c.lines('lifecycle_events')[1], c.lines('lifecycle_events')[0]);
  c.feed({ type: 'multivariate_market_lifecycle', sid: 5, msg: { market_ticker: 'KXMVE-1', event_type: 'created', note: 'tab\there' } });
  assert.equal(c.lines('lifecycle_events')[2]!.split('\t').length, 12);
  assert.ok(c.lines('lifecycle_events')[2]!.includes('"note":"tab\\\\there"'), 'JSON escape then COPY escape');
  c.feed({ type: 'event_lifecycle', sid: 5, msg: { event_ticker: 'KXBTC-26', title: 'Bitcoin', series_ticker: 'KXBTC' } });
  const ev = c.lines('lifecycle_events')[3]!.split('\t');
  assert.deepEqual(ev.slice(0, 4), ['event_lifecycle', N, 'KXBTC-26', 'created']);
  assert.deepEqual(c.rejects, []);
});

test('control messages become typed control events', () => {
  const c = new Capture();
  c.feed({ id: 1, type: 'subscribed', msg: { channel: 'orderbook_delta', sid: 1 } }, 7, RECV);
  c.feed(
    {
      id: 3,
      type: 'ok',
      msg: [
        { channel: 'ticker', sid: 2 },
        { channel: 'orderbook_delta', sid: 1 },
      ],
    },
    7,
    RECV,
  );
  c.feed({ id: 5, sid: 1, seq: 1, type: 'ok', msg: { market_tickers: ['A-1', 'B-2'] } }, 7, RECV);
  c.feed({ id: 2, sid: 1, seq: 2, type: 'unsubscribed' }, 7, RECV);
  c.feed({ id: 9, type: 'error', msg: { code: 6, msg: 'bad' } }, 7, RECV);
  assert.deepEqual(c.controls, [
    { kind: 'subscribed', connId: 7, id: 1, sid: 1, channel: 'orderbook_delta', receivedUs: RECV },
    {
      kind: 'list_subscriptions',
      connId: 7,
      id: 3,
      subscriptions: [
        { channel: 'ticker', sid: 2 },
        { channel: 'orderbook_delta', sid: 1 },
      ],
      receivedUs: RECV,
    },
    { kind: 'ok', connId: 7, id: 5, sid: 1, seq: 1, tickers: ['A-1', 'B-2'], receivedUs: RECV },
    { kind: 'unsubscribed', connId: 7, id: 2, sid: 1, seq: 2, receivedUs: RECV },
    { kind: 'error', connId: 7, id: 9, sid: null, code: 6, message: 'bad', receivedUs: RECV },
  ]);
  assert.deepEqual(c.gaps, []);
  assert.equal(c.rows.length, 0);
});

test('decimals pass through byte-for-byte (no float round trip)', () => {
  const c = new Capture();
  const odd = ['0.100000', '000.5', '999999.999999', '0'];
  odd.forEach((p, i) => c.feed({ ...DELTA, seq: i + 1, msg: { ...DELTA.msg, price_dollars: p, delta_fp: i % 2 ? '-0.01' : '123456789012345678.99' } }));
  assert.deepEqual(
    c.lines('orderbook_deltas').map((l) => l.split('\t')[2]),
    odd,
  );
  assert.deepEqual(
    c.lines('orderbook_deltas').map((l) => l.split('\t')[3]),
    ['123456789012345678.99', '-0.01', '123456789012345678.99', '-0.01'],
  );
});
