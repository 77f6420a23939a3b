// Evidence signer: turns every tenant's evidence source stream (written by the ledger
// scripts atomically with each attested operation, evidence_common.lua) into signed,
// stored envelopes — at least once, in any number of worker processes (docs/decisions.md
// DEV6, DEV7).
//
// Per tenant stream (evidence_claim.lua / evidence_ack.lua, one Cluster slot each):
//   claim — entries another consumer left unacknowledged for config.evidenceClaimIdleMs
//           (a crashed or failed worker) first, else new ones (XREADGROUP, group `evidence`,
//           one consumer name per process);
//   sign  — rebuild the envelope from the source with the request path's recipe
//           (src/evidence/source.ts), seal it with config.evidence.signer, SET NX its
//           canonical bytes at keys.evidenceEnvelope(id) (TTL CYCLES_EVIDENCE_RETENTION_DAYS);
//   ack   — XACK + XDEL. An entry whose store failed stays pending and is taken over later.
// Entries that cannot be attested (the request path refused them the same way and answered
// without cycles_evidence) are acknowledged with a warning; entries of an unknown source
// layout (a newer server during a rolling deploy) stay pending for a worker that knows it.
//
// Which tenants to look at: keyspace notifications for XADD wake the worker for the tenant
// whose stream grew (the event relay's mechanism, src/events/relay.ts); a sweep over
// keys.tenants() is the safety net (and finds a crashed worker's pending entries).
import { randomBytes } from 'node:crypto';
import type { Deps } from '../http/types';
import { keys } from '../store/keys';
import { loadScript, runScript } from '../store/scripts';
import { watchXadds } from '../events/relay';
import { CanonicalizationError } from './canonical';
import { EvidenceBuildError } from './envelope';
import { envelopeOfSource, sourceOfFields, type SourceRecord } from './source';
import { enablePreseal, presealKey, takePresealed } from './preseal';

const ridOf = (result: unknown): string | undefined => {
  const rid = (result as { ev_rid?: unknown } | null)?.ev_rid;
  return typeof rid === 'string' ? rid : undefined;
};

/** Entries claimed from one stream per round trip. */
export const EVIDENCE_BATCH = 100;
/** Tenants claimed in one auto-pipelined round. */
const TENANT_CHUNK = 100;
/** Full sweep interval without / with keyspace notifications. */
const SWEEP_MS = 2_000;
const NOTIFIED_SWEEP_MS = 15_000;
const FAIL_BACKOFF_MS = 1_000;
/** A woken worker waits this long before claiming, so that under load one claim / store /
 *  acknowledge round covers many sources instead of one each (signing is not on the
 *  request path; this only adds to the respond → stored lag). */
const COALESCE_MS = 10;
const DAY_MS = 86_400_000;

export function tenantOfSourceKey(key: string): string | undefined {
  const m = /^\{t:(.*)\}:evidence-src$/s.exec(key);
  return m ? m[1] : undefined;
}

export interface EvidenceWorkerStats {
  stored: number;
  /** of which signed from the request path's canonical text (src/evidence/preseal.ts) */
  presealed: number;
  skipped: number;
  failures: number;
  notifying: boolean;
}

export interface EvidenceWorker {
  stop(): Promise<void>;
  /** marks tenants for an immediate pass */
  poke(...tenants: string[]): void;
  /** resolves when no tenant is marked and no pass runs */
  idle(): Promise<void>;
  stats: EvidenceWorkerStats;
}

export interface EvidenceWorkerOptions {
  sweepMs?: number;
  notifications?: boolean;
}

type ClaimReply = [[string, string[]][], number];
/** A stored envelope's reference to record on its reservation (ReservationEvidence): the
 *  bare evidence id; readers render the URL (docs/decisions.md DM5). */
interface Link { key: string; field: string; ref: string }

function fieldsOf(flat: string[]): Record<string, string> {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]] = flat[i + 1];
  return f;
}

