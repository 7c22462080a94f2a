// `kdp book`: the order book of one market at a time, rebuilt from production (src/ops/book.ts).
import { withClient } from '../core/pgclient';
import { KdpError } from '../core/errors';
import { formatBook, parseTimeUs, reconstructBook } from '../ops/book';
import { parseOptions, type Command } from './command';

export const bookCommand: Command = {
  name: 'book',
  summary: 'the order book of a market at a time, rebuilt from production, with how far to trust it',
  help: `kdp book --ticker T --at TIME [--production URL] [--json] [--allow-untrusted]

Rebuilds the order book of market T at TIME (exchange time) from production: the WebSocket snapshot
placed latest in the delta stream at or before TIME (by next_delta_ts, else last_delta_ts), plus
every production delta after it up to TIME, with exact decimal arithmetic. Prints YES and NO bids
(best first), the implied asks, the anchor (gatherer, receive time, seq), and the trust: whether the
delta chain since the anchor is gap-free (a gap = a window in which every gatherer lost deltas of T),
crossed book, age of the newest REST snapshot, the gatherers the chain's copies came from.
A snapshot taken after deltas every gatherer lost is placed after them, so it is the anchor whenever
one is placed at or before TIME; when none is, or the book is crossed, the book is untrusted and
refused (KDP_ERR_BOOK_UNTRUSTED, naming why) unless --allow-untrusted.
  --ticker T          market ticker
  --at TIME           RFC 3339 (2026-11-23T12:00:00.250000Z) or integer µs since the epoch
  --production URL    production PostgreSQL (or env KDP_PRODUCTION_URL)
  --json              print the book as JSON
  --allow-untrusted   print an untrusted book (marked UNTRUSTED with its reasons) instead of failing`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      ticker: { type: 'string' },
      at: { type: 'string' },
      production: { type: 'string' },
      json: { type: 'boolean', default: false },
      'allow-untrusted': { type: 'boolean', default: false },
    });
    if (!values.ticker) throw new KdpError('KDP_ERR_USAGE', '--ticker is required');
    if (!values.at) throw new KdpError('KDP_ERR_USAGE', '--at is required');
    const atUs = parseTimeUs(values.at);
    const url = values.production ?? process.env.KDP_PRODUCTION_URL;
    if (!url) throw new KdpError('KDP_ERR_USAGE', 'give --production or KDP_PRODUCTION_URL');
    const ticker = values.ticker;
    const book = await withClient(url, (client) => reconstructBook(client, ticker, atUs));
    if (!book.trust.trusted && !values['allow-untrusted']) {
      throw new KdpError('KDP_ERR_BOOK_UNTRUSTED', `${ticker} at ${atUs} µs: ${book.trust.reasons.join('; ')} (--allow-untrusted prints it anyway)`, {
        ticker,
        atUs,
        reasons: book.trust.reasons,
      });
    }
    process.stdout.write((values.json ? JSON.stringify(book, null, 2) : formatBook(book)) + '\n');
    return 0;
  },
};
