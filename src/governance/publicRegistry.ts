// The two public registry operations (listActionKinds, getActionKind) over HTTP-free
// inputs: the handlers on both planes map the request to these calls and back.
import type { Config } from '../config';
import { ApiError } from '../errors';
import { paginate, parseLimit, type SortKey } from '../list/cursor';
import { ActionKindRegistry, registryFor, type ActionKind } from './registry';
import { ClientThrottle } from './throttle';

export interface PublicRegistry {
  registry: ActionKindRegistry;
  throttle: ClientThrottle;
}

// One registry and one throttle per Config (both planes of a process share them, so a
// client's budget of requests covers the two ports together).
const byConfig = new WeakMap<Config, PublicRegistry>();

export function publicRegistry(config: Config): PublicRegistry {
  let r = byConfig.get(config);
  if (!r) {
    r = {
      registry: registryFor(config),
      throttle: new ClientThrottle(config.actionKindsRateLimitPerMinute),
    };
    byConfig.set(config, r);
  }
  return r;
}

/** 429 LIMIT_EXCEEDED with Retry-After (seconds) when `client` is over its budget. */
export function admit(pr: PublicRegistry, client: string | undefined): void {
  const v = pr.throttle.take(client ?? 'unknown');
  if (!v.ok) {
    throw new ApiError('LIMIT_EXCEEDED', `Too many requests to the action-kind registry; retry in ${v.retryAfterSeconds} s`,
      undefined, 429, { 'Retry-After': String(v.retryAfterSeconds) });
  }
}

export interface KindsPage {
  version: string;
  kinds: ActionKind[];
  next_cursor?: string;
  has_more: boolean;
}

/** One page of the public list: spec order (unknown.call last), keyset cursor bound to the filters. */
export function listKinds(registry: ActionKindRegistry, query: Record<string, unknown>): KindsPage {
  const riskClass = typeof query.risk_class === 'string' && query.risk_class !== '' ? query.risk_class : undefined;
  const deprecated = query.deprecated === true || query.deprecated === 'true';
  const sort: SortKey<ActionKind> = { name: 'registry_order', value: (k) => BigInt(registry.position(k.kind)) };
  const page = paginate(registry.list({ risk_class: riskClass, deprecated }), {
    sort,
    dir: 'asc',
    id: (k) => k.kind,
    limit: parseLimit(query.limit),
    filters: { risk_class: riskClass, deprecated },
    cursor: typeof query.cursor === 'string' ? query.cursor : undefined,
  });
  return {
    version: registry.version,
    kinds: page.rows,
    ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
    has_more: page.hasMore,
  };
}

/** Exact match (built-in or declared custom kind); 404 NOT_FOUND otherwise. */
export function getKind(registry: ActionKindRegistry, kind: string): ActionKind {
  const k = registry.get(kind);
  if (!k) throw new ApiError('NOT_FOUND', `Action kind "${kind}" is not in the registry`);
  return k;
}

/** If-None-Match (weak comparison, RFC 9110 §13.1.2): `*` or any listed tag equal to `etag`. */
export function ifNoneMatchHits(header: string | string[] | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const raw = Array.isArray(header) ? header.join(',') : header;
  const opaque = (t: string) => t.trim().replace(/^W\//, '');
  const want = opaque(etag);
  return raw.split(',').some((t) => t.trim() === '*' || opaque(t) === want);
}
