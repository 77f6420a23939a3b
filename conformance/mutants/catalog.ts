// The mutant catalogue of `npm run conformance:mutants` (docs/conformance-mutants.md): realistic
// one-spot defects in our own server, each an exact text replacement in one source file.
// `find` must occur exactly once in `file` (the harness and test/conformance-mutants.test.ts
// refuse otherwise), so a refactor that moves the code is noticed rather than silently
// turning a mutant into the unmutated server.
//
// `profile` says which server configuration and kit options exercise the defect: 'base'
// (features off, the default), 'v0.1.26' (CYCLES_FEATURES=v0.1.26 and the kit's
// --features v0.1.26) or 'evidence' (EVIDENCE_SERVER_ID with an ephemeral signing key, and
// the kit's --evidence). `fast` marks the CI subset: mutants today's kit kills, chosen to cover
// different areas while keeping the CI step short.

export type MutantArea =
  | 'ledger' | 'scope' | 'idempotency' | 'lifecycle' | 'filters' | 'auth'
  | 'errors' | 'events' | 'overage' | 'tenant' | 'governance' | 'evidence';

export type MutantProfile = 'base' | 'v0.1.26' | 'evidence';

export interface Mutant {
  /** stable kebab-case id (used by --only and in reports) */
  id: string;
  area: MutantArea;
  /** the defect in one sentence, as a reviewer would describe the bug */
  description: string;
  /** path relative to the repository root */
  file: string;
  /** exact text, must occur exactly once in `file` */
  find: string;
  replace: string;
  /** default 'base' */
  profile?: MutantProfile;
  /**
   * The strongest spec level the defect violates (default MUST): a defect that breaks only a
   * SHOULD (events, the v0.1.26 extensions, the listReservations status filter) or a MAY
   * (scope_filter, the extension limit) can never be killed by a MUST-level case, so the
   * report also counts kills by a case of at least this level (docs/decisions.md DQ11, DQ13).
   */
  level?: 'MUST' | 'SHOULD' | 'MAY';
  /** part of the CI subset (`--fast`) */
  fast?: boolean;
}

const RESERVE = 'src/store/lua/reserve.lua';
const COMMIT = 'src/store/lua/commit.lua';
const RELEASE = 'src/store/lua/release.lua';
const EXTEND = 'src/store/lua/extend.lua';
const FUND = 'src/store/lua/fund.lua';
const RES_COMMON = 'src/store/lua/reservation_common.lua';
const RES_READ = 'src/ledger/reservationRead.ts';

