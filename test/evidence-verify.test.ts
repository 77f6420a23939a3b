// Offline verification (src/evidence/verify.ts): every upstream fixture verifies; any
// one-byte change or another key fails with the right disposition; JWK Set resolution from
// an object, a file and a URL; the spec's deterministic key selection; rotation (decision
// DEV5 for how malformed input maps onto the five dispositions).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { canonicalJson } from '../src/evidence/canonical';
import { buildEnvelope, didCycles, signingInputOf } from '../src/evidence/envelope';
import { jwkSet } from '../src/evidence/jwks';
import { loadEvidenceIdentity } from '../src/evidence/keys';
import { evidenceSchemaCheck } from '../src/evidence/schema';
import { EvidenceSigner } from '../src/evidence/signer';
import type { CyclesEvidence, CyclesEvidenceJwk } from '../src/evidence/types';
import { verifyEnvelope, type VerifyResult } from '../src/evidence/verify';
import { FIXTURE_PUBLIC_KEY, fixtureSeed, loadFixtures, nobleVerifies, seedOf, SPECS_DIR } from './helpers/evidence';

const fixtures = loadFixtures();
const schema = evidenceSchemaCheck(SPECS_DIR);
const tmp = mkdtempSync(path.join(tmpdir(), 'evidence-verify-'));
const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64url');
const fixtureJwk = (o: Partial<CyclesEvidenceJwk> = {}): CyclesEvidenceJwk =>
  ({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', x: b64(FIXTURE_PUBLIC_KEY), kid: 'fixture', cycles_nbf_ms: 0, ...o });
const signerOf = (label: string) => new EvidenceSigner(seedOf(label));

// a local JWK Set server: /v1/.well-known/cycles-jwks.json serves `served`; /broken serves junk
let served: unknown = { keys: [] };
let http: Server;
let base = '';
beforeAll(async () => {
  http = createServer((req, res) => {
    if (req.url === '/v1/.well-known/cycles-jwks.json') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(served));
    } else if (req.url === '/broken') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys": [');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => http.close(r));
  rmSync(tmp, { recursive: true, force: true });
});

/** A sealed envelope from a fixture's payload, under another identity and time. */
function resealed(f: { envelope: Record<string, any> }, signer: EvidenceSigner, o: { serverId?: string; signerDid?: string; issuedAtMs?: number } = {}): CyclesEvidence {
  const unsigned = {
    ...f.envelope,
    server_id: o.serverId ?? f.envelope.server_id,
    signer_did: o.signerDid ?? signer.publicKeyHex,
    issued_at_ms: o.issuedAtMs ?? f.envelope.issued_at_ms,
    evidence_id: '', signature: '',
  } as CyclesEvidence;
  return signer.seal(unsigned);
}

const disposition = async (input: string | object, opts: Parameters<typeof verifyEnvelope>[1] = {}): Promise<VerifyResult['disposition']> =>
  (await verifyEnvelope(input, opts)).disposition;

describe('upstream fixtures', () => {
  it.each(fixtures.map((f) => [f.name, f] as const))('%s: binding_only without a JWK Set, authentic with one', async (_n, f) => {
    const r = await verifyEnvelope(f.text, { schema });
    expect(r).toMatchObject({ disposition: 'binding_only', evidence_id: f.envelope.evidence_id, signer_did: FIXTURE_PUBLIC_KEY });
    expect(r.signer_pin_matched).toBeUndefined();
    expect(await verifyEnvelope(Buffer.from(f.text), { jwks: { set: { keys: [fixtureJwk()] } } })).toMatchObject({ disposition: 'authentic', kid: 'fixture' });
    expect((await verifyEnvelope(f.envelope, { expectedSigner: FIXTURE_PUBLIC_KEY })).signer_pin_matched).toBe(true);
    expect((await verifyEnvelope(f.envelope, { expectedSigner: signerOf('x').publicKeyHex })).signer_pin_matched).toBe(false);
  });

  it('every one-byte change of every fixture is signature_invalid', async () => {
    let checked = 0;
    for (const f of fixtures) {
      const bytes = Buffer.from(f.text);
      for (let i = 0; i < bytes.length; i++) {
        const t = Buffer.from(bytes);
        t[i] ^= 0x01;
        const r = await verifyEnvelope(t);
        if (r.disposition !== 'signature_invalid') throw new Error(`${f.name} byte ${i}: ${r.disposition} (${r.reason})`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(10_000);
  });

  it('a changed member value anywhere is an evidence_id mismatch', async () => {
    for (const f of fixtures) {
      const leaves: string[][] = [];
      const walk = (v: any, at: string[]) => {
        if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) walk(v[k], [...at, k]);
        else leaves.push(at);
      };
      walk(f.envelope.payload, ['payload']);
      for (const leaf of [...leaves, ['issued_at_ms'], ['server_id'], ['trace_id']]) {
        const env = structuredClone(f.envelope);
        let o: any = env;
        for (const k of leaf.slice(0, -1)) o = o[k];
        const k = leaf[leaf.length - 1];
        if (!(k in o)) continue;
        o[k] = typeof o[k] === 'number' ? o[k] + 1 : typeof o[k] === 'boolean' ? !o[k] : `${o[k]}x`;
        const r = await verifyEnvelope(env);
        expect(r.disposition, `${f.name} ${leaf.join('.')}`).toBe('signature_invalid');
        expect(r.reason, `${f.name} ${leaf.join('.')}`).toMatch(/evidence_id mismatch|malformed/);
      }
    }
  });

  it('an envelope re-signed by another key is signature_invalid under the fixture key, not authentic under any set', async () => {
    const f = fixtures[1];
    const other = signerOf('attacker');
    // the attacker keeps the fixture signer_did: the bytes do not verify against it
    const forged = resealed(f, other, { signerDid: FIXTURE_PUBLIC_KEY });
    expect(await verifyEnvelope(forged)).toMatchObject({ disposition: 'signature_invalid', reason: expect.stringMatching(/does not verify/) });
    // the attacker names their own key: valid binding, but a pin or the real JWK Set says no
    const selfNamed = resealed(f, other);
    expect(await disposition(selfNamed)).toBe('binding_only');
    expect((await verifyEnvelope(selfNamed, { expectedSigner: FIXTURE_PUBLIC_KEY })).signer_pin_matched).toBe(false);
    expect(await verifyEnvelope(selfNamed, { jwks: { set: { keys: [fixtureJwk()] } } })).toMatchObject({ disposition: 'signer_authority_failed', reason: expect.stringMatching(/not in the JWK Set/) });
  });

  it("our verifier's verdict agrees with noble's own async path on a resealed envelope", async () => {
    const env = resealed(fixtures[4], signerOf('agree'));
    expect(await nobleVerifies(env.signature, signingInputOf(env, env.evidence_id), env.signer_did)).toBe(true);
    expect(await disposition(env)).toBe('binding_only');
  });
});

describe('malformed envelopes (decision DEV5)', () => {
  const f = fixtures[0];
  it('are signature_invalid with a reason', async () => {
    const cases: [unknown, RegExp][] = [
      ['not json', /not a JSON envelope/],
      [`${f.text.trimEnd().slice(0, -1)},"signature":"${f.envelope.signature}"}`, /Duplicate member name/],
      [{ ...f.envelope, schema_version: 'cycles-evidence/v0.2' }, /unsupported schema_version/],
      [{ ...f.envelope, artifact_type: 'reserve' }, /payload must hold exactly "reserve"/],
      [{ ...f.envelope, payload: { ...f.envelope.payload, reserve: {} } }, /payload must hold exactly/],
      [{ ...f.envelope, extra: 1 }, /unknown member/],
      [{ ...f.envelope, evidence_id: f.envelope.evidence_id.toUpperCase() }, /evidence_id is not 64 lowercase hex/],
      [{ ...f.envelope, trace_id: '' }, /trace_id/],
      [(({ signature: _s, ...rest }) => rest)(f.envelope), /missing member/],
      [{ ...f.envelope, signer_did: `did:web:example.com` }, /signer_did/],
    ];
    for (const [input, reason] of cases) {
      const r = await verifyEnvelope(input as any);
      expect(r.disposition, String(reason)).toBe('signature_invalid');
      expect(r.reason, String(reason)).toMatch(reason);
    }
  });

  it('a correctly signed envelope that breaks a schema rule fails, by default too (the generated schema, DEV11)', async () => {
    const signer = signerOf('schema');
    // decide with caps on an ALLOW: the builder refuses it, so assemble it by hand
    const env = signer.seal({
      ...f.envelope, signer_did: signer.publicKeyHex, evidence_id: '', signature: '',
      payload: { decide: { ...f.envelope.payload.decide, response: { decision: 'ALLOW', caps: { max_tokens: 1 } } } },
    } as any);
    expect(await verifyEnvelope(env, { schema: () => null })).toMatchObject({ disposition: 'binding_only' });
    expect(await verifyEnvelope(env)).toMatchObject({ disposition: 'signature_invalid', reason: expect.stringMatching(/malformed envelope/) });
    expect(await verifyEnvelope(env, { schema })).toMatchObject({ disposition: 'signature_invalid', reason: expect.stringMatching(/malformed envelope/) });
  });
});

describe('JWK Set resolution and deterministic selection', () => {
  const f = fixtures[2]; // issued_at_ms 1810000010000
  const at = f.envelope.issued_at_ms as number;
  const set = (...keys: unknown[]) => ({ jwks: { set: { keys } } });

  it('selects by window, never by status', async () => {
    expect(await disposition(f.text, set(fixtureJwk({ cycles_nbf_ms: at })))).toBe('authentic'); // nbf inclusive
    expect(await disposition(f.text, set(fixtureJwk({ cycles_nbf_ms: at + 1 })))).toBe('signer_authority_failed');
    expect(await disposition(f.text, set(fixtureJwk({ cycles_exp_ms: at })))).toBe('signer_authority_failed'); // exp exclusive
    expect(await disposition(f.text, set(fixtureJwk({ cycles_exp_ms: at + 1, status: 'retired' })))).toBe('authentic');
    expect(await disposition(f.text, set(fixtureJwk({ cycles_exp_ms: null })))).toBe('authentic');
    // two covering windows for the same key bytes: ambiguous
    expect(await disposition(f.text, set(fixtureJwk({ kid: 'a' }), fixtureJwk({ kid: 'b', cycles_nbf_ms: 1 })))).toBe('signer_authority_failed');
    // disjoint windows for the same key bytes: fine
    expect(await disposition(f.text, set(fixtureJwk({ kid: 'a', cycles_exp_ms: 10 }), fixtureJwk({ kid: 'b', cycles_nbf_ms: 10 })))).toBe('authentic');
  });

  it('a duplicate kid anywhere in the set is an authority failure', async () => {
    const other = { ...fixtureJwk(), x: b64(signerOf('o').publicKeyHex) };
    expect(await disposition(f.text, set(fixtureJwk(), other))).toBe('signer_authority_failed');
  });

  it('invalid JWKs are excluded from candidacy (absent alg is fine)', async () => {
    const { alg: _a, ...noAlg } = fixtureJwk();
    expect(await disposition(f.text, set(noAlg))).toBe('authentic');
    for (const bad of [
      fixtureJwk({ alg: 'RS256' as any }), fixtureJwk({ kty: 'EC' as any }), fixtureJwk({ crv: 'Ed448' as any }),
      fixtureJwk({ x: b64(FIXTURE_PUBLIC_KEY) + 'A' }), fixtureJwk({ x: `${b64(FIXTURE_PUBLIC_KEY)}=` }),
      fixtureJwk({ cycles_nbf_ms: undefined as any }), fixtureJwk({ cycles_nbf_ms: '0' as any }), fixtureJwk({ cycles_exp_ms: 1.5 }),
    ]) {
      expect(await disposition(f.text, set(bad)), JSON.stringify(bad)).toBe('signer_authority_failed');
    }
  });

  it('an unobtainable or unparseable set is signer_resolution_failed, never signature_invalid', async () => {
    expect(await disposition(f.text, { jwks: { set: { nokeys: [] } } })).toBe('signer_resolution_failed');
    expect(await disposition(f.text, { jwks: { location: path.join(tmp, 'missing.json') } })).toBe('signer_resolution_failed');
    expect(await disposition(f.text, { jwks: { location: `${base}/broken` } })).toBe('signer_resolution_failed');
    expect(await disposition(f.text, { jwks: { location: `${base}/nothing-here` } })).toBe('signer_resolution_failed');
    // the fixture's server_id (example.com) is not ours: the fetch cannot succeed
    expect(await disposition(f.text, { jwks: { fromServerId: true }, fetchTimeoutMs: 2000 })).toBe('signer_resolution_failed');
    // but bad bytes stay signature_invalid even when the set is unobtainable
    const tampered = f.text.replace('"decision":"DENY"', '"decision":"ALLOW"');
    expect(await disposition(tampered, { jwks: { location: `${base}/broken` } })).toBe('signature_invalid');
  });

  it('reads the set from a file and from a URL', async () => {
    const file = path.join(tmp, 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: [fixtureJwk()] }));
    expect(await disposition(f.text, { jwks: { location: file } })).toBe('authentic');
    served = { keys: [fixtureJwk()] };
    expect(await disposition(f.text, { jwks: { location: `${base}/v1/.well-known/cycles-jwks.json` } })).toBe('authentic');
  });
});

describe('did:cycles signers', () => {
  const serverId = () => `${base}/v1`;
  const id = () => loadEvidenceIdentity({
    EVIDENCE_SERVER_ID: serverId(), EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('did-key')).toString('hex'),
    EVIDENCE_SIGNING_SIGNER_DID: didCycles(serverId(), '2026-06'),
  })!;
  const envelope = (signer: EvidenceSigner, signerDid: string, serverIdValue = serverId()) => signer.seal(buildEnvelope(
    { artifact: 'release', reservationId: 'r1', request: { idempotency_key: 'x' }, response: { status: 'RELEASED', released: { unit: 'TOKENS', amount: 5 } } },
    { serverId: serverIdValue, signerDid, issuedAtMs: Date.now(), traceId: '0af7651916cd43dd8448eb211c80319c' },
  ));

  it('resolves the DID to the kid in the set fetched from {server_id}/.well-known/cycles-jwks.json', async () => {
    const identity = id();
    served = jwkSet(identity);
    const env = envelope(identity.signer, identity.signerDid);
    expect(env.signer_did).toBe(didCycles(serverId(), '2026-06'));
    expect(await verifyEnvelope(env, { jwks: { fromServerId: true } })).toMatchObject({ disposition: 'authentic', kid: '2026-06' });
    expect(await verifyEnvelope(env, { jwks: { fromServerId: true }, expectedSigner: identity.signerDid })).toMatchObject({ disposition: 'authentic', signer_pin_matched: true });
    expect(await disposition(env)).toBe('signer_resolution_failed'); // a DID needs its set
    expect(await disposition(env, { jwks: { set: { keys: [] } } })).toBe('signer_authority_failed');
  });

  it('a DID that does not hash this server_id, or a signature by another key, fails', async () => {
    const identity = id();
    served = jwkSet(identity);
    const elsewhere = envelope(identity.signer, didCycles('https://other.example.com/v1', '2026-06'));
    expect(await verifyEnvelope(elsewhere, { jwks: { fromServerId: true } })).toMatchObject({ disposition: 'signer_authority_failed', reason: expect.stringMatching(/sha256\(server_id\)/) });
    const forged = envelope(signerOf('attacker'), identity.signerDid);
    expect(await disposition(forged, { jwks: { fromServerId: true } })).toBe('signature_invalid');
  });
});

describe('rotation', () => {
  const oldSigner = () => signerOf('rotation-old');
  const ROTATED_AT = 1_810_000_005_000;
  const identity = () => loadEvidenceIdentity({
    EVIDENCE_SERVER_ID: 'https://cycles.example.com/v1',
    EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('rotation-new')).toString('hex'),
    EVIDENCE_SIGNING_KID: 'new',
    EVIDENCE_SIGNING_RETIRED_KEYS: JSON.stringify([{ signer_did: oldSigner().publicKeyHex, kid: 'old', nbf_ms: 1_800_000_000_000, exp_ms: ROTATED_AT }]),
  }, { nowMs: ROTATED_AT + 60_000 })!; // the fixtures' clock (2027)

  it('an envelope signed by a retired key verifies within its window, not after it; the new key only after rotation', async () => {
    const id = identity();
    const jwks = { set: jwkSet(id) };
    const f = fixtures[0];
    const before = resealed(f, oldSigner(), { issuedAtMs: ROTATED_AT - 1 });
    expect(await verifyEnvelope(before, { jwks })).toMatchObject({ disposition: 'authentic', kid: 'old' });
    const lateOld = resealed(f, oldSigner(), { issuedAtMs: ROTATED_AT });
    expect(await disposition(lateOld, { jwks })).toBe('signer_authority_failed');
    expect(await verifyEnvelope(resealed(f, id.signer, { issuedAtMs: ROTATED_AT }), { jwks })).toMatchObject({ disposition: 'authentic', kid: 'new' });
    // a back-dated envelope under the new key: its window was clamped to start at the rotation
    expect(await disposition(resealed(f, id.signer, { issuedAtMs: ROTATED_AT - 1 }), { jwks })).toBe('signer_authority_failed');
    expect(canonicalJson(before)).toContain(`"issued_at_ms":${ROTATED_AT - 1}`);
  });
});

describe('the signer and the verifier together', () => {
  it('an envelope we build and seal is authentic against our own JWK Set and passes the schema', async () => {
    const id = loadEvidenceIdentity({ EVIDENCE_SERVER_ID: 'https://cycles.example.com/v1', EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(fixtureSeed()).toString('hex') })!;
    const env = id.signer.seal(buildEnvelope(
      { artifact: 'error', endpoint: 'POST /v1/reservations/{reservation_id}/commit', httpStatus: 410, reservationId: 'r7', request: { idempotency_key: 'c7', actual: { unit: 'CREDITS', amount: 2n ** 53n } }, response: { error: 'RESERVATION_EXPIRED', message: 'expired', request_id: 'q', details: { '😀': null, 'דּ': 1 } } },
      { serverId: id.serverId, signerDid: id.signerDid, issuedAtMs: Date.now(), traceId: '0af7651916cd43dd8448eb211c80319c' },
    ));
    const text = canonicalJson(env);
    expect(await verifyEnvelope(text, { jwks: { set: jwkSet(id) }, schema })).toMatchObject({ disposition: 'authentic', evidence_id: env.evidence_id });
    expect(text).toContain('"amount":9007199254740992');
  });
});
