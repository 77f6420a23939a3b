// The export job (worker role, opt-in by CYCLES_EXPORT_DIR; docs/decisions.md DX3): every
// CYCLES_EXPORT_INTERVAL_MS one process (lease keys.exportLock()) exports, per class, every
// closed UTC day from the class's released watermark (first run: its oldest record) up to
// yesterday, and releases each exported day — its records get their hot-retention TTL and
// the watermark moves past it. While the job is configured every writer holds its records
// (no TTL, no trim past the watermark), so a record cannot expire before its day is in the
// export. A day with a still-ACTIVE reservation stops that class until it finishes.
import { randomBytes } from 'node:crypto';
import type { Deps } from '../http/types';
import { keys } from '../store/keys';
import { CLASSES, earliestMs } from './classes';
import { CLOSE_MARGIN_MS, DAY_MS, dayOf, dayStart } from './days';
import { advanceReleased, releasedUpTo } from './hold';
import { runExport, type ExportReport } from './run';

/** Lease of the job; renewed after every segment, so only a stalled process loses it. */
const LEASE_MS = 10 * 60_000;

export interface JobReport extends ExportReport { lastClosed: string }

/** One pass over every class (tests call it with a clock of their choosing). */
export async function exportJobOnce(deps: Pick<Deps, 'redis' | 'config'>, nowMs?: number, renew?: () => Promise<void>): Promise<JobReport> {
  const { redis, config } = deps;
  if (!config.exportDir) throw new Error('the export job needs CYCLES_EXPORT_DIR');
  let now = nowMs;
  if (now === undefined) {
    const [s, us] = await redis.time();
    now = Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }
  const lastClosed = dayOf(now - CLOSE_MARGIN_MS - DAY_MS);
  const total: JobReport = { written: [], present: [], open: [], notClosed: [], released: 0, lastClosed };
  for (const cls of CLASSES) {
    const start = (await releasedUpTo(redis, cls)) ?? (await earliestMs(redis, cls));
    if (start === undefined) {
      // nothing stored yet: nothing before the first open day can ever need holding
      await advanceReleased(redis, cls, dayStart(lastClosed) + DAY_MS);
      continue;
    }
    const from = dayOf(start);
    if (dayStart(from) > dayStart(lastClosed)) continue;
    const r = await runExport({
      redis, config, dir: config.exportDir, from, to: lastClosed, nowMs: now, release: true, classes: [cls],
      onSegment: renew,
    });
    total.written.push(...r.written);
    total.present.push(...r.present);
    total.open.push(...r.open);
    total.released += r.released;
  }
  return total;
}

export function startExportJob(deps: Deps): { stop(): Promise<void> } {
  const { redis, config, log } = deps;
  if (!config.exportDir) return { async stop() {} };
  const token = randomBytes(12).toString('hex');
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const renew = async () => {
    if ((await redis.get(keys.exportLock())) === token) await redis.pexpire(keys.exportLock(), LEASE_MS);
  };
  const loop = () => {
    if (stopped) return;
    running = (async () => {
      const got = await redis.set(keys.exportLock(), token, 'PX', LEASE_MS, 'NX');
      if (got !== 'OK') return;
      try {
        const r = await exportJobOnce(deps, undefined, renew);
        if (r.written.length || r.open.length) {
          log.info({ written: r.written.length, present: r.present.length, open: r.open, released: r.released, last_closed: r.lastClosed }, 'export job pass');
        }
      } finally {
        if ((await redis.get(keys.exportLock())) === token) await redis.del(keys.exportLock());
      }
    })().catch((err: unknown) => log.error({ err }, 'export job pass failed'))
      .finally(() => { running = undefined; if (!stopped) timer = setTimeout(loop, config.exportIntervalMs); });
  };
  timer = setTimeout(loop, 2000);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (running) await running;
    },
  };
}
