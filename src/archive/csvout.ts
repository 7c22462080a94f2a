// Buffered CSV writer for derived rows, in the dialect the Parquet writer reads (parquet.ts): an
// empty unquoted field is NULL, anything holding a comma, quote or line break is quoted. Rows are
// encoded straight into a fixed buffer handed to the file when full: building the text of a whole
// buffer first (an array of lines joined) spent a third of the replay's time in the garbage
// collector (profile of bench/tiers.ts, 10 s book grid).
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { KdpError } from '../core/errors';

/** Bytes buffered before they go to the file: bounds memory, keeps write calls large. */
const BUFFER_BYTES = 1 << 20;

const quoteField = (f: string): string => (/[",\n\r]/.test(f) ? `"${f.replace(/"/g, '""')}"` : f);

/** True when some field holds a comma, quote or line break (then the row is built field by field). */
function needsQuoting(joined: string, fields: number): boolean {
  if (/["\n\r]/.test(joined)) return true;
  let commas = 0;
  for (let i = joined.indexOf(','); i !== -1; i = joined.indexOf(',', i + 1)) commas++;
  return commas !== fields - 1;
}

export class CsvOut {
  private readonly stream: WriteStream;
  private buf = Buffer.allocUnsafe(BUFFER_BYTES);
  private used = 0;
  private closed = false;
  /** A write error (disk full, missing directory) surfaces at the next drain or close, never as an unhandled event. */
  private failed: Error | undefined;
  rows = 0;

  constructor(readonly path: string) {
    this.stream = createWriteStream(path);
    this.stream.on('error', (err) => (this.failed ??= err));
  }

  private check(): void {
    if (this.failed) throw new KdpError('KDP_ERR_ARCHIVE_DISK', `writing ${this.path}: ${this.failed.message}`);
  }

  line(fields: readonly string[]): void {
    let text = fields.join(',');
    if (needsQuoting(text, fields.length)) text = fields.map(quoteField).join(',');
    text += '\n';
    // Worst case 3 bytes per UTF-16 unit; a row longer than the buffer gets a buffer of its own.
    if (this.used + text.length * 3 > this.buf.length) this.handOff(Math.max(BUFFER_BYTES, text.length * 3));
    this.used += this.buf.write(text, this.used);
    this.rows++;
  }

  /** Gives the filled part to the stream and starts a new buffer (the stream keeps the old one). */
  private handOff(nextBytes: number): void {
    if (this.used > 0) this.stream.write(this.buf.subarray(0, this.used));
    this.buf = Buffer.allocUnsafe(nextBytes);
    this.used = 0;
  }

  /** Waits while the file is behind (bounded memory), after handing it a full buffer. */
  async drain(force = false): Promise<void> {
    this.check();
    if (force && this.used > 0) this.handOff(BUFFER_BYTES);
    if (this.stream.writableNeedDrain) await drainOrClose(this.stream);
    this.check();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.drain(true);
    if (!this.stream.closed) {
      this.stream.end();
      await once(this.stream, 'close');
    }
    this.check();
  }
}

/** Resolves on 'drain' or 'close' (a failed stream closes without draining), leaving no listener behind. */
function drainOrClose(stream: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}
