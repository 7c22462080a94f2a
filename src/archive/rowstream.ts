// Reads a `COPY (…) TO STDOUT` (text format) as rows grouped by their first column (the ticker),
// with the rows of one ticker handed out together. The query must be ordered by ticker COLLATE "C"
// (byte order), which for ASCII tickers equals JavaScript's string order. Counts the rows and
// hashes the bytes read, so a derived file can say exactly which rows it came from.
import { createHash, type Hash } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { ClientBase } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { classifyDbError, invariant } from '../core/errors';

/** COPY text format: `\N` is NULL; backslash escapes only appear when a value holds them. */
export function unescapeCopyText(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  return field.replace(/\\(.)/g, (_, ch: string) => (ch === 't' ? '\t' : ch === 'n' ? '\n' : ch === 'r' ? '\r' : ch));
}

export class GroupedRows {
  private readonly lines: AsyncIterator<string>;
  private head: string[] | undefined;
  private done = false;
  private lastTicker = '';
  rows = 0;
  readonly hash: Hash = createHash('sha256');

  private constructor(stream: NodeJS.ReadableStream) {
    this.lines = createInterface({ input: stream, crlfDelay: Infinity })[Symbol.asyncIterator]();
  }

  static open(client: ClientBase, copySql: string): GroupedRows {
    const stream = client.query(copyTo(copySql));
    const g = new GroupedRows(stream);
    stream.on('data', (chunk: Buffer) => g.hash.update(chunk));
    return g;
  }

  private async advance(): Promise<void> {
    if (this.done) return;
    try {
      const r = await this.lines.next();
      if (r.done) {
        this.done = true;
        this.head = undefined;
        return;
      }
      this.rows++;
      this.head = r.value.split('\t');
    } catch (err) {
      throw classifyDbError(err);
    }
  }

  /** Ticker of the next row, or undefined at the end. */
  async peek(): Promise<string | undefined> {
    if (this.head === undefined && !this.done) await this.advance();
    return this.head?.[0];
  }

  /** Every row of `ticker` (fields split, not unescaped); tickers must be asked for in ascending order. */
  async take(ticker: string): Promise<string[][]> {
    invariant(ticker >= this.lastTicker, `rows asked for ${ticker} after ${this.lastTicker}: the COPY must be ordered by ticker`);
    this.lastTicker = ticker;
    const out: string[][] = [];
    for (;;) {
      const next = await this.peek();
      if (next === undefined || next > ticker) return out;
      invariant(next === ticker, `COPY rows out of ticker order: ${next} before ${ticker}`);
      out.push(this.head!);
      this.head = undefined;
    }
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}
