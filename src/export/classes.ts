// The five record classes of the cold export: how to enumerate one UTC day of each (SCAN-
// free: the time index of each class, in pages), how each record becomes one JSON line, and
// how its hot retention is applied once the day is exported (the job's "release", DX3).
//
// Order inside a day's file (deterministic, so a re-run writes the same bytes): tenants in
// code-unit order, then (time, id) — zset score then member, stream id for events; the
// cross-tenant classes (audit, evidence) by (time, id). Rows are rendered by the decoders
// the API uses (reservationRecord, eventRecordOf, renderEvent); audit entries and evidence
// envelopes are the stored bytes verbatim.
import { decodeReservationHash } from '../ledger/reservationRecord';
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import { keys } from '../store/keys';
import { stringify } from '../json';
import { finishedAt, reservationRecord } from '../ledger/reservationRead';
import { eventRecordOf } from '../ledger/event';
import { fieldsOf, renderEvent, SYSTEM_TENANT } from '../events/model';
import { UNAUTH_TENANT } from '../admin/audit';
import { DAY_MS } from './days';

export const CLASSES = ['reservations', 'create_events', 'events', 'audit', 'evidence'] as const;
export type ExportClass = (typeof CLASSES)[number];

/** Index entries / stream entries read per round trip. */
export const PAGE = 500;
/** Retention floor after a reservation finished (ledger_common.lua RETAIN_REPLAY_FLOOR_MS). */
const REPLAY_FLOOR_MS = 86_400_000;

/** Thrown while enumerating a day that is not final yet (an ACTIVE reservation). */
export class DayOpen extends Error {}

export interface ZEntry { member: string; score: number }

/**
 * Entries of a zset with lo <= score < hi in (score, member) order, page by page: a page
 * that ends inside a run of equal scores is completed with that whole run (ZRANGE by the
 * edge score), and the next page starts after it, so no offset is ever skipped over.
 */
export async function* zsetPages(redis: Redis, key: string, lo: number, hi: number, page = PAGE): AsyncGenerator<ZEntry[]> {
  let min = String(lo);
  for (;;) {
    const flat = await redis.zrange(key, min, `(${hi}`, 'BYSCORE', 'LIMIT', 0, page, 'WITHSCORES');
    if (flat.length === 0) return;
    let entries: ZEntry[] = [];
    for (let i = 0; i < flat.length; i += 2) entries.push({ member: flat[i], score: Number(flat[i + 1]) });
    if (entries.length < page) { yield entries; return; }
    const edge = entries[entries.length - 1].score;
    const same = await redis.zrange(key, edge, edge, 'BYSCORE');
    entries = entries.filter((e) => e.score !== edge).concat(same.map((member) => ({ member, score: edge })));
    yield entries;
    min = `(${edge}`;
  }
}

/** Every tenant with ledger data (keys.tenants()), sorted; with `system`, __system__ too. */
export async function tenantsSorted(redis: Redis, system = false): Promise<string[]> {
  const all = new Set<string>(system ? [SYSTEM_TENANT] : []);
  let cursor = '0';
  do {
    const [next, list] = await redis.sscan(keys.tenants(), cursor, 'COUNT', 1000);
    cursor = next;
    for (const t of list) all.add(t);
  } while (cursor !== '0');
  return [...all].sort();
}

async function pipelined<T>(redis: Redis, build: (p: ReturnType<Redis['pipeline']>) => void): Promise<T[]> {
  const p = redis.pipeline();
  build(p);
  const out: T[] = [];
  for (const [err, v] of (await p.exec()) ?? []) {
    if (err) throw err;
    out.push(v as T);
  }
  return out;
}

/** Per-tenant zset classes: reservations and createEvent records (hash per record). */
async function* perTenantHashes(redis: Redis, from: number, index: (t: string) => string, record: (t: string, id: string) => string,
  render: (h: Record<string, string>) => string): AsyncGenerator<string> {
  for (const t of await tenantsSorted(redis)) {
    for await (const entries of zsetPages(redis, index(t), from, from + DAY_MS)) {
      const hashes = await pipelined<Record<string, string>>(redis, (p) => { for (const e of entries) p.hgetall(record(t, e.member)); });
      for (const h of hashes) {
        const line = render(h);
        if (line !== '') yield line;
      }
    }
  }
}

