// CyclesEvidence on the request path (docs/decisions.md DEV6, DEV7): every decide / reserve
// / commit / release response carries cycles_evidence when an identity is configured; the
// source is recorded atomically with the operation and the worker stores the signed
// envelope under the returned id; replays return the original reference; evidence off
// changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer, type ApiResponse } from './helpers/server';
import { putBudget, putTenant, type BudgetSeed } from './helpers/fixtures';
import { commitPath, releasePath, setExpiry } from './helpers/reservations';
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

async function tenantOn(s: TestServer, allocated = 1000, seed: Partial<BudgetSeed> = {}) {
  const tenant = fresh();
  await putBudget(s.redis.client, tenant, `tenant:${tenant}`, U, { allocated, ...seed });
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
async function expectEvidence(r: ApiResponse, artifact: string, status = 200): Promise<Record<string, any>> {
  expect(r.status, r.text).toBe(status);
  const ref = r.body.cycles_evidence;
  expect(Object.keys(ref).sort()).toEqual(['cycles_evidence_url', 'evidence_id']);
  expect(ref.evidence_id).toMatch(/^[0-9a-f]{64}$/);
  expect(ref.cycles_evidence_url).toBe(`${SERVER_ID}/evidence/${ref.evidence_id}`);
  const text = await stored(srv, ref.evidence_id);
  // CYCLES_EVIDENCE_RETENTION_DAYS default: 90 days
  expect(await srv.redis.client.pttl(keys.evidenceEnvelope(ref.evidence_id))).toBeGreaterThan(89 * 86_400_000);
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
  const attested = artifact === 'error' ? env.payload.error.response : env.payload[artifact].response;
  expect(canonicalJson(attested)).toBe(canonicalJson(JSON.parse(JSON.stringify(wire))));
  return env;
}

const sourceLen = (s: TestServer, tenant: string) => s.redis.client.xlen(keys.evidenceSource(tenant));
/** The id of the last entry ever appended (entries are deleted once signed). */
async function lastSourceId(s: TestServer, tenant: string): Promise<unknown> {
  const info = await s.redis.client.xinfo('STREAM', keys.evidenceSource(tenant)) as unknown[];
  return info[info.indexOf('last-generated-id') + 1];
}

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

  it('the reservation shows its references (ReservationEvidence) once the envelopes are stored: GET always, list with include=evidence', async () => {
    const { tenant, key } = await tenantOn(srv);
    const r = await post(srv, key, '/v1/reservations', reqBody(tenant));
    const id = r.body.reservation_id as string;
    const c = await post(srv, key, commitPath(id), { idempotency_key: fresh('c'), actual: { unit: U, amount: 60 } });
    await stored(srv, r.body.cycles_evidence.evidence_id);
    await stored(srv, c.body.cycles_evidence.evidence_id);
    const want = { reserve: r.body.cycles_evidence, commit: c.body.cycles_evidence };
    let g: ApiResponse | undefined;
    const until = Date.now() + 5000;
    do {
      g = await call(srv.runtimeUrl, 'GET', `/v1/reservations/${id}`, { key });
      if (g.body.evidence?.commit) break;
      await new Promise((res) => setTimeout(res, 50));
    } while (Date.now() < until);
    expect(g!.status).toBe(200);
    expect(g!.body.evidence).toEqual(want);
    const plain = await call(srv.runtimeUrl, 'GET', `/v1/reservations?tenant=${tenant}`, { key });
    expect(plain.body.reservations[0].evidence).toBeUndefined();
    const withEv = await call(srv.runtimeUrl, 'GET', `/v1/reservations?tenant=${tenant}&include=evidence`, { key });
    expect(withEv.body.reservations[0].evidence).toEqual(want);
    // stored as the bare ids (DM5): the record stays a listpack with evidence on
    const rk = keys.reservation(tenant, id);
    expect(await srv.redis.client.hget(rk, 'ev:reserve')).toBe(want.reserve.evidence_id);
    expect(await srv.redis.client.hget(rk, 'ev:commit')).toBe(want.commit.evidence_id);
    expect(await srv.redis.client.object('ENCODING', rk)).toBe('listpack');
    for (const [f, v] of Object.entries(await srv.redis.client.hgetall(rk))) expect(Buffer.byteLength(v), f).toBeLessThanOrEqual(64);
  });

  it('a link stored before DM5 (the whole reference as JSON) still renders as stored', async () => {
    const { tenant, key } = await tenantOn(srv);
    const r = await post(srv, key, '/v1/reservations', reqBody(tenant));
    const id = r.body.reservation_id as string;
    await stored(srv, r.body.cycles_evidence.evidence_id);
    const rk = keys.reservation(tenant, id);
    const until = Date.now() + 5000;
    while (!(await srv.redis.client.hexists(rk, 'ev:reserve')) && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    const old = { evidence_id: 'ab'.repeat(32), cycles_evidence_url: `https://old.example.com/v1/evidence/${'ab'.repeat(32)}` };
    await srv.redis.client.hset(rk, 'ev:reserve', JSON.stringify(old));
    const g = await call(srv.runtimeUrl, 'GET', `/v1/reservations/${id}`, { key });
    expect(g.status).toBe(200);
    expect(g.body.evidence).toEqual({ reserve: old });
    const l = await call(srv.runtimeUrl, 'GET', `/v1/reservations?tenant=${tenant}&include=evidence`, { key });
    expect(l.body.reservations[0].evidence).toEqual({ reserve: old });
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
    const lastId = await lastSourceId(srv, tenant);
    // a different trace id on the replay changes nothing attested
    const trace = { 'X-Cycles-Trace-Id': 'ab'.repeat(16) };
    const again = await post(srv, key, '/v1/reservations', body, trace);
    const c2 = await post(srv, key, commitPath(id), cbody, trace);
    const d2 = await post(srv, key, '/v1/decide', dbody, trace);
    expect(again.body.cycles_evidence).toEqual(first.body.cycles_evidence);
    expect(c2.body.cycles_evidence).toEqual(c1.body.cycles_evidence);
    expect(d2.body.cycles_evidence).toEqual(d1.body.cycles_evidence);
    expect(await lastSourceId(srv, tenant)).toBe(lastId);
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
    // no envelope about this tenant (on npm run test:cluster `srv` shares the store and signs its own)
    const stored = await Promise.all((await off.redis.client.keys('cycles:evidence:*')).map((k) => off.redis.client.get(k)));
    expect(stored.filter((text) => text?.includes(tenant))).toEqual([]);
    // the record carries no evidence stamp either (its replay is rebuilt from it, DM3)
    const res = await off.redis.client.hgetall(keys.reservation(tenant, r.body.reservation_id));
    expect(res.status).toBe('COMMITTED');
    expect(JSON.stringify(res)).not.toContain('ev_ms');
  });
});

