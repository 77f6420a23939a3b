// Revocation-safe in-process cache of API key records, so authenticating a tenant key
// costs no Redis round trip on the hot path.
//
// Safety comes from Redis server-assisted client-side caching: a tracker connection runs
// `CLIENT TRACKING ON REDIRECT <sub> BCAST PREFIX {k:` so that every write to any key
// record (`{k:<sha256>}:apikey`: revoke, permission change, expiry change), by any client
// in any server instance, makes Redis push an invalidation to our subscriber connection,
// and the entry is dropped. Redis sends that push while it executes the write, before the
// writer sees its reply, so a request made after a revocation has returned meets an
// empty cache entry. Whenever either connection is not ready (start-up, reconnect), the
// cache is bypassed and cleared: every lookup then reads Redis, as without a cache.
// A fill racing an invalidation is discarded (sequence check), so a stale record is never
// stored. Expiry by time is checked per request against the record's expires_at.
import { Redis, type RedisOptions } from 'ioredis';
import { isCluster, masterNodes, nodeOptions } from '../store/cluster';
import type { Logger } from 'pino';
import { keys } from '../store/keys';
import { decodeRecord, sha256Hex, type ApiKeyRecord } from './apiKeys';

const PREFIX = '{k:';
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const MAX_ENTRIES = 10_000;

interface Pair { sub: Redis; tracker: Redis }

export class ApiKeyCache {
  private readonly entries = new Map<string, ApiKeyRecord | null>();
  private active = false;
  private invalidations = 0;
  private pairs: Pair[] = [];
  private stopped = false;
  private readonly cluster: boolean;

  constructor(private readonly redis: Redis, private readonly log?: Logger) {
    // On a Redis Cluster the key records spread over every master, and each master pushes
    // invalidations only for its own keys: one tracker + subscriber pair per master, and the
    // cache is used only while every pair is armed (docs/decisions.md DK3).
    this.cluster = isCluster(redis);
    if (!this.cluster) this.pairs = [this.makePair((o) => redis.duplicate(o))];
  }

  private makePair(open: (o: Partial<RedisOptions>) => Redis): Pair {
    // autoResubscribe off: after a reconnect we re-run the whole activation (new client id).
    const sub = open({ lazyConnect: true, enableAutoPipelining: false, autoResubscribe: false });
    const tracker = open({ lazyConnect: true, enableAutoPipelining: false });
    for (const c of [sub, tracker]) {
      c.on('error', (e) => this.log?.warn({ err: e }, 'api key cache connection error'));
      c.on('close', () => { this.deactivate(); if (this.cluster) this.scheduleRebuild(); });
      c.on('ready', () => void this.activate());
    }
    // messageBuffer keeps the key list as an array (null on FLUSHALL/FLUSHDB).
    sub.on('messageBuffer', (channel: Buffer, message: Buffer[] | null) => {
      if (String(channel) === '__redis__:invalidate') this.invalidate(message);
    });
    return { sub, tracker };
  }

  async start(): Promise<void> {
    if (this.cluster) {
      (this.redis as unknown as NodeJS.EventEmitter).on('+node', () => this.scheduleRebuild());
      (this.redis as unknown as NodeJS.EventEmitter).on('-node', () => this.scheduleRebuild());
      this.buildClusterPairs();
    }
    await Promise.all(this.pairs.flatMap((p) => [p.sub.connect(), p.tracker.connect()]));
    await this.activate();
  }

  private rebuildTimer: NodeJS.Timeout | undefined;

  /** Cluster: the master set may have changed (failover, resharding): re-open the pairs. */
  private scheduleRebuild(): void {
    if (this.stopped || this.rebuildTimer) return;
    this.rebuildTimer = setTimeout(() => {
      this.rebuildTimer = undefined;
      if (this.stopped) return;
      const before = this.pairs;
      this.deactivate();
      this.buildClusterPairs();
      for (const p of before) { p.sub.disconnect(); p.tracker.disconnect(); }
      for (const p of this.pairs) {
        p.sub.connect().catch(() => this.scheduleRebuild());
        p.tracker.connect().catch(() => this.scheduleRebuild());
      }
    }, 250);
    this.rebuildTimer.unref();
  }

