import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config, Plane } from '../config';
import type { Principal } from '../auth/authenticate';

/** What every handler can reach: shared, long-lived dependencies. */
export interface Deps {
  redis: Redis;
  config: Config;
  log: Logger;
}

export interface OperationRef {
  operationId: string;
  plane: Plane;
  method: string;
  path: string;
  security: string[][];
  feature: 'base' | 'v0.1.26';
}

export interface HandlerContext {
  op: OperationRef;
  /** exact request body (int64 beyond 2^53 as BigInt); undefined when none */
  body: any;
  /** query parameters after spec validation and type coercion */
  query: Record<string, any>;
  /** path parameters */
  params: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  principal: Principal;
  requestId: string;
  traceId: string;
  /** the client's address as express sees it (req.ip: the socket peer unless `trust proxy` is set) */
  readonly sourceIp: string | undefined;
  deps: Deps;
  /** audit attribution the handler may fill in (also on error paths, before throwing);
   *  merged with HandlerResult.audit. Only read by the plane's onResponse hook. */
  audit?: AuditInfo;
}

/** What a handler knows about the resource it acted on; recorded in the audit row. */
export interface AuditInfo {
  /** tenant the request acted for (AoBO target, bulk-budget filter tenant) */
  tenantId?: string;
  resourceType?: string;
  resourceId?: string;
  /** extra metadata for the audit row: never secrets, never request bodies */
  metadata?: Record<string, unknown>;
  subject?: Record<string, unknown>;
  action?: Record<string, unknown>;
  amount?: Record<string, unknown>;
}

/** Passed exactly once per request to PlaneAppOptions.onResponse, after the response. */
export interface ResponseInfo {
  plane: Plane;
  /** undefined when no operation matched (404/405 on routing, unreadable body) */
  op?: OperationRef;
  method: string;
  path: string;
  status: number;
  errorCode?: string;
  errorMessage?: string;
  /** undefined when authentication did not get as far as identifying a caller */
  principal?: Principal;
  requestId: string;
  traceId: string;
  audit: AuditInfo;
  query: Record<string, unknown>;
  /** the parsed request body (for attribution only; never to be stored) */
  requestBody?: unknown;
  /** the response body on success (for attribution only; never to be stored) */
  responseBody?: unknown;
  userAgent?: string;
  sourceIp?: string;
  durationMs: number;
}

export interface HandlerResult {
  status: number;
  body?: unknown;
  /** a JSON document to send byte for byte instead of serializing `body` (stored canonical
   *  bytes: getEvidence); still validated against the spec in test mode */
  rawJson?: string;
  headers?: Record<string, string>;
  audit?: AuditInfo;
}

export type Handler = (ctx: HandlerContext) => Promise<HandlerResult>;
