// Exchange replies as the connection manager on the ingest thread consumes them. Workers parse
// every frame (replies included, in stream order) and post these back; gap events keep the shape
// of src/workers/sequence.ts.

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

export const ERROR_MARKET_LIMIT = 26;
