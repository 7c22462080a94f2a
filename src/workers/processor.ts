// The worker-side data path, without I/O: bus frame -> JSON message -> validated, normalised,
// sequence-checked rows encoded for COPY, handed to injected sinks. One FrameProcessor per worker
// thread; messages of one connection always reach the same worker, so all state here is local.
//
// Failure policy: a malformed frame or message is counted under its error code, sampled (bounded)
// and reported to `reject`; processing continues with the next frame. Only broken invariants
// (bugs) throw out of process().
import { FrameCodec, FrameKind, type BusFrame } from '../ingest/frame';
import { isKdpError, KdpError, type ErrorCode } from '../core/errors';
import type { TimeSeriesTableName } from '../schema/tables';
import { compileEncoders, type DeltaRow, type Encoders, type LifecycleRow, type SnapshotRow, type TickerRow, type TradeRow } from './encoders';
import {
  fail,
  isObject,
  readDelta,
  readLifecycle,
  readSnapshot,
  readTicker,
  readTrade,
  readUnknown,
  sendingTimeUs,
  type Json,
  type JsonObject,
} from './messages';
import { REGISTRY_MESSAGE_TYPES } from '../kalshi/protocol';
import { resolveProcessorOptions, type ProcessorOptions } from './options';
import { SeqVerdict, SequenceChecker, TERMINAL_ERROR_CODES, type GapEvent } from './sequence';
import { OccurrenceCounter, RecentIds } from './state';
import { SnapshotHold } from './held';
import { isTicker } from './scalars';
import { DeltaScan } from './delta-scan';

export type { GapEvent } from './sequence';

/**
 * Row output. `append` must keep the row; false means "above the high-water mark, slow down".
 * `receivedUs` is the receive time of the frame the row came from (frame-to-commit latency).
 */
export interface RowSink {
  append(table: TimeSeriesTableName, rowLine: string, receivedUs: number): boolean;
}

export type ControlEvent =
  | {
      readonly kind: 'subscribed';
      readonly connId: number;
      readonly id: number | null;
      readonly sid: number;
      readonly channel: string;
      readonly receivedUs: number;
    }
  | {
      readonly kind: 'ok';
      readonly connId: number;
      readonly id: number | null;
      readonly sid: number | null;
      readonly seq: number | null;
      readonly tickers: readonly string[] | null;
      readonly receivedUs: number;
    }
  | {
      readonly kind: 'list_subscriptions';
      readonly connId: number;
      readonly id: number | null;
      readonly subscriptions: readonly { readonly channel: string; readonly sid: number }[];
      readonly receivedUs: number;
    }
  | {
      readonly kind: 'unsubscribed';
      readonly connId: number;
      readonly id: number | null;
      readonly sid: number;
      readonly seq: number | null;
      readonly receivedUs: number;
    }
  | {
      readonly kind: 'error';
      readonly connId: number;
      readonly id: number | null;
      readonly sid: number | null;
      readonly code: number;
      readonly message: string;
      readonly receivedUs: number;
    }
  | { readonly kind: 'connection-opened' | 'connection-closed'; readonly connId: number; readonly receivedUs: number }
  | { readonly kind: 'resync-requested'; readonly connId: number; readonly sid: number; readonly tickers: readonly string[]; readonly receivedUs: number };

export interface ProcessorSinks {
  readonly rows: RowSink;
  control(event: ControlEvent): void;
  gap(event: GapEvent): void;
  reject(code: ErrorCode, sample: string): void;
  /** A validated lifecycle message (the market registry follows them on the ingest thread). */
  lifecycle(channel: string, msg: JsonObject): void;
}

export interface RejectSample {
  readonly code: ErrorCode;
  readonly reason: string;
  readonly connId: number;
  readonly receivedUs: number;
  readonly sample: string;
}

/** Plain-number counters; the lead exports them as metrics. */
export interface ProcessorCounters {
  frames: number;
  messages: number;
  rows: Record<TimeSeriesTableName, number>;
  rejects: Partial<Record<ErrorCode, number>>;
  duplicateSeqDropped: number;
  duplicateTradesDropped: number;
  deltasWhileUnsynced: number;
  /** orderbook_delta messages DeltaScan did not take (an unusual shape, or a body that fails validation). */
  deltasGenericPath: number;
  backpressureSignals: number;
  controlEvents: number;
  gapEvents: number;
  framesDroppedUpstream: number;
}

const utf8 = new TextDecoder('utf-8');

