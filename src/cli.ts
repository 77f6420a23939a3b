// `cycles` command line: serve (both planes + workers by default), ops (coverage), evidence
// (offline envelope verification, signing-key generation), conformance (the black-box kit)
// and export (the cold archive, src/export/).
import { Command } from 'commander';
import cluster from 'node:cluster';
import { loadConfig, specsDirFrom } from './config';
import type { Role } from './server';
import { applyUsageExitCode, registerOperatorCommands } from './cli/index';

const program = new Command();
// options after a subcommand belong to it (`cycles conformance --help` is the kit's help)
program.enablePositionalOptions();
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
      // loaded here, not at the top, so the other commands start without the server's modules
      const { startServer } = await import('./server');
      const { PROCESS_INDEX_ENV, runPrimary, workerRoles } = await import('./cluster');
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
      const ms = server.config.shutdownTimeoutMs;
      console.log(`${sig} received, shutting down (requests in flight get up to ${ms} ms)`);
      // a backstop past the drain deadline: a worker or Redis that never lets go
      setTimeout(() => {
        console.error('cycles: shutdown did not finish in time; exiting');
        process.exit(1);
      }, ms + 10_000).unref();
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
  .option('--markdown', "the README's operations table")
  .action(async (o: { json?: boolean; markdown?: boolean }) => {
    const { coverageMarkdown, coverageReport } = await import('./ops');
    if (o.markdown) {
      process.stdout.write(coverageMarkdown());
      return;
    }
    const report = coverageReport();
    if (o.json) {
      console.log(JSON.stringify(report, null, 2));
      return;
    }
    for (const r of report.rows) {
      console.log(`${r.status.padEnd(12)} ${r.plane.padEnd(8)} ${r.feature.padEnd(8)} ${r.method.toUpperCase().padEnd(6)} ${r.path}  (${r.operationId})`);
    }
    console.log(`\n${report.implemented} implemented, ${report.scaffold} skeletons (501), ${report.notYet} not yet, ${report.rows.length} operations`);
  });

program
  .command('conformance')
  .description('run the black-box conformance kit against a Cycles server (options: cycles conformance --help)')
  .helpOption(false)
  .allowUnknownOption()
  .allowExcessArguments()
  .passThroughOptions()
  .argument('[args...]', 'conformance options, e.g. --runtime-url URL --admin-url URL --admin-key KEY --junit conformance.xml')
  .action(async (args: string[]) => {
    const { runConformanceCli } = await import('../conformance/cli');
    // exit at once: idle keep-alive connections to the server under test would hold the process
    process.exit(await runConformanceCli(args, 'cycles conformance'));
  });

const evidence = program.command('evidence').description('CyclesEvidence: offline verification and signing keys');

evidence
  .command('verify <envelope>')
  .description('verify one envelope (a file or an http(s) URL); prints the disposition. Exit 0: authentic or binding_only (pin, if given, matched); 1: signature_invalid, signer_authority_failed or pin mismatch; 3: signer_resolution_failed')
  .option('--jwks <file|url>', 'JWK Set to establish signer authority with')
  .option('--resolve', "fetch the JWK Set from the envelope's own {server_id}/.well-known/cycles-jwks.json")
  .option('--expected-signer <did>', 'pin the expected signer_did (raw hex or did:cycles)')
  .option('--require-authentic', 'exit 1 unless the disposition is authentic')
  .option('--json', 'print the result as JSON')
  .action(async (file: string, o: { jwks?: string; resolve?: boolean; expectedSigner?: string; requireAuthentic?: boolean; json?: boolean }) => {
    const { runVerify } = await import('./evidence/cli');
    process.exitCode = await runVerify(file, o, specsDirFrom(process.env));
  });

evidence
  .command('keygen')
  .description('print a new Ed25519 signing identity as environment lines (the seed is secret)')
  .option('--server-id <url>', 'EVIDENCE_SERVER_ID, to print the did:cycles form too')
  .option('--kid <kid>', 'key id (default: first 16 hex characters of the public key)')
  .action(async (o: { serverId?: string; kid?: string }) => {
    const { runKeygen } = await import('./evidence/cli');
    process.exitCode = runKeygen(o);
  });

/** The server's own connection logic for commands that read the store: a Redis Cluster is
 *  detected, or forced with REDIS_CLUSTER, as for `cycles serve` (docs/decisions.md DK2). */
async function connectCliRedis(url: string) {
  const { connectRedis } = await import('./server');
  const flag = process.env.REDIS_CLUSTER;
  return connectRedis(url, 10_000, flag === '1' || flag === 'true' ? true : flag === '0' || flag === 'false' ? false : undefined);
}

