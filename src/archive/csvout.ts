// Buffered CSV writer for derived rows, in the dialect the Parquet writer reads (parquet.ts): an
// empty unquoted field is NULL, anything holding a comma, quote or line break is quoted.
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { KdpError } from '../core/errors';

/** Bytes buffered before drain() writes them: bounds memory, keeps write calls large. */
const BUFFER_BYTES = 1 << 20;

export class CsvOut {
  private readonly stream: WriteStream;
  private parts: string[] = [];
  private bytes = 0;
  rows = 0;

  /** A write error (disk full, missing directory) surfaces at the next drain or close, never as an unhandled event. */
  private failed: Error | undefined;

  constructor(readonly path: string) {
    this.stream = createWriteStream(path);
    this.stream.on('error', (err) => (this.failed ??= err));
  }

  private check(): void {
    if (this.failed) throw new KdpError('KDP_ERR_ARCHIVE_DISK', `writing ${this.path}: ${this.failed.message}`);
  }

  line(fields: readonly string[]): void {
    let text = '';
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      if (i > 0) text += ',';
      text += /[",\n\r]/.test(f) ? `"${f.replace(/"/g, '""')}"` : f;
    }
    text += '\n';
    this.parts.push(text);
    this.bytes += text.length;
    this.rows++;
  }

  /** Writes the buffer once it is large (and waits for the file to take it). */
  async drain(force = false): Promise<void> {
    this.check();
    if (this.parts.length === 0 || (!force && this.bytes < BUFFER_BYTES)) return;
    const chunk = this.parts.join('');
    this.parts = [];
    this.bytes = 0;
    if (!this.stream.write(chunk)) await drainOrClose(this.stream);
    this.check();
  }

  private closed = false;

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
