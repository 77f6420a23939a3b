// Which permission a tenant API key needs for each operation. The spec's security
// schemes say *which credential* an operation accepts (derived from the generated
// operation table); this one table says *which permission* a tenant key must hold.
// Sources: the admin spec's Permission enum and per-operation descriptions, the
// runtime spec's AUTH & TENANCY section (see docs/decisions.md "permissions").

export const PERMISSIONS = [
  'reservations:create', 'reservations:commit', 'reservations:release', 'reservations:extend',
  'reservations:list', 'balances:read', 'budgets:read', 'budgets:write', 'policies:read',
  'policies:write', 'webhooks:read', 'webhooks:write', 'events:read', 'admin:read', 'admin:write',
  'admin:tenants:read', 'admin:tenants:write', 'admin:budgets:read', 'admin:budgets:write',
  'admin:policies:read', 'admin:policies:write', 'admin:apikeys:read', 'admin:apikeys:write',
  'admin:webhooks:read', 'admin:webhooks:write', 'admin:events:read', 'admin:audit:read',
  'action_quotas:read',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** Default permissions of a new tenant key (admin spec, ApiKey.permissions description). */
export const DEFAULT_TENANT_PERMISSIONS: Permission[] = [
  'reservations:create', 'reservations:commit', 'reservations:release', 'reservations:extend',
  'reservations:list', 'balances:read', 'budgets:read', 'budgets:write', 'policies:read', 'policies:write',
];

/** Key: `${plane}:${operationId}`. Operations absent here need no permission beyond a
 *  valid key (public and admin-only operations never see a tenant key). An array means
 *  "any of" (used for the deprecated balances:read fallback on quota counters). */
export const REQUIRED_PERMISSION: Record<string, Permission | Permission[]> = {
  'runtime:decide': 'reservations:create',
  'runtime:createReservation': 'reservations:create',
  'runtime:commitReservation': 'reservations:commit',
  'runtime:releaseReservation': 'reservations:release',
  'runtime:extendReservation': 'reservations:extend',
  'runtime:listReservations': 'reservations:list',
  'runtime:getReservation': 'reservations:list',
  'runtime:getBalances': 'balances:read',
  // createEvent is a budget debit with no permission of its own in the spec; it is
  // gated like the commit it replaces (decision "permissions").
  'runtime:createEvent': 'reservations:commit',
  'runtime:listActionQuotaCounters': ['action_quotas:read', 'balances:read'],
  'admin:createBudget': 'budgets:write',
  'admin:listBudgets': 'budgets:read',
  'admin:fundBudget': 'budgets:write',
  'admin:lookupBudget': 'budgets:read',
  'admin:createPolicy': 'policies:write',
  'admin:listPolicies': 'policies:read',
  'admin:updatePolicy': 'policies:write',
  'admin:createTenantWebhook': 'webhooks:write',
  'admin:listTenantWebhooks': 'webhooks:read',
  'admin:getTenantWebhook': 'webhooks:read',
  'admin:updateTenantWebhook': 'webhooks:write',
  'admin:deleteTenantWebhook': 'webhooks:write',
  'admin:testTenantWebhook': 'webhooks:write',
  'admin:listTenantWebhookDeliveries': 'webhooks:read',
  'admin:listTenantEvents': 'events:read',
  'admin:getBalances': 'balances:read',
  'admin:listActionQuotaCounters': ['action_quotas:read', 'balances:read'],
};

/** admin:write satisfies every *:write, admin:read every *:read (Permission WILDCARD
 *  SEMANTICS); admin:read never satisfies a write. */
export function holds(granted: ReadonlySet<string>, needed: Permission): boolean {
  if (granted.has(needed)) return true;
  if (needed.endsWith(':write')) return granted.has('admin:write');
  if (needed.endsWith(':read')) return granted.has('admin:read');
  return false;
}
