// `npm run build [-- --out DIR]`: the production build (decision DB2). Compiles src/,
// handlers/ and conformance/ with tsc (tsconfig.build.json) into dist/ and makes the output
// run on plain node:
// - relative import specifiers get their file name (`./config` → `./config.js`,
//   `./dir` → `./dir/index.js`): the sources import without extensions (bundler
//   resolution, as tsx allows), which node's ESM loader does not resolve;
// - the files read at run time beside the code are copied: the Lua scripts, the generated
//   JSON documents, specs/manifest.json (the conformance kit verifies the bundle with it);
// - dist/package.json (type module, name, version, the runtime dependencies) and
//   dist/cycles-build.json (src/buildInfo.ts: the checkout the build came from, so the
//   default spec bundle is still looked for beside the checkout).
// Then `node dist/src/cli.js serve` (or bin/cycles.mjs, which prefers a build no older than
// the sources) runs without tsx. `prebuild` runs codegen first.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../src/config';
import { BUILD_INFO_FILE, type BuildInfo } from '../src/buildInfo';

const RELATIVE = /^\.\.?(\/|$)/;
// static `from '…'`, bare `import '…'`, and `import('…')` with a literal
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])([^'"\n]+)\2/g;

/** `spec` as imported from `file`, with the file name node needs; throws if none exists. */
export function resolveSpecifier(file: string, spec: string): string {
  if (/\.(m?js|cjs|json|node)$/.test(spec) || spec.startsWith('node:')) return spec;
  if (!RELATIVE.test(spec)) return resolveBareSubpath(spec);
  const target = path.resolve(path.dirname(file), spec);
  if (existsSync(`${target}.js`)) return `${spec}.js`;
  if (existsSync(path.join(target, 'index.js'))) return `${spec.replace(/\/$/, '')}/index.js`;
  throw new Error(`build: ${file} imports ${spec}, which compiled to neither ${spec}.js nor ${spec}/index.js`);
}

/**
 * A package subpath without extension (`ajv/dist/2020`) in a package without an `exports`
 * map: node's ESM loader needs the file name (`ajv/dist/2020.js`). Bare package names and
 * packages with `exports` are left to node.
 */
function resolveBareSubpath(spec: string): string {
  const parts = spec.split('/');
  const nameLen = spec.startsWith('@') ? 2 : 1;
  if (parts.length <= nameLen) return spec;
  const pkgDir = path.join(REPO_ROOT, 'node_modules', ...parts.slice(0, nameLen));
  const pkgJson = path.join(pkgDir, 'package.json');
  if (!existsSync(pkgJson) || JSON.parse(readFileSync(pkgJson, 'utf8')).exports) return spec;
  const target = path.join(pkgDir, ...parts.slice(nameLen));
  if (existsSync(`${target}.js`)) return `${spec}.js`;
  if (existsSync(path.join(target, 'index.js'))) return `${spec}/index.js`;
  return spec;
}

export function fixSpecifiers(file: string, text: string): string {
  return text.replace(SPECIFIER, (all, lead: string, q: string, spec: string) => `${lead}${q}${resolveSpecifier(file, spec)}${q}`);
}

function jsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...jsFiles(p));
    else if (e.name.endsWith('.js')) out.push(p);
  }
  return out;
}

export function build(outDir: string): { files: number; ms: number } {
  const started = Date.now();
  if (!existsSync(path.join(REPO_ROOT, 'src', 'generated', 'operations.ts'))) {
    throw new Error('build: src/generated is missing; run `npm run codegen` first');
  }
  rmSync(outDir, { recursive: true, force: true });
  const tsc = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', path.join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', outDir], { cwd: REPO_ROOT, stdio: 'inherit' });

  const files = jsFiles(outDir);
  for (const f of files) writeFileSync(f, fixSpecifiers(f, readFileSync(f, 'utf8')));

  const copy = (rel: string, filter?: (name: string) => boolean) => {
    const from = path.join(REPO_ROOT, rel);
    cpSync(from, path.join(outDir, rel), {
      recursive: true,
      filter: (src) => !filter || statSync(src).isDirectory() || filter(path.basename(src)),
    });
  };
  copy('src/store/lua', (n) => n.endsWith('.lua'));
  copy('src/generated', (n) => n.endsWith('.json'));
  copy('specs/manifest.json');

  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'package.json'), JSON.stringify({
    name: pkg.name,
    version: pkg.version,
    private: true,
    type: 'module',
    engines: pkg.engines,
    dependencies: pkg.dependencies,
  }, null, 2) + '\n');
  const info: BuildInfo = { builtAt: new Date().toISOString(), checkout: path.relative(outDir, REPO_ROOT) || '.' };
  writeFileSync(path.join(outDir, BUILD_INFO_FILE), JSON.stringify(info, null, 2) + '\n');
  return { files: files.length, ms: Date.now() - started };
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(REPO_ROOT, 'scripts', 'build.ts')) {
  const i = process.argv.indexOf('--out');
  const out = path.resolve(i >= 0 ? process.argv[i + 1] : path.join(REPO_ROOT, 'dist'));
  try {
    const r = build(out);
    console.log(`build: ${r.files} JavaScript files in ${out} (${(r.ms / 1000).toFixed(1)} s); run: node ${path.relative(process.cwd(), path.join(out, 'src', 'cli.js')) || '.'} serve`);
  } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
