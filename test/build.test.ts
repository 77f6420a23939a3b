// The production build's import fix-up (scripts/build.ts, decision DB2): tsc keeps the
// sources' extension-less specifiers, which node's ESM loader cannot resolve; the build
// names the file tsc wrote, and fails on an import that resolves to nothing. (The build
// itself runs in CI: `npm run build`, then suites, conformance and a benchmark against it.)
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixSpecifiers, resolveSpecifier } from '../scripts/build';

const dir = mkdtempSync(join(tmpdir(), 'cycles-build-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, 'src', 'http'), { recursive: true });
mkdirSync(join(dir, 'src', 'lib'), { recursive: true });
for (const f of ['src/config.js', 'src/http/app.js', 'src/lib/index.js', 'src/cli.js']) writeFileSync(join(dir, f), '');
const cli = join(dir, 'src', 'cli.js');

describe('build: import specifiers', () => {
  it('names the compiled file of a relative import (file or directory index)', () => {
    expect(resolveSpecifier(cli, './config')).toBe('./config.js');
    expect(resolveSpecifier(cli, './http/app')).toBe('./http/app.js');
    expect(resolveSpecifier(cli, './lib')).toBe('./lib/index.js');
    expect(resolveSpecifier(join(dir, 'src', 'http', 'app.js'), '../config')).toBe('../config.js');
  });

  it('leaves specifiers node resolves alone: with an extension, node: builtins, packages with exports', () => {
    expect(resolveSpecifier(cli, './config.js')).toBe('./config.js');
    expect(resolveSpecifier(cli, 'node:fs/promises')).toBe('node:fs/promises');
    expect(resolveSpecifier(cli, 'express')).toBe('express');
    expect(resolveSpecifier(cli, 'ajv/dist/2020')).toBe('ajv/dist/2020.js'); // ajv has no exports map
  });

  it('rewrites static, bare and dynamic imports and re-exports, not other strings', () => {
    const src = [
      "import { a } from './config';",
      "import './http/app';",
      "export * from './lib';",
      "const m = await import('./config');",
      "const s = 'from ./config';",
    ].join('\n');
    expect(fixSpecifiers(cli, src)).toBe([
      "import { a } from './config.js';",
      "import './http/app.js';",
      "export * from './lib/index.js';",
      "const m = await import('./config.js');",
      "const s = 'from ./config';",
    ].join('\n'));
  });

  it('fails on a relative import that compiled to nothing', () => {
    expect(() => resolveSpecifier(cli, './missing')).toThrow(/compiled to neither/);
  });
});
