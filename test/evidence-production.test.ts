// CyclesEvidence on the request path (docs/decisions.md DEV6, DEV7): every decide / reserve
// / commit / release response carries cycles_evidence when an identity is configured; the
// source is recorded atomically with the operation and the worker stores the signed
// envelope under the returned id; replays return the original reference; evidence off
// changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer, type ApiResponse } from './helpers/server';
import { putBudget } from './helpers/fixtures';
import { commitPath, releasePath } from './helpers/reservations';
import { seedOf, SPECS_DIR } from './helpers/evidence';
import { keys } from '../src/store/keys';
import { evidenceSchemaCheck } from '../src/evidence/schema';
import { verifyEnvelope } from '../src/evidence/verify';
import { jwkSet } from '../src/evidence/jwks';
import { canonicalJson } from '../src/evidence/canonical';
import { parseJsonDoubles } from '../src/json';

const U = 'USD_MICROCENTS';
const SERVER_ID = 'http://127.0.0.1/v1';
export const EVIDENCE_ENV = {
  EVIDENCE_SERVER_ID: SERVER_ID,
  EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('cycles-evidence-production-test')).toString('hex'),
};

let srv: TestServer;
let off: TestServer;
let seq = 0;
const fresh = (p = 'ev') => `${p}${++seq}-${Math.random().toString(36).slice(2, 8)}`;
const checkEnvelope = evidenceSchemaCheck(SPECS_DIR);

beforeAll(async () => {
  [srv, off] = await Promise.all([startTestServer(EVIDENCE_ENV), startTestServer()]);
}, 60_000);
afterAll(async () => { await Promise.all([srv?.stop(), off?.stop()]); });

async function tenantOn(s: TestServer, allocated = 1000) {
  const tenant = fresh();
  await putBudget(s.redis.client, tenant, `tenant:${tenant}`, U, { allocated });
  return { tenant, key: await s.tenantKey(tenant) };
}
const reqBody = (tenant: string, over: Record<string, unknown> = {}) => ({
  idempotency_key: fresh('k'),
  subject: { tenant },
  action: { kind: 'llm.completion', name: 'gpt' },
  estimate: { unit: U, amount: 100 },
  ...over,
});
const post = (s: TestServer, key: string, path: string, body: unknown, headers?: Record<string, string>) =>
  call(s.runtimeUrl, 'POST', path, { key, body, headers });

