// The case runner: a small context per case (HTTP helpers that check every response against
// the spec and the correlation-id contract), admin-API fixtures, and pass/fail/skip results.
import { randomBytes } from 'node:crypto';
import { operations, type OperationInfo, type Plane } from '../src/generated/operations';
import { httpRequest, type HttpResponse, type RequestOptions } from './client';
import { SpecValidator } from './validate';
import type { Level } from './requirements';
import { SpecBundleError } from '../codegen/bundle';

export interface ConformanceOptions {
  runtimeUrl: string;
  adminUrl: string;
  adminKey: string;
  /** enabled optional features of the server under test, e.g. ['v0.1.26'] */
  features?: string[];
  /** run only cases whose id contains one of these substrings (alias of a substring --only) */
  filter?: string[];
  /** run only cases whose id starts with, or that carry the tag or requirement id, one of these */
  only?: string[];
  /** leave out cases matching any of these (same matching as `only`; wins over it) */
  skip?: string[];
  /** SHOULD / MAY failures fail the run too (exitCodeFor) */
  strict?: boolean;
  /** spec bundle directory (default: env CYCLES_SPECS_DIR, else the pinned bundle beside the
   *  installation); the cases that need it skip with the reason when it is missing */
  specsDir?: string;
  /** parallel cases (bounded; default 8) */
  concurrency?: number;
  /** the server under test has CyclesEvidence enabled (cases/evidence.ts run only with it) */
  evidence?: boolean;
}

export interface Case {
  id: string;
  title: string;
  plane: Plane | 'both';
  /** a 501 from the server skips the case (behaviour that needs handlers not built yet) */
  skipOn501?: boolean;
  /** how binding the checked behaviour is (default MUST): only MUST failures fail a run */
  level?: Level;
  /** ids from the requirement catalogue (catalog.ts) this case checks */
  requirements?: string[];
  /** selection (--only/--skip) and report grouping, e.g. 'vector', 'v0.1.26' */
  tags?: string[];
  run(ctx: CaseContext): Promise<void>;
}

/** The last HTTP exchange of a case: what a report shows next to a failure. */
export interface Exchange {
  method?: string;
  url?: string;
  status?: number;
  /** first BODY_EXCERPT_CHARS characters of the response body */
  bodyExcerpt?: string;
}

/** Bound on the response body kept as failure evidence (a report stays readable in CI). */
export const BODY_EXCERPT_CHARS = 1000;

export type Outcome = 'pass' | 'fail' | 'skip';
export interface CaseResult {
  id: string;
  title: string;
  plane: Plane | 'both';
  level: Level;
  requirements: string[];
  tags: string[];
  outcome: Outcome;
  /** failure problems or the skip reason */
  messages: string[];
  durationMs: number;
  /** failures only: the last HTTP exchange of the case (absent when it made none) */
  evidence?: Exchange;
}

export class SkipCase extends Error {}
class FailCase extends Error {}

export interface TenantFixture {
  tenantId: string;
  /** tenant API key secret */
  key: string;
}

export interface BudgetSpec {
  scope: string;
  unit?: string;
  allocated: bigint | number;
  overdraft_limit?: bigint | number;
  commit_overage_policy?: string;
}

/** Permissions the harness asks for on its tenant keys: every tenant-plane permission. */
export const HARNESS_KEY_PERMISSIONS = [
  'reservations:create', 'reservations:commit', 'reservations:release', 'reservations:extend',
  'reservations:list', 'balances:read', 'budgets:read', 'budgets:write', 'policies:read',
  'policies:write', 'webhooks:read', 'webhooks:write', 'events:read',
];

type CallOptions = RequestOptions & {
  /** operation the request targets: its response schema is used for validation */
  op?: OperationInfo;
  /** tenant API key */
  key?: string;
  /** true = the configured admin key; a string = that admin key */
  admin?: boolean | string;
};

