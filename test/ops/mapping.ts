// The runbook's "Seed runbooks → this system" table: the names its "ours" column gives, and where
// each kind of name must exist (metrics, alerts, config keys, units, commands, endpoints, error
// codes; tables and columns are checked against a migrated database by the caller).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ARCHIVE_SPEC } from '../../src/archive/options';
import { COMMANDS } from '../../src/cli/commands';
import type { Spec } from '../../src/config/validate';
import { ERROR_CODES } from '../../src/core/errors';
import { DEDUP_SPEC } from '../../src/dedup/options';
import { GATHERER_SPEC } from '../../src/gatherer/config';
import { MAINTAIN_SPEC } from '../../src/maintain/options';
import { ourMetricNames, repoRoot } from './helpers';

export const MAPPING_HEADING = '## Seed runbooks → this system';

export interface MappingRow {
  readonly seedStep: string;
  readonly seedUses: string;
  readonly ours: string;
  readonly line: number;
}

/** The table rows of the mapping section (header and separator rows left out). */
export function mappingRows(doc: string): MappingRow[] {
  const start = doc.indexOf(MAPPING_HEADING);
  if (start < 0) return [];
  const end = doc.indexOf('\n## ', start + MAPPING_HEADING.length);
  const firstLine = doc.slice(0, start).split('\n').length;
  const out: MappingRow[] = [];
  doc
    .slice(start, end < 0 ? undefined : end)
    .split('\n')
    .forEach((line, i) => {
      if (!line.startsWith('|') || /^\|[-| ]+\|$/.test(line) || line.startsWith('| seed step')) return;
      // Cells split on unescaped pipes (code spans write `a\|b`).
      const cells = line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim());
      out.push({ seedStep: cells[0] ?? '', seedUses: cells[1] ?? '', ours: cells[cells.length - 1] ?? '', line: firstLine + i });
    });
  return out;
}

export const codeSpans = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.replace(/\\\|/g, '|'));

export type NameKind = 'command' | 'unit' | 'error' | 'alert' | 'endpoint' | 'config' | 'metric-or-schema' | 'other';

/** What kind of name a code span of the "ours" column is. */
export function kindOf(token: string): NameKind {
  if (/^kdp [a-z]+/.test(token)) return 'command';
  if (/^kdp-[a-z]+$/.test(token)) return 'unit';
  if (/^KDP_ERR_[A-Z_]+$/.test(token)) return 'error';
  if (/^[A-Z][a-z][A-Za-z]*[A-Z][A-Za-z]*$/.test(token)) return 'alert';
  if (/^(GET|POST) \//.test(token)) return 'endpoint';
  if (/^[a-z][A-Za-z]*(\[\])?(\.[a-z][A-Za-z]*)+$/.test(token) || /^[a-z]+[A-Z][A-Za-z]*$/.test(token)) return 'config';
  if (/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?(\{[^}]*\})?$/.test(token) && token.includes('_')) return 'metric-or-schema';
  return 'other';
}

const SPECS: readonly Spec[] = [GATHERER_SPEC, DEDUP_SPEC, ARCHIVE_SPEC, MAINTAIN_SPEC];

/** Whether `a.b[].c` names a key of one of the service specs. */
export function isConfigKey(path: string): boolean {
  const parts = path.split('.');
  return SPECS.some((spec) => {
    let cur: Spec | undefined = spec;
    for (const raw of parts) {
      const name = raw.replace(/\[\]$/, '');
      const field: Spec[string] | undefined = cur?.[name];
      if (!field) return false;
      cur = field.kind === 'object' ? field.fields : field.kind === 'list' ? field.item : undefined;
      if (raw.endsWith('[]') !== (field.kind === 'list')) return false;
    }
    return true;
  });
}

export const isCommand = (token: string): boolean => COMMANDS.some((c) => c.name === token.split(' ')[1]);
export const isUnit = (token: string): boolean => existsSync(join(repoRoot(), 'ops', 'systemd', `${token}.service`));
export const isErrorCode = (token: string): boolean => token in ERROR_CODES;

export function alertNames(): Set<string> {
  const text = readFileSync(join(repoRoot(), 'ops', 'prometheus', 'alerts.yml'), 'utf8');
  return new Set([...text.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!));
}

/** Every file under src/, concatenated (routes and label values are string literals there). */
export function sourceText(): string {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith('.ts')) out.push(readFileSync(join(dir, e.name), 'utf8'));
    }
  };
  walk(join(repoRoot(), 'src'));
  return out.join('\n');
}

export const isEndpoint = (token: string, src: string): boolean => src.includes(`path: '${token.split(' ')[1]!.split('?')[0]}'`);

/**
 * A snake_case name with an optional `{labels}`: a metric of ours, else a label or enum value
 * written as a string literal in src/, or a key of an object literal there (the health JSON);
 * false otherwise (the caller then checks tables and columns).
 */
export function metricOrLiteral(token: string, src: string): boolean {
  const name = token.replace(/\{.*$/, '');
  const metrics = ourMetricNames();
  if (metrics.has(name) || metrics.has(`${name}_count`)) {
    // Label values: literals, or `http_<status>` built from the handshake's status code.
    for (const m of token.matchAll(/(\w+)="([^"]+)"/g))
      if (!src.includes(`'${m[2]}'`) && !(/^http_\d{3}$/.test(m[2]!) && src.includes('`http_${'))) return false;
    return true;
  }
  // A literal, or a key of an object the services answer with (health JSON fields).
  return !name.includes('.') && (src.includes(`'${name}'`) || new RegExp(`\\b${name}: `).test(src));
}
