// api_key.expired (docs/decisions.md DV38): a sweep in the worker role finds the keys whose
// expires_at has passed and records the transition once per key (apikey_expire.lua;
// atomic, so several workers racing write one event). Authentication needs no change: it
// already refuses a key past expires_at on every request.
import { randomBytes } from 'node:crypto';
import type { Deps } from '../../http/types';
import { keys } from '../../store/keys';
import { loadScript, runScript } from '../../store/scripts';
import { isCluster } from '../../store/cluster';
import { appendPendingEvent, type PendingEvent } from '../outbox';

/** Keys read per tenant per pass (pipelined in chunks). */
export const KEYS_PER_TENANT = 10_000;
const CHUNK = 500;

/** One pass over every tenant's keys; returns the number of api_key.expired events written. */
export async function keyExpiryPass(deps: Deps): Promise<number> {
  const { redis } = deps;
  const nowMs = Date.now();
  const traceId = randomBytes(16).toString('hex');
  const script = loadScript('apikey_expire');
  let written = 0;
  let cursor = '0';
  do {
    const [next, tenants] = await redis.sscan(keys.tenants(), cursor, 'COUNT', 200);
    cursor = next;
    for (const tenant of tenants) {
      const ids = await redis.zrange(keys.apiKeyIndex(tenant), 0, KEYS_PER_TENANT - 1);
      for (let i = 0; i < ids.length; i += CHUNK) {
        const part = ids.slice(i, i + CHUNK);
        const shas = await redis.mget(part.map((id) => keys.apiKeyId(id)));
        const reads = redis.pipeline();
        const live = shas.filter((s): s is string => !!s);
        for (const sha of live) reads.hmget(keys.apiKeyBySecret(sha), 'status', 'expires_at_ms', 'expired_event_ms');
        const rows = (await reads.exec()) ?? [];
        for (let j = 0; j < rows.length; j++) {
          const [err, v] = rows[j];
          if (err) continue;
          const [status, exp, marked] = v as (string | null)[];
          const expMs = Number(exp ?? 0);
          if (status !== 'ACTIVE' || marked || !(expMs > 0 && expMs <= nowMs)) continue;
          if (!isCluster(redis)) {
            written += Number(await runScript(redis, script, [keys.apiKeyBySecret(live[j]), keys.outbox(tenant)], [traceId]));
            continue;
          }
          // Redis Cluster: the record's slot, then the event into the tenant's (DK5)
          const got = await runScript(redis, script, [keys.apiKeyBySecret(live[j])], [traceId]);
          if (typeof got !== 'string') continue;
          await appendPendingEvent(redis, tenant, JSON.parse(got) as PendingEvent,
            { trace_id: traceId, request_id: '', actor_json: '{"type":"system"}' });
          written++;
        }
      }
    }
  } while (cursor !== '0');
  return written;
}

export function startKeyExpirySweep(deps: Deps, everyMs: number): { stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | undefined;
  const tick = () => {
    if (stopped) return;
    current = keyExpiryPass(deps)
      .then(() => undefined)
      .catch((err: unknown) => { deps.log.error({ err }, 'api key expiry sweep failed'); })
      .then(() => {
        current = undefined;
        if (!stopped) timer = setTimeout(tick, everyMs);
      });
  };
  timer = setTimeout(tick, everyMs);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (current) await current;
    },
  };
}
