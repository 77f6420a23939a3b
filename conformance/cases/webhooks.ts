// Webhook subscriptions against the admin spec: the signing secret returned once, header
// values masked, the normative WEBHOOK SUBSCRIPTION INVARIANTS 1 and 2 on the tenant plane,
// the admin plane and admin on behalf of the owner (a refused write changes nothing), tenant
// isolation (404 on another tenant's id), status rules, retry-policy bounds, URL checks
// under the default security config, lists, lifecycle events with their correlation ids,
// and the bulk-action gates.
// Black-box and safe on a shared server: the security config is only read, subscriptions
// point at https://example.com (nothing is delivered there unless configured), system-wide
// ones select only policy.deleted, and every case deletes what it created.
import { randomBytes } from 'node:crypto';
import { sleep, type Case, type CaseContext, type TenantFixture } from '../harness';
import type { HttpResponse } from '../client';

const HOOK = 'https://example.com/cycles-conformance-hook';
const token = () => randomBytes(6).toString('hex');

type Meta = Pick<Case, 'level' | 'requirements' | 'tags'>;
const M = (level: Meta['level'], ...requirements: string[]): Meta => ({ level, requirements, tags: ['webhooks'] });
/** Catalogue tags (conformance/catalog.ts) of each case below. */
const META: Record<string, Meta> = {
  'invariant-1': M('MUST', 'XP.WEBHOOK.SELECTOR_PRESENCE'),
  'invariant-2-tenant': M('MUST', 'XP.WEBHOOK.TENANT_SELECTORS'),
  'invariant-2-admin': M('MUST', 'XP.WEBHOOK.TENANT_SELECTORS'),
  'events': M('MUST', 'XP.SCHEMA.EVENT', 'RT.TRACE.DOWNSTREAM'),
};

const wh = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>): Case => ({
  id: `webhooks.${id}`, title, plane: 'admin', skipOn501: true, ...(META[id] ?? M('MAY')), run,
});

async function tenantCreate(ctx: CaseContext, f: TenantFixture, body: Record<string, unknown>): Promise<HttpResponse> {
  return ctx.callOp('admin', 'createTenantWebhook', { key: f.key, body: { url: HOOK, event_types: ['budget.created'], ...body } });
}

async function created(ctx: CaseContext, f: TenantFixture, body: Record<string, unknown> = {}): Promise<{ id: string; secret: string; body: any }> {
  const r = await tenantCreate(ctx, f, body);
  ctx.require(r, 201);
  return { id: r.body.subscription.subscription_id, secret: r.body.signing_secret, body: r.body };
}

const getAdmin = (ctx: CaseContext, id: string) => ctx.callOp('admin', 'getWebhookSubscription', { admin: true, params: { subscription_id: id } });

async function remove(ctx: CaseContext, id: string): Promise<void> {
  const r = await ctx.callOp('admin', 'deleteWebhookSubscription', { admin: true, params: { subscription_id: id } });
  ctx.expectStatus(r, [204, 404]);
}

/** A refused write: 400 and the stored subscription exactly as before. */
async function refusedUnchanged(ctx: CaseContext, what: string, id: string, attempt: () => Promise<HttpResponse>, codes = ['INVALID_REQUEST']): Promise<void> {
  const before = await getAdmin(ctx, id);
  const r = await attempt();
  if (r.status !== 400 || !codes.includes(r.body?.error)) ctx.check(false, `${what}: expected 400 ${codes.join('|')}, got ${r.status} ${r.text.slice(0, 200)}`);
  const after = await getAdmin(ctx, id);
  ctx.check(after.text === before.text, `${what}: the subscription changed although the write was refused: ${before.text} → ${after.text}`);
}

async function tenantRows(ctx: CaseContext, f: TenantFixture): Promise<any[]> {
  const r = await ctx.callOp('admin', 'listTenantWebhooks', { key: f.key });
  ctx.require(r, 200);
  return r.body.subscriptions ?? [];
}