export class CaseContext {
  readonly problems: string[] = [];
  /** the latest HTTP exchange of this case (failure evidence) */
  lastExchange?: Exchange;
  constructor(
    readonly opts: ConformanceOptions,
    readonly features: Set<string>,
    readonly spec: SpecValidator,
    readonly fixtures: Fixtures,
    private readonly current: Case,
  ) {}

  url(plane: Plane): string {
    return plane === 'runtime' ? this.opts.runtimeUrl : this.opts.adminUrl;
  }

  op(plane: Plane, operationId: string): OperationInfo {
    const o = operations.find((x) => x.plane === plane && x.operationId === operationId);
    if (!o) throw new Error(`no operation ${plane}:${operationId} in the table`);
    return o;
  }

  /** One request; the response is checked against the spec and the correlation contract. */
  async call(plane: Plane, method: string, path: string, o: CallOptions = {}): Promise<HttpResponse> {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.key !== undefined) headers['X-Cycles-API-Key'] = o.key;
    if (o.admin) headers['X-Admin-API-Key'] = o.admin === true ? this.opts.adminKey : o.admin;
    const res = await httpRequest(this.url(plane), method, path, { ...o, headers });
    this.record(res);
    const where = `${method} ${path}${o.op ? ` (${o.op.operationId})` : ''} → ${res.status}`;
    if (res.status === 501 && this.current.skipOn501) {
      throw new SkipCase(`prerequisite not implemented: ${o.op?.operationId ?? `${method} ${path}`}`);
    }
    for (const p of this.correlationProblems(res)) this.problems.push(`${where}: ${p}`);
    if (res.status >= 500) this.problems.push(`${where}: server error ${res.text.slice(0, 200)}`);
    if (res.text && !res.json) {
      this.problems.push(`${where}: body is not JSON: ${res.text.slice(0, 120)}`);
    } else if (o.op || res.status >= 400) {
      for (const p of this.spec.checkResponse(plane, o.op ?? null, res.status, res.body, res.json)) {
        this.problems.push(`${where}: response violates the spec: ${p}`);
      }
    }
    return res;
  }

  /** Calls a table operation by id, filling path params from `params`. */
  async callOp(plane: Plane, operationId: string, o: CallOptions & { params?: Record<string, string> } = {}): Promise<HttpResponse> {
    const op = this.op(plane, operationId);
    const path = fillPath(op.path, o.params ?? {});
    return this.call(plane, op.method.toUpperCase(), path, { ...o, op });
  }

  /** Keeps `res` as this case's latest exchange (call() and the fixtures do it themselves; a
   *  case that talks HTTP another way may call it so its failures carry the evidence). */
  record(res: HttpResponse): void {
    this.lastExchange = { method: res.method, url: res.url, status: res.status, bodyExcerpt: res.text.slice(0, BODY_EXCERPT_CHARS) };
  }

  correlationProblems(res: HttpResponse): string[] {
    const out: string[] = [];
    const rid = res.headers.get('x-request-id');
    const tid = res.headers.get('x-cycles-trace-id');
    if (!rid) out.push('missing X-Request-Id header');
    if (!tid || !/^[0-9a-f]{32}$/.test(tid) || /^0+$/.test(tid)) out.push(`X-Cycles-Trace-Id must be 32 lowercase hex, non-zero (got ${tid})`);
    if (res.status >= 400 && res.json && res.body && typeof res.body === 'object') {
      if (res.body.request_id !== rid) out.push(`ErrorResponse.request_id ${res.body.request_id} != X-Request-Id ${rid}`);
      if (res.body.trace_id !== tid) out.push(`ErrorResponse.trace_id ${res.body.trace_id} != X-Cycles-Trace-Id ${tid}`);
    }
    return out;
  }

  /** Soft check: records a problem and carries on. */
  check(cond: unknown, message: string): boolean {
    if (!cond) this.problems.push(message);
    return Boolean(cond);
  }

  /** Soft status (+ error code) check. */
  expectStatus(res: HttpResponse, status: number | number[], code?: string): boolean {
    const want = Array.isArray(status) ? status : [status];
    const ok = want.includes(res.status) && (code === undefined || res.body?.error === code);
    if (!ok) {
      this.problems.push(`expected ${want.join('|')}${code ? ` ${code}` : ''}, got ${res.status} ${res.text.slice(0, 300)}`);
    }
    return ok;
  }

  /** Hard status check: the rest of the case depends on it. */
  require(res: HttpResponse, status: number | number[], code?: string): void {
    if (!this.expectStatus(res, status, code)) throw new FailCase('stopped: a required step failed');
  }

  fail(message: string): never {
    throw new FailCase(message);
  }

  skip(reason: string): never {
    throw new SkipCase(reason);
  }

  uid(prefix = 'c'): string {
    return this.fixtures.uid(prefix);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `done` holds (servers may converge asynchronously, e.g. a Mode B cascade, a
 *  deferred audit write or the event relay's indexes). */
export async function eventually<T>(fn: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let v = await fn();
  while (!done(v) && Date.now() < end) {
    await sleep(100);
    v = await fn();
  }
  return v;
}

export function fillPath(template: string, params: Record<string, string>): string {
  return template.replace(/\{([^}]+)\}/g, (_m, name: string) => encodeURIComponent(params[name] ?? `conf-missing-${name}`));
}

/** Test state created through the admin API (never through server internals). */
export class Fixtures {
  private readonly runId = randomBytes(3).toString('hex');
  private n = 0;
  private shared?: Promise<TenantFixture>;

  constructor(private readonly opts: ConformanceOptions, private readonly spec: SpecValidator) {}

  uid(prefix: string): string {
    return `${prefix}-${this.runId}-${(++this.n).toString(36)}`;
  }

  /** One tenant + key shared by the generic per-operation cases. */
  sharedTenant(ctx: CaseContext): Promise<TenantFixture> {
    if (!this.shared) this.shared = this.newTenant(ctx, []);
    return this.shared;
  }

  /** A fresh tenant with the given budgets and a tenant key holding HARNESS_KEY_PERMISSIONS. */
  async newTenant(ctx: CaseContext, budgets: BudgetSpec[], tenantFields: Record<string, unknown> = {}): Promise<TenantFixture> {
    const tenantId = this.uid('conf');
    const t = await this.prereq(ctx, 'createTenant', { body: { tenant_id: tenantId, name: `conformance ${tenantId}`, ...tenantFields } });
    if (t.status !== 201 && t.status !== 200) ctx.fail(`createTenant → ${t.status} ${t.text.slice(0, 200)}`);
    for (const b of budgets) await this.budget(ctx, tenantId, b);
    const k = await this.prereq(ctx, 'createApiKey', {
      body: { tenant_id: tenantId, name: 'conformance', permissions: HARNESS_KEY_PERMISSIONS },
    });
    if (k.status !== 201 || typeof k.body?.key_secret !== 'string') ctx.fail(`createApiKey → ${k.status} ${k.text.slice(0, 200)}`);
    return { tenantId, key: k.body.key_secret };
  }

  async budget(ctx: CaseContext, tenantId: string, b: BudgetSpec): Promise<void> {
    const unit = b.unit ?? 'USD_MICROCENTS';
    const body: Record<string, unknown> = { tenant_id: tenantId, scope: b.scope, unit, allocated: { unit, amount: b.allocated } };
    if (b.overdraft_limit !== undefined) body.overdraft_limit = { unit, amount: b.overdraft_limit };
    if (b.commit_overage_policy) body.commit_overage_policy = b.commit_overage_policy;
    const r = await this.prereq(ctx, 'createBudget', { body });
    if (r.status !== 201) ctx.fail(`createBudget ${b.scope} → ${r.status} ${r.text.slice(0, 200)}`);
  }

  /** An admin-API call a case depends on: 501 skips the case, anything else is checked. */
  private async prereq(ctx: CaseContext, operationId: string, o: RequestOptions): Promise<HttpResponse> {
    const op = ctx.op('admin', operationId);
    const res = await httpRequest(this.opts.adminUrl, op.method.toUpperCase(), op.path, {
      ...o, headers: { 'X-Admin-API-Key': this.opts.adminKey, ...(o.headers ?? {}) },
    });
    ctx.record(res);
    if (res.status === 501) throw new SkipCase(`prerequisite not implemented: ${operationId}`);
    for (const p of this.spec.checkResponse('admin', op, res.status, res.body, res.json)) {
      ctx.problems.push(`${operationId} → ${res.status}: response violates the spec: ${p}`);
    }
    return res;
  }
}

export async function runCases(cases: Case[], opts: ConformanceOptions, onResult?: (r: CaseResult) => void): Promise<CaseResult[]> {
  const features = new Set(opts.features ?? []);
  // responses are checked against the documents of the profile the server runs (decision DG1)
  const spec = new SpecValidator(features.has('v0.1.26') ? 'merged' : 'base');
  const fixtures = new Fixtures(opts, spec);
  const selected = selectCases(cases, opts);
  const results: CaseResult[] = new Array(selected.length);
  let next = 0;
  const worker = async () => {
    while (next < selected.length) {
      const i = next++;
      const c = selected[i];
      const ctx = new CaseContext(opts, features, spec, fixtures, c);
      const started = Date.now();
      let outcome: Outcome = 'pass';
      let messages: string[] = [];
      try {
        await c.run(ctx);
        if (ctx.problems.length) {
          outcome = 'fail';
          messages = ctx.problems;
        }
      } catch (e) {
        if (e instanceof SkipCase && ctx.problems.length === 0) {
          outcome = 'skip';
          messages = [e.message];
        } else if (e instanceof SpecBundleError && ctx.problems.length === 0) {
          // a missing or altered spec bundle is a missing precondition, not a server failure
          outcome = 'skip';
          messages = [specBundleSkipReason(e)];
        } else {
          outcome = 'fail';
          messages = [...ctx.problems, e instanceof SkipCase || e instanceof FailCase ? e.message : String((e as Error)?.stack ?? e)];
        }
      }
      results[i] = {
        id: c.id, title: c.title, plane: c.plane, level: c.level ?? 'MUST', requirements: c.requirements ?? [], tags: c.tags ?? [],
        outcome, messages, durationMs: Date.now() - started,
        ...(outcome === 'fail' && ctx.lastExchange ? { evidence: ctx.lastExchange } : {}),
      };
      onResult?.(results[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));
  return results;
}

/** Does `sel` (an --only/--skip value) name case `c`: an id prefix, an exact tag or an exact
 *  requirement id. */
export function matchesSelector(c: Pick<Case, 'id' | 'tags' | 'requirements'>, sel: string): boolean {
  return c.id.startsWith(sel) || (c.tags ?? []).includes(sel) || (c.requirements ?? []).includes(sel);
}

/** The cases a run executes: those named by --only or --filter (all when neither is given),
 *  less those named by --skip. */
export function selectCases<C extends Pick<Case, 'id' | 'tags' | 'requirements'>>(
  cases: readonly C[], opts: Pick<ConformanceOptions, 'only' | 'skip' | 'filter'>,
): C[] {
  const only = opts.only ?? [];
  const filter = opts.filter ?? [];
  const skip = opts.skip ?? [];
  return cases.filter((c) => {
    const included = (only.length === 0 && filter.length === 0)
      || only.some((s) => matchesSelector(c, s)) || filter.some((f) => c.id.includes(f));
    return included && !skip.some((s) => matchesSelector(c, s));
  });
}

/** One line for a skip: which bundle directory, what is wrong with it, what to do. */
export function specBundleSkipReason(e: SpecBundleError): string {
  const folder = e.problems.find((p) => p.kind === 'folder');
  const what = folder
    ? (/not a folder/.test(e.message) ? 'not a folder' : 'folder does not exist')
    : `${e.problems.length} file(s) missing, altered or unparseable against specs/manifest.json`;
  return `spec bundle unavailable at ${e.dir}: ${what} (use --specs DIR or CYCLES_SPECS_DIR)`;
}
