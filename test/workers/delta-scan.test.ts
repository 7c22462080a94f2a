// The byte-level orderbook_delta reader (src/workers/delta-scan.ts) must never change an outcome:
// every message gives the same rows, rejects (codes and samples), gaps, controls and counters as
// the generic JSON.parse path. Checked by running the same message sequences through a normal
// FrameProcessor and through one whose reader refuses everything (the generic path only), on
// random valid, mutated and re-encoded messages (escapes, whitespace, key order, duplicate keys),
// on the real-frame corpus and on arbitrary bytes; and the reader must take the common shapes
// (else these tests compare the generic path with itself).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Capture } from './harness';
import { DeltaScan } from '../../src/workers/delta-scan';
import type { DeltaRow } from '../../src/workers/encoders';
import { loadCorpus, CORPUS_RECEIVED_US } from '../kalshi/corpus';

/** The processor's reader, reached for the test: replaced (generic only) or counted. */
function readerOf(c: Capture): { read: DeltaScan['read'] } {
  return (c.processor as unknown as { deltaScan: { read: DeltaScan['read'] } }).deltaScan;
}

/** A Capture and its generic-only twin; `taken` counts messages the reader accepted. */
class Pair {
  readonly fast = new Capture();
  readonly generic = new Capture();
  taken = 0;

  constructor() {
    readerOf(this.generic).read = () => false;
    const reader = readerOf(this.fast);
    const read = reader.read.bind(reader);
    reader.read = (bytes, row) => {
      const ok = read(bytes, row);
      if (ok) this.taken++;
      return ok;
    };
  }

  feed(payload: string | Uint8Array, receivedUs?: number): void {
    const a = this.fast.feed(payload, 1, receivedUs);
    const b = this.generic.feed(payload, 1, receivedUs);
    assert.equal(a, b, 'same backpressure answer');
  }

  assertSame(what: string): void {
    this.fast.processor.releaseHeldSnapshots(undefined, true);
    this.generic.processor.releaseHeldSnapshots(undefined, true);
    assert.deepEqual(this.fast.rows, this.generic.rows, `${what}: rows`);
    assert.deepEqual(this.fast.rejects, this.generic.rejects, `${what}: rejects`);
    assert.deepEqual(this.fast.gaps, this.generic.gaps, `${what}: gaps`);
    assert.deepEqual(this.fast.controls, this.generic.controls, `${what}: controls`);
    // deltasGenericPath counts the deltas the reader did not take: every delta on the generic twin.
    const { deltasGenericPath: fastGeneric, ...fast } = this.fast.processor.counters;
    const { deltasGenericPath: allDeltas, ...generic } = this.generic.processor.counters;
    assert.deepEqual(fast, generic, `${what}: counters`);
    assert.equal(fastGeneric + this.taken, allDeltas, `${what}: deltas on the generic path + deltas the reader took`);
    assert.deepEqual(
      this.fast.processor.rejectSamples().map((s) => [s.code, s.reason]),
      this.generic.processor.rejectSamples().map((s) => [s.code, s.reason]),
      `${what}: reject reasons`,
    );
  }
}

const validTicker = fc.constantFrom('FED-23DEC-T3.00', 'KXBTCD-26MAY3017-T72999.99', 'KXGOLDH-26AUG2711-T4615.99', 'A');
const anyString = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.constantFrom('', ' ', 'yes ', 'a"b', 'a\\b', '\u0000', '\t', '\u007f', 'é', '\ud800'),
);
const decimal = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom('0.9600', '0.01', '1', '0.123456', '0.1234567', '1234567.00', '.5', '5.', '0.5.5', '1e2', '-0.50') },
  { weight: 4, arbitrary: fc.tuple(fc.nat(1_000_000), fc.nat(99)).map(([a, b]) => `${a}.${String(b).padStart(2, '0')}`) },
);
const signedDecimal = fc.oneof(
  { weight: 3, arbitrary: decimal },
  { weight: 3, arbitrary: decimal.map((d) => '-' + d) },
  { weight: 1, arbitrary: fc.constantFrom('-54.00', '--1.00', '+1.00', '1.000') },
);
const rfc3339 = fc.oneof(
  fc.constantFrom('2026-05-28T05:35:09.623423Z', '2026-05-28T05:35:09Z', '2026-05-28T05:35:09.623423+00:00', '2026-05-28t05:35:09.6z', '2026-02-30T00:00:00Z'),
  fc.integer({ min: 1_779_946_509_000, max: 1_779_946_509_999 }).map((ms) => new Date(ms).toISOString()),
  fc.nat(999).map((us) => `2026-05-28T05:35:09.623${String(us).padStart(3, '0')}Z`),
);
const intish = fc.oneof(
  fc.integer({ min: 0, max: 50 }),
  fc.constantFrom(1_779_946_509_623, 2 ** 53, 2 ** 53 - 1, 999_999_999_999_999, 1e15, -1, 0.5, 1e21),
  fc.constantFrom('7', null, true, [], {}),
);

