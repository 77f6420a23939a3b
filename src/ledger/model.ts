// The ledger's data model in Redis, shared by the runtime plane (reserve/commit/...)
// and the admin plane (budgets, funding). One budget = one hash; every amount field is
// an int64 decimal string mutated only inside Lua scripts with exact arithmetic
// (src/store/lua/int64.lua) or HINCRBY (int64 in Redis itself).
//
// Budget hash  keys.budget(tenant, scope_path, unit)
//   ledger_id, tenant_id, scope (= scope_path, canonical lowercase), unit
//   allocated, remaining, reserved, spent, debt, overdraft_limit   int64 strings
//   is_over_limit            "1" | "0"
//   status                   ACTIVE | FROZEN | CLOSED
//   commit_overage_policy    optional CommitOveragePolicy
//   rollover_policy, period_start, period_end, metadata (JSON)     optional
//   created_at_ms, updated_at_ms, closed_at_ms (set by the tenant-close cascade only;
//   BudgetLedger has no closed_at field, so it is stored for audit, not rendered)
//   Invariant (asserted in scripts and tests): remaining = allocated - spent - reserved - debt
//   Index: keys.budgetIndex(tenant) zset member "<scope_path>|<unit>" (score 0, lex order)
//   Admin writes (create/fund/update/freeze): src/store/lua/budget_*.lua, fund.lua
//
// Tenant hash  keys.tenant(tenant)   (absent ⇒ runtime-only deployment, no guard)
//   tenant_id, name, status (ACTIVE|SUSPENDED|CLOSED), default_commit_overage_policy,
//   default_reservation_ttl_ms, max_reservation_ttl_ms, max_reservation_extensions,
//   observe_mode, parent_tenant_id, metadata (JSON), reservation_expiry_policy,
//   created_at_ms, updated_at_ms, suspended_at_ms, closed_at_ms
//   observe_mode absent ⇒ ENFORCE. Index: keys.tenantIndex() zset (score created_at_ms).
//   Close cascade state: keys.closeCascade(tenant) (src/admin/cascade.ts).
//
// Reservation hash  keys.reservation(tenant, id)
//   reservation_id, tenant, status (ACTIVE|COMMITTED|RELEASED|EXPIRED)
//   subject (JSON, as sent), action (JSON, as sent), unit, estimate (int64 string)
//   scope_path, affected_scopes (JSON array), budgeted (JSON array of scope paths that
//   had a budget in `unit` at reserve time — the scopes commit/release/expire touch)
//   created_at_ms, expires_at_ms, grace_ms, overage_policy (effective), idempotency_key,
//   metadata (JSON, optional), extension_count, max_extensions,
//   policy_id (optional: the policy that governed the reserve, decisions DR2/DR4)
//   id: res_<tenant>_<32 hex> (src/ledger/reservationId.ts, decision DR9).
//   Written by src/store/lua/reserve.lua, with its keys.expirySchedule(tenant) entry
//   (member = id, score = expires_at + grace; decision DR8).
//   commit:  charged, committed_at_ms, committed_metadata (JSON), committed_metrics (JSON),
//            commit_key, commit_hash, commit_result (stored result for replay)
//   release: released_at_ms, release_reason, release_key, release_hash, release_result,
//            released_by (actor JSON: api_key / admin_on_behalf_of / system for the cascade)
//   extend:  extend_hash:<idempotency key>, extend_result:<idempotency key> (one pair per
//            successful extension, so at most max_extensions), extend_metadata (last, JSON)
//   expiry:  expired_at_ms
//   Stored compactly (docs/decisions.md DM1–DM4; src/store/lua/reservation_record.lua writes,
//   src/ledger/reservationRecord.ts decodeReservationHash reads — every reader goes through
//   one of them): short field names (`id`, `sj`, `xt`, …; status keeps its name), values over
//   64 bytes in pieces `~1:<name>`, `~2:<name>`, … so the hash stays a listpack;
//   affected_scopes / budgeted omitted when derivable (budgeted as `bix`, positions in
//   affected_scopes); the reserve / commit / release replays rebuilt from the record: `rbal`
//   / `fbal` hold the Balance rows of the reserve / the finishing response (packed), `exp0`
//   the expiry the reserve set once extend moved it, `caps_json` the caps of an
//   ALLOW_WITH_CAPS. commit_result / release_result are stored only when evidence is on or
//   the rows do not pack losslessly.
//   retention: a finished reservation expires CYCLES_RESERVATION_RETENTION_DAYS (90) after
//   created_at, not sooner than min(that, 1 day) after it finished (ledger_common.lua
//   retain_finalized, TTL passed by the caller); its created-at index entry is trimmed at
//   the same time by the retention worker (src/export/retention.ts); while the export job
//   holds records (CYCLES_EXPORT_DIR) the job sets the TTL after exporting the day
//   (decisions DX1, DX3; D11 is superseded)
//   commit/release/extend/expire: src/store/lua/{commit,release,extend,expire}.lua; each
//   removes / re-scores the expiry schedule entry in the same script.
//   finalized_at_ms = committed_at_ms | released_at_ms
//
// Script results: every script returns cjson.encode(table) in which all int64 values
// are decimal STRINGS (Lua numbers are doubles); TypeScript parses with JSON.parse and
// converts with BigInt. A stored result string replays byte-identically because the
// HTTP body is a pure function of it.
//
// Outbox: every state change the spec names is XADDed to keys.outbox(tenant) inside the
// same script: fields `type`, `data` (JSON, int64 as strings), `ts_ms`, `trace_id`,
// `request_id`, `actor` (JSON), and when known `correlation_id` and `scope`.
// The events/webhooks work consumes it.

import { toJsonInt } from '../json';

export const UNITS = ['USD_MICROCENTS', 'TOKENS', 'CREDITS', 'RISK_POINTS'] as const;
export type Unit = (typeof UNITS)[number];

export const BUDGET_AMOUNT_FIELDS = ['allocated', 'remaining', 'reserved', 'spent', 'debt', 'overdraft_limit'] as const;

export interface Amount { unit: string; amount: number | bigint }

export const amount = (unit: string, v: bigint | string): Amount => ({
  unit,
  amount: toJsonInt(typeof v === 'string' ? BigInt(v) : v),
});

/** Budget hash (or a script's snapshot of one) → the runtime spec's Balance. */
export function renderBalance(h: Record<string, string>): Record<string, unknown> {
  const unit = h.unit;
  const b: Record<string, unknown> = {
    scope: h.scope,
    scope_path: h.scope,
    remaining: amount(unit, h.remaining ?? '0'),
    reserved: amount(unit, h.reserved ?? '0'),
    spent: amount(unit, h.spent ?? '0'),
    allocated: amount(unit, h.allocated ?? '0'),
    debt: amount(unit, h.debt ?? '0'),
    overdraft_limit: amount(unit, h.overdraft_limit ?? '0'),
    is_over_limit: h.is_over_limit === '1',
  };
  return b;
}

/** The invariant every test and script asserts. */
export function ledgerHolds(h: Record<string, string>): boolean {
  const v = (k: string) => BigInt(h[k] ?? '0');
  return v('remaining') === v('allocated') - v('spent') - v('reserved') - v('debt');
}
