// The in-process API key cache must never outlive a write to the key record: revocations
// and permission changes made by any client take effect on the very next lookup.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { ApiKeyCache } from '../src/auth/keyCache';
import { storeNewKey, sha256Hex } from '../src/auth/apiKeys';
import { keys } from '../src/store/keys';

let r: TestRedis;
let client: Redis;
let cache: ApiKeyCache;

async function hgetallCalls(): Promise<number> {
  const info = await r.client.info('commandstats');
  const m = /cmdstat_hgetall:calls=(\d+)/.exec(info);
  return m ? Number(m[1]) : 0;
}

// Redis pushes the invalidation to our subscriber socket while it executes the write,
// before the writer gets its reply. A request that follows a write over the network
// (another process, or an HTTP round trip) is therefore always behind the push; in one
// process, the test lets one event-loop turn pass — the least any such round trip takes.
const turn = () => new Promise((res) => setImmediate(res));

const waitFor = async (cond: () => boolean | Promise<boolean>, ms = 5000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 10));
  }
  throw new Error('condition not met in time');
};

beforeAll(async () => {
  r = await startTestRedis();
  client = new Redis(r.url, { maxRetriesPerRequest: 20 });
  client.on('error', () => {});
  cache = new ApiKeyCache(client);
  await cache.start();
});
afterAll(async () => {
  await cache.stop();
  client.disconnect();
  await r.stop();
});

describe('ApiKeyCache', () => {
  it('serves a repeated lookup from memory (no second HGETALL)', async () => {
    expect(cache.isActive).toBe(true);
    const { secret } = await storeNewKey(r.client, { tenant_id: 'acme', permissions: ['balances:read'], scope_filter: [], expires_at_ms: 0 });
    const first = await cache.lookup(secret);
    expect(first?.tenant_id).toBe('acme');
    const before = await hgetallCalls();
    for (let i = 0; i < 5; i++) expect((await cache.lookup(secret))?.tenant_id).toBe('acme');
    expect(await hgetallCalls()).toBe(before);
  });

  it('a revocation written by another client is seen on the very next lookup', async () => {
    const { secret } = await storeNewKey(r.client, { tenant_id: 'acme', permissions: ['balances:read'], scope_filter: [], expires_at_ms: 0 });
    expect((await cache.lookup(secret))?.status).toBe('ACTIVE');
    // another connection (e.g. another server instance's admin plane) revokes it
    await r.client.hset(keys.apiKeyBySecret(sha256Hex(secret)), 'status', 'REVOKED');
    await turn();
    expect((await cache.lookup(secret))?.status).toBe('REVOKED');
  });

  it('a permission change is seen on the next lookup, repeatedly', async () => {
    const { secret } = await storeNewKey(r.client, { tenant_id: 'acme', permissions: ['balances:read'], scope_filter: [], expires_at_ms: 0 });
    const k = keys.apiKeyBySecret(sha256Hex(secret));
    for (let i = 0; i < 20; i++) {
      const perms = i % 2 ? ['balances:read'] : ['reservations:create'];
      await r.client.hset(k, 'permissions', JSON.stringify(perms));
      await turn();
      expect((await cache.lookup(secret))?.permissions).toEqual(perms);
    }
  });

  it('an unknown key is cached as absent until it is created', async () => {
    const secret = 'cyc_live_doesnotexist00000000000000000';
    expect(await cache.lookup(secret)).toBeNull();
    await r.client.hset(keys.apiKeyBySecret(sha256Hex(secret)), { key_id: 'key_x', tenant_id: 'acme', status: 'ACTIVE', permissions: '[]', scope_filter: '[]', expires_at_ms: '0' });
    await turn();
    expect((await cache.lookup(secret))?.key_id).toBe('key_x');
  });

  it('FLUSHALL empties the cache', async () => {
    const { secret } = await storeNewKey(r.client, { tenant_id: 'acme', permissions: [], scope_filter: [], expires_at_ms: 0 });
    expect(await cache.lookup(secret)).not.toBeNull();
    await r.client.flushall();
    // The flush notice travels on the tracking connection, not on the one that sent
    // FLUSHALL: on a loaded machine it can land a few event-loop turns after the reply.
    await waitFor(async () => (await cache.lookup(secret)) === null, 2000);
    expect(await cache.lookup(secret)).toBeNull();
  });

  it('after a Redis crash it bypasses itself, then re-arms tracking and stays coherent', async () => {
    const { secret } = await storeNewKey(r.client, { tenant_id: 'acme', permissions: [], scope_filter: [], expires_at_ms: 0 });
    await r.client.bgrewriteaof();
    await new Promise((res) => setTimeout(res, 300));
    await r.restart();
    await waitFor(() => cache.isActive);
    const k = keys.apiKeyBySecret(sha256Hex(secret));
    await r.client.hset(k, { key_id: 'key_y', tenant_id: 'acme', status: 'ACTIVE', permissions: '[]', scope_filter: '[]', expires_at_ms: '0' });
    await turn();
    expect((await cache.lookup(secret))?.status).toBe('ACTIVE');
    const before = await hgetallCalls();
    expect((await cache.lookup(secret))?.status).toBe('ACTIVE'); // from memory again
    expect(await hgetallCalls()).toBe(before);
    await r.client.hset(k, 'status', 'REVOKED');
    await turn();
    expect((await cache.lookup(secret))?.status).toBe('REVOKED');
  });
});
