// Reservation fixtures for the commit / release / extend / expiry suites: budgets are
// seeded in the store (fixtures.ts), reservations are created through the API.
import { expect } from 'vitest';
import type { Redis } from 'ioredis';
import { call, type TestServer } from './server';
import { keys } from '../../src/store/keys';
import { ledgerHolds } from '../../src/ledger/model';
import { decodeReservationHash, storedFieldName } from '../../src/ledger/reservationRecord';

let seq = 0;
/** A fresh id per call: tenants, idempotency keys. */
export const uid = (p: string) => `${p}-${process.pid}-${Date.now().toString(36)}-${++seq}`;

export interface ReserveOpts {
  subject?: Record<string, string>;
  unit?: string;
  estimate: bigint | number;
  ttl_ms?: number;
  grace_period_ms?: number;
  overage_policy?: string;
}

/** Creates a live reservation through POST /v1/reservations; returns its id. */
export async function reserve(srv: TestServer, key: string, tenant: string, o: ReserveOpts): Promise<string> {
  const body: Record<string, unknown> = {
    idempotency_key: uid('rsv'),
    subject: o.subject ?? { tenant },
    action: { kind: 'llm.completion', name: 'test' },
    estimate: { unit: o.unit ?? 'USD_MICROCENTS', amount: o.estimate },
  };
  if (o.ttl_ms !== undefined) body.ttl_ms = o.ttl_ms;
  if (o.grace_period_ms !== undefined) body.grace_period_ms = o.grace_period_ms;
  if (o.overage_policy !== undefined) body.overage_policy = o.overage_policy;
  const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body });
  expect(r.status, r.text).toBe(200);
  return r.body.reservation_id as string;
}

export const commitPath = (id: string) => `/v1/reservations/${encodeURIComponent(id)}/commit`;
export const releasePath = (id: string) => `/v1/reservations/${encodeURIComponent(id)}/release`;
export const extendPath = (id: string) => `/v1/reservations/${encodeURIComponent(id)}/extend`;

/** Every budget hash of a tenant satisfies remaining = allocated − spent − reserved − debt. */
export async function expectLedgerHolds(redis: Redis, tenant: string): Promise<void> {
  const members = await redis.zrange(keys.budgetIndex(tenant), 0, -1);
  expect(members.length).toBeGreaterThan(0);
  for (const m of members) {
    const sep = m.lastIndexOf('|');
    const h = await redis.hgetall(keys.budget(tenant, m.slice(0, sep), m.slice(sep + 1)));
    expect(ledgerHolds(h), `${m}: ${JSON.stringify(h)}`).toBe(true);
  }
}

/** Outbox entries of a tenant as {type, data, actor}. */
export async function outboxEvents(redis: Redis, tenant: string): Promise<{ type: string; data: any; actor: any; scope?: string }[]> {
  const rows = await redis.xrange(keys.outbox(tenant), '-', '+');
  return rows.map(([, flat]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) f[flat[i]] = flat[i + 1];
    return { type: f.type, data: JSON.parse(f.data), actor: JSON.parse(f.actor || '{}'), scope: f.scope };
  });
}

/** Moves a reservation's expiry (simulates the passage of time without sleeping). */
export async function setExpiry(redis: Redis, tenant: string, id: string, expiresAtMs: number, graceMs?: number): Promise<void> {
  const fields: Record<string, string> = { [storedFieldName('expires_at_ms')]: String(expiresAtMs) };
  if (graceMs !== undefined) fields[storedFieldName('grace_ms')] = String(graceMs);
  await redis.hset(keys.reservation(tenant, id), fields);
}

export async function redisNowMs(redis: Redis): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** A reservation record with its documented fields and whole values: the stored layout
 *  (long values in pieces, derived fields left out; src/ledger/reservationRecord.ts) decoded. */
export async function readReservation(redis: Redis, tenant: string, id: string): Promise<Record<string, string>> {
  return decodeReservationHash(await redis.hgetall(keys.reservation(tenant, id)));
}
