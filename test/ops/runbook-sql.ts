// The runbook's SQL as an operator runs it: the ```sql blocks (their target from the "-- run on:"
// line) and `psql "$DB" -c "..."` commands, with psql's variables filled in and `\gexec` honoured.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClientBase, QueryResult } from 'pg';
import { OPEN_MARKETS } from './fixture';
import { repoRoot } from './helpers';
import { fencedBlocks } from './markdown';

export const DOC = readFileSync(join(repoRoot(), 'docs', 'runbooks.md'), 'utf8');
/** `new gatherer`: a freshly migrated, empty gatherer (Rebuild a gatherer); `timescale`: both kinds on TimescaleDB. */
export type Target = 'production' | 'gatherer' | 'either' | 'new gatherer' | 'timescale' | 'timescale gatherer';
const TARGETS = /^\s*-- run on: (production|gatherer|either|new gatherer|timescale gatherer|timescale)\b/;
export interface Query {
  readonly target: Target;
  readonly sql: string;
  readonly where: string;
}

/** ```sql blocks (target from their "-- run on:" line) and psql -c commands in bash blocks. */
export function runbookQueries(): Query[] {
  const out: Query[] = [];
  for (const b of fencedBlocks(DOC)) {
    if (b.lang === 'sql') {
      const m = TARGETS.exec(b.body);
      assert.ok(m, `sql block at line ${b.line} must start with "-- run on: production|gatherer|either|new gatherer|timescale|timescale gatherer"`);
      out.push({ target: m[1] as Target, sql: b.body, where: `sql block at line ${b.line}` });
    }
    if (b.lang === 'bash') {
      for (const m of b.body.matchAll(/psql "\$(PROD_DB|GATHERER_DB|NEW_GATHERER_OWNER_DB)"[^\n]*? -c "([^"]+)"/g)) {
        out.push({
          target: m[1] === 'PROD_DB' ? 'production' : m[1] === 'GATHERER_DB' ? 'gatherer' : 'new gatherer',
          sql: m[2]!,
          where: `psql -c in bash block at line ${b.line}`,
        });
      }
    }
  }
  return out;
}

/** psql's variables as the runbook's readers set them (`\set`); the production URL is the test's. */
export function substitute(sql: string, vars: { nowUs: number; productionUrl: string }): string {
  return sql
    .replace(/:'ticker'/g, `'${OPEN_MARKETS[0]}'`)
    .replace(/:'prod_url'/g, `'${vars.productionUrl}'`)
    .replace(/:hours\b/g, '3')
    .replace(/:start_us\b/g, String(vars.nowUs - 120 * 60_000_000))
    .replace(/:end_us\b/g, String(vars.nowUs));
}

/** Runs a block as psql would: a trailing `\gexec` runs every field of every result row as its own statement. */
export async function runAsPsql(c: ClientBase, sql: string): Promise<QueryResult[]> {
  const gexec = /\n\s*\\gexec\s*$/.exec(sql);
  const r = (await c.query(gexec ? sql.slice(0, gexec.index) : sql)) as QueryResult | QueryResult[];
  const results = Array.isArray(r) ? r : [r];
  if (!gexec) return results;
  const out: QueryResult[] = [];
  for (const row of results[results.length - 1]!.rows as Record<string, unknown>[])
    for (const field of Object.values(row)) if (field !== null) out.push(await c.query(String(field)));
  return out;
}
