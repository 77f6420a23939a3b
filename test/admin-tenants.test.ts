// Tenants: create (201 / idempotent 200 / 409), defaults, get, list (filters, sort,
// cursor), update (fields, lifecycle, events), leaving CLOSED.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { keys } from '../src/store/keys';

let s: TestServer;
// The v0.1.26 profile: these cases cover observe_mode too. Without the flag a tenant renders as
// the v0.1.25 Tenant (test/feature-profiles.test.ts).
beforeAll(async () => { s = await startTestServer({ CYCLES_FEATURES: 'v0.1.26' }); }, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });

async function outboxTypes(tenant: string): Promise<string[]> {
  const entries = await s.redis.client.xrange(keys.outbox(tenant), '-', '+');
  return entries.map(([, f]) => f[f.indexOf('type') + 1]);
}

describe('createTenant', () => {
  it('201 with spec defaults, then 200 with the stored tenant on an identical repeat', async () => {
    const r = await admin('POST', '/v1/admin/tenants', { tenant_id: 'tn-create', name: 'Create Co' });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      tenant_id: 'tn-create', name: 'Create Co', status: 'ACTIVE', default_commit_overage_policy: 'ALLOW_IF_AVAILABLE',
      default_reservation_ttl_ms: 60000, max_reservation_ttl_ms: 3600000, max_reservation_extensions: 10,
      reservation_expiry_policy: 'AUTO_RELEASE', observe_mode: 'ENFORCE',
    });
    expect(Date.parse(r.body.created_at)).toBeGreaterThan(0);
    const again = await admin('POST', '/v1/admin/tenants', { tenant_id: 'tn-create', name: 'Create Co' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(r.body);
    expect(await outboxTypes('tn-create')).toEqual(['tenant.created']);
  });

  it('409 DUPLICATE_RESOURCE when the id exists with different content', async () => {
    await admin('POST', '/v1/admin/tenants', { tenant_id: 'tn-dup', name: 'A' });
    const r = await admin('POST', '/v1/admin/tenants', { tenant_id: 'tn-dup', name: 'B' });
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('DUPLICATE_RESOURCE');
    const r2 = await admin('POST', '/v1/admin/tenants', { tenant_id: 'tn-dup', name: 'A', max_reservation_extensions: 3 });
    expect(r2.status).toBe(409);
  });

  it('400 INVALID_REQUEST on bad id, unknown field, out-of-range TTL, >32 metadata entries', async () => {
    for (const body of [
      { tenant_id: 'Bad_Id', name: 'x' },
      { tenant_id: 'ab', name: 'x' },
      { tenant_id: 'tn-bad', name: 'x', surprise: 1 },
      { tenant_id: 'tn-bad', name: 'x', default_reservation_ttl_ms: 999 },
      { tenant_id: 'tn-bad', name: 'x', metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) },
    ]) {
      const r = await admin('POST', '/v1/admin/tenants', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error).toBe('INVALID_REQUEST');
    }
    expect((await admin('GET', '/v1/admin/tenants/tn-bad')).status).toBe(404);
  });
});

describe('getTenant', () => {
  it('404 TENANT_NOT_FOUND for an unknown id', async () => {
    const r = await admin('GET', '/v1/admin/tenants/tn-nobody');
    expect(r.status).toBe(404);
    expect(r.body.error).toBe('TENANT_NOT_FOUND');
  });
});

