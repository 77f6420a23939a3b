// `cycles demo`: with no server given it starts its own (private redis-server, temporary
// data) and runs the agent loop; against a running server it uses the URLs and admin key
// given. Either way: each decision and the remaining balances, in under a minute.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server';
import { cycles } from './helpers/cli';

let srv: TestServer;
beforeAll(async () => { srv = await startTestServer(); }, 120_000);
afterAll(async () => srv?.stop());

/** The loop's rows: step, outcome, agent left, tenant left (the amounts are the demo's script). */
const LOOP = [
  [/reserve: plan the research/, /ALLOW, 1500 held/, 3500, 18500],
  [/commit: plan the research/, /COMMITTED, 1180 spent, 320 back/, 3820, 18820],
  [/reserve: draft the answer/, /ALLOW, 2000 held/, 1820, 16820],
  [/commit: draft the answer/, /COMMITTED, 1950 spent, 50 back/, 1870, 16870],
  [/reserve: web search/, /ALLOW, 400 held/, 1470, 16470],
  [/release: search not needed/, /RELEASED, 400 back/, 1870, 16870],
  [/decide: may I summarize\?/, /ALLOW \(nothing held\)/, 1870, 16870],
  [/reserve: long report/, /DENIED BUDGET_EXCEEDED \(409\)/, 1870, 16870],
] as const;

function checkLoop(stdout: string): void {
  const rows = stdout.split('\n').filter((l) => /^\d+ /.test(l));
  expect(rows).toHaveLength(LOOP.length);
  LOOP.forEach(([step, outcome, agent, tenant], i) => {
    expect(rows[i]).toMatch(step);
    expect(rows[i]).toMatch(outcome);
    expect(rows[i]).toMatch(new RegExp(` ${agent} +${tenant}$`));
  });
  expect(stdout).toMatch(/api key +key_\S+ +permissions: reservations:create, reservations:commit, reservations:release, balances:read/);
  // the target is well under a minute (about 4 s of loop plus the server start when idle);
  // the bound leaves room for a loaded CI machine
  const secs = Number(/Done in ([\d.]+) s\./.exec(stdout)?.[1]);
  expect(secs).toBeLessThan(120);
}

describe('cycles demo', () => {
  it('embedded: starts its own server, runs the loop, cleans up', { timeout: 400_000 }, async () => {
    const r = await cycles({ REDIS_URL: '', CYCLES_RUNTIME_URL: '', CYCLES_ADMIN_URL: '' }, 'demo', '--act-ms', '10');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Starting an embedded Cycles server .*ready: runtime http:\/\/127\.0\.0\.1:\d+/);
    checkLoop(r.stdout);
    expect(r.stdout).not.toMatch(/KEY=/);
  });

  it('against a running server (env URLs + admin key); usage errors exit 2', { timeout: 400_000 }, async () => {
    const env = { ADMIN_API_KEY: srv.adminKey, CYCLES_RUNTIME_URL: srv.runtimeUrl, CYCLES_ADMIN_URL: srv.adminUrl };
    const [r, half, again] = await Promise.all([
      cycles(env, 'demo', '--tenant', 'demo-cli-test', '--act-ms', '10'),
      cycles({ ...env, CYCLES_ADMIN_URL: '' }, 'demo'),
      cycles(env, 'demo', '--tenant', 'Bad_Name'),
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`Cycles demo against ${srv.runtimeUrl} \\(runtime\\)`));
    checkLoop(r.stdout);
    expect(r.stdout).toMatch(/Continue by hand: KEY=cyc_/);
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/give both --runtime-url and --admin-url/);
    expect(again.code).toBe(2);
    // the same tenant twice: the API's error, exit 1
    const dup = await cycles(env, 'demo', '--tenant', 'demo-cli-test', '--act-ms', '10');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/HTTP 409 DUPLICATE_RESOURCE/);
  });
});
