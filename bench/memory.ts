// Redis footprint benchmark: `npm run bench:memory [-- --pairs 20000 --clients 20]`.
//
// How many bytes of Redis memory one committed reserve→commit pair leaves behind (issue 14,
// Footprint). A private redis-server (no persistence, so no AOF buffers in used_memory) and
// `cycles serve` as a child process (default features, evidence off, the event relay and
// the other workers running as in production); state from the admin API. For each request
// shape: a warm-up (so per-tenant structures that exist once — budget hashes, the index
// sorted sets, the outbox stream, the API-key cache — are already there), then N pairs at C
// closed-loop clients, then `used_memory` after − before, divided by N. Idempotency records
// and reservation hashes are counted while they are alive (the 24 h replay window and the
// retention of finished reservations), which is the steady state that matters for sizing.
//
// The breakdown: every key of the private Redis, classified (reservation hash, reserve
// idempotency record, created-at index, expiry schedule, outbox stream, event indexes, …),
// MEMORY USAGE summed per class and divided by the pairs made (warm-up included), plus
// the encoding of a sample reservation hash. MEMORY USAGE counts the key name, value and
// object header but not the keyspace's own dictionary entry (~24–40 B per key), which is
// why the classes add up to a little less than the used_memory delta.
//
// Shapes: `bench` — the request of `npm run bench` (subject = tenant only, action
// {kind, name}, ttl_ms); `deep` — a four-level subject (tenant/workspace/app/agent with
// budgets at the tenant and the agent), a longer action name, metadata on the reserve and
// metrics on the commit: values that are longer than 64 bytes, as real clients send them;
// `bench-ev` — the `bench` request with CyclesEvidence on (EVIDENCE_SERVER_ID and a random
// signing key): the signed envelopes are counted too (their own class in the breakdown).
//
// Results go to stdout; `--write` upserts them into bench/RESULTS.md between
// `<!-- memory -->` markers (nothing else in that file is touched).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { freePort, startRedisServer } from '../src/store/redisProcess';
import { REPO_ROOT } from '../src/config';
import { headerLines, makeClient, waitReady } from './httpClient';

const o = new Command()
  .option('--pairs <n>', 'committed pairs measured per shape', '20000')
  .option('--warmup <n>', 'pairs before the measurement (not counted in the delta)', '1000')
  .option('--clients <n>', 'closed-loop clients', '20')
  .option('--shapes <list>', 'bench,deep,bench-ev', 'bench,deep')
  .option('--reserve-only <n>', 'also measure N reserves left ACTIVE (bytes per active reservation)', '5000')
  .option('--events <n>', 'also measure N overage commits (one outbox event each) and N createEvent calls', '3000')
  .option('--write', 'upsert the result into bench/RESULTS.md (<!-- memory --> section)', false)
  .option('--out <file>', 'results file for --write', path.join(REPO_ROOT, 'bench', 'RESULTS.md'))
  .option('--label <text>', 'label of this run in the results (e.g. the checkout)', '')
  .option('--root <dir>', 'checkout whose `cycles serve` is measured (e.g. main, for a before/after)', REPO_ROOT)
  .option('--dump', 'print the sample reservation hash and reserve idempotency record (field: value)', false)
  .option('--append', 'with --write: add this run to the existing section instead of replacing it', false)
  .parse()
  .opts<{ pairs: string; warmup: string; clients: string; shapes: string; reserveOnly: string; events: string; write: boolean; dump: boolean; out: string; label: string; root: string; append: boolean }>();
const PAIRS = Number(o.pairs);
const WARMUP = Number(o.warmup);
const CLIENTS = Number(o.clients);
const SHAPES = o.shapes.split(',') as ('bench' | 'deep' | 'bench-ev')[];
const RESERVE_ONLY = Number(o.reserveOnly);
const EVENTS = Number(o.events);
const UNIT = 'USD_MICROCENTS';

interface ShapeResult {
  shape: string;
  pairs: number;
  perPair: number;
  perActive: number;
  classes: { name: string; keys: number; bytes: number; perPair: number }[];
  sample: { encoding: string; bytes: number; fields: number; longest: string };
  idemSample: { bytes: number };
  eventsPerPair: number;
  /** bytes per outbox event once relayed (stream entry + event indexes): commits with an
   *  overage (one reservation.commit_overage each), minus the plain pair */
  perEvent: number;
  /** bytes per createEvent (POST /v1/events): the event record + its idempotency record */
  perCreateEvent: number;
  luaUsPerReserve: number;
}

