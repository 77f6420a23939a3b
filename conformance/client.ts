// HTTP for the harness: fetch (undici) with a timeout, lossless JSON both ways so int64
// amounts beyond 2^53 survive exactly (BigInt in, BigInt out).
import { parseJsonBody, stringify } from '../src/json';

export const REQUEST_TIMEOUT_MS = 15_000;

export interface HttpResponse {
  status: number;
  headers: Headers;
  /** parsed body (int64 beyond 2^53 as BigInt); undefined when empty or not JSON */
  body: any;
  text: string;
  /** true when the body parsed as JSON */
  json: boolean;
  /** the request as sent (failure evidence in the reports) */
  method?: string;
  url?: string;
}

export interface RequestOptions {
  /** JSON value (may contain BigInt) */
  body?: unknown;
  /** sent verbatim (malformed JSON, huge bodies) */
  rawBody?: string;
  headers?: Record<string, string>;
  query?: Record<string, string | number | boolean | undefined>;
}

export async function httpRequest(baseUrl: string, method: string, path: string, opts: RequestOptions = {}): Promise<HttpResponse> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  let payload = opts.rawBody;
  if (opts.body !== undefined) payload = stringify(opts.body);
  if (payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
    headers['Content-Type'] = 'application/json';
  }
  let url = baseUrl.replace(/\/+$/, '') + path;
  if (opts.query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) if (v !== undefined) qs.append(k, String(v));
    const s = qs.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }
  const res = await fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  const text = await res.text();
  let body: any;
  let json = false;
  if (text) {
    try {
      body = parseJsonBody(text).value;
      json = true;
    } catch {
      body = undefined;
    }
  }
  return { status: res.status, headers: res.headers, body, text, json, method, url };
}
