// Webhook security: SSRF checks on create and update (loopback, IPv4-mapped IPv6, hostnames
// resolving to loopback, http without allow_http, the unspecified address, allowlist globs),
// tenant isolation on every /v1/webhooks/{id} operation, the signing secret returned once
// and never stored or served in plain text, custom header values write-only, and the secret
// key (env, data-dir file with mode 0600, AAD binding).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putTenant } from './helpers/fixtures';
import { expectValidStoredEvents } from './helpers/events';
import { keys } from '../src/store/keys';
import { blockedBy, checkWebhookUrl, defaultSecurityConfig, urlAllowed } from '../src/events/urlCheck';
import { loadDispatchSubscription, matchSubscription } from '../src/events/subscriptions';
import { DEV_WEBHOOK_KEY_FILE } from '../src/events/secretBox';

let s: TestServer;
let n = 0;
const uniq = (p: string) => `${p}-${process.pid}-${++n}`;
const HOOK = 'https://93.184.215.14/hook';

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64') });
});
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const asKey = (key: string, method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { key, body });

async function tenant(): Promise<string> {
  const t = uniq('sec');
  await putTenant(s.redis.client, t);
  return t;
}

/** Every string value in Redis (strings, hash fields and values, stream fields, members). */
async function allValues(redis: Redis): Promise<string> {
  const parts: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const k of batch) {
      const type = await redis.type(k);
      parts.push(k);
      if (type === 'string') parts.push(String(await redis.get(k)));
      else if (type === 'hash') parts.push(...Object.entries(await redis.hgetall(k)).flat());
      else if (type === 'zset') parts.push(...(await redis.zrange(k, 0, -1)));
      else if (type === 'set') parts.push(...(await redis.smembers(k)));
      else if (type === 'list') parts.push(...(await redis.lrange(k, 0, -1)));
      else if (type === 'stream') parts.push(...(await redis.xrange(k, '-', '+')).flatMap(([, f]) => f));
    }
  } while (cursor !== '0');
  return parts.join('\n');
}

