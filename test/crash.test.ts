// Crash tests with real processes: the server runs as a child process (`cycles serve`) on
// a private redis-server with appendfsync always. 40 client loops run logical operations
// "reserve (key rK) → commit (key cK, known actual)"; meanwhile the SERVER process
// (first test) or the REDIS process (second test) is SIGKILLed and restarted twice.
// Every request whose outcome a client did not see (connection error, timeout, 5xx) is
// retried with the SAME idempotency key and the SAME body bytes until it answers.
// Afterwards, from the store and the API:
//   - exactly one reservation per logical operation, with the id the client saw;
//   - every reservation COMMITTED once, charged == the known actual;
//   - per scope: spent == Σ actuals, reserved == Σ estimates still ACTIVE (0), debt 0,
//     allocated untouched, remaining == allocated − spent − reserved − debt;
//   - replays of reserve and commit (all operations that saw a failure + a sample) are
//     byte-identical to the first successful response (remaining_ttl_ms excepted);
//   - every id pins its tenant, and the tenant's expiry schedule holds no finished reservation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { startChildServer, stopAllChildServers, type ChildServer } from './helpers/childServer';
import { keys } from '../src/store/keys';
import { ownerOf } from '../src/ledger/reservationId';
import { readReservation } from './helpers/reservations';
import { decodeReservationHash } from '../src/ledger/reservationRecord';

const ADMIN_KEY = `crash-admin-${randomBytes(12).toString('hex')}`;
const UNIT = 'USD_MICROCENTS';
const CLIENTS = 40;
const AGENTS = 4;
const LOAD_MS = 6_000;
/** the crash happens at these offsets into the load */
const CRASH_AT_MS = [1_500, 3_700];
const MAX_OPS_PER_CLIENT = 400;
const ATTEMPT_TIMEOUT_MS = 5_000;
// The replay check after the load asserts answers, not latency: on a loaded 2-core CI box a
// burst of 60 parallel replays can take longer than one load attempt's bound.
const VERIFY_TIMEOUT_MS = 30_000;
/** an operation must have completed this long after the load window at the latest */
const SETTLE_MS = 25_000;
const TENANT_ALLOCATED = 10n ** 12n;
const AGENT_ALLOCATED = 10n ** 11n;

let redis: TestRedis;
let server: ChildServer;

beforeAll(async () => {
  redis = await startTestRedis({ appendfsync: 'always' });
  server = await startChildServer({ redisUrl: redis.url, adminKey: ADMIN_KEY });
}, 60_000);

afterAll(async () => {
  await server?.stop().catch(() => {});
  await stopAllChildServers();
  await redis?.stop();
}, 30_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reply { status: number; text: string }

async function send(url: string, method: string, headers: Record<string, string>, body?: string, timeoutMs = ATTEMPT_TIMEOUT_MS): Promise<Reply> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? headers : { ...headers, 'Content-Type': 'application/json' },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, text: await res.text() };
}

async function admin(method: string, path: string, body?: unknown): Promise<any> {
  const r = await send(server.adminUrl + path, method, { 'X-Admin-API-Key': ADMIN_KEY }, body === undefined ? undefined : JSON.stringify(body));
  if (r.status >= 300) throw new Error(`${method} ${path} → ${r.status} ${r.text}`);
  return JSON.parse(r.text);
}

interface Tenant { id: string; key: string; scopes: { scope: string; allocated: bigint }[] }

async function setupTenant(tag: string): Promise<Tenant> {
  const id = `crash-${tag}-${randomBytes(3).toString('hex')}`;
  await admin('POST', '/v1/admin/tenants', { tenant_id: id, name: id, max_reservation_ttl_ms: 3_600_000 });
  const scopes = [{ scope: `tenant:${id}`, allocated: TENANT_ALLOCATED }];
  for (let a = 0; a < AGENTS; a++) scopes.push({ scope: `tenant:${id}/agent:a${a}`, allocated: AGENT_ALLOCATED + BigInt(a) });
  for (const s of scopes) {
    await admin('POST', '/v1/admin/budgets', { tenant_id: id, scope: s.scope, unit: UNIT, allocated: { unit: UNIT, amount: Number(s.allocated) } });
  }
  const k = await admin('POST', '/v1/admin/api-keys', {
    tenant_id: id, name: 'crash', permissions: ['reservations:create', 'reservations:commit', 'reservations:list', 'balances:read'],
  });
  return { id, key: k.key_secret as string, scopes };
}