describe('error evidence (DEV8)', () => {
  it.each([
    ['BUDGET_EXCEEDED', { allocated: 50 }],
    ['BUDGET_FROZEN', { allocated: 1000, status: 'FROZEN' as const }],
    ['BUDGET_CLOSED', { allocated: 1000, status: 'CLOSED' as const }],
    ['OVERDRAFT_LIMIT_EXCEEDED', { allocated: 1000, debt: 1, overdraft_limit: 1, is_over_limit: true }],
    ['DEBT_OUTSTANDING', { allocated: 1000, debt: 1 }],
  ])('live reserve 409 %s → error evidence for POST /v1/reservations', async (code, seed) => {
    const { tenant, key } = await tenantOn(srv, seed.allocated, seed);
    const r = await post(srv, key, '/v1/reservations', reqBody(tenant));
    expect(r.body.error).toBe(code);
    const env = await expectEvidence(r, 'error', 409);
    expect(env.payload.error).toMatchObject({ endpoint: 'POST /v1/reservations', http_status: 409 });
    expect(env.payload.error.reservation_id).toBeUndefined();
    expect(env.payload.error.request).toMatchObject({ dry_run: false, grace_period_ms: 5000 });
    expect(env.payload.error.response.request_id).toBe(r.headers.get('x-request-id'));
  });

  it('TENANT_CLOSED on a live reserve → error evidence', async () => {
    const { tenant, key } = await tenantOn(srv);
    await putTenant(srv.redis.client, tenant, { status: 'CLOSED' });
    const r = await post(srv, key, '/v1/reservations', reqBody(tenant));
    expect(r.body.error).toBe('TENANT_CLOSED');
    await expectEvidence(r, 'error', 409);
  });

  it('commit on a finalized reservation (409) and release on an expired one (410) → error evidence with the path id', async () => {
    const { tenant, key } = await tenantOn(srv);
    const id = (await post(srv, key, '/v1/reservations', reqBody(tenant))).body.reservation_id as string;
    await post(srv, key, commitPath(id), { idempotency_key: fresh('c'), actual: { unit: U, amount: 1 } });
    const again = await post(srv, key, commitPath(id), { idempotency_key: fresh('c'), actual: { unit: U, amount: 2 } });
    expect(again.body.error).toBe('RESERVATION_FINALIZED');
    const env = await expectEvidence(again, 'error', 409);
    expect(env.payload.error).toMatchObject({ endpoint: 'POST /v1/reservations/{reservation_id}/commit', reservation_id: id });

    const id2 = (await post(srv, key, '/v1/reservations', reqBody(tenant))).body.reservation_id as string;
    await setExpiry(srv.redis.client, tenant, id2, Date.now() - 60_000, 0);
    const rel = await post(srv, key, releasePath(id2), { idempotency_key: fresh('r') });
    expect(rel.body.error).toBe('RESERVATION_EXPIRED');
    const renv = await expectEvidence(rel, 'error', 410);
    expect(renv.payload.error).toMatchObject({ endpoint: 'POST /v1/reservations/{reservation_id}/release', reservation_id: id2, http_status: 410 });
  });

  it('UNIT_MISMATCH (400) on decide, dry_run and commit → error evidence with the literal endpoint', async () => {
    const { tenant, key } = await tenantOn(srv);
    const tokens = { estimate: { unit: 'TOKENS', amount: 1 } };
    const d = await post(srv, key, '/v1/decide', reqBody(tenant, tokens));
    expect(d.body.error).toBe('UNIT_MISMATCH');
    expect((await expectEvidence(d, 'error', 400)).payload.error).toMatchObject({ endpoint: 'POST /v1/decide', http_status: 400 });
    const dr = await post(srv, key, '/v1/reservations', reqBody(tenant, { ...tokens, dry_run: true }));
    expect((await expectEvidence(dr, 'error', 400)).payload.error.request.dry_run).toBe(true);
    const id = (await post(srv, key, '/v1/reservations', reqBody(tenant))).body.reservation_id as string;
    const c = await post(srv, key, commitPath(id), { idempotency_key: fresh('c'), actual: { unit: 'TOKENS', amount: 1 } });
    expect(c.body.error).toBe('UNIT_MISMATCH');
    expect((await expectEvidence(c, 'error', 400)).payload.error).toMatchObject({ endpoint: 'POST /v1/reservations/{reservation_id}/commit', reservation_id: id });
  });

  it('commit-time denials (overage REJECT → 409 BUDGET_EXCEEDED) and TENANT_CLOSED on release → error evidence', async () => {
    const { tenant, key } = await tenantOn(srv);
    const id = (await post(srv, key, '/v1/reservations', reqBody(tenant, { overage_policy: 'REJECT' }))).body.reservation_id as string;
    const c = await post(srv, key, commitPath(id), { idempotency_key: fresh('c'), actual: { unit: U, amount: 101 } });
    expect(c.body.error).toBe('BUDGET_EXCEEDED');
    await expectEvidence(c, 'error', 409);
    const id2 = (await post(srv, key, '/v1/reservations', reqBody(tenant))).body.reservation_id as string;
    await putTenant(srv.redis.client, tenant, { status: 'CLOSED' });
    const rel = await post(srv, key, releasePath(id2), { idempotency_key: fresh('r') });
    expect(rel.body.error).toBe('TENANT_CLOSED');
    await expectEvidence(rel, 'error', 409);
  });

  it('unattested errors (404, IDEMPOTENCY_MISMATCH, 400) carry no reference and record no source', async () => {
    const { tenant, key } = await tenantOn(srv);
    const body = reqBody(tenant);
    await post(srv, key, '/v1/reservations', body);
    const last = await lastSourceId(srv, tenant);
    const mismatch = await post(srv, key, '/v1/reservations', { ...body, estimate: { unit: U, amount: 7 } });
    expect(mismatch.body.error).toBe('IDEMPOTENCY_MISMATCH');
    const missing = await post(srv, key, commitPath(`${tenant}.nope`), { idempotency_key: fresh('c'), actual: { unit: U, amount: 1 } });
    expect(missing.status).toBeGreaterThanOrEqual(400);
    const bad = await post(srv, key, '/v1/reservations', { ...reqBody(tenant), ttl_ms: 1 });
    expect(bad.status).toBe(400);
    for (const x of [mismatch, missing, bad]) expect(x.body.cycles_evidence).toBeUndefined();
    expect(await lastSourceId(srv, tenant)).toBe(last);
  });
});

