// The registry of `kdp` subcommands. Add a command here to make it reachable and listed.
import { archiveCommand } from './archive';
import { bookCommand } from './book';
import { chaosCommand } from './chaos';
import type { Command } from './command';
import { coverageCommand } from './coverage';
import { dedupCommand } from './dedup';
import { demoCommand } from './demo';
import { exportCommand } from './export';
import { gathererCommand } from './gatherer';
import { maintainCommand } from './maintain';
import { migrateCommand } from './migrate';
import { replayCommand } from './replay';
import { captureCommand, simCommand } from './sim';
import { verifyCommand } from './verify';

export const COMMANDS: readonly Command[] = [
  demoCommand,
  migrateCommand,
  simCommand,
  captureCommand,
  gathererCommand,
  dedupCommand,
  archiveCommand,
  exportCommand,
  maintainCommand,
  verifyCommand,
  bookCommand,
  replayCommand,
  coverageCommand,
  chaosCommand,
];
