import { describe, expect, it } from 'vitest';
import { matchesScope, selectPolicy, parsePolicies, sanitizeCaps, isInEffect, type Policy } from '../src/policy/match';

describe('matchesScope', () => {
  const scope = 'tenant:acme/workspace:eng/agent:bot';
  it.each([
    ['tenant:acme/workspace:eng/agent:bot', true],
    ['TENANT:Acme/workspace:ENG/agent:bot', true], // case-insensitive
    ['tenant:acme/workspace:eng', false], // exact means exact
    ['tenant:acme/*', true],
    ['tenant:acme/workspace:eng/*', true],
    ['tenant:acme/workspace:eng/agent:bot/*', false], // strict descendants only
    ['tenant:acme/workspace:*/agent:bot', true],
    ['tenant:acme/workspace:ops/*', false],
    ['tenant:globex/*', false],
    ['agent:*', true], // unanchored: any agent scope
    ['agent:bot', true],
    ['agent:other', false],
    ['workspace:*', false], // unanchored but must end at the scope's end
    ['*/agent:bot', true],
    ['*/workspace:eng/*', true],
    ['*', true],
    ['tenant:acme//agent:bot', false],
    ['', false],
    ['tenant:*/workspace:eng/agent:bot', true],
    ['app:*/agent:bot', false],
  ])('%j → %s', (pattern, expected) => {
    expect(matchesScope(pattern, scope)).toBe(expected);
  });

  it('trailing * does not match the scope itself', () => {
    expect(matchesScope('tenant:acme/*', 'tenant:acme')).toBe(false);
    expect(matchesScope('tenant:acme', 'tenant:acme')).toBe(true);
  });
});

describe('selectPolicy', () => {
  const now = Date.parse('2026-06-01T00:00:00Z');
  const pol = (id: string, pattern: string, extra: Partial<Policy> = {}): Policy => ({ policy_id: id, scope_pattern: pattern, status: 'ACTIVE', ...extra });

  it('highest priority matching policy wins', () => {
    const ps = [pol('a', 'tenant:acme/*', { priority: 1 }), pol('b', 'agent:*', { priority: 5 }), pol('c', 'tenant:acme/*', { priority: 9, status: 'DISABLED' }), pol('d', 'tenant:globex/*', { priority: 99 })];
    expect(selectPolicy(ps, 'tenant:acme/agent:x', now)?.policy_id).toBe('b');
  });

  it('ties are broken by policy_id, independent of input order', () => {
    const ps = [pol('zeta', 'tenant:acme/*', { priority: 3 }), pol('alpha', 'tenant:acme/*', { priority: 3 })];
    expect(selectPolicy(ps, 'tenant:acme/agent:x', now)?.policy_id).toBe('alpha');
    expect(selectPolicy([...ps].reverse(), 'tenant:acme/agent:x', now)?.policy_id).toBe('alpha');
  });

  it('missing priority counts as 0', () => {
    const ps = [pol('a', 'tenant:acme/*'), pol('b', 'tenant:acme/*', { priority: 1 })];
    expect(selectPolicy(ps, 'tenant:acme/agent:x', now)?.policy_id).toBe('b');
  });

  it('respects effective_from (inclusive) and effective_until (exclusive)', () => {
    expect(isInEffect(pol('a', '*', { effective_from: '2026-06-01T00:00:00Z' }), now)).toBe(true);
    expect(isInEffect(pol('a', '*', { effective_from: '2026-06-01T00:00:00.001Z' }), now)).toBe(false);
    expect(isInEffect(pol('a', '*', { effective_until: '2026-06-01T00:00:00Z' }), now)).toBe(false);
    expect(isInEffect(pol('a', '*', { effective_until: '2026-06-02T00:00:00Z' }), now)).toBe(true);
    expect(isInEffect(pol('a', '*', { effective_until: 'garbage' }), now)).toBe(false);
    const ps = [pol('future', 'tenant:acme/*', { priority: 9, effective_from: '2027-01-01T00:00:00Z' }), pol('now', 'tenant:acme/*')];
    expect(selectPolicy(ps, 'tenant:acme/agent:x', now)?.policy_id).toBe('now');
  });

  it('no match → undefined', () => {
    expect(selectPolicy([pol('a', 'tenant:acme/workspace:x')], 'tenant:acme/agent:x', now)).toBeUndefined();
  });
});

describe('parsePolicies / sanitizeCaps', () => {
  it('parses valid entries and reports broken ones', () => {
    const { policies, invalid } = parsePolicies({
      p1: JSON.stringify({ policy_id: 'p1', scope_pattern: 'tenant:a', priority: 2 }),
      p2: '{not json',
      p3: JSON.stringify({ policy_id: 'p3' }),
      p4: JSON.stringify({ scope_pattern: 'tenant:a/*' }),
    });
    expect(policies.map((p) => p.policy_id).sort()).toEqual(['p1', 'p4']);
    expect(invalid.sort()).toEqual(['p2', 'p3']);
  });

  it('keeps only Caps schema fields with valid types', () => {
    expect(sanitizeCaps({ max_tokens: 10, cooldown_ms: -1, tool_allowlist: ['a'], extra: 1 })).toEqual({ max_tokens: 10, tool_allowlist: ['a'] });
    expect(sanitizeCaps({})).toBeUndefined();
    expect(sanitizeCaps(null)).toBeUndefined();
    expect(sanitizeCaps({ max_tokens: 1.5 })).toBeUndefined();
  });
});
