// `cycles doctor`: what a server started with this environment would find — the
// configuration, its Redis (reachable, version, clock, scripts, notifications, persistence)
// and its key material (admin key, webhook secret key, evidence identity), each one line with
// ok / warn / FAIL. Read-only: it creates no key file and writes nothing but the script
// cache (SCRIPT LOAD, which the server does itself at the first call of each script).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { loadConfig, MIN_ADMIN_KEY_CHARS, type Config } from '../config';
import { DEV_WEBHOOK_KEY_FILE } from '../events/secretBox';
import { readKeyFile } from '../store/keyFile';
import { keys } from '../store/keys';
import { LUA_DIR, loadScript } from '../store/scripts';

export type Status = 'ok' | 'warn' | 'FAIL' | 'skip';
export interface Check { check: string; status: Status; detail: string }

/** Redis this old lacks commands the scripts and workers use (XADD MINID trimming, client tracking). */
const MIN_REDIS = [6, 2];
const SKEW_WARN_MS = 1_000;
const SKEW_FAIL_MS = 60_000;
const CONNECT_TIMEOUT_MS = 5_000;

export async function runDoctor(env: NodeJS.ProcessEnv): Promise<Check[]> {
  const out: Check[] = [];
  const add = (check: string, status: Status, detail: string) => out.push({ check, status, detail });

  let config: Config | undefined;
  try {
    config = loadConfig(env);
    add('config', 'ok', `valid${config.production ? ' (production)' : ''}; features: ${[...config.features].join(',') || 'none'}`);
  } catch (e) {
    add('config', 'FAIL', (e as Error).message);
  }
  if (config) {
    add('specs', existsSync(config.specsDir) ? 'ok' : 'warn', existsSync(config.specsDir) ? config.specsDir : `${config.specsDir} not found (codegen, which npm start runs, needs it; CYCLES_SPECS_DIR)`);
  }

  const redisUrl = env.REDIS_URL || undefined;
  let redis: Redis | undefined;
  if (!redisUrl) {
    const { findRedisBinary } = await import('../store/redisProcess');
    try {
      const bin = findRedisBinary();
      const version = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 5_000 }).trim();
      add('redis', 'ok', `no REDIS_URL: the server starts an embedded ${bin} (${/v=(\S+)/.exec(version)?.[1] ?? version}); data in ${path.join(config?.dataDir ?? 'data', 'redis')}`);
    } catch (e) {
      add('redis', 'FAIL', `no REDIS_URL and no usable redis-server: ${(e as Error).message}`);
    }
  } else {
    const { connectRedis } = await import('../server');
    const t0 = Date.now();
    try {
      redis = await connectRedis(redisUrl, Math.min(config?.redisConnectTimeoutMs ?? CONNECT_TIMEOUT_MS, CONNECT_TIMEOUT_MS));
      redis.on('error', () => {});
      add('redis', 'ok', `reachable, PING answered in ${Date.now() - t0} ms`);
    } catch (e) {
      add('redis', 'FAIL', (e as Error).message);
    }
  }

  try {
    if (redis) await redisChecks(redis, config, add);
    else for (const c of ['redis version', 'clock skew', 'lua scripts']) add(c, 'skip', redisUrl ? 'Redis unreachable' : 'embedded Redis is not running now');
    keyChecks(env, config, add);
    if (redis && config) await storedKeyChecks(redis, config, add);
  } finally {
    redis?.disconnect();
  }
  return out;
}

type Add = (check: string, status: Status, detail: string) => void;

