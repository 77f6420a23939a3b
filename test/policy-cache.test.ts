// The reserve path's policy cache (docs/decisions.md DR8): candidates + the in-script
// window check select exactly what selectPolicy selects; policy changes made through the
// admin API are seen by the very next reserve although the runtime caches policies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putBudget, putTenant } from './helpers/fixtures';
import { keys } from '../src/store/keys';
import { pickCandidate, policyCandidates, selectPolicy, type Policy } from '../src/policy/match';
import { toScriptCandidate } from '../src/policy/cache';
import { readReservation } from './helpers/reservations';

describe('policyCandidates + pickCandidate ≡ selectPolicy', () => {
  it('agrees on random policy sets, scopes and times (priority, ties, windows, status, bad dates)', () => {
    let seed = 42;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    const patterns = ['tenant:acme/*', 'agent:*', 'tenant:acme/agent:x', 'workspace:w/*', '*', 'tenant:other/*', '*/agent:y'];
    const iso = (ms: number) => new Date(ms).toISOString();
    const base = Date.parse('2026-06-01T00:00:00Z');
    const paths = ['tenant:acme', 'tenant:acme/agent:x', 'tenant:acme/workspace:w/agent:y', 'tenant:acme/agent:y'];
    for (let round = 0; round < 300; round++) {
      const ps: Policy[] = [];
      const count = rnd(6);
      for (let i = 0; i < count; i++) {
        const p: Policy = { policy_id: `p${rnd(4)}${i}`, scope_pattern: patterns[rnd(patterns.length)], priority: rnd(3) };
        if (rnd(4) === 0) p.status = 'DISABLED';
        if (rnd(3) === 0) p.effective_from = iso(base + (rnd(5) - 2) * 1000);
        if (rnd(3) === 0) p.effective_until = iso(base + (rnd(5) - 2) * 1000);
        if (rnd(20) === 0) p.effective_from = 'not a date';
        ps.push(p);
      }
      for (const path of paths) {
        const cands = policyCandidates(ps, path);
        for (const dt of [-3000, -1000, 0, 999, 1000, 3000]) {
          expect(pickCandidate(cands, base + dt)?.policy_id).toBe(selectPolicy(ps, path, base + dt)?.policy_id);
        }
      }
    }
  });

  it('script candidates carry only valid settings (DR4) and sanitized caps', () => {
    const c = toScriptCandidate({
      policy_id: 'p', scope_pattern: '*', commit_overage_policy: 'BOGUS', caps: { max_tokens: 5, extra: 1 } as Policy['caps'],
      reservation_ttl_override: { default_ttl_ms: 5000, max_ttl_ms: -1, max_extensions: 2.5 },
    }, 10, undefined);
    expect(c).toEqual({ policy_id: 'p', from_ms: 10, default_ttl_ms: 5000, caps_json: '{"max_tokens":5}' });
  });
});

describe('policy cache invalidation through the runtime', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer(); }, 30_000);
  afterAll(async () => { await s?.stop(); });

  const U = 'USD_MICROCENTS';
  const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
  const reserve = (key: string, tenant: string, extra: Record<string, unknown> = {}) => call(s.runtimeUrl, 'POST', '/v1/reservations', {
    key,
    body: {
      idempotency_key: `k-${Math.random().toString(36).slice(2)}`, subject: { tenant, agent: 'bot' },
      action: { kind: 'llm.completion', name: 'gpt' }, estimate: { unit: U, amount: 1 }, ...extra,
    },
  });

  it('create, update and disable through the admin API take effect on the next reserve', async () => {
    const t = `pc-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    await putTenant(s.redis.client, t);
    await putBudget(s.redis.client, t, `tenant:${t}`, U, { allocated: 1000 });
    const key = await s.tenantKey(t);

    const r0 = await reserve(key, t); // populates this instance's cache (no policies)
    expect([r0.status, r0.body.decision]).toEqual([200, 'ALLOW']);

    const created = await admin('POST', '/v1/admin/policies', {
      tenant_id: t, name: 'caps', scope_pattern: 'agent:*', caps: { max_tokens: 7 },
      reservation_ttl_override: { default_ttl_ms: 5000 },
    });
    expect(created.status).toBe(201);
    expect(await s.redis.client.get(keys.policyVersion(t))).toBe('1');
    const r1 = await reserve(key, t);
    expect([r1.body.decision, r1.body.caps]).toEqual(['ALLOW_WITH_CAPS', { max_tokens: 7 }]);
    const h1 = await readReservation(s.redis.client, t, r1.body.reservation_id);
    expect(h1.policy_id).toBe(created.body.policy_id);
    expect(Number(h1.expires_at_ms) - Number(h1.created_at_ms)).toBe(5000);

    const upd = await admin('PATCH', `/v1/admin/policies/${created.body.policy_id}`, { caps: { max_tokens: 9 } });
    expect(upd.status).toBe(200);
    const r2 = await reserve(key, t);
    expect(r2.body.caps).toEqual({ max_tokens: 9 });

    // A policy whose effective window has not started is skipped (Redis TIME in the script).
    const future = await admin('POST', '/v1/admin/policies', {
      tenant_id: t, name: 'future', scope_pattern: `tenant:${t}/agent:bot`, priority: 10, caps: { max_tokens: 1 },
      effective_from: new Date(Date.now() + 3_600_000).toISOString(),
    });
    expect(future.status).toBe(201);
    const r3 = await reserve(key, t);
    expect(r3.body.caps).toEqual({ max_tokens: 9 });

    const off = await admin('PATCH', `/v1/admin/policies/${created.body.policy_id}`, { status: 'DISABLED' });
    expect(off.status).toBe(200);
    const r4 = await reserve(key, t);
    expect([r4.body.decision, r4.body.caps]).toEqual(['ALLOW', undefined]);
    const h4 = await readReservation(s.redis.client, t, r4.body.reservation_id);
    expect(h4.policy_id).toBeUndefined();
  });

  it('a replayed reserve reports the original reservation and schedules nothing new', async () => {
    const t = `pc-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    await putBudget(s.redis.client, t, `tenant:${t}`, U, { allocated: 1000 });
    const key = await s.tenantKey(t);
    const first = await reserve(key, t, { idempotency_key: 'same' });
    const again = await reserve(key, t, { idempotency_key: 'same' });
    expect(again.body.reservation_id).toBe(first.body.reservation_id);
    expect(await s.redis.client.zrange(keys.expirySchedule(t), 0, -1)).toEqual([first.body.reservation_id]);
  });
});
