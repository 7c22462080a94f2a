// A direct reader for the one message shape that is ~99 % of live traffic: an orderbook_delta as
// Kalshi and our simulator write it (src/kalshi/encode.ts deltaMsg / dataFrame). It reads the
// envelope and body fields off the payload bytes without utf8.decode + JSON.parse + the generic
// object walk (a busy worker spent 24 % of its CPU in JSON.parse, 11 % in GC), and allocates only
// the four strings the row keeps. Bytes are read with typed-array loads: on this machine a
// charCodeAt loop over a latin1 string cost 3.8 ns a character against 1.7 ns a byte, and
// Buffer.indexOf / String.startsWith calls 20-60 ns each, more than the short runs they replace.
//
// It only takes what it is certain of. Anything else — whitespace, escapes or control bytes in a
// string, numbers that are not plain integers, unknown or repeated keys, other value types,
// another message type — and any message whose body fails validation makes read() return false,
// and the caller takes the generic path from the start, which then produces the row or the error
// exactly as without this reader. An accepted message therefore holds the very values JSON.parse
// would give (no escapes: the raw text is the value; bytes >= 0x80 pass only in market_id, which
// is skipped, and in `ts`, where they make the parse fail either way), validated by the generic
// path's own function (readDeltaFields). Keys may come in any order.
import { readDeltaFields } from '../kalshi/messages';
import type { DeltaRow } from './encoders';

const Q = 0x22; // "
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN = 0x7b; // {
const CLOSE = 0x7d; // }
const CH_0 = 0x30;
const CH_9 = 0x39;

/** Plain integers up to 15 digits are exact in a double (2^53 has 16); longer ones go generic. */
const INT_DIGITS_MAX = 15;

// Key bits: a key seen twice (JSON.parse keeps the last) sends the message to the generic path.
const K_TYPE = 1;
const K_SID = 2;
const K_SEQ = 4;
const K_MSG = 8;
const K_SENT = 16;
const ENVELOPE_REQUIRED = K_TYPE | K_SID | K_SEQ | K_MSG;
const K_TICKER = 1;
const K_MARKET_ID = 2;
const K_PRICE = 4;
const K_DELTA = 8;
const K_SIDE = 16;
const K_TS = 32;
const K_TS_MS = 64;

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (ch) => ch.charCodeAt(0));
}

// Key and value literals as bytes (typed-array reads are ~2x charCodeAt's speed here).
const KEY = {
  delta_fp: ascii('delta_fp'),
  market_id: ascii('market_id'),
  no: ascii('no'),
  market_ticker: ascii('market_ticker'),
  msg: ascii('msg'),
  orderbook_delta: ascii('orderbook_delta'),
  price_dollars: ascii('price_dollars'),
  sending_ts_ms: ascii('sending_ts_ms'),
  seq: ascii('seq'),
  sid: ascii('sid'),
  side: ascii('side'),
  ts: ascii('ts'),
  ts_ms: ascii('ts_ms'),
  type: ascii('type'),
  yes: ascii('yes'),
};

const latin1Slice = Buffer.prototype.latin1Slice as (this: Uint8Array, start: number, end: number) => string;

/** A recognised, valid orderbook_delta: envelope numbers here, body fields in the caller's row. */
export class DeltaScan {
  sid = 0;
  seq = 0;
  /** sending_ts_ms, undefined when absent. */
  sentMs: number | undefined = undefined;
  // Body values of the message being read (undefined = absent), as JSON.parse would give them.
  private ticker: string | undefined = undefined;
  private side: string | undefined = undefined;
  private price: string | undefined = undefined;
  private delta: string | undefined = undefined;
  private ts: string | undefined = undefined;
  private tsMs: number | undefined = undefined;

  private b: Uint8Array = NO_BYTES;
  private n = 0;
  private i = 0;
  // Bounds of the last string read / value of the last integer read.
  private strStart = 0;
  private strEnd = 0;
  private int = 0;

  /**
   * True when `bytes` is an orderbook_delta this reader fully understood and whose body is valid:
   * sid, seq and sentMs are set and `row`'s ticker, side, price, delta and exchange_ts filled.
   * False leaves `row`'s body fields in any state (the generic path overwrites them).
   */
  read(bytes: Uint8Array, row: DeltaRow): boolean {
    if (bytes.length < 2 || bytes[0] !== OPEN) return false;
    this.b = bytes;
    this.n = bytes.length;
    this.i = 0;
    this.sentMs = this.ticker = this.side = this.price = this.delta = this.ts = this.tsMs = undefined;
    const ok = this.envelope() && this.i === this.n && this.sid >= 1 && this.seq >= 1;
    this.b = NO_BYTES; // never keep a (reused) ring buffer alive
    if (!ok) return false;
    try {
      readDeltaFields(this.ticker, this.side, this.price, this.delta, this.ts, this.tsMs, row);
    } catch {
      return false; // the generic path reports it, with the seq bookkeeping a bad body needs
    }
    return true;
  }

  private envelope(): boolean {
    const seen = this.object(true);
    return seen >= 0 && (seen & ENVELOPE_REQUIRED) === ENVELOPE_REQUIRED; // missing body fields are the validator's business
  }

