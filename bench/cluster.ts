// Reserve throughput on a local Redis Cluster (3 masters on loopback, test/helpers/redisCluster.ts)
// against one redis-server, for two shapes: every client on one shared tenant (a single hash
// slot: one master does all the ledger work) and clients spread over independent tenants
// (their slots spread over the masters). `npm run bench:cluster [-- --clients 50 --duration-ms 10000]`.
// Prints a Markdown table; the README's "Redis Cluster" section quotes it.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { Redis } from 'ioredis';
import { headerLines, makeClient, waitReady } from './httpClient';
import { startLocalCluster } from '../test/helpers/redisCluster';
import { freePort, startRedisServer } from '../src/store/redisProcess';

const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const o = new Command()
  .option('--clients <n>', 'closed-loop clients', '50')
  .option('--duration-ms <n>', 'measured window per run', '10000')
  .option('--warmup-ms <n>', 'warm-up per run', '2000')
  .option('--tenants <n>', 'independent tenants', '50')
  .option('--masters <n>', 'cluster masters', '3')
  .option('--server-processes <n>', 'CYCLES_HTTP_PROCESSES', '1')
  .option('--targets <list>', 'single,cluster', 'single,cluster')
  .parse()
  .opts<{ clients: string; durationMs: string; warmupMs: string; tenants: string; masters: string; serverProcesses: string; targets: string }>();
const CLIENTS = Number(o.clients);
const TENANTS = Number(o.tenants);

interface Sample { calls: number; cpuS: number }

/** EVALSHA/EVAL calls and CPU seconds (user + sys, main thread and children) of one node. */
async function sample(port: number): Promise<Sample> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
  try {
    await c.connect();
    const stats = await c.info('commandstats');
    const cpu = await c.info('cpu');
    let calls = 0;
    for (const m of stats.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)) calls += Number(m[1]);
    const num = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(cpu)?.[1] ?? 0);
    return { calls, cpuS: num('used_cpu_user') + num('used_cpu_sys') };
  } finally {
    c.disconnect();
  }
}

interface Result { shape: string; rps: number; errors: number; perNode: { share: number; cpuUsPerReserve: number }[] }

