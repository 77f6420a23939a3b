// A/B comparison of two server builds or settings: `npm run bench:ab -- [options]`.
//
// On a shared VM throughput drifts by ±30% within minutes, so comparing two separate
// `npm run bench` runs says little about a change worth 5–10%. Here both servers run at the
// same time on ONE private redis-server (AOF everysec) and take turns: short windows,
// alternating A/B then B/A, and the medians per side are compared. Each side is a
// `cycles serve` child; A and B differ by environment (--a-env/--b-env, JSON objects, e.g.
// '{"CYCLES_HTTP_PROCESSES":"2"}') and/or by checkout (--a-root/--b-root: another worktree
// with its own `npm run codegen` done). CPU per operation is read from /proc for each
// server's process tree and for redis-server.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { freePort, startRedisServer } from '../src/store/redisProcess';
import { REPO_ROOT } from '../src/config';
import { headerLines, makeClient } from './httpClient';

const o = new Command()
  .option('--a-env <json>', 'extra environment of server A', '{}')
  .option('--b-env <json>', 'extra environment of server B', '{}')
  .option('--a-root <dir>', 'checkout server A runs from', REPO_ROOT)
  .option('--b-root <dir>', 'checkout server B runs from', REPO_ROOT)
  .option('--a-args <args>', 'extra `cycles serve` arguments of server A, space-separated (e.g. "--plane runtime,admin")', '')
  .option('--b-args <args>', 'extra `cycles serve` arguments of server B', '')
  .option('--mode <m>', 'reserve | pair', 'pair')
  .option('--clients <n>', 'closed-loop clients', '50')
  .option('--window-ms <n>', 'length of one measured window', '3000')
  .option('--rounds <n>', 'windows per side', '8')
  .option('--no-floor', 'skip the bare node:http floor (a fixed JSON answer, measured in the same rounds)')
  .parse()
  .opts<{ aEnv: string; bEnv: string; aRoot: string; bRoot: string; aArgs: string; bArgs: string; mode: string; clients: string; windowMs: string; rounds: string; floor: boolean }>();
const CLIENTS = Number(o.clients);
const WINDOW_MS = Number(o.windowMs);
const ROUNDS = Number(o.rounds);
const UNIT = 'USD_MICROCENTS';

