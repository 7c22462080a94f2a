// Sequence checking, resync marking and occurrence numbering through the FrameProcessor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameKind } from '../../src/ingest/frame';
import { Capture } from './harness';

const TS = '2026-05-28T05:35:09.623423Z'; // = 1_779_946_509_623_423 µs
const delta = (sid: number, seq: number, ticker = 'M-1', price = '0.5000', d = '10.00', ts = TS) => ({
  type: 'orderbook_delta',
  sid,
  seq,
  msg: { market_ticker: ticker, price_dollars: price, delta_fp: d, side: 'yes', ts },
});
const snapshot = (sid: number, seq: number, ticker = 'M-1') => ({
  type: 'orderbook_snapshot',
  sid,
  seq,
  msg: { market_ticker: ticker, yes_dollars_fp: [['0.5000', '10.00']] },
});
const col = (line: string, i: number): string => line.split('\t')[i]!;

test('identical deltas in one microsecond are numbered 0, 1, 2; numbering restarts when time moves on', () => {
  const c = new Capture();
  c.feed(delta(1, 1));
  c.feed(delta(1, 2));
  c.feed(delta(1, 3, 'M-1', '0.5000', '-10.00')); // different delta: own numbering
  c.feed(delta(1, 4));
  c.feed(delta(1, 5, 'M-2')); // other market, same µs
  c.feed(delta(1, 6, 'M-1', '0.5000', '10.00', '2026-05-28T05:35:09.623424Z'));
  c.feed(delta(1, 7, 'M-1', '0.5000', '10.00', TS)); // back to the old µs: state was reset
  assert.deepEqual(
    c.lines('orderbook_deltas').map((l) => col(l, 5)),
    ['0', '1', '0', '2', '0', '0', '0'],
  );
});

test('occurrence numbering is a pure function of the stream: any split of a µs into identical deltas numbers 0..n-1', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ key: fc.integer({ min: 0, max: 3 }), us: fc.integer({ min: 0, max: 2 }) }), { maxLength: 60 }), (events) => {
      const c = new Capture();
      events.forEach((e, i) => c.feed(delta(1, i + 1, 'M-1', `0.${e.key}000`, '1.00', `2026-05-28T05:35:09.00000${e.us}Z`)));
      const seen = new Map<string, number>();
      let lastUs = -1;
      const expected = events.map((e) => {
        if (e.us !== lastUs) seen.clear();
        lastUs = e.us;
        const n = seen.get(String(e.key)) ?? 0;
        seen.set(String(e.key), n + 1);
        return String(n);
      });
      assert.deepEqual(
        c.lines('orderbook_deltas').map((l) => col(l, 5)),
        expected,
      );
    }),
    { numRuns: 200 },
  );
});

test('a seq gap yields one gap event with the sid markets; rows keep flowing, books flagged until snapshots', () => {
  const c = new Capture();
  c.control(FrameKind.subscription, 1, { sid: 4, channel: 'orderbook_delta', tickers: ['M-1', 'M-2', 'M-3'] }, 0, 100);
  c.feed(snapshot(4, 1, 'M-1'), 1, 1000);
  c.feed(delta(4, 2, 'M-1'), 1, 1001);
  c.feed(delta(4, 5, 'M-2'), 1, 2000); // 3 and 4 lost
  assert.equal(c.gaps.length, 1);
  const gap = c.gaps[0]!;
  assert.deepEqual(
    { ...gap, tickers: [...gap.tickers].sort() },
    {
      kind: 'gap',
      connId: 1,
      sid: 4,
      channel: 'orderbook_delta',
      expectedSeq: 3,
      gotSeq: 5,
      errorCode: null,
      tickers: ['M-1', 'M-2', 'M-3'],
      lastGoodUs: 1001,
      lastGoodExchangeUs: 1_779_946_509_623_423,
      detectedUs: 2000,
    },
  );
  assert.equal(c.lines('orderbook_deltas').length, 2, 'the delta that revealed the gap is still recorded');
  assert.equal(c.processor.isBookSynced(1, 4, 'M-2'), false);
  c.feed(delta(4, 6, 'M-1'), 1, 2001);
  assert.equal(c.processor.counters.deltasWhileUnsynced, 2);
  c.feed(snapshot(4, 7, 'M-1'), 1, 2002);
  assert.equal(c.processor.isBookSynced(1, 4, 'M-1'), true);
  assert.equal(c.processor.isBookSynced(1, 4, 'M-3'), false);
  assert.deepEqual(c.processor.seq.sidsAwaitingResync(1), [4]);
});

