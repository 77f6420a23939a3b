// `cycles tenants|keys|budgets|policies|webhooks …`: the admin API from a shell. Each
// subcommand is one (or, for a `get` the API lacks, a paged) admin request; flags name the
// fields an operator sets most, `--body` carries the rest of the spec's request schema.
import type { Command } from 'commander';
import { randomUUID } from 'node:crypto';
import { CliError, EXIT, request, usageError, type Target } from './client';
import { amountText, col, type Column } from './output';
import {
  action, adminTarget, assign, bodyFrom, connOptions, csv, int64, positiveInt, printList, printOne, required, unit,
  type ConnOptions,
} from './common';

type Opts = ConnOptions & Record<string, string | boolean | undefined>;

const BODY_HELP = 'JSON object (or @file, @- for stdin) with further request fields; flags override it';

/** --limit / --cursor / --sort-by / --sort-dir of a list operation. */
function listOptions(cmd: Command): Command {
  return cmd
    .option('--limit <n>', 'page size (1-100)')
    .option('--cursor <cursor>', 'next_cursor of the previous page')
    .option('--sort-by <field>', 'sort field (see the API)')
    .option('--sort-dir <dir>', 'asc or desc');
}

function pageQuery(o: Opts): Record<string, string | number | undefined> {
  return { limit: positiveInt('--limit', o.limit as string | undefined), cursor: o.cursor as string | undefined, sort_by: o.sortBy as string | undefined, sort_dir: o.sortDir as string | undefined };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Walks a list operation page by page until `match` finds the row (bounded: 100 pages). */
async function findInPages(t: Target, path: string, query: Record<string, string | undefined>, field: string, match: (row: Record<string, unknown>) => boolean): Promise<Record<string, unknown> | undefined> {
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const { body } = await request(t, 'GET', path, { query: { ...query, limit: 100, cursor } });
    const d = body as Record<string, unknown>;
    const hit = ((d[field] ?? []) as Record<string, unknown>[]).find(match);
    if (hit) return hit;
    if (!d.has_more || typeof d.next_cursor !== 'string') return undefined;
    cursor = d.next_cursor;
  }
  return undefined;
}

/** A `get` answered from a list: not found is reported the way the API reports it (exit 1). */
function notFound(what: string): never {
  throw new CliError(`${what} not found (no such row in the list operation)`, EXIT.api);
}

const TENANT_COLS: Column[] = [col('tenant_id', 'tenant_id'), col('name', 'name'), col('status', 'status'), col('parent', 'parent_tenant_id'), col('created_at', 'created_at')];
const KEY_COLS: Column[] = [col('key_id', 'key_id'), col('tenant_id', 'tenant_id'), col('name', 'name'), col('status', 'status'), col('permissions', 'permissions'), col('expires_at', 'expires_at')];
const BUDGET_COLS: Column[] = [
  col('scope', 'scope'), col('unit', 'unit'), col('status', 'status'), col('allocated', 'allocated', amountNum), col('remaining', 'remaining', amountNum),
  col('reserved', 'reserved', amountNum), col('spent', 'spent', amountNum), col('debt', 'debt', amountNum),
];
const POLICY_COLS: Column[] = [col('policy_id', 'policy_id'), col('name', 'name'), col('scope_pattern', 'scope_pattern'), col('priority', 'priority'), col('status', 'status')];
const WEBHOOK_COLS: Column[] = [col('subscription_id', 'subscription_id'), col('tenant_id', 'tenant_id'), col('status', 'status'), col('url', 'url'), col('event_types', 'event_types'), col('failures', 'consecutive_failures')];

function amountNum(v: unknown): string {
  return v && typeof v === 'object' && 'amount' in v ? String((v as { amount: unknown }).amount) : amountText(v);
}

export function registerAdminCommands(program: Command): void {
  registerTenants(program);
  registerKeys(program);
  registerBudgets(program);
  registerPolicies(program);
  registerWebhooks(program);
}

