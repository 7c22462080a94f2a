// Hostile input never escapes process(): every bad frame or message is a counted, coded reject,
// and whatever rows come out still have the table's shape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ErrorCode } from '../../src/core/errors';
import { tableByName } from '../../src/schema/tables';
import { FRAME_HEADER_BYTES, FRAME_MAGIC, FRAME_VERSION } from '../../src/ingest/frame';
import { Capture } from './harness';

const REJECT_CODES: ReadonlySet<ErrorCode> = new Set([
  'KDP_ERR_MSG_JSON',
  'KDP_ERR_MSG_SHAPE',
  'KDP_ERR_MSG_DECIMAL',
  'KDP_ERR_MSG_TIMESTAMP',
  'KDP_ERR_MSG_UNKNOWN_TYPE',
  'KDP_ERR_FRAME_TOO_LARGE',
  'KDP_ERR_FRAME_DECODE',
  'KDP_ERR_FRAME_TRUNCATED',
]);

const VALID: Record<string, unknown>[] = [
  {
    type: 'orderbook_snapshot',
    sid: 2,
    seq: 1,
    msg: { market_ticker: 'FED-23DEC-T3.00', yes_dollars_fp: [['0.0800', '300.00']], no_dollars_fp: [['0.5400', '20.00']] },
  },
  {
    type: 'orderbook_delta',
    sid: 2,
    seq: 2,
    msg: {
      market_ticker: 'FED-23DEC-T3.00',
      price_dollars: '0.9600',
      delta_fp: '-54.00',
      side: 'yes',
      ts: '2026-05-28T05:35:09.623423Z',
      ts_ms: 1779946509623,
    },
  },
  {
    type: 'trade',
    sid: 11,
    msg: {
      trade_id: 'd91bc706-ee49-470d-82d8-11418bda6fed',
      market_ticker: 'HIGHNY-22DEC23-B53.5',
      yes_price_dollars: '0.3600',
      no_price_dollars: '0.6400',
      count_fp: '136.00',
      taker_side: 'no',
      ts: 1669149841,
      ts_ms: 1669149841000,
    },
  },
  {
    type: 'ticker',
    sid: 3,
    msg: {
      market_ticker: 'FED-23DEC-T3.00',
      price_dollars: '0.4800',
      volume_fp: '33896.00',
      dollar_volume: 16948,
      ts_ms: 1669149841000,
      time: '2022-11-22T20:44:01.123456Z',
    },
  },
  { type: 'market_lifecycle_v2', sid: 5, msg: { market_ticker: 'KXBTC-26-T1', event_type: 'settled', settled_ts: 1669149841 } },
  { type: 'event_lifecycle', sid: 5, msg: { event_ticker: 'KXBTC-26' } },
  { id: 1, type: 'subscribed', msg: { channel: 'ticker', sid: 3 } },
  { id: 3, type: 'ok', msg: [{ channel: 'ticker', sid: 3 }] },
  { id: 2, sid: 2, seq: 3, type: 'unsubscribed' },
  { id: 9, sid: 2, type: 'error', msg: { code: 25, msg: 'overflow' } },
];

function checkOutcome(c: Capture): void {
  for (const r of c.rejects) assert.ok(REJECT_CODES.has(r.code), r.code);
  for (const { table, line } of c.rows) {
    assert.equal(line.split('\t').length, tableByName(table).columns.length - 1, `${table}: ${line.slice(0, 200)}`);
    assert.ok(!line.includes('\n') && !line.includes('\r'), 'row lines hold no raw newline');
  }
}

/** Replaces or deletes one field somewhere in the message (envelope or body). */
function mutate(base: Record<string, unknown>, path: string[], value: unknown, remove: boolean): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
  let target: Record<string, unknown> = copy;
  for (const key of path.slice(0, -1)) {
    const next = target[key];
    if (typeof next !== 'object' || next === null) return copy;
    target = next as Record<string, unknown>;
  }
  const last = path.at(-1)!;
  if (remove) delete target[last];
  else target[last] = value;
  return copy;
}

const fieldPaths = VALID.flatMap((m) => [
  ...Object.keys(m).map((k) => [k]),
  ...(typeof m.msg === 'object' && m.msg !== null && !Array.isArray(m.msg) ? Object.keys(m.msg).map((k) => ['msg', k]) : []),
]);

