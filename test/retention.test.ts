// Hot retention (docs/decisions.md DX1) with a shortened retention (CYCLES_TEST_RETENTION_MS):
// finished reservations (with their commit/release replay) and createEvent records stay
// readable until their retention and are gone afterwards together with their index entries;
// an ACTIVE reservation never expires by TTL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { putBudget } from './helpers/fixtures';
import { commitPath, releasePath, reserve, uid } from './helpers/reservations';
import { keys } from '../src/store/keys';
import { retentionTrimOnce } from '../src/export/retention';
import { eventRecordOf } from '../src/ledger/event';

const U = 'USD_MICROCENTS';
const RETENTION_MS = 8_000; // long enough for the hot checks on a loaded machine
let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ CYCLES_TEST_RETENTION_MS: String(RETENTION_MS) });
}, 120_000);
afterAll(async () => { await srv?.stop(); });
const redis = () => srv.redis.client;

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('hot retention', () => {
  it('finished reservations and createEvent records are queryable until their retention, then gone with their index entries; ACTIVE never expires', async () => {
    const t = uid('ret');
    await putBudget(redis(), t, `tenant:${t}`, U, { allocated: 1_000_000 });
    const key = await srv.tenantKey(t);
    const rt = (m: string, p: string, body?: unknown) => call(srv.runtimeUrl, m, p, { key, body });

    const committed = await reserve(srv, key, t, { estimate: 10 });
    const released = await reserve(srv, key, t, { estimate: 10 });
    const active = await reserve(srv, key, t, { estimate: 10, ttl_ms: 3_600_000 });
    const commitBody = { idempotency_key: uid('c'), actual: { unit: U, amount: 7 }, metrics: { tokens_input: 3, model_version: 'm-1' } };
    const commit = await rt('POST', commitPath(committed), commitBody);
    expect(commit.status).toBe(200);
    expect((await rt('POST', releasePath(released), { idempotency_key: uid('r') })).status).toBe(200);
    const eventBody = {
      idempotency_key: uid('e'), subject: { tenant: t }, action: { kind: 'llm.completion', name: 'chat', tags: ['a'] },
      actual: { unit: U, amount: 5 }, metrics: { latency_ms: 42 }, metadata: { run: 'r1' }, client_time_ms: 1_700_000_000_000,
    };
    const ev = await rt('POST', '/v1/events', eventBody);
    expect(ev.status, ev.text).toBe(201);
    const eventId = ev.body.event_id as string;

    // hot: readable, listed, replayable; the createEvent record is stored and indexed
    expect((await rt('GET', `/v1/reservations/${committed}`)).status).toBe(200);
    const listed = await rt('GET', '/v1/reservations?limit=50');
    expect(listed.body.reservations.map((r: { reservation_id: string }) => r.reservation_id).sort()).toEqual([committed, released, active].sort());
    const replay = await rt('POST', commitPath(committed), commitBody);
    expect(replay.text).toBe(commit.text);
    expect(await redis().zscore(keys.eventRecordIndex(t), eventId)).not.toBeNull();
    const rec = eventRecordOf(await redis().hgetall(keys.eventRecord(t, eventId)));
    expect(rec).toMatchObject({ event_id: eventId, tenant: t, subject: eventBody.subject, action: eventBody.action,
      actual: eventBody.actual, metrics: eventBody.metrics, metadata: eventBody.metadata, client_time_ms: eventBody.client_time_ms });
    for (const k of [keys.reservation(t, committed), keys.reservation(t, released), keys.eventRecord(t, eventId)]) {
      expect(await redis().pttl(k)).toBeGreaterThan(0);
    }
    // a trim before the retention keeps everything
    await retentionTrimOnce({ redis: redis(), config: srv.server.config });
    expect(await redis().zcard(keys.reservationIndex(t))).toBe(3);

    // past the retention: the records expire by their TTL ...
    await waitFor(async () => (await redis().exists(keys.reservation(t, committed), keys.reservation(t, released), keys.eventRecord(t, eventId))) === 0, 30_000);
    // ... and the trim takes their index entries
    await retentionTrimOnce({ redis: redis(), config: srv.server.config });
    expect(await redis().zscore(keys.reservationIndex(t), committed)).toBeNull();
    expect(await redis().zscore(keys.reservationIndex(t), released)).toBeNull();
    expect(await redis().zscore(keys.eventRecordIndex(t), eventId)).toBeNull();
    expect((await rt('GET', `/v1/reservations/${committed}`)).status).toBe(404);

    // the ACTIVE reservation is older than the retention and still there, without a TTL
    expect(await redis().pttl(keys.reservation(t, active))).toBe(-1);
    const a = await rt('GET', `/v1/reservations/${active}`);
    expect(a.status).toBe(200);
    expect(a.body.status).toBe('ACTIVE');
  });
});