test('duplicate or old seq frames are dropped and counted, never written twice', () => {
  const c = new Capture();
  c.feed(delta(2, 1));
  c.feed(delta(2, 2));
  c.feed(delta(2, 2));
  c.feed(delta(2, 1));
  c.feed(snapshot(2, 2));
  c.feed(delta(2, 3));
  assert.equal(c.lines('orderbook_deltas').length, 3);
  assert.equal(c.lines('orderbook_snapshots').length, 0);
  assert.equal(c.processor.counters.duplicateSeqDropped, 3);
  assert.equal(c.gaps.length, 0);
});

test('seq is shared by snapshots, deltas and ok / unsubscribed acks of one sid; sids and connections are independent', () => {
  const c = new Capture();
  c.feed(snapshot(1, 1), 1);
  c.feed({ id: 4, sid: 1, seq: 2, type: 'ok', msg: { market_tickers: ['M-9'] } }, 1);
  c.feed(delta(1, 3), 1);
  c.feed(snapshot(2, 1), 1); // another sid starts at 1
  c.feed(delta(1, 1), 2); // another connection, same sid number
  c.feed({ id: 5, sid: 1, seq: 4, type: 'unsubscribed' }, 1);
  assert.equal(c.gaps.length, 0);
  c.feed({ id: 6, sid: 3, seq: 2, type: 'ok', msg: {} }, 1); // fresh sid starting at 2: gap 1 -> 2
  assert.equal(c.gaps.length, 1);
  assert.equal(c.gaps[0]!.expectedSeq, 1);
});

test('error 10 / 17 / 25 on a sid is a terminal-error gap and the sid is forgotten; other errors are control events only', () => {
  for (const code of [10, 17, 25]) {
    const c = new Capture();
    c.feed({ id: 1, type: 'subscribed', msg: { channel: 'orderbook_delta', sid: 3 } });
    c.feed(snapshot(3, 1, 'M-7'));
    c.feed({ type: 'error', sid: 3, msg: { code, msg: 'subscription buffer overflow' } }, 1, 555);
    assert.equal(c.gaps.length, 1);
    assert.deepEqual(c.gaps[0], {
      kind: 'terminal-error',
      connId: 1,
      sid: 3,
      channel: 'orderbook_delta',
      expectedSeq: 2,
      gotSeq: null,
      errorCode: code,
      tickers: ['M-7'],
      lastGoodUs: 1_779_946_510_000_000,
      lastGoodExchangeUs: null,
      detectedUs: 555,
    });
    // The sid is dead: a ring drop right after it must not report it (its gap could never be
    // resynced; the markets come back under the resubscription's new sid).
    c.control(FrameKind.ringDrop, 1, null, 4, 556);
    assert.equal(c.gaps.length, 1, 'a dead sid is not reported by a later ring drop');
  }
  const c = new Capture();
  c.feed({ type: 'error', sid: 3, msg: { code: 16, msg: 'market not found' } });
  assert.equal(c.gaps.length, 0);
  assert.equal(c.controls.length, 1);
});

test("reconnect (connection-opened) resets the connection's sids; ring-drop marks every sid of the connection", () => {
  const c = new Capture();
  c.feed(snapshot(1, 1), 1);
  c.feed(delta(1, 2), 1);
  c.control(FrameKind.connectionOpened, 1);
  c.feed(snapshot(1, 1), 1); // the new connection's sid 1 starts again at 1
  assert.equal(c.gaps.length, 0);
  assert.equal(c.controls[0]!.kind, 'connection-opened');
  c.feed(
    {
      type: 'trade',
      sid: 9,
      msg: {
        trade_id: '00000000-0000-0000-0000-000000000001',
        market_ticker: 'M-1',
        yes_price_dollars: '0.1',
        no_price_dollars: '0.9',
        count_fp: '1.00',
        ts_ms: 1669149841000,
      },
    },
    1,
  );
  c.control(FrameKind.ringDrop, 1, null, 17, 999);
  assert.equal(c.processor.counters.framesDroppedUpstream, 17);
  assert.deepEqual(
    c.gaps.map((g) => [g.kind, g.sid, g.detectedUs]),
    [['ring-drop', 1, 999]],
  );
  assert.equal(c.processor.isBookSynced(1, 1, 'M-1'), false);
  c.control(FrameKind.resyncMarker, 1, { sid: 1, tickers: ['M-1'] });
  assert.deepEqual(c.controls.at(-1), { kind: 'resync-requested', connId: 1, sid: 1, tickers: ['M-1'], receivedUs: 1_779_946_510_000_000 });
});