export const MUTANTS: Mutant[] = [
  // ---------------------------------------------------------------- ledger arithmetic
  {
    id: 'commit-charges-estimate',
    area: 'ledger',
    description: 'commit charges the reserved estimate instead of the actual amount (nothing is given back)',
    file: COMMIT,
    find: '    new.spent = i64_add(b.spent, actual)\n    new.remaining = i64_add(b.remaining, i64_sub(estimate, actual))',
    replace: '    new.spent = i64_add(b.spent, estimate)\n    new.remaining = b.remaining',
  },
  {
    id: 'release-no-restore',
    area: 'ledger',
    description: 'release (and expiry) marks the reservation released but does not give the estimate back to the budgets',
    file: RES_COMMON,
    find: '      reserved = i64_sub(b.reserved, estimate),\n      remaining = i64_add(b.remaining, estimate),',
    replace: '      reserved = b.reserved,\n      remaining = b.remaining,',
  },
  {
    id: 'reserve-remaining-from-allocated',
    area: 'ledger',
    description: 'reserve computes the new remaining from allocated (forgets spent and earlier reservations)',
    file: RESERVE,
    find: "    h.remaining = string.format('%d', b.n.remaining - est_n)",
    replace: "    h.remaining = string.format('%d', b.n.allocated - est_n)",
  },
  {
    id: 'reserve-exact-fit-denied',
    area: 'ledger',
    description: 'off by one: an estimate equal to remaining is refused (BUDGET_EXCEEDED)',
    file: RESERVE,
    find: '    short = n.remaining < est_n',
    replace: '    short = n.remaining <= est_n',
  },
  {
    id: 'fund-debit-checks-allocated',
    area: 'ledger',
    description: 'DEBIT is checked against allocated instead of remaining (can drive remaining negative)',
    file: FUND,
    find: '  if i64_cmp(rem, a) < 0 then',
    replace: '  if i64_cmp(alloc, a) < 0 then',
    level: 'MAY',
  },
  {
    id: 'fund-repay-excess-dropped',
    area: 'ledger',
    description: 'REPAY_DEBT drops the excess over the debt instead of crediting it',
    file: FUND,
    find: '  n_rem = i64_add(rem, a)\n  n_alloc = i64_add(alloc, excess)',
    replace: '  n_rem = i64_add(rem, r)\n  n_alloc = alloc',
  },
  {
    id: 'budget-frozen-ignored',
    area: 'ledger',
    description: 'reserve ignores a FROZEN budget',
    file: RESERVE,
    find: "  if st == 'FROZEN' then\n    reason = 'BUDGET_FROZEN'\n  elseif",
    replace: "  if false then\n    reason = 'BUDGET_FROZEN'\n  elseif",
    fast: true,
    level: 'MAY',
  },
  {
    // Re-targeted (2026-12-06): the first version disabled only the DEBT_OUTSTANDING branch,
    // which no client can reach (debt > 0 with overdraft_limit 0 is always flagged over-limit,
    // so OVERDRAFT_LIMIT_EXCEEDED answers first). The same defect where it is observable:
    // reserve judges debt only against a positive overdraft_limit, so debt on a scope whose
    // limit is 0 (lowered below the debt) blocks nothing.
    id: 'debt-outstanding-ignored',
    area: 'ledger',
    description: 'reserve checks debt only against a positive overdraft_limit: debt on a zero-limit scope (flagged over-limit) no longer blocks reservations',
    file: RESERVE,
    find: "  elseif h.is_over_limit == '1' or over_limit then\n    -- takes precedence over DEBT_OUTSTANDING (ERROR SEMANTICS, last bullet)\n    reason = 'OVERDRAFT_LIMIT_EXCEEDED'\n  elseif debt_pos and not limit_pos then",
    replace: "  elseif over_limit then\n    reason = 'OVERDRAFT_LIMIT_EXCEEDED'\n  elseif false then",
  },

  // ---------------------------------------------------------------- scope hierarchy
  {
    id: 'reserve-leaf-only',
    area: 'scope',
    description: 'reserve checks only the leaf budget, not every budgeted ancestor scope',
    file: RESERVE,
    find: "for _, b in ipairs(budgeted) do\n  local h = b.h\n  local st = h.status or 'ACTIVE'",
    replace: "for _, b in ipairs({budgeted[#budgeted]}) do\n  local h = b.h\n  local st = h.status or 'ACTIVE'",
  },
  {
    id: 'get-reservation-scope-filter-skipped',
    area: 'scope',
    description: "getReservation does not apply the API key's scope_filter",
    file: RES_READ,
    find: "  requireScopeAllowed(caller.scopeFilter ?? [], h.scope_path ?? '');\n",
    replace: '',
    level: 'MAY',
  },

  // ---------------------------------------------------------------- idempotency
  {
    id: 'reserve-replay-ignored',
    area: 'idempotency',
    description: 'reserve ignores the idempotency record: a retry reserves a second time',
    file: RESERVE,
    find: "local rec = redis.call('GET', K_IDEM)",
    replace: 'local rec = false',
    fast: true,
  },
  {
    id: 'reserve-mismatch-undetected',
    area: 'idempotency',
    description: 'reserve replays the stored result for a different payload under the same key (no IDEMPOTENCY_MISMATCH)',
    file: RESERVE,
    find: '  if string.sub(rec, 1, nl - 1) ~= p.hash then',
    replace: '  if false then',
  },
  {
    id: 'commit-replay-ignored',
    area: 'idempotency',
    description: 'a retried commit is not replayed (409 RESERVATION_FINALIZED instead of the original 200)',
    file: COMMIT,
    find: "if r.status == 'COMMITTED' and r.commit_key == idem_key then",
    replace: 'if false then',
  },
  {
    id: 'release-mismatch-undetected',
    area: 'idempotency',
    description: 'release replays for a different payload under the same key (no IDEMPOTENCY_MISMATCH)',
    file: RELEASE,
    find: '  if r.release_hash ~= payload_hash then',
    replace: '  if false then',
  },
  {
    id: 'fund-mismatch-undetected',
    area: 'idempotency',
    description: 'fundBudget replays for a different payload under the same key (no 409)',
    file: FUND,
    find: '    if rec.h ~= phash then',
    replace: '    if false then',
    level: 'MAY',
  },

  // ---------------------------------------------------------------- lifecycle
  {
    id: 'extend-ignores-max-extensions',
    area: 'lifecycle',
    description: 'extend never refuses with MAX_EXTENSIONS_EXCEEDED',
    file: EXTEND,
    find: 'if count >= max_ext then',
    replace: 'if false then',
    level: 'MAY',
  },
  {
    id: 'extend-relative-to-now',
    area: 'lifecycle',
    description: 'extend computes the new expiry from now instead of the current expires_at_ms',
    file: EXTEND,
    find: "local new_expires = string.format('%.0f', expires_at + extend_by)",
    replace: "local new_expires = string.format('%.0f', now + extend_by)",
  },
  {
    id: 'commit-grace-ignored',
    area: 'lifecycle',
    description: 'commit refuses inside the grace period (checks expires_at_ms without grace_period_ms)',
    file: COMMIT,
    find: "if now > tonumber(r.expires_at_ms) + tonumber(r.grace_ms or '0') then",
    replace: 'if now > tonumber(r.expires_at_ms) then',
  },
  {
    id: 'commit-finalized-recommit',
    area: 'lifecycle',
    description: 'a COMMITTED or RELEASED reservation can be committed again (only EXPIRED is refused)',
    file: COMMIT,
    find: "if r.status ~= 'ACTIVE' then return ev_error(state_error(r.status)) end",
    replace: "if r.status == 'EXPIRED' then return ev_error(state_error(r.status)) end",
    fast: true,
  },

  // ---------------------------------------------------------------- list filters
  {
    id: 'list-status-ignored',
    area: 'filters',
    description: 'listReservations ignores the status filter',
    file: RES_READ,
    find: '  if (q.status && h.status !== q.status) return false;\n',
    replace: '',
    level: 'SHOULD',
  },
  {
    id: 'list-scope-filter-ignored',
    area: 'filters',
    description: "listReservations ignores the API key's scope_filter",
    file: RES_READ,
    find: "  if (q.scopeFilter && !scopeFilterAllows(q.scopeFilter, h.scope_path ?? '')) return false;\n",
    replace: '',
    level: 'MAY',
  },
  {
    id: 'list-default-order-reversed',
    area: 'filters',
    description: 'listReservations sorts ascending by default (spec default: desc)',
    file: 'handlers/runtime/listReservations.ts',
    find: "(blank(q.sort_dir) ?? 'desc')",
    replace: "(blank(q.sort_dir) ?? 'asc')",
  },

  // ---------------------------------------------------------------- auth / isolation
  {
    id: 'get-reservation-cross-tenant',
    area: 'auth',
    description: "getReservation reads the reservation of the tenant its id names, not the caller's (cross-tenant read)",
    file: RES_READ,
    find: '  if (caller.tenant !== undefined && owner !== undefined && owner !== caller.tenant) {\n    throw await foreignOrMissing(redis, owner, id);\n  }\n  const tenant = caller.tenant ?? owner;',
    replace: '  const tenant = owner ?? caller.tenant;',
  },
  {
    id: 'permission-check-skipped',
    area: 'auth',
    description: 'a tenant key without the operation permission is let through',
    file: 'src/auth/authenticate.ts',
    find: '  if (anyOf.some((p) => holds(granted, p))) return;',
    replace: '  if (anyOf.length > 0) return;',
    fast: true,
  },
  {
    id: 'read-wildcard-grants-write',
    area: 'auth',
    description: 'admin:read satisfies *:write permissions',
    file: 'src/auth/permissions.ts',
    find: "  if (needed.endsWith(':write')) return granted.has('admin:write');",
    replace: "  if (needed.endsWith(':write')) return granted.has('admin:write') || granted.has('admin:read');",
  },

  // ---------------------------------------------------------------- error shapes
  {
    id: 'idempotency-mismatch-400',
    area: 'errors',
    description: 'IDEMPOTENCY_MISMATCH answered with 400 instead of 409',
    file: 'src/errors.ts',
    find: '  IDEMPOTENCY_MISMATCH: 409,',
    replace: '  IDEMPOTENCY_MISMATCH: 400,',
    fast: true,
  },
  {
    id: 'finalized-as-expired',
    area: 'errors',
    description: 'a mutation of a COMMITTED/RELEASED reservation answers RESERVATION_EXPIRED instead of RESERVATION_FINALIZED',
    file: RES_COMMON,
    find: "    return script_error('RESERVATION_FINALIZED', 'Reservation is already ' .. status, {status = status})",
    replace: "    return script_error('RESERVATION_EXPIRED', 'Reservation is already ' .. status, {status = status})",
  },
  {
    id: 'unit-mismatch-409',
    area: 'errors',
    description: 'UNIT_MISMATCH answered with 409 instead of 400',
    file: 'src/errors.ts',
    find: '  UNIT_MISMATCH: 400,',
    replace: '  UNIT_MISMATCH: 409,',
  },

  // ---------------------------------------------------------------- events
  {
    id: 'fund-event-missing',
    area: 'events',
    description: 'fundBudget emits no budget.* event',
    file: FUND,
    find: 'outbox(KEYS[3], event, cjson.encode(data), now, ctx)',
    replace: '-- (no event)',
    level: 'SHOULD',
  },
  {
    id: 'reservation-denied-event-missing',
    area: 'events',
    description: 'a live reserve denial emits no reservation.denied event',
    file: RESERVE,
    find: '    if event then emit_denied(reason, scope, remaining, dd) end',
    replace: '    -- (no event)',
    level: 'SHOULD',
  },
  {
    id: 'commit-overage-event-missing',
    area: 'events',
    description: 'a commit above the estimate emits no reservation.commit_overage event',
    file: COMMIT,
    find: "if over then\n  outbox(outbox_key, 'reservation.commit_overage'",
    replace: "if false then\n  outbox(outbox_key, 'reservation.commit_overage'",
    level: 'SHOULD',
  },

  // ---------------------------------------------------------------- overage policies
  {
    // Re-targeted (2026-12-06): the first version changed the literal at the end of the
    // overage chain in reserve.lua, which no client reaches (every tenant record stores a
    // default). The default a client sees is the one createTenant stores.
    id: 'overage-default-reject',
    area: 'overage',
    description: 'a tenant created without default_commit_overage_policy gets REJECT instead of ALLOW_IF_AVAILABLE',
    file: 'src/admin/tenants.ts',
    find: "  default_commit_overage_policy: 'ALLOW_IF_AVAILABLE',",
    replace: "  default_commit_overage_policy: 'REJECT',",
  },
  {
    id: 'overdraft-zero-limit-not-capped',
    area: 'overage',
    description: 'ALLOW_WITH_OVERDRAFT on a scope with overdraft_limit 0 is not capped like ALLOW_IF_AVAILABLE',
    file: COMMIT,
    find: "    if policy == 'ALLOW_IF_AVAILABLE' or not i64_is_pos(e.b.overdraft_limit) then",
    replace: "    if policy == 'ALLOW_IF_AVAILABLE' then",
  },
  {
    id: 'overage-reject-ignored',
    area: 'overage',
    description: 'REJECT lets a commit above the estimate through (treated as ALLOW_IF_AVAILABLE)',
    file: COMMIT,
    find: "  if policy == 'REJECT' then",
    replace: "  if policy == 'REJECT' then policy = 'ALLOW_IF_AVAILABLE' end\n  if false then",
  },

  // ---------------------------------------------------------------- tenant status guards
  {
    id: 'tenant-closed-reserve-guard-skipped',
    area: 'tenant',
    description: 'reserve on a CLOSED tenant is not refused with TENANT_CLOSED',
    file: RESERVE,
    find: "if guard == 'TENANT_CLOSED' then\n  return deny('TENANT_CLOSED'",
    replace: "if false then\n  return deny('TENANT_CLOSED'",
  },
  {
    id: 'tenant-closed-mutation-guard-skipped',
    area: 'tenant',
    description: 'commit / release / extend on a CLOSED tenant are not refused with TENANT_CLOSED',
    file: RES_COMMON,
    find: "  if g == 'TENANT_CLOSED' then",
    replace: '  if false then',
  },
  {
    id: 'tenant-suspended-ignored',
    area: 'tenant',
    description: 'a SUSPENDED tenant can still reserve',
    file: RESERVE,
    find: "if tstatus == 'SUSPENDED' then",
    replace: 'if false then',
    level: 'MAY',
  },

  // ---------------------------------------------------------------- added 2026-12-06
  // ledger / filters / scope / idempotency / auth / errors / events / tenant: each killed by
  // an existing MUST-level case (docs/conformance-mutants.md, "Third run").
  {
    id: 'extend-accepts-in-grace',
    area: 'lifecycle',
    description: 'extend is accepted inside the grace period (cut-off expires_at_ms + grace_period_ms instead of expires_at_ms)',
    file: EXTEND,
    find: 'if now > expires_at then',
    replace: "if now > expires_at + tonumber(r.grace_ms or '0') then",
  },
  {
    id: 'list-expires-window-ignored',
    area: 'filters',
    description: 'listReservations ignores expires_from / expires_to',
    file: RES_READ,
    find: '  if (!inWindow(int(h.expires_at_ms), q.expires)) return false;\n',
    replace: '',
  },
  {
    id: 'list-finalized-window-includes-active',
    area: 'filters',
    description: 'the finalized_from / finalized_to window falls back to created_at_ms on rows without finalized_at_ms (ACTIVE rows match)',
    file: RES_READ,
    find: '  if (finBound && !inWindow(finalizedAt(h), q.finalized)) return false;',
    replace: '  if (finBound && !inWindow(finalizedAt(h) ?? int(h.created_at_ms), q.finalized)) return false;',
  },
  {
    id: 'affected-scopes-leaf-first',
    area: 'scope',
    description: 'derived scopes are built leaf first (affected_scopes and enforcement order reversed)',
    file: 'src/ledger/scope.ts',
    find: '    scopes.push(path);',
    replace: '    scopes.unshift(path);',
  },
  {
    id: 'idempotency-header-mismatch-accepted',
    area: 'idempotency',
    description: 'an X-Idempotency-Key header that differs from the body idempotency_key is accepted (body wins)',
    file: 'src/ledger/idempotency.ts',
    find: '  if (header !== undefined && body !== undefined && header !== body) {',
    replace: '  if (false) {',
  },
  {
    id: 'subject-tenant-unchecked',
    area: 'auth',
    description: "subject.tenant is not validated against the key's tenant (the reserve silently lands in the key's tenant)",
    file: 'src/ledger/scope.ts',
    find: '  if (s.tenant !== undefined && (s.tenant as string).toLowerCase() !== keyTenant) {',
    replace: '  if (false) {',
  },
  {
    id: 'tenant-param-unchecked',
    area: 'auth',
    description: "getBalances / listReservations accept a tenant parameter naming another tenant (answer with the caller's rows instead of 403)",
    file: 'src/ledger/balances.ts',
    find: "  if (typeof param === 'string' && param !== '' && param.toLowerCase() !== effective.toLowerCase()) {",
    replace: '  if (false) {',
  },
  {
    id: 'settle-in-foreign-tenant',
    area: 'auth',
    description: "commit / release / extend with a tenant key act in the tenant the reservation id names, not the caller's (cross-tenant settlement)",
    file: 'src/ledger/reservationOps.ts',
    find: '    if (owner !== undefined && owner !== principal.tenantId) throw await foreignOrMissing(redis, owner, reservationId);',
    replace: "    if (owner !== undefined && owner !== principal.tenantId) return { tenant: owner, actor: { type: 'api_key', key_id: principal.keyId }, onBehalf: false };",
  },
  {
    id: 'revoked-key-authenticates',
    area: 'auth',
    description: 'a REVOKED API key still authenticates',
    file: 'src/auth/apiKeys.ts',
    find: "  if (r.status === 'REVOKED') return 'KEY_REVOKED';",
    replace: '',
  },
  {
    id: 'expired-409',
    area: 'errors',
    description: 'RESERVATION_EXPIRED answered with 409 instead of 410',
    file: 'src/errors.ts',
    find: '  RESERVATION_EXPIRED: 410,',
    replace: '  RESERVATION_EXPIRED: 409,',
  },
  {
    id: 'error-body-trace-id-missing',
    area: 'errors',
    description: 'ErrorResponse bodies carry no trace_id',
    file: 'src/http/errorBody.ts',
    find: '    trace_id: traceId,\n',
    replace: '',
  },
  {
    id: 'event-trace-id-dropped',
    area: 'events',
    description: 'events written by the ledger scripts lose the trace_id of the request that caused them',
    file: 'src/store/lua/ledger_common.lua',
    find: "'trace_id', ctx.trace_id or '',",
    replace: "'trace_id', '',",
  },
  {
    id: 'close-cascade-keeps-keys',
    area: 'tenant',
    description: "closing a tenant does not revoke its API keys",
    file: 'src/admin/cascade.ts',
    find: '      if (await cascadeRevokeKey(redis, tenant, keyId, ev)) { report.keys_revoked += 1; step(); }',
    replace: '      if (false) { report.keys_revoked += 1; step(); }',
  },

  // ---------------------------------------------------------------- governance (v0.1.26)
  {
    id: 'gov-deny-list-ignored',
    area: 'governance',
    description: "the selected policy's denied_action_kinds is ignored (allow list still applies)",
    file: RESERVE,
    find: '  if gov.access then',
    replace: "  if gov.access == 'ACTION_KIND_NOT_ALLOWED' then",
    profile: 'v0.1.26',
    level: 'SHOULD',
  },
  {
    id: 'gov-quota-off-by-one',
    area: 'governance',
    description: 'an action quota admits limit + 1 calls per window',
    file: RESERVE,
    find: '      if used >= rule.limit and',
    replace: '      if used > rule.limit and',
    profile: 'v0.1.26',
    level: 'SHOULD',
  },
  {
    id: 'gov-quota-not-counted',
    area: 'governance',
    description: 'an allowed reservation does not increment its quota counters',
    file: RESERVE,
    find: '    local used = inst.used + 1',
    replace: '    local used = inst.used',
    profile: 'v0.1.26',
    level: 'SHOULD',
  },
  {
    id: 'gov-observe-mode-ignored',
    area: 'governance',
    description: 'OBSERVE mode (request or tenant) is ignored: observed calls are enforced',
    file: RESERVE,
    find: "  observe = (eff == 'OBSERVE')",
    replace: '  observe = false',
    profile: 'v0.1.26',
    level: 'SHOULD',
  },
  {
    id: 'gov-allow-list-ignored',
    area: 'governance',
    description: "the selected policy's allowed_action_kinds is ignored (any kind not denied passes)",
    file: 'src/governance/rules.ts',
    find: "  else if (allowed.length > 0 && !allowed.includes(req.kind)) out.access = 'ACTION_KIND_NOT_ALLOWED';",
    replace: '',
    profile: 'v0.1.26',
    level: 'SHOULD',
  },

  // ---------------------------------------------------------------- evidence (--evidence)
  {
    id: 'evidence-signature-wrong-bytes',
    area: 'evidence',
    description: 'the envelope signature covers the id-input bytes (empty evidence_id) instead of the bytes carrying the real evidence_id',
    file: 'src/evidence/signer.ts',
    find: "    const signature = hex(this.sign(Buffer.from(t1, 'utf8')));",
    replace: "    const signature = hex(this.sign(Buffer.from(t0, 'utf8')));",
    profile: 'evidence',
  },
  {
    id: 'evidence-transport-member-attested',
    area: 'evidence',
    description: 'remaining_ttl_ms (a volatile, transport-only member) is attested in the reserve response mirror',
    file: 'src/evidence/mirrors.ts',
    find: "  reason_code: 'leaf', retry_after_ms: 'leaf', expires_at_ms: 'leaf', scope_path: 'leaf', balances: Balances,\n}, ['cycles_evidence', 'remaining_ttl_ms', 'deny_detail']);",
    replace: "  reason_code: 'leaf', retry_after_ms: 'leaf', expires_at_ms: 'leaf', scope_path: 'leaf', balances: Balances, remaining_ttl_ms: 'leaf',\n}, ['cycles_evidence', 'deny_detail']);",
    profile: 'evidence',
  },
  {
    id: 'evidence-replay-mints-second',
    area: 'evidence',
    description: 'a same-key reserve replay mints a second envelope (new issued_at_ms, new evidence_id) instead of returning the original reference',
    file: RESERVE,
    find: '  local stored = string.sub(rec, nl + 1)\n  local active = true',
    replace: "  local stored = string.sub(rec, nl + 1)\n  if p.ev then\n    local n\n    stored, n = string.gsub(stored, '\"ev_ms\":\"%d+\"', '\"ev_ms\":\"' .. now_s .. '\"', 1)\n    if n > 0 then evidence_source(p.ev, mode == 'decide' and 'decide' or 'reserve', p.tenant, now_s, p.trace_id, stored) end\n  end\n  local active = true",
    profile: 'evidence',
  },
  {
    id: 'evidence-jwk-padded-base64',
    area: 'evidence',
    description: 'the JWK Set publishes x as padded standard base64 instead of unpadded base64url',
    file: 'src/evidence/jwks.ts',
    find: "const b64url = (hex: string): string => Buffer.from(hex, 'hex').toString('base64url');",
    replace: "const b64url = (hex: string): string => Buffer.from(hex, 'hex').toString('base64');",
    profile: 'evidence',
  },
];

/** Every area the catalogue must keep covering (checked by the integrity test). */
export const REQUIRED_AREAS: MutantArea[] = [
  'ledger', 'scope', 'idempotency', 'lifecycle', 'filters', 'auth', 'errors', 'events', 'overage', 'tenant', 'governance',
  'evidence',
];

/** Index of the single occurrence of `find` in `text`, or an error message. */
export function locate(text: string, m: Pick<Mutant, 'id' | 'file' | 'find'>): number | string {
  const first = text.indexOf(m.find);
  if (first < 0) return `mutant ${m.id}: find text does not occur in ${m.file}`;
  if (text.indexOf(m.find, first + 1) >= 0) return `mutant ${m.id}: find text occurs more than once in ${m.file}`;
  return first;
}

/** `text` with the mutant's single replacement applied; throws when `find` is not unique. */
export function applyMutant(text: string, m: Mutant): string {
  const at = locate(text, m);
  if (typeof at === 'string') throw new Error(at);
  return text.slice(0, at) + m.replace + text.slice(at + m.find.length);
}
