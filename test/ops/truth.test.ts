// The truth comparison (what `kdp verify --truth` runs once the simulator's truth reader is
// connected): constructed expectations against constructed production contents.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalDecimal, formatScaled, parseScaled } from '../../src/ops/decimal';
import { compareWithTruth, type TruthDelta, type TruthTrade } from '../../src/ops/truth';

const trade = (id: string, over: Partial<TruthTrade> = {}): TruthTrade => ({
  tradeId: id,
  ticker: 'KXA',
  yesPrice: '0.36',
  noPrice: '0.64',
  count: '10',
  exchangeTs: 1_000_000,
  takerSide: 'yes',
  ...over,
});
const delta = (ts: number, price: string, d: string, ticker = 'KXA', side = 'yes'): TruthDelta => ({
  ticker,
  exchangeTs: ts,
  side,
  price,
  delta: d,
});

describe('decimals', () => {
  test('parse and format exactly, canonical forms compare equal', () => {
    assert.equal(parseScaled('0.360000'), 360_000n);
    assert.equal(parseScaled('-2.5'), -2_500_000n);
    assert.equal(formatScaled(parseScaled('136.50')), '136.50');
    assert.equal(canonicalDecimal('0.3600'), canonicalDecimal('0.36'));
    assert.equal(formatScaled(parseScaled('0.1') + parseScaled('0.2')), '0.30');
    assert.throws(() => parseScaled('1e3'), { code: 'KDP_ERR_MSG_DECIMAL' });
    assert.throws(() => parseScaled('0.1234567'), { code: 'KDP_ERR_MSG_DECIMAL' });
  });

  test('round trip for any value with up to 6 decimals', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }), (v) => {
        assert.equal(parseScaled(formatScaled(v)), v);
      }),
    );
  });
});

