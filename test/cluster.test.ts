// CYCLES_HTTP_PROCESSES=2: `cycles serve` as a real child process runs two server
// processes behind the same ports (src/cluster.ts). The ledger stays exact when requests
// land on both, a dead server process is replaced, and no process outlives the primary —
// whether it is stopped or killed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { Agent, request } from 'undici';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { startChildServer, stopAllChildServers, type ChildServer } from './helpers/childServer';
import { getBudget } from './helpers/fixtures';

const ADMIN_KEY = 'cluster-test-admin-key';
const U = 'TOKENS';
let redis: TestRedis;
let server: ChildServer;

beforeAll(async () => {
  redis = await startTestRedis();
  server = await startChildServer({ redisUrl: redis.url, adminKey: ADMIN_KEY, env: { CYCLES_HTTP_PROCESSES: '2' } });
}, 60_000);

afterAll(async () => {
  await stopAllChildServers();
  await redis?.stop();
});

const childrenOf = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch { return []; }
};
const serverProcesses = (pid: number) => childrenOf(pid).filter((c) => /cycles\.mjs/.test(readFileSync(`/proc/${c}/cmdline`, 'utf8')));
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const g = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(g[11]) + Number(g[12]);
};
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function adminPost(path: string, body: unknown): Promise<any> {
  const r = await fetch(`${server.adminUrl}${path}`, { method: 'POST', headers: { 'X-Admin-API-Key': ADMIN_KEY, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json();
  if (r.status >= 300) throw new Error(`${path} → ${r.status} ${JSON.stringify(j)}`);
  return j;
}

describe('several server processes (CYCLES_HTTP_PROCESSES=2)', () => {
  it('200 parallel reserves on many connections against a budget for 100: exactly 100 succeed, both processes serve', async () => {
    const t = `cl-${process.pid}`;
    await adminPost('/v1/admin/tenants', { tenant_id: t, name: t });
    await adminPost('/v1/admin/budgets', { tenant_id: t, scope: `tenant:${t}`, unit: U, allocated: { unit: U, amount: 100 } });
    const key = (await adminPost('/v1/admin/api-keys', { tenant_id: t, name: 'k', permissions: ['reservations:create'] })).key_secret;
    const workers = serverProcesses(server.pid);
    expect(workers).toHaveLength(2);
    const before = workers.map(cpuTicks);
    // 64 connections: the primary hands them to the two processes in turn.
    const dispatcher = new Agent({ connections: 64 });
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => request(`${server.runtimeUrl}/v1/reservations`, {
      method: 'POST', dispatcher,
      headers: { 'X-Cycles-API-Key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ idempotency_key: `k${i}`, subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' }, estimate: { unit: U, amount: 1 } }),
    }).then(async (r) => ({ status: r.statusCode, body: await r.body.json() as { error?: string } }))));
    await dispatcher.close();
    expect(rs.filter((r) => r.status === 200)).toHaveLength(100);
    expect(rs.filter((r) => r.status === 409).every((r) => r.body.error === 'BUDGET_EXCEEDED')).toBe(true);
    expect(rs.filter((r) => r.status !== 200 && r.status !== 409)).toEqual([]);
    const b = await getBudget(redis.client, t, `tenant:${t}`, U);
    expect([b.reserved, b.remaining]).toEqual(['100', '0']);
    const after = workers.map(cpuTicks);
    expect(after[0]).toBeGreaterThan(before[0]);
    expect(after[1]).toBeGreaterThan(before[1]);
  }, 60_000);

  it('/metrics sums every process: each scrape, whichever process takes it, counts all 200 reserves', async () => {
    const scrape = () => new Promise<string>((resolve, reject) => {
      // a fresh connection each time: the primary hands them to the processes in turn
      http.get(`${server.adminUrl}/metrics`, { agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { text += c; });
        res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${res.statusCode}`))));
      }).on('error', reject);
    });
    const count = (text: string, status: string) => {
      const line = text.split('\n').find((l) => l.startsWith('cycles_http_requests_total{') && l.includes('operation="createReservation"') && l.includes(`status="${status}"`));
      return line ? Number(line.split(' ').pop()) : 0;
    };
    for (let i = 0; i < 4; i++) {
      const text = await scrape();
      expect([count(text, '200'), count(text, '409')]).toEqual([100, 100]);
    }
  }, 60_000);

  it('a killed server process is replaced and the ports keep answering', async () => {
    const [victim] = serverProcesses(server.pid);
    process.kill(victim, 'SIGKILL');
    let now: number[] = [];
    for (let i = 0; i < 100; i++) {
      now = serverProcesses(server.pid);
      if (now.length === 2 && !now.includes(victim)) break;
      await sleep(100);
    }
    expect(now).toHaveLength(2);
    expect(now).not.toContain(victim);
    for (let i = 0; i < 10; i++) expect((await fetch(`${server.runtimeUrl}/readyz`)).status).toBe(200);
  }, 30_000);

  it('SIGKILL of the primary takes every server process down with it', async () => {
    const workers = serverProcesses(server.pid);
    expect(workers).toHaveLength(2);
    await server.kill('SIGKILL');
    for (let i = 0; i < 100 && workers.some(alive); i++) await sleep(100);
    expect(workers.filter(alive)).toEqual([]);
  }, 30_000);

  it('SIGTERM of the primary stops every server process', async () => {
    await server.restart();
    const workers = serverProcesses(server.pid);
    expect(workers).toHaveLength(2);
    await server.stop();
    for (let i = 0; i < 100 && workers.some(alive); i++) await sleep(100);
    expect(workers.filter(alive)).toEqual([]);
  }, 60_000);
});