/** One logical operation and what its client saw. */
interface Op {
  client: number;
  agent: number;
  rKey: string;
  cKey: string;
  estimate: bigint;
  actual: bigint;
  reserveBody: string;
  commitBody: string;
  reservationId?: string;
  reserveText?: string;
  commitText?: string;
  /** attempts whose outcome was not seen (connection error, timeout, 5xx) */
  unseenReserve: number;
  unseenCommit: number;
  done: boolean;
}

interface LoadStats { ops: Op[]; unexpected: string[]; unseen: number; errorsByKind: Map<string, number> }

/**
 * Sends until a definitive answer. Connection errors, timeouts and 5xx are "unseen":
 * retried with the same bytes. A 200 is the outcome; any other status is recorded as
 * unexpected (no crash may turn a valid retry into a 4xx) and stops the operation.
 */
async function untilAnswered(
  url: string, key: string, body: string, deadline: number, stats: LoadStats, onUnseen: () => void,
): Promise<Reply | undefined> {
  for (let attempt = 0; ; attempt++) {
    if (Date.now() > deadline) {
      stats.unexpected.push(`no answer before the deadline: POST ${url} ${body}`);
      return undefined;
    }
    let r: Reply | undefined;
    let kind = '';
    try {
      r = await send(url, 'POST', { 'X-Cycles-API-Key': key }, body);
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      kind = err.cause?.code ?? err.name;
    }
    if (r && r.status === 200) return r;
    if (r && r.status < 500) {
      stats.unexpected.push(`POST ${url} ${body} → ${r.status} ${r.text}`);
      return undefined;
    }
    if (r) kind = `HTTP ${r.status}`;
    stats.errorsByKind.set(kind, (stats.errorsByKind.get(kind) ?? 0) + 1);
    stats.unseen++;
    onUnseen();
    await sleep(20 + Math.min(attempt, 10) * 20);
  }
}

async function runLoad(t: Tenant, crash: () => Promise<void>): Promise<LoadStats> {
  const stats: LoadStats = { ops: [], unexpected: [], unseen: 0, errorsByKind: new Map() };
  const run = randomBytes(3).toString('hex');
  const start = Date.now();
  const loadEnd = start + LOAD_MS;
  const deadline = loadEnd + SETTLE_MS;

  const client = async (c: number) => {
    for (let j = 0; j < MAX_OPS_PER_CLIENT && Date.now() < loadEnd && stats.unexpected.length === 0; j++) {
      const agent = c % AGENTS;
      const estimate = BigInt(1000 + ((c * 37 + j * 11) % 500));
      // mostly under the estimate, sometimes over (ALLOW_IF_AVAILABLE with ample budget: charged in full)
      const actual = j % 5 === 0 ? estimate + 77n : estimate - BigInt((c + j) % 300);
      const op: Op = {
        client: c, agent, rKey: `r-${run}-${c}-${j}`, cKey: `c-${run}-${c}-${j}`, estimate, actual,
        reserveBody: '', commitBody: '', unseenReserve: 0, unseenCommit: 0, done: false,
      };
      op.reserveBody = JSON.stringify({
        idempotency_key: op.rKey,
        subject: { tenant: t.id, agent: `a${agent}` },
        action: { kind: 'llm.completion', name: 'crash-test' },
        estimate: { unit: UNIT, amount: Number(estimate) },
        ttl_ms: 600_000,
      });
      op.commitBody = JSON.stringify({ idempotency_key: op.cKey, actual: { unit: UNIT, amount: Number(actual) } });
      stats.ops.push(op);

      const rr = await untilAnswered(`${server.runtimeUrl}/v1/reservations`, t.key, op.reserveBody, deadline, stats, () => { op.unseenReserve++; });
      if (!rr) return;
      op.reserveText = rr.text;
      op.reservationId = JSON.parse(rr.text).reservation_id;
      const cr = await untilAnswered(`${server.runtimeUrl}/v1/reservations/${op.reservationId}/commit`, t.key, op.commitBody, deadline, stats, () => { op.unseenCommit++; });
      if (!cr) return;
      op.commitText = cr.text;
      op.done = true;
    }
  };

  const crashes = (async () => {
    for (const at of CRASH_AT_MS) {
      await sleep(Math.max(0, start + at - Date.now()));
      await crash();
    }
  })();
  await Promise.all([...Array.from({ length: CLIENTS }, (_, c) => client(c)), crashes]);
  return stats;
}

