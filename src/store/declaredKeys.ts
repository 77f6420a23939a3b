// Scripts that touch keys beyond their fixed KEYS (docs/decisions.md DK8): the caller
// declares a guess of those keys after the fixed ones; a script missing one answers
// {"need_keys": [...]} (the exact list, before writing anything) and runs again with it.
// The guesses come from what this process already knows (FinishKeyCache for the
// reservation finishing scripts, the cached policies for quota counters); a wrong or
// missing guess costs one round trip, never correctness: the script builds every key it
// needs from what it read and only uses it when it is declared.
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import { runScript, type LoadedScript } from './scripts';

/** Retries after a need_keys answer before giving up (each answer is the full list, so one
 *  suffices unless the data changed between the two runs, e.g. a quota window rolled over). */
export const NEED_KEYS_RETRIES = 2;
/** A script never asks for more than this (scopes × units, counters; a closing tenant's
 *  budgets): a bigger answer is a bug, not a request to honour. */
const NEED_KEYS_MAX = 100_000;

const PREFIX = '{"need_keys":';

/** The keys a need_keys answer lists, or undefined when `raw` is another answer. */
export function needKeysOf(raw: unknown): string[] | undefined {
  if (typeof raw !== 'string' || !raw.startsWith(PREFIX)) return undefined;
  const v = (JSON.parse(raw) as { need_keys?: unknown }).need_keys;
  if (!Array.isArray(v) || v.length === 0 || v.length > NEED_KEYS_MAX || !v.every((k) => typeof k === 'string')) {
    throw new Error(`script answered a malformed need_keys list: ${raw.slice(0, 200)}`);
  }
  return v as string[];
}

export interface DeclaredRun {
  raw: unknown;
  /** the extra keys the successful run was given (the script's own list after a retry) */
  declared: string[];
  /** how many need_keys answers preceded it */
  retries: number;
}

/**
 * Runs `script` with KEYS = fixed ++ declared; on a need_keys answer, again with the list
 * it gave (at most NEED_KEYS_RETRIES times, then 500 INTERNAL_ERROR).
 */
export async function runDeclared(
  redis: Redis, script: LoadedScript, fixed: string[], declared: readonly string[], args: (string | number)[],
): Promise<DeclaredRun> {
  let extra = [...declared];
  for (let retries = 0; ; retries++) {
    const raw = await runScript(redis, script, extra.length ? [...fixed, ...extra] : fixed, args);
    const need = needKeysOf(raw);
    if (!need) return { raw, declared: extra, retries };
    if (retries >= NEED_KEYS_RETRIES) {
      throw new ApiError('INTERNAL_ERROR', `${script.name}: the keys the script needs kept changing; retry the request`);
    }
    extra = need;
  }
}

/**
 * reservation id → the keys finishing it touches (budgets of its budgeted scopes, per_run
 * counters), filled by reserve and by every finishing run; bounded, oldest entry out first.
 * Only a guess (the scripts check it), so a stale entry is harmless.
 */
export class FinishKeyCache {
  private readonly map = new Map<string, string[]>();
  constructor(readonly max: number) {}
  get(id: string): string[] {
    return this.map.get(id) ?? [];
  }
  set(id: string, list: string[]): void {
    this.map.delete(id);
    this.map.set(id, list);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }
  delete(id: string): void {
    this.map.delete(id);
  }
  get size(): number {
    return this.map.size;
  }
}

/** 100k entries of a few short strings each: tens of MB at most; a reservation not held
 *  here (evicted, or reserved by another instance) costs one more round trip to finish. */
export const finishKeys = new FinishKeyCache(100_000);
