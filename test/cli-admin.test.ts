// The operator CLI over the admin and runtime APIs, run as an operator runs it (a child
// process per command against a test server): every subcommand, its output (table and
// --json) and the exit codes scripts rely on (docs/decisions.md DU1: 0 ok, 1 API error with
// the ErrorResponse on stderr, 2 usage error, 3 unreachable).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { cycles as run, startCycles, waitFor } from './helpers/cli';
import { parseJsonBody } from '../src/json';

let srv: TestServer;
let env: Record<string, string>;
const cycles = (...args: string[]) => run(env, ...args);
const json = (text: string): any => parseJsonBody(text).value;
const T = `cli-${Date.now().toString(36)}`;
const HOOK = 'https://93.184.215.14/hook';

beforeAll(async () => {
  srv = await startTestServer();
  env = { ADMIN_API_KEY: srv.adminKey, CYCLES_ADMIN_URL: srv.adminUrl, CYCLES_RUNTIME_URL: srv.runtimeUrl };
}, 120_000);
afterAll(async () => srv?.stop());

describe('cycles --help', () => {
  it('lists every subcommand, and every group lists its own', { timeout: 400_000 }, async () => {
    const groups: Record<string, string[]> = {
      tenants: ['create', 'list', 'get', 'update'],
      keys: ['create', 'list', 'get', 'update', 'revoke'],
      budgets: ['create', 'list', 'get', 'update', 'fund'],
      policies: ['create', 'list', 'get', 'update'],
      webhooks: ['create', 'list', 'get', 'update', 'delete'],
      reservations: ['list', 'release'],
      events: ['tail'],
      evidence: ['verify', 'keygen', 'export'],
    };
    const [top, leaf, none, ...each] = await Promise.all([
      cycles('--help'), cycles('budgets', 'fund', '--help'), cycles(),
      ...Object.keys(groups).map((g) => cycles(g, '--help')),
    ]);
    expect(top.code).toBe(0);
    for (const c of ['serve', 'ops', 'conformance', 'evidence', 'demo', 'doctor', ...Object.keys(groups)]) {
      expect(top.stdout, c).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
    }
    expect(top.stdout).toMatch(/Exit codes: 0 ok; 1 the API answered an error/);
    Object.entries(groups).forEach(([g, subs], i) => {
      expect(each[i].code, g).toBe(0);
      for (const s of subs) expect(each[i].stdout, `${g} ${s}`).toMatch(new RegExp(`^  ${s}\\b`, 'm'));
    });
    expect(leaf.code).toBe(0);
    expect(leaf.stdout).toMatch(/--operation <op>/);
    expect(none.code).toBe(2); // no command: help on stderr, usage error
  });
});

describe('tenants', () => {
  it('create, list, get, update; API errors exit 1 with the ErrorResponse; usage errors exit 2', { timeout: 400_000 }, async () => {
    const created = await cycles('tenants', 'create', T, '--name', 'CLI test');
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(new RegExp(`^tenant_id +${T}$`, 'm'));
    expect(created.stdout).toMatch(/^status +ACTIVE$/m);

    const [dup, list, get, missing, nothing, badUrl, noKey, unreachable] = await Promise.all([
      cycles('tenants', 'create', T, '--name', 'another name'),
      cycles('tenants', 'list', '--search', T),
      cycles('tenants', 'get', T, '--json'),
      cycles('tenants', 'get', 'no-such-tenant'),
      cycles('tenants', 'update', T),
      cycles('tenants', 'list', '--admin-url', 'ftp://x'),
      run({ ...env, ADMIN_API_KEY: '' }, 'tenants', 'list'),
      cycles('tenants', 'list', '--admin-url', 'http://127.0.0.1:1'),
    ]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/HTTP 409 DUPLICATE_RESOURCE: .*\(request_id req_[0-9a-f]+\)/);
    const body = JSON.parse(dup.stderr.split('\n')[1]);
    expect(body).toMatchObject({ error: 'DUPLICATE_RESOURCE', request_id: expect.stringMatching(/^req_/) });
    expect(dup.stdout).toBe('');

    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^TENANT_ID +NAME +STATUS/);
    expect(list.stdout).toMatch(new RegExp(`^${T} +CLI test +ACTIVE`, 'm'));

    expect(get.code).toBe(0);
    expect(json(get.stdout)).toMatchObject({ tenant_id: T, name: 'CLI test', status: 'ACTIVE' });

    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/HTTP 404 TENANT_NOT_FOUND/);
    expect(nothing.code).toBe(2);
    expect(badUrl.code).toBe(2);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/ADMIN_API_KEY/);
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:1/);

    // --body carries fields without a flag; flags win over it
    const [upd, badBody] = await Promise.all([
      cycles('tenants', 'update', T, '--name', 'Renamed', '--body', '{"name":"ignored","metadata":{"team":"x"}}', '--json'),
      cycles('tenants', 'update', T, '--body', '{bad'),
    ]);
    expect(upd.code, upd.stderr).toBe(0);
    expect(json(upd.stdout)).toMatchObject({ tenant_id: T, name: 'Renamed', metadata: { team: 'x' } });
    expect(badBody.code).toBe(2);
    expect(badBody.stderr).toMatch(/--body: not valid JSON/);
  });
});