const withoutTtl = (text: string) => text.replace(/"remaining_ttl_ms":\d+,?/, '');

async function verify(t: Tenant, stats: LoadStats): Promise<void> {
  expect(stats.unexpected, stats.unexpected.slice(0, 5).join('\n')).toEqual([]);
  const ops = stats.ops;
  expect(ops.every((o) => o.done)).toBe(true);
  // the crashes really hit requests in flight
  expect(stats.unseen).toBeGreaterThan(0);
  expect(ops.filter((o) => o.unseenReserve > 0).length + ops.filter((o) => o.unseenCommit > 0).length).toBeGreaterThan(0);

  const c = redis.client;
  // ---- reservations in the store: exactly one per logical operation
  const resKeys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await c.scan(cursor, 'MATCH', keys.reservation(t.id, '*'), 'COUNT', 1000);
    resKeys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  const rows = await Promise.all(resKeys.map(async (k) => decodeReservationHash(await c.hgetall(k))));
  const byKey = new Map<string, Record<string, string>[]>();
  for (const r of rows) byKey.set(r.idempotency_key, [...(byKey.get(r.idempotency_key) ?? []), r]);
  expect(rows.length).toBe(ops.length);
  const problems: string[] = [];
  for (const o of ops) {
    const found = byKey.get(o.rKey) ?? [];
    if (found.length !== 1) { problems.push(`${o.rKey}: ${found.length} reservations`); continue; }
    const r = found[0];
    if (r.reservation_id !== o.reservationId) problems.push(`${o.rKey}: stored ${r.reservation_id}, client saw ${o.reservationId}`);
    if (r.status !== 'COMMITTED') problems.push(`${o.rKey}: status ${r.status}`);
    if (r.charged !== o.actual.toString()) problems.push(`${o.rKey}: charged ${r.charged}, actual ${o.actual}`);
    if (r.estimate !== o.estimate.toString()) problems.push(`${o.rKey}: estimate ${r.estimate}, sent ${o.estimate}`);
  }
  expect(problems.slice(0, 10)).toEqual([]);
  // the index lists each reservation once
  expect(await c.zcard(keys.reservationIndex(t.id))).toBe(ops.length);

  // ---- ledger: per scope, spent = Σ actuals once; no hold lost; the invariant
  const stillActive = rows.filter((r) => r.status === 'ACTIVE');
  for (const s of t.scopes) {
    const mine = (o: Op) => s.scope === `tenant:${t.id}` || s.scope.endsWith(`/agent:a${o.agent}`);
    const b = await c.hgetall(keys.budget(t.id, s.scope, UNIT));
    const spent = ops.filter(mine).reduce((a, o) => a + o.actual, 0n);
    const held = stillActive.filter((r) => s.scope === `tenant:${t.id}` || r.scope_path.endsWith(`/agent:${s.scope.split('/agent:')[1]}`))
      .reduce((a, r) => a + BigInt(r.estimate), 0n);
    expect({ scope: s.scope, allocated: b.allocated, spent: b.spent, reserved: b.reserved, debt: b.debt ?? '0' })
      .toEqual({ scope: s.scope, allocated: s.allocated.toString(), spent: spent.toString(), reserved: held.toString(), debt: '0' });
    expect(BigInt(b.remaining)).toBe(BigInt(b.allocated) - BigInt(b.spent) - BigInt(b.reserved) - BigInt(b.debt ?? '0'));
  }
  expect(stillActive).toEqual([]);

  // ---- every id pins its tenant, and the sweeper's schedule holds nothing finished
  // (its entries are written and removed by the same scripts as the reservations)
  expect(ops.filter((o) => ownerOf(o.reservationId!) !== t.id).map((o) => o.reservationId).slice(0, 10)).toEqual([]);
  expect(await c.zcard(keys.expirySchedule(t.id))).toBe(0);

  // ---- replays: byte-identical to the first successful response (remaining_ttl_ms aside)
  const uncertain = ops.filter((o) => o.unseenReserve > 0 || o.unseenCommit > 0);
  const sample = [...new Set([...uncertain.slice(0, 150), ...ops.filter((_, i) => i % 17 === 0).slice(0, 60)])];
  const mismatches: string[] = [];
  for (let i = 0; i < sample.length; i += 20) {
    await Promise.all(sample.slice(i, i + 20).map(async (o) => {
      const r = await send(`${server.runtimeUrl}/v1/reservations`, 'POST', { 'X-Cycles-API-Key': t.key }, o.reserveBody, VERIFY_TIMEOUT_MS);
      if (r.status !== 200 || withoutTtl(r.text) !== withoutTtl(o.reserveText!)) mismatches.push(`reserve ${o.rKey}: ${r.status} ${r.text} vs ${o.reserveText}`);
      const cr = await send(`${server.runtimeUrl}/v1/reservations/${o.reservationId}/commit`, 'POST', { 'X-Cycles-API-Key': t.key }, o.commitBody, VERIFY_TIMEOUT_MS);
      if (cr.status !== 200 || cr.text !== o.commitText) mismatches.push(`commit ${o.cKey}: ${cr.status} ${cr.text} vs ${o.commitText}`);
      // recovery by idempotency key: the one reservation created with rK
      const l = await send(`${server.runtimeUrl}/v1/reservations?idempotency_key=${encodeURIComponent(o.rKey)}`, 'GET', { 'X-Cycles-API-Key': t.key }, undefined, VERIFY_TIMEOUT_MS);
      const list = JSON.parse(l.text);
      if (l.status !== 200 || list.reservations.length !== 1 || list.reservations[0].reservation_id !== o.reservationId || list.reservations[0].status !== 'COMMITTED') {
        mismatches.push(`list ${o.rKey}: ${l.status} ${l.text}`);
      }
    }));
  }
  expect(mismatches.slice(0, 5)).toEqual([]);

  // replays changed nothing
  for (const s of t.scopes) {
    const spent = ops.filter((o) => s.scope === `tenant:${t.id}` || s.scope.endsWith(`/agent:a${o.agent}`)).reduce((a, o) => a + o.actual, 0n);
    expect(await c.hget(keys.budget(t.id, s.scope, UNIT), 'spent')).toBe(spent.toString());
  }
  console.log(`crash load: ${ops.length} operations, ${stats.unseen} unseen attempts (${[...stats.errorsByKind].map(([k, v]) => `${k}×${v}`).join(', ')}), ` +
    `${ops.filter((o) => o.unseenReserve > 0).length} reserves and ${ops.filter((o) => o.unseenCommit > 0).length} commits retried, ${sample.length} replayed`);
}

