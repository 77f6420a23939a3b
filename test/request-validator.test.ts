// src/http/requestValidator.ts feeds openapi-backend's compiled validators directly
// (docs/decisions.md D12). This checks it against openapi-backend's own validateRequest:
// same verdicts, same errors, same coerced query and path parameters.
import { describe, expect, it } from 'vitest';
import { loadSpec } from '../src/http/spec';
import { PlaneRouter } from '../src/http/router';
import { RequestValidator } from '../src/http/requestValidator';
import { splitUrl } from '../src/http/app';
import type { Plane } from '../src/config';

interface Case { plane: Plane; method: string; url: string; body?: unknown; headers?: Record<string, string> }

const U = 'USD_MICROCENTS';
const reserve = { idempotency_key: 'k1', subject: { tenant: 't1' }, action: { kind: 'llm', name: 'x' }, estimate: { unit: U, amount: 5 } };

const CASES: Case[] = [
  // bodies
  { plane: 'runtime', method: 'POST', url: '/v1/reservations', body: reserve },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations', body: { ...reserve, estimate: undefined } },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations', body: { ...reserve, estimate: { unit: 'EUR', amount: 5 } } },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations', body: { ...reserve, ttl_ms: 'soon' } },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations', body: { ...reserve, extra_field: 1 } },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations', body: undefined },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations', body: [1, 2] },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations/res_abc/commit', body: { idempotency_key: 'c', actual: { unit: U, amount: 1 } } },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations/res_abc/commit', body: { actual: { unit: U, amount: -1 } } },
  { plane: 'runtime', method: 'POST', url: '/v1/reservations/res%20x/release', body: { idempotency_key: 'r' } },
  // query coercion, arrays, enums, formats
  { plane: 'runtime', method: 'GET', url: '/v1/reservations?limit=10&status=ACTIVE' },
  { plane: 'runtime', method: 'GET', url: '/v1/reservations?limit=ten' },
  { plane: 'runtime', method: 'GET', url: '/v1/reservations?status=NOPE' },
  { plane: 'runtime', method: 'GET', url: '/v1/reservations?include=balances' },
  { plane: 'runtime', method: 'GET', url: '/v1/reservations?include=balances,metadata&sort_by=created_at_ms&sort_dir=desc' },
  { plane: 'runtime', method: 'GET', url: '/v1/reservations?from=yesterday' },
  { plane: 'runtime', method: 'GET', url: '/v1/reservations?unknown_param=1' },
  { plane: 'runtime', method: 'GET', url: '/v1/reservations?limit=1&limit=2' },
  { plane: 'runtime', method: 'GET', url: '/v1/balances?tenant=t1&include_children=true' },
  { plane: 'runtime', method: 'GET', url: '/v1/balances?include_children=maybe' },
  { plane: 'runtime', method: 'GET', url: '/v1/reservations/res_abc' },
  // admin plane
  { plane: 'admin', method: 'GET', url: '/v1/admin/audit/logs?operation=createTenant,updateTenant&status=200&limit=5' },
  { plane: 'admin', method: 'GET', url: '/v1/admin/audit/logs?error_code=NOT_FOUND&status_min=abc' },
  { plane: 'admin', method: 'GET', url: '/v1/admin/budgets?utilization_min=0.5&has_debt=false' },
  { plane: 'admin', method: 'GET', url: '/v1/admin/budgets?utilization_min=lots' },
  { plane: 'admin', method: 'POST', url: '/v1/admin/tenants', body: { tenant_id: 'acme', name: 'Acme' } },
  { plane: 'admin', method: 'POST', url: '/v1/admin/tenants', body: { tenant_id: 'Bad Id!', name: 7 } },
];

const shape = (errors: { instancePath?: string; keyword: string; message?: string; params?: unknown }[] | null | undefined) =>
  (errors ?? []).map((e) => ({ path: e.instancePath, keyword: e.keyword, message: e.message, params: e.params }));

