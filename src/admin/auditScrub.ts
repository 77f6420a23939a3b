// Audit rows carry request-derived strings; secrets in them (tenant and webhook keys, the
// admin key, percent-encoded or not) become [REDACTED] in one pass over the finished row
// (docs/decisions.md DP2). Split from audit.ts, which builds and writes the rows.
import type { AuditEntry } from './audit';

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
