// Protocol conformance of the simulator, checked with a plain `ws` client and fetch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { startSimulator, type Simulator } from '../../src/sim/simulator';
import { signRequest } from '../../src/sim/auth';
import { Book } from '../../src/sim/state';
import { parsePrice, parseSize, parseRfc3339Micros } from '../../src/sim/fixed';
import { TestClient, sleep } from './client';

const PRICE = /^[01]\.\d{4}$/;
const SIZE = /^-?\d+\.\d{2}$/;
const RFC_US = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function getJson(url: string): Promise<any> {
  return (await fetch(url)).json();
}

function activeTickers(sim: Simulator, n: number): string[] {
  return sim.state.marketList
    .filter((m) => m.status === 'active')
    .slice(0, n)
    .map((m) => m.def.ticker);
}

async function withSim(opts: Parameters<typeof startSimulator>[0], body: (sim: Simulator) => Promise<void>): Promise<void> {
  const sim = await startSimulator({ markets: 8, rate: 3000, seed: 11, ...opts });
  try {
    await body(sim);
  } finally {
    await sim.stop();
  }
}

test('message shapes and field formats', async () => {
  await withSim({ pingIntervalMs: 100, tickerTsMsMissingRate: 0 }, async (sim) => {
    const c = await TestClient.open(sim.wsUrl);
    const tickers = activeTickers(sim, 4);
    const id = c.send('subscribe', { channels: ['orderbook_delta', 'ticker', 'trade'], market_tickers: tickers });
    const subs = await c.reply(id, 3);
    assert.deepEqual(
      subs.map((s) => s.msg.channel),
      ['orderbook_delta', 'ticker', 'trade'],
    );
    assert.equal(new Set(subs.map((s) => s.msg.sid)).size, 3, 'one sid per channel');
    await c.until(() => c.ofType('trade').length >= 5 && c.ofType('ticker').length >= 5 && c.pings.length >= 2);
    for (const s of c.ofType('orderbook_snapshot')) {
      assert.ok(tickers.includes(s.msg.market_ticker));
      assert.match(s.msg.market_id, UUID);
      for (const side of ['yes_dollars_fp', 'no_dollars_fp']) {
        if (side in s.msg) assert.ok(s.msg[side].length > 0, 'an empty side is omitted');
        for (const [p, q] of s.msg[side] ?? []) assert.ok(PRICE.test(p) && SIZE.test(q));
      }
      assert.equal(s.ts, undefined);
    }
    for (const d of c.ofType('orderbook_delta')) {
      assert.match(d.msg.price_dollars, PRICE);
      assert.match(d.msg.delta_fp, SIZE);
      assert.ok(d.msg.side === 'yes' || d.msg.side === 'no');
      assert.match(d.msg.ts, RFC_US);
      assert.equal(d.msg.ts_ms, Math.floor(parseRfc3339Micros(d.msg.ts) / 1000));
    }
    const tradeSeqs = new Map<number, number[]>();
    for (const t of c.ofType('trade')) {
      assert.match(t.msg.trade_id, UUID);
      assert.match(t.msg.yes_price_dollars, PRICE);
      assert.equal(parsePrice(t.msg.yes_price_dollars) + parsePrice(t.msg.no_price_dollars), 10_000);
      assert.match(t.msg.count_fp, SIZE);
      assert.equal(t.msg.ts, Math.floor(t.msg.ts_ms / 1000), 'trade ts is seconds');
      assert.ok(t.msg.ts_ms > 1.6e12 && t.msg.ts_ms < 1e14, 'ts_ms is milliseconds');
      // Live trades carry the sid's seq (frames captured from the exchange, 2025-2026).
      assert.equal(typeof t.seq, 'number');
      tradeSeqs.set(t.sid, [...(tradeSeqs.get(t.sid) ?? []), t.seq]);
    }
    for (const seqs of tradeSeqs.values())
      assert.deepEqual(
        seqs,
        seqs.map((_, i) => seqs[0]! + i),
        'trade seqs contiguous per sid',
      );
    for (const t of c.ofType('ticker')) {
      assert.ok(t.msg.price_dollars === '' || PRICE.test(t.msg.price_dollars));
      for (const f of ['yes_bid_dollars', 'yes_ask_dollars']) assert.match(t.msg[f], PRICE);
      for (const f of ['yes_bid_size_fp', 'yes_ask_size_fp', 'volume_fp', 'open_interest_fp', 'last_trade_size_fp']) assert.match(t.msg[f], SIZE);
      assert.match(t.msg.time, RFC_US);
      assert.equal(t.msg.ts_ms, Math.floor(parseRfc3339Micros(t.msg.time) / 1000));
      assert.equal(t.msg.ts, Math.floor(t.msg.ts_ms / 1000));
    }
    assert.ok(
      c.pings.every((p) => p === 'heartbeat'),
      'Ping control frames with body heartbeat',
    );
    c.close();
  });
  const tickersWithoutTsMs = await (async () => {
    const sim = await startSimulator({ markets: 4, rate: 2000, seed: 12, tickerTsMsMissingRate: 1 });
    const c = await TestClient.open(sim.wsUrl);
    await c.reply(c.send('subscribe', { channels: ['ticker'] }));
    await c.until(() => c.ofType('ticker').length >= 3);
    c.close();
    await sim.stop();
    return c;
  })();
  for (const t of tickersWithoutTsMs.ofType('ticker')) {
    assert.equal('ts_ms' in t.msg, false, 'ts_ms omitted at rate 1');
    assert.equal(t.msg.ts, Math.floor(parseRfc3339Micros(t.msg.time) / 1e6));
  }
});

