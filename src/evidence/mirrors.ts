// What of a wire request/response is attested: a projection onto the spec's closed mirror
// schemas. Each table lists a mirror's members (the test compares them with the spec's
// property lists) and the wire members deliberately left out: `cycles_evidence` and
// `remaining_ttl_ms` by the spec, the v0.1.26 extension members because the mirrors predate
// them (docs/decisions.md DEV2). Any other member is a mirror drift and fails the build
// loudly rather than being dropped or signed. The projection is a deep copy, so stamping
// `cycles_evidence` on the wire object afterwards cannot change the attested bytes.

export class EvidenceBuildError extends Error {
  constructor(readonly path: string, detail: string) {
    super(`cannot build evidence: ${path}: ${detail}`);
    this.name = 'EvidenceBuildError';
  }
}

/** leaf: a JSON value copied as is (types are the schema's business); free: a free-form
 *  object (metadata, details, custom, dimensions) copied deeply, nulls inside kept. */
type Field = 'leaf' | 'free' | Mirror | { items: Mirror };

export interface Mirror {
  /** the schema name in cycles-evidence-v0.2.yaml */
  readonly name: string;
  readonly fields: Readonly<Record<string, Field>>;
  /** wire members that are never attested (see the file comment) */
  readonly notAttested: readonly string[];
}

const mirror = (name: string, fields: Record<string, Field>, notAttested: string[] = []): Mirror =>
  ({ name, fields, notAttested });

const Amount = mirror('Amount', { unit: 'leaf', amount: 'leaf' });
const SignedAmount = mirror('SignedAmount', { unit: 'leaf', amount: 'leaf' });
const Subject = mirror('Subject', {
  tenant: 'leaf', workspace: 'leaf', app: 'leaf', workflow: 'leaf', agent: 'leaf', toolset: 'leaf', dimensions: 'free',
});
// policy_keys: v0.1.26 (cycles-action-kinds) routing dimensions
const Action = mirror('Action', { kind: 'leaf', name: 'leaf', tags: 'leaf' }, ['policy_keys']);
const Caps = mirror('Caps', {
  max_tokens: 'leaf', max_steps_remaining: 'leaf', tool_allowlist: 'leaf', tool_denylist: 'leaf', cooldown_ms: 'leaf',
});
const Balance = mirror('Balance', {
  scope: 'leaf', scope_path: 'leaf', remaining: SignedAmount, reserved: Amount, spent: Amount,
  allocated: Amount, debt: Amount, overdraft_limit: Amount, is_over_limit: 'leaf',
});
const StandardMetrics = mirror('StandardMetrics', {
  tokens_input: 'leaf', tokens_output: 'leaf', latency_ms: 'leaf', model_version: 'leaf', custom: 'free',
});
const Balances = { items: Balance };

export const DecisionRequestMirror = mirror('DecisionRequestMirror', {
  idempotency_key: 'leaf', subject: Subject, action: Action, estimate: Amount, metadata: 'free',
});
export const DecisionResponseMirror = mirror('DecisionResponseMirror', {
  decision: 'leaf', caps: Caps, reason_code: 'leaf', retry_after_ms: 'leaf', affected_scopes: 'leaf',
}, ['cycles_evidence', 'deny_detail']);
export const ReservationCreateRequestMirror = mirror('ReservationCreateRequestMirror', {
  idempotency_key: 'leaf', subject: Subject, action: Action, estimate: Amount, ttl_ms: 'leaf',
  grace_period_ms: 'leaf', overage_policy: 'leaf', dry_run: 'leaf', metadata: 'free',
}, ['observe_mode']);
export const ReservationCreateResponseMirror = mirror('ReservationCreateResponseMirror', {
  decision: 'leaf', affected_scopes: 'leaf', reservation_id: 'leaf', reserved: Amount, caps: Caps,
  reason_code: 'leaf', retry_after_ms: 'leaf', expires_at_ms: 'leaf', scope_path: 'leaf', balances: Balances,
}, ['cycles_evidence', 'remaining_ttl_ms', 'deny_detail']);
export const CommitRequestMirror = mirror('CommitRequestMirror', {
  idempotency_key: 'leaf', actual: Amount, metrics: StandardMetrics, metadata: 'free',
});
export const CommitResponseMirror = mirror('CommitResponseMirror', {
  status: 'leaf', charged: Amount, released: Amount, balances: Balances,
}, ['cycles_evidence']);
export const ReleaseRequestMirror = mirror('ReleaseRequestMirror', { idempotency_key: 'leaf', reason: 'leaf' });
export const ReleaseResponseMirror = mirror('ReleaseResponseMirror', {
  status: 'leaf', released: Amount, balances: Balances,
}, ['cycles_evidence']);
export const ErrorResponseMirror = mirror('ErrorResponseMirror', {
  error: 'leaf', message: 'leaf', request_id: 'leaf', trace_id: 'leaf', details: 'free',
}, ['cycles_evidence']);

/** Every mirror by spec schema name (the test checks each against the spec). */
export const MIRRORS: readonly Mirror[] = [
  Amount, SignedAmount, Subject, Action, Caps, Balance, StandardMetrics,
  DecisionRequestMirror, DecisionResponseMirror, ReservationCreateRequestMirror, ReservationCreateResponseMirror,
  CommitRequestMirror, CommitResponseMirror, ReleaseRequestMirror, ReleaseResponseMirror, ErrorResponseMirror,
];

const MAX_DEPTH = 72;

/** The attested copy of `value` under `m`: known members only, `null`/`undefined` mirror
 *  members omitted (no mirror member is nullable), not-attested members dropped. */
export function project(value: unknown, m: Mirror, path: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new EvidenceBuildError(path, `${m.name} must be an object`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue; // absent in JSON terms
    const field = m.fields[k];
    if (field === undefined) {
      if (m.notAttested.includes(k)) continue;
      throw new EvidenceBuildError(`${path}.${k}`, `not a member of ${m.name} (mirror drift: attest it or classify it as not attested)`);
    }
    if (v === null) continue;
    out[k] = projectField(v, field, `${path}.${k}`);
  }
  return out;
}

function projectField(v: unknown, field: Field, path: string): unknown {
  if (field === 'leaf' || field === 'free') return copyJson(v, path, 0);
  if ('items' in field) {
    if (!Array.isArray(v)) throw new EvidenceBuildError(path, `must be an array of ${field.items.name}`);
    return v.map((x, i) => project(x, field.items, `${path}[${i}]`));
  }
  return project(v, field, path);
}

/** A deep copy of JSON data; undefined members dropped (as JSON would), nothing else changed. */
function copyJson(v: unknown, path: string, depth: number): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (depth > MAX_DEPTH) throw new EvidenceBuildError(path, 'nested too deeply (or cyclic)');
  if (Array.isArray(v)) return v.map((x, i) => copyJson(x, `${path}[${i}]`, depth + 1));
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) throw new EvidenceBuildError(path, 'not plain JSON data');
  // null prototype: a member named "__proto__" stays an ordinary member
  const out: Record<string, unknown> = Object.create(null);
  for (const [k, x] of Object.entries(v)) {
    if (x !== undefined) out[k] = copyJson(x, `${path}.${k}`, depth + 1);
  }
  return out;
}
