// reservation.denial_rate_spike / reservation.expiry_rate_spike (docs/decisions.md DV33):
// produced by the signals hook of the event relay running in the test server's worker
// role, from real denials (POST /v1/reservations → 409) and real expiries (the sweeper).
// Once per crossing, re-armed after a window without a high observation; counting is
// idempotent, so several relay processes (or a re-relayed batch) still give one event.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { extraClient } from './helpers/redis';
import { expectValidEvent, storedEvents } from './helpers/events';
import { keys } from '../src/store/keys';
import { fieldsOf, renderEvent } from '../src/events/model';
import { uid } from './helpers/reservations';
import { rateHook } from '../src/events/signals/rates';
import type { RelayedEvent } from '../src/events/relay';

const WINDOW_S = 3;
let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({
    CYCLES_SIGNAL_RATE_WINDOW_SECONDS: String(WINDOW_S),
    CYCLES_SIGNAL_RATE_MIN_SAMPLES: '10',
    CYCLES_SIGNAL_DENIAL_RATE_THRESHOLD: '0.5',
    CYCLES_SIGNAL_EXPIRY_RATE_THRESHOLD: '0.5',
    CYCLES_SWEEP_INTERVAL_MS: '100',
  });
}, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const T = (n: number) => ({ unit: 'TOKENS', amount: n });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function tenant(allocated: number) {
  const t = uid('rt');
  expect((await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t })).status).toBe(201);
  expect((await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope: `tenant:${t}`, unit: 'TOKENS', allocated: T(allocated) })).status).toBe(201);
  const k = await admin('POST', '/v1/admin/api-keys', { tenant_id: t, name: 'agent' });
  return { t, key: k.body.key_secret as string };
}

const reserveBody = (t: string, amount: number, extra: Record<string, unknown> = {}) => ({
  idempotency_key: uid('r'), subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' }, estimate: T(amount), ...extra,
});
async function reserveN(key: string, t: string, n: number, amount: number, status: number, extra: Record<string, unknown> = {}) {
  const rs = await Promise.all(Array.from({ length: n }, () => call(s.runtimeUrl, 'POST', '/v1/reservations', { key, body: reserveBody(t, amount, extra) })));
  for (const r of rs) expect(r.status, r.text).toBe(status);
}

/** Waits until the relay has acknowledged everything in the tenant's outbox (including
 *  what its hooks appended meanwhile). */
async function relayed(t: string, timeoutMs = 10_000): Promise<void> {
  const r = s.redis.client;
  const end = Date.now() + timeoutMs;
  for (;;) {
    const last = (await r.xrevrange(keys.outbox(t), '+', '-', 'COUNT', 1))[0]?.[0];
    const groups = (await r.xinfo('GROUPS', keys.outbox(t)).catch(() => [])) as unknown[][];
    const g = groups.map((x) => fieldsOf(x.map(String))).find((x) => x.name === 'relay');
    if (last && g && g['last-delivered-id'] === last && g.pending === '0') return;
    if (Date.now() > end) throw new Error(`relay did not catch up on ${t}`);
    await sleep(25);
  }
}

async function spikes(t: string, type: string) {
  const evs = (await storedEvents(s.redis.client, t)).filter((e) => e.event_type === type);
  for (const e of evs) expectValidEvent(e);
  return evs;
}

