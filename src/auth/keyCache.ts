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
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { keys } from '../store/keys';
import { decodeRecord, sha256Hex, type ApiKeyRecord } from './apiKeys';

const PREFIX = '{k:';
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const MAX_ENTRIES = 10_000;

export class ApiKeyCache {
  private readonly entries = new Map<string, ApiKeyRecord | null>();
  private active = false;
  private invalidations = 0;
  private readonly sub: Redis;
  private readonly tracker: Redis;
  private stopped = false;

  constructor(private readonly redis: Redis, private readonly log?: Logger) {
    // autoResubscribe off: after a reconnect we re-run the whole activation (new client id).
    this.sub = redis.duplicate({ lazyConnect: true, enableAutoPipelining: false, autoResubscribe: false });
    this.tracker = redis.duplicate({ lazyConnect: true, enableAutoPipelining: false });
    for (const c of [this.sub, this.tracker]) {
      c.on('error', (e) => this.log?.warn({ err: e }, 'api key cache connection error'));
      c.on('close', () => this.deactivate());
      c.on('ready', () => void this.activate());
    }
    // messageBuffer keeps the key list as an array (null on FLUSHALL/FLUSHDB).
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer[] | null) => {
      if (String(channel) === '__redis__:invalidate') this.invalidate(message);
    });
  }

  async start(): Promise<void> {
    await Promise.all([this.sub.connect(), this.tracker.connect()]);
    await this.activate();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.deactivate();
    this.sub.disconnect();
    this.tracker.disconnect();
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
    // Both connections fire 'ready'; one activation at a time.
    if (!this.activating) this.activating = this.doActivate().finally(() => { this.activating = null; });
    return this.activating;
  }

  private async doActivate(): Promise<void> {
    if (this.stopped || this.active) return;
    if (this.sub.status !== 'ready' || this.tracker.status !== 'ready') return;
    try {
      const subId = await this.sub.client('ID');
      await this.sub.subscribe('__redis__:invalidate');
      await this.tracker.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(subId), 'BCAST', 'PREFIX', PREFIX);
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
