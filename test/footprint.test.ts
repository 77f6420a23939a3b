// The compact reservation record (docs/decisions.md DM1–DM4): the hash stays in Redis's
// listpack encoding on a stock Redis, long values are stored in pieces and read back whole,
// and the reserve / commit / release replays are rebuilt from the record byte-identically
// (idempotency mismatch detection unchanged), with the full copy kept where a rebuild could
// not be exact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type ApiResponse, type TestServer } from './helpers/server';
import { getBudget, putBudget } from './helpers/fixtures';
import { commitPath, expectLedgerHolds, extendPath, readReservation, releasePath, uid } from './helpers/reservations';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { keys } from '../src/store/keys';
import { LUA_DIR } from '../src/store/scripts';
import { decodeReservationHash, scopePrefixes, subjectOfScope } from '../src/ledger/reservationRecord';
import { renderReservation, reservationRecord } from '../src/ledger/reservationRead';

const U = 'USD_MICROCENTS';
let srv: TestServer;
beforeAll(async () => { srv = await startTestServer(); }, 60_000);
afterAll(async () => { await srv?.stop(); });
const redis = () => srv.redis.client;

const LONG_NAME = 'summarize-the-whole-ticket-thread-with-a-very-long-action-name-x';

/** A tenant with budgets at the tenant and the agent level of a four-level subject. */
async function deepTenant(extra: { caps?: Record<string, unknown> } = {}) {
  const t = uid('fp');
  const subject = { tenant: t, workspace: 'production-eu', app: 'customer-support-bot', agent: 'planner-with-a-long-name' };
  const leaf = `tenant:${t}/workspace:production-eu/app:customer-support-bot/agent:planner-with-a-long-name`;
  await putBudget(redis(), t, `tenant:${t}`, U, { allocated: 1_000_000 });
  await putBudget(redis(), t, leaf, U, { allocated: 50_000 });
  if (extra.caps) {
    await redis().multi()
      .hset(keys.policies(t), 'p-caps', JSON.stringify({ policy_id: 'p-caps', status: 'ACTIVE', created_at: '2026-01-01T00:00:00Z', scope_pattern: `tenant:${t}/*`, priority: 1, caps: extra.caps }))
      .incr(keys.policyVersion(t))
      .exec();
  }
  return { t, key: await srv.tenantKey(t), subject, leaf };
}

const reserveBody = (subject: Record<string, string>, over: Record<string, unknown> = {}) => ({
  idempotency_key: uid('r'),
  subject,
  action: { kind: 'llm.completion', name: LONG_NAME, tags: ['support', 'summary', 'long-running'] },
  estimate: { unit: U, amount: 2500 },
  ttl_ms: 600_000,
  metadata: { ticket_id: 'T-123456', run_id: 'run-0123456789abcdef', note: 'x'.repeat(150) },
  ...over,
});
const post = (key: string, path: string, body: unknown): Promise<ApiResponse> => call(srv.runtimeUrl, 'POST', path, { key, body });
const noTtl = (text: string) => text.replace(/"remaining_ttl_ms":\d+/, '');