async function redisChecks(redis: Redis, config: Config | undefined, add: Add): Promise<void> {
  const info = await redis.info('server');
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  const [maj, min] = version.split('.').map(Number);
  const old = !(maj > MIN_REDIS[0] || (maj === MIN_REDIS[0] && min >= MIN_REDIS[1]));
  add('redis version', old ? 'FAIL' : 'ok', `${version}${old ? ` (needs ${MIN_REDIS.join('.')} or newer)` : ''}`);

  // skew = Redis TIME minus the midpoint of our clock around the call
  const before = Date.now();
  const [s, us] = (await redis.time()) as unknown as [string | number, string | number];
  const after = Date.now();
  const redisMs = Number(s) * 1000 + Math.floor(Number(us) / 1000);
  const skew = redisMs - Math.round((before + after) / 2);
  const abs = Math.abs(skew);
  add('clock skew', abs > SKEW_FAIL_MS ? 'FAIL' : abs > SKEW_WARN_MS ? 'warn' : 'ok',
    `Redis TIME ${skew >= 0 ? '+' : ''}${skew} ms vs this host (round trip ${after - before} ms); expiry uses Redis TIME, event filters and logs this host's clock`);

  // the same texts (constants substituted) and hence SHAs the server would EVALSHA
  if (config) {
    const { configureSignals } = await import('../events/signals');
    configureSignals(config.signals);
  }
  const names = readdirSync(LUA_DIR).filter((f) => f.endsWith('.lua')).map((f) => f.slice(0, -4)).sort();
  const failed: string[] = [];
  for (const name of names) {
    try {
      const script = loadScript(name);
      const sha = await redis.script('LOAD', script.source) as string;
      if (sha !== script.sha) failed.push(`${name}: Redis SHA ${sha} ≠ ${script.sha}`);
    } catch (e) {
      failed.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  add('lua scripts', failed.length ? 'FAIL' : 'ok', failed.length ? failed.join('; ') : `${names.length} scripts compiled and loaded`);

  try {
    const [, flags = ''] = await redis.config('GET', 'notify-keyspace-events') as string[];
    const on = (flags.includes('E') && (flags.includes('t') || flags.includes('A')));
    add('keyspace events', 'ok', on ? `notify-keyspace-events=${flags}` : `notify-keyspace-events=${flags || '(none)'}; the worker adds Et at start`);
    const [, aof = 'no'] = await redis.config('GET', 'appendonly') as string[];
    const [, save = ''] = await redis.config('GET', 'save') as string[];
    add('persistence', aof === 'yes' ? 'ok' : save ? 'warn' : 'FAIL', aof === 'yes' ? 'AOF on' : save ? `AOF off, RDB snapshots only (save ${save}): a crash loses the writes since the last snapshot` : 'neither AOF nor RDB: a restart loses the ledger');
  } catch (e) {
    add('keyspace events', 'warn', `CONFIG not allowed (${(e as Error).message.split('\n')[0]}): set notify-keyspace-events to include Et on the server, and check persistence there`);
  }
}

function keyChecks(env: NodeJS.ProcessEnv, config: Config | undefined, add: Add): void {
  if (!config) { add('key material', 'skip', 'configuration invalid'); return; }
  if (config.adminApiKey) {
    const n = config.adminApiKey.length;
    add('admin key', n < MIN_ADMIN_KEY_CHARS ? 'warn' : 'ok', `ADMIN_API_KEY set (${n} characters${n < MIN_ADMIN_KEY_CHARS ? `; use at least ${MIN_ADMIN_KEY_CHARS}` : ''})`);
  } else {
    const file = path.join(config.dataDir, 'admin-api-key');
    try {
      const k = readKeyFile({ file, what: 'the development admin key', parse: (t) => t, generate: () => ({ key: '', text: '' }) });
      if (k === undefined) add('admin key', 'warn', `no ADMIN_API_KEY and no ${file}: development mode generates one at the first start`);
      else add('admin key', k.length >= MIN_ADMIN_KEY_CHARS ? 'ok' : 'FAIL', `development key in ${file}${k.length >= MIN_ADMIN_KEY_CHARS ? '' : ' is not a valid key (delete it)'}`);
    } catch (e) {
      add('admin key', 'FAIL', (e as Error).message);
    }
  }
  const wk = webhookKey(config);
  if (wk.error) add('webhook secret key', 'FAIL', wk.error);
  else if (!wk.key) add('webhook secret key', 'warn', `no CYCLES_WEBHOOK_SECRET_KEY and no ${path.join(config.dataDir, DEV_WEBHOOK_KEY_FILE)}: generated at the first webhook write`);
  else add('webhook secret key', 'ok', `${wk.source} (kid ${kidOf(wk.key)})`);

  const ev = config.evidence;
  if (!ev) add('evidence identity', 'ok', env.EVIDENCE_SERVER_ID ? 'EVIDENCE_SERVER_ID set without a key: evidence off' : 'not configured (evidence off)');
  else if (ev.ephemeral) add('evidence identity', 'warn', `EPHEMERAL signing key (development only): envelopes stop verifying once the process exits`);
  else add('evidence identity', 'ok', `${ev.serverId} signer ${ev.signerDid} (kid ${ev.kid}, self-test signature verified${ev.retired.length ? `, ${ev.retired.length} retired keys` : ''})`);
}

const kidOf = (key: Buffer): string => createHash('sha256').update(key).digest('hex').slice(0, 8);

function webhookKey(config: Config): { key?: Buffer; source?: string; error?: string } {
  if (config.webhookSecretKey) return { key: config.webhookSecretKey, source: 'CYCLES_WEBHOOK_SECRET_KEY' };
  const file = path.join(config.dataDir, DEV_WEBHOOK_KEY_FILE);
  try {
    const key = readKeyFile({
      file, what: 'the webhook secret key', generate: () => ({ key: Buffer.alloc(0), text: '' }),
      parse: (t) => { const k = Buffer.from(t, 'base64'); if (k.length !== 32) throw new Error(`${file} does not hold a webhook secret key (base64 of 32 bytes)`); return k; },
    });
    return key ? { key, source: file } : {};
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Key material against what Redis already holds: a stored webhook secret must open with
 *  this key (same kid); the newest stored evidence envelope should be signed by a key this
 *  configuration still publishes. */
async function storedKeyChecks(redis: Redis, config: Config, add: Add): Promise<void> {
  const [id] = await redis.zrange(keys.webhooksAll(), -1, -1);
  if (id) {
    const { readRecord } = await import('../events/subscriptions');
    const sealed = (await readRecord(redis, id))?.secret_enc ?? '';
    const storedKid = sealed.split('.')[1];
    const wk = webhookKey(config);
    if (storedKid && wk.key && storedKid !== kidOf(wk.key)) {
      add('webhook key vs Redis', 'FAIL', `subscription ${id}'s secret is sealed under kid ${storedKid}, this configuration's key has kid ${kidOf(wk.key)}: deliveries would fail (every process needs the same CYCLES_WEBHOOK_SECRET_KEY)`);
    } else if (storedKid && !wk.key) {
      add('webhook key vs Redis', 'FAIL', `subscriptions exist (sealed under kid ${storedKid}) but no webhook secret key is configured here`);
    } else if (storedKid) {
      add('webhook key vs Redis', 'ok', `stored subscription secrets open with kid ${storedKid}`);
    }
  }
  const ev = config.evidence;
  const [newest] = await redis.zrange(keys.evidenceIndex(), -1, -1);
  if (ev && newest) {
    const text = await redis.get(keys.evidenceEnvelope(newest)).catch(() => null);
    let signer: string | undefined;
    try { signer = text ? (JSON.parse(text) as { signer_did?: string }).signer_did : undefined; } catch { signer = undefined; }
    const { didCycles } = await import('../evidence/envelope');
    const known = [ev.signerDid, ...ev.retired.flatMap((r) => [r.publicKeyHex.toLowerCase(), didCycles(ev.serverId, r.kid)])];
    if (signer && !known.includes(signer)) {
      add('evidence vs Redis', 'warn', `the newest stored envelope is signed by ${signer}, neither the configured key nor a retired one: list it in EVIDENCE_SIGNING_RETIRED_KEYS so it stays verifiable`);
    } else if (signer) {
      add('evidence vs Redis', 'ok', `newest stored envelope signed by ${signer}`);
    }
  }
}
