// The event relay on a real Redis: hooks see every event at least once, in stream order per
// tenant, quickly (keyspace notifications), also with several relays at once; a failing
// hook or a crashed holder loses nothing; the sweep alone still relays; retention trims
// the outboxes and the indexes; the indexes listEvents reads are written.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import type { Redis } from 'ioredis';
import { startTestRedis, TEST_CLUSTER, type TestRedis } from './helpers/redis';
import { loadConfig } from '../src/config';
import type { Deps } from '../src/http/types';
import { registerEventHook, startEventRelay, trimOnce, indexBatch, type EventRelay, type RelayedEvent } from '../src/events/relay';
import { appendEvent } from '../src/events/outbox';
import { keys } from '../src/store/keys';
import { loadScript, runScript } from '../src/store/scripts';
import { parseEventId } from '../src/events/model';
import { expectValidEvent } from './helpers/events';

let r: TestRedis;
let deps: Deps;
const relays: EventRelay[] = [];

// One hook for the whole file; each test watches its own tenants.
const seen: RelayedEvent[] = [];
let failOnce = new Set<string>(); // event ids whose first relay throws
let slowMs = 0;
registerEventHook('test-recorder', async (_redis: Redis, batch: RelayedEvent[]) => {
  if (slowMs) await new Promise((res) => setTimeout(res, slowMs));
  for (const e of batch) {
    if (failOnce.has(e.event.event_id)) {
      failOnce.delete(e.event.event_id);
      throw new Error('injected hook failure');
    }
  }
  seen.push(...batch);
});

const ctx = { trace_id: 'b'.repeat(32), request_id: 'req-relay', actor_json: '{"type":"admin"}' };
const of = (t: string) => seen.filter((e) => e.tenant === t);
async function until(pred: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((res) => setTimeout(res, 10));
  }
}
const start = (o: Parameters<typeof startEventRelay>[1] = {}) => {
  const rl = startEventRelay(deps, o);
  relays.push(rl);
  return rl;
};
const seqOrder = (evs: RelayedEvent[]) => evs.map((e) => parseEventId(e.event.event_id)!).map((p) => `${p.ms}-${p.seq}`);

beforeAll(async () => {
  r = await startTestRedis();
  deps = { redis: r.client, config: loadConfig({ REDIS_URL: r.url, CYCLES_LOG_LEVEL: 'silent' }), log: pino({ level: 'silent' }) };
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((x) => x.stop()));
  failOnce = new Set();
  slowMs = 0;
});
afterAll(async () => { await r.stop(); });

