// The envelope and its content address (src/evidence/envelope.ts, mirrors.ts): the upstream
// fixtures are byte-equal to our canonical form and hash to their evidence_id; the builder
// rebuilds every fixture from its request/response parts; what is and is not attested; the
// spec's cross-member rules; every built envelope passes the spec's JSON Schema.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { canonicalJson, CanonicalizationError } from '../src/evidence/canonical';
import {
  buildEnvelope, didCycles, evidenceIdOf, evidenceUrl, EvidenceBuildError, jwksUrl, signingInputOf,
  type EnvelopeContext, type EvidenceSource,
} from '../src/evidence/envelope';
import { MIRRORS } from '../src/evidence/mirrors';
import { evidenceSchemaCheck } from '../src/evidence/schema';
import { loadBundle } from '../codegen/bundle';
import { loadFixtures, SPECS_DIR } from './helpers/evidence';

const fixtures = loadFixtures();
const schema = evidenceSchemaCheck(SPECS_DIR);
/** Schema problems of an unsigned envelope (its "" sentinels replaced by well-formed placeholders). */
const unsignedProblem = (env: object) => schema({ ...env, evidence_id: '0'.repeat(64), signature: '0'.repeat(128) });
const spec = parse(readFileSync(loadBundle().get('evidence').path, 'utf8')) as any;

const CTX: EnvelopeContext = {
  serverId: 'https://cycles.example.com/v1',
  signerDid: 'ec52b49b81eb29ef6f62947cade245c715bf943b7ef2a5f2789288574466fc43',
  issuedAtMs: 1_810_000_000_000,
  traceId: '0af7651916cd43dd8448eb211c80319c',
};

/** The builder input a server would have had for a fixture. */
function sourceOf(env: Record<string, any>): EvidenceSource {
  const p = env.payload[env.artifact_type];
  switch (env.artifact_type) {
    case 'decide':
    case 'reserve':
      return { artifact: env.artifact_type, request: p.request, response: p.response };
    case 'commit':
    case 'release':
      return { artifact: env.artifact_type, reservationId: p.reservation_id, request: p.request, response: p.response };
    default:
      return { artifact: 'error', endpoint: p.endpoint, httpStatus: p.http_status, reservationId: p.reservation_id, request: p.request, response: p.response };
  }
}

const ctxOf = (env: Record<string, any>): EnvelopeContext =>
  ({ serverId: env.server_id, signerDid: env.signer_did, issuedAtMs: env.issued_at_ms, traceId: env.trace_id });

const reserveReq = (extra: Record<string, unknown> = {}) => ({
  idempotency_key: 'k1', subject: { tenant: 'acme' }, action: { kind: 'llm.completion', name: 'gpt' },
  estimate: { unit: 'USD_MICROCENTS', amount: 100 }, dry_run: false, grace_period_ms: 5000, ...extra,
});
const reserveRes = (extra: Record<string, unknown> = {}) => ({
  decision: 'ALLOW', reservation_id: 'r1', reserved: { unit: 'USD_MICROCENTS', amount: 100 },
  affected_scopes: ['tenant:acme'], expires_at_ms: 1_810_000_060_000, ...extra,
});

function buildError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof EvidenceBuildError) return e.path;
    throw e;
  }
  return 'built';
}