/** Key class of a key of the private Redis (tenant `t`). */
function classify(k: string): string {
  const m = /^\{t:[^}]*\}:(.*)$/.exec(k);
  if (!m) {
    if (k.startsWith('cycles:events:idx:')) return 'event per-value indexes';
    if (k === 'cycles:events:idx') return 'event global index';
    if (k.startsWith('cycles:audit')) return 'audit log';
    if (k.startsWith('cycles:evidence:')) return 'evidence envelopes';
    if (k === 'cycles:evidence-by-time') return 'evidence index (zset)';
    return 'other (global)';
  }
  const rest = m[1];
  if (rest.startsWith('res:')) return 'reservation hash';
  if (rest.startsWith('idem:reserve:')) return 'reserve idempotency record';
  if (rest.startsWith('idem:')) return 'other idempotency records';
  if (rest === 'res-by-created') return 'created-at index (zset)';
  if (rest === 'res-expiry') return 'expiry schedule (zset)';
  if (rest === 'outbox') return 'outbox stream';
  if (rest.startsWith('sig')) return 'signals';
  if (rest.startsWith('budget')) return 'budgets';
  return 'other (tenant)';
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/** Every key with its MEMORY USAGE, summed per class. */
async function keyClasses(redis: Redis): Promise<Map<string, { keys: number; bytes: number }>> {
  const out = new Map<string, { keys: number; bytes: number }>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    const pipe = redis.pipeline();
    for (const k of batch) pipe.memory('USAGE', k, 'SAMPLES', '0');
    const res = (await pipe.exec()) ?? [];
    batch.forEach((k, i) => {
      const c = classify(k);
      const e = out.get(c) ?? { keys: 0, bytes: 0 };
      e.keys++;
      e.bytes += Number(res[i][1] ?? 0);
      out.set(c, e);
    });
  } while (cursor !== '0');
  return out;
}

