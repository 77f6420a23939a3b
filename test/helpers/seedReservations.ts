// Direct reservation seeding for read-side tests (list/get), following the reservation
// hash in src/ledger/model.ts: hash + created-at index. Tests of the write
// path create reservations through the API instead.
import type { Redis } from 'ioredis';
import { keys } from '../../src/store/keys';

export interface ReservationSeed {
  id: string;
  status?: 'ACTIVE' | 'COMMITTED' | 'RELEASED' | 'EXPIRED';
  subject?: Record<string, string>;
  unit?: string;
  estimate?: bigint | number;
  created_at_ms: number;
  expires_at_ms?: number;
  finalized_at_ms?: number;
  charged?: bigint | number;
  idempotency_key?: string;
  metadata?: Record<string, unknown>;
  committed_metadata?: Record<string, unknown>;
}

export function scopesOf(tenant: string, subject: Record<string, string>): string[] {
  const out: string[] = [];
  let path = '';
  for (const l of ['tenant', 'workspace', 'app', 'workflow', 'agent', 'toolset']) {
    const v = l === 'tenant' ? tenant : subject[l];
    if (v === undefined) continue;
    path = path ? `${path}/${l}:${v.toLowerCase()}` : `${l}:${v.toLowerCase()}`;
    out.push(path);
  }
  return out;
}

export async function putReservation(redis: Redis, tenant: string, s: ReservationSeed): Promise<void> {
  const subject = s.subject ?? { tenant };
  const scopes = scopesOf(tenant, subject);
  const status = s.status ?? 'ACTIVE';
  const h: Record<string, string> = {
    reservation_id: s.id,
    tenant,
    status,
    subject: JSON.stringify(subject),
    action: JSON.stringify({ kind: 'llm.completion', name: 'seed' }),
    unit: s.unit ?? 'USD_MICROCENTS',
    estimate: String(s.estimate ?? 100),
    scope_path: scopes[scopes.length - 1],
    affected_scopes: JSON.stringify(scopes),
    budgeted: JSON.stringify([scopes[0]]),
    created_at_ms: String(s.created_at_ms),
    expires_at_ms: String(s.expires_at_ms ?? s.created_at_ms + 60_000),
    grace_ms: '5000',
    overage_policy: 'ALLOW_IF_AVAILABLE',
    idempotency_key: s.idempotency_key ?? `idem-${s.id}`,
    extension_count: '0',
    max_extensions: '10',
  };
  if (s.metadata) h.metadata = JSON.stringify(s.metadata);
  const fin = String(s.finalized_at_ms ?? s.created_at_ms + 1000);
  if (status === 'COMMITTED') {
    h.charged = String(s.charged ?? s.estimate ?? 100);
    h.committed_at_ms = fin;
    if (s.committed_metadata) h.committed_metadata = JSON.stringify(s.committed_metadata);
  }
  if (status === 'RELEASED') h.released_at_ms = fin;
  if (status === 'EXPIRED') h.expired_at_ms = String(s.expires_at_ms ?? s.created_at_ms + 65_000);
  await redis
    .multi()
    .hset(keys.reservation(tenant, s.id), h)
    .zadd(keys.reservationIndex(tenant), s.created_at_ms, s.id)
    .exec();
}