describe('relay', () => {
  it('wakes on XADD: events reach the hooks within ~100 ms, in stream order, and are indexed', async () => {
    const rl = start({ sweepMs: 600_000 }); // no sweep: only the notification can wake it
    await until(() => rl.stats.notifying);
    await new Promise((res) => setTimeout(res, 50)); // subscription settled
    const t = 'rl-fast';
    await r.client.sadd(keys.tenants(), t);
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = Date.now();
      const id = await appendEvent(r.client, t, 'tenant.updated', { tenant_id: t, changed_fields: ['name'] }, { ...ctx, correlation_id: `c-${i}` });
      await until(() => of(t).some((e) => e.streamId === id), 2000);
      latencies.push(Date.now() - t0);
    }
    latencies.sort((a, b) => a - b);
    expect(latencies[18]).toBeLessThan(200); // 19 of 20 within 200 ms (a loaded CI box may stall once)
    expect(latencies[19]).toBeLessThan(1000);
    const evs = of(t);
    expect(evs).toHaveLength(20);
    const stream = (await r.client.xrange(keys.outbox(t), '-', '+')).map(([id]) => id);
    expect(seqOrder(evs)).toEqual(stream);
    for (const e of evs) expectValidEvent(e.event);
    // indexes: global time index, and per correlation / trace / request id
    const ids = evs.map((e) => e.event.event_id);
    expect(await r.client.zmscore(keys.eventIndex(), ...ids)).not.toContain(null);
    expect(await r.client.zrange(keys.eventIndexBy('corr', 'c-7'), 0, -1)).toEqual([ids[7]]);
    expect(await r.client.zcard(keys.eventIndexBy('trace', 'b'.repeat(32)))).toBe(20);
    expect(await r.client.zcard(keys.eventIndexBy('req', 'req-relay'))).toBe(20);
    expect(await r.client.pttl(keys.eventIndexBy('req', 'req-relay'))).toBeGreaterThan(89 * 86_400_000);
    // everything acknowledged, lease released
    const pending = await r.client.xpending(keys.outbox(t), 'relay') as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
    expect(await r.client.exists(keys.outboxRelayLock(t))).toBe(0);
  });

  it('a failing hook leaves the batch pending; it is relayed again, before anything newer', async () => {
    const t = 'rl-fail';
    await r.client.sadd(keys.tenants(), t);
    const first = await appendEvent(r.client, t, 'tenant.updated', { tenant_id: t }, ctx);
    failOnce.add(`evt_${first.replace('-', '_')}_${t}`);
    const rl = start({ sweepMs: 600_000 });
    rl.poke(t);
    await until(() => rl.stats.failures >= 1);
    // the sweep is off: only the XADD notification wakes the relay for `later`, so its
    // subscription must be armed first (on a cluster it opens one per master, DK4)
    await until(() => rl.stats.notifying);
    await new Promise((res) => setTimeout(res, 50)); // subscription settled
    const later = await appendEvent(r.client, t, 'tenant.updated', { tenant_id: t }, ctx);
    await until(() => of(t).some((e) => e.streamId === later));
    expect(of(t).map((e) => e.streamId)).toEqual([first, later]);
  });

  it('several relays at once: every event exactly once, each tenant in order', async () => {
    const a = start({ sweepMs: 200 }), b = start({ sweepMs: 200 }), c = start({ sweepMs: 200 });
    await until(() => a.stats.notifying && b.stats.notifying && c.stats.notifying);
    const tenants = ['rl-m1', 'rl-m2', 'rl-m3', 'rl-m4'];
    await r.client.sadd(keys.tenants(), ...tenants);
    slowMs = 2; // make overlapping passes likely
    const ids: Record<string, string[]> = Object.fromEntries(tenants.map((t) => [t, []]));
    await Promise.all(tenants.map(async (t) => {
      for (let i = 0; i < 150; i++) ids[t].push(await appendEvent(r.client, t, 'budget.funded', { scope: `tenant:${t}`, unit: 'TOKENS' }, ctx));
    }));
    await until(() => tenants.every((t) => of(t).length >= 150), 15_000);
    await Promise.all([a.idle(), b.idle(), c.idle()]);
    for (const t of tenants) expect(of(t).map((e) => e.streamId)).toEqual(ids[t]);
    expect(a.stats.events + b.stats.events + c.stats.events).toBeGreaterThanOrEqual(600);
  });

  it('a crashed holder\'s batch is re-claimed after its lease and relayed first', async () => {
    const t = 'rl-crash';
    await r.client.sadd(keys.tenants(), t);
    const early = [];
    for (let i = 0; i < 3; i++) early.push(await appendEvent(r.client, t, 'tenant.updated', { tenant_id: t }, ctx));
    // a "process" claims the batch, then dies without acking (lease 300 ms)
    const claimed = await runScript(r.client, loadScript('relay_claim'), [keys.outbox(t), keys.outboxRelayLock(t)], ['dead-process', 300, 200]) as [string, unknown[]];
    expect(claimed[0]).toBe('batch');
    expect(claimed[1]).toHaveLength(3);
    const late = await appendEvent(r.client, t, 'tenant.updated', { tenant_id: t }, ctx);
    const rl = start({ sweepMs: 100 });
    await until(() => of(t).length >= 4, 5000);
    await rl.idle();
    expect(of(t).map((e) => e.streamId)).toEqual([...early, late]);
    expect(rl.stats.events).toBe(4);
  });

  it('without notifications the sweep alone relays (every tenant in keys.tenants() and __system__)', async () => {
    const rl = start({ notifications: false, sweepMs: 100 });
    const t = 'rl-sweep';
    await r.client.sadd(keys.tenants(), t);
    const id = await appendEvent(r.client, t, 'tenant.updated', { tenant_id: t }, ctx);
    const sys = await appendEvent(r.client, '__system__', 'system.high_latency', { component: 'store', message: 'slow', severity: 'warning' }, { actor_json: '{"type":"system"}' });
    await until(() => of(t).some((e) => e.streamId === id) && of('__system__').some((e) => e.streamId === sys), 3000);
    expect(rl.stats.notifying).toBe(false);
    for (const e of of('__system__')) expectValidEvent(e.event);
  });
});