export function webhookCases(): Case[] {
  return [
    wh('secret-once', 'signing_secret returned once at create, never in GET / lists / PATCH; header values masked; delete → 404', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const header = `Bearer conf_${token()}`;
      const c = await created(ctx, f, { headers: { Authorization: header }, name: 'conformance' });
      ctx.check(typeof c.secret === 'string' && c.secret.length >= 16, `signing_secret at create: ${String(c.secret)}`);
      ctx.check(c.body.subscription.signing_secret === undefined, 'the nested subscription carries signing_secret');
      ctx.check(c.body.subscription.tenant_id === f.tenantId, `tenant_id ${c.body.subscription.tenant_id}, want ${f.tenantId}`);
      ctx.check(c.body.subscription.status === 'ACTIVE', `status ${c.body.subscription.status}`);
      const reads = [
        await ctx.callOp('admin', 'getTenantWebhook', { key: f.key, params: { subscription_id: c.id } }),
        await ctx.callOp('admin', 'listTenantWebhooks', { key: f.key }),
        await getAdmin(ctx, c.id),
        await ctx.callOp('admin', 'listWebhookSubscriptions', { admin: true, query: { tenant_id: f.tenantId } }),
        await ctx.callOp('admin', 'updateTenantWebhook', { key: f.key, params: { subscription_id: c.id }, body: { description: 'x' } }),
      ];
      for (const r of reads) {
        if (!ctx.expectStatus(r, 200)) continue;
        ctx.check(!r.text.includes(c.secret), `${r.text.slice(0, 80)}…: a read returned the signing secret`);
        ctx.check(!r.text.includes(header), 'a read returned a custom header value');
      }
      ctx.expectStatus(await ctx.callOp('admin', 'deleteTenantWebhook', { key: f.key, params: { subscription_id: c.id } }), 204);
      ctx.expectStatus(await ctx.callOp('admin', 'getTenantWebhook', { key: f.key, params: { subscription_id: c.id } }), 404);
    }),

    wh('invariant-1', 'INVARIANT 1: create needs event_types; category-only via PATCH; clearing both selectors → 400, nothing persisted', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const before = (await tenantRows(ctx, f)).length;
      ctx.expectStatus(await tenantCreate(ctx, f, { event_types: [], event_categories: ['budget'] }), 400, 'INVALID_REQUEST');
      ctx.check((await tenantRows(ctx, f)).length === before, 'a refused create persisted a subscription');
      const c = await created(ctx, f, { event_categories: ['budget'] });
      const ok = await ctx.callOp('admin', 'updateTenantWebhook', { key: f.key, params: { subscription_id: c.id }, body: { event_types: [] } });
      if (ctx.expectStatus(ok, 200)) ctx.check(Array.isArray(ok.body.event_types) && ok.body.event_types.length === 0, `event_types ${JSON.stringify(ok.body.event_types)}`);
      await refusedUnchanged(ctx, 'PATCH event_categories=[] on a category-only subscription', c.id,
        () => ctx.callOp('admin', 'updateTenantWebhook', { key: f.key, params: { subscription_id: c.id }, body: { event_categories: [] } }));
      await remove(ctx, c.id);
    }),

    wh('invariant-2-tenant', 'INVARIANT 2 on /v1/webhooks: admin-only event types or categories → 400, nothing persisted', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      for (const body of [{ event_types: ['api_key.created'] }, { event_types: ['system.webhook_test'] },
        { event_types: ['budget.created'], event_categories: ['policy'] }, { event_types: ['tenant.created'], event_categories: ['webhook'] }]) {
        ctx.expectStatus(await tenantCreate(ctx, f, body), 400, 'INVALID_REQUEST');
      }
      ctx.check((await tenantRows(ctx, f)).length === 0, 'a refused create persisted a subscription');
      const c = await created(ctx, f);
      await refusedUnchanged(ctx, 'tenant PATCH adding category api_key', c.id,
        () => ctx.callOp('admin', 'updateTenantWebhook', { key: f.key, params: { subscription_id: c.id }, body: { event_categories: ['api_key'] } }));
      await refusedUnchanged(ctx, 'tenant PATCH with type policy.updated', c.id,
        () => ctx.callOp('admin', 'updateTenantWebhook', { key: f.key, params: { subscription_id: c.id }, body: { event_types: ['policy.updated'] } }));
      await remove(ctx, c.id);
    }),

    wh('invariant-2-admin', 'INVARIANT 2 on the admin plane and admin-on-behalf-of; __system__ may select admin events', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      for (const body of [{ event_types: ['policy.created'] }, { event_types: ['budget.created'], event_categories: ['system'] }]) {
        ctx.expectStatus(await ctx.callOp('admin', 'createWebhookSubscription', { admin: true, query: { tenant_id: f.tenantId }, body: { url: HOOK, ...body } }), 400, 'INVALID_REQUEST');
      }
      const list = await ctx.callOp('admin', 'listWebhookSubscriptions', { admin: true, query: { tenant_id: f.tenantId } });
      if (ctx.expectStatus(list, 200)) ctx.check(list.body.subscriptions.length === 0, 'a refused admin create persisted a subscription');
      const sys = await ctx.callOp('admin', 'createWebhookSubscription', { admin: true, body: { url: HOOK, event_types: ['policy.deleted'] } });
      if (ctx.expectStatus(sys, 201)) {
        ctx.check(sys.body.subscription.tenant_id === '__system__', `system subscription tenant_id ${sys.body.subscription.tenant_id}`);
        await remove(ctx, sys.body.subscription.subscription_id);
      }
      const a = await ctx.callOp('admin', 'createWebhookSubscription', { admin: true, query: { tenant_id: f.tenantId }, body: { url: HOOK, event_types: ['budget.created'] } });
      ctx.require(a, 201);
      const id = a.body.subscription.subscription_id;
      await refusedUnchanged(ctx, 'admin PATCH adding category webhook to a tenant-owned row', id,
        () => ctx.callOp('admin', 'updateWebhookSubscription', { admin: true, params: { subscription_id: id }, body: { event_categories: ['webhook'] } }));
      await refusedUnchanged(ctx, 'admin-on-behalf-of PATCH adding type api_key.revoked', id,
        () => ctx.callOp('admin', 'updateTenantWebhook', { admin: true, params: { subscription_id: id }, body: { event_types: ['api_key.revoked'] } }));
      await remove(ctx, id);
    }),

    wh('isolation', 'another tenant\'s subscription id is 404 on GET / PATCH / DELETE /v1/webhooks/{id} and stays unchanged', async (ctx) => {
      const a = await ctx.fixtures.newTenant(ctx, []);
      const b = await ctx.fixtures.newTenant(ctx, []);
      const c = await created(ctx, a, { name: 'owned by a' });
      const before = await getAdmin(ctx, c.id);
      ctx.expectStatus(await ctx.callOp('admin', 'getTenantWebhook', { key: b.key, params: { subscription_id: c.id } }), 404);
      ctx.expectStatus(await ctx.callOp('admin', 'updateTenantWebhook', { key: b.key, params: { subscription_id: c.id }, body: { name: 'taken' } }), 404);
      ctx.expectStatus(await ctx.callOp('admin', 'deleteTenantWebhook', { key: b.key, params: { subscription_id: c.id } }), 404);
      ctx.check((await getAdmin(ctx, c.id)).text === before.text, 'another tenant changed the subscription');
      ctx.check(!(await tenantRows(ctx, b)).some((r) => r.subscription_id === c.id), 'another tenant lists the subscription');
      await remove(ctx, c.id);
    }),

    wh('status-and-retry', 'PATCH status DISABLED → 400; PAUSED/ACTIVE round trip; retry_policy bounds → 400', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const c = await created(ctx, f);
      const patch = (body: Record<string, unknown>) => ctx.callOp('admin', 'updateTenantWebhook', { key: f.key, params: { subscription_id: c.id }, body });
      await refusedUnchanged(ctx, 'PATCH status=DISABLED', c.id, () => patch({ status: 'DISABLED' }));
      const p = await patch({ status: 'PAUSED' });
      if (ctx.expectStatus(p, 200)) ctx.check(p.body.status === 'PAUSED', `status ${p.body.status}`);
      const r = await patch({ status: 'ACTIVE' });
      if (ctx.expectStatus(r, 200)) ctx.check(r.body.status === 'ACTIVE', `status ${r.body.status}`);
      for (const retry_policy of [{ max_retries: 11 }, { initial_delay_ms: 99 }, { backoff_multiplier: 10.5 }, { max_delay_ms: 999 }]) {
        ctx.expectStatus(await tenantCreate(ctx, f, { retry_policy }), 400, 'INVALID_REQUEST');
      }
      await refusedUnchanged(ctx, 'PATCH retry_policy.max_retries=11', c.id, () => patch({ retry_policy: { max_retries: 11 } }));
      await remove(ctx, c.id);
    }),

    wh('url-checks', 'under the default security config: loopback, IPv4-mapped loopback and plain http URLs → 400', async (ctx) => {
      const cfg = await ctx.callOp('admin', 'getWebhookSecurityConfig', { admin: true });
      ctx.require(cfg, 200);
      const blocked: string[] = cfg.body.blocked_cidr_ranges ?? [];
      if (cfg.body.allow_http !== false || !blocked.includes('127.0.0.0/8') || (cfg.body.allowed_url_patterns ?? []).length > 0) {
        ctx.skip('the server under test does not run the default webhook security config');
      }
      const f = await ctx.fixtures.newTenant(ctx, []);
      for (const url of ['https://127.0.0.1/hook', 'https://[::ffff:127.0.0.1]/hook', 'http://example.com/hook']) {
        const r = await tenantCreate(ctx, f, { url });
        ctx.check(r.status === 400 && ['WEBHOOK_URL_INVALID', 'INVALID_REQUEST'].includes(r.body?.error), `${url}: expected 400, got ${r.status} ${r.text.slice(0, 160)}`);
      }
      ctx.check((await tenantRows(ctx, f)).length === 0, 'a refused URL persisted a subscription');
    }),

    wh('lists', 'listWebhookSubscriptions tenant_id / status filters; listTenantWebhooks under the admin key needs `tenant`', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const ids = [(await created(ctx, f)).id, (await created(ctx, f)).id];
      ctx.require(await ctx.callOp('admin', 'updateWebhookSubscription', { admin: true, params: { subscription_id: ids[1] }, body: { status: 'PAUSED' } }), 200);
      const all = await ctx.callOp('admin', 'listWebhookSubscriptions', { admin: true, query: { tenant_id: f.tenantId, limit: 1 } });
      if (ctx.expectStatus(all, 200)) {
        ctx.check(all.body.subscriptions.length === 1 && all.body.has_more === true && typeof all.body.next_cursor === 'string', `limit=1 page: ${all.text.slice(0, 200)}`);
      }
      const paused = await ctx.callOp('admin', 'listWebhookSubscriptions', { admin: true, query: { tenant_id: f.tenantId, status: 'PAUSED' } });
      if (ctx.expectStatus(paused, 200)) ctx.check(paused.body.subscriptions.map((s: any) => s.subscription_id).join() === ids[1], `status=PAUSED: ${paused.text.slice(0, 200)}`);
      ctx.expectStatus(await ctx.callOp('admin', 'listTenantWebhooks', { admin: true }), 400, 'INVALID_REQUEST');
      const byAdmin = await ctx.callOp('admin', 'listTenantWebhooks', { admin: true, query: { tenant: f.tenantId } });
      if (ctx.expectStatus(byAdmin, 200)) ctx.check(byAdmin.body.subscriptions.length === 2, `admin listTenantWebhooks: ${byAdmin.text.slice(0, 200)}`);
      for (const id of ids) await remove(ctx, id);
    }),

    wh('events', 'create / update / pause / delete emit webhook.* events with the specified correlation ids', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const a = await ctx.callOp('admin', 'createWebhookSubscription', { admin: true, query: { tenant_id: f.tenantId }, body: { url: HOOK, event_types: ['budget.created'] } });
      ctx.require(a, 201);
      const id = a.body.subscription.subscription_id as string;
      const u = await ctx.callOp('admin', 'updateWebhookSubscription', { admin: true, params: { subscription_id: id }, body: { name: 'renamed' } });
      ctx.require(u, 200);
      const p = await ctx.callOp('admin', 'updateWebhookSubscription', { admin: true, params: { subscription_id: id }, body: { status: 'PAUSED' } });
      ctx.require(p, 200);
      ctx.require(await ctx.callOp('admin', 'deleteWebhookSubscription', { admin: true, params: { subscription_id: id } }), 204);
      const want: [string, string, (d: any) => boolean][] = [
        [`webhook_create:${id}`, 'webhook.created', (d) => d.new_status === 'ACTIVE' && d.previous_status === undefined],
        [`webhook_update:${id}:${u.headers.get('x-request-id')}`, 'webhook.updated', (d) => Array.isArray(d.changed_fields) && d.changed_fields.includes('name')],
        [`webhook_update:${id}:${p.headers.get('x-request-id')}`, 'webhook.paused', (d) => d.previous_status === 'ACTIVE' && d.new_status === 'PAUSED'],
        [`webhook_delete:${id}`, 'webhook.deleted', (d) => d.previous_status === 'PAUSED' && d.new_status === undefined],
      ];
      for (const [correlation, type, ok] of want) {
        let events: any[] = [];
        for (let i = 0; i < 50 && events.length === 0; i++) {
          const r = await ctx.callOp('admin', 'listEvents', { admin: true, query: { correlation_id: correlation } });
          ctx.require(r, 200);
          events = r.body.events ?? [];
          if (events.length === 0) await sleep(100);
        }
        ctx.check(events.length === 1, `correlation_id ${correlation}: ${events.length} events`);
        const e = events[0];
        if (!e) continue;
        ctx.check(e.event_type === type && e.tenant_id === f.tenantId && e.data?.subscription_id === id && ok(e.data ?? {}),
          `${correlation}: ${JSON.stringify(e).slice(0, 300)}`);
      }
    }),

    wh('bulk', 'bulkActionWebhooks PAUSE: succeeded rows, idempotent replay, COUNT_MISMATCH changes nothing', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const ids = [(await created(ctx, f)).id, (await created(ctx, f)).id];
      const mismatch = await ctx.callOp('admin', 'bulkActionWebhooks', { admin: true, body: { filter: { tenant_id: f.tenantId }, action: 'PAUSE', expected_count: 3, idempotency_key: `conf-${token()}` } });
      ctx.expectStatus(mismatch, 409, 'COUNT_MISMATCH');
      ctx.check((await tenantRows(ctx, f)).every((r) => r.status === 'ACTIVE'), 'COUNT_MISMATCH changed a subscription');
      const body = { filter: { tenant_id: f.tenantId }, action: 'PAUSE', expected_count: 2, idempotency_key: `conf-${token()}` };
      const r = await ctx.callOp('admin', 'bulkActionWebhooks', { admin: true, body });
      if (ctx.expectStatus(r, 200)) {
        ctx.check(r.body.total_matched === 2 && r.body.succeeded.length === 2 && r.body.failed.length === 0, `envelope ${r.text.slice(0, 300)}`);
        ctx.check((await tenantRows(ctx, f)).every((x) => x.status === 'PAUSED'), 'rows not PAUSED after bulk PAUSE');
        const again = await ctx.callOp('admin', 'bulkActionWebhooks', { admin: true, body });
        if (ctx.expectStatus(again, 200)) ctx.check(again.text === r.text, 'idempotent replay returned another envelope');
      }
      const skip = await ctx.callOp('admin', 'bulkActionWebhooks', { admin: true, body: { filter: { tenant_id: f.tenantId }, action: 'PAUSE', idempotency_key: `conf-${token()}` } });
      if (ctx.expectStatus(skip, 200)) ctx.check(skip.body.skipped.length === 2 && skip.body.skipped.every((s: any) => s.reason === 'ALREADY_IN_TARGET_STATE'), `second PAUSE: ${skip.text.slice(0, 300)}`);
      for (const id of ids) await remove(ctx, id);
    }),
  ];
}
