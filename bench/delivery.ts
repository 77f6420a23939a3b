// Webhook delivery benchmark: `npx tsx bench/delivery.ts [-- --subs 10 --rate 120 --load-clients 20 --duration-ms 10000]`.
//
// Setup as bench/run.ts: a private redis-server (AOF, everysec) and the server as a CHILD
// process (production mode, response validation off); a fast receiver as a third child
// process (node:http, answers 200 at once) that measures commit-to-receipt latency as
// receipt time − Event.timestamp (the commit script's Redis clock; same host).
// Load: `--load-clients` closed loops of reserve → commit with actual == estimate (no
// event: pure ledger load), plus a paced stream of `--rate` reserve → commit per second
// with actual > estimate, each producing one reservation.commit_overage event that all
// `--subs` subscriptions select. Measured over the window: deliveries/s received, the
// latency percentiles, the ledger's own throughput; afterwards every event must have
// reached every subscription (none lost; duplicates counted).
// The result is upserted into bench/RESULTS.md between <!-- delivery --> markers.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { freePort, startRedisServer } from '../src/store/redisProcess';
import { Redis } from 'ioredis';
import { REPO_ROOT } from '../src/config';
import { keys } from '../src/store/keys';
import { headerLines, makeClient, waitReady } from './httpClient';

const program = new Command()
  .option('--subs <n>', 'active subscriptions (all select every event)', '10')
  .option('--rate <n>', 'events per second (reserve→commit with overage)', '120')
  .option('--load-clients <n>', 'closed-loop reserve→commit clients (no events) for ledger load', '20')
  .option('--duration-ms <n>', 'measured window', '10000')
  .option('--warmup-ms <n>', 'warm-up before the window', '2000')
  .option('--server-node-args <args>', 'extra node flags for the server child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"', '')
  .option('--worker-process', 'run the background workers (relay, dispatcher) in a second process (`--plane worker`), the planes in the first')
  .option('--env <json>', 'extra server environment, e.g. {"CYCLES_WEBHOOK_CONCURRENCY":"128"}', '{}')
  .option('--out <file>', 'results file (section upserted)', path.join(REPO_ROOT, 'bench', 'RESULTS.md'))
  .parse();
const o = program.opts<{ workerProcess?: boolean; serverNodeArgs: string; subs: string; rate: string; loadClients: string; durationMs: string; warmupMs: string; env: string; out: string }>();
const SUBS = Number(o.subs);
const RATE = Number(o.rate);
const LOAD_CLIENTS = Number(o.loadClients);
const DURATION_MS = Number(o.durationMs);
const WARMUP_MS = Number(o.warmupMs);
const UNIT = 'USD_MICROCENTS';