describe('retention', () => {
  it('trims outboxes (XTRIM MINID) and the global index by time, never the recent events', async () => {
    const t = 'rl-trim';
    await r.client.sadd(keys.tenants(), t);
    const now = Date.now();
    const old = now - 91 * 86_400_000;
    // 300 old entries (several stream nodes, so MINID ~ can drop whole nodes) + 5 recent
    for (let i = 0; i < 300; i++) await r.client.xadd(keys.outbox(t), `${old + i}-0`, 'type', 'tenant.updated', 'data', '{}', 'ts_ms', String(old + i));
    const recent: string[] = [];
    for (let i = 0; i < 5; i++) recent.push(await appendEvent(r.client, t, 'tenant.updated', { tenant_id: t }, ctx));
    await indexBatch(r.client, (await r.client.xrange(keys.outbox(t), '-', '+')).map(([id]) => ({
      tenant: t, streamId: id,
      event: { event_id: `evt_${id.replace('-', '_')}_${t}`, event_type: 'tenant.updated', category: 'tenant', timestamp: new Date(Number(id.split('-')[0])).toISOString(), tenant_id: t, source: 'x' },
    })), 90, old);
    const res = await trimOnce(r.client, 90, now);
    expect(res.tenants).toBeGreaterThanOrEqual(2);
    const left = (await r.client.xrange(keys.outbox(t), '-', '+')).map(([id]) => id);
    expect(left.slice(-5)).toEqual(recent);
    expect(left.length).toBeLessThan(150); // approximate trim: whole nodes of old entries gone
    const idx = await r.client.zrangebyscore(keys.eventIndex(), '-inf', String(now - 90 * 86_400_000));
    expect(idx.filter((m) => m.endsWith(`_${t}`))).toEqual([]);
    for (const id of recent) expect(await r.client.zscore(keys.eventIndex(), `evt_${id.replace('-', '_')}_${t}`)).not.toBeNull();
  });

  it('no count cap: the scripts and appendEvent keep every entry of a busy tenant', async () => {
    const t = 'rl-busy';
    const p = r.client.pipeline();
    for (let i = 0; i < 2000; i++) appendEvent(p, t, 'tenant.updated', { tenant_id: t }, ctx);
    await p.exec();
    expect(await r.client.xlen(keys.outbox(t))).toBe(2000);
    const src = loadScript('tenant_create').source;
    expect(src).not.toMatch(/MAXLEN/);
  });
});

describe('resilience', () => {
  // the cluster run has no private server to restart; its failover case is in redis-cluster.test.ts
  it.skipIf(!!TEST_CLUSTER)('after Redis restarts (CONFIG forgotten, subscription dropped) new events are still relayed within a second', async () => {
    const own = await startTestRedis();
    const ownDeps: Deps = { redis: own.client, config: loadConfig({ REDIS_URL: own.url, CYCLES_LOG_LEVEL: 'silent' }), log: pino({ level: 'silent' }) };
    const rl = startEventRelay(ownDeps); // default sweep: ≥ 10 s while notifications are on
    try {
      await until(() => rl.stats.notifying);
      const t = 'rl-restart';
      await own.client.sadd(keys.tenants(), t);
      const a = await appendEvent(own.client, t, 'tenant.updated', { tenant_id: t }, ctx);
      await until(() => of(t).some((e) => e.streamId === a));
      await own.restart(); // a fresh redis-server: notify-keyspace-events is back to its default ("")
      await until(async () => ((await own.client.config('GET', 'notify-keyspace-events') as string[])[1]).includes('t'), 5000);
      await new Promise((res) => setTimeout(res, 100)); // resubscribed
      const t0 = Date.now();
      const b = await appendEvent(own.client, t, 'tenant.updated', { tenant_id: t }, ctx);
      await until(() => of(t).some((e) => e.streamId === b), 1000);
      expect(Date.now() - t0).toBeLessThan(1000);
    } finally {
      await rl.stop();
      await own.stop();
    }
  });
});
