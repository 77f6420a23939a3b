// One express app per plane. The request pipeline lives here and nowhere else:
//   ids → route (openapi-backend) → feature gate → auth → body parse → spec validation
//   (openapi-backend + Ajv 2020) → handler → (test mode) response validation → send.
// Handlers only see validated input and return values; every failure on the way becomes
// the spec's ErrorResponse with the right status.
import express, { type Request, type Response, type NextFunction } from 'express';
import type { Operation } from 'openapi-backend';
import { ApiError } from '../errors';
import { parseOwnJson, parseJsonBytes, stringify } from '../json';
import type { Plane } from '../config';
import { Authenticator } from '../auth/authenticate';
import { traceIdFrom, newRequestId } from './tracing';
import { errorBody } from './errorBody';
import { attachErrorEvidence } from '../evidence/source';
import { loadSpec, profileFor } from './spec';
import { mountDocs } from './docs';
import { PlaneRouter, type RouteMatch } from './router';
import { RequestValidator } from './requestValidator';
import querystring from 'node:querystring';
import type { AuditInfo, Deps, Handler, HandlerResult, OperationRef, ResponseInfo } from './types';
import type { Principal } from '../auth/authenticate';

export interface PlaneAppOptions {
  plane: Plane;
  deps: Deps;
  handlers: ReadonlyMap<string, Handler>;
  authenticator: Authenticator;
  isReady: () => Promise<boolean>;
  /** Called exactly once per API request (not /healthz, /readyz), after the response was
   *  handed to the socket. Must not throw or block: errors are logged and swallowed. */
  onResponse?: (info: ResponseInfo) => void;
  /** Routes outside the spec (e.g. /metrics on the admin plane), mounted before the
   *  pipeline like the health probes: no auth, no audit, no onResponse. */
  mount?: (app: express.Express) => void;
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export async function createPlaneApp(opts: PlaneAppOptions): Promise<express.Express> {
  const { plane, deps, handlers, authenticator } = opts;
  const features = deps.config.features;
  // Flag off: the v0.1.25 base document routes (extension paths 404), validates requests and,
  // with CYCLES_VALIDATE_RESPONSES, responses; flag on: the merged one (decision DG1).
  const spec = await loadSpec(plane, profileFor(features));
  const api = spec.backend;
  const router = new PlaneRouter(api);
  const validateResponses = deps.config.validateResponses;
  const logRequests = deps.log.isLevelEnabled('info');

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');

  // Health probes sit outside the spec (no audit, no auth) but carry the same ids.
  const withIds = (req: Request, res: Response) => {
    res.setHeader('X-Request-Id', newRequestId());
    res.setHeader('X-Cycles-Trace-Id', traceIdFrom(req.headers.traceparent, req.headers['x-cycles-trace-id']));
  };
  app.get('/healthz', (req, res) => {
    withIds(req, res);
    sendJson(res, 200, { status: 'ok' });
  });
  app.get('/readyz', async (req, res) => {
    withIds(req, res);
    const ok = await opts.isReady().catch(() => false);
    sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable', redis: ok ? 'up' : 'down' });
  });
  // Spring Boot's actuator paths, which the reference stack's clients, quickstarts and load
  // balancer probes wait on: liveness as /healthz, readiness and the overall health as /readyz.
  app.get('/actuator/health/liveness', (req, res) => {
    withIds(req, res);
    sendJson(res, 200, { status: 'UP' });
  });
  app.get(['/actuator/health', '/actuator/health/readiness'], async (req, res) => {
    withIds(req, res);
    const ok = await opts.isReady().catch(() => false);
    sendJson(res, ok ? 200 : 503, { status: ok ? 'UP' : 'DOWN' });
  });

  // The plane's spec and its rendered reference (no API key; src/http/docs.ts).
  mountDocs(app, plane, spec);
  opts.mount?.(app);

  const bodyLimit = deps.config.bodyLimitBytes;
  const validator = new RequestValidator(api);
  app.use(
    async (req: Request, res: Response) => {
      const started = process.hrtime.bigint();
      const requestId = newRequestId();
      const headers = req.headers as Record<string, string | string[] | undefined>;
      const traceId = traceIdFrom(headers.traceparent, headers['x-cycles-trace-id']);
      // Response headers are collected here and written once, with the status.
      const out: Record<string, string> = { 'X-Request-Id': requestId, 'X-Cycles-Trace-Id': traceId };
      const { path, query } = splitUrl(req.url);
      const method = req.method;
      let status = 500;
      let operationId: string | undefined;
      let opRef: OperationRef | undefined;
      let errorCode: string | undefined;
      let errorMessage: string | undefined;
      let responseBody: unknown;
      let requestBody: unknown;
      const seen: { principal?: Principal } = {};
      const audit: AuditInfo = {};
      try {
        const { operation, params } = matchOperation(router, method, path);
        operationId = operation.operationId!;
        dropBlankDateTimes(operation, query);
        const op = spec.ops.get(operationId)!;
        opRef = op;
        if (op.feature !== 'base' && !features.has(op.feature)) {
          throw new ApiError('NOT_FOUND', `No route for ${method} ${path} (feature ${op.feature} is not enabled)`);
        }

        const principal = await authenticator.authenticate(op, headers, seen);

        let body: unknown;
        let view: unknown;
        const raw = BODY_METHODS.has(method) ? await readBody(req, bodyLimit) : undefined;
        if (operation.requestBody && raw && raw.length > 0) {
          const ctype = String(headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
          if (ctype !== 'application/json' && !ctype.endsWith('+json')) {
            throw new ApiError('INVALID_REQUEST', `Content-Type must be application/json (got "${ctype || 'none'}")`);
          }
          ({ value: body, view } = parseJsonBytes(raw));
          requestBody = body;
        }

        const validation = validator.validate(operation, { params, query, headers, body: view });
        if (validation.errors) {
          throw new ApiError('INVALID_REQUEST', `Request does not match the ${plane} spec: ${describeErrors(validation.errors)}`, {
            errors: validation.errors.slice(0, 20).map((e) => ({
              path: e.instancePath || '/',
              message: e.message ?? e.keyword,
              ...(e.params && Object.keys(e.params).length ? { params: e.params } : {}),
            })),
          });
        }

        const handler = handlers.get(operationId);
        if (!handler) {
          throw new ApiError('NOT_IMPLEMENTED', `Operation ${operationId} is not implemented yet by this server`, undefined, 501);
        }
        const result = await handler({
          op,
          body,
          query: validation.query,
          params: validation.params,
          headers,
          principal,
          requestId,
          traceId,
          // a getter: req.ip is not free to compute and most handlers never read it
          get sourceIp() { return req.ip; },
          deps,
          audit,
        });
        if (result.audit) Object.assign(audit, result.audit);
        // our own bytes (e.g. a stored envelope, deeper than the request parser's bound): parse, don't police
        if (validateResponses && result.rawJson !== undefined && result.body === undefined) result.body = parseOwnJson(result.rawJson);
        if (validateResponses) checkResponse(spec, operation, result);
        status = result.status;
        responseBody = result.body;
        if (result.headers) Object.assign(out, result.headers);
        sendJson(res, result.status, result.body, out, result.rawJson);
      } catch (e) {
        const err = toApiError(e, deps);
        // an attested error (the ledger script recorded its evidence source): the ref is
        // computed from that source before it is stamped on the body (DEV8)
        if (err.evidenceSource) attachErrorEvidence(err, deps.config.evidence, deps.log);
        status = err.status;
        if (err.headers) Object.assign(out, err.headers);
        let body = errorBody(err, requestId, traceId);
        errorCode = String(body.error);
        errorMessage = String(body.message);
        if (validateResponses) {
          try {
            spec.checkErrorBody(body, status);
          } catch (bad) {
            status = 500;
            body = errorBody(bad as ApiError, requestId, traceId);
            errorCode = String(body.error);
            errorMessage = String(body.message);
          }
        }
        sendJson(res, status, body, out);
      } finally {
        const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
        if (logRequests) {
          // never headers, query or bodies: key material lives there (test/request-logs.test.ts)
          deps.log.info({
            plane, method, route: opRef?.path, path, operationId, status,
            tenant: tenantOf(seen.principal, audit, query, requestBody),
            request_id: requestId, trace_id: traceId, duration_ms: durationMs,
          }, 'request');
        }
        if (opts.onResponse) {
          notify(opts, deps, {
            plane, op: opRef, method, path, status, errorCode, errorMessage,
            principal: seen.principal, requestId, traceId, audit,
            query, requestBody, responseBody,
            // getters: most requests are not audited, and req.ip is not free to compute
            get userAgent() { return req.get('user-agent'); },
            get sourceIp() { return req.ip; },
            durationMs,
          });
        }
      }
    },
  );

  // Anything express itself fails on before the pipeline (e.g. a malformed URL).
  app.use((err: any, req: Request, res: Response, _next: NextFunction) => {
    const requestId = newRequestId();
    const traceId = traceIdFrom(req.headers.traceparent, req.headers['x-cycles-trace-id']);
    res.setHeader('X-Request-Id', requestId);
    res.setHeader('X-Cycles-Trace-Id', traceId);
    const apiErr = new ApiError('INVALID_REQUEST', `Unreadable request: ${err?.message ?? 'unknown error'}`);
    const body = errorBody(apiErr, requestId, traceId);
    sendJson(res, apiErr.status, body);
    notify(opts, deps, {
      plane, method: req.method, path: req.path, status: apiErr.status, errorCode: String(body.error),
      errorMessage: String(body.message), requestId, traceId, audit: {},
      query: req.query as Record<string, unknown>, userAgent: req.get('user-agent'), sourceIp: req.ip, durationMs: 0,
    });
  });

  return app;
}

/** The tenant a request acted for, for its log line: the key's tenant, else (admin key)
 *  the one the handler named or the request targets (as the audit row attributes it). */
function tenantOf(p: Principal | undefined, audit: AuditInfo, query: Record<string, string | string[]>, body: unknown): string | undefined {
  if (p?.kind === 'tenant') return p.tenantId;
  if (audit.tenantId) return audit.tenantId;
  if (p?.kind !== 'admin') return undefined;
  const t = query.tenant_id ?? query.tenant ?? (body as { tenant_id?: unknown } | undefined)?.tenant_id;
  return typeof t === 'string' && t !== '' ? t.slice(0, 128) : undefined;
}

/** Reads the whole body, refusing more than `limit` bytes (413) as soon as it is exceeded:
 *  by Content-Length up front, or while streaming a chunked body. */
function readBody(req: Request, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared === 0) return Promise.resolve(undefined);
  if (declared > limit) {
    req.resume();
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(c);
    });
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.once('error', (e) => reject(new ApiError('INVALID_REQUEST', `Unreadable request body: ${e.message}`)));
  });
}