describe('upstream fixtures (fixtures/evidence-v0.1)', () => {
  it('are all there', () => {
    expect(fixtures.map((f) => f.name)).toHaveLength(13);
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('%s: canonical bytes equal the file, the id recomputes, the schema passes', (_n, f) => {
    expect(canonicalJson(f.envelope) + '\n').toBe(f.text);
    expect(evidenceIdOf(f.envelope as any)).toBe(f.envelope.evidence_id);
    expect(schema(f.envelope)).toBeNull();
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('%s: the builder rebuilds it from request, response and context', (_n, f) => {
    const built = buildEnvelope(sourceOf(f.envelope), ctxOf(f.envelope));
    expect(canonicalJson(built)).toBe(canonicalJson({ ...f.envelope, evidence_id: '', signature: '' }));
    expect(evidenceIdOf(built)).toBe(f.envelope.evidence_id);
  });

  it('case 08 has no trace_id and the builder omits the key (not "" or null)', () => {
    const f = fixtures.find((x) => x.name.startsWith('08-'))!;
    expect('trace_id' in f.envelope).toBe(false);
    expect('trace_id' in buildEnvelope(sourceOf(f.envelope), ctxOf(f.envelope))).toBe(false);
  });

  it('the id hashes both sentinels as "" — omitting them or using null gives other ids', () => {
    const env = fixtures[0].envelope;
    const { evidence_id: _i, signature: _s, ...rest } = env;
    expect(evidenceIdOf(env as any)).toBe(env.evidence_id);
    const hash = (v: unknown) => createHash('sha256').update(canonicalJson(v)).digest('hex');
    expect(hash({ ...rest, evidence_id: '', signature: '' })).toBe(env.evidence_id);
    expect(hash(rest)).not.toBe(env.evidence_id);
    expect(hash({ ...rest, evidence_id: null, signature: null })).not.toBe(env.evidence_id);
    // the signing input carries the id and an empty signature
    expect(Buffer.from(signingInputOf(env as any, env.evidence_id)).toString()).toBe(canonicalJson({ ...env, signature: '' }));
  });

  it("the spec's embedded example is schema-valid but its placeholder id is not its hash", () => {
    const example = spec.components.schemas.CyclesEvidence.example;
    expect(schema(example)).toBeNull();
    expect(evidenceIdOf(example)).not.toBe(example.evidence_id);
  });
});

describe('the mirror tables', () => {
  it("list exactly the spec mirrors' members", () => {
    for (const m of MIRRORS) {
      const s = spec.components.schemas[m.name];
      expect(s, m.name).toBeDefined();
      expect(s.additionalProperties, m.name).toBe(false);
      expect(Object.keys(m.fields).sort(), m.name).toEqual(Object.keys(s.properties).sort());
    }
  });
});

describe('buildEnvelope', () => {
  it('drops transport-only and v0.1.26 members, omits null/undefined optionals, keeps nulls in free-form data', () => {
    const env = buildEnvelope({
      artifact: 'reserve',
      request: reserveReq({ observe_mode: 'OBSERVE', ttl_ms: undefined, metadata: { a: null, b: [1, { c: null }] }, action: { kind: 'llm.completion', name: 'gpt', policy_keys: { host: 'x' } } }),
      response: reserveRes({
        remaining_ttl_ms: 59_000, cycles_evidence: { evidence_id: 'x', cycles_evidence_url: 'y' },
        deny_detail: { reason: 'x' }, caps: null, scope_path: undefined, balances: [{ scope: 'tenant:acme', scope_path: 'tenant:acme', remaining: { unit: 'USD_MICROCENTS', amount: -5 }, debt: null }],
      }),
    }, CTX);
    const p = (env.payload as any).reserve;
    expect(Object.keys(p.request).sort()).toEqual(['action', 'dry_run', 'estimate', 'grace_period_ms', 'idempotency_key', 'metadata', 'subject']);
    expect(p.request.action).toEqual({ kind: 'llm.completion', name: 'gpt' });
    expect({ ...p.request.metadata }).toEqual({ a: null, b: [1, { c: null }] });
    expect(Object.keys(p.response).sort()).toEqual(['affected_scopes', 'balances', 'decision', 'expires_at_ms', 'reservation_id', 'reserved']);
    expect(p.response.balances[0]).toEqual({ scope: 'tenant:acme', scope_path: 'tenant:acme', remaining: { unit: 'USD_MICROCENTS', amount: -5 } });
    expect(env.evidence_id).toBe('');
    expect(env.signature).toBe('');
    expect(unsignedProblem(env)).toBeNull();
  });

  it('refuses an unknown member (mirror drift) instead of dropping or signing it', () => {
    expect(buildError(() => buildEnvelope({ artifact: 'reserve', request: reserveReq({ surprise: 1 }), response: reserveRes() }, CTX)))
      .toBe('payload.reserve.request.surprise');
    expect(buildError(() => buildEnvelope({ artifact: 'decide', request: reserveReq({ dry_run: undefined, grace_period_ms: undefined }), response: { decision: 'ALLOW', caps2: {} } }, CTX)))
      .toBe('payload.decide.response.caps2');
  });

  it('copies deeply: stamping the wire response afterwards does not change the envelope', () => {
    const response = reserveRes();
    const request = reserveReq({ metadata: { nested: { v: 1 } } });
    const env = buildEnvelope({ artifact: 'reserve', request, response }, CTX);
    const id = evidenceIdOf(env);
    (response as any).cycles_evidence = { evidence_id: id };
    (response.reserved as any).amount = 7;
    (request as any).metadata.nested.v = 2;
    expect(evidenceIdOf(env)).toBe(id);
  });

  it("enforces ReservePayload's dry_run rules and the caps rule", () => {
    const live = (res: Record<string, unknown>, req: Record<string, unknown> = {}) =>
      buildError(() => buildEnvelope({ artifact: 'reserve', request: reserveReq(req), response: reserveRes(res) }, CTX));
    expect(live({ decision: 'DENY', reservation_id: undefined, reason_code: 'BUDGET_EXCEEDED' })).toBe('payload.reserve.response.decision');
    expect(live({ decision: 'DENY', reason_code: 'BUDGET_EXCEEDED' }, { dry_run: undefined })).toBe('payload.reserve.response.decision');
    expect(live({ reservation_id: undefined })).toBe('payload.reserve.response.reservation_id');
    expect(live({}, { dry_run: true })).toBe('payload.reserve.response');
    expect(live({ reservation_id: undefined, expires_at_ms: undefined, decision: 'DENY', reserved: undefined }, { dry_run: true })).toBe('built');
    expect(live({ decision: 'ALLOW_WITH_CAPS' })).toBe('payload.reserve.response.caps');
    expect(live({ caps: { max_tokens: 5 } })).toBe('payload.reserve.response.caps');
    expect(live({ decision: 'ALLOW_WITH_CAPS', caps: { max_tokens: 5 } })).toBe('built');
  });

  it('enforces the error payload rules: endpoint, status, reservation_id linkage, the ErrorCode mirror', () => {
    const res = { error: 'RESERVATION_EXPIRED', message: 'expired', request_id: 'req1', trace_id: CTX.traceId };
    const err = (e: Partial<Extract<EvidenceSource, { artifact: 'error' }>>) =>
      buildError(() => buildEnvelope({ artifact: 'error', endpoint: 'POST /v1/reservations/{reservation_id}/commit', httpStatus: 410, reservationId: 'r1', response: res, ...e } as EvidenceSource, CTX));
    expect(err({})).toBe('built');
    expect(err({ reservationId: undefined })).toBe('payload.error.reservation_id');
    expect(err({ endpoint: 'POST /v1/reservations', httpStatus: 409 })).toBe('payload.error.reservation_id');
    expect(err({ endpoint: 'POST /v1/reservations/r1/commit' as any })).toBe('payload.error.endpoint');
    expect(err({ httpStatus: 200 })).toBe('payload.error.http_status');
    expect(err({ response: { ...res, error: 'ACTION_QUOTA_EXCEEDED' } })).toBe('payload.error.response.error');
    expect(err({ request: { idempotency_key: 'c1', actual: { unit: 'TOKENS', amount: 1 }, extra: 1 } })).toBe('payload.error.request.extra');
    const ok = buildEnvelope({ artifact: 'error', endpoint: 'POST /v1/reservations', httpStatus: 409, request: reserveReq(), response: { ...res, error: 'BUDGET_EXCEEDED', cycles_evidence: {} } }, CTX);
    expect((ok.payload as any).error.response.cycles_evidence).toBeUndefined();
    expect('reservation_id' in (ok.payload as any).error).toBe(false);
    expect(unsignedProblem(ok)).toBeNull();
  });

  it('commit and release hoist the path reservation_id and check the status', () => {
    const c = buildEnvelope({ artifact: 'commit', reservationId: 'r9', request: { idempotency_key: 'c', actual: { unit: 'TOKENS', amount: 3 }, metrics: { tokens_input: 1, custom: { x: null } } }, response: { status: 'COMMITTED', charged: { unit: 'TOKENS', amount: 3 }, cycles_evidence: {} } }, CTX);
    expect((c.payload as any).commit.reservation_id).toBe('r9');
    expect(unsignedProblem(c)).toBeNull();
    expect(buildError(() => buildEnvelope({ artifact: 'release', reservationId: 'r9', request: { idempotency_key: 'x' }, response: { status: 'COMMITTED', released: { unit: 'TOKENS', amount: 1 } } }, CTX)))
      .toBe('payload.release.response.status');
    expect(buildError(() => buildEnvelope({ artifact: 'release', reservationId: '', request: { idempotency_key: 'x' }, response: { status: 'RELEASED', released: { unit: 'TOKENS', amount: 1 } } }, CTX)))
      .toBe('payload.release.reservation_id');
  });

  it('checks the context: trace_id form, issued_at_ms', () => {
    const b = (ctx: Partial<EnvelopeContext>) => buildError(() => buildEnvelope({ artifact: 'reserve', request: reserveReq(), response: reserveRes() }, { ...CTX, ...ctx }));
    expect(b({ traceId: '' })).toBe('trace_id');
    expect(b({ traceId: CTX.traceId!.toUpperCase() })).toBe('trace_id');
    expect(b({ issuedAtMs: -1 })).toBe('issued_at_ms');
    expect(b({ issuedAtMs: 1.5 })).toBe('issued_at_ms');
  });

  it('int64 amounts: up to the exact limit the envelope hashes, beyond it the id is refused (DEV1)', () => {
    const withAmount = (amount: number | bigint) =>
      buildEnvelope({ artifact: 'reserve', request: reserveReq({ estimate: { unit: 'TOKENS', amount } }), response: reserveRes({ reserved: { unit: 'TOKENS', amount } }) }, CTX);
    for (const a of [2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 2n]) {
      const env = withAmount(a);
      expect(canonicalJson(env)).toContain(`"amount":${a}`);
      expect(evidenceIdOf(env)).toMatch(/^[0-9a-f]{64}$/);
      expect(unsignedProblem(env)).toBeNull();
    }
    for (const a of [2n ** 53n + 1n, 2n ** 63n - 1n, 2 ** 60]) {
      expect(() => evidenceIdOf(withAmount(a))).toThrow(CanonicalizationError);
    }
  });
});

describe('identifiers derived from server_id', () => {
  it('did:cycles hashes the exact server_id bytes; URLs append without re-adding /v1', () => {
    // the spec's example DID hashes the string "test" (illustrative only)
    expect(didCycles('test', '2026-06')).toBe('did:cycles:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08#2026-06');
    expect(didCycles('https://cycles.example.com/v1', 'k')).not.toBe(didCycles('https://cycles.example.com/v1/', 'k'));
    expect(evidenceUrl('https://cycles.example.com/v1', 'ab')).toBe('https://cycles.example.com/v1/evidence/ab');
    expect(jwksUrl('https://cycles.example.com/v1')).toBe('https://cycles.example.com/v1/.well-known/cycles-jwks.json');
    expect(jwksUrl('https://cycles.example.com/v1/')).toBe('https://cycles.example.com/v1/.well-known/cycles-jwks.json');
  });
});