  private buildClusterPairs(): void {
    this.pairs = masterNodes(this.redis).map((node) => this.makePair((o) => new Redis(nodeOptions(node, o))));
  }

  /** Cluster: every slot's master (as ioredis knows the map now) has an armed pair. */
  private coversEverySlot(pairs: Pair[]): boolean {
    const armed = new Set(pairs.map((p) => `${p.tracker.options.host}:${p.tracker.options.port}`));
    const slots = (this.redis as unknown as { slots: string[][] }).slots;
    for (let i = 0; i < 16384; i++) {
      const owner = slots[i]?.[0];
      if (!owner || !armed.has(owner)) return false;
    }
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.rebuildTimer);
    this.deactivate();
    for (const p of this.pairs) { p.sub.disconnect(); p.tracker.disconnect(); }
  }

  /** Whether lookups are currently served from memory (for tests and /metrics). */
  get isActive(): boolean {
    return this.active;
  }

  async lookup(secret: string): Promise<ApiKeyRecord | null> {
    const sha = sha256Hex(secret);
    if (this.active && this.entries.has(sha)) {
      // Let every I/O callback that is already due run first: an invalidation push that
      // reached our socket before this request did (the case after a completed
      // revocation) is then applied before we answer from memory, even when a busy event
      // loop saw both sockets become readable in the same poll.
      await nextTurn();
      if (this.active && this.entries.has(sha)) return this.entries.get(sha)!;
    }
    const seq = this.invalidations;
    const wasActive = this.active;
    const record = decodeRecord(await this.redis.hgetall(keys.apiKeyBySecret(sha)));
    // Store only if tracking was on for the whole read and nothing was invalidated meanwhile.
    if (wasActive && this.active && seq === this.invalidations) {
      if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(sha, record);
    }
    return record;
  }

  private activating: Promise<void> | null = null;

  private activate(): Promise<void> {
    // Every connection fires 'ready'; one activation at a time.
    if (!this.activating) this.activating = this.doActivate().finally(() => { this.activating = null; });
    return this.activating;
  }

  private async doActivate(): Promise<void> {
    if (this.stopped || this.active) return;
    const pairs = this.pairs;
    if (pairs.length === 0 || pairs.some((p) => p.sub.status !== 'ready' || p.tracker.status !== 'ready')) return;
    try {
      for (const p of pairs) {
        const subId = await p.sub.client('ID');
        await p.sub.subscribe('__redis__:invalidate');
        await p.tracker.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(subId), 'BCAST', 'PREFIX', PREFIX);
      }
      // a pair closed or the master set changed meanwhile: not armed everywhere
      if (pairs !== this.pairs || pairs.some((p) => p.sub.status !== 'ready' || p.tracker.status !== 'ready')) return;
      if (this.cluster && !this.coversEverySlot(pairs)) { this.scheduleRebuild(); return; }
      this.entries.clear();
      this.invalidations++;
      this.active = true;
    } catch (e) {
      this.log?.warn({ err: e }, 'api key cache disabled: client tracking unavailable');
      this.deactivate();
    }
  }

  private deactivate(): void {
    this.active = false;
    this.invalidations++;
    this.entries.clear();
  }

  private invalidate(message: Buffer[] | Buffer | null): void {
    this.invalidations++;
    if (!message || (Array.isArray(message) && message.length === 0)) {
      this.entries.clear(); // FLUSHALL / FLUSHDB
      return;
    }
    for (const k of Array.isArray(message) ? message : [message]) {
      const m = /^\{k:([0-9a-f]{64})\}:apikey$/.exec(String(k));
      if (m) this.entries.delete(m[1]);
      else this.entries.clear();
    }
  }
}
