// CyclesEvidence (cycles-evidence-v0.2.yaml; runtime spec CyclesEvidenceRef, getEvidence,
// getEvidenceJwks). Every case but the first needs --evidence ("the server under test has
// evidence enabled") and is skipped without it. The public endpoints are called with no API
// key. Production cases run a real operation, take its `cycles_evidence` ref, poll
// GET /v1/evidence/{id} while it answers 404 (signing is asynchronous), then verify the served
// envelope independently: id recomputed, Ed25519 signature checked against the JWK Set the
// server publishes (disposition `authentic`), the full v0.2 JSON Schema, and the attested
// response equal to the wire response minus the transport-only members. The caching headers
// (SHOULD in the runtime spec) are checked by a SHOULD-level case of their own.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { specsDir } from '../../codegen/bundle';
import { parseJsonDoubles, toView } from '../../src/json';
import { evidenceIdOf } from '../../src/evidence/envelope';
import { EVIDENCE_SPEC_FILE, defaultEvidenceSchemaCheck, evidenceSchemaCheck, type SchemaCheck } from '../../src/evidence/schema';
import type { CyclesEvidence } from '../../src/evidence/types';
import { verifyEnvelope } from '../../src/evidence/verify';
import type { HttpResponse } from '../client';
import { sleep, type Case, type CaseContext, type TenantFixture } from '../harness';

const U = 'USD_MICROCENTS';
const amount = (n: number) => ({ unit: U, amount: n });
const HEX64 = /^[0-9a-f]{64}$/;
/** signing is asynchronous: how long a fresh id may answer 404 before the case fails */
const FETCH_WAIT_MS = 10_000;
/** poll backoff, bounded so a slow signer does not trip the endpoint's per-client rate limit */
const POLL_DELAYS_MS = [50, 100, 200, 400, 800, 1000];
/** members of a wire response that are never attested (CyclesEvidenceRef) */
const TRANSPORT_ONLY = ['cycles_evidence', 'remaining_ttl_ms'];
/** v0.1.26 members the evidence v0.2 response mirrors do not define (closed schemas): a
 *  server with the extension on sends them, the envelope cannot attest them (DEV2) */
const OUTSIDE_MIRRORS = ['deny_detail'];

type Artifact = 'decide' | 'reserve' | 'commit' | 'release' | 'error';

const ev = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>,
  meta: Pick<Case, 'level' | 'requirements'> = { level: 'MUST', requirements: ['EVIDENCE.CONFORMS'] }): Case => ({
  id: `evidence.${id}`, title, plane: 'runtime', skipOn501: true, ...meta, tags: ['evidence'],
  run: async (ctx) => {
    if (!ctx.opts.evidence) ctx.skip('needs --evidence');
    await run(ctx);
  },
});

let schemaCheck: SchemaCheck | undefined;
/** The v0.2 envelope schema: from the spec bundle when it is at hand, else the copy codegen
 *  derived from the pinned bundle (never skipped, DEV11). */
function envelopeSchema(): SchemaCheck {
  if (schemaCheck === undefined) {
    const dir = specsDir();
    schemaCheck = existsSync(path.join(dir, EVIDENCE_SPEC_FILE)) ? evidenceSchemaCheck(dir) : defaultEvidenceSchemaCheck();
  }
  return schemaCheck;
}

async function tenant(ctx: CaseContext, allocated = 1_000_000): Promise<TenantFixture> {
  const f = await ctx.fixtures.newTenant(ctx, []);
  await ctx.fixtures.budget(ctx, f.tenantId, { scope: `tenant:${f.tenantId}`, allocated });
  return f;
}

function reserveBody(ctx: CaseContext, f: TenantFixture, est: number, extra: Record<string, unknown> = {}) {
  return {
    idempotency_key: ctx.uid('idem'),
    subject: { tenant: f.tenantId },
    action: { kind: 'llm.completion', name: 'conformance-evidence' },
    estimate: amount(est),
    ...extra,
  };
}

async function reserveLive(ctx: CaseContext, f: TenantFixture, est = 1000): Promise<{ res: HttpResponse; body: Record<string, unknown> }> {
  const body = reserveBody(ctx, f, est);
  const res = await ctx.callOp('runtime', 'createReservation', { key: f.key, body });
  ctx.require(res, 200);
  if (typeof res.body?.reservation_id !== 'string') ctx.fail(`reserve returned no reservation_id: ${res.text.slice(0, 300)}`);
  return { res, body };
}

