// `cycles serve` as a real child process with no REDIS_URL: it must spawn its own
// redis-server, come up on both planes, print the dev admin key once, and on SIGINT exit
// and take the embedded redis-server down with it. Start-up failures must be explicit.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { freePort } from '../src/store/redisProcess';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../src/config';

const BIN = join(REPO_ROOT, 'bin', 'cycles.mjs');
const dirs: string[] = [];
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cycles-embedded-'));
  dirs.push(d);
  return d;
}


/** Environment without any Redis or admin-key configuration from the outer shell. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['REDIS_URL', 'ADMIN_API_KEY', 'NODE_ENV', 'CYCLES_FEATURES', 'REDIS_SERVER_BIN', 'VITEST', 'VITEST_WORKER_ID']) delete env[k];
  return { ...env, CYCLES_LOG_LEVEL: 'warn', ...extra };
}

function run(env: NodeJS.ProcessEnv, cwd: string) {
  const child = spawn(process.execPath, [BIN, 'serve'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; });
  child.stderr!.on('data', (d) => { stderr += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return { child, exited, out: () => stdout, err: () => stderr };
}

async function ready(url: string, deadlineMs: number): Promise<boolean> {
  while (Date.now() < deadlineMs) {
    try {
      const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return true;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

describe('cycles serve (embedded redis)', () => {
  it('starts with an embedded redis-server, prints the dev admin key once, and SIGINT stops both', async () => {
    const dataDir = tempDir();
    const [rp, ap] = [await freePort(), await freePort()];
    const p = run(cleanEnv({ CYCLES_DATA_DIR: dataDir, CYCLES_RUNTIME_PORT: String(rp), CYCLES_ADMIN_PORT: String(ap) }), tempDir());
    const deadline = Date.now() + 80_000;
    const early = p.exited.then((e) => `exited early (${e.code ?? e.signal}): ${p.err()}`);
    const up = await Promise.race([
      (async () => (await ready(`http://127.0.0.1:${rp}`, deadline)) && (await ready(`http://127.0.0.1:${ap}`, deadline)))(),
      early,
    ]);
    expect(up, p.err()).toBe(true);

    const keyLines = p.out().split('\n').filter((l) => /ADMIN_API_KEY=/.test(l));
    expect(keyLines).toHaveLength(1);
    const adminKey = keyLines[0].split('ADMIN_API_KEY=')[1].trim();
    expect(adminKey.length).toBeGreaterThan(20);
    // the printed key is the one the server accepts
    const auth = await fetch(`http://127.0.0.1:${ap}/v1/admin/tenants`, { headers: { 'X-Admin-API-Key': adminKey } });
    expect(auth.status).not.toBe(401);
    const wrong = await fetch(`http://127.0.0.1:${ap}/v1/admin/tenants`, { headers: { 'X-Admin-API-Key': `${adminKey}x` } });
    expect(wrong.status).toBe(401);

    // The embedded redis-server: announced URL, and a process whose arguments name our data dir.
    const m = /redis:\/\/127\.0\.0\.1:(\d+)/.exec(p.out());
    expect(m, p.out()).not.toBeNull();
    const redisPort = Number(m![1]);
    expect(await portAnswers(redisPort)).toBe(true);
    const ps = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
    const redisPids = ps.split('\n').filter((l) => l.includes('redis-server') && l.includes(`:${redisPort}`)).map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(redisPids.length).toBe(1);

    p.child.kill('SIGINT');
    const exit = await p.exited;
    expect(exit.code).toBe(0);
    for (let i = 0; i < 50 && alive(redisPids[0]); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(redisPids[0])).toBe(false);
    expect(await portAnswers(redisPort)).toBe(false);
    expect(await portAnswers(rp)).toBe(false);
  }, 120_000);

  it('NODE_ENV=production without ADMIN_API_KEY exits non-zero with a clear message', async () => {
    const p = run(cleanEnv({ NODE_ENV: 'production', CYCLES_DATA_DIR: tempDir(), CYCLES_RUNTIME_PORT: String(await freePort()), CYCLES_ADMIN_PORT: String(await freePort()) }), tempDir());
    const exit = await p.exited;
    expect(exit.code).not.toBe(0);
    expect(p.err()).toMatch(/ADMIN_API_KEY is required/);
    expect(p.out()).not.toMatch(/ADMIN_API_KEY=/);
  });

  it('REDIS_SERVER_BIN pointing at a missing file exits with the install hint', async () => {
    const p = run(cleanEnv({ REDIS_SERVER_BIN: '/nonexistent/redis-server', CYCLES_DATA_DIR: tempDir(), CYCLES_RUNTIME_PORT: String(await freePort()), CYCLES_ADMIN_PORT: String(await freePort()) }), tempDir());
    const exit = await p.exited;
    expect(exit.code).not.toBe(0);
    expect(p.err()).toMatch(/redis-server was not found/);
    expect(p.err()).toMatch(/apt-get install redis-server/);
    expect(p.err()).toMatch(/REDIS_URL/);
  });
});
