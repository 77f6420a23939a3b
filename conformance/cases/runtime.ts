// Runtime behaviour against the spec: reserve / commit / release / extend / decide /
// events / balances — happy paths, the main error codes, idempotent replay, tenant
// isolation and int64 exactness. State is created through the admin API (tenant, budgets,
// tenant key); while those operations answer 501 the cases are skipped, not failed.
import type { Case, CaseContext, TenantFixture, BudgetSpec } from '../harness';
import type { HttpResponse } from '../client';

const U = 'USD_MICROCENTS';
const amount = (n: bigint | number, unit = U) => ({ unit, amount: n });
const big = (v: unknown): bigint | undefined => (typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : undefined);
const P53 = 2n ** 53n;
const I64_MAX = 2n ** 63n - 1n;

function reserveBody(ctx: CaseContext, tenant: string, est: bigint | number, extra: Record<string, unknown> = {}) {
  return {
    idempotency_key: ctx.uid('idem'),
    subject: { tenant },
    action: { kind: 'llm.completion', name: 'conformance' },
    estimate: amount(est),
    ...extra,
  };
}

async function setup(ctx: CaseContext, budgets: (t: string) => BudgetSpec[]): Promise<TenantFixture> {
  // The tenant id is only known after creation; budgets are scoped to it, so create the
  // tenant first, then its budgets.
  const f = await ctx.fixtures.newTenant(ctx, []);
  for (const b of budgets(f.tenantId)) await ctx.fixtures.budget(ctx, f.tenantId, b);
  return f;
}

async function reserve(ctx: CaseContext, f: TenantFixture, est: bigint | number, extra: Record<string, unknown> = {}): Promise<HttpResponse> {
  return ctx.callOp('runtime', 'createReservation', { key: f.key, body: reserveBody(ctx, f.tenantId, est, extra) });
}

async function reserveOk(ctx: CaseContext, f: TenantFixture, est: bigint | number, extra: Record<string, unknown> = {}): Promise<any> {
  const r = await reserve(ctx, f, est, extra);
  ctx.require(r, 200);
  if (typeof r.body?.reservation_id !== 'string') ctx.fail(`reserve returned no reservation_id: ${r.text}`);
  return r.body;
}

/** The Balance row of a scope (runtime GET /v1/balances), with the ledger identity checked. */
async function balance(ctx: CaseContext, f: TenantFixture, scope: string, unit = U): Promise<Record<string, bigint | undefined>> {
  const r = await ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId, limit: 200 } });
  ctx.require(r, 200);
  const row = (r.body.balances as any[]).find((b) => b.scope === scope && b.remaining?.unit === unit);
  if (!row) ctx.fail(`no Balance for ${scope} ${unit} in ${r.text.slice(0, 400)}`);
  const v = {
    remaining: big(row.remaining.amount), allocated: big(row.allocated?.amount), spent: big(row.spent?.amount),
    reserved: big(row.reserved?.amount), debt: big(row.debt?.amount),
  };
  if (v.allocated !== undefined && v.spent !== undefined && v.reserved !== undefined) {
    const expect = v.allocated - v.spent - v.reserved - (v.debt ?? 0n);
    ctx.check(v.remaining === expect, `ledger identity broken for ${scope}: remaining ${v.remaining} != allocated − spent − reserved − debt = ${expect}`);
  }
  return v;
}

function eq(ctx: CaseContext, got: unknown, want: bigint, what: string): void {
  ctx.check(big(got) === want, `${what}: got ${String(got)}, want ${want}`);
}

