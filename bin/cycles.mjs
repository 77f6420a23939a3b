#!/usr/bin/env node
/* global process, console */
// npm bin entry (decision DB2). Runs the compiled build (dist/, `npm run build`) when there
// is one and no source file is newer than it; otherwise the TypeScript sources through
// tsx's loader (so a stale build never hides an edit). CYCLES_ENTRY=source always runs the
// sources; CYCLES_ENTRY=build always runs the build and fails when there is none or it is
// older than the sources (CI uses it to be sure what it tests).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const builtCli = path.join(root, 'dist', 'src', 'cli.js');
const buildInfo = path.join(root, 'dist', 'cycles-build.json');

/** newest mtime (ms) of the files under the source dirs, 0 when there are none */
function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    let entries;
    try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of ['src', 'handlers', 'conformance', 'codegen']) walk(path.join(root, d));
  for (const f of ['specs/manifest.json', 'package.json']) {
    try { newest = Math.max(newest, statSync(path.join(root, f)).mtimeMs); } catch { /* absent */ }
  }
  return newest;
}

const entry = process.env.CYCLES_ENTRY ?? '';
if (!['', 'source', 'build'].includes(entry)) {
  console.error(`CYCLES_ENTRY must be source or build, got "${entry}"`);
  process.exit(2);
}
const built = existsSync(builtCli) && existsSync(buildInfo);
const fresh = built && newestSource() <= statSync(buildInfo).mtimeMs;
if (entry === 'build' && !fresh) {
  console.error(built ? 'CYCLES_ENTRY=build: dist/ is older than the sources; run `npm run build`' : 'CYCLES_ENTRY=build: no build in dist/; run `npm run build`');
  process.exit(2);
}
const useBuild = entry !== 'source' && fresh;

if (useBuild) {
  await import(pathToFileURL(builtCli).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli.ts');
}
