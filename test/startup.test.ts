// Start-up and first-run friction, on real processes (`node bin/cycles.mjs serve` with a
// clean environment): a Redis that never answers or refuses, rediss:// URLs, the
// development admin key kept across restarts, ADMIN_API_KEY strength, a missing spec
// folder, a port in use. Each case asserts the exit code, the message and how long the
// failure took. Cases run concurrently (own ports, data dirs and processes; one shared
// private redis-server). docs/decisions.md D15.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../src/config';
import { freePort, findRedisBinary } from '../src/store/redisProcess';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { maskRedisUrl } from '../src/server';

const BIN = join(REPO_ROOT, 'bin', 'cycles.mjs');
/** Slack for timers and pipes on a busy 2-core machine. Failure times are measured from the
 *  child's first line of output (the development key, printed just before Redis is
 *  contacted), so loading Node, tsx and our modules (seconds under load) does not count. */
const SLACK_MS = 3000;
const STRONG_KEY = 'startup-test-admin-key-0123456789abcdef'; // ≥ 32 characters
/** NODE_ENV=production also needs the webhook secret key (base64 of 32 bytes). */
const WEBHOOK_KEY = Buffer.alloc(32, 7).toString('base64');

const dirs: string[] = [];
const children: ChildProcess[] = [];
const listeners: Server[] = [];
const sockets: Socket[] = [];
let redis: TestRedis;

function tempDir(prefix = 'cycles-startup-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** No Redis, key, mode or port configuration from the outer shell. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith('CYCLES_') || k.startsWith('VITEST')) delete env[k];
  }
  for (const k of ['REDIS_URL', 'ADMIN_API_KEY', 'NODE_ENV', 'REDIS_SERVER_BIN', 'NODE_EXTRA_CA_CERTS']) delete env[k];
  return { ...env, CYCLES_LOG_LEVEL: 'warn', ...extra };
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** since spawn */
  ms: number;
  /** since the first output (NaN if none) */
  msAfterOutput: number;
}

interface Run {
  child: ChildProcess;
  exited: Promise<Exit>;
  out(): string;
  err(): string;
  runtimePort: number;
  adminPort: number;
}

/** `node <args>` in REPO_ROOT with a clean env (default args: the CLI's `serve`). */
async function run(extra: Record<string, string>, args: string[] = [BIN, 'serve']): Promise<Run> {
  const runtimePort = extra.CYCLES_RUNTIME_PORT ? Number(extra.CYCLES_RUNTIME_PORT) : await freePort();
  let adminPort = extra.CYCLES_ADMIN_PORT ? Number(extra.CYCLES_ADMIN_PORT) : await freePort();
  while (adminPort === runtimePort) adminPort = await freePort();
  const env = cleanEnv({
    CYCLES_DATA_DIR: tempDir(),
    ...extra,
    CYCLES_RUNTIME_PORT: String(runtimePort),
    CYCLES_ADMIN_PORT: String(adminPort),
  });
  const started = Date.now();
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  let firstOutputAt = NaN;
  child.stdout!.on('data', (d) => { stdout += d; if (Number.isNaN(firstOutputAt)) firstOutputAt = Date.now(); });
  child.stderr!.on('data', (d) => { stderr += d; });
  // 'close', not 'exit': the last stderr line may still be in the pipe when 'exit' fires
  const exited = new Promise<Exit>((r) => child.once('close', (code, signal) => {
    const now = Date.now();
    r({ code, signal, ms: now - started, msAfterOutput: now - firstOutputAt });
  }));
  return { child, exited, out: () => stdout, err: () => stderr, runtimePort, adminPort };
}

