// Audit log: exactly one AuditLogEntry per admin-plane request (plus the runtime's
// admin-key releaseReservation), written by ONE pipelined Redis write issued after the
// response was handed to the socket, never failing the request (docs/decisions.md D-AUDIT).
//
// Storage (src/store/keys.ts):
//   auditEntry(log_id)        string, the entry JSON, TTL = the entry's retention tier
//   auditAll()                zset log_id by timestamp ms (every entry)
//   auditByTenant(tenant_id)  zset per audit tenant_id that fits the spec's tenant-id
//                             grammar, plus the __admin__ / __unauth__ sentinels
//   auditTenantOther()        ONE zset for every other tenant_id value (junk, over-long,
//                             [REDACTED]): request values cannot mint keys
//   auditByKey(key_id)        zset per API key
//   auditByTrace(trace_id)    zset per trace id
// log_id is derived from request_id (`log_<hex>`), so a request_id filter is one GET.
// Indexes are trimmed by time on every write (ZREMRANGEBYSCORE of the entries older than
// the tier's retention) and the per-tenant/key/trace ones expire with it (PEXPIRE), so an
// index nobody writes to any more disappears; an entry that expired before its index
// member was trimmed is skipped on read. Every request-derived string of a row is scrubbed
// of secrets in one pass over the finished row (scrubEntry, docs/decisions.md DP2).
import type { Redis } from 'ioredis';
import { filterHash as sharedFilterHash, encodeCursor as sharedEncode, decodeCursor as sharedDecode, paginate, parseLimit } from '../list/cursor';
import { keys } from '../store/keys';
import { ApiError, invalid } from '../errors';
import { stringify } from '../json';
import type { Config } from '../config';
import type { Logger } from 'pino';
import type { ResponseInfo } from '../http/types';

export const ADMIN_TENANT = '__admin__';
export const UNAUTH_TENANT = '__unauth__';
const DAY_MS = 86_400_000;

export interface AuditEntry {
  log_id: string;
  timestamp: string;
  tenant_id: string;
  key_id?: string;
  user_agent?: string;
  source_ip?: string;
  operation: string;
  resource_type?: string;
  resource_id?: string;
  request_id?: string;
  trace_id?: string;
  status: number;
  error_code?: string;
  subject?: Record<string, unknown>;
  action?: Record<string, unknown>;
  amount?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
}

export const logIdFor = (requestId: string) => `log_${requestId.replace(/^req_/, '')}`;

// ---------------------------------------------------------------- secrets scrubbing

const SECRET_RE = /cyc_(?:live|test|admin)_[A-Za-z0-9_-]+|whsec_[A-Za-z0-9_-]+/g;
export const REDACTED = '[REDACTED]';
/** Percent-encoding layers looked through: a secret pasted into a URL encoded once (or a
 *  few times over) is still recognised; beyond that it is deliberate obfuscation. */
const DECODE_ROUNDS_MAX = 8;
const PCT_RUN_RE = /(?:%[0-9A-Fa-f]{2})+/g;

/** Lenient percent-decoding: each run of %XX as UTF-8 (invalid bytes become U+FFFD, the
 *  ASCII of a secret survives), everything else unchanged. Never throws. */
function percentDecode(s: string): string {
  return s.replace(PCT_RUN_RE, (run) => Buffer.from(run.replace(/%/g, ''), 'hex').toString('utf8'));
}

/** The rule for one request-derived string: tenant/webhook secrets and the admin key
 *  become [REDACTED], also when they are percent-encoded. Without a secret in any decoded
 *  form the string is kept as sent; with one, its fully decoded form is kept (with the
 *  secrets redacted), because redacting the raw form can leave encoded remainders
 *  (`cyc_live_AB%43D…` → `[REDACTED]%43D…` still holds most of the key). */
export function makeScrubber(adminKey: string | undefined): (s: string) => string {
  const hasAdmin = !!adminKey && adminKey.length >= 8;
  // The exact admin key is removed before each decoding round, so decoding cannot
  // mangle a literal occurrence of it into something the final pass no longer matches.
  const dropAdmin = (s: string) => (hasAdmin ? s.split(adminKey!).join(REDACTED) : s);
  const literal = (s: string) => dropAdmin(s.replace(SECRET_RE, REDACTED));
  return (s: string) => {
    if (!s.includes('%')) return literal(s);
    let cur = dropAdmin(s);
    let found = false;
    for (let i = 0; i < DECODE_ROUNDS_MAX; i++) {
      const next = percentDecode(cur);
      if (next === cur) break;
      cur = dropAdmin(next);
      if (cur !== next || literal(cur) !== cur) found = true;
    }
    return found ? literal(cur) : literal(s);
  };
}

