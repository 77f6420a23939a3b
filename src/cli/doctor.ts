// `cycles doctor` registration; the checks (src/cli/doctorChecks.ts) load only when it runs,
// so every other command starts without the store and config modules they import.
import type { Command } from 'commander';
import { printJson, table, col } from './output';
import { EXIT } from './client';
import type { Status } from './doctorChecks';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check what `cycles serve` would run with: config, Redis (reachability, version, clock skew vs TIME, Lua scripts), key material. Exit 0: no FAIL; 1: a check failed')
    .option('--json', 'print the checks as JSON')
    .action(async (o: { json?: boolean }) => {
      const { runDoctor } = await import('./doctorChecks');
      const checks = await runDoctor(process.env);
      if (o.json) printJson({ ok: !checks.some((c) => c.status === 'FAIL'), checks });
      else {
        console.log(table(checks as unknown as Record<string, unknown>[], [col('status', 'status'), col('check', 'check'), col('detail', 'detail', (v) => String(v))]));
        const n = (s: Status) => checks.filter((c) => c.status === s).length;
        console.log(`\n${n('ok')} ok, ${n('warn')} warnings, ${n('FAIL')} failed${n('skip') ? `, ${n('skip')} skipped` : ''}`);
      }
      process.exit(checks.some((c) => c.status === 'FAIL') ? EXIT.api : EXIT.ok);
    });
}

