#!/usr/bin/env node
'use strict';
// Entry point: the compiled CLI lives in dist/ (run `npm run build` first; npm start and npm test do it).
require('../dist/src/cli/main.js').main(process.argv.slice(2));