describe('updateTenant', () => {
  it('changes fields; events tenant.updated vs tenant.settings_changed with changed_fields; no-op emits nothing', async () => {
    await admin('POST', '/v1/admin/tenants', { tenant_id: 'tn-upd', name: 'Old' });
    const r = await admin('PATCH', '/v1/admin/tenants/tn-upd', { name: 'New', observe_mode: 'OBSERVE', max_reservation_extensions: 2 });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ name: 'New', observe_mode: 'OBSERVE', max_reservation_extensions: 2 });
    const noop = await admin('PATCH', '/v1/admin/tenants/tn-upd', { name: 'New' });
    expect(noop.status).toBe(200);
    const entries = await s.redis.client.xrange(keys.outbox('tn-upd'), '-', '+');
    const ev = entries.map(([, f]) => ({ type: f[f.indexOf('type') + 1], data: JSON.parse(f[f.indexOf('data') + 1]) }));
    expect(ev.map((e) => e.type)).toEqual(['tenant.created', 'tenant.updated', 'tenant.settings_changed']);
    expect(ev[1].data.changed_fields).toEqual(['name']);
    expect(ev[2].data.changed_fields).toEqual(['max_reservation_extensions', 'observe_mode']);
  });

  it('ACTIVE → SUSPENDED → ACTIVE with suspended_at and events; 404 for unknown tenant; 400 bad observe_mode', async () => {
    await admin('POST', '/v1/admin/tenants', { tenant_id: 'tn-life', name: 'L' });
    const sus = await admin('PATCH', '/v1/admin/tenants/tn-life', { status: 'SUSPENDED' });
    expect(sus.body.status).toBe('SUSPENDED');
    expect(Date.parse(sus.body.suspended_at)).toBeGreaterThan(0);
    const act = await admin('PATCH', '/v1/admin/tenants/tn-life', { status: 'ACTIVE' });
    expect(act.body.status).toBe('ACTIVE');
    expect((await outboxTypes('tn-life')).slice(1)).toEqual(['tenant.suspended', 'tenant.reactivated']);
    const nf = await admin('PATCH', '/v1/admin/tenants/tn-none', { name: 'x' });
    expect(nf.status).toBe(404);
    expect(nf.body.error).toBe('TENANT_NOT_FOUND');
    const bad = await admin('PATCH', '/v1/admin/tenants/tn-life', { observe_mode: 'LOUD' });
    expect(bad.status).toBe(400);
    const unknown = await admin('PATCH', '/v1/admin/tenants/tn-life', { tenant_id: 'other' });
    expect(unknown.status).toBe(400);
  });

  it('CLOSED is terminal: closed_at set, leaving CLOSED → 400, re-close → 200 without a second tenant.closed, settings → 409', async () => {
    await admin('POST', '/v1/admin/tenants', { tenant_id: 'tn-close', name: 'C' });
    const c = await admin('PATCH', '/v1/admin/tenants/tn-close', { status: 'CLOSED' });
    expect(c.status).toBe(200);
    expect(c.body.status).toBe('CLOSED');
    expect(Date.parse(c.body.closed_at)).toBeGreaterThan(0);
    for (const st of ['ACTIVE', 'SUSPENDED']) {
      const r = await admin('PATCH', '/v1/admin/tenants/tn-close', { status: st });
      expect(r.status).toBe(400);
      expect(r.body.error).toBe('INVALID_REQUEST');
    }
    const again = await admin('PATCH', '/v1/admin/tenants/tn-close', { status: 'CLOSED' });
    expect(again.status).toBe(200);
    expect(again.body.closed_at).toBe(c.body.closed_at);
    const rename = await admin('PATCH', '/v1/admin/tenants/tn-close', { name: 'other' });
    expect(rename.status).toBe(409);
    expect(rename.body.error).toBe('TENANT_CLOSED');
    expect((await outboxTypes('tn-close')).filter((t) => t === 'tenant.closed')).toHaveLength(1);
    expect((await admin('GET', '/v1/admin/tenants/tn-close')).status).toBe(200);
  });
});

describe('listTenants', () => {
  it('filters (status, parent, observe_mode, search), sorts and pages with a cursor exactly once', async () => {
    for (let i = 0; i < 7; i++) {
      await admin('POST', '/v1/admin/tenants', { tenant_id: `ls-kid-${i}`, name: `Kid ${i}`, parent_tenant_id: 'ls-parent' });
    }
    await admin('PATCH', '/v1/admin/tenants/ls-kid-3', { status: 'SUSPENDED' });
    await admin('PATCH', '/v1/admin/tenants/ls-kid-4', { observe_mode: 'OBSERVE' });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const r = await admin('GET', `/v1/admin/tenants?parent_tenant_id=ls-parent&sort_by=tenant_id&sort_dir=asc&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      seen.push(...r.body.tenants.map((t: any) => t.tenant_id));
      cursor = r.body.has_more ? r.body.next_cursor : undefined;
      if (!r.body.has_more) expect(r.body.next_cursor).toBeUndefined();
    } while (cursor);
    expect(seen).toEqual(Array.from({ length: 7 }, (_, i) => `ls-kid-${i}`));
    const sus = await admin('GET', '/v1/admin/tenants?status=SUSPENDED&parent_tenant_id=ls-parent');
    expect(sus.body.tenants.map((t: any) => t.tenant_id)).toEqual(['ls-kid-3']);
    const obs = await admin('GET', '/v1/admin/tenants?observe_mode=OBSERVE&parent_tenant_id=ls-parent');
    expect(obs.body.tenants.map((t: any) => t.tenant_id)).toEqual(['ls-kid-4']);
    const srch = await admin('GET', '/v1/admin/tenants?search=%20KID%205%20');
    expect(srch.body.tenants.map((t: any) => t.tenant_id)).toEqual(['ls-kid-5']);
    const desc = await admin('GET', '/v1/admin/tenants?parent_tenant_id=ls-parent&sort_by=name&limit=2');
    expect(desc.body.tenants.map((t: any) => t.name)).toEqual(['Kid 6', 'Kid 5']);
  });

  it('400 on a cursor minted for another filter, a too-long search, and a bad sort_by', async () => {
    const r = await admin('GET', '/v1/admin/tenants?parent_tenant_id=ls-parent&limit=1');
    const other = await admin('GET', `/v1/admin/tenants?status=ACTIVE&limit=1&cursor=${r.body.next_cursor}`);
    expect(other.status).toBe(400);
    expect((await admin('GET', `/v1/admin/tenants?search=${'x'.repeat(129)}`)).status).toBe(400);
    expect((await admin('GET', '/v1/admin/tenants?sort_by=colour')).status).toBe(400);
    expect((await admin('GET', '/v1/admin/tenants?limit=101')).status).toBe(400);
  });
});
