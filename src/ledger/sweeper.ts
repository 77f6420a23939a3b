// Reservation expiry sweeper: every config.sweepIntervalMs, takes the reservations whose
// expires_at + grace has passed (keys.expirySchedule(), scored by that deadline, Redis
// TIME as "now") and runs expire.lua on each. Safe with any number of instances: the
// script re-checks the reservation atomically, so a race expires it exactly once; the
// schedule is only an index and is repaired here (gone → removed, pending → re-scored).
import { randomBytes } from 'node:crypto';
import type { Deps } from '../http/types';
import { keys } from '../store/keys';
import { loadScript, runScript } from '../store/scripts';
import { budgetPrefix, unschedule } from './reservationOps';

/** Candidates handled per batch (one Redis round trip each); a full batch sweeps again
 *  at once instead of waiting for the next interval. */
export const SWEEP_BATCH = 500;

export interface SweepStats { expired: number; pending: number; gone: number; corrupt: number; failed: number }

interface ExpireReply { outcome: 'gone' | 'pending' | 'expired' | 'corrupt'; deadline_ms?: string; message?: string }

/** One batch; returns what happened (also used directly by tests). */
export async function sweepOnce(deps: Deps): Promise<SweepStats & { candidates: number }> {
  const { redis, log } = deps;
  const [sec, usec] = await redis.time();
  const nowMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  const members = await redis.zrangebyscore(keys.expirySchedule(), 0, nowMs, 'LIMIT', 0, SWEEP_BATCH);
  const stats = { candidates: members.length, expired: 0, pending: 0, gone: 0, corrupt: 0, failed: 0 };
  if (members.length === 0) return stats;
  const traceId = randomBytes(16).toString('hex');
  const script = loadScript('expire');
  for (const member of members) {
    const nl = member.lastIndexOf('\n');
    if (nl <= 0) {
      await redis.zrem(keys.expirySchedule(), member);
      stats.corrupt++;
      continue;
    }
    const tenant = member.slice(0, nl);
    const id = member.slice(nl + 1);
    try {
      const raw = await runScript(redis, script,
        [keys.reservation(tenant, id), keys.outbox(tenant)], [budgetPrefix(tenant), traceId]);
      const reply = JSON.parse(String(raw)) as ExpireReply;
      if (reply.outcome === 'pending' && reply.deadline_ms) {
        // XX GT: never resurrect an entry a commit removed, never pull a later deadline in.
        await redis.zadd(keys.expirySchedule(), 'XX', 'GT', reply.deadline_ms, member);
        stats.pending++;
      } else {
        if (reply.outcome === 'corrupt') {
          log.error({ tenant, reservation_id: id, reason: reply.message }, 'expiry sweep: reservation left untouched (corrupt record)');
          stats.corrupt++;
        } else if (reply.outcome === 'expired') stats.expired++;
        else stats.gone++;
        await unschedule(redis, tenant, id, log);
      }
    } catch (err) {
      stats.failed++;
      log.error({ err, tenant, reservation_id: id }, 'expiry sweep: candidate failed');
    }
  }
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
      .then((s) => s.candidates >= SWEEP_BATCH)
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
