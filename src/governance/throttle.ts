// Per-client throttle of the public action-kind endpoints (listActionKinds, getActionKind:
// "MUST 429 + Retry-After when throttled"; recommended baseline 60 requests/minute/IP).
// Fixed one-minute windows per client key, in process memory: a public read of static data
// needs no shared state, so with CYCLES_HTTP_PROCESSES=N a client gets at most N× the limit
// (decision DG4). Pure apart from the injected clock.

export const THROTTLE_WINDOW_MS = 60_000;
/** Most clients tracked at once; past it, expired windows are dropped, then the oldest. */
export const THROTTLE_CLIENTS_MAX = 10_000;

export type ThrottleVerdict = { ok: true } | { ok: false; retryAfterSeconds: number };

export class ClientThrottle {
  private readonly windows = new Map<string, { startMs: number; count: number }>();

  constructor(
    /** requests per client per window; 0 = no throttle */
    readonly perMinute: number,
    private readonly now: () => number = Date.now,
    private readonly clientsMax = THROTTLE_CLIENTS_MAX,
  ) {}

  /** Counts one request of `client` and says whether it may be served. */
  take(client: string): ThrottleVerdict {
    if (this.perMinute <= 0) return { ok: true };
    const t = this.now();
    let w = this.windows.get(client);
    if (!w || t - w.startMs >= THROTTLE_WINDOW_MS) {
      if (w) this.windows.delete(client);
      this.makeRoom(t);
      w = { startMs: t, count: 0 };
      this.windows.set(client, w);
    }
    if (w.count >= this.perMinute) {
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((w.startMs + THROTTLE_WINDOW_MS - t) / 1000)) };
    }
    w.count++;
    return { ok: true };
  }

  get size(): number {
    return this.windows.size;
  }

  private makeRoom(t: number): void {
    if (this.windows.size < this.clientsMax) return;
    for (const [k, w] of this.windows) if (t - w.startMs >= THROTTLE_WINDOW_MS) this.windows.delete(k);
    // Still full: forget the oldest windows (insertion order); those clients start afresh.
    for (const k of this.windows.keys()) {
      if (this.windows.size < this.clientsMax) break;
      this.windows.delete(k);
    }
  }
}
