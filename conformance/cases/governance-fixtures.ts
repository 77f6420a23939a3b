// Shared black-box helpers of the v0.1.26 governance cases (cases/governance.ts) and the test
// vector runner (cases/vectors.ts): policies and observe mode through the admin API, balance
// and quota-counter snapshots (GET /v1/balances, GET /v1/admin/action-quota-counters), event
// reads (GET /v1/admin/events), UTC window buckets and the spec's built-in risk classes.
// Nothing here reads server internals; every response goes through the harness checks.
import { loadBundle } from '../../codegen/bundle';
import { EVENT_DATA_SCHEMA } from '../../src/events/model';
import { eventually, sleep, type BudgetSpec, type CaseContext, type TenantFixture } from '../harness';
import { toView } from '../validate';

export const U = 'USD_MICROCENTS';
/** Funds "enough" for a scope the case does not pin (int64-safe, far from any estimate). */
export const PLENTY = 1_000_000_000n;

export const big = (v: unknown): bigint | undefined =>
  (typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : undefined);

/** Canonical scope order of Subject levels (base spec SCOPE DERIVATION). */
const LEVELS = ['tenant', 'workspace', 'app', 'workflow', 'agent', 'toolset'] as const;

/** The scopes a subject derives, root first (what affected_scopes lists). */
export function derivedScopes(subject: Record<string, unknown>): string[] {
  const out: string[] = [];
  let path = '';
  for (const l of LEVELS) {
    const v = subject[l];
    if (typeof v !== 'string' || v === '') continue;
    path = path ? `${path}/${l}:${v}` : `${l}:${v}`;
    out.push(path);
  }
  return out;
}

let registry: Map<string, string> | undefined;
/** risk_class of an action kind per the spec registry; unregistered non-custom kinds are
 *  side_effect (action-kinds spec, UNREGISTERED KINDS). */
export function riskClassOf(kind: string): string {
  if (!registry) {
    const data = loadBundle().get('action_kinds').data as { 'x-action-kind-registry': { kinds: { kind: string; risk_class: string }[] } };
    registry = new Map(data['x-action-kind-registry'].kinds.map((k) => [k.kind, k.risk_class]));
  }
  return registry.get(kind) ?? 'side_effect';
}

export function builtinKinds(): { version: string; kinds: { kind: string; risk_class: string; deprecated?: boolean }[] } {
  return (loadBundle().get('action_kinds').data as any)['x-action-kind-registry'];
}

export type CalendarWindow = 'per_minute_tumbling' | 'per_hour_tumbling' | 'per_day_tumbling' | 'per_tenant_per_day';
const BUCKET_LEN: Record<string, number> = { per_minute_tumbling: 16, per_hour_tumbling: 13, per_day_tumbling: 10, per_tenant_per_day: 10 };
export const isCalendar = (window: string): window is CalendarWindow => window in BUCKET_LEN;
const BUCKET_RE: Record<string, RegExp> = {
  per_minute_tumbling: /^\d{4}-\d\d-\d\dT\d\d:\d\d$/, per_hour_tumbling: /^\d{4}-\d\d-\d\dT\d\d$/,
  per_day_tumbling: /^\d{4}-\d\d-\d\d$/, per_tenant_per_day: /^\d{4}-\d\d-\d\d$/,
};

/** UTC bucket of a calendar window at `ms` (minute YYYY-MM-DDTHH:MM, hour YYYY-MM-DDTHH, day YYYY-MM-DD). */
export function bucketOf(window: CalendarWindow, ms: number): string {
  return new Date(ms).toISOString().slice(0, BUCKET_LEN[window]);
}

/** A calendar window_key must have the bucket format and name a bucket of [fromMs, toMs]
 *  (5 s of slack either side for the server's clock). */
export function windowKeyProblem(window: string, key: unknown, fromMs: number, toMs: number): string | undefined {
  if (!isCalendar(window)) return undefined;
  if (typeof key !== 'string' || !BUCKET_RE[window].test(key)) return `window_key ${String(key)} is not a UTC ${window} bucket`;
  const ok = new Set([fromMs - 5000, fromMs, toMs, toMs + 5000].map((t) => bucketOf(window, t)));
  return ok.has(key) ? undefined : `window_key ${key} is not the current ${window} bucket (${[...ok].join(' | ')})`;
}

/** A fresh tenant with budgets (given its id), a harness tenant key, and optionally a policy
 *  (admin createPolicy; returns the id the server assigned) and a tenant observe_mode. */
export async function govTenant(ctx: CaseContext, o: {
  budgets?: (tenant: string) => BudgetSpec[];
  policy?: Record<string, unknown>;
  observeMode?: string;
} = {}): Promise<TenantFixture & { policyId?: string; leaf: string; root: string }> {
  const f = await ctx.fixtures.newTenant(ctx, []);
  const root = `tenant:${f.tenantId}`;
  const leaf = `${root}/agent:bot`;
  const budgets = o.budgets ? o.budgets(f.tenantId) : [{ scope: root, allocated: PLENTY }, { scope: leaf, allocated: PLENTY }];
  for (const b of budgets) await ctx.fixtures.budget(ctx, f.tenantId, b);
  const policyId = o.policy ? await createPolicy(ctx, f.tenantId, o.policy) : undefined;
  if (o.observeMode) await setObserveMode(ctx, f.tenantId, o.observeMode);
  return { ...f, policyId, leaf, root };
}

