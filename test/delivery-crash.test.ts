// Webhook delivery survives a crash: the server runs as a child process (`cycles serve`,
// relay + dispatcher inside) on a private redis-server with appendfsync always. Client loops
// fund budgets (one budget.funded event each) while three subscriptions (two tenant-owned,
// one __system__) receive them on a loopback receiver that answers slowly, and fails the
// first attempt of some events. Mid-delivery the server is SIGKILLed, then restarted; the
// load goes on. Afterwards, from the outboxes (the source of truth):
//   - every matching event reached every subscription at least once with a 2xx (none lost),
//     each delivery signed with the create-time secret and a valid Event;
//   - duplicates exist only for what was in flight at the kill: per subscription queue at
//     most the attempt under way plus the FINISH_WINDOW sent ones whose outcome was not yet
//     recorded;
//   - every delivery row ends SUCCESS and no queue entry is left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { startChildServer, stopAllChildServers, type ChildServer } from './helpers/childServer';
import { expectValidEvent, storedEvents } from './helpers/events';
import { ownerOf } from '../src/events/subscriptions';
import { keys } from '../src/store/keys';
import { deliveryIdOf } from '../src/events/fanout';
import { FINISH_WINDOW } from '../src/events/dispatch';
import { Receiver, waitFor, sleep, type Received } from './delivery-helpers';

const ADMIN_KEY = `dlv-crash-admin-${randomBytes(12).toString('hex')}`;
const CLIENTS = 6;
const LOAD_BEFORE_KILL = 150;   // events funded before the kill is triggered (at least)
const LOAD_AFTER_RESTART = 100; // events funded after the restart
const DELIVERY_DELAY_MS = 4;

let redis: TestRedis;
let server: ChildServer;
let rx: Receiver;
let dataDir: string;

beforeAll(async () => {
  redis = await startTestRedis({ appendfsync: 'always' });
  rx = await new Receiver().start();
  dataDir = mkdtempSync(join(tmpdir(), 'cycles-dlv-crash-'));
  server = await startChildServer({
    redisUrl: redis.url, adminKey: ADMIN_KEY,
    env: {
      CYCLES_DATA_DIR: dataDir,
      CYCLES_WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
      CYCLES_WEBHOOK_LEASE_MS: '1500',
      CYCLES_WEBHOOK_POLL_MS: '20',
      CYCLES_EVENT_RELAY_SWEEP_MS: '200',
    },
  });
}, 60_000);

