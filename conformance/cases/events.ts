// The event stream against the spec (normative: listEvents, getEvent, listTenantEvents,
// the Event / EventData* schemas): events appear for admin changes with the causing
// request's request_id and trace_id; every filter narrows (AND); keyset paging visits each
// event once, newest first; getEvent returns the listed record and 404 EVENT_NOT_FOUND
// otherwise; a tenant key sees only its own budget / reservation / tenant events and is
// refused admin-only filters. Black-box: nothing about the server's id format or storage
// is assumed; servers may index events asynchronously, so reads poll briefly.
import { eventually, type Case, type CaseContext } from '../harness';
import type { HttpResponse } from '../client';
import { EVENT_DATA_SCHEMA } from '../../src/events/model';
import { toView } from '../validate';

const U = 'USD_MICROCENTS';
const TENANT_VISIBLE = new Set(['budget', 'reservation', 'tenant']);

type Meta = Pick<Case, 'level' | 'requirements' | 'tags'>;
const M = (level: Meta['level'], ...requirements: string[]): Meta => ({ level, requirements, tags: ['events'] });
/** Catalogue tags (conformance/catalog.ts) of each case below. */
const META: Record<string, Meta> = {
  'list.tenant': M('MUST', 'XP.LIST_EVENTS', 'XP.SCHEMA.EVENT', 'SHOULD.EMIT_EVENTS', 'RT.TRACE.DOWNSTREAM'),
  'get': M('MUST', 'XP.GET_EVENT', 'XP.LIST_EVENTS'),
  'filters': M('MUST', 'XP.LIST_EVENTS'),
  'paging': M('MUST', 'XP.LIST_EVENTS'),
  'tenant': M('MUST', 'XP.LIST_TENANT_EVENTS', 'AUTH.API_KEY'),
};

const ev = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>): Case => ({
  id: `events.${id}`, title, plane: 'admin', skipOn501: true, ...(META[id] ?? M('MAY')), run,
});

/** Each event's data against its EventData* variant (the harness checks the Event envelope). */
function checkData(ctx: CaseContext, events: any[], where: string): void {
  for (const e of events) {
    const variant = EVENT_DATA_SCHEMA[e?.event_type];
    if (!variant) {
      ctx.check(String(e?.event_type).startsWith('custom.'), `${where}: event_type ${e?.event_type} is neither a spec EventType nor custom.*`);
      continue;
    }
    ctx.check(e.category === String(e.event_type).split('.')[0], `${where}: category ${e.category} is not the prefix of ${e.event_type}`);
    if (e.data === undefined) continue;
    const v = ctx.spec.compile('admin', `schema:${variant}`, { $ref: `#/components/schemas/${variant}` });
    if (v && !v(toView(e.data))) {
      const errs = (v.errors ?? []).slice(0, 3).map((x) => `${x.instancePath || '/'} ${x.message}`).join('; ');
      ctx.problems.push(`${where}: ${e.event_type} data violates ${variant}: ${errs}`);
    }
  }
}

/** A tenant with a budget and one funding: tenant.created, budget.created, budget.funded. */
async function populated(ctx: CaseContext) {
  const t = ctx.uid('cev');
  const created = await ctx.callOp('admin', 'createTenant', { admin: true, body: { tenant_id: t, name: `conformance ${t}` } });
  ctx.require(created, [200, 201]);
  const scope = `tenant:${t}/workspace:w`;
  const budget = await ctx.callOp('admin', 'createBudget', { admin: true, body: { tenant_id: t, scope, unit: U, allocated: { unit: U, amount: 1000 } } });
  ctx.require(budget, 201);
  const fund = await ctx.callOp('admin', 'fundBudget', { admin: true, query: { tenant_id: t, scope, unit: U }, body: { operation: 'CREDIT', amount: { unit: U, amount: 5 }, idempotency_key: ctx.uid('f') } });
  ctx.require(fund, 200);
  return { t, scope, budget, fund };
}

async function listAll(ctx: CaseContext, query: Record<string, string | number | undefined>, key?: string): Promise<any[] | undefined> {
  const out: any[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 200; i++) {
    const r: HttpResponse = key
      ? await ctx.callOp('admin', 'listTenantEvents', { key, query: { ...query, cursor } })
      : await ctx.callOp('admin', 'listEvents', { admin: true, query: { ...query, cursor } });
    if (!ctx.expectStatus(r, 200)) return undefined;
    out.push(...r.body.events);
    if (!r.body.has_more) {
      ctx.check(r.body.next_cursor === undefined, 'next_cursor must be absent when has_more is false');
      return out;
    }
    if (!ctx.check(typeof r.body.next_cursor === 'string' && r.body.next_cursor !== '', 'has_more=true needs a next_cursor')) return out;
    cursor = r.body.next_cursor;
  }
  ctx.problems.push('paging did not end after 200 pages');
  return out;
}