type Meta = Pick<Case, 'level' | 'requirements' | 'tags'>;
const M = (level: Meta['level'], ...requirements: string[]): Meta => ({ level, requirements, tags: ['runtime'] });
/** Catalogue tags (conformance/catalog.ts) of each case below. */
const META: Record<string, Meta> = {
  'reserve.happy': M('MUST', 'OPS.CREATE_RESERVATION', 'SHOULD.GET_RESERVATION', 'XP.GET_BALANCES'),
  'reserve.budget-exceeded': M('MUST', 'ERR.BUDGET_EXCEEDED', 'CORE.ATOMIC_RESERVATION'),
  'reserve.atomic-multi-scope': M('MUST', 'CORE.ATOMIC_RESERVATION', 'ERR.BUDGET_EXCEEDED'),
  'reserve.dry-run': M('MUST', 'RT.DRY_RUN'),
  'reserve.no-budget': M('MUST', 'ERR.NOT_FOUND', 'RT.SCOPE.BUDGET_REQUIRED'),
  'reserve.unit-mismatch': M('MUST', 'ERR.UNIT_MISMATCH', 'CORE.UNIT_CONSISTENCY'),
  'reserve.other-tenant': M('MUST', 'AUTH.SUBJECT_TENANT'),
  'reserve.idempotency': M('MUST', 'RT.IDEM.REPLAY', 'ERR.IDEMPOTENCY_MISMATCH', 'RT.IDEM.HEADER_MATCH'),
  'commit.happy': M('MUST', 'OPS.COMMIT_RESERVATION', 'CORE.IDEMPOTENT_SETTLEMENT', 'RT.IDEM.REPLAY', 'ERR.RESERVATION_FINALIZED'),
  'commit.errors': M('MUST', 'ERR.NOT_FOUND', 'ERR.UNIT_MISMATCH', 'CORE.UNIT_CONSISTENCY'),
  'release.happy': M('MUST', 'OPS.RELEASE_RESERVATION', 'ERR.RESERVATION_FINALIZED'),
  'extend.happy': M('MUST', 'OPS.EXTEND_RESERVATION', 'RT.EXTEND.SEMANTICS', 'ERR.NOT_FOUND'),
  'decide': M('SHOULD', 'SHOULD.DECIDE', 'RT.DECIDE.DENY_200'),
  'events.create': M('SHOULD', 'SHOULD.CREATE_EVENT', 'CORE.IDEMPOTENT_SETTLEMENT'),
  'balances.read': M('MUST', 'XP.GET_BALANCES'),
  'tenant-isolation': M('MUST', 'AUTH.RESERVATION_OWNERSHIP'),
  'int64.beyond-2^53': M('MUST', 'OPS.CONTRACT'),
  'int64.max': M('MUST', 'OPS.CONTRACT'),
};

const rt = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>): Case => ({
  id: `runtime.${id}`, title, plane: 'runtime', skipOn501: true, ...META[id], run,
});

