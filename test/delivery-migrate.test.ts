// The upgrade from the pre-DK13 delivery layout (DK16): deliveries queued and finished under
// the old `cycles:whd:*` keys are moved into their owner's slot by the next dispatcher that
// starts; the queued one is then sent (once, signed), the finished one stays listed, the
// replay lock moves with its TTL, and nothing of the old layout is left. A second run is a
// no-op.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startTestServer, type TestServer } from './helpers/server';
import { extraClient } from './helpers/redis';
import { storedEvents } from './helpers/events';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/log';
import { keys } from '../src/store/keys';
import { deliveryIdOf } from '../src/events/fanout';
import { startWebhookDispatcher, type WebhookDispatcher } from '../src/events/dispatch';
import { migrateLegacyDeliveries } from '../src/events/whdMigrate';
import { loadScript, runScript } from '../src/store/scripts';
import { Receiver, adminApi, allowLoopback, allDeliveries, createSub, fundedTenant, waitFor, sleep, expectWellFormed } from './delivery-helpers';

let s: TestServer;
let rx: Receiver;
let admin: ReturnType<typeof adminApi>;
const extras: { redis: Redis; d: WebhookDispatcher }[] = [];

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_POLL_MS: '20' });
  rx = await new Receiver().start();
  admin = adminApi(s.adminUrl, s.adminKey);
  await allowLoopback(admin);
}, 30_000);
afterAll(async () => {
  for (const e of extras) { await e.d.stop(); e.redis.disconnect(); }
  await s?.stop();
  await rx?.stop();
});

/** One more dispatcher on its own connection, as a second worker process would be. */
async function startExtraDispatcher(): Promise<void> {
  const redis = await extraClient(s.redis);
  const config = loadConfig({ REDIS_URL: s.redis.url, CYCLES_WEBHOOK_POLL_MS: '20', CYCLES_WEBHOOK_SECRET_KEY: '', CYCLES_DATA_DIR: s.server.config.dataDir });
  extras.push({ redis, d: startWebhookDispatcher({ redis, config: { ...config, webhookSecretKey: s.server.config.webhookSecretKey }, log: createLogger('silent') }) });
}