/** The stored envelope for a reference, waiting for the worker (bounded). */
async function stored(s: TestServer, id: string, withinMs = 5000): Promise<string> {
  const until = Date.now() + withinMs;
  for (;;) {
    const v = await s.redis.client.get(keys.evidenceEnvelope(id));
    if (v !== null) return v;
    if (Date.now() > until) throw new Error(`envelope ${id} not stored within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Checks the reference and its stored envelope; returns the envelope. */
async function expectEvidence(r: ApiResponse, artifact: string): Promise<Record<string, any>> {
  expect(r.status, r.text).toBe(200);
  const ref = r.body.cycles_evidence;
  expect(Object.keys(ref).sort()).toEqual(['cycles_evidence_url', 'evidence_id']);
  expect(ref.evidence_id).toMatch(/^[0-9a-f]{64}$/);
  expect(ref.cycles_evidence_url).toBe(`${SERVER_ID}/evidence/${ref.evidence_id}`);
  const text = await stored(srv, ref.evidence_id);
  const env = parseJsonDoubles(text) as Record<string, any>;
  expect(canonicalJson(env)).toBe(text); // stored bytes are JCS
  expect(checkEnvelope(env)).toBeNull();
  expect(env.artifact_type).toBe(artifact);
  expect(env.evidence_id).toBe(ref.evidence_id);
  expect(env.trace_id).toBe(r.headers.get('x-cycles-trace-id'));
  expect(Math.abs(env.issued_at_ms - Date.now())).toBeLessThan(60_000);
  const v = await verifyEnvelope(text, { jwks: { set: jwkSet(srv.server.config.evidence!) } });
  expect(v.disposition, v.reason).toBe('authentic');
  // the attested response is the wire body minus the transport-only members
  const wire = { ...r.body };
  delete wire.cycles_evidence;
  delete wire.remaining_ttl_ms;
  const attested = env.payload[artifact].response;
  expect(canonicalJson(attested)).toBe(canonicalJson(JSON.parse(JSON.stringify(wire))));
  return env;
}

const sourceLen = (s: TestServer, tenant: string) => s.redis.client.xlen(keys.evidenceSource(tenant));

describe('evidence on the request path', () => {
  it('decide ALLOW and DENY get decide evidence', async () => {
    const { tenant, key } = await tenantOn(srv, 150);
    const allow = await post(srv, key, '/v1/decide', reqBody(tenant));
    const env = await expectEvidence(allow, 'decide');
    expect(env.payload.decide.request.estimate).toEqual({ unit: U, amount: 100 });
    const deny = await post(srv, key, '/v1/decide', reqBody(tenant, { estimate: { unit: U, amount: 1000 } }));
    expect(deny.body.decision).toBe('DENY');
    await expectEvidence(deny, 'decide');
  });

  it('live reserve → reserve evidence with the normalized request; commit → commit evidence', async () => {
    const { tenant, key } = await tenantOn(srv);
    const body = reqBody(tenant);
    const r = await post(srv, key, '/v1/reservations', body);
    const env = await expectEvidence(r, 'reserve');
    // defaults as the server applies them (DEV6)
    expect(env.payload.reserve.request).toMatchObject({ dry_run: false, grace_period_ms: 5000, idempotency_key: body.idempotency_key });
    expect(env.payload.reserve.response.reservation_id).toBe(r.body.reservation_id);
    const id = r.body.reservation_id as string;
    const c = await post(srv, key, commitPath(id), { idempotency_key: fresh('c'), actual: { unit: U, amount: 60 }, metrics: { tokens_input: 5 } });
    const cenv = await expectEvidence(c, 'commit');
    expect(cenv.payload.commit.reservation_id).toBe(id);
    expect(cenv.payload.commit.request.metrics).toEqual({ tokens_input: 5 });
  });

  it('dry_run ALLOW and DENY get reserve evidence without reservation_id', async () => {
    const { tenant, key } = await tenantOn(srv, 150);
    const a = await post(srv, key, '/v1/reservations', reqBody(tenant, { dry_run: true }));
    const env = await expectEvidence(a, 'reserve');
    expect(env.payload.reserve.request.dry_run).toBe(true);
    expect(env.payload.reserve.response.reservation_id).toBeUndefined();
    const d = await post(srv, key, '/v1/reservations', reqBody(tenant, { dry_run: true, estimate: { unit: U, amount: 1000 } }));
    expect(d.body.decision).toBe('DENY');
    await expectEvidence(d, 'reserve');
  });

  it('release → release evidence with the path id hoisted', async () => {
    const { tenant, key } = await tenantOn(srv);
    const r = await post(srv, key, '/v1/reservations', reqBody(tenant));
    const id = r.body.reservation_id as string;
    const k = fresh('r');
    const rel = await post(srv, key, releasePath(id), { idempotency_key: k, reason: 'done' });
    const env = await expectEvidence(rel, 'release');
    expect(env.payload.release).toMatchObject({ reservation_id: id, request: { idempotency_key: k, reason: 'done' } });
  });

  it('replays return the original reference and record no second source', async () => {
    const { tenant, key } = await tenantOn(srv);
    const body = reqBody(tenant);
    const first = await post(srv, key, '/v1/reservations', body);
    await expectEvidence(first, 'reserve');
    const id = first.body.reservation_id as string;
    const cbody = { idempotency_key: fresh('c'), actual: { unit: U, amount: 10 } };
    const c1 = await post(srv, key, commitPath(id), cbody);
    const dbody = reqBody(tenant);
    const d1 = await post(srv, key, '/v1/decide', dbody);
    await srv.server.deps.redis.ping();
    const before = await srv.redis.client.xinfo('STREAM', keys.evidenceSource(tenant)) as unknown[];
    const lastId = before[before.indexOf('last-generated-id') + 1];
    // a different trace id on the replay changes nothing attested
    const trace = { 'X-Cycles-Trace-Id': 'ab'.repeat(16) };
    const again = await post(srv, key, '/v1/reservations', body, trace);
    const c2 = await post(srv, key, commitPath(id), cbody, trace);
    const d2 = await post(srv, key, '/v1/decide', dbody, trace);
    expect(again.body.cycles_evidence).toEqual(first.body.cycles_evidence);
    expect(c2.body.cycles_evidence).toEqual(c1.body.cycles_evidence);
    expect(d2.body.cycles_evidence).toEqual(d1.body.cycles_evidence);
    const after = await srv.redis.client.xinfo('STREAM', keys.evidenceSource(tenant)) as unknown[];
    expect(after[after.indexOf('last-generated-id') + 1]).toBe(lastId);
  });

  it('every source entry is acknowledged and deleted once stored', async () => {
    const { tenant, key } = await tenantOn(srv);
    const refs: string[] = [];
    for (let i = 0; i < 5; i++) refs.push((await post(srv, key, '/v1/decide', reqBody(tenant))).body.cycles_evidence.evidence_id);
    for (const id of refs) await stored(srv, id);
    const until = Date.now() + 3000;
    while (await sourceLen(srv, tenant) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(await sourceLen(srv, tenant)).toBe(0);
  });

  it('evidence off: no cycles_evidence, no source stream, no stored envelope', async () => {
    const { tenant, key } = await tenantOn(off);
    const d = await post(off, key, '/v1/decide', reqBody(tenant));
    const r = await post(off, key, '/v1/reservations', reqBody(tenant));
    const c = await post(off, key, commitPath(r.body.reservation_id), { idempotency_key: fresh('c'), actual: { unit: U, amount: 1 } });
    for (const x of [d, r, c]) {
      expect(x.status).toBe(200);
      expect(x.body.cycles_evidence).toBeUndefined();
    }
    expect(await off.redis.client.exists(keys.evidenceSource(tenant))).toBe(0);
    expect(await off.redis.client.keys('cycles:evidence:*')).toEqual([]);
    // stored results carry no evidence stamp either (byte-identical to before)
    const res = await off.redis.client.hget(keys.reservation(tenant, r.body.reservation_id), 'commit_result');
    expect(res).not.toContain('ev_ms');
  });
});