test('seq is contiguous per sid across snapshots, deltas and acks', async () => {
  await withSim({ rate: 5000 }, async (sim) => {
    const c = await TestClient.open(sim.wsUrl);
    const [a, b, d] = activeTickers(sim, 3);
    const id1 = c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: [a, b] });
    const sid = (await c.reply(id1))[0]!.msg.sid;
    await sleep(150);
    const id2 = c.send('update_subscription', { sid, action: 'add_markets', market_tickers: [d] });
    const ok2 = (await c.reply(id2))[0]!;
    assert.equal(ok2.type, 'ok');
    assert.deepEqual([...ok2.msg.market_tickers].sort(), [a, b, d].sort());
    await sleep(100);
    const id3 = c.send('update_subscription', { sids: [sid], action: 'get_snapshot', market_tickers: [a] });
    await c.reply(id3);
    const id4 = c.send('update_subscription', { sid, action: 'delete_markets', market_tickers: [b] });
    await c.reply(id4);
    await sleep(100);
    const id5 = c.send('unsubscribe', { sids: [sid] });
    const unsub = (await c.reply(id5))[0]!;
    assert.equal(unsub.type, 'unsubscribed');
    const seqs = c.frames.flatMap((f) => (f.json && f.json.sid === sid && typeof f.json.seq === 'number' ? [f.json.seq] : []));
    assert.ok(seqs.length > 10);
    seqs.forEach((s, i) => assert.equal(s, i + 1, `seq ${i + 1}`));
    assert.equal(unsub.seq, seqs[seqs.length - 1]);
    const kinds = new Set(c.frames.flatMap((f) => (f.json && f.json.sid === sid ? [f.json.type] : [])));
    for (const k of ['orderbook_snapshot', 'orderbook_delta', 'ok', 'unsubscribed']) assert.ok(kinds.has(k), k);
    const snapsOfA = c.ofType('orderbook_snapshot').filter((s) => s.msg.market_ticker === a);
    assert.equal(snapsOfA.length, 2, 'get_snapshot sends a fresh snapshot');
    const after = c.frames.length;
    await sleep(100);
    assert.ok(
      c.frames.slice(after).every((f) => f.json?.sid !== sid),
      'nothing after unsubscribed',
    );
    c.close();
  });
});