export class FrameProcessor {
  readonly options: ProcessorOptions;
  readonly seq: SequenceChecker;
  readonly counters: ProcessorCounters;
  private readonly codec: FrameCodec;
  private readonly encoders: Encoders = compileEncoders();
  private readonly deltaOccurrences: OccurrenceCounter;
  private readonly tickerOccurrences: OccurrenceCounter;
  private readonly recentTrades: RecentIds;
  /** WS snapshot rows waiting for their sid's next in-order delta (next_delta_ts). */
  readonly heldSnapshots: SnapshotHold;
  /** The byte-level reader of the common orderbook_delta shape (the generic path takes the rest). */
  private readonly deltaScan = new DeltaScan();
  private readonly samples: RejectSample[] = [];
  private sampleCursor = 0;
  // Reusable row objects (one per table): filled per message, encoded, never retained.
  private readonly deltaRow: DeltaRow;
  private readonly snapshotRow: SnapshotRow;
  private readonly tradeRow: TradeRow;
  private readonly tickerRow: TickerRow;
  private readonly lifecycleRow: LifecycleRow;
  // Frame being processed, for provenance and diagnosis.
  private connId = 0;
  private receivedUs = 0;
  /** The current message's envelope sending_ts_ms in µs (null when absent). */
  private sentUs: number | null = null;
  private keepFeeding = true;

  constructor(
    rawOptions: unknown,
    private readonly sinks: ProcessorSinks,
  ) {
    this.options = resolveProcessorOptions(rawOptions);
    const o = this.options;
    this.codec = new FrameCodec(o.frameBytesMax);
    this.seq = new SequenceChecker({ sidsPerConnectionMax: o.sidsPerConnectionMax, marketsPerSidMax: o.marketsPerSidMax });
    this.deltaOccurrences = new OccurrenceCounter(o.marketsTrackedMax);
    this.tickerOccurrences = new OccurrenceCounter(o.marketsTrackedMax);
    this.recentTrades = new RecentIds(o.recentTradeIdsMax);
    this.heldSnapshots = new SnapshotHold(o.snapshotsHeldMax, o.snapshotHoldMs, (row) =>
      this.emitRow('orderbook_snapshots', this.encoders.orderbook_snapshots(row), row.received_at),
    );
    this.counters = {
      frames: 0,
      messages: 0,
      rejects: {},
      duplicateSeqDropped: 0,
      duplicateTradesDropped: 0,
      deltasWhileUnsynced: 0,
      deltasGenericPath: 0,
      backpressureSignals: 0,
      controlEvents: 0,
      gapEvents: 0,
      framesDroppedUpstream: 0,
      rows: { trades: 0, orderbook_deltas: 0, orderbook_snapshots: 0, tickers: 0, lifecycle_events: 0 },
    };
    const p = { received_at: 0, gatherer: o.gathererId, conn_id: 0, sid: 0, seq: null, sent_at: null };
    this.deltaRow = { ticker: '', side: '', price: '', delta: '', exchange_ts: 0, occurrence: 0, ...p };
    this.snapshotRow = { ticker: '', yes_levels: '', no_levels: '', snapshot_ts: 0, source: 'ws', last_delta_ts: null, next_delta_ts: null, ...p };
    this.tradeRow = {
      trade_id: '',
      ticker: '',
      yes_price: '',
      no_price: '',
      count: '',
      taker_side: null,
      taker_outcome_side: null,
      taker_book_side: null,
      is_block_trade: null,
      exchange_ts: 0,
      source: 'ws',
      ...p,
    };
    this.tickerRow = {
      ticker: '',
      price: null,
      yes_bid: null,
      yes_ask: null,
      yes_bid_size: null,
      yes_ask_size: null,
      last_trade_size: null,
      volume: null,
      open_interest: null,
      dollar_volume: null,
      dollar_open_interest: null,
      exchange_ts: 0,
      fingerprint: '0',
      occurrence: 0,
      ...p,
    };
    this.lifecycleRow = { channel: '', ticker: null, event_ticker: null, event_type: '', payload: '', fingerprint: '0', ...p };
  }

  /**
   * Decodes and processes one bus frame (bytes as taken off the ring; may be a reused buffer).
   * Returns false when a row sink signalled backpressure: the caller should pause reading.
   */
  processBytes(bytes: Uint8Array): boolean {
    let frame: BusFrame;
    try {
      frame = this.codec.decode(bytes);
    } catch (err) {
      this.counters.frames++;
      this.rejectError(err, bytes);
      return true;
    }
    return this.process(frame);
  }

