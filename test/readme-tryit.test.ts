// README "Try it by hand" is run as written (ports and the admin key substituted) against a
// test server, so the walkthrough — reserve, commit, balances, release, decide, a denial —
// cannot drift from what the server answers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../src/config';
import { startTestServer, type TestServer } from './helpers/server';

let srv: TestServer;
beforeAll(async () => { srv = await startTestServer(); }, 120_000);
afterAll(async () => srv?.stop());

/** The shell block after "Try it by hand" in README.md. */
function tryItBlock(): string {
  const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('Try it by hand');
  expect(at).toBeGreaterThan(0);
  const m = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  return m![1];
}

describe('README Try it', () => {
  it('every curl command works and answers what the comments say', { timeout: 120_000 }, async () => {
    const port = (u: string) => new URL(u).host;
    const script = tryItBlock()
      .replace(/^ADMIN=\.\.\..*$/m, `ADMIN='${srv.adminKey}'`)
      .replaceAll('localhost:7979', port(srv.adminUrl))
      .replaceAll('localhost:7878', port(srv.runtimeUrl))
      // one answer per line in the transcript; -S: a transport error would show
      .replaceAll('curl -s ', "curl -sS -w '\\n' ");
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('bash', ['-euo', 'pipefail', '-c', script], { timeout: 60_000 }, (err, out, errOut) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout: out, stderr: errOut });
      });
    });
    expect(code, stderr + stdout).toBe(0);
    const answers = stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(stderr).toMatch(/^ALLOW res_acme_[0-9a-f]+$/m);
    expect(answers).toHaveLength(7);
    const [tenant, budget, commit, balances, release, decide, denied] = answers;
    expect(tenant).toMatchObject({ tenant_id: 'acme', status: 'ACTIVE' });
    expect(budget).toMatchObject({ scope: 'tenant:acme', allocated: { amount: 100000 } });
    expect(commit).toMatchObject({ status: 'COMMITTED', charged: { unit: 'TOKENS', amount: 420 }, released: { unit: 'TOKENS', amount: 80 } });
    expect(balances).toMatchObject({ balances: [{ scope: 'tenant:acme', remaining: { amount: 99580 }, reserved: { amount: 0 }, spent: { amount: 420 } }], has_more: false });
    expect(release).toMatchObject({ status: 'RELEASED', released: { unit: 'TOKENS', amount: 1000 } });
    expect(release.balances[0].remaining.amount).toBe(99580);
    expect(decide).toEqual({ decision: 'DENY', reason_code: 'BUDGET_EXCEEDED', affected_scopes: ['tenant:acme', 'tenant:acme/agent:bot'] });
    expect(denied).toMatchObject({ error: 'BUDGET_EXCEEDED', request_id: expect.stringMatching(/^req_/) });
  });
});
