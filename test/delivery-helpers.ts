// Shared pieces of the webhook delivery suites (test/delivery-*.test.ts): a real HTTP
// receiver on loopback that verifies every signature with the secret returned at create
// time and counts duplicates, plus small admin-API helpers. Not a test file itself.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { call, type ApiResponse } from './helpers/server';
import type { Redis } from 'ioredis';
import { expectValidEvent, storedEvents } from './helpers/events';
import { keys } from '../src/store/keys';
import { masterNodes } from '../src/store/cluster';
import { tenantOfOutboxKey } from '../src/events/relay';

export interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  event: any;
  at: number;
  /** the signature matched the secret registered for the path */
  signatureOk: boolean;
}

/** What the receiver answers one request: a status, optionally after a delay; `hang` never
 *  answers (the dispatcher's timeout must end the attempt). */
export type Reply = { status: number; delayMs?: number } | 'hang';

export class Receiver {
  readonly requests: Received[] = [];
  private server!: Server;
  private readonly secrets = new Map<string, string>();
  private readonly behaviours = new Map<string, (n: number, r: Received) => Reply>();
  private readonly hanging = new Set<ServerResponse>();
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const path = (req.url ?? '/').split('?')[0];
        const secret = this.secrets.get(path);
        const sig = String(req.headers['x-cycles-signature'] ?? '');
        const expected = secret ? `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` : '';
        const signatureOk = !!secret && sig.length === expected.length && timingSafeEqual(Buffer.from(sig), Buffer.from(expected));
        let event: any;
        try { event = JSON.parse(body.toString('utf8')); } catch { event = undefined; }
        const r: Received = { path, headers: req.headers, body, event, at: Date.now(), signatureOk };
        this.requests.push(r);
        const n = this.requests.filter((x) => x.path === path).length;
        const reply = this.behaviours.get(path)?.(n, r) ?? { status: 200 };
        if (reply === 'hang') { this.hanging.add(res); res.on('close', () => this.hanging.delete(res)); return; }
        const send = () => { if (!res.destroyed) { res.statusCode = reply.status; res.end('ok'); } };
        if (reply.delayMs) setTimeout(send, reply.delayMs); else send();
      });
    });
    this.server.keepAliveTimeout = 1000;
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Registers an endpoint path: its signing secret and (optionally) how it answers. */
  endpoint(path: string, secret?: string, behave?: (n: number, r: Received) => Reply): string {
    if (secret) this.secrets.set(path, secret);
    if (behave) this.behaviours.set(path, behave);
    return `${this.url}${path}`;
  }

  setSecret(path: string, secret: string): void { this.secrets.set(path, secret); }
  behave(path: string, f: (n: number, r: Received) => Reply): void { this.behaviours.set(path, f); }

  at(path: string): Received[] { return this.requests.filter((r) => r.path === path); }

  /** event_id → times received, for one path. */
  counts(path: string): Map<string, number> {
    const m = new Map<string, number>();
    for (const r of this.at(path)) m.set(r.event?.event_id, (m.get(r.event?.event_id) ?? 0) + 1);
    return m;
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a truthy value (returned) or the time runs out (throws). */
type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;
export async function waitFor<T>(f: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<Truthy<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v as Truthy<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

export function adminApi(adminUrl: string, adminKey: string) {
  return (method: string, path: string, body?: unknown): Promise<ApiResponse> => call(adminUrl, method, path, { adminKey, body });
}

type Api = ReturnType<typeof adminApi>;

/** Lets subscriptions point at http://127.0.0.1 (the default config blocks loopback and http). */
export async function allowLoopback(admin: Api): Promise<void> {
  const r = await admin('PUT', '/v1/admin/config/webhook-security', { blocked_cidr_ranges: ['10.0.0.0/8', '169.254.0.0/16'], allow_http: true });
  expect(r.status).toBe(200);
}

export async function createTenant(admin: Api, t: string): Promise<void> {
  const r = await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t });
  expect([201, 200], r.text).toContain(r.status);
}

export interface SubInfo { id: string; secret: string; path: string }

