// v0.1.26 action governance on the reserve path (runtime extension RESERVATION EVALUATION
// ORDER, OBSERVE MODE EVALUATION RULES; action-kinds spec WINDOW MODEL, PER_RUN COUNTER
// LIFECYCLE): access control, risk-class and per-kind quotas, counters and their lifecycle,
// DenyDetail on every surface, observe mode, threshold events. Real server, real Redis;
// every response is validated against the merged spec by the server itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putBudget, putTenant, getBudget } from './helpers/fixtures';
import { expectValidEvent, storedEvents } from './helpers/events';
import { uid, setExpiry } from './helpers/reservations';
import { keys } from '../src/store/keys';

const U = 'USD_MICROCENTS';
let s: TestServer;

beforeAll(async () => {
  s = await startTestServer({
    CYCLES_FEATURES: 'v0.1.26', CYCLES_SWEEP_INTERVAL_MS: '100',
    CYCLES_CUSTOM_ACTION_KINDS: 'custom.acme.wire=high_risk',
  });
}, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });

interface Setup { tenant: string; key: string; scope: string }
async function setup(policy: Record<string, unknown> | undefined, opts: { allocated?: number; tenant?: Record<string, string> } = {}): Promise<Setup> {
  const tenant = uid('gv');
  await putTenant(s.redis.client, tenant, opts.tenant ?? {});
  const scope = `tenant:${tenant}/agent:bot`;
  await putBudget(s.redis.client, tenant, `tenant:${tenant}`, U, { allocated: 1_000_000 });
  await putBudget(s.redis.client, tenant, scope, U, { allocated: opts.allocated ?? 50_000 });
  if (policy) {
    const r = await admin('POST', '/v1/admin/policies', { tenant_id: tenant, name: uid('p'), scope_pattern: `tenant:${tenant}/*`, ...policy });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }
  return { tenant, key: await s.tenantKey(tenant), scope };
}

function reserveBody(t: Setup, kind: string, extra: Record<string, unknown> = {}, run = 'run-1') {
  return {
    idempotency_key: uid('i'), subject: { tenant: t.tenant, agent: 'bot', dimensions: { run_id: run } },
    action: { kind, name: 'x' }, estimate: { unit: U, amount: 500 }, ...extra,
  };
}
const reserve = (t: Setup, kind: string, extra: Record<string, unknown> = {}, run = 'run-1') =>
  call(s.runtimeUrl, 'POST', '/v1/reservations', { key: t.key, body: reserveBody(t, kind, extra, run) });

async function counters(tenant: string): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  // KEYS on every master (a cluster client sends KEYS to one node only)
  const c = s.redis.client as unknown as { nodes?: (role: string) => { keys(p: string): Promise<string[]> }[] };
  const pattern = `${keys.quotaPrefix(tenant)}*`;
  const found = typeof c.nodes === 'function'
    ? (await Promise.all(c.nodes('master').map((n) => n.keys(pattern)))).flat()
    : await s.redis.client.keys(pattern);
  for (const k of found) out[k] = await s.redis.client.hgetall(k);
  return out;
}
const used = async (tenant: string) => Object.fromEntries(Object.entries(await counters(tenant)).map(([k, v]) => [k.slice(keys.quotaPrefix(tenant).length), Number(v.used)]));