test('a malformed body on a seq-bearing book message is rejected and marks the sid for resync', () => {
  const c = new Capture();
  c.feed(snapshot(1, 1), 1);
  c.feed({ ...delta(1, 2), msg: { ...delta(1, 2).msg, price_dollars: '0.5e1' } }, 1);
  assert.deepEqual(
    c.rejects.map((r) => r.code),
    ['KDP_ERR_MSG_DECIMAL'],
  );
  assert.equal(c.gaps[0]!.kind, 'bad-message');
  assert.equal(c.processor.isBookSynced(1, 1, 'M-1'), false);
  c.feed(delta(1, 3), 1); // the seq advanced past the bad message: no extra gap
  assert.equal(c.gaps.length, 1);
});

test('backpressure: process() returns false once the row sink is over its high-water mark, rows still kept', () => {
  const c = new Capture();
  c.highWater = 2;
  assert.equal(c.feed(delta(1, 1)), true);
  assert.equal(c.feed(delta(1, 2)), false);
  assert.equal(c.feed(delta(1, 3)), false);
  assert.equal(c.rows.length, 3);
  assert.equal(c.processor.counters.backpressureSignals, 2);
});

test('a snapshot is anchored at the last delta received on its sid (any market), also after a gap; a snapshot right after lost frames has no anchor', () => {
  const us = (iso: string): string => String(Date.parse(iso.slice(0, 23) + 'Z') * 1000 + Number(iso.slice(23, 26)));
  const T1 = '2026-05-28T05:35:09.000100Z';
  const T2 = '2026-05-28T05:35:09.000200Z';
  const T3 = '2026-05-28T05:35:09.000300Z';
  const c = new Capture();
  c.feed(snapshot(1, 1, 'M-1')); // nothing on the sid yet: no anchor
  c.feed(delta(1, 2, 'M-1', '0.5000', '10.00', T1));
  // seq 3 and 4 are lost: M-1 changed there, and the gap is seen at M-2's delta
  c.feed(delta(1, 5, 'M-2', '0.4000', '5.00', T3));
  c.feed(snapshot(1, 6, 'M-1')); // the resync: holds the lost changes, so its anchor is T3, not M-1's own T1
  c.feed(snapshot(1, 8, 'M-2')); // seq 7 lost right before it: the snapshot holds it, its anchor is unknown
  c.feed(delta(1, 9, 'M-2', '0.4000', '1.00', T2));
  const anchors = c.lines('orderbook_snapshots').map((l) => col(l, 5));
  assert.deepEqual(anchors, ['\\N', us(T3), '\\N']);
});

test("a market's first snapshot on a sid has no anchor (the sid's last delta is another market's, older than what the snapshot holds) unless it is empty; its next one is anchored", () => {
  const us = (iso: string): string => String(Date.parse(iso.slice(0, 23) + 'Z') * 1000 + Number(iso.slice(23, 26)));
  const T1 = '2026-05-28T05:35:09.000100Z';
  const T2 = '2026-05-28T05:35:09.000200Z';
  const c = new Capture();
  c.feed(snapshot(1, 1, 'M-1'));
  c.feed(delta(1, 2, 'M-1', '0.5000', '10.00', T1));
  // M-9 is added to the sid (add_markets) after it opened and changed elsewhere: its first snapshot.
  c.control(FrameKind.subscription, 1, { sid: 1, channel: 'orderbook_delta', tickers: ['M-9'], mode: 'add' });
  c.feed(snapshot(1, 3, 'M-9'));
  c.feed(delta(1, 4, 'M-9', '0.3000', '2.00', T2));
  c.feed(snapshot(1, 5, 'M-9')); // a later snapshot of M-9 on the sid is anchored as usual
  // M-8, added ahead of its open: an empty first snapshot holds no change, so it can be an anchor.
  c.feed({ type: 'orderbook_snapshot', sid: 1, seq: 6, msg: { market_ticker: 'M-8' } });
  c.processor.releaseHeldSnapshots(undefined, true); // the last one waits for a delta that never comes
  const anchors = c.lines('orderbook_snapshots').map((l) => col(l, 5));
  assert.deepEqual(anchors, ['\\N', '\\N', us(T2), us(T2)]);
});