export function runtimeCases(): Case[] {
  return [
    rt('reserve.happy', 'reserve → 200 ALLOW with id, reserved = estimate, balances move', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1_000_000 }]);
      const r = await reserveOk(ctx, f, 1000);
      ctx.check(['ALLOW', 'ALLOW_WITH_CAPS'].includes(r.decision), `decision ${r.decision}`);
      eq(ctx, r.reserved?.amount, 1000n, 'reserved.amount');
      ctx.check(r.reserved?.unit === U, 'reserved.unit');
      ctx.check(Array.isArray(r.affected_scopes) && r.affected_scopes.includes(`tenant:${f.tenantId}`), `affected_scopes ${JSON.stringify(r.affected_scopes)}`);
      ctx.check((big(r.expires_at_ms) ?? 0n) > 0n, 'expires_at_ms');
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.reserved === 1000n && b.remaining === 999_000n, `after reserve: reserved ${b.reserved}, remaining ${b.remaining}`);
      const g = await ctx.callOp('runtime', 'getReservation', { key: f.key, params: { reservation_id: r.reservation_id } });
      if (ctx.expectStatus(g, 200)) {
        ctx.check(g.body.status === 'ACTIVE', `getReservation status ${g.body.status}`);
        eq(ctx, g.body.reserved?.amount, 1000n, 'getReservation reserved');
      }
    }),

    rt('reserve.budget-exceeded', 'reserve beyond remaining → 409 BUDGET_EXCEEDED, nothing moves', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1000 }]);
      ctx.expectStatus(await reserve(ctx, f, 1001), 409, 'BUDGET_EXCEEDED');
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.remaining === 1000n && (b.reserved ?? 0n) === 0n, `balance moved: remaining ${b.remaining}, reserved ${b.reserved}`);
    }),

    rt('reserve.atomic-multi-scope', 'a reserve that fails at one scope changes no scope', async (ctx) => {
      const f = await setup(ctx, (t) => [
        { scope: `tenant:${t}`, allocated: 1_000_000 },
        { scope: `tenant:${t}/agent:bot`, allocated: 100 },
      ]);
      const body = reserveBody(ctx, f.tenantId, 500);
      (body.subject as Record<string, string>).agent = 'bot';
      ctx.expectStatus(await ctx.callOp('runtime', 'createReservation', { key: f.key, body }), 409, 'BUDGET_EXCEEDED');
      const t = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(t.remaining === 1_000_000n, `tenant scope moved to ${t.remaining}`);
    }),

    rt('reserve.dry-run', 'dry_run evaluates without side effects (DENY is 200)', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1000 }]);
      const deny = await reserve(ctx, f, 5000, { dry_run: true });
      if (ctx.expectStatus(deny, 200)) {
        ctx.check(deny.body.decision === 'DENY', `dry_run decision ${deny.body.decision}`);
        ctx.check(deny.body.reason_code === 'BUDGET_EXCEEDED', `dry_run reason_code ${deny.body.reason_code}`);
        ctx.check(deny.body.reservation_id === undefined, 'dry_run DENY carries a reservation_id');
      }
      const allow = await reserve(ctx, f, 10, { dry_run: true });
      if (ctx.expectStatus(allow, 200)) ctx.check(allow.body.decision !== 'DENY', `dry_run decision ${allow.body.decision}`);
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.remaining === 1000n && (b.reserved ?? 0n) === 0n, `dry_run moved the balance: remaining ${b.remaining}`);
    }),

    rt('reserve.no-budget', 'reserve where no derived scope has a budget → 404 NOT_FOUND', async (ctx) => {
      const f = await setup(ctx, () => []);
      ctx.expectStatus(await reserve(ctx, f, 1), 404, 'NOT_FOUND');
    }),

    rt('reserve.unit-mismatch', 'reserve in a unit no budget has → 400 UNIT_MISMATCH', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1000 }]);
      const body = reserveBody(ctx, f.tenantId, 1);
      body.estimate = amount(1, 'TOKENS');
      ctx.expectStatus(await ctx.callOp('runtime', 'createReservation', { key: f.key, body }), 400, 'UNIT_MISMATCH');
    }),

    rt('reserve.other-tenant', 'subject.tenant other than the key\'s tenant → 403 FORBIDDEN', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1000 }]);
      const body = reserveBody(ctx, `${f.tenantId}-other`, 1);
      ctx.expectStatus(await ctx.callOp('runtime', 'createReservation', { key: f.key, body }), 403, 'FORBIDDEN');
    }),

    rt('reserve.idempotency', 'reserve replay returns the original; same key + other body → 409', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1_000_000 }]);
      const body = reserveBody(ctx, f.tenantId, 700);
      const headers = { 'X-Idempotency-Key': body.idempotency_key };
      const a = await ctx.callOp('runtime', 'createReservation', { key: f.key, body, headers });
      ctx.require(a, 200);
      const b = await ctx.callOp('runtime', 'createReservation', { key: f.key, body, headers });
      if (ctx.expectStatus(b, 200)) {
        ctx.check(b.body.reservation_id === a.body.reservation_id, `replay reservation_id ${b.body.reservation_id} != ${a.body.reservation_id}`);
        ctx.check(b.body.expires_at_ms === a.body.expires_at_ms, 'replay expires_at_ms differs');
      }
      const bal = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(bal.reserved === 700n, `replay reserved twice: reserved ${bal.reserved}`);
      const changed = { ...body, estimate: amount(701) };
      ctx.expectStatus(await ctx.callOp('runtime', 'createReservation', { key: f.key, body: changed }), 409, 'IDEMPOTENCY_MISMATCH');
    }),

    rt('commit.happy', 'commit → COMMITTED, spent moves, replay identical, second commit 409', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1_000_000 }]);
      const r = await reserveOk(ctx, f, 1000);
      const body = { idempotency_key: ctx.uid('idem'), actual: amount(600) };
      const c = await ctx.callOp('runtime', 'commitReservation', { key: f.key, params: { reservation_id: r.reservation_id }, body });
      ctx.require(c, 200);
      ctx.check(c.body.status === 'COMMITTED', `status ${c.body.status}`);
      eq(ctx, c.body.charged?.amount, 600n, 'charged');
      if (c.body.released !== undefined) eq(ctx, c.body.released.amount, 400n, 'released');
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.spent === 600n && (b.reserved ?? 0n) === 0n && b.remaining === 999_400n, `after commit: spent ${b.spent}, reserved ${b.reserved}, remaining ${b.remaining}`);
      const replay = await ctx.callOp('runtime', 'commitReservation', { key: f.key, params: { reservation_id: r.reservation_id }, body });
      if (ctx.expectStatus(replay, 200)) ctx.check(replay.text === c.text, `replay body differs: ${replay.text} vs ${c.text}`);
      const again = { idempotency_key: ctx.uid('idem'), actual: amount(600) };
      ctx.expectStatus(await ctx.callOp('runtime', 'commitReservation', { key: f.key, params: { reservation_id: r.reservation_id }, body: again }), 409, 'RESERVATION_FINALIZED');
      ctx.expectStatus(await ctx.callOp('runtime', 'releaseReservation', { key: f.key, params: { reservation_id: r.reservation_id }, body: { idempotency_key: ctx.uid('idem') } }), 409, 'RESERVATION_FINALIZED');
      const after = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(after.spent === 600n, `spent changed by a rejected commit: ${after.spent}`);
    }),

    rt('commit.errors', 'commit: unknown id → 404; wrong unit → 400 UNIT_MISMATCH', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1_000_000 }]);
      ctx.expectStatus(await ctx.callOp('runtime', 'commitReservation', {
        key: f.key, params: { reservation_id: 'conf-no-such-reservation' }, body: { idempotency_key: ctx.uid('idem'), actual: amount(1) },
      }), 404, 'NOT_FOUND');
      const r = await reserveOk(ctx, f, 1000);
      ctx.expectStatus(await ctx.callOp('runtime', 'commitReservation', {
        key: f.key, params: { reservation_id: r.reservation_id }, body: { idempotency_key: ctx.uid('idem'), actual: amount(1, 'TOKENS') },
      }), 400, 'UNIT_MISMATCH');
    }),

    rt('release.happy', 'release → RELEASED, reserved returns to remaining', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 50_000 }]);
      const r = await reserveOk(ctx, f, 1234);
      const rel = await ctx.callOp('runtime', 'releaseReservation', { key: f.key, params: { reservation_id: r.reservation_id }, body: { idempotency_key: ctx.uid('idem'), reason: 'conformance' } });
      if (ctx.expectStatus(rel, 200)) {
        ctx.check(rel.body.status === 'RELEASED', `status ${rel.body.status}`);
        eq(ctx, rel.body.released?.amount, 1234n, 'released');
      }
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.remaining === 50_000n && (b.reserved ?? 0n) === 0n && (b.spent ?? 0n) === 0n, `after release: remaining ${b.remaining}, reserved ${b.reserved}`);
      ctx.expectStatus(await ctx.callOp('runtime', 'commitReservation', {
        key: f.key, params: { reservation_id: r.reservation_id }, body: { idempotency_key: ctx.uid('idem'), actual: amount(1) },
      }), 409, 'RESERVATION_FINALIZED');
    }),

    rt('extend.happy', 'extend moves expires_at_ms forward by extend_by_ms from the current expiry', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 50_000 }]);
      const r = await reserveOk(ctx, f, 10, { ttl_ms: 60_000 });
      const before = big(r.expires_at_ms)!;
      const e = await ctx.callOp('runtime', 'extendReservation', { key: f.key, params: { reservation_id: r.reservation_id }, body: { idempotency_key: ctx.uid('idem'), extend_by_ms: 5000 } });
      if (ctx.expectStatus(e, 200)) {
        ctx.check(e.body.status === 'ACTIVE', `status ${e.body.status}`);
        eq(ctx, e.body.expires_at_ms, before + 5000n, 'expires_at_ms after extend');
      }
      ctx.expectStatus(await ctx.callOp('runtime', 'extendReservation', {
        key: f.key, params: { reservation_id: 'conf-no-such-reservation' }, body: { idempotency_key: ctx.uid('idem'), extend_by_ms: 1000 },
      }), 404, 'NOT_FOUND');
    }),

    rt('decide', 'decide: ALLOW within budget, 200 DENY beyond it, never moves balances', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1000 }]);
      const mk = (n: number) => ({ idempotency_key: ctx.uid('idem'), subject: { tenant: f.tenantId }, action: { kind: 'llm.completion', name: 'c' }, estimate: amount(n) });
      const a = await ctx.callOp('runtime', 'decide', { key: f.key, body: mk(500) });
      if (ctx.expectStatus(a, 200)) ctx.check(a.body.decision === 'ALLOW' || a.body.decision === 'ALLOW_WITH_CAPS', `decision ${a.body.decision}`);
      const d = await ctx.callOp('runtime', 'decide', { key: f.key, body: mk(5000) });
      if (ctx.expectStatus(d, 200)) {
        ctx.check(d.body.decision === 'DENY', `decision ${d.body.decision}`);
        ctx.check(d.body.reason_code === 'BUDGET_EXCEEDED', `reason_code ${d.body.reason_code}`);
      }
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.remaining === 1000n && (b.reserved ?? 0n) === 0n, `decide moved the balance: ${b.remaining}`);
    }),

    rt('events.create', 'createEvent → 201 APPLIED, spent moves once (replay-safe)', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 10_000 }]);
      const body = { idempotency_key: ctx.uid('idem'), subject: { tenant: f.tenantId }, action: { kind: 'llm.completion', name: 'c' }, actual: amount(250) };
      const e = await ctx.callOp('runtime', 'createEvent', { key: f.key, body });
      ctx.require(e, 201);
      ctx.check(e.body.status === 'APPLIED' && typeof e.body.event_id === 'string', `event body ${e.text}`);
      const again = await ctx.callOp('runtime', 'createEvent', { key: f.key, body });
      if (ctx.expectStatus(again, 201)) ctx.check(again.body.event_id === e.body.event_id, 'replay event_id differs');
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.spent === 250n && b.remaining === 9750n, `after event: spent ${b.spent}, remaining ${b.remaining}`);
    }),

    rt('balances.read', 'getBalances lists the tenant\'s budgets; no subject filter → 400', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 777 }]);
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.remaining === 777n, `remaining ${b.remaining}`);
      ctx.expectStatus(await ctx.callOp('runtime', 'getBalances', { key: f.key }), 400, 'INVALID_REQUEST');
    }),

    rt('tenant-isolation', 'another tenant\'s key cannot touch a reservation (403)', async (ctx) => {
      const a = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 10_000 }]);
      const b = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 10_000 }]);
      const r = await reserveOk(ctx, a, 100);
      ctx.expectStatus(await ctx.callOp('runtime', 'commitReservation', {
        key: b.key, params: { reservation_id: r.reservation_id }, body: { idempotency_key: ctx.uid('idem'), actual: amount(1) },
      }), 403, 'FORBIDDEN');
      ctx.expectStatus(await ctx.callOp('runtime', 'getReservation', { key: b.key, params: { reservation_id: r.reservation_id } }), 403, 'FORBIDDEN');
      const bal = await balance(ctx, a, `tenant:${a.tenantId}`);
      ctx.check(bal.reserved === 100n && (bal.spent ?? 0n) === 0n, 'foreign commit changed the ledger');
    }),

    rt('int64.beyond-2^53', 'amounts of 2^53+1 round-trip exactly through reserve, commit and balances', async (ctx) => {
      const amt = P53 + 1n;
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: amt + 1000n }]);
      const r = await reserveOk(ctx, f, amt);
      eq(ctx, r.reserved?.amount, amt, 'reserved.amount');
      let b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.reserved === amt && b.remaining === 1000n, `balances: reserved ${b.reserved}, remaining ${b.remaining}`);
      const c = await ctx.callOp('runtime', 'commitReservation', { key: f.key, params: { reservation_id: r.reservation_id }, body: { idempotency_key: ctx.uid('idem'), actual: amount(amt) } });
      if (ctx.expectStatus(c, 200)) eq(ctx, c.body.charged?.amount, amt, 'charged');
      b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.spent === amt && b.remaining === 1000n, `after commit: spent ${b.spent}, remaining ${b.remaining}`);
    }),

    rt('int64.max', 'an allocation of 2^63−1 is exact; reserving 1 leaves 2^63−2', async (ctx) => {
      const f = await setup(ctx, (t) => [{ scope: `tenant:${t}`, allocated: I64_MAX }]);
      await reserveOk(ctx, f, 1);
      const b = await balance(ctx, f, `tenant:${f.tenantId}`);
      ctx.check(b.allocated === undefined || b.allocated === I64_MAX, `allocated ${b.allocated}`);
      ctx.check(b.remaining === I64_MAX - 1n, `remaining ${b.remaining}, want ${I64_MAX - 1n}`);
    }),
  ];
}