async function main() {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cycles-mem-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dataDir, { recursive: true, force: true })];
  const stopAll = async () => { for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {}); };
  process.on('SIGINT', () => { void stopAll().then(() => process.exit(130)); });
  const results: ShapeResult[] = [];
  try {
    for (const shape of SHAPES) {
      // a fresh Redis and server per shape: nothing of one shape is in the other's figures
      const redisSrv = await startRedisServer({ dataDir: path.join(dataDir, `redis-${shape}`), port: 0, appendonly: false });
      cleanups.push(() => redisSrv.stop());
      const redis = new Redis(redisSrv.url);
      cleanups.push(() => { redis.disconnect(); });
      const adminKey = `mem-admin-${randomBytes(12).toString('hex')}`;
      const [rp, ap] = [await freePort(), await freePort()];
      const env: NodeJS.ProcessEnv = {
        ...process.env, REDIS_URL: redisSrv.url, ADMIN_API_KEY: adminKey, CYCLES_RUNTIME_PORT: String(rp),
        CYCLES_ADMIN_PORT: String(ap), CYCLES_LOG_LEVEL: 'warn', NODE_ENV: 'production', CYCLES_VALIDATE_RESPONSES: '0',
        CYCLES_WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
      };
      delete env.CYCLES_FEATURES;
      for (const k of Object.keys(env)) if (k.startsWith('EVIDENCE_')) delete env[k];
      if (shape === 'bench-ev') {
        env.EVIDENCE_SERVER_ID = 'https://cycles.example.com/v1';
        env.EVIDENCE_SIGNING_PRIVATE_KEY_HEX = randomBytes(32).toString('hex');
      }
      const child = spawn(process.execPath, [path.join(o.root, 'bin', 'cycles.mjs'), 'serve'], { cwd: o.root, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      const keep = (d: Buffer) => { log = (log + d.toString()).slice(-8000); };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      cleanups.push(async () => { child.kill('SIGTERM'); await exited; });
      await waitReady(`http://127.0.0.1:${rp}/readyz`, 180_000, child, () => log);
      await waitReady(`http://127.0.0.1:${ap}/readyz`, 60_000, child, () => log);

      const admin = new Pool(`http://127.0.0.1:${ap}`, { connections: 4 });
      cleanups.push(() => { void admin.close(); });
      const adminCall = async (method: string, p: string, body?: unknown) => {
        const r = await admin.request({ method: method as 'POST', path: p, body: body === undefined ? undefined : JSON.stringify(body),
          headers: { 'X-Admin-API-Key': adminKey, 'content-type': 'application/json' } });
        const text = await r.body.text();
        if (r.statusCode >= 300) throw new Error(`${method} ${p} → ${r.statusCode} ${text}`);
        return JSON.parse(text);
      };
      const tenant = `mem-${randomBytes(2).toString('hex')}`;
      await adminCall('POST', '/v1/admin/tenants', { tenant_id: tenant, name: tenant, max_reservation_ttl_ms: 3_600_000 });
      const scopes = [`tenant:${tenant}`];
      const subjectOf = (i: number): Record<string, string> => (shape === 'deep'
        ? { tenant, workspace: 'production-eu', app: 'customer-support-bot', agent: `planner-${i}` }
        : { tenant });
      if (shape === 'deep') for (let i = 0; i < CLIENTS; i++) scopes.push(`tenant:${tenant}/workspace:production-eu/app:customer-support-bot/agent:planner-${i}`);
      for (const scope of scopes) {
        await adminCall('POST', '/v1/admin/budgets', { tenant_id: tenant, scope, unit: UNIT, allocated: { unit: UNIT, amount: 10 ** 15 } });
      }
      const key = (await adminCall('POST', '/v1/admin/api-keys', {
        tenant_id: tenant, name: 'mem', permissions: ['reservations:create', 'reservations:commit', 'balances:read'],
      })).key_secret as string;

      const client = makeClient(`http://127.0.0.1:${rp}`, CLIENTS, 30_000);
      cleanups.push(() => client.close());
      const headers = headerLines({ 'X-Cycles-API-Key': key });
      let seq = 0;
      const reserveBody = (i: number) => JSON.stringify(shape === 'deep'
        ? {
          idempotency_key: `r-${randomBytes(8).toString('hex')}-${++seq}`, subject: subjectOf(i),
          action: { kind: 'llm.completion', name: 'summarize-ticket-thread-with-gpt', tags: ['support', 'summary'] },
          estimate: { unit: UNIT, amount: 2500 }, ttl_ms: 600_000,
          metadata: { ticket_id: `T-${100000 + seq}`, run_id: `run-${randomBytes(6).toString('hex')}` },
        }
        : {
          idempotency_key: `b${++seq}-${i}`, subject: subjectOf(i), action: { kind: 'llm.completion', name: 'bench' },
          estimate: { unit: UNIT, amount: 2 }, ttl_ms: 600_000,
        });
      const commitBody = () => JSON.stringify(shape === 'deep'
        ? {
          idempotency_key: `c-${randomBytes(8).toString('hex')}-${++seq}`, actual: { unit: UNIT, amount: 1800 },
          metrics: { tokens_input: 1234, tokens_output: 321, latency_ms: 850, model_version: 'gpt-4o-2024-08-06' },
        }
        : { actual: { unit: UNIT, amount: 1 }, idempotency_key: `c${++seq}` });
      const RID = /"reservation_id":"([^"]+)"/;
      const reserve = async (i: number) => {
        const r = await client.request(i, 'POST', '/v1/reservations', headers, reserveBody(i), true);
        if (r.status !== 200) throw new Error(`reserve → ${r.status} ${r.body.slice(0, 300)}`);
        return RID.exec(r.body)![1];
      };
      const pair = async (i: number) => {
        const id = await reserve(i);
        const c = await client.request(i, 'POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, headers, commitBody(), false);
        if (c.status !== 200) throw new Error(`commit → ${c.status} ${c.body.slice(0, 300)}`);
      };
      const run = async (n: number, op: (i: number) => Promise<unknown>) => {
        let left = n;
        await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
          while (left > 0) { left--; await op(i); }
        }));
      };
      const outboxLen = async () => (await redis.exists(`{t:${tenant}}:outbox`)) ? Number(await redis.xlen(`{t:${tenant}}:outbox`)) : 0;
      const settle = async () => {
        // the relay has caught up (no pending entries) and memory stopped moving
        let last = -1;
        for (let i = 0; i < 100; i++) {
          await new Promise((r) => setTimeout(r, 200));
          const m = await usedMemory(redis);
          if (Math.abs(m - last) < 512) return;
          last = m;
        }
      };

      await run(WARMUP, pair);
      await settle();
      const out0 = await outboxLen();
      const before = await usedMemory(redis);
      await run(PAIRS, pair);
      await settle();
      const after = await usedMemory(redis);
      const events = (await outboxLen()) - out0;
      const perPair = (after - before) / PAIRS;
      const classes = await keyClasses(redis);
      const made = PAIRS + WARMUP;
      // a sample finished reservation
      const [, resKeys] = await redis.scan('0', 'MATCH', `{t:${tenant}}:res:*`, 'COUNT', 1000);
      const sk = resKeys[0];
      const enc = String(await redis.object('ENCODING', sk));
      const h = await redis.hgetall(sk);
      const longest = Object.entries(h).sort((a, b) => b[1].length - a[1].length)[0];
      const sample = { encoding: enc, bytes: Number(await redis.memory('USAGE', sk, 'SAMPLES', '0')), fields: Object.keys(h).length, longest: `${longest[0]} (${longest[1].length} B)` };
      const [, idemKeys] = await redis.scan('0', 'MATCH', `{t:${tenant}}:idem:reserve:*`, 'COUNT', 1000);
      if (o.dump) {
        console.error(`sample ${sk}:`);
        for (const [f, v] of Object.entries(h)) console.error(`  ${f} (${f.length}+${v.length}) ${v}`);
        if (idemKeys.length) console.error(`sample ${idemKeys[0]}: ${await redis.get(idemKeys[0])}`);
      }
      const idemSample = { bytes: idemKeys.length ? Number(await redis.memory('USAGE', idemKeys[0], 'SAMPLES', '0')) : 0 };

      // ACTIVE reservations (reserve only): the created-at index and expiry schedule entries too
      let perActive = NaN;
      let luaUsPerReserve = NaN;
      if (RESERVE_ONLY > 0) {
        await settle();
        const b2 = await usedMemory(redis);
        await redis.config('RESETSTAT');
        await run(RESERVE_ONLY, reserve);
        // Redis CPU of the reserve script itself (commandstats: µs per EVALSHA), steadier
        // than throughput on a shared machine
        const st = /cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(await redis.info('commandstats'));
        if (st) luaUsPerReserve = Number(st[3]);
        await settle();
        perActive = ((await usedMemory(redis)) - b2) / RESERVE_ONLY;
      }
      // events: a commit over its estimate emits reservation.commit_overage (the relay then
      // indexes it: global index, per trace / request id indexes); createEvent records
      let perEvent = NaN;
      let perCreateEvent = NaN;
      if (EVENTS > 0) {
        const overPair = async (i: number) => {
          const id = await reserve(i);
          const body = JSON.stringify({ idempotency_key: `o${++seq}`, actual: { unit: UNIT, amount: shape === 'deep' ? 2600 : 3 } });
          const c = await client.request(i, 'POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, headers, body, false);
          if (c.status !== 200) throw new Error(`commit → ${c.status} ${c.body.slice(0, 300)}`);
        };
        await settle();
        const o0 = await outboxLen();
        const b3 = await usedMemory(redis);
        await run(EVENTS, overPair);
        await settle();
        const made3 = (await outboxLen()) - o0;
        perEvent = ((await usedMemory(redis)) - b3 - perPair * EVENTS) / Math.max(1, made3);
        const b4 = await usedMemory(redis);
        await run(EVENTS, async (i) => {
          const r = await client.request(i, 'POST', '/v1/events', headers, JSON.stringify({
            idempotency_key: `e${++seq}`, subject: subjectOf(i), action: { kind: 'llm.completion', name: shape === 'deep' ? 'summarize-ticket-thread-with-gpt' : 'bench' },
            actual: { unit: UNIT, amount: 1 },
          }), false);
          if (r.status !== 201 && r.status !== 200) throw new Error(`createEvent → ${r.status} ${r.body.slice(0, 300)}`);
        });
        await settle();
        perCreateEvent = ((await usedMemory(redis)) - b4) / EVENTS;
      }
      const r: ShapeResult = {
        shape, pairs: PAIRS, perPair, perActive, sample, idemSample, eventsPerPair: events / PAIRS, perEvent, perCreateEvent, luaUsPerReserve,
        classes: [...classes].map(([name, v]) => ({ name, keys: v.keys, bytes: v.bytes, perPair: v.bytes / made }))
          .sort((a, b) => b.bytes - a.bytes),
      };
      results.push(r);
      console.error(`${shape}: ${perEvent.toFixed(0)} B per relayed outbox event, ${perCreateEvent.toFixed(0)} B per createEvent; reserve script ${luaUsPerReserve} µs per call in Redis`);
      console.error(`${shape}: ${perPair.toFixed(0)} B per committed pair (used_memory ${before} → ${after} over ${PAIRS}), ${perActive.toFixed(0)} B per ACTIVE reservation; sample hash ${sample.encoding} ${sample.bytes} B, ${sample.fields} fields, longest ${sample.longest}; reserve idempotency record ${idemSample.bytes} B; outbox entries per pair ${r.eventsPerPair.toFixed(3)}`);
      for (const c of r.classes) console.error(`  ${c.name.padEnd(32)} ${String(c.keys).padStart(7)} keys ${String(c.bytes).padStart(10)} B  ${c.perPair.toFixed(1)} B/pair`);
      // the next shape starts from scratch
      client.close();
      child.kill('SIGTERM');
      await exited;
      redis.disconnect();
      await redisSrv.stop();
    }
    const md = report(results);
    console.log(md);
    if (o.write) {
      const cur = readFileSync(o.out, 'utf8');
      const re = /<!-- memory -->[\s\S]*<!-- \/memory -->\n?/;
      const m = re.exec(cur);
      const block = m && o.append
        ? m[0].replace('<!-- /memory -->', `${md}\n\n<!-- /memory -->`)
        : `<!-- memory -->\n${md}\n\n<!-- /memory -->\n`;
      writeFileSync(o.out, m ? cur.replace(re, block) : `${cur.trimEnd()}\n\n${block}`);
      console.error(`updated ${o.out}`);
    }
  } finally {
    await stopAll();
  }
}

