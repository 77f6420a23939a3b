// Webhook fan-out: the relay hook (src/events/relay.ts) that turns every relayed event into
// one queued delivery per ACTIVE subscription it matches (matchSubscription), and the
// enqueue step that replay shares.
//
// Idempotent under re-relay: the delivery id is derived from (subscription, event) and
// whd_enqueue.lua creates a row only when it is absent, so a batch relayed again after a
// crash or a failed hook queues nothing twice. The script also re-reads each
// subscription's status, so a subscription paused or deleted after the in-memory table
// was loaded gets nothing (PAUSED / DISABLED: no rows, no back-fill on resume).
//
// The in-memory subscription table is per Redis client (tests run several servers in one
// process) and is reloaded when keys.webhooksVersion() moves (every subscription change
// bumps it, the dispatcher's auto-disable too); one GET per relayed batch checks it.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import { keys } from '../store/keys';
import { loadScript, runScript } from '../store/scripts';
import { parseEventId, SYSTEM_TENANT, type Event } from './model';
import { registerEventHook, type RelayedEvent } from './relay';
import { loadDispatchSubscriptions, matchSubscription, ownerOf, webhooksVersion, type DispatchSubscription } from './subscriptions';

export const DELIVERY_FAILED_TYPE = 'system.webhook_delivery_failed';
/** Items per whd_enqueue.lua call (5 keys + 7 args each, one owner): bounds one script's run time. */
export const ENQUEUE_CHUNK = 250;
export const DEFAULT_DELIVERY_RETENTION_DAYS = 14;
const DAY_MS = 86_400_000;

type SecretConfig = Pick<Config, 'webhookSecretKey' | 'dataDir' | 'production'>;

/** delivery_id of the fan-out delivery of `eventId` to `subscriptionId` (docs/events.md). */
export function deliveryIdOf(subscriptionId: string, eventId: string): string {
  return `dlv_${createHash('sha256').update(`${subscriptionId}|${eventId}`).digest('hex').slice(0, 24)}`;
}

/** The id inside a queue member `<16-digit seq>|<delivery_id>`. */
export function deliveryIdOfMember(member: string): string {
  const i = member.indexOf('|');
  return i < 0 ? member : member.slice(i + 1);
}

// ------------------------------------------------------------------ per-client state
export interface SubscriptionTable {
  version: number;
  subs: DispatchSubscription[];
  byId: Map<string, DispatchSubscription>;
  /** concrete-tenant subscriptions by owner */
  byTenant: Map<string, DispatchSubscription[]>;
  /** `__system__` subscriptions (receive matching events of every tenant) */
  system: DispatchSubscription[];
}

interface ClientState {
  config?: SecretConfig & Partial<Pick<Config, 'webhookDeliveryRetentionDays'>>;
  table?: SubscriptionTable;
  loading?: Promise<SubscriptionTable>;
  wakers: Set<() => void>;
}
const states = new WeakMap<Redis, ClientState>();

function stateOf(redis: Redis): ClientState {
  let s = states.get(redis);
  if (!s) states.set(redis, (s = { wakers: new Set() }));
  return s;
}

/** The server's config for this client (secret key, delivery retention); the dispatcher
 *  worker calls it at start. Without it the defaults apply. */
export function configureFanout(redis: Redis, config: SecretConfig & Pick<Config, 'webhookDeliveryRetentionDays'>): void {
  stateOf(redis).config = config;
}

/** Called after deliveries were queued (the dispatcher of this process claims at once
 *  instead of at its next poll). Returns the unsubscribe function. */
export function onEnqueued(redis: Redis, wake: () => void): () => void {
  const s = stateOf(redis);
  s.wakers.add(wake);
  return () => s.wakers.delete(wake);
}

function buildTable(version: number, subs: DispatchSubscription[]): SubscriptionTable {
  const byTenant = new Map<string, DispatchSubscription[]>();
  const system: DispatchSubscription[] = [];
  for (const s of subs) {
    if (s.tenant_id === SYSTEM_TENANT) { system.push(s); continue; }
    let l = byTenant.get(s.tenant_id);
    if (!l) byTenant.set(s.tenant_id, (l = []));
    l.push(s);
  }
  return { version, subs, byId: new Map(subs.map((s) => [s.subscription_id, s])), byTenant, system };
}

/** The ACTIVE subscriptions, reloaded when the version moved. The version is read before
 *  the records, so a change racing the load makes the next call reload again. */
export async function subscriptionTable(redis: Redis): Promise<SubscriptionTable> {
  const s = stateOf(redis);
  const version = await webhooksVersion(redis);
  if (s.table && s.table.version === version) return s.table;
  if (s.loading) return s.loading;
  s.loading = loadDispatchSubscriptions(redis, s.config)
    .then((subs) => (s.table = buildTable(version, subs)))
    .finally(() => { s.loading = undefined; });
  return s.loading;
}

// ------------------------------------------------------------------ enqueue
export interface DeliveryItem {
  deliveryId: string;
  subscriptionId: string;
  eventId: string;
  eventType: string;
  traceId?: string;
  traceFlags?: string;
}

export interface EnqueueResult { created: number; duplicate: number; inactive: number }

/** Runs whd_enqueue.lua over `items`: one call per owner and chunk, since an owner's
 *  delivery keys share its slot (DK13); items keep their order within each owner (so each
 *  subscription's queue keeps it). Then marks the owners in the dispatcher's index (DK14). */
