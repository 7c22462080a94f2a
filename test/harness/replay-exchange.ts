// A plain replay exchange for tests (NOT the simulator: no generator, no state, no Kalshi code of
// this project beyond the channel of each message type): an HTTP server with Kalshi's REST paths
// serving fixed bodies, and a WebSocket server on /trade-api/ws/v2 that answers commands and plays
// a fixed list of recorded frames, each exactly once.
//
// What it changes in a recorded frame, and only that: `sid` is set to the sid it assigned to the
// subscription the frame is played on, and `seq`, where the frame has one, to that sid's next
// sequence number (Kalshi numbers seq per sid from 1; recorded frames come from many sids). Every
// other byte of the message object is kept (it is re-serialised by JSON.stringify, so key order
// stays as recorded). `sent` records the sid and seq each frame went out with.
//
// Commands: `subscribe` gets one `subscribed` reply per channel (a new sid each), then the frames
// of that channel: book frames (orderbook_delta channel) of the subscribed market_tickers, all
// snapshots first and then the deltas (the exchange sends a subscription's snapshots on subscribe),
// all-markets channels every frame of the channel. `update_subscription` add_markets answers `ok`
// (consuming a seq, as on Kalshi) and plays the added markets' book frames; `unsubscribe` answers
// `unsubscribed`; `list_subscriptions` lists them. Pings every `pingIntervalMs`.
// REST: GET /markets (status, tickers, event_ticker, mve_filter), /markets/{ticker}, /events,
// /series (empty), /markets/trades (ticker, min_ts, max_ts), the order book routes and
// /exchange/status, each answered in one page from the fixed bodies given.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { MESSAGE_CHANNEL } from '../../src/kalshi/protocol';

type Json = Record<string, unknown>;

export interface ReplayFrame {
  /** Caller's key for the frame (e.g. its corpus file and index). */
  readonly key: string;
  /** The recorded WebSocket message. */
  readonly message: Json;
}

export interface ReplayExchangeOptions {
  readonly frames: readonly ReplayFrame[];
  /** GET /markets items (filtered by status, tickers, event_ticker, mve_filter; one page). */
  readonly markets: readonly Json[];
  /** GET /events items (filtered by status open/unopened on nothing: every call gets them all; one page). */
  readonly events?: readonly Json[];
  /** GET /markets/trades items (filtered by ticker and [min_ts, max_ts] on created_time). */
  readonly trades?: readonly Json[];
  /** GET /markets/{ticker}/orderbook and /markets/orderbooks bodies, by ticker: {yes_dollars, no_dollars}. */
  readonly orderbooks?: ReadonlyMap<string, Json>;
  readonly pingIntervalMs?: number;
}

export interface SentFrame {
  readonly key: string;
  readonly sid: number;
  readonly seq: number | null;
}

/** Kalshi's `status` filter values -> the market `status` values they select. */
const STATUS_FILTER: Record<string, readonly string[]> = {
  unopened: ['initialized'],
  open: ['active'],
  paused: ['inactive'],
  closed: ['closed'],
  settled: ['determined', 'disputed', 'amended', 'finalized'],
};
const BOOK_CHANNEL = 'orderbook_delta';

export class ReplayExchange {
  /** Every recorded frame played, in send order, with the sid and seq it carried. */
  readonly sent: SentFrame[] = [];
  /** Every command received, as parsed. */
  readonly commands: Json[] = [];
  private readonly played = new Set<string>();
  private readonly http: Server;
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly sockets = new Set<Socket>();
  private port = 0;

