// Spawn and manage a private redis-server process.
//
// Used by tests (each suite gets its own server, never the shared one) and by
// the CLI when no REDIS_URL is given. AOF is on by default because the ledger
// must survive restarts; RDB snapshots are off (`--save ""`) so AOF is the
// single source of truth.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdirSync, readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { delimiter, join } from 'node:path';

export interface RedisServerOptions {
  dataDir: string;
  /** 0 or undefined: pick a free port. */
  port?: number;
  /** Default true. */
  appendonly?: boolean;
  /** Default 'everysec'. */
  appendfsync?: 'everysec' | 'always' | 'no';
  /** Default 127.0.0.1. May list several addresses separated by spaces. */
  bind?: string;
  /** Default <dataDir>/redis.log. */
  logFile?: string;
}

export interface RedisServerHandle {
  url: string;
  port: number;
  pid: number;
  /** Graceful shutdown (SIGTERM: Redis flushes and fsyncs the AOF), bounded, then SIGKILL. */
  stop(): Promise<void>;
  /** Send a signal (default SIGKILL), e.g. to simulate a crash. Await `exited` afterwards. */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves with the exit code (or null if killed by a signal) once the process is gone. */
  exited: Promise<number | null>;
}

const STARTUP_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const PORT_ATTEMPTS = 5;

function notFoundError(tried: string): Error {
  return new Error(
    `redis-server was not found (tried ${JSON.stringify(tried)}). ` +
      'Install it with `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), ' +
      'set REDIS_SERVER_BIN to the redis-server binary, ' +
      'or set REDIS_URL to use an existing Redis server instead of a private one.',
  );
}

/** REDIS_SERVER_BIN if set (used as is), else the first `redis-server` on PATH. */
export function findRedisBinary(): string {
  const override = process.env.REDIS_SERVER_BIN;
  if (override) return override;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'redis-server');
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  throw notFoundError('redis-server on PATH');
}

/** Ask the OS for a free port. Racy by nature (freed before the caller binds it), hence the
 *  retries below; also used by tests and the benchmark to pick ports for child processes. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not allocate a free port'))));
    });
  });
}

/** One PING over a raw socket; true only on +PONG (a loading server answers -LOADING). */
function pingOnce(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let buf = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('close', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

function tailOf(file: string, extra: string, lines = 20): string {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // log file may not exist if redis died before opening it
  }
  text += extra;
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

// Servers still running when this Node process exits get SIGTERM, so Redis
// shuts down cleanly (AOF fsynced) instead of lingering as an orphan.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGTERM');
    });
  }
}

function bindList(bind: string | undefined): string[] {
  const list = (bind ?? '127.0.0.1').split(/\s+/).filter(Boolean);
  return list.length ? list : ['127.0.0.1'];
}

/** Address to reach a server bound to `bind` ("-" marks optional addresses in Redis 7; wildcards -> loopback). */
function connectHost(bind: string): string {
  const addr = bind.replace(/^-/, '');
  if (addr === '*' || addr === '0.0.0.0') return '127.0.0.1';
  if (addr === '::' || addr === '::*') return '::1';
  return addr;
}

interface Attempt {
  handle?: RedisServerHandle;
  /** true when the failure looks like a lost race for the port */
  portInUse?: boolean;
  error?: Error;
}

async function startOnce(bin: string, opts: RedisServerOptions, port: number): Promise<Attempt> {
  const binds = bindList(opts.bind);
  const host = connectHost(binds[0]);
  const logFile = opts.logFile ?? join(opts.dataDir, 'redis.log');
  const args = [
    '--port', String(port),
    '--bind', ...binds,
    '--dir', opts.dataDir,
    '--appendonly', opts.appendonly === false ? 'no' : 'yes',
    '--appendfsync', opts.appendfsync ?? 'everysec',
    '--save', '',
    '--daemonize', 'no',
    '--protected-mode', 'yes',
    '--logfile', logFile,
  ];

  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // Keep only a small tail of stdout/stderr (errors before the log file opens).
  let output = '';
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  let exitCode: number | null | undefined; // undefined while running
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      exitCode = code;
      live.delete(child);
      resolve(code);
    });
  });

  // spawn reports a missing binary asynchronously via 'error'.
  const spawned = await new Promise<Error | null>((resolve) => {
    child.once('spawn', () => resolve(null));
    child.once('error', (e) => resolve(e));
  });
  if (spawned) {
    if ((spawned as NodeJS.ErrnoException).code === 'ENOENT') return { error: notFoundError(bin) };
    return { error: new Error(`failed to start ${bin}: ${spawned.message}`) };
  }
  track(child);

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (exitCode === undefined && Date.now() < deadline) {
    // Race with exit so a server that dies at startup is reported at once.
    if (await Promise.race([pingOnce(host, port), exited.then(() => false)])) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (exitCode !== undefined || Date.now() >= deadline) {
    const running = exitCode === undefined;
    if (running) {
      child.kill('SIGKILL');
      await exited;
    }
    const tail = tailOf(logFile, output);
    return {
      portInUse: /address already in use/i.test(tail),
      error: new Error(
        `redis-server ${running ? `did not answer PING within ${STARTUP_TIMEOUT_MS} ms` : `exited with code ${exitCode}`} ` +
          `(port ${port}, dir ${opts.dataDir}). Last log lines:\n${tail}`,
      ),
    };
  }

  const urlHost = host.includes(':') ? `[${host}]` : host;
  const handle: RedisServerHandle = {
    url: `redis://${urlHost}:${port}`,
    port,
    pid: child.pid!,
    exited,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (exitCode === undefined) child.kill(signal);
    },
    async stop() {
      if (exitCode !== undefined) return;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), STOP_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  return { handle };
}

/** Start a private redis-server and wait until it answers PING. */
export async function startRedisServer(opts: RedisServerOptions): Promise<RedisServerHandle> {
  const bin = findRedisBinary();
  mkdirSync(opts.dataDir, { recursive: true });
  const fixedPort = opts.port ? opts.port : undefined;
  const probeHost = connectHost(bindList(opts.bind)[0]);

  let last: Error | undefined;
  for (let i = 0; i < (fixedPort ? 1 : PORT_ATTEMPTS); i++) {
    const port = fixedPort ?? (await freePort(probeHost));
    const attempt = await startOnce(bin, opts, port);
    if (attempt.handle) return attempt.handle;
    last = attempt.error;
    // Only a lost port race is worth retrying; anything else will fail again.
    if (!attempt.portInUse) break;
  }
  throw last ?? new Error('redis-server failed to start');
}
