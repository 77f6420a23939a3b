// The upgrade from the pre-DK13 delivery layout (`cycles:whd:*`, one slot per key) to the
// owner-slot layout (`{t:<owner>}:whd:*`): run by every dispatcher at start, a no-op once
// keys.webhookLayout() says '2' (docs/decisions.md DK16).
//
// What moves, per subscription (the registry `cycles:webhooks` plus every id the old
// scheduler names, so a deleted subscription's queue still ends FAILED): the delivery rows
// its index lists (with their remaining TTL), the index, the queue (same members and due
// scores, so the order and the seq tie-break stay), a replay lock and the replay counters
// its rows name; then the owner is marked in the dispatcher's index. The owner's new seq
// counter starts at the old global value, so new members sort after moved ones.
// Single-key commands only (it runs on a cluster too, where old keys can exist only from
// test probes). Crash-safe and idempotent: the new copy is written before the old key is
// deleted, a row already present in the new layout is not overwritten, and a re-run goes on
// from what is left. One process at a time (a lease); the others start dispatching at once
// and deliver the moved work as it appears.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { keys } from '../store/keys';
import { deliveryIdOfMember, markOwnerDue } from './fanout';
import { ownerOf } from './subscriptions';

const LOCK_MS = 120_000;
const CHUNK = 500;

/** Moves the legacy delivery keys; returns how many delivery rows moved (0 when done). */
export async function migrateLegacyDeliveries(redis: Redis, log?: Pick<Logger, 'info' | 'warn'>): Promise<number> {
  if ((await redis.get(keys.webhookLayout())) === '2') return 0;
  const token = `${process.pid}:${Date.now()}`;
  if ((await redis.set(keys.webhookMigrateLock(), token, 'PX', LOCK_MS, 'NX')) !== 'OK') return 0;
  let moved = 0;
  try {
    const ids = new Set<string>();
    for (const list of [await redis.zrange(keys.webhooksAll(), 0, -1), await redis.zrange(keys.legacyWebhookDueSubs(), 0, -1)]) {
      for (const id of list) ids.add(id);
    }
    const seq = await redis.get(keys.legacyWebhookSeq());
    for (const id of ids) {
      const owner = ownerOf(id);
      if (owner === undefined) continue;
      await redis.pexpire(keys.webhookMigrateLock(), LOCK_MS);
      moved += await moveSubscription(redis, owner, id, seq);
    }
    await redis.del(keys.legacyWebhookDueSubs());
    await redis.set(keys.webhookLayout(), '2');
    if (moved > 0) log?.info({ moved }, 'webhook deliveries moved into their owners\' slots (DK16)');
  } finally {
    if ((await redis.get(keys.webhookMigrateLock())) === token) await redis.del(keys.webhookMigrateLock());
  }
  return moved;
}

async function moveSubscription(redis: Redis, owner: string, subId: string, seq: string | null): Promise<number> {
  const oldIndex = keys.legacyWebhookDeliveriesBySub(subId);
  const oldDue = keys.legacyWebhookDue(subId);
  // one key per command: the old keys are in different slots on a cluster
  if ((await redis.exists(oldIndex)) === 0 && (await redis.exists(oldDue)) === 0) return 0;
  if (seq !== null) {
    const cur = Number((await redis.get(keys.webhookSeq(owner))) ?? 0);
    if (cur < Number(seq)) await redis.set(keys.webhookSeq(owner), seq);
  }
  let moved = 0;
  const replays = new Set<string>();
  // rows and the index (history and queued rows alike: a queued row is in the index too)
  const indexTtl = await redis.pttl(oldIndex);
  for (;;) {
    const flat = await redis.zrange(oldIndex, 0, CHUNK - 1, 'WITHSCORES');
    if (flat.length === 0) break;
    for (let i = 0; i < flat.length; i += 2) {
      const member = flat[i];
      const id = deliveryIdOfMember(member);
      const oldRow = keys.legacyWebhookDelivery(id);
      const row = await redis.hgetall(oldRow);
      if (row.delivery_id) {
        const ttl = await redis.pttl(oldRow);
        const newRow = keys.webhookDelivery(owner, id);
        if ((await redis.exists(newRow)) === 0) {
          await redis.hset(newRow, row);
          if (ttl > 0) await redis.pexpire(newRow, ttl);
          moved++;
        }
        if (row.rp) replays.add(row.rp);
        await redis.zadd(keys.webhookDeliveriesBySub(owner, subId), flat[i + 1], member);
      }
      await redis.zrem(oldIndex, member);
      await redis.del(oldRow);
    }
  }
  if (indexTtl > 0) await redis.pexpire(keys.webhookDeliveriesBySub(owner, subId), indexTtl);
  // the queue, then its scheduler entries (its head at the latest)
  let head: string | undefined;
  for (;;) {
    const flat = await redis.zrange(oldDue, 0, CHUNK - 1, 'WITHSCORES');
    if (flat.length === 0) break;
    head ??= flat[1];
    for (let i = 0; i < flat.length; i += 2) {
      await redis.zadd(keys.webhookDue(owner, subId), flat[i + 1], flat[i]);
      await redis.zrem(oldDue, flat[i]);
    }
  }
  // replay bookkeeping: the lock and the outstanding counters the moved rows name
  const oldLock = keys.legacyWebhookReplayLock(subId);
  const lock = await redis.get(oldLock);
  if (lock !== null) {
    const ttl = await redis.pttl(oldLock);
    await redis.set(keys.webhookReplayLock(owner, subId), lock, 'PX', ttl > 0 ? ttl : 1000, 'NX');
    await redis.del(oldLock);
  }
  for (const rp of replays) {
    const old = keys.legacyWebhookReplayLeft(rp);
    const left = await redis.get(old);
    if (left === null) continue;
    const ttl = await redis.pttl(old);
    await redis.set(keys.webhookReplayLeft(owner, rp), left, 'PX', ttl > 0 ? ttl : 1000, 'NX');
    await redis.del(old);
  }
  if (head !== undefined) {
    await redis.zadd(keys.webhookDueSubs(owner), 'LT', head, subId);
    await markOwnerDue(redis, owner, head);
  }
  return moved;
}