test('every command error a client can provoke', async () => {
  await withSim({ marketsPerSubMax: 3, rate: 200 }, async (sim) => {
    const c = await TestClient.open(sim.wsUrl);
    const t = activeTickers(sim, 5);
    const code = async (id: number): Promise<number> => {
      const r = (await c.reply(id))[0]!;
      assert.equal(r.type, 'error', JSON.stringify(r));
      assert.equal(typeof r.msg.msg, 'string');
      return r.msg.code;
    };
    c.sendRaw('{not json');
    await c.until(() => c.ofType('error').length === 1);
    assert.equal(c.ofType('error')[0]!.msg.code, 1);
    assert.equal(await code(c.send('subscribe')), 2);
    assert.equal(await code(c.send('subscribe', {})), 3);
    assert.equal(await code(c.send('subscribe', { channels: [] })), 3);
    assert.equal(await code(c.send('unsubscribe', {})), 4);
    assert.equal(await code(c.send('frobnicate', {})), 5);
    assert.equal(await code(c.send('unsubscribe', { sids: [99] })), 7);
    assert.equal(await code(c.send('subscribe', { channels: ['nope'] })), 8);
    assert.equal(await code(c.send('subscribe', { channels: ['fill'] })), 9);
    assert.equal(await code(c.send('subscribe', { channels: ['ticker'], market_tickers: 'x' })), 11);
    assert.equal(await code(c.send('subscribe', { channels: ['orderbook_delta'] })), 14);
    assert.equal(await code(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: [] })), 14);
    assert.equal(await code(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: ['NO-SUCH'] })), 16);
    assert.equal(await code(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: t.slice(0, 4) })), 26);
    const sid = (await c.reply(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: t.slice(0, 2) })))[0]!.msg.sid;
    const tsid = (await c.reply(c.send('subscribe', { channels: ['ticker'] })))[0]!.msg.sid;
    assert.equal(await code(c.send('update_subscription', { sids: [sid, tsid], action: 'add_markets', market_tickers: [t[2]] })), 12);
    assert.equal(await code(c.send('update_subscription', { sids: [], action: 'add_markets', market_tickers: [t[2]] })), 12);
    assert.equal(await code(c.send('update_subscription', { sid: 77, action: 'add_markets', market_tickers: [t[2]] })), 7);
    assert.equal(await code(c.send('update_subscription', { sid, market_tickers: [t[2]] })), 15);
    assert.equal(await code(c.send('update_subscription', { sid, action: 'explode', market_tickers: [t[2]] })), 13);
    assert.equal(await code(c.send('update_subscription', { sid, action: 'add_markets' })), 14);
    assert.equal(await code(c.send('update_subscription', { sid, action: 'add_markets', market_tickers: ['NO-SUCH'] })), 16);
    assert.equal(await code(c.send('update_subscription', { sid, action: 'add_markets', market_tickers: [t[2], t[3]] })), 26);
    const list = (await c.reply(c.send('list_subscriptions')))[0]!;
    assert.deepEqual(list, {
      id: list.id,
      type: 'ok',
      msg: [
        { channel: 'orderbook_delta', sid },
        { channel: 'ticker', sid: tsid },
      ],
    });
    c.close();
  });
});

test('command flood answers error 27; slow consumer gets error 25 and its sid is dropped', async () => {
  await withSim({ commandsPerSecMax: 5, rate: 60_000, markets: 4, slowConsumerBytes: 64 * 1024 }, async (sim) => {
    const c = await TestClient.open(sim.wsUrl);
    for (let i = 0; i < 12; i++) c.send('list_subscriptions');
    await c.until(() => c.ofType('error').some((e) => e.msg.code === 27));
    const slow = await TestClient.open(sim.wsUrl);
    const sid = (await slow.reply(slow.send('subscribe', { channels: ['orderbook_delta'], market_tickers: activeTickers(sim, 4) })))[0]!.msg.sid;
    (slow.ws as any)._socket.pause();
    await sleep(1500);
    (slow.ws as any)._socket.resume();
    await slow.until(() => slow.ofType('error').some((e) => e.msg.code === 25), 15_000);
    const e25 = slow.ofType('error').find((e) => e.msg.code === 25)!;
    assert.equal(e25.sid, sid);
    assert.equal(
      sim.connections().find((x) => x.sids.includes(sid) && x.id > 1),
      undefined,
      'sid dropped',
    );
    c.close();
    slow.close();
  });
});

