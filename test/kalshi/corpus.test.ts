// Conformance corpus: every frame in test/kalshi/corpus/*.json goes through the real worker
// parser (FrameProcessor via the bus frame codec) and must produce exactly the normalised row
// its file states. Each file states where its frames came from (captured / unverified /
// doc-example / hand-made); only `captured` frames count as captured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Capture, referenceFnv } from '../workers/harness';
import { tableByName, type TimeSeriesTableName } from '../../src/schema/tables';
import { parseOrderbookFp, parseTrade } from '../../src/gatherer/shapes';
import { MESSAGE_CHANNEL } from '../../src/kalshi/protocol';

interface CorpusFrame {
  readonly frame: string;
  readonly path?: string;
  readonly line?: number;
  readonly evidence?: string;
  readonly expect: { readonly table: TimeSeriesTableName; readonly row: Record<string, string | null> };
  readonly counted?: string;
}
interface CorpusRest {
  readonly route: 'orderbook' | 'trades';
  readonly body: string;
  readonly expect: Record<string, unknown>;
}
interface CorpusFile {
  readonly provenance: 'captured' | 'unverified' | 'doc-example' | 'hand-made';
  readonly source: { readonly repository: string; readonly commit?: string; readonly note: string };
  readonly frames: readonly CorpusFrame[];
  readonly rest?: readonly CorpusRest[];
}

const DIR = join(__dirname, '..', '..', '..', 'test', 'kalshi', 'corpus');
const corpus = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ file: f, body: JSON.parse(readFileSync(join(DIR, f), 'utf8')) as CorpusFile }));

/** A COPY row line as {column: text | null} (batch_id, which the writer appends, excluded). */
function decodeRow(table: TimeSeriesTableName, line: string): Record<string, string | null> {
  const names = tableByName(table).columns.map((c) => c.name).filter((n) => n !== 'batch_id');
  const values = line.split('\t');
  assert.equal(values.length, names.length, `${table} row has ${values.length} columns`);
  return Object.fromEntries(names.map((n, i) => [n, values[i] === '\\N' ? null : values[i]!]));
}

test('every corpus file says where its frames came from; captured ones cite repository, commit, path and line', () => {
  for (const { file, body } of corpus) {
    assert.ok(['captured', 'unverified', 'doc-example', 'hand-made'].includes(body.provenance), file);
    assert.ok(body.source.note.length > 0, file);
    if (body.provenance !== 'captured' && body.provenance !== 'unverified') continue;
    assert.match(body.source.commit ?? '', /^[0-9a-f]{40}$/, file);
    for (const f of body.frames) assert.ok(f.path && f.line && f.evidence, `${file}: ${f.frame.slice(0, 60)}`);
  }
});

for (const { file, body } of corpus) {
  body.frames.forEach((f, i) => {
    test(`${file} #${i} (${body.provenance}) -> the stated ${f.expect.table} row, nothing rejected`, () => {
      const c = new Capture();
      c.feed(f.frame);
      assert.deepEqual(c.rejects, [], 'no frame of the corpus is rejected');
      const lines = c.lines(f.expect.table);
      assert.equal(lines.length, 1, `one ${f.expect.table} row`);
      const row = decodeRow(f.expect.table, lines[0]!);
      for (const [col, want] of Object.entries(f.expect.row)) assert.equal(row[col], want, `${col}`);
      if (f.expect.table === 'lifecycle_events') assert.equal(row.fingerprint, referenceFnv(row.payload!));
      if (f.counted) assert.equal(c.processor.counters.rejects[f.counted as 'KDP_ERR_MSG_UNKNOWN_TYPE'], 1);
    });
  });
  (body.rest ?? []).forEach((r, i) => {
    test(`${file} REST #${i} (${r.route}) -> the stated parsed value`, () => {
      const json = JSON.parse(r.body) as Record<string, unknown>;
      if (r.route === 'orderbook') {
        const book = parseOrderbookFp(json.orderbook_fp, 'orderbook_fp');
        assert.deepEqual({ yes: book.yes, no: book.no }, r.expect);
      } else {
        const trade = parseTrade((json.trades as unknown[])[0], 'trades[0]');
        for (const [k, v] of Object.entries(r.expect)) assert.equal(trade[k as keyof typeof trade], v, k);
      }
    });
  });
}

test('corpus coverage per provenance and channel is reported', (t) => {
  const counts: Record<string, Record<string, number>> = {};
  for (const { body } of corpus) {
    for (const f of body.frames) {
      const type = (JSON.parse(f.frame) as { type: string }).type;
      const channel = MESSAGE_CHANNEL[type] ?? `unknown:${type}`;
      const byChannel = (counts[body.provenance] ??= {});
      byChannel[channel] = (byChannel[channel] ?? 0) + 1;
    }
  }
  t.diagnostic(JSON.stringify(counts));
  assert.ok((counts.captured?.ticker ?? 0) >= 1 && (counts.captured?.market_lifecycle_v2 ?? 0) >= 1);
});