/** A delta body: mostly valid fields, each sometimes replaced by junk or left out. */
const body = fc.record(
  {
    market_ticker: fc.oneof({ weight: 40, arbitrary: validTicker }, { weight: 1, arbitrary: anyString }, { weight: 1, arbitrary: intish }),
    market_id: fc.oneof({ weight: 40, arbitrary: fc.uuid() }, { weight: 1, arbitrary: anyString }, { weight: 1, arbitrary: intish }),
    price_dollars: fc.oneof({ weight: 40, arbitrary: decimal }, { weight: 1, arbitrary: anyString }, { weight: 1, arbitrary: intish }),
    delta_fp: fc.oneof({ weight: 40, arbitrary: signedDecimal }, { weight: 1, arbitrary: anyString }, { weight: 1, arbitrary: intish }),
    side: fc.oneof({ weight: 40, arbitrary: fc.constantFrom('yes', 'no') }, { weight: 1, arbitrary: anyString }, { weight: 1, arbitrary: intish }),
    ts: fc.oneof({ weight: 40, arbitrary: rfc3339 }, { weight: 1, arbitrary: anyString }, { weight: 1, arbitrary: intish }),
    ts_ms: fc.oneof({ weight: 40, arbitrary: fc.constant(1_779_946_509_623) }, { weight: 1, arbitrary: intish }),
  },
  { requiredKeys: ['market_ticker', 'price_dollars', 'delta_fp', 'side'] },
);

const envelope = fc.record(
  {
    type: fc.oneof(
      { weight: 40, arbitrary: fc.constant('orderbook_delta') },
      { weight: 1, arbitrary: fc.constantFrom('orderbook_snapshot', 'ORDERBOOK_DELTA', 'trade') },
    ),
    sid: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: intish }),
    seq: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 1, max: 6 }) }, { weight: 1, arbitrary: intish }),
    msg: fc.oneof({ weight: 40, arbitrary: body }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) }),
    sending_ts_ms: fc.oneof({ weight: 6, arbitrary: fc.constant(1_779_946_509_624) }, { weight: 1, arbitrary: intish }),
  },
  { requiredKeys: ['type', 'sid', 'seq', 'msg'] },
);

/** JSON text of a value with keys in a chosen order, optional escapes of plain characters and optional whitespace. */
interface Encoding {
  readonly order: number[];
  readonly escapeAt: number | null;
  readonly spaceAt: number | null;
  readonly duplicate: boolean;
}

/**
 * `value` as JSON text, keys in enc.order. With enc.duplicate each object repeats its first key
 * with that key's value in `twin` (another message: often valid, so both readings are plausible).
 */
function encode(value: unknown, enc: Encoding, twin: unknown, counter = { n: 0 }): string {
  if (typeof value === 'string') {
    const n = counter.n++;
    if (n !== enc.escapeAt || value.length === 0) return JSON.stringify(value);
    // The same string with its first character as a \u escape: equal to JSON.parse, not to the raw bytes.
    return '"\\u' + value.charCodeAt(0).toString(16).padStart(4, '0') + JSON.stringify(value.slice(1)).slice(1);
  }
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return '[' + value.map((v) => encode(v, enc, null, counter)).join(',') + ']';
  const object = value as Record<string, unknown>;
  const other = typeof twin === 'object' && twin !== null && !Array.isArray(twin) ? (twin as Record<string, unknown>) : {};
  const keys = Object.keys(object);
  const ordered = keys.map((k, i) => ({ k, o: enc.order[i % enc.order.length]! + i / 100 })).sort((a, b) => a.o - b.o);
  const parts = ordered.map(({ k }) => JSON.stringify(k) + ':' + encode(object[k], enc, other[k], counter));
  const first = ordered[0]?.k;
  if (enc.duplicate && first !== undefined && other[first] !== undefined) parts.push(JSON.stringify(first) + ':' + JSON.stringify(other[first]));
  return '{' + parts.join(',') + '}';
}

/** `value` one time in `oneIn`, else null. */
const sometimes = <T>(value: fc.Arbitrary<T>, oneIn: number): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: oneIn - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: value });

const encoding: fc.Arbitrary<Encoding> = fc.record({
  order: fc.array(fc.nat(9), { minLength: 1, maxLength: 8 }),
  escapeAt: sometimes(fc.nat(8), 8),
  spaceAt: sometimes(fc.nat(300), 8),
  duplicate: fc.nat(7).map((n) => n === 0),
});

