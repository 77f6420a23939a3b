// createEvent: post-hoc accounting without a reservation. Everything that decides or
// writes is in src/store/lua/event.lua (one atomic step: idempotency, closed tenant,
// budget status, overage policy, debit, event record, outbox); this module derives the
// scopes, hashes the payload and maps the script result to the HTTP answer.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError, type ErrorCode } from '../errors';
import { parseJsonBody, stringify, toBig, toJsonInt } from '../json';
import { keys } from '../store/keys';
import { loadScript } from '../store/scripts';
import { runDeclared } from '../store/declaredKeys';
import { amount, renderBalance, UNITS } from './model';
import { deriveScopes } from './scope';
import { requireScopeAllowed } from '../auth/scopeFilter';
import { payloadHash } from './idempotency';

/** How long a replay returns the original 201 (reference: 7 days). */
export const EVENT_IDEM_TTL_MS = 7 * 24 * 3600 * 1000;
/** How long the event record is kept for audit (default of CYCLES_CREATE_EVENT_RETENTION_DAYS). */
export const EVENT_RECORD_TTL_MS = 90 * 24 * 3600 * 1000;

export const DEFAULT_EVENT_OVERAGE_POLICY = 'ALLOW_IF_AVAILABLE';

export interface EventInput {
  tenant: string;
  /** the API key's scope_filter (empty = unrestricted) */
  scopeFilter: readonly string[];
  idempotencyKey: string;
  /** the request body exactly as parsed (int64 beyond 2^53 as BigInt) */
  body: Record<string, any>;
  traceId: string;
  requestId: string;
  actorJson: string;
  /** record TTL argument (src/ledger/retention.ts createEventRetainArg) */
  retain?: string;
}

const SCRIPT_ERRORS: ReadonlySet<string> = new Set([
  'INVALID_REQUEST', 'NOT_FOUND', 'UNIT_MISMATCH', 'TENANT_CLOSED', 'IDEMPOTENCY_MISMATCH', 'FORBIDDEN',
  'BUDGET_FROZEN', 'BUDGET_CLOSED', 'BUDGET_EXCEEDED', 'OVERDRAFT_LIMIT_EXCEEDED', 'INTERNAL_ERROR',
]);

export async function createEvent(redis: Redis, input: EventInput): Promise<Record<string, unknown>> {
  const { tenant, body } = input;
  // 403 on subject.tenant mismatch, 400 on a malformed subject.
  const { scopes, scopePath } = deriveScopes(body.subject, tenant);
  requireScopeAllowed(input.scopeFilter, scopePath);
  const actual = toBig(body.actual?.amount);
  const unit = String(body.actual?.unit);
  const policy = String(body.overage_policy ?? DEFAULT_EVENT_OVERAGE_POLICY);
  // The hash covers the request with defaults filled, so omitting the default policy and
  // sending it explicitly are the same payload. client_time_ms is part of the payload
  // (a different value under the same key is a different request), never of enforcement.
  const hash = payloadHash({ ...body, overage_policy: policy, idempotency_key: input.idempotencyKey });

  const eventId = `evt_${randomUUID()}`;
  const { raw } = await runDeclared(redis, loadScript('event'), [
    keys.idem(tenant, 'event', input.idempotencyKey),
    keys.tenant(tenant),
    keys.outbox(tenant),
    keys.eventRecord(tenant, eventId),
    keys.eventRecordIndex(tenant),
  ], scopes.map((s) => keys.budget(tenant, s, unit)), [
    keys.budget(tenant, '', '').slice(0, -1), // "{t:<tenant>}:budget:" (scope and unit follow)
    JSON.stringify(scopes),
    scopePath,
    actual.toString(),
    unit,
    policy,
    eventId,
    hash,
    input.idempotencyKey,
    tenant,
    stringify(body.subject),
    stringify(body.action),
    body.metrics === undefined ? '' : stringify(body.metrics),
    body.metadata === undefined ? '' : stringify(body.metadata),
    body.client_time_ms === undefined ? '' : toBig(body.client_time_ms).toString(),
    input.traceId,
    input.requestId,
    input.actorJson,
    EVENT_IDEM_TTL_MS,
    input.retain ?? String(EVENT_RECORD_TTL_MS),
    JSON.stringify(UNITS),
  ]);
  const res = JSON.parse(String(raw)) as Record<string, any>;
  if (typeof res.error === 'string') {
    const code = (SCRIPT_ERRORS.has(res.error) ? res.error : 'INTERNAL_ERROR') as ErrorCode;
    throw new ApiError(code, String(res.message ?? res.error), res.details);
  }
  return renderEventResult(res);
}

/** Script result → EventCreateResponse (a pure function of the stored result, so a
 *  replay renders byte-identically). */
export function renderEventResult(res: Record<string, any>): Record<string, unknown> {
  const out: Record<string, unknown> = { status: 'APPLIED', event_id: res.event_id };
  if (res.capped) out.charged = amount(res.unit, String(res.charged));
  out.balances = (res.balances as Record<string, string>[]).map((b) => renderBalance(b));
  return out;
}

/**
 * The audit-trail record of one createEvent (src/store/lua/event.lua writes the hash; the
 * cold export and operators read it through this): everything the request carried —
 * subject, action, actual, metrics, metadata, client_time_ms, exactly as sent — plus what
 * the server decided (charged, effective overage policy, scopes) and when.
 */
export function eventRecordOf(h: Record<string, string>): Record<string, unknown> {
  const j = (f: string): unknown => (h[f] === undefined || h[f] === '' ? undefined : parseJsonBody(h[f]).value);
  const n = (v: string | undefined) => (v === undefined || v === '' ? undefined : toJsonInt(BigInt(v)));
  const out: Record<string, unknown> = {
    event_id: h.event_id,
    tenant: h.tenant,
    subject: j('subject'),
    action: j('action'),
    actual: amount(h.unit, h.actual ?? '0'),
    charged: amount(h.unit, h.charged ?? '0'),
    overage_policy: h.overage_policy,
    scope_path: h.scope_path,
    affected_scopes: j('affected_scopes') ?? [],
    budgeted: j('budgeted') ?? [],
    created_at_ms: n(h.created_at_ms),
    idempotency_key: h.idempotency_key,
  };
  const put = (k: string, v: unknown) => { if (v !== undefined && v !== '') out[k] = v; };
  put('metrics', j('metrics'));
  put('metadata', j('metadata'));
  put('client_time_ms', n(h.client_time_ms));
  put('trace_id', h.trace_id);
  put('request_id', h.request_id);
  return out;
}
