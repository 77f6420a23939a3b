// Tenant-close cascade, MODE B (flip first, guarded cascade; docs/decisions.md D-admin-1).
//
// 1. tenant_update.lua flips status to CLOSED — from then on every mutating script checks
//    the tenant hash and answers TENANT_CLOSED (Rule 2), runtime scripts included — and in
//    the same step records the cascade state (origin request/trace/correlation ids and each
//    budget's `reserved` at the flip) in keys.closeCascade(tenant). The tenant is also put
//    in keys.closePending() BEFORE the flip, so an interrupted cascade is always findable.
// 2. runCloseCascade() drives the children, each transition its own atomic script that is a
//    no-op (and emits nothing) when the child is already terminal:
//      API keys → REVOKED, open reservations → RELEASED (releaseForCascade), budgets → CLOSED
//      (draining leftover reserved), then the registered extra steps (webhooks).
// 3. Completion stamps completed_at_ms and removes the tenant from the pending set.
// Re-closing a CLOSED tenant re-runs step 2 (idempotent, no duplicate events); the worker
// below also resumes pending cascades at start and every CASCADE_RESUME_INTERVAL_MS, which
// bounds convergence after a crash to that interval (OPERATIONS: "tenant close").
import type { Redis } from 'ioredis';
import { keys } from '../store/keys';
import { registerWorker } from '../workers';
import { releaseForCascade } from '../ledger/release';
import { runAdminScript, type EventCtx } from './common';
import { cascadeRevokeKey } from './apiKeys';
import { disableWebhooksForCascade } from '../events/subscriptions';

export const CASCADE_RESUME_INTERVAL_MS = 30_000;

export interface CascadeReport {
  keys_revoked: number;
  reservations_released: number;
  budgets_closed: number;
  extra: Record<string, number>;
  failed_resources: { type: string; id: string; error: string }[];
}

export interface CascadeStepContext { redis: Redis; tenant: string; ev: EventCtx; step: () => void }

/** Extra cascade steps registered by other modules (webhook subscriptions → DISABLED).
 *  A step must be idempotent and emit nothing for children already terminal, and call
 *  `step()` once per child transition. Returns the number of children it transitioned. */
const extraSteps = new Map<string, (c: CascadeStepContext) => Promise<number>>();
export function registerCloseCascadeStep(name: string, fn: (c: CascadeStepContext) => Promise<number>): void {
  extraSteps.set(name, fn);
}
// Webhook subscriptions (ACTIVE|PAUSED) → DISABLED, webhook.disabled_via_tenant_cascade each.
registerCloseCascadeStep('webhooks', disableWebhooksForCascade);

/** Test hook: CYCLES_TEST_CASCADE_STOP_AFTER=N makes the cascade stop dead after N child
 *  transitions, as a crash would (never set in production). */
class CascadeInterrupted extends Error {}
function stepCounter(): () => void {
  const raw = process.env.CYCLES_TEST_CASCADE_STOP_AFTER;
  const limit = raw === undefined || raw === '' ? Infinity : Number(raw);
  let n = 0;
  return () => {
    n += 1;
    if (n > limit) throw new CascadeInterrupted(`cascade interrupted after ${limit} steps (test hook)`);
  };
}

/** The event context of the cascade: the ids of the request that closed the tenant. */
async function cascadeCtx(redis: Redis, tenant: string, fallback: EventCtx): Promise<EventCtx> {
  const s = await redis.hgetall(keys.closeCascade(tenant));
  if (s && s.correlation_id) {
    return { trace_id: s.trace_id, request_id: s.request_id, actor_json: s.actor_json || fallback.actor_json, correlation_id: s.correlation_id };
  }
  // A CLOSED tenant without state (closed by an older writer): start it now.
  const correlation = `tenant_close_cascade:${tenant}:${fallback.request_id}`;
  await redis.hset(keys.closeCascade(tenant), { request_id: fallback.request_id, trace_id: fallback.trace_id,
    actor_json: fallback.actor_json, correlation_id: correlation, started_at_ms: String(Date.now()) });
  return { ...fallback, correlation_id: correlation };
}

