// The simulator speaks the wire module's protocol: every frame it sends on every channel we
// record (books, trades, tickers, lifecycle incl. event_lifecycle, command replies and errors)
// goes through the gatherer's real parser (FrameProcessor, which reads with src/kalshi) and must
// give rows or control events, never a reject. Together with the corpus test (frames captured
// from the live exchange through the same readers) this keeps the simulator from drifting away
// from the exchange without a test noticing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startSimulator } from '../../src/sim/simulator';
import { TestClient } from '../sim/client';
import { Capture } from '../workers/harness';

test('every frame the simulator sends on every recorded channel parses with the wire module: rows or control events, no reject', async () => {
  const sim = await startSimulator({ markets: 12, rate: 3000, seed: 41, marketLifetimeS: 2, tickerTsMsMissingRate: 0.2 });
  const c = await TestClient.open(sim.wsUrl);
  try {
    const tickers = sim.state.marketList.filter((m) => m.status === 'active').map((m) => m.def.ticker);
    await c.reply(c.send('subscribe', { channels: ['market_lifecycle_v2'] }));
    await c.reply(c.send('subscribe', { channels: ['trade', 'ticker'] }), 2);
    const [books] = await c.reply(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: tickers.slice(0, 6) }));
    const sid = books!.msg.sid as number;
    await c.reply(c.send('update_subscription', { sid, action: 'add_markets', market_tickers: tickers.slice(6) }));
    await c.reply(c.send('update_subscription', { sids: [sid], action: 'get_snapshot', market_tickers: [tickers[0]] }));
    c.send('subscribe', { channels: ['no_such_channel'] });
    const count = (type: string): number => c.ofType(type).length;
    await c.until(
      () =>
        count('orderbook_delta') > 200 &&
        count('trade') > 20 &&
        count('ticker') > 20 &&
        count('error') > 0 &&
        c.ofType('market_lifecycle_v2').some((m) => m.msg.event_type === 'created') &&
        count('event_lifecycle') > 0,
      30_000,
    );
    const capture = new Capture();
    for (const f of c.frames) capture.feed(f.raw);
    capture.processor.releaseHeldSnapshots(undefined, true); // the last snapshots wait for a delta that never comes
    assert.deepEqual(capture.rejects, [], 'no frame of the simulator is rejected');
    const rows = (table: string): number => capture.rows.filter((r) => r.table === table).length;
    assert.equal(rows('orderbook_deltas'), count('orderbook_delta'), 'one row per delta');
    assert.equal(rows('trades'), count('trade'), 'one row per trade');
    assert.equal(rows('tickers'), count('ticker'), 'one row per ticker');
    assert.ok(rows('orderbook_snapshots') >= tickers.length + 1, 'a snapshot per market plus the get_snapshot reply');
    assert.equal(rows('lifecycle_events'), count('market_lifecycle_v2') + count('event_lifecycle'), 'one row per lifecycle message');
    const kinds = new Set(capture.controls.map((e) => e.kind));
    for (const kind of ['subscribed', 'ok', 'error']) assert.ok(kinds.has(kind as never), `a ${kind} reply parsed as a control event`);
  } finally {
    c.close();
    await sim.stop();
  }
});
