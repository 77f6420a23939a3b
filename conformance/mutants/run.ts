// Mutation harness: npm run conformance:mutants [-- --fast] [--only id...] [--json FILE] [--jsonl FILE] [--report-only]
//
// Applies each mutant of catalog.ts, one at a time, to a private copy of the server's sources
// (src, handlers, bin, package.json, tsconfig.json; node_modules symlinked), starts that copy
// (`node bin/cycles.mjs serve`) on a private redis-server and free ports, and runs the
// UNMUTATED conformance kit of this checkout against it: the kit is the judge, so it must
// never see the mutation. A case that fails kills the mutant. The unmutated copy runs first,
// once per profile needed; it must pass every case, else the harness aborts (exit 2).
// Profiles: base; v0.1.26 (CYCLES_FEATURES=v0.1.26 + the kit's --features v0.1.26); evidence
// (EVIDENCE_SERVER_ID + an ephemeral signing key + the kit's --evidence).
//
// Mutants run strictly one after another (the CI box is small and shared). Exit 1 when a
// selected mutant survives (no failing case), unless --report-only; exit 2 on harness errors
// (a `find` that no longer matches exactly once, a failing baseline).
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { REPO_ROOT, specsDirFrom } from '../../src/config';
import { freePort, startRedisServer, type RedisServerHandle } from '../../src/store/redisProcess';
import { allCases, runConformance } from '../index';
import { locate, MUTANTS, applyMutant, type Mutant, type MutantProfile } from './catalog';

const COPIED = ['src', 'handlers', 'bin', 'package.json', 'tsconfig.json'];
const READY_TIMEOUT_MS = 60_000;
/** a kit run that takes longer than this kills the mutant as "timeout" (baseline: ~10-20 s) */
const KIT_TIMEOUT_MS = 300_000;
const STOP_TIMEOUT_MS = 10_000;
const ADMIN_KEY = 'mutants-admin-key-0123456789abcdef';
/** a failing baseline: reported already, stop without a report */
class Abort extends Error {}

type Level = 'MUST' | 'SHOULD' | 'MAY';
/** strength of a level: a case kills a defect "at its level" when its rank is <= the defect's */
const RANK: Record<Level, number> = { MUST: 0, SHOULD: 1, MAY: 2 };
interface Killer { id: string; level: Level }
type Outcome = 'killed' | 'survived';

export interface MutantResult {
  id: string;
  area: string;
  profile: MutantProfile;
  fast: boolean;
  description: string;
  outcome: Outcome;
  /** the strongest spec level the defect violates (Mutant.level, default MUST) */
  level: Level;
  /** true when at least one killing case is MUST-level */
  killedByMust: boolean;
  /** true when a killing case is at least as strong as the defect's own level */
  killedAtLevel: boolean;
  /** failing cases (empty for a survivor); a non-case kill has id "(startup)" or "(timeout)" */
  killers: Killer[];
  durationMs: number;
}

const program = new Command();
program
  .name('conformance:mutants')
  .description('apply each catalogued defect to a copy of this server and check that the conformance kit catches it')
  .option('--fast', 'only the CI subset (mutants marked fast)')
  .option('--only <id...>', 'only these mutant ids')
  .option('--json <file>', 'also write the results as JSON')
  .option('--jsonl <file>', 'append each mutant\'s result as one JSON line as soon as it is known (a long run leaves partial results)')
  .option('--report-only', 'exit 0 even when mutants survive')
  .option('--concurrency <n>', 'parallel cases per kit run', '4')
  .parse();
const o = program.opts<{ fast?: boolean; only?: string[]; json?: string; jsonl?: string; reportOnly?: boolean; concurrency: string }>();

// ----------------------------------------------------------------------------- selection
let selected = MUTANTS.filter((m) => !o.fast || m.fast);
if (o.only) {
  const unknown = o.only.filter((id) => !MUTANTS.some((m) => m.id === id));
  if (unknown.length) die(`unknown mutant id(s): ${unknown.join(', ')}`);
  selected = selected.filter((m) => o.only!.includes(m.id));
}
if (selected.length === 0) die('no mutant selected');
// Every selected mutant must apply before anything starts (a refactor shows up here).
const originals = new Map<string, string>();
for (const m of selected) {
  if (!originals.has(m.file)) originals.set(m.file, readFileSync(join(REPO_ROOT, m.file), 'utf8'));
  const at = locate(originals.get(m.file)!, m);
  if (typeof at === 'string') die(at);
}

const LEVELS = new Map<string, Level>();
for (const c of allCases()) LEVELS.set(c.id, (c as { level?: Level }).level ?? 'MUST');
const levelOf = (id: string): Level => LEVELS.get(id) ?? 'MUST';