function registerTenants(program: Command): void {
  const g = program.command('tenants').description('tenants (admin API): create, list, get, update');
  connOptions(g.command('create <tenant_id>').description('create a tenant (createTenant)'))
    .option('--name <name>', 'display name (default: the tenant id)')
    .option('--parent <tenant_id>', 'parent tenant')
    .option('--body <json>', BODY_HELP)
    .action(action(async (id: string, o: Opts) => {
      const base = bodyFrom(str(o.body));
      const body = assign(base, { tenant_id: id, name: str(o.name) ?? (base.name === undefined ? id : undefined), parent_tenant_id: str(o.parent) });
      printOne(o, (await request(adminTarget(o), 'POST', '/v1/admin/tenants', { body })).body);
    }));
  connOptions(listOptions(g.command('list').description('list tenants (listTenants)')))
    .option('--status <status>', 'ACTIVE, SUSPENDED or CLOSED')
    .option('--parent <tenant_id>', 'children of this tenant')
    .option('--search <text>', 'substring of id or name')
    .action(action(async (o: Opts) => {
      const { body } = await request(adminTarget(o), 'GET', '/v1/admin/tenants', { query: { ...pageQuery(o), status: str(o.status), parent_tenant_id: str(o.parent), search: str(o.search) } });
      printList(o, body, 'tenants', TENANT_COLS);
    }));
  connOptions(g.command('get <tenant_id>').description('one tenant (getTenant)'))
    .action(action(async (id: string, o: Opts) => {
      printOne(o, (await request(adminTarget(o), 'GET', `/v1/admin/tenants/${encodeURIComponent(id)}`)).body);
    }));
  connOptions(g.command('update <tenant_id>').description('change a tenant (updateTenant); --status SUSPENDED|ACTIVE|CLOSED'))
    .option('--name <name>', 'display name')
    .option('--status <status>', 'ACTIVE, SUSPENDED or CLOSED (closing is irreversible)')
    .option('--body <json>', BODY_HELP)
    .action(action(async (id: string, o: Opts) => {
      const body = assign(bodyFrom(str(o.body)), { name: str(o.name), status: str(o.status)?.toUpperCase() });
      if (!Object.keys(body).length) throw usageError('nothing to update: give --name, --status or --body');
      printOne(o, (await request(adminTarget(o), 'PATCH', `/v1/admin/tenants/${encodeURIComponent(id)}`, { body })).body);
    }));
}

function registerKeys(program: Command): void {
  const g = program.command('keys').description('tenant API keys (admin API): create, list, get, update, revoke');
  connOptions(g.command('create').description('create a tenant API key (createApiKey); the secret is printed once'))
    .requiredOption('--tenant <tenant_id>', 'owning tenant')
    .option('--name <name>', 'key name (default: cli-<date>)')
    .option('--permissions <list>', 'comma list, e.g. reservations:create,reservations:commit,balances:read (default: the server\'s tenant default set)')
    .option('--scope-filter <list>', 'comma list of scopes the key is limited to')
    .option('--expires-at <iso>', 'expiry (ISO 8601)')
    .option('--body <json>', BODY_HELP)
    .action(action(async (o: Opts) => {
      const base = bodyFrom(str(o.body));
      const body = assign(base, {
        tenant_id: str(o.tenant), name: str(o.name) ?? (base.name === undefined ? `cli-${new Date().toISOString().slice(0, 10)}` : undefined),
        permissions: csv(str(o.permissions)), scope_filter: csv(str(o.scopeFilter)), expires_at: str(o.expiresAt),
      });
      printOne(o, (await request(adminTarget(o), 'POST', '/v1/admin/api-keys', { body })).body);
    }));
  connOptions(listOptions(g.command('list').description('list API keys (listApiKeys)')))
    .option('--tenant <tenant_id>', 'only this tenant\'s keys')
    .option('--status <status>', 'ACTIVE, REVOKED or EXPIRED')
    .option('--search <text>', 'substring of key id or name')
    .action(action(async (o: Opts) => {
      const { body } = await request(adminTarget(o), 'GET', '/v1/admin/api-keys', { query: { ...pageQuery(o), tenant_id: str(o.tenant), status: str(o.status), search: str(o.search) } });
      printList(o, body, 'keys', KEY_COLS);
    }));
  connOptions(g.command('get <key_id>').description('one API key (the API has no getApiKey: found through listApiKeys)'))
    .option('--tenant <tenant_id>', 'owning tenant (narrows the search)')
    .action(action(async (id: string, o: Opts) => {
      const row = await findInPages(adminTarget(o), '/v1/admin/api-keys', { tenant_id: str(o.tenant), search: id }, 'keys', (r) => r.key_id === id);
      printOne(o, row ?? notFound(`API key ${id}`));
    }));
  connOptions(g.command('update <key_id>').description('change an API key (updateApiKey); lists replace the stored ones'))
    .option('--name <name>', 'key name')
    .option('--description <text>', 'description')
    .option('--permissions <list>', 'comma list (replaces)')
    .option('--scope-filter <list>', 'comma list (replaces)')
    .option('--body <json>', BODY_HELP)
    .action(action(async (id: string, o: Opts) => {
      const body = assign(bodyFrom(str(o.body)), { name: str(o.name), description: str(o.description), permissions: csv(str(o.permissions)), scope_filter: csv(str(o.scopeFilter)) });
      if (!Object.keys(body).length) throw usageError('nothing to update: give --name, --description, --permissions, --scope-filter or --body');
      printOne(o, (await request(adminTarget(o), 'PATCH', `/v1/admin/api-keys/${encodeURIComponent(id)}`, { body })).body);
    }));
  connOptions(g.command('revoke <key_id>').description('revoke an API key (revokeApiKey)'))
    .option('--reason <text>', 'recorded on the key')
    .action(action(async (id: string, o: Opts) => {
      printOne(o, (await request(adminTarget(o), 'DELETE', `/v1/admin/api-keys/${encodeURIComponent(id)}`, { query: { reason: str(o.reason) } })).body);
    }));
}

