// The upstream test vectors (impl/test-vectors.yaml, read through the verified spec bundle).
// Base-plane vectors run always; v0.1.26 vectors only with --features v0.1.26. Vectors are
// non-normative: where one disagrees with the schema (affected_scopes as objects, scope_path
// joined with " > ") the schema wins — see docs/decisions.md "test vectors vs schema".
import { loadBundle } from '../../codegen/bundle';
import type { Case, CaseContext } from '../harness';

interface Vector {
  id: string;
  description?: string;
  request: { method: string; path: string; body: any };
  response: { status: number; body: any };
  policy_context?: unknown;
  tenant_context?: unknown;
  counter_state?: unknown;
}

/** Vectors that need nothing beyond base-plane budgets. */
const BASE_VECTORS = new Set(['allow_happy_path', 'deny_budget_exceeded']);

export function loadVectors(): Vector[] {
  const data = loadBundle().get('test_vectors').data as { test_vectors: Vector[] };
  return data.test_vectors;
}

const big = (v: unknown) => (typeof v === 'bigint' ? v : BigInt(v as number));

/** Budgets implied by a base vector: the remaining balances its response reports (plus the
 *  estimate), or — for the deny vector — the remaining its deny_detail reports. */
function budgetsFor(v: Vector, tenant: string): { scope: string; allocated: bigint }[] {
  const rename = (s: string) => s.replace(/tenant:acme/g, `tenant:${tenant}`);
  const est = big(v.request.body.estimate.amount);
  if (v.id === 'allow_happy_path') {
    return (v.response.body.affected_scopes as { scope: string; remaining: { amount: number } }[]).map((a) => ({
      scope: rename(a.scope), allocated: big(a.remaining.amount) + est,
    }));
  }
  const detail = v.response.body.details.deny_detail;
  return [
    { scope: `tenant:${tenant}`, allocated: 1_000_000_000n },
    { scope: rename(detail.blocked_by_scope), allocated: big(detail.budget_remaining) },
  ];
}

function baseVector(v: Vector): Case {
  return {
    id: `vector.${v.id}`,
    title: `test vector ${v.id}`,
    plane: 'runtime',
    skipOn501: true,
    async run(ctx: CaseContext) {
      const f = await ctx.fixtures.newTenant(ctx, []);
      const budgets = budgetsFor(v, f.tenantId);
      for (const b of budgets) await ctx.fixtures.budget(ctx, f.tenantId, { scope: b.scope, allocated: b.allocated });
      const body = structuredClone(v.request.body);
      body.subject.tenant = f.tenantId;
      body.idempotency_key = ctx.uid('vec');
      const res = await ctx.call('runtime', v.request.method, v.request.path, {
        op: ctx.op('runtime', 'createReservation'), key: f.key, body, headers: { 'X-Idempotency-Key': body.idempotency_key },
      });
      const want = v.response;
      if (!ctx.expectStatus(res, want.status, want.body.error)) return;
      const scopes = budgets.map((b) => b.scope);
      if (want.status === 200) {
        ctx.check(res.body.decision === want.body.decision, `decision ${res.body.decision}, want ${want.body.decision}`);
        ctx.check(big(res.body.reserved?.amount) === big(want.body.reserved.amount), 'reserved amount');
        ctx.check(typeof res.body.reservation_id === 'string', 'reservation_id');
        // Schema: affected_scopes is a string[] in canonical order (the vector shows objects).
        ctx.check(JSON.stringify(res.body.affected_scopes) === JSON.stringify(scopes), `affected_scopes ${JSON.stringify(res.body.affected_scopes)}, want ${JSON.stringify(scopes)}`);
        // Schema: scope_path is "/"-joined (the vector shows " > ").
        if (res.body.scope_path !== undefined) ctx.check(res.body.scope_path === scopes[scopes.length - 1], `scope_path ${res.body.scope_path}`);
        const bal = await ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId, limit: 200 } });
        if (ctx.expectStatus(bal, 200)) {
          for (const a of want.body.affected_scopes as { scope: string; remaining: { amount: number } }[]) {
            const scope = a.scope.replace(/tenant:acme/g, `tenant:${f.tenantId}`);
            const row = (bal.body.balances as any[]).find((b) => b.scope === scope);
            ctx.check(row && big(row.remaining.amount) === big(a.remaining.amount), `remaining at ${scope}: ${row ? row.remaining.amount : 'missing'}, want ${a.remaining.amount}`);
          }
        }
      } else if (ctx.features.has('v0.1.26') && res.body.details?.deny_detail !== undefined) {
        // ErrorResponseExtension: deny_detail on a 409 is a SHOULD; when present it must mirror the code.
        const dd = res.body.details.deny_detail;
        ctx.check(dd?.reason_code === 'BUDGET_EXCEEDED', `deny_detail.reason_code ${dd?.reason_code}`);
      }
    },
  };
}

function extensionVector(v: Vector): Case {
  return {
    id: `vector.${v.id}`,
    title: `test vector ${v.id} (v0.1.26)`,
    plane: 'runtime',
    async run(ctx) {
      if (!ctx.features.has('v0.1.26')) ctx.skip('v0.1.26 vector; run with --features v0.1.26');
      ctx.skip('v0.1.26 vector runner (policies, quotas, observe mode) is not built yet');
    },
  };
}

export function vectorCases(): Case[] {
  return loadVectors().map((v) => (BASE_VECTORS.has(v.id) ? baseVector(v) : extensionVector(v)));
}
