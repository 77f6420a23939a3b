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
  deps: Deps;
}

export interface HandlerResult {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type Handler = (ctx: HandlerContext) => Promise<HandlerResult>;
