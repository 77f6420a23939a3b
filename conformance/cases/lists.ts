// listReservations behaviour: every filter returns exactly the matching rows, every sort_by
// in both directions (desc by default) returns rows in order, sorted paging keeps the order,
// the three time windows bound their own timestamps, and the tenancy rules of the list.
import type { Case, CaseContext, TenantFixture } from '../harness';
import { big, caseOf, commit, release, reserveOk, tenantWith } from './behaviour-fixtures';

const ls = (id: string, title: string, meta: Parameters<typeof caseOf>[3], run: Parameters<typeof caseOf>[4]): Case => caseOf('lists', id, title, meta, run);

interface Seeded { f: TenantFixture; rows: { id: string; idem: string; agent: string; reserved: bigint; status: string; expires: bigint }[] }

/** Four reservations of distinct amount / ttl over two agents: one committed, one released. */
async function seed(ctx: CaseContext): Promise<Seeded> {
  const f = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1_000_000 }]);
  const rows: Seeded['rows'] = [];
  for (const [amt, ttl, agent] of [[30, 50_000, 'x'], [10, 90_000, 'y'], [20, 70_000, 'x'], [40, 60_000, 'y']] as const) {
    const idem = ctx.uid('idem');
    const r = await reserveOk(ctx, f, amt, { ttl_ms: ttl, idempotency_key: idem }, { agent });
    rows.push({ id: r.reservation_id, idem, agent, reserved: BigInt(amt), status: 'ACTIVE', expires: big(r.expires_at_ms)! });
  }
  ctx.require(await commit(ctx, f, rows[1].id, 5), 200);
  rows[1].status = 'COMMITTED';
  ctx.require(await release(ctx, f, rows[2].id), 200);
  rows[2].status = 'RELEASED';
  return { f, rows };
}

async function list(ctx: CaseContext, f: TenantFixture, query: Record<string, string | number>): Promise<any[] | undefined> {
  const r = await ctx.callOp('runtime', 'listReservations', { key: f.key, query: { limit: 200, ...query } });
  if (!ctx.expectStatus(r, 200)) return undefined;
  return r.body.reservations as any[];
}

const ids = (rows: { id?: string; reservation_id?: string }[]) => rows.map((r) => r.reservation_id ?? r.id).sort().join(',');

function sameSet(ctx: CaseContext, got: any[] | undefined, want: { id: string }[], what: string): void {
  if (!got) return;
  ctx.check(ids(got) === ids(want), `${what}: got [${ids(got)}], want [${ids(want)}]`);
}

type Key = (r: any) => string | bigint;
const SORT_KEYS: Record<string, Key> = {
  reservation_id: (r) => String(r.reservation_id),
  tenant: (r) => String(r.subject?.tenant ?? ''),
  scope_path: (r) => String(r.scope_path),
  status: (r) => String(r.status),
  reserved: (r) => big(r.reserved?.amount) ?? 0n,
  created_at_ms: (r) => big(r.created_at_ms) ?? 0n,
  expires_at_ms: (r) => big(r.expires_at_ms) ?? 0n,
};

function ordered(rows: any[], key: Key, dir: 'asc' | 'desc'): boolean {
  for (let i = 1; i < rows.length; i++) {
    const a = key(rows[i - 1]);
    const b = key(rows[i]);
    if (dir === 'asc' ? a > b : a < b) return false;
  }
  return true;
}

const iso = (ms: bigint | number) => new Date(Number(ms)).toISOString();