// ----------------------------------------------------------------------------- the copy
const work = mkdtempSync(join(tmpdir(), 'cycles-mutants-'));
const copy = join(work, 'repo');
for (const entry of COPIED) cpSync(join(REPO_ROOT, entry), join(copy, entry), { recursive: true });
symlinkSync(realpathSync(join(REPO_ROOT, 'node_modules')), join(copy, 'node_modules'), 'dir');
const specsDir = specsDirFrom(process.env);

let child: ChildProcess | undefined;
let redis: RedisServerHandle | undefined;
async function cleanup(): Promise<void> {
  if (child) await stopChild(child);
  if (redis) await redis.stop().catch(() => {});
  child = undefined;
  redis = undefined;
  rmSync(work, { recursive: true, force: true });
}
// Last resort if the harness itself dies: never leave a mutated server or its redis running.
process.on('exit', () => {
  child?.kill('SIGKILL');
  redis?.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { void cleanup().finally(() => process.exit(130)); });
}

interface RunOutcome { failed: string[]; error?: '(startup)' | '(timeout)'; log: string; total: number }

/** Starts the copy as it is now on a fresh redis, runs the kit, stops both. */
async function runOnce(profile: MutantProfile): Promise<RunOutcome> {
  const dataDir = mkdtempSync(join(work, 'redis-'));
  redis = await startRedisServer({ dataDir, port: 0, appendonly: false });
  const runtimePort = await freePort();
  let adminPort = await freePort();
  while (adminPort === runtimePort) adminPort = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['CYCLES_FEATURES', 'REDIS_URL', 'VITEST', 'VITEST_WORKER_ID', 'VITEST_POOL_ID', 'NODE_ENV']) delete env[k];
  // evidence only where the profile asks for it, never inherited from the caller's shell
  for (const k of Object.keys(env)) if (k.startsWith('EVIDENCE_')) delete env[k];
  Object.assign(env, {
    REDIS_URL: redis.url,
    ADMIN_API_KEY: ADMIN_KEY,
    CYCLES_RUNTIME_PORT: String(runtimePort),
    CYCLES_ADMIN_PORT: String(adminPort),
    CYCLES_DATA_DIR: dataDir,
    CYCLES_SPECS_DIR: specsDir,
    CYCLES_LOG_LEVEL: 'warn',
    ...(profile === 'v0.1.26' ? { CYCLES_FEATURES: 'v0.1.26' } : {}),
    // the evidence profile: a signing identity with a per-process key (development mode; the
    // kit verifies envelopes against the JWK Set the server publishes, so any key will do)
    ...(profile === 'evidence' ? { EVIDENCE_SERVER_ID: `http://127.0.0.1:${runtimePort}/v1`, EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY: 'true' } : {}),
  });
  let log = '';
  const c = spawn(process.execPath, [join(copy, 'bin', 'cycles.mjs'), 'serve'], { cwd: copy, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child = c;
  const keep = (d: Buffer) => { log = (log + d.toString()).slice(-4000); };
  c.stdout!.on('data', keep);
  c.stderr!.on('data', keep);
  const runtimeUrl = `http://127.0.0.1:${runtimePort}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  try {
    if (!(await waitReady(c, [runtimeUrl, adminUrl]))) return { failed: [], error: '(startup)', log, total: 0 };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), KIT_TIMEOUT_MS); });
    const summary = await Promise.race([
      runConformance({
        runtimeUrl, adminUrl, adminKey: ADMIN_KEY,
        features: profile === 'v0.1.26' ? ['v0.1.26'] : [],
        evidence: profile === 'evidence',
        concurrency: Number(o.concurrency) || 4,
      }),
      timeout,
    ]);
    clearTimeout(timer);
    if (summary === 'timeout') return { failed: [], error: '(timeout)', log, total: 0 };
    return { failed: summary.results.filter((r) => r.outcome === 'fail').map((r) => r.id), log, total: summary.results.length };
  } finally {
    await stopChild(c);
    child = undefined;
    await redis.stop();
    redis = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function waitReady(c: ChildProcess, urls: string[]): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (const url of urls) {
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null || Date.now() > deadline) return false;
      try {
        if ((await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200) break;
      } catch { /* not listening yet */ }
      await sleep(200);
    }
  }
  return true;
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(t);
}

// ----------------------------------------------------------------------------- the run
const t0 = Date.now();
const results: MutantResult[] = [];
let exitCode = 0;
try {
  const profiles = [...new Set(selected.map((m) => m.profile ?? 'base'))];
  for (const profile of profiles) {
    const b0 = Date.now();
    const base = await runOnce(profile);
    if (base.error || base.failed.length > 0) {
      console.error(`baseline (${profile}) did not pass: ${base.error ?? base.failed.join(', ')}\n${base.log}`);
      exitCode = 2;
      throw new Abort();
    }
    console.log(`baseline ${profile}: ${base.total} cases pass (${secs(Date.now() - b0)})`);
  }
  for (const [i, m] of selected.entries()) {
    const m0 = Date.now();
    const target = join(copy, m.file);
    writeFileSync(target, applyMutant(originals.get(m.file)!, m));
    let run: RunOutcome;
    try {
      run = await runOnce(m.profile ?? 'base');
    } finally {
      writeFileSync(target, originals.get(m.file)!);
    }
    const killers: Killer[] = run.error ? [{ id: run.error, level: 'MUST' }] : run.failed.map((id) => ({ id, level: levelOf(id) }));
    const r = resultOf(m, killers, Date.now() - m0);
    results.push(r);
    if (o.jsonl) appendFileSync(o.jsonl, JSON.stringify(r) + '\n');
    console.log(`[${i + 1}/${selected.length}] ${r.outcome === 'killed' ? 'KILLED  ' : 'SURVIVED'} ${m.id} (${secs(r.durationMs)})${killers.length ? ` by ${short(killers)}` : ''}`);
  }
} catch (e) {
  if (!(e instanceof Abort)) {
    console.error(e);
    exitCode = 2;
  }
} finally {
  await cleanup();
}
if (exitCode === 2) process.exit(2);

const wallMs = Date.now() - t0;
printReport(results, wallMs);
if (o.json) {
  writeFileSync(o.json, JSON.stringify({ wallMs, fast: Boolean(o.fast), summary: summarize(results), mutants: results }, null, 2) + '\n');
}
const survivors = results.filter((r) => r.outcome === 'survived');
process.exit(survivors.length > 0 && !o.reportOnly ? 1 : 0);

// ----------------------------------------------------------------------------- helpers
function resultOf(m: Mutant, killers: Killer[], durationMs: number): MutantResult {
  return {
    id: m.id, area: m.area, profile: m.profile ?? 'base', fast: Boolean(m.fast), description: m.description,
    outcome: killers.length > 0 ? 'killed' : 'survived',
    level: m.level ?? 'MUST',
    killedByMust: killers.some((k) => k.level === 'MUST'),
    killedAtLevel: killers.some((k) => RANK[k.level] <= RANK[m.level ?? 'MUST']),
    killers, durationMs,
  };
}

function summarize(rs: MutantResult[]) {
  const killed = rs.filter((r) => r.outcome === 'killed').length;
  const must = rs.filter((r) => r.killedByMust).length;
  const mustLevel = rs.filter((r) => r.level === 'MUST');
  const atLevel = rs.filter((r) => r.killedAtLevel).length;
  return {
    total: rs.length, killed, survived: rs.length - killed, killedByMust: must,
    killRatio: rs.length ? killed / rs.length : 0, mustKillRatio: rs.length ? must / rs.length : 0,
    /** defects that break a MUST, and how many of those a MUST-level case kills */
    mustLevelMutants: mustLevel.length,
    mustLevelKilledByMust: mustLevel.filter((r) => r.killedByMust).length,
    /** kills by a case at least as strong as the defect's own level */
    killedAtLevel: atLevel,
    survivors: rs.filter((r) => r.outcome === 'survived').map((r) => r.id),
  };
}

function printReport(rs: MutantResult[], ms: number): void {
  const rows = rs.map((r) => [r.id, r.area, r.profile, r.level, r.outcome === 'killed' ? (r.killedByMust ? 'killed' : 'killed (non-MUST only)') : 'SURVIVED', short(r.killers)]);
  const head = ['mutant', 'area', 'profile', 'level', 'result', 'killed by'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd();
  console.log('');
  console.log(line(head));
  console.log(line(w.map((n) => '-'.repeat(n))));
  for (const row of rows) console.log(line(row));
  const s = summarize(rs);
  console.log('');
  console.log(`${s.killed}/${s.total} killed (${pct(s.killRatio)}), ${s.killedByMust} by a MUST-level case (${pct(s.mustKillRatio)}), ${s.survived} survived; wall time ${secs(ms)}`);
  console.log(`defects that break a MUST: ${s.mustLevelKilledByMust}/${s.mustLevelMutants} killed by a MUST-level case; killed by a case at the defect's own level or stronger: ${s.killedAtLevel}/${s.total}`);
  if (s.survivors.length) console.log(`survivors: ${s.survivors.join(', ')}`);
}

function short(ks: Killer[]): string {
  if (ks.length === 0) return '-';
  const names = ks.slice(0, 3).map((k) => (k.level === 'MUST' ? k.id : `${k.id} [${k.level}]`));
  return ks.length > 3 ? `${names.join(', ')} +${ks.length - 3}` : names.join(', ');
}

function secs(ms: number): string { return `${(ms / 1000).toFixed(1)} s`; }
function pct(x: number): string { return `${(x * 100).toFixed(1)}%`; }
function sleep(ms: number): Promise<void> { return new Promise((r) => setTimeout(r, ms)); }
function die(msg: string): never { console.error(`conformance:mutants: ${msg}`); process.exit(2); }
