// v0.1.26 action governance beyond the test vectors (runtime extension RESERVATION EVALUATION
// ORDER, OBSERVE MODE EVALUATION RULES; action-kinds spec WINDOW MODEL, PER_RUN COUNTER
// LIFECYCLE, CUSTOM.* NAMESPACE RULES, UNREGISTERED KINDS, counter endpoints): live access
// denial and precedence over budget (X1, X5), exact counter increments and untouched balances
// (X6), run_id required by per_run quotas (X7), release vs commit (X8), request ENFORCE over a
// tenant in OBSERVE (X10), allowlisted rules (X12), custom and unregistered kinds (X13, X14),
// the registry endpoints (X15), counter reset (X16). Skipped without --features v0.1.26; the
// flag-off cases run only without it (extension routes 404, extension fields refused).
// Each case uses its own tenant and per_run windows, so no clock boundary can move a counter.
import type { Case, CaseContext } from '../harness';
import {
  U, balanceSnapshot, builtinKinds, counterId, counterSnapshot, eventsOf, govTenant, reserveBody, settledEventsOf, usedMap,
} from './governance-fixtures';

const V126 = 'v0.1.26';

const gv = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>): Case => ({
  id: `governance.${id}`, title, plane: 'runtime', skipOn501: true, level: 'SHOULD', requirements: ['SHOULD.V0126'], tags: ['governance', 'v0.1.26'],
  async run(ctx) {
    if (!ctx.features.has(V126)) ctx.skip('v0.1.26 governance; run with --features v0.1.26');
    await run(ctx);
  },
});

const flagOff = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>): Case => ({
  id: `governance.flag-off.${id}`, title, plane: 'both', level: 'MAY', requirements: [], tags: ['governance', 'flag-off'],
  async run(ctx) {
    if (ctx.features.has(V126)) ctx.skip('flag-off check; runs without --features v0.1.26');
    await run(ctx);
  },
});

type T = Awaited<ReturnType<typeof govTenant>>;
const reserve = (ctx: CaseContext, t: T, kind: string, extra: Record<string, unknown> = {}, runId: string | null = 'run-1') =>
  ctx.callOp('runtime', 'createReservation', { key: t.key, body: reserveBody(ctx, t.tenantId, kind, extra, runId) });

const perRun = (t: T, kind: string, run = 'run-1') => counterId({ scope: t.leaf, action_kind: kind, window: 'per_run', window_key: run });
const riskPerRun = (t: T, riskClass: string, run = 'run-1') =>
  counterId({ scope: t.leaf, action_kind: '__risk__', risk_class: riskClass, window: 'per_run', window_key: run });

async function expectUsed(ctx: CaseContext, t: T, want: Record<string, number>, when: string): Promise<void> {
  const got = usedMap(await counterSnapshot(ctx, t.tenantId));
  const w = Object.fromEntries(Object.entries(want).map(([k, v]) => [k, String(v)]));
  const norm = (o: Record<string, string>) => JSON.stringify(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== '0').sort(([a], [b]) => a.localeCompare(b))));
  ctx.check(norm(got) === norm(w), `${when}: counters ${norm(got)}, want ${norm(w)}`);
}

async function expectUnchanged(ctx: CaseContext, t: T, before: Record<string, string>, when: string): Promise<void> {
  const after = await balanceSnapshot(ctx, t);
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    ctx.check(before[k] === after[k], `${when}: balance ${k} changed: ${before[k]} → ${after[k]}`);
  }
}

