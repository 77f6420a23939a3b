// Admin-plane behaviour against the spec (cycles-governance-admin): tenants (create/repeat/
// conflict, list paging, SUSPENDED, CLOSE cascade), budgets (create rules, lookup, list
// filters, update/is_over_limit, freeze, fund formulas and idempotency), API keys (secret
// shown once, permissions, revocation on both planes, validate, introspect table), policies
// (caps reach the runtime), audit (request_id/trace_id), overview and bulk-action gates.
// Black-box: HTTP only, every response validated by the harness; ids are random per run so
// the suite can run repeatedly against one server. Error codes are asserted only where the
// spec names them or the ErrorCode enum has exactly one code for the condition (decision DQ3).
import { randomBytes } from 'node:crypto';
import { eventually, type Case, type CaseContext, type TenantFixture } from '../harness';
import type { HttpResponse } from '../client';

const U = 'USD_MICROCENTS';
const amount = (n: bigint | number, unit = U) => ({ unit, amount: n });
const big = (v: unknown): bigint | undefined => (typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : undefined);
/** a token no other id of this run contains (tenant-id charset) */
const token = () => randomBytes(6).toString('hex');

type Meta = Pick<Case, 'level' | 'requirements' | 'tags'>;
const M = (level: Meta['level'], ...requirements: string[]): Meta => ({ level, requirements, tags: ['admin'] });
/** Catalogue tags (conformance/catalog.ts); the reference admin surface itself is MAY. */
const META: Record<string, Meta> = {
  'tenants.close': M('MUST', 'ERR.TENANT_CLOSED.PERSISTING', 'ERR.TENANT_CLOSED.READS'),
  'tenants.suspended': M('MAY'),
  'budgets.freeze': M('MAY'),
  'budgets.debt': M('MUST', 'RT.OVERDRAFT.OVER_LIMIT_BLOCKS', 'RT.OVERDRAFT.AUTO_CLEAR', 'XP.GET_BALANCES'),
  'apikeys.lifecycle': M('MUST', 'AUTH.API_KEY'),
  'apikeys.permissions': M('MUST', 'AUTH.PERMISSIONS', 'XP.SCHEMA.PERMISSION'),
  'introspect': M('MUST', 'XP.INTROSPECT'),
  'audit.request-id': M('MUST', 'RT.TRACE.DOWNSTREAM'),
};

const adm = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>): Case => ({
  id: `admin.${id}`, title, plane: 'admin', skipOn501: true, ...(META[id] ?? M('MAY')), run,
});

function eq(ctx: CaseContext, got: unknown, want: bigint, what: string): void {
  ctx.check(big(got) === want, `${what}: got ${String(got)}, want ${want}`);
}

interface Ledger {
  raw: any;
  allocated?: bigint; remaining?: bigint; reserved: bigint; spent: bigint; debt: bigint; overdraft: bigint;
}

function ledgerOf(ctx: CaseContext, row: any, what: string): Ledger {
  const l: Ledger = {
    raw: row,
    allocated: big(row?.allocated?.amount),
    remaining: big(row?.remaining?.amount),
    reserved: big(row?.reserved?.amount) ?? 0n,
    spent: big(row?.spent?.amount) ?? 0n,
    debt: big(row?.debt?.amount) ?? 0n,
    overdraft: big(row?.overdraft_limit?.amount) ?? 0n,
  };
  if (l.allocated !== undefined && l.remaining !== undefined) {
    const want = l.allocated - l.spent - l.reserved - l.debt;
    ctx.check(l.remaining === want, `${what}: ledger invariant broken: remaining ${l.remaining} != allocated − spent − reserved − debt = ${want}`);
  }
  if (typeof row?.is_over_limit === 'boolean') {
    ctx.check(row.is_over_limit === (l.debt > l.overdraft), `${what}: is_over_limit ${row.is_over_limit} but debt ${l.debt}, overdraft_limit ${l.overdraft}`);
  }
  return l;
}

async function lookup(ctx: CaseContext, scope: string, unit = U): Promise<Ledger> {
  const r = await ctx.callOp('admin', 'lookupBudget', { admin: true, query: { scope, unit } });
  ctx.require(r, 200);
  return ledgerOf(ctx, r.body, `ledger ${scope}`);
}

async function createTenant(ctx: CaseContext, tenantId: string, extra: Record<string, unknown> = {}): Promise<HttpResponse> {
  return ctx.callOp('admin', 'createTenant', { admin: true, body: { tenant_id: tenantId, name: `conformance ${tenantId}`, ...extra } });
}

async function setStatus(ctx: CaseContext, tenantId: string, status: string): Promise<HttpResponse> {
  return ctx.callOp('admin', 'updateTenant', { admin: true, params: { tenant_id: tenantId }, body: { status } });
}

async function newKey(ctx: CaseContext, tenantId: string, permissions: string[], extra: Record<string, unknown> = {}): Promise<{ secret: string; keyId: string; body: any }> {
  const r = await ctx.callOp('admin', 'createApiKey', { admin: true, body: { tenant_id: tenantId, name: 'conformance', permissions, ...extra } });
  ctx.require(r, 201);
  if (typeof r.body.key_secret !== 'string' || typeof r.body.key_id !== 'string') ctx.fail(`createApiKey returned no key_secret/key_id: ${r.text}`);
  return { secret: r.body.key_secret, keyId: r.body.key_id, body: r.body };
}

function reserveBody(ctx: CaseContext, tenant: string, est: bigint | number, extra: Record<string, unknown> = {}) {
  return { idempotency_key: ctx.uid('idem'), subject: { tenant }, action: { kind: 'llm.completion', name: 'conformance' }, estimate: amount(est), ...extra };
}

async function reserve(ctx: CaseContext, f: TenantFixture, est: bigint | number): Promise<HttpResponse> {
  return ctx.callOp('runtime', 'createReservation', { key: f.key, body: reserveBody(ctx, f.tenantId, est) });
}

async function fixture(ctx: CaseContext, allocated: bigint | number, extra: { overdraft_limit?: number; commit_overage_policy?: string } = {}): Promise<TenantFixture & { scope: string }> {
  const f = await ctx.fixtures.newTenant(ctx, []);
  const scope = `tenant:${f.tenantId}`;
  await ctx.fixtures.budget(ctx, f.tenantId, { scope, allocated, ...extra });
  return { ...f, scope };
}

async function fund(ctx: CaseContext, tenantId: string, scope: string, body: Record<string, unknown>, unit = U): Promise<HttpResponse> {
  return ctx.callOp('admin', 'fundBudget', { admin: true, query: { tenant_id: tenantId, scope, unit }, body });
}

/** Pages a list operation to the end (bounded), returning every row. */
async function listAll(ctx: CaseContext, operationId: string, wrapper: string, query: Record<string, string | number | boolean>, auth: { admin?: boolean; key?: string } = { admin: true }): Promise<any[]> {
  const rows: any[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 500; page++) {
    const r = await ctx.callOp('admin', operationId, { ...auth, query: { ...query, ...(cursor ? { cursor } : {}) } });
    ctx.require(r, 200);
    rows.push(...(r.body[wrapper] ?? []));
    if (!r.body.has_more) return rows;
    if (typeof r.body.next_cursor !== 'string' || r.body.next_cursor === cursor) ctx.fail(`${operationId}: has_more without a new next_cursor`);
    cursor = r.body.next_cursor;
  }
  return ctx.fail(`${operationId}: more than 500 pages`);
}