/** Creates a subscription by HTTP; the receiver learns the returned secret for its path. */
export async function createSub(admin: Api, rx: Receiver, opts: {
  tenant?: string; path: string; event_types?: string[]; event_categories?: string[]; scope_filter?: string;
  retry_policy?: Record<string, number>; disable_after_failures?: number; headers?: Record<string, string>;
  behave?: (n: number, r: Received) => Reply;
}): Promise<SubInfo> {
  const url = rx.endpoint(opts.path, undefined, opts.behave);
  const body: Record<string, unknown> = { url, event_types: opts.event_types ?? ['budget.funded'] };
  for (const k of ['event_categories', 'scope_filter', 'retry_policy', 'disable_after_failures', 'headers'] as const) {
    if (opts[k] !== undefined) body[k] = opts[k];
  }
  const q = opts.tenant ? `?tenant_id=${encodeURIComponent(opts.tenant)}` : '';
  const r = await admin('POST', `/v1/admin/webhooks${q}`, body);
  expect(r.status, r.text).toBe(201);
  rx.setSecret(opts.path, r.body.signing_secret);
  return { id: r.body.subscription.subscription_id, secret: r.body.signing_secret, path: opts.path };
}

/** A tenant with one TOKENS budget at `tenant:<t>`; returns the fund path (each CREDIT = one budget.funded). */
export async function fundedTenant(admin: Api, t: string): Promise<(amount?: number) => Promise<ApiResponse>> {
  await createTenant(admin, t);
  const r = await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope: `tenant:${t}`, unit: 'TOKENS', allocated: { unit: 'TOKENS', amount: 1_000_000_000 } });
  expect(r.status, r.text).toBe(201);
  const path = `/v1/admin/budgets/fund?tenant_id=${encodeURIComponent(t)}&scope=${encodeURIComponent(`tenant:${t}`)}&unit=TOKENS`;
  return async (amount = 1) => {
    const f = await admin('POST', path, { operation: 'CREDIT', amount: { unit: 'TOKENS', amount } });
    expect(f.status, f.text).toBe(200);
    return f;
  };
}

/** Every delivery of a subscription through the admin list (all pages). */
export async function allDeliveries(admin: Api, subId: string, query = ''): Promise<any[]> {
  const out: any[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 1000; i++) {
    const q = [query, 'limit=100', cursor ? `cursor=${encodeURIComponent(cursor)}` : ''].filter(Boolean).join('&');
    const r = await admin('GET', `/v1/admin/webhooks/${subId}/deliveries?${q}`);
    expect(r.status, r.text).toBe(200);
    out.push(...r.body.deliveries);
    if (!r.body.has_more) return out;
    cursor = r.body.next_cursor;
  }
  throw new Error('too many pages');
}

/** The checks every received delivery must pass: a valid Event, signed with the create-time
 *  secret, and the protocol headers agreeing with the body. */
export function expectWellFormed(r: Received): void {
  expect(r.signatureOk, `signature of ${r.event?.event_id} at ${r.path}`).toBe(true);
  expectValidEvent(r.event);
  expect(r.headers['content-type']).toBe('application/json');
  expect(r.headers['x-cycles-event-id']).toBe(r.event.event_id);
  expect(r.headers['x-cycles-event-type']).toBe(r.event.event_type);
  expect(String(r.headers['user-agent'])).toMatch(/^cycles-server\//);
  if (r.event.trace_id) {
    expect(r.headers['x-cycles-trace-id']).toBe(r.event.trace_id);
    expect(r.headers.traceparent).toMatch(new RegExp(`^00-${r.event.trace_id}-[0-9a-f]{16}-01$`));
  }
  if (r.event.request_id) expect(r.headers['x-request-id']).toBe(r.event.request_id);
}

/** Every event in every outbox of a test Redis, checked with the shared helper (the events
 *  a suite produced — its own and the ones the operations it called wrote). */
export async function expectAllStoredEventsValid(redis: Redis): Promise<number> {
  let n = 0;
  // KEYS is node-local: every master on a cluster
  const found = (await Promise.all(masterNodes(redis).map((n) => n.keys(keys.outbox('*'))))).flat();
  for (const key of found) {
    const tenant = tenantOfOutboxKey(key);
    if (tenant === undefined) continue;
    for (const e of await storedEvents(redis, tenant)) { expectValidEvent(e); n++; }
  }
  return n;
}