/** Top-level fields the server generates in fixed formats (ids, the clock, a validated
 *  trace id, the key_id of the authenticated record): not request-derived, not scrubbed.
 *  Every other string in a row — values and member names, at any depth — is. */
const SERVER_FIELDS: ReadonlySet<string> = new Set(['log_id', 'timestamp', 'request_id', 'trace_id', 'key_id']);
/** Bounds of the scrub pass: nesting beyond this is cut (request bodies are bounded at 64
 *  by the JSON parser; audit metadata is a few levels), every string is cut to this many
 *  characters after scrubbing (a row never carries a body-sized value). */
const SCRUB_DEPTH_MAX = 16;
export const AUDIT_STRING_CHARS_MAX = 1024;
const USER_AGENT_CHARS_MAX = 512;

function scrubValue(v: unknown, scrub: (s: string) => string, depth: number): unknown {
  if (typeof v === 'string') return scrub(v).slice(0, AUDIT_STRING_CHARS_MAX);
  if (v === null || typeof v !== 'object') return v;
  if (depth >= SCRUB_DEPTH_MAX) return '[TRUNCATED]';
  if (Array.isArray(v)) return v.map((x) => scrubValue(x, scrub, depth + 1));
  // no prototype: a member named "__proto__" (JSON.parse makes it an own member) stays data
  const out: Record<string, unknown> = Object.create(null);
  for (const [k, x] of Object.entries(v)) {
    if (x !== undefined) out[scrub(k).slice(0, AUDIT_STRING_CHARS_MAX)] = scrubValue(x, scrub, depth + 1);
  }
  return out;
}

/** Scrubs the finished row in one place, so a field added later cannot leak a secret. */
export function scrubEntry(e: AuditEntry, scrub: (s: string) => string): AuditEntry {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (v === undefined) continue;
    out[k] = SERVER_FIELDS.has(k) ? v : scrubValue(v, scrub, 0);
  }
  const row = out as unknown as AuditEntry;
  if (row.user_agent) row.user_agent = row.user_agent.slice(0, USER_AGENT_CHARS_MAX);
  // An inbound trace id is only format-checked (32 hex): an admin key of that shape sent
  // as X-Cycles-Trace-Id would be kept verbatim, and would name a trace index key. The
  // row then goes without trace_id (optional in the schema) rather than store the key.
  if (row.trace_id && scrub(row.trace_id) !== row.trace_id) delete row.trace_id;
  return row;
}

// ---------------------------------------------------------------- index keys

/** The admin spec's tenant-id grammar (Tenant / TenantCreateRequest.tenant_id:
 *  pattern ^[a-z0-9-]+$, minLength 3, maxLength 64). */
const TENANT_ID_RE = /^[a-z0-9-]{3,64}$/;

/** The tenant index a row with this stored tenant_id lives in: its own zset for a
 *  grammar-valid id or a sentinel, else the one shared zset (whose readers filter by the
 *  stored value), so arbitrary request values cannot create keys. */
export function tenantIndexKey(tenantId: string): string {
  if (tenantId === ADMIN_TENANT || tenantId === UNAUTH_TENANT || TENANT_ID_RE.test(tenantId)) {
    return keys.auditByTenant(tenantId);
  }
  return keys.auditTenantOther();
}

// ---------------------------------------------------------------- building the entry