const RECEIVER_SRC = `
const http = require('node:http');
let lat = [], count = 0, windowOn = false, first = 0, last = 0;
const seen = new Map();
let dups = 0;
const s = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'GET') {
      lat.sort((a, b) => a - b);
      const q = (p) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ total: seen.size, receipts: count, inWindow: lat.length, dups, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: lat.length ? lat[lat.length - 1] : null, first, last }));
      return;
    }
    if (req.url === '/window/on') { windowOn = true; lat = []; first = 0; res.end('ok'); return; }
    if (req.url === '/window/off') { windowOn = false; res.end('ok'); return; }
    const now = Date.now();
    count++;
    const key = req.url + '|' + req.headers['x-cycles-event-id'];
    const n = (seen.get(key) || 0) + 1;
    seen.set(key, n);
    if (n > 1) dups++;
    if (windowOn) {
      const ts = /"timestamp":"([^"]+)"/.exec(Buffer.concat(chunks).toString('utf8'));
      if (ts) lat.push(now - Date.parse(ts[1]));
      if (!first) first = now;
      last = now;
    }
    res.writeHead(200, { 'Content-Length': '2' });
    res.end('ok');
  });
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


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cycles-dlv-bench-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dataDir, { recursive: true, force: true })];
  const stopAll = async () => { for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {}); };
  process.on('SIGINT', () => { void stopAll().then(() => process.exit(130)); });
  try {
    const redisSrv = await startRedisServer({ dataDir: path.join(dataDir, 'redis'), port: 0, appendonly: true, appendfsync: 'everysec' });
    cleanups.push(() => redisSrv.stop());
    const adminKey = `bench-admin-${randomBytes(12).toString('hex')}`;
    const [rp, ap, xp] = [await freePort(), await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = {
      ...process.env, REDIS_URL: redisSrv.url, ADMIN_API_KEY: adminKey, CYCLES_RUNTIME_PORT: String(rp),
      CYCLES_ADMIN_PORT: String(ap), CYCLES_LOG_LEVEL: 'warn', NODE_ENV: 'production', CYCLES_VALIDATE_RESPONSES: '0',
      CYCLES_WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'), CYCLES_DATA_DIR: dataDir,
      ...(JSON.parse(o.env) as Record<string, string>),
    };
    delete env.CYCLES_FEATURES;
    const planes = o.workerProcess ? ['--plane', 'runtime,admin'] : [];
    const srv = spawnChild([...o.serverNodeArgs.split(' ').filter(Boolean), path.join(REPO_ROOT, 'bin', 'cycles.mjs'), 'serve', ...planes], env);
    cleanups.push(async () => { srv.child.kill('SIGTERM'); await srv.exited; });
    if (o.workerProcess) {
      const wrk = spawnChild([...o.serverNodeArgs.split(' ').filter(Boolean), path.join(REPO_ROOT, 'bin', 'cycles.mjs'), 'serve', '--plane', 'worker'], env);
      cleanups.push(async () => { wrk.child.kill('SIGTERM'); await wrk.exited; });
    }
    const rcv = spawnChild(['-e', RECEIVER_SRC], { ...process.env, PORT: String(xp) });
    cleanups.push(async () => { rcv.child.kill('SIGTERM'); await rcv.exited; });
    const runtimeUrl = `http://127.0.0.1:${rp}`;
    const adminUrl = `http://127.0.0.1:${ap}`;
    const rcvUrl = `http://127.0.0.1:${xp}`;
    await waitReady(`${runtimeUrl}/readyz`, 180_000, srv.child, srv.log);
    await waitReady(`${adminUrl}/readyz`, 60_000, srv.child, srv.log);
    await waitReady(`${rcvUrl}/`, 30_000, rcv.child, rcv.log);

    const adminCall = async (method: string, p: string, body?: unknown) => {
      const r = await fetch(adminUrl + p, { method, headers: { 'X-Admin-API-Key': adminKey, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      if (r.status >= 300) throw new Error(`${method} ${p} → ${r.status} ${text}`);
      return text ? JSON.parse(text) : undefined;
    };
    const tenant = `dlvbench-${randomBytes(2).toString('hex')}`;
    await adminCall('PUT', '/v1/admin/config/webhook-security', { blocked_cidr_ranges: ['10.0.0.0/8'], allow_http: true });
    await adminCall('POST', '/v1/admin/tenants', { tenant_id: tenant, name: tenant, max_reservation_ttl_ms: 3_600_000, default_commit_overage_policy: 'ALLOW_IF_AVAILABLE' });
    await adminCall('POST', '/v1/admin/budgets', { tenant_id: tenant, scope: `tenant:${tenant}`, unit: UNIT, allocated: { unit: UNIT, amount: 10 ** 15 } });
    const key = (await adminCall('POST', '/v1/admin/api-keys', { tenant_id: tenant, name: 'bench', permissions: ['reservations:create', 'reservations:commit'] })).key_secret as string;
    for (let i = 0; i < SUBS; i++) {
      await adminCall('POST', `/v1/admin/webhooks?tenant_id=${tenant}`, { url: `${rcvUrl}/s${i}`, event_types: ['reservation.commit_overage'] });
    }

    const headers = headerLines({ 'X-Cycles-API-Key': key });
    const client = makeClient(runtimeUrl, LOAD_CLIENTS + 64, 30_000);
    let seq = 0;
    const subject = JSON.stringify({ tenant }).slice(0, -1);
    const pair = async (conn: number, actual: number): Promise<boolean> => {
      const rb = `{"idempotency_key":"r${++seq}","subject":${subject}},"action":{"kind":"llm.completion","name":"bench"},"estimate":{"unit":"${UNIT}","amount":1},"ttl_ms":600000}`;
      const r = await client.request(conn, 'POST', '/v1/reservations', headers, rb, true);
      if (r.status !== 200) throw new Error(`reserve → ${r.status} ${r.body.slice(0, 200)}`);
      const id = /"reservation_id":"([^"]+)"/.exec(r.body)![1];
      const cb = `{"actual":{"unit":"${UNIT}","amount":${actual}},"idempotency_key":"c${++seq}"}`;
      const c = await client.request(conn, 'POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, headers, cb, false);
      if (c.status !== 200) throw new Error(`commit → ${c.status} ${c.body.slice(0, 200)}`);
      return true;
    };

    let stop = false;
    let ledgerOps = 0;
    let countLedger = false;
    const loadLoops = Array.from({ length: LOAD_CLIENTS }, async (_, i) => {
      while (!stop) { await pair(i, 1); if (countLedger) ledgerOps++; }
    });
    // paced event stream on its own connections (up to 64 in flight)
    let events = 0;
    let inFlight = 0;
    const free: number[] = Array.from({ length: 64 }, (_, i) => LOAD_CLIENTS + i);
    const t0 = performance.now();
    const pacer = (async () => {
      while (!stop) {
        const due = t0 + (events + 1) * (1000 / RATE);
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        if (free.length === 0) { await sleep(1); continue; }
        const conn = free.pop()!;
        events++;
        inFlight++;
        void pair(conn, 2).finally(() => { inFlight--; free.push(conn); });
      }
    })();

    await sleep(WARMUP_MS);
    await fetch(`${rcvUrl}/window/on`, { method: 'POST' });
    countLedger = true;
    const w0 = Date.now();
    const cpu0 = cpuMs(srv.child.pid);
    const received0 = ((await (await fetch(`${rcvUrl}/`)).json()) as { total: number }).total;
    await sleep(DURATION_MS);
    await fetch(`${rcvUrl}/window/off`, { method: 'POST' });
    countLedger = false;
    const windowMs = Date.now() - w0;
    const stats = await (await fetch(`${rcvUrl}/`)).json() as { total: number; receipts: number; inWindow: number; dups: number; p50: number; p95: number; p99: number; max: number };
    stop = true;
    await Promise.all([...loadLoops, pacer]);
    while (inFlight > 0) await sleep(10);
    // drain: every event to every subscription
    const expected = events * SUBS;
    const drainStart = Date.now();
    let fin = stats;
    while (Date.now() - drainStart < 60_000) {
      fin = await (await fetch(`${rcvUrl}/`)).json() as typeof stats;
      if (fin.total >= expected) break;
      await sleep(100);
    }
    client.close();

    // where the time goes, from a sample of delivery rows: event → row (relay + fan-out) and
    // row → attempt finished (queue + send)
    const rdb = new Redis(redisSrv.url);
    const split = { fanout: [] as number[], send: [] as number[], rt: [] as number[] };
    let cursor = '0';
    do {
      const [next, found] = await rdb.scan(cursor, 'MATCH', `${keys.webhookDelivery('*', 'dlv_')}*`, 'COUNT', 1000);
      cursor = next;
      const rows = await Promise.all(found.map((k) => rdb.hmget(k, 'event_id', 'created_ms', 'attempted_ms', 'response_time_ms')));
      for (const [eventId, created, attempted, rt] of rows) {
        const ms = Number(/^evt_(\d+)_/.exec(eventId ?? '')?.[1]);
        if (!ms || !created || !attempted) continue;
        split.fanout.push(Number(created) - ms);
        split.send.push(Number(attempted) + Number(rt ?? 0) - Number(created));
        split.rt.push(Number(rt ?? 0));
      }
    } while (cursor !== '0' && split.fanout.length < 20_000);
    rdb.disconnect();
    const pct = (xs: number[], q: number) => { const a = [...xs].sort((x, y) => x - y); return a.length ? a[Math.min(a.length - 1, Math.floor(q * a.length))] : NaN; };
    // CPU of the server process from the window's start to the end of the drain, per
    // delivery received meanwhile: less sensitive to a busy machine than deliveries/s
    const cpuNote = `server CPU ${((cpuMs(srv.child.pid) - cpu0) / Math.max(1, fin.total - received0)).toFixed(3)} ms per delivery (window + drain, ${fin.total - received0} deliveries)`;
    console.error(cpuNote);
    const splitNote = `queued p50 ${pct(split.fanout, 0.5)} / p99 ${pct(split.fanout, 0.99)} ms; answered p50 ${pct(split.send, 0.5)} / p99 ${pct(split.send, 0.99)} ms (POST p50 ${pct(split.rt, 0.5)} / p99 ${pct(split.rt, 0.99)})`;
    console.error(splitNote);

    const deliveriesPerS = stats.inWindow / (windowMs / 1000);
    const layout = `${o.workerProcess ? 'planes + worker process' : 'one process'}${o.env !== '{}' ? ` ${o.env.replace(/[{}"]/g, '').replace(/:/g, '=')}` : ''}`;
    const when = `${new Date().toISOString().slice(0, 16)}Z, load ${loadavg()[0].toFixed(1)}`;
    const line = `| ${layout} | ${SUBS} | ${RATE} | ${LOAD_CLIENTS} | ${deliveriesPerS.toFixed(0)} | ${stats.p50} | ${stats.p95} | ${stats.p99} | ${stats.max} | ${(ledgerOps / (windowMs / 1000)).toFixed(0)} | ${fin.total}/${expected} | ${fin.dups} | ${splitNote} | ${when} |`;
    console.log(line);
    // The section keeps one row per (layout, subscriptions, rate, ledger clients); a new run
    // replaces its own row.
    const prev = existsSync(o.out) ? readFileSync(o.out, 'utf8') : '';
    const re = /<!-- delivery -->[\s\S]*<!-- \/delivery -->/;
    const rowKey = (l: string) => l.split('|').slice(1, 5).map((x) => x.trim()).join('|');
    const old = (re.exec(prev)?.[0] ?? '').split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| layout') && rowKey(l) !== rowKey(line));
    const md = [
      '<!-- delivery -->',
      '## Webhook delivery (`npm run bench:delivery`)',
      '',
      `${cpus().length} × ${cpus()[0]?.model ?? '?'}; window ${DURATION_MS} ms after ${WARMUP_MS} ms warm-up. A receiver process answering 200 at once; every event is a reservation.commit_overage selected by every subscription; ledger load = closed-loop reserve→commit clients whose commits produce no event. Latency = receipt time − Event.timestamp (commit). The split comes from the delivery rows of the whole run: event → queued (relay + fan-out), queued → answered (queue wait + POST). Each subscription's queue keeps up to \`CYCLES_WEBHOOK_SUBSCRIPTION_CONCURRENCY\` POSTs in flight (default 4): sends start in event order, arrivals may differ; with 1 (strict arrival order) a queue's throughput is bounded by the POST round trip on a busy event loop.`,
      '',
      '| layout | subscriptions | events/s | ledger clients | deliveries/s received | commit→receipt p50 ms | p95 ms | p99 ms | max ms | ledger reserve→commit/s | delivered / expected | duplicates | split | run |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
      ...old,
      line,
      '<!-- /delivery -->',
    ].join('\n');
    writeFileSync(o.out, re.test(prev) ? prev.replace(re, md) : `${prev.trimEnd()}\n\n${md}\n`);
    if (fin.total < expected) console.error(`LOST: ${expected - fin.total} deliveries not received within 60 s after the load`);
  } finally {
    await stopAll();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });

/** CPU time (user + system) of a process so far, from /proc (Linux); NaN elsewhere. */
function cpuMs(pid: number | undefined): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}