function registerBudgets(program: Command): void {
  const g = program.command('budgets').description('budget ledgers (admin API): create, list, get, update, fund');
  connOptions(g.command('create').description('create a budget at a scope (createBudget)'))
    .requiredOption('--tenant <tenant_id>', 'owning tenant')
    .requiredOption('--scope <scope>', 'e.g. tenant:acme or tenant:acme/agent:bot')
    .requiredOption('--unit <unit>', 'USD_MICROCENTS, TOKENS, CREDITS or RISK_POINTS')
    .requiredOption('--allocated <amount>', 'integer amount in the unit')
    .option('--overdraft-limit <amount>', 'integer amount in the unit')
    .option('--commit-overage-policy <policy>', 'REJECT, ALLOW_IF_AVAILABLE or ALLOW_WITH_OVERDRAFT')
    .option('--body <json>', BODY_HELP)
    .action(action(async (o: Opts) => {
      const u = unit(str(o.unit))!;
      const od = int64('--overdraft-limit', str(o.overdraftLimit));
      const body = assign(bodyFrom(str(o.body)), {
        tenant_id: str(o.tenant), scope: str(o.scope), unit: u, allocated: { unit: u, amount: int64('--allocated', str(o.allocated)) },
        overdraft_limit: od === undefined ? undefined : { unit: u, amount: od }, commit_overage_policy: str(o.commitOveragePolicy),
      });
      printOne(o, (await request(adminTarget(o), 'POST', '/v1/admin/budgets', { body })).body);
    }));
  connOptions(listOptions(g.command('list').description('list budgets (listBudgets)')))
    .option('--tenant <tenant_id>', 'only this tenant\'s budgets')
    .option('--scope-prefix <scope>', 'scopes starting with this')
    .option('--unit <unit>', 'one unit')
    .option('--status <status>', 'ACTIVE, FROZEN or CLOSED')
    .action(action(async (o: Opts) => {
      const { body } = await request(adminTarget(o), 'GET', '/v1/admin/budgets', { query: { ...pageQuery(o), tenant_id: str(o.tenant), scope_prefix: str(o.scopePrefix), unit: unit(str(o.unit), false), status: str(o.status) } });
      printList(o, body, 'ledgers', BUDGET_COLS);
    }));
  connOptions(g.command('get').description('one budget by scope and unit (lookupBudget)'))
    .requiredOption('--scope <scope>', 'exact scope')
    .requiredOption('--unit <unit>', 'unit')
    .action(action(async (o: Opts) => {
      printOne(o, (await request(adminTarget(o), 'GET', '/v1/admin/budgets/lookup', { query: { scope: str(o.scope), unit: unit(str(o.unit)) } })).body);
    }));
  connOptions(g.command('update').description('change a budget\'s overdraft limit, overage policy or metadata (updateBudget)'))
    .requiredOption('--scope <scope>', 'exact scope')
    .requiredOption('--unit <unit>', 'unit')
    .option('--overdraft-limit <amount>', 'integer amount in the unit')
    .option('--commit-overage-policy <policy>', 'REJECT, ALLOW_IF_AVAILABLE or ALLOW_WITH_OVERDRAFT')
    .option('--body <json>', BODY_HELP)
    .action(action(async (o: Opts) => {
      const u = unit(str(o.unit))!;
      const od = int64('--overdraft-limit', str(o.overdraftLimit));
      const body = assign(bodyFrom(str(o.body)), { overdraft_limit: od === undefined ? undefined : { unit: u, amount: od }, commit_overage_policy: str(o.commitOveragePolicy) });
      if (!Object.keys(body).length) throw usageError('nothing to update: give --overdraft-limit, --commit-overage-policy or --body');
      printOne(o, (await request(adminTarget(o), 'PATCH', '/v1/admin/budgets', { query: { scope: str(o.scope), unit: u }, body })).body);
    }));
  connOptions(g.command('fund').description('credit, debit, reset or repay a budget (fundBudget)'))
    .requiredOption('--tenant <tenant_id>', 'owning tenant')
    .requiredOption('--scope <scope>', 'exact scope')
    .requiredOption('--unit <unit>', 'unit')
    .requiredOption('--amount <amount>', 'integer amount in the unit')
    .option('--operation <op>', 'CREDIT, DEBIT, RESET, REPAY_DEBT or RESET_SPENT', 'CREDIT')
    .option('--spent <amount>', 'new spent (RESET_SPENT only)')
    .option('--reason <text>', 'recorded with the change')
    .option('--idempotency-key <key>', 'repeat-safe key (default: a random one, printed on stderr)')
    .action(action(async (o: Opts) => {
      const u = unit(str(o.unit))!;
      const spent = int64('--spent', str(o.spent));
      const amount = int64('--amount', required('--amount', str(o.amount)));
      const idem = str(o.idempotencyKey) ?? `cli-${randomUUID()}`;
      if (!o.idempotencyKey && !o.json) console.error(`idempotency_key: ${idem}`);
      const body = assign({}, {
        operation: str(o.operation)?.toUpperCase(), amount: { unit: u, amount },
        spent: spent === undefined ? undefined : { unit: u, amount: spent }, reason: str(o.reason), idempotency_key: idem,
      });
      printOne(o, (await request(adminTarget(o), 'POST', '/v1/admin/budgets/fund', { query: { scope: str(o.scope), unit: u, tenant_id: str(o.tenant) }, body })).body);
    }));
}