describe('SSRF: URL checks on create and update (default security config)', () => {
  const refused = async (url: string, t?: string) => {
    const r = await admin('POST', `/v1/admin/webhooks${t ? `?tenant_id=${t}` : ''}`, { url, event_types: ['budget.created'] });
    expect([r.status, r.body.error], url).toEqual([400, 'WEBHOOK_URL_INVALID']);
    return r;
  };

  it('loopback, private, link-local and unspecified addresses are refused, whatever their spelling', async () => {
    for (const url of ['https://127.0.0.1/hook', 'https://127.9.9.9:8443/x', 'https://[::1]/', 'https://[::ffff:127.0.0.1]/hook',
      'https://[::ffff:7f00:1]/hook', 'https://[64:ff9b::7f00:1]/', 'https://2130706433/', 'https://0x7f.1/', 'https://10.1.2.3/',
      'https://169.254.169.254/latest/meta-data', 'https://192.168.1.1/', 'https://172.16.0.1/', 'https://[fd00::1]/',
      'https://0.0.0.0/', 'https://[::]/']) {
      await refused(url);
    }
  });

  it('a hostname that resolves to loopback (localhost) is refused; no address leaks in the message', async () => {
    const r = await refused('https://localhost/hook');
    expect(r.body.message).toMatch(/blocked range/);
    expect(r.body.message).not.toMatch(/127\.0\.0\.1|::1/);
  });

  it('http is refused unless allow_http; credentials in the URL are refused', async () => {
    await refused('http://93.184.215.14/hook');
    await refused('https://user:pw@93.184.215.14/hook');
    await refused('ftp://93.184.215.14/hook');
  });

  it('the same checks guard the tenant plane and PATCH url; a refused PATCH leaves the stored URL', async () => {
    const t = await tenant();
    const key = await s.tenantKey(t, ['webhooks:read', 'webhooks:write']);
    const c = await asKey(key, 'POST', '/v1/webhooks', { url: 'https://localhost/x', event_types: ['budget.created'] });
    expect([c.status, c.body.error]).toEqual([400, 'WEBHOOK_URL_INVALID']);
    const ok = await asKey(key, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['budget.created'] });
    const id = ok.body.subscription.subscription_id;
    for (const url of ['https://[::ffff:10.0.0.1]/', 'http://93.184.215.14/']) {
      const p = await asKey(key, 'PATCH', `/v1/webhooks/${id}`, { url });
      expect([p.status, p.body.error]).toEqual([400, 'WEBHOOK_URL_INVALID']);
    }
    expect((await asKey(key, 'GET', `/v1/webhooks/${id}`)).body.url).toBe(HOOK);
  });

  it('the security config opens loopback over http for a test receiver; 0.0.0.0 stays refused; the allowlist narrows', async () => {
    try {
      await admin('PUT', '/v1/admin/config/webhook-security', { allow_http: true, blocked_cidr_ranges: [] });
      const ok = await admin('POST', '/v1/admin/webhooks', { url: 'http://127.0.0.1:9/hook', event_types: ['budget.created'] });
      expect(ok.status).toBe(201);
      await refused('http://0.0.0.0:9/hook');
      await admin('PUT', '/v1/admin/config/webhook-security', { allowed_url_patterns: ['https://*.example.com/*'] });
      await refused('https://evil.test/x.example.com/');
      await refused('https://example.com.evil.test/');
      await refused('https://hooks.example.com:8443/x');
      // allowed by the glob; the host does not resolve here, which provisioning accepts
      // (nothing to block yet; the delivery-time check refuses it until it resolves safely)
      expect((await admin('POST', '/v1/admin/webhooks', { url: 'https://hooks.example.com/in', event_types: ['budget.created'] })).status).toBe(201);
    } finally {
      await s.redis.client.del(keys.webhookSecurityConfig());
    }
  });

  it('checkWebhookUrl: strict mode (delivery) refuses an unresolvable host; addresses are returned for connecting', async () => {
    const cfg = defaultSecurityConfig();
    await expect(checkWebhookUrl('https://no-such-host.invalid/x', cfg)).rejects.toMatchObject({ code: 'WEBHOOK_URL_INVALID' });
    expect((await checkWebhookUrl('https://no-such-host.invalid/x', cfg, { allowUnresolved: true })).addresses).toEqual([]);
    expect((await checkWebhookUrl('https://93.184.215.14/x', cfg)).addresses).toEqual(['93.184.215.14']);
    const open = { blocked_cidr_ranges: [], allowed_url_patterns: [], allow_http: true };
    expect((await checkWebhookUrl('http://localhost:1/x', open)).addresses.length).toBeGreaterThan(0);
  });

  it('blockedBy / urlAllowed units', () => {
    const d = defaultSecurityConfig().blocked_cidr_ranges;
    expect(blockedBy('::ffff:192.168.0.1', d)).toBe('192.168.0.0/16');
    expect(blockedBy('::ffff:c0a8:1', d)).toBe('192.168.0.0/16');
    expect(blockedBy('fe80::1', [...d, 'fe80::/10'])).toBe('fe80::/10');
    expect(blockedBy('10.0.0.1', ['::ffff:10.0.0.0/104'])).toBe('::ffff:10.0.0.0/104');
    expect(blockedBy('93.184.215.14', d)).toBeUndefined();
    expect(blockedBy('0.1.2.3', [])).toBe('unspecified address');
    expect(urlAllowed('https://a.b.example.com/x/y?z=1', ['https://*.example.com/*'])).toBe(true);
    expect(urlAllowed('https://evil.com/.example.com/', ['https://*.example.com/*'])).toBe(false);
    expect(urlAllowed('https://hooks.example.com/any/path', ['https://hooks.example.com'])).toBe(true);
    expect(urlAllowed('https://x@hooks.example.com/', ['https://*hooks.example.com/*'])).toBe(false);
  });
});

