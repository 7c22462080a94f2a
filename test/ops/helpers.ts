// Shared by the ops tests: where the repository is, and which metric names exist.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ARCHIVE_METRICS, DEDUP_METRICS, GATHERER_METRICS, MAINTAIN_METRICS } from '../../src/core/metrics';

/** The repository root (tests run from dist/test/..., the files they check live in the source tree). */
export function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json')) || existsSync(join(dir, 'tsconfig.json')) === false) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = up;
  }
  return dir;
}

/** Every series name our services export (histograms expand to _bucket/_sum/_count). */
export function ourMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const defs of [GATHERER_METRICS, DEDUP_METRICS, ARCHIVE_METRICS, MAINTAIN_METRICS]) {
    for (const [name, def] of Object.entries(defs)) {
      if (def.type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
      else names.add(name);
    }
  }
  return names;
}

/** Prometheus' own series and the standard exporters' (prom-client defaults, node_exporter). */
export function isStandardMetric(name: string): boolean {
  return name === 'up' || /^(process|nodejs|node|scrape)_/.test(name);
}

/** Metric names used as selectors (`name{...}`) in a PromQL expression. */
export function selectorNames(expr: string): string[] {
  return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{/g)].map((m) => m[1]!);
}

/** Bare identifiers in PromQL that are neither functions, keywords nor labels inside by/without/braces. */
export function bareMetricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"[^"]*"/g, '""');
  const withoutGroupings = withoutStrings.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const withoutBraces = withoutGroupings.replace(/\{[^}]*\}/g, '{}').replace(/\[[^\]]*\]/g, '[]');
  const out: string[] = [];
  for (const m of withoutBraces.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const word = m[1]!;
    if (m[2]) continue; // a function call
    if (PROMQL_WORDS.has(word)) continue;
    out.push(word);
  }
  return out;
}
const PROMQL_WORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'le']);
