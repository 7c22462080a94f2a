// The shape every `kdp` subcommand has. Subcommands parse their own options with
// node:util parseArgs (strict: unknown flags are refused with KDP_ERR_USAGE).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { KdpError } from '../core/errors';

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Full help text, printed by `kdp <name> --help`. */
  readonly help: string;
  /** Resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Strict option parsing; turns parseArgs' errors into KDP_ERR_USAGE. */
export function parseOptions<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (err) {
    throw new KdpError('KDP_ERR_USAGE', (err as Error).message);
  }
}

export function intOption(value: string | undefined, name: string, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new KdpError('KDP_ERR_USAGE', `--${name} must be an integer >= ${min}, got ${value}`);
  return n;
}
