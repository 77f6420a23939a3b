// The export job's hold (docs/decisions.md DX3): with CYCLES_EXPORT_DIR set, nothing expires
// before its day is exported — even far past its retention — and once the job has exported
// and released a day, the day's records get their retention and leave with their index
// entries. A day with an ACTIVE reservation waits for it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { call, startTestServer, ADMIN_KEY, type TestServer } from './helpers/server';
import { putBudget } from './helpers/fixtures';
import { commitPath, redisNowMs, releasePath, reserve, uid } from './helpers/reservations';
import { keys } from '../src/store/keys';
import { exportJobOnce } from '../src/export/job';
import { retentionTrimOnce } from '../src/export/retention';
import { releasedUpTo, trimCutoff } from '../src/export/hold';
import { DAY_MS, dayOf, dayStart } from '../src/export/days';
import { verifyExport } from '../src/export/run';
import { CLASSES } from '../src/export/classes';

const U = 'USD_MICROCENTS';
const RETENTION_MS = 3_000;
let srv: TestServer;
let dir: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cycles-export-job-'));
  // no worker role: the test drives the job and the trim itself, with its own clock
  srv = await startTestServer({ CYCLES_EXPORT_DIR: dir, CYCLES_TEST_RETENTION_MS: String(RETENTION_MS) }, { roles: ['runtime', 'admin'] });
}, 120_000);
afterAll(async () => {
  await srv?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});
const redis = () => srv.redis.client;
const deps = () => ({ redis: redis(), config: srv.server.config });
const ids = (file: string, field: string): string[] =>
  zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)[field] as string);