/** GETs of keys in different slots: concurrent single commands (written back to back on
 *  the connection; on a Cluster each goes to its own shard), not one cross-slot pipeline. */
const getAll = (redis: Redis, ks: string[]): Promise<(string | null)[]> => Promise.all(ks.map((k) => redis.get(k)));

/** Cross-tenant zset classes whose records are strings stored verbatim. */
async function* verbatim(redis: Redis, from: number, index: string, record: (id: string) => string): AsyncGenerator<string> {
  for await (const entries of zsetPages(redis, index, from, from + DAY_MS)) {
    const bodies = await getAll(redis, entries.map((e) => record(e.member)));
    for (const b of bodies) if (b !== null) yield b;
  }
}

/** The JSON lines (without newline) of one class for the UTC day starting at `from`. An
 *  index entry whose record is gone (expired before the export) is skipped. */
/** Reservation evidence links stay bare ids (`{evidence_id}`), whatever the exporting
 *  process's evidence identity: a segment's bytes must not depend on configuration, and the
 *  envelope (evidence class) names its issuer itself (docs/decisions.md DM5). */
export function dayLines(redis: Redis, cls: ExportClass, from: number): AsyncGenerator<string> {
  switch (cls) {
    case 'reservations':
      return perTenantHashes(redis, from, keys.reservationIndex, keys.reservation, (stored) => {
        // the stored layout is compact (DM1–DM4): decode before reading any field
        const h = decodeReservationHash(stored);
        if (!h.reservation_id) return '';
        if (h.status === 'ACTIVE') throw new DayOpen(`reservation ${h.reservation_id} is still ACTIVE`);
        return stringify(reservationRecord(h));
      });
    case 'create_events':
      return perTenantHashes(redis, from, keys.eventRecordIndex, keys.eventRecord, (h) => (h.event_id ? stringify(eventRecordOf(h)) : ''));
    case 'events':
      return eventLines(redis, from);
    case 'audit':
      return verbatim(redis, from, keys.auditAll(), keys.auditEntry);
    case 'evidence':
      return verbatim(redis, from, keys.evidenceIndex(), keys.evidenceEnvelope);
  }
}

/** Events: every tenant's outbox (and __system__'s), the day's stream range, in stream order. */
async function* eventLines(redis: Redis, from: number): AsyncGenerator<string> {
  const last = `${from + DAY_MS - 1}-18446744073709551615`;
  for (const t of await tenantsSorted(redis, true)) {
    let start = `${from}-0`;
    for (;;) {
      const page = await redis.xrange(keys.outbox(t), start, last, 'COUNT', PAGE);
      for (const [id, flat] of page) yield stringify(renderEvent(t, id, fieldsOf(flat)));
      if (page.length < PAGE) break;
      start = `(${page[page.length - 1][0]}`;
    }
  }
}

/** Epoch ms of the oldest record of a class still in Redis (undefined: none). */
export async function earliestMs(redis: Redis, cls: ExportClass): Promise<number | undefined> {
  const first = async (key: string) => {
    const r = await redis.zrange(key, 0, 0, 'WITHSCORES');
    return r.length === 2 ? Number(r[1]) : undefined;
  };
  let min: number | undefined;
  const take = (v: number | undefined) => { if (v !== undefined && (min === undefined || v < min)) min = v; };
  switch (cls) {
    case 'reservations':
    case 'create_events':
      for (const t of await tenantsSorted(redis)) {
        take(await first(cls === 'reservations' ? keys.reservationIndex(t) : keys.eventRecordIndex(t)));
      }
      break;
    case 'events':
      for (const t of await tenantsSorted(redis, true)) {
        const r = await redis.xrange(keys.outbox(t), '-', '+', 'COUNT', 1);
        if (r.length) take(Number(r[0][0].split('-')[0]));
      }
      break;
    case 'audit': take(await first(keys.auditAll())); break;
    case 'evidence': take(await first(keys.evidenceIndex())); break;
  }
  return min;
}

