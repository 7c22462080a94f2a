import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isDecimal, isPrice, isSignedSize, isSize, parseRfc3339Us, unitsToUs, TS_US_MAX, TS_US_MIN } from '../../src/workers/scalars';
import { fnv1a64Signed } from '../../src/workers/fnv';
import { referenceFnv } from './harness';

test('decimal check agrees with a reference regex on arbitrary strings', () => {
  const reference = (s: string, signed: boolean, intMax: number, scaleMax: number): boolean =>
    new RegExp(`^${signed ? '-?' : ''}[0-9]{1,${intMax}}(\\.[0-9]{1,${scaleMax}})?$`).test(s);
  const decimalish = fc.stringMatching(/^-?[0-9]{0,20}(\.[0-9]{0,8})?$/);
  fc.assert(
    fc.property(
      fc.oneof(decimalish, fc.string()),
      fc.boolean(),
      fc.integer({ min: 1, max: 18 }),
      fc.integer({ min: 1, max: 6 }),
      (s, signed, intMax, scaleMax) => {
        assert.equal(isDecimal(s, signed, intMax, scaleMax), reference(s, signed, intMax, scaleMax), JSON.stringify(s));
      },
    ),
    { numRuns: 3000 },
  );
});

test('price and size shapes: bounded scale, sign only for deltas, no floats, no exponent', () => {
  for (const ok of ['0.0800', '0.96', '1', '0.123456', '999999.999999']) assert.ok(isPrice(ok), ok);
  for (const bad of ['', '.5', '5.', '-0.10', '+0.1', '0.1234567', '1e-3', '0x10', ' 0.1', '0.1 ', '1000000', 0.5, null]) assert.ok(!isPrice(bad), String(bad));
  for (const ok of ['300.00', '0.5', '136', '123456789012345678.99']) assert.ok(isSize(ok), ok);
  for (const bad of ['-54.00', '1.001', '1234567890123456789']) assert.ok(!isSize(bad), bad);
  for (const ok of ['-54.00', '54.00', '-0.01']) assert.ok(isSignedSize(ok), ok);
  for (const bad of ['--1', '-', '-.5', '- 1']) assert.ok(!isSignedSize(bad), bad);
});

test('RFC3339 parser matches Date.parse to the millisecond and keeps microseconds', () => {
  fc.assert(
    fc.property(fc.integer({ min: TS_US_MIN, max: TS_US_MAX - 1 }), fc.integer({ min: 0, max: 3 }), (us, style) => {
      const iso = new Date(Math.floor(us / 1000)).toISOString(); // ...sss Z
      const micro = String(us % 1_000_000).padStart(6, '0');
      const base = iso.slice(0, 19);
      const text = [`${base}.${micro}Z`, `${base}.${micro}000Z`, `${base}.${micro}+00:00`, `${base}Z`][style]!;
      const want = style === 3 ? us - (us % 1_000_000) : us;
      assert.equal(parseRfc3339Us(text), want, text);
    }),
    { numRuns: 3000 },
  );
  assert.equal(parseRfc3339Us('2026-05-28T05:35:09.623423Z'), 1_779_946_509_623_423);
  assert.equal(parseRfc3339Us('2024-02-29T00:00:00Z'), Date.parse('2024-02-29T00:00:00Z') * 1000);
});

test('RFC3339 parser rejects malformed, impossible, zoned and out-of-range times', () => {
  const bad = [
    '',
    '2026-05-28',
    '2026-05-28T05:35:09',
    '2026-13-01T00:00:00Z',
    '2026-02-29T00:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-05-28T24:00:00Z',
    '2026-05-28T05:60:00Z',
    '2026-05-28T05:35:60Z',
    '2026-05-28T05:35:09.Z',
    '2026-05-28T05:35:09.1234567890Z',
    '2026-05-28T05:35:09.623423+01:00',
    '2026-05-28 05:35:09Z',
    '1969-12-31T23:59:59Z',
    '2300-01-01T00:00:00Z',
    '２026-05-28T05:35:09Z',
    '2026-05-28T05:35:09.62342aZ',
    20260528,
    null,
  ];
  for (const s of bad) assert.equal(parseRfc3339Us(s), -1, String(s));
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (s) => {
      const us = parseRfc3339Us(s);
      assert.ok(us === -1 || (us >= TS_US_MIN && us < TS_US_MAX));
    }),
    { numRuns: 3000 },
  );
});

test('unit timestamps: safe integers in range only', () => {
  assert.equal(unitsToUs(1_669_149_841_000, 1000), 1_669_149_841_000_000);
  assert.equal(unitsToUs(1_669_149_841, 1_000_000), 1_669_149_841_000_000);
  for (const bad of [1.5, -1, 1e300, '1669149841000', null, 2 ** 53]) assert.equal(unitsToUs(bad, 1000), -1);
});

test('FNV-1a 64 equals a BigInt reference over UTF-8 for any string (including lone surrogates)', () => {
  assert.equal(fnv1a64Signed(''), BigInt.asIntN(64, 0xcbf29ce484222325n).toString());
  assert.equal(fnv1a64Signed('a'), BigInt.asIntN(64, 0xaf63dc4c8601ec8cn).toString()); // published test vector
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => assert.equal(fnv1a64Signed(s), referenceFnv(s))),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom('\ud800', '\udc00', 'a', '\u00e9', '\ud83d\ude00'), maxLength: 20 }), (s) =>
      assert.equal(fnv1a64Signed(s), referenceFnv(s)),
    ),
    { numRuns: 1000 },
  );
});
