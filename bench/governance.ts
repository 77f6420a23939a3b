// Cost of v0.1.26 governance on the reserve path: `npm run bench:governance [-- --clients 50 --window-ms 3000 --rounds 5]`.
//
// Setup as bench/ab.ts: ONE private redis-server (AOF, appendfsync everysec) shared by two
// `cycles serve` children (NODE_ENV=production, log level warn, response validation off),
// one with CYCLES_FEATURES=v0.1.26 and one without, plus the bare node:http server of
// bench/run.ts as the floor. The arms (--arms):
//   bare  the bare node:http server (fixed JSON body): what this client and box can do
//   off   feature off (v0.1.25 path), tenant without policies
//   on    feature on, tenant without policies (fixed cost of the flag: merged spec, the
//         governance params, the registry)
//   pol   feature on, a policy on the scope without v0.1.26 fields (policy selection only)
//   acl   feature on, a policy with an access list only that does not deny the kind (lists are
//         decided in TS; nothing reaches the script)
//   gov   feature on, the policy under test: two per-kind quotas on the benchmarked kind
//         (per_hour_tumbling, per_day_tumbling) and one risk-class quota on its class
//         (per_hour_tumbling): three counters read and written per reserve
// Every arm but bare has its own tenant with one tenant budget; client i reserves as agent
// a<i>, so the quota counters are per agent scope and none comes near max_calls (100000 by
// schema): a denied request fails the run, and afterwards the counters must add up to the
// successful governed reserves and the budgets to the successful operations.
//
// On a shared VM throughput drifts ±30% within minutes, more than the 15% this measures,
// so the arms are not run one after the other: they take turns in short windows (each
// round rotates the order), and each arm is compared with the others of the same round
// (median of the per-round ratios). CPU per operation (server process, redis-server; from
// /proc) is the steadier figure. Both modes: reserve only, and reserve→commit pairs.
// The result is upserted into bench/RESULTS.md between <!-- governance --> markers (a
// <!-- governance-notes --> block inside them is kept across runs).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { Redis } from 'ioredis';
import { freePort, startRedisServer } from '../src/store/redisProcess';
import { keys } from '../src/store/keys';
import { REPO_ROOT } from '../src/config';
import { headerLines, makeClient, waitReady } from './httpClient';

const ARMS = ['bare', 'off', 'on', 'pol', 'acl', 'gov'] as const;
type Arm = typeof ARMS[number];
type Mode = 'reserve' | 'pair';

const o = new Command()
  .option('--clients <n>', 'closed-loop clients, one keep-alive connection each', '50')
  .option('--window-ms <n>', 'one measured window', '3000')
  .option('--rounds <n>', 'measured windows per arm and mode', '5')
  .option('--arms <list>', `arms to run, of ${ARMS.join(',')}`, ARMS.join(','))
  .option('--modes <list>', 'reserve,pair', 'reserve,pair')
  .option('--kind <kind>', 'benchmarked action kind (a built-in)', 'llm.completion')
  .option('--risk-class <rc>', 'risk class of --kind (the risk-class quota is on it)', 'side_effect')
  .option('--out <file>', 'results file (section upserted)', path.join(REPO_ROOT, 'bench', 'RESULTS.md'))
  .option('--no-write', 'print the section, do not touch the results file')
  .parse()
  .opts<{ clients: string; windowMs: string; rounds: string; arms: string; modes: string; kind: string; riskClass: string; out: string; write: boolean }>();
const CLIENTS = Number(o.clients);
const WINDOW_MS = Number(o.windowMs);
const ROUNDS = Number(o.rounds);
const ARMS_RUN = o.arms.split(',').map((a) => a.trim()) as Arm[];
for (const a of ARMS_RUN) if (!ARMS.includes(a)) throw new Error(`--arms: unknown arm ${a}`);
const MODES = o.modes.split(',') as Mode[];
const KIND = o.kind;
const UNIT = 'USD_MICROCENTS';
const ALLOCATED = 1e15;
const RESERVE_AMOUNT = 2;
const COMMIT_AMOUNT = 1;
const QUOTA_MAX = 100_000; // ActionQuota.max_calls maximum
const REQUEST_TIMEOUT_MS = 30_000;
const LOAD_AT_START = loadavg().map((x) => x.toFixed(1)).join(' ');
const COMMAND = `npm run bench:governance${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;

const BASELINE_SRC = `
const http = require('node:http');
const body = JSON.stringify({ decision: 'ALLOW', reservation_id: 'res_baseline', reserved: { unit: 'USD_MICROCENTS', amount: 2 }, affected_scopes: ['tenant:bench'], expires_at_ms: 1 });
const s = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => { res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }); res.end(body); });
});
s.keepAliveTimeout = 65000;
s.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => process.exit(0));
`;

function spawnChild(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => { out = (out + d.toString()).slice(-8000); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, exited, log: () => out };
}

/** CPU seconds (user + system) of a process and its node children; Linux /proc only. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return NaN;
  const ticks = (p: string | number) => {
    const s = readFileSync(`/proc/${p}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  };
  try {
    let t = ticks(pid);
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
      if (readFileSync(`/proc/${c}/stat`, 'utf8').includes('(node)')) t += ticks(c);
    }
    return t / 100;
  } catch { return NaN; }
}

