// Every key a ledger script touches is declared in KEYS (docs/decisions.md DK8): the
// finishing scripts work from a cold key cache (another process reserved), correct a wrong
// cached list instead of trusting it, a need_keys answer writes nothing, quota counter keys
// guessed on a clock in another window are corrected, and the retries are bounded. Every
// suite also runs them under the DK19 guard (CYCLES_LUA_KEY_GUARD=1, vitest.config.ts),
// which refuses any command on an undeclared key; the last case shows it covers them.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { startChildServer, stopAllChildServers, type ChildServer } from './helpers/childServer';
import { TEST_CLUSTER } from './helpers/redis';
import { getBudget, putBudget, putTenant } from './helpers/fixtures';
import { commitPath, expectLedgerHolds, extendPath, releasePath, reserve, setExpiry, redisNowMs, uid, readReservation } from './helpers/reservations';
import { keys } from '../src/store/keys';
import { KEY_GUARD_EXEMPT, loadScript, luaKeyGuardOn, runScript, setScriptObserver } from '../src/store/scripts';
import { finishKeys, needKeysOf, runDeclared } from '../src/store/declaredKeys';
import { budgetPrefix } from '../src/ledger/reservationOps';
import { sweepOnce } from '../src/ledger/sweeper';
import { ApiError } from '../src/errors';

const U = 'USD_MICROCENTS';
let srv: TestServer;
let other: ChildServer | undefined;
beforeAll(async () => {
  srv = await startTestServer({ CYCLES_FEATURES: 'v0.1.26', CYCLES_SWEEP_INTERVAL_MS: '600000' });
  // another process on the same Redis (not on the test cluster: its children need a seed URL)
  if (!TEST_CLUSTER) other = await startChildServer({ redisUrl: srv.redis.url, adminKey: srv.adminKey, env: { CYCLES_FEATURES: 'v0.1.26', CYCLES_SWEEP_INTERVAL_MS: '600000' } });
}, 90_000);
afterAll(async () => { setScriptObserver(undefined); await stopAllChildServers(); await srv?.stop(); });

const redis = () => srv.redis.client;

async function tenant(): Promise<{ t: string; key: string; root: string; ws: string; subject: Record<string, string> }> {
  const t = uid('dk');
  const root = `tenant:${t}`;
  const ws = `${root}/workspace:w`;
  await putTenant(redis(), t);
  await putBudget(redis(), t, root, U, { allocated: 10_000 });
  await putBudget(redis(), t, ws, U, { allocated: 1_000 });
  return { t, key: await srv.tenantKey(t), root, ws, subject: { tenant: t, workspace: 'w' } };
}

/** KEYS on every master (a cluster client sends KEYS to one node only). */
async function keysMatching(pattern: string): Promise<string[]> {
  const c = redis() as unknown as { nodes?: (role: string) => { keys(p: string): Promise<string[]> }[] };
  if (typeof c.nodes === 'function') return (await Promise.all(c.nodes('master').map((n) => n.keys(pattern)))).flat();
  return redis().keys(pattern);
}

/** Every key of the tenant's slot with its DUMP: equal snapshots = nothing was written. */
async function slotSnapshot(t: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const k of (await keysMatching(`{t:${t}}*`)).sort()) out[k] = (await redis().dumpBuffer(k))?.toString('hex') ?? '';
  return out;
}

/** Counts runs of each script (the server runs in this process). */
function countRuns(): { runs: Record<string, number>; stop(): void } {
  const runs: Record<string, number> = {};
  // background workers run their own scripts meanwhile: count the ledger ones
  const ours = /^(reserve|commit|release|extend|expire|event|dk_\w+)$/;
  setScriptObserver((name) => { if (ours.test(name)) runs[name] = (runs[name] ?? 0) + 1; });
  return { runs, stop: () => setScriptObserver(undefined) };
}