describe('compareWithTruth', () => {
  test('production equal to the truth (in another order, other decimal spellings) is ok', () => {
    const expected = {
      trades: [trade('a'), trade('b', { exchangeTs: 2_000_000 })],
      deltas: [delta(5, '0.35', '2'), delta(5, '0.35', '2'), delta(6, '0.40', '-1')],
    };
    const actual = {
      trades: [trade('B', { exchangeTs: 2_000_000, yesPrice: '0.360000', count: '10.00' }), trade('a')],
      deltas: [delta(6, '0.400000', '-1.00'), delta(5, '0.35', '2.00'), delta(5, '0.3500', '2')],
    };
    const r = compareWithTruth(expected, actual);
    assert.equal(r.ok, true, JSON.stringify(r));
  });

  test('trades: lost, duplicated under another exchange_ts, invented and value mismatches are each counted', () => {
    const expected = { trades: [trade('t1'), trade('t2'), trade('t3'), trade('t4')], deltas: [] };
    const actual = {
      trades: [trade('t1'), trade('t3'), trade('t3', { exchangeTs: 1_001_000 }), trade('t4', { count: '10.01' }), trade('t5')],
      deltas: [],
    };
    const r = compareWithTruth(expected, actual);
    assert.equal(r.ok, false);
    assert.deepEqual(r.trades.counts, { lost: 1, duplicated: 1, invented: 1, mismatched: 1 });
    assert.equal(r.trades.lost[0]!.tradeId, 't2');
    assert.equal(r.trades.duplicated[0]!.exchangeTs, 1_001_000, 'the copy that does not match is the duplicate');
    assert.equal(r.trades.invented[0]!.tradeId, 't5');
    assert.equal(r.trades.mismatched[0]!.actual.count, '10.01');
  });

  test('deltas: one of two identical changes in one µs lost, a surplus copy, an unknown change, a wrong size', () => {
    const expected = {
      trades: [],
      deltas: [delta(5, '0.35', '2'), delta(5, '0.35', '2'), delta(6, '0.40', '-1'), delta(7, '0.41', '3', 'KXB', 'no'), delta(8, '0.42', '1', 'KXC')],
    };
    const actual = {
      trades: [],
      deltas: [
        delta(5, '0.35', '2'), // one of the identical pair lost
        delta(6, '0.40', '-1'),
        delta(6, '0.40', '-1'), // duplicated
        delta(7, '0.41', '4', 'KXB', 'no'), // wrong size: mismatch, not lost + invented
        delta(8, '0.42', '1', 'KXC'),
        delta(9, '0.50', '1', 'KXD'), // invented
      ],
    };
    const r = compareWithTruth(expected, actual);
    assert.deepEqual(r.deltas.counts, { lost: 1, duplicated: 1, invented: 1, mismatched: 1 });
    assert.deepEqual(r.deltas.marketsWithDifferences, ['KXA', 'KXB', 'KXD']);
    assert.equal(r.deltas.mismatched[0]!.actual.delta, '4');
    assert.equal(r.deltas.lost[0]!.exchangeTs, 5);
  });

  test('property: a shuffled copy is ok; dropping, repeating or altering one delta is reported exactly', () => {
    const arbDelta = fc.record({
      ticker: fc.constantFrom('A', 'B'),
      exchangeTs: fc.integer({ min: 1, max: 6 }),
      side: fc.constantFrom('yes', 'no'),
      price: fc.constantFrom('0.01', '0.50', '0.99'),
      delta: fc.constantFrom('1', '-1', '2.50'),
    });
    fc.assert(
      fc.property(fc.array(arbDelta, { minLength: 1, maxLength: 40 }), fc.nat(), fc.integer({ min: 0, max: 2 }), (list, pick, mode) => {
        const expected = { trades: [], deltas: list };
        const shuffled = [...list].reverse();
        assert.equal(compareWithTruth(expected, { trades: [], deltas: shuffled }).ok, true);
        const i = pick % list.length;
        const victim = list[i]!;
        const rest = list.filter((_, j) => j !== i);
        if (mode === 0)
          assert.deepEqual(compareWithTruth(expected, { trades: [], deltas: rest }).deltas.counts, { lost: 1, duplicated: 0, invented: 0, mismatched: 0 });
        if (mode === 1)
          assert.deepEqual(compareWithTruth(expected, { trades: [], deltas: [...list, victim] }).deltas.counts, {
            lost: 0,
            duplicated: 1,
            invented: 0,
            mismatched: 0,
          });
        if (mode === 2) {
          const altered = { ...victim, delta: '777' };
          assert.deepEqual(compareWithTruth(expected, { trades: [], deltas: [...rest, altered] }).deltas.counts, {
            lost: 0,
            duplicated: 0,
            invented: 0,
            mismatched: 1,
          });
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('unrecoverable windows (new_market ledger rows)', () => {
  const expected = {
    trades: [],
    deltas: [delta(10, '0.30', '5', 'NEW'), delta(20, '0.31', '5', 'NEW'), delta(40, '0.32', '5', 'NEW'), delta(10, '0.30', '5', 'OLD')],
  };
  test('a missing change of a ledgered market inside its window and before its first stored change is unrecoverable, not lost', () => {
    const r = compareWithTruth(expected, { trades: [], deltas: [delta(40, '0.32', '5', 'NEW'), delta(10, '0.30', '5', 'OLD')] }, [
      { ticker: 'NEW', fromUs: 5, toUs: 30 },
    ]);
    assert.equal(r.ok, true);
    assert.equal(r.deltas.unrecoverable, 2);
    assert.equal(r.deltas.counts.lost, 0);
  });
  test('outside the window, after the first stored change, or for another market it is lost', () => {
    const windows = [{ ticker: 'NEW', fromUs: 15, toUs: 30 }];
    // ts 10 precedes the window; OLD has no window.
    const r1 = compareWithTruth(expected, { trades: [], deltas: [delta(20, '0.31', '5', 'NEW'), delta(40, '0.32', '5', 'NEW')] }, windows);
    assert.deepEqual([r1.ok, r1.deltas.counts.lost, r1.deltas.unrecoverable], [false, 2, 0]);
    // ts 20 is inside the window but after a stored change at ts 10: a hole in the middle, lost.
    const r2 = compareWithTruth(
      expected,
      { trades: [], deltas: [delta(10, '0.30', '5', 'NEW'), delta(40, '0.32', '5', 'NEW'), delta(10, '0.30', '5', 'OLD')] },
      [{ ticker: 'NEW', fromUs: 5, toUs: 30 }],
    );
    assert.deepEqual([r2.ok, r2.deltas.counts.lost, r2.deltas.unrecoverable], [false, 1, 0]);
  });
});
