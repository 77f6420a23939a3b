// `npm run codegen`            regenerate src/generated/
// `npm run codegen -- --check` regenerate into a temp dir; exit 1 with a diff summary if src/generated is stale
// `npm run codegen -- --out DIR` write somewhere else
// `npm run codegen -- --full`    also compile every request/response validator (always on with --check)
//
// Every run gates both documents through openapi-backend's own (strict) definition check; the
// full validator compile costs ~5 s, so plain runs (prestart/pretest) skip it and --check (CI) does it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SpecBundleError } from './bundle';
import { generate } from './generate';
import { diffDirs, generatedDir, writeGenerated, type DirDiff } from './output';

function formatDiff(d: DirDiff): string {
  const out: string[] = [];
  for (const f of d.missing) out.push(`  missing:  ${f}`);
  for (const f of d.extra) out.push(`  extra:    ${f}`);
  for (const c of d.changed) {
    out.push(`  changed:  ${c.file} (first difference at line ${c.line})`);
    out.push(`      fresh:   ${c.expected.slice(0, 160)}`);
    out.push(`      on disk: ${c.actual.slice(0, 160)}`);
  }
  return out.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const check = argv.includes('--check');
  const outIdx = argv.indexOf('--out');
  const outDir = outIdx >= 0 ? resolve(argv[outIdx + 1]) : generatedDir();

  const result = await generate({ verify: check || argv.includes('--full') ? 'full' : 'definition' });
  const runtimeOps = result.operations.filter((o) => o.plane === 'runtime').length;
  const summary = `${result.operations.length} operations (runtime ${runtimeOps}, admin ${result.operations.length - runtimeOps})`;

  if (check) {
    const tmp = mkdtempSync(join(tmpdir(), 'cycles-codegen-'));
    try {
      writeGenerated(tmp, result.files);
      const d = diffDirs(tmp, outDir);
      if (d.missing.length || d.extra.length || d.changed.length) {
        console.error(`codegen --check: ${outDir} is stale; run \`npm run codegen\`.\n${formatDiff(d)}`);
        return 1;
      }
      console.log(`codegen --check: ${outDir} is up to date (${result.files.size} files, ${summary}).`);
      return 0;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  writeGenerated(outDir, result.files);
  console.log(`codegen: wrote ${result.files.size} files to ${outDir} (${summary}).`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof SpecBundleError ? err.message : err);
    process.exit(1);
  },
);