  /** Processes one decoded bus frame; same return value as processBytes. */
  process(frame: BusFrame): boolean {
    this.counters.frames++;
    this.connId = frame.connId;
    this.receivedUs = frame.receivedUs;
    this.keepFeeding = true;
    try {
      if (frame.kind === FrameKind.data) this.processMessage(frame.payload);
      else this.processControlFrame(frame);
    } catch (err) {
      this.rejectError(err, frame.payload);
    }
    return this.keepFeeding;
  }

  /** The manager's subscription knowledge (also arrives as `subscription` frames). */
  registerSubscription(connId: number, sid: number, channel: string | null, tickers: readonly string[], mode: 'set' | 'add' | 'remove' = 'add'): void {
    this.seq.registerSubscription(connId, sid, channel, tickers, mode);
  }

  /** A connection (re)opened or closed: its sids are void, new ones count from seq 1. */
  resetConnection(connId: number): void {
    this.heldSnapshots.breakConnection(connId, 'close');
    this.seq.resetConnection(connId);
  }

  /**
   * Emits the snapshot rows held past snapshotHoldMs (every held row with `all`: the worker drains)
   * without their upper anchor. Same return value as processBytes.
   */
  releaseHeldSnapshots(nowMs: number = performance.now(), all = false): boolean {
    this.keepFeeding = true;
    this.heldSnapshots.expire(nowMs, all);
    return this.keepFeeding;
  }

  isBookSynced(connId: number, sid: number, ticker: string): boolean {
    return this.seq.isBookSynced(connId, sid, ticker);
  }

  /** The most recent rejected messages (bounded ring), oldest first. */
  rejectSamples(): RejectSample[] {
    const n = this.samples.length;
    const out: RejectSample[] = [];
    for (let i = 0; i < n; i++) out.push(this.samples[(this.sampleCursor + i) % n]!);
    return out;
  }

  private processControlFrame(frame: BusFrame): void {
    const connId = frame.connId;
    switch (frame.kind) {
      case FrameKind.connectionOpened:
      case FrameKind.connectionClosed: {
        // Where a closed stream ended in exchange time: the trade backfill of the outage starts there
        // (a reader lagging the exchange received its last frame long after the exchange sent it).
        this.heldSnapshots.breakConnection(connId, 'close');
        if (frame.kind === FrameKind.connectionClosed)
          this.sinks.gap(this.seq.closeConnection(connId, frame.receivedUs)); // not a gap: no gapEvents count
        else this.seq.resetConnection(connId);
        this.emitControl({ kind: frame.kind === FrameKind.connectionOpened ? 'connection-opened' : 'connection-closed', connId, receivedUs: frame.receivedUs });
        return;
      }
      case FrameKind.ringDrop:
        this.counters.framesDroppedUpstream += frame.arg;
        this.heldSnapshots.breakConnection(connId, 'gap');
        for (const gap of this.seq.ringDrop(connId, frame.receivedUs)) this.emitGap(gap);
        return;
      case FrameKind.subscription: {
        const detail = parseJsonObject(frame.payload);
        const sid = positiveInt(detail.sid, 'sid');
        const channel = typeof detail.channel === 'string' ? detail.channel : null;
        const mode = detail.mode === 'set' || detail.mode === 'remove' ? detail.mode : 'add';
        this.seq.registerSubscription(connId, sid, channel, tickerList(detail.tickers), mode);
        return;
      }
      case FrameKind.resyncMarker: {
        const detail = parseJsonObject(frame.payload);
        const sid = positiveInt(detail.sid, 'sid');
        this.emitControl({ kind: 'resync-requested', connId, sid, tickers: tickerList(detail.tickers), receivedUs: frame.receivedUs });
        return;
      }
    }
  }

  private processMessage(payload: Uint8Array): void {
    if (payload.length > this.options.frameBytesMax) fail('KDP_ERR_FRAME_TOO_LARGE', 'message exceeds frameBytesMax');
    const scan = this.deltaScan;
    if (scan.read(payload, this.deltaRow)) {
      this.counters.messages++;
      this.sentUs = sendingTimeUs(scan.sentMs);
      if (this.sequenced(scan.sid, scan.seq)) this.emitDelta(scan.sid, scan.seq);
      return;
    }
    const env = parseJsonObject(payload);
    this.counters.messages++;
    const type = env.type;
    if (typeof type !== 'string') fail('KDP_ERR_MSG_SHAPE', 'message has no string type');
    this.sentUs = sendingTimeUs(env.sending_ts_ms);
    switch (type) {
      case 'orderbook_delta':
        return this.onDelta(env);
      case 'orderbook_snapshot':
        return this.onSnapshot(env);
      case 'trade':
        return this.onTrade(env);
      case 'ticker':
        return this.onTicker(env);
      case 'market_lifecycle_v2':
      case 'multivariate_market_lifecycle':
      case 'event_lifecycle':
      case 'event_fee_update':
        return this.onLifecycle(type, env);
      case 'subscribed':
      case 'ok':
      case 'unsubscribed':
      case 'error':
        return this.onControlMessage(type, env);
      default:
        return this.onUnknown(type, env);
    }
  }