describe('tenant isolation on /v1/webhooks/{id}', () => {
  it('another tenant\'s subscription is 404 WEBHOOK_NOT_FOUND on GET, PATCH and DELETE, and stays unchanged; lists never show it', async () => {
    const [a, b] = [await tenant(), await tenant()];
    const ka = await s.tenantKey(a, ['webhooks:read', 'webhooks:write']);
    const kb = await s.tenantKey(b, ['webhooks:read', 'webhooks:write']);
    const theirs = (await asKey(kb, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['budget.created'], name: 'b' })).body.subscription.subscription_id;
    const before = await s.redis.client.hgetall(keys.webhook(b, theirs));
    const unknown = `whsub_${a}_${'0'.repeat(24)}`;
    for (const id of [theirs, unknown, 'nonsense']) {
      for (const [m, body] of [['GET', undefined], ['PATCH', { name: 'pwned' }], ['DELETE', undefined]] as const) {
        const r = await asKey(ka, m, `/v1/webhooks/${id}`, body);
        expect([r.status, r.body?.error], `${m} ${id}`).toEqual([404, 'WEBHOOK_NOT_FOUND']);
      }
    }
    // the message of a foreign id is the one of an unknown id (no existence oracle)
    const foreign = await asKey(ka, 'GET', `/v1/webhooks/${theirs}`);
    expect(foreign.body.message).toBe(`Webhook subscription ${theirs} not found`);
    expect(await s.redis.client.hgetall(keys.webhook(b, theirs))).toEqual(before);
    expect((await asKey(ka, 'GET', '/v1/webhooks')).body.subscriptions).toEqual([]);
    // a system subscription is not reachable with a tenant key either
    const sys = (await admin('POST', '/v1/admin/webhooks', { url: HOOK, event_types: ['policy.deleted'] })).body.subscription.subscription_id;
    expect((await asKey(ka, 'GET', `/v1/webhooks/${sys}`)).status).toBe(404);
    await admin('DELETE', `/v1/admin/webhooks/${sys}`);
  });

  it('tenant keys never reach the admin-plane webhook operations; read-only keys cannot write', async () => {
    const t = await tenant();
    const key = await s.tenantKey(t, ['webhooks:read', 'webhooks:write', 'admin:write', 'admin:read']);
    for (const [m, p] of [['GET', '/v1/admin/webhooks'], ['POST', '/v1/admin/webhooks'], ['GET', '/v1/admin/config/webhook-security'],
      ['PUT', '/v1/admin/config/webhook-security'], ['POST', '/v1/admin/webhooks/bulk-action']] as const) {
      const r = await asKey(key, m, p, m === 'GET' ? undefined : {});
      expect(r.status, `${m} ${p}`).toBe(401);
    }
    const ro = await s.tenantKey(t, ['webhooks:read']);
    const id = (await asKey(key, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['budget.created'] })).body.subscription.subscription_id;
    for (const [m, body] of [['PATCH', { name: 'x' }], ['DELETE', undefined]] as const) {
      expect((await asKey(ro, m, `/v1/webhooks/${id}`, body)).status).toBe(403);
    }
    expect((await asKey(ro, 'GET', `/v1/webhooks/${id}`)).status).toBe(200);
  });
});

