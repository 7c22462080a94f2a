// `kdp verify`: integrity checks of production against the gatherers (src/ops/verify.ts).
import { KdpError } from '../core/errors';
import { withClient } from '../core/pgclient';
import { formatTruthComparison, verifyAgainstTruth } from '../ops/truth';
import { readTruthExpectation } from '../ops/truth-file';
import { formatVerifyReport, resolveVerifyOptions, runVerify } from '../ops/verify';
import { parseOptions, type Command } from './command';

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'integrity checks: gatherers vs production, duplicates, snapshot and market coverage, open gaps',
  help: `kdp verify --production URL [--gatherer NAME=URL ...] [options]

Checks a window of recent data and prints PASS or FAIL with the problems found; exits 1 on FAIL.
  --production URL           production PostgreSQL (or env KDP_PRODUCTION_URL)
  --gatherer NAME=URL        a gatherer database to compare with production (repeatable)
  --window-minutes N         length of the checked window (default 60)
  --settle-seconds N         leave out the newest N seconds, still being merged (default 60)
  --gap-age-minutes N        unrecovered gaps older than this fail the check (default 15)
  --min-snapshot-coverage X  share of open markets that need a REST snapshot in the window (default 0.9)
  --max-stale-markets N      open markets allowed with exchange activity in the window (a trade, REST
                             snapshots that differ) but no order-book delta (default 0); quiet markets are not stale
  --json                     print the full report as JSON
  --truth FILE               exact comparison of production with the exchange simulator's ground
                             truth: trades lost/duplicated/invented/changed, deltas per market
  --from-us N / --to-us N    with --truth: the exchange-time window (µs) the platform was recording

Checks:
  completeness   every key a gatherer holds in the window is in production (names the gatherer and rows)
  duplicates     duplicate rate (gatherer rows vs unique production rows); trades stored twice
  snapshots      REST snapshot coverage of open markets
  markets        open markets with no deltas and no ticker updates in the window (stale)
  gaps           gap-ledger entries not recovered after --gap-age-minutes`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      production: { type: 'string' },
      gatherer: { type: 'string', multiple: true },
      'window-minutes': { type: 'string' },
      'settle-seconds': { type: 'string' },
      'gap-age-minutes': { type: 'string' },
      'min-snapshot-coverage': { type: 'string' },
      'max-stale-markets': { type: 'string' },
      json: { type: 'boolean', default: false },
      truth: { type: 'string' },
      'from-us': { type: 'string' },
      'to-us': { type: 'string' },
    });
    if (values.truth !== undefined) return runTruth(values.truth, values.production, values['from-us'], values['to-us'], values.json ?? false);
    const gatherers = (values.gatherer ?? []).map((spec) => {
      const eq = spec.indexOf('=');
      if (eq <= 0) throw new KdpError('KDP_ERR_USAGE', `--gatherer must be NAME=URL, got ${spec.replace(/:[^:@/]*@/, ':***@')}`);
      return { name: spec.slice(0, eq), url: spec.slice(eq + 1) };
    });
    const raw: Record<string, unknown> = {
      productionUrl: values.production ?? process.env.KDP_PRODUCTION_URL,
      gatherers,
    };
    const numeric: [string, string][] = [
      ['window-minutes', 'windowMinutes'],
      ['settle-seconds', 'settleSeconds'],
      ['gap-age-minutes', 'gapAgeMinutes'],
      ['min-snapshot-coverage', 'minSnapshotCoverage'],
      ['max-stale-markets', 'maxStaleMarkets'],
    ];
    for (const [flag, key] of numeric) if (values[flag as keyof typeof values] !== undefined) raw[key] = values[flag as keyof typeof values];
    const report = await runVerify(resolveVerifyOptions(raw));
    process.stdout.write((values.json ? JSON.stringify(report, null, 2) : formatVerifyReport(report)) + '\n');
    return report.verdict === 'PASS' ? 0 : 1;
  },
};

async function runTruth(file: string, production: string | undefined, fromUs: string | undefined, toUs: string | undefined, asJson: boolean): Promise<number> {
  const url = production ?? process.env.KDP_PRODUCTION_URL;
  if (!url) throw new KdpError('KDP_ERR_USAGE', '--truth needs --production URL (or KDP_PRODUCTION_URL)');
  const window = { fromUs: fromUs === undefined ? undefined : Number(fromUs), toUs: toUs === undefined ? undefined : Number(toUs) };
  for (const [k, v] of Object.entries(window)) {
    if (v !== undefined && !Number.isSafeInteger(v)) throw new KdpError('KDP_ERR_USAGE', `--${k === 'fromUs' ? 'from-us' : 'to-us'} must be an integer (µs)`);
  }
  const truth = await readTruthExpectation(file, window);
  return withClient(url, async (client) => {
    const comparison = await verifyAgainstTruth(client, truth.expected, truth.span);
    process.stdout.write((asJson ? JSON.stringify(comparison, null, 2) : formatTruthComparison(comparison)) + '\n');
    return comparison.ok ? 0 : 1;
  });
}