afterAll(async () => {
  await server?.stop().catch(() => {});
  await stopAllChildServers();
  await rx?.stop();
  await redis?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 30_000);

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(server.adminUrl + path, {
    method,
    headers: { 'X-Admin-API-Key': ADMIN_KEY, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** Some events fail their first attempt (decided by the event id, so it is stable). */
const failsFirst = (eventId: string) => createHash('sha256').update(eventId).digest()[0] < 26; // ~10%

describe('webhook delivery across a server crash', () => {
  it('SIGKILL mid-delivery under load: every event delivered at least once, none lost', async () => {
    expect((await admin('PUT', '/v1/admin/config/webhook-security', { blocked_cidr_ranges: ['10.0.0.0/8'], allow_http: true })).status).toBe(200);
    const tenants = ['dc-one', 'dc-two'];
    for (const t of tenants) {
      expect((await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t })).status).toBe(201);
      expect((await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope: `tenant:${t}`, unit: 'TOKENS', allocated: { unit: 'TOKENS', amount: 1_000_000_000 } })).status).toBe(201);
    }
    const firstSeen = new Set<string>();
    const behave = (_n: number, r: Received) => {
      const key = `${r.path}|${r.event?.event_id}`;
      if (failsFirst(String(r.event?.event_id)) && !firstSeen.has(key)) { firstSeen.add(key); return { status: 500 }; }
      return { status: 200, delayMs: DELIVERY_DELAY_MS };
    };
    const subs: { id: string; path: string; tenant?: string }[] = [];
    const retry = { max_retries: 10, initial_delay_ms: 200, backoff_multiplier: 1.5, max_delay_ms: 1000 };
    for (const [path, tenant] of [['/c1', 'dc-one'], ['/c2', 'dc-two'], ['/csys', undefined]] as const) {
      const url = rx.endpoint(path, undefined, behave);
      const r = await admin('POST', `/v1/admin/webhooks${tenant ? `?tenant_id=${tenant}` : ''}`, { url, event_types: ['budget.funded'], retry_policy: retry });
      expect(r.status).toBe(201);
      rx.setSecret(path, r.body.signing_secret);
      subs.push({ id: r.body.subscription.subscription_id, path, tenant });
    }

    let funded = 0;
    let stop = false;
    const loop = async (c: number) => {
      const t = tenants[c % tenants.length];
      while (!stop) {
        try {
          const r = await admin('POST', `/v1/admin/budgets/fund?tenant_id=${t}&scope=tenant:${t}&unit=TOKENS`, { operation: 'CREDIT', amount: { unit: 'TOKENS', amount: 1 } });
          if (r.status === 200) funded++;
        } catch {
          await sleep(50); // server down: keep trying until it is back
        }
      }
    };
    const loops = Array.from({ length: CLIENTS }, (_, c) => loop(c));

    // kill while deliveries are flowing (and the receiver is mid-response for some)
    await waitFor(() => funded >= LOAD_BEFORE_KILL && rx.requests.length >= 100, 60_000, 'load and deliveries');
    const receivedAtKill = rx.requests.length;
    await server.kill('SIGKILL');
    await sleep(300);
    await server.restart();
    const fundedAtRestart = funded;
    await waitFor(() => funded >= fundedAtRestart + LOAD_AFTER_RESTART, 60_000, 'load after restart');
    stop = true;
    await Promise.all(loops);

    // expected: every budget.funded in the outboxes, for each subscription that selects it
    const events = new Map<string, any>();
    for (const t of tenants) for (const e of await storedEvents(redis.client, t)) if (e.event_type === 'budget.funded') events.set(e.event_id, e);
    const expected = new Map<string, string[]>(subs.map((s) => [s.path, [...events.values()].filter((e) => !s.tenant || e.tenant_id === s.tenant).map((e) => e.event_id)]));
    /** event_id → receipts answered 2xx (a fails-first event's first receipt got the 500). */
    const delivered = (path: string) => {
      const ok = new Map<string, number>();
      const seen = new Set<string>();
      for (const r of rx.at(path)) {
        const id = r.event.event_id;
        const first = !seen.has(id);
        seen.add(id);
        if (first && failsFirst(id)) continue;
        ok.set(id, (ok.get(id) ?? 0) + 1);
      }
      return ok;
    };
    const allDelivered = () => subs.every((s) => { const got = delivered(s.path); return expected.get(s.path)!.every((id) => got.has(id)); });
    try {
      await waitFor(allDelivered, 90_000, 'every event delivered');
    } catch (e) {
      // what is missing, and where it is stuck
      for (const s of subs) {
        const got = delivered(s.path);
        const missing = expected.get(s.path)!.filter((id) => !got.has(id));
        const sample = await Promise.all(missing.slice(0, 5).map(async (id) => ({ id, row: await redis.client.hgetall(keys.webhookDelivery(ownerOf(s.id)!, deliveryIdOf(s.id, id))) })));
        console.log(s.path, 'missing', missing.length, 'of', expected.get(s.path)!.length, JSON.stringify(sample),
          'due', await redis.client.zrange(keys.webhookDue(ownerOf(s.id)!, s.id), 0, 5, 'WITHSCORES'),
          'lease', await redis.client.pttl(keys.webhookLease(ownerOf(s.id)!, s.id)));
      }
      console.log('owners', await redis.client.zrange(keys.webhookDueOwners(), 0, -1, 'WITHSCORES'), 'now', Date.now(), '\n', server.log());
      throw e;
    }

    let duplicates = 0;
    for (const s of subs) {
      const got = delivered(s.path);
      const exp = expected.get(s.path)!;
      expect(exp.length).toBeGreaterThan(50);
      for (const id of exp) expect(got.get(id), `${s.path} ${id}`).toBeGreaterThanOrEqual(1);
      // nothing delivered that was not an event of the outbox
      for (const id of got.keys()) expect(events.has(id)).toBe(true);
      const dups = [...got.values()].filter((n) => n > 1).length;
      duplicates += dups;
      expect(dups, `duplicates at ${s.path}`).toBeLessThanOrEqual(FINISH_WINDOW + 1);
    }
    for (const r of rx.requests) {
      expect(r.signatureOk).toBe(true);
      expect(r.headers['x-cycles-event-id']).toBe(r.event.event_id);
    }
    for (const e of events.values()) expectValidEvent(e);

    // the store is clean: every row SUCCESS, nothing queued, no lease left
    await waitFor(async () => (await Promise.all(subs.map((s) => redis.client.zcard(keys.webhookDueSubs(ownerOf(s.id)!))))).every((n) => n === 0), 10_000, 'scheduler empty');
    for (const s of subs) {
      expect(await redis.client.zcard(keys.webhookDue(ownerOf(s.id)!, s.id))).toBe(0);
      const members = await redis.client.zrange(keys.webhookDeliveriesBySub(ownerOf(s.id)!, s.id), 0, -1);
      expect(members.length).toBe(expected.get(s.path)!.length);
      const statuses = await Promise.all(members.map((m) => redis.client.hget(keys.webhookDelivery(ownerOf(s.id)!, m.slice(m.indexOf('|') + 1)), 'status')));
      expect(statuses.every((st) => st === 'SUCCESS')).toBe(true);
    }
    console.log(`delivery crash: ${events.size} events, ${rx.requests.length} requests (${receivedAtKill} before the kill), ${duplicates} duplicate deliveries`);
  }, 240_000);
});
