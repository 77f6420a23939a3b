import { describe, expect, it } from 'vitest';
import { deriveScopes } from '../src/ledger/scope';
import { ApiError } from '../src/errors';

function err(f: () => unknown): ApiError {
  try { f(); } catch (e) { if (e instanceof ApiError) return e; throw e; }
  throw new Error('expected an ApiError');
}

describe('deriveScopes', () => {
  it('builds cumulative paths in canonical order regardless of key order', () => {
    const d = deriveScopes({ toolset: 'search', agent: 'bot', app: 'chat', workflow: 'w1', workspace: 'prod', tenant: 'acme' }, 'acme');
    expect(d.scopes).toEqual([
      'tenant:acme',
      'tenant:acme/workspace:prod',
      'tenant:acme/workspace:prod/app:chat',
      'tenant:acme/workspace:prod/app:chat/workflow:w1',
      'tenant:acme/workspace:prod/app:chat/workflow:w1/agent:bot',
      'tenant:acme/workspace:prod/app:chat/workflow:w1/agent:bot/toolset:search',
    ]);
    expect(d.scopePath).toBe(d.scopes[5]);
  });

  it('skips gaps instead of filling defaults', () => {
    expect(deriveScopes({ tenant: 'acme', agent: 'bot' }, 'acme').scopes).toEqual(['tenant:acme', 'tenant:acme/agent:bot']);
  });

  it('lower-cases values and compares the tenant case-insensitively', () => {
    const subject = { tenant: 'ACME', workspace: 'Prod' };
    const d = deriveScopes(subject, 'acme');
    expect(d.scopes).toEqual(['tenant:acme', 'tenant:acme/workspace:prod']);
    expect(subject).toEqual({ tenant: 'ACME', workspace: 'Prod' }); // not mutated
  });

  it('injects the effective tenant when the subject has none', () => {
    const d = deriveScopes({ workspace: 'prod', dimensions: { cost_center: 'x' } }, 'acme');
    expect(d.scopes).toEqual(['tenant:acme', 'tenant:acme/workspace:prod']);
  });

  it('403 when subject.tenant names another tenant', () => {
    const e = err(() => deriveScopes({ tenant: 'globex', agent: 'a' }, 'acme'));
    expect([e.status, e.code]).toEqual([403, 'FORBIDDEN']);
    // prefix-similar ids are different tenants
    expect(err(() => deriveScopes({ tenant: 'acme-corp' }, 'acme')).status).toBe(403);
  });

  it('400 for a dimensions-only subject', () => {
    const e = err(() => deriveScopes({ dimensions: { a: 'b' } }, 'acme'));
    expect([e.status, e.code]).toEqual([400, 'INVALID_REQUEST']);
  });

  it.each(['a/b', 'a:b', 'has space', '', 'é', 'x'.repeat(129)])('400 for out-of-charset value %j', (v) => {
    const e = err(() => deriveScopes({ tenant: 'acme', agent: v }, 'acme'));
    expect([e.status, e.code]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('accepts the full charset', () => {
    expect(deriveScopes({ agent: 'A-b_c.9' }, 'acme').scopePath).toBe('tenant:acme/agent:a-b_c.9');
  });
});
