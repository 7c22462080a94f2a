#!/usr/bin/env node
'use strict';
// Runs the compiled test files with node's built-in test runner. Files run one at a time
// (the machine has 2 cores and most tests start real PostgreSQL clusters); a filter argument
// narrows the set: `npm test -- ring` runs the files whose path contains "ring".
const { readdirSync, statSync } = require('node:fs');
const { join } = require('node:path');
const { spawnSync } = require('node:child_process');

const root = join(__dirname, '..', 'dist', 'test');
function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}
const filters = process.argv.slice(2);
const files = collect(root, []).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  // A test that hangs fails after 10 minutes instead of holding CI until its own time limit, and a
  // handle a failed test leaves behind (a gatherer still retrying) cannot keep its file running.
  ['--test', '--test-concurrency=1', '--test-timeout=600000', '--test-force-exit', '--test-reporter=spec', '--enable-source-maps', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