function report(results: ShapeResult[]): string {
  const lines: string[] = [];
  lines.push(`## Redis memory per committed pair (\`npm run bench:memory\`)${o.label ? ` — ${o.label}` : ''}`, '');
  lines.push(`${new Date().toISOString()}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}. Private redis-server (no persistence), \`cycles serve\` with default features (evidence off except in \`bench-ev\`, relay and sweeper running); per shape ${WARMUP} warm-up pairs, then ${PAIRS} reserve→commit pairs at ${CLIENTS} clients; bytes = \`used_memory\` after − before, ÷ pairs. "Active" = ${RESERVE_ONLY} further reserves left ACTIVE. Events: ${EVENTS} commits over their estimate (one \`reservation.commit_overage\` each, relayed and indexed; the pair's own bytes subtracted), then ${EVENTS} createEvent calls (event record + idempotency record).`, '');
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '–');
  lines.push('| shape | bytes / committed pair | bytes / ACTIVE reservation | reservation hash (sample, MEMORY USAGE) | reserve idempotency record | outbox entries / pair | bytes / relayed event | bytes / createEvent |');
  lines.push('|---|---:|---:|---|---:|---:|---:|---:|');
  for (const r of results) {
    lines.push(`| ${r.shape} | ${f(r.perPair)} | ${f(r.perActive)} | ${r.sample.bytes} B, ${r.sample.encoding}, ${r.sample.fields} fields, longest ${r.sample.longest} | ${r.idemSample.bytes} B | ${r.eventsPerPair.toFixed(3)} | ${f(r.perEvent)} | ${f(r.perCreateEvent)} |`);
  }
  lines.push('', 'Breakdown after the pairs (before the ACTIVE reserves): MEMORY USAGE of every key, summed per class, ÷ every pair made (warm-up included); it leaves out the keyspace\'s own per-key entries, so it adds up to a little less than the delta:', '');
  for (const r of results) {
    lines.push(`- ${r.shape}: ${r.classes.filter((c) => c.perPair >= 1).map((c) => `${c.name} ${c.perPair.toFixed(0)} B`).join(', ')}`);
  }
  return lines.join('\n');
}

await main();