  /** Seq-checks a seq-bearing message; false when it is a duplicate that must be dropped. */
  private sequenced(sid: number, seq: number): boolean {
    const verdict = this.seq.check(this.connId, sid, seq, this.receivedUs);
    if (verdict === SeqVerdict.duplicate) {
      this.counters.duplicateSeqDropped++;
      return false;
    }
    if (verdict === SeqVerdict.gap) {
      // Frames lost after a held snapshot may have been deltas it does not hold: no upper anchor.
      this.heldSnapshots.breakSid(this.connId, sid, 'gap');
      this.emitGap(this.seq.lastGap!);
    }
    return true;
  }

  private provenance(row: DeltaRow | SnapshotRow | TradeRow | TickerRow | LifecycleRow, sid: number, seq: number | null): void {
    row.received_at = this.receivedUs;
    row.conn_id = this.connId;
    row.sid = sid;
    row.seq = seq;
    row.sent_at = this.sentUs;
  }

  /** Body errors on a book message still consumed a seq: the book is unusable, resync the sid. */
  private badBookBody(err: unknown, sid: number, seq: number): never {
    if (isKdpError(err)) {
      this.heldSnapshots.breakSid(this.connId, sid, 'gap');
      this.emitGap(this.seq.badMessage(this.connId, sid, seq, this.receivedUs));
    }
    throw err;
  }

  private onDelta(env: JsonObject): void {
    // Every delta DeltaScan understands and finds valid never gets here: a share that rises means
    // the exchange changed the message (a new field, another key order) and every delta pays JSON.parse.
    this.counters.deltasGenericPath++;
    const sid = positiveInt(env.sid, 'sid');
    const seq = positiveInt(env.seq, 'seq');
    const msg = objectField(env, 'msg');
    if (!this.sequenced(sid, seq)) return;
    try {
      readDelta(msg, this.deltaRow);
    } catch (err) {
      this.badBookBody(err, sid, seq);
    }
    this.emitDelta(sid, seq);
  }

  /** The rest of a delta once its body is in deltaRow (from DeltaScan or readDelta). */
  private emitDelta(sid: number, seq: number): void {
    const row = this.deltaRow;
    if (!this.seq.noteDelta(this.connId, sid, row.ticker, row.exchange_ts)) this.counters.deltasWhileUnsynced++;
    this.heldSnapshots.bound(this.connId, sid, row.exchange_ts);
    const occurrence = this.deltaOccurrences.next(row.ticker, row.exchange_ts, row.side, row.price, row.delta);
    if (occurrence < 0) fail('KDP_ERR_MSG_SHAPE', 'more identical deltas in one microsecond than occurrence can number');
    row.occurrence = occurrence;
    this.provenance(row, sid, seq);
    this.emitRow('orderbook_deltas', this.encoders.orderbook_deltas(row));
  }

  private onSnapshot(env: JsonObject): void {
    const sid = positiveInt(env.sid, 'sid');
    const seq = positiveInt(env.seq, 'seq');
    const msg = objectField(env, 'msg');
    if (!this.sequenced(sid, seq)) return;
    const row = this.snapshotRow;
    try {
      readSnapshot(msg, row, this.options.snapshotLevelsMax);
    } catch (err) {
      this.badBookBody(err, sid, seq);
    }
    row.snapshot_ts = this.receivedUs;
    row.last_delta_ts = this.seq.noteSnapshot(this.connId, sid, row.ticker, row.yes_levels === '[]' && row.no_levels === '[]');
    this.provenance(row, sid, seq);
    this.heldSnapshots.hold(this.connId, sid, row, performance.now());
  }