function registerPolicies(program: Command): void {
  const g = program.command('policies').description('policies (admin API): create, list, get, update');
  connOptions(g.command('create').description('create a policy (createPolicy); caps, rate limits etc. through --body'))
    .requiredOption('--tenant <tenant_id>', 'owning tenant')
    .requiredOption('--name <name>', 'policy name')
    .requiredOption('--scope-pattern <pattern>', 'e.g. tenant:acme/agent:*')
    .option('--priority <n>', 'higher wins (default 0)')
    .option('--description <text>', 'description')
    .option('--body <json>', BODY_HELP)
    .action(action(async (o: Opts) => {
      const priority = o.priority === undefined ? undefined : Number(int64('--priority', str(o.priority)));
      const body = assign(bodyFrom(str(o.body)), { tenant_id: str(o.tenant), name: str(o.name), scope_pattern: str(o.scopePattern), priority, description: str(o.description) });
      printOne(o, (await request(adminTarget(o), 'POST', '/v1/admin/policies', { body })).body);
    }));
  connOptions(listOptions(g.command('list').description('a tenant\'s policies (listPolicies)')))
    .requiredOption('--tenant <tenant_id>', 'owning tenant (the API requires it with the admin key)')
    .option('--status <status>', 'ACTIVE or DISABLED')
    .option('--scope-pattern <pattern>', 'exact scope pattern')
    .action(action(async (o: Opts) => {
      const { body } = await request(adminTarget(o), 'GET', '/v1/admin/policies', { query: { ...pageQuery(o), tenant_id: str(o.tenant), status: str(o.status), scope_pattern: str(o.scopePattern) } });
      printList(o, body, 'policies', POLICY_COLS);
    }));
  connOptions(g.command('get <policy_id>').description('one policy (the API has no getPolicy: found through listPolicies)'))
    .requiredOption('--tenant <tenant_id>', 'owning tenant')
    .action(action(async (id: string, o: Opts) => {
      const row = await findInPages(adminTarget(o), '/v1/admin/policies', { tenant_id: str(o.tenant) }, 'policies', (r) => r.policy_id === id);
      printOne(o, row ?? notFound(`policy ${id}`));
    }));
  connOptions(g.command('update <policy_id>').description('change a policy (updatePolicy)'))
    .option('--name <name>', 'policy name')
    .option('--status <status>', 'ACTIVE or DISABLED')
    .option('--priority <n>', 'priority')
    .option('--description <text>', 'description')
    .option('--body <json>', BODY_HELP)
    .action(action(async (id: string, o: Opts) => {
      const priority = o.priority === undefined ? undefined : Number(int64('--priority', str(o.priority)));
      const body = assign(bodyFrom(str(o.body)), { name: str(o.name), status: str(o.status)?.toUpperCase(), priority, description: str(o.description) });
      if (!Object.keys(body).length) throw usageError('nothing to update: give --name, --status, --priority, --description or --body');
      printOne(o, (await request(adminTarget(o), 'PATCH', `/v1/admin/policies/${encodeURIComponent(id)}`, { body })).body);
    }));
}

