// `cycles evidence export --from --to`: every stored envelope issued in [from, to], in
// issued_at_ms order, one per line, each line the stored canonical bytes unchanged — so every
// line verifies on its own with `cycles evidence verify` (or any RFC 8785 + Ed25519 tool)
// long after this server is gone. Streams in batches: memory stays flat for any range.
import type { Redis } from 'ioredis';
import { keys } from '../store/keys';

export const EXPORT_BATCH = 500;

/** A time bound: epoch ms, or an ISO 8601 date / date-time. */
export function parseTimeBound(raw: string | undefined, name: string, dflt: number): number {
  if (raw === undefined || raw === '') return dflt;
  if (/^\d{1,16}$/.test(raw)) return Number(raw);
  const ms = Date.parse(raw);
  if (Number.isNaN(ms)) throw new Error(`${name}: "${raw}" is neither epoch ms nor an ISO 8601 date-time`);
  return ms;
}

/** Writes the envelopes of [fromMs, toMs] to `write`; returns how many. An index entry whose
 *  envelope is gone (retention expired it) is skipped and counted in `missing`. */
export async function exportEnvelopes(redis: Redis, fromMs: number, toMs: number,
  write: (line: string) => Promise<void> | void): Promise<{ written: number; missing: number }> {
  let written = 0;
  let missing = 0;
  let offset = 0;
  for (;;) {
    const ids = await redis.zrangebyscore(keys.evidenceIndex(), fromMs, toMs, 'LIMIT', offset, EXPORT_BATCH);
    if (ids.length === 0) break;
    offset += ids.length;
    const bodies = await redis.mget(ids.map((id) => keys.evidenceEnvelope(id)));
    for (const b of bodies) {
      if (b === null) { missing++; continue; }
      await write(`${b}\n`);
      written++;
    }
    if (ids.length < EXPORT_BATCH) break;
  }
  return { written, missing };
}
