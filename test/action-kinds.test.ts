// The action-kind registry (cycles-action-kinds-v0.1.26.yaml) over real HTTP on both planes:
// listActionKinds (filters, keyset cursor, ETag / If-None-Match, public, 429 + Retry-After)
// and getActionKind (exact match, 404), the built-ins taken from the spec by codegen and the
// operator's custom.* declarations merged in. Response validation is on (helpers/server.ts).
// Plus the pure pieces: src/governance/registry.ts and src/governance/throttle.ts.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startTestServer, call, type TestServer } from './helpers/server';
import { loadBundle } from '../codegen/bundle';
import { ActionKindRegistry, UNREGISTERED_RISK_CLASS } from '../src/governance/registry';
import { ClientThrottle, THROTTLE_WINDOW_MS } from '../src/governance/throttle';
import { ifNoneMatchHits } from '../src/governance/publicRegistry';

// The spec itself, read here (not through codegen) so the comparison is independent of it.
const specFile = loadBundle().get('action_kinds').path;
const spec = parse(readFileSync(specFile, 'utf8')) as { 'x-action-kind-registry': { version: string; kinds: any[] } };
const SPEC_KINDS = spec['x-action-kind-registry'].kinds;
const SPEC_VERSION = spec['x-action-kind-registry'].version;
const CUSTOM = 'custom.acme.erp.post=external_side_effect,custom.acme.sap.query=read_only';

let on: TestServer;
let off: TestServer;
let tight: TestServer;
beforeAll(async () => {
  [on, off, tight] = await Promise.all([
    startTestServer({ CYCLES_FEATURES: 'v0.1.26', CYCLES_CUSTOM_ACTION_KINDS: CUSTOM, CYCLES_ACTION_KINDS_RATE_LIMIT_PER_MINUTE: '100000' }),
    startTestServer(),
    startTestServer({ CYCLES_FEATURES: 'v0.1.26', CYCLES_ACTION_KINDS_RATE_LIMIT_PER_MINUTE: '3' }),
  ]);
}, 60_000);
afterAll(async () => { await Promise.all([on?.stop(), off?.stop(), tight?.stop()]); });

const planes = () => [['runtime', on.runtimeUrl], ['admin', on.adminUrl]] as const;

describe('registry (pure)', () => {
  const reg = new ActionKindRegistry([{ kind: 'custom.acme.erp.post', risk_class: 'high_risk' }]);

  it('holds exactly the spec registry, in spec order, with the spec fields', () => {
    expect(reg.version).toBe(SPEC_VERSION);
    expect(reg.builtins.map((k) => k.kind)).toEqual(SPEC_KINDS.map((k) => k.kind));
    expect(reg.builtins.at(-1)!.kind).toBe('unknown.call');
    for (const k of SPEC_KINDS) expect(reg.get(k.kind), k.kind).toEqual(k);
  });

  it('risk class: registered, declared custom, unregistered non-custom (side_effect), undeclared custom (none)', () => {
    expect(reg.riskClass('llm.completion')).toBe('side_effect');
    expect(reg.riskClass('web.search')).toBe('read_only');
    expect(reg.riskClass('custom.acme.erp.post')).toBe('high_risk');
    expect(reg.riskClass('proprietary.action')).toBe(UNREGISTERED_RISK_CLASS);
    expect(UNREGISTERED_RISK_CLASS).toBe('side_effect');
    expect(reg.riskClass('custom.acme.other')).toBeUndefined();
  });

  it('declared custom kinds: lookup, not listed, undeclared ones refused for requests', () => {
    expect(reg.isDeclaredCustom('custom.acme.erp.post')).toBe(true);
    expect(reg.isDeclaredCustom('custom.acme.other')).toBe(false);
    expect(reg.isDeclaredCustom('llm.completion')).toBe(false);
    expect(reg.get('custom.acme.erp.post')).toEqual({ kind: 'custom.acme.erp.post', risk_class: 'high_risk' });
    expect(reg.list().some((k) => k.kind.startsWith('custom.'))).toBe(false);
    expect(reg.checkRequestKind('custom.acme.other')).toMatch(/not registered/);
    expect(reg.checkRequestKind('custom.acme.erp.post')).toBeNull();
    expect(reg.checkRequestKind('proprietary.action')).toBeNull();
    expect(() => new ActionKindRegistry([{ kind: 'custom.a.b', risk_class: 'nope' }])).toThrow(/risk_class/);
    expect(() => new ActionKindRegistry([{ kind: 'acme.b', risk_class: 'read_only' }])).toThrow(/custom\./);
  });

  it('list filters by risk class and hides deprecated kinds unless asked', () => {
    for (const rc of ['read_only', 'local_mutation', 'side_effect', 'external_side_effect', 'high_risk']) {
      expect(reg.list({ risk_class: rc }).map((k) => k.kind)).toEqual(
        SPEC_KINDS.filter((k) => k.risk_class === rc && k.deprecated !== true).map((k) => k.kind));
    }
    expect(reg.list({ deprecated: true }).length).toBe(SPEC_KINDS.length);
  });

  it('If-None-Match: exact, weak, listed and * match; others do not', () => {
    const tag = '"0.1.26-abc"';
    expect(ifNoneMatchHits(tag, tag)).toBe(true);
    expect(ifNoneMatchHits(`W/${tag}`, tag)).toBe(true);
    expect(ifNoneMatchHits(`"x", ${tag}`, tag)).toBe(true);
    expect(ifNoneMatchHits('*', tag)).toBe(true);
    expect(ifNoneMatchHits('"x"', tag)).toBe(false);
    expect(ifNoneMatchHits(undefined, tag)).toBe(false);
  });
});

