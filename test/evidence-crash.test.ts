// Evidence durability with real server processes (E33, docs/decisions.md DEV6): a server
// running the HTTP planes only (so nothing can be signed before the crash) is SIGKILLed
// right after answering a burst of decide / reserve / commit / release requests. Part of
// what it left is then read — but never acknowledged — by a worker that "crashes" too.
// A fresh server (all roles) must store every evidence_id any response carried, signed and
// verifiable, and drain the source streams.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { startChildServer, stopAllChildServers, type ChildServer } from './helpers/childServer';
import { putBudget } from './helpers/fixtures';
import { seedOf } from './helpers/evidence';
import { storeNewKey } from '../src/auth/apiKeys';
import { DEFAULT_TENANT_PERMISSIONS } from '../src/auth/permissions';
import { keys } from '../src/store/keys';
import { verifyEnvelope } from '../src/evidence/verify';
import { loadEvidenceIdentity } from '../src/evidence/keys';
import { jwkSet } from '../src/evidence/jwks';

const ADMIN_KEY = `evcrash-admin-${randomBytes(12).toString('hex')}`;
const U = 'USD_MICROCENTS';
const ENV = {
  EVIDENCE_SERVER_ID: 'http://127.0.0.1/v1',
  EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('cycles-evidence-crash-test')).toString('hex'),
  CYCLES_EVIDENCE_CLAIM_IDLE_MS: '500',
};
const TENANTS = 4;
const OPS_PER_TENANT = 25;

let redis: TestRedis;
let server: ChildServer;

beforeAll(async () => {
  redis = await startTestRedis({ appendfsync: 'always' });
  server = await startChildServer({ redisUrl: redis.url, adminKey: ADMIN_KEY, env: ENV, args: ['--plane', 'runtime,admin'] });
}, 60_000);

afterAll(async () => {
  await server?.stop().catch(() => {});
  await stopAllChildServers();
  await redis?.stop();
}, 30_000);

async function post(key: string, path: string, body: unknown): Promise<any> {
  const r = await fetch(server.runtimeUrl + path, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Cycles-API-Key': key }, body: JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${path} → ${r.status} ${text}`);
  return JSON.parse(text);
}

it('no envelope is lost when the server is killed right after responding', async () => {
  const c = redis.client;
  const tenants: { id: string; key: string }[] = [];
  for (let i = 0; i < TENANTS; i++) {
    const id = `evc${i}-${randomBytes(3).toString('hex')}`;
    await putBudget(c, id, `tenant:${id}`, U, { allocated: 10n ** 12n });
    const { secret } = await storeNewKey(c, { tenant_id: id, permissions: DEFAULT_TENANT_PERMISSIONS, scope_filter: [], expires_at_ms: 0, name: 't' });
    tenants.push({ id, key: secret });
  }
  const refs: string[] = [];
  const base = (t: string) => ({
    idempotency_key: randomBytes(8).toString('hex'), subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' },
    estimate: { unit: U, amount: 100 },
  });
  await Promise.all(tenants.map(async ({ id, key }) => {
    for (let i = 0; i < OPS_PER_TENANT; i++) {
      const d = await post(key, '/v1/decide', base(id));
      const r = await post(key, '/v1/reservations', base(id));
      const rid = encodeURIComponent(r.reservation_id);
      const f = i % 2 === 0
        ? await post(key, `/v1/reservations/${rid}/commit`, { idempotency_key: randomBytes(8).toString('hex'), actual: { unit: U, amount: 40 } })
        : await post(key, `/v1/reservations/${rid}/release`, { idempotency_key: randomBytes(8).toString('hex') });
      for (const x of [d, r, f]) refs.push(x.cycles_evidence.evidence_id);
    }
  }));
  await server.kill('SIGKILL');
  expect(new Set(refs).size).toBe(refs.length);

  // a second worker that read what was left and died before acknowledging it
  let orphaned = 0;
  for (const { id } of tenants) {
    const stream = keys.evidenceSource(id);
    await c.xgroup('CREATE', stream, 'evidence', '0').catch(() => undefined);
    const read = await c.xreadgroup('GROUP', 'evidence', 'dead-worker', 'COUNT', 10, 'STREAMS', stream, '>') as [string, unknown[]][] | null;
    orphaned += read?.[0]?.[1].length ?? 0;
  }
  const missingAtKill = (await Promise.all(refs.map((id) => c.exists(keys.evidenceEnvelope(id))))).filter((x) => x === 0).length;

  expect(missingAtKill).toBe(refs.length);
  expect(orphaned).toBeGreaterThan(0);
  server = await startChildServer({ redisUrl: redis.url, adminKey: ADMIN_KEY, env: ENV });
  const deadline = Date.now() + 20_000;
  let missing = refs;
  while (missing.length && Date.now() < deadline) {
    const there = await Promise.all(missing.map((id) => c.exists(keys.evidenceEnvelope(id))));
    missing = missing.filter((_, i) => there[i] === 0);
    if (missing.length) await new Promise((r) => setTimeout(r, 100));
  }
  expect(missing, `missing after restart (at kill: ${missingAtKill}, orphaned: ${orphaned})`).toEqual([]);
  for (const { id } of tenants) {
    const until = Date.now() + 5000;
    while (await c.xlen(keys.evidenceSource(id)) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(await c.xlen(keys.evidenceSource(id))).toBe(0);
  }
  const identity = loadEvidenceIdentity(ENV)!;
  for (const id of refs.slice(0, 12)) {
    const v = await verifyEnvelope((await c.get(keys.evidenceEnvelope(id)))!, { jwks: { set: jwkSet(identity) } });
    expect(v.disposition, v.reason).toBe('authentic');
  }
  console.log(`evidence crash: ${refs.length} refs, ${missingAtKill} unsigned at kill, ${orphaned} orphaned by a dead consumer; all stored after restart`);
}, 90_000);
