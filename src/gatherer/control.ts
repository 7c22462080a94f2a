// Events flowing between the worker threads (which parse every frame, control messages included)
// and the connection manager on the ingest thread. Workers see the exchange's replies in stream
// order; the manager owns commands and subscriptions.

/** A reply or notice the exchange sent on a connection, as reported by the worker that parsed it. */
export type ExchangeReply =
  | { readonly type: 'subscribed'; readonly connId: number; readonly id: number; readonly channel: string; readonly sid: number }
  | { readonly type: 'ok'; readonly connId: number; readonly id: number; readonly sid?: number | undefined }
  | { readonly type: 'unsubscribed'; readonly connId: number; readonly id: number; readonly sid: number }
  | {
      readonly type: 'error';
      readonly connId: number;
      readonly id?: number | undefined;
      readonly sid?: number | undefined;
      readonly code: number;
      readonly msg: string;
    };

/** A break in a subscription's stream found by a worker's sequence checker. */
export interface GapEvent {
  readonly connId: number;
  readonly sid: number;
  readonly channel: string | undefined;
  /** 'seq_gap' | 'error_10' | 'error_17' | 'error_25' | 'ring_drop' | 'worker_restart' */
  readonly kind: string;
  readonly tickers: readonly string[];
  readonly expectedSeq: number | undefined;
  readonly gotSeq: number | undefined;
  readonly errorCode: number | undefined;
  /** Receive time (µs) of the last good frame before the break, and of the frame that showed it. */
  readonly windowStartUs: number;
  readonly windowEndUs: number;
}

/** Exchange error codes that end a subscription: its sid is dead, messages were lost. */
export const TERMINAL_ERROR_CODES: ReadonlySet<number> = new Set([10, 17, 25]);
export const ERROR_MARKET_LIMIT = 26;