describe('finishing a reservation this process never saw', () => {
  it.skipIf(TEST_CLUSTER)('reserved by another process: commit, extend and release here are exact', async () => {
    const c = await tenant();
    // reserve through the other process: this one's key cache is cold for these ids
    const reserveThere = async (estimate: number) => {
      const r = await call(other!.runtimeUrl, 'POST', '/v1/reservations', { key: c.key, body: {
        idempotency_key: uid('i'), subject: c.subject, action: { kind: 'llm.completion', name: 'x' }, estimate: { unit: U, amount: estimate } } });
      expect(r.status, r.text).toBe(200);
      return r.body.reservation_id as string;
    };
    const a = await reserveThere(300);
    const b = await reserveThere(200);
    expect(finishKeys.get(a)).toEqual([]);
    const runs = countRuns();
    try {
      const x = await call(srv.runtimeUrl, 'POST', extendPath(a), { key: c.key, body: { idempotency_key: uid('x'), extend_by_ms: 1000 } });
      expect(x.status, x.text).toBe(200);
      expect(x.body.balances.map((r: any) => r.reserved.amount)).toEqual([500, 500]);
      const cm = await call(srv.runtimeUrl, 'POST', commitPath(a), { key: c.key, body: { idempotency_key: uid('k'), actual: { unit: U, amount: 120 } } });
      expect(cm.status, cm.text).toBe(200);
      const rl = await call(srv.runtimeUrl, 'POST', releasePath(b), { key: c.key, body: { idempotency_key: uid('k') } });
      expect(rl.status, rl.text).toBe(200);
      // extend: one need_keys round trip, then its list was cached, so commit ran once; release: cold, twice
      expect(runs.runs).toEqual({ extend: 2, commit: 1, release: 2 });
    } finally { runs.stop(); }
    for (const s of [c.root, c.ws]) {
      const h = await getBudget(redis(), c.t, s, U);
      expect([h.spent, h.reserved, h.remaining]).toEqual(['120', '0', s === c.root ? '9880' : '880']);
    }
    await expectLedgerHolds(redis(), c.t);
    // finished: out of the cache
    expect(finishKeys.get(a)).toEqual([]);
    expect(finishKeys.get(b)).toEqual([]);
  });

  it('a cached list naming other keys is not trusted: the script asks for its own and touches only those', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 400, subject: c.subject });
    expect(finishKeys.get(id)).toEqual([keys.budget(c.t, c.root, U), keys.budget(c.t, c.ws, U)]);
    // a sibling budget of the same tenant (same slot), and only one of the two real ones
    const sibling = `${c.root}/workspace:other`;
    await putBudget(redis(), c.t, sibling, U, { allocated: 777 });
    const siblingBefore = await redis().hgetall(keys.budget(c.t, sibling, U));
    finishKeys.set(id, [keys.budget(c.t, sibling, U), keys.budget(c.t, c.ws, U)]);
    const runs = countRuns();
    try {
      const r = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body: { idempotency_key: uid('k'), actual: { unit: U, amount: 400 } } });
      expect(r.status, r.text).toBe(200);
      expect(runs.runs.commit).toBe(2);
    } finally { runs.stop(); }
    expect(await redis().hgetall(keys.budget(c.t, sibling, U))).toEqual(siblingBefore);
    for (const s of [c.root, c.ws]) expect((await getBudget(redis(), c.t, s, U)).spent).toBe('400');
    await expectLedgerHolds(redis(), c.t);
  });

  it('the expiry sweeper expires a reservation it has no keys for (and its per_run counter comes down)', async () => {
    const c = await tenant();
    const pol = await call(srv.adminUrl, 'POST', '/v1/admin/policies', { adminKey: srv.adminKey, body: {
      tenant_id: c.t, name: uid('p'), scope_pattern: `tenant:${c.t}/*`,
      action_quotas: [{ action_kind: 'agent.spawn', max_calls: 5, window: 'per_run' }] } });
    expect(pol.status, pol.text).toBe(201);
    const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: c.key, body: {
      idempotency_key: uid('i'), subject: { ...c.subject, dimensions: { run_id: 'run-9' } },
      action: { kind: 'agent.spawn', name: 'x' }, estimate: { unit: U, amount: 50 } } });
    expect(r.status, r.text).toBe(200);
    const id = r.body.reservation_id as string;
    const counter = keys.quotaCounter(c.t, c.ws, 'agent.spawn', 'per_run', 'run-9');
    expect(finishKeys.get(id)).toEqual([keys.budget(c.t, c.root, U), keys.budget(c.t, c.ws, U), counter]);
    expect(await redis().hget(counter, 'used')).toBe('1');
    finishKeys.delete(id);
    const past = (await redisNowMs(redis())) - 10_000;
    await setExpiry(redis(), c.t, id, past, 0);
    await redis().zadd(keys.expirySchedule(c.t), past, id);
    const stats = await sweepOnce(srv.server.deps);
    expect(stats.expired).toBeGreaterThanOrEqual(1);
    expect(stats.failed).toBe(0);
    expect((await readReservation(redis(), c.t, id)).status).toBe('EXPIRED');
    expect(await redis().hget(counter, 'used')).toBe('0');
    for (const s of [c.root, c.ws]) expect((await getBudget(redis(), c.t, s, U)).reserved).toBe('0');
    await expectLedgerHolds(redis(), c.t);
  });
});