const tooLarge = (limit: number) =>
  new ApiError('INVALID_REQUEST', `Request body exceeds the ${limit}-byte limit`, undefined, 413);

function notify(opts: PlaneAppOptions, deps: Deps, info: ResponseInfo): void {
  if (!opts.onResponse) return;
  try {
    opts.onResponse(info);
  } catch (e) {
    deps.log.error({ err: e, request_id: info.requestId }, 'onResponse hook failed');
  }
}

function matchOperation(router: PlaneRouter, method: string, path: string): RouteMatch {
  const m = router.match(method, path);
  if (m === 'method') {
    const allowed = router.allowedMethods(path);
    throw new ApiError('INVALID_REQUEST', `Method ${method} is not allowed on ${path}`, { allowed }, 405, { Allow: allowed.join(', ') });
  }
  if (!m) throw new ApiError('NOT_FOUND', `No route for ${method} ${path}`);
  return m;
}

function describeErrors(errors: { instancePath?: string; message?: string; keyword: string }[]): string {
  const first = errors.slice(0, 3).map((e) => `${(e.instancePath || '/').replace(/^\/requestBody/, 'body')} ${e.message ?? e.keyword}`);
  return first.join('; ') + (errors.length > 3 ? ` (+${errors.length - 3} more)` : '');
}

