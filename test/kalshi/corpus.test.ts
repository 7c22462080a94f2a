// Conformance corpus: every frame in test/kalshi/corpus/*.json goes through the real worker
// parser (FrameProcessor via the bus frame codec) and must produce exactly the normalised row (or
// the command reply) its file states; every REST body goes through the REST client's shape parser
// and row encoder. Each file states where its frames came from (captured / unverified /
// doc-example / hand-made); only `captured` frames count as captured, and each of them names the
// repository, commit, path and a locator (line or a unique anchor string) of its source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Capture, referenceFnv } from '../workers/harness';
import { TICKERS } from '../../src/schema/tables';
import { parseEvent, parseExchangeStatus, parseMarket, parseOrderbookFp, parseTrade } from '../../src/gatherer/shapes';
import { isKdpError } from '../../src/core/errors';
import { tradeRowLine } from '../../src/gatherer/rows';
import { MESSAGE_CHANNEL } from '../../src/kalshi/protocol';
import { loadCorpus, decodeRow, CORPUS_RECEIVED_US, type CorpusControl, type CorpusRest, type CorpusRowExpect } from './corpus';

const corpus = loadCorpus();

function isRowExpect(e: CorpusRowExpect | { control: CorpusControl }): e is CorpusRowExpect {
  return 'table' in e;
}

test('every corpus file says where its frames came from; captured ones cite repository, commit, path, locator and evidence', () => {
  for (const { file, body } of corpus) {
    assert.ok(['captured', 'unverified', 'doc-example', 'hand-made'].includes(body.provenance), file);
    assert.ok(body.source.note.length > 0, file);
    if (body.provenance !== 'captured' && body.provenance !== 'unverified') continue;
    assert.match(body.source.repository, /^[\w.-]+\/[\w.-]+$/, file);
    for (const f of [...body.frames, ...(body.rest ?? [])]) {
      const where = `${file}: ${(f as { frame?: string }).frame?.slice(0, 60) ?? (f as { body: string }).body.slice(0, 60)}`;
      assert.match(f.commit ?? body.source.commit ?? '', /^[0-9a-f]{40}$/, where);
      assert.ok(f.path && (f.line || f.anchor) && f.evidence, where);
    }
  }
});

for (const { file, body } of corpus) {
  body.frames.forEach((f, i) => {
    const e = f.expect;
    const what = isRowExpect(e) ? `the stated ${e.table} row` : `the stated ${e.control.kind} reply`;
    test(`${file} #${i} (${body.provenance}) -> ${what}, nothing rejected`, () => {
      const c = new Capture();
      c.feed(f.frame, 1, CORPUS_RECEIVED_US);
      // A WS snapshot row waits for its sid's next in-order delta (its next_delta_ts); a lone frame
      // has none, so release it as the worker does when it drains.
      c.processor.releaseHeldSnapshots(undefined, true);
      assert.deepEqual(c.rejects, [], 'no frame of the corpus is rejected');
      if (!isRowExpect(e)) {
        assert.equal(c.rows.length, 0, 'a command reply makes no row');
        assert.equal(c.controls.length, 1, 'one reply event');
        const { connId: _c, receivedUs: _r, ...got } = c.controls[0]!;
        assert.deepEqual(got, e.control);
        return;
      }
      const lines = c.lines(e.table);
      assert.equal(lines.length, 1, `one ${e.table} row`);
      assert.equal(c.rows.length, 1, 'and no other row');
      const row = decodeRow(e.table, lines[0]!);
      for (const [col, want] of Object.entries(e.row)) assert.equal(row[col], want, `${col}`);
      if (e.table === 'lifecycle_events') assert.equal(row.fingerprint, referenceFnv(row.payload!));
      if (e.table === 'tickers') {
        // docs/semantics.md: FNV-1a 64 over the content columns in table order, U+001F between, NULL as U+0000.
        const content = TICKERS.columns
          .slice(
            0,
            TICKERS.columns.findIndex((col) => col.name === 'fingerprint'),
          )
          .map((col) => row[col.name] ?? '\u0000');
        assert.equal(row.fingerprint, referenceFnv(content.join('\u001f')), 'ticker fingerprint as documented');
      }
      if (f.counted) assert.equal(c.processor.counters.rejects[f.counted as 'KDP_ERR_MSG_UNKNOWN_TYPE'], 1);
    });
  });
  (body.rest ?? []).forEach((r, i) => {
    test(`${file} REST #${i} (${r.route}, ${body.provenance}) -> the stated parsed value`, () => {
      const json = JSON.parse(r.body) as Record<string, unknown>;
      if ('rejected' in r.expect) {
        assert.throws(
          () => parseRest(r.route, json),
          (err: unknown) => isKdpError(err) && err.code === r.expect.rejected,
        );
        return;
      }
      if (r.route === 'trade') {
        // One item of GET /markets/trades, through the parser and the REST row encoder.
        const expect = r.expect as unknown as CorpusRowExpect;
        const row = decodeRow(expect.table, tradeRowLine(parseTrade(json, 'trade'), CORPUS_RECEIVED_US, 'g1'));
        for (const [col, want] of Object.entries(expect.row)) assert.equal(row[col], want, col);
        return;
      }
      const parsed = parseRest(r.route, json) as Record<string, unknown>;
      for (const [k, v] of Object.entries(r.expect)) assert.deepEqual(parsed[k], v, k);
    });
  });
}

/** The REST client's parse of one captured body (src/gatherer/shapes.ts), raw copies left out. */
function parseRest(route: CorpusRest['route'], json: Record<string, unknown>): unknown {
  switch (route) {
    case 'orderbook': {
      const book = parseOrderbookFp(json.orderbook_fp, 'orderbook_fp');
      return { yes: book.yes, no: book.no };
    }
    case 'trades':
      return parseTrade((json.trades as unknown[])[0], 'trades[0]');
    case 'trade':
      return parseTrade(json, 'trade');
    case 'market':
      return parseMarket(json, 'market');
    case 'event':
      return parseEvent(json, 'event');
    case 'exchange_status':
      return parseExchangeStatus(json, 'exchange status');
  }
}

test('corpus coverage per provenance and channel is reported', (t) => {
  const counts: Record<string, Record<string, number>> = {};
  const add = (provenance: string, key: string) => {
    const byChannel = (counts[provenance] ??= {});
    byChannel[key] = (byChannel[key] ?? 0) + 1;
  };
  for (const { body } of corpus) {
    for (const f of body.frames) {
      const type = (JSON.parse(f.frame) as { type: string }).type;
      add(body.provenance, MESSAGE_CHANNEL[type] ?? (isRowExpect(f.expect) ? `unknown:${type}` : `control:${type}`));
    }
    for (const r of body.rest ?? []) add(body.provenance, `rest:${r.route}`);
  }
  t.diagnostic(JSON.stringify(counts));
  const captured = counts.captured ?? {};
  for (const key of [
    'orderbook_delta',
    'ticker',
    'trade',
    'market_lifecycle_v2',
    'control:subscribed',
    'control:ok',
    'control:error',
    'rest:trade',
    'rest:market',
    'rest:event',
    'rest:exchange_status',
    'rest:orderbook',
  ])
    assert.ok((captured[key] ?? 0) >= 1, `at least one captured ${key} frame`);
});