describe('edge cases', () => {
  it('concurrent same-key reserves: one reservation, one source, one reference', async () => {
    const { tenant, key } = await tenantOn(srv);
    const body = reqBody(tenant);
    const rs = await Promise.all(Array.from({ length: 8 }, () => post(srv, key, '/v1/reservations', body)));
    const ids = new Set(rs.map((r) => r.body.cycles_evidence?.evidence_id));
    expect(ids.size).toBe(1);
    expect(new Set(rs.map((r) => r.body.reservation_id)).size).toBe(1);
    // the envelope carries the trace of whichever request won the race (the others replayed
    // it; with two instances the first sent is not always the first served)
    const won = (parseJsonDoubles(await stored(srv, [...ids][0])) as Record<string, any>).trace_id;
    const original = rs.find((r) => r.headers.get('x-cycles-trace-id') === won);
    expect(original, 'a response with the envelope\'s trace id').toBeDefined();
    await expectEvidence(original!, 'reserve');
    const info = await srv.redis.client.xinfo('STREAM', keys.evidenceSource(tenant)) as unknown[];
    expect(info[info.indexOf('entries-added') + 1]).toBe(1);
  });

  it('an amount binary64 cannot carry (DEV1): answered without cycles_evidence, the source is skipped', async () => {
    const { tenant, key } = await tenantOn(srv, 0, { allocated: 2n ** 62n });
    const r = await post(srv, key, '/v1/reservations', reqBody(tenant, { estimate: { unit: U, amount: 2n ** 53n + 1n } }));
    expect(r.status, r.text).toBe(200);
    expect(r.body.cycles_evidence).toBeUndefined();
    const until = Date.now() + 5000;
    while (await sourceLen(srv, tenant) > 0 && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    expect(await sourceLen(srv, tenant)).toBe(0); // acknowledged as unattestable, not left pending
    expect(await srv.redis.client.xpending(keys.evidenceSource(tenant), 'evidence')).toEqual([0, null, null, null]);
  });

  it('a source of an unknown layout version stays pending; the rest of the stream is signed', async () => {
    const { tenant, key } = await tenantOn(srv);
    const c = srv.redis.client;
    const stream = keys.evidenceSource(tenant);
    const foreign = await c.xadd(stream, '*', 'v', '999', 'artifact', 'decide', 'tenant', tenant);
    const d = await post(srv, key, '/v1/decide', reqBody(tenant));
    await expectEvidence(d, 'decide');
    const until = Date.now() + 3000;
    while (await c.xlen(stream) > 1 && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    expect(await c.xlen(stream)).toBe(1);
    const pending = await c.xpending(stream, 'evidence', '-', '+', 10) as [string, string, number, number][];
    expect(pending.map((x) => x[0])).toEqual([foreign]);
  });

  it('measures: Redis bytes per stored envelope and the respond → stored lag', async () => {
    const { tenant, key } = await tenantOn(srv, 10 ** 9);
    const lags: number[] = [];
    const bytes: Record<string, number[]> = {};
    const track = async (r: ApiResponse, kind: string) => {
      const t0 = performance.now();
      const id = r.body.cycles_evidence.evidence_id as string;
      while ((await srv.redis.client.exists(keys.evidenceEnvelope(id))) === 0) await new Promise((res) => setImmediate(res));
      lags.push(performance.now() - t0);
      (bytes[kind] ??= []).push(Number(await srv.redis.client.memory('USAGE', keys.evidenceEnvelope(id))));
    };
    for (let i = 0; i < 40; i++) {
      await track(await post(srv, key, '/v1/decide', reqBody(tenant)), 'decide');
      const r = await post(srv, key, '/v1/reservations', reqBody(tenant));
      await track(r, 'reserve');
      await track(await post(srv, key, commitPath(r.body.reservation_id), { idempotency_key: fresh('c'), actual: { unit: U, amount: 50 } }), 'commit');
    }
    lags.sort((a, b) => a - b);
    const q = (p: number) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))].toFixed(1);
    const avg = (a: number[]) => Math.round(a.reduce((x, y) => x + y, 0) / a.length);
    console.log(`evidence: respond→stored lag p50 ${q(0.5)} ms, p95 ${q(0.95)} ms, max ${q(1)} ms (n=${lags.length}); ` +
      `MEMORY USAGE per envelope: ${Object.entries(bytes).map(([k, v]) => `${k} ${avg(v)} B`).join(', ')}`);
    expect(lags[lags.length - 1]).toBeLessThan(5000);
  });
});

