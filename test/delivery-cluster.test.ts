// Webhook delivery across shards (DK13, DK14): tenants whose slots sit on every master of the
// cluster (npm run test:cluster; on a single Redis the same tenants share the one node) and a
// __system__ subscription (its own slot) receive their events, signed with the create-time
// secret, with a retry after a receiver 500 on the first attempt of every event. Each
// delivery's keys live in its owner's slot, and the dispatcher's cross-slot index is left
// with nothing due. Also: the index's lower-bound rule (whd_owners.lua) pinned directly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server';
import { TEST_CLUSTER } from './helpers/redis';
import { keys } from '../src/store/keys';
import { rawCluster } from '../src/store/cluster';
import { loadScript, runScript } from '../src/store/scripts';
import { SYSTEM_TENANT } from '../src/events/model';
import { Receiver, adminApi, allowLoopback, allDeliveries, createSub, fundedTenant, waitFor, expectWellFormed, type SubInfo } from './delivery-helpers';

let s: TestServer;
let rx: Receiver;
let admin: ReturnType<typeof adminApi>;

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_POLL_MS: '20' });
  rx = await new Receiver().start();
  admin = adminApi(s.adminUrl, s.adminKey);
  await allowLoopback(admin);
}, 30_000);
afterAll(async () => {
  await s?.stop();
  await rx?.stop();
});

/** `host:port` of the master owning `key` (single node: the one server). */
async function masterOf(key: string): Promise<string> {
  if (!TEST_CLUSTER) return 'single';
  const slot = Number(await s.redis.client.call('CLUSTER', 'KEYSLOT', key));
  return (rawCluster(s.redis.client) as unknown as { slots: string[][] }).slots[slot]![0]!;
}

/** One tenant per master (three on a single Redis). */
async function tenantsOnEveryMaster(prefix: string): Promise<string[]> {
  if (!TEST_CLUSTER) return [0, 1, 2].map((i) => `${prefix}-${i}`);
  const masters = rawCluster(s.redis.client).nodes('master').map((n) => `${n.options.host}:${n.options.port}`);
  const found = new Map<string, string>();
  for (let i = 0; found.size < masters.length && i < 500; i++) {
    const t = `${prefix}-${i}`;
    const m = await masterOf(keys.tenant(t));
    if (!found.has(m)) found.set(m, t);
  }
  expect(found.size).toBe(masters.length);
  return [...found.values()];
}

describe('webhook delivery on every shard', () => {
  it('tenants on every master and a __system__ subscription: signed, retried after a 500, SUCCESS', async () => {
    const tenants = await tenantsOnEveryMaster('whc');
    if (TEST_CLUSTER) expect(new Set(await Promise.all(tenants.map((t) => masterOf(keys.tenant(t))))).size).toBe(3);
    // every event's first attempt gets a 500, the retry a 200
    const firstSeen = new Set<string>();
    const failFirst = (_n: number, r: { path: string; event: any }) => {
      const k = `${r.path}|${r.event?.event_id}`;
      if (firstSeen.has(k)) return { status: 200 };
      firstSeen.add(k);
      return { status: 500 };
    };
    const retry_policy = { max_retries: 3, initial_delay_ms: 100, backoff_multiplier: 1, max_delay_ms: 1000 };
    const funds = await Promise.all(tenants.map((t) => fundedTenant(admin, t)));
    const subs: (SubInfo & { tenant: string })[] = [];
    for (const t of tenants) subs.push({ ...(await createSub(admin, rx, { tenant: t, path: `/whc/${t}`, behave: failFirst, retry_policy })), tenant: t });
    const sys = await createSub(admin, rx, { path: '/whc/system', behave: failFirst, retry_policy });
    const N = 4;
    for (let n = 0; n < N; n++) await Promise.all(funds.map((f) => f()));

    const ok = (path: string) => rx.at(path).filter((r) => firstSeen.has(`${path}|${r.event?.event_id}`));
    await waitFor(() => subs.every((x) => ok(x.path).length >= 2 * N) && rx.at('/whc/system').length >= 2 * N * tenants.length,
      20_000, 'every event delivered after one retry');
    for (const x of subs) {
      const got = rx.at(x.path);
      expect(got).toHaveLength(2 * N); // one 500, one 200 per event
      for (const r of got) {
        expectWellFormed(r);
        expect(r.event.tenant_id).toBe(x.tenant);
      }
      expect(new Set(got.map((r) => r.event.event_id)).size).toBe(N);
    }
    const sysGot = rx.at('/whc/system');
    expect(sysGot).toHaveLength(2 * N * tenants.length);
    for (const r of sysGot) expectWellFormed(r);
    expect(new Set(sysGot.map((r) => r.event.tenant_id))).toEqual(new Set(tenants));

    // rows: SUCCESS after 2 attempts, stored in the owner's slot
    for (const x of [...subs, { ...sys, tenant: SYSTEM_TENANT }]) {
      const rows = await waitFor(async () => {
        const all = await allDeliveries(admin, x.id);
        return all.length > 0 && all.every((d) => d.status === 'SUCCESS') && all;
      }, 5000, `rows of ${x.path} SUCCESS`);
      for (const d of rows) {
        expect(d.attempts).toBe(2);
        expect(d.response_status).toBe(200);
        const rowKey = keys.webhookDelivery(x.tenant, d.delivery_id);
        expect(await s.redis.client.exists(rowKey)).toBe(1);
        expect(await masterOf(rowKey)).toBe(await masterOf(keys.webhook(x.tenant, x.id)));
      }
    }
    // nothing queued anywhere; the cross-slot index ends with nothing due
    for (const t of [...tenants, SYSTEM_TENANT]) {
      await waitFor(async () => (await s.redis.client.zcard(keys.webhookDueSubs(t))) === 0, 5000, `scheduler of ${t} empty`);
    }
  }, 60_000);
});

describe('the cross-slot index of owners with due work (whd_owners.lua)', () => {
  const script = loadScript('whd_owners');
  // keys of their own in the index's slot: the server's dispatcher works on the real ones
  const idx = [`${keys.webhookDueOwners()}:test`, `${keys.webhookDueOwnersGen()}:test`];
  const run = (...args: (string | number)[]) => runScript(s.redis.client, script, idx, args);
  const score = async (o: string) => s.redis.client.zscore(idx[0], o);

  it('a claim settles the owner to its real next time only if nothing was marked since it read', async () => {
    await run('mark', 'idx-a', 0);
    await run('mark', 'idx-b', 0);
    const due = (await run('due', 100)) as string[];
    const gen = (o: string) => due[due.indexOf(o) + 1];
    expect(due).toContain('idx-a');
    // idx-a: nothing happened since the read → raised to its next time / removed when empty
    await run('settle', 'idx-a', gen('idx-a'), 9_000_000_000_000);
    expect(await score('idx-a')).toBe('9000000000000');
    await run('settle', 'idx-a', (Number(gen('idx-a'))).toString(), '');
    expect(await score('idx-a')).toBeNull();
    // idx-b: an enqueue marked it between the read and the settle → not raised, not removed
    await run('mark', 'idx-b', 5);
    await run('settle', 'idx-b', gen('idx-b'), '');
    expect(await score('idx-b')).toBe('0');
    await run('settle', 'idx-b', gen('idx-b'), 9_000_000_000_000);
    expect(await score('idx-b')).toBe('0');
    // a mark only lowers
    await run('mark', 'idx-b', 7);
    expect(await score('idx-b')).toBe('0');
  });
});
