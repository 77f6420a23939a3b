// Shared plumbing of the admin/runtime command groups: where the planes are, which key to
// send, how flags become request bodies, and how a command's outcome becomes an exit code.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parseJsonBody } from '../json';
import { CliError, EXIT, usageError, type Target } from './client';
import { printJson, table, record, type Column } from './output';

export interface ConnOptions {
  adminUrl?: string;
  runtimeUrl?: string;
  adminKey?: string;
  json?: boolean;
}

const DEFAULT_ADMIN_URL = 'http://127.0.0.1:7979';
const DEFAULT_RUNTIME_URL = 'http://127.0.0.1:7878';

/** --admin-url, --runtime-url, --admin-key, --json on a leaf command. */
export function connOptions(cmd: Command, planes: ('admin' | 'runtime')[] = ['admin']): Command {
  if (planes.includes('admin')) cmd.option('--admin-url <url>', `admin plane base URL (env CYCLES_ADMIN_URL, default ${DEFAULT_ADMIN_URL})`);
  if (planes.includes('runtime')) cmd.option('--runtime-url <url>', `runtime plane base URL (env CYCLES_RUNTIME_URL, default ${DEFAULT_RUNTIME_URL})`);
  return cmd
    .option('--admin-key <key>', 'admin API key (env ADMIN_API_KEY)')
    .option('--json', 'print the API response as JSON instead of a table');
}

function adminKey(o: ConnOptions): string {
  const key = o.adminKey ?? process.env.ADMIN_API_KEY;
  if (!key) throw usageError('no admin key: set ADMIN_API_KEY or pass --admin-key');
  return key;
}

function checkUrl(raw: string, flag: string): string {
  let u: URL;
  try { u = new URL(raw); } catch { throw usageError(`${flag}: not a URL: ${raw}`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw usageError(`${flag}: must be http(s): ${raw}`);
  return raw.replace(/\/+$/, '');
}

export function adminTarget(o: ConnOptions): Target {
  return { baseUrl: checkUrl(o.adminUrl ?? process.env.CYCLES_ADMIN_URL ?? DEFAULT_ADMIN_URL, '--admin-url'), auth: { 'X-Admin-API-Key': adminKey(o) } };
}

export function runtimeTarget(o: ConnOptions): Target {
  return { baseUrl: checkUrl(o.runtimeUrl ?? process.env.CYCLES_RUNTIME_URL ?? DEFAULT_RUNTIME_URL, '--runtime-url'), auth: { 'X-Admin-API-Key': adminKey(o) } };
}

/** `--body '{"…"}'` or `--body @file.json` (or `@-` for stdin): the base of a request body
 *  the flags then override; int64 exact. */
export function bodyFrom(raw: string | undefined): Record<string, unknown> {
  if (raw === undefined) return {};
  let text = raw;
  if (raw.startsWith('@')) {
    const file = raw.slice(1);
    try { text = readFileSync(file === '-' ? 0 : file, 'utf8'); } catch (e) { throw usageError(`--body: cannot read ${file}: ${(e as Error).message}`); }
  }
  let v: unknown;
  try { v = parseJsonBody(text).value; } catch (e) { throw usageError(`--body: not valid JSON: ${(e as Error).message}`); }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw usageError('--body: must be a JSON object');
  return v as Record<string, unknown>;
}

/** Copies the defined flag values into the body (flags win over --body). */
export function assign(body: Record<string, unknown>, fields: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) body[k] = v;
  return body;
}

/** A non-negative int64 from a flag (exact beyond 2^53). */
export function int64(flag: string, raw: string | undefined): bigint | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,19}$/.test(raw) || BigInt(raw) > 2n ** 63n - 1n) throw usageError(`${flag}: must be a non-negative integer, got "${raw}"`);
  return BigInt(raw);
}

export function positiveInt(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1) throw usageError(`${flag}: must be a positive integer, got "${raw}"`);
  return Number(raw);
}

export const csv = (raw: string | undefined): string[] | undefined => (raw === undefined ? undefined : raw.split(',').map((s) => s.trim()).filter(Boolean));

export const UNITS = ['USD_MICROCENTS', 'TOKENS', 'CREDITS', 'RISK_POINTS'];

export function unit(raw: string | undefined, required = true): string | undefined {
  if (raw === undefined) {
    if (required) throw usageError('--unit is required (USD_MICROCENTS, TOKENS, CREDITS or RISK_POINTS)');
    return undefined;
  }
  const u = raw.toUpperCase();
  if (!UNITS.includes(u)) throw usageError(`--unit: must be one of ${UNITS.join(', ')}, got "${raw}"`);
  return u;
}

export function required<T>(flag: string, v: T | undefined): T {
  if (v === undefined || v === '') throw usageError(`${flag} is required`);
  return v;
}

/** A single resource: JSON, or `field  value` lines. */
export function printOne(o: ConnOptions, doc: unknown): void {
  if (o.json) printJson(doc);
  else console.log(doc && typeof doc === 'object' ? record(doc as Record<string, unknown>) : String(doc));
}

/** A list page: JSON as received, or a table plus a line telling how to get the next page. */
export function printList(o: ConnOptions, doc: unknown, field: string, columns: Column[]): void {
  if (o.json) { printJson(doc); return; }
  const d = (doc ?? {}) as Record<string, unknown>;
  const rows = (Array.isArray(d[field]) ? d[field] : []) as Record<string, unknown>[];
  console.log(rows.length ? table(rows, columns) : `(no ${field})`);
  if (d.has_more && typeof d.next_cursor === 'string') console.error(`more: --cursor ${d.next_cursor}`);
}

/** Wraps an action: a CliError ends the process with its message and exit code; an API
 *  error also shows the server's ErrorResponse body as received. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      console.error(`cycles: ${e.message}`);
      if (e.bodyText) console.error(e.bodyText);
      process.exitCode = e.exitCode;
    }
    exitNow();
  };
}

/** Ends the process with the exit code set so far: idle keep-alive connections to the server
 *  would otherwise hold it open for seconds (stdout/stderr are synchronous on files and pipes). */
export function exitNow(): never {
  process.exit(Number(process.exitCode ?? 0));
}

export { EXIT };
