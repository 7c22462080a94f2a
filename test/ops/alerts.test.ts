// The alert rules: promtool must accept them and their unit tests (ops/prometheus/tests), every
// required alert exists with a severity, summary and a runbook section that exists, every metric
// they read is one we export (or a standard one), and every alert has a firing and a not-firing case.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { bareMetricNames, isStandardMetric, ourMetricNames, repoRoot } from './helpers';
import { headingAnchors } from './markdown';

const ROOT = repoRoot();
const PROM_DIR = join(ROOT, 'ops', 'prometheus');
const REQUIRED = [
  'SingleGathererDown',
  'AllGatherersDown',
  'AllWebSocketsDisconnected',
  'HighWriterErrorRate',
  'DeduplicatorSyncStalled',
  'ProductionRDSUnreachable',
  'SequenceGapsDetected',
  'HighReconnectRate',
  'DiskUsageHigh',
  'FrozenFeed',
];

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
const rules = (): Rule[] => (parse(readFileSync(join(PROM_DIR, 'alerts.yml'), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const testFiles = (): string[] =>
  readdirSync(join(PROM_DIR, 'tests'))
    .filter((f) => f.endsWith('.yml'))
    .map((f) => join('tests', f));

function promtool(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('promtool', args, { cwd: PROM_DIR, encoding: 'utf8', timeout: 60_000 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    assert.fail(
      "promtool is not installed: the alert rules cannot be checked. Install Debian's prometheus package " +
        '(apt-get install -y --no-install-recommends prometheus); .ci/run does this on fresh machines.',
    );
  }
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

describe('prometheus rules', () => {
  test('promtool check rules accepts alerts.yml', () => {
    const r = promtool(['check', 'rules', 'alerts.yml']);
    assert.equal(r.status, 0, r.output);
  });

  test('promtool check config accepts prometheus.yml (with its rule file)', () => {
    const r = promtool(['check', 'config', 'prometheus.yml']);
    assert.equal(r.status, 0, r.output);
  });

  test('promtool test rules: every unit test passes', () => {
    const files = testFiles();
    assert.ok(files.length > 0, 'no promtool unit tests in ops/prometheus/tests');
    const r = promtool(['test', 'rules', ...files]);
    assert.equal(r.status, 0, r.output);
  });

  test('every required alert exists with severity, summary and an existing runbook section', () => {
    const all = rules();
    const anchors = headingAnchors(readFileSync(join(ROOT, 'docs', 'runbooks.md'), 'utf8'));
    for (const name of REQUIRED)
      assert.ok(
        all.some((r) => r.alert === name),
        `alert ${name} is missing`,
      );
    for (const r of all) {
      assert.ok(['warning', 'critical'].includes(r.labels?.severity ?? ''), `${r.alert}: severity warning|critical`);
      assert.ok(r.annotations?.summary, `${r.alert}: summary`);
      const m = /^docs\/runbooks\.md#([a-z0-9-]+)$/.exec(r.annotations?.runbook ?? '');
      assert.ok(m, `${r.alert}: runbook annotation docs/runbooks.md#section`);
      assert.ok(anchors.has(m[1]!), `${r.alert}: runbook section #${m[1]} not found in docs/runbooks.md`);
    }
  });

  test('the required thresholds: sync lag warns above 30 s, pages above 300 s; RDS and frozen feed', () => {
    const stalled = rules().filter((r) => r.alert === 'DeduplicatorSyncStalled');
    assert.deepEqual(stalled.map((r) => [r.labels.severity, /dedup_sync_lag_seconds.*> (\d+)\s*$/.exec(r.expr.trim())?.[1]]).sort(), [
      ['critical', '300'],
      ['warning', '30'],
    ]);
    assert.match(rules().find((r) => r.alert === 'ProductionRDSUnreachable')!.expr, /dedup_rds_connected\{[^}]*\}\) == 0/);
    assert.match(rules().find((r) => r.alert === 'FrozenFeed')!.expr, /dedup_frozen_feed_markets\{[^}]*\}\) > 0/);
  });

  test('every metric the rules read is exported by our services or is a standard one', () => {
    const ours = ourMetricNames();
    for (const r of rules()) {
      const names = bareMetricNames(r.expr);
      assert.ok(names.length > 0, `${r.alert}: no metric found in ${r.expr}`);
      for (const n of names) assert.ok(ours.has(n) || isStandardMetric(n), `${r.alert}: unknown metric ${n}`);
    }
  });

  test('every alert has a unit test where it fires and one where it does not', () => {
    type Case = { alertname: string; exp_alerts?: unknown[] };
    const cases: Case[] = testFiles().flatMap((f) =>
      (parse(readFileSync(join(PROM_DIR, f), 'utf8')) as { tests: { alert_rule_test?: Case[] }[] }).tests.flatMap((t) => t.alert_rule_test ?? []),
    );
    for (const name of new Set(rules().map((r) => r.alert))) {
      const mine = cases.filter((c) => c.alertname === name);
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${name}: no test where it fires`,
      );
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${name}: no test where it stays silent`,
      );
    }
  });
});
