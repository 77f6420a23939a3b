// `cycles doctor` as an operator runs it: every check against a healthy setup, then the
// failures a script must see as exit 1 — Redis unreachable, invalid configuration, and a
// webhook secret key that does not open what Redis already holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { call, startTestServer, type TestServer } from './helpers/server';
import { cycles } from './helpers/cli';
import { fixtureSeedHex } from './helpers/evidence';

const KEY_A = randomBytes(32).toString('base64');
const KEY_B = randomBytes(32).toString('base64');
let srv: TestServer;
let dataDir: string;

beforeAll(async () => {
  srv = await startTestServer({ CYCLES_WEBHOOK_SECRET_KEY: KEY_A });
  dataDir = mkdtempSync(path.join(tmpdir(), 'cycles-doctor-'));
  const t = await call(srv.adminUrl, 'POST', '/v1/admin/webhooks', { adminKey: srv.adminKey, body: { url: 'https://93.184.215.14/hook', event_types: ['tenant.created'] } });
  expect(t.status).toBe(201);
}, 120_000);
afterAll(async () => {
  await srv?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const base = () => ({
  REDIS_URL: srv.redis.url, ADMIN_API_KEY: 'a'.repeat(40), CYCLES_DATA_DIR: dataDir, CYCLES_WEBHOOK_SECRET_KEY: KEY_A,
  EVIDENCE_SERVER_ID: 'https://cycles.example.com/v1', EVIDENCE_SIGNING_PRIVATE_KEY_HEX: fixtureSeedHex(),
});

describe('cycles doctor', () => {
  it('healthy: every check ok, exit 0; --json carries the same checks', { timeout: 400_000 }, async () => {
    const [table, asJson] = await Promise.all([cycles(base(), 'doctor'), cycles(base(), 'doctor', '--json')]);
    expect(table.code, table.stdout + table.stderr).toBe(0);
    for (const re of [
      /^ok +config +valid/m, /^ok +redis +reachable, PING answered in \d+ ms/m, /^ok +redis version +\d+\.\d+/m,
      /^ok +clock skew +Redis TIME [+-]\d+ ms vs this host/m, /^ok +lua scripts +\d+ scripts compiled and loaded/m,
      /^ok +admin key +ADMIN_API_KEY set \(40 characters\)/m, /^ok +webhook secret key +CYCLES_WEBHOOK_SECRET_KEY \(kid [0-9a-f]{8}\)/m,
      /^ok +evidence identity +https:\/\/cycles\.example\.com\/v1 signer /m, /^ok +webhook key vs Redis +stored subscription secrets open/m,
      /\d+ ok, \d+ warnings, 0 failed/,
    ]) expect(table.stdout).toMatch(re);
    expect(table.stdout).not.toContain('a'.repeat(40)); // never the key itself
    const doc = JSON.parse(asJson.stdout);
    expect(asJson.code).toBe(0);
    expect(doc.ok).toBe(true);
    expect(doc.checks.map((c: { check: string }) => c.check)).toEqual(expect.arrayContaining(['config', 'redis', 'redis version', 'clock skew', 'lua scripts', 'admin key', 'webhook secret key', 'evidence identity']));
  });

  it('failures exit 1: Redis unreachable, invalid config, a webhook key other than the one that sealed stored secrets', { timeout: 400_000 }, async () => {
    const [down, badConfig, otherKey] = await Promise.all([
      cycles({ ...base(), REDIS_URL: 'redis://127.0.0.1:1' }, 'doctor'),
      cycles({ ...base(), CYCLES_FEATURES: 'bogus' }, 'doctor', '--json'),
      cycles({ ...base(), CYCLES_WEBHOOK_SECRET_KEY: KEY_B }, 'doctor'),
    ]);
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/^FAIL +redis +cannot connect to Redis at redis:\/\/127\.0\.0\.1:1: ECONNREFUSED/m);
    expect(down.stdout).toMatch(/^skip +lua scripts +Redis unreachable/m);

    expect(badConfig.code).toBe(1);
    const doc = JSON.parse(badConfig.stdout);
    expect(doc.ok).toBe(false);
    expect(doc.checks[0]).toEqual({ check: 'config', status: 'FAIL', detail: expect.stringMatching(/CYCLES_FEATURES: unknown feature "bogus"/) });

    expect(otherKey.code).toBe(1);
    expect(otherKey.stdout).toMatch(/^FAIL +webhook key vs Redis +subscription \S+'s secret is sealed under kid [0-9a-f]{8}, this configuration's key has kid/m);
  });
});
