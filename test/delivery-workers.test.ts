// Several delivery workers on one Redis (the server's own plus two more, each with its own
// connection, as separate `--plane worker` processes would be): every delivery is sent
// exactly once in the normal case, each subscription's first attempts arrive in event order
// (one holder per queue at a time), and a worker stopped mid-way leaves nothing behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { extraClient } from './helpers/redis';
import { startTestServer, type TestServer } from './helpers/server';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/log';
import { keys } from '../src/store/keys';
import { startWebhookDispatcher, type WebhookDispatcher } from '../src/events/dispatch';
import { Receiver, adminApi, allowLoopback, createSub, fundedTenant, waitFor, sleep, expectWellFormed, expectAllStoredEventsValid } from './delivery-helpers';

let s: TestServer;
let rx: Receiver;
let admin: ReturnType<typeof adminApi>;
const extra: { redis: Redis; d: WebhookDispatcher }[] = [];

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_POLL_MS: '5', CYCLES_WEBHOOK_SUBSCRIPTION_CONCURRENCY: '1' });
  rx = await new Receiver().start();
  admin = adminApi(s.adminUrl, s.adminKey);
  await allowLoopback(admin);
  for (let i = 0; i < 2; i++) {
    const redis = await extraClient(s.redis);
    const config = loadConfig({ REDIS_URL: s.redis.url, CYCLES_WEBHOOK_POLL_MS: '5', CYCLES_WEBHOOK_SUBSCRIPTION_CONCURRENCY: '1', CYCLES_WEBHOOK_SECRET_KEY: '', CYCLES_DATA_DIR: s.server.config.dataDir });
    extra.push({ redis, d: startWebhookDispatcher({ redis, config: { ...config, webhookSecretKey: s.server.config.webhookSecretKey }, log: createLogger('silent') }) });
  }
}, 30_000);
afterAll(async () => {
  for (const e of extra) { await e.d.stop(); e.redis.disconnect(); }
  await s?.stop();
  await rx?.stop();
});

describe('several delivery workers', () => {
  it('share the work without duplicates, in order per subscription', async () => {
    const tenants = ['mw-a', 'mw-b'];
    const funds = await Promise.all(tenants.map((t) => fundedTenant(admin, t)));
    const paths: string[] = [];
    for (const [i, t] of tenants.entries()) {
      for (let k = 0; k < 3; k++) {
        const path = `/mw-${i}-${k}`;
        await createSub(admin, rx, { tenant: t, path, behave: () => ({ status: 200, delayMs: k }) });
        paths.push(path);
      }
    }
    const N = 60;
    await Promise.all(funds.map(async (f) => { for (let n = 0; n < N; n++) await f(); }));
    await waitFor(() => paths.every((p) => rx.at(p).length >= N), 20_000, 'all delivered');
    await sleep(300);
    for (const p of paths) {
      const got = rx.at(p);
      expect(got).toHaveLength(N); // exactly once each
      expect(new Set(got.map((r) => r.event.event_id)).size).toBe(N);
      const allocated = got.map((r) => BigInt(r.event.data.new_state.allocated));
      expect(allocated).toEqual([...allocated].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      for (const r of got) expectWellFormed(r);
    }
    // all three workers took part
    const claims = extra.map((e) => e.d.stats.claims);
    expect(claims.every((c) => c > 0)).toBe(true);
    for (const t of tenants) expect(await s.redis.client.zcard(keys.webhookDueSubs(t))).toBe(0);
  });

  it('a worker stopped while holding queues hands them back; the others finish the work', async () => {
    const fund = await fundedTenant(admin, 'mw-stop');
    await createSub(admin, rx, { tenant: 'mw-stop', path: '/mw-stop', behave: () => ({ status: 200, delayMs: 20 }) });
    for (let n = 0; n < 30; n++) await fund();
    await waitFor(() => rx.at('/mw-stop').length >= 3, 10_000, 'started');
    await extra[0].d.stop();
    await waitFor(() => new Set(rx.at('/mw-stop').map((r) => r.event.event_id)).size === 30, 15_000, 'all delivered');
    // every queue let go (the last holder releases right after its last attempt is recorded)
    await waitFor(async () => (await s.redis.client.keys(`${keys.webhookLease('mw-stop', '')}*`)).length === 0 && (await s.redis.client.zcard(keys.webhookDueSubs('mw-stop'))) === 0, 5000, 'no lease left');
    expect(new Set(rx.at('/mw-stop').map((r) => r.event.event_id)).size).toBe(30);
  });
});

describe('events', () => {
  it('every event this suite produced is a valid Event', async () => {
    expect(await expectAllStoredEventsValid(s.redis.client)).toBeGreaterThan(0);
  });
});
