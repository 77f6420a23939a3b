// Cold export (`cycles export`, src/export/; docs/decisions.md DX4–DX6): one day's export
// round-trips every field of every record of the five classes; a second run writes the same
// bytes; a killed export resumes; `cycles export verify` names a changed file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { REPO_ROOT } from '../src/config';
import { call, startTestServer, ADMIN_KEY, type TestServer } from './helpers/server';
import { putBudget } from './helpers/fixtures';
import { commitPath, redisNowMs, releasePath, uid } from './helpers/reservations';
import { seedOf } from './helpers/evidence';
import { keys } from '../src/store/keys';
import { parseJsonBody } from '../src/json';
import { runExport, verifyExport } from '../src/export/run';
import { CLASSES } from '../src/export/classes';
import { DAY_MS, dayOf } from '../src/export/days';
import { readManifest } from '../src/export/segment';

const BIN = path.join(REPO_ROOT, 'bin', 'cycles.mjs');
const U = 'USD_MICROCENTS';
const EVIDENCE_ENV = {
  EVIDENCE_SERVER_ID: 'https://cycles.example.com/v1',
  EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('cycles-export-test')).toString('hex'),
};
let srv: TestServer;
const tmp: string[] = [];
const tmpDir = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cycles-export-')); tmp.push(d); return d; };
beforeAll(async () => {
  srv = await startTestServer({ ...EVIDENCE_ENV, CYCLES_SWEEP_INTERVAL_MS: '50' });
}, 120_000);
afterAll(async () => {
  await srv?.stop();
  for (const d of tmp) fs.rmSync(d, { recursive: true, force: true });
});
const redis = () => srv.redis.client;

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The JSON lines of a segment, raw. */
const linesOf = (file: string): string[] => zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').split('\n').filter(Boolean);
const parsed = (line: string): any => parseJsonBody(line).value;

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, timeout: 60_000, env: { ...process.env, CYCLES_LOG_LEVEL: 'silent', ...env } },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
  });
}

interface Made {
  t: string;
  committed: string; released: string; expired: string;
  reserveBody: any; commitBody: any; releaseBody: any; eventBody: any; eventId: string;
}
let made: Made;
let day: string;
let later: number;
let first: string;

/** Records of every class, through the API (evidence on, so envelopes are signed too). */
async function makeRecords(): Promise<Made> {
  const t = uid('exp');
  await putBudget(redis(), t, `tenant:${t}`, U, { allocated: 1_000_000 });
  await putBudget(redis(), t, `tenant:${t}/workspace:w`, U, { allocated: 1_000_000 });
  const key = await srv.tenantKey(t);
  const rt = (m: string, p: string, body?: unknown) => call(srv.runtimeUrl, m, p, { key, body });
  const reserveBody = (extra: object = {}) => ({
    idempotency_key: uid('rsv'),
    subject: { tenant: t, workspace: 'w', agent: 'agent-7' },
    action: { kind: 'llm.completion', name: 'gpt-x', tags: ['prod', 'eu'] },
    estimate: { unit: U, amount: 1000 },
    metadata: { ticket: 'T-1' },
    ...extra,
  });
  const rb = reserveBody();
  const r1 = await rt('POST', '/v1/reservations', rb);
  expect(r1.status, r1.text).toBe(200);
  const committed = r1.body.reservation_id as string;
  const commitBody = { idempotency_key: uid('c'), actual: { unit: U, amount: 1200 },
    metrics: { tokens_input: 100, tokens_output: 250, latency_ms: 812, model_version: 'gpt-x-2026-01' }, metadata: { outcome: 'ok' } };
  expect((await rt('POST', commitPath(committed), commitBody)).status).toBe(200);
  const released = (await rt('POST', '/v1/reservations', reserveBody())).body.reservation_id as string;
  const releaseBody = { idempotency_key: uid('r'), reason: 'user cancelled' };
  expect((await rt('POST', releasePath(released), releaseBody)).status).toBe(200);
  const expired = (await rt('POST', '/v1/reservations', reserveBody({ ttl_ms: 1000, grace_period_ms: 0, metadata: { big: 9007199254740993n } }))).body.reservation_id as string;
  const eventBody = {
    idempotency_key: uid('e'), subject: { tenant: t, workspace: 'w' }, action: { kind: 'llm.completion', name: 'batch', tags: ['x'] },
    actual: { unit: U, amount: 5 }, metrics: { tokens_input: 9, latency_ms: 3 }, metadata: { src: 'cron' }, client_time_ms: 1_764_000_000_000,
  };
  const ev = await rt('POST', '/v1/events', eventBody);
  expect(ev.status, ev.text).toBe(201);
  // admin-plane requests: audit rows
  expect((await call(srv.adminUrl, 'GET', `/v1/admin/budgets?tenant_id=${t}`, { adminKey: ADMIN_KEY })).status).toBe(200);
  await waitFor(async () => (await redis().hget(keys.reservation(t, expired), 'status')) === 'EXPIRED', 20_000);
  // reserve ×2, commit, release: four envelopes, signed by the worker (the third reserve's
  // int64 beyond 2^53 cannot be attested, DEV1)
  await waitFor(async () => (await redis().zcard(keys.evidenceIndex())) >= 4, 20_000);
  return { t, committed, released, expired, reserveBody: rb, commitBody, releaseBody, eventBody, eventId: ev.body.event_id as string };
}