describe('secrets', () => {
  it('the signing secret is returned once; GET, lists and PATCH responses never carry it; Redis holds neither it nor header values in plain text', async () => {
    const t = await tenant();
    const key = await s.tenantKey(t, ['webhooks:read', 'webhooks:write']);
    const headerValue = `Bearer tok_${randomBytes(12).toString('hex')}`;
    const c = await asKey(key, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['budget.created'], headers: { Authorization: headerValue } });
    expect(c.status).toBe(201);
    const secret = c.body.signing_secret as string;
    expect(secret).toMatch(/^whsec_/);
    const id = c.body.subscription.subscription_id;
    const rotated = `rot_${randomBytes(12).toString('hex')}`;
    const reads = [
      await asKey(key, 'GET', `/v1/webhooks/${id}`), await asKey(key, 'GET', '/v1/webhooks'),
      await admin('GET', `/v1/admin/webhooks/${id}`), await admin('GET', `/v1/admin/webhooks?tenant_id=${t}`),
      await admin('GET', `/v1/webhooks?tenant=${t}`),
      await asKey(key, 'PATCH', `/v1/webhooks/${id}`, { signing_secret: rotated, headers: { Authorization: '********' } }),
      await admin('PATCH', `/v1/admin/webhooks/${id}`, { name: 'n' }),
      await admin('POST', '/v1/admin/webhooks/bulk-action', { filter: { tenant_id: t }, action: 'PAUSE', idempotency_key: uniq('k') }),
    ];
    for (const r of reads) {
      expect(r.status).toBe(200);
      for (const needle of [secret, rotated, headerValue, 'tok_']) expect(r.text).not.toContain(needle);
    }
    const stored = await allValues(s.redis.client);
    for (const needle of [secret, rotated, headerValue, secret.slice(6)]) expect(stored).not.toContain(needle);
    // ...and the worker's view decrypts them
    const d = await loadDispatchSubscription(s.redis.client, id, s.server.config);
    expect(d).toMatchObject({ signing_secret: rotated, headers: { Authorization: headerValue } });
    expect(d!.secret_error).toBeUndefined();
  });

  it('ciphertexts are bound to their row and field: a secret copied to another subscription does not open', async () => {
    const t = await tenant();
    const mk = async () => (await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'] })).body.subscription.subscription_id;
    const [a, b] = [await mk(), await mk()];
    const enc = await s.redis.client.hget(keys.webhook(t, a), 'secret_enc');
    await s.redis.client.hset(keys.webhook(t, b), 'secret_enc', enc!);
    const d = await loadDispatchSubscription(s.redis.client, b, s.server.config);
    expect(d!.signing_secret).toBe('');
    expect(d!.secret_error).toMatch(/failed authentication/);
  });

  it('without CYCLES_WEBHOOK_SECRET_KEY the key is generated in the data dir (mode 0600) and reused by the next start; another key cannot open', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cycles-whkey-'));
    const one = await startTestServer({ CYCLES_DATA_DIR: dir });
    try {
      await putTenant(one.redis.client, 'keyfile-t');
      const c = await call(one.adminUrl, 'POST', '/v1/admin/webhooks?tenant_id=keyfile-t', { adminKey: one.adminKey, body: { url: HOOK, event_types: ['budget.created'] } });
      expect(c.status).toBe(201);
      const file = path.join(dir, DEV_WEBHOOK_KEY_FILE);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const id = c.body.subscription.subscription_id;
      const again = await loadDispatchSubscription(one.redis.client, id, { webhookSecretKey: undefined, dataDir: dir, production: false });
      expect(again!.signing_secret).toBe(c.body.signing_secret);
      const other = await loadDispatchSubscription(one.redis.client, id, { webhookSecretKey: randomBytes(32), dataDir: dir, production: false });
      expect(other!.secret_error).toMatch(/another key/);
    } finally {
      await one.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('matchSubscription (fan-out and replay)', () => {
  const ev = (tenant_id: string, event_type: string, scope?: string) =>
    ({ tenant_id, event_type, category: event_type.split('.')[0], ...(scope ? { scope } : {}) }) as any;
  const sub = (tenant_id: string, event_types: string[], event_categories: string[] = [], scope_filter?: string) =>
    ({ tenant_id, event_types, event_categories, ...(scope_filter ? { scope_filter } : {}) });

  it('tenancy: __system__ receives every tenant\'s events; a concrete tenant only its own', () => {
    expect(matchSubscription(sub('__system__', ['budget.created']), ev('acme', 'budget.created'))).toBe(true);
    expect(matchSubscription(sub('__system__', ['system.high_latency']), ev('__system__', 'system.high_latency'))).toBe(true);
    expect(matchSubscription(sub('acme', ['budget.created']), ev('acme', 'budget.created'))).toBe(true);
    expect(matchSubscription(sub('acme', ['budget.created']), ev('other', 'budget.created'))).toBe(false);
    expect(matchSubscription(sub('acme', [], ['budget']), ev('__system__', 'budget.created'))).toBe(false);
  });

  it('fail-closed: a concrete tenant\'s corrupted selectors never deliver admin-only events (type OR category)', () => {
    expect(matchSubscription(sub('acme', ['api_key.created']), ev('acme', 'api_key.created'))).toBe(false);
    expect(matchSubscription(sub('acme', [], ['webhook']), ev('acme', 'webhook.updated'))).toBe(false);
    expect(matchSubscription(sub('acme', ['budget.created']), { ...ev('acme', 'budget.created'), category: 'system' })).toBe(false);
    expect(matchSubscription(sub('__system__', ['api_key.created']), ev('acme', 'api_key.created'))).toBe(true);
  });

  it('selectors: type listed OR category listed', () => {
    expect(matchSubscription(sub('acme', ['budget.created'], ['reservation']), ev('acme', 'reservation.denied'))).toBe(true);
    expect(matchSubscription(sub('acme', ['budget.created'], ['reservation']), ev('acme', 'budget.funded'))).toBe(false);
  });

  it('scope_filter: exact, or trailing * = strictly deeper; scope-less events never match a filter', () => {
    const f = sub('acme', [], ['budget'], 'tenant:acme/*');
    expect(matchSubscription(f, ev('acme', 'budget.created', 'tenant:acme/workspace:eng'))).toBe(true);
    expect(matchSubscription(f, ev('acme', 'budget.created', 'tenant:acme'))).toBe(false);
    expect(matchSubscription(f, ev('acme', 'budget.created'))).toBe(false);
    const exact = sub('acme', [], ['budget'], 'tenant:acme/workspace:eng');
    expect(matchSubscription(exact, ev('acme', 'budget.created', 'tenant:acme/workspace:eng'))).toBe(true);
    expect(matchSubscription(exact, ev('acme', 'budget.created', 'tenant:acme/workspace:eng/app:x'))).toBe(false);
    expect(matchSubscription(sub('__system__', ['webhook.created'], [], '*'), ev('acme', 'webhook.created'))).toBe(false);
  });
});

describe('events', () => {
  it('every webhook event this file produced (all outboxes) is a valid Event with its EventData', async () => {
    expect(await expectValidStoredEvents(s.redis.client, 'webhook')).toBeGreaterThan(0);
  });
});