export async function enqueueDeliveries(
  redis: Redis, items: DeliveryItem[],
  opts: { mode: 'fanout' | 'replay'; replayId?: string; replayLockTtlMs?: number },
): Promise<EnqueueResult> {
  const total: EnqueueResult = { created: 0, duplicate: 0, inactive: 0 };
  if (items.length === 0) return total;
  const s = stateOf(redis);
  const retentionMs = (s.config?.webhookDeliveryRetentionDays ?? DEFAULT_DELIVERY_RETENTION_DAYS) * DAY_MS;
  const script = loadScript('whd_enqueue');
  const replayId = opts.replayId ?? '';
  const byOwner = new Map<string, DeliveryItem[]>();
  let anyScheduled = false;
  for (const it of items) {
    const owner = ownerOfSub(it.subscriptionId);
    let l = byOwner.get(owner);
    if (!l) byOwner.set(owner, (l = []));
    l.push(it);
  }
  await Promise.all([...byOwner].map(async ([owner, list]) => {
    let scheduled = 0;
    for (let i = 0; i < list.length; i += ENQUEUE_CHUNK) {
      const chunk = list.slice(i, i + ENQUEUE_CHUNK);
      const keyList = [keys.webhookSeq(owner), keys.webhookDueSubs(owner), keys.webhookReplayLeft(owner, replayId),
        keys.webhookReplayLock(owner, opts.mode === 'replay' ? chunk[0].subscriptionId : '')];
      const args: (string | number)[] = [retentionMs, opts.mode, replayId, opts.replayLockTtlMs ?? 0];
      for (const it of chunk) {
        keyList.push(keys.webhookDelivery(owner, it.deliveryId), keys.webhookDue(owner, it.subscriptionId),
          keys.webhookDeliveriesBySub(owner, it.subscriptionId), keys.webhook(owner, it.subscriptionId), keys.webhookLease(owner, it.subscriptionId));
        args.push(it.deliveryId, it.subscriptionId, it.eventId, it.eventType, it.traceId ?? '', it.traceFlags ?? '',
          parseEventId(it.eventId)?.ms.toString() ?? '0');
      }
      const [created, duplicate, inactive, sched] = (await runScript(redis, script, keyList, args)) as number[];
      total.created += created;
      total.duplicate += duplicate;
      total.inactive += inactive;
      scheduled += sched;
    }
    // Only when a queue became eligible: a leased queue is rescheduled by its holder's
    // release. A crash between the script and this mark is repaired by the sweep (DK14).
    if (scheduled > 0) {
      await markOwnerDue(redis, owner, 0);
      anyScheduled = true;
    }
  }));
  if (anyScheduled) for (const w of s.wakers) w();
  return total;
}

/** Lowers `owner`'s entry in the dispatcher's cross-slot index to `dueMs` (0 = now or
 *  earlier: look at once) and moves its generation (whd_owners.lua 'mark', DK14). */
export async function markOwnerDue(redis: Redis, owner: string, dueMs: number | string): Promise<void> {
  await runScript(redis, loadScript('whd_owners'), [keys.webhookDueOwners(), keys.webhookDueOwnersGen()], ['mark', owner, dueMs]);
}

/** Owner tenant named by a subscription id (ids are minted by subscriptions.ts). */
function ownerOfSub(id: string): string {
  const owner = ownerOf(id);
  if (owner === undefined) throw new Error(`not a subscription id: ${id.slice(0, 100)}`);
  return owner;
}

// ------------------------------------------------------------------ the hook
/**
 * Loop guard: a system.webhook_delivery_failed event is never delivered to the very
 * subscription whose delivery it reports (a failing `__system__` subscription selecting
 * `system` would otherwise feed itself one new failing delivery per failure).
 */
function reportsOn(event: Event, subscriptionId: string): boolean {
  if (event.event_type !== DELIVERY_FAILED_TYPE) return false;
  const details = (event.data as { details?: { subscription_id?: unknown } } | undefined)?.details;
  return details?.subscription_id === subscriptionId;
}

/** The deliveries one relayed batch creates (in stream order, per subscription). */
export function matchBatch(table: SubscriptionTable, batch: readonly RelayedEvent[]): DeliveryItem[] {
  const items: DeliveryItem[] = [];
  for (const { event } of batch) {
    const own = table.byTenant.get(event.tenant_id) ?? [];
    for (const list of [own, table.system]) {
      for (const sub of list) {
        if (!matchSubscription(sub, event) || reportsOn(event, sub.subscription_id)) continue;
        items.push({
          deliveryId: deliveryIdOf(sub.subscription_id, event.event_id),
          subscriptionId: sub.subscription_id,
          eventId: event.event_id,
          eventType: event.event_type,
          traceId: event.trace_id,
        });
      }
    }
  }
  return items;
}

export async function fanoutBatch(redis: Redis, batch: RelayedEvent[]): Promise<EnqueueResult> {
  if (batch.length === 0) return { created: 0, duplicate: 0, inactive: 0 };
  const table = await subscriptionTable(redis);
  if (table.subs.length === 0) return { created: 0, duplicate: 0, inactive: 0 };
  return enqueueDeliveries(redis, matchBatch(table, batch), { mode: 'fanout' });
}

registerEventHook('webhook-fanout', async (redis, batch) => { await fanoutBatch(redis, batch); });