test('REST pagination, status filter, books equal to the WebSocket books, trades match WS trades', async () => {
  await withSim({ markets: 30, restBurstTokens: 1e6, restTokensPerSec: 1e6 }, async (sim) => {
    const all: any[] = [];
    let cursor = '';
    do {
      const r = await getJson(`${sim.restUrl}/markets?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      assert.ok(r.markets.length <= 7);
      all.push(...r.markets);
      cursor = r.cursor;
    } while (cursor);
    assert.equal(all.length, sim.state.marketList.length);
    assert.equal(new Set(all.map((m) => m.ticker)).size, all.length);
    const open = (await getJson(`${sim.restUrl}/markets?status=open&limit=1000&mve_filter=exclude`)).markets;
    assert.ok(open.length >= 1 && open.every((m: any) => m.status === 'active'));
    const settled = (await getJson(`${sim.restUrl}/markets?status=settled`)).markets;
    assert.ok(settled.length >= 1 && settled.every((m: any) => m.status === 'finalized'));
    assert.equal((await fetch(`${sim.restUrl}/markets?limit=1001`)).status, 400);
    assert.equal((await fetch(`${sim.restUrl}/markets?status=bogus`)).status, 400);
    assert.equal((await fetch(`${sim.restUrl}/markets/NOPE`)).status, 404);
    assert.equal((await fetch(`${sim.restUrl}/markets/%E0%A4%A`)).status, 400, 'a malformed escape is a 400, not a crash');

    const c = await TestClient.open(sim.wsUrl);
    const tickers = activeTickers(sim, 5);
    await c.reply(c.send('subscribe', { channels: ['orderbook_delta', 'trade'], market_tickers: tickers }), 2);
    await c.until(() => c.ofType('trade').length >= 3);
    sim.pause();
    await sleep(100);
    const books = new Map<string, Book>();
    for (const f of c.frames) {
      const j = f.json;
      if (j?.type === 'orderbook_snapshot') books.set(j.msg.market_ticker, Book.fromLevels(j.msg.yes_dollars_fp ?? [], j.msg.no_dollars_fp ?? []));
      if (j?.type === 'orderbook_delta') books.get(j.msg.market_ticker)!.apply(j.msg.side, parsePrice(j.msg.price_dollars), parseSize(j.msg.delta_fp));
    }
    for (const t of tickers) {
      const rest = (await getJson(`${sim.restUrl}/markets/${t}/orderbook`)).orderbook_fp;
      assert.deepEqual(rest, { yes_dollars: books.get(t)!.levels('yes'), no_dollars: books.get(t)!.levels('no') }, t);
    }
    // An array parameter on Kalshi: repeated keys (form, explode), as the OpenAPI description says.
    const batch = (await getJson(`${sim.restUrl}/markets/orderbooks?${tickers.map((t) => `tickers=${encodeURIComponent(t)}`).join('&')}`)).orderbooks;
    assert.deepEqual(
      batch.map((b: any) => b.ticker),
      tickers,
    );
    const wsTrades = new Map(c.ofType('trade').map((t) => [t.msg.trade_id, t.msg]));
    const restTrades: any[] = [];
    cursor = '';
    do {
      const r = await getJson(`${sim.restUrl}/markets/trades?limit=5${cursor ? `&cursor=${cursor}` : ''}`);
      restTrades.push(...r.trades);
      cursor = r.cursor;
    } while (cursor);
    assert.equal(new Set(restTrades.map((t) => t.trade_id)).size, restTrades.length, 'pages do not overlap');
    let matched = 0;
    for (const r of restTrades) {
      const w = wsTrades.get(r.trade_id);
      if (!w) continue;
      matched++;
      assert.match(r.created_time, RFC_US);
      assert.equal(Math.floor(parseRfc3339Micros(r.created_time) / 1000), w.ts_ms, 'created_time truncated to ms = ts_ms');
      assert.equal(r.ticker, w.market_ticker);
      assert.equal(r.count_fp, w.count_fp);
    }
    assert.equal(matched, wsTrades.size);
    const tsec = Math.floor(sim.nowUs() / 1e6);
    const window = (await getJson(`${sim.restUrl}/markets/trades?min_ts=${tsec}&max_ts=${tsec}&limit=1000`)).trades;
    assert.ok(window.every((t: any) => Math.floor(parseRfc3339Micros(t.created_time) / 1e6) === tsec));
    sim.resume();
    c.close();
  });
});

test('REST rate limit answers 429 without Retry-After', async () => {
  await withSim({ restBurstTokens: 30, restTokensPerSec: 1, restCostTokens: 10 }, async (sim) => {
    const statuses: number[] = [];
    let limited: Response | null = null;
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${sim.restUrl}/exchange/status`);
      statuses.push(r.status);
      if (r.status === 429) limited = r;
      else await r.json();
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    assert.deepEqual(await limited!.json(), { error: { code: 'too_many_requests', message: 'too many requests' } }, 'the body shape seen on Kalshi');
    assert.equal(limited!.headers.get('retry-after'), null);
  });
});

test('handshake signature: RSA-PSS verified, wrong or missing signature refused with 401', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  await withSim({ publicKeys: { k1: pub }, requireAuth: true }, async (sim) => {
    const good = await TestClient.open(sim.wsUrl, { ...signRequest('k1', privateKey, 'GET', '/trade-api/ws/v2') });
    const r = (await good.reply(good.send('subscribe', { channels: ['fill'] })))[0]!;
    assert.equal(r.type, 'subscribed', 'signed connections may use private channels');
    good.close();
    const bad = signRequest('k1', other, 'GET', '/trade-api/ws/v2');
    await assert.rejects(TestClient.open(sim.wsUrl, { ...bad }), (e: any) => e.status === 401);
    const wrongPath = signRequest('k1', privateKey, 'GET', '/trade-api/v2');
    await assert.rejects(TestClient.open(sim.wsUrl, { ...wrongPath }), (e: any) => e.status === 401);
    await assert.rejects(TestClient.open(sim.wsUrl), (e: any) => e.status === 401);
  });
});

