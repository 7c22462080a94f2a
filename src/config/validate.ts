// Options are validated once, at the edge, into fully resolved values. Each component declares a
// spec (field -> kind, default, range); `resolve` rejects unknown keys naming the key's full
// path, checks every value, fills defaults, and returns a frozen object typed by the spec.
import { KdpError } from '../core/errors';

type Base<T> = { readonly doc: string; readonly default?: T; readonly optional?: boolean };
export type FieldSpec =
  | (Base<number> & { readonly kind: 'int' | 'number'; readonly min?: number; readonly max?: number })
  | (Base<string> & { readonly kind: 'string'; readonly pattern?: RegExp; readonly secret?: boolean })
  | (Base<boolean> & { readonly kind: 'boolean' })
  | (Base<string> & { readonly kind: 'enum'; readonly values: readonly string[] })
  | (Base<readonly string[]> & { readonly kind: 'stringList' })
  | { readonly kind: 'object'; readonly doc: string; readonly fields: Spec; readonly optional?: boolean }
  | { readonly kind: 'list'; readonly doc: string; readonly item: Spec; readonly default?: readonly unknown[] };
export type Spec = { readonly [key: string]: FieldSpec };

type ValueOf<F extends FieldSpec> = F extends { kind: 'int' | 'number' }
  ? number
  : F extends { kind: 'string' | 'enum' }
    ? string
    : F extends { kind: 'boolean' }
      ? boolean
      : F extends { kind: 'stringList' }
        ? readonly string[]
        : F extends { kind: 'object'; fields: infer S extends Spec }
          ? Resolved<S>
          : F extends { kind: 'list'; item: infer S extends Spec }
            ? readonly Resolved<S>[]
            : never;
type MaybeUndefined<F extends FieldSpec, V> = F extends { optional: true } ? V | undefined : V;
export type Resolved<S extends Spec> = { readonly [K in keyof S]: MaybeUndefined<S[K], ValueOf<S[K]>> };

function fail(code: 'KDP_ERR_CONFIG_INVALID' | 'KDP_ERR_CONFIG_MISSING', path: string, why: string): never {
  throw new KdpError(code, `config ${path}: ${why}`, { key: path });
}

function resolveField(field: FieldSpec, raw: unknown, path: string): unknown {
  if (raw === undefined || raw === null) {
    if (field.kind === 'object') return field.optional ? undefined : resolveObject(field.fields, {}, path);
    if (field.default !== undefined) return field.default;
    if ('optional' in field && field.optional) return undefined;
    return fail('KDP_ERR_CONFIG_MISSING', path, `required (${field.doc})`);
  }
  switch (field.kind) {
    case 'int':
    case 'number': {
      const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isFinite(n)) fail('KDP_ERR_CONFIG_INVALID', path, `expected a number, got ${JSON.stringify(raw)}`);
      if (field.kind === 'int' && !Number.isInteger(n)) fail('KDP_ERR_CONFIG_INVALID', path, `expected an integer, got ${n}`);
      if (field.min !== undefined && n < field.min) fail('KDP_ERR_CONFIG_INVALID', path, `must be >= ${field.min}, got ${n}`);
      if (field.max !== undefined && n > field.max) fail('KDP_ERR_CONFIG_INVALID', path, `must be <= ${field.max}, got ${n}`);
      return n;
    }
    case 'string':
      if (typeof raw !== 'string' && typeof raw !== 'number') fail('KDP_ERR_CONFIG_INVALID', path, 'expected a string');
      if (field.pattern && !field.pattern.test(String(raw))) fail('KDP_ERR_CONFIG_INVALID', path, `does not match ${field.pattern}`);
      return String(raw);
    case 'boolean':
      if (raw === true || raw === 'true' || raw === '1') return true;
      if (raw === false || raw === 'false' || raw === '0') return false;
      return fail('KDP_ERR_CONFIG_INVALID', path, `expected true or false, got ${JSON.stringify(raw)}`);
    case 'enum':
      if (typeof raw !== 'string' || !field.values.includes(raw)) {
        fail('KDP_ERR_CONFIG_INVALID', path, `expected one of ${field.values.join(', ')}, got ${JSON.stringify(raw)}`);
      }
      return raw;
    case 'stringList': {
      const list =
        typeof raw === 'string'
          ? raw
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : raw;
      if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) fail('KDP_ERR_CONFIG_INVALID', path, 'expected a list of strings');
      return Object.freeze([...list]);
    }
    case 'object':
      return resolveObject(field.fields, raw, path);
    case 'list':
      if (!Array.isArray(raw)) fail('KDP_ERR_CONFIG_INVALID', path, 'expected a list');
      return Object.freeze(raw.map((item, i) => resolveObject(field.item, item, `${path}[${i}]`)));
  }
}

function resolveObject(spec: Spec, raw: unknown, path: string): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    fail('KDP_ERR_CONFIG_INVALID', path || '(root)', 'expected a mapping');
  }
  const input = raw as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    if (!Object.prototype.hasOwnProperty.call(spec, key)) {
      const full = path ? `${path}.${key}` : key;
      throw new KdpError('KDP_ERR_CONFIG_UNKNOWN_KEY', `config ${full}: unknown key (known: ${Object.keys(spec).join(', ')})`, {
        key: full,
      });
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(spec)) {
    out[key] = resolveField(field, input[key], path ? `${path}.${key}` : key);
  }
  return Object.freeze(out);
}

/** Validates `raw` against `spec`; throws a coded KdpError naming the offending key. */
export function resolveOptions<S extends Spec>(spec: S, raw: unknown, path = ''): Resolved<S> {
  return resolveObject(spec, raw ?? {}, path) as Resolved<S>;
}

/** Names of fields marked secret, as dotted paths: used to redact logs. */
export function secretPaths(spec: Spec, prefix = ''): string[] {
  const out: string[] = [];
  for (const [key, field] of Object.entries(spec)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (field.kind === 'string' && field.secret) out.push(path);
    if (field.kind === 'object') out.push(...secretPaths(field.fields, path));
  }
  return out;
}
