// `npm start` (kdp demo) as a user runs it: a separate process, the whole platform, a gatherer
// killed now and then, a graceful stop, and an exit code that says whether production equals the
// simulator's ground truth. Nothing may be left behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const KDP = join(__dirname, '..', '..', '..', 'bin', 'kdp.js');

test('kdp demo with gatherers killed runs the platform, verifies production against the truth, exits 0 and leaves nothing behind', async () => {
  const child = spawn(process.execPath, [KDP, 'demo', '--seconds', '20', '--markets', '40', '--rate', '800', '--faults', 'kill-gatherer:every=7s'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, out);
  assert.match(out, /TRUTH: PASS/);
  assert.match(out, /fault: kill -9 g\d/, 'a gatherer was killed');
  assert.match(out, /g\d: started [2-9] time/, 'and restarted');
  const dir = /data in (\S+)/.exec(out)?.[1];
  assert.ok(dir, 'the demo names its data directory');
  assert.equal(existsSync(dir), false, 'the temporary data directory is removed');
});