export function governanceCases(): Case[] {
  return [
    gv('access.live-deny-and-precedence', 'X1/X5: a denied kind is a live 409 ACTION_KIND_DENIED with deny_detail (also on an exhausted budget) and /decide DENY; a quota denial wins over BUDGET_EXCEEDED; nothing moves', async (ctx) => {
      const t = await govTenant(ctx, {
        budgets: (id) => [{ scope: `tenant:${id}`, allocated: 1_000_000 }, { scope: `tenant:${id}/agent:bot`, allocated: 600 }],
        policy: { denied_action_kinds: ['payment.charge'], action_quotas: [{ action_kind: 'llm.completion', max_calls: 1, window: 'per_run' }] },
      });
      const before = await balanceSnapshot(ctx, t);
      // estimate 10 000 > 600 remaining: step 1 still answers first
      const live = await reserve(ctx, t, 'payment.charge', { estimate: { unit: U, amount: 10_000 } });
      if (ctx.expectStatus(live, 409, 'ACTION_KIND_DENIED')) {
        const dd = live.body.details?.deny_detail;
        ctx.check(dd?.reason_code === 'ACTION_KIND_DENIED', `details.deny_detail.reason_code ${dd?.reason_code}`);
        ctx.check(dd?.blocked_by_policy === undefined || dd.blocked_by_policy === t.policyId, `blocked_by_policy ${dd?.blocked_by_policy}, want ${t.policyId}`);
        ctx.check(dd?.quota_violation === undefined, 'quota_violation on an access-control denial');
      }
      const dec = await ctx.callOp('runtime', 'decide', { key: t.key, body: reserveBody(ctx, t.tenantId, 'payment.charge') });
      if (ctx.expectStatus(dec, 200)) {
        ctx.check(dec.body.decision === 'DENY' && dec.body.reason_code === 'ACTION_KIND_DENIED' && dec.body.deny_detail?.reason_code === 'ACTION_KIND_DENIED',
          `decide: ${dec.text.slice(0, 300)}`);
      }
      await expectUnchanged(ctx, t, before, 'after the access denials');
      await expectUsed(ctx, t, {}, 'after the access denials');
      ctx.require(await reserve(ctx, t, 'llm.completion'), 200); // 500 of 600, the quota's one call
      const q = await reserve(ctx, t, 'llm.completion'); // over quota AND over budget
      if (ctx.expectStatus(q, 409, 'ACTION_QUOTA_EXCEEDED')) {
        const qv = q.body.details?.deny_detail?.quota_violation;
        ctx.check(qv?.action_kind === 'llm.completion' && qv?.window === 'per_run' && qv?.window_key === 'run-1' && Number(qv?.used) === 1 && Number(qv?.limit) === 1,
          `quota_violation ${JSON.stringify(qv)}`);
      }
      ctx.expectStatus(await reserve(ctx, t, 'llm.completion', {}, 'run-2'), 409, 'BUDGET_EXCEEDED');
    }),

    gv('counters.exact-increment', 'X6: an allowed reserve moves each applicable counter (per-kind and risk-class) by exactly 1; a quota denial and a dry_run move no balance and no counter', async (ctx) => {
      const t = await govTenant(ctx, { policy: {
        action_quotas: [{ action_kind: 'message.email.send', max_calls: 2, window: 'per_run' }],
        risk_class_quotas: [{ risk_class: 'external_side_effect', max_calls: 10, window: 'per_run' }],
      } });
      const kind = perRun(t, 'message.email.send');
      const risk = riskPerRun(t, 'external_side_effect');
      ctx.require(await reserve(ctx, t, 'message.email.send'), 200);
      await expectUsed(ctx, t, { [kind]: 1, [risk]: 1 }, 'after one reserve');
      ctx.require(await reserve(ctx, t, 'message.slack.post'), 200); // same class, no per-kind rule
      await expectUsed(ctx, t, { [kind]: 1, [risk]: 2 }, 'after a second external_side_effect kind');
      ctx.require(await reserve(ctx, t, 'message.email.send'), 200);
      await expectUsed(ctx, t, { [kind]: 2, [risk]: 3 }, 'after the second email');
      const before = await balanceSnapshot(ctx, t);
      ctx.expectStatus(await reserve(ctx, t, 'message.email.send'), 409, 'ACTION_QUOTA_EXCEEDED');
      const dry = await reserve(ctx, t, 'message.email.send', { dry_run: true }, 'run-2');
      if (ctx.expectStatus(dry, 200)) ctx.check(dry.body.decision === 'ALLOW' && dry.body.reservation_id === undefined, `dry_run: ${dry.text.slice(0, 200)}`);
      await expectUnchanged(ctx, t, before, 'after a quota denial and a dry_run');
      await expectUsed(ctx, t, { [kind]: 2, [risk]: 3 }, 'after a quota denial and a dry_run');
    }),

    gv('per-run.run-id-required', 'X7: a reserve a per_run quota applies to without subject.dimensions.run_id → 400 INVALID_REQUEST, nothing written; a kind without a per_run rule needs none', async (ctx) => {
      const t = await govTenant(ctx, { policy: { action_quotas: [{ action_kind: 'agent.spawn', max_calls: 5, window: 'per_run' }] } });
      const before = await balanceSnapshot(ctx, t);
      ctx.expectStatus(await reserve(ctx, t, 'agent.spawn', {}, null), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await reserve(ctx, t, 'agent.spawn', { dry_run: true }, null), 400, 'INVALID_REQUEST');
      await expectUnchanged(ctx, t, before, 'after the 400s');
      await expectUsed(ctx, t, {}, 'after the 400s');
      ctx.expectStatus(await reserve(ctx, t, 'llm.completion', {}, null), 200);
    }),

    gv('per-run.release-and-commit', 'X8: release gives a per_run call back (per-kind and risk-class counters −1); commit does not', async (ctx) => {
      const t = await govTenant(ctx, { policy: {
        action_quotas: [{ action_kind: 'agent.spawn', max_calls: 2, window: 'per_run' }],
        risk_class_quotas: [{ risk_class: 'side_effect', max_calls: 5, window: 'per_run' }],
      } });
      const kind = perRun(t, 'agent.spawn');
      const risk = riskPerRun(t, 'side_effect');
      const a = await reserve(ctx, t, 'agent.spawn');
      const b = await reserve(ctx, t, 'agent.spawn');
      ctx.require(a, 200);
      ctx.require(b, 200);
      await expectUsed(ctx, t, { [kind]: 2, [risk]: 2 }, 'after two reserves');
      const c = await ctx.callOp('runtime', 'commitReservation', {
        key: t.key, params: { reservation_id: a.body.reservation_id }, body: { idempotency_key: ctx.uid('c'), actual: { unit: U, amount: 100 } },
      });
      ctx.require(c, 200);
      await expectUsed(ctx, t, { [kind]: 2, [risk]: 2 }, 'after a commit');
      const r = await ctx.callOp('runtime', 'releaseReservation', { key: t.key, params: { reservation_id: b.body.reservation_id }, body: { idempotency_key: ctx.uid('r') } });
      ctx.require(r, 200);
      await expectUsed(ctx, t, { [kind]: 1, [risk]: 1 }, 'after a release');
      ctx.expectStatus(await reserve(ctx, t, 'agent.spawn'), 200);
      ctx.expectStatus(await reserve(ctx, t, 'agent.spawn'), 409, 'ACTION_QUOTA_EXCEEDED');
    }),

    gv('observe.request-enforce-overrides-tenant', 'X10: request observe_mode=ENFORCE on a tenant in OBSERVE creates a live reservation and counts; without it the tenant OBSERVE applies', async (ctx) => {
      const t = await govTenant(ctx, { observeMode: 'OBSERVE', policy: { action_quotas: [{ action_kind: 'message.email.send', max_calls: 1, window: 'per_run' }] } });
      const before = await balanceSnapshot(ctx, t);
      const live = await reserve(ctx, t, 'message.email.send', { observe_mode: 'ENFORCE' });
      if (ctx.expectStatus(live, 200)) ctx.check(typeof live.body.reservation_id === 'string', 'request ENFORCE on a tenant in OBSERVE returned no reservation_id');
      const after = await balanceSnapshot(ctx, t);
      ctx.check(after[`${t.leaf} ${U}`] !== before[`${t.leaf} ${U}`], 'request ENFORCE reserved nothing at the leaf scope');
      await expectUsed(ctx, t, { [perRun(t, 'message.email.send')]: 1 }, 'after an enforced reserve');
      ctx.expectStatus(await reserve(ctx, t, 'message.email.send', { observe_mode: 'ENFORCE' }), 409, 'ACTION_QUOTA_EXCEEDED');
      const observed = await reserve(ctx, t, 'message.email.send');
      if (ctx.expectStatus(observed, 200)) {
        ctx.check(observed.body.decision === 'DENY' && observed.body.reservation_id === undefined && observed.body.deny_detail?.reason_code === 'ACTION_QUOTA_EXCEEDED',
          `tenant OBSERVE: ${observed.text.slice(0, 300)}`);
      }
      await expectUsed(ctx, t, { [perRun(t, 'message.email.send')]: 1 }, 'after the OBSERVE evaluation');
      const evs = await settledEventsOf(ctx, t.tenantId, 'reservation.observed_denied', 1);
      ctx.check(evs.length === 1, `${evs.length} reservation.observed_denied events, want 1 (the enforced calls emit none)`);
      ctx.check((await eventsOf(ctx, t.tenantId, 'reservation.observed_allowed', 0, 0)).length === 0, 'an enforced reserve emitted reservation.observed_allowed');
    }),

    gv('allowlist.absent-key-skips-rule', 'X12: a rule with host_allowlist applies only when policy_keys.host is present and listed (case-insensitive); absent or unlisted → rule skipped, ALLOW at the limit', async (ctx) => {
      const t = await govTenant(ctx, { policy: { action_quotas: [{ action_kind: 'message.email.send', max_calls: 1, window: 'per_run', host_allowlist: ['api.sendgrid.com'] }] } });
      const withHost = (host?: string) => ({ action: { kind: 'message.email.send', name: 'conformance', ...(host ? { policy_keys: { host } } : {}) } });
      ctx.require(await reserve(ctx, t, 'message.email.send', withHost('API.SendGrid.com')), 200);
      ctx.expectStatus(await reserve(ctx, t, 'message.email.send', withHost('api.sendgrid.com')), 409, 'ACTION_QUOTA_EXCEEDED');
      ctx.expectStatus(await reserve(ctx, t, 'message.email.send', withHost()), 200);
      ctx.expectStatus(await reserve(ctx, t, 'message.email.send', withHost('smtp.example.org')), 200);
      await expectUsed(ctx, t, { [perRun(t, 'message.email.send')]: 1 }, 'after the skipped rule');
    }),

    gv('kinds.undeclared-custom', 'X13: an undeclared custom.* kind → 400 INVALID_REQUEST (live and dry_run), no side_effect fallback, nothing written', async (ctx) => {
      const t = await govTenant(ctx, { policy: { risk_class_quotas: [{ risk_class: 'side_effect', max_calls: 10, window: 'per_run' }] } });
      const before = await balanceSnapshot(ctx, t);
      const kind = 'custom.conformance.undeclared_probe';
      ctx.expectStatus(await reserve(ctx, t, kind), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await reserve(ctx, t, kind, { dry_run: true }), 400, 'INVALID_REQUEST');
      await expectUnchanged(ctx, t, before, 'after the 400s');
      await expectUsed(ctx, t, {}, 'after the 400s');
    }),

    gv('kinds.unregistered-is-side-effect', 'X14: an unregistered non-custom kind is accepted and counts toward side_effect risk-class quotas (quota_violation names the kind and the class)', async (ctx) => {
      const t = await govTenant(ctx, { policy: { risk_class_quotas: [{ risk_class: 'side_effect', max_calls: 1, window: 'per_run' }] } });
      ctx.require(await reserve(ctx, t, 'proprietary.action'), 200);
      await expectUsed(ctx, t, { [riskPerRun(t, 'side_effect')]: 1 }, 'after an unregistered kind');
      const r = await reserve(ctx, t, 'proprietary.action');
      if (ctx.expectStatus(r, 409, 'ACTION_QUOTA_EXCEEDED')) {
        const qv = r.body.details?.deny_detail?.quota_violation;
        ctx.check(qv?.risk_class === 'side_effect' && qv?.action_kind === 'proprietary.action', `quota_violation ${JSON.stringify(qv)}`);
      }
      ctx.expectStatus(await reserve(ctx, t, 'message.email.send'), 200); // external_side_effect: not counted
    }),

    gv('kinds.registry', 'X15: GET /v1/action-kinds without a key → first page of the spec registry (50, has_more, version); getActionKind llm.completion → side_effect; unknown → 404', async (ctx) => {
      const spec = builtinKinds();
      const listed = spec.kinds.filter((k) => !k.deprecated);
      const list = await ctx.callOp('runtime', 'listActionKinds', {});
      if (list.status === 429) ctx.skip('registry throttled (429) — a shared server saw too many registry reads this minute');
      if (ctx.expectStatus(list, 200)) {
        const kinds = (list.body.kinds as any[]).map((k) => k.kind);
        ctx.check(kinds.length === Math.min(50, listed.length), `page 1 has ${kinds.length} kinds, want ${Math.min(50, listed.length)} (default limit 50)`);
        ctx.check(list.body.has_more === listed.length > 50, `has_more ${list.body.has_more} with ${listed.length} kinds`);
        ctx.check(list.body.version === spec.version, `version ${list.body.version}, want ${spec.version}`);
        const known = new Map(spec.kinds.map((k) => [k.kind, k.risk_class]));
        for (const k of list.body.kinds as any[]) ctx.check(known.get(k.kind) === k.risk_class, `${k.kind}: risk_class ${k.risk_class}, spec ${known.get(k.kind)}`);
      }
      const one = await ctx.callOp('runtime', 'getActionKind', { params: { kind: 'llm.completion' } });
      if (one.status !== 429 && ctx.expectStatus(one, 200)) ctx.check(one.body.risk_class === 'side_effect', `llm.completion risk_class ${one.body.risk_class}`);
      const unknown = await ctx.callOp('runtime', 'getActionKind', { params: { kind: 'conformance.no_such_kind' } });
      if (unknown.status !== 429) ctx.expectStatus(unknown, 404);
    }),

    gv('counters.reset', 'X16: counter reset — tenant key refused, tenant_id required, unknown counter 404, success returns previous_used and zeroes the counter, emits quota.counter_reset', async (ctx) => {
      const t = await govTenant(ctx, { policy: {
        action_quotas: [{ action_kind: 'message.email.send', max_calls: 2, window: 'per_run' }],
        risk_class_quotas: [{ risk_class: 'external_side_effect', max_calls: 5, window: 'per_run' }],
      } });
      for (let i = 0; i < 2; i++) ctx.require(await reserve(ctx, t, 'message.email.send'), 200);
      ctx.expectStatus(await reserve(ctx, t, 'message.email.send'), 409, 'ACTION_QUOTA_EXCEEDED');
      const target = { scope: t.leaf, action_kind: 'message.email.send', window: 'per_run', window_key: 'run-1' };
      const reset = (body: Record<string, unknown>, auth: { admin?: boolean; key?: string } = { admin: true }) =>
        ctx.callOp('admin', 'resetActionQuotaCounter', { ...auth, body });
      ctx.expectStatus(await reset({ tenant_id: t.tenantId, ...target }, { key: t.key }), [401, 403]);
      ctx.expectStatus(await reset(target), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await reset({ tenant_id: t.tenantId, scope: t.leaf, action_kind: '__risk__', window: 'per_run', window_key: 'run-1' }), 400, 'INVALID_REQUEST');
      ctx.expectStatus(await reset({ tenant_id: t.tenantId, ...target, window_key: 'run-none' }), 404);
      await expectUsed(ctx, t, { [perRun(t, 'message.email.send')]: 2, [riskPerRun(t, 'external_side_effect')]: 2 }, 'after the refused resets');
      const ok = await reset({ tenant_id: t.tenantId, ...target, reason: 'conformance' });
      if (ctx.expectStatus(ok, 200)) {
        ctx.check(Number(ok.body.previous_used) === 2, `previous_used ${ok.body.previous_used}, want 2`);
        ctx.check(Number(ok.body.counter?.used) === 0 && ok.body.counter?.window_key === 'run-1' && ok.body.counter?.scope === t.leaf, `counter ${JSON.stringify(ok.body.counter)}`);
      }
      // the risk-class counter is a separate counter: untouched
      await expectUsed(ctx, t, { [riskPerRun(t, 'external_side_effect')]: 2 }, 'after the reset');
      const ev = await settledEventsOf(ctx, t.tenantId, 'quota.counter_reset', 1);
      if (ctx.check(ev.length === 1, `${ev.length} quota.counter_reset events, want 1`) && ev[0]) {
        const d = ev[0].data ?? {};
        ctx.check(d.scope === t.leaf && d.action_kind === 'message.email.send' && d.window === 'per_run' && d.window_key === 'run-1', `event data ${JSON.stringify(d)}`);
        ctx.check(Number(d.previous_used) === 2 && typeof d.actor_id === 'string' && d.actor_id !== '', `event previous_used/actor_id ${JSON.stringify(d)}`);
        ctx.check(d.reason === undefined || d.reason === 'conformance', `event reason ${d.reason}`);
      }
      ctx.expectStatus(await reserve(ctx, t, 'message.email.send'), 200); // headroom is back
    }),

    flagOff('routes', 'features off: the v0.1.26 routes are 404 NOT_FOUND even with a valid admin key, on both planes', async (ctx) => {
      const tenant = (await ctx.fixtures.sharedTenant(ctx)).tenantId;
      for (const plane of ['runtime', 'admin'] as const) {
        const probes: [string, string, Record<string, unknown>][] = [
          ['GET', '/v1/action-kinds', {}],
          ['GET', '/v1/action-kinds/llm.completion', {}],
          ['GET', '/v1/admin/action-quota-counters', { admin: true, query: { tenant_id: tenant } }],
          ['POST', '/v1/admin/action-quota-counters/reset', { admin: true, body: { tenant_id: tenant, scope: `tenant:${tenant}`, action_kind: 'llm.completion', window: 'per_run', window_key: 'r' } }],
        ];
        for (const [method, path, o] of probes) {
          const r = await ctx.call(plane, method, path, o);
          ctx.expectStatus(r, 404, 'NOT_FOUND');
        }
      }
    }),

    flagOff('fields', 'features off: extension request fields are refused by the closed v0.1.25 schemas (reserve observe_mode, tenant observe_mode, policy action_quotas)', async (ctx) => {
      const f = await ctx.fixtures.newTenant(ctx, []);
      await ctx.fixtures.budget(ctx, f.tenantId, { scope: `tenant:${f.tenantId}`, allocated: 1_000_000 });
      const r = await ctx.callOp('runtime', 'createReservation', { key: f.key, body: { ...reserveBody(ctx, f.tenantId, 'llm.completion'), observe_mode: 'OBSERVE' } });
      ctx.expectStatus(r, 400, 'INVALID_REQUEST');
      const p = await ctx.callOp('admin', 'updateTenant', { admin: true, params: { tenant_id: f.tenantId }, body: { observe_mode: 'OBSERVE' } });
      ctx.expectStatus(p, 400, 'INVALID_REQUEST');
      const pol = await ctx.callOp('admin', 'createPolicy', { admin: true, body: {
        tenant_id: f.tenantId, name: 'flag-off', scope_pattern: `tenant:${f.tenantId}/*`,
        action_quotas: [{ action_kind: 'llm.completion', max_calls: 1, window: 'per_run' }],
      } });
      ctx.expectStatus(pol, 400, 'INVALID_REQUEST');
      const g = await ctx.callOp('admin', 'getTenant', { admin: true, params: { tenant_id: f.tenantId } });
      if (ctx.expectStatus(g, 200)) ctx.check(g.body.observe_mode === undefined, 'a v0.1.25 Tenant carries observe_mode');
    }),
  ];
}
