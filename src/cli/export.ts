// `kdp export`: one archived dataset, for a time range and some tickers, as a Parquet or CSV file.
import { loadConfig } from '../config/load';
import { KdpError } from '../core/errors';
import { EXPORTABLE, exportDataset } from '../archive/export';
import { ARCHIVE_SPEC, checkArchiveOptions } from '../archive/options';
import { parseTimeUs } from '../ops/book';
import { parseOptions, type Command } from './command';

export const exportCommand: Command = {
  name: 'export',
  summary: 'write an archived dataset (raw, processed, aggregates) for a time range to Parquet or CSV',
  help: `kdp export --config FILE --dataset TIER/NAME --from TIME --to TIME --out FILE [--ticker T ...] [--format parquet|csv]

Reads the archive that \`kdp archive --config FILE\` writes (local directory or S3), keeps the rows
of the dataset whose time lies in [--from, --to) (and, with --ticker, those markets), sorted as in
the archive, and writes them to one file. Decimals stay exact (DECIMAL in Parquet, exact text in CSV).
  --dataset TIER/NAME   one of: ${EXPORTABLE.join(', ')}
  --from, --to TIME     RFC 3339 (2026-11-23T12:00:00Z) or integer µs since the epoch; the time
                        column is the dataset's (exchange_ts, snapshot_at, interval_start, ...)
  --ticker T            a market to keep (repeatable; default every market)
  --format F            parquet (default) or csv (with a header line)
  --out FILE            the file to write (replaced)`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      config: { type: 'string' },
      dataset: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      out: { type: 'string' },
      ticker: { type: 'string', multiple: true },
      format: { type: 'string', default: 'parquet' },
    });
    for (const k of ['config', 'dataset', 'from', 'to', 'out'] as const) if (!values[k]) throw new KdpError('KDP_ERR_USAGE', `--${k} is required`);
    if (values.format !== 'parquet' && values.format !== 'csv') throw new KdpError('KDP_ERR_USAGE', `--format must be parquet or csv, got ${values.format}`);
    const opts = loadConfig(ARCHIVE_SPEC, values.config!);
    checkArchiveOptions(opts);
    const r = await exportDataset(opts, {
      dataset: values.dataset!,
      fromUs: parseTimeUs(values.from!),
      toUs: parseTimeUs(values.to!),
      tickers: values.ticker ?? [],
      format: values.format,
      outPath: values.out!,
    });
    process.stderr.write(`export: ${r.rows} rows from ${r.partitionsRead} partitions -> ${values.out}\n`);
    return 0;
  },
};