describe('cycles export', () => {
  beforeAll(async () => {
    made = await makeRecords();
    const now = await redisNowMs(redis());
    day = dayOf(now);
    later = now + 2 * DAY_MS; // today counts as closed
    // let fire-and-forget audit writes land
    await new Promise((r) => setTimeout(r, 200));
    first = tmpDir();
    const r = await runExport({ redis: redis(), config: srv.server.config, dir: first, from: day, to: day, nowMs: later });
    expect(r.written.sort()).toEqual(CLASSES.map((c) => `${c}/${day}.jsonl.gz`).sort());
  }, 120_000);

  it('round-trips every field of every record of each class', async () => {
    const m = await readManifest(first);
    const seg = (cls: string) => path.join(first, `${cls}/${day}.jsonl.gz`);
    for (const cls of CLASSES) expect(m.files[`${cls}/${day}.jsonl.gz`].rows).toBe(linesOf(seg(cls)).length);
    const { t } = made;
    const rt = (p: string) => call(srv.runtimeUrl, 'GET', p, { adminKey: ADMIN_KEY });

    // reservations: everything the API shows, plus the audit extras, exactly as sent
    const res = new Map(linesOf(seg('reservations')).map((l) => { const v = parsed(l); return [v.reservation_id as string, v]; }));
    expect([...res.keys()].sort()).toEqual([made.committed, made.released, made.expired].sort());
    for (const id of [made.committed, made.released]) {
      const api = await rt(`/v1/reservations/${id}`);
      expect(api.status).toBe(200);
      for (const [k, v] of Object.entries(api.body)) {
        if (k !== 'evidence') { expect(res.get(id)[k], `${id}.${k}`).toEqual(v); continue; }
        // evidence links: the API renders URLs with its identity, the archive keeps the bare ids (DM5)
        const refs = v as Record<string, { evidence_id: string; cycles_evidence_url: string }>;
        expect(Object.keys(res.get(id).evidence).sort()).toEqual(Object.keys(refs).sort());
        for (const [step, ref] of Object.entries(refs)) {
          expect(res.get(id).evidence[step], `${id}.evidence.${step}`).toEqual({ evidence_id: ref.evidence_id });
          expect(ref.cycles_evidence_url.endsWith(ref.evidence_id)).toBe(true);
        }
      }
    }
    const c = res.get(made.committed);
    expect(c).toMatchObject({
      tenant: t, status: 'COMMITTED', subject: made.reserveBody.subject, action: made.reserveBody.action,
      reserved: made.reserveBody.estimate, committed: made.commitBody.actual, metadata: made.reserveBody.metadata,
      committed_metadata: made.commitBody.metadata, committed_metrics: made.commitBody.metrics,
      idempotency_key: made.reserveBody.idempotency_key, overage_policy: 'ALLOW_IF_AVAILABLE',
    });
    expect(c.committed_at_ms).toBe(c.finalized_at_ms);
    expect(c.evidence.reserve.evidence_id).toMatch(/^[0-9a-f]{64}$/);
    expect(res.get(made.released)).toMatchObject({ status: 'RELEASED', release_reason: 'user cancelled', released_by: { type: 'api_key' } });
    const x = res.get(made.expired);
    expect(x).toMatchObject({ status: 'EXPIRED', tenant: t, subject: made.reserveBody.subject });
    expect(x.expired_at_ms).toBeGreaterThanOrEqual(x.expires_at_ms);
    expect(x.metadata.big).toBe(9007199254740993n); // int64 beyond 2^53 exactly

    // createEvent records: the request as sent, plus what the server decided
    const ce = linesOf(seg('create_events')).map(parsed);
    expect(ce).toHaveLength(1);
    const e = made.eventBody;
    expect(ce[0]).toMatchObject({ event_id: made.eventId, tenant: t, subject: e.subject, action: e.action, actual: e.actual,
      charged: e.actual, metrics: e.metrics, metadata: e.metadata, client_time_ms: e.client_time_ms, idempotency_key: e.idempotency_key,
      overage_policy: 'ALLOW_IF_AVAILABLE', scope_path: `tenant:${t}/workspace:w` });

    // events: each line is the API's Event for that id; every outbox entry of the day is there
    const evs = linesOf(seg('events')).map(parsed);
    let outboxed = 0;
    for (const tenant of [t, '__system__']) outboxed += await redis().xlen(keys.outbox(tenant));
    expect(evs).toHaveLength(outboxed);
    expect(evs.length).toBeGreaterThan(0);
    for (const ev of evs) {
      const api = await call(srv.adminUrl, 'GET', `/v1/admin/events/${encodeURIComponent(ev.event_id)}`, { adminKey: ADMIN_KEY });
      expect(api.status).toBe(200);
      expect(ev).toEqual(api.body);
    }

    // audit and evidence: the stored bytes, verbatim
    const audit = linesOf(seg('audit'));
    expect(audit.length).toBeGreaterThan(0);
    for (const l of audit) expect(await redis().get(keys.auditEntry(JSON.parse(l).log_id))).toBe(l);
    const evidence = linesOf(seg('evidence'));
    expect(evidence).toHaveLength(4);
    for (const l of evidence) expect(await redis().get(keys.evidenceEnvelope(JSON.parse(l).evidence_id))).toBe(l);
    // time order
    const issued = evidence.map((l) => JSON.parse(l).issued_at_ms as number);
    expect([...issued].sort((a, b) => a - b)).toEqual(issued);
  });

  it('a second run is byte-identical; a re-run into the same directory leaves it alone', async () => {
    const second = tmpDir();
    const r = await runExport({ redis: redis(), config: srv.server.config, dir: second, from: day, to: day, nowMs: later, classes: ['reservations', 'create_events', 'evidence'] });
    expect(r.written).toHaveLength(3);
    for (const cls of ['reservations', 'create_events', 'evidence']) {
      const rel = `${cls}/${day}.jsonl.gz`;
      expect(fs.readFileSync(path.join(second, rel)).equals(fs.readFileSync(path.join(first, rel))), rel).toBe(true);
    }
    // the gzip header carries no name and no time
    const head = fs.readFileSync(path.join(second, `reservations/${day}.jsonl.gz`)).subarray(0, 10);
    expect([...head.subarray(0, 4)]).toEqual([0x1f, 0x8b, 8, 0]);
    expect(head.readUInt32LE(4)).toBe(0);
    // tenant data: owner-only files
    expect(fs.statSync(path.join(second, `reservations/${day}.jsonl.gz`)).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(second, 'manifest.json')).mode & 0o777).toBe(0o600);
    const before = fs.readFileSync(path.join(first, 'manifest.json'), 'utf8');
    const again = await runExport({ redis: redis(), config: srv.server.config, dir: first, from: day, to: day, nowMs: later });
    expect(again.written).toEqual([]);
    expect(again.present).toHaveLength(CLASSES.length);
    expect(fs.readFileSync(path.join(first, 'manifest.json'), 'utf8')).toBe(before);
  });

  it('days not closed yet are not exported', async () => {
    const dir = tmpDir();
    const r = await runExport({ redis: redis(), config: srv.server.config, dir, from: day, to: day, nowMs: Date.now() });
    expect(r.written).toEqual([]);
    expect(r.notClosed).toEqual([day]);
  });

  it('a killed export resumes: the re-run completes the directory with the same bytes', async () => {
    const dir = tmpDir();
    // no EVIDENCE_* here: the segments must not depend on the exporting process's evidence identity (DM5)
    const env = { REDIS_URL: srv.redis.url, NODE_ENV: 'test', CYCLES_TEST_NOW_MS: String(later) };
    const child = spawn(process.execPath, [BIN, 'export', '--from', day, '--to', day, '--dir', dir],
      { cwd: REPO_ROOT, env: { ...process.env, CYCLES_LOG_LEVEL: 'silent', ...env, CYCLES_TEST_EXPORT_SEGMENT_DELAY_MS: '60000' }, stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    await waitFor(async () => fs.existsSync(path.join(dir, 'manifest.json')), 30_000);
    child.kill('SIGKILL');
    await exited;
    const partial = await readManifest(dir);
    expect(Object.keys(partial.files)).toHaveLength(1);
    // what a kill in the middle of a write leaves behind: a temp file, and a torn segment
    // that never made it into the manifest
    const torn = `events/${day}.jsonl.gz`;
    fs.mkdirSync(path.join(dir, 'events'), { recursive: true });
    fs.writeFileSync(path.join(dir, `events/.${day}.jsonl.gz.tmp-424242`), 'partial');
    fs.writeFileSync(path.join(dir, torn), fs.readFileSync(path.join(first, torn)).subarray(0, 20));

    const rerun = await cli(['export', '--from', day, '--to', day, '--dir', dir], env);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stdout).toContain(`${CLASSES.length - 1} written, 1 already present`);
    for (const cls of CLASSES) {
      const rel = `${cls}/${day}.jsonl.gz`;
      if (cls === 'audit') continue; // the audit log grew meanwhile (this test's own admin reads)
      expect(fs.readFileSync(path.join(dir, rel)).equals(fs.readFileSync(path.join(first, rel))), rel).toBe(true);
    }
    expect((await verifyExport(dir)).problems).toEqual([]);
  }, 90_000);

  it('`cycles export verify` passes on an intact directory and names a file with a changed byte', async () => {
    const dir = tmpDir();
    fs.cpSync(first, dir, { recursive: true });
    const ok = await cli(['export', 'verify', dir]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`${CLASSES.length} files match the manifest`);
    const rel = `create_events/${day}.jsonl.gz`;
    const file = path.join(dir, rel);
    const bytes = fs.readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    fs.writeFileSync(file, bytes);
    const bad = await cli(['export', 'verify', dir]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`MISMATCH ${rel}: sha256`);
    expect(bad.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    fs.rmSync(path.join(dir, `evidence/${day}.jsonl.gz`));
    const { problems } = await verifyExport(dir);
    expect(problems.map((p) => p.file).sort()).toEqual([rel, `evidence/${day}.jsonl.gz`].sort());
  }, 60_000);

  it('refuses bad arguments', async () => {
    expect((await cli(['export', '--from', day, '--to', day])).code).toBe(2);
    const r = await cli(['export', '--from', '2026-13-01', '--to', day, '--dir', tmpDir()], { REDIS_URL: srv.redis.url });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('not a date');
    const down = await cli(['export', '--from', day, '--to', day, '--dir', tmpDir()], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^cycles export: .*ECONNREFUSED/);
  }, 60_000);
});