export async function createPolicy(ctx: CaseContext, tenant: string, fields: Record<string, unknown>): Promise<string> {
  const r = await ctx.callOp('admin', 'createPolicy', {
    admin: true, body: { tenant_id: tenant, name: ctx.uid('pol'), scope_pattern: `tenant:${tenant}/*`, ...fields },
  });
  ctx.require(r, 201);
  if (typeof r.body?.policy_id !== 'string') ctx.fail(`createPolicy returned no policy_id: ${r.text.slice(0, 200)}`);
  return r.body.policy_id;
}

export async function setObserveMode(ctx: CaseContext, tenant: string, mode: string): Promise<void> {
  const r = await ctx.callOp('admin', 'updateTenant', { admin: true, params: { tenant_id: tenant }, body: { observe_mode: mode } });
  ctx.require(r, 200);
  ctx.check(r.body?.observe_mode === mode, `updateTenant observe_mode=${mode} → tenant.observe_mode ${r.body?.observe_mode}`);
}

/** A reserve body for agent `bot` of the tenant, run `run-1` unless told otherwise. */
export function reserveBody(ctx: CaseContext, tenant: string, kind: string, extra: Record<string, unknown> = {}, runId: string | null = 'run-1') {
  return {
    idempotency_key: ctx.uid('gv'),
    subject: { tenant, agent: 'bot', ...(runId === null ? {} : { dimensions: { run_id: runId } }) },
    action: { kind, name: 'conformance' },
    estimate: { unit: U, amount: 500 },
    ...extra,
  };
}

/** Balances of the tenant keyed "scope unit" → the amounts (a comparable snapshot). */
export async function balanceSnapshot(ctx: CaseContext, f: TenantFixture): Promise<Record<string, string>> {
  const r = await ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId, limit: 200 } });
  ctx.require(r, 200);
  const out: Record<string, string> = {};
  for (const b of r.body.balances as any[]) {
    out[`${b.scope} ${b.remaining?.unit}`] = ['allocated', 'remaining', 'reserved', 'spent', 'debt']
      .map((k) => `${k}=${String(b[k]?.amount ?? '-')}`).join(' ');
  }
  return out;
}

export interface CounterRow {
  scope: string;
  action_kind: string;
  risk_class?: string;
  window: string;
  window_key?: string;
  used: bigint;
  limit: bigint;
  policy_id?: string;
  remaining?: bigint;
}
export const counterId = (c: Pick<CounterRow, 'scope' | 'action_kind' | 'risk_class' | 'window' | 'window_key'>) =>
  `${c.scope}|${c.action_kind}${c.risk_class ? `:${c.risk_class}` : ''}|${c.window}|${c.window_key ?? ''}`;

/** Every quota counter of the tenant (admin key, include_zero), keyed by counterId. */
export async function counterSnapshot(ctx: CaseContext, tenant: string): Promise<Map<string, CounterRow>> {
  const out = new Map<string, CounterRow>();
  let cursor: string | undefined;
  for (let page = 0; page < 20; page++) {
    const r = await ctx.callOp('admin', 'listActionQuotaCounters', { admin: true, query: { tenant_id: tenant, include_zero: true, limit: 200, cursor } });
    ctx.require(r, 200);
    for (const c of r.body.counters as any[]) {
      const row: CounterRow = { ...c, used: big(c.used)!, limit: big(c.limit)!, remaining: big(c.remaining) };
      out.set(counterId(row), row);
    }
    if (!r.body.has_more) return out;
    cursor = r.body.next_cursor;
  }
  ctx.fail('listActionQuotaCounters paging did not end after 20 pages');
}

export const usedMap = (m: Map<string, CounterRow>) => Object.fromEntries([...m].map(([k, v]) => [k, String(v.used)]));

/** Events of one type for the tenant (admin listEvents), polled until `min` are there. */
export async function eventsOf(ctx: CaseContext, tenant: string, eventType: string, min = 1, timeoutMs = 5000): Promise<any[]> {
  const r = await eventually(
    () => ctx.callOp('admin', 'listEvents', { admin: true, query: { tenant_id: tenant, event_type: eventType, limit: 100 } }),
    (x) => x.status !== 200 || (x.body.events as any[]).length >= min, timeoutMs,
  );
  ctx.require(r, 200);
  const events = r.body.events as any[];
  for (const e of events) {
    ctx.check(e.event_type === eventType && e.tenant_id === tenant, `listEvents?tenant_id=${tenant}&event_type=${eventType} returned ${e.event_type} of ${e.tenant_id}`);
    const variant = EVENT_DATA_SCHEMA[e.event_type];
    const v = variant && ctx.spec.compile('admin', `schema:${variant}`, { $ref: `#/components/schemas/${variant}` });
    if (v && !v(toView(e.data))) {
      ctx.problems.push(`${e.event_type} data violates ${variant}: ${(v.errors ?? []).slice(0, 3).map((x) => `${x.instancePath || '/'} ${x.message}`).join('; ')}`);
    }
  }
  return events;
}

/** Waits long enough for an asynchronous emitter to have written a (wrong) extra event, then
 *  returns the events of that type: for "exactly N" checks. */
export async function settledEventsOf(ctx: CaseContext, tenant: string, eventType: string, n: number): Promise<any[]> {
  await eventsOf(ctx, tenant, eventType, n);
  await sleep(300);
  return eventsOf(ctx, tenant, eventType, 0, 0);
}
