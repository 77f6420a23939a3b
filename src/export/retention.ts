// Retention trim (worker role): once a minute, under a lease, one process removes index
// entries whose records have reached their hot retention (docs/decisions.md DX1):
//   keys.reservationIndex(t)  entries created before now − CYCLES_RESERVATION_RETENTION_DAYS
//   keys.eventRecordIndex(t)  entries created before now − CYCLES_CREATE_EVENT_RETENTION_DAYS
// for every tenant (keys.tenants()) — idle tenants too, which a trim inside reserve.lua
// never reached. The records themselves leave by their TTL, set on the same clock.
// While the export job holds records (CYCLES_EXPORT_DIR, DX3) every cutoff is capped at the
// class's released watermark, and the two cross-tenant time indexes whose writers stop
// trimming in that mode (audit all-index, evidence index) are trimmed here instead.
// Work per pass is bounded: whole rank batches of TRIM_BATCH while the batch's last entry
// is older than the cutoff (at most TRIM_ROUNDS per key), then the remainder by score.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Deps } from '../http/types';
import { keys } from '../store/keys';
import { tenantsSorted } from './classes';
import { DAY_MS } from './days';
import { trimCutoff } from './hold';

export const RETENTION_TRIM_INTERVAL_MS = 60_000;
const TRIM_BATCH = 10_000;
const TRIM_ROUNDS = 20;

/** Removes the entries of `key` scored before `cutoff`, bounded. */
export async function trimIndex(redis: Redis, key: string, cutoff: number): Promise<number> {
  let removed = 0;
  for (let round = 0; round < TRIM_ROUNDS; round++) {
    const last = await redis.zrange(key, TRIM_BATCH - 1, TRIM_BATCH - 1, 'WITHSCORES');
    if (last.length === 2 && Number(last[1]) < cutoff) {
      removed += await redis.zremrangebyrank(key, 0, TRIM_BATCH - 1);
      continue;
    }
    removed += await redis.zremrangebyscore(key, '-inf', `(${cutoff}`);
    break;
  }
  return removed;
}

async function redisNow(redis: Redis): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** One trim pass (any process; the worker holds the lease, tests call it directly). */
export async function retentionTrimOnce(deps: Pick<Deps, 'redis' | 'config'>, nowMs?: number): Promise<{ removed: number }> {
  const { redis, config } = deps;
  const now = nowMs ?? await redisNow(redis);
  let removed = 0;
  const resCut = await trimCutoff(redis, config, 'reservations', now - config.reservationRetentionMs);
  const ceCut = await trimCutoff(redis, config, 'create_events', now - config.createEventRetentionMs);
  if (resCut !== undefined || ceCut !== undefined) {
    for (const t of await tenantsSorted(redis)) {
      if (resCut !== undefined) removed += await trimIndex(redis, keys.reservationIndex(t), resCut);
      if (ceCut !== undefined) removed += await trimIndex(redis, keys.eventRecordIndex(t), ceCut);
    }
  }
  if (config.exportDir) {
    const auth = config.auditRetentionDays * DAY_MS;
    const unauth = config.auditUnauthRetentionDays * DAY_MS;
    if (auth > 0 && unauth > 0) {
      const c = await trimCutoff(redis, config, 'audit', now - Math.max(auth, unauth));
      if (c !== undefined) removed += await trimIndex(redis, keys.auditAll(), c);
    }
    if (config.evidenceRetentionDays > 0) {
      const c = await trimCutoff(redis, config, 'evidence', now - config.evidenceRetentionDays * DAY_MS);
      if (c !== undefined) removed += await trimIndex(redis, keys.evidenceIndex(), c);
    }
  }
  return { removed };
}

export function startRetentionTrim(deps: Deps): { stop(): Promise<void> } {
  const { redis, log } = deps;
  const token = randomBytes(12).toString('hex');
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const loop = () => {
    if (stopped) return;
    running = (async () => {
      const got = await redis.set(keys.retentionTrimLock(), token, 'PX', RETENTION_TRIM_INTERVAL_MS - 1000, 'NX');
      if (got !== 'OK') return;
      const r = await retentionTrimOnce(deps);
      if (r.removed) log.info(r, 'retention trim');
    })().catch((err: unknown) => log.error({ err }, 'retention trim failed'))
      .finally(() => { running = undefined; if (!stopped) timer = setTimeout(loop, RETENTION_TRIM_INTERVAL_MS); });
  };
  timer = setTimeout(loop, 1500);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (running) await running;
    },
  };
}
