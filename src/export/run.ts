// `cycles export` and the export job's unit of work: for each class and each closed UTC day
// of a range, make sure DIR holds that day's segment and the manifest lists it with a
// matching SHA-256 (a segment already listed with a matching file is left alone — resumable
// and idempotent), optionally followed by the day's "release": applying hot retention to
// the exported records and moving the class's watermark forward (DX3).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import { CLASSES, DayOpen, dayLines, earliestMs, releaseDay, type ExportClass } from './classes';
import { DAY_MS, dayStart, daysOf, isClosed } from './days';
import { advanceReleased, releasedUpTo } from './hold';
import { countRows, DIR_MODE, fileDigest, MANIFEST, readManifest, segmentPath, writeManifest, writeSegment, type Manifest } from './segment';

export interface ExportOptions {
  redis: Redis;
  /** retention settings (used by `release`) */
  config: Config;
  dir: string;
  /** first and last UTC day, inclusive (YYYY-MM-DD) */
  from: string;
  to: string;
  /** the clock deciding which days are closed (callers pass Redis TIME) */
  nowMs: number;
  /** after a day's segment is in place: apply hot retention to its records and advance the
   *  class's watermark (the export job; `cycles export --release`) */
  release?: boolean;
  classes?: readonly ExportClass[];
  /** called after each segment (tests use it to stop a run midway) */
  onSegment?: (cls: ExportClass, day: string, outcome: SegmentOutcome) => void | Promise<void>;
}

export type SegmentOutcome = 'written' | 'present' | 'open';

export interface ExportReport {
  written: string[];
  present: string[];
  /** segments not written because the day still has an ACTIVE reservation */
  open: string[];
  /** days of the range that are not closed yet (nothing exported for them) */
  notClosed: string[];
  /** records given their expiry by `release` */
  released: number;
}

/** Makes sure one segment exists and is listed; the manifest object is updated in place. */
async function exportSegment(redis: Redis, dir: string, manifest: Manifest, cls: ExportClass, day: string): Promise<SegmentOutcome> {
  const rel = segmentPath(cls, day);
  const file = path.join(dir, rel);
  const listed = manifest.files[rel];
  if (listed) {
    const d = await fileDigest(file);
    if (d && d.sha256 === listed.sha256 && d.bytes === listed.bytes) return 'present';
  }
  let info;
  try {
    info = await writeSegment(file, dayLines(redis, cls, dayStart(day)));
  } catch (e) {
    if (e instanceof DayOpen) return 'open';
    throw e;
  }
  manifest.files[rel] = { class: cls, day, ...info };
  await writeManifest(dir, manifest);
  return 'written';
}

export async function runExport(o: ExportOptions): Promise<ExportReport> {
  dayStart(o.from);
  if (dayStart(o.to) < dayStart(o.from)) throw new Error(`--to ${o.to} is before --from ${o.from}`);
  await fs.mkdir(o.dir, { recursive: true, mode: DIR_MODE });
  const manifest = await readManifest(o.dir);
  const report: ExportReport = { written: [], present: [], open: [], notClosed: [], released: 0 };
  const notClosed = new Set<string>();
  for (const cls of o.classes ?? CLASSES) {
    for (const day of daysOf(o.from, o.to)) {
      if (!isClosed(day, o.nowMs)) { notClosed.add(day); continue; }
      const outcome = await exportSegment(o.redis, o.dir, manifest, cls, day);
      report[outcome].push(segmentPath(cls, day));
      await o.onSegment?.(cls, day, outcome);
      if (outcome === 'open') {
        // a release must stay contiguous: later days of this class wait for this one
        if (o.release) break;
        continue;
      }
      if (o.release) {
        report.released += await releaseDay(o.redis, o.config, cls, dayStart(day), o.nowMs);
        await advanceIfContiguous(o.redis, cls, day);
      }
    }
  }
  report.notClosed = [...notClosed];
  return report;
}

/** The watermark moves past `day` only when every earlier day of the class is released
 *  (or holds nothing): the hold must never end for a day nobody exported. */
async function advanceIfContiguous(redis: Redis, cls: ExportClass, day: string): Promise<void> {
  const start = dayStart(day);
  const w = await releasedUpTo(redis, cls);
  const contiguous = w === undefined ? ((await earliestMs(redis, cls)) ?? start) >= start : w >= start;
  if (contiguous) await advanceReleased(redis, cls, start + DAY_MS);
}

export interface VerifyProblem { file: string; problem: string }

/** Re-checks every segment the manifest lists: present, same size, same SHA-256, same row
 *  count. Returns the problems (empty = the directory matches its manifest). */
export async function verifyExport(dir: string): Promise<{ files: number; problems: VerifyProblem[] }> {
  const at = path.join(dir, MANIFEST);
  if (!(await fileDigest(at))) throw new Error(`${at}: no manifest`);
  const manifest = await readManifest(dir);
  const problems: VerifyProblem[] = [];
  const names = Object.keys(manifest.files).sort();
  for (const rel of names) {
    const want = manifest.files[rel];
    const file = path.join(dir, rel);
    const d = await fileDigest(file);
    if (!d) { problems.push({ file: rel, problem: 'missing' }); continue; }
    if (d.bytes !== want.bytes) { problems.push({ file: rel, problem: `size ${d.bytes}, manifest says ${want.bytes}` }); continue; }
    if (d.sha256 !== want.sha256) { problems.push({ file: rel, problem: `sha256 ${d.sha256}, manifest says ${want.sha256}` }); continue; }
    let rows: number;
    try {
      rows = await countRows(file);
    } catch (e) {
      problems.push({ file: rel, problem: `unreadable gzip: ${(e as Error).message}` });
      continue;
    }
    if (rows !== want.rows) problems.push({ file: rel, problem: `${rows} rows, manifest says ${want.rows}` });
  }
  return { files: names.length, problems };
}
