// The wire module's REST parameter encoding and the trade key shared by the WS and REST copies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeListParam, encodeQuery, parseRestError, REST_ROUTES, tradeKeyTimeUs } from '../../src/kalshi/protocol';
import { parseEvent, parseTrade } from '../../src/gatherer/shapes';
import { parseLifecycle } from '../../src/gatherer/lifecycle';
import { Capture } from '../workers/harness';

test('GET /markets/orderbooks sends tickers as repeated keys; GET /markets as one comma list', () => {
  const books = new URLSearchParams();
  encodeQuery(REST_ROUTES.orderbooks, { tickers: ['A-1', 'B-2'] }, books);
  assert.equal(books.toString(), 'tickers=A-1&tickers=B-2');
  const markets = new URLSearchParams();
  encodeQuery(REST_ROUTES.markets, { tickers: ['A-1', 'B-2'], limit: 100, cursor: undefined }, markets);
  assert.equal(markets.toString(), 'tickers=A-1%2CB-2&limit=100');
});

test('a server reads repeated orderbooks tickers as given and splits only GET /markets comma lists', () => {
  assert.deepEqual(decodeListParam(REST_ROUTES.orderbooks, new URLSearchParams('tickers=A&tickers=B'), 'tickers'), ['A', 'B']);
  assert.deepEqual(decodeListParam(REST_ROUTES.orderbooks, new URLSearchParams('tickers=A,B'), 'tickers'), ['A,B']);
  assert.deepEqual(decodeListParam(REST_ROUTES.markets, new URLSearchParams('tickers=A,B&tickers=C'), 'tickers'), ['A', 'B', 'C']);
});

test('a ts_ms-era WS trade and its microsecond REST copy get the same (exchange_ts, trade_id) key; a seconds-only copy keys at its second (open difference)', () => {
  const rest = parseTrade(
    {
      trade_id: '5d937db7-0c71-43cb-0b60-b56a4387af64',
      ticker: 'KXBTCD-26MAR1213-T69499.99',
      yes_price_dollars: '0.8900',
      no_price_dollars: '0.1100',
      count_fp: '3.00',
      created_time: '2026-03-12T16:11:20.514237Z',
    },
    'trade',
  );
  const c = new Capture();
  c.feed(
    '{"type":"trade","sid":2,"seq":1,"msg":{"trade_id":"5d937db7-0c71-43cb-0b60-b56a4387af64","market_ticker":"KXBTCD-26MAR1213-T69499.99","yes_price_dollars":"0.8900","no_price_dollars":"0.1100","count_fp":"3.00","ts":1773331880,"ts_ms":1773331880514}}',
  );
  const ws = c.lines('trades')[0]!.split('\t');
  assert.equal(ws[0], rest.tradeId.toLowerCase());
  assert.equal(Number(ws[9]), rest.exchangeTsUs);
  assert.equal(rest.exchangeTsUs, 1_773_331_880_514_000, 'the REST copy keys at its millisecond');
  // Early 2026: `ts` only. It keys at its second, which its REST copy does not share.
  const old = new Capture();
  old.feed(
    '{"type":"trade","sid":2,"seq":2573,"msg":{"trade_id":"5D937DB7-0C71-43CB-0B60-B56A4387AF64","market_ticker":"KXBTCD-26MAR1213-T69499.99","yes_price_dollars":"0.8900","no_price_dollars":"0.1100","count_fp":"3.00","taker_side":"yes","ts":1773331880}}',
  );
  assert.equal(Number(old.lines('trades')[0]!.split('\t')[9]), 1_773_331_880_000_000);
  assert.equal(tradeKeyTimeUs(1_773_331_880_999_999), 1_773_331_880_999_000);
});

test("Kalshi's 429 body is read as code and message", () => {
  assert.deepEqual(parseRestError({ error: { code: 'too_many_requests', message: 'too many requests' } }), {
    code: 'too_many_requests',
    message: 'too many requests',
  });
  assert.equal(parseRestError({ error: 'too many requests' }), null);
});

test('an event_lifecycle subtitle (`subtitle`) and a REST event subtitle (`sub_title`) both reach subTitle', () => {
  const ws = parseLifecycle({ type: 'event_lifecycle', sid: 8, seq: 4, msg: { event_ticker: 'E-1', title: 'T', subtitle: 'In September' } });
  assert.equal(ws.kind === 'event' ? ws.event.subTitle : null, 'In September');
  assert.equal(parseEvent({ event_ticker: 'E-1', sub_title: 'REST form' }, 'event').subTitle, 'REST form');
});