/**
 * Applies hot retention to an exported day's records (the export job, DX3): each record
 * gets the expiry it would have got without the hold — an expiry already in the past
 * deletes it now. Events need nothing here: the relay's trim reaches them once the
 * released watermark passes their day. Index entries follow by the retention trim.
 */
export async function releaseDay(redis: Redis, config: Config, cls: ExportClass, from: number, nowMs: number): Promise<number> {
  let n = 0;
  // one tenant's keys share a slot (pipelined); audit / evidence keys do not (concurrent singles)
  const expireAt = async (entries: { key: string; at: number }[], sameSlot = true) => {
    if (entries.length === 0) return;
    if (sameSlot) await pipelined(redis, (p) => { for (const e of entries) p.pexpireat(e.key, Math.max(e.at, 1)); });
    else await Promise.all(entries.map((e) => redis.pexpireat(e.key, Math.max(e.at, 1))));
    n += entries.length;
  };
  switch (cls) {
    case 'reservations': {
      const R = config.reservationRetentionMs;
      for (const t of await tenantsSorted(redis)) {
        for await (const entries of zsetPages(redis, keys.reservationIndex(t), from, from + DAY_MS)) {
          const hashes = await pipelined<Record<string, string>>(redis, (p) => { for (const e of entries) p.hgetall(keys.reservation(t, e.member)); });
          const out: { key: string; at: number }[] = [];
          entries.forEach((e, i) => {
            const h = decodeReservationHash(hashes[i]);
            if (!h.reservation_id || h.status === 'ACTIVE') return; // gone, or never: ACTIVE has no TTL
            // the script's rule (retain_finalized): created + R, not sooner than
            // min(R, 1 day) after it finished
            out.push({ key: keys.reservation(t, e.member), at: Math.max(e.score + R, (finishedAt(h) ?? nowMs) + Math.min(R, REPLAY_FLOOR_MS)) });
          });
          await expireAt(out);
        }
      }
      break;
    }
    case 'create_events': {
      const R = config.createEventRetentionMs;
      for (const t of await tenantsSorted(redis)) {
        for await (const entries of zsetPages(redis, keys.eventRecordIndex(t), from, from + DAY_MS)) {
          await expireAt(entries.map((e) => ({ key: keys.eventRecord(t, e.member), at: e.score + R })));
        }
      }
      break;
    }
    case 'audit': {
      const auth = config.auditRetentionDays * DAY_MS;
      const unauth = config.auditUnauthRetentionDays * DAY_MS;
      for await (const entries of zsetPages(redis, keys.auditAll(), from, from + DAY_MS)) {
        const bodies = await getAll(redis, entries.map((e) => keys.auditEntry(e.member)));
        const out: { key: string; at: number }[] = [];
        entries.forEach((e, i) => {
          const b = bodies[i];
          if (b === null) return;
          let tenant = '';
          try { tenant = String((JSON.parse(b) as { tenant_id?: unknown }).tenant_id ?? ''); } catch { /* tier of an authenticated row */ }
          const R = tenant === UNAUTH_TENANT ? unauth : auth;
          if (R > 0) out.push({ key: keys.auditEntry(e.member), at: e.score + R });
        });
        await expireAt(out, false);
      }
      break;
    }
    case 'evidence': {
      const R = config.evidenceRetentionDays * DAY_MS;
      if (R === 0) break;
      for await (const entries of zsetPages(redis, keys.evidenceIndex(), from, from + DAY_MS)) {
        await expireAt(entries.map((e) => ({ key: keys.evidenceEnvelope(e.member), at: e.score + R })), false);
      }
      break;
    }
    case 'events':
      break;
  }
  return n;
}
