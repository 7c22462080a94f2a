// Failpoints for crash tests, the one mechanism of every service:
// KDP_FAILPOINT=<name>[:<n>][,<name>[:<n>]...] makes the process SIGKILL itself the n-th time
// (default the 1st) execution passes the named point, the way a power cut or `kill -9` would stop
// it. Tests and chaos runs use it to prove that a kill at the worst moment loses and duplicates
// nothing. Read once at load; an unknown name fails the start-up rather than arming nothing.
import { Transform } from 'node:stream';
import { KdpError } from './errors';

/** Every failpoint of the platform (documented in docs/semantics.md and docs/archive.md). */
export const FAILPOINTS = [
  // deduplicator: a merge's COPY stream, between merge and commit, between commit and watermark
  'dedup.mid_stream',
  'dedup.after_merge_before_commit',
  'dedup.after_commit_before_watermark',
  // archiver: Parquet temp file written; local store before its rename; uploaded, cursor not committed
  'archive.after_temp_write',
  'archive.before_rename',
  'archive.after_upload',
] as const;

export type FailpointName = (typeof FAILPOINTS)[number];

export const FAILPOINT_ENV = 'KDP_FAILPOINT';

/** Parses the variable's value into the hit number each armed failpoint fires at. */
export function parseFailpoints(spec: string): ReadonlyMap<FailpointName, number> {
  const armed = new Map<FailpointName, number>();
  for (const item of spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [name, hitRaw] = item.split(':');
    const hit = hitRaw === undefined ? 1 : Number(hitRaw);
    if (!(FAILPOINTS as readonly string[]).includes(name!) || !Number.isInteger(hit) || hit < 1) {
      throw new KdpError('KDP_ERR_CONFIG_INVALID', `${FAILPOINT_ENV}: "${item}" is not <name>[:<n>] with name one of ${FAILPOINTS.join(', ')}`);
    }
    armed.set(name as FailpointName, hit);
  }
  return armed;
}

const ARMED = parseFailpoints(process.env[FAILPOINT_ENV] ?? '');
const hits = new Map<FailpointName, number>();

export function failpointActive(name: FailpointName): boolean {
  return ARMED.has(name);
}

/** Kills the process here if this failpoint is armed and this is its n-th pass. */
export function failpoint(name: FailpointName): void {
  const at = ARMED.get(name);
  if (at === undefined) return;
  const hit = (hits.get(name) ?? 0) + 1;
  hits.set(name, hit);
  if (hit === at) process.kill(process.pid, 'SIGKILL');
}

/** A pass-through that kills the process once the first chunk has gone through (mid-stream). */
export function midStreamKiller(): Transform {
  let chunks = 0;
  return new Transform({
    transform(chunk, _enc, cb) {
      cb(null, chunk);
      if (++chunks === 2) process.kill(process.pid, 'SIGKILL');
    },
  });
}