export async function markClosePending(redis: Redis, tenant: string): Promise<void> {
  await redis.sadd(keys.closePending(), tenant);
}

export async function runCloseCascade(redis: Redis, tenant: string, fallback: EventCtx, retain?: string): Promise<CascadeReport> {
  const status = await redis.hget(keys.tenant(tenant), 'status');
  if (status !== 'CLOSED') {
    // A close that has not flipped (yet, or never will: the updateTenant handler removes
    // the mark when its flip is refused). Nothing to drive.
    return { keys_revoked: 0, reservations_released: 0, budgets_closed: 0, extra: {}, failed_resources: [] };
  }
  await redis.sadd(keys.closePending(), tenant);
  const ev = await cascadeCtx(redis, tenant, fallback);
  const step = stepCounter();
  const report: CascadeReport = { keys_revoked: 0, reservations_released: 0, budgets_closed: 0, extra: {}, failed_resources: [] };
  const attempt = async (type: string, id: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (e) {
      if (e instanceof CascadeInterrupted) throw e;
      report.failed_resources.push({ type, id, error: e instanceof Error ? e.message : String(e) });
    }
  };

  for (const keyId of await redis.zrange(keys.apiKeyIndex(tenant), 0, -1)) {
    await attempt('api_key', keyId, async () => {
      if (await cascadeRevokeKey(redis, tenant, keyId, ev)) { report.keys_revoked += 1; step(); }
    });
  }

  for (const resId of await redis.zrange(keys.reservationIndex(tenant), 0, -1)) {
    if ((await redis.hget(keys.reservation(tenant, resId), 'status')) !== 'ACTIVE') continue;
    await attempt('reservation', resId, async () => {
      const r = await releaseForCascade(redis, tenant, resId, { traceId: ev.trace_id, requestId: ev.request_id, retain });
      if (r.outcome === 'released') { report.reservations_released += 1; step(); }
    });
  }

  for (const member of await redis.zrange(keys.budgetIndex(tenant), 0, -1)) {
    const i = member.lastIndexOf('|');
    const budgetKey = keys.budget(tenant, member.slice(0, i), member.slice(i + 1));
    await attempt('budget', member, async () => {
      const res = await runAdminScript(redis, 'budget_close_cascade',
        [budgetKey, keys.outbox(tenant), keys.closeCascade(tenant)], [member, JSON.stringify(ev)]);
      if (res.changed) { report.budgets_closed += 1; step(); }
    });
  }

  for (const [name, fn] of extraSteps) {
    await attempt(name, tenant, async () => { report.extra[name] = await fn({ redis, tenant, ev, step }); });
  }

  if (report.failed_resources.length === 0) {
    await redis.hset(keys.closeCascade(tenant), 'completed_at_ms', String(Date.now()));
    await redis.srem(keys.closePending(), tenant);
  }
  return report;
}

/** Resumes every pending cascade (start of a process, then periodically). */
export async function resumePendingCascades(redis: Redis, log?: { warn: (o: object, m: string) => void }, retain?: string): Promise<number> {
  let done = 0;
  for (const tenant of await redis.smembers(keys.closePending())) {
    const system: EventCtx = { trace_id: '', request_id: '', actor_json: JSON.stringify({ type: 'system' }) };
    try {
      const r = await runCloseCascade(redis, tenant, system, retain);
      if (r.failed_resources.length === 0) done += 1;
      else log?.warn({ tenant, failed: r.failed_resources }, 'tenant close cascade still incomplete');
    } catch (err) {
      log?.warn({ tenant, err }, 'tenant close cascade resume failed');
    }
  }
  return done;
}

registerWorker((deps) => {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    if (stopped) return;
    running = resumePendingCascades(deps.redis, deps.log).catch(() => 0).finally(() => {
      if (!stopped) timer = setTimeout(tick, CASCADE_RESUME_INTERVAL_MS).unref();
    });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
});