/** Starts the signer; a no-op when evidence is off. */
export function startEvidenceWorker(deps: Deps, opts: EvidenceWorkerOptions = {}): EvidenceWorker {
  const { redis, log, config } = deps;
  const identity = config.evidence;
  const stats: EvidenceWorkerStats = { stored: 0, presealed: 0, skipped: 0, failures: 0, notifying: false };
  if (!identity) {
    return { stats, poke() {}, idle: async () => {}, async stop() {} };
  }
  const consumer = `${process.pid}:${randomBytes(6).toString('hex')}`;
  const claimScript = loadScript('evidence_claim');
  const ackScript = loadScript('evidence_ack');
  // While the export job holds records (CYCLES_EXPORT_DIR, DX3): no TTL and no index trim
  // here; the job sets the TTL once an envelope's day is exported.
  const ttlMs = config.exportDir ? 0 : config.evidenceRetentionDays * DAY_MS;
  // the request path of this process hands its canonical text over (src/evidence/preseal.ts)
  const disablePreseal = enablePreseal();

  let stopped = false;
  const dirty = new Set<string>();
  let running: Promise<void> | undefined;
  let kickScheduled = false;
  const timers = new Set<NodeJS.Timeout>();
  let idleWaiters: (() => void)[] = [];
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
    timers.add(t);
  };
  const kick = () => {
    if (stopped || kickScheduled) return;
    kickScheduled = true;
    setTimeout(() => {
      kickScheduled = false;
      if (stopped || running) return;
      running = pass().catch((err: unknown) => log.error({ err }, 'evidence worker pass failed')).finally(() => {
        running = undefined;
        if (dirty.size && !stopped) kick();
        else if (!dirty.size) { const w = idleWaiters; idleWaiters = []; for (const f of w) f(); }
      });
    }, COALESCE_MS);
  };
  const mark = (t: string) => { dirty.add(t); kick(); };

  /** Signs and stores one batch; returns the ids to acknowledge and the reservation links
   *  of the stored envelopes (both written by one evidence_ack.lua call). */
  const signBatch = async (tenant: string, entries: [string, string[]][]): Promise<{ done: string[]; links: Link[] }> => {
    const done: string[] = [];
    const links: Link[] = [];
    const writes: { streamId: string; id: string; issuedMs: number; key: string; bytes: string; link?: { reservationId: string; field: string } }[] = [];
    for (const [streamId, flat] of entries) {
      let src;
      try {
        src = sourceOfFields(fieldsOf(flat ?? []));
      } catch (err) {
        // left pending: a worker that knows this layout (or an operator) takes it
        stats.failures++;
        log.error({ err, tenant, stream_id: streamId }, 'evidence worker: unreadable evidence source, left pending');
        continue;
      }
      try {
        const pre = takePresealed(presealKey(src.artifact, src.issuedMs, src.traceId, src.reservationId,
          src.artifact === 'error' ? ridOf(src.result) : undefined, src.request));
        const fast = pre && pre.head.signer_did === identity.signerDid ? identity.signer.sealIdInput(pre.t0, pre.head) : undefined;
        if (fast) stats.presealed++;
        const { evidenceId, text } = fast ?? identity.signer.sealCanonical(envelopeOfSource(src, identity));
        writes.push({ streamId, id: evidenceId, issuedMs: src.issuedMs, key: keys.evidenceEnvelope(evidenceId), bytes: text, link: linkOf(src) });
      } catch (err) {
        if (err instanceof EvidenceBuildError || err instanceof CanonicalizationError) {
          // deterministic: the request path refused the same source and sent no reference
          stats.skipped++;
          log.warn({ err, tenant, stream_id: streamId, artifact: src.artifact }, 'evidence worker: source cannot be attested, skipped');
          done.push(streamId);
          continue;
        }
        stats.failures++;
        log.error({ err, tenant, stream_id: streamId }, 'evidence worker: signing failed, left pending');
      }
    }
    if (writes.length) {
      const p = redis.pipeline();
      // each envelope + its entry in the time index `cycles evidence export` reads (pairs)
      for (const w of writes) {
        if (ttlMs > 0) p.set(w.key, w.bytes, 'PX', ttlMs, 'NX');
        else p.set(w.key, w.bytes, 'NX');
        p.zadd(keys.evidenceIndex(), w.issuedMs, w.id);
      }
      if (ttlMs > 0) p.zremrangebyscore(keys.evidenceIndex(), '-inf', `(${Date.now() - ttlMs}`);
      const all = (await p.exec()) ?? [];
      const res = writes.map((_, i) => [all[2 * i]?.[0] ?? all[2 * i + 1]?.[0] ?? null] as const);
      res.forEach(([err], i) => {
        if (err) {
          stats.failures++;
          log.error({ err, tenant, stream_id: writes[i].streamId }, 'evidence worker: store failed, left pending');
        } else {
          stats.stored++;
          done.push(writes[i].streamId);
          // the reservation's ReservationEvidence entry, written by the ack script
          const l = writes[i].link;
          if (l) links.push({ key: keys.reservation(tenant, l.reservationId), field: l.field, ref: writes[i].id });
        }
      });
    }
    return { done, links };
  };

  const workTenants = async (tenants: string[]) => {
    const replies = await Promise.all(tenants.map((t) =>
      runScript(redis, claimScript, [keys.evidenceSource(t)], [consumer, config.evidenceClaimIdleMs, EVIDENCE_BATCH])
        .then((r) => ({ t, r: r as ClaimReply }), (err: unknown) => ({ t, err }))));
    await Promise.all(replies.map(async (x) => {
      if ('err' in x) {
        log.error({ err: x.err, tenant: x.t }, 'evidence worker: claim failed');
        later(FAIL_BACKOFF_MS, () => mark(x.t));
        return;
      }
      const [entries, more] = x.r;
      if (!entries.length) return;
      try {
        const { done, links } = await signBatch(x.t, entries);
        if (done.length) {
          await runScript(redis, ackScript, [keys.evidenceSource(x.t), ...links.map((l) => l.key)],
            [done.length, ...done, ...links.flatMap((l) => [l.field, l.ref])]);
        }
        if (more === 1) dirty.add(x.t);
      } catch (err) {
        stats.failures++;
        log.error({ err, tenant: x.t }, 'evidence worker: batch failed, left pending');
      }
    }));
  };

  const pass = async () => {
    while (dirty.size && !stopped) {
      const list = [...dirty].slice(0, TENANT_CHUNK);
      for (const t of list) dirty.delete(t);
      await workTenants(list);
    }
  };

  const sweep = async () => {
    let cursor = '0';
    do {
      const [next, list] = await redis.sscan(keys.tenants(), cursor, 'COUNT', 500);
      cursor = next;
      for (const t of list) dirty.add(t);
      kick();
      if (dirty.size > 5000) await idle();
    } while (cursor !== '0' && !stopped);
  };
  let sweeping = false;
  const sweepNow = () => {
    if (stopped || sweeping) return;
    sweeping = true;
    sweep().catch((err: unknown) => log.error({ err }, 'evidence worker sweep failed')).finally(() => { sweeping = false; });
  };
  const sweepLoop = () => {
    if (stopped) return;
    sweepNow();
    const every = opts.sweepMs ?? (stats.notifying ? NOTIFIED_SWEEP_MS : SWEEP_MS);
    later(every, sweepLoop);
  };

  const sub = opts.notifications === false ? undefined : watchXadds(redis, log, {
    label: 'evidence worker',
    onKey: (key) => { const t = tenantOfSourceKey(key); if (t !== undefined) mark(t); },
    onReady: sweepNow,
    onNotifying: (on) => { stats.notifying = on; },
    stopped: () => stopped,
  });

  const idle = () => new Promise<void>((resolve) => {
    if (!running && !dirty.size && !kickScheduled) resolve();
    else idleWaiters.push(resolve);
  });

  later(0, sweepLoop);

  return {
    stats,
    poke(...tenants: string[]) { for (const t of tenants) mark(t); },
    idle,
    async stop() {
      stopped = true;
      disablePreseal();
      for (const t of timers) clearTimeout(t);
      timers.clear();
      if (running) await running;
      const w = idleWaiters; idleWaiters = []; for (const f of w) f();
      if (sub) sub.disconnect();
    },
  };
}

/** Where a stored envelope is linked from its reservation (ReservationEvidence): a live
 *  reserve (the result names the new reservation), a commit, a release; nothing else. */
function linkOf(src: SourceRecord): { reservationId: string; field: string } | undefined {
  if (src.artifact === 'reserve') {
    const rid = (src.result as { reservation_id?: unknown } | null)?.reservation_id;
    return typeof rid === 'string' && rid !== '' ? { reservationId: rid, field: 'ev:reserve' } : undefined;
  }
  if ((src.artifact === 'commit' || src.artifact === 'release') && src.reservationId) {
    return { reservationId: src.reservationId, field: `ev:${src.artifact}` };
  }
  return undefined;
}