/** CPU seconds of a process and its node children (cluster workers). */
function cpuSeconds(pid: number): number {
  const ticks = (p: string) => {
    const s = readFileSync(`/proc/${p}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  };
  let t = ticks(String(pid));
  for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
    if (readFileSync(`/proc/${c}/stat`, 'utf8').includes('(node)')) t += ticks(c);
  }
  return t / 100;
}

interface Side { name: string; child: ChildProcess; runtimeUrl: string; adminUrl: string }

/** The floor: a bare node:http server answering every request with a fixed reserve-shaped
 *  JSON body (bench/run.ts's baseline), driven by the same client in the same rounds. */
const FLOOR_SRC = `
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

async function startFloor(): Promise<Side> {
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', FLOOR_SRC], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PORT: String(port) } });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
    child.once('exit', () => reject(new Error('floor server exited')));
  });
  const url = `http://127.0.0.1:${port}`;
  return { name: 'bare node:http (floor)', child, runtimeUrl: url, adminUrl: url };
}
interface Window { throughput: number; serverUs: number; redisUs: number; p99: number }

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'cycles-ab-'));
  const redis = await startRedisServer({ dataDir: path.join(dir, 'redis'), port: 0, appendonly: true, appendfsync: 'everysec' });
  const adminKey = `ab-admin-${randomBytes(16).toString('hex')}`;
  // production refuses to start without it (DV13); a checkout older than webhooks ignores it
  const webhookKey = randomBytes(32).toString('base64');
  const sides: Side[] = [];
  try {
    for (const [name, root, env, args] of [['A', o.aRoot, o.aEnv, o.aArgs], ['B', o.bRoot, o.bEnv, o.bArgs]] as const) {
      const [rp, ap] = [await freePort(), await freePort()];
      const extra = args.split(' ').filter(Boolean);
      const child = spawn(process.execPath, [path.join(root, 'bin', 'cycles.mjs'), 'serve', ...extra], {
        cwd: root,
        stdio: ['ignore', 'ignore', 'inherit'],
        env: {
          ...process.env, ...JSON.parse(env) as Record<string, string>, REDIS_URL: redis.url, ADMIN_API_KEY: adminKey,
          CYCLES_RUNTIME_PORT: String(rp), CYCLES_ADMIN_PORT: String(ap), CYCLES_LOG_LEVEL: 'warn',
          NODE_ENV: 'production', CYCLES_VALIDATE_RESPONSES: '0', CYCLES_WEBHOOK_SECRET_KEY: webhookKey,
        },
      });
      sides.push({ name, child, runtimeUrl: `http://127.0.0.1:${rp}`, adminUrl: `http://127.0.0.1:${ap}` });
    }
    // both planes: they start one after the other
    for (const s of sides) {
      for (const url of [s.runtimeUrl, s.adminUrl]) {
        for (let i = 0; ; i++) {
          if (s.child.exitCode !== null) throw new Error(`server ${s.name} exited`);
          try { if ((await fetch(`${url}/readyz`)).status === 200) break; } catch { /* not yet */ }
          if (i > 900) throw new Error(`server ${s.name} not ready`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    }

    const admin = async (p: string, body: unknown) => {
      const r = await fetch(`${sides[0].adminUrl}${p}`, { method: 'POST', headers: { 'X-Admin-API-Key': adminKey, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      if (r.status >= 300) throw new Error(`${p} → ${r.status} ${await r.text()}`);
      return r.json() as Promise<Record<string, unknown>>;
    };
    const tenant = `ab-${randomBytes(3).toString('hex')}`;
    await admin('/v1/admin/tenants', { tenant_id: tenant, name: tenant, max_reservation_ttl_ms: 3_600_000 });
    await admin('/v1/admin/budgets', { tenant_id: tenant, scope: `tenant:${tenant}`, unit: UNIT, allocated: { unit: UNIT, amount: 1e15 } });
    const key = (await admin('/v1/admin/api-keys', { tenant_id: tenant, name: 'ab', permissions: ['reservations:create', 'reservations:commit'] })).key_secret as string;
    const headers = headerLines({ 'X-Cycles-API-Key': key });
    const tail = JSON.stringify({ subject: { tenant }, action: { kind: 'llm.completion', name: 'ab' }, estimate: { unit: UNIT, amount: 2 }, ttl_ms: 600_000 }).slice(1);
    let seq = 0;

    const run = async (s: Side): Promise<Window> => {
      const client = makeClient(s.runtimeUrl, CLIENTS);
      const lat: number[] = [];
      let ok = 0;
      const c0 = cpuSeconds(s.child.pid!);
      const r0 = cpuSeconds(redis.pid);
      const end = performance.now() + WINDOW_MS;
      await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
        while (performance.now() < end) {
          const t0 = performance.now();
          const r = await client.request(i, 'POST', '/v1/reservations', headers, `{"idempotency_key":"k${++seq}",${tail}`, o.mode === 'pair');
          if (r.status !== 200) throw new Error(`reserve → ${r.status} ${r.body}`);
          if (o.mode === 'pair') {
            const id = /"reservation_id":"([^"]+)"/.exec(r.body)![1];
            const c = await client.request(i, 'POST', `/v1/reservations/${id}/commit`, headers, `{"actual":{"unit":"${UNIT}","amount":1},"idempotency_key":"c${++seq}"}`, false);
            if (c.status !== 200) throw new Error(`commit → ${c.status} ${c.body}`);
          }
          ok++;
          lat.push(performance.now() - t0);
        }
      }));
      const c1 = cpuSeconds(s.child.pid!);
      const r1 = cpuSeconds(redis.pid);
      client.close();
      lat.sort((a, b) => a - b);
      return { throughput: ok / (WINDOW_MS / 1000), serverUs: ((c1 - c0) / ok) * 1e6, redisUs: ((r1 - r0) / ok) * 1e6, p99: lat[Math.floor(lat.length * 0.99)] };
    };

    const floor = o.floor ? await startFloor() : undefined;
    if (floor) sides.push(floor);
    for (const s of sides) await run(s); // warm-up
    const results = new Map<string, Window[]>(sides.map((s) => [s.name, []]));
    for (let i = 0; i < ROUNDS; i++) {
      for (const s of i % 2 === 0 ? sides : [...sides].reverse()) results.get(s.name)!.push(await run(s));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(`${o.mode}, ${CLIENTS} clients, ${ROUNDS} × ${WINDOW_MS} ms per side, medians:`);
    for (const [name, ws] of results) {
      console.log(`${name}: ${median(ws.map((w) => w.throughput)).toFixed(0)}/s  server ${median(ws.map((w) => w.serverUs)).toFixed(0)} µs/op  redis ${median(ws.map((w) => w.redisUs)).toFixed(0)} µs/op  p99 ${median(ws.map((w) => w.p99)).toFixed(1)} ms`);
    }
    const tput = (n: string) => median(results.get(n)!.map((w) => w.throughput));
    console.log(`B / A: ${((tput('B') / tput('A')) * 100).toFixed(1)} % of A's throughput`);
  } finally {
    for (const s of sides) s.child.kill('SIGTERM');
    await Promise.all(sides.map((s) => new Promise((r) => (s.child.exitCode !== null ? r(null) : s.child.once('exit', r)))));
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
