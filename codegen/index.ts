// `npm run codegen`            regenerate src/generated/
// `npm run codegen -- --check` regenerate into a temp dir; exit 1 with a diff summary if src/generated is stale
// `npm run codegen -- --out DIR` write somewhere else
// `npm run codegen -- --full`    also compile every request/response validator (always on with --check)
// `npm run codegen -- --pin DIR [--scaffold] [--commit SHA] [--from DIR] [--manifest FILE] [--handlers DIR]`
//                                re-pin specs/manifest.json to the bundle in DIR, print what changed
//                                (operations, schema changes additive/breaking, enum values),
//                                regenerate; --scaffold writes 501 handler skeletons for new operations
//
// Every run gates both documents through openapi-backend's own (strict) definition check; the
// full validator compile costs ~5 s, so plain runs (prestart/pretest) skip it and --check (CI) does it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SpecBundleError } from './bundle';
import { generate } from './generate';
import { diffDirs, generatedDir, writeGenerated, type DirDiff } from './output';
import { pinBundle } from './pin';
import { repoRoot } from './bundle';

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
  const value = (flag: string) => {
    const i = argv.indexOf(flag);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
    return v;
  };

  const pinDir = value('--pin');
  if (pinDir !== undefined) {
    const r = await pinBundle({
      dir: pinDir,
      out: outDir,
      manifest: value('--manifest'),
      from: value('--from'),
      commit: value('--commit'),
      scaffoldDir: argv.includes('--scaffold') ? resolve(value('--handlers') ?? join(repoRoot(), 'handlers')) : undefined,
    });
    const json = value('--json');
    if (json) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(json, JSON.stringify({ diff: r.diff ?? null, noDiff: r.noDiff ?? null, renamed: r.renamed, changedFiles: r.changedFiles, scaffolded: r.scaffolded }, null, 2) + '\n');
    }
    if (resolve(pinDir) !== resolve(process.env.CYCLES_SPECS_DIR?.trim() || join(repoRoot(), '..', 'shared', 'specs', 'cycles-protocol'))) {
      console.log(`next: serve and test with CYCLES_SPECS_DIR=${resolve(pinDir)} (or copy that bundle to the default ../shared/specs/cycles-protocol), then \`npm run ops\` and \`npm test\``);
    }
    return 0;
  }

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