test('use_yes_price prices the NO side as 1 - NO price; a non-boolean is error 11', async () => {
  await withSim({ rate: 4000 }, async (sim) => {
    const tickers = activeTickers(sim, 3);
    const plain = await TestClient.open(sim.wsUrl);
    const yes = await TestClient.open(sim.wsUrl);
    const bad = (await yes.reply(yes.send('subscribe', { channels: ['orderbook_delta'], market_tickers: tickers, use_yes_price: 'yes' })))[0]!;
    assert.equal(bad.msg.code, 11);
    sim.pause();
    await plain.reply(plain.send('subscribe', { channels: ['orderbook_delta'], market_tickers: tickers, use_yes_price: false }));
    await yes.reply(yes.send('subscribe', { channels: ['orderbook_delta'], market_tickers: tickers, use_yes_price: true }));
    sim.resume();
    await plain.until(() => plain.ofType('orderbook_delta').filter((d) => d.msg.side === 'no').length >= 5);
    sim.pause();
    await sleep(100);
    const flip = (p: string): number => 10_000 - parsePrice(p);
    const a = plain.ofType('orderbook_snapshot');
    const b = yes.ofType('orderbook_snapshot');
    assert.equal(a.length, b.length);
    a.forEach((s, i) => {
      assert.deepEqual(b[i]!.msg.yes_dollars_fp, s.msg.yes_dollars_fp);
      const mapped = (s.msg.no_dollars_fp ?? []).map(([p, q]: [string, string]) => [flip(p), q]).sort((x: [number], y: [number]) => x[0] - y[0]);
      assert.deepEqual(
        (b[i]!.msg.no_dollars_fp ?? []).map(([p, q]: [string, string]) => [parsePrice(p), q]),
        mapped,
      );
    });
    const da = plain.ofType('orderbook_delta');
    const db = yes.ofType('orderbook_delta');
    assert.equal(da.length, db.length);
    da.forEach((d, i) => {
      const e = db[i]!.msg;
      assert.equal(e.delta_fp, d.msg.delta_fp);
      assert.equal(parsePrice(e.price_dollars), d.msg.side === 'no' ? flip(d.msg.price_dollars) : parsePrice(d.msg.price_dollars));
    });
    sim.resume();
    plain.close();
    yes.close();
  });
});

test('a newly created market is announced on market_lifecycle_v2 and 404s on REST for restNewMarketDelayMs', async () => {
  await withSim({ rate: 500, marketLifetimeS: 2, markets: 4, restNewMarketDelayMs: 60_000, restBurstTokens: 1e6 }, async (sim) => {
    const c = await TestClient.open(sim.wsUrl);
    await c.reply(c.send('subscribe', { channels: ['market_lifecycle_v2'] }));
    await c.until(() => c.ofType('market_lifecycle_v2').some((m) => m.msg.event_type === 'created'), 10_000);
    const created = c.ofType('market_lifecycle_v2').find((m) => m.msg.event_type === 'created')!;
    assert.equal(typeof created.msg.open_ts, 'number');
    assert.equal(typeof created.msg.close_ts, 'number');
    assert.ok(created.msg.open_ts < 1e11, 'open_ts is seconds');
    assert.equal(typeof created.seq, 'number', "lifecycle messages carry the sid's seq (required in Kalshi's 2026 docs)");
    assert.equal((await fetch(`${sim.restUrl}/markets/${created.msg.market_ticker}`)).status, 404);
    const listed = (await getJson(`${sim.restUrl}/markets?tickers=${created.msg.market_ticker}`)).markets;
    assert.equal(listed.length, 1);
    assert.equal(listed[0].status, 'initialized');
    c.close();
  });
});
