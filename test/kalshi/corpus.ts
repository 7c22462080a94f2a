// The conformance corpus (test/kalshi/corpus/*.json) as data: its file format, loading and the
// decoding of a COPY row line into columns. Used by the corpus test (every frame through the worker
// parser) and by the replay test (every captured frame through a real gatherer into PostgreSQL).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableByName, type TimeSeriesTableName } from '../../src/schema/tables';

export type Provenance = 'captured' | 'unverified' | 'doc-example' | 'hand-made';

/** Where a captured frame is found: path plus a line number or a unique anchor string in that file. */
export interface CorpusLocator {
  readonly path?: string;
  readonly line?: number;
  readonly anchor?: string;
  /** Overrides the file's source commit (the source file was indexed at another commit). */
  readonly commit?: string;
  readonly evidence?: string;
}

export interface CorpusRowExpect {
  readonly table: TimeSeriesTableName;
  /** Columns the row must have (the stored text value, COPY escapes undone; null = SQL NULL). Unlisted columns are not checked. */
  readonly row: Record<string, string | null>;
}

/** A command reply (subscribed / ok / error ...) as the worker reports it, without connId and receive time. */
export type CorpusControl = Record<string, unknown> & { readonly kind: string };

export interface CorpusFrame extends CorpusLocator {
  readonly frame: string;
  readonly expect: CorpusRowExpect | { readonly control: CorpusControl };
  /** A reject code the frame is counted under (it is still stored). */
  readonly counted?: string;
}

export interface CorpusRest extends CorpusLocator {
  /**
   * `orderbook`: a GET /markets/{ticker}/orderbook body; `trades`: a GET /markets/trades page;
   * `trade`, `market`, `event`: one item of GET /markets/trades, /markets, /events;
   * `exchange_status`: a GET /exchange/status body. `expect: {rejected: code}` = the parser refuses it.
   */
  readonly route: 'orderbook' | 'trades' | 'trade' | 'market' | 'event' | 'exchange_status';
  readonly body: string;
  readonly expect: Record<string, unknown>;
}

export interface CorpusFile {
  readonly provenance: Provenance;
  readonly source: { readonly repository: string; readonly commit?: string; readonly note: string };
  readonly frames: readonly CorpusFrame[];
  readonly rest?: readonly CorpusRest[];
}

/** The receive time every corpus frame is fed with (µs). */
export const CORPUS_RECEIVED_US = 1_779_946_510_000_000;

const DIR = join(__dirname, '..', '..', '..', 'test', 'kalshi', 'corpus');

export function loadCorpus(): { file: string; body: CorpusFile }[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: f, body: JSON.parse(readFileSync(join(DIR, f), 'utf8')) as CorpusFile }));
}

/** A COPY row line as {column: value | null}: COPY text escapes (\\, \t, \n, \r) undone, so a value
 * is what PostgreSQL stores (batch_id, which the writer appends, excluded). */
export function decodeRow(table: TimeSeriesTableName, line: string): Record<string, string | null> {
  const names = tableByName(table)
    .columns.map((c) => c.name)
    .filter((n) => n !== 'batch_id');
  const values = line.split('\t');
  assert.equal(values.length, names.length, `${table} row has ${values.length} columns`);
  return Object.fromEntries(names.map((n, i) => [n, values[i] === '\\N' ? null : unescapeCopyText(values[i]!)]));
}

const COPY_UNESCAPES: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r' };

/** The inverse of copyText (src/copy/text.ts). */
function unescapeCopyText(value: string): string {
  return value.replace(/\\(.)/g, (_m, c: string) => COPY_UNESCAPES[c] ?? c);
}