describe('keys, budgets, policies, webhooks', () => {
  it('keys: create (secret once), list, get, update, revoke', { timeout: 400_000 }, async () => {
    const t = `${T}-k`;
    expect((await cycles('tenants', 'create', t)).code).toBe(0);
    const created = await cycles('keys', 'create', '--tenant', t, '--name', 'agent', '--permissions', 'reservations:create,balances:read', '--json');
    expect(created.code, created.stderr).toBe(0);
    const key = json(created.stdout);
    expect(key).toMatchObject({ tenant_id: t, permissions: ['reservations:create', 'balances:read'], key_secret: expect.any(String) });

    const [list, get, missing, bad, noTenant] = await Promise.all([
      cycles('keys', 'list', '--tenant', t),
      cycles('keys', 'get', key.key_id, '--json'),
      cycles('keys', 'get', 'key_0000000000000000'),
      cycles('keys', 'create', '--tenant', t, '--permissions', 'no:such'),
      cycles('keys', 'create'),
    ]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${key.key_id} +${t} +agent +ACTIVE +reservations:create,balances:read`, 'm'));
    expect(get.code).toBe(0);
    expect(json(get.stdout)).toMatchObject({ key_id: key.key_id, name: 'agent' });
    expect(json(get.stdout).key_secret).toBeUndefined();
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not found/);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/HTTP 400 INVALID_REQUEST/);
    expect(noTenant.code).toBe(2);
    expect(noTenant.stderr).toMatch(/--tenant/);

    const upd = await cycles('keys', 'update', key.key_id, '--name', 'renamed', '--permissions', 'reservations:create,reservations:commit');
    expect(upd.code, upd.stderr).toBe(0);
    expect(upd.stdout).toMatch(/^name +renamed$/m);
    expect(upd.stdout).toMatch(/^permissions +reservations:create,reservations:commit$/m);
    const rev = await cycles('keys', 'revoke', key.key_id, '--reason', 'test');
    expect(rev.code, rev.stderr).toBe(0);
    expect(rev.stdout).toMatch(/^status +REVOKED$/m);
  });

  it('budgets: create, list, get, update, fund (int64 exact)', { timeout: 400_000 }, async () => {
    const t = `${T}-b`;
    expect((await cycles('tenants', 'create', t)).code).toBe(0);
    const [root, agent] = await Promise.all([
      cycles('budgets', 'create', '--tenant', t, '--scope', `tenant:${t}`, '--unit', 'TOKENS', '--allocated', '100000'),
      cycles('budgets', 'create', '--tenant', t, '--scope', `tenant:${t}/agent:bot`, '--unit', 'tokens', '--allocated', '9223372036854775807', '--json'),
    ]);
    expect(root.code, root.stderr).toBe(0);
    expect(root.stdout).toMatch(/^allocated +100000 TOKENS$/m);
    expect(agent.code, agent.stderr).toBe(0);
    expect(json(agent.stdout).allocated.amount).toBe(2n ** 63n - 1n);

    const [list, get, upd, fund, badAmount, noScope, badUnit, missing] = await Promise.all([
      cycles('budgets', 'list', '--tenant', t, '--sort-by', 'utilization'),
      cycles('budgets', 'get', '--scope', `tenant:${t}/agent:bot`, '--unit', 'TOKENS', '--json'),
      cycles('budgets', 'update', '--scope', `tenant:${t}`, '--unit', 'TOKENS', '--overdraft-limit', '500'),
      cycles('budgets', 'fund', '--tenant', t, '--scope', `tenant:${t}`, '--unit', 'TOKENS', '--amount', '5000', '--idempotency-key', 'fund-1', '--json'),
      cycles('budgets', 'fund', '--tenant', t, '--scope', `tenant:${t}`, '--unit', 'TOKENS', '--amount', '12x'),
      cycles('budgets', 'get', '--unit', 'TOKENS'),
      cycles('budgets', 'get', '--scope', `tenant:${t}`, '--unit', 'EUR'),
      cycles('budgets', 'get', '--scope', `tenant:${t}/agent:nobody`, '--unit', 'TOKENS'),
    ]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^SCOPE +UNIT +STATUS +ALLOCATED +REMAINING/);
    expect(list.stdout).toMatch(new RegExp(`^tenant:${t}/agent:bot +TOKENS +ACTIVE +9223372036854775807 +9223372036854775807`, 'm'));
    expect(get.code).toBe(0);
    expect(json(get.stdout).remaining.amount).toBe(2n ** 63n - 1n);
    expect(upd.code, upd.stderr).toBe(0);
    expect(upd.stdout).toMatch(/^overdraft_limit +500 TOKENS$/m);
    expect(fund.code, fund.stderr).toBe(0);
    expect(json(fund.stdout)).toMatchObject({ operation: 'CREDIT', new_allocated: { amount: 105000 } });
    expect(badAmount.code).toBe(2);
    expect(badAmount.stderr).toMatch(/--amount: must be a non-negative integer/);
    expect(noScope.code).toBe(2);
    expect(badUnit.code).toBe(2);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/HTTP 404 BUDGET_NOT_FOUND/);
  });

  it('policies: create, list, get, update', { timeout: 400_000 }, async () => {
    const t = `${T}-p`;
    expect((await cycles('tenants', 'create', t)).code).toBe(0);
    const created = await cycles('policies', 'create', '--tenant', t, '--name', 'bots', '--scope-pattern', `tenant:${t}/agent:*`, '--priority', '5', '--json');
    expect(created.code, created.stderr).toBe(0);
    const p = json(created.stdout);
    expect(p).toMatchObject({ name: 'bots', scope_pattern: `tenant:${t}/agent:*`, priority: 5, status: 'ACTIVE' });
    const [list, get, upd, noTenant, missing] = await Promise.all([
      cycles('policies', 'list', '--tenant', t),
      cycles('policies', 'get', p.policy_id, '--tenant', t),
      cycles('policies', 'update', p.policy_id, '--status', 'disabled', '--json'),
      cycles('policies', 'list'),
      cycles('policies', 'get', 'pol_000000000000000000000000', '--tenant', t),
    ]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${p.policy_id} +bots +tenant:${t}/agent:\\* +5 +ACTIVE`, 'm'));
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(new RegExp(`^policy_id +${p.policy_id}$`, 'm'));
    expect(upd.code, upd.stderr).toBe(0);
    expect(json(upd.stdout)).toMatchObject({ policy_id: p.policy_id, status: 'DISABLED' });
    expect(noTenant.code).toBe(2);
    expect(missing.code).toBe(1);
  });

  it('webhooks: create (secret once), list, get, update, delete', { timeout: 400_000 }, async () => {
    const t = `${T}-w`;
    expect((await cycles('tenants', 'create', t)).code).toBe(0);
    const created = await cycles('webhooks', 'create', '--tenant', t, '--url', HOOK, '--event-types', 'budget.exhausted,reservation.denied', '--name', 'ops');
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^signing_secret +whsec_/m);
    const id = /^subscription_id +(\S+)$/m.exec(created.stdout)![1];
    // the list first: the PATCH to PAUSED below would race it
    const list = await cycles('webhooks', 'list', '--tenant', t);
    const [get, upd, bad] = await Promise.all([
      cycles('webhooks', 'get', id, '--json'),
      cycles('webhooks', 'update', id, '--status', 'PAUSED'),
      cycles('webhooks', 'create', '--tenant', t, '--url', HOOK, '--event-types', 'api_key.created'),
    ]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${id} +${t} +ACTIVE +${HOOK.replace(/\./g, '\\.')} +budget\\.exhausted,reservation\\.denied +0`, 'm'));
    expect(get.code).toBe(0);
    expect(json(get.stdout)).toMatchObject({ subscription_id: id, name: 'ops' });
    expect(json(get.stdout).signing_secret).toBeUndefined();
    expect(upd.code, upd.stderr).toBe(0);
    expect(upd.stdout).toMatch(/^status +PAUSED$/m);
    expect(bad.code).toBe(1); // admin-only event type on a tenant subscription (INVARIANT 2)
    expect(bad.stderr).toMatch(/HTTP 400 INVALID_REQUEST/);
    const del = await cycles('webhooks', 'delete', id);
    expect(del.code, del.stderr).toBe(0);
    const gone = await cycles('webhooks', 'get', id);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/HTTP 404 WEBHOOK_NOT_FOUND/);
  });
});

describe('reservations and events', () => {
  it('reservations list and release (admin key on the tenant\'s behalf)', { timeout: 400_000 }, async () => {
    const t = `${T}-r`;
    expect((await cycles('tenants', 'create', t)).code).toBe(0);
    expect((await cycles('budgets', 'create', '--tenant', t, '--scope', `tenant:${t}`, '--unit', 'TOKENS', '--allocated', '1000')).code).toBe(0);
    const key = await srv.tenantKey(t);
    const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', {
      key, body: { idempotency_key: 'r1', subject: { tenant: t, agent: 'bot' }, action: { kind: 'llm.completion', name: 'chat' }, estimate: { unit: 'TOKENS', amount: 300 } },
    });
    expect(r.status).toBe(200);
    const id = r.body.reservation_id;
    const list = await cycles('reservations', 'list', '--tenant', t, '--status', 'active');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${id} +ACTIVE +300 TOKENS +- +tenant:${t}/agent:bot +llm\\.completion`, 'm'));
    const rel = await cycles('reservations', 'release', id, '--reason', 'operator');
    expect(rel.code, rel.stderr).toBe(0);
    expect(rel.stdout).toMatch(/^status +RELEASED$/m);
    expect(rel.stdout).toMatch(/^released +300 TOKENS$/m);
    expect(rel.stdout).toMatch(new RegExp(`tenant:${t}: 1000 TOKENS left`));
    const [again, listed, noTenant] = await Promise.all([
      cycles('reservations', 'release', id),
      cycles('reservations', 'list', '--tenant', t, '--json'),
      cycles('reservations', 'list'),
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/HTTP 409 RESERVATION_FINALIZED/);
    expect(json(listed.stdout).reservations[0]).toMatchObject({ reservation_id: id, status: 'RELEASED' });
    expect(noTenant.code).toBe(2);
  });

  it('events tail: the newest existing events, then new ones as they happen', { timeout: 400_000 }, async () => {
    const t = `${T}-e`;
    expect((await cycles('tenants', 'create', t)).code).toBe(0);
    // history of one tenant, oldest first, as JSON lines
    const hist = await cycles('events', 'tail', '--tenant', t, '--since', '0', '--count', '1', '--json');
    expect(hist.code, hist.stderr).toBe(0);
    expect(json(hist.stdout.trim())).toMatchObject({ event_type: 'tenant.created', tenant_id: t });

    const tail = startCycles(env, 'events', 'tail', '--tenant', t, '--count', '2', '--interval', '200');
    try {
      await waitFor(() => tail.out.stderr.includes('following new events'), 150_000, 'events tail to start following');
      expect((await cycles('tenants', 'update', t, '--name', 'one')).code).toBe(0);
      expect((await cycles('budgets', 'create', '--tenant', t, '--scope', `tenant:${t}`, '--unit', 'CREDITS', '--allocated', '10')).code).toBe(0);
      expect(await tail.done).toBe(0);
    } finally {
      tail.child.kill();
    }
    const lines = tail.out.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^TIMESTAMP +EVENT_TYPE +TENANT_ID +SCOPE +EVENT_ID$/);
    expect(lines.slice(1).map((l) => l.split(/ +/)[1])).toEqual(['tenant.updated', 'budget.created']);
    expect(lines).toHaveLength(3); // not the tenant.created from before it started

    const bad = await cycles('events', 'tail', '--interval', '0');
    expect(bad.code).toBe(2);
  });
});
