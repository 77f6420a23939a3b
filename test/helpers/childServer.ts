// The server as a real CHILD process (`node bin/cycles.mjs serve`) on fixed ports, for
// crash tests: kill it with any signal (SIGKILL = crash mid-flight) and start it again on
// the same ports and the same Redis. Response validation is on, as in the in-process
// helper. Every child ever started is killed by stopAll() (call it in afterAll) and by a
// process 'exit' hook, so a failing test never leaves a server behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../../src/store/redisProcess';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/config';

const BIN = join(REPO_ROOT, 'bin', 'cycles.mjs');
const READY_TIMEOUT_MS = 30_000;

export interface ChildServerOptions {
  redisUrl: string;
  adminKey: string;
  /** extra environment (overrides the defaults below) */
  env?: Record<string, string>;
  /** extra `cycles serve` arguments, e.g. ['--plane', 'runtime,admin'] */
  args?: string[];
}

export interface ChildServer {
  runtimeUrl: string;
  adminUrl: string;
  runtimePort: number;
  adminPort: number;
  /** pid of the current process (changes on restart) */
  readonly pid: number;
  /** stdout+stderr tail of the current process (diagnostics) */
  log(): string;
  /** Send a signal (default SIGKILL) and wait until the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start again on the same ports (the previous process must be gone) and wait for /readyz on both planes. */
  restart(): Promise<void>;
  /** Graceful stop (SIGTERM, then SIGKILL after a bound). */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let hookInstalled = false;

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!hookInstalled) {
    hookInstalled = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/** SIGKILL every child server still running (afterAll safety net). */
export async function stopAllChildServers(): Promise<void> {
  const waits = [...live].map((c) => new Promise<void>((r) => {
    if (c.exitCode !== null || c.signalCode !== null) return r();
    c.once('exit', () => r());
    c.kill('SIGKILL');
  }));
  await Promise.all(waits);
}

export { freePort };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startChildServer(opts: ChildServerOptions): Promise<ChildServer> {
  const runtimePort = await freePort();
  let adminPort = await freePort();
  while (adminPort === runtimePort) adminPort = await freePort();
  const runtimeUrl = `http://127.0.0.1:${runtimePort}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['CYCLES_FEATURES', 'REDIS_SERVER_BIN', 'VITEST', 'VITEST_WORKER_ID', 'VITEST_POOL_ID', 'NODE_ENV']) delete env[k];
  Object.assign(env, {
    REDIS_URL: opts.redisUrl,
    ADMIN_API_KEY: opts.adminKey,
    CYCLES_RUNTIME_PORT: String(runtimePort),
    CYCLES_ADMIN_PORT: String(adminPort),
    CYCLES_LOG_LEVEL: 'warn',
    CYCLES_SWEEP_INTERVAL_MS: '200',
    CYCLES_VALIDATE_RESPONSES: '1',
    ...(opts.env ?? {}),
  });

  let child: ChildProcess;
  let exited: Promise<void>;
  let out = '';

  const spawnOnce = () => {
    out = '';
    child = spawn(process.execPath, [BIN, 'serve', ...(opts.args ?? [])], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    const keep = (d: Buffer) => { out = (out + d.toString()).slice(-8000); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    exited = new Promise<void>((r) => child.once('exit', () => r()));
  };

  const gone = () => child.exitCode !== null || child.signalCode !== null;

  const waitReady = async () => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (const url of [runtimeUrl, adminUrl]) {
      for (;;) {
        if (gone()) throw new Error(`child server exited (${child.exitCode ?? child.signalCode}) before ready:\n${out}`);
        if (Date.now() > deadline) {
          child.kill('SIGKILL');
          throw new Error(`child server not ready within ${READY_TIMEOUT_MS} ms (${url}):\n${out}`);
        }
        try {
          const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
          await r.arrayBuffer();
          if (r.status === 200) break;
        } catch { /* not up yet */ }
        await sleep(50);
      }
    }
  };

  spawnOnce();
  await waitReady();

  return {
    runtimeUrl,
    adminUrl,
    runtimePort,
    adminPort,
    get pid() { return child.pid!; },
    log: () => out,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!gone()) child.kill(signal);
      await exited;
    },
    async restart() {
      if (!gone()) throw new Error('restart(): the previous server process is still running; kill() it first');
      spawnOnce();
      await waitReady();
    },
    async stop() {
      if (gone()) return;
      child.kill('SIGTERM');
      const timedOut = await Promise.race([exited.then(() => false), sleep(10_000).then(() => true)]);
      if (timedOut) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
