// Loads a YAML config file, applies environment overrides, and validates once.
// Environment overrides: KDP__<key>__<key>=value, matched case-insensitively (underscores
// ignored) against the spec's keys, e.g. KDP__DATABASE__URL or KDP__http__health_port.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { KdpError } from '../core/errors';
import { resolveOptions, type Resolved, type Spec } from './validate';

const norm = (s: string): string => s.replace(/_/g, '').toLowerCase();

function applyEnv(spec: Spec, raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('KDP__') || value === undefined) continue;
    const parts = name.slice(5).split('__');
    let level: Spec | undefined = spec;
    let target = raw;
    for (let i = 0; i < parts.length; i++) {
      const key: string | undefined = level && Object.keys(level).find((k) => norm(k) === norm(parts[i]!));
      if (!level || key === undefined) {
        throw new KdpError('KDP_ERR_CONFIG_UNKNOWN_KEY', `environment ${name}: no config key ${parts.slice(0, i + 1).join('.')}`, {
          key: name,
        });
      }
      const field: Spec[string] = level[key]!;
      if (i === parts.length - 1) {
        target[key] = value;
      } else {
        if (field.kind !== 'object') {
          throw new KdpError('KDP_ERR_CONFIG_UNKNOWN_KEY', `environment ${name}: ${key} is not a section`, { key: name });
        }
        const next = target[key];
        target = (typeof next === 'object' && next !== null ? next : (target[key] = {})) as Record<string, unknown>;
        level = field.fields;
      }
    }
  }
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KdpError('KDP_ERR_CONFIG_FILE', `cannot read config file ${path}: ${(err as Error).message}`, { path }, err);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new KdpError('KDP_ERR_CONFIG_FILE', `config file ${path} is not valid YAML: ${(err as Error).message}`, { path }, err);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new KdpError('KDP_ERR_CONFIG_FILE', `config file ${path} must hold a mapping at the top`, { path });
  }
  return doc as Record<string, unknown>;
}

/** Sets every leaf of `from` that is not undefined into `into`, section by section. */
function overlay(into: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(from)) {
    if (value === undefined) continue;
    const current = into[key];
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && typeof current === 'object' && current !== null) {
      overlay(current as Record<string, unknown>, value as Record<string, unknown>);
    } else {
      into[key] = value;
    }
  }
}

/**
 * File (optional) + environment overrides (+ command-line flags, which win; undefined leaves are
 * not given) -> validated, frozen options.
 */
export function loadConfig<S extends Spec>(
  spec: S,
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  flags: Record<string, unknown> = {},
): Resolved<S> {
  const raw = file === undefined ? {} : structuredClone(readConfigFile(file));
  applyEnv(spec, raw, env);
  overlay(raw, flags);
  return resolveOptions(spec, raw);
}