// AuthIntrospectResponse.capabilities — the NORMATIVE derivation table (auth_type=tenant).
const CAPABILITY_TABLE: Record<string, string[]> = {
  view_budgets: ['budgets:read', 'admin:read', 'admin:budgets:read'],
  view_policies: ['policies:read', 'admin:read', 'admin:policies:read'],
  view_webhooks: ['webhooks:read', 'admin:read', 'admin:webhooks:read'],
  view_events: ['events:read', 'admin:read', 'admin:events:read'],
  view_reservations: ['reservations:list', 'reservations:create', 'reservations:commit', 'reservations:release', 'reservations:extend', 'admin:read'],
  manage_budgets: ['budgets:write', 'admin:write', 'admin:budgets:write'],
  manage_policies: ['policies:write', 'admin:write', 'admin:policies:write'],
  manage_webhooks: ['webhooks:write', 'admin:write', 'admin:webhooks:write'],
  manage_reservations: ['reservations:create', 'reservations:commit', 'reservations:release', 'reservations:extend', 'admin:write'],
  // admin-plane capabilities: always false under auth_type=tenant
  view_tenants: [], view_api_keys: [], view_audit: [], view_overview: [], manage_tenants: [], manage_api_keys: [],
};
const REQUIRED_CAPABILITIES = ['view_overview', 'view_budgets', 'view_events', 'view_webhooks', 'view_audit', 'view_tenants', 'view_api_keys', 'view_policies'];