describe('export job (CYCLES_EXPORT_DIR)', () => {
  it('holds every record until its day is exported, then applies retention; an ACTIVE reservation holds its day back', async () => {
    const t = uid('job');
    await putBudget(redis(), t, `tenant:${t}`, U, { allocated: 1_000_000 });
    const key = await srv.tenantKey(t);
    const rt = (m: string, p: string, body?: unknown) => call(srv.runtimeUrl, m, p, { key, body });
    const committed = await reserve(srv, key, t, { estimate: 10 });
    const released = await reserve(srv, key, t, { estimate: 10 });
    const active = await reserve(srv, key, t, { estimate: 10, ttl_ms: 3_600_000 });
    expect((await rt('POST', commitPath(committed), { idempotency_key: uid('c'), actual: { unit: U, amount: 4 } })).status).toBe(200);
    expect((await rt('POST', releasePath(released), { idempotency_key: uid('r') })).status).toBe(200);
    const ev = await rt('POST', '/v1/events', { idempotency_key: uid('e'), subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' }, actual: { unit: U, amount: 1 } });
    expect(ev.status).toBe(201);
    const eventId = ev.body.event_id as string;
    expect((await call(srv.adminUrl, 'GET', `/v1/admin/budgets?tenant_id=${t}`, { adminKey: ADMIN_KEY })).status).toBe(200);
    const now0 = await redisNowMs(redis());
    const day = dayOf(now0);

    // far past the retention (the hold is what keeps them, not time)
    await new Promise((r) => setTimeout(r, RETENTION_MS + 1_000));
    const resKeys = [committed, released].map((id) => keys.reservation(t, id));
    for (const k of [...resKeys, keys.eventRecord(t, eventId)]) expect(await redis().pttl(k), k).toBe(-1);
    const auditIds = await redis().zrange(keys.auditAll(), 0, -1);
    expect(auditIds.length).toBeGreaterThan(0);
    for (const id of auditIds) expect(await redis().pttl(keys.auditEntry(id))).toBe(-1);
    await retentionTrimOnce(deps());
    expect(await redis().zcard(keys.reservationIndex(t))).toBe(3);
    expect(await redis().zcard(keys.eventRecordIndex(t))).toBe(1);
    expect(await trimCutoff(redis(), srv.server.config, 'events', now0)).toBeUndefined();

    // the day closes: the job exports every class; the reservations day waits for `active`
    const later = now0 + 2 * DAY_MS;
    const r1 = await exportJobOnce(deps(), later);
    expect(r1.open).toEqual([`reservations/${day}.jsonl.gz`]);
    // (a class that holds nothing yet — here evidence, off — starts at the first open day)
    expect(r1.written).toEqual(expect.arrayContaining(['create_events', 'audit'].map((c) => `${c}/${day}.jsonl.gz`)));
    expect(r1.written.some((f) => f.startsWith('reservations/'))).toBe(false);
    expect(ids(path.join(dir, `create_events/${day}.jsonl.gz`), 'event_id')).toEqual([eventId]);
    // released: the createEvent record was past its retention, so it is gone now; audit
    // rows got their 400-day TTL; the held reservations still have none
    expect(await redis().exists(keys.eventRecord(t, eventId))).toBe(0);
    for (const id of auditIds) expect(await redis().pttl(keys.auditEntry(id))).toBeGreaterThan(300 * DAY_MS);
    for (const k of resKeys) expect(await redis().pttl(k)).toBe(-1);
    expect(await releasedUpTo(redis(), 'reservations')).toBeUndefined();
    expect(await releasedUpTo(redis(), 'create_events')).toBeGreaterThan(dayStart(day));

    // the ACTIVE one finishes: the next pass exports the day and releases it
    expect((await rt('POST', releasePath(active), { idempotency_key: uid('r') })).status).toBe(200);
    expect(await redis().pttl(keys.reservation(t, active))).toBe(-1); // held too
    const r2 = await exportJobOnce(deps(), later);
    expect(r2.written).toContain(`reservations/${day}.jsonl.gz`);
    expect(r2.open).toEqual([]);
    const exported = ids(path.join(dir, `reservations/${day}.jsonl.gz`), 'reservation_id');
    expect(exported.sort()).toEqual([committed, released, active].sort());
    // nothing was expired unexported: each record is in the export, and only now leaves
    for (const id of [committed, released]) expect(await redis().exists(keys.reservation(t, id))).toBe(0);
    // `active` finished just now: it keeps the replay floor, min(retention, 1 day), from then
    const ttl = await redis().pttl(keys.reservation(t, active));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(RETENTION_MS);
    const until = Date.now() + 20_000;
    while (await redis().exists(keys.reservation(t, active))) {
      if (Date.now() > until) throw new Error('released reservation did not expire');
      await new Promise((r) => setTimeout(r, 100));
    }
    await retentionTrimOnce(deps());
    expect(await redis().zcard(keys.reservationIndex(t))).toBe(0);
    expect(await redis().zcard(keys.eventRecordIndex(t))).toBe(0);

    // a third pass has nothing left to do; the directory verifies
    const r3 = await exportJobOnce(deps(), later);
    expect(r3.written).toEqual([]);
    expect((await verifyExport(dir)).problems).toEqual([]);
  }, 120_000);

  it('runs in the worker role by itself: one pass under the lease, watermarks set, the lease released', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cycles-export-worker-'));
    const w = await startTestServer({ CYCLES_EXPORT_DIR: d, CYCLES_EXPORT_INTERVAL_MS: '200' }, { roles: ['worker'] });
    try {
      const until = Date.now() + 30_000;
      while (Object.keys(await w.redis.client.hgetall(keys.exportReleased())).length < CLASSES.length) {
        if (Date.now() > until) throw new Error('the export job did not run');
        await new Promise((r) => setTimeout(r, 100));
      }
      // nothing stored: every class starts at today's (open) day
      const today = dayStart(dayOf(await redisNowMs(w.redis.client)));
      for (const cls of CLASSES) expect(await releasedUpTo(w.redis.client, cls)).toBe(today);
      const free = Date.now() + 10_000;
      while (await w.redis.client.exists(keys.exportLock())) {
        if (Date.now() > free) throw new Error('export lease not released');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await w.stop();
      fs.rmSync(d, { recursive: true, force: true });
    }
  }, 90_000);
});