describe('access control (step 1)', () => {
  it('a denied kind: live 409 ACTION_KIND_DENIED with deny_detail, dry_run 200 DENY, nothing written; other kinds pass', async () => {
    const t = await setup({ denied_action_kinds: ['payment.charge'] });
    const before = await getBudget(s.redis.client, t.tenant, t.scope, U);
    const live = await reserve(t, 'payment.charge');
    expect(live.status).toBe(409);
    expect(live.body.error).toBe('ACTION_KIND_DENIED');
    expect(live.body.details.deny_detail).toMatchObject({ reason_code: 'ACTION_KIND_DENIED', blocked_by_scope: t.scope });
    expect(live.body.details.deny_detail.blocked_by_policy).toMatch(/^pol_/);
    expect(live.body.details.deny_detail.suggested_fix).toContain("Remove 'payment.charge' from denied_action_kinds");
    const dry = await reserve(t, 'payment.charge', { dry_run: true });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ decision: 'DENY', reason_code: 'ACTION_KIND_DENIED', deny_detail: { reason_code: 'ACTION_KIND_DENIED' } });
    expect(dry.body.reservation_id).toBeUndefined();
    const dec = await call(s.runtimeUrl, 'POST', '/v1/decide', { key: t.key, body: reserveBody(t, 'payment.charge') });
    expect(dec.body).toMatchObject({ decision: 'DENY', reason_code: 'ACTION_KIND_DENIED', deny_detail: { reason_code: 'ACTION_KIND_DENIED' } });
    expect(await getBudget(s.redis.client, t.tenant, t.scope, U)).toEqual(before);
    expect((await reserve(t, 'llm.completion')).status).toBe(200);
    // reservation.denied carries the deny_detail (live and decide; dry_run emits nothing)
    const denied = (await storedEvents(s.redis.client, t.tenant)).filter((e) => e.event_type === 'reservation.denied');
    expect(denied).toHaveLength(2);
    for (const e of denied) {
      expectValidEvent(e);
      expect((e.data as any).reason_code).toBe('ACTION_KIND_DENIED');
      expect((e.data as any).deny_detail.reason_code).toBe('ACTION_KIND_DENIED');
    }
  });

  it('an allow list: a kind not on it → ACTION_KIND_NOT_ALLOWED; a listed kind passes', async () => {
    const t = await setup({ allowed_action_kinds: ['db.query', 'llm.completion'] });
    const r = await reserve(t, 'message.email.send', { dry_run: true });
    expect(r.body).toMatchObject({ decision: 'DENY', reason_code: 'ACTION_KIND_NOT_ALLOWED',
      deny_detail: { reason_code: 'ACTION_KIND_NOT_ALLOWED', suggested_fix: expect.stringContaining("Add 'message.email.send' to allowed_action_kinds") } });
    expect((await reserve(t, 'db.query')).status).toBe(200);
  });

  it('precedence: a denied kind on an exhausted budget reports ACTION_KIND_DENIED; a quota denial on an exhausted budget reports ACTION_QUOTA_EXCEEDED', async () => {
    const t = await setup({ denied_action_kinds: ['payment.charge'], action_quotas: [{ action_kind: 'llm.completion', max_calls: 1, window: 'per_run' }] }, { allocated: 600 });
    expect((await reserve(t, 'payment.charge')).body.error).toBe('ACTION_KIND_DENIED');
    expect((await reserve(t, 'llm.completion')).status).toBe(200); // uses 500 of 600 and the quota's one call
    const r = await reserve(t, 'llm.completion');
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('ACTION_QUOTA_EXCEEDED');
    expect((await reserve(t, 'llm.completion', {}, 'run-2')).body.error).toBe('BUDGET_EXCEEDED');
  });
});