export function adminCases(): Case[] {
  return [
    // ───────────────────────────── tenants ─────────────────────────────
    adm('tenants.create', 'createTenant 201 with defaults; same body 200 same tenant; other name 409; unknown 404', async (ctx) => {
      const id = `conf-${token()}`;
      const a = await createTenant(ctx, id);
      ctx.require(a, 201);
      ctx.check(a.body.tenant_id === id && a.body.status === 'ACTIVE', `created ${a.text}`);
      ctx.check(typeof a.body.created_at === 'string', 'created_at missing');
      // Tenant schema defaults (applied when the request omits them)
      const defaults: Record<string, unknown> = {
        default_commit_overage_policy: 'ALLOW_IF_AVAILABLE', default_reservation_ttl_ms: 60000,
        max_reservation_ttl_ms: 3600000, max_reservation_extensions: 10,
      };
      for (const [k, v] of Object.entries(defaults)) {
        if (a.body[k] !== undefined) ctx.check(Number(a.body[k]) === v || a.body[k] === v, `default ${k}: ${String(a.body[k])}, want ${String(v)}`);
      }
      const again = await createTenant(ctx, id);
      if (ctx.expectStatus(again, 200)) {
        ctx.check(again.body.tenant_id === id && again.body.created_at === a.body.created_at, `repeat returned another tenant: ${again.text}`);
      }
      ctx.expectStatus(await ctx.callOp('admin', 'createTenant', { admin: true, body: { tenant_id: id, name: 'a different name' } }), 409, 'DUPLICATE_RESOURCE');
      const g = await ctx.callOp('admin', 'getTenant', { admin: true, params: { tenant_id: id } });
      if (ctx.expectStatus(g, 200)) ctx.check(g.body.name === `conformance ${id}` && g.body.status === 'ACTIVE', `conflicting create changed the tenant: ${g.text}`);
      ctx.expectStatus(await ctx.callOp('admin', 'getTenant', { admin: true, params: { tenant_id: `conf-none-${token()}` } }), 404, 'TENANT_NOT_FOUND');
    }),

    adm('tenants.list-paging', 'listTenants status filter + cursor paging visits each matching tenant exactly once', async (ctx) => {
      const tok = token();
      const ids = ['a', 'b', 'c', 'd'].map((s) => `conf-${tok}-${s}`);
      for (const id of ids) ctx.require(await createTenant(ctx, id), 201);
      ctx.require(await setStatus(ctx, ids[3], 'SUSPENDED'), 200);
      const rows = await listAll(ctx, 'listTenants', 'tenants', { status: 'ACTIVE', search: tok, limit: 1 });
      for (const r of rows) ctx.check(r.status === 'ACTIVE', `status=ACTIVE listed ${r.tenant_id} with status ${r.status}`);
      const seen = rows.map((r) => r.tenant_id as string).filter((t) => ids.includes(t));
      for (const id of ids.slice(0, 3)) {
        const n = seen.filter((t) => t === id).length;
        ctx.check(n === 1, `ACTIVE tenant ${id} listed ${n} times while paging`);
      }
      ctx.check(!seen.includes(ids[3]), 'SUSPENDED tenant listed under status=ACTIVE');
      const susp = await listAll(ctx, 'listTenants', 'tenants', { status: 'SUSPENDED', search: tok, limit: 2 });
      ctx.check(susp.filter((r) => r.tenant_id === ids[3]).length === 1, 'status=SUSPENDED does not list the suspended tenant once');
      ctx.check(!susp.some((r) => ids.slice(0, 3).includes(r.tenant_id)), 'status=SUSPENDED lists an ACTIVE tenant');
    }),

    adm('tenants.suspended', 'SUSPENDED: new reservations refused, nothing reserved; reads and existing reservations still work', async (ctx) => {
      const f = await fixture(ctx, 10_000);
      const open = await reserve(ctx, f, 100);
      ctx.require(open, 200);
      ctx.require(await setStatus(ctx, f.tenantId, 'SUSPENDED'), 200);
      // updateTenant: "ACTIVE → SUSPENDED: Blocks new reservations, existing active
      // reservations can still commit/release"; Tenant.status: "Read-only, no new reservations".
      // The runtime error code is not specified: any 4xx refusal satisfies the spec.
      const r = await reserve(ctx, f, 200);
      ctx.check(r.status >= 400 && r.status < 500, `reserve on a SUSPENDED tenant → ${r.status} ${r.text.slice(0, 200)} (want a 4xx refusal)`);
      const l = await lookup(ctx, f.scope);
      ctx.check(l.reserved === 100n, `reserved ${l.reserved} after a refused reserve (want 100)`);
      const bal = await ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId } });
      ctx.expectStatus(bal, 200);
      const c = await ctx.callOp('runtime', 'commitReservation', { key: f.key, params: { reservation_id: open.body.reservation_id }, body: { idempotency_key: ctx.uid('idem'), actual: amount(80) } });
      if (ctx.expectStatus(c, 200)) ctx.check(c.body.status === 'COMMITTED', `commit while SUSPENDED: ${c.text}`);
      ctx.require(await setStatus(ctx, f.tenantId, 'ACTIVE'), 200);
      ctx.expectStatus(await reserve(ctx, f, 200), 200);
    }),

    adm('tenants.close', 'CLOSE: keys revoked, open reservation released, budgets CLOSED, mutations 409 TENANT_CLOSED, GETs 200, re-close idempotent', async (ctx) => {
      const f = await fixture(ctx, 10_000);
      const res = await reserve(ctx, f, 700);
      ctx.require(res, 200);
      const pol = await ctx.callOp('admin', 'createPolicy', { admin: true, body: { tenant_id: f.tenantId, name: ctx.uid('pol'), scope_pattern: f.scope } });
      ctx.require(pol, 201);
      ctx.require(await ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId } }), 200);
      const keys = await listAll(ctx, 'listApiKeys', 'keys', { tenant_id: f.tenantId });
      const keyId = keys[0]?.key_id as string;

      const close = await setStatus(ctx, f.tenantId, 'CLOSED');
      ctx.require(close, 200);
      ctx.check(close.body.status === 'CLOSED' && typeof close.body.closed_at === 'string', `close response ${close.text}`);

      // cascade (Mode A or B: allow bounded convergence)
      const led = await eventually(() => lookup(ctx, f.scope), (l) => l.raw.status === 'CLOSED' && l.reserved === 0n);
      ctx.check(led.raw.status === 'CLOSED', `budget status ${led.raw.status} after close`);
      ctx.check(led.reserved === 0n && led.remaining === 10_000n, `after close: reserved ${led.reserved}, remaining ${led.remaining} (want 0, 10000)`);
      const rv = await eventually(() => ctx.callOp('runtime', 'getReservation', { admin: true, params: { reservation_id: res.body.reservation_id } }), (r) => r.body?.status === 'RELEASED');
      if (ctx.expectStatus(rv, 200)) ctx.check(rv.body.status === 'RELEASED', `open reservation is ${rv.body.status} after close`);
      const denied = await eventually(() => ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId } }), (r) => r.status === 401);
      ctx.expectStatus(denied, 401, 'UNAUTHORIZED');
      const k = (await listAll(ctx, 'listApiKeys', 'keys', { tenant_id: f.tenantId })).find((x) => x.key_id === keyId);
      ctx.check(k?.status === 'REVOKED', `tenant key status ${k?.status} after close`);

      // Rule 2: every mutation on an owned object → 409 TENANT_CLOSED
      const q = { scope: f.scope, unit: U };
      const mutations: [string, Promise<HttpResponse>][] = [
        ['createBudget', ctx.callOp('admin', 'createBudget', { admin: true, body: { tenant_id: f.tenantId, scope: `${f.scope}/workspace:late`, unit: U, allocated: amount(1) } })],
        ['updateBudget', ctx.callOp('admin', 'updateBudget', { admin: true, query: q, body: { overdraft_limit: amount(5) } })],
        ['freezeBudget', ctx.callOp('admin', 'freezeBudget', { admin: true, query: q, body: {} })],
        ['fundBudget', fund(ctx, f.tenantId, f.scope, { operation: 'CREDIT', amount: amount(1), idempotency_key: ctx.uid('idem') })],
        ['createApiKey', ctx.callOp('admin', 'createApiKey', { admin: true, body: { tenant_id: f.tenantId, name: 'late', permissions: ['balances:read'] } })],
        ['updateApiKey', ctx.callOp('admin', 'updateApiKey', { admin: true, params: { key_id: keyId }, body: { name: 'renamed' } })],
        ['revokeApiKey', ctx.callOp('admin', 'revokeApiKey', { admin: true, params: { key_id: keyId } })],
        ['createPolicy', ctx.callOp('admin', 'createPolicy', { admin: true, body: { tenant_id: f.tenantId, name: ctx.uid('pol'), scope_pattern: f.scope } })],
        ['updatePolicy', ctx.callOp('admin', 'updatePolicy', { admin: true, params: { policy_id: pol.body.policy_id }, body: { priority: 5 } })],
      ];
      for (const [name, p] of mutations) {
        const r = await p;
        if (!(r.status === 409 && r.body?.error === 'TENANT_CLOSED')) ctx.check(false, `${name} after close → ${r.status} ${r.text.slice(0, 200)} (want 409 TENANT_CLOSED)`);
      }
      // reads keep working
      ctx.expectStatus(await ctx.callOp('admin', 'getTenant', { admin: true, params: { tenant_id: f.tenantId } }), 200);
      ctx.expectStatus(await ctx.callOp('admin', 'listBudgets', { admin: true, query: { tenant_id: f.tenantId } }), 200);
      ctx.expectStatus(await ctx.callOp('admin', 'listPolicies', { admin: true, query: { tenant_id: f.tenantId } }), 200);
      const after = await lookup(ctx, f.scope);
      ctx.check(after.allocated === 10_000n && after.overdraft === 0n && after.raw.status === 'CLOSED', `a refused mutation changed the ledger: ${JSON.stringify(after.raw)}`);
      // re-close: 200, nothing changes
      const again = await setStatus(ctx, f.tenantId, 'CLOSED');
      if (ctx.expectStatus(again, 200)) {
        ctx.check(again.body.status === 'CLOSED' && again.body.closed_at === close.body.closed_at, `re-close changed the tenant: ${again.text}`);
      }
    }),

    // ───────────────────────────── budgets ─────────────────────────────
    adm('budgets.create', 'createBudget initial state, 409 duplicate, scope grammar and tenant_id rules → 400, lookup', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const scope = `tenant:${f.tenantId}/workspace:eng`;
      const c = await ctx.callOp('admin', 'createBudget', { admin: true, body: { tenant_id: f.tenantId, scope, unit: U, allocated: amount(5000) } });
      ctx.require(c, 201);
      const l = ledgerOf(ctx, c.body, 'created ledger');
      ctx.check(l.allocated === 5000n && l.remaining === 5000n && l.reserved === 0n && l.spent === 0n && l.debt === 0n, `initial state ${c.text}`);
      ctx.check(c.body.status === 'ACTIVE' && c.body.is_over_limit !== true && c.body.scope === scope && c.body.unit === U, `initial state ${c.text}`);
      ctx.check(c.body.tenant_id === undefined || c.body.tenant_id === f.tenantId, `tenant_id ${c.body.tenant_id}`);
      ctx.expectStatus(await ctx.callOp('admin', 'createBudget', { admin: true, body: { tenant_id: f.tenantId, scope, unit: U, allocated: amount(1) } }), 409, 'DUPLICATE_RESOURCE');
      ctx.expectStatus(await ctx.callOp('admin', 'createBudget', { admin: true, body: { tenant_id: f.tenantId, scope, unit: 'TOKENS', allocated: amount(7, 'TOKENS') } }), 201);
      // scope grammar: canonical kind order, no wildcards, rooted at the tenant
      for (const bad of [`workspace:eng/tenant:${f.tenantId}`, `tenant:${f.tenantId}/agent:*`, `tenant:${f.tenantId}/planet:x`, 'tenant:', `tenant:${f.tenantId}-other`]) {
        const r = await ctx.callOp('admin', 'createBudget', { admin: true, body: { tenant_id: f.tenantId, scope: bad, unit: U, allocated: amount(1) } });
        ctx.check(r.status === 400, `createBudget scope "${bad}" → ${r.status} (want 400)`);
      }
      // tenant_id: REQUIRED under the admin key, forbidden with a tenant key
      ctx.expectStatus(await ctx.callOp('admin', 'createBudget', { admin: true, body: { scope: `tenant:${f.tenantId}/app:x`, unit: U, allocated: amount(1) } }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await ctx.callOp('admin', 'createBudget', { key: f.key, body: { tenant_id: f.tenantId, scope: `tenant:${f.tenantId}/app:y`, unit: U, allocated: amount(1) } }), 400, 'INVALID_REQUEST');
      const byKey = await ctx.callOp('admin', 'createBudget', { key: f.key, body: { scope: `tenant:${f.tenantId}/app:z`, unit: U, allocated: amount(3) } });
      if (ctx.expectStatus(byKey, 201)) ctx.check(byKey.body.tenant_id === undefined || byKey.body.tenant_id === f.tenantId, `tenant-key budget tenant_id ${byKey.body.tenant_id}`);
      // lookup: exact (scope, unit)
      const lk = await ctx.callOp('admin', 'lookupBudget', { admin: true, query: { scope, unit: U } });
      if (ctx.expectStatus(lk, 200)) ctx.check(lk.body.ledger_id === c.body.ledger_id, 'lookup returned another ledger');
      const lkKey = await ctx.callOp('admin', 'lookupBudget', { key: f.key, query: { scope, unit: U } });
      if (ctx.expectStatus(lkKey, 200)) ctx.check(lkKey.body.ledger_id === c.body.ledger_id, 'tenant-key lookup returned another ledger');
      ctx.expectStatus(await ctx.callOp('admin', 'lookupBudget', { admin: true, query: { scope: `tenant:${f.tenantId}`, unit: U } }), 404, 'BUDGET_NOT_FOUND');
    }),

    adm('budgets.list', 'listBudgets filters (scope_prefix, unit, status, has_debt) combine with AND', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const t = `tenant:${f.tenantId}`;
      const mk = (scope: string, unit = U) => ctx.fixtures.budget(ctx, f.tenantId, { scope, unit, allocated: 100 });
      await mk(t);
      await mk(`${t}/workspace:a`);
      await mk(`${t}/workspace:a/agent:x`);
      await mk(`${t}/workspace:b`);
      await mk(`${t}/workspace:a`, 'TOKENS');
      ctx.require(await ctx.callOp('admin', 'freezeBudget', { admin: true, query: { scope: `${t}/workspace:b`, unit: U }, body: {} }), 200);
      const keyOf = (r: any) => `${r.scope}|${r.unit}`;
      const all = await listAll(ctx, 'listBudgets', 'ledgers', { tenant_id: f.tenantId, limit: 2 });
      ctx.check(all.length === 5, `tenant has 5 ledgers, listed ${all.length}`);
      ctx.check(new Set(all.map(keyOf)).size === all.length, 'paging listed a ledger twice');
      ctx.check(all.every((r) => r.tenant_id === undefined || r.tenant_id === f.tenantId), 'listBudgets?tenant_id= returned another tenant\'s ledger');
      const pref = await listAll(ctx, 'listBudgets', 'ledgers', { tenant_id: f.tenantId, scope_prefix: `${t}/workspace:a`, unit: U });
      ctx.check(JSON.stringify(pref.map(keyOf).sort()) === JSON.stringify([`${t}/workspace:a/agent:x|${U}`, `${t}/workspace:a|${U}`].sort()), `scope_prefix+unit: ${pref.map(keyOf).join(', ')}`);
      const frozen = await listAll(ctx, 'listBudgets', 'ledgers', { tenant_id: f.tenantId, status: 'FROZEN' });
      ctx.check(frozen.length === 1 && frozen[0].scope === `${t}/workspace:b`, `status=FROZEN: ${frozen.map(keyOf).join(', ')}`);
      const debt = await listAll(ctx, 'listBudgets', 'ledgers', { tenant_id: f.tenantId, has_debt: true });
      ctx.check(debt.length === 0, `has_debt=true lists ${debt.length} ledgers without debt`);
      const byKey = await listAll(ctx, 'listBudgets', 'ledgers', { unit: 'TOKENS' }, { key: f.key });
      ctx.check(byKey.length === 1 && byKey[0].scope === `${t}/workspace:a`, `tenant key unit=TOKENS: ${byKey.map(keyOf).join(', ')}`);
    }),

    adm('budgets.freeze', 'freeze → runtime reserve 409 BUDGET_FROZEN, fund 409, freeze twice 409; unfreeze restores', async (ctx) => {
      const f = await fixture(ctx, 10_000);
      const q = { scope: f.scope, unit: U };
      const fr = await ctx.callOp('admin', 'freezeBudget', { admin: true, query: q, body: { reason: 'conformance' } });
      ctx.require(fr, 200);
      ctx.check(fr.body.status === 'FROZEN', `freeze → status ${fr.body.status}`);
      ctx.expectStatus(await reserve(ctx, f, 10), 409, 'BUDGET_FROZEN');
      ctx.expectStatus(await ctx.callOp('admin', 'freezeBudget', { admin: true, query: q, body: {} }), 409);
      ctx.expectStatus(await fund(ctx, f.tenantId, f.scope, { operation: 'CREDIT', amount: amount(5), idempotency_key: ctx.uid('idem') }), 409);
      const l = await lookup(ctx, f.scope);
      ctx.check(l.allocated === 10_000n && l.reserved === 0n, `frozen ledger moved: allocated ${l.allocated}, reserved ${l.reserved}`);
      const un = await ctx.callOp('admin', 'unfreezeBudget', { admin: true, query: q, body: {} });
      ctx.require(un, 200);
      ctx.check(un.body.status === 'ACTIVE', `unfreeze → status ${un.body.status}`);
      ctx.expectStatus(await ctx.callOp('admin', 'unfreezeBudget', { admin: true, query: q, body: {} }), 409);
      ctx.expectStatus(await reserve(ctx, f, 10), 200);
    }),

    adm('budgets.fund', 'fund CREDIT/DEBIT/RESET/RESET_SPENT follow the spec formulas exactly; DEBIT beyond remaining 409, nothing moves', async (ctx) => {
      const f = await fixture(ctx, 10_000);
      ctx.require(await reserve(ctx, f, 1000), 200); // reserved 1000
      const ev = await ctx.callOp('runtime', 'createEvent', { key: f.key, body: { idempotency_key: ctx.uid('idem'), subject: { tenant: f.tenantId }, action: { kind: 'llm.completion', name: 'c' }, actual: amount(500) } });
      ctx.require(ev, 201); // spent 500
      let st = await lookup(ctx, f.scope);
      if (st.allocated !== 10_000n || st.reserved !== 1000n || st.spent !== 500n || st.debt !== 0n) ctx.fail(`setup state unexpected: ${JSON.stringify(st.raw)}`);
      // Each step: [body, expected allocated, spent after]; remaining = allocated − spent − reserved − debt.
      const steps: [Record<string, unknown>, bigint, bigint][] = [
        [{ operation: 'CREDIT', amount: amount(2000) }, 12_000n, 500n],
        [{ operation: 'DEBIT', amount: amount(3000) }, 9_000n, 500n],
        [{ operation: 'RESET', amount: amount(1200) }, 1_200n, 500n], // remaining −300: RESET may go negative
        [{ operation: 'RESET_SPENT', amount: amount(5000), spent: amount(200) }, 5_000n, 200n],
        [{ operation: 'RESET_SPENT', amount: amount(4000) }, 4_000n, 0n],
      ];
      for (const [body, alloc, spent] of steps) {
        const before = st;
        const r = await fund(ctx, f.tenantId, f.scope, { ...body, idempotency_key: ctx.uid('idem') });
        ctx.require(r, 200);
        const op = String(body.operation);
        const rem = alloc - spent - 1000n;
        ctx.check(r.body.operation === op, `${op}: operation ${r.body.operation}`);
        eq(ctx, r.body.previous_allocated?.amount, before.allocated!, `${op} previous_allocated`);
        eq(ctx, r.body.new_allocated?.amount, alloc, `${op} new_allocated`);
        eq(ctx, r.body.previous_remaining?.amount, before.remaining!, `${op} previous_remaining`);
        eq(ctx, r.body.new_remaining?.amount, rem, `${op} new_remaining`);
        if (r.body.previous_spent !== undefined) eq(ctx, r.body.previous_spent.amount, before.spent, `${op} previous_spent`);
        if (r.body.new_spent !== undefined) eq(ctx, r.body.new_spent.amount, spent, `${op} new_spent`);
        if (op === 'RESET_SPENT') ctx.check(r.body.new_spent !== undefined, 'RESET_SPENT response lacks new_spent');
        st = await lookup(ctx, f.scope);
        ctx.check(st.allocated === alloc && st.spent === spent && st.remaining === rem && st.reserved === 1000n && st.debt === 0n,
          `after ${op}: allocated ${st.allocated} spent ${st.spent} remaining ${st.remaining} reserved ${st.reserved} (want ${alloc}, ${spent}, ${rem}, 1000)`);
      }
      // DEBIT: "fails if would go negative" → 409, nothing changes; DEBIT of exactly remaining is fine
      ctx.expectStatus(await fund(ctx, f.tenantId, f.scope, { operation: 'DEBIT', amount: amount(st.remaining! + 1n), idempotency_key: ctx.uid('idem') }), 409);
      const same = await lookup(ctx, f.scope);
      ctx.check(same.allocated === st.allocated && same.remaining === st.remaining, `refused DEBIT moved the ledger: ${JSON.stringify(same.raw)}`);
      const exact = await fund(ctx, f.tenantId, f.scope, { operation: 'DEBIT', amount: amount(st.remaining!), idempotency_key: ctx.uid('idem') });
      if (ctx.expectStatus(exact, 200)) eq(ctx, exact.body.new_remaining?.amount, 0n, 'DEBIT of all remaining: new_remaining');
      // admin key without ?tenant_id → 400
      ctx.expectStatus(await ctx.callOp('admin', 'fundBudget', { admin: true, query: { scope: f.scope, unit: U }, body: { operation: 'CREDIT', amount: amount(1) } }), 400, 'INVALID_REQUEST');
      // tenant key funds its own ledger (tenant_id comes from the key)
      const byKey = await ctx.callOp('admin', 'fundBudget', { key: f.key, query: { scope: f.scope, unit: U }, body: { operation: 'CREDIT', amount: amount(1), idempotency_key: ctx.uid('idem') } });
      if (ctx.expectStatus(byKey, 200)) eq(ctx, byKey.body.new_allocated?.amount, st.allocated! - st.remaining! + 1n, 'tenant-key CREDIT new_allocated');
    }),

    adm('budgets.debt', 'updateBudget overdraft_limit recomputes is_over_limit; REPAY_DEBT lowers debt and raises remaining', async (ctx) => {
      const f = await fixture(ctx, 1000, { overdraft_limit: 5000, commit_overage_policy: 'ALLOW_WITH_OVERDRAFT' });
      const ev = await ctx.callOp('runtime', 'createEvent', {
        key: f.key, body: { idempotency_key: ctx.uid('idem'), subject: { tenant: f.tenantId }, action: { kind: 'llm.completion', name: 'c' }, actual: amount(1300), overage_policy: 'ALLOW_WITH_OVERDRAFT' },
      });
      ctx.require(ev, 201);
      const st = await lookup(ctx, f.scope);
      if (st.debt <= 1n) ctx.fail(`an overdraft event left no debt to work with: ${JSON.stringify(st.raw)}`);
      ctx.check(st.raw.is_over_limit === false, 'is_over_limit with debt under the overdraft limit');
      const q = { scope: f.scope, unit: U };
      const low = await ctx.callOp('admin', 'updateBudget', { admin: true, query: q, body: { overdraft_limit: amount(st.debt - 1n) } });
      if (ctx.expectStatus(low, 200)) {
        ctx.check(low.body.is_over_limit === true, `overdraft_limit below debt: is_over_limit ${low.body.is_over_limit}`);
        eq(ctx, low.body.remaining?.amount, st.remaining!, 'updateBudget changed remaining');
        ledgerOf(ctx, low.body, 'updateBudget response');
      }
      const high = await ctx.callOp('admin', 'updateBudget', { admin: true, query: q, body: { overdraft_limit: amount(st.debt) } });
      if (ctx.expectStatus(high, 200)) ctx.check(high.body.is_over_limit === false, `overdraft_limit = debt: is_over_limit ${high.body.is_over_limit}`);
      const pay = st.debt / 2n;
      const r = await fund(ctx, f.tenantId, f.scope, { operation: 'REPAY_DEBT', amount: amount(pay), idempotency_key: ctx.uid('idem') });
      if (ctx.expectStatus(r, 200)) {
        if (r.body.previous_debt !== undefined) eq(ctx, r.body.previous_debt.amount, st.debt, 'REPAY_DEBT previous_debt');
        if (r.body.new_debt !== undefined) eq(ctx, r.body.new_debt.amount, st.debt - pay, 'REPAY_DEBT new_debt');
        eq(ctx, r.body.new_allocated?.amount, st.allocated!, 'REPAY_DEBT new_allocated');
        eq(ctx, r.body.new_remaining?.amount, st.remaining! + pay, 'REPAY_DEBT new_remaining');
      }
      const after = await lookup(ctx, f.scope);
      ctx.check(after.debt === st.debt - pay && after.remaining === st.remaining! + pay && after.spent === st.spent,
        `after REPAY_DEBT ${pay}: debt ${after.debt}, remaining ${after.remaining}, spent ${after.spent}`);
    }),

    adm('budgets.fund-idempotency', 'fund replay returns the original response once; same key + other payload → 409', async (ctx) => {
      const f = await fixture(ctx, 1000);
      const body = { operation: 'CREDIT', amount: amount(250), idempotency_key: ctx.uid('idem') };
      const a = await fund(ctx, f.tenantId, f.scope, body);
      ctx.require(a, 200);
      const b = await fund(ctx, f.tenantId, f.scope, body);
      if (ctx.expectStatus(b, 200)) {
        for (const k of ['operation', 'previous_allocated', 'new_allocated', 'previous_remaining', 'new_remaining']) {
          ctx.check(JSON.stringify(b.body[k], (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) === JSON.stringify(a.body[k], (_k, v) => (typeof v === 'bigint' ? v.toString() : v)), `replay ${k} differs: ${b.text} vs ${a.text}`);
        }
      }
      ctx.expectStatus(await fund(ctx, f.tenantId, f.scope, { ...body, amount: amount(251) }), 409, 'IDEMPOTENCY_MISMATCH');
      const l = await lookup(ctx, f.scope);
      ctx.check(l.allocated === 1250n, `allocated ${l.allocated} after CREDIT + replay + mismatch (want 1250)`);
    }),

    // ───────────────────────────── API keys ─────────────────────────────
    adm('apikeys.lifecycle', 'key_secret only on create; validate; revoke → 401 on both planes next request; re-revoke 409', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const k = await newKey(ctx, f.tenantId, ['balances:read', 'budgets:read']);
      ctx.check(k.body.tenant_id === f.tenantId && typeof k.body.key_prefix === 'string' && k.secret.startsWith(k.body.key_prefix), `create response ${k.body.key_prefix} / tenant ${k.body.tenant_id}`);
      ctx.check(k.secret.length >= 32, 'key_secret is implausibly short');
      const noSecret = (r: HttpResponse, what: string) => ctx.check(!r.text.includes(k.secret) && !/"key_secret"|"key_hash"/.test(r.text), `${what} exposes the key secret`);
      const list = await ctx.callOp('admin', 'listApiKeys', { admin: true, query: { tenant_id: f.tenantId } });
      if (ctx.expectStatus(list, 200)) {
        noSecret(list, 'listApiKeys');
        ctx.check((list.body.keys as any[]).some((x) => x.key_id === k.keyId && x.status === 'ACTIVE'), 'new key not listed as ACTIVE');
      }
      const up = await ctx.callOp('admin', 'updateApiKey', { admin: true, params: { key_id: k.keyId }, body: { name: 'renamed' } });
      if (ctx.expectStatus(up, 200)) { noSecret(up, 'updateApiKey'); ctx.check(up.body.name === 'renamed', `update name ${up.body.name}`); }
      const v = await ctx.callOp('admin', 'validateApiKey', { admin: true, body: { key_secret: k.secret } });
      if (ctx.expectStatus(v, 200)) {
        ctx.check(v.body.valid === true && v.body.tenant_id === f.tenantId && v.body.key_id === k.keyId, `validate ${v.text}`);
        ctx.check(JSON.stringify([...(v.body.permissions ?? [])].sort()) === JSON.stringify(['balances:read', 'budgets:read']), `validate permissions ${JSON.stringify(v.body.permissions)}`);
        noSecret(v, 'validateApiKey');
      }
      const bogus = await ctx.callOp('admin', 'validateApiKey', { admin: true, body: { key_secret: `cyc_live_${randomBytes(24).toString('base64url')}` } });
      if (ctx.expectStatus(bogus, 200)) ctx.check(bogus.body.valid === false && typeof bogus.body.reason === 'string' && bogus.body.reason.length > 0, `unknown key validates as ${bogus.text}`);
      ctx.require(await ctx.callOp('runtime', 'getBalances', { key: k.secret, query: { tenant: f.tenantId } }), 200);
      ctx.require(await ctx.callOp('admin', 'listBudgets', { key: k.secret }), 200);
      const rv = await ctx.callOp('admin', 'revokeApiKey', { admin: true, params: { key_id: k.keyId }, query: { reason: 'conformance' } });
      ctx.require(rv, 200);
      noSecret(rv, 'revokeApiKey');
      ctx.check(rv.body.status === 'REVOKED' && typeof rv.body.revoked_at === 'string', `revoke response ${rv.text}`);
      if (rv.body.revoked_reason !== undefined) ctx.check(rv.body.revoked_reason === 'conformance', `revoked_reason ${rv.body.revoked_reason}`);
      // "immediate": the very next request fails, on both planes
      ctx.expectStatus(await ctx.callOp('runtime', 'getBalances', { key: k.secret, query: { tenant: f.tenantId } }), 401, 'UNAUTHORIZED');
      ctx.expectStatus(await ctx.callOp('admin', 'listBudgets', { key: k.secret }), 401, 'UNAUTHORIZED');
      const v2 = await ctx.callOp('admin', 'validateApiKey', { admin: true, body: { key_secret: k.secret } });
      if (ctx.expectStatus(v2, 200)) ctx.check(v2.body.valid === false && typeof v2.body.reason === 'string', `revoked key validates as ${v2.text}`);
      ctx.expectStatus(await ctx.callOp('admin', 'revokeApiKey', { admin: true, params: { key_id: k.keyId } }), 409);
      // the fixture's other key of the same tenant still works (rotation)
      ctx.expectStatus(await ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId } }), 200);
      ctx.expectStatus(await ctx.callOp('admin', 'revokeApiKey', { admin: true, params: { key_id: `key_conf_${token()}` } }), 404);
    }),

    adm('apikeys.permissions', 'permissions enforced: no reservations:create → 403 on reserve; unknown permission → 400', async (ctx) => {
      const f = await fixture(ctx, 10_000);
      const k = await newKey(ctx, f.tenantId, ['balances:read', 'reservations:list']);
      const r = await ctx.callOp('runtime', 'createReservation', { key: k.secret, body: reserveBody(ctx, f.tenantId, 10) });
      ctx.expectStatus(r, 403);
      ctx.expectStatus(await ctx.callOp('runtime', 'decide', { key: k.secret, body: reserveBody(ctx, f.tenantId, 10) }), 403);
      ctx.expectStatus(await ctx.callOp('runtime', 'getBalances', { key: k.secret, query: { tenant: f.tenantId } }), 200);
      const l = await lookup(ctx, f.scope);
      ctx.check(l.reserved === 0n, `a refused reserve reserved ${l.reserved}`);
      // admin plane: budgets:write missing → 403
      ctx.expectStatus(await ctx.callOp('admin', 'createBudget', { key: k.secret, body: { scope: `${f.scope}/app:p`, unit: U, allocated: amount(1) } }), 403);
      // a tenant key never passes an admin-only operation
      const lt = await ctx.callOp('admin', 'listTenants', { key: f.key });
      ctx.check(lt.status === 401 || lt.status === 403, `tenant key on listTenants → ${lt.status}`);
      ctx.expectStatus(await ctx.callOp('admin', 'createApiKey', { admin: true, body: { tenant_id: f.tenantId, name: 'bad', permissions: ['balances:read', 'reservations:everything'] } }), 400, 'INVALID_REQUEST');
      const up = await ctx.callOp('admin', 'updateApiKey', { admin: true, params: { key_id: k.keyId }, body: { permissions: ['not:a-permission'] } });
      ctx.expectStatus(up, 400, 'INVALID_REQUEST');
      // granting the permission takes effect
      ctx.require(await ctx.callOp('admin', 'updateApiKey', { admin: true, params: { key_id: k.keyId }, body: { permissions: ['balances:read', 'reservations:create'] } }), 200);
      ctx.expectStatus(await ctx.callOp('runtime', 'createReservation', { key: k.secret, body: reserveBody(ctx, f.tenantId, 10) }), 200);
    }),

    adm('introspect', 'introspectAuth: admin all-true without tenant fields; tenant keys follow the normative capability table', async (ctx) => {
      const a = await ctx.callOp('admin', 'introspectAuth', { admin: true });
      ctx.require(a, 200);
      ctx.check(a.body.authenticated === true && a.body.auth_type === 'admin', `admin introspect ${a.text}`);
      ctx.check(JSON.stringify(a.body.permissions) === '["*"]', `admin permissions ${JSON.stringify(a.body.permissions)}`);
      ctx.check(!('tenant_id' in a.body) && !('scope_filter' in a.body), 'admin introspect carries tenant_id/scope_filter');
      for (const [cap, v] of Object.entries(a.body.capabilities ?? {})) ctx.check(v === true, `admin capability ${cap} = ${String(v)}`);
      for (const cap of REQUIRED_CAPABILITIES) ctx.check(a.body.capabilities?.[cap] === true, `admin capability ${cap} missing or false`);

      const f = await ctx.fixtures.newTenant(ctx, []);
      const sets: { perms: string[]; scope_filter?: string[] }[] = [
        { perms: ['budgets:read', 'reservations:list'] },
        { perms: ['admin:read', 'admin:write'] },
        { perms: ['admin:budgets:write', 'policies:read', 'events:read', 'reservations:create', 'webhooks:write'], scope_filter: ['workspace:eng'] },
        { perms: ['balances:read'] },
      ];
      for (const s of sets) {
        const k = await newKey(ctx, f.tenantId, s.perms, s.scope_filter ? { scope_filter: s.scope_filter } : {});
        const r = await ctx.callOp('admin', 'introspectAuth', { key: k.secret });
        if (!ctx.expectStatus(r, 200)) continue;
        const what = `introspect [${s.perms.join(',')}]`;
        ctx.check(r.body.authenticated === true && r.body.auth_type === 'tenant' && r.body.tenant_id === f.tenantId, `${what}: ${r.text}`);
        ctx.check(JSON.stringify([...(r.body.permissions ?? [])].sort()) === JSON.stringify([...s.perms].sort()), `${what}: permissions ${JSON.stringify(r.body.permissions)}`);
        if (s.scope_filter) ctx.check(JSON.stringify(r.body.scope_filter) === JSON.stringify(s.scope_filter), `${what}: scope_filter ${JSON.stringify(r.body.scope_filter)}`);
        else ctx.check(r.body.scope_filter === undefined || (Array.isArray(r.body.scope_filter) && r.body.scope_filter.length === 0), `${what}: scope_filter ${JSON.stringify(r.body.scope_filter)}`);
        const caps = r.body.capabilities ?? {};
        for (const cap of REQUIRED_CAPABILITIES) ctx.check(typeof caps[cap] === 'boolean', `${what}: required capability ${cap} missing`);
        for (const [cap, grants] of Object.entries(CAPABILITY_TABLE)) {
          if (caps[cap] === undefined) continue; // optional flags may be omitted
          const want = grants.some((p) => s.perms.includes(p));
          ctx.check(caps[cap] === want, `${what}: ${cap} = ${String(caps[cap])}, want ${want}`);
        }
      }
    }),

    // ───────────────────────────── policies ─────────────────────────────
    adm('policies.caps', 'a policy\'s caps reach the runtime (ALLOW_WITH_CAPS); updatePolicy changes them; listPolicies tenant rules', async (ctx) => {
      const f = await fixture(ctx, 100_000);
      const name = ctx.uid('pol');
      const p = await ctx.callOp('admin', 'createPolicy', { admin: true, body: { tenant_id: f.tenantId, name, scope_pattern: f.scope, priority: 10, caps: { max_tokens: 4096, tool_denylist: ['shell'] } } });
      ctx.require(p, 201);
      ctx.check(typeof p.body.policy_id === 'string' && p.body.status === 'ACTIVE' && p.body.caps?.max_tokens === 4096, `createPolicy ${p.text}`);
      const r1 = await reserve(ctx, f, 10);
      if (ctx.expectStatus(r1, 200)) {
        ctx.check(r1.body.decision === 'ALLOW_WITH_CAPS', `decision ${r1.body.decision} with a capped policy`);
        ctx.check(Number(r1.body.caps?.max_tokens) === 4096, `caps ${JSON.stringify(r1.body.caps)}`);
        ctx.check(Array.isArray(r1.body.caps?.tool_denylist) && r1.body.caps.tool_denylist.includes('shell'), `caps.tool_denylist ${JSON.stringify(r1.body.caps?.tool_denylist)}`);
      }
      const up = await ctx.callOp('admin', 'updatePolicy', { admin: true, params: { policy_id: p.body.policy_id }, body: { caps: { max_tokens: 128 } } });
      if (ctx.expectStatus(up, 200)) ctx.check(up.body.caps?.max_tokens === 128, `updatePolicy caps ${JSON.stringify(up.body.caps)}`);
      const r2 = await reserve(ctx, f, 10);
      if (ctx.expectStatus(r2, 200)) {
        ctx.check(r2.body.decision === 'ALLOW_WITH_CAPS' && Number(r2.body.caps?.max_tokens) === 128, `after update: ${r2.body.decision} caps ${JSON.stringify(r2.body.caps)}`);
      }
      // listPolicies: tenant_id REQUIRED under the admin key
      ctx.expectStatus(await ctx.callOp('admin', 'listPolicies', { admin: true }), 400, 'INVALID_REQUEST');
      const la = await listAll(ctx, 'listPolicies', 'policies', { tenant_id: f.tenantId });
      ctx.check(la.length === 1 && la[0].policy_id === p.body.policy_id, `admin listPolicies: ${la.map((x) => x.policy_id).join(', ')}`);
      const lk = await listAll(ctx, 'listPolicies', 'policies', {}, { key: f.key });
      ctx.check(lk.length === 1 && lk[0].policy_id === p.body.policy_id, `tenant listPolicies: ${lk.map((x) => x.policy_id).join(', ')}`);
      // tenant_id rules on create, and an invalid pattern / missing name → 400
      ctx.expectStatus(await ctx.callOp('admin', 'createPolicy', { admin: true, body: { name: ctx.uid('pol'), scope_pattern: f.scope } }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await ctx.callOp('admin', 'createPolicy', { key: f.key, body: { tenant_id: f.tenantId, name: ctx.uid('pol'), scope_pattern: f.scope } }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await ctx.callOp('admin', 'updatePolicy', { admin: true, params: { policy_id: p.body.policy_id }, body: { scope_pattern: `${f.scope}/*` } }), 400);
    }),

    // ───────────────────────────── audit ─────────────────────────────
    adm('audit.request-id', 'listAuditLogs?request_id= finds exactly the request\'s row with its trace_id; no row holds a key secret', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const mk = await ctx.callOp('admin', 'createApiKey', { admin: true, body: { tenant_id: f.tenantId, name: 'audited', permissions: ['budgets:read'] } });
      ctx.require(mk, 201);
      const secret = mk.body.key_secret as string;
      const requests: { res: HttpResponse; mutation: boolean; what: string }[] = [
        { res: mk, mutation: true, what: 'createApiKey' },
        { res: await ctx.callOp('admin', 'createBudget', { admin: true, body: { tenant_id: f.tenantId, scope: `tenant:${f.tenantId}`, unit: U, allocated: amount(10) } }), mutation: true, what: 'createBudget' },
        { res: await ctx.callOp('admin', 'validateApiKey', { admin: true, body: { key_secret: secret } }), mutation: false, what: 'validateApiKey' },
        { res: await ctx.callOp('admin', 'listBudgets', { key: secret }), mutation: false, what: 'listBudgets (tenant key)' },
        { res: await ctx.callOp('admin', 'fundBudget', { key: secret, query: { scope: `tenant:${f.tenantId}`, unit: U }, body: { operation: 'CREDIT', amount: amount(1) } }), mutation: true, what: 'fundBudget without budgets:write (403)' },
      ];
      ctx.require(requests[1].res, 201);
      ctx.expectStatus(requests[4].res, 403);
      for (const { res, mutation, what } of requests) {
        const rid = res.headers.get('x-request-id');
        const tid = res.headers.get('x-cycles-trace-id');
        if (!rid) continue; // reported by the correlation check
        const q = await eventually(() => ctx.callOp('admin', 'listAuditLogs', { admin: true, query: { request_id: rid } }), (r) => r.status !== 200 || (r.body.logs?.length ?? 0) > 0 || !mutation);
        if (!ctx.expectStatus(q, 200)) continue;
        const logs = q.body.logs as any[];
        ctx.check(!q.text.includes(secret), `audit rows of ${what} contain the key secret`);
        if (mutation) ctx.check(logs.length === 1, `${what}: ?request_id=${rid} → ${logs.length} rows (want exactly 1)`);
        else ctx.check(logs.length <= 1, `${what}: ?request_id=${rid} → ${logs.length} rows (want at most 1)`);
        for (const row of logs) {
          ctx.check(row.request_id === rid, `${what}: row request_id ${row.request_id} != ${rid}`);
          ctx.check(row.trace_id === tid, `${what}: row trace_id ${row.trace_id} != response X-Cycles-Trace-Id ${tid}`);
          ctx.check(Number(row.status) === res.status, `${what}: row status ${row.status} != ${res.status}`);
        }
      }
      const byTenant = await ctx.callOp('admin', 'listAuditLogs', { admin: true, query: { tenant_id: f.tenantId, limit: 100 } });
      if (ctx.expectStatus(byTenant, 200)) ctx.check(!byTenant.text.includes(secret), 'tenant audit rows contain the key secret');
    }),

    // ───────────────────────────── overview / bulk ─────────────────────────────
    adm('overview', 'getAdminOverview answers a schema-valid, self-consistent summary', async (ctx) => {
      await ctx.fixtures.sharedTenant(ctx);
      const r = await ctx.callOp('admin', 'getAdminOverview', { admin: true });
      ctx.require(r, 200);
      const t = r.body.tenant_counts;
      if (t) {
        ctx.check(Number(t.total) >= 1, `tenant_counts.total ${t.total} with at least one tenant`);
        ctx.check(Number(t.total) === Number(t.active) + Number(t.suspended) + Number(t.closed), `tenant_counts ${JSON.stringify(t)}: total != active + suspended + closed`);
      }
      const bad = await ctx.callOp('admin', 'getAdminOverview', { key: (await ctx.fixtures.sharedTenant(ctx)).key });
      ctx.check(bad.status === 401 || bad.status === 403, `tenant key on getAdminOverview → ${bad.status}`);
    }),

    adm('bulk.tenants', 'bulkActionTenants: empty filter 400; expected_count mismatch 409 COUNT_MISMATCH with nothing changed; match applies', async (ctx) => {
      const tok = token();
      const ids = [`conf-${tok}-a`, `conf-${tok}-b`];
      for (const id of ids) ctx.require(await createTenant(ctx, id), 201);
      ctx.expectStatus(await ctx.callOp('admin', 'bulkActionTenants', { admin: true, body: { filter: {}, action: 'SUSPEND', idempotency_key: ctx.uid('idem') } }), 400, 'INVALID_REQUEST');
      const filter = { status: 'ACTIVE', search: tok };
      ctx.expectStatus(await ctx.callOp('admin', 'bulkActionTenants', { admin: true, body: { filter, action: 'SUSPEND', expected_count: 3, idempotency_key: ctx.uid('idem') } }), 409, 'COUNT_MISMATCH');
      for (const id of ids) {
        const g = await ctx.callOp('admin', 'getTenant', { admin: true, params: { tenant_id: id } });
        if (ctx.expectStatus(g, 200)) ctx.check(g.body.status === 'ACTIVE', `COUNT_MISMATCH still changed ${id} to ${g.body.status}`);
      }
      const ok = await ctx.callOp('admin', 'bulkActionTenants', { admin: true, body: { filter, action: 'SUSPEND', expected_count: 2, idempotency_key: ctx.uid('idem') } });
      if (ctx.expectStatus(ok, 200)) {
        ctx.check(Number(ok.body.total_matched) === 2, `total_matched ${ok.body.total_matched}`);
        const succeeded = (ok.body.succeeded ?? []).map((x: any) => (typeof x === 'string' ? x : x.id)).sort();
        ctx.check(JSON.stringify(succeeded) === JSON.stringify([...ids].sort()), `succeeded ${JSON.stringify(ok.body.succeeded)}`);
      }
      for (const id of ids) {
        const g = await ctx.callOp('admin', 'getTenant', { admin: true, params: { tenant_id: id } });
        if (ctx.expectStatus(g, 200)) ctx.check(g.body.status === 'SUSPENDED', `${id} is ${g.body.status} after bulk SUSPEND`);
      }
    }),

    adm('bulk.budgets', 'bulkActionBudgets: filter without tenant_id 400; expected_count mismatch 409 COUNT_MISMATCH, no ledger moves', async (ctx) => {
      const f = await fixture(ctx, 1000);
      ctx.expectStatus(await ctx.callOp('admin', 'bulkActionBudgets', { admin: true, body: { filter: { unit: U }, action: 'CREDIT', amount: amount(5), idempotency_key: ctx.uid('idem') } }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await ctx.callOp('admin', 'bulkActionBudgets', {
        admin: true, body: { filter: { tenant_id: f.tenantId }, action: 'CREDIT', amount: amount(5), expected_count: 2, idempotency_key: ctx.uid('idem') },
      }), 409, 'COUNT_MISMATCH');
      let l = await lookup(ctx, f.scope);
      ctx.check(l.allocated === 1000n, `COUNT_MISMATCH still credited: allocated ${l.allocated}`);
      const ok = await ctx.callOp('admin', 'bulkActionBudgets', {
        admin: true, body: { filter: { tenant_id: f.tenantId }, action: 'CREDIT', amount: amount(5), expected_count: 1, idempotency_key: ctx.uid('idem') },
      });
      if (ctx.expectStatus(ok, 200)) ctx.check(Number(ok.body.total_matched) === 1 && (ok.body.succeeded ?? []).length === 1, `bulk CREDIT ${ok.text}`);
      l = await lookup(ctx, f.scope);
      ctx.check(l.allocated === 1005n && l.remaining === 1005n, `after bulk CREDIT 5: allocated ${l.allocated}, remaining ${l.remaining}`);
    }),
  ];
}