const percentile = (sorted: Float64Array, q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN);
const median = (xs: number[]) => { const a = xs.filter(Number.isFinite).sort((x, y) => x - y); return a.length ? a[Math.floor(a.length / 2)] : NaN; };

interface Target {
  arm: Arm;
  url: string;
  headers: string;
  tenant?: string;
  pid?: number;
  /** per client: the JSON body of a reserve after `{"idempotency_key":"…",` */
  tails: string[];
  okReserves: number;
  okCommits: number;
}
interface Window {
  ops: number; requests: number; throughput: number; serverUs: number; redisUs: number;
  /** Redis INFO commandstats of the window (reset before it): calls and µs per command,
   *  commands run inside scripts included (they are counted under their own names) */
  cmds: Map<string, { calls: number; usec: number }>;
}
interface Tally { windows: Window[]; reqLat: number[]; errors: number; firstError: string }

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'cycles-gov-bench-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const stopAll = async () => { for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {}); };
  process.on('SIGINT', () => { void stopAll().then(() => process.exit(130)); });
  try {
    const redisSrv = await startRedisServer({ dataDir: path.join(dir, 'redis'), port: 0, appendonly: true, appendfsync: 'everysec' });
    cleanups.push(() => redisSrv.stop());
    const redis = new Redis(redisSrv.url);
    cleanups.push(() => { redis.disconnect(); });
    const adminKey = `gov-bench-admin-${randomBytes(12).toString('hex')}`;
    const webhookKey = randomBytes(32).toString('base64');

    const startServer = async (features: boolean) => {
      const [rp, ap] = [await freePort(), await freePort()];
      const env: NodeJS.ProcessEnv = {
        ...process.env, REDIS_URL: redisSrv.url, ADMIN_API_KEY: adminKey, CYCLES_RUNTIME_PORT: String(rp),
        CYCLES_ADMIN_PORT: String(ap), CYCLES_LOG_LEVEL: 'warn', NODE_ENV: 'production', CYCLES_VALIDATE_RESPONSES: '0',
        CYCLES_HTTP_PROCESSES: '1', CYCLES_WEBHOOK_SECRET_KEY: webhookKey,
      };
      delete env.CYCLES_FEATURES;
      if (features) env.CYCLES_FEATURES = 'v0.1.26';
      const srv = spawnChild([path.join(REPO_ROOT, 'bin', 'cycles.mjs'), 'serve'], env);
      cleanups.push(async () => { srv.child.kill('SIGTERM'); await srv.exited; });
      return { srv, runtimeUrl: `http://127.0.0.1:${rp}`, adminUrl: `http://127.0.0.1:${ap}` };
    };
    const needOff = ARMS_RUN.includes('off');
    const needOn = ARMS_RUN.some((a) => a !== 'bare' && a !== 'off');
    const on = await startServer(true); // also serves the admin calls
    const off = needOff ? await startServer(false) : undefined;
    const bp = await freePort();
    const base = spawnChild(['-e', BASELINE_SRC], { ...process.env, PORT: String(bp) });
    cleanups.push(async () => { base.child.kill('SIGTERM'); await base.exited; });
    for (const s of [on, off]) {
      if (!s) continue;
      await waitReady(`${s.runtimeUrl}/readyz`, 180_000, s.srv.child, s.srv.log);
      await waitReady(`${s.adminUrl}/readyz`, 60_000, s.srv.child, s.srv.log);
    }
    await waitReady(`http://127.0.0.1:${bp}/`, 30_000, base.child, base.log);

    const admin = async (p: string, body: unknown) => {
      const r = await fetch(`${on.adminUrl}${p}`, { method: 'POST', headers: { 'X-Admin-API-Key': adminKey, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      if (r.status >= 300) throw new Error(`${p} → ${r.status} ${await r.text()}`);
      return r.json() as Promise<Record<string, unknown>>;
    };
    const runTag = randomBytes(2).toString('hex');
    const policyOf: Partial<Record<Arm, Record<string, unknown>>> = {
      pol: { priority: 1 },
      acl: { denied_action_kinds: ['payment.charge', 'code.deploy', 'db.schema_change'] },
      gov: {
        action_quotas: [
          { action_kind: KIND, max_calls: QUOTA_MAX, window: 'per_hour_tumbling' },
          { action_kind: KIND, max_calls: QUOTA_MAX, window: 'per_day_tumbling' },
        ],
        risk_class_quotas: [{ risk_class: o.riskClass, max_calls: QUOTA_MAX, window: 'per_hour_tumbling' }],
      },
    };
    const targets = new Map<Arm, Target>();
    for (const arm of ARMS_RUN) {
      if (arm === 'bare') {
        targets.set(arm, { arm, url: `http://127.0.0.1:${bp}`, headers: '', pid: base.child.pid, tails: Array(CLIENTS).fill('"x":1}'), okReserves: 0, okCommits: 0 });
        continue;
      }
      const tenant = `gb-${runTag}-${arm}`;
      await admin('/v1/admin/tenants', { tenant_id: tenant, name: tenant, max_reservation_ttl_ms: 3_600_000 });
      await admin('/v1/admin/budgets', { tenant_id: tenant, scope: `tenant:${tenant}`, unit: UNIT, allocated: { unit: UNIT, amount: ALLOCATED } });
      const pol = policyOf[arm];
      if (pol) await admin('/v1/admin/policies', { tenant_id: tenant, name: `bench-${arm}`, scope_pattern: `tenant:${tenant}/*`, ...pol });
      const key = (await admin('/v1/admin/api-keys', { tenant_id: tenant, name: 'bench', permissions: ['reservations:create', 'reservations:commit'] })).key_secret as string;
      const tails = Array.from({ length: CLIENTS }, (_, i) => JSON.stringify({
        subject: { tenant, agent: `a${i}` }, action: { kind: KIND, name: 'bench' },
        estimate: { unit: UNIT, amount: RESERVE_AMOUNT }, ttl_ms: 3_600_000,
      }).slice(1));
      const srv = arm === 'off' ? off! : on;
      targets.set(arm, { arm, url: srv.runtimeUrl, headers: headerLines({ 'X-Cycles-API-Key': key }), tenant, pid: srv.srv.child.pid, tails, okReserves: 0, okCommits: 0 });
    }
    if (!needOn) console.error('(no feature-on arm: the feature-on server only served the admin calls)');
    console.error(`servers ready; arms ${ARMS_RUN.join(',')}, ${CLIENTS} clients, ${ROUNDS} × ${WINDOW_MS} ms per arm and mode`);

    // An AOF rewrite (fork) started by one window must not spill into the next one.
    const quietAof = async () => {
      for (let i = 0; i < 600; i++) {
        const info = await redis.info('persistence');
        if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    let seq = 0;
    /** One window of `mode` against `t`; latencies of single requests go to `tally`. */
    const runWindow = async (t: Target, mode: Mode, tally: Tally | undefined): Promise<Window> => {
      await quietAof();
      const client = makeClient(t.url, CLIENTS, REQUEST_TIMEOUT_MS);
      let ops = 0;
      let requests = 0;
      const lat: number[] = [];
      await redis.config('RESETSTAT');
      const s0 = cpuSeconds(t.pid);
      const r0 = cpuSeconds(redisSrv.pid);
      const start = performance.now();
      const end = start + WINDOW_MS;
      const fail = (msg: string) => {
        if (tally) { tally.errors++; if (!tally.firstError) tally.firstError = msg; }
      };
      await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
        while (performance.now() < end) {
          try {
            let t0 = performance.now();
            const r = await client.request(i, 'POST', '/v1/reservations', t.headers, `{"idempotency_key":"g${++seq}-${i}",${t.tails[i]}`, mode === 'pair');
            lat.push(performance.now() - t0);
            requests++;
            if (r.status !== 200) { fail(`reserve → ${r.status} ${r.body.slice(0, 300)}`); continue; }
            t.okReserves++;
            if (mode === 'pair') {
              const id = /"reservation_id":"([^"]+)"/.exec(r.body)?.[1];
              if (!id) { fail(`reserve → 200 without reservation_id: ${r.body.slice(0, 200)}`); continue; }
              t0 = performance.now();
              const c = await client.request(i, 'POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, t.headers, `{"actual":{"unit":"${UNIT}","amount":${COMMIT_AMOUNT}},"idempotency_key":"c${++seq}-${i}"}`, false);
              lat.push(performance.now() - t0);
              requests++;
              if (c.status !== 200) { fail(`commit → ${c.status} ${c.body.slice(0, 300)}`); continue; }
              t.okCommits++;
            }
            ops++;
          } catch (e) {
            fail(String((e as Error).message));
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      }));
      const secs = (performance.now() - start) / 1000;
      const s1 = cpuSeconds(t.pid);
      const r1 = cpuSeconds(redisSrv.pid);
      const cmds = new Map<string, { calls: number; usec: number }>();
      for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
        if (m[1] !== 'info' && !m[1].startsWith('config')) cmds.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) });
      }
      client.close();
      if (tally) for (const x of lat) tally.reqLat.push(x);
      return { ops, requests, throughput: ops / secs, serverUs: ((s1 - s0) / ops) * 1e6, redisUs: ((r1 - r0) / ops) * 1e6, cmds };
    };

    const results = new Map<string, Tally>(); // `${mode}|${arm}`
    const ratios = new Map<string, number[]>(); // `${mode}|${a}/${b}` per round
    for (const mode of MODES) {
      for (const arm of ARMS_RUN) {
        results.set(`${mode}|${arm}`, { windows: [], reqLat: [], errors: 0, firstError: '' });
        await runWindow(targets.get(arm)!, mode, results.get(`${mode}|${arm}`)); // warm-up: errors count, numbers do not
        results.get(`${mode}|${arm}`)!.reqLat.length = 0;
      }
      for (let round = 0; round < ROUNDS; round++) {
        const order = ARMS_RUN.map((_, j) => ARMS_RUN[(j + round) % ARMS_RUN.length]);
        const thisRound = new Map<Arm, Window>();
        for (const arm of order) {
          const w = await runWindow(targets.get(arm)!, mode, results.get(`${mode}|${arm}`));
          results.get(`${mode}|${arm}`)!.windows.push(w);
          thisRound.set(arm, w);
        }
        for (const a of ARMS_RUN) for (const b of ARMS_RUN) {
          if (a === b) continue;
          const k = `${mode}|${a}/${b}`;
          if (!ratios.has(k)) ratios.set(k, []);
          ratios.get(k)!.push(thisRound.get(a)!.throughput / thisRound.get(b)!.throughput);
        }
        console.error(`${mode} round ${round + 1}/${ROUNDS}: ${order.map((a) => `${a} ${thisRound.get(a)!.throughput.toFixed(0)}/s`).join(', ')}`);
      }
    }

    // ---- checks: nothing denied, counters = governed reserves, budgets = operations
    const checks: string[] = [];
    const denied = [...results.entries()].filter(([, t]) => t.errors > 0);
    checks.push(denied.length === 0
      ? '- PASS no request failed or was denied, in any arm or window (warm-ups included)'
      : `- FAIL requests failed: ${denied.map(([k, t]) => `${k} ${t.errors} (first: ${t.firstError})`).join('; ')}`);
    for (const t of targets.values()) {
      if (!t.tenant) continue;
      const b = await redis.hmget(keys.budget(t.tenant, `tenant:${t.tenant}`, UNIT), 'reserved', 'spent', 'remaining', 'allocated', 'debt');
      const [reserved, spent, remaining, allocated, debt] = b.map((x) => BigInt(x ?? -1));
      const want = { reserved: BigInt((t.okReserves - t.okCommits) * RESERVE_AMOUNT), spent: BigInt(t.okCommits * COMMIT_AMOUNT) };
      const ok = reserved === want.reserved && spent === want.spent && allocated - spent - reserved - debt === remaining;
      checks.push(`- ${ok ? 'PASS' : 'FAIL'} ledger of arm ${t.arm}: ${t.okReserves} reserves, ${t.okCommits} commits → reserved ${reserved} (want ${want.reserved}), spent ${spent} (want ${want.spent})`);
    }
    const gov = targets.get('gov');
    if (gov?.tenant) {
      const prefix = keys.quotaPrefix(gov.tenant);
      const sums: Record<string, { sum: number; max: number; keys: number }> = {};
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        for (const k of batch) {
          const rest = k.slice(prefix.length);
          const cls = rest.includes(':__risk__:') ? `risk ${o.riskClass} per_hour_tumbling` : rest.includes(':per_hour_tumbling:') ? `${KIND} per_hour_tumbling` : `${KIND} per_day_tumbling`;
          const used = Number(await redis.hget(k, 'used'));
          const s = (sums[cls] ??= { sum: 0, max: 0, keys: 0 });
          s.sum += used; s.max = Math.max(s.max, used); s.keys++;
        }
      } while (cursor !== '0');
      const rules = [`${KIND} per_hour_tumbling`, `${KIND} per_day_tumbling`, `risk ${o.riskClass} per_hour_tumbling`];
      const ok = rules.every((r) => sums[r]?.sum === gov.okReserves && sums[r].max < QUOTA_MAX);
      checks.push(`- ${ok ? 'PASS' : 'FAIL'} quota counters of arm gov add up to its ${gov.okReserves} reserves: ${rules.map((r) => `${r} ${sums[r]?.sum ?? 0} over ${sums[r]?.keys ?? 0} keys (max ${sums[r]?.max ?? 0} of ${QUOTA_MAX})`).join('; ')}`);
    }

    // ---- report
    const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '–');
    const label: Record<Arm, string> = {
      bare: 'bare node:http (floor)', off: 'feature off', on: 'feature on, no policy', pol: 'feature on, policy without v0.1.26 rules',
      acl: 'feature on, access lists only', gov: 'feature on, 2 per-kind + 1 risk-class quota',
    };
    /** Sum over the windows of one commandstats field (picked per command), per operation. */
    const perOp = (ws: Window[], pick: (cmd: string) => 'calls' | 'usec' | undefined) => {
      let sum = 0;
      let ops = 0;
      for (const w of ws) {
        ops += w.ops;
        for (const [c, v] of w.cmds) { const k = pick(c); if (k) sum += v[k]; }
      }
      return sum / ops;
    };
    const rows: string[] = [];
    for (const mode of MODES) {
      for (const arm of ARMS_RUN) {
        const t = results.get(`${mode}|${arm}`)!;
        const ws = t.windows;
        const tp = ws.map((w) => w.throughput);
        const lat = Float64Array.from(t.reqLat).sort();
        const reqPerOp = mode === 'pair' ? 2 : 1;
        const rel = (b: Arm) => (ARMS_RUN.includes(b) && b !== arm && arm !== 'bare' ? `${f(median(ratios.get(`${mode}|${arm}/${b}`)!) * 100)}%` : '–');
        rows.push(`| ${mode === 'pair' ? 'reserve→commit' : 'reserve'} | ${arm}: ${label[arm]} | ${ws.reduce((a, w) => a + w.ops, 0)} | ${t.errors} | ${f(median(tp))} (${f(Math.min(...tp))}–${f(Math.max(...tp))}) | ${f(median(tp) * reqPerOp)} | ${f(percentile(lat, 0.5), 2)} | ${f(percentile(lat, 0.99), 2)} | ${rel('off')} | ${rel('on')} | ${f(median(ws.map((w) => w.serverUs)))} | ${arm === 'bare' ? '–' : f(median(ws.map((w) => w.redisUs)))} | ${arm === 'bare' ? '–' : f(perOp(ws, (c) => c !== 'evalsha' && c !== 'eval' ? 'calls' : undefined), 1)} | ${arm === 'bare' ? '–' : f(perOp(ws, (c) => (c === 'evalsha' || c === 'eval' ? 'usec' : undefined)), 1)} |`);
      }
    }
    // Which commands an operation costs, per arm (reserve mode when measured, else pairs):
    // the extra calls of the governed arm are its counters' reads and writes.
    const bdMode: Mode = MODES.includes('reserve') ? 'reserve' : 'pair';
    const bdArms = ARMS_RUN.filter((a) => a !== 'bare');
    // commands of fewer than 0.005 calls per operation in every arm (background workers) are left out
    const cmdNames = [...new Set(bdArms.flatMap((a) => results.get(`${bdMode}|${a}`)!.windows.flatMap((w) => [...w.cmds.keys()])))].sort()
      .filter((c) => bdArms.some((a) => perOp(results.get(`${bdMode}|${a}`)!.windows, (x) => (x === c ? 'calls' : undefined)) >= 0.005));
    const breakdown = [
      `Redis commands per ${bdMode === 'reserve' ? 'reserve' : 'reserve→commit pair'} (INFO commandstats over the measured windows, commands inside scripts counted under their own names; calls/op, and µs/op in brackets where ≥ 0.5; background workers included, commands under 0.005/op left out):`,
      '',
      `| command | ${bdArms.join(' | ')} |`,
      `|---|${bdArms.map(() => '---:').join('|')}|`,
      ...cmdNames.map((c) => `| ${c.replace(/\|/g, '\\|')} | ${bdArms.map((a) => {
        const ws = results.get(`${bdMode}|${a}`)!.windows;
        const calls = perOp(ws, (x) => (x === c ? 'calls' : undefined));
        const us = perOp(ws, (x) => (x === c ? 'usec' : undefined));
        return calls < 0.005 ? '–' : `${f(calls, 2)}${us >= 0.5 ? ` (${f(us, 1)})` : ''}`;
      }).join(' | ')} |`),
    ];
    const target: string[] = [];
    for (const mode of MODES) {
      for (const b of ['on', 'off'] as const) {
        const r = ratios.get(`${mode}|gov/${b}`);
        if (!r) continue;
        const m = median(r);
        const what = mode === 'pair' ? 'reserve→commit pairs/s' : 'reserves/s';
        target.push(`- ${m >= 0.85 ? 'PASS' : 'FAIL'} ${what} with governance within 15% of ${b === 'on' ? 'feature on without a policy' : 'feature off'} at ${CLIENTS} clients: ${f(m * 100)}% (per round: ${r.map((x) => f(x * 100)).join(', ')}%)`);
      }
    }
    const when = new Date().toISOString();
    const section = [
      '<!-- governance -->',
      '## Governance (v0.1.26)',
      '',
      `Command: \`${COMMAND}\` (bench/governance.ts; \`--help\` for the options). Generated ${when} on ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}; load average at start ${LOAD_AT_START}, at end ${loadavg().map((x) => x.toFixed(1)).join(' ')}.`,
      '',
      `Two \`cycles serve\` children (one with CYCLES_FEATURES=v0.1.26, one without; NODE_ENV=production, response validation off, one process each) and the bare node:http floor on ONE redis-server (AOF everysec). ${CLIENTS} closed-loop clients on keep-alive connections; client i reserves \`${KIND}\` (${o.riskClass}) as agent a<i> of the arm's tenant (one tenant budget). The arms take turns: per mode one warm-up window each, then ${ROUNDS} rounds of one ${WINDOW_MS} ms window per arm, the order rotating each round. ops/s = median window (min–max); "vs off" / "vs on" = median over rounds of this arm's ops/s ÷ that arm's in the same round; p50/p99 over every single request (reserve or commit) of the measured windows; CPU µs/op = median window, server process and redis-server. The gov policy: action_quotas ${KIND} × {per_hour_tumbling, per_day_tumbling} and risk_class_quotas ${o.riskClass} per_hour_tumbling, max_calls ${QUOTA_MAX} each; the counters are per agent scope, so none comes near its limit.`,
      '',
      '| mode | arm | ok ops | errors | ops/s | req/s | p50 ms per request | p99 ms per request | vs off | vs on | CPU µs/op server | redis | Redis commands/op | script µs/op |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
      ...target,
      ...checks,
      '',
      ...breakdown,
    ];
    const prev = o.write && existsSync(o.out) ? readFileSync(o.out, 'utf8') : '';
    const re = /<!-- governance -->[\s\S]*<!-- \/governance -->/;
    const notes = /<!-- governance-notes -->[\s\S]*<!-- \/governance-notes -->/.exec(re.exec(prev)?.[0] ?? '')?.[0];
    if (notes) section.push('', notes);
    section.push('<!-- /governance -->');
    const md = section.join('\n');
    console.log(md);
    if (o.write) {
      writeFileSync(o.out, re.test(prev) ? prev.replace(re, md) : `${prev.trimEnd()}\n\n${md}\n`);
      console.error(`wrote ${o.out}`);
    }
    if (denied.length > 0 || checks.some((c) => c.startsWith('- FAIL'))) process.exitCode = 1;
  } finally {
    await stopAll();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
