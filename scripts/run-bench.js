#!/usr/bin/env node
'use strict';
// `npm run bench`: runs every benchmark in bench/ one after another (each in its own process, so
// one cannot skew another's heap or JIT) and writes bench/results/<time>.json with the
// environment and each benchmark's full output. `--quick` shortens the micro benchmarks.
const { spawnSync } = require('node:child_process');
const { mkdirSync, writeFileSync, existsSync } = require('node:fs');
const { cpus, totalmem, loadavg } = require('node:os');
const { join } = require('node:path');

const quick = process.argv.includes('--quick');
const dist = join(__dirname, '..', 'dist', 'bench');
const BENCHES = [
  ['micro-frame', []],
  ['micro-ring', []],
  ['micro-parse', []],
  ['micro-encode', []],
  ['copy-throughput', [quick ? '50000' : '200000', '20000']],
  ['sim-throughput', []],
  ['dedup', []],
].filter(([name]) => existsSync(join(dist, `${name}.js`)));

const env = {
  node: process.version,
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  memGiB: Math.round(totalmem() / 2 ** 30),
  loadavgAtStart: loadavg(),
  quick,
  startedAt: new Date().toISOString(),
};
const results = [];
for (const [name, args] of BENCHES) {
  process.stdout.write(`\n=== ${name} ${args.join(' ')}\n`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [join(dist, `${name}.js`), ...args], {
    encoding: 'utf8',
    env: { ...process.env, KDP_BENCH_MS: quick ? '200' : process.env.KDP_BENCH_MS ?? '500' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.stdout.write(r.stdout ?? '');
  results.push({ name, args, exitCode: r.status, seconds: (Date.now() - t0) / 1000, output: r.stdout });
}
const dir = join(__dirname, '..', 'bench', 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `${env.startedAt.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify({ env, results }, null, 2));
process.stdout.write(`\nresults written to ${file}\n`);
process.exit(results.every((r) => r.exitCode === 0) ? 0 : 1);
