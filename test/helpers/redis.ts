// Private Redis servers for vitest suites. Tests never touch the shared
// server on 6379: each file starts its own in beforeAll and stops it in
// afterAll, so suites can run in parallel and FLUSHALL freely.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type Cluster } from 'ioredis';
import { clusterFromUrl, patchCluster } from '../../src/store/cluster';
import { startRedisServer, type RedisServerHandle, type RedisServerOptions } from '../../src/store/redisProcess';

export interface TestRedis {
  url: string;
  port: number;
  dataDir: string;
  client: Redis;
  /** Current server process (replaced by restart()). */
  readonly server: RedisServerHandle;
  /** Quit the client, shut the server down and delete the data dir. */
  stop(): Promise<void>;
  /** Crash (kill -9) and start again on the same port and dir (after `downMs`, default 0); the client reconnects by itself. */
  restart(downMs?: number): Promise<void>;
}

/** Seed list (`host:port,…`) of a Redis Cluster to run the suites on instead of private
 *  servers (npm run test:cluster sets it; files then run one at a time). */
export const TEST_CLUSTER = process.env.CYCLES_TEST_REDIS_CLUSTER || '';

async function flushCluster(c: Cluster): Promise<void> {
  await Promise.all(c.nodes('master').map((n) => n.flushall()));
}

async function clusterTestRedis(): Promise<TestRedis> {
  const seeds = TEST_CLUSTER.split(',');
  const cluster = clusterFromUrl(`redis://${seeds[0]}`, seeds.slice(1));
  cluster.on('error', () => {});
  await cluster.connect();
  (cluster as unknown as { flushall: () => Promise<'OK'> }).flushall = async () => { await flushCluster(cluster); return 'OK'; };
  // KEYS and SCAN answer for one node; a test asking them means the whole keyspace, so they
  // go to every master (SCAN's cursor becomes `<master index>-<node cursor>`, '0' at the end).
  const masters = () => cluster.nodes('master');
  (cluster as unknown as { keys: (p: string) => Promise<string[]> }).keys = async (pattern) => (await Promise.all(masters().map((n) => n.keys(pattern)))).flat();
  (cluster as unknown as { scan: (c: string | number, ...a: (string | number)[]) => Promise<[string, string[]]> }).scan = async (cursor, ...args) => {
    const [i, c] = String(cursor) === '0' ? [0, '0'] : String(cursor).split('-') as [string, string];
    const nodes = masters();
    const [next, batch] = await nodes[Number(i)]!.call('SCAN', c, ...args) as [string, string[]];
    if (next !== '0') return [`${i}-${next}`, batch];
    return [Number(i) + 1 < nodes.length ? `${Number(i) + 1}-0` : '0', batch];
  };
  // ioredis finds no key in XINFO (a subcommand comes first), sends it anywhere and does not
  // follow the MOVED: send it to the master of the key
  (cluster as unknown as { xinfo: (sub: string, key: string, ...a: string[]) => Promise<unknown> }).xinfo = async (sub, key, ...rest) => {
    const slot = Number(await cluster.call('CLUSTER', 'KEYSLOT', key));
    const owner = (cluster as unknown as { slots: string[][] }).slots[slot]![0]!;
    const node = masters().find((n) => `${n.options.host}:${n.options.port}` === owner)!;
    return node.call('XINFO', sub, key, ...rest);
  };
  const client = patchCluster(cluster);
  await flushCluster(cluster);
  const port = Number(seeds[0]!.split(':')[1]);
  return {
    url: `redis://${seeds[0]}`,
    port,
    dataDir: '',
    client,
    get server(): RedisServerHandle { throw new Error('no private redis-server on the cluster run'); },
    async stop() { cluster.disconnect(); },
    async restart() { throw new Error('restart() is not available on the cluster run'); },
  };
}

export async function startTestRedis(opts: Partial<Omit<RedisServerOptions, 'dataDir'>> = {}): Promise<TestRedis> {
  if (TEST_CLUSTER) return clusterTestRedis();
  const dataDir = mkdtempSync(join(tmpdir(), 'cycles-redis-'));
  let server = await startRedisServer({ ...opts, dataDir, port: opts.port ?? 0 });
  const port = server.port;
  const client = new Redis(server.url, { maxRetriesPerRequest: 20 });
  // Connection errors are expected around restart(); ioredis retries on its own.
  client.on('error', () => {});

  return {
    url: server.url,
    port,
    dataDir,
    client,
    get server() {
      return server;
    },
    async stop() {
      client.disconnect();
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
    async restart(downMs = 0) {
      server.kill('SIGKILL');
      await server.exited;
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      server = await startRedisServer({ ...opts, dataDir, port });
      await client.ping();
    },
  };
}

/** Another connection to the same Redis (another "process"): a cluster client on the cluster
 *  run, a plain one otherwise. The caller disconnects it. */
export async function extraClient(r: TestRedis): Promise<Redis> {
  if (!TEST_CLUSTER) return new Redis(r.url);
  const seeds = TEST_CLUSTER.split(',');
  const cluster = clusterFromUrl(`redis://${seeds[0]}`, seeds.slice(1));
  cluster.on('error', () => {});
  await cluster.connect();
  return patchCluster(cluster);
}

/** Empty every database of the given server (test isolation between cases). */
export async function flushAll(client: Redis): Promise<void> {
  await client.flushall();
}
