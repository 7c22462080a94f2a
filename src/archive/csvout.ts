// Buffered CSV writer for derived rows, in the dialect the Parquet writer reads (parquet.ts): an
// empty unquoted field is NULL, anything holding a comma, quote or line break is quoted.
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';

/** Bytes buffered before drain() writes them: bounds memory, keeps write calls large. */
const BUFFER_BYTES = 1 << 20;

export class CsvOut {
  private readonly stream: WriteStream;
  private parts: string[] = [];
  private bytes = 0;
  rows = 0;

  constructor(readonly path: string) {
    this.stream = createWriteStream(path);
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
    if (this.parts.length === 0 || (!force && this.bytes < BUFFER_BYTES)) return;
    const chunk = this.parts.join('');
    this.parts = [];
    this.bytes = 0;
    if (!this.stream.write(chunk)) await once(this.stream, 'drain');
  }

  private closed = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.drain(true);
    this.stream.end();
    await once(this.stream, 'close');
  }
}
