// Tenant API keys. The secret is never stored: the record lives under the SHA-256 of
// the secret, so authenticating is one HGETALL and nothing in Redis can be replayed as
// a credential. SHA-256 (not bcrypt) is enough because secrets are 192-bit random
// values, not passwords (docs/decisions.md "api key hashing").
import { hash, randomBytes, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { keys } from '../store/keys';

export const KEY_SECRET_PREFIX = 'cyc_live_';
/** Visible prefix length: `cyc_live_` plus the first 5 random characters. */
export const KEY_PREFIX_LENGTH = 14;

export interface ApiKeyRecord {
  key_id: string;
  tenant_id: string;
  key_prefix: string;
  status: 'ACTIVE' | 'REVOKED' | 'EXPIRED';
  permissions: string[];
  scope_filter: string[];
  /** epoch ms; 0 = never */
  expires_at_ms: number;
  name?: string;
  description?: string;
  created_at_ms: number;
  revoked_at_ms?: number;
  revoked_reason?: string;
  metadata?: Record<string, unknown>;
}

// crypto.hash: one-shot digest, no Hash stream object per call (on the auth hot path).
export const sha256Hex = (s: string) => hash('sha256', s, 'hex');

export function newKeySecret(): string {
  // 24 random bytes -> 32 base64url characters.
  return KEY_SECRET_PREFIX + randomBytes(24).toString('base64url');
}

export function newKeyId(): string {
  return `key_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
}

export function encodeRecord(r: ApiKeyRecord): Record<string, string> {
  const out: Record<string, string> = {
    key_id: r.key_id,
    tenant_id: r.tenant_id,
    key_prefix: r.key_prefix,
    status: r.status,
    permissions: JSON.stringify(r.permissions),
    scope_filter: JSON.stringify(r.scope_filter),
    expires_at_ms: String(r.expires_at_ms),
    created_at_ms: String(r.created_at_ms),
  };
  if (r.name !== undefined) out.name = r.name;
  if (r.description !== undefined) out.description = r.description;
  if (r.revoked_at_ms !== undefined) out.revoked_at_ms = String(r.revoked_at_ms);
  if (r.revoked_reason !== undefined) out.revoked_reason = r.revoked_reason;
  if (r.metadata !== undefined) out.metadata = JSON.stringify(r.metadata);
  return out;
}

export function decodeRecord(h: Record<string, string>): ApiKeyRecord | null {
  if (!h.key_id || !h.tenant_id) return null;
  return {
    key_id: h.key_id,
    tenant_id: h.tenant_id,
    key_prefix: h.key_prefix ?? '',
    status: (h.status as ApiKeyRecord['status']) ?? 'ACTIVE',
    permissions: JSON.parse(h.permissions ?? '[]'),
    scope_filter: JSON.parse(h.scope_filter ?? '[]'),
    expires_at_ms: Number(h.expires_at_ms ?? 0),
    created_at_ms: Number(h.created_at_ms ?? 0),
    name: h.name,
    description: h.description,
    revoked_at_ms: h.revoked_at_ms ? Number(h.revoked_at_ms) : undefined,
    revoked_reason: h.revoked_reason,
    metadata: h.metadata ? JSON.parse(h.metadata) : undefined,
  };
}

export async function lookupKey(redis: Redis, secret: string): Promise<ApiKeyRecord | null> {
  const h = await redis.hgetall(keys.apiKeyBySecret(sha256Hex(secret)));
  return decodeRecord(h);
}

/** Stores a new key; returns the secret (shown to the caller once, never again). */
export async function storeNewKey(
  redis: Redis,
  r: Omit<ApiKeyRecord, 'key_id' | 'key_prefix' | 'status' | 'created_at_ms'> & { key_id?: string; created_at_ms?: number },
): Promise<{ secret: string; record: ApiKeyRecord }> {
  const secret = newKeySecret();
  const sha = sha256Hex(secret);
  const record: ApiKeyRecord = {
    ...r,
    key_id: r.key_id ?? newKeyId(),
    key_prefix: secret.slice(0, KEY_PREFIX_LENGTH),
    status: 'ACTIVE',
    created_at_ms: r.created_at_ms ?? Date.now(),
  };
  await redis
    .multi()
    .hset(keys.apiKeyBySecret(sha), encodeRecord(record))
    .set(keys.apiKeyId(record.key_id), sha)
    .exec();
  return { secret, record };
}

/** Why a key cannot authenticate now, or null when it can. Expiry is checked on every
 *  request against the stored expires_at, so no sweeper is needed. */
export function keyProblem(r: ApiKeyRecord | null, nowMs: number): 'KEY_NOT_FOUND' | 'KEY_REVOKED' | 'KEY_EXPIRED' | null {
  if (!r) return 'KEY_NOT_FOUND';
  if (r.status === 'REVOKED') return 'KEY_REVOKED';
  if (r.status === 'EXPIRED' || (r.expires_at_ms > 0 && r.expires_at_ms <= nowMs)) return 'KEY_EXPIRED';
  return null;
}
