// Crash-test hooks: KDP_ARCHIVE_FAILPOINT=<name>[:<n>] kills this process with SIGKILL the n-th
// time (default 1st) execution passes the named point. Tests use it to prove that a kill at the
// worst moment (temp file written, not yet renamed/uploaded; uploaded, cursor not yet committed)
// leaves no partial or duplicate file and loses nothing on the next run.
export type FailpointName = 'after-temp-write' | 'before-rename' | 'after-upload';

const spec = process.env.KDP_ARCHIVE_FAILPOINT ?? '';
const [wantedName, wantedHitRaw] = spec.split(':');
const wantedHit = wantedHitRaw === undefined ? 1 : Number(wantedHitRaw);
let hits = 0;

export function failpoint(name: FailpointName): void {
  if (spec === '' || name !== wantedName) return;
  hits++;
  if (hits === wantedHit) process.kill(process.pid, 'SIGKILL');
}
