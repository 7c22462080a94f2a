// `kdp`: one executable for every service and tool. Errors are coded (KDP_ERR_*) and exit non-zero.
import { isKdpError } from '../core/errors';
import { COMMANDS } from './commands';

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'kdp: the Kalshi Data Platform',
    '',
    'usage: kdp <command> [options]      kdp <command> --help',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Services read a YAML config (--config FILE); KDP__SECTION__KEY environment variables override it.',
  ].join('\n');
}

export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`kdp: unknown command "${name}"\n\n${usage()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.help + '\n');
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (isKdpError(err)) {
      process.stderr.write(`kdp ${name}: ${err.code}: ${err.message}\n`);
      return err.code === 'KDP_ERR_USAGE' ? 2 : 1;
    }
    process.stderr.write(`kdp ${name}: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

export function main(argv: string[]): void {
  runCli(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`kdp: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
