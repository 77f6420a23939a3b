// `cycles` command line: serve (both planes + workers by default) and ops (coverage).
import { Command } from 'commander';
import cluster from 'node:cluster';
import { loadConfig } from './config';
import { startServer, type Role } from './server';
import { PROCESS_INDEX_ENV, runPrimary, workerRoles } from './cluster';

const program = new Command();
program.name('cycles').description('Cycles protocol server (runtime + admin planes on Redis)');

program
  .command('serve')
  .description('start the server (runtime on CYCLES_RUNTIME_PORT, admin on CYCLES_ADMIN_PORT, workers)')
  .option('--plane <roles>', 'comma list of runtime, admin, worker (default: all)', 'runtime,admin,worker')
  .action(async (o: { plane: string }) => {
    const roles = o.plane.split(',').map((s) => s.trim()).filter(Boolean) as Role[];
    for (const r of roles) {
      if (!['runtime', 'admin', 'worker'].includes(r)) {
        console.error(`--plane: unknown role "${r}" (use runtime, admin, worker)`);
        process.exit(2);
      }
    }
    let server;
    try {
      const processes = loadConfig(process.env).httpProcesses;
      const http = roles.includes('runtime') || roles.includes('admin');
      if (processes > 1 && http && cluster.isPrimary) {
        await runPrimary(processes, (l) => console.log(l), (l) => console.error(l));
        return;
      }
      const index = cluster.isWorker ? process.env[PROCESS_INDEX_ENV] : undefined;
      server = await startServer({
        roles: cluster.isWorker ? workerRoles(roles, index) : roles,
        // cluster workers: one of them speaks for all (same ports, same key)
        announce: (l) => { if (index === undefined || index === '0') console.log(l); },
        // cluster workers: the primary checked the admin key and warned already
        warn: (l) => { if (index === undefined) console.error(l); },
      });
    } catch (e) {
      console.error(`cycles: failed to start: ${(e as Error).message}`);
      process.exit(1);
    }
    let stopping = false;
    const shutdown = async (sig: string) => {
      if (stopping) return;
      stopping = true;
      console.log(`${sig} received, shutting down`);
      await server.stop();
      process.exit(0);
    };
    process.on('SIGINT', () => void shutdown('SIGINT'));
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
  });

program
  .command('ops')
  .description('list every spec operation and whether this server implements it')
  .option('--json', 'machine-readable output')
  .action(async (o: { json?: boolean }) => {
    const { coverageReport } = await import('./ops');
    const report = coverageReport();
    if (o.json) {
      console.log(JSON.stringify(report, null, 2));
      return;
    }
    for (const r of report.rows) {
      console.log(`${r.status.padEnd(12)} ${r.plane.padEnd(8)} ${r.feature.padEnd(8)} ${r.method.toUpperCase().padEnd(6)} ${r.path}  (${r.operationId})`);
    }
    console.log(`\n${report.implemented} implemented, ${report.notYet} not yet, ${report.rows.length} operations`);
  });

program.parseAsync(process.argv).catch((e) => {
  console.error(e);
  process.exit(1);
});