describe('throttle (pure)', () => {
  it('allows perMinute requests per client per window, then answers with the seconds left', () => {
    let t = 1_000_000;
    const th = new ClientThrottle(2, () => t);
    expect(th.take('a').ok).toBe(true);
    expect(th.take('a').ok).toBe(true);
    t += 15_500;
    expect(th.take('a')).toEqual({ ok: false, retryAfterSeconds: 45 });
    expect(th.take('b').ok).toBe(true); // per client
    t += THROTTLE_WINDOW_MS;
    expect(th.take('a').ok).toBe(true);
    expect(new ClientThrottle(0).take('a').ok).toBe(true);
  });

  it('tracks a bounded number of clients', () => {
    let t = 0;
    const th = new ClientThrottle(1, () => t, 3);
    for (const c of ['a', 'b', 'c', 'd', 'e']) th.take(c);
    expect(th.size).toBeLessThanOrEqual(3);
    t += THROTTLE_WINDOW_MS;
    th.take('f');
    expect(th.size).toBe(1);
  });
});

describe('listActionKinds / getActionKind over HTTP (flag on)', () => {
  it('default page: 50 of the spec kinds, version, has_more, no key needed, ETag — on both planes', async () => {
    for (const [plane, url] of planes()) {
      const r = await call(url, 'GET', '/v1/action-kinds');
      expect(r.status, `${plane}: ${r.text}`).toBe(200);
      expect(r.body.version).toBe(SPEC_VERSION);
      expect(r.body.kinds).toHaveLength(Math.min(50, SPEC_KINDS.length));
      expect(r.body.kinds).toEqual(SPEC_KINDS.slice(0, 50));
      expect(r.body.has_more).toBe(SPEC_KINDS.length > 50);
      expect(typeof r.body.next_cursor).toBe('string');
      expect(r.headers.get('etag')).toMatch(/^".+"$/);
    }
  });

  it('cursor paging visits every kind exactly once, in spec order (unknown.call last)', async () => {
    for (const [plane, url] of planes()) {
      for (const limit of [1, 7, 100]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        for (let i = 0; i < 200; i++) {
          const r = await call(url, 'GET', `/v1/action-kinds?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
          expect(r.status, `${plane}: ${r.text}`).toBe(200);
          expect(r.body.kinds.length).toBeLessThanOrEqual(limit);
          seen.push(...r.body.kinds.map((k: any) => k.kind));
          if (!r.body.has_more) { expect(r.body.next_cursor).toBeUndefined(); break; }
          cursor = r.body.next_cursor;
        }
        expect(seen, `${plane} limit ${limit}`).toEqual(SPEC_KINDS.map((k) => k.kind));
      }
    }
  });

  it('filters by risk_class and deprecated; a cursor is bound to its filters; bad filters are 400', async () => {
    for (const [, url] of planes()) {
      const r = await call(url, 'GET', '/v1/action-kinds?risk_class=high_risk&limit=100');
      expect(r.status, r.text).toBe(200);
      expect(r.body.kinds.map((k: any) => k.kind)).toEqual(SPEC_KINDS.filter((k) => k.risk_class === 'high_risk').map((k) => k.kind));
      const all = await call(url, 'GET', '/v1/action-kinds?deprecated=true&limit=100');
      expect(all.body.kinds.map((k: any) => k.kind)).toEqual(SPEC_KINDS.map((k) => k.kind));
      const p1 = await call(url, 'GET', '/v1/action-kinds?limit=2');
      const mixed = await call(url, 'GET', `/v1/action-kinds?limit=2&risk_class=read_only&cursor=${p1.body.next_cursor}`);
      expect([mixed.status, mixed.body.error]).toEqual([400, 'INVALID_REQUEST']);
      for (const q of ['risk_class=nope', 'limit=0', 'limit=101', 'cursor=garbage']) {
        const bad = await call(url, 'GET', `/v1/action-kinds?${q}`);
        expect([bad.status, bad.body.error], q).toEqual([400, 'INVALID_REQUEST']);
      }
    }
  });

  it('If-None-Match with the current ETag → 304 without a body; another tag → 200', async () => {
    for (const [, url] of planes()) {
      const first = await call(url, 'GET', '/v1/action-kinds?limit=5');
      const etag = first.headers.get('etag')!;
      const again = await call(url, 'GET', '/v1/action-kinds?limit=5', { headers: { 'If-None-Match': etag } });
      expect(again.status).toBe(304);
      expect(again.text).toBe('');
      expect(again.headers.get('etag')).toBe(etag);
      const stale = await call(url, 'GET', '/v1/action-kinds?limit=5', { headers: { 'If-None-Match': '"old"' } });
      expect(stale.status).toBe(200);
    }
  });

  it('getActionKind: exact match, 404 NOT_FOUND otherwise (no prefix or fuzzy match)', async () => {
    for (const [, url] of planes()) {
      const r = await call(url, 'GET', '/v1/action-kinds/llm.completion');
      expect(r.status, r.text).toBe(200);
      expect(r.body).toEqual(SPEC_KINDS.find((k) => k.kind === 'llm.completion'));
      expect(r.body.risk_class).toBe('side_effect');
      for (const k of ['llm', 'llm.completio', 'LLM.COMPLETION', 'proprietary.action', 'custom.acme.undeclared']) {
        const miss = await call(url, 'GET', `/v1/action-kinds/${k}`);
        expect([miss.status, miss.body.error], k).toEqual([404, 'NOT_FOUND']);
      }
    }
  });

  it('declared custom kinds from CYCLES_CUSTOM_ACTION_KINDS: found by getActionKind, not in the public list', async () => {
    for (const [, url] of planes()) {
      const r = await call(url, 'GET', '/v1/action-kinds/custom.acme.erp.post');
      expect(r.status, r.text).toBe(200);
      expect(r.body).toEqual({ kind: 'custom.acme.erp.post', risk_class: 'external_side_effect' });
      const q = await call(url, 'GET', '/v1/action-kinds/custom.acme.sap.query');
      expect(q.body.risk_class).toBe('read_only');
      const list = await call(url, 'GET', '/v1/action-kinds?limit=100&deprecated=true');
      expect(list.body.kinds.filter((k: any) => k.kind.startsWith('custom.'))).toEqual([]);
    }
  });

  it('throttled per client: 429 LIMIT_EXCEEDED with Retry-After; a 304 is not counted', async () => {
    // the limit is per process (README): one instance's own ports, also when the suite runs on two
    const own = tight.server.urls;
    const first = await call(own.runtime!, 'GET', '/v1/action-kinds');
    const etag = first.headers.get('etag')!;
    expect((await call(own.admin!, 'GET', '/v1/action-kinds/web.search')).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      expect((await call(own.runtime!, 'GET', '/v1/action-kinds', { headers: { 'If-None-Match': etag } })).status).toBe(304);
    }
    expect((await call(own.runtime!, 'GET', '/v1/action-kinds?limit=2')).status).toBe(200);
    for (const [url, p] of [[own.runtime!, '/v1/action-kinds'], [own.admin!, '/v1/action-kinds/llm.completion']]) {
      const r = await call(url, 'GET', p);
      expect([r.status, r.body.error], p).toEqual([429, 'LIMIT_EXCEEDED']);
      const retry = Number(r.headers.get('retry-after'));
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(60);
    }
  });
});

/** A tenant with a TOKENS budget on its root scope, and a key for it. */
async function funded(s: TestServer, tenant: string): Promise<string> {
  const a = (method: string, p: string, body: unknown) => call(s.adminUrl, method, p, { adminKey: s.adminKey, body });
  expect((await a('POST', '/v1/admin/tenants', { tenant_id: tenant, name: tenant })).status).toBe(201);
  const b = await a('POST', '/v1/admin/budgets', { tenant_id: tenant, scope: `tenant:${tenant}`, unit: 'TOKENS', allocated: { unit: 'TOKENS', amount: 100000 } });
  expect(b.status, b.text).toBe(201);
  return s.tenantKey(tenant);
}

const reserveBody = (kind: string, n: number, extra: Record<string, unknown> = {}) => ({
  idempotency_key: `ak-${kind}-${n}`, subject: { tenant: extra.tenant ?? 'ak-t' }, action: { kind, name: 'x' },
  estimate: { unit: 'TOKENS', amount: 10 }, ...extra,
});

describe('an undeclared custom.* action kind in a request is 400 (flag on only)', () => {
  it('reserve, dry_run, decide and createEvent refuse it; a declared one and an unregistered non-custom kind pass', async () => {
    const key = await funded(on, 'ak-t');
    const rt = (p: string, body: unknown) => call(on.runtimeUrl, 'POST', p, { key, body });
    let n = 0;
    for (const kind of ['custom.acme.undeclared', 'custom.other.erp.post']) {
      for (const [p, body] of [
        ['/v1/reservations', reserveBody(kind, n++)],
        ['/v1/reservations', reserveBody(kind, n++, { dry_run: true })],
        ['/v1/decide', reserveBody(kind, n++)],
        ['/v1/events', { idempotency_key: `ak-ev-${n++}`, subject: { tenant: 'ak-t' }, action: { kind, name: 'x' }, actual: { unit: 'TOKENS', amount: 1 } }],
      ] as const) {
        const r = await rt(p, body);
        expect([r.status, r.body.error], `${p} ${kind}`).toEqual([400, 'INVALID_REQUEST']);
        expect(r.body.message).toMatch(/not registered/);
      }
    }
    const bal = await call(on.runtimeUrl, 'GET', '/v1/balances?tenant=ak-t', { key });
    expect(String(bal.body.balances[0].reserved.amount)).toBe('0');
    expect(String(bal.body.balances[0].spent.amount)).toBe('0');
    for (const kind of ['custom.acme.erp.post', 'proprietary.action', 'llm.completion']) {
      const r = await rt('/v1/reservations', reserveBody(kind, n++));
      expect(r.status, `${kind}: ${r.text}`).toBe(200);
      expect(r.body.decision).toBe('ALLOW');
      const d = await rt('/v1/decide', reserveBody(kind, n++));
      expect(d.status, `${kind}: ${d.text}`).toBe(200);
    }
  });

  it('policies: the same rule for allowed/denied lists and quotas', async () => {
    await call(on.adminUrl, 'POST', '/v1/admin/tenants', { adminKey: on.adminKey, body: { tenant_id: 'ak-p', name: 'P' } });
    const r = await call(on.adminUrl, 'POST', '/v1/admin/policies', {
      adminKey: on.adminKey,
      body: { tenant_id: 'ak-p', name: 'p', scope_pattern: 'tenant:ak-p', denied_action_kinds: ['custom.acme.undeclared'] },
    });
    expect([r.status, r.body.error], r.text).toEqual([400, 'INVALID_REQUEST']);
    expect(r.body.message).toMatch(/denied_action_kinds\[0\]: custom action kind "custom.acme.undeclared" is not registered/);
  });

  it('flag off: action.kind is a free string (v0.1.25), custom.* included', async () => {
    // its own tenant: on npm run test:cluster the three servers of this file share one Redis
    const key = await funded(off, 'ak-off');
    const r = await call(off.runtimeUrl, 'POST', '/v1/reservations', { key, body: reserveBody('custom.acme.undeclared', 1, { subject: { tenant: 'ak-off' } }) });
    expect(r.status, r.text).toBe(200);
    expect(r.body.decision).toBe('ALLOW');
  });
});

describe('flag off', () => {
  it('both routes answer 404 on both planes', async () => {
    for (const url of [off.runtimeUrl, off.adminUrl]) {
      for (const p of ['/v1/action-kinds', '/v1/action-kinds/llm.completion']) {
        expect((await call(url, 'GET', p)).status, `${url}${p}`).toBe(404);
      }
    }
  });
});

it('the spec file read here is the pinned one', () => {
  expect(path.basename(specFile)).toBe('cycles-action-kinds-v0.1.26.yaml');
});
