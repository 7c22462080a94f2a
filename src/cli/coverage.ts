// `kdp coverage`: coverage certificates per market and hour from production (src/coverage/).
import { withClient } from '../core/pgclient';
import { KdpError } from '../core/errors';
import { certificateFor, type CoverageCertificate } from '../coverage/certificate';
import { parseTimeUs } from '../ops/book';
import { parseOptions, type Command } from './command';

export const coverageCommand: Command = {
  name: 'coverage',
  summary: 'coverage certificates per market and hour: recorded seconds, gaps, deliveries, grade',
  help: `kdp coverage --from TIME --to TIME [--ticker T ...] [--production URL] [--json]

Prints one certificate per market and hour of [--from, --to) (at most 7 days): the seconds some
gatherer recorded with no ledgered break, every gap (kind, window, recovered or not and how), the
rows of each table and which gatherers delivered them (delivered_by), and a grade: complete,
recovered or incomplete (docs/semantics.md "Coverage certificates").
  --from, --to TIME   RFC 3339 (2026-11-23T12:00:00Z) or integer µs since the epoch
  --ticker T          only this market (repeatable)
  --production URL    production PostgreSQL (or env KDP_PRODUCTION_URL)
  --json              the certificates as a JSON array`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      from: { type: 'string' },
      to: { type: 'string' },
      ticker: { type: 'string', multiple: true },
      production: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    if (!values.from || !values.to) throw new KdpError('KDP_ERR_USAGE', '--from and --to are required');
    const url = values.production ?? process.env.KDP_PRODUCTION_URL;
    if (!url) throw new KdpError('KDP_ERR_USAGE', 'give --production or KDP_PRODUCTION_URL');
    const range = { fromUs: parseTimeUs(values.from), toUs: parseTimeUs(values.to), tickers: values.ticker };
    const certs = await withClient(url, (client) => certificateFor(client, range));
    process.stdout.write((values.json ? JSON.stringify(certs, null, 2) : formatCertificates(certs)) + '\n');
    return 0;
  },
};

/** One line per certificate, then a count per grade. */
export function formatCertificates(certs: readonly CoverageCertificate[]): string {
  const lines = ['hour                      ticker                              grade       covered/window s  gaps  rows (single copy) by table'];
  const grades: Record<string, number> = {};
  for (const c of certs) {
    grades[c.grade] = (grades[c.grade] ?? 0) + 1;
    const rows = Object.entries(c.tables)
      .map(([t, d]) => `${t}=${d.rows}(${d.singleCopy})`)
      .join(' ');
    const secs = `${c.coveredSeconds.toFixed(1)}/${c.windowSeconds.toFixed(1)}`;
    lines.push(`${c.hour}  ${c.ticker.padEnd(34)}  ${c.grade.padEnd(10)}  ${secs.padStart(16)}  ${String(c.gaps.length).padStart(4)}  ${rows}`);
    for (const g of c.gaps) {
      const end = g.windowEndUs === null ? 'open' : new Date(g.windowEndUs / 1000).toISOString();
      lines.push(`    gap ${g.gatherer}#${g.gapId} ${g.kind} ${new Date(g.windowStartUs / 1000).toISOString()} .. ${end}: ${g.how}`);
    }
  }
  lines.push(
    `${certs.length} certificates: ${
      Object.entries(grades)
        .map(([g, n]) => `${n} ${g}`)
        .join(', ') || 'none'
    }`,
  );
  return lines.join('\n');
}