export function listCases(): Case[] {
  return [
    ls('filters', 'status / subject / idempotency_key filters return exactly the matching rows', {
      level: 'SHOULD', requirements: ['RT.LIST.STATUS_FILTER', 'RT.LIST.SUBJECT_FILTER', 'RT.LIST.IDEMPOTENCY_LOOKUP', 'SHOULD.LIST_RESERVATIONS'], tags: ['lists'],
    }, async (ctx) => {
      const { f, rows } = await seed(ctx);
      sameSet(ctx, await list(ctx, f, {}), rows, 'no filter');
      for (const status of ['ACTIVE', 'COMMITTED', 'RELEASED', 'EXPIRED']) {
        const got = await list(ctx, f, { status });
        sameSet(ctx, got, rows.filter((r) => r.status === status), `status=${status}`);
        if (got) ctx.check(got.every((r) => r.status === status), `status=${status} returned a row of another status`);
      }
      for (const agent of ['x', 'y', 'nobody']) sameSet(ctx, await list(ctx, f, { agent }), rows.filter((r) => r.agent === agent), `agent=${agent}`);
      sameSet(ctx, await list(ctx, f, { status: 'ACTIVE', agent: 'y' }), rows.filter((r) => r.status === 'ACTIVE' && r.agent === 'y'), 'status=ACTIVE&agent=y');
      sameSet(ctx, await list(ctx, f, { workspace: 'none' }), [], 'workspace=none');
      sameSet(ctx, await list(ctx, f, { idempotency_key: rows[3].idem }), [rows[3]], 'idempotency_key');
    }),

    ls('sort', 'every sort_by in both directions orders the rows; sort_dir defaults to desc; sorted paging keeps the order', {
      level: 'MUST', requirements: ['RT.LIST.SORT'], tags: ['lists'],
    }, async (ctx) => {
      const { f, rows } = await seed(ctx);
      for (const [by, key] of Object.entries(SORT_KEYS)) {
        for (const dir of ['asc', 'desc', undefined] as const) {
          const got = await list(ctx, f, dir ? { sort_by: by, sort_dir: dir } : { sort_by: by });
          if (!got) continue;
          sameSet(ctx, got, rows, `sort_by=${by} sort_dir=${dir ?? '(default)'}`);
          ctx.check(ordered(got, key, dir ?? 'desc'), `sort_by=${by} sort_dir=${dir ?? '(default → desc)'} out of order: ${got.map((r) => String(key(r))).join(', ')}`);
        }
      }
      // paging one row at a time through reserved asc yields 10, 20, 30, 40 with no repeats
      const seen: any[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 6; page++) {
        const r = await ctx.callOp('runtime', 'listReservations', { key: f.key, query: { limit: 1, sort_by: 'reserved', sort_dir: 'asc', ...(cursor ? { cursor } : {}) } });
        if (!ctx.expectStatus(r, 200)) return;
        seen.push(...r.body.reservations);
        cursor = r.body.next_cursor;
        if (!cursor) break;
      }
      const amounts = seen.map((r) => String(big(r.reserved?.amount)));
      ctx.check(amounts.join(',') === '10,20,30,40', `paged reserved asc: ${amounts.join(',')} (want 10,20,30,40)`);
    }),

    ls('time-windows', 'from/to, expires_* and finalized_* bound their own timestamps inclusively; from > to → 400; blank bounds are unset', {
      level: 'MUST', requirements: ['RT.LIST.TIME_WINDOWS', 'RT.LIST.WINDOW_VALIDATION', 'SHOULD.LIST_RESERVATIONS'], tags: ['lists'],
    }, async (ctx) => {
      const { f, rows } = await seed(ctx);
      const epoch = iso(0);
      const future = iso(Date.now() + 86_400_000 * 365);
      sameSet(ctx, await list(ctx, f, { from: epoch }), rows, 'from=epoch');
      sameSet(ctx, await list(ctx, f, { from: future }), [], 'from=next year');
      sameSet(ctx, await list(ctx, f, { to: epoch }), [], 'to=epoch');
      sameSet(ctx, await list(ctx, f, { finalized_from: epoch }), rows.filter((r) => r.status !== 'ACTIVE'), 'finalized_from=epoch (finalized rows only)');
      const target = rows[3];
      sameSet(ctx, await list(ctx, f, { expires_from: iso(target.expires), expires_to: iso(target.expires) }), rows.filter((r) => r.expires === target.expires), 'expires_from = expires_to = one row\'s expiry (inclusive)');
      sameSet(ctx, await list(ctx, f, { expires_from: iso(target.expires), finalized_from: epoch }), rows.filter((r) => r.expires >= target.expires && r.status !== 'ACTIVE'), 'expires_from AND finalized_from');
      sameSet(ctx, await list(ctx, f, { from: '', to: '', expires_from: '', expires_to: '', finalized_from: '', finalized_to: '' }), rows, 'blank bounds');
      for (const [a, b] of [['from', 'to'], ['expires_from', 'expires_to'], ['finalized_from', 'finalized_to']]) {
        const r = await ctx.callOp('runtime', 'listReservations', { key: f.key, query: { [a]: future, [b]: epoch } });
        ctx.expectStatus(r, 400, 'INVALID_REQUEST');
      }
    }),

    ls('tenancy', 'the list is tenant-scoped: foreign tenant filter 403, foreign rows never listed; admin key needs tenant (400) and filters by it', {
      level: 'MUST', requirements: ['AUTH.LIST_SCOPE', 'AUTH.ADMIN_READS'], tags: ['lists', 'isolation'],
    }, async (ctx) => {
      const { f, rows } = await seed(ctx);
      const other = await tenantWith(ctx, (t) => [{ scope: `tenant:${t}`, allocated: 1000 }]);
      const mine = await reserveOk(ctx, other, 1);
      ctx.expectStatus(await ctx.callOp('runtime', 'listReservations', { key: other.key, query: { tenant: f.tenantId } }), 403, 'FORBIDDEN');
      sameSet(ctx, await list(ctx, other, {}), [{ id: mine.reservation_id }], 'other tenant\'s unfiltered list');
      sameSet(ctx, await list(ctx, other, { idempotency_key: rows[0].idem }), [], 'other tenant looking up a foreign idempotency_key');
      sameSet(ctx, await list(ctx, f, { tenant: f.tenantId }), rows, 'own tenant filter');
      ctx.expectStatus(await ctx.callOp('runtime', 'listReservations', { admin: true }), 400, 'INVALID_REQUEST');
      const a = await ctx.callOp('runtime', 'listReservations', { admin: true, query: { tenant: f.tenantId, limit: 200 } });
      if (ctx.expectStatus(a, 200)) sameSet(ctx, a.body.reservations, rows, 'admin list with tenant');
    }),
  ];
}