describe('a need_keys answer writes nothing', () => {
  it('commit, release, extend and expire answer the exact list, before any change', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 100, subject: c.subject });
    const want = [keys.budget(c.t, c.root, U), keys.budget(c.t, c.ws, U)];
    const res = keys.reservation(c.t, id);
    const actor = JSON.stringify({ type: 'api_key', key_id: 'k' });
    const calls: [string, string[], (string | number)[]][] = [
      ['commit', [res, keys.tenant(c.t), keys.outbox(c.t), keys.expirySchedule(c.t)],
        [budgetPrefix(c.t), '100', U, 'ik', 'h', '', '', 'tr', 'rq', actor, '', '', '0']],
      ['release', [res, keys.tenant(c.t), keys.outbox(c.t), keys.expirySchedule(c.t)],
        [budgetPrefix(c.t), 'ik', 'h', '', 'tr', 'rq', actor, 'api', '', '', '0']],
      ['extend', [res, keys.tenant(c.t), keys.expirySchedule(c.t)], [budgetPrefix(c.t), 'ik', 'h', '1000', '']],
    ];
    const before = await slotSnapshot(c.t);
    for (const [name, fixed, args] of calls) {
      // no extra keys, then a wrong one
      for (const extra of [[], [keys.budget(c.t, `${c.root}/workspace:zz`, U)]]) {
        const raw = await runScript(redis(), loadScript(name), [...fixed, ...extra], args);
        expect(needKeysOf(raw), `${name} ${String(raw)}`).toEqual(want);
      }
    }
    // expire: past its deadline, so the run would expire it
    await setExpiry(redis(), c.t, id, (await redisNowMs(redis())) - 10_000, 0);
    const expBefore = await slotSnapshot(c.t);
    const raw = await runScript(redis(), loadScript('expire'), [res, keys.outbox(c.t), keys.expirySchedule(c.t)], [budgetPrefix(c.t), 'tr', id, '0']);
    expect(needKeysOf(raw)).toEqual(want);
    expect(await slotSnapshot(c.t)).toEqual(expBefore);
    await setExpiry(redis(), c.t, id, (await redisNowMs(redis())) + 60_000, 5_000);
    // the tenant's keys are byte-identical (the expiry fields were put back by hand above)
    const after = await slotSnapshot(c.t);
    expect(Object.keys(after)).toEqual(Object.keys(before));
    for (const k of Object.keys(before)) if (k !== res) expect(after[k], k).toBe(before[k]);
  });

  it('reserve: the UNIT_MISMATCH probe and the replay of a live reserve declare their keys on demand', async () => {
    const c = await tenant();
    const body = { idempotency_key: uid('i'), subject: c.subject, action: { kind: 'llm.completion', name: 'x' }, estimate: { unit: U, amount: 5 } };
    // the first request of a tenant also fills the policy cache (a STALE answer and a rerun)
    const first = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: c.key, body });
    expect(first.status, first.text).toBe(200);
    const runs = countRuns();
    try {
      const mmBody = { ...body, idempotency_key: uid('i'), estimate: { unit: 'TOKENS', amount: 5 } };
      const before = await slotSnapshot(c.t);
      const mm = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: c.key, body: mmBody });
      expect(mm.status, mm.text).toBe(400);
      expect(mm.body.error).toBe('UNIT_MISMATCH');
      expect(await slotSnapshot(c.t)).toEqual(before);
      expect(runs.runs.reserve).toBe(2);
      const again = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: c.key, body });
      expect(again.status, again.text).toBe(200);
      expect(again.body.reservation_id).toBe(first.body.reservation_id);
      expect(again.body.expires_at_ms).toBe(first.body.expires_at_ms);
      expect(runs.runs.reserve).toBe(2 + 2);
    } finally { runs.stop(); }
  });

  it('createEvent: the UNIT_MISMATCH probe, nothing written', async () => {
    const c = await tenant();
    const before = await slotSnapshot(c.t);
    const r = await call(srv.runtimeUrl, 'POST', '/v1/events', { key: c.key, body: {
      idempotency_key: uid('e'), subject: c.subject, action: { kind: 'llm.completion', name: 'x' }, actual: { unit: 'TOKENS', amount: 5 } } });
    expect(r.status, r.text).toBe(400);
    expect(r.body.error).toBe('UNIT_MISMATCH');
    expect(await slotSnapshot(c.t)).toEqual(before);
  });
});

