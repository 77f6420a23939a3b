// CLI: npm run conformance -- --runtime-url URL --admin-url URL --admin-key KEY [--features v0.1.26] [--evidence]
// Black-box: talks HTTP only. Prints one line per case, then "N passed, M failed" alone on a
// line (plus skipped counts by reason); exits 1 when any case failed.
import { Command } from 'commander';
import { runConformance } from './index';

const program = new Command();
program
  .name('conformance')
  .description('Cycles protocol conformance suite (runs against any Cycles server)')
  .requiredOption('--runtime-url <url>', 'runtime plane base URL, e.g. http://127.0.0.1:7878')
  .requiredOption('--admin-url <url>', 'admin plane base URL, e.g. http://127.0.0.1:7979')
  .option('--admin-key <key>', 'admin API key (default: env ADMIN_API_KEY)')
  .option('--features <list>', 'comma list of optional features the server has enabled (v0.1.26)', '')
  .option('--evidence', 'the server has CyclesEvidence enabled (runs the evidence cases)')
  .option('--filter <substr...>', 'run only cases whose id contains one of these')
  .option('--concurrency <n>', 'cases run in parallel', '8')
  .option('--quiet', 'print only failures and the summary')
  .parse();

const o = program.opts<{ runtimeUrl: string; adminUrl: string; adminKey?: string; features: string; filter?: string[]; concurrency: string; evidence?: boolean; quiet?: boolean }>();
const adminKey = o.adminKey ?? process.env.ADMIN_API_KEY;
if (!adminKey) {
  console.error('conformance: --admin-key (or env ADMIN_API_KEY) is required');
  process.exit(2);
}

const summary = await runConformance({
  runtimeUrl: o.runtimeUrl,
  adminUrl: o.adminUrl,
  adminKey,
  features: o.features.split(',').map((s) => s.trim()).filter(Boolean),
  filter: o.filter,
  concurrency: Number(o.concurrency) || 8,
  evidence: Boolean(o.evidence),
}, (r) => {
  if (r.outcome === 'fail') {
    console.log(`FAIL ${r.id} — ${r.title}`);
    for (const m of r.messages) console.log(`     ${m}`);
  } else if (!o.quiet) {
    console.log(`${r.outcome === 'pass' ? 'PASS' : 'SKIP'} ${r.id}${r.outcome === 'skip' ? ` (${r.messages[0]})` : ''}`);
  }
});

console.log('');
for (const [reason, n] of Object.entries(summary.skipReasons).sort((a, b) => b[1] - a[1])) {
  console.log(`skipped ${n}: ${reason}`);
}
console.log(`${summary.passed} passed, ${summary.failed} failed`);
process.exit(summary.failed > 0 ? 1 : 0);