/** Both planes answer /readyz 200, or the reason they never did. */
async function ready(p: Run, timeoutMs = 45_000): Promise<true | string> {
  const deadline = Date.now() + timeoutMs;
  for (const port of [p.runtimePort, p.adminPort]) {
    for (;;) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return `exited (${p.child.exitCode ?? p.child.signalCode}): ${p.err()}`;
      if (Date.now() > deadline) return `not ready within ${timeoutMs} ms: ${p.out()} ${p.err()}`;
      try {
        const r = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
        await r.arrayBuffer();
        if (r.status === 200) break;
      } catch { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return true;
}

async function stop(p: Run): Promise<number | null> {
  p.child.kill('SIGTERM');
  return (await p.exited).code;
}

function adminGet(p: Run, key: string): Promise<number> {
  return fetch(`http://127.0.0.1:${p.adminPort}/v1/admin/tenants`, { headers: { 'X-Admin-API-Key': key, Connection: 'close' } })
    .then(async (r) => { await r.arrayBuffer(); return r.status; });
}

/** The key printed on the `  ADMIN_API_KEY=...` lines. */
function printedKeys(out: string): string[] {
  return out.split('\n').filter((l) => l.includes('ADMIN_API_KEY=')).map((l) => l.split('ADMIN_API_KEY=')[1].trim());
}

/** A TCP listener that accepts and never writes, nor closes (a stalled peer). */
async function silentListener(): Promise<number> {
  const srv = createServer({ allowHalfOpen: true }, (s) => { sockets.push(s); });
  listeners.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return (srv.address() as { port: number }).port;
}

/** A port held by someone else. */
async function busyPort(): Promise<number> {
  const srv = createServer();
  listeners.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return (srv.address() as { port: number }).port;
}

// ---- TLS: a TLS-only redis-server with a self-signed certificate, if this machine can ----

type TlsRedis = { ok: true; url: string; port: number; ca: string; stop(): void } | { ok: false; reason: string };

async function startTlsRedis(): Promise<TlsRedis> {
  const dir = tempDir('cycles-tls-');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'pipe' });
  } catch (e) {
    return { ok: false, reason: `openssl could not make a self-signed certificate: ${(e as Error).message.split('\n')[0]}` };
  }
  let bin: string;
  try { bin = findRedisBinary(); } catch (e) { return { ok: false, reason: (e as Error).message }; }
  const port = await freePort();
  const child = spawn(bin, ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1',
    '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no',
    '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let log = '';
  const up = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 10_000);
    const see = (d: Buffer) => {
      log += d;
      if (log.includes('Ready to accept connections')) { clearTimeout(timer); resolve(true); }
    };
    child.stdout!.on('data', see);
    child.stderr!.on('data', see);
    child.once('exit', () => { clearTimeout(timer); resolve(false); });
  });
  if (!up) {
    child.kill('SIGKILL');
    const last = log.trim().split('\n').slice(-2).join(' ');
    return { ok: false, reason: `this redis-server does not run a TLS port (built without TLS?): ${last}` };
  }
  return { ok: true, url: `rediss://127.0.0.1:${port}`, port, ca: cert, stop: () => child.kill('SIGTERM') };
}

const tls = await startTlsRedis();