/** The wire body as the envelope must attest it: transport-only members and the members the
 *  mirrors do not define removed. */
function attestable(body: unknown): unknown {
  const v = toView(body) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(v).filter(([k]) => !TRANSPORT_ONLY.includes(k) && !OUTSIDE_MIRRORS.includes(k)));
}

/** The ref on a response: its shape and the id ↔ URL pairing the schema cannot express. */
function refOf(ctx: CaseContext, res: HttpResponse, what: string): { evidence_id: string; cycles_evidence_url: string } | undefined {
  const ref = res.body?.cycles_evidence;
  if (ref === undefined) return undefined;
  if (ref === null || typeof ref !== 'object' || typeof ref.evidence_id !== 'string' || typeof ref.cycles_evidence_url !== 'string') {
    ctx.check(false, `${what}: cycles_evidence is not {evidence_id, cycles_evidence_url}: ${JSON.stringify(toView(ref))}`);
    return undefined;
  }
  ctx.check(HEX64.test(ref.evidence_id), `${what}: evidence_id ${ref.evidence_id} is not 64 lowercase hex`);
  ctx.check(ref.cycles_evidence_url.endsWith(`/evidence/${ref.evidence_id}`), `${what}: cycles_evidence_url ${ref.cycles_evidence_url} does not end in /evidence/${ref.evidence_id}`);
  ctx.check(!/\/v1\/v1\//.test(ref.cycles_evidence_url), `${what}: cycles_evidence_url ${ref.cycles_evidence_url} repeats /v1`);
  return ref;
}

/** GET /v1/evidence/{id} with no key, retried while 404 (not signed yet) or 429 (throttled). */
async function fetchEnvelope(ctx: CaseContext, id: string): Promise<HttpResponse> {
  const end = Date.now() + FETCH_WAIT_MS;
  for (let i = 0; ; i++) {
    const res = await ctx.callOp('runtime', 'getEvidence', { params: { evidence_id: id } });
    if ((res.status !== 404 && res.status !== 429) || Date.now() >= end) return res;
    const retryAfterMs = res.status === 429 ? Number(res.headers.get('retry-after') ?? '1') * 1000 : 0;
    await sleep(Math.min(Math.max(retryAfterMs, POLL_DELAYS_MS[Math.min(i, POLL_DELAYS_MS.length - 1)]), Math.max(0, end - Date.now())));
  }
}

async function jwkSetOf(ctx: CaseContext): Promise<unknown> {
  const j = await ctx.callOp('runtime', 'getEvidenceJwks');
  ctx.require(j, 200);
  return parseJsonDoubles(j.text);
}

interface Attested {
  envelope: CyclesEvidence;
  /** payload.<artifact> */
  body: Record<string, any>;
}

/**
 * The full check of one operation's evidence: the ref on `res`, the served envelope (stable
 * bytes), its id, signature and authority, its schema, its artifact type
 * and the attested response. `sent` = the request body the kit submitted (each of its members
 * must appear unchanged in the attested request; the server may add defaults).
 */
async function verifyEvidence(ctx: CaseContext, res: HttpResponse, artifact: Artifact, what: string, sent?: Record<string, unknown>): Promise<Attested> {
  const ref = refOf(ctx, res, what);
  if (!ref) ctx.fail(`${what}: response carries no cycles_evidence (evidence is enabled): ${res.text.slice(0, 300)}`);
  const id = ref.evidence_id;

  const a = await fetchEnvelope(ctx, id);
  if (a.status === 404) ctx.fail(`${what}: GET /v1/evidence/${id} still 404 after ${FETCH_WAIT_MS} ms`);
  ctx.require(a, 200);
  const b = await fetchEnvelope(ctx, id);
  if (ctx.expectStatus(b, 200)) ctx.check(b.text === a.text, `${what}: two fetches of ${id} returned different bytes`);
  ctx.check((a.headers.get('content-type') ?? '').startsWith('application/json'), `${what}: envelope Content-Type ${a.headers.get('content-type')}`);

  let envelope: CyclesEvidence;
  try {
    envelope = parseJsonDoubles(a.text) as CyclesEvidence;
  } catch (e) {
    ctx.fail(`${what}: envelope is not JSON: ${(e as Error).message}`);
  }
  ctx.check(envelope.evidence_id === id, `${what}: served envelope's evidence_id ${envelope.evidence_id} != requested ${id}`);
  let recomputed: string | undefined;
  try {
    recomputed = evidenceIdOf(envelope, 'ijson');
  } catch (e) {
    ctx.check(false, `${what}: envelope cannot be canonicalized: ${(e as Error).message}`);
  }
  if (recomputed !== undefined) ctx.check(recomputed === id, `${what}: content hashes to ${recomputed}, not its evidence_id ${id}`);

  const set = await jwkSetOf(ctx);
  const schema = envelopeSchema() ?? undefined;
  const v = await verifyEnvelope(a.text, { jwks: { set }, schema });
  ctx.check(v.disposition === 'authentic', `${what}: verification → ${v.disposition} (${v.reason})`);

  ctx.check(envelope.artifact_type === artifact, `${what}: artifact_type ${envelope.artifact_type}, want ${artifact}`);
  ctx.check(`${envelope.server_id}/evidence/${id}` === ref.cycles_evidence_url, `${what}: cycles_evidence_url ${ref.cycles_evidence_url} != server_id ${envelope.server_id} + /evidence/<id>`);
  const tid = res.headers.get('x-cycles-trace-id');
  ctx.check(envelope.trace_id === tid, `${what}: envelope trace_id ${envelope.trace_id} != response X-Cycles-Trace-Id ${tid}`);

  const payload = (envelope.payload ?? {}) as Record<string, any>;
  const body = payload[artifact];
  if (body === null || typeof body !== 'object') ctx.fail(`${what}: payload has no "${artifact}" member: ${Object.keys(payload).join(', ')}`);
  const want = attestable(res.body);
  ctx.check(isDeepStrictEqual(body.response, want),
    `${what}: attested response ${JSON.stringify(body.response)} != wire response minus transport-only members ${JSON.stringify(want)}`);
  if (sent) {
    const req = (body.request ?? {}) as Record<string, unknown>;
    for (const [k, v2] of Object.entries(toView(sent) as Record<string, unknown>)) {
      ctx.check(isDeepStrictEqual(req[k], v2), `${what}: attested request.${k} ${JSON.stringify(req[k])} != sent ${JSON.stringify(v2)}`);
    }
  }
  return { envelope, body };
}

export function evidenceCases(): Case[] {
  return [
    {
      // Runs always: the schema covers the ref's shape; the id ↔ URL pairing it cannot.
      id: 'evidence.ref-shape', title: 'a cycles_evidence ref, when present, names its id in its URL', plane: 'runtime', skipOn501: true,
      level: 'MUST', requirements: ['EVIDENCE.CONFORMS'], tags: ['evidence'],
      run: async (ctx) => {
        const f = await tenant(ctx, 10_000);
        const d = await ctx.callOp('runtime', 'decide', { key: f.key, body: reserveBody(ctx, f, 100) });
        if (ctx.expectStatus(d, 200)) refOf(ctx, d, 'decide');
        const r = await ctx.callOp('runtime', 'createReservation', { key: f.key, body: reserveBody(ctx, f, 100) });
        if (ctx.expectStatus(r, 200)) refOf(ctx, r, 'reserve');
        const x = await ctx.callOp('runtime', 'createReservation', { key: f.key, body: reserveBody(ctx, f, 1_000_000) });
        if (ctx.expectStatus(x, 409, 'BUDGET_EXCEEDED')) refOf(ctx, x, 'reserve 409');
      },
    },

    ev('jwks', 'GET /v1/.well-known/cycles-jwks.json with no key: public Ed25519 keys', async (ctx) => {
      const j = await ctx.callOp('runtime', 'getEvidenceJwks');
      ctx.require(j, 200);
      const keys = j.body?.keys;
      if (!Array.isArray(keys) || keys.length === 0) ctx.fail(`JWK Set has no keys: ${j.text.slice(0, 300)}`);
      const kids = new Set<string>();
      for (const k of keys as Record<string, unknown>[]) {
        const name = String(k?.kid);
        ctx.check(!('d' in k), `JWK ${name} carries a private member "d"`);
        ctx.check(k.kty === 'OKP' && k.crv === 'Ed25519', `JWK ${name}: kty ${String(k.kty)} crv ${String(k.crv)}, want OKP / Ed25519`);
        ctx.check(k.alg === undefined || k.alg === 'EdDSA', `JWK ${name}: alg ${String(k.alg)}`);
        ctx.check(typeof k.x === 'string' && /^[A-Za-z0-9_-]{43}$/.test(k.x), `JWK ${name}: x is not unpadded base64url of 32 bytes`);
        ctx.check(!kids.has(name), `JWK Set repeats kid ${name}`);
        kids.add(name);
      }
    }),

    // The caching directives are SHOULDs (runtime spec getEvidence: "SHOULD serve it with
    // `Cache-Control: public, immutable`"; getEvidenceJwks: "SHOULD serve with a short
    // `Cache-Control: public` max-age ..., NOT `immutable`"), so they have a case of their own
    // rather than failing the MUST-level envelope cases.
    ev('cache-control', 'envelopes are served Cache-Control public, immutable; the JWK Set public and not immutable', async (ctx) => {
      const f = await tenant(ctx);
      const { res } = await reserveLive(ctx, f);
      const ref = refOf(ctx, res, 'reserve');
      if (!ref) return ctx.fail(`reserve carries no cycles_evidence (evidence is enabled): ${res.text.slice(0, 300)}`);
      const a = await fetchEnvelope(ctx, ref.evidence_id);
      ctx.require(a, 200);
      const cc = a.headers.get('cache-control') ?? '';
      ctx.check(/\bimmutable\b/i.test(cc) && /\bpublic\b/i.test(cc), `envelope Cache-Control "${cc}" is not public, immutable`);
      const j = await ctx.callOp('runtime', 'getEvidenceJwks');
      ctx.require(j, 200);
      const jc = j.headers.get('cache-control') ?? '';
      ctx.check(/\bpublic\b/i.test(jc), `JWK Set Cache-Control "${jc}" is not public`);
      ctx.check(!/\bimmutable\b/i.test(jc), `JWK Set Cache-Control "${jc}" must not be immutable (the set changes on rotation)`);
    }, { level: 'SHOULD', requirements: ['EVIDENCE.CACHING'] }),

    ev('get.input', 'GET /v1/evidence/{id}: malformed id → 400 INVALID_REQUEST, unknown id → 404 NOT_FOUND', async (ctx) => {
      for (const bad of ['0'.repeat(63), 'A'.repeat(64), 'z'.repeat(64), '0'.repeat(65)]) {
        ctx.expectStatus(await ctx.callOp('runtime', 'getEvidence', { params: { evidence_id: bad } }), 400, 'INVALID_REQUEST');
      }
      // sha256 of nothing the server ever signed
      const unknown = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
      const r = await ctx.callOp('runtime', 'getEvidence', { params: { evidence_id: unknown } });
      if (ctx.expectStatus(r, 404, 'NOT_FOUND')) {
        ctx.check(typeof r.body.message === 'string' && typeof r.body.request_id === 'string', `404 is not an ErrorResponse: ${r.text.slice(0, 200)}`);
      }
    }),

    ev('decide', 'decide ALLOW and DENY → signed decide evidence attesting the response', async (ctx) => {
      const f = await tenant(ctx, 1000);
      const allowBody = reserveBody(ctx, f, 500);
      const a = await ctx.callOp('runtime', 'decide', { key: f.key, body: allowBody });
      ctx.require(a, 200);
      await verifyEvidence(ctx, a, 'decide', 'decide ALLOW', allowBody);
      const denyBody = reserveBody(ctx, f, 5000);
      const d = await ctx.callOp('runtime', 'decide', { key: f.key, body: denyBody });
      ctx.require(d, 200);
      ctx.check(d.body.decision === 'DENY', `decide beyond budget: decision ${d.body.decision}`);
      await verifyEvidence(ctx, d, 'decide', 'decide DENY', denyBody);
    }),

    ev('reserve.live', 'live reserve ALLOW → signed reserve evidence with the wire reservation_id', async (ctx) => {
      const f = await tenant(ctx);
      const { res, body } = await reserveLive(ctx, f);
      const e = await verifyEvidence(ctx, res, 'reserve', 'reserve', body);
      ctx.check(e.body.response?.reservation_id === res.body.reservation_id, `attested reservation_id ${e.body.response?.reservation_id} != ${res.body.reservation_id}`);
      ctx.check(e.body.response?.decision !== 'DENY', 'a live reserve attested as DENY');
    }),

    ev('reserve.dry-run', 'dry-run reserve ALLOW and DENY → reserve evidence with dry_run true, no reservation', async (ctx) => {
      const f = await tenant(ctx, 1000);
      for (const [est, decision] of [[100, 'ALLOW'], [5000, 'DENY']] as const) {
        const body = reserveBody(ctx, f, est, { dry_run: true });
        const r = await ctx.callOp('runtime', 'createReservation', { key: f.key, body });
        ctx.require(r, 200);
        ctx.check(decision === 'DENY' ? r.body.decision === 'DENY' : r.body.decision !== 'DENY', `dry run of ${est}: decision ${r.body.decision}`);
        const e = await verifyEvidence(ctx, r, 'reserve', `dry-run ${decision}`, body);
        ctx.check(e.body.request?.dry_run === true, `dry-run ${decision}: attested request.dry_run ${e.body.request?.dry_run}`);
        ctx.check(e.body.response?.reservation_id === undefined && e.body.response?.expires_at_ms === undefined,
          `dry-run ${decision}: attested response has a reservation_id or expires_at_ms`);
      }
    }),

    ev('commit', 'commit → signed commit evidence naming the path reservation_id', async (ctx) => {
      const f = await tenant(ctx);
      const { res: r } = await reserveLive(ctx, f);
      const id = r.body.reservation_id as string;
      const body = { idempotency_key: ctx.uid('idem'), actual: amount(600) };
      const c = await ctx.callOp('runtime', 'commitReservation', { key: f.key, params: { reservation_id: id }, body });
      ctx.require(c, 200);
      const e = await verifyEvidence(ctx, c, 'commit', 'commit', body);
      ctx.check(e.body.reservation_id === id, `commit evidence reservation_id ${e.body.reservation_id} != ${id}`);
      ctx.check(e.body.response?.status === 'COMMITTED', `commit evidence status ${e.body.response?.status}`);
    }),

    ev('release', 'release → signed release evidence naming the path reservation_id', async (ctx) => {
      const f = await tenant(ctx);
      const { res: r } = await reserveLive(ctx, f);
      const id = r.body.reservation_id as string;
      const body = { idempotency_key: ctx.uid('idem'), reason: 'conformance' };
      const c = await ctx.callOp('runtime', 'releaseReservation', { key: f.key, params: { reservation_id: id }, body });
      ctx.require(c, 200);
      const e = await verifyEvidence(ctx, c, 'release', 'release', body);
      ctx.check(e.body.reservation_id === id, `release evidence reservation_id ${e.body.reservation_id} != ${id}`);
      ctx.check(e.body.response?.status === 'RELEASED', `release evidence status ${e.body.response?.status}`);
    }),

    ev('reserve.replay', 'a same-key reserve replay returns the same cycles_evidence ref', async (ctx) => {
      const f = await tenant(ctx);
      const body = reserveBody(ctx, f, 700);
      const headers = { 'X-Idempotency-Key': body.idempotency_key };
      const a = await ctx.callOp('runtime', 'createReservation', { key: f.key, body, headers });
      ctx.require(a, 200);
      const b = await ctx.callOp('runtime', 'createReservation', { key: f.key, body, headers });
      ctx.require(b, 200);
      const ra = refOf(ctx, a, 'reserve');
      const rb = refOf(ctx, b, 'replay');
      if (!ra) ctx.fail(`reserve carries no cycles_evidence: ${a.text.slice(0, 300)}`);
      ctx.check(isDeepStrictEqual(toView(rb), toView(ra)), `replay cycles_evidence ${JSON.stringify(toView(rb))} != original ${JSON.stringify(toView(ra))}`);
    }),

    ev('error.budget-exceeded', 'a 409 BUDGET_EXCEEDED that carries a ref → signed error evidence for POST /v1/reservations', async (ctx) => {
      // error evidence is optional (the ErrorResponse ref is present only when emitted)
      const f = await tenant(ctx, 1000);
      const body = reserveBody(ctx, f, 5000);
      const x = await ctx.callOp('runtime', 'createReservation', { key: f.key, body });
      ctx.require(x, 409, 'BUDGET_EXCEEDED');
      if (x.body.cycles_evidence === undefined) return;
      const e = await verifyEvidence(ctx, x, 'error', '409 reserve');
      ctx.check(e.body.endpoint === 'POST /v1/reservations' && e.body.http_status === 409 && e.body.reservation_id === undefined,
        `error evidence: endpoint ${e.body.endpoint}, http_status ${e.body.http_status}, reservation_id ${e.body.reservation_id}`);
    }),
  ];
}
