// budget.burn_rate_anomaly (docs/decisions.md DV34): the worker's budget sampler (every
// window/4) judges each completed window's spend rate against the budget's baseline.
// Real spend through POST /v1/events; a 1 s window so the test takes seconds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { expectValidEvent, storedEvents } from './helpers/events';
import { keys } from '../src/store/keys';
import { uid } from './helpers/reservations';
import { burnPass } from '../src/events/signals/burn';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ CYCLES_SIGNAL_BURN_RATE_WINDOW_SECONDS: '1', CYCLES_SIGNAL_BURN_RATE_MULTIPLIER: '4' });
}, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const T = (n: number) => ({ unit: 'TOKENS', amount: n });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function anomalies(t: string) {
  const evs = (await storedEvents(s.redis.client, t)).filter((e) => e.event_type === 'budget.burn_rate_anomaly');
  for (const e of evs) expectValidEvent(e);
  return evs;
}

describe('budget.burn_rate_anomaly', () => {
  it('a spend rate far above the learned baseline fires once; a quiet window re-arms it', async () => {
    const t = uid('br');
    const scope = `tenant:${t}`;
    expect((await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t })).status).toBe(201);
    expect((await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope, unit: 'TOKENS', allocated: T(10_000_000) })).status).toBe(201);
    const key = (await admin('POST', '/v1/admin/api-keys', { tenant_id: t, name: 'agent' })).body.key_secret as string;
    const spend = async (n: number) => {
      const r = await call(s.runtimeUrl, 'POST', '/v1/events', { key, body: {
        idempotency_key: uid('e'), subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' }, actual: T(n),
      } });
      expect(r.status, r.text).toBe(201);
    };
    const steady = async (ms: number) => {
      for (const end = Date.now() + ms; Date.now() < end;) { await spend(10); await sleep(100); }
    };

    // ~100 tokens/s for 5 windows: the baseline (no anomaly while learning)
    await steady(5000);
    expect(await anomalies(t)).toEqual([]);
    const state = (await s.redis.client.hget(keys.signalsBurn(t), `${scope}|TOKENS`))!.split(',');
    expect(Number(state[3])).toBeGreaterThanOrEqual(3); // windows in the baseline
    expect(Number(state[2])).toBeGreaterThan(0);

    // a burst: ~50× the baseline, sustained for three windows
    const burst = async (ms: number) => {
      for (const end = Date.now() + ms; Date.now() < end;) { await spend(1000); await sleep(100); }
    };
    await burst(3000);
    await sleep(300);
    let evs = await anomalies(t);
    // once, although every window of the burst is far above the baseline
    expect(evs).toHaveLength(1);
    expect(evs[0]).toMatchObject({
      tenant_id: t, scope, category: 'budget', source: 'anomaly-detector', actor: { type: 'system' },
      data: { scope, unit: 'TOKENS', window_seconds: 1 },
    });
    const d = evs[0].data as { current_rate: number; baseline_rate: number; multiplier: number; projected_exhaustion_minutes: number };
    expect(d.multiplier).toBeGreaterThanOrEqual(4);
    expect(d.current_rate / d.baseline_rate).toBeCloseTo(d.multiplier, 6);
    expect(d.projected_exhaustion_minutes).toBeGreaterThan(0);

    // a quiet window re-arms it; the next burst fires again, once, although three more
    // "workers" judge the budget alongside the server's own sampler
    await sleep(1500);
    await spend(20_000);
    await sleep(1100);
    const passes = await Promise.all([0, 1, 2].map(() => burnPass(s.server.deps, s.server.config.signals)));
    await sleep(600);
    evs = await anomalies(t);
    expect(evs).toHaveLength(2);
    expect(passes.reduce((a, x) => a + x.written, 0)).toBeLessThanOrEqual(1);
  }, 30_000);
});
