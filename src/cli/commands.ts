// The registry of `kdp` subcommands. Add a command here to make it reachable and listed.
import type { Command } from './command';
import { migrateCommand } from './migrate';
import { dedupCommand } from './dedup';

export const COMMANDS: readonly Command[] = [migrateCommand, dedupCommand];