  private onTrade(env: JsonObject): void {
    const sid = positiveInt(env.sid, 'sid');
    // Live trades carry the sid's seq (2025-2026 captures); 2025 captures without it are accepted
    // unchecked. A jump means trades were lost: the gap row is recovered by a REST backfill.
    const seq = optionalInt(env.seq, 'seq');
    if (seq !== null && !this.sequenced(sid, seq)) return;
    const row = this.tradeRow;
    readTrade(objectField(env, 'msg'), row);
    if (seq !== null) this.seq.noteExchangeTime(this.connId, sid, row.exchange_ts);
    if (!this.recentTrades.add(row.trade_id)) {
      this.counters.duplicateTradesDropped++;
      return;
    }
    this.provenance(row, sid, seq);
    this.emitRow('trades', this.encoders.trades(row));
  }

  private onTicker(env: JsonObject): void {
    const sid = positiveInt(env.sid, 'sid');
    const row = this.tickerRow;
    readTicker(objectField(env, 'msg'), row);
    const occurrence = this.tickerOccurrences.next(row.ticker, row.exchange_ts, row.fingerprint);
    if (occurrence < 0) fail('KDP_ERR_MSG_SHAPE', 'more identical tickers in one microsecond than occurrence can number');
    row.occurrence = occurrence;
    this.provenance(row, sid, null);
    this.emitRow('tickers', this.encoders.tickers(row));
  }

  private onLifecycle(channel: string, env: JsonObject): void {
    const sid = positiveInt(env.sid, 'sid');
    // Required on lifecycle messages in Kalshi's 2026 docs; a jump is recovered by a REST reconcile.
    const seq = optionalInt(env.seq, 'seq');
    if (seq !== null && !this.sequenced(sid, seq)) return;
    const row = this.lifecycleRow;
    readLifecycle(channel, objectField(env, 'msg'), row, { depthMax: this.options.payloadDepthMax, nodesMax: this.options.payloadNodesMax });
    this.provenance(row, sid, seq);
    this.emitRow('lifecycle_events', this.encoders.lifecycle_events(row));
    if (REGISTRY_MESSAGE_TYPES.has(channel)) this.sinks.lifecycle(channel, env);
  }

  /**
   * A message type we do not model: its raw payload is kept (lifecycle_events, event_type
   * 'unknown') and counted under KDP_ERR_MSG_UNKNOWN_TYPE, so a new exchange message costs
   * neither data nor the channel. Its seq, if any, is checked like any other on the sid.
   */
  private onUnknown(type: string, env: JsonObject): void {
    this.counters.rejects.KDP_ERR_MSG_UNKNOWN_TYPE = (this.counters.rejects.KDP_ERR_MSG_UNKNOWN_TYPE ?? 0) + 1;
    const sid = optionalInt(env.sid, 'sid');
    const seq = optionalInt(env.seq, 'seq');
    if (sid !== null && sid > 0 && seq !== null && !this.sequenced(sid, seq)) return;
    const row = this.lifecycleRow;
    readUnknown(type, env, row, { depthMax: this.options.payloadDepthMax, nodesMax: this.options.payloadNodesMax });
    this.provenance(row, sid ?? 0, seq);
    this.emitRow('lifecycle_events', this.encoders.lifecycle_events(row));
  }

  private onControlMessage(type: 'subscribed' | 'ok' | 'unsubscribed' | 'error', env: JsonObject): void {
    const connId = this.connId;
    const receivedUs = this.receivedUs;
    const id = optionalInt(env.id, 'id');
    if (type === 'subscribed') {
      const msg = objectField(env, 'msg');
      const sid = positiveInt(msg.sid, 'msg.sid');
      if (typeof msg.channel !== 'string' || msg.channel.length > 64) fail('KDP_ERR_MSG_SHAPE', 'subscribed without a channel');
      this.seq.registerSubscription(connId, sid, msg.channel, [], 'add');
      return this.emitControl({ kind: 'subscribed', connId, id, sid, channel: msg.channel, receivedUs });
    }
    if (type === 'error') {
      const msg = objectField(env, 'msg');
      const code = positiveInt(msg.code, 'msg.code');
      const sid = optionalInt(env.sid ?? msg.sid, 'sid');
      const message = typeof msg.msg === 'string' ? msg.msg.slice(0, 512) : '';
      if (sid !== null && TERMINAL_ERROR_CODES.has(code)) {
        this.heldSnapshots.breakSid(connId, sid, 'gap');
        this.emitGap(this.seq.terminalError(connId, sid, code, receivedUs));
      }
      return this.emitControl({ kind: 'error', connId, id, sid, code, message, receivedUs });
    }
    if (type === 'ok' && Array.isArray(env.msg)) return this.onListSubscriptions(id, env.msg);
    const sid = optionalInt(env.sid, 'sid');
    const seq = optionalInt(env.seq, 'seq');
    if (sid !== null && seq !== null) {
      // Book sids: acks share the data's counter (Kalshi docs). Trade / lifecycle sids: undocumented.
      if (this.seq.isNonBookSid(connId, sid)) this.seq.claimAckSeq(connId, sid, seq);
      else if (!this.sequenced(sid, seq)) return;
    }
    if (type === 'unsubscribed') {
      if (sid === null) fail('KDP_ERR_MSG_SHAPE', 'unsubscribed without sid');
      this.heldSnapshots.breakSid(connId, sid, 'close');
      this.seq.forgetSid(connId, sid);
      return this.emitControl({ kind: 'unsubscribed', connId, id, sid, seq, receivedUs });
    }
    const tickers = isObject(env.msg) && env.msg.market_tickers !== undefined ? tickerList(env.msg.market_tickers) : null;
    this.emitControl({ kind: 'ok', connId, id, sid, seq, tickers, receivedUs });
  }