beforeAll(async () => {
  redis = await startTestRedis();
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of sockets) s.destroy();
  for (const l of listeners) l.close();
  await redis?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.concurrent('start-up: Redis connection', () => {
  it('REDIS_URL in messages: every form of password shown as ****', ({ expect }) => {
    expect([
      'redis://:sekret@127.0.0.1:6379/0', 'redis://app:sekret@h:6379', 'rediss://:sekret@h:6380/1',
      'redis://sekret@h', 'app:sekret@h:6379', 'redis://h:6379?password=sekret&db=2',
      '/tmp/redis.sock?password=sekret', 'redis://h:6379',
    ].map(maskRedisUrl)).toEqual([
      'redis://:****@127.0.0.1:6379/0', 'redis://app:****@h:6379', 'rediss://:****@h:6380/1',
      'redis://****@h', 'app:****@h:6379', 'redis://h:6379?password=****&db=2',
      '/tmp/redis.sock?password=****', 'redis://h:6379',
    ]);
  });

  it('a Redis that accepts TCP and never answers: exit 1 after CYCLES_REDIS_CONNECT_TIMEOUT_MS, URL named, password masked', async ({ expect }) => {
    const port = await silentListener();
    const p = await run({ REDIS_URL: `redis://:sekret@127.0.0.1:${port}/0`, CYCLES_REDIS_CONNECT_TIMEOUT_MS: '1500' });
    const exit = await p.exited;
    expect(exit.code, p.err()).toBe(1);
    expect(exit.ms).toBeGreaterThanOrEqual(1500);
    expect(exit.msAfterOutput, p.out()).toBeLessThan(1500 + SLACK_MS);
    expect(p.err()).toContain(`cannot connect to Redis at redis://:****@127.0.0.1:${port}/0: timed out`);
    expect(p.err()).toContain('1500 ms');
    expect(p.out() + p.err()).not.toContain('sekret');
  });

  it('a refused port: exit 1 at once, ECONNREFUSED and the URL (user:password masked)', async ({ expect }) => {
    const port = await freePort(); // nothing listens there
    // a bound far above the start overhead: failing fast must not depend on it
    const p = await run({ REDIS_URL: `redis://app:hunter2@127.0.0.1:${port}`, CYCLES_REDIS_CONNECT_TIMEOUT_MS: '60000' });
    const exit = await p.exited;
    expect(exit.code, p.err()).toBe(1);
    expect(exit.msAfterOutput, p.out()).toBeLessThan(SLACK_MS);
    expect(p.err()).toContain(`cannot connect to Redis at redis://app:****@127.0.0.1:${port}: ECONNREFUSED`);
    expect(p.out() + p.err()).not.toContain('hunter2');
  });

  it('startServer() in process: after a failed connect nothing keeps the process alive', async ({ expect }) => {
    const silent = await silentListener();
    const refused = await freePort();
    // No process.exit here: the child must end by itself once both starts have failed.
    const script = `
      const { startServer } = await import(${JSON.stringify(join(REPO_ROOT, 'src', 'server.ts'))});
      for (const url of process.env.URLS.split(' ')) {
        try { await startServer({ env: { ...process.env, REDIS_URL: url } }); console.log('STARTED'); }
        catch (e) { console.log('FAILED ' + e.message); }
      }
      process.exitCode = 3;`;
    const p = await run({ URLS: `redis://127.0.0.1:${silent} redis://127.0.0.1:${refused}`, CYCLES_REDIS_CONNECT_TIMEOUT_MS: '1000', ADMIN_API_KEY: STRONG_KEY, CYCLES_LOG_LEVEL: 'silent' },
      ['--import', 'tsx', '--input-type=module', '-e', script]);
    const exit = await Promise.race([p.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 45_000))]);
    expect(exit, `still running: ${p.out()} ${p.err()}`).not.toBe('hung');
    expect(p.out(), p.err()).not.toContain('STARTED');
    expect(p.out(), p.err()).toContain(`FAILED cannot connect to Redis at redis://127.0.0.1:${silent}: timed out`);
    expect(p.out(), p.err()).toContain(`FAILED cannot connect to Redis at redis://127.0.0.1:${refused}: ECONNREFUSED`);
    expect((exit as { code: number }).code, p.err()).toBe(3);
    // after the first FAILED line: the refused attempt, then ioredis' ≤ 2 s timer after
    // disconnecting a peer that never answered
    expect((exit as Exit).msAfterOutput).toBeLessThan(2000 + SLACK_MS);
  });

  it.skipIf(!tls.ok)(`rediss:// (TLS) URL: starts against a TLS-only redis-server; redis:// to it fails with a hint${tls.ok ? '' : ` — skipped: ${tls.reason}`}`, async ({ expect }) => {
    if (!tls.ok) return;
    const [good, plain, untrusted] = await Promise.all([
      run({ REDIS_URL: tls.url, NODE_EXTRA_CA_CERTS: tls.ca, ADMIN_API_KEY: STRONG_KEY }),
      run({ REDIS_URL: `redis://127.0.0.1:${tls.port}`, ADMIN_API_KEY: STRONG_KEY }),
      run({ REDIS_URL: tls.url, ADMIN_API_KEY: STRONG_KEY }), // certificate not trusted
    ]);
    expect(await ready(good)).toBe(true);
    expect(await adminGet(good, STRONG_KEY)).toBe(200);
    expect(await stop(good)).toBe(0);

    const plainExit = await plain.exited;
    expect(plainExit.code, plain.err()).toBe(1);
    expect(plain.err()).toContain(`cannot connect to Redis at redis://127.0.0.1:${tls.port}: ECONNRESET`);
    expect(plain.err()).toContain('use rediss://');

    const untrustedExit = await untrusted.exited;
    expect(untrustedExit.code, untrusted.err()).toBe(1);
    expect(untrusted.err()).toMatch(/cannot connect to Redis at rediss:\/\/127\.0\.0\.1:\d+: \S*SELF_SIGNED\S*/);
    expect(untrusted.err()).toContain('NODE_EXTRA_CA_CERTS');
    tls.stop();
  });
});

