// `cycles demo`: the protocol in a minute. Against a running server (URLs and admin key from
// flags or env) or a private embedded one: a demo tenant, a least-privilege key, budgets at
// tenant and agent scope, then a short simulated agent loop — reserve → act → commit twice,
// a release, a decide, and a reservation the budget denies — printed as a table of
// decisions and remaining balances.
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CliError, request, usageError, type Target } from './client';
import { exitNow, int64, unit } from './common';

interface DemoOptions {
  runtimeUrl?: string;
  adminUrl?: string;
  adminKey?: string;
  tenant?: string;
  unit?: string;
  actMs?: string;
}

/** The loop's budget story (amounts in the demo unit): the agent's budget runs short first. */
const TENANT_BUDGET = 20_000n;
const AGENT_BUDGET = 5_000n;
const AGENT = 'researcher';
/** The key's permissions: what the loop needs and nothing else (no list, no extend, no admin). */
const DEMO_PERMISSIONS = ['reservations:create', 'reservations:commit', 'reservations:release', 'balances:read'];

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run a short simulated agent against a server (or a private embedded one) and print each decision with the remaining balance')
    .option('--runtime-url <url>', 'runtime plane of a running server (env CYCLES_RUNTIME_URL; with --admin-url; neither: start an embedded server)')
    .option('--admin-url <url>', 'admin plane of a running server (env CYCLES_ADMIN_URL)')
    .option('--admin-key <key>', 'admin key of the running server (env ADMIN_API_KEY)')
    .option('--tenant <tenant_id>', 'demo tenant id (default: demo-<random>)')
    .option('--unit <unit>', 'budget unit', 'TOKENS')
    .option('--act-ms <ms>', 'how long each simulated action takes', '200')
    .action(async (o: DemoOptions) => {
      try {
        await runDemo(o);
      } catch (e) {
        if (!(e instanceof CliError)) throw e;
        console.error(`cycles demo: ${e.message}`);
        if (e.bodyText) console.error(e.bodyText);
        process.exitCode = e.exitCode;
      }
      exitNow();
    });
}