describe('compact reservation record', () => {
  it('stays a listpack hash with long values in ≤ 64-byte pieces, read back whole (GET renders them exactly)', async () => {
    const c = await deepTenant();
    const req = reserveBody(c.subject);
    const r = await post(c.key, '/v1/reservations', req);
    expect(r.status, r.text).toBe(200);
    const id = r.body.reservation_id as string;
    const commit = await post(c.key, commitPath(id), {
      idempotency_key: uid('c'), actual: { unit: U, amount: 1800 },
      metrics: { tokens_input: 1234, tokens_output: 321, latency_ms: 850, model_version: 'gpt-4o-2024-08-06' },
      metadata: { outcome: 'summarized', words: 250, reviewer: 'someone-with-a-long-identifier' },
    });
    expect(commit.status, commit.text).toBe(200);

    const k = keys.reservation(c.t, id);
    expect(await redis().object('ENCODING', k)).toBe('listpack');
    const raw = await redis().hgetall(k);
    for (const [f, v] of Object.entries(raw)) {
      expect(f.length, f).toBeLessThanOrEqual(64);
      expect(v.length, f).toBeLessThanOrEqual(64);
    }
    // long values are absent under their own name (never truncated), present in pieces
    expect(raw.action).toBeUndefined();
    expect(raw.ac).toBeUndefined();
    expect(raw['~1:ac']).toBeDefined();
    // the subject is the one its scope path spells: not stored at all (DM6)
    for (const f of ['subject', 'sj', '~1:sj']) expect(raw[f], f).toBeUndefined();
    // enum values as one digit (DM7)
    expect([raw.u, raw.op]).toEqual(['1', '2']);
    // short names (DM4); derived values are not stored; the replay copies are not stored
    expect(raw.reservation_id).toBeUndefined();
    expect(raw.id).toBe(id);
    for (const f of ['affected_scopes', 'budgeted', 'commit_result', 'as', 'bd', 'cr']) expect(raw[f], f).toBeUndefined();
    const h = decodeReservationHash(raw);
    expect([h.unit, h.overage_policy]).toEqual([U, 'ALLOW_IF_AVAILABLE']);
    expect(JSON.parse(h.subject)).toEqual(c.subject);
    expect(JSON.parse(h.action)).toEqual(req.action);
    expect(JSON.parse(h.metadata)).toEqual(req.metadata);
    expect(JSON.parse(h.affected_scopes)).toEqual(r.body.affected_scopes);
    expect(JSON.parse(h.budgeted)).toEqual([`tenant:${c.t}`, c.leaf]);
    expect(JSON.parse(h.committed_metrics)).toEqual({ tokens_input: 1234, tokens_output: 321, latency_ms: 850, model_version: 'gpt-4o-2024-08-06' });
    expect(decodeReservationHash(h)).toEqual(h); // idempotent

    const g = await call(srv.runtimeUrl, 'GET', `/v1/reservations/${encodeURIComponent(id)}`, { key: c.key });
    expect(g.status, g.text).toBe(200);
    expect(g.body.subject).toEqual(c.subject);
    expect(g.body.action).toEqual(req.action);
    expect(g.body.metadata).toEqual(req.metadata);
    expect(g.body.affected_scopes).toEqual(r.body.affected_scopes);
    expect(g.body.committed_metadata).toEqual({ outcome: 'summarized', words: 250, reviewer: 'someone-with-a-long-identifier' });
    const l = await call(srv.runtimeUrl, 'GET', '/v1/reservations?include=metadata,committed_metadata', { key: c.key });
    expect(l.body.reservations).toEqual([g.body]);
  });

  it('reserve replay: the idempotency record is a reference, the replay byte-identical (after commit, after extend, with caps)', async () => {
    const c = await deepTenant({ caps: { max_tokens: 4096, tool_denylist: ['rm', 'curl'] } });
    const req = reserveBody(c.subject);
    const first = await post(c.key, '/v1/reservations', req);
    expect(first.status, first.text).toBe(200);
    expect(first.body.decision).toBe('ALLOW_WITH_CAPS');
    const id = first.body.reservation_id as string;
    const rec = (await redis().get(keys.idem(c.t, 'reserve', req.idempotency_key)))!;
    expect(rec).toMatch(new RegExp(`^[0-9a-f]{64}\\n@${id}$`));

    const again = await post(c.key, '/v1/reservations', req);
    expect(noTtl(again.text)).toBe(noTtl(first.text));
    // extend moves expires_at_ms; the replay still reports the reserve's own
    const ext = await post(c.key, extendPath(id), { idempotency_key: uid('e'), extend_by_ms: 60_000 });
    expect(ext.status, ext.text).toBe(200);
    const afterExtend = await post(c.key, '/v1/reservations', req);
    expect(noTtl(afterExtend.text)).toBe(noTtl(first.text));
    const cm = await post(c.key, commitPath(id), { idempotency_key: uid('c'), actual: { unit: U, amount: 1 } });
    expect(cm.status, cm.text).toBe(200);
    const afterCommit = await post(c.key, '/v1/reservations', req);
    expect(noTtl(afterCommit.text)).toBe(noTtl(first.text));
    expect(afterCommit.body.remaining_ttl_ms).toBe(0);
    // mismatch detection unchanged
    const other = await post(c.key, '/v1/reservations', { ...req, estimate: { unit: U, amount: 2501 } });
    expect([other.status, other.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
    // the ledger was charged once
    expect((await getBudget(redis(), c.t, `tenant:${c.t}`, U)).spent).toBe('1');
    await expectLedgerHolds(redis(), c.t);
  });

  it('commit and release replays are rebuilt byte-identically; a different payload is IDEMPOTENCY_MISMATCH', async () => {
    const c = await deepTenant();
    const a = await post(c.key, '/v1/reservations', reserveBody(c.subject));
    const b = await post(c.key, '/v1/reservations', reserveBody(c.subject));
    const commitReq = { idempotency_key: uid('c'), actual: { unit: U, amount: 1000 }, metrics: { latency_ms: 5 } };
    const c1 = await post(c.key, commitPath(a.body.reservation_id), commitReq);
    expect(c1.status, c1.text).toBe(200);
    expect(c1.body.released).toEqual({ unit: U, amount: 1500 });
    const relReq = { idempotency_key: uid('l'), reason: 'not needed after all' };
    const r1 = await post(c.key, releasePath(b.body.reservation_id), relReq);
    expect(r1.status, r1.text).toBe(200);
    // the budgets move on; the replays still show the balances of the original responses
    await post(c.key, '/v1/reservations', reserveBody(c.subject));
    const c2 = await post(c.key, commitPath(a.body.reservation_id), commitReq);
    const r2 = await post(c.key, releasePath(b.body.reservation_id), relReq);
    expect(c2.text).toBe(c1.text);
    expect(r2.text).toBe(r1.text);
    const stored = await redis().hgetall(keys.reservation(c.t, a.body.reservation_id));
    expect(stored.cr).toBeUndefined();
    expect(decodeReservationHash(stored).fbal).toMatch(/^1,/);
    const cx = await post(c.key, commitPath(a.body.reservation_id), { ...commitReq, actual: { unit: U, amount: 999 } });
    expect([cx.status, cx.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
    const rx = await post(c.key, releasePath(b.body.reservation_id), { ...relReq, reason: 'other' });
    expect([rx.status, rx.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
  });

  it('keeps the full copies when a Balance row cannot be rebuilt exactly (budget scope field differs from its key)', async () => {
    const t = uid('fp');
    await putBudget(redis(), t, `tenant:${t}`, U, { allocated: 1000 });
    // a hand-edited budget whose `scope` field is not the scope its key names
    await redis().hset(keys.budget(t, `tenant:${t}`, U), 'scope', `tenant:${t.toUpperCase()}`);
    const key = await srv.tenantKey(t);
    const req = { idempotency_key: uid('r'), subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' }, estimate: { unit: U, amount: 5 } };
    const first = await post(key, '/v1/reservations', req);
    expect(first.status, first.text).toBe(200);
    const rec = (await redis().get(keys.idem(t, 'reserve', req.idempotency_key)))!;
    expect(rec.split('\n')[1].startsWith('{')).toBe(true);
    const id = first.body.reservation_id as string;
    expect((await readReservation(redis(), t, id)).rbal).toBeUndefined();
    const again = await post(key, '/v1/reservations', req);
    expect(noTtl(again.text)).toBe(noTtl(first.text));
    const commitReq = { idempotency_key: uid('c'), actual: { unit: U, amount: 2 } };
    const c1 = await post(key, commitPath(id), commitReq);
    expect(c1.status, c1.text).toBe(200);
    const h = await readReservation(redis(), t, id);
    expect([h.fbal, typeof h.commit_result]).toEqual([undefined, 'string']);
    expect((await post(key, commitPath(id), commitReq)).text).toBe(c1.text);
  });

  it('a reference whose reservation is gone answers 409 IDEMPOTENCY_MISMATCH, never a new reservation', async () => {
    const c = await deepTenant();
    const req = reserveBody(c.subject);
    const first = await post(c.key, '/v1/reservations', req);
    await redis().del(keys.reservation(c.t, first.body.reservation_id));
    const again = await post(c.key, '/v1/reservations', req);
    expect([again.status, again.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
  });

  it('a record written whole (older layout, seeded) still decodes, commits and replays', async () => {
    const c = await deepTenant();
    const r = await post(c.key, '/v1/reservations', reserveBody(c.subject));
    const id = r.body.reservation_id as string;
    const k = keys.reservation(c.t, id);
    const whole = await readReservation(redis(), c.t, id);
    // rewrite it the way it was stored before DM1: long names, whole values, JSON scope fields
    await redis().del(k);
    const { bix: _b, ...rest } = whole;
    await redis().hset(k, rest);
    expect(await redis().hget(k, 'subject')).toBe(JSON.stringify(c.subject));
    // extend rewrites expires_at_ms under its short name and drops the long one
    const ext = await post(c.key, extendPath(id), { idempotency_key: uid('e'), extend_by_ms: 1000, metadata: { step: 'x'.repeat(80) } });
    expect(ext.status, ext.text).toBe(200);
    const mixed = await redis().hgetall(k);
    expect(mixed.expires_at_ms).toBeUndefined();
    expect(Number(mixed.xt)).toBe(Number(whole.expires_at_ms) + 1000);
    // a second extend with shorter metadata leaves no stale piece behind
    const ext2 = await post(c.key, extendPath(id), { idempotency_key: uid('e'), extend_by_ms: 1000, metadata: { step: 'y' } });
    expect(ext2.status, ext2.text).toBe(200);
    const after = await redis().hgetall(k);
    expect(Object.keys(after).filter((f) => f.endsWith(':xmd'))).toEqual([]);
    expect(JSON.parse(after.xmd)).toEqual({ step: 'y' });
    const cm = await post(c.key, commitPath(id), { idempotency_key: uid('c'), actual: { unit: U, amount: 7 } });
    expect(cm.status, cm.text).toBe(200);
    const g = await call(srv.runtimeUrl, 'GET', `/v1/reservations/${encodeURIComponent(id)}`, { key: c.key });
    expect(g.body.affected_scopes).toEqual(r.body.affected_scopes);
    expect(g.body.committed).toEqual({ unit: U, amount: 7 });
    await expectLedgerHolds(redis(), c.t);
  });

  it('bal_pack / bal_unpack and res_write / res_read round-trip exactly; rows that cannot be packed losslessly are refused', async () => {
    // the library functions themselves, on the test Redis (reservation_record.lua)
    const lib = ['int64.lua', 'ledger_common.lua', 'reservation_record.lua'].map((f) => readFileSync(join(LUA_DIR, f), 'utf8')).join('\n');
    const harness = `${lib}
local op = ARGV[1]
if op == 'pack' then
  local rows = cjson.decode(ARGV[2])
  for _, r in ipairs(rows) do for k, v in pairs(r) do if v == 'FALSE' then r[k] = false end end end
  local packed = bal_pack(rows, cjson.decode(ARGV[3]), ARGV[4])
  if not packed then return false end
  local back = bal_unpack(packed, cjson.decode(ARGV[3]), ARGV[4])
  for _, r in ipairs(back) do for k, v in pairs(r) do if v == false then r[k] = 'FALSE' end end end
  return {packed, cjson.encode(back)}
end
if op == 'write' then
  res_write(KEYS[1], cjson.decode(ARGV[2]), res_read(KEYS[1]), ARGV[3] == 'stored')
  local r = res_read(KEYS[1])
  r.__st = nil; r.affected_list = nil; r.budgeted_list = nil
  return cjson.encode(r)
end`;
    const row = (over: Record<string, unknown> = {}) => ({
      scope: 'tenant:a/agent:b', unit: U, allocated: '1000', remaining: '-5', reserved: '3', spent: '1002', debt: 'FALSE',
      overdraft_limit: '0', is_over_limit: '0', status: 'ACTIVE', ...over,
    });
    const scopes = JSON.stringify(['tenant:a', 'tenant:a/agent:b']);
    const pack = async (rows: unknown[], unit = U) => redis().eval(harness, 0, 'pack', JSON.stringify(rows), scopes, unit) as Promise<[string, string] | null>;
    const two = [row({ scope: 'tenant:a', allocated: '9223372036854775807' }), row()];
    const ok = await pack(two);
    expect(ok![0]).toBe('1,9223372036854775807,-5,3,1002,~,0,0,ACTIVE;2,1000,-5,3,1002,~,0,0,ACTIVE');
    expect(JSON.parse(ok![1])).toEqual(two);
    for (const bad of [{ spent: '1,2' }, { status: 'A;B' }, { debt: '' }, { debt: '~' }, { reserved: 7 }, { scope: 'tenant:z' }, { unit: 'TOKENS' }]) {
      expect(await pack([row(), row(bad)]), JSON.stringify(bad)).toBeNull();
    }
    // a value with '~' inside (not the whole value) and every value false still pack
    expect(await pack([row({ status: 'a~b' })])).not.toBeNull();
    // res_write: new record under stored names, long values in pieces, then a rewrite to a
    // shorter value removes the surplus pieces
    const k = `{t:${uid('fp')}}:res:x`;
    const long = 'x'.repeat(150);
    const first = JSON.parse(await redis().eval(harness, 1, k, 'write', JSON.stringify(['id', 'r1', 'status', 'ACTIVE', 'md', long]), 'stored') as string);
    expect(first).toMatchObject({ reservation_id: 'r1', status: 'ACTIVE', metadata: long });
    expect(Object.keys(await redis().hgetall(k)).sort()).toEqual(['id', 'status', '~1:md', '~2:md', '~3:md']);
    const second = JSON.parse(await redis().eval(harness, 1, k, 'write', JSON.stringify(['metadata', 'y'.repeat(70), 'status', 'COMMITTED'])) as string);
    expect(second).toMatchObject({ reservation_id: 'r1', status: 'COMMITTED', metadata: 'y'.repeat(70) });
    expect(Object.keys(await redis().hgetall(k)).sort()).toEqual(['id', 'status', '~1:md', '~2:md']);
    expect(await redis().object('ENCODING', k)).toBe('listpack');
  });

  it('a subject its scope path does not spell exactly is stored and rendered as sent (DM6)', async () => {
    const c = await deepTenant();
    const variants: Record<string, unknown>[] = [
      { ...c.subject, agent: 'Planner-With-A-Long-Name' }, // upper case: the scope is lower-cased
      { agent: c.subject.agent, tenant: c.t, workspace: c.subject.workspace, app: c.subject.app }, // another order
      { ...c.subject, dimensions: { region: 'eu' } },
      { workspace: c.subject.workspace, app: c.subject.app, agent: c.subject.agent }, // tenant from the key
    ];
    for (const subject of variants) {
      const r = await post(c.key, '/v1/reservations', reserveBody(subject as Record<string, string>));
      expect(r.status, r.text).toBe(200);
      const raw = await redis().hgetall(keys.reservation(c.t, r.body.reservation_id));
      expect(raw.sj ?? raw['~1:sj'], JSON.stringify(subject)).toBeDefined();
      const g = await call(srv.runtimeUrl, 'GET', `/v1/reservations/${encodeURIComponent(r.body.reservation_id)}`, { key: c.key });
      expect(JSON.stringify(g.body.subject)).toBe(JSON.stringify(subject));
    }
    // derived: the exact text comes back, here for a one-level subject too
    const one = await post(c.key, '/v1/reservations', reserveBody({ tenant: c.t }));
    const raw1 = await redis().hgetall(keys.reservation(c.t, one.body.reservation_id));
    expect(raw1.sj).toBeUndefined();
    expect(decodeReservationHash(raw1).subject).toBe(JSON.stringify({ tenant: c.t }));
    expect(subjectOfScope('tenant:a/workspace:b/agent:c')).toBe('{"tenant":"a","workspace":"b","agent":"c"}');
  });

  it('scopePrefixes is the scope derivation chain', () => {
    expect(scopePrefixes('tenant:a')).toEqual(['tenant:a']);
    expect(scopePrefixes('tenant:a/agent:b/toolset:c')).toEqual(['tenant:a', 'tenant:a/agent:b', 'tenant:a/agent:b/toolset:c']);
  });

  it('evidence links are stored as bare ids and rendered with the server id; older JSON links render as stored (DM5)', () => {
    const idR = 'a1'.repeat(32);
    const idC = 'c2'.repeat(32);
    const oldRef = { evidence_id: 'b3'.repeat(32), cycles_evidence_url: `https://old.example/v1/evidence/${'b3'.repeat(32)}` };
    const h = {
      id: 'res_t_1', t: 't', status: 'COMMITTED', u: U, e: '5', ch: '3', ct: '1', xt: '2', cat: '3', sp: 'tenant:t', bix: '1',
      'ev:reserve': idR, 'ev:commit': idC,
    };
    const all = new Set(['metadata', 'committed_metadata', 'evidence']);
    expect(renderReservation(h, all, { serverId: 'https://c.example/v1' }).evidence).toEqual({
      reserve: { evidence_id: idR, cycles_evidence_url: `https://c.example/v1/evidence/${idR}` },
      commit: { evidence_id: idC, cycles_evidence_url: `https://c.example/v1/evidence/${idC}` },
    });
    // evidence off on the reading server: no URL to give, so no entry (the spec's "absent
    // when evidence emission is disabled"); the export's audit record keeps the ids
    expect(renderReservation(h, all).evidence).toBeUndefined();
    expect(reservationRecord(h).evidence).toEqual({ reserve: { evidence_id: idR }, commit: { evidence_id: idC } });
    expect(reservationRecord(h, 'https://c.example/v1').evidence).toEqual({
      reserve: { evidence_id: idR, cycles_evidence_url: `https://c.example/v1/evidence/${idR}` },
      commit: { evidence_id: idC, cycles_evidence_url: `https://c.example/v1/evidence/${idC}` },
    });
    const old = { ...h, 'ev:commit': JSON.stringify(oldRef) };
    expect(renderReservation(old, all, { serverId: 'https://c.example/v1' }).evidence).toMatchObject({ commit: oldRef });
    expect(renderReservation(old, all).evidence).toEqual({ commit: oldRef });
  });
});