async function runTarget(target: string, redisUrl: string, cluster: boolean, ports: number[]): Promise<Result[]> {
  const adminKey = `bench-admin-${randomBytes(12).toString('hex')}`;
  const [rp, ap] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env, REDIS_URL: redisUrl, REDIS_CLUSTER: cluster ? '1' : '0', ADMIN_API_KEY: adminKey,
    CYCLES_RUNTIME_PORT: String(rp), CYCLES_ADMIN_PORT: String(ap), CYCLES_LOG_LEVEL: 'warn', NODE_ENV: 'production',
    CYCLES_VALIDATE_RESPONSES: '0', CYCLES_HTTP_PROCESSES: o.serverProcesses, CYCLES_WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
  };
  delete env.CYCLES_FEATURES;
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'cycles.mjs'), 'serve'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-8000); });
  child.stderr!.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-8000); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    const runtime = `http://127.0.0.1:${rp}`;
    const admin = `http://127.0.0.1:${ap}`;
    await waitReady(`${runtime}/readyz`, 180_000, child, () => log);
    await waitReady(`${admin}/readyz`, 60_000, child, () => log);
    const adminCall = async (p: string, body: unknown) => {
      const r = await fetch(admin + p, { method: 'POST', headers: { 'X-Admin-API-Key': adminKey, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (r.status >= 300) throw new Error(`${p} → ${r.status} ${await r.text()}`);
      return r.json() as Promise<Record<string, unknown>>;
    };
    const tag = randomBytes(2).toString('hex');
    const tenants: { id: string; key: string }[] = [];
    for (let i = 0; i < TENANTS; i++) {
      const id = `cb-${tag}-${i}`;
      await adminCall('/v1/admin/tenants', { tenant_id: id, name: id, max_reservation_ttl_ms: 3_600_000 });
      await adminCall('/v1/admin/budgets', { tenant_id: id, scope: `tenant:${id}`, unit: 'TOKENS', allocated: { unit: 'TOKENS', amount: 1e15 } });
      const k = await adminCall('/v1/admin/api-keys', { tenant_id: id, name: 'bench', permissions: ['reservations:create', 'reservations:commit'] });
      tenants.push({ id, key: k.key_secret as string });
    }
    const out: Result[] = [];
    for (const shape of ['shared', 'independent']) {
      const client = makeClient(runtime, CLIENTS, 30_000);
      const pick = (i: number) => tenants[shape === 'shared' ? 0 : i % tenants.length]!;
      const heads = Array.from({ length: CLIENTS }, (_, i) => headerLines({ 'X-Cycles-API-Key': pick(i).key }));
      const tails = Array.from({ length: CLIENTS }, (_, i) => JSON.stringify({
        subject: { tenant: pick(i).id, agent: `a${i}` }, action: { kind: 'llm.completion', name: 'bench' },
        estimate: { unit: 'TOKENS', amount: 1 }, ttl_ms: 600_000,
      }).slice(1));
      let seq = 0;
      let ok = 0;
      let errors = 0;
      let measuring = false;
      let stop = false;
      const loop = async (i: number) => {
        while (!stop) {
          const r = await client.request(i, 'POST', '/v1/reservations', heads[i]!, `{"idempotency_key":"${shape}${++seq}-${i}",${tails[i]}`, false);
          if (!measuring) continue;
          if (r.status === 200) ok++; else errors++;
        }
      };
      const loops = Array.from({ length: CLIENTS }, (_, i) => loop(i));
      await new Promise((r) => setTimeout(r, Number(o.warmupMs)));
      const before = await Promise.all(ports.map(sample));
      measuring = true;
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, Number(o.durationMs)));
      measuring = false;
      const after = await Promise.all(ports.map(sample));
      const secs = (performance.now() - t0) / 1000;
      stop = true;
      await Promise.all(loops);
      client.close();
      const calls = after.map((a, i) => a.calls - before[i]!.calls);
      const total = calls.reduce((x, y) => x + y, 0) || 1;
      const perNode = after.map((a, i) => ({ share: calls[i]! / total, cpuUsPerReserve: calls[i]! ? ((a.cpuS - before[i]!.cpuS) * 1e6) / calls[i]! : 0 }));
      out.push({ shape, rps: ok / secs, errors, perNode });
      console.error(`${target} ${shape}: ${(ok / secs).toFixed(0)} reserves/s (${errors} errors); per node ${perNode.map((n) => `${(n.share * 100).toFixed(0)} % at ${n.cpuUsPerReserve.toFixed(0)} µs`).join(', ')}`);
    }
    return out;
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const row = (name: string, r: Result) => `| ${name} | ${r.shape} | ${r.rps.toFixed(0)} | ${r.errors} | ${r.perNode.map((n) => `${(n.share * 100).toFixed(0)} %`).join(' / ')} | ${r.perNode.filter((n) => n.share > 0.05).map((n) => n.cpuUsPerReserve.toFixed(0)).join(' / ')} |`;
const rows: string[] = [];
for (const target of o.targets.split(',')) {
  if (target === 'single') {
    const dir = mkdtempSync(path.join(tmpdir(), 'cycles-bench-'));
    const srv = await startRedisServer({ dataDir: dir, port: 0, appendonly: false });
    try {
      for (const r of await runTarget('single', srv.url, false, [srv.port])) rows.push(row('one redis-server', r));
    } finally {
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  } else {
    const cluster = await startLocalCluster({ masters: Number(o.masters), replicas: 0 });
    try {
      const seed = cluster.seeds.split(',')[0]!;
      for (const r of await runTarget('cluster', `redis://${seed}`, true, cluster.nodes.map((n) => n.port))) rows.push(row(`cluster, ${o.masters} masters`, r));
    } finally {
      await cluster.stop();
    }
  }
}
console.log(`${CLIENTS} clients, ${o.durationMs} ms per run, reserve only, ${TENANTS} independent tenants, CYCLES_HTTP_PROCESSES=${o.serverProcesses}, AOF off on both\n`);
console.log('| Redis | tenants | reserves/s | errors | scripts per node | Redis CPU µs per script (busy nodes) |\n|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
