// The conformance command line, shared by `npx cycles conformance …` (src/cli.ts) and
// `npm run conformance -- …` (run.ts). Black-box: talks HTTP only, to the two planes.
// Prints one line per case, the skip reasons, the uncovered requirements, then "N passed,
// M failed" alone on a line. Exit code: 1 on any MUST failure (any failure with --strict),
// 0 otherwise, 2 on a usage error (missing key, bad option, a selection that names no case,
// a plane that does not answer HTTP).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { REQUEST_TIMEOUT_MS } from './client';
import { resolveSpecsDir, runConformance, specsStatus } from './index';
import { exitCodeFor, toJsonReport, toJUnitXml } from './report';

interface CliOptions {
  runtimeUrl: string;
  adminUrl: string;
  adminKey?: string;
  features: string;
  evidence?: boolean;
  only?: string[];
  skip?: string[];
  filter?: string[];
  strict?: boolean;
  specs?: string;
  junit?: string;
  json?: string;
  concurrency: string;
  quiet?: boolean;
}

type Out = { log: (line: string) => void; error: (line: string) => void };

/** Runs the kit with `argv` (the arguments after the command name); resolves to the exit code. */
export async function runConformanceCli(argv: string[], name = 'conformance', out: Out = console): Promise<number> {
  const program = new Command();
  program
    .name(name)
    .description('Cycles protocol conformance kit: runs against any Cycles server over HTTP (creates only objects named after a random run tag)')
    .requiredOption('--runtime-url <url>', 'runtime plane base URL, e.g. http://127.0.0.1:7878')
    .requiredOption('--admin-url <url>', 'admin plane base URL, e.g. http://127.0.0.1:7979')
    .option('--admin-key <key>', 'admin API key (default: env ADMIN_API_KEY)')
    .option('--features <list>', 'comma list of optional features the server has enabled (v0.1.26)', '')
    .option('--evidence', 'the server has CyclesEvidence enabled (runs the evidence cases)')
    .option('--only <id-or-tag...>', 'run only cases whose id starts with one of these, or that carry one as a tag or requirement id')
    .option('--skip <id-or-tag...>', 'leave out cases matching one of these (same matching as --only)')
    .option('--filter <substr...>', 'run only cases whose id contains one of these')
    .option('--strict', 'SHOULD and MAY failures fail the run too')
    .option('--specs <dir>', 'spec bundle directory (default: env CYCLES_SPECS_DIR, else the pinned bundle beside the installation)')
    .option('--junit <file>', 'write a JUnit XML report')
    .option('--json <file>', 'write a JSON report')
    .option('--concurrency <n>', 'cases run in parallel', '8')
    .option('--quiet', 'print only failures and the summary')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.log(s.trimEnd()), writeErr: (s) => out.error(s.trimEnd()) });
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  const o = program.opts<CliOptions>();
  const adminKey = o.adminKey ?? process.env.ADMIN_API_KEY;
  if (!adminKey) {
    out.error(`${name}: --admin-key (or env ADMIN_API_KEY) is required`);
    return 2;
  }

  // An unreachable plane would fail every case with the same network error: say it once.
  for (const [plane, url] of [['runtime', o.runtimeUrl], ['admin', o.adminUrl]] as const) {
    const problem = await unreachable(url);
    if (problem) {
      out.error(`${name}: cannot reach the ${plane} plane at ${url}: ${problem}`);
      return 2;
    }
  }

  const specs = specsStatus(resolveSpecsDir(o.specs));
  if (!specs.ok) {
    out.error(`${name}: ${specs.problem}`);
    out.error(`${name}: the cases that read it (test vectors, v0.1.26 governance, evidence schema) are skipped; pass --specs DIR or set CYCLES_SPECS_DIR`);
  }

  const summary = await runConformance({
    runtimeUrl: o.runtimeUrl,
    adminUrl: o.adminUrl,
    adminKey,
    features: o.features.split(',').map((s) => s.trim()).filter(Boolean),
    evidence: Boolean(o.evidence),
    only: o.only,
    skip: o.skip,
    filter: o.filter,
    strict: Boolean(o.strict),
    specsDir: specs.dir,
    concurrency: Number(o.concurrency) || 8,
  }, (r) => {
    if (r.outcome === 'fail') {
      out.log(`FAIL ${r.id} [${r.level}] — ${r.title}`);
      for (const m of r.messages) out.log(`     ${m}`);
      if (r.evidence) out.log(`     last exchange: ${r.evidence.method} ${r.evidence.url} → ${r.evidence.status}`);
    } else if (!o.quiet) {
      out.log(`${r.outcome === 'pass' ? 'PASS' : 'SKIP'} ${r.id}${r.outcome === 'skip' ? ` (${r.messages[0]})` : ''}`);
    }
  });
  const code = exitCodeFor(summary, Boolean(o.strict));

  for (const [file, text] of [[o.junit, () => toJUnitXml(summary)], [o.json, () => `${JSON.stringify(toJsonReport(summary), null, 2)}\n`]] as const) {
    if (!file) continue;
    const target = path.resolve(file);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, text());
  }

  out.log('');
  if (summary.selected === 0) {
    // an empty selection is a mistake in the command, not a pass
    out.error(`${name}: no case matches the selection (--only / --skip / --filter; ${summary.total} registered)`);
    return 2;
  }
  for (const [reason, n] of Object.entries(summary.skipReasons).sort((a, b) => b[1] - a[1])) {
    out.log(`skipped ${n}: ${reason}`);
  }
  if (summary.uncovered.length) {
    out.log(`uncovered requirements (no case references them): ${summary.uncovered.map((r) => `${r.id} [${r.level}]`).join(', ')}`);
  }
  const { MUST, SHOULD, MAY } = summary.failedByLevel;
  if (summary.failed) out.log(`failed by level: ${MUST} MUST, ${SHOULD} SHOULD, ${MAY} MAY${o.strict ? ' (--strict: all count)' : ''}`);
  out.log(`${summary.passed} passed, ${summary.failed} failed`);
  return code;
}

/** Why nothing answers HTTP at `base` (any status is an answer), or undefined. */
async function unreachable(base: string): Promise<string | undefined> {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    return 'not a URL';
  }
  let problem: string | undefined;
  // twice: a pooled keep-alive connection the server closed just now fails once and is gone
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      await res.arrayBuffer();
      return undefined;
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      problem = cause?.code ?? cause?.message ?? (e as Error).message;
    }
  }
  return problem;
}
