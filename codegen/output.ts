// Writing generated files and comparing a fresh generation with what is on disk.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './bundle';

export const generatedDir = (): string => join(repoRoot(), 'src', 'generated');

/** Replace the contents of dir with files (removes files the generator no longer emits). */
export function writeGenerated(dir: string, files: Map<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(dir)) if (!files.has(name)) rmSync(join(dir, name), { recursive: true, force: true });
  // an unchanged file is not rewritten: its mtime says when the spec output last changed
  // (bin/cycles.mjs compares source mtimes with a build's)
  for (const [name, content] of files) {
    const file = join(dir, name);
    if (existsSync(file) && readFileSync(file, 'utf8') === content) continue;
    writeFileSync(file, content);
  }
}

export interface DirDiff {
  missing: string[];
  extra: string[];
  changed: { file: string; line: number; expected: string; actual: string }[];
}

/** Compare a freshly generated dir (expected) with an existing one (actual). */
export function diffDirs(expectedDir: string, actualDir: string): DirDiff {
  const list = (d: string) => (existsSync(d) ? readdirSync(d).sort() : []);
  const expected = list(expectedDir);
  const actual = new Set(list(actualDir));
  const diff: DirDiff = { missing: [], extra: [], changed: [] };
  for (const f of expected) {
    if (!actual.has(f)) {
      diff.missing.push(f);
      continue;
    }
    const a = readFileSync(join(expectedDir, f), 'utf8');
    const b = readFileSync(join(actualDir, f), 'utf8');
    if (a === b) continue;
    const al = a.split('\n');
    const bl = b.split('\n');
    let i = 0;
    while (i < al.length && al[i] === bl[i]) i++;
    diff.changed.push({ file: f, line: i + 1, expected: al[i] ?? '<eof>', actual: bl[i] ?? '<eof>' });
  }
  for (const f of actual) if (!expected.includes(f)) diff.extra.push(f);
  return diff;
}