async function runDemo(o: DemoOptions): Promise<void> {
  const started = Date.now();
  const runtimeUrl = o.runtimeUrl ?? process.env.CYCLES_RUNTIME_URL;
  const adminUrl = o.adminUrl ?? process.env.CYCLES_ADMIN_URL;
  if (!!runtimeUrl !== !!adminUrl) throw usageError('give both --runtime-url and --admin-url (or CYCLES_RUNTIME_URL and CYCLES_ADMIN_URL), or neither for an embedded server');
  const u = unit(o.unit)!;
  const actMs = Number(int64('--act-ms', o.actMs) ?? 200n);
  const tenant = o.tenant ?? `demo-${randomBytes(3).toString('hex')}`;
  if (!/^[a-z0-9-]{3,64}$/.test(tenant)) throw usageError('--tenant: 3-64 characters of a-z, 0-9 and -');

  let stop = async () => {};
  let urls: { runtime: string; admin: string; key: string };
  if (runtimeUrl && adminUrl) {
    const key = o.adminKey ?? process.env.ADMIN_API_KEY;
    if (!key) throw usageError('no admin key: set ADMIN_API_KEY or pass --admin-key');
    urls = { runtime: runtimeUrl.replace(/\/+$/, ''), admin: adminUrl.replace(/\/+$/, ''), key };
    console.log(`Cycles demo against ${urls.runtime} (runtime) and ${urls.admin} (admin)`);
  } else {
    process.stdout.write('Starting an embedded Cycles server (private redis-server, temporary data) ... ');
    const embedded = await startEmbedded();
    urls = embedded.urls;
    stop = embedded.stop;
    console.log(`ready: runtime ${urls.runtime}, admin ${urls.admin}`);
  }
  try {
    await demoSteps(urls, tenant, u, actMs, !runtimeUrl);
  } finally {
    await stop();
  }
  console.log(`\nDone in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
}

async function startEmbedded(): Promise<{ urls: { runtime: string; admin: string; key: string }; stop: () => Promise<void> }> {
  const { startServer } = await import('../server');
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cycles-demo-'));
  const key = `cyc_demo_${randomBytes(24).toString('base64url')}`;
  try {
    const server = await startServer({
      env: {
        ...process.env,
        // a private Redis and throwaway key material: the demo never touches an operator's data
        REDIS_URL: '', ADMIN_API_KEY: key, NODE_ENV: 'development', CYCLES_DATA_DIR: dataDir,
        CYCLES_RUNTIME_PORT: '0', CYCLES_ADMIN_PORT: '0', CYCLES_HOST: '127.0.0.1', CYCLES_LOG_LEVEL: 'silent',
      },
    });
    return {
      urls: { runtime: server.urls.runtime!, admin: server.urls.admin!, key },
      async stop() {
        await server.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(dataDir, { recursive: true, force: true });
    throw new CliError(`cannot start the embedded server: ${(e as Error).message}`, 1);
  }
}

type Row = [string, string, string, string, string, string];
const HEAD: Row = ['#', 'step', 'request', 'outcome', `agent left`, 'tenant left'];
const WIDTHS = [2, 30, 18, 36, 11, 11];
const fmt = (r: Row) => r.map((c, i) => (i < 4 ? c.padEnd(WIDTHS[i]) : c.padStart(WIDTHS[i]))).join('  ').trimEnd();

async function demoSteps(urls: { runtime: string; admin: string; key: string }, tenant: string, u: string, actMs: number, embedded: boolean): Promise<void> {
  const admin: Target = { baseUrl: urls.admin, auth: { 'X-Admin-API-Key': urls.key } };
  const tenantScope = `tenant:${tenant}`;
  const agentScope = `${tenantScope}/agent:${AGENT}`;

  console.log(`\nSetup (admin plane)`);
  await request(admin, 'POST', '/v1/admin/tenants', { body: { tenant_id: tenant, name: 'Cycles demo tenant' } });
  console.log(`  tenant   ${tenant}`);
  for (const [scope, amount] of [[tenantScope, TENANT_BUDGET], [agentScope, AGENT_BUDGET]] as const) {
    await request(admin, 'POST', '/v1/admin/budgets', { body: { tenant_id: tenant, scope, unit: u, allocated: { unit: u, amount } } });
    console.log(`  budget   ${scope.padEnd(tenantScope.length + AGENT.length + 7)}  ${amount} ${u}`);
  }
  const created = (await request(admin, 'POST', '/v1/admin/api-keys', {
    body: { tenant_id: tenant, name: 'demo agent', permissions: DEMO_PERMISSIONS },
  })).body as { key_id: string; key_secret: string };
  console.log(`  api key  ${created.key_id}  permissions: ${DEMO_PERMISSIONS.join(', ')}`);

  const rt: Target = { baseUrl: urls.runtime, auth: { 'X-Cycles-API-Key': created.key_secret } };
  const subject = { tenant, agent: AGENT };
  const amount = (n: bigint) => ({ unit: u, amount: n });
  let n = 0;
  const balances = async (): Promise<[string, string]> => {
    const { body } = await request(rt, 'GET', '/v1/balances', { query: { tenant } });
    const rows = (body as { balances: { scope: string; remaining: { amount: unknown } }[] }).balances;
    const left = (scope: string) => String(rows.find((b) => b.scope === scope)?.remaining.amount ?? '-');
    return [left(agentScope), left(tenantScope)];
  };
  const row = async (step: string, req: string, outcome: string) => {
    console.log(fmt([String(++n), step, req, outcome, ...(await balances())]));
  };
  const act = () => new Promise((r) => setTimeout(r, actMs));
  const idem = (s: string) => `${tenant}-${s}`;

  console.log(`\nAgent loop (runtime plane, as agent "${AGENT}" with the demo key)`);
  console.log(fmt(HEAD));
  for (const [label, estimate, actual] of [['plan the research', 1500n, 1180n], ['draft the answer', 2000n, 1950n]] as const) {
    const res = (await request(rt, 'POST', '/v1/reservations', {
      body: { idempotency_key: idem(`r${n}`), subject, action: { kind: 'llm.completion', name: label }, estimate: amount(estimate), ttl_ms: 60_000 },
    })).body as { decision: string; reservation_id: string };
    await row(`reserve: ${label}`, `estimate ${estimate}`, `${res.decision}, ${estimate} held`);
    await act();
    const c = (await request(rt, 'POST', `/v1/reservations/${res.reservation_id}/commit`, {
      body: { idempotency_key: idem(`c${n}`), actual: amount(actual) },
    })).body as { status: string; released?: { amount: unknown } };
    await row(`commit: ${label}`, `actual ${actual}`, `${c.status}, ${actual} spent${c.released ? `, ${String(c.released.amount)} back` : ''}`);
  }

  const search = (await request(rt, 'POST', '/v1/reservations', {
    body: { idempotency_key: idem('search'), subject, action: { kind: 'web.search', name: 'find sources' }, estimate: amount(400n) },
  })).body as { decision: string; reservation_id: string };
  await row('reserve: web search', 'estimate 400', `${search.decision}, 400 held`);
  const rel = (await request(rt, 'POST', `/v1/reservations/${search.reservation_id}/release`, {
    body: { idempotency_key: idem('release'), reason: 'answer found in cache' },
  })).body as { status: string; released: { amount: unknown } };
  await row('release: search not needed', '-', `${rel.status}, ${String(rel.released.amount)} back`);

  const d = (await request(rt, 'POST', '/v1/decide', {
    body: { idempotency_key: idem('decide'), subject, action: { kind: 'llm.completion', name: 'summarize' }, estimate: amount(800n) },
  })).body as { decision: string; reason_code?: string };
  await row('decide: may I summarize?', 'estimate 800', `${d.decision}${d.reason_code ? ` ${d.reason_code}` : ''} (nothing held)`);

  try {
    await request(rt, 'POST', '/v1/reservations', {
      body: { idempotency_key: idem('big'), subject, action: { kind: 'llm.completion', name: 'long report' }, estimate: amount(3000n) },
    });
    await row('reserve: long report', 'estimate 3000', 'ALLOW (unexpected)');
  } catch (e) {
    if (!(e instanceof CliError) || e.exitCode !== 1) throw e;
    const err = (() => { try { return JSON.parse(e.bodyText ?? '') as { error?: string }; } catch { return {}; } })();
    await row('reserve: long report', 'estimate 3000', `DENIED ${err.error ?? e.message} (409)`);
  }

  console.log(`\nThe agent's own budget (${agentScope}) bounds it although the tenant has plenty left.`);
  if (!embedded) {
    console.log(`Continue by hand: KEY=${created.key_secret}`);
    console.log(`  curl -s "${urls.runtime}/v1/balances?tenant=${tenant}" -H "X-Cycles-API-Key: $KEY"`);
  } else {
    console.log('The embedded server and its data are gone when this exits; run `npm start` and `cycles demo --runtime-url … --admin-url …` to keep them.');
  }
}
