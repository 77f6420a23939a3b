// Redis Cluster support (docs/decisions.md DK1–DK6).
//
// The server is written against one ioredis `Redis` client. On a cluster it gets an ioredis
// `Cluster` in its place, typed as `Redis` (the command API is the same), with the three
// calls that cannot span slots on a cluster replaced (patchCluster):
// - pipeline(): the commands are sent one by one (ioredis' auto-pipelining still batches
//   them per node), so a pipeline may name keys of any slot; a pipeline was never atomic;
// - multi(): the same, in order — the two callers write a fresh record and its index
//   (storeNewKey, the delivery log), which tolerate a crash between the writes;
// - mget(): one GET per key.
// Everything that talks to "the server" rather than to a key — CONFIG, SUBSCRIBE to keyspace
// notifications, CLIENT TRACKING — goes to every master (masterNodes).
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';

export function isCluster(redis: Redis): boolean {
  return (redis as unknown as { isCluster?: boolean }).isCluster === true;
}

/** The master nodes (one standalone client each, owned by ioredis); the client itself when not a cluster. */
export function masterNodes(redis: Redis): Redis[] {
  return isCluster(redis) ? (redis as unknown as Cluster).nodes('master') : [redis];
}

/** Options to open one more standalone connection to `node` (a master of a cluster). */
export function nodeOptions(node: Redis, extra: Partial<RedisOptions> = {}): RedisOptions {
  const o = node.options;
  return {
    host: o.host, port: o.port, username: o.username, password: o.password, tls: o.tls,
    connectTimeout: o.connectTimeout, ...extra,
  };
}

type Cmd = [string, unknown[]];
type ExecResult = [Error | null, unknown][];

/** A pipeline stand-in: records commands, exec() sends each on its own (in parallel, or in
 *  order for multi()). */
function splitPipeline(cluster: Cluster, initial: unknown[][] | undefined, ordered: boolean): unknown {
  const cmds: Cmd[] = (initial ?? []).map((c) => [String(c[0]), c.slice(1)]);
  const run = async (): Promise<ExecResult> => {
    const one = async ([name, args]: Cmd): Promise<[Error | null, unknown]> => {
      try {
        const fn = (cluster as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name.toLowerCase()];
        const res = typeof fn === 'function' ? await fn.apply(cluster, args) : await cluster.call(name, ...(args as string[]));
        return [null, res];
      } catch (e) {
        return [e as Error, null];
      }
    };
    if (!ordered) return Promise.all(cmds.map(one));
    const out: ExecResult = [];
    for (const c of cmds) out.push(await one(c));
    return out;
  };
  const proxy: unknown = new Proxy({}, {
    get(_t, prop) {
      if (prop === 'exec') return () => run();
      if (prop === 'length') return cmds.length;
      if (prop === 'then') return undefined;
      return (...args: unknown[]) => { cmds.push([String(prop), args]); return proxy; };
    },
  });
  return proxy;
}

/** Makes a Cluster usable where the code expects one Redis (see the header). A proxy, not
 *  patched methods: ioredis' auto-pipelining calls the cluster's own pipeline() inside. */
export function patchCluster(cluster: Cluster): Redis {
  const get = cluster.get.bind(cluster);
  const dup = cluster.duplicate.bind(cluster);
  const overrides: Record<string, unknown> = {
    pipeline: (commands?: unknown[][]) => splitPipeline(cluster, commands, false),
    multi: (commands?: unknown[][]) => splitPipeline(cluster, commands, true),
    mget: async (...args: unknown[]) => {
      const list = (Array.isArray(args[0]) ? args[0] : args) as string[];
      return Promise.all(list.map((k) => get(k)));
    },
    // duplicate() must hand out wrapped clusters too
    duplicate: (nodes?: unknown[], options?: object) => patchCluster(dup(nodes, options)),
    raw: cluster,
  };
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(cluster, {
    get(target, prop) {
      if (typeof prop === 'string' && prop in overrides) return overrides[prop];
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      let b = bound.get(prop);
      if (!b) { b = (v as (...a: unknown[]) => unknown).bind(target); bound.set(prop, b); }
      return b;
    },
    set(target, prop, value) { return Reflect.set(target, prop, value, target); },
  }) as unknown as Redis;
}

/** The ioredis Cluster behind a patchCluster() proxy. */
export function rawCluster(redis: Redis): Cluster {
  return (redis as unknown as { raw: Cluster }).raw;
}

/** Seed node and connection options from a redis:// or rediss:// URL. */
export function clusterFromUrl(url: string, extraSeeds: string[] = []): Cluster {
  const u = new URL(url.includes('://') ? url : `redis://${url}`);
  const redisOptions: RedisOptions = {
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    maxRetriesPerRequest: 2,
  };
  const seeds: ClusterNode[] = [{ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) }];
  for (const s of extraSeeds) {
    const [host, port] = s.split(':');
    seeds.push({ host: host || '127.0.0.1', port: Number(port) });
  }
  return new Cluster(seeds, {
    redisOptions,
    enableAutoPipelining: true,
    lazyConnect: true,
    scaleReads: 'master',
    // a failover takes the node timeout plus an election; keep commands queued meanwhile
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 200,
    maxRedirections: 32,
  });
}
