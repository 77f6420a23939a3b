// The pure half of v0.1.26 evaluation (src/governance/rules.ts): which of a policy's rules
// apply to one request, in the form reserve.lua evaluates; and the deprecation header.
import { describe, expect, it } from 'vitest';
import { governanceFor, needsRunId } from '../src/governance/rules';
import { ActionKindRegistry, kindHeaders } from '../src/governance/registry';
import type { Policy } from '../src/policy/match';

const reg = new ActionKindRegistry([{ kind: 'custom.acme.wire', risk_class: 'high_risk' }]);
const req = (kind: string, policyKeys?: Record<string, unknown>) => ({ tenant: 'acme', kind, scopePath: 'tenant:acme/agent:bot', policyKeys });
const pol = (p: Partial<Policy>): Policy => ({ policy_id: 'p1', scope_pattern: '*', ...p });

describe('governanceFor', () => {
  it('nothing applicable → undefined (the script skips step 2 entirely)', () => {
    expect(governanceFor(pol({}), req('llm.completion'), reg)).toBeUndefined();
    expect(governanceFor(pol({ action_quotas: [{ action_kind: 'db.query', max_calls: 1, window: 'per_run' }] }), req('llm.completion'), reg)).toBeUndefined();
    expect(governanceFor(pol({ denied_action_kinds: ['db.query'] }), req('llm.completion'), reg)).toBeUndefined();
  });

  it('deny list wins; an allow list refuses what it does not name', () => {
    expect(governanceFor(pol({ denied_action_kinds: ['payment.charge'] }), req('payment.charge'), reg)?.access).toBe('ACTION_KIND_DENIED');
    expect(governanceFor(pol({ allowed_action_kinds: ['db.query'] }), req('payment.charge'), reg)?.access).toBe('ACTION_KIND_NOT_ALLOWED');
    expect(governanceFor(pol({ allowed_action_kinds: ['payment.charge'] }), req('payment.charge'), reg)).toBeUndefined();
  });

  it('risk-class rules by the registry class: built-in, declared custom, unregistered → side_effect', () => {
    const p = pol({ risk_class_quotas: [
      { risk_class: 'side_effect', max_calls: 3, window: 'per_hour_tumbling' },
      { risk_class: 'high_risk', max_calls: 1, window: 'per_run', per_run_counter_ttl_ms: 60_000, threshold_pct: 0.5 },
    ] });
    expect(governanceFor(p, req('llm.completion'), reg)?.risk).toEqual([
      { kind: 'llm.completion', risk_class: 'side_effect', window: 'per_hour_tumbling', limit: 3, scope: 'tenant:acme/agent:bot', pct: 0.8 },
    ]);
    expect(governanceFor(p, req('proprietary.action'), reg)?.risk[0].risk_class).toBe('side_effect');
    const g = governanceFor(p, req('custom.acme.wire'), reg)!;
    expect(g.risk).toEqual([{ kind: 'custom.acme.wire', risk_class: 'high_risk', window: 'per_run', limit: 1, scope: 'tenant:acme/agent:bot', ttl_ms: 60_000, pct: 0.5 }]);
    expect(needsRunId(g)).toBe(true);
    expect(governanceFor(p, req('llm.embedding'), reg)).toBeUndefined(); // read_only
  });

  it('per-kind rules: exact kind, per_tenant_per_day on the tenant root, per_run ttl default', () => {
    const p = pol({ action_quotas: [
      { action_kind: 'db.query', max_calls: 9, window: 'per_tenant_per_day' },
      { action_kind: 'db.query', max_calls: 2, window: 'per_run' },
      { action_kind: 'db.*', max_calls: 1, window: 'per_run' },
    ] });
    const g = governanceFor(p, req('db.query'), reg)!;
    expect(g.kind).toEqual([
      { kind: 'db.query', window: 'per_tenant_per_day', limit: 9, scope: 'tenant:acme', pct: 0.8 },
      { kind: 'db.query', window: 'per_run', limit: 2, scope: 'tenant:acme/agent:bot', ttl_ms: 86_400_000, pct: 0.8 },
    ]);
  });

  it('allowlists: dimension must be declared by the kind, present and listed (hosts case-insensitive)', () => {
    const p = pol({ action_quotas: [{ action_kind: 'message.email.send', max_calls: 1, window: 'per_run', host_allowlist: ['api.sendgrid.com'], recipient_domain_allowlist: ['customer.com'] }] });
    const applies = (keys?: Record<string, unknown>) => governanceFor(p, req('message.email.send', keys), reg) !== undefined;
    expect(applies({ host: 'API.sendgrid.com', recipient_domain: 'customer.com' })).toBe(true);
    expect(applies({ host: 'api.sendgrid.com' })).toBe(false); // recipient_domain absent
    expect(applies({ host: 'api.mailgun.net', recipient_domain: 'customer.com' })).toBe(false);
    expect(applies()).toBe(false);
    const q = pol({ action_quotas: [{ action_kind: 'llm.completion', max_calls: 1, window: 'per_run', resource_type_allowlist: ['x'] }] });
    expect(governanceFor(q, req('llm.completion', { resource_type: 'x' }), reg)).toBeUndefined(); // not declared by llm.completion
  });
});

describe('X-Cycles-Deprecated-Kind', () => {
  it('names the replacement of a deprecated kind, only with the flag on', () => {
    const r = new ActionKindRegistry();
    const current = r.builtins[0].kind;
    expect(r.deprecationOf(current)).toBeUndefined();
    const patched = Object.assign(Object.create(r), {
      get: (k: string) => (k === 'old.kind' ? { kind: 'old.kind', risk_class: 'side_effect', deprecated: true, replacement_kind: 'new.kind' } : undefined),
    }) as ActionKindRegistry;
    expect(patched.deprecationOf('old.kind')).toBe('new.kind');
    expect(kindHeaders({ features: new Set(), customActionKinds: [] }, current)).toEqual({});
    expect(kindHeaders({ features: new Set(['v0.1.26']), customActionKinds: [] }, current)).toEqual({});
  });
});
