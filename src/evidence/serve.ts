// The two public evidence endpoints (runtime spec getEvidence, getEvidenceJwks;
// cycles-evidence-v0.2.yaml): the stored envelope bytes verbatim, and the JWK Set of the
// configured identity. No API key: the unguessable content hash is the capability, so the
// fetch is throttled per client like the public action-kind registry (DG4's in-memory
// windows; decision DEV9).
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import { ClientThrottle } from '../governance/throttle';
import { keys } from '../store/keys';
import type { Config } from '../config';
import { EVIDENCE_ID_RE } from './envelope';
import { jwkSet } from './jwks';

/** A year: an envelope never changes (content-addressed). */
export const ENVELOPE_CACHE_CONTROL = 'public, max-age=31536000, immutable';
/** Key sets change on rotation: short, never immutable. */
export const JWKS_CACHE_CONTROL = 'public, max-age=300';

const throttles = new WeakMap<object, ClientThrottle>();
function throttleFor(config: Config): ClientThrottle {
  let t = throttles.get(config);
  if (!t) { t = new ClientThrottle(config.evidenceRateLimitPerMinute); throttles.set(config, t); }
  return t;
}

/** The stored canonical bytes of `id`; 400 for a malformed id, 429 when the client is over
 *  its budget, 404 when unknown (or not signed yet: signing is asynchronous). */
export async function fetchEnvelope(redis: Redis, config: Config, id: string, client: string | undefined): Promise<string> {
  if (!EVIDENCE_ID_RE.test(id)) throw new ApiError('INVALID_REQUEST', 'evidence_id must be 64 lowercase hex characters');
  const v = throttleFor(config).take(client ?? 'unknown');
  if (!v.ok) {
    throw new ApiError('LIMIT_EXCEEDED', `Too many evidence fetches; retry in ${v.retryAfterSeconds} s`, undefined, 429,
      { 'Retry-After': String(v.retryAfterSeconds) });
  }
  const raw = await redis.get(keys.evidenceEnvelope(id));
  if (raw === null) throw new ApiError('NOT_FOUND', `Resource not found: ${id}`);
  return raw;
}

/** The JWK Set of the configured identity (current + retired keys); 404 when evidence is off. */
export function publishedJwks(config: Config): Record<string, unknown> {
  if (!config.evidence) throw new ApiError('NOT_FOUND', 'No evidence signing identity is configured on this server');
  return jwkSet(config.evidence) as unknown as Record<string, unknown>;
}
