import assert from 'node:assert/strict';
import { ORDERBOOK_SNAPSHOTS, TRADES } from '../../src/schema/tables';
import { test } from 'node:test';
import fc from 'fast-check';
import { isKdpError } from '../../src/core/errors';
import { parseLifecycle } from '../../src/gatherer/lifecycle';
import { snapshotRowLine, tradeRowLine } from '../../src/gatherer/rows';
import { checkPrice, checkSize, parseRfc3339Ms, parseTrade } from '../../src/gatherer/shapes';

const MIN_MS = Date.UTC(2000, 0, 1);
const MAX_MS = Date.UTC(2100, 0, 1);

test('RFC3339 times parse to the millisecond, sub-millisecond digits truncated, offsets honoured', () => {
  fc.assert(
    fc.property(fc.integer({ min: MIN_MS, max: MAX_MS }), fc.stringMatching(/^\d{0,6}$/), (ms, extra) => {
      const base = new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19);
      const frac = String(ms % 1000).padStart(3, '0') + extra;
      assert.equal(parseRfc3339Ms(`${base}.${frac}Z`, 't'), ms);
    }),
  );
  assert.equal(parseRfc3339Ms('2026-11-23T12:00:00+01:00', 't'), Date.UTC(2026, 10, 23, 11));
  assert.equal(parseRfc3339Ms('2026-11-23T12:00:00.999999Z', 't'), Date.UTC(2026, 10, 23, 12) + 999);
});

test('hostile strings never crash the parsers: a coded error or a valid value', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (s) => {
      for (const fn of [() => parseRfc3339Ms(s, 't'), () => checkPrice(s, 'p'), () => checkSize(s, 's')]) {
        try {
          fn();
        } catch (err) {
          assert.ok(isKdpError(err), String(err));
        }
      }
    }),
  );
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 3 }), (v) => {
      for (const fn of [() => parseTrade(v, 'x'), () => parseLifecycle(v), () => parseLifecycle({ type: 'market_lifecycle_v2', msg: v })]) {
        try {
          fn();
        } catch (err) {
          assert.ok(isKdpError(err), String(err));
        }
      }
    }),
  );
  assert.throws(
    () => checkPrice('1e-3', 'p'),
    (e) => isKdpError(e, 'KDP_ERR_MSG_DECIMAL'),
  );
  assert.throws(
    () => checkSize('1.234', 's'),
    (e) => isKdpError(e, 'KDP_ERR_MSG_DECIMAL'),
  );
  assert.equal(checkSize('136.57', 's'), '136.57');
});

test('row lines escape COPY specials and hold one field per column (tables.ts order minus batch_id)', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 20 }), fc.string({ maxLength: 10 }), (ticker, gatherer) => {
      const line = snapshotRowLine(ticker, { yes: [['0.1000', '2.00']], no: [] }, 123, gatherer);
      assert.ok(!line.includes('\n'));
      assert.equal(line.split('\t').length, ORDERBOOK_SNAPSHOTS.columns.length - 1);
      assert.equal(line.split('\t').at(-1), '\\N', 'sent_at: REST rows have none');
    }),
  );
  const t = parseTrade(
    {
      trade_id: 'd91bc706-ee49-470d-82d8-11418bda6fed',
      ticker: 'A\tB',
      yes_price_dollars: '0.36',
      no_price_dollars: '0.64',
      count_fp: '1.00',
      created_time: '2022-11-22T20:44:01.123456Z',
    },
    't',
  );
  const fields = tradeRowLine(t, 5, 'g1').split('\t');
  assert.equal(fields.length, TRADES.columns.length - 1);
  assert.equal(fields.at(-1), '\\N', 'sent_at: REST rows have none');
  assert.equal(fields[1], 'A\\tB', 'the TAB in the ticker is escaped, not a column break');
  assert.equal(
    fields[9],
    String(Date.UTC(2022, 10, 22, 20, 44, 1, 123) * 1000),
    'exchange_ts (the trade key time: created_time truncated to the millisecond) after the escaped ticker',
  );
});