test('mutated valid messages (wrong types, missing fields, odd values) give coded rejects only', () => {
  const hostileValue = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom('', '-', '1e400', '0.1234567', 'NaN', '\t\n\\', '2026-02-30T00:00:00Z', 1e308, -1, 2 ** 60, 0.5, true, null, [], {}),
    fc.string({ unit: 'binary', maxLength: 50 }),
  );
  fc.assert(
    fc.property(fc.constantFrom(...VALID), fc.constantFrom(...fieldPaths), hostileValue, fc.boolean(), (base, path, value, remove) => {
      const c = new Capture();
      c.feed(mutate(base, path, value, remove));
      checkOutcome(c);
    }),
    { numRuns: 3000 },
  );
});

test('arbitrary JSON, arbitrary text and arbitrary bytes give coded rejects only', () => {
  const c = new Capture();
  fc.assert(
    fc.property(
      fc.oneof(
        fc.jsonValue().map((v) => JSON.stringify(v)),
        fc
          .record({ type: fc.constantFrom(...VALID.map((m) => m.type as string), 'fill', 'x'), sid: fc.jsonValue(), seq: fc.jsonValue(), msg: fc.jsonValue() })
          .map((v) => JSON.stringify(v)),
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.uint8Array({ maxLength: 200 }),
        fc.constantFrom(...VALID).chain((m) => fc.nat(JSON.stringify(m).length).map((cut) => JSON.stringify(m).slice(0, cut))),
      ),
      (payload) => {
        c.feed(payload);
      },
    ),
    { numRuns: 3000 },
  );
  checkOutcome(c);
});

test('pathological payloads: deep nesting, huge numbers, 1 MB strings', () => {
  const c = new Capture({ frameBytesMax: 4 << 20 });
  const big = 'X'.repeat(1 << 20);
  const cases: unknown[] = [
    '['.repeat(200_000),
    '['.repeat(5_000) + ']'.repeat(5_000),
    `{"type":"market_lifecycle_v2","sid":1,"msg":{"market_ticker":"A","event_type":"created","x":${'['.repeat(1000)}${']'.repeat(1000)}}}`,
    '{"type":"orderbook_delta","sid":1,"seq":1e400,"msg":{}}',
    '{"type":"trade","sid":123456789012345678901234567890,"msg":{}}',
    { type: 'ticker', sid: 1, msg: { market_ticker: big, ts_ms: 1669149841000 } },
    { type: 'market_lifecycle_v2', sid: 1, msg: { market_ticker: 'A', event_type: 'created', note: big } },
    { type: big, sid: 1 },
    { type: 'orderbook_snapshot', sid: 1, seq: 1, msg: { market_ticker: 'A', yes_dollars_fp: Array(30_000).fill(['0.1000', '1.00']) } },
    { type: 'orderbook_delta', sid: 1, seq: 2, msg: { market_ticker: 'A', price_dollars: '0.1', delta_fp: '1'.repeat(100), side: 'yes', ts_ms: 1 } },
  ];
  for (const m of cases) c.feed(m);
  checkOutcome(c);
  assert.equal(c.rejects.length, cases.length - 1, 'all but the lifecycle note are rejected');
  assert.ok(
    c.rejects.every((r) => r.sample.length <= 512),
    'samples are bounded',
  );
  assert.ok(c.processor.rejectSamples().length <= 32);
  const tooBig = new Capture();
  tooBig.feed(Buffer.alloc((1 << 20) - FRAME_HEADER_BYTES, 0x20)); // the largest message a 1 MiB frame holds
  assert.deepEqual(
    tooBig.rejects.map((r) => r.code),
    ['KDP_ERR_MSG_JSON'],
  );
});

test('garbage bus frames are counted as frame errors and the next good frame still flows', () => {
  const c = new Capture();
  // Empty; a header cut short after magic, version and kind; a wrong magic; past frameBytesMax.
  for (const bytes of [new Uint8Array(0), Uint8Array.from([FRAME_MAGIC, FRAME_VERSION, 0]), Uint8Array.from([0x93, 1, 2, 3]), new Uint8Array(2 << 20)]) {
    assert.equal(c.processor.processBytes(bytes), true);
  }
  c.feed(VALID[2]);
  assert.deepEqual(
    c.rejects.map((r) => r.code),
    ['KDP_ERR_FRAME_TRUNCATED', 'KDP_ERR_FRAME_TRUNCATED', 'KDP_ERR_FRAME_DECODE', 'KDP_ERR_FRAME_TOO_LARGE'],
  );
  assert.equal(c.lines('trades').length, 1);
  assert.deepEqual(c.processor.counters.rejects, { KDP_ERR_FRAME_TRUNCATED: 2, KDP_ERR_FRAME_DECODE: 1, KDP_ERR_FRAME_TOO_LARGE: 1 });
});