describe('crash: reserve→commit load across process kills', () => {
  it('server SIGKILLed and restarted twice mid-load: no double commit, no lost hold, invariant, identical replays', async () => {
    const t = await setupTenant('srv');
    const stats = await runLoad(t, async () => {
      await server.kill('SIGKILL');
      await sleep(150);
      await server.restart();
    });
    await verify(t, stats);
  }, 60_000);

  it('redis-server SIGKILLed (appendfsync always) and restarted from its AOF twice mid-load: same guarantees', async () => {
    const t = await setupTenant('redis');
    const pids: number[] = [];
    // First crash: restarted at once (ioredis reconnects within its retry budget and
    // re-sends the commands that were in flight); second: down for 1.5 s, so requests
    // fail with 5xx and clients must retry themselves.
    const stats = await runLoad(t, async () => {
      pids.push(redis.server.pid);
      await redis.restart(pids.length === 1 ? 0 : 1_500);
    });
    expect(new Set([...pids, redis.server.pid]).size).toBe(CRASH_AT_MS.length + 1);
    await verify(t, stats);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
// The narrowest Redis crash window, made deterministic: Redis has executed (and fsynced)
// the reserve script but the connection dies before its reply reaches the server. A TCP
// proxy between the server and Redis forwards the EVALSHA of reserve.lua, swallows every
// reply from then on and cuts the connection. ioredis reconnects and re-sends the
// unanswered commands (autoResendUnfulfilledCommands), so the script runs a second time
// with the SAME reservation id and answers as an idempotent replay of it.
// The reservation must keep its expiry-schedule entry (written by the same script):
// without it a reservation the client never finalizes is never expired — its hold is
// lost for good.

interface CutProxy { url: string; arm(marker: string): void; cuts(): number; close(): Promise<void> }

async function startCutProxy(target: { host: string; port: number }): Promise<CutProxy> {
  const { createServer, connect } = await import('node:net');
  let marker: string | undefined;
  let cuts = 0;
  const sockets = new Set<import('node:net').Socket>();
  const srv = createServer((down) => {
    const up = connect(target.port, target.host);
    sockets.add(down); sockets.add(up);
    let blackhole = false;
    const end = () => { down.destroy(); up.destroy(); sockets.delete(down); sockets.delete(up); };
    down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end);
    down.on('data', (d: Buffer) => {
      up.write(d);
      if (marker && !blackhole && d.toString('latin1').includes(marker)) {
        marker = undefined;
        blackhole = true;
        cuts++;
        // let Redis execute and answer (the answer goes nowhere), then cut
        setTimeout(end, 300);
      }
    });
    up.on('data', (d: Buffer) => { if (!blackhole) down.write(d); });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    arm(m) { marker = m; },
    cuts: () => cuts,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

describe('crash: the reply of the reserve script is lost (Redis connection cut after execution)', () => {
  it('the re-sent script replays the reservation without dropping its expiry schedule entry', async () => {
    const { loadScript } = await import('../src/store/scripts');
    const proxy = await startCutProxy({ host: '127.0.0.1', port: redis.port });
    const child = await startChildServer({ redisUrl: proxy.url, adminKey: ADMIN_KEY });
    try {
      const saved = server;
      server = child; // admin()/setupTenant() talk to this server
      let t: Tenant;
      try { t = await setupTenant('cut'); } finally { server = saved; }
      const reserve = (k: string, ttl: number) => send(`${child.runtimeUrl}/v1/reservations`, 'POST', { 'X-Cycles-API-Key': t.key }, JSON.stringify({
        idempotency_key: k, subject: { tenant: t.id, agent: 'a1' }, action: { kind: 'llm.completion', name: 'cut' },
        estimate: { unit: UNIT, amount: 500 }, ttl_ms: ttl, grace_period_ms: 0,
      }));
      // warm-up: the script is loaded in Redis, so the next reserve is a plain EVALSHA
      expect((await reserve('warm', 600_000)).status).toBe(200);

      proxy.arm(loadScript('reserve').sha);
      const r = await reserve('cut-1', 1_000);
      expect(proxy.cuts()).toBe(1);
      expect(r.status, r.text).toBe(200);
      const id = JSON.parse(r.text).reservation_id as string;
      const stored = await readReservation(redis.client, t.id, id);
      expect(stored.status).toBe('ACTIVE');
      expect(stored.idempotency_key).toBe('cut-1');

      // the re-sent script replayed the reservation; its schedule entry is the exact deadline
      expect.soft(await redis.client.zscore(keys.expirySchedule(t.id), id)).toBe(stored.expires_at_ms);

      // consequence: the 1 s reservation (no grace) is expired by the sweeper and its hold returns
      const agentBudget = keys.budget(t.id, `tenant:${t.id}/agent:a1`, UNIT);
      const deadline = Date.now() + 8_000;
      while (Date.now() < deadline && (await redis.client.hget(keys.reservation(t.id, id), 'status')) === 'ACTIVE') await sleep(100);
      expect(await redis.client.hget(keys.reservation(t.id, id), 'status')).toBe('EXPIRED');
      expect(await redis.client.hget(agentBudget, 'reserved')).toBe('500'); // only the warm-up hold
    } finally {
      await child.kill('SIGKILL');
      await proxy.close();
    }
  }, 30_000);
});