function registerWebhooks(program: Command): void {
  const g = program.command('webhooks').description('webhook subscriptions (admin API): create, list, get, update, delete');
  connOptions(g.command('create').description('subscribe a URL to events (createWebhookSubscription); the signing secret is printed once'))
    .requiredOption('--url <url>', 'receiver (https unless the webhook security config allows http)')
    .requiredOption('--event-types <list>', 'comma list, e.g. budget.exhausted,reservation.denied')
    .option('--tenant <tenant_id>', 'owning tenant (default: a system subscription for every tenant)')
    .option('--name <name>', 'name')
    .option('--body <json>', BODY_HELP)
    .action(action(async (o: Opts) => {
      const body = assign(bodyFrom(str(o.body)), { url: str(o.url), event_types: csv(str(o.eventTypes)), name: str(o.name) });
      const created = (await request(adminTarget(o), 'POST', '/v1/admin/webhooks', { query: { tenant_id: str(o.tenant) }, body })).body as { subscription?: Record<string, unknown>; signing_secret?: string };
      // the subscription's fields, then the secret (shown only this once)
      printOne(o, o.json ? created : { ...created.subscription, signing_secret: created.signing_secret });
    }));
  connOptions(listOptions(g.command('list').description('list subscriptions (listWebhookSubscriptions)')))
    .option('--tenant <tenant_id>', 'only this tenant\'s (or __system__)')
    .option('--status <status>', 'ACTIVE, PAUSED or DISABLED')
    .option('--event-type <type>', 'subscribed to this event type')
    .action(action(async (o: Opts) => {
      const { body } = await request(adminTarget(o), 'GET', '/v1/admin/webhooks', { query: { ...pageQuery(o), tenant_id: str(o.tenant), status: str(o.status), event_type: str(o.eventType) } });
      printList(o, body, 'subscriptions', WEBHOOK_COLS);
    }));
  connOptions(g.command('get <subscription_id>').description('one subscription (getWebhookSubscription)'))
    .action(action(async (id: string, o: Opts) => {
      printOne(o, (await request(adminTarget(o), 'GET', `/v1/admin/webhooks/${encodeURIComponent(id)}`)).body);
    }));
  connOptions(g.command('update <subscription_id>').description('change a subscription (updateWebhookSubscription); --status PAUSED|ACTIVE'))
    .option('--url <url>', 'receiver')
    .option('--event-types <list>', 'comma list (replaces)')
    .option('--status <status>', 'ACTIVE or PAUSED')
    .option('--name <name>', 'name')
    .option('--body <json>', BODY_HELP)
    .action(action(async (id: string, o: Opts) => {
      const body = assign(bodyFrom(str(o.body)), { url: str(o.url), event_types: csv(str(o.eventTypes)), status: str(o.status)?.toUpperCase(), name: str(o.name) });
      if (!Object.keys(body).length) throw usageError('nothing to update: give --url, --event-types, --status, --name or --body');
      printOne(o, (await request(adminTarget(o), 'PATCH', `/v1/admin/webhooks/${encodeURIComponent(id)}`, { body })).body);
    }));
  connOptions(g.command('delete <subscription_id>').description('delete a subscription (deleteWebhookSubscription)'))
    .action(action(async (id: string, o: Opts) => {
      await request(adminTarget(o), 'DELETE', `/v1/admin/webhooks/${encodeURIComponent(id)}`);
      if (o.json) console.log(JSON.stringify({ deleted: id }));
      else console.log(`deleted ${id}`);
    }));
}