  constructor(private readonly opts: ReplayExchangeOptions) {
    this.http = createServer((req, res) => this.rest(req, res));
    this.http.on('connection', (s) => (this.sockets.add(s), s.on('close', () => this.sockets.delete(s))));
    this.http.on('upgrade', (req, socket, head) => {
      if (new URL(req.url ?? '/', 'http://x').pathname !== '/trade-api/ws/v2') return socket.destroy();
      this.wss.handleUpgrade(req, socket, head, (ws) => this.session(ws));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.http.listen(0, '127.0.0.1', resolve));
    this.port = (this.http.address() as AddressInfo).port;
    return this;
  }

  get restUrl(): string {
    return `http://127.0.0.1:${this.port}/trade-api/v2`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/trade-api/ws/v2`;
  }

  /** True once every frame has been played. */
  allPlayed(): boolean {
    return this.played.size === this.opts.frames.length;
  }

  async stop(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  // ---- WebSocket -------------------------------------------------------------------------------

  private session(ws: WebSocket): void {
    let nextSid = 1;
    const subs = new Map<number, { channel: string; tickers: Set<string> | null; seq: number }>();
    const send = (msg: Json) => ws.readyState === ws.OPEN && ws.send(JSON.stringify(msg));
    const ping = setInterval(() => ws.readyState === ws.OPEN && ws.ping('heartbeat'), this.opts.pingIntervalMs ?? 1000);
    ws.on('close', () => clearInterval(ping));
    const play = (sid: number, frames: readonly ReplayFrame[]) => {
      const sub = subs.get(sid)!;
      for (const f of frames) {
        if (this.played.has(f.key)) continue;
        this.played.add(f.key);
        const out: Json = { ...f.message, sid };
        let seq: number | null = null;
        if ('seq' in f.message) out.seq = seq = ++sub.seq;
        this.sent.push({ key: f.key, sid, seq });
        send(out);
      }
    };
    const bookFrames = (tickers: ReadonlySet<string>) => {
      const mine = this.opts.frames.filter(
        (f) => MESSAGE_CHANNEL[String(f.message.type)] === BOOK_CHANNEL && tickers.has(String((f.message.msg as Json).market_ticker)),
      );
      return [...mine.filter((f) => f.message.type === 'orderbook_snapshot'), ...mine.filter((f) => f.message.type !== 'orderbook_snapshot')];
    };
    ws.on('message', (data: Buffer) => {
      const cmd = JSON.parse(data.toString()) as Json;
      this.commands.push(cmd);
      const id = cmd.id;
      const params = (cmd.params ?? {}) as Json;
      if (cmd.cmd === 'subscribe') {
        const tickers = Array.isArray(params.market_tickers) ? new Set(params.market_tickers as string[]) : null;
        for (const channel of params.channels as string[]) {
          const sid = nextSid++;
          subs.set(sid, { channel, tickers, seq: 0 });
          send({ type: 'subscribed', id, msg: { channel, sid } });
          if (channel === BOOK_CHANNEL) play(sid, bookFrames(tickers ?? new Set()));
          else
            play(
              sid,
              this.opts.frames.filter((f) => MESSAGE_CHANNEL[String(f.message.type)] === channel),
            );
        }
      } else if (cmd.cmd === 'update_subscription') {
        const sid = Number(params.sid ?? (params.sids as number[] | undefined)?.[0]);
        const sub = subs.get(sid);
        if (!sub) return send({ type: 'error', id, msg: { code: 7, msg: 'Unknown sid' } });
        const changed = (params.market_tickers ?? []) as string[];
        sub.tickers ??= new Set();
        if (params.action === 'delete_markets') for (const t of changed) sub.tickers.delete(t);
        else for (const t of changed) sub.tickers.add(t);
        send({ type: 'ok', id, sid, seq: ++sub.seq, msg: { market_tickers: [...sub.tickers] } });
        if (params.action === 'add_markets' || params.action === 'get_snapshot') play(sid, bookFrames(new Set(changed)));
      } else if (cmd.cmd === 'unsubscribe') {
        for (const sid of (params.sids ?? []) as number[]) {
          const sub = subs.get(sid);
          if (!sub) continue;
          subs.delete(sid);
          send({ type: 'unsubscribed', id, sid, seq: ++sub.seq });
        }
      } else if (cmd.cmd === 'list_subscriptions') {
        send({ type: 'ok', id, msg: [...subs].map(([sid, s]) => ({ channel: s.channel, sid })) });
      } else {
        send({ type: 'error', id, msg: { code: 5, msg: 'Unknown command' } });
      }
    });
  }

  // ---- REST ------------------------------------------------------------------------------------

  private rest(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname.replace(/^\/trade-api\/v2/, '');
    const q = url.searchParams;
    const reply = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const markets = this.opts.markets;
    const books = this.opts.orderbooks ?? new Map<string, Json>();
    if (path === '/markets') {
      const status = q.get('status');
      const tickers = q.get('tickers')?.split(',');
      const list = markets.filter(
        (m) =>
          (!status || (STATUS_FILTER[status] ?? []).includes(String(m.status))) &&
          (!tickers || tickers.includes(String(m.ticker))) &&
          (!q.get('event_ticker') || m.event_ticker === q.get('event_ticker')) &&
          // mve_filter=exclude leaves out multivariate (combo) markets, =only keeps only them.
          (q.get('mve_filter') !== 'exclude' || !m.mve_collection_ticker) &&
          (q.get('mve_filter') !== 'only' || !!m.mve_collection_ticker),
      );
      return reply(200, { markets: list, cursor: '' });
    }
    if (path === '/markets/trades') {
      const min = Number(q.get('min_ts') ?? -Infinity);
      const max = Number(q.get('max_ts') ?? Infinity);
      const trades = (this.opts.trades ?? []).filter((t) => {
        const s = Date.parse(String(t.created_time)) / 1000;
        return (!q.get('ticker') || t.ticker === q.get('ticker')) && s >= min && s <= max;
      });
      return reply(200, { trades, cursor: '' });
    }
    if (path === '/markets/orderbooks')
      return reply(200, {
        orderbooks: q
          .getAll('tickers')
          .filter((t) => books.has(t))
          .map((t) => ({ ticker: t, orderbook_fp: books.get(t) })),
      });
    if (path === '/events') return reply(200, { events: this.opts.events ?? [], cursor: '' });
    if (path === '/series') return reply(200, { series: [] });
    if (path === '/exchange/status') return reply(200, { exchange_active: true, trading_active: true, exchange_estimated_resume_time: null });
    const book = /^\/markets\/([^/]+)\/orderbook$/.exec(path);
    if (book) {
      const ob = books.get(decodeURIComponent(book[1]!));
      return ob ? reply(200, { orderbook_fp: ob }) : reply(404, { error: { code: 'not_found', message: 'market not found' } });
    }
    const one = /^\/markets\/([^/]+)$/.exec(path);
    if (one) {
      const m = markets.find((x) => x.ticker === decodeURIComponent(one[1]!));
      return m ? reply(200, { market: m }) : reply(404, { error: { code: 'not_found', message: 'market not found' } });
    }
    reply(404, { error: { code: 'not_found', message: 'not found' } });
  }
}

export async function startReplayExchange(opts: ReplayExchangeOptions): Promise<ReplayExchange> {
  return new ReplayExchange(opts).start();
}