describe('reservation.denial_rate_spike', () => {
  it('fires once when denials exceed the threshold over the window, not again until re-armed', async () => {
    const { t, key } = await tenant(100);
    await reserveN(key, t, 5, 20, 200);            // 5 created, budget exhausted
    await reserveN(key, t, 20, 20, 409);           // 20 denied: 20 / 25 = 0.8 ≥ 0.5
    await relayed(t);
    let evs = await spikes(t, 'reservation.denial_rate_spike');
    expect(evs).toHaveLength(1);
    expect(evs[0]).toMatchObject({
      tenant_id: t, category: 'reservation', source: 'anomaly-detector', actor: { type: 'system' },
      data: { metric: 'denial_rate', threshold_rate: 0.5, window_seconds: WINDOW_S },
    });
    const d = evs[0].data as { current_rate: number; sample_count: number };
    expect(d.sample_count).toBeGreaterThanOrEqual(10);
    expect(d.current_rate).toBeGreaterThanOrEqual(0.5);
    expect(d.current_rate).toBeLessThanOrEqual(1);

    // still spiking: no flood
    await reserveN(key, t, 20, 20, 409);
    await relayed(t);
    expect(await spikes(t, 'reservation.denial_rate_spike')).toHaveLength(1);

    // a whole window with no high observation re-arms it; the next spike fires again
    await sleep(WINDOW_S * 1000 + 300);
    await reserveN(key, t, 12, 20, 409);
    await relayed(t);
    evs = await spikes(t, 'reservation.denial_rate_spike');
    expect(evs).toHaveLength(2);
    expect((await s.redis.client.hget(keys.signals(t), 'denial_rate'))).toBe('1');
  });

  it('a low rate (mostly successful reservations) or too few samples writes nothing', async () => {
    const { t, key } = await tenant(1_000_000);
    await reserveN(key, t, 30, 10, 200);
    await reserveN(key, t, 2, 10_000_000, 409);   // 2 / 32 < 0.5
    const small = await tenant(10);
    await reserveN(small.key, small.t, 1, 10, 200);
    await reserveN(small.key, small.t, 5, 10, 409); // 5 / 6 ≥ 0.5 but only 6 samples < 10
    await relayed(t);
    await relayed(small.t);
    expect(await spikes(t, 'reservation.denial_rate_spike')).toEqual([]);
    expect(await spikes(small.t, 'reservation.denial_rate_spike')).toEqual([]);
  });

  it('several relay processes handing over the same batch at once (and again) count it once: one event', async () => {
    const { t, key } = await tenant(100);
    await reserveN(key, t, 5, 20, 200);
    await reserveN(key, t, 20, 20, 409);
    await relayed(t);
    expect(await spikes(t, 'reservation.denial_rate_spike')).toHaveLength(1);
    // the relayed batch replayed by three other "processes" (own connections), concurrently
    const rows = await s.redis.client.xrange(keys.outbox(t), '-', '+');
    const batch: RelayedEvent[] = rows.map(([id, flat]) => ({ tenant: t, streamId: id, event: renderEvent(t, id, fieldsOf(flat)) }));
    const clients = await Promise.all([0, 1, 2].map(() => extraClient(s.redis)));
    try {
      const out = await Promise.all(clients.map((c) => rateHook(c, batch, s.server.config.signals)));
      expect(out.flat()).toEqual([]);
    } finally {
      for (const c of clients) c.disconnect();
    }
    // state after the fact: still one spike (HyperLogLog counting ignored the duplicates)
    const evs = await spikes(t, 'reservation.denial_rate_spike');
    expect(evs).toHaveLength(1);
  });
});

describe('reservation.expiry_rate_spike', () => {
  it('expiries by the sweeper over the threshold fire once', async () => {
    const { t, key } = await tenant(1000);
    await reserveN(key, t, 12, 10, 200, { ttl_ms: 1000, grace_period_ms: 0 });
    // the server's sweeper (every 100 ms) expires them ~1 s later
    const end = Date.now() + 10_000;
    while ((await spikes(t, 'reservation.expiry_rate_spike')).length === 0 && Date.now() < end) await sleep(100);
    await relayed(t);
    const evs = await spikes(t, 'reservation.expiry_rate_spike');
    expect(evs).toHaveLength(1);
    expect(evs[0]).toMatchObject({
      tenant_id: t, actor: { type: 'system' },
      data: { metric: 'expiry_rate', threshold_rate: 0.5, window_seconds: WINDOW_S, sample_count: 12 },
    });
    // fires at the crossing: the first judgement with >= half of them expired
    expect((evs[0].data as { current_rate: number }).current_rate).toBeGreaterThanOrEqual(0.5);
    const expired = (await storedEvents(s.redis.client, t)).filter((e) => e.event_type === 'reservation.expired');
    expect(expired).toHaveLength(12);
  });
});
