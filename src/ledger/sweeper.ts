// Reservation expiry sweeper: every config.sweepIntervalMs, finds the reservations whose
// expires_at + grace has passed — per tenant (keys.tenants()), in the tenant's schedule
// (keys.expirySchedule(t), scored by that deadline, Redis TIME as "now") — and runs
// expire.lua on each. Safe with any number of instances: the script re-checks the
// reservation atomically, so a race expires it exactly once, and it keeps the schedule
// in step itself (gone / expired → removed, pending → re-scored).
import { randomBytes } from 'node:crypto';
import type { Deps } from '../http/types';
import { keys } from '../store/keys';
import { loadScript } from '../store/scripts';
import { finishKeys, runDeclared } from '../store/declaredKeys';
import { budgetPrefix } from './reservationOps';
import { reservationRetainArg } from './retention';

/** Candidates taken per tenant per pass; a tenant with a full batch makes the sweeper
 *  run again at once instead of waiting for the next interval. */
export const SWEEP_BATCH = 500;
/** Tenants whose schedules are read in one pipelined round trip. */
const TENANT_CHUNK = 500;

export interface SweepStats { expired: number; pending: number; gone: number; corrupt: number; failed: number }

interface ExpireReply { outcome: 'gone' | 'pending' | 'expired' | 'corrupt'; deadline_ms?: string; message?: string }

/** One pass over every tenant; returns what happened (also used directly by tests).
 *  `more`: some tenant had a full batch due. */
export async function sweepOnce(deps: Deps): Promise<SweepStats & { candidates: number; more: boolean }> {
  const { redis, log } = deps;
  const [sec, usec] = await redis.time();
  const nowMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  const stats = { candidates: 0, more: false, expired: 0, pending: 0, gone: 0, corrupt: 0, failed: 0 };
  const traceId = randomBytes(16).toString('hex');
  const script = loadScript('expire');
  const retain = reservationRetainArg(deps.config);

  const expireOne = async (tenant: string, id: string) => {
    try {
      const { raw } = await runDeclared(redis, script,
        [keys.reservation(tenant, id), keys.outbox(tenant), keys.expirySchedule(tenant)],
        finishKeys.get(id), [budgetPrefix(tenant), traceId, id, retain]);
      const reply = JSON.parse(String(raw)) as ExpireReply;
      if (reply.outcome === 'corrupt') {
        log.error({ tenant, reservation_id: id, reason: reply.message }, 'expiry sweep: reservation left untouched (corrupt record)');
      }
      if (reply.outcome !== 'pending') finishKeys.delete(id);
      stats[reply.outcome]++;
    } catch (err) {
      stats.failed++;
      log.error({ err, tenant, reservation_id: id }, 'expiry sweep: candidate failed');
    }
  };

  // SSCAN may repeat a tenant; expiring twice is harmless (the second run says "gone").
  let cursor = '0';
  do {
    const [next, tenants] = await redis.sscan(keys.tenants(), cursor, 'COUNT', TENANT_CHUNK);
    cursor = next;
    if (tenants.length === 0) continue;
    const reads = redis.pipeline();
    for (const t of tenants) reads.zrangebyscore(keys.expirySchedule(t), 0, nowMs, 'LIMIT', 0, SWEEP_BATCH);
    const due = (await reads.exec()) ?? [];
    for (let i = 0; i < due.length; i++) {
      const [err, ids] = due[i];
      if (err) { stats.failed++; log.error({ err, tenant: tenants[i] }, 'expiry sweep: schedule read failed'); continue; }
      const list = ids as string[];
      stats.candidates += list.length;
      if (list.length >= SWEEP_BATCH) stats.more = true;
      // One at a time: the sweeper shares the connection with live traffic.
      for (const id of list) await expireOne(tenants[i], id);
    }
  } while (cursor !== '0');

  if (stats.expired || stats.corrupt || stats.failed) log.info({ ...stats, trace_id: traceId }, 'expiry sweep');
  return stats;
}

/** Starts the periodic sweep. stop() waits for the batch in progress. */
export function startExpirySweeper(deps: Deps): { stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | undefined;

  const tick = () => {
    timer = undefined;
    if (stopped) return;
    current = sweepOnce(deps)
      .then((s) => s.more)
      .catch((err: unknown) => {
        deps.log.error({ err }, 'expiry sweep failed');
        return false;
      })
      .then((more) => {
        current = undefined;
        if (!stopped) timer = setTimeout(tick, more ? 0 : deps.config.sweepIntervalMs);
      });
  };
  timer = setTimeout(tick, deps.config.sweepIntervalMs);

  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (current) await current;
    },
  };
}