describe('quota counter keys', () => {
  it('guessed on a clock in another window: the script corrects the list and counts in its own window', async () => {
    const c = await tenant();
    const pol = await call(srv.adminUrl, 'POST', '/v1/admin/policies', { adminKey: srv.adminKey, body: {
      tenant_id: c.t, name: uid('p'), scope_pattern: `tenant:${c.t}/*`,
      action_quotas: [{ action_kind: 'llm.completion', max_calls: 10, window: 'per_hour_tumbling' }] } });
    expect(pol.status, pol.text).toBe(201);
    const send = () => call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: c.key, body: {
      idempotency_key: uid('i'), subject: c.subject, action: { kind: 'llm.completion', name: 'x' }, estimate: { unit: U, amount: 5 } } });
    expect((await send()).status).toBe(200); // policies cached
    const runs = countRuns();
    const real = Date.now.bind(Date);
    // this process's clock two hours behind Redis TIME: every guess names a past window
    const spy = vi.spyOn(Date, 'now').mockImplementation(() => real() - 2 * 3_600_000);
    let r;
    try { r = await send(); } finally { spy.mockRestore(); runs.stop(); }
    expect(r.status, r.text).toBe(200);
    expect(runs.runs.reserve).toBe(2);
    const hour = new Date(await redisNowMs(redis())).toISOString().slice(0, 13);
    const counters = await keysMatching(`${keys.quotaPrefix(c.t)}*`);
    // one counter (the test may straddle an hour: then two, each in a window Redis named)
    expect(counters.length).toBeGreaterThanOrEqual(1);
    expect(counters.some((k) => k.endsWith(`:per_hour_tumbling:${hour}`))).toBe(true);
    const past = new Date(real() - 2 * 3_600_000).toISOString().slice(0, 13);
    expect(counters.some((k) => k.endsWith(`:${past}`))).toBe(false);
    let total = 0;
    for (const k of counters) total += Number(await redis().hget(k, 'used'));
    expect(total).toBe(2);
  });
});

describe('retries are bounded', () => {
  it('a script that keeps asking for other keys ends in 500 INTERNAL_ERROR after two retries', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dk-'));
    // each run asks for a key it was not given (a list that never settles)
    writeFileSync(join(dir, 'dk_restless.lua'), "return cjson.encode({need_keys = {KEYS[1] .. ':' .. #KEYS}})\n");
    const script = loadScript('dk_restless', dir);
    const t = uid('dk');
    const runs = countRuns();
    let err: unknown;
    try { await runDeclared(redis(), script, [keys.tenant(t)], [], []); } catch (e) { err = e; } finally { runs.stop(); }
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('INTERNAL_ERROR');
    expect(runs.runs.dk_restless).toBe(3);
  });

  it.skipIf(!luaKeyGuardOn())('the declared-keys guard (DK19) covers the ledger scripts: an undeclared key fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dk-'));
    // named like a ledger script (no longer exempt); reads a key it did not declare
    writeFileSync(join(dir, 'commit.lua'), "return redis.call('GET', KEYS[1] .. ':x') or 'none'\n");
    const t = uid('dk');
    await expect(runScript(redis(), loadScript('commit', dir), [keys.tenant(t)], [])).rejects.toThrow(/undeclared key/);
    for (const name of ['reserve', 'commit', 'release', 'extend', 'expire', 'event', 'tenant_update']) expect(KEY_GUARD_EXEMPT.has(name), name).toBe(false);
  });
});