describe.concurrent('start-up: admin key', () => {
  it('development mode keeps the generated key in CYCLES_DATA_DIR (0600) and reuses it, also with CYCLES_HTTP_PROCESSES=2', async ({ expect }) => {
    const dataDir = join(tempDir(), 'not-yet'); // created on first start
    const first = await run({ REDIS_URL: redis.url, CYCLES_DATA_DIR: dataDir });
    expect(await ready(first)).toBe(true);
    const [key] = printedKeys(first.out());
    const file = join(dataDir, 'admin-api-key');
    expect(first.out()).toContain(`generated an admin key and saved it in ${file}`);
    expect(key).toMatch(/^cyc_admin_/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toBe(key);
    expect(await adminGet(first, key)).toBe(200);
    expect(await adminGet(first, `${key}x`)).toBe(401);
    expect(await stop(first)).toBe(0);

    // Second start, as a cluster: the primary reads the file and hands the key to both workers.
    const second = await run({ REDIS_URL: redis.url, CYCLES_DATA_DIR: dataDir, CYCLES_HTTP_PROCESSES: '2' });
    expect(await ready(second)).toBe(true);
    expect(second.out()).toContain(`reusing the admin key saved in ${file}`);
    expect(printedKeys(second.out())).toEqual([key]);
    for (let i = 0; i < 4; i++) expect(await adminGet(second, key)).toBe(200);
    expect(await stop(second)).toBe(0);
    expect(readFileSync(file, 'utf8').trim()).toBe(key);
  }, 120_000); // two starts in a row

  it('NODE_ENV=production refuses an ADMIN_API_KEY shorter than 32 characters', async ({ expect }) => {
    const p = await run({ NODE_ENV: 'production', ADMIN_API_KEY: 'short-admin-key', CYCLES_WEBHOOK_SECRET_KEY: WEBHOOK_KEY, REDIS_URL: redis.url });
    const exit = await p.exited;
    expect(exit.code).toBe(1);
    expect(p.out()).toBe(''); // refused by config validation, before Redis or any listener
    expect(p.err()).toContain('ADMIN_API_KEY is 15 characters; NODE_ENV=production requires at least 32');
  });

  it('NODE_ENV=production starts with a 32+ character key, without a warning', async ({ expect }) => {
    const p = await run({ NODE_ENV: 'production', ADMIN_API_KEY: STRONG_KEY, CYCLES_WEBHOOK_SECRET_KEY: WEBHOOK_KEY, REDIS_URL: redis.url });
    expect(await ready(p)).toBe(true);
    expect(await adminGet(p, STRONG_KEY)).toBe(200);
    expect(await stop(p)).toBe(0);
    expect(p.err()).not.toMatch(/WARNING/);
    expect(p.out()).not.toMatch(/ADMIN_API_KEY=/);
  });
});

describe.concurrent('start-up: ports and the spec folder', () => {
  it('runtime port in use names CYCLES_RUNTIME_PORT; a short key in development warns once', async ({ expect }) => {
    const port = await busyPort();
    const p = await run({ REDIS_URL: redis.url, ADMIN_API_KEY: 'dev-key', CYCLES_RUNTIME_PORT: String(port) });
    const exit = await p.exited;
    expect(exit.code, p.err()).toBe(1);
    expect(p.err()).toContain(`runtime plane: port ${port} is in use (set CYCLES_RUNTIME_PORT)`);
    expect(p.err().split('\n').filter((l) => /WARNING: ADMIN_API_KEY is only 7 characters/.test(l))).toHaveLength(1);
  });

  it('admin port in use names CYCLES_ADMIN_PORT', async ({ expect }) => {
    const port = await busyPort();
    const p = await run({ REDIS_URL: redis.url, ADMIN_API_KEY: STRONG_KEY, CYCLES_ADMIN_PORT: String(port) });
    const exit = await p.exited;
    expect(exit.code, p.err()).toBe(1);
    expect(p.err()).toContain(`admin plane: port ${port} is in use (set CYCLES_ADMIN_PORT)`);
  });

  it('CYCLES_SPECS_DIR naming a missing folder: codegen (npm start runs it first) says so, not a hash mismatch', async ({ expect }) => {
    const missing = join(tempDir(), 'no-such-bundle');
    const out = join(tempDir(), 'generated');
    const p = await run({ CYCLES_SPECS_DIR: missing }, ['--import', 'tsx', join(REPO_ROOT, 'codegen', 'index.ts'), '--out', out]);
    const exit = await p.exited;
    expect(exit.code).toBe(1);
    expect(p.err()).toContain(`CYCLES_SPECS_DIR=${missing}: folder does not exist`);
    expect(p.err()).not.toMatch(/sha256|does not match/);
    expect(existsSync(out)).toBe(false);
  });
});