describe('RequestValidator matches openapi-backend validateRequest', () => {
  for (const c of CASES) {
    it(`${c.plane} ${c.method} ${c.url}${c.body === undefined ? '' : ` ${JSON.stringify(c.body).slice(0, 60)}`}`, async () => {
      const spec = await loadSpec(c.plane);
      const router = new PlaneRouter(spec.backend);
      const { path, query } = splitUrl(c.url);
      const m = router.match(c.method, path);
      if (!m || m === 'method') throw new Error(`no route for ${c.method} ${path}`);
      const headers: Record<string, string> = { 'content-type': 'application/json', ...c.headers };
      const body = c.body === undefined ? undefined : JSON.parse(JSON.stringify(c.body));

      // Ours drops undeclared query names (D17); openapi-backend rejects them, so it is
      // given the query without them and must then agree on everything else.
      const declared = new Set((m.operation.parameters ?? []).map((p: any) => p.in === 'query' && p.name));
      const known = Object.fromEntries(Object.entries(query).filter(([k]) => declared.has(k)));
      const theirs = spec.backend.validator.validateRequest(
        { method: c.method, path, headers, query: structuredClone(known), body: structuredClone(body) }, m.operation);
      const ours = new RequestValidator(spec.backend).validate(m.operation, {
        params: m.params, query: structuredClone(query), headers, body: structuredClone(body),
      });

      expect(shape(ours.errors)).toEqual(shape(theirs.errors));
      if (!theirs.errors) {
        expect(ours.query).toEqual({ ...(theirs.coerced?.query as object) });
        expect(ours.params).toEqual(theirs.coerced?.params);
      }
    });
  }

  it('undeclared query names are dropped; declared ones are still validated (D17)', async () => {
    const spec = await loadSpec('admin');
    const m = new PlaneRouter(spec.backend).match('GET', '/v1/admin/tenants');
    if (!m || m === 'method') throw new Error('no route');
    const v = new RequestValidator(spec.backend);
    const ok = v.validate(m.operation, { params: {}, query: splitUrl('/v1/admin/tenants?unknown_param_name=x&limit=5').query, headers: {}, body: undefined });
    expect(ok.errors).toBeNull();
    expect(ok.query).toEqual({ limit: 5 });
    const bad = v.validate(m.operation, { params: {}, query: splitUrl('/v1/admin/tenants?unknown_param_name=x&limit=500').query, headers: {}, body: undefined });
    expect(bad.errors?.map((e) => e.instancePath)).toEqual(['/query/limit']);
  });

  it('a query parameter named __proto__ is an unknown parameter, never a prototype', async () => {
    const spec = await loadSpec('runtime');
    const m = new PlaneRouter(spec.backend).match('GET', '/v1/reservations');
    if (!m || m === 'method') throw new Error('no route');
    const r = new RequestValidator(spec.backend).validate(m.operation, {
      params: {}, query: splitUrl('/v1/reservations?__proto__=a&__proto__=b&limit=5').query, headers: {}, body: undefined,
    });
    expect(Object.getPrototypeOf(r.query)).toBe(Object.prototype);
    expect(r.errors).toBeNull();
    expect(r.query).toEqual({ limit: 5 });
  });

  it('the case list exercises both verdicts', async () => {
    let valid = 0;
    let invalid = 0;
    for (const c of CASES) {
      const spec = await loadSpec(c.plane);
      const m = new PlaneRouter(spec.backend).match(c.method, splitUrl(c.url).path);
      if (!m || m === 'method') continue;
      const r = new RequestValidator(spec.backend).validate(m.operation, {
        params: m.params, query: splitUrl(c.url).query, headers: { 'content-type': 'application/json' }, body: c.body,
      });
      if (r.errors) invalid++; else valid++;
    }
    expect(valid).toBeGreaterThan(8);
    expect(invalid).toBeGreaterThan(8);
  });
});
