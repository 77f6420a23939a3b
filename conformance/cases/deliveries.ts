// Webhook deliveries against the admin spec: the delivery lists (shape, filters, limits,
// cursors, 404 on unknown / another tenant's subscription), the test probe (200 even when
// the endpoint fails; the subscription unchanged; tenant isolation), replayEvents' request
// rules (max_events 1–1000, 404, admin only, an empty window accepted with nothing queued)
// and the CLOSED-owner guard (409 on test and replay, reads still 200).
// Black-box and safe on a shared server: subscriptions point at a host under `.invalid`
// (RFC 2606: never resolves), so no probe or replay ever reaches anyone; every case deletes
// what it created (except on tenants it closes).
import { randomBytes } from 'node:crypto';
import type { Case, CaseContext, TenantFixture } from '../harness';

const HOOK = 'https://cycles-conformance.invalid/hook';
const UNKNOWN = () => `whsub_conf_${randomBytes(12).toString('hex')}`;

type Meta = Pick<Case, 'level' | 'requirements' | 'tags'>;
const M = (level: Meta['level'], ...requirements: string[]): Meta => ({ level, requirements, tags: ['deliveries'] });
/** Catalogue tags (conformance/catalog.ts) of each case below. */
const META: Record<string, Meta> = {
  'list': M('MUST', 'XP.LIST_DELIVERIES', 'XP.LIST_TENANT_DELIVERIES'),
  'not-found': M('MUST', 'XP.LIST_DELIVERIES', 'XP.LIST_TENANT_DELIVERIES'),
  'replay-rules': M('MUST', 'XP.REPLAY_EVENTS'),
  'closed-owner': M('MUST', 'XP.REPLAY_EVENTS', 'XP.LIST_DELIVERIES'),
};

const dv = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>): Case => ({
  id: `deliveries.${id}`, title, plane: 'admin', skipOn501: true, ...(META[id] ?? M('MAY')), run,
});

async function subscription(ctx: CaseContext, f: TenantFixture): Promise<string> {
  const r = await ctx.callOp('admin', 'createTenantWebhook', { key: f.key, body: { url: HOOK, event_types: ['budget.created'] } });
  ctx.require(r, 201);
  return r.body.subscription.subscription_id;
}

async function remove(ctx: CaseContext, id: string): Promise<void> {
  ctx.expectStatus(await ctx.callOp('admin', 'deleteWebhookSubscription', { admin: true, params: { subscription_id: id } }), [204, 404]);
}

const listTenant = (ctx: CaseContext, key: string, id: string, query: Record<string, string> = {}) =>
  ctx.callOp('admin', 'listTenantWebhookDeliveries', { key, params: { subscription_id: id }, query });
const listAdmin = (ctx: CaseContext, id: string, query: Record<string, string> = {}) =>
  ctx.callOp('admin', 'listWebhookDeliveries', { admin: true, params: { subscription_id: id }, query });