/** Resource type (and the path parameter naming its id) per path family. */
const RESOURCE_BY_PATH: [RegExp, string, string | null][] = [
  [/^\/v1\/admin\/tenants(?:\/bulk-action)?$/, 'tenant', null],
  [/^\/v1\/admin\/tenants\/([^/]+)$/, 'tenant', 'tenant_id'],
  [/^\/v1\/admin\/budgets/, 'budget', null],
  [/^\/v1\/admin\/api-keys(?:\/([^/]+))?$/, 'api_key', 'key_id'],
  [/^\/v1\/auth\/validate$/, 'api_key', null],
  [/^\/v1\/admin\/policies(?:\/([^/]+))?$/, 'policy', 'policy_id'],
  [/^\/v1\/admin\/webhooks(?:\/bulk-action)?$/, 'webhook', null],
  [/^\/v1\/(?:admin\/)?webhooks\/([^/]+)(?:\/.*)?$/, 'webhook', 'subscription_id'],
  [/^\/v1\/webhooks$/, 'webhook', null],
  [/^\/v1\/admin\/config\//, 'config', null],
  [/^\/v1\/reservations\/([^/]+)\/release$/, 'reservation', 'reservation_id'],
];

function inferResource(info: ResponseInfo): { type?: string; id?: string } {
  const path = info.path;
  const body = (info.responseBody && typeof info.responseBody === 'object' ? info.responseBody : {}) as Record<string, any>;
  for (const [re, type, param] of RESOURCE_BY_PATH) {
    const m = re.exec(path);
    if (!m) continue;
    let id: string | undefined = param && m[1] && m[1] !== 'bulk-action' ? decodeURIComponentSafe(m[1]) : undefined;
    if (!id) {
      if (type === 'tenant') id = str(body.tenant_id);
      else if (type === 'budget') id = str(body.ledger_id) ?? str(info.query.scope);
      else if (type === 'api_key') id = str(body.key_id);
      else if (type === 'policy') id = str(body.policy_id);
      else if (type === 'webhook') id = str(body.subscription?.subscription_id) ?? str(body.subscription_id);
      else if (type === 'config') id = path.split('/').pop();
    }
    return { type, id };
  }
  return {};
}

function decodeURIComponentSafe(s: string): string {
  try { return decodeURIComponent(s); } catch { return s; }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** Which tenant a request is attributed to, and as which actor (see D-AUDIT). */
function attribution(info: ResponseInfo): { tenantId: string; keyId?: string; actorType?: string; target?: string } {
  const p = info.principal;
  if (!p || p.kind === 'public') return { tenantId: UNAUTH_TENANT };
  if (p.kind === 'tenant') return { tenantId: p.tenantId, keyId: p.keyId, actorType: 'api_key' };
  // admin key
  const explicit = info.audit.tenantId;
  if (explicit) return { tenantId: explicit, actorType: 'admin_on_behalf_of' };
  const dual = !!info.op && info.op.security.some((alt) => alt.includes('ApiKeyAuth'));
  if (dual) {
    const body = (info.requestBody && typeof info.requestBody === 'object' ? info.requestBody : {}) as Record<string, unknown>;
    const target = str(info.query.tenant_id) ?? str(body.tenant_id) ?? str(info.query.tenant);
    if (target) return { tenantId: target, actorType: 'admin_on_behalf_of' };
    if (info.op!.plane === 'runtime') return { tenantId: ADMIN_TENANT, actorType: 'admin_on_behalf_of' };
  }
  const tenantPath = /^\/v1\/admin\/tenants\/([^/]+)$/.exec(info.path);
  return { tenantId: ADMIN_TENANT, actorType: 'admin', target: tenantPath ? decodeURIComponentSafe(tenantPath[1]) : undefined };
}

/** The row of one response. Fields are copied as they came; scrubEntry at the end is the
 *  only place secrets are removed and strings bounded. */
export function buildEntry(info: ResponseInfo, nowMs: number, scrub: (s: string) => string): AuditEntry {
  const who = attribution(info);
  const inferred = inferResource(info);
  const operation = info.op?.operationId ?? `${info.method}:${info.path}`;
  const metadata: Record<string, unknown> = {
    method: info.method,
    path: info.path,
    duration_ms: Math.round(info.durationMs * 1000) / 1000,
  };
  if (who.actorType) metadata.actor_type = who.actorType;
  if (who.target) metadata.target_tenant_id = who.target;
  if (info.errorMessage) metadata.error_message = info.errorMessage;
  if (info.audit.metadata) Object.assign(metadata, info.audit.metadata);
  const e: AuditEntry = {
    log_id: logIdFor(info.requestId),
    timestamp: new Date(nowMs).toISOString(),
    tenant_id: who.tenantId,
    operation,
    status: info.status,
    request_id: info.requestId,
    trace_id: info.traceId,
  };
  if (who.keyId) e.key_id = who.keyId;
  if (info.userAgent) e.user_agent = info.userAgent;
  if (info.sourceIp) e.source_ip = info.sourceIp;
  const rType = info.audit.resourceType ?? inferred.type;
  const rId = info.audit.resourceId ?? inferred.id;
  if (rType) e.resource_type = rType;
  if (rId) e.resource_id = rId;
  if (info.errorCode) e.error_code = info.errorCode;
  if (info.audit.subject) e.subject = info.audit.subject;
  if (info.audit.action) e.action = info.audit.action;
  if (info.audit.amount) e.amount = info.audit.amount;
  e.metadata = metadata;
  return scrubEntry(e, scrub);
}

// ---------------------------------------------------------------- writing

export interface AuditWriterOptions {
  redis: Redis;
  config: Config;
  log: Logger;
  adminKey?: string;
}

/** Should this response produce an audit row? Admin plane: every API request. Runtime:
 *  only the admin-key releaseReservation (admin acting on behalf of a tenant). */
export function isAudited(info: ResponseInfo): boolean {
  if (info.plane === 'admin') return true;
  return info.op?.operationId === 'releaseReservation' && info.principal?.kind === 'admin';
}

/** The onResponse hook: builds the row and issues one pipelined write, fire-and-forget.
 *  Synchronous up to exec() so the write is queued on the connection before the client
 *  can issue its next request (a later listAuditLogs on the same connection sees it). */
export function createAuditRecorder(opts: AuditWriterOptions): (info: ResponseInfo) => void {
  const scrub = makeScrubber(opts.adminKey);
  const authRetMs = opts.config.auditRetentionDays * DAY_MS;
  const unauthRetMs = opts.config.auditUnauthRetentionDays * DAY_MS;
  return (info) => {
    if (!isAudited(info)) return;
    const now = Date.now();
    const entry = buildEntry(info, now, scrub);
    const retMs = entry.tenant_id === UNAUTH_TENANT ? unauthRetMs : authRetMs;
    const p = opts.redis.pipeline();
    // stringify: a BigInt copied from a request body (int64 beyond 2^53) is written exactly
    // instead of making JSON.stringify throw and the row go missing.
    const json = stringify(entry);
    if (retMs > 0) p.set(keys.auditEntry(entry.log_id), json, 'PX', retMs);
    else p.set(keys.auditEntry(entry.log_id), json);
    p.zadd(keys.auditAll(), now, entry.log_id);
    // Trim by time: the all-index keeps the longest tier; the others hold one tier each
    // (an __unauth__ row has no other tenant and no key) and are trimmed to it.
    const longest = Math.max(authRetMs, unauthRetMs);
    if (longest > 0 && !(authRetMs === 0 || unauthRetMs === 0)) p.zremrangebyscore(keys.auditAll(), '-inf', `(${now - longest}`);
    // Each index below expires one retention after its newest row, so an index nobody
    // writes to any more (a deleted tenant, a revoked key, a finished trace) goes away by
    // itself; 0 = keep forever, also for a key that got a TTL under an earlier setting.
    const expire = (k: string, ms: number) => (ms > 0 ? p.pexpire(k, ms) : p.persist(k));
    const scoped = [tenantIndexKey(entry.tenant_id)];
    if (entry.key_id) scoped.push(keys.auditByKey(entry.key_id));
    for (const k of scoped) {
      p.zadd(k, now, entry.log_id);
      if (retMs > 0) p.zremrangebyscore(k, '-inf', `(${now - retMs}`);
      expire(k, retMs);
    }
    if (entry.trace_id) {
      // A trace can mix tiers (a 401 then an authenticated retry): keep it for the longest.
      const k = keys.auditByTrace(entry.trace_id);
      p.zadd(k, now, entry.log_id);
      expire(k, authRetMs === 0 || unauthRetMs === 0 ? 0 : longest);
    }
    p.exec().then(
      (res) => {
        const failed = res?.find(([err]) => err);
        if (failed) opts.log.error({ err: failed[0], request_id: info.requestId }, 'audit write failed');
      },
      (err) => opts.log.error({ err, request_id: info.requestId }, 'audit write failed'),
    );
  };
}

// ---------------------------------------------------------------- listing

export interface AuditQuery {
  tenant_id?: string;
  key_id?: string;
  operation?: string[];
  status?: number;
  resource_type?: string[];
  resource_id?: string;
  error_code?: string[];
  error_code_exclude?: string[];
  status_min?: number;
  status_max?: number;
  from?: string;
  to?: string;
  search?: string;
  trace_id?: string;
  request_id?: string;
  sort_by?: string;
  sort_dir?: string;
  cursor?: string;
  limit?: number;
}

export const AUDIT_LIST_MAX_ITEMS = 25;
/** entries examined per listAuditLogs request for timestamp order (a page may come back
 *  short with has_more=true when the filters are very selective) */
export const AUDIT_SCAN_MAX = 5000;
/** candidate window for non-timestamp sorts: larger windows must be narrowed (400) */
export const AUDIT_SORT_WINDOW_MAX = 10000;
const BATCH = 250;

const SORT_FIELDS = ['timestamp', 'operation', 'resource_type', 'tenant_id', 'key_id', 'status'] as const;
type SortField = (typeof SORT_FIELDS)[number];

/** Comma IN-list, accepting the repeated form too; bounded at 25 members. */
export function inList(name: string, v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  const parts = (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((s) => s.trim()).filter(Boolean);
  if (parts.length > AUDIT_LIST_MAX_ITEMS) {
    throw invalid(`${name} accepts at most ${AUDIT_LIST_MAX_ITEMS} values (got ${parts.length})`);
  }
  return parts.length ? parts : undefined;
}

interface Normalised {
  tenant_id?: string; key_id?: string; operation?: Set<string>; status?: number;
  resource_type?: Set<string>; resource_id?: string; error_code?: Set<string>;
  error_code_exclude?: Set<string>; status_min?: number; status_max?: number;
  fromMs: number; toMs: number; search?: string; trace_id?: string; request_id?: string;
  sortBy: SortField; dir: 'asc' | 'desc'; limit: number;
}

function parseTime(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw invalid(`${name} must be an RFC 3339 date-time`);
  return ms;
}

export function normaliseQuery(q: AuditQuery): Normalised {
  const one = (v: unknown) => (Array.isArray(v) ? v[0] : v);
  const status = q.status;
  if (status !== undefined && (q.status_min !== undefined || q.status_max !== undefined)) {
    throw invalid('status cannot be combined with status_min/status_max');
  }
  for (const [n, v] of [['status_min', q.status_min], ['status_max', q.status_max]] as const) {
    if (v !== undefined && (v < 100 || v > 599)) throw invalid(`${n} must be in [100, 599]`);
  }
  if (q.status_min !== undefined && q.status_max !== undefined && q.status_min > q.status_max) {
    throw invalid('status_min must not exceed status_max');
  }
  const search = typeof q.search === 'string' ? q.search.trim() : undefined;
  if (search && search.length > 128) throw invalid('search must be at most 128 characters');
  const fromMs = parseTime('from', one(q.from) as string | undefined);
  const toMs = parseTime('to', one(q.to) as string | undefined);
  if (fromMs !== undefined && toMs !== undefined && fromMs > toMs) throw invalid('from must not be after to');
  const sortBy = (q.sort_by ?? 'timestamp') as SortField;
  if (!SORT_FIELDS.includes(sortBy)) throw invalid(`sort_by must be one of ${SORT_FIELDS.join(', ')}`);
  const dir = (q.sort_dir ?? 'desc') as 'asc' | 'desc';
  if (dir !== 'asc' && dir !== 'desc') throw invalid('sort_dir must be asc or desc');
  const limit = parseLimit(q.limit);
  const set = (name: string, v: unknown) => { const l = inList(name, v); return l ? new Set(l) : undefined; };
  const s = (v: unknown) => { const x = one(v); return typeof x === 'string' && x !== '' ? x : undefined; };
  return {
    tenant_id: s(q.tenant_id), key_id: s(q.key_id), operation: set('operation', q.operation), status,
    resource_type: set('resource_type', q.resource_type), resource_id: s(q.resource_id),
    error_code: set('error_code', q.error_code), error_code_exclude: set('error_code_exclude', q.error_code_exclude),
    status_min: q.status_min, status_max: q.status_max,
    fromMs: fromMs ?? 0, toMs: toMs ?? 8.64e15, search: search ? search.toLowerCase() : undefined,
    trace_id: s(q.trace_id), request_id: s(q.request_id), sortBy, dir, limit,
  };
}

export function matches(e: AuditEntry, f: Normalised): boolean {
  if (f.tenant_id !== undefined && e.tenant_id !== f.tenant_id) return false;
  if (f.key_id !== undefined && e.key_id !== f.key_id) return false;
  if (f.operation && !f.operation.has(e.operation)) return false;
  if (f.status !== undefined && e.status !== f.status) return false;
  if (f.status_min !== undefined && !(typeof e.status === 'number' && e.status >= f.status_min)) return false;
  if (f.status_max !== undefined && !(typeof e.status === 'number' && e.status <= f.status_max)) return false;
  if (f.resource_type && !(e.resource_type && f.resource_type.has(e.resource_type))) return false;
  if (f.resource_id !== undefined && e.resource_id !== f.resource_id) return false;
  if (f.error_code && !(e.error_code && f.error_code.has(e.error_code))) return false;
  if (f.error_code_exclude && e.error_code && f.error_code_exclude.has(e.error_code)) return false;
  if (f.trace_id !== undefined && e.trace_id !== f.trace_id) return false;
  if (f.request_id !== undefined && e.request_id !== f.request_id) return false;
  const ts = Date.parse(e.timestamp);
  if (ts < f.fromMs || ts > f.toMs) return false;
  if (f.search) {
    const hay = [e.resource_id, e.log_id, e.error_code, e.operation];
    if (!hay.some((h) => typeof h === 'string' && h.toLowerCase().includes(f.search!))) return false;
  }
  return true;
}

// Cursor: the shared keyset cursor (src/list/cursor.ts), bound to sort + filter set.
// Timestamp order walks the index in Redis order (score, then log_id in the walk's own
// direction); the cursor carries the last (score, log_id) of the page.
interface CursorState { s: number; id: string }

function filterHash(f: Normalised): string {
  const { sortBy: _s, dir: _d, limit: _l, ...rest } = f;
  const flat: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) flat[k] = v instanceof Set ? [...v].sort() : v;
  return sharedFilterHash(flat);
}

function encodeCursor(f: Normalised, hash: string, c: CursorState): string {
  return sharedEncode('timestamp', f.dir, hash, { value: BigInt(c.s), id: c.id });
}

function decodeCursor(raw: string | undefined, f: Normalised, hash: string): CursorState | undefined {
  const pos = sharedDecode(raw, { sortBy: 'timestamp', sortDir: f.dir, filterHash: hash });
  if (!pos) return undefined;
  if (typeof pos.value !== 'bigint') throw new ApiError('INVALID_REQUEST', 'Invalid cursor: malformed sort value');
  return { s: Number(pos.value), id: pos.id };
}

function entryScore(e: AuditEntry): number { return Date.parse(e.timestamp); }

async function fetchEntries(redis: Redis, ids: string[]): Promise<(AuditEntry | null)[]> {
  if (ids.length === 0) return [];
  const raw = await redis.mget(ids.map((id) => keys.auditEntry(id)));
  return raw.map((r) => (r ? (JSON.parse(r) as AuditEntry) : null));
}

/** The narrowest index for the filter set. */
function sourceIndex(f: Normalised): string {
  if (f.trace_id) return keys.auditByTrace(f.trace_id);
  if (f.key_id) return keys.auditByKey(f.key_id);
  // An id outside the grammar reads the shared zset; matches() keeps only its own rows.
  if (f.tenant_id) return tenantIndexKey(f.tenant_id);
  return keys.auditAll();
}

export interface AuditPage { logs: AuditEntry[]; has_more: boolean; next_cursor?: string }

export async function listAuditLogs(redis: Redis, q: AuditQuery): Promise<AuditPage> {
  const f = normaliseQuery(q);
  const hash = filterHash(f);
  if (f.request_id) {
    // log_id is derived from request_id: one GET, 0 or 1 row.
    if (q.cursor) throw invalid('Invalid cursor: a request_id query has a single page');
    const [e] = await fetchEntries(redis, [logIdFor(f.request_id)]);
    return { logs: e && matches(e, f) ? [e] : [], has_more: false };
  }
  if (f.sortBy === 'timestamp') return scanByTime(redis, f, hash, decodeCursor(q.cursor, f, hash));
  return sortWindow(redis, f, hash, q.cursor);
}

async function scanByTime(redis: Redis, f: Normalised, hash: string, cursor?: CursorState): Promise<AuditPage> {
  const key = sourceIndex(f);
  const desc = f.dir === 'desc';
  const out: AuditEntry[] = [];
  // Position = (bound score, how many members AT that score were already consumed), so
  // runs of equal timestamps longer than a batch still make progress.
  let bound = desc ? f.toMs : f.fromMs;
  let skip = 0;
  if (cursor) {
    bound = cursor.s;
    const ties = await redis.zrange(key, String(cursor.s), String(cursor.s), 'BYSCORE');
    if (desc) ties.reverse();
    const at = ties.indexOf(cursor.id);
    skip = at >= 0 ? at + 1 : ties.filter((id) => (desc ? id > cursor.id : id < cursor.id)).length;
  }
  let scanned = 0;
  for (;;) {
    const raw = desc
      ? await redis.zrange(key, String(bound), String(f.fromMs), 'BYSCORE', 'REV', 'LIMIT', skip, BATCH, 'WITHSCORES')
      : await redis.zrange(key, String(bound), String(f.toMs), 'BYSCORE', 'LIMIT', skip, BATCH, 'WITHSCORES');
    const pairs: { id: string; s: number }[] = [];
    for (let i = 0; i < raw.length; i += 2) pairs.push({ id: raw[i], s: Number(raw[i + 1]) });
    const entries = await fetchEntries(redis, pairs.map((p) => p.id));
    for (let i = 0; i < pairs.length; i++) {
      scanned++;
      const e = entries[i];
      if (e && matches(e, f)) {
        out.push(e);
        if (out.length > f.limit) {
          const page = out.slice(0, f.limit);
          const tail = page[page.length - 1];
          return { logs: page, has_more: true, next_cursor: encodeCursor(f, hash, { s: entryScore(tail), id: tail.log_id }) };
        }
      }
      if (scanned >= AUDIT_SCAN_MAX && (i < pairs.length - 1 || pairs.length === BATCH)) {
        // Bounded work per request: return what we have and continue from here next time.
        return { logs: out, has_more: true, next_cursor: encodeCursor(f, hash, { s: pairs[i].s, id: pairs[i].id }) };
      }
    }
    if (pairs.length < BATCH) return { logs: out, has_more: false };
    const tailS = pairs[pairs.length - 1].s;
    const atTail = pairs.filter((p) => p.s === tailS).length;
    skip = tailS === bound ? skip + atTail : atTail;
    bound = tailS;
  }
}

/** Non-timestamp sorts: (value, log_id) via the shared paginate; absent values sort as ''. */
async function sortWindow(redis: Redis, f: Normalised, hash: string, cursor: string | undefined): Promise<AuditPage> {
  const key = sourceIndex(f);
  const total = await redis.zcount(key, String(f.fromMs), String(f.toMs));
  if (total > AUDIT_SORT_WINDOW_MAX) {
    throw new ApiError('INVALID_REQUEST', `sort_by=${f.sortBy} needs a window of at most ${AUDIT_SORT_WINDOW_MAX} entries (this one has ${total}); narrow it with from/to, tenant_id, key_id or trace_id`, { window_entries: total, window_max: AUDIT_SORT_WINDOW_MAX });
  }
  const all: AuditEntry[] = [];
  for (let off = 0; off < total; off += 1000) {
    const ids = await redis.zrange(key, String(f.fromMs), String(f.toMs), 'BYSCORE', 'LIMIT', off, 1000);
    for (const e of await fetchEntries(redis, ids)) if (e && matches(e, f)) all.push(e);
    if (ids.length < 1000) break;
  }
  const field = f.sortBy;
  const page = paginate(all, {
    sort: {
      name: field,
      value: (e) => {
        const v = (e as unknown as Record<string, unknown>)[field];
        return typeof v === 'number' ? BigInt(v) : typeof v === 'string' ? v : '';
      },
    },
    dir: f.dir,
    id: (e) => e.log_id,
    limit: f.limit,
    filters: { h: hash },
    cursor,
  });
  return { logs: page.rows, has_more: page.hasMore, ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}) };
}
