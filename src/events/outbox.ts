// Events written from TypeScript (not inside a ledger Lua script): the same entry fields
// as `outbox()` in src/store/lua/ledger_common.lua, so renderEvent reads both alike.
// No count cap (MAXLEN): retention is time-based and done by the relay (docs/events.md).
import { Redis, type ChainableCommander } from 'ioredis';
import { keys } from '../store/keys';

export interface EventCtx {
  trace_id?: string;
  request_id?: string;
  /** JSON of Event.actor, e.g. {"type":"api_key","key_id":"..."} */
  actor_json?: string;
  correlation_id?: string;
  scope?: string;
  /** Event.source (default "cycles-server") */
  source?: string;
}

/** JSON with BigInt written as decimal strings (the outbox convention for int64). */
function dataJson(data: object): string {
  return JSON.stringify(data, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

/** Flat XADD field list of one event entry. */
export function eventFields(type: string, data: object, ctx: EventCtx, tsMs: number = Date.now()): string[] {
  const f = ['type', type, 'data', dataJson(data), 'ts_ms', String(tsMs),
    'trace_id', ctx.trace_id ?? '', 'request_id', ctx.request_id ?? '', 'actor', ctx.actor_json ?? '{}'];
  if (ctx.correlation_id) f.push('correlation_id', ctx.correlation_id);
  if (ctx.scope) f.push('scope', ctx.scope);
  if (ctx.source) f.push('source', ctx.source);
  return f;
}

/**
 * Appends one event to `tenant`'s outbox. On a Redis client it returns the entry's stream
 * id; queued on a pipeline/multi it returns nothing (the caller's exec() carries the reply).
 * ts_ms is the caller's clock; the stream id (Redis clock) orders the tenant's events.
 */
export function appendEvent(redis: Redis, tenant: string, type: string, data: object, ctx: EventCtx): Promise<string>;
export function appendEvent(redis: ChainableCommander, tenant: string, type: string, data: object, ctx: EventCtx): void;
export function appendEvent(redis: Redis | ChainableCommander, tenant: string, type: string, data: object, ctx: EventCtx): void | Promise<string>;
export function appendEvent(redis: Redis | ChainableCommander, tenant: string, type: string, data: object, ctx: EventCtx): void | Promise<string> {
  const args = eventFields(type, data, ctx);
  if (redis instanceof Redis || (redis as { isCluster?: boolean }).isCluster === true) {
    return (redis as Redis).xadd(keys.outbox(tenant), '*', ...args).then((id) => String(id));
  }
  redis.xadd(keys.outbox(tenant), '*', ...args);
}

/** An event a script built but could not append itself (its tenant's outbox is in another
 *  Cluster slot, docs/decisions.md DK5): `data` is already JSON. */
export interface PendingEvent { type: string; data: string; ts_ms: number }

/** Appends a script's PendingEvent to `tenant`'s outbox (same entry fields as outbox()). */
export async function appendPendingEvent(redis: Redis, tenant: string, ev: PendingEvent, ctx: EventCtx): Promise<string> {
  const f = eventFields(ev.type, {}, ctx, ev.ts_ms);
  f[3] = ev.data;
  return String(await redis.xadd(keys.outbox(tenant), '*', ...f));
}
