// HTTP client of the operator CLI: one request per call, JSON in and out, int64 exact
// (lossless parse, BigInt serialised as integers). An error answer is not an exception of
// ours: it is the server's ErrorResponse, shown as is and mapped to exit code 1.
import { parseJsonBody, stringify } from '../json';

/** Exit codes a script can rely on (README "Operator CLI"; docs/decisions.md DU1). */
export const EXIT = { ok: 0, api: 1, usage: 2, unreachable: 3 } as const;

/** A failure that ends the command with a message on stderr and an exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number, readonly bodyText?: string) {
    super(message);
  }
}

export const usageError = (message: string): CliError => new CliError(message, EXIT.usage);

export interface ApiAnswer {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

export interface Target {
  baseUrl: string;
  /** header name → value (X-Admin-API-Key or X-Cycles-API-Key) */
  auth: Record<string, string>;
}

/** Bound on one request: a CLI must never hang on a server that accepted and went silent. */
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * One HTTP exchange. 2xx → the answer; any other status → CliError(1) carrying the parsed
 * ErrorResponse; no answer at all (refused, DNS, timeout) → CliError(3).
 */
export async function request(
  target: Target, method: string, path: string,
  opts: { query?: Record<string, string | number | boolean | undefined>; body?: unknown } = {},
): Promise<ApiAnswer> {
  const url = new URL(target.baseUrl.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(opts.query ?? {})) {
    if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
  }
  const headers: Record<string, string> = { ...target.auth, Accept: 'application/json' };
  let payload: string | undefined;
  if (opts.body !== undefined) {
    payload = stringify(opts.body);
    headers['Content-Type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = (e as Error).name === 'TimeoutError' ? `no answer within ${REQUEST_TIMEOUT_MS} ms` : cause?.code ?? cause?.message ?? (e as Error).message;
    throw new CliError(`cannot reach ${url.origin}: ${why}`, EXIT.unreachable);
  }
  const text = await res.text();
  let body: unknown = undefined;
  if (text) {
    try { body = parseJsonBody(text).value; } catch { body = text; }
  }
  if (res.status < 200 || res.status > 299) {
    throw new CliError(describeError(method, url, res.status, body), EXIT.api, text);
  }
  return { status: res.status, headers: res.headers, body, text };
}

/** `HTTP 409 BUDGET_EXCEEDED: message (request_id req_…)` — the ErrorResponse as the server sent it. */
function describeError(method: string, url: URL, status: number, body: unknown): string {
  const b = body as { error?: unknown; message?: unknown; request_id?: unknown } | undefined;
  if (b && typeof b === 'object' && typeof b.error === 'string') {
    const rid = typeof b.request_id === 'string' ? ` (request_id ${b.request_id})` : '';
    return `${method} ${url.pathname}: HTTP ${status} ${b.error}: ${String(b.message ?? '')}${rid}`;
  }
  return `${method} ${url.pathname}: HTTP ${status}${typeof body === 'string' && body ? `: ${body.slice(0, 500)}` : ''}`;
}
