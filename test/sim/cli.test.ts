// `kdp sim` and `kdp capture` as commands: URLs printed, clean exit, replay through the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isExchangeRecord, readTruth } from '../../src/sim/truth';

const bin = resolve(__dirname, '..', '..', '..', 'bin', 'kdp.js');
const dir = mkdtempSync(join(tmpdir(), 'kdp-sim-cli-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const kdp = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });

test('kdp sim prints its URLs, runs for --duration-s and replays its truth with --from', () => {
  const truth = join(dir, 'a.ndjson');
  const run = kdp(
    'sim',
    '--markets',
    '5',
    '--rate',
    '3000',
    '--seed',
    '9',
    '--duration-s',
    '2',
    '--speed',
    '4',
    '--start-us',
    '1790000000000000',
    '--truth',
    truth,
  );
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /ws +ws:\/\/127\.0\.0\.1:\d+\/trade-api\/ws\/v2/);
  assert.match(run.stdout, /rest +http:\/\/127\.0\.0\.1:\d+\/trade-api\/v2/);
  const original = readTruth(truth);
  assert.equal(original[0]!.k, 'meta');
  const replayed = join(dir, 'b.ndjson');
  const rep = kdp('sim', '--from', truth, '--speed', 'max', '--truth', replayed);
  assert.equal(rep.status, 0, rep.stderr);
  assert.deepEqual(readTruth(replayed).filter(isExchangeRecord), original.filter(isExchangeRecord));
});

test('bad options are refused with a coded error', () => {
  const r = kdp('sim', '--faults', 'explode:every=1s');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /KDP_ERR_CONFIG_INVALID/);
  const u = kdp('sim', '--no-such-flag');
  assert.equal(u.status, 2);
  assert.match(u.stderr, /KDP_ERR_USAGE/);
  const c = kdp('capture');
  assert.equal(c.status, 2);
});
