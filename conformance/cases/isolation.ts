// Security probes of the runtime plane: tenant isolation (another tenant's key against every
// operation that names a reservation or a tenant) and the permission matrix (a key missing one
// permission is refused by the operation that needs it and nothing moves).
import type { Case } from '../harness';
import { HARNESS_KEY_PERMISSIONS } from '../harness';
import { amount, balanceOf, caseOf, commit, extend, ledgerSnapshot, release, reserve, reserveBody, reserveOk, tenantWith } from './behaviour-fixtures';

const iso = (id: string, title: string, meta: Parameters<typeof caseOf>[3], run: Parameters<typeof caseOf>[4]): Case => caseOf('isolation', id, title, meta, run);

export function isolationCases(): Case[] {
  return [
    iso('tenant-matrix', 'tenant B\'s key on tenant A\'s reservation, balances and subject: 403 FORBIDDEN everywhere, A\'s ledger untouched', {
      level: 'MUST', requirements: ['AUTH.RESERVATION_OWNERSHIP', 'AUTH.SUBJECT_TENANT', 'AUTH.BALANCE_SCOPE', 'AUTH.LIST_SCOPE'], tags: ['isolation', 'security'],
    }, async (ctx) => {
      const a = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 10_000 }]);
      const b = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 10_000 }]);
      const r = await reserveOk(ctx, a, 100);
      const before = await ledgerSnapshot(ctx, a);
      const id = r.reservation_id;
      const probes: [string, Promise<any>][] = [
        ['getReservation', ctx.callOp('runtime', 'getReservation', { key: b.key, params: { reservation_id: id } })],
        ['commitReservation', commit(ctx, b, id, 1)],
        ['releaseReservation', release(ctx, b, id)],
        ['extendReservation', extend(ctx, b, id, 1000)],
        ['getBalances tenant=A', ctx.callOp('runtime', 'getBalances', { key: b.key, query: { tenant: a.tenantId } })],
        ['listReservations tenant=A', ctx.callOp('runtime', 'listReservations', { key: b.key, query: { tenant: a.tenantId } })],
        ['createReservation subject A', ctx.callOp('runtime', 'createReservation', { key: b.key, body: reserveBody(ctx, { tenant: a.tenantId }, 1) })],
        ['decide subject A', ctx.callOp('runtime', 'decide', { key: b.key, body: reserveBody(ctx, { tenant: a.tenantId }, 1) })],
        ['createEvent subject A', ctx.callOp('runtime', 'createEvent', { key: b.key, body: { idempotency_key: ctx.uid('idem'), subject: { tenant: a.tenantId }, action: { kind: 'llm.completion', name: 'c' }, actual: amount(1) } })],
      ];
      for (const [name, p] of probes) {
        const x = await p;
        ctx.check(x.status === 403 && x.body?.error === 'FORBIDDEN', `${name} with tenant B's key → ${x.status} ${x.text.slice(0, 160)} (want 403 FORBIDDEN)`);
      }
      ctx.check(await ledgerSnapshot(ctx, a) === before, 'tenant B changed tenant A\'s ledger');
      const g = await ctx.callOp('runtime', 'getReservation', { key: a.key, params: { reservation_id: id } });
      if (ctx.expectStatus(g, 200)) ctx.check(g.body.status === 'ACTIVE' && g.body.expires_at_ms === r.expires_at_ms, `A's reservation changed: ${g.text.slice(0, 200)}`);
      // B's own balances list never shows A's scope
      const bb = await ctx.callOp('runtime', 'getBalances', { key: b.key, query: { tenant: b.tenantId, limit: 200 } });
      if (ctx.expectStatus(bb, 200)) ctx.check((bb.body.balances as any[]).every((x) => String(x.scope).startsWith(`tenant:${b.tenantId}`)), 'tenant B sees a foreign balance');
      // an unknown id stays 404 for B (ownership is only checked on rows that exist)
      ctx.expectStatus(await commit(ctx, b, `${id}-missing`, 1), 404, 'NOT_FOUND');
    }),

    iso('permission-matrix', 'a key missing exactly one reservations:* / balances:read permission gets 403 from the operation needing it and nothing moves', {
      level: 'MAY', requirements: ['AUTH.PERMISSIONS', 'AUTH.API_KEY'], tags: ['permissions', 'security'],
    }, async (ctx) => {
      const f = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 100_000 }]);
      const keyWithout = async (perm: string): Promise<string> => {
        const k = await ctx.callOp('admin', 'createApiKey', { admin: true, body: { tenant_id: f.tenantId, name: `without ${perm}`, permissions: HARNESS_KEY_PERMISSIONS.filter((p) => p !== perm) } });
        ctx.require(k, 201);
        return k.body.key_secret;
      };
      const target = await reserveOk(ctx, f, 100);
      const before = await ledgerSnapshot(ctx, f);
      const matrix: [string, (key: string) => Promise<any>][] = [
        ['reservations:create', (key) => reserve(ctx, { ...f, key }, 1)],
        ['reservations:commit', (key) => commit(ctx, { ...f, key }, target.reservation_id, 1)],
        ['reservations:release', (key) => release(ctx, { ...f, key }, target.reservation_id)],
        ['reservations:extend', (key) => extend(ctx, { ...f, key }, target.reservation_id, 1000)],
        ['reservations:list', (key) => ctx.callOp('runtime', 'listReservations', { key })],
        ['balances:read', (key) => ctx.callOp('runtime', 'getBalances', { key, query: { tenant: f.tenantId } })],
      ];
      for (const [perm, call] of matrix) {
        const x = await call(await keyWithout(perm));
        ctx.check(x.status === 403, `key without ${perm} → ${x.status} ${x.text.slice(0, 160)} (want 403)`);
      }
      ctx.check(await ledgerSnapshot(ctx, f) === before, 'a refused operation moved the ledger');
      const g = await ctx.callOp('runtime', 'getReservation', { key: f.key, params: { reservation_id: target.reservation_id } });
      if (ctx.expectStatus(g, 200)) ctx.check(g.body.status === 'ACTIVE' && g.body.expires_at_ms === target.expires_at_ms, `refused operations changed the reservation: ${g.text.slice(0, 200)}`);
      // an unknown key is 401 on the runtime plane
      ctx.expectStatus(await reserve(ctx, { ...f, key: `${f.key}x` }, 1), 401, 'UNAUTHORIZED');
      const b = await balanceOf(ctx, f, f.root);
      ctx.check(b.reserved === 100n, `reserved ${b.reserved} (want 100)`);
    }),
  ];
}
