// Failpoints for crash tests: KDP_FAILPOINT=<name>[,<name>...] makes the process SIGKILL itself
// when it reaches that point, the way a power cut or `kill -9` would stop it. Read once at load.
import { Transform } from 'node:stream';

export type FailpointName =
  'dedup.mid_stream' | 'dedup.after_merge_before_commit' | 'dedup.after_commit_before_watermark';

const ACTIVE = new Set(
  (process.env.KDP_FAILPOINT ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

export function failpointActive(name: FailpointName): boolean {
  return ACTIVE.has(name);
}

export function failpoint(name: FailpointName): void {
  if (ACTIVE.has(name)) process.kill(process.pid, 'SIGKILL');
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