describe('quotas (steps 2 and 3) and counters', () => {
  it('per_run per-kind quota: exactly max_calls ALLOWs, then 409 with quota_violation; other runs are separate; counters +1 each', async () => {
    const t = await setup({ action_quotas: [{ action_kind: 'message.email.send', max_calls: 3, window: 'per_run' }] });
    for (let i = 0; i < 3; i++) expect((await reserve(t, 'message.email.send')).status).toBe(200);
    const before = await getBudget(s.redis.client, t.tenant, t.scope, U);
    const r = await reserve(t, 'message.email.send');
    expect(r.status).toBe(409);
    expect(r.body.message).toBe('Action quota exceeded: message.email.send per_run limit 3 reached');
    expect(r.body.details.deny_detail).toMatchObject({
      reason_code: 'ACTION_QUOTA_EXCEEDED', blocked_by_scope: t.scope,
      quota_violation: { action_kind: 'message.email.send', window: 'per_run', window_key: 'run-1', used: 3, limit: 3, scope: t.scope },
    });
    expect(await getBudget(s.redis.client, t.tenant, t.scope, U)).toEqual(before);
    expect(await used(t.tenant)).toEqual({ [`${t.scope}:message.email.send:per_run:run-1`]: 3 });
    expect((await reserve(t, 'message.email.send', {}, 'run-2')).status).toBe(200);
    // other kinds are not counted
    expect((await reserve(t, 'llm.completion')).status).toBe(200);
    expect(await used(t.tenant)).toEqual({
      [`${t.scope}:message.email.send:per_run:run-1`]: 3, [`${t.scope}:message.email.send:per_run:run-2`]: 1,
    });
  });

  it('a per_run quota without subject.dimensions.run_id → 400 INVALID_REQUEST, nothing written', async () => {
    const t = await setup({ action_quotas: [{ action_kind: 'agent.spawn', max_calls: 5, window: 'per_run' }] });
    const body = reserveBody(t, 'agent.spawn');
    delete (body.subject as any).dimensions;
    const r = await call(s.runtimeUrl, 'POST', '/v1/reservations', { key: t.key, body });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('INVALID_REQUEST');
    expect(r.body.message).toContain('run_id');
    expect(await counters(t.tenant)).toEqual({});
    // a kind without a per_run rule needs no run_id
    const ok = reserveBody(t, 'llm.completion');
    delete (ok.subject as any).dimensions;
    expect((await call(s.runtimeUrl, 'POST', '/v1/reservations', { key: t.key, body: ok })).status).toBe(200);
  });

  it('risk-class quota aggregates kinds of one class; unregistered kinds count as side_effect; declared custom kinds use their class', async () => {
    const t = await setup({ risk_class_quotas: [
      { risk_class: 'external_side_effect', max_calls: 2, window: 'per_hour_tumbling' },
      { risk_class: 'side_effect', max_calls: 1, window: 'per_day_tumbling' },
      { risk_class: 'high_risk', max_calls: 1, window: 'per_run' },
    ] });
    expect((await reserve(t, 'message.email.send')).status).toBe(200);
    expect((await reserve(t, 'message.slack.post')).status).toBe(200);
    const r = await reserve(t, 'message.sms.send');
    expect(r.status).toBe(409);
    expect(r.body.message).toBe('Risk-class quota exceeded: external_side_effect per_hour_tumbling limit 2 reached');
    const hour = new Date().toISOString().slice(0, 13);
    expect(r.body.details.deny_detail.quota_violation).toMatchObject({
      action_kind: 'message.sms.send', risk_class: 'external_side_effect', window: 'per_hour_tumbling', used: 2, limit: 2,
    });
    expect([hour, new Date(Date.now() - 60_000).toISOString().slice(0, 13)]).toContain(r.body.details.deny_detail.quota_violation.window_key);
    expect((await reserve(t, 'proprietary.action')).status).toBe(200);
    expect((await reserve(t, 'llm.completion')).body.error).toBe('ACTION_QUOTA_EXCEEDED'); // side_effect: 1 per day used
    expect((await reserve(t, 'custom.acme.wire')).status).toBe(200);
    const q = await reserve(t, 'custom.acme.wire');
    expect(q.body.details.deny_detail.quota_violation).toMatchObject({ risk_class: 'high_risk', action_kind: 'custom.acme.wire' });
    const day = new Date().toISOString().slice(0, 10);
    const u = await used(t.tenant);
    expect(u[`${t.scope}:__risk__:side_effect:per_day_tumbling:${day}`]).toBe(1);
    expect(u[`${t.scope}:__risk__:high_risk:per_run:run-1`]).toBe(1);
  });

  it('several violated rules: the lowest headroom is reported (burst per minute under an hourly quota)', async () => {
    const t = await setup({ action_quotas: [
      { action_kind: 'message.email.send', max_calls: 100, window: 'per_hour_tumbling' },
      { action_kind: 'message.email.send', max_calls: 2, window: 'per_minute_tumbling' },
    ] });
    // a minute boundary between the calls would reset the minute counter: retry once then
    let r;
    for (let attempt = 0; attempt < 2; attempt++) {
      await reserve(t, 'message.email.send');
      await reserve(t, 'message.email.send');
      r = await reserve(t, 'message.email.send');
      if (r.status === 409) break;
    }
    expect(r!.status).toBe(409);
    expect(r!.body.details.deny_detail.quota_violation).toMatchObject({ window: 'per_minute_tumbling', limit: 2, used: 2 });
    expect(r!.body.details.deny_detail.quota_violation.window_key).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d$/);
    expect(r!.body.details.deny_detail.suggested_fix).toContain('Wait until the next minute');
  });

  it('per_tenant_per_day counts every scope of the tenant on the tenant root', async () => {
    const t = await setup({ action_quotas: [{ action_kind: 'db.query', max_calls: 2, window: 'per_tenant_per_day' }] });
    await putBudget(s.redis.client, t.tenant, `tenant:${t.tenant}/agent:other`, U, { allocated: 10_000 });
    expect((await reserve(t, 'db.query')).status).toBe(200);
    const other = { ...reserveBody(t, 'db.query'), subject: { tenant: t.tenant, agent: 'other' } };
    expect((await call(s.runtimeUrl, 'POST', '/v1/reservations', { key: t.key, body: other })).status).toBe(200);
    const r = await reserve(t, 'db.query');
    expect(r.body.details.deny_detail.quota_violation).toMatchObject({ scope: `tenant:${t.tenant}`, window: 'per_tenant_per_day', used: 2 });
  });

  it('allowlisted rules apply only when the declared policy_keys dimension is present and listed', async () => {
    const t = await setup({ action_quotas: [{ action_kind: 'message.email.send', max_calls: 1, window: 'per_run', host_allowlist: ['api.sendgrid.com'] }] });
    const withHost = (host?: string) => ({ action: { kind: 'message.email.send', name: 'x', ...(host ? { policy_keys: { host } } : {}) } });
    expect((await reserve(t, 'message.email.send', withHost('API.SendGrid.com'))).status).toBe(200);
    expect((await reserve(t, 'message.email.send', withHost('api.sendgrid.com'))).body.error).toBe('ACTION_QUOTA_EXCEEDED');
    // absent or unlisted host: the rule is skipped (never a denial)
    expect((await reserve(t, 'message.email.send', withHost())).status).toBe(200);
    expect((await reserve(t, 'message.email.send', withHost('smtp.other.com'))).status).toBe(200);
    // llm.completion declares no host: a host allowlist rule for it never applies
    const t2 = await setup({ action_quotas: [{ action_kind: 'llm.completion', max_calls: 1, window: 'per_run', host_allowlist: ['x.com'] }] });
    for (let i = 0; i < 2; i++) {
      expect((await reserve(t2, 'llm.completion', { action: { kind: 'llm.completion', name: 'x', policy_keys: { host: 'x.com' } } })).status).toBe(200);
    }
  });

  it('per_run lifecycle: release and expiry decrement, commit does not', async () => {
    const t = await setup({ action_quotas: [{ action_kind: 'agent.spawn', max_calls: 2, window: 'per_run', per_run_counter_ttl_ms: 120_000 }] });
    const a = await reserve(t, 'agent.spawn');
    const b = await reserve(t, 'agent.spawn');
    const k = `${t.scope}:agent.spawn:per_run:run-1`;
    expect((await used(t.tenant))[k]).toBe(2);
    const ttl = await s.redis.client.pttl(keys.quotaPrefix(t.tenant) + k);
    expect(ttl).toBeGreaterThan(100_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
    const c = await call(s.runtimeUrl, 'POST', `/v1/reservations/${a.body.reservation_id}/commit`, { key: t.key, body: { idempotency_key: uid('c'), actual: { unit: U, amount: 100 } } });
    expect(c.status).toBe(200);
    expect((await used(t.tenant))[k]).toBe(2);
    const rel = await call(s.runtimeUrl, 'POST', `/v1/reservations/${b.body.reservation_id}/release`, { key: t.key, body: { idempotency_key: uid('r') } });
    expect(rel.status).toBe(200);
    expect((await used(t.tenant))[k]).toBe(1);
    const d = await reserve(t, 'agent.spawn');
    expect(d.status).toBe(200);
    expect((await reserve(t, 'agent.spawn')).body.error).toBe('ACTION_QUOTA_EXCEEDED');
    // expiry by the sweeper gives the call back
    await setExpiry(s.redis.client, t.tenant, d.body.reservation_id, Date.now() - 10_000, 0);
    await s.redis.client.zadd(keys.expirySchedule(t.tenant), String(Date.now() - 10_000), d.body.reservation_id);
    const until = Date.now() + 10_000;
    while ((await used(t.tenant))[k] !== 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect((await used(t.tenant))[k]).toBe(1);
    expect((await reserve(t, 'agent.spawn')).status).toBe(200);
  });

  it('only the highest-priority matching policy applies (rules are not merged)', async () => {
    const t = await setup({ priority: 1, action_quotas: [{ action_kind: 'db.query', max_calls: 1, window: 'per_run' }] });
    const r = await admin('POST', '/v1/admin/policies', { tenant_id: t.tenant, name: uid('p'), scope_pattern: `tenant:${t.tenant}/agent:bot`, priority: 10, denied_action_kinds: ['payment.charge'] });
    expect(r.status).toBe(201);
    for (let i = 0; i < 3; i++) expect((await reserve(t, 'db.query')).status).toBe(200);
    expect(await counters(t.tenant)).toEqual({});
    expect((await reserve(t, 'payment.charge')).body.error).toBe('ACTION_KIND_DENIED');
  });
});

describe('counters written by reserve are what the counter API shows', () => {
  it('listActionQuotaCounters renders per-kind and risk counters; reset unblocks the run', async () => {
    const t = await setup({
      action_quotas: [{ action_kind: 'message.email.send', max_calls: 2, window: 'per_run' }],
      risk_class_quotas: [{ risk_class: 'external_side_effect', max_calls: 10, window: 'per_day_tumbling' }],
    });
    for (let i = 0; i < 2; i++) expect((await reserve(t, 'message.email.send')).status).toBe(200);
    const l = await admin('GET', `/v1/admin/action-quota-counters?tenant_id=${t.tenant}`);
    expect(l.status).toBe(200);
    const day = new Date().toISOString().slice(0, 10);
    const byKind = Object.fromEntries(l.body.counters.map((c: any) => [c.action_kind, c]));
    expect(byKind['message.email.send']).toMatchObject({ scope: t.scope, window: 'per_run', window_key: 'run-1', used: 2, limit: 2, remaining: 0 });
    expect(byKind.__risk__).toMatchObject({ risk_class: 'external_side_effect', window: 'per_day_tumbling', window_key: day, used: 2, limit: 10 });
    expect((await reserve(t, 'message.email.send')).body.error).toBe('ACTION_QUOTA_EXCEEDED');
    const r = await admin('POST', '/v1/admin/action-quota-counters/reset', {
      tenant_id: t.tenant, scope: t.scope, action_kind: 'message.email.send', window: 'per_run', window_key: 'run-1', reason: 'test',
    });
    expect(r.status).toBe(200);
    expect(r.body.previous_used).toBe(2);
    expect((await reserve(t, 'message.email.send')).status).toBe(200);
  });
});

describe('threshold events', () => {
  it('quota.threshold_approaching fires once when 7 → 8 of 10 crosses 0.80; the 9th and 10th do not re-emit', async () => {
    const t = await setup({ action_quotas: [{ action_kind: 'message.email.send', max_calls: 10, window: 'per_run', threshold_pct: 0.8 }] });
    const evs = async () => (await storedEvents(s.redis.client, t.tenant)).filter((e) => e.event_type === 'quota.threshold_approaching');
    for (let i = 0; i < 7; i++) expect((await reserve(t, 'message.email.send')).status).toBe(200);
    expect(await evs()).toEqual([]);
    expect((await reserve(t, 'message.email.send')).status).toBe(200);
    let e = await evs();
    expect(e).toHaveLength(1);
    expectValidEvent(e[0]);
    expect(e[0].data).toEqual({
      scope: t.scope, action_kind: 'message.email.send', window: 'per_run', window_key: 'run-1', used: 8, limit: 10,
      threshold_pct: 0.8, policy_id: expect.stringMatching(/^pol_/), tenant_id: t.tenant,
    });
    expect(e[0].correlation_id).toMatch(/^corr_[0-9a-f]{40}$/);
    for (let i = 0; i < 2; i++) expect((await reserve(t, 'message.email.send')).status).toBe(200);
    e = await evs();
    expect(e).toHaveLength(1);
    // a new window instance (another run) re-arms
    for (let i = 0; i < 8; i++) await reserve(t, 'message.email.send', {}, 'run-2');
    e = await evs();
    expect(e).toHaveLength(2);
    expect(e[1].correlation_id).not.toBe(e[0].correlation_id);
  });
});

describe('observe mode', () => {
  async function snapshot(t: Setup) {
    const c = s.redis.client;
    return {
      budgets: [await getBudget(c, t.tenant, t.scope, U), await getBudget(c, t.tenant, `tenant:${t.tenant}`, U)],
      counters: await counters(t.tenant),
      reservations: await c.zrange(keys.reservationIndex(t.tenant), 0, -1),
    };
  }

  it('tenant OBSERVE: a burst changes no balance, counter or reservation; every request gets 200 and one observed_* event', async () => {
    const t = await setup({ action_quotas: [{ action_kind: 'message.email.send', max_calls: 2, window: 'per_run' }] }, { tenant: { observe_mode: 'OBSERVE' } });
    // two enforced calls first fill the quota (request ENFORCE overrides the tenant)
    for (let i = 0; i < 2; i++) {
      const r = await reserve(t, 'message.email.send', { observe_mode: 'ENFORCE' });
      expect(r.status).toBe(200);
      expect(r.body.reservation_id).toBeDefined();
    }
    const before = await snapshot(t);
    const rs = await Promise.all([
      ...Array.from({ length: 10 }, () => reserve(t, 'message.email.send')),
      ...Array.from({ length: 10 }, () => reserve(t, 'llm.completion')),
      reserve(t, 'llm.completion', { estimate: { unit: U, amount: 10_000_000 } }),
    ]);
    for (const r of rs) {
      expect(r.status).toBe(200);
      expect(r.body.reservation_id).toBeUndefined();
      expect(r.body.expires_at_ms).toBeUndefined();
      expect(r.body.affected_scopes).toEqual([`tenant:${t.tenant}`, t.scope]);
    }
    expect(rs.slice(0, 10).every((r) => r.body.decision === 'DENY' && r.body.deny_detail.reason_code === 'ACTION_QUOTA_EXCEEDED')).toBe(true);
    expect(rs.slice(10, 20).every((r) => r.body.decision === 'ALLOW')).toBe(true);
    // the tenant root comes first in canonical order and is the one that cannot take it
    expect(rs[20].body).toMatchObject({ decision: 'DENY', reason_code: 'BUDGET_EXCEEDED', deny_detail: { reason_code: 'BUDGET_EXCEEDED', blocked_by_scope: `tenant:${t.tenant}`, budget_remaining: 999_000 } });
    expect(await snapshot(t)).toEqual(before);
    const evs = await storedEvents(s.redis.client, t.tenant);
    const denied = evs.filter((e) => e.event_type === 'reservation.observed_denied');
    const allowed = evs.filter((e) => e.event_type === 'reservation.observed_allowed');
    expect(denied).toHaveLength(11);
    expect(allowed).toHaveLength(10);
    expect(evs.filter((e) => e.event_type === 'reservation.denied')).toEqual([]);
    for (const e of [...denied, ...allowed]) expectValidEvent(e);
    const q = denied.find((e) => (e.data as any).deny_detail.reason_code === 'ACTION_QUOTA_EXCEEDED')!;
    expect(q.data).toMatchObject({ scope: t.scope, unit: U, observe_mode: 'OBSERVE', would_have_blocked_at: t.scope, estimated_amount: 500,
      action: { kind: 'message.email.send', name: 'x' }, deny_detail: { quota_violation: { used: 2, limit: 2, window_key: 'run-1' } } });
    // same tenant, scope, kind, window_key, reason → the same correlation id
    const ids = new Set(denied.filter((e) => (e.data as any).deny_detail.reason_code === 'ACTION_QUOTA_EXCEEDED').map((e) => e.correlation_id));
    expect(ids.size).toBe(1);
    expect(allowed[0].data).toMatchObject({ scope: t.scope, decision: 'ALLOW', observe_mode: 'OBSERVE', estimated_amount: 500 });
    expect(new Set(allowed.map((e) => e.correlation_id)).size).toBe(1);
  });

  it('request observe_mode OBSERVE on an ENFORCE tenant: evaluation only, observed_allowed; dry_run + OBSERVE still emits', async () => {
    const t = await setup(undefined);
    const before = await snapshot(t);
    const r = await reserve(t, 'llm.completion', { observe_mode: 'OBSERVE' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ decision: 'ALLOW', reserved: { unit: U, amount: 500 } });
    expect(r.body.reservation_id).toBeUndefined();
    await reserve(t, 'llm.completion', { observe_mode: 'OBSERVE', dry_run: true });
    await reserve(t, 'llm.completion', { dry_run: true }); // plain dry_run: no event
    expect(await snapshot(t)).toEqual(before);
    const evs = (await storedEvents(s.redis.client, t.tenant)).filter((e) => e.event_type.startsWith('reservation.'));
    expect(evs.map((e) => e.event_type)).toEqual(['reservation.observed_allowed', 'reservation.observed_allowed']);
  });
});

describe('deny_detail on budget denials', () => {
  it('live BUDGET_EXCEEDED: details.deny_detail with blocked_by_scope, budget_remaining and a funding fix; decide mirrors reason_code', async () => {
    const t = await setup(undefined, { allocated: 45_000 });
    const r = await reserve(t, 'llm.completion', { estimate: { unit: U, amount: 500_000 } });
    expect(r.status).toBe(409);
    expect(r.body.details.deny_detail).toEqual({
      reason_code: 'BUDGET_EXCEEDED', blocked_by_scope: t.scope, budget_remaining: 45_000,
      suggested_fix: `Fund ${t.scope} budget by at least 455000 USD_MICROCENTS`,
    });
    const d = await call(s.runtimeUrl, 'POST', '/v1/decide', { key: t.key, body: { ...reserveBody(t, 'llm.completion'), estimate: { unit: U, amount: 500_000 } } });
    expect(d.body.reason_code).toBe('BUDGET_EXCEEDED');
    expect(d.body.deny_detail.reason_code).toBe('BUDGET_EXCEEDED');
  });
});
