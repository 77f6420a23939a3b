// The public evidence endpoints: getEvidence serves the stored canonical bytes verbatim
// (immutable cache), validates the id, throttles per client and 404s unknown ids;
// getEvidenceJwks publishes the configured identity's keys (never private material) and
// 404s without one. The stored bytes are the upstream fixtures, signed by the fixture key.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server';
import { fixtureSeedHex, FIXTURE_PUBLIC_KEY, loadFixtures } from './helpers/evidence';
import { keys } from '../src/store/keys';
import { verifyEnvelope } from '../src/evidence/verify';

const SERVER_ID = 'https://cycles.example.com/v1';

describe('evidence endpoints with an identity', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({
      EVIDENCE_SERVER_ID: SERVER_ID, EVIDENCE_SIGNING_PRIVATE_KEY_HEX: fixtureSeedHex(),
      EVIDENCE_SIGNING_SIGNER_DID: FIXTURE_PUBLIC_KEY, CYCLES_EVIDENCE_RATE_LIMIT_PER_MINUTE: '40',
    });
  }, 30_000);
  afterAll(async () => { await s?.stop(); });

  it('serves every stored fixture byte for byte, public, immutable; it verifies against the served JWK Set', async () => {
    const jwksRes = await fetch(`${s.runtimeUrl}/v1/.well-known/cycles-jwks.json`);
    expect(jwksRes.status).toBe(200);
    expect(jwksRes.headers.get('cache-control')).toBe('public, max-age=300');
    const jwks = await jwksRes.json() as { keys: Record<string, unknown>[] };
    expect(jwks.keys).toHaveLength(1);
    expect(JSON.stringify(jwks)).not.toMatch(/"d"/); // no private member
    for (const f of loadFixtures()) {
      const id = f.envelope.evidence_id as string;
      const stored = f.text.trimEnd();
      await s.redis.client.set(keys.evidenceEnvelope(id), stored);
      const r = await fetch(`${s.runtimeUrl}/v1/evidence/${id}`); // no API key
      expect(r.status, f.name).toBe(200);
      expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      const body = await r.text();
      expect(body).toBe(stored);
      const v = await verifyEnvelope(body, { jwks: { set: jwks } });
      expect(v.disposition, f.name).toBe('authentic');
    }
  });

  it('a malformed id is 400, an unknown one 404, both in the ErrorResponse shape', async () => {
    const bad = await fetch(`${s.runtimeUrl}/v1/evidence/NOT-HEX`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toBe('INVALID_REQUEST');
    const missing = await fetch(`${s.runtimeUrl}/v1/evidence/${'a'.repeat(64)}`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toBe('NOT_FOUND');
  });

  it('throttles per client: 429 LIMIT_EXCEEDED with Retry-After once over the budget', async () => {
    let limited: Response | undefined;
    // the throttle is per process (DEV9): one instance's own port, also when the suite runs on two
    for (let i = 0; i < 60 && !limited; i++) {
      const r = await fetch(`${s.server.urls.runtime}/v1/evidence/${'b'.repeat(64)}`);
      if (r.status === 429) limited = r;
      else expect(r.status).toBe(404);
    }
    expect(limited).toBeDefined();
    expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await limited!.json()) as { error: string }).error).toBe('LIMIT_EXCEEDED');
  });
});

describe('evidence endpoints without an identity', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer(); }, 30_000);
  afterAll(async () => { await s?.stop(); });

  it('the JWK Set is 404 and nothing is published', async () => {
    const r = await fetch(`${s.runtimeUrl}/v1/.well-known/cycles-jwks.json`);
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: string }).error).toBe('NOT_FOUND');
    expect((await fetch(`${s.runtimeUrl}/v1/evidence/${'c'.repeat(64)}`)).status).toBe(404);
  });
});