test("next_delta_ts is the exchange time of the sid's next in-order delta (any market), also right after lost frames and for a market's first snapshot; a break after the snapshot leaves it NULL, counted", () => {
  const us = (iso: string): string => String(Date.parse(iso.slice(0, 23) + 'Z') * 1000 + Number(iso.slice(23, 26)));
  const [T1, T2, T3, T4] = ['100', '200', '300', '400'].map((f) => `2026-05-28T05:35:09.000${f}Z`) as [string, string, string, string];
  const c = new Capture();
  c.feed(snapshot(1, 1, 'M-1'));
  assert.equal(c.lines('orderbook_snapshots').length, 0, 'held until the next delta');
  c.feed(delta(1, 2, 'M-2', '0.5000', '10.00', T1)); // another market's delta bounds it
  c.feed(delta(1, 5, 'M-2', '0.4000', '5.00', T2)); // seq 3-4 lost
  c.feed(snapshot(1, 6, 'M-1')); // the resync
  c.control(FrameKind.subscription, 1, { sid: 1, channel: 'orderbook_delta', tickers: ['M-9'], mode: 'add' });
  c.feed(snapshot(1, 7, 'M-9')); // a market's first snapshot on the sid
  c.feed({ type: 'ok', id: 3, sid: 1, seq: 8, msg: { market_tickers: ['M-9'] } }); // an ack consumes a seq, no time
  c.feed(delta(1, 9, 'M-1', '0.5000', '1.00', T3));
  c.feed(delta(1, 11, 'M-2', '0.4000', '5.00', T3));
  c.feed({ type: 'orderbook_snapshot', sid: 1, seq: 13, msg: { market_ticker: 'M-1' } }); // seq 12 lost right before it
  c.feed(delta(1, 14, 'M-1', '0.5000', '1.00', T3)); // bounds it anyway
  c.feed(snapshot(1, 15, 'M-1'));
  c.feed(delta(1, 17, 'M-1', '0.5000', '1.00', T4)); // seq 16 lost after it: it may have been a delta it lacks
  c.feed(snapshot(1, 18, 'M-1'));
  c.control(FrameKind.ringDrop, 1, null, 3);
  const rows = c.lines('orderbook_snapshots').map((l) => [col(l, 5), col(l, 6), col(l, 11)]);
  assert.deepEqual(rows, [
    ['\\N', us(T1), '1'],
    [us(T2), us(T3), '6'],
    ['\\N', us(T3), '7'],
    ['\\N', us(T3), '13'],
    [us(T3), '\\N', '15'],
    [us(T4), '\\N', '18'],
  ]);
  assert.deepEqual(c.processor.heldSnapshots.unbounded, { gap: 2, close: 0, cap: 0, expired: 0 });
  assert.equal(c.processor.heldSnapshots.held, 0);
});

test('held snapshots are bounded: past snapshotsHeldMax the oldest goes without next_delta_ts, past snapshotHoldMs every held one does, a closed connection releases its own', () => {
  const c = new Capture({ snapshotsHeldMax: 2, snapshotHoldMs: 1000 });
  c.feed(snapshot(1, 1, 'M-1'));
  c.feed(snapshot(2, 1, 'M-2'));
  c.feed(snapshot(3, 1, 'M-3')); // the cap: M-1 goes now
  assert.deepEqual(
    c.lines('orderbook_snapshots').map((l) => col(l, 0)),
    ['M-1'],
  );
  c.processor.releaseHeldSnapshots(performance.now() - 10_000); // nothing has waited 1 s yet
  assert.equal(c.lines('orderbook_snapshots').length, 1);
  c.processor.releaseHeldSnapshots(performance.now() + 1_000);
  assert.deepEqual(
    c.lines('orderbook_snapshots').map((l) => [col(l, 0), col(l, 6)]),
    [
      ['M-1', '\\N'],
      ['M-2', '\\N'],
      ['M-3', '\\N'],
    ],
  );
  c.feed(snapshot(4, 1, 'M-4'), 2);
  c.feed(snapshot(5, 1, 'M-5'), 1);
  c.control(FrameKind.connectionClosed, 2);
  assert.deepEqual(
    c.lines('orderbook_snapshots').map((l) => col(l, 0)),
    ['M-1', 'M-2', 'M-3', 'M-4'],
  );
  assert.deepEqual(c.processor.heldSnapshots.unbounded, { gap: 0, close: 1, cap: 1, expired: 2 });
  assert.equal(c.processor.heldSnapshots.held, 1);
});

const trade = (sid: number, seq: number | undefined, n: number, tsMs = 1_779_946_509_000 + n) => ({
  type: 'trade',
  sid,
  ...(seq === undefined ? {} : { seq }),
  msg: {
    trade_id: `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`,
    market_ticker: 'M-1',
    yes_price_dollars: '0.1000',
    no_price_dollars: '0.9000',
    count_fp: '1.00',
    ts: Math.floor(tsMs / 1000),
    ts_ms: tsMs,
  },
});
const lifecycle = (sid: number, seq: number) => ({
  type: 'market_lifecycle_v2',
  sid,
  seq,
  msg: { market_ticker: 'M-1', event_type: 'activated' },
});

