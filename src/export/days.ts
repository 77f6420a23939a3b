// UTC days of the cold export: a record belongs to the UTC day of its time (reservations
// and createEvent records: created_at; events: the stream id's ms; audit: timestamp;
// evidence: issued_at) — docs/decisions.md DX4.

export const DAY_MS = 86_400_000;
/** A day counts as closed this long after its end: records are stamped with Redis TIME and
 *  audit rows with the writing process's clock, so late writers are waited for. */
export const CLOSE_MARGIN_MS = 5 * 60_000;

const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** 'YYYY-MM-DD' → epoch ms of its UTC midnight; throws on anything else. */
export function dayStart(day: string): number {
  const m = DAY_RE.exec(day);
  const ms = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : NaN;
  if (!m || !Number.isFinite(ms) || dayOf(ms) !== day) throw new Error(`"${day}" is not a date (YYYY-MM-DD)`);
  return ms;
}

/** epoch ms → its UTC day 'YYYY-MM-DD'. */
export function dayOf(ms: number): string {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
}

export const nextDay = (day: string): string => dayOf(dayStart(day) + DAY_MS);

/** Whether every record of `day` has been written by `nowMs`. */
export const isClosed = (day: string, nowMs: number): boolean => dayStart(day) + DAY_MS + CLOSE_MARGIN_MS <= nowMs;

/** Every day of [from, to], in order (bounded by the caller's range). */
export function* daysOf(from: string, to: string): Generator<string> {
  for (let d = from; dayStart(d) <= dayStart(to); d = nextDay(d)) yield d;
}
