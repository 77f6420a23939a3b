// The request path hands its canonical id input to an in-process signer
// (src/evidence/preseal.ts): the worker must sign exactly what it would have rebuilt from
// the stream entry. Checked on real sources of every artifact type, and the hand-off's
// bookkeeping (keys, bound, off unless a worker runs in the process).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putBudget } from './helpers/fixtures';
import { seedOf, fixtureSeed, loadFixtures } from './helpers/evidence';
import { keys } from '../src/store/keys';
import { envelopeOfSource, refOfSource, sourceOfFields } from '../src/evidence/source';
import { enablePreseal, presealKey, putPresealed, takePresealed } from '../src/evidence/preseal';
import { EvidenceSigner } from '../src/evidence/signer';
import type { CyclesEvidence } from '../src/evidence/types';

const U = 'USD_MICROCENTS';
const ENV = {
  EVIDENCE_SERVER_ID: 'http://127.0.0.1/v1',
  EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('cycles-evidence-preseal-test')).toString('hex'),
};

describe('preseal bookkeeping', () => {
  it('stores nothing unless a worker enabled it; take removes; the map is bounded', () => {
    const k = presealKey('reserve', 1, 't', undefined, undefined, '{}');
    putPresealed(k, { t0: 'x', head: { artifact_type: 'reserve', signer_did: 'd' } });
    expect(takePresealed(k)).toBeUndefined();
    const off = enablePreseal();
    try {
      putPresealed(k, { t0: 'x', head: { artifact_type: 'reserve', signer_did: 'd' } });
      expect(takePresealed(k)?.t0).toBe('x');
      expect(takePresealed(k)).toBeUndefined();
      for (let i = 0; i < 6000; i++) putPresealed(`k${i}`, { t0: String(i), head: { artifact_type: 'reserve', signer_did: 'd' } });
      expect(takePresealed('k0')).toBeUndefined(); // evicted, oldest first
      expect(takePresealed('k5999')?.t0).toBe('5999');
    } finally {
      off();
    }
    expect(takePresealed('k5998')).toBeUndefined(); // cleared when the last worker stops
  });

  it('every part of the source identity is in the key', () => {
    const base = ['commit', 5, 'tr', 'res', 'rid', '{"a":1}'] as const;
    const k0 = presealKey(...base);
    for (let i = 0; i < base.length; i++) {
      const v = [...base] as unknown[];
      v[i] = `${String(v[i])}x`;
      expect(presealKey(...(v as Parameters<typeof presealKey>)), `part ${i}`).not.toBe(k0);
    }
  });

  it('sealIdInput equals sealCanonical on every upstream fixture, and refuses a foreign frame', () => {
    const signer = new EvidenceSigner(fixtureSeed());
    for (const f of loadFixtures()) {
      const u = { ...f.envelope, evidence_id: '', signature: '' } as unknown as CyclesEvidence;
      const want = signer.sealCanonical(u);
      const text0 = want.text.replace(`"evidence_id":"${want.evidenceId}"`, '"evidence_id":""').replace(/"signature":"[0-9a-f]{128}"/, '"signature":""');
      expect(signer.sealIdInput(text0, u), f.name).toEqual(want);
      expect(signer.sealIdInput(text0, { ...u, signer_did: `${u.signer_did}x` })).toBeUndefined();
    }
  });
});

describe('preseal on real sources', () => {
  let srv: TestServer;
  beforeAll(async () => { srv = await startTestServer(ENV, { roles: ['runtime', 'admin'] }); }, 60_000);
  afterAll(async () => { await srv?.stop(); });

  it('the text the request path hashed seals to exactly what the worker rebuilds from the entry', async () => {
    const tenant = `pre${Date.now().toString(36)}`;
    await putBudget(srv.redis.client, tenant, `tenant:${tenant}`, U, { allocated: 1000 });
    const key = await srv.tenantKey(tenant);
    const post = (path: string, body: unknown) => call(srv.runtimeUrl, 'POST', path, { key, body });
    let n = 0;
    const req = (amount: number) => ({ idempotency_key: `k${++n}`, subject: { tenant }, action: { kind: 'llm.completion', name: 'm' }, estimate: { unit: U, amount } });
    expect((await post('/v1/decide', req(10))).status).toBe(200);
    const a = await post('/v1/reservations', req(100));
    const b = await post('/v1/reservations', req(100));
    expect((await post('/v1/reservations', req(100_000))).status).toBe(409); // error evidence
    expect((await post(`/v1/reservations/${a.body.reservation_id}/commit`, { idempotency_key: 'c1', actual: { unit: U, amount: 70 } })).status).toBe(200);
    expect((await post(`/v1/reservations/${b.body.reservation_id}/release`, { idempotency_key: 'r1' })).status).toBe(200);
    expect((await post(`/v1/reservations/${b.body.reservation_id}/commit`, { idempotency_key: 'c2', actual: { unit: U, amount: 1 } })).status).toBe(409);

    // no worker in this server: the sources are all still in the stream
    const entries = await srv.redis.client.xrange(keys.evidenceSource(tenant), '-', '+');
    const identity = srv.server.config.evidence!;
    const seen = new Set<string>();
    for (const [, flat] of entries) {
      const f: Record<string, string> = {};
      for (let i = 0; i < flat.length; i += 2) f[flat[i]] = flat[i + 1];
      const src = sourceOfFields(f);
      seen.add(src.artifact);
      const rebuilt = identity.signer.sealCanonical(envelopeOfSource(src, identity));
      const off = enablePreseal();
      try {
        const ref = refOfSource(src, identity);
        const rid = (src.result as { ev_rid?: string }).ev_rid;
        const pre = takePresealed(presealKey(src.artifact, src.issuedMs, src.traceId, src.reservationId, src.artifact === 'error' ? rid : undefined, src.request));
        expect(pre, src.artifact).toBeDefined();
        const fast = identity.signer.sealIdInput(pre!.t0, pre!.head);
        expect(fast, src.artifact).toEqual(rebuilt);
        expect(ref.evidence_id).toBe(rebuilt.evidenceId);
      } finally {
        off();
      }
    }
    expect([...seen].sort()).toEqual(['commit', 'decide', 'error', 'release', 'reserve']);
  });
});