evidence
  .command('export')
  .description('stream the stored envelopes issued in [--from, --to] as JSON lines (each line verifiable on its own) to stdout, oldest first; needs REDIS_URL')
  .option('--from <time>', 'epoch ms or ISO 8601 (default: the beginning)')
  .option('--to <time>', 'epoch ms or ISO 8601 (default: no upper bound)')
  .action(async (o: { from?: string; to?: string }) => {
    const { exportEnvelopes, parseTimeBound } = await import('./evidence/export');
    const url = process.env.REDIS_URL;
    if (!url) {
      console.error('cycles evidence export: set REDIS_URL to the server\'s Redis');
      process.exitCode = 2;
      return;
    }
    const from = parseTimeBound(o.from, '--from', 0);
    const to = parseTimeBound(o.to, '--to', Number.MAX_SAFE_INTEGER);
    const redis = await connectCliRedis(url);
    try {
      const out = process.stdout;
      const write = (line: string) => (out.write(line) ? undefined : new Promise<void>((r) => out.once('drain', () => r())));
      const { written, missing } = await exportEnvelopes(redis, from, to, write);
      console.error(`cycles evidence export: ${written} envelopes${missing ? `, ${missing} indexed but no longer stored (retention)` : ''}`);
    } finally {
      redis.disconnect();
    }
  });

// demo, doctor, tenants|keys|budgets|policies|webhooks, reservations, events (src/cli/)
registerOperatorCommands(program);
applyUsageExitCode(program);
const exportCmd = program
  .command('export')
  .description('cold export: write the records of the closed UTC days [--from, --to] as gzip\'d JSON Lines, one file per class per day (DIR/<class>/<day>.jsonl.gz: reservations, create_events, events, audit, evidence) plus DIR/manifest.json (rows, bytes, sha256); resumable and idempotent; needs REDIS_URL. `cycles export verify DIR` re-checks a directory')
  .option('--from <day>', 'first UTC day, YYYY-MM-DD')
  .option('--to <day>', 'last UTC day, YYYY-MM-DD (days not closed yet are skipped)')
  .option('--dir <dir>', 'output directory (a local path or a mounted bucket)')
  .option('--release', 'after each exported day, apply hot retention to its records (what the export job does; for records held while CYCLES_EXPORT_DIR was set)')
  .action(async (o: { from?: string; to?: string; dir?: string; release?: boolean }) => {
    if (!o.from || !o.to || !o.dir) {
      console.error('cycles export: --from, --to and --dir are required (or: cycles export verify DIR)');
      process.exitCode = 2;
      return;
    }
    const url = process.env.REDIS_URL;
    if (!url) {
      console.error('cycles export: set REDIS_URL to the server\'s Redis');
      process.exitCode = 2;
      return;
    }
    const { runExport } = await import('./export/run');
    let redis: Awaited<ReturnType<typeof connectCliRedis>>;
    try {
      redis = await connectCliRedis(url);
    } catch (e) {
      console.error(`cycles export: ${(e as Error).message}`);
      process.exitCode = 1;
      return;
    }
    try {
      const config = loadConfig(process.env);
      const [s, us] = await redis.time();
      const testNow = process.env.NODE_ENV === 'test' ? process.env.CYCLES_TEST_NOW_MS : undefined;
      const nowMs = testNow ? Number(testNow) : Number(s) * 1000 + Math.floor(Number(us) / 1000);
      // test-only: a pause after each segment, so a test can kill the run midway
      const pause = process.env.NODE_ENV === 'test' ? Number(process.env.CYCLES_TEST_EXPORT_SEGMENT_DELAY_MS ?? 0) : 0;
      const onSegment = pause > 0 ? () => new Promise<void>((res) => setTimeout(res, pause)) : undefined;
      const r = await runExport({ redis, config, dir: o.dir, from: o.from, to: o.to, nowMs, release: o.release, onSegment });
      console.log(`cycles export: ${r.written.length} written, ${r.present.length} already present${o.release ? `, ${r.released} records released` : ''}`);
      for (const f of r.open) console.log(`not final (a reservation is still ACTIVE), skipped: ${f}`);
      if (r.notClosed.length) console.log(`not closed yet, skipped: ${r.notClosed.join(', ')}`);
    } catch (e) {
      console.error(`cycles export: ${(e as Error).message}`);
      process.exitCode = 1;
    } finally {
      redis.disconnect();
    }
  });

exportCmd
  .command('verify <dir>')
  .description('re-check every file the manifest lists (size, sha256, rows); exit 1 naming each file that differs')
  .action(async (dir: string) => {
    const { verifyExport } = await import('./export/run');
    try {
      const { files, problems } = await verifyExport(dir);
      for (const p of problems) console.error(`MISMATCH ${p.file}: ${p.problem}`);
      if (problems.length) {
        process.exitCode = 1;
        return;
      }
      console.log(`cycles export verify: ${files} files match the manifest`);
    } catch (e) {
      console.error(`cycles export verify: ${(e as Error).message}`);
      process.exitCode = 1;
    }
  });

program.parseAsync(process.argv).catch((e) => {
  console.error(e);
  process.exit(1);
});