  /** An object of known keys, each at most once: the bits of the keys seen, -1 when not ours. */
  private object(envelope: boolean): number {
    if (this.at(this.i++) !== OPEN) return -1;
    let seen = 0;
    for (;;) {
      if (!this.string()) return -1;
      const at = this.strStart;
      const len = this.strEnd - at;
      if (this.at(this.i++) !== COLON) return -1;
      const bit = envelope ? this.envelopeValue(at, len) : this.bodyValue(at, len);
      if (bit === 0 || (seen & bit) !== 0) return -1;
      seen |= bit;
      const c = this.at(this.i++);
      if (c === CLOSE) return seen;
      if (c !== COMMA) return -1;
    }
  }

  /** Reads the value of envelope key b[at, at + len); its key bit, 0 when not ours. */
  private envelopeValue(at: number, len: number): number {
    const b = this.b;
    if (len === 4 && same(b, at, KEY.type)) {
      return this.string() && this.strEnd - this.strStart === 15 && same(b, this.strStart, KEY.orderbook_delta) ? K_TYPE : 0;
    }
    if (len === 3 && same(b, at, KEY.msg)) return this.object(false) >= 0 ? K_MSG : 0;
    if (!this.integer()) return 0;
    if (len === 3 && same(b, at, KEY.sid)) return ((this.sid = this.int), K_SID);
    if (len === 3 && same(b, at, KEY.seq)) return ((this.seq = this.int), K_SEQ);
    if (len === 13 && same(b, at, KEY.sending_ts_ms)) return ((this.sentMs = this.int), K_SENT);
    return 0;
  }

  /** Reads the value of body key b[at, at + len); its key bit, 0 when not ours. */
  private bodyValue(at: number, len: number): number {
    if (len === 5 && same(this.b, at, KEY.ts_ms)) return this.integer() ? ((this.tsMs = this.int), K_TS_MS) : 0;
    return this.string() ? this.bodyString(at, len) : 0;
  }

  /** Keeps a string-valued body field by key; its key bit, 0 for a key we do not know. */
  private bodyString(at: number, len: number): number {
    const b = this.b;
    const from = this.strStart;
    const to = this.strEnd;
    switch (len) {
      case 13:
        if (same(b, at, KEY.market_ticker)) return ((this.ticker = latin1Slice.call(b, from, to)), K_TICKER);
        if (same(b, at, KEY.price_dollars)) return ((this.price = latin1Slice.call(b, from, to)), K_PRICE);
        return 0;
      case 8:
        return same(b, at, KEY.delta_fp) ? ((this.delta = latin1Slice.call(b, from, to)), K_DELTA) : 0;
      case 4:
        if (!same(b, at, KEY.side)) return 0;
        this.side = to - from === 3 && same(b, from, KEY.yes) ? 'yes' : to - from === 2 && same(b, from, KEY.no) ? 'no' : latin1Slice.call(b, from, to);
        return K_SIDE;
      case 2:
        return same(b, at, KEY.ts) ? ((this.ts = latin1Slice.call(b, from, to)), K_TS) : 0;
      case 9:
        return same(b, at, KEY.market_id) ? K_MARKET_ID : 0;
      default:
        return 0;
    }
  }

  /**
   * A string without escapes or control bytes (a backslash would make the raw text differ from the
   * value; a control byte makes the text invalid JSON); its content is s[strStart, strEnd).
   * A byte loop, not indexOf / startsWith: those are builtin calls of 20-60 ns each here.
   */
  private string(): boolean {
    const b = this.b;
    const n = this.n;
    let i = this.i;
    if (i >= n || b[i] !== Q) return false;
    const start = ++i;
    for (;;) {
      if (i >= n) return false;
      const c = b[i]!;
      if (c === Q) break;
      if (c < 0x20 || c === BACKSLASH) return false;
      i++;
    }
    this.strStart = start;
    this.strEnd = i;
    this.i = i + 1;
    return true;
  }

  /** A plain non-negative JSON integer (no sign, fraction, exponent or leading zero) of up to 15 digits. */
  private integer(): boolean {
    const b = this.b;
    const n = this.n;
    let i = this.i;
    const start = i;
    let v = 0;
    while (i < n) {
      const c = b[i]!;
      if (c < CH_0 || c > CH_9) break;
      v = v * 10 + (c - CH_0);
      i++;
    }
    const digits = i - start;
    if (digits === 0 || digits > INT_DIGITS_MAX || (digits > 1 && b[start] === CH_0)) return false;
    this.int = v;
    this.i = i;
    return true;
  }

  /** The byte at `i`, -1 past the end (an out-of-bounds typed-array read is slow in V8). */
  private at(i: number): number {
    return i < this.n ? this.b[i]! : -1;
  }
}

/** b[at, at + name.length) holds `name`'s bytes (the caller checked the length). */
function same(b: Uint8Array, at: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) if (b[at + i] !== name[i]) return false;
  return true;
}

const NO_BYTES = new Uint8Array(0);
