// system.store_connection_lost / system.store_connection_restored (docs/decisions.md DV37).
// The process watches its main Redis connection: the first 'close' after being ready marks
// the loss (process clock); the next 'ready' writes BOTH events, in that order, to the
// `__system__` outbox (signals_store.lua). Nothing can be written while the store is
// unreachable, so `lost` is necessarily recorded after the fact (Event.timestamp = when it
// was written, like every event); both carry data.details.lost_at_ms (process clock: when
// the loss began), restored_at_ms and outage_ms. Several processes seeing the
// same outage produce one pair (the script keeps the first report).
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { keys } from '../../store/keys';
import { loadScript, runScript } from '../../store/scripts';
import { SYSTEM_TENANT } from '../model';

export interface StoreWatch {
  /** resolves when the report of the last outage is written (tests) */
  settled(): Promise<void>;
  stop(): void;
}

export function watchStoreConnection(redis: Redis, log: Logger, label = `${hostname()}:${process.pid}`): StoreWatch {
  let lostAt: number | undefined;
  let attempts = 0;
  let stopped = false;
  let pending: Promise<void> = Promise.resolve();

  const onClose = () => {
    if (stopped || lostAt !== undefined) return;
    // quit()/disconnect() at shutdown end with 'end' and no 'ready': never reported
    lostAt = Date.now();
    attempts = 0;
    log.warn('store connection lost');
  };
  const onReconnecting = () => { attempts++; };
  const onReady = () => {
    if (stopped || lostAt === undefined) return;
    const since = lostAt;
    lostAt = undefined;
    log.info({ outage_ms: Date.now() - since }, 'store connection restored');
    pending = pending.then(() => report(since)).catch((err: unknown) => {
      log.warn({ err }, 'could not record the store outage events');
    });
  };
  const report = async (since: number) => {
    await runScript(redis, loadScript('signals_store'), [keys.signals(SYSTEM_TENANT), keys.outbox(SYSTEM_TENANT)],
      [String(since), label, String(attempts)]);
  };

  redis.on('close', onClose);
  redis.on('reconnecting', onReconnecting);
  redis.on('ready', onReady);
  return {
    settled: () => pending,
    stop() {
      stopped = true;
      redis.off('close', onClose);
      redis.off('reconnecting', onReconnecting);
      redis.off('ready', onReady);
    },
  };
}
