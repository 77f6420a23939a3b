// bulkActionWebhooks: PAUSE / RESUME / DELETE every subscription a filter selects, with the
// same gate flow as the other bulk actions (src/admin/bulk.ts `gated`, decision DP3): validate → idempotency
// (15 min, same body → the stored envelope, other body → 409 IDEMPOTENCY_MISMATCH) → count →
// > 500 ⇒ 400 LIMIT_EXCEEDED → expected_count ⇒ 409 COUNT_MISMATCH → apply row by row on
// live state through the single-op writes (so the invariants and the closed-owner guard hold
// here too). Rows (DV18): PAUSE on PAUSED/DISABLED and RESUME on ACTIVE → skipped
// ALREADY_IN_TARGET_STATE; RESUME on DISABLED → failed INVALID_TRANSITION; DELETE of a
// vanished row → skipped ALREADY_DELETED; PAUSE/RESUME of a vanished row → failed NOT_FOUND;
// CLOSED owner or a row whose selectors violate the invariants → failed INVALID_TRANSITION.
import type { Redis } from 'ioredis';
import { ApiError, invalid } from '../errors';
import type { EventCtx } from '../admin/common';
import { gated, type BulkEnvelope, type RowOutcome } from '../admin/bulk';
import { filteredRecords, readRecord, type WebhookFilter } from './subscriptions';
import { deleteSubscription, updateSubscription, type WriteCtx } from './webhookWrites';

function rowFailure(id: string, e: unknown): RowOutcome {
  if (!(e instanceof ApiError)) return { id, error_code: 'INTERNAL_ERROR', message: 'Internal error' };
  if (e.code === 'WEBHOOK_NOT_FOUND') return { id, error_code: 'NOT_FOUND', message: e.message };
  if (e.code === 'TENANT_CLOSED') return { id, error_code: 'INVALID_TRANSITION', message: e.message };
  if (e.code === 'INVALID_REQUEST') return { id, error_code: 'INVALID_TRANSITION', message: e.message };
  return { id, error_code: 'INTERNAL_ERROR', message: 'Internal error' };
}

export async function bulkWebhooks(
  redis: Redis, body: Record<string, any>, c: WriteCtx,
): Promise<{ envelope: BulkEnvelope; replayed: boolean }> {
  const f = (body.filter ?? {}) as WebhookFilter;
  if (Object.keys(f).length === 0) throw invalid('filter must name at least one property (an empty filter would select every subscription)');
  // a blank value would be read as "unset" by the list predicate: refuse it rather than act on every row
  for (const [k, v] of Object.entries(f)) {
    if (typeof v !== 'string' || v.trim() === '') throw invalid(`filter.${k} must not be blank (a blank filter would select every subscription)`);
  }
  if (f.search !== undefined && String(f.search).trim().length > 128) throw invalid('filter.search must be at most 128 characters');
  const action = String(body.action);
  if (!['PAUSE', 'RESUME', 'DELETE'].includes(action)) throw invalid('action must be one of PAUSE, RESUME, DELETE');

  return gated(redis, 'webhooks', body,
    async () => (await filteredRecords(redis, f)).sort((a, b) => (a.subscription_id < b.subscription_id ? -1 : 1)),
    async (rows, env) => {
      const correlation = `webhook_bulk_action:${action.toLowerCase()}:${c.ev.request_id}`;
      const ev: EventCtx = { ...c.ev, correlation_id: correlation };
      for (const row of rows) {
        const id = row.subscription_id;
        try {
          const live = await readRecord(redis, id);
          if (!live) {
            if (action === 'DELETE') env.skipped.push({ id, reason: 'ALREADY_DELETED' });
            else env.failed.push({ id, error_code: 'NOT_FOUND', message: `Subscription ${id} no longer exists` });
            continue;
          }
          if (action === 'DELETE') {
            await deleteSubscription(redis, live.tenant_id, id, ev, correlation);
          } else if (action === 'PAUSE') {
            if (live.status !== 'ACTIVE') { env.skipped.push({ id, reason: 'ALREADY_IN_TARGET_STATE' }); continue; }
            await updateSubscription(redis, live.tenant_id, id, { status: 'PAUSED' }, { ...c, ev }, { correlation, fromStatus: 'ACTIVE' });
          } else {
            if (live.status === 'ACTIVE') { env.skipped.push({ id, reason: 'ALREADY_IN_TARGET_STATE' }); continue; }
            if (live.status === 'DISABLED') {
              env.failed.push({ id, error_code: 'INVALID_TRANSITION', message: 'A DISABLED subscription cannot be resumed in bulk; re-enable it with PATCH status=ACTIVE' });
              continue;
            }
            await updateSubscription(redis, live.tenant_id, id, { status: 'ACTIVE' }, { ...c, ev }, { correlation, fromStatus: 'PAUSED' });
          }
          env.succeeded.push({ id });
        } catch (e) {
          if (action === 'DELETE' && e instanceof ApiError && e.code === 'WEBHOOK_NOT_FOUND') env.skipped.push({ id, reason: 'ALREADY_DELETED' });
          else env.failed.push(rowFailure(id, e));
        }
      }
    }, 'subscriptions');
}
