// `kdp book`: the order book of one market at a time, rebuilt from production (src/ops/book.ts).
import { withClient } from '../core/pgclient';
import { KdpError } from '../core/errors';
import { formatBook, parseTimeUs, reconstructBook } from '../ops/book';
import { parseOptions, type Command } from './command';

export const bookCommand: Command = {
  name: 'book',
  summary: 'the order book of a market at a time, rebuilt from production',
  help: `kdp book --ticker T --at TIME [--production URL] [--json]

Rebuilds the order book of market T at TIME from production: the newest WebSocket snapshot at or
before TIME whose last_delta_ts is known, plus every production delta after last_delta_ts up to
TIME, with exact decimal arithmetic. Prints YES and NO bids (best first) and the implied asks.
  --ticker T          market ticker
  --at TIME           RFC 3339 (2026-11-23T12:00:00.250000Z) or integer µs since the epoch
  --production URL    production PostgreSQL (or env KDP_PRODUCTION_URL)
  --json              print the book as JSON`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      ticker: { type: 'string' },
      at: { type: 'string' },
      production: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    if (!values.ticker) throw new KdpError('KDP_ERR_USAGE', '--ticker is required');
    if (!values.at) throw new KdpError('KDP_ERR_USAGE', '--at is required');
    const atUs = parseTimeUs(values.at);
    const url = values.production ?? process.env.KDP_PRODUCTION_URL;
    if (!url) throw new KdpError('KDP_ERR_USAGE', 'give --production or KDP_PRODUCTION_URL');
    const ticker = values.ticker;
    const book = await withClient(url, (client) => reconstructBook(client, ticker, atUs));
    process.stdout.write((values.json ? JSON.stringify(book, null, 2) : formatBook(book)) + '\n');
    return 0;
  },
};
