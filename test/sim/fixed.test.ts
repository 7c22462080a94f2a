// Property tests of the exact fixed-point and time codecs the simulator puts on the wire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatPrice, formatSize, parsePrice, parseSize, parseScaled, rfc3339Micros, parseRfc3339Micros, Rng } from '../../src/sim/fixed';
import { isoMicros } from '../../src/kalshi/encode';
import { TradeRing } from '../../src/sim/trades';
import { isKdpError } from '../../src/core/errors';

test('prices and sizes round-trip exactly through their strings', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 10_000 }), (u) => parsePrice(formatPrice(u)) === u && /^[01]\.\d{4}$/.test(formatPrice(u))));
  fc.assert(fc.property(fc.integer({ min: -1e12, max: 1e12 }), (u) => parseSize(formatSize(u)) === u && /^-?\d+\.\d\d$/.test(formatSize(u))));
});

test('the decimal parser agrees with a reference on arbitrary strings', () => {
  const reference = (text: string, scale: number): number | null => {
    const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
    if (!m) return null;
    const frac = m[3] ?? '';
    if (frac.length > scale && !/^0*$/.test(frac.slice(scale))) return null;
    const v = Number(m[2]) * 10 ** scale + Number((frac + '0'.repeat(scale)).slice(0, scale));
    return m[1] === '-' ? -v : v;
  };
  const decimalish = fc.stringMatching(/^-?[0-9]{0,6}(\.[0-9]{0,7})?x?$/);
  fc.assert(
    fc.property(fc.oneof(decimalish, fc.string()), fc.integer({ min: 0, max: 6 }), (text, scale) => {
      const want = reference(text, scale);
      let got: number | null;
      try {
        got = parseScaled(text, scale);
      } catch (err) {
        assert.ok(isKdpError(err, 'KDP_ERR_MSG_DECIMAL'));
        got = null;
      }
      return Object.is(got, want) || got === want;
    }),
    { numRuns: 5000 },
  );
});

test('RFC3339 microsecond timestamps round-trip; the cached formatter agrees', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1_600_000_000_000_000, max: 4_000_000_000_000_000 }), (us) => {
      const s = rfc3339Micros(us);
      return parseRfc3339Micros(s) === us && isoMicros(us) === s && /\.\d{6}Z$/.test(s);
    }),
  );
});

test('the seeded generator is reproducible and its UUIDs are version 4', () => {
  const a = new Rng(42);
  const b = new Rng(42);
  for (let i = 0; i < 1000; i++) assert.equal(a.u32(), b.u32());
  const ids = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const id = a.uuid();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 1000);
});

test('the trade ring keeps the newest trades and gives back exactly what went in', () => {
  const ring = new TradeRing(50);
  const rng = new Rng(7);
  const all: Array<Record<string, unknown>> = [];
  for (let n = 1; n <= 120; n++) {
    const yes = rng.range(1, 9999);
    const rec = {
      k: 'trade' as const,
      n,
      t: 1_790_000_000_000_000 + n * 7,
      m: 'X',
      trade_id: n % 17 === 0 ? `odd-${n}` : rng.uuid(),
      yes_price_dollars: formatPrice(yes),
      no_price_dollars: formatPrice(10_000 - yes),
      count_fp: formatSize(rng.range(1, 1_000_000)),
      taker_side: (rng.chance(0.5) ? 'yes' : 'no') as 'yes' | 'no',
      taker_outcome_side: (rng.chance(0.5) ? 'yes' : 'no') as 'yes' | 'no',
      taker_book_side: (rng.chance(0.5) ? 'bid' : 'ask') as 'bid' | 'ask',
    };
    ring.push(rec, 0);
    const { k: _k, n: _n, t, m, ...rest } = rec;
    all.push({ ...rest, ticker: m, created_time: rfc3339Micros(t) });
  }
  assert.equal(ring.size, 50);
  for (let k = 0; k < 50; k++) {
    const slot = ring.slot(k);
    assert.equal(ring.nAt(slot), 120 - k);
    assert.deepEqual(ring.json(slot, 'X', rfc3339Micros), all[119 - k]);
  }
});
