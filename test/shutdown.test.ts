// Graceful shutdown of `cycles serve` (decision DB1): on SIGTERM the planes stop accepting
// (new connections refused), idle keep-alive connections close, a request in flight
// completes with its normal response, and the process exits 0; a request that does not
// finish within CYCLES_SHUTDOWN_TIMEOUT_MS is cut at the deadline and the process still
// exits 0 soon after.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { REPO_ROOT } from '../src/config';
import { freePort } from '../src/store/redisProcess';
import { startTestRedis, type TestRedis } from './helpers/redis';

const BIN = join(REPO_ROOT, 'bin', 'cycles.mjs');
const ADMIN = 'shutdown-test-admin-key-0123456789abcdef';

let redis: TestRedis;
const children: ChildProcess[] = [];

beforeAll(async () => { redis = await startTestRedis(); });
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await redis?.stop();
});

interface Proc {
  child: ChildProcess;
  runtimePort: number;
  adminPort: number;
  out(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

async function serve(env: Record<string, string>): Promise<Proc> {
  const runtimePort = await freePort();
  let adminPort = await freePort();
  while (adminPort === runtimePort) adminPort = await freePort();
  const e: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['CYCLES_FEATURES', 'VITEST', 'VITEST_WORKER_ID', 'VITEST_POOL_ID', 'NODE_ENV']) delete e[k];
  Object.assign(e, {
    REDIS_URL: redis.url, ADMIN_API_KEY: ADMIN, CYCLES_LOG_LEVEL: 'warn',
    CYCLES_RUNTIME_PORT: String(runtimePort), CYCLES_ADMIN_PORT: String(adminPort), ...env,
  });
  const child = spawn(process.execPath, [BIN, 'serve'], { cwd: REPO_ROOT, env: e, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((r) =>
    child.once('close', (code, signal) => r({ code, signal, at: Date.now() })));
  const p = { child, runtimePort, adminPort, out: () => out, exited };
  const deadline = Date.now() + 45_000;
  for (const port of [runtimePort, adminPort]) {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`server exited before ready:\n${out}`);
      if (Date.now() > deadline) throw new Error(`server not ready:\n${out}`);
      try {
        const r = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
        await r.arrayBuffer();
        if (r.status === 200) break;
      } catch { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return p;
}

/** A raw HTTP/1.1 connection: write parts of a request by hand, collect everything read. */
function rawConnection(port: number): Promise<{ sock: Socket; data(): string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => { data += d; });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.off('error', reject);
      sock.on('error', () => {});
      resolve({ sock, data: () => data, closed });
    });
  });
}

/** Whether a new TCP connection to the port is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The request line and headers of a tenant create, and its body split in two. */
function tenantCreate(tenant: string): { head: string; first: string; rest: string } {
  const body = JSON.stringify({ tenant_id: tenant, name: 'Shutdown test' });
  const head = `POST /v1/admin/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Admin-API-Key: ${ADMIN}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return { head, first: body.slice(0, 10), rest: body.slice(10) };
}

describe('graceful shutdown (SIGTERM)', () => {
  it('refuses new connections, closes idle ones, finishes the request in flight with its normal response, exits 0', async () => {
    const p = await serve({ CYCLES_SHUTDOWN_TIMEOUT_MS: '20000' });
    // an idle keep-alive connection (one request answered, then nothing)
    const idle = await rawConnection(p.runtimePort);
    idle.sock.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await until('healthz answered', () => idle.data().includes('\r\n\r\n'));
    expect(idle.data()).toMatch(/^HTTP\/1\.1 200/);
    // a request in flight: headers and part of the body sent
    const slow = await rawConnection(p.adminPort);
    const req = tenantCreate('shutdown-inflight');
    slow.sock.write(req.head + req.first);
    await new Promise((r) => setTimeout(r, 200));

    const signalledAt = Date.now();
    p.child.kill('SIGTERM');
    await until('both planes refuse new connections', async () => (await refused(p.runtimePort)) && (await refused(p.adminPort)));
    await idle.closed; // the idle keep-alive connection was closed by the server
    expect(p.child.exitCode).toBeNull(); // still draining the request in flight

    slow.sock.write(req.rest);
    await slow.closed; // answered with Connection: close, then closed
    const text = slow.data();
    expect(text).toMatch(/^HTTP\/1\.1 201 /);
    expect(text.toLowerCase()).toContain('connection: close');
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toMatchObject({ tenant_id: 'shutdown-inflight', status: 'ACTIVE' });

    const exit = await p.exited;
    expect(exit.code).toBe(0);
    expect(exit.at - signalledAt).toBeLessThan(20_000);
    expect(p.out()).toContain('SIGTERM received');
    // the request really was committed before Redis was closed
    expect(await redis.client.exists('{t:shutdown-inflight}:tenant')).toBe(1);
  });

  it('cuts a request still in flight at CYCLES_SHUTDOWN_TIMEOUT_MS and exits 0 soon after', async () => {
    const p = await serve({ CYCLES_SHUTDOWN_TIMEOUT_MS: '1500' });
    const stuck = await rawConnection(p.adminPort);
    const req = tenantCreate('shutdown-stuck');
    stuck.sock.write(req.head + req.first); // the rest never comes
    await new Promise((r) => setTimeout(r, 200));
    const signalledAt = Date.now();
    p.child.kill('SIGTERM');
    const exit = await p.exited;
    await stuck.closed;
    expect(exit.code).toBe(0);
    const took = exit.at - signalledAt;
    expect(took).toBeGreaterThanOrEqual(1400); // waited for the deadline...
    expect(took).toBeLessThan(1500 + 5000); // ...and not much longer
    expect(stuck.data()).toBe(''); // cut, no response
    expect(p.out()).toContain('still in flight at the deadline');
  });
});