test("a seq jump on a trade sid is a gap on that sid carrying the last good trade's exchange time; trades keep flowing", () => {
  const c = new Capture();
  c.feed({ id: 1, type: 'subscribed', msg: { channel: 'trade', sid: 2 } });
  c.feed(trade(2, 1, 1), 1, 5000);
  c.feed(trade(2, 2, 2), 1, 6000);
  c.feed(trade(2, 5, 5), 1, 9000); // 3 and 4 lost
  assert.deepEqual(
    c.gaps.map((g) => [g.kind, g.sid, g.channel, g.expectedSeq, g.gotSeq, g.lastGoodUs, g.lastGoodExchangeUs]),
    [['gap', 2, 'trade', 3, 5, 6000, 1_779_946_509_002_000]],
  );
  c.feed(trade(2, 5, 5), 1, 9001); // the same frame again: a duplicate, dropped
  assert.equal(c.lines('trades').length, 3);
  assert.equal(c.processor.counters.duplicateSeqDropped, 1);
});

test('trades without seq (2025 captures) are accepted unchecked', () => {
  const c = new Capture();
  c.feed({ id: 1, type: 'subscribed', msg: { channel: 'trade', sid: 2 } });
  for (let n = 1; n <= 3; n++) c.feed(trade(2, undefined, n));
  assert.equal(c.gaps.length, 0);
  assert.equal(c.lines('trades').length, 3);
});

test('a seq jump on a lifecycle sid is a gap on that sid', () => {
  const c = new Capture();
  c.feed({ id: 1, type: 'subscribed', msg: { channel: 'market_lifecycle_v2', sid: 1 } });
  c.feed(lifecycle(1, 1));
  c.feed(lifecycle(1, 3));
  assert.deepEqual(
    c.gaps.map((g) => [g.kind, g.channel, g.expectedSeq, g.gotSeq]),
    [['gap', 'market_lifecycle_v2', 2, 3]],
  );
});

test("acks on a trade sid cause no false gap, whether or not they share the data's seq counter", () => {
  // Shared counter: trade 1, ack 2, trade 3.
  const shared = new Capture();
  shared.feed({ id: 1, type: 'subscribed', msg: { channel: 'trade', sid: 2 } });
  shared.feed(trade(2, 1, 1));
  shared.feed({ id: 2, sid: 2, seq: 2, type: 'ok', msg: { market_tickers: ['M-1'] } });
  shared.feed(trade(2, 3, 3));
  assert.equal(shared.gaps.length, 0);
  assert.ok(
    shared.controls.some((e) => e.kind === 'ok'),
    'the ack reaches the connection manager',
  );
  // Separate counter: trade 1, ack 7, trade 2, trade 3.
  const separate = new Capture();
  separate.feed({ id: 1, type: 'subscribed', msg: { channel: 'trade', sid: 2 } });
  separate.feed(trade(2, 1, 1));
  separate.feed({ id: 2, sid: 2, seq: 7, type: 'ok', msg: { market_tickers: ['M-1'] } });
  separate.feed(trade(2, 2, 2));
  separate.feed(trade(2, 3, 3));
  assert.equal(separate.gaps.length, 0);
  assert.equal(separate.lines('trades').length, 3);
  // A real loss after an ack is still a gap.
  separate.feed(trade(2, 5, 5));
  assert.deepEqual(
    separate.gaps.map((g) => [g.expectedSeq, g.gotSeq]),
    [[4, 5]],
  );
});

test('a closed connection reports where its stream ended in exchange time', () => {
  const c = new Capture();
  c.feed({ id: 1, type: 'subscribed', msg: { channel: 'trade', sid: 2 } }, 3);
  c.feed(trade(2, 1, 1, 1_779_946_400_000), 3, 7000);
  c.feed(delta(1, 1), 3, 8000);
  c.control(FrameKind.connectionClosed, 3, null, 0, 9000);
  assert.deepEqual(
    c.gaps.map((g) => [g.kind, g.connId, g.lastGoodUs, g.lastGoodExchangeUs, g.detectedUs]),
    [['closed', 3, 8000, 1_779_946_509_623_423, 9000]],
  );
  assert.equal(c.processor.counters.gapEvents, 0, 'not counted as a gap');
});
