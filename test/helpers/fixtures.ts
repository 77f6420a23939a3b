// Direct store writes for test setup (tenants, budgets), following src/ledger/model.ts.
// Suites that exercise the admin plane should create state through its API instead.
import type { Redis } from 'ioredis';
import { keys } from '../../src/store/keys';

export interface BudgetSeed {
  allocated: bigint | number | string;
  spent?: bigint | number | string;
  reserved?: bigint | number | string;
  debt?: bigint | number | string;
  overdraft_limit?: bigint | number | string;
  is_over_limit?: boolean;
  status?: 'ACTIVE' | 'FROZEN' | 'CLOSED';
  commit_overage_policy?: string;
}

/** Writes a budget hash with remaining derived from the invariant. */
export async function putBudget(redis: Redis, tenant: string, scope: string, unit: string, seed: BudgetSeed): Promise<void> {
  const b = (v: bigint | number | string | undefined) => BigInt(v ?? 0);
  const remaining = b(seed.allocated) - b(seed.spent) - b(seed.reserved) - b(seed.debt);
  const now = Date.now();
  const h: Record<string, string> = {
    ledger_id: `ldg_${tenant}_${scope}_${unit}`.replace(/[^a-zA-Z0-9_]/g, '_'),
    tenant_id: tenant,
    scope,
    unit,
    allocated: b(seed.allocated).toString(),
    remaining: remaining.toString(),
    reserved: b(seed.reserved).toString(),
    spent: b(seed.spent).toString(),
    debt: b(seed.debt).toString(),
    overdraft_limit: b(seed.overdraft_limit).toString(),
    is_over_limit: seed.is_over_limit ? '1' : '0',
    status: seed.status ?? 'ACTIVE',
    created_at_ms: String(now),
    updated_at_ms: String(now),
  };
  if (seed.commit_overage_policy) h.commit_overage_policy = seed.commit_overage_policy;
  await redis
    .multi()
    .hset(keys.budget(tenant, scope, unit), h)
    .zadd(keys.budgetIndex(tenant), 0, `${scope}|${unit}`)
    .sadd(keys.tenants(), tenant)
    .exec();
}

export async function getBudget(redis: Redis, tenant: string, scope: string, unit: string): Promise<Record<string, string>> {
  return redis.hgetall(keys.budget(tenant, scope, unit));
}

export async function putTenant(redis: Redis, tenant: string, fields: Record<string, string> = {}): Promise<void> {
  const now = String(Date.now());
  await redis
    .multi()
    .hset(keys.tenant(tenant), {
      tenant_id: tenant, name: tenant, status: 'ACTIVE',
      default_commit_overage_policy: 'ALLOW_IF_AVAILABLE', default_reservation_ttl_ms: '60000',
      max_reservation_ttl_ms: '3600000', max_reservation_extensions: '10',
      created_at_ms: now, updated_at_ms: now, ...fields,
    })
    .sadd(keys.tenants(), tenant)
    .exec();
}