function toApiError(e: unknown, deps: Deps): ApiError {
  if (e instanceof ApiError) return e;
  deps.log.error({ err: e }, 'unhandled error');
  return new ApiError('INTERNAL_ERROR', 'Internal error; retry with the same idempotency key');
}

/** Test mode: a response that does not match the spec becomes a loud 500. */
function checkResponse(spec: Awaited<ReturnType<typeof loadSpec>>, operation: Operation, result: HandlerResult): void {
  const problems = spec.checkResponseBody(operation, result.status, result.body);
  if (problems) {
    throw new ApiError('INTERNAL_ERROR', `Response violates the spec for ${operation.operationId} ${result.status}: ${problems}`);
  }
}

/** Writes status, headers and body in one go (one header block, one socket write). */
function sendJson(res: Response, status: number, body: unknown, headers: Record<string, string> = {}, raw?: string): void {
  if ((body === undefined && raw === undefined) || status === 204) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = raw ?? stringify(body);
  headers['Content-Type'] = 'application/json';
  headers['Content-Length'] = String(Buffer.byteLength(text));
  res.writeHead(status, headers);
  res.end(text);
}

/** Path and query of a request target. The simple query grammar (node:querystring), as
 *  express's 'simple' query parser; absolute-form targets are reduced to their path. */
export function splitUrl(url: string | undefined): { path: string; query: Record<string, string | string[]> } {
  let target = url ?? '/';
  if (target[0] !== '/') {
    try { const u = new URL(target); target = u.pathname + u.search; } catch { target = '/'; }
  }
  const q = target.indexOf('?');
  if (q < 0) return { path: target, query: {} };
  return { path: target.slice(0, q), query: { ...querystring.parse(target.slice(q + 1)) } as Record<string, string | string[]> };
}

export type { OperationRef };

// Blank date-time query values mean "unset": the runtime spec's listReservations
// TIME-RANGE FILTERS say servers MUST NOT 400 on `?from=&to=` despite `format: date-time`
// (clients render unset variables as ""), so such values are removed before validation.
const blankableCache = new WeakMap<object, string[]>();
function dropBlankDateTimes(operation: Operation, query: Record<string, string | string[]>): void {
  let names = blankableCache.get(operation);
  if (!names) {
    names = ((operation.parameters ?? []) as { in?: string; name?: string; schema?: { format?: string } }[])
      .filter((p) => p.in === 'query' && p.schema?.format === 'date-time' && typeof p.name === 'string')
      .map((p) => p.name!);
    blankableCache.set(operation, names);
  }
  for (const n of names) if (query[n] === '') delete query[n];
}
