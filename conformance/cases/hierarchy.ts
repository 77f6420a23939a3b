// Hierarchical enforcement and idempotency under concurrency: every budgeted derived scope is
// enforced (a short ancestor denies even when the leaf is generous), parallel reserves never
// oversubscribe a shared ancestor, scope derivation keeps canonical order and skips gaps, and
// concurrent same-key requests converge on one effect.
import type { Case, CaseContext } from '../harness';
import { PLENTY } from './governance-fixtures';
import { balanceOf, big, caseOf, commit, ledgerSnapshot, reserve, reserveBody, reserveOk, tenantWith } from './behaviour-fixtures';

const hc = (id: string, title: string, meta: Parameters<typeof caseOf>[3], run: Parameters<typeof caseOf>[4]): Case => caseOf('hierarchy', id, title, meta, run);

const PARALLEL = 40;
const AMOUNT = 70n;
const ANCESTOR = 1000n; // floor(1000 / 70) = 14 reserves fit

export function hierarchyCases(): Case[] {
  return [
    hc('parallel-shared-ancestor', `${PARALLEL} parallel reserves through generous leaves never oversubscribe their short shared ancestor`, {
      level: 'MUST', requirements: ['CORE.CONCURRENCY_SAFE', 'CORE.ATOMIC_RESERVATION', 'RT.SCOPE.ANCESTORS_ENFORCED', 'ERR.BUDGET_EXCEEDED'], tags: ['hierarchy', 'concurrency'],
    }, async (ctx) => {
      // generous tenant root, short workspace, generous agents below it: a server checking only
      // the root, only the leaf, or checking-then-writing non-atomically lets more than 14 in
      const agents = ['a0', 'a1', 'a2', 'a3'];
      const f = await tenantWith(ctx, (t) => [
        { scope: `tenant:${t}`, allocated: PLENTY },
        { scope: `tenant:${t}/workspace:w`, allocated: ANCESTOR },
        ...agents.map((a) => ({ scope: `tenant:${t}/workspace:w/agent:${a}`, allocated: PLENTY })),
      ]);
      const results = await Promise.all(Array.from({ length: PARALLEL }, (_, i) =>
        reserve(ctx, f, AMOUNT, {}, { workspace: 'w', agent: agents[i % agents.length] })));
      const ok = results.filter((r) => r.status === 200);
      const other = results.filter((r) => r.status !== 200 && !(r.status === 409 && r.body?.error === 'BUDGET_EXCEEDED'));
      ctx.check(other.length === 0, `unexpected answers: ${other.map((r) => `${r.status} ${r.text.slice(0, 120)}`).join(' | ')}`);
      const fit = ANCESTOR / AMOUNT;
      ctx.check(BigInt(ok.length) * AMOUNT <= ANCESTOR, `ancestor oversubscribed: ${ok.length} × ${AMOUNT} > ${ANCESTOR}`);
      ctx.check(BigInt(ok.length) === fit, `${ok.length} reserves succeeded; exactly ${fit} fit under the shared ancestor`);
      const ws = await balanceOf(ctx, f, `${f.root}/workspace:w`);
      ctx.check(ws.reserved === BigInt(ok.length) * AMOUNT && ws.remaining === ANCESTOR - BigInt(ok.length) * AMOUNT,
        `workspace ledger: reserved ${ws.reserved}, remaining ${ws.remaining} after ${ok.length} successes`);
      const root = await balanceOf(ctx, f, f.root);
      ctx.check(root.reserved === ws.reserved, `tenant root reserved ${root.reserved} != workspace reserved ${ws.reserved} (a partial lock)`);
      let leaves = 0n;
      for (const a of agents) leaves += (await balanceOf(ctx, f, `${f.root}/workspace:w/agent:${a}`)).reserved;
      ctx.check(leaves === ws.reserved, `sum of leaf reserved ${leaves} != workspace reserved ${ws.reserved} (a partial lock)`);
    }),

    hc('short-parent-generous-children', 'a short parent denies reserves its generous children would allow, summed across siblings, at every evaluation path', {
      level: 'MUST', requirements: ['RT.SCOPE.ANCESTORS_ENFORCED', 'CORE.ATOMIC_RESERVATION', 'ERR.BUDGET_EXCEEDED', 'RT.DRY_RUN', 'RT.DECIDE.DENY_200'], tags: ['hierarchy'],
    }, async (ctx) => {
      const f = await tenantWith(ctx, (t) => [
        { scope: `tenant:${t}`, allocated: PLENTY },
        { scope: `tenant:${t}/workspace:w`, allocated: 100 },
        { scope: `tenant:${t}/workspace:w/agent:x`, allocated: PLENTY },
        { scope: `tenant:${t}/workspace:w/agent:y`, allocated: PLENTY },
      ]);
      const ws = `${f.root}/workspace:w`;
      const before = await ledgerSnapshot(ctx, f);
      const deny = await reserve(ctx, f, 150, {}, { workspace: 'w', agent: 'x' });
      ctx.expectStatus(deny, 409, 'BUDGET_EXCEEDED');
      const scope = deny.body?.details?.scope;
      ctx.check(scope === undefined || scope === ws, `denial names scope ${scope}, the short one is ${ws}`);
      ctx.check(await ledgerSnapshot(ctx, f) === before, 'a denied reserve moved some scope');
      const dry = await reserve(ctx, f, 150, { dry_run: true }, { workspace: 'w', agent: 'x' });
      if (ctx.expectStatus(dry, 200)) ctx.check(dry.body.decision === 'DENY' && dry.body.reason_code === 'BUDGET_EXCEEDED', `dry_run ${dry.text.slice(0, 200)}`);
      const dec = await ctx.callOp('runtime', 'decide', { key: f.key, body: reserveBody(ctx, { tenant: f.tenantId, workspace: 'w', agent: 'x' }, 150) });
      if (ctx.expectStatus(dec, 200)) ctx.check(dec.body.decision === 'DENY' && dec.body.reason_code === 'BUDGET_EXCEEDED', `decide ${dec.text.slice(0, 200)}`);
      // siblings share the parent: 60 for x fits, then 50 for y does not (60 + 50 > 100)
      await reserveOk(ctx, f, 60, {}, { workspace: 'w', agent: 'x' });
      ctx.expectStatus(await reserve(ctx, f, 50, {}, { workspace: 'w', agent: 'y' }), 409, 'BUDGET_EXCEEDED');
      await reserveOk(ctx, f, 40, {}, { workspace: 'w', agent: 'y' });
      const w = await balanceOf(ctx, f, ws);
      ctx.check(w.reserved === 100n && w.remaining === 0n, `parent after 60 + 40: reserved ${w.reserved}, remaining ${w.remaining}`);
      const y = await balanceOf(ctx, f, `${ws}/agent:y`);
      ctx.check(y.reserved === 40n, `agent y reserved ${y.reserved} (a denied reserve leaked into the child)`);
    }),

    hc('scope-derivation', 'affected_scopes are canonical, root first, gaps skipped; unbudgeted levels are skipped in enforcement', {
      level: 'MUST', requirements: ['RT.SCOPE.CANONICAL_ORDER', 'RT.SCOPE.GAPS_SKIPPED', 'RT.SCOPE.BUDGET_REQUIRED'], tags: ['hierarchy'],
    }, async (ctx) => {
      // budgets at the root and at the toolset leaf only; the subject skips workspace/workflow/agent
      const f = await tenantWith(ctx, (t) => [
        { scope: `tenant:${t}`, allocated: PLENTY },
        { scope: `tenant:${t}/app:a/toolset:t`, allocated: 500 },
      ]);
      const subj = { app: 'a', toolset: 't' };
      const r = await reserveOk(ctx, f, 100, {}, subj);
      const full = `${f.root}/app:a/toolset:t`;
      const scopes: string[] = Array.isArray(r.affected_scopes) ? r.affected_scopes : [];
      ctx.check(scopes.includes(f.root) && scopes.includes(full), `affected_scopes ${JSON.stringify(scopes)} miss a budgeted scope`);
      ctx.check(scopes.every((s) => full === s || full.startsWith(`${s}/`)), `affected_scopes ${JSON.stringify(scopes)} are not prefixes of ${full} (gap filled?)`);
      ctx.check(scopes.every((s, i) => i === 0 || s.length > scopes[i - 1].length), `affected_scopes ${JSON.stringify(scopes)} not root first`);
      ctx.check(!scopes.some((s) => /(workspace|workflow|agent):/.test(s)), `affected_scopes ${JSON.stringify(scopes)} fill an absent level`);
      const leaf = await balanceOf(ctx, f, full);
      ctx.check(leaf.reserved === 100n, `leaf reserved ${leaf.reserved}`);
      // the leaf is short: 450 more is denied although the root is generous
      ctx.expectStatus(await reserve(ctx, f, 450, {}, subj), 409, 'BUDGET_EXCEEDED');
      // an unbudgeted leaf is skipped: only the root enforces
      ctx.expectStatus(await reserve(ctx, f, 1, {}, { app: 'a', toolset: 'x' }), 200);
    }),

    hc('unit-mismatch-details', 'a reserve in a unit no derived scope has → 400 UNIT_MISMATCH naming scope, requested unit and existing units', {
      level: 'SHOULD', requirements: ['ERR.UNIT_MISMATCH.DETAILS', 'ERR.UNIT_MISMATCH'], tags: ['errors'],
    }, async (ctx) => {
      const f = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1000 }]);
      const body = { ...reserveBody(ctx, { tenant: f.tenantId }, 1), estimate: { unit: 'TOKENS', amount: 1 } };
      const r = await ctx.callOp('runtime', 'createReservation', { key: f.key, body });
      if (!ctx.expectStatus(r, 400, 'UNIT_MISMATCH')) return;
      const d = r.body.details ?? {};
      ctx.check(d.scope === f.root && d.requested_unit === 'TOKENS' && Array.isArray(d.expected_units) && d.expected_units.includes('USD_MICROCENTS'),
        `details ${JSON.stringify(d)} (want scope ${f.root}, requested_unit TOKENS, expected_units [USD_MICROCENTS])`);
    }),

    hc('idempotency.concurrent-reserve', 'parallel reserves with one idempotency key converge on one reservation, reserved once', {
      level: 'MUST', requirements: ['RT.IDEM.CONCURRENT', 'RT.IDEM.REPLAY', 'CORE.IDEMPOTENT_SETTLEMENT'], tags: ['idempotency', 'concurrency'],
    }, async (ctx) => {
      const f = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1_000_000 }]);
      const body = reserveBody(ctx, { tenant: f.tenantId }, 700);
      const rs = await Promise.all(Array.from({ length: 12 }, () => ctx.callOp('runtime', 'createReservation', { key: f.key, body })));
      const ok = rs.filter((r) => r.status === 200);
      ctx.check(ok.length === rs.length, `answers: ${rs.map((r) => r.status).join(',')} (every same-key request must get the original outcome)`);
      const ids = new Set(ok.map((r) => r.body.reservation_id));
      ctx.check(ids.size === 1, `${ids.size} distinct reservation_ids for one idempotency key: ${[...ids].join(', ')}`);
      const b = await balanceOf(ctx, f, f.root);
      ctx.check(b.reserved === 700n, `reserved ${b.reserved} after ${rs.length} same-key reserves (want 700)`);
    }),

    hc('idempotency.concurrent-commit', 'parallel same-key commits settle once with one answer; parallel distinct-key commits: one wins, the rest 409', {
      level: 'MUST', requirements: ['RT.IDEM.CONCURRENT', 'CORE.IDEMPOTENT_SETTLEMENT', 'ERR.RESERVATION_FINALIZED', 'CORE.CONCURRENCY_SAFE'], tags: ['idempotency', 'concurrency'],
    }, async (ctx) => {
      const f = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1_000_000 }]);
      const a = await reserveOk(ctx, f, 1000);
      const idem = ctx.uid('idem');
      const same = await Promise.all(Array.from({ length: 10 }, () => commit(ctx, f, a.reservation_id, 600, idem)));
      ctx.check(same.every((r) => r.status === 200), `same-key commits: ${same.map((r) => r.status).join(',')}`);
      ctx.check(new Set(same.map((r) => JSON.stringify(r.body?.charged))).size === 1, 'same-key commits answered different charges');
      let bal = await balanceOf(ctx, f, f.root);
      ctx.check(bal.spent === 600n && bal.reserved === 0n, `after same-key commits: spent ${bal.spent}, reserved ${bal.reserved} (want 600, 0)`);
      const b = await reserveOk(ctx, f, 1000);
      const distinct = await Promise.all(Array.from({ length: 10 }, () => commit(ctx, f, b.reservation_id, 300)));
      const won = distinct.filter((r) => r.status === 200);
      const lost = distinct.filter((r) => r.status === 409 && r.body?.error === 'RESERVATION_FINALIZED');
      ctx.check(won.length === 1 && lost.length === distinct.length - 1, `distinct-key commits: ${distinct.map((r) => `${r.status}${r.body?.error ? ` ${r.body.error}` : ''}`).join(',')} (want one 200, the rest 409 RESERVATION_FINALIZED)`);
      bal = await balanceOf(ctx, f, f.root);
      ctx.check(bal.spent === 900n && bal.reserved === 0n, `after racing commits: spent ${bal.spent}, reserved ${bal.reserved} (want 900, 0)`);
    }),

    hc('idempotency.scope', 'one idempotency key is independent across tenants and endpoints; header and body keys must agree', {
      level: 'MUST', requirements: ['RT.IDEM.SCOPE', 'RT.IDEM.HEADER_MATCH', 'AUTH.RESERVATION_OWNERSHIP'], tags: ['idempotency', 'isolation'],
    }, async (ctx) => {
      const fa = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 10_000 }]);
      const fb = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 10_000 }]);
      const key = ctx.uid('shared-idem');
      const a = await ctx.callOp('runtime', 'createReservation', { key: fa.key, body: { ...reserveBody(ctx, { tenant: fa.tenantId }, 100), idempotency_key: key } });
      ctx.require(a, 200);
      // another tenant, same key, different payload: neither a replay of A's answer nor a mismatch
      const b = await ctx.callOp('runtime', 'createReservation', { key: fb.key, body: { ...reserveBody(ctx, { tenant: fb.tenantId }, 200), idempotency_key: key } });
      if (ctx.expectStatus(b, 200)) ctx.check(b.body.reservation_id !== a.body.reservation_id, 'tenant B got tenant A\'s reservation back for a shared idempotency key');
      eqAmount(ctx, (await balanceOf(ctx, fb, fb.root)).reserved, 200n, 'tenant B reserved');
      // same tenant, other endpoint: the key of the reserve can commit it
      const c = await commit(ctx, fa, a.body.reservation_id, 50, key);
      if (ctx.expectStatus(c, 200)) eqAmount(ctx, big(c.body.charged?.amount), 50n, 'commit reusing the reserve key: charged');
      // header and body keys disagree → 400
      const body = reserveBody(ctx, { tenant: fa.tenantId }, 1);
      const h = await ctx.callOp('runtime', 'createReservation', { key: fa.key, body, headers: { 'X-Idempotency-Key': `${body.idempotency_key}-other` } });
      ctx.expectStatus(h, 400);
      eqAmount(ctx, (await balanceOf(ctx, fa, fa.root)).reserved, 0n, 'a refused header/body mismatch reserved');
    }),
  ];
}

function eqAmount(ctx: CaseContext, got: bigint | undefined, want: bigint, what: string): void {
  ctx.check(got === want, `${what}: got ${String(got)}, want ${want}`);
}