export function deliveryCases(): Case[] {
  return [
    dv('list', 'delivery lists: 200 with deliveries[] and has_more on both planes; bad status / limit / cursor → 400', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const id = await subscription(ctx, f);
      for (const r of [await listTenant(ctx, f.key, id), await listAdmin(ctx, id), await listAdmin(ctx, id, { status: 'FAILED', limit: '5' })]) {
        if (!ctx.expectStatus(r, 200)) continue;
        ctx.check(Array.isArray(r.body.deliveries), 'deliveries is not an array');
        ctx.check(typeof r.body.has_more === 'boolean', 'has_more missing');
        if (r.body.has_more === false) ctx.check(r.body.next_cursor === undefined, 'next_cursor present with has_more=false');
      }
      ctx.expectStatus(await listAdmin(ctx, id, { status: 'DELIVERED' }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await listAdmin(ctx, id, { limit: '0' }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await listAdmin(ctx, id, { limit: '101' }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await listTenant(ctx, f.key, id, { cursor: 'not-a-cursor' }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await listAdmin(ctx, id, { from: 'yesterday' }), 400, 'INVALID_REQUEST');
      await remove(ctx, id);
    }),

    dv('not-found', 'unknown subscription, or another tenant\'s: 404 on the lists, the probe and replay', async (ctx) => {
      const a = await ctx.fixtures.newTenant(ctx, []);
      const b = await ctx.fixtures.newTenant(ctx, []);
      const id = await subscription(ctx, a);
      const unknown = UNKNOWN();
      ctx.expectStatus(await listAdmin(ctx, unknown), 404);
      ctx.expectStatus(await listTenant(ctx, a.key, unknown), 404);
      ctx.expectStatus(await ctx.callOp('admin', 'testWebhookSubscription', { admin: true, params: { subscription_id: unknown } }), 404);
      ctx.expectStatus(await ctx.callOp('admin', 'testTenantWebhook', { key: a.key, params: { subscription_id: unknown } }), 404);
      ctx.expectStatus(await ctx.callOp('admin', 'replayEvents', { admin: true, params: { subscription_id: unknown }, body: {} }), 404);
      // another tenant's id looks exactly like an unknown one
      ctx.expectStatus(await listTenant(ctx, b.key, id), 404);
      ctx.expectStatus(await ctx.callOp('admin', 'testTenantWebhook', { key: b.key, params: { subscription_id: id } }), 404);
      await remove(ctx, id);
    }),

    dv('test-probe', 'test probe: 200 with success and event_id (success=false when the endpoint fails); the subscription is unchanged', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const id = await subscription(ctx, f);
      const get = () => ctx.callOp('admin', 'getWebhookSubscription', { admin: true, params: { subscription_id: id } });
      const before = await get();
      ctx.require(before, 200);
      for (const r of [
        await ctx.callOp('admin', 'testWebhookSubscription', { admin: true, params: { subscription_id: id } }),
        await ctx.callOp('admin', 'testTenantWebhook', { key: f.key, params: { subscription_id: id } }),
      ]) {
        if (!ctx.expectStatus(r, 200)) continue;
        ctx.check(typeof r.body.success === 'boolean', 'success missing');
        ctx.check(r.body.success === false, `a probe to ${HOOK} (never resolves) reported success`);
        if (r.body.success === false) ctx.check(typeof r.body.error_message === 'string' && r.body.error_message.length > 0, 'a failed probe carries no error_message');
      }
      const after = await get();
      if (ctx.expectStatus(after, 200)) {
        ctx.check(after.body.status === before.body.status, `status changed: ${before.body.status} → ${after.body.status}`);
        ctx.check(after.body.consecutive_failures === before.body.consecutive_failures,
          `consecutive_failures changed: ${before.body.consecutive_failures} → ${after.body.consecutive_failures}`);
      }
      await remove(ctx, id);
    }),

    dv('replay-rules', 'replay: max_events outside 1–1000 → 400; admin only; an empty window → 202 with events_queued 0', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const id = await subscription(ctx, f);
      const replay = (body: Record<string, unknown>) => ctx.callOp('admin', 'replayEvents', { admin: true, params: { subscription_id: id }, body });
      ctx.expectStatus(await replay({ max_events: 0 }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await replay({ max_events: 1001 }), 400, 'INVALID_REQUEST');
      const byTenant = await ctx.callOp('admin', 'replayEvents', { key: f.key, params: { subscription_id: id }, body: {} });
      ctx.expectStatus(byTenant, [401, 403]);
      const empty = await replay({ from: '2001-01-01T00:00:00Z', to: '2001-01-02T00:00:00Z', max_events: 10 });
      if (ctx.expectStatus(empty, 202)) {
        ctx.check(typeof empty.body.replay_id === 'string' && empty.body.replay_id.length > 0, 'replay_id missing');
        ctx.check(empty.body.events_queued === 0, `events_queued ${empty.body.events_queued} for a window before the tenant existed`);
      }
      await remove(ctx, id);
    }),

    dv('closed-owner', 'CLOSED owning tenant: probe and replay → 409 TENANT_CLOSED; the delivery list still answers 200', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const id = await subscription(ctx, f);
      ctx.require(await ctx.callOp('admin', 'updateTenant', { admin: true, params: { tenant_id: f.tenantId }, body: { status: 'CLOSED' } }), 200);
      ctx.expectStatus(await ctx.callOp('admin', 'testWebhookSubscription', { admin: true, params: { subscription_id: id } }), 409, 'TENANT_CLOSED');
      ctx.expectStatus(await ctx.callOp('admin', 'replayEvents', { admin: true, params: { subscription_id: id }, body: {} }), 409, 'TENANT_CLOSED');
      ctx.expectStatus(await listAdmin(ctx, id), 200);
    }),
  ];
}