describe('legacy delivery keys (DK16)', () => {
  it('are moved into the owner slot at dispatcher start; the queued delivery is sent once', async () => {
    const r = s.redis.client;
    const tenant = 'mig-a';
    const fund = await fundedTenant(admin, tenant);
    await fund();
    await fund();
    // two events before the subscription exists: fan-out never queues them (DV23), so what
    // reaches the receiver can only come from the moved legacy keys
    const [e1, e2] = (await storedEvents(r, tenant)).filter((e) => e.event_type === 'budget.funded');
    const sub = await createSub(admin, rx, { tenant, path: '/mig' });
    await sleep(200);
    expect(rx.at('/mig')).toHaveLength(0);

    // the old layout, as the previous release wrote it
    const queued = deliveryIdOf(sub.id, e2.event_id);
    const done = deliveryIdOf(sub.id, e1.event_id);
    const now = Date.now();
    const qMember = `${'41'.padStart(16, '0')}|${queued}`;
    const dMember = `${'40'.padStart(16, '0')}|${done}`;
    await r.hset(keys.legacyWebhookDelivery(queued), { delivery_id: queued, subscription_id: sub.id, event_id: e2.event_id,
      event_type: e2.event_type, status: 'PENDING', attempts: '0', created_ms: String(now), q: qMember });
    await r.pexpire(keys.legacyWebhookDelivery(queued), 3_600_000);
    await r.hset(keys.legacyWebhookDelivery(done), { delivery_id: done, subscription_id: sub.id, event_id: e1.event_id,
      event_type: e1.event_type, status: 'SUCCESS', attempts: '1', created_ms: String(now - 10), attempted_ms: String(now - 5),
      completed_ms: String(now - 5), response_status: '200', q: dMember });
    await r.pexpire(keys.legacyWebhookDelivery(done), 3_600_000);
    await r.zadd(keys.legacyWebhookDeliveriesBySub(sub.id), now - 10, dMember, now, qMember);
    await r.zadd(keys.legacyWebhookDue(sub.id), now, qMember);
    await r.zadd(keys.legacyWebhookDueSubs(), now, sub.id);
    await r.set(keys.legacyWebhookSeq(), '41');
    await r.set(keys.legacyWebhookReplayLock(sub.id), 'rpl_x', 'PX', 600_000);
    await r.del(keys.webhookLayout()); // as on a Redis the previous release used

    await startExtraDispatcher();

    await waitFor(() => rx.at('/mig').length >= 1, 10_000, 'the moved delivery sent');
    await sleep(300);
    const got = rx.at('/mig');
    expect(got).toHaveLength(1);
    expect(got[0].event.event_id).toBe(e2.event_id);
    expectWellFormed(got[0]);

    const rows = await waitFor(async () => {
      const all = await allDeliveries(admin, sub.id);
      return all.length === 2 && all.every((d) => d.status === 'SUCCESS') && all;
    }, 5000, 'both rows listed, SUCCESS');
    expect(rows.map((d) => d.delivery_id).sort()).toEqual([queued, done].sort());
    expect(await r.pttl(keys.webhookDelivery(tenant, done))).toBeGreaterThan(0);
    expect(await r.get(keys.webhookReplayLock(tenant, sub.id))).toBe('rpl_x');
    expect(await r.pttl(keys.webhookReplayLock(tenant, sub.id))).toBeGreaterThan(0);
    expect(Number(await r.get(keys.webhookSeq(tenant)))).toBeGreaterThanOrEqual(41);
    for (const k of [keys.legacyWebhookDelivery(queued), keys.legacyWebhookDelivery(done), keys.legacyWebhookDeliveriesBySub(sub.id),
      keys.legacyWebhookDue(sub.id), keys.legacyWebhookDueSubs(), keys.legacyWebhookReplayLock(sub.id)]) {
      expect(await r.exists(k), k).toBe(0);
    }
    expect(await r.get(keys.webhookLayout())).toBe('2');
    expect(await migrateLegacyDeliveries(r)).toBe(0);
  }, 30_000);
});

describe('the repair sweep (DK14)', () => {
  it('a delivery queued without its index mark (a crash in between) is found by the next sweep', async () => {
    const r = s.redis.client;
    const tenant = 'mig-repair';
    const fund = await fundedTenant(admin, tenant);
    await fund();
    const [e] = (await storedEvents(r, tenant)).filter((x) => x.event_type === 'budget.funded');
    const sub = await createSub(admin, rx, { tenant, path: '/repair' });
    // whd_enqueue.lua alone, as if the process died before whd_owners.lua 'mark'
    const id = 'dlv_rp_repair_0';
    const created = await runScript(r, loadScript('whd_enqueue'),
      [keys.webhookSeq(tenant), keys.webhookDueSubs(tenant), keys.webhookReplayLeft(tenant, 'rpl_repair'), keys.webhookReplayLock(tenant, sub.id),
        keys.webhookDelivery(tenant, id), keys.webhookDue(tenant, sub.id), keys.webhookDeliveriesBySub(tenant, sub.id),
        keys.webhook(tenant, sub.id), keys.webhookLease(tenant, sub.id)],
      [3_600_000, 'replay', 'rpl_repair', 60_000, id, sub.id, e.event_id, e.event_type, '', '', '0']) as number[];
    expect(created[0]).toBe(1);
    // nobody knows the owner has work (the server's own sweep runs only every 30 s)
    expect(await r.zscore(keys.webhookDueOwners(), tenant)).toBeNull();
    await startExtraDispatcher(); // its start-up sweep marks the owner
    await waitFor(() => rx.at('/repair').length === 1, 10_000, 'the repaired delivery sent');
    expect(rx.at('/repair')[0].event.event_id).toBe(e.event_id);
    expectWellFormed(rx.at('/repair')[0]);
  }, 30_000);
});