/** An unknown key (in the envelope or the body) one message in eight. */
const extraKey = sometimes(fc.tuple(fc.boolean(), fc.constantFrom('id', 'client_order_id', 'subaccount', 'x'), fc.jsonValue({ maxDepth: 1 })), 8);

/** An encoded message, sometimes with a space (valid JSON between tokens, or a changed string value). */
const message = fc.tuple(envelope, envelope, encoding, extraKey).map(([env, twin, enc, extra]) => {
  if (extra !== null) {
    const [inBody, key, value] = extra;
    if (!inBody) env = { ...env, [key]: value };
    else if (typeof env.msg === 'object' && env.msg !== null && !Array.isArray(env.msg)) env = { ...env, msg: { ...env.msg, [key]: value } };
  }
  const text = encode(env, enc, twin);
  if (enc.spaceAt === null || enc.spaceAt > text.length) return text;
  return text.slice(0, enc.spaceAt) + ' ' + text.slice(enc.spaceAt);
});

export const sampleMessages = (): string[] => fc.sample(message, 10);

test('random, mutated and re-encoded orderbook_delta sequences: the reader changes no row, reject, gap, control or counter', () => {
  let taken = 0;
  let messages = 0;
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 8 }), (texts) => {
      const pair = new Pair();
      for (const t of texts) pair.feed(t);
      pair.assertSame(texts.join('\n'));
      taken += pair.taken;
      messages += texts.length;
    }),
    { numRuns: 3000 },
  );
  assert.ok(taken > messages / 10, `the reader took ${taken} of ${messages} messages`);
});

test('byte-level damage (flips, cuts, inserted bytes) of valid deltas: same outcome on both paths', () => {
  const base = Buffer.from(
    '{"type":"orderbook_delta","sid":2,"seq":1,"msg":{"market_ticker":"FED-23DEC-T3.00","market_id":"9b0f6b43","price_dollars":"0.9600","delta_fp":"-54.00","side":"yes","ts":"2026-05-28T05:35:09.623423Z","ts_ms":1779946509623},"sending_ts_ms":1779946509624}',
  );
  fc.assert(
    fc.property(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'cut'), (at, byte, how) => {
      const bytes =
        how === 'set'
          ? Buffer.concat([base.subarray(0, at), Buffer.of(byte), base.subarray(at + 1)])
          : how === 'insert'
            ? Buffer.concat([base.subarray(0, at), Buffer.of(byte), base.subarray(at)])
            : base.subarray(0, at);
      const pair = new Pair();
      pair.feed(bytes);
      pair.assertSame(`${how} ${byte} at ${at}`);
    }),
    { numRuns: 4000 },
  );
});

test('the real-frame corpus and the simulator-shaped delta stream: same outcome on both paths, deltas taken by the reader', () => {
  const pair = new Pair();
  let deltas = 0;
  for (const { body: file } of loadCorpus()) {
    for (const f of file.frames) {
      pair.feed(f.frame, CORPUS_RECEIVED_US);
      if ((JSON.parse(f.frame) as { type?: unknown }).type === 'orderbook_delta') deltas++;
    }
  }
  pair.assertSame('corpus');
  assert.ok(deltas >= 4, 'the corpus holds deltas');
  assert.equal(pair.taken, deltas, 'every corpus delta is read by the reader');
  assert.equal(pair.fast.processor.counters.deltasGenericPath, 0, 'none counted on the generic path');
});

test('an accepted message fills the row as readDelta does from JSON.parse', () => {
  const scan = new DeltaScan();
  const row = { ticker: '', side: '', price: '', delta: '', exchange_ts: 0 } as DeltaRow;
  const text =
    '{"sid":7,"msg":{"ts_ms":1779946509623,"side":"no","delta_fp":"3.00","price_dollars":"0.0100","market_ticker":"T-1","ts":"2026-05-28T05:35:09.623999Z"},"type":"orderbook_delta","seq":12}';
  assert.equal(scan.read(Buffer.from(text), row), true, 'any key order');
  assert.deepEqual([scan.sid, scan.seq, scan.sentMs], [7, 12, undefined]);
  assert.deepEqual([row.ticker, row.side, row.price, row.delta, row.exchange_ts], ['T-1', 'no', '0.0100', '3.00', 1_779_946_509_623_999]);
  for (const other of [
    text.replace('"T-1"', '"T\\u002d1"'), // escape
    text.replace('{"sid"', '{ "sid"'), // whitespace
    text.replace('"seq":12', '"seq":12,"seq":13'), // duplicate key
    text.replace('"seq":12', '"seq":12.0'), // not a plain integer
    text.replace('"side":"no"', '"side":"no","client_order_id":"x"'), // unknown key
    text.replace('"side":"no"', '"side":"maybe"'), // invalid body: the generic path reports it
    text + '\n',
  ])
    assert.equal(scan.read(Buffer.from(other), row), false, other);
});