const ids = (evs: any[]) => evs.map((e) => e.event_id);

export function eventCases(): Case[] {
  return [
    ev('list.tenant', 'admin changes produce events for the tenant, carrying the request_id / trace_id of the request; data matches its EventData variant', async (ctx) => {
      const p = await populated(ctx);
      const r = await eventually(() => ctx.callOp('admin', 'listEvents', { admin: true, query: { tenant_id: p.t, limit: 100 } }),
        (x) => x.status !== 200 || ['tenant.created', 'budget.created', 'budget.funded'].every((ty) => x.body.events.some((e: any) => e.event_type === ty)));
      ctx.require(r, 200);
      const events = r.body.events as any[];
      checkData(ctx, events, 'listEvents');
      for (const e of events) ctx.check(e.tenant_id === p.t, `listEvents?tenant_id=${p.t} returned an event of ${e.tenant_id}`);
      for (const [ty, res] of [['budget.created', p.budget], ['budget.funded', p.fund]] as const) {
        const e = events.find((x) => x.event_type === ty);
        if (!ctx.check(e, `no ${ty} event for tenant ${p.t}`)) continue;
        ctx.check(e.request_id === res.headers.get('x-request-id'), `${ty}.request_id ${e.request_id} != X-Request-Id ${res.headers.get('x-request-id')} of the request`);
        ctx.check(e.trace_id === res.headers.get('x-cycles-trace-id'), `${ty}.trace_id ${e.trace_id} != X-Cycles-Trace-Id ${res.headers.get('x-cycles-trace-id')}`);
        ctx.check(['admin', 'admin_on_behalf_of'].includes(e.actor?.type), `${ty}.actor.type ${e.actor?.type}: an admin-key request`);
        ctx.check(e.scope === undefined || e.scope === p.scope, `${ty}.scope ${e.scope} != ${p.scope}`);
      }
      // newest first by default
      const ts = events.map((e) => Date.parse(e.timestamp));
      ctx.check(ts.every((x, i) => i === 0 || ts[i - 1] >= x), 'listEvents default order is not newest first');
    }),

    ev('get', 'getEvent returns the record listEvents returns; an unknown id is 404 EVENT_NOT_FOUND', async (ctx) => {
      const p = await populated(ctx);
      const r = await eventually(() => ctx.callOp('admin', 'listEvents', { admin: true, query: { tenant_id: p.t } }), (x) => x.status !== 200 || x.body.events.length > 0);
      ctx.require(r, 200);
      if (!r.body.events.length) ctx.fail('no events for a tenant just created');
      const listed = r.body.events[0];
      const g = await ctx.callOp('admin', 'getEvent', { admin: true, params: { event_id: listed.event_id } });
      if (ctx.expectStatus(g, 200)) ctx.check(JSON.stringify(toView(g.body)) === JSON.stringify(toView(listed)), `getEvent ${listed.event_id} differs from the listed record`);
      for (const unknown of [`evt_conformance_${ctx.uid('x')}`, `${listed.event_id}x`]) {
        const nf = await ctx.callOp('admin', 'getEvent', { admin: true, params: { event_id: unknown } });
        ctx.expectStatus(nf, 404, 'EVENT_NOT_FOUND');
      }
      const key = (await ctx.fixtures.newTenant(ctx, [])).key;
      const asTenant = await ctx.callOp('admin', 'getEvent', { key, params: { event_id: listed.event_id } });
      ctx.expectStatus(asTenant, [401, 403]);
    }),

    ev('filters', 'event_type, category, scope, request_id, trace_id, search, from/to narrow the list (AND-combined)', async (ctx) => {
      const p = await populated(ctx);
      const all = await eventually(() => listAll(ctx, { tenant_id: p.t, limit: 100 }), (x) => !x || x.some((e) => e.event_type === 'budget.funded'));
      if (!all) return;
      const expectSubset = async (query: Record<string, string | undefined>, want: (e: any) => boolean, what: string) => {
        const got = await listAll(ctx, { tenant_id: p.t, limit: 100, ...query });
        if (!got) return;
        const exp = all.filter(want).map((e) => e.event_id).sort();
        ctx.check(JSON.stringify(ids(got).sort()) === JSON.stringify(exp), `${what}: got ${ids(got).length} events, want ${exp.length}`);
      };
      await expectSubset({ event_type: 'budget.funded' }, (e) => e.event_type === 'budget.funded', 'event_type=budget.funded');
      await expectSubset({ category: 'budget' }, (e) => e.category === 'budget', 'category=budget');
      await expectSubset({ category: 'tenant', event_type: 'budget.funded' }, () => false, 'category=tenant AND event_type=budget.funded');
      await expectSubset({ scope: p.scope }, (e) => typeof e.scope === 'string' && (e.scope === p.scope || e.scope.startsWith(`${p.scope}/`)), `scope=${p.scope}`);
      const rid = p.fund.headers.get('x-request-id') ?? undefined;
      const tid = p.fund.headers.get('x-cycles-trace-id') ?? undefined;
      await expectSubset({ request_id: rid }, (e) => e.request_id === rid, 'request_id');
      await expectSubset({ trace_id: tid }, (e) => e.trace_id === tid, 'trace_id');
      await expectSubset({ search: 'WORKSPACE:W' }, (e) => `${e.scope ?? ''} ${e.correlation_id ?? ''}`.toLowerCase().includes('workspace:w'), 'search (case-insensitive)');
      const future = new Date(Date.now() + 3_600_000).toISOString();
      await expectSubset({ from: future }, () => false, 'from in the future');
      const past = new Date(Date.now() - 3_600_000).toISOString();
      await expectSubset({ from: past, to: future }, () => true, 'from/to around now');
      const long = await ctx.callOp('admin', 'listEvents', { admin: true, query: { search: 'x'.repeat(129) } });
      ctx.expectStatus(long, 400);
      const badTrace = await ctx.callOp('admin', 'listEvents', { admin: true, query: { trace_id: 'NOT-HEX' } });
      ctx.expectStatus(badTrace, 400);
    }),

    ev('paging', 'limit=1 paging visits each event once, newest first, has_more/next_cursor consistent', async (ctx) => {
      const p = await populated(ctx);
      const full = await eventually(() => listAll(ctx, { tenant_id: p.t, limit: 100 }), (x) => !x || x.length >= 3);
      const paged = await listAll(ctx, { tenant_id: p.t, limit: 1 });
      if (!full || !paged) return;
      ctx.check(new Set(ids(paged)).size === paged.length, 'a paged walk returned an event twice');
      ctx.check(JSON.stringify(ids(paged)) === JSON.stringify(ids(full)), 'limit=1 paging does not give the same sequence as one page');
      const asc = await listAll(ctx, { tenant_id: p.t, limit: 2, sort_by: 'timestamp', sort_dir: 'asc' });
      if (asc) ctx.check(JSON.stringify(ids(asc)) === JSON.stringify(ids(full).reverse()), 'sort_dir=asc is not the reverse of the default order');
      const bad = await ctx.callOp('admin', 'listEvents', { admin: true, query: { tenant_id: p.t, cursor: 'not-a-cursor-@@' } });
      ctx.expectStatus(bad, 400);
    }),

    ev('tenant', 'listTenantEvents: own tenant only, only budget/reservation/tenant events, admin-only filters → 400', async (ctx) => {
      const p = await populated(ctx);
      const k = await ctx.callOp('admin', 'createApiKey', { admin: true, body: { tenant_id: p.t, name: 'events', permissions: ['events:read'] } });
      ctx.require(k, 201); // also an api_key.created event in this tenant, which the tenant must not see
      const other = await populated(ctx);
      const key = k.body.key_secret as string;
      const got = await eventually(() => listAll(ctx, { limit: 100 }, key), (x) => !x || x.some((e) => e.event_type === 'budget.funded'));
      if (!got) return;
      ctx.check(got.some((e) => e.event_type === 'budget.funded'), 'listTenantEvents misses the tenant\'s budget.funded');
      for (const e of got) {
        ctx.check(e.tenant_id === p.t, `listTenantEvents returned an event of tenant ${e.tenant_id}`);
        ctx.check(TENANT_VISIBLE.has(e.category), `listTenantEvents returned a ${e.event_type} event (admin-only category)`);
      }
      checkData(ctx, got, 'listTenantEvents');
      ctx.check(!got.some((e) => e.tenant_id === other.t), 'another tenant\'s events leaked');
      for (const q of [{ event_type: 'api_key.created' }, { category: 'api_key' }, { category: 'system' }, { event_type: 'policy.created' }]) {
        const r = await ctx.callOp('admin', 'listTenantEvents', { key, query: q });
        ctx.expectStatus(r, 400);
      }
      const noPerm = await ctx.callOp('admin', 'createApiKey', { admin: true, body: { tenant_id: p.t, name: 'no-events', permissions: ['balances:read'] } });
      ctx.require(noPerm, 201);
      ctx.expectStatus(await ctx.callOp('admin', 'listTenantEvents', { key: noPerm.body.key_secret }), 403);
    }),
  ];
}
