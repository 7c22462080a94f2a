// The registry of `kdp` subcommands. Add a command here to make it reachable and listed.
import type { Command } from './command';
import { migrateCommand } from './migrate';
import { captureCommand, simCommand } from './sim';

export const COMMANDS: readonly Command[] = [migrateCommand, simCommand, captureCommand];