  private onListSubscriptions(id: number | null, list: Json[]): void {
    if (list.length > this.options.sidsPerConnectionMax) fail('KDP_ERR_MSG_SHAPE', 'list_subscriptions reply too long');
    const subscriptions = list.map((entry) => {
      if (!isObject(entry) || typeof entry.channel !== 'string') fail('KDP_ERR_MSG_SHAPE', 'list_subscriptions entry malformed');
      return { channel: entry.channel.slice(0, 64), sid: positiveInt(entry.sid, 'sid') };
    });
    this.emitControl({ kind: 'list_subscriptions', connId: this.connId, id, subscriptions, receivedUs: this.receivedUs });
  }

  private emitRow(table: TimeSeriesTableName, line: string, receivedUs = this.receivedUs): void {
    this.counters.rows[table]++;
    if (!this.sinks.rows.append(table, line, receivedUs)) {
      this.counters.backpressureSignals++;
      this.keepFeeding = false;
    }
  }

  private emitControl(event: ControlEvent): void {
    this.counters.controlEvents++;
    this.sinks.control(event);
  }

  private emitGap(event: GapEvent): void {
    this.counters.gapEvents++;
    this.sinks.gap(event);
  }

  /** Counts, samples and reports a rejected frame or message; rethrows bugs. */
  private rejectError(err: unknown, bytes: Uint8Array): void {
    if (!isKdpError(err) || err.code === 'KDP_ERR_SEQ_INVARIANT' || err.code === 'KDP_ERR_INTERNAL' || err.code === 'KDP_ERR_RING_CORRUPT') throw err;
    const code = err.code;
    this.counters.rejects[code] = (this.counters.rejects[code] ?? 0) + 1;
    const max = this.options.rejectSampleCharsMax;
    const sample = utf8.decode(bytes.subarray(0, Math.min(bytes.length, max * 4))).slice(0, max);
    if (this.options.rejectSamplesMax > 0) {
      const entry: RejectSample = { code, reason: err.message, connId: this.connId, receivedUs: this.receivedUs, sample };
      if (this.samples.length < this.options.rejectSamplesMax) this.samples.push(entry);
      else {
        this.samples[this.sampleCursor] = entry;
        this.sampleCursor = (this.sampleCursor + 1) % this.samples.length;
      }
    }
    this.sinks.reject(code, sample);
  }
}

function parseJsonObject(bytes: Uint8Array): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (err) {
    // SyntaxError, or a RangeError from pathological nesting: both are bad input.
    throw new KdpError('KDP_ERR_MSG_JSON', `message is not valid JSON: ${String((err as Error)?.message).slice(0, 100)}`);
  }
  if (!isObject(value)) fail('KDP_ERR_MSG_SHAPE', 'message is not a JSON object');
  return value;
}

function positiveInt(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail('KDP_ERR_MSG_SHAPE', `${field} is not a positive integer`);
  return v;
}

function optionalInt(v: unknown, field: string): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail('KDP_ERR_MSG_SHAPE', `${field} is not a non-negative integer`);
  return v;
}

function objectField(env: JsonObject, field: string): JsonObject {
  const v = env[field];
  if (!isObject(v)) fail('KDP_ERR_MSG_SHAPE', `${field} is not an object`);
  return v;
}

function tickerList(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every(isTicker)) fail('KDP_ERR_MSG_SHAPE', 'tickers is not a list of market tickers');
  return v;
}
