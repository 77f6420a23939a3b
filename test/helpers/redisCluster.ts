// A local Redis Cluster from redis-server processes on loopback ports (npm run test:cluster,
// the cluster benchmark). Each node runs in its own temp dir with `--cluster-enabled yes`;
// `redis-cli --cluster create` assigns the slots (and replicas). AOF off: the crash test kills
// masters and relies on replica promotion, not on a restart from disk.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { findRedisBinary } from '../../src/store/redisProcess';

export interface ClusterNode {
  port: number;
  dir: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
}

export interface LocalCluster {
  nodes: ClusterNode[];
  /** `127.0.0.1:port` of every node, comma separated (the seed list). */
  seeds: string;
  /** Kill one node with SIGKILL; resolves when the process is gone. */
  kill(port: number): Promise<void>;
  /** Resolves when every reachable node reports cluster_state:ok and the given node is no longer a master anywhere. */
  waitOk(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.unref();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** `n` ports p with p and p+10000 (the cluster bus) both free. */
async function clusterPorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let tries = 0; out.length < n && tries < 500; tries++) {
    const p = 20_000 + Math.floor(Math.random() * 25_000);
    if (out.includes(p) || out.includes(p - 10_000) || out.includes(p + 10_000)) continue;
    if ((await portFree(p)) && (await portFree(p + 10_000))) out.push(p);
  }
  if (out.length < n) throw new Error('no free ports for the cluster');
  return out;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try { if (await check()) return; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function info(port: number, cmd: string[]): Promise<string> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => {});
  try {
    await c.connect();
    return String(await c.call(cmd[0]!, ...cmd.slice(1)));
  } finally {
    c.disconnect();
  }
}

export async function startLocalCluster(opts: { masters?: number; replicas?: number } = {}): Promise<LocalCluster> {
  const masters = opts.masters ?? 3;
  const replicas = opts.replicas ?? 0;
  const ports = await clusterPorts(masters * (1 + replicas));
  const bin = findRedisBinary();
  const nodes: ClusterNode[] = ports.map((port) => {
    const dir = mkdtempSync(join(tmpdir(), 'cycles-cluster-'));
    const proc = spawn(bin, [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1500', '--save', '', '--appendonly', 'no',
      '--logfile', join(dir, 'redis.log'),
    ], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    return { port, dir, proc, exited };
  });
  const alive = new Set(ports);
  const cluster: LocalCluster = {
    nodes,
    seeds: ports.map((p) => `127.0.0.1:${p}`).join(','),
    async kill(port) {
      const n = nodes.find((x) => x.port === port)!;
      n.proc.kill('SIGKILL');
      await n.exited;
      alive.delete(port);
    },
    async waitOk(timeoutMs = 30_000) {
      await waitFor(async () => {
        for (const p of alive) {
          if (!/cluster_state:ok/.test(await info(p, ['CLUSTER', 'INFO']))) return false;
        }
        return true;
      }, timeoutMs, 'cluster_state:ok');
    },
    async stop() {
      for (const n of nodes) n.proc.kill('SIGKILL');
      await Promise.all(nodes.map((n) => n.exited));
      for (const n of nodes) rmSync(n.dir, { recursive: true, force: true });
    },
  };
  try {
    for (const p of ports) await waitFor(async () => (await info(p, ['PING'])) === 'PONG', 10_000, `redis-server on ${p}`);
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8', timeout: 60_000 });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
    await cluster.waitOk();
    if (replicas > 0) {
      // every replica attached and in sync, so a failover has something to promote
      await waitFor(async () => {
        let synced = 0;
        for (const p of ports) {
          const r = await info(p, ['INFO', 'replication']);
          if (/role:slave/.test(r) && /master_link_status:up/.test(r)) synced++;
        }
        return synced === masters * replicas;
      }, 30_000, 'replicas in sync');
    }
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
