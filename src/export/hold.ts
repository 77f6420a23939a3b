// The export job's hold (docs/decisions.md DX3). While CYCLES_EXPORT_DIR is set, no writer
// puts a TTL on a record of an exportable class and no trim removes anything at or after
// the class's "released" watermark (keys.exportReleased(): the first UTC day the job has
// not yet exported AND released). This module is the one place trims ask how far they may go.
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import { keys } from '../store/keys';
import { loadScript, runScript } from '../store/scripts';
import type { ExportClass } from './classes';

/** The released watermark of a class (epoch ms), undefined when the job has not released any day. */
export async function releasedUpTo(redis: Redis, cls: ExportClass): Promise<number | undefined> {
  const v = await redis.hget(keys.exportReleased(), cls);
  return v !== null && /^\d+$/.test(v) ? Number(v) : undefined;
}

/**
 * How far a retention trim of `cls` may go: the retention cutoff itself, or while the job
 * holds records the earlier of it and the watermark; undefined = nothing may be trimmed yet.
 */
export async function trimCutoff(redis: Redis, config: Pick<Config, 'exportDir'>, cls: ExportClass, cutoffMs: number): Promise<number | undefined> {
  if (!config.exportDir) return cutoffMs;
  const w = await releasedUpTo(redis, cls);
  return w === undefined ? undefined : Math.min(cutoffMs, w);
}

/** Moves a class's watermark forward (never back: HSET only when larger), atomically. */
export async function advanceReleased(redis: Redis, cls: ExportClass, toMs: number): Promise<void> {
  await runScript(redis, loadScript('export_release'), [keys.exportReleased()], [cls, String(toMs)]);
}
