// GET /v1/reservations — reservations of one tenant, filtered, sorted, keyset-paginated.
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { ApiError } from '../../src/errors';
import { checkTenantParam, subjectSegments } from '../../src/ledger/balances';
import {
  listReservations, parseInclude, parseWindow, SORT_KEYS, STATUSES, type SortBy,
} from '../../src/ledger/reservationRead';
import { parseLimit, type SortDir } from '../../src/list/cursor';

export default async function listReservationsHandler(ctx: HandlerContext): Promise<HandlerResult> {
  const p = ctx.principal;
  const q = ctx.query;
  const tenantParam = typeof q.tenant === 'string' && q.tenant !== '' ? q.tenant : undefined;
  let tenant: string;
  if (p.kind === 'tenant') {
    checkTenantParam(tenantParam, p.tenantId);
    tenant = p.tenantId;
  } else if (p.kind === 'admin') {
    if (!tenantParam) {
      throw new ApiError('INVALID_REQUEST', 'tenant query parameter is required when using admin key authentication');
    }
    tenant = tenantParam;
  } else {
    throw new ApiError('UNAUTHORIZED', 'listReservations requires an API key');
  }

  const status = blank(q.status);
  if (status !== undefined && !(STATUSES as readonly string[]).includes(status)) {
    throw new ApiError('INVALID_REQUEST', `status must be one of ${STATUSES.join(', ')}`);
  }
  const sortBy = (blank(q.sort_by) ?? 'created_at_ms') as SortBy;
  if (!(SORT_KEYS as readonly string[]).includes(sortBy)) {
    throw new ApiError('INVALID_REQUEST', `sort_by must be one of ${SORT_KEYS.join(', ')}`);
  }
  const sortDir = (blank(q.sort_dir) ?? 'desc') as SortDir;
  if (sortDir !== 'asc' && sortDir !== 'desc') throw new ApiError('INVALID_REQUEST', 'sort_dir must be asc or desc');

  // The tenant filter selects the tenant itself; the other subject fields are segment filters.
  const segments = subjectSegments({ ...q, tenant: undefined });
  const page = await listReservations(ctx.deps.redis, {
    tenant,
    idempotencyKey: blank(q.idempotency_key),
    status,
    segments,
    created: parseWindow('from', 'to', q),
    expires: parseWindow('expires_from', 'expires_to', q),
    finalized: parseWindow('finalized_from', 'finalized_to', q),
    sortBy,
    sortDir,
    include: parseInclude(q.include),
    limit: parseLimit(q.limit),
    cursor: blank(q.cursor),
    scopeFilter: p.kind === 'tenant' ? p.scopeFilter : undefined,
    evidenceServerId: ctx.deps.config.evidence?.serverId,
  });
  return { status: 200, body: page, headers: { 'X-Cycles-Tenant': tenant } };
}

function blank(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
