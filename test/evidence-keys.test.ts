// The signing identity (src/evidence/keys.ts, signer.ts, jwks.ts): our signer reproduces
// every upstream fixture signature from the fixture seed; configuration is checked at
// start with the reference variable names (decision DEV4); the JWK Set matches the spec's
// schema and never carries private material.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { evidenceIdOf, signingInputOf, didCycles } from '../src/evidence/envelope';
import { jwkSet } from '../src/evidence/jwks';
import { EvidenceConfigError, generateIdentity, loadEvidenceIdentity, type EvidenceIdentity } from '../src/evidence/keys';
import { EvidenceSigner } from '../src/evidence/signer';
import { nodeVerifyBytes } from '../src/evidence/ed25519';
import { evidenceSchemaCheck } from '../src/evidence/schema';
import { FIXTURE_PUBLIC_KEY, fixtureSeed, fixtureSeedHex, loadFixtures, nobleVerifies, seedOf, SPECS_DIR } from './helpers/evidence';

const fixtures = loadFixtures();
const SERVER = 'https://cycles.example.com/v1';
const tmp = mkdtempSync(path.join(tmpdir(), 'evidence-keys-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const hexOf = (label: string) => Buffer.from(seedOf(label)).toString('hex');
const pubOf = (label: string) => new EvidenceSigner(seedOf(label)).publicKeyHex;

function load(env: Record<string, string>, opts: { production?: boolean; nowMs?: number } = {}): EvidenceIdentity | undefined {
  return loadEvidenceIdentity(env, opts);
}

function configError(env: Record<string, string>, opts: { production?: boolean; nowMs?: number } = {}): string {
  try {
    load(env, opts);
  } catch (e) {
    if (e instanceof EvidenceConfigError) return e.message;
    throw e;
  }
  return 'loaded';
}

describe('the fixture signer', () => {
  it('derives the fixtures\' signer_did from the seed sha256("cycles-evidence-v0.1-fixture-signer")', () => {
    expect(new EvidenceSigner(fixtureSeed()).publicKeyHex).toBe(FIXTURE_PUBLIC_KEY);
    for (const f of fixtures) expect(f.envelope.signer_did).toBe(FIXTURE_PUBLIC_KEY);
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('%s: reproduces the fixture evidence_id and signature exactly', async (_n, f) => {
    const signer = new EvidenceSigner(fixtureSeed());
    const sealed = signer.seal({ ...f.envelope, evidence_id: '', signature: '' } as any);
    expect(sealed.evidence_id).toBe(f.envelope.evidence_id);
    expect(sealed.signature).toBe(f.envelope.signature);
    // and the fixture's signature verifies under both implementations, independently of ours
    const input = signingInputOf(f.envelope as any, f.envelope.evidence_id);
    expect(await nobleVerifies(f.envelope.signature, input, FIXTURE_PUBLIC_KEY)).toBe(true);
    expect(nodeVerifyBytes(Buffer.from(f.envelope.signature, 'hex'), input, Buffer.from(FIXTURE_PUBLIC_KEY, 'hex'))).toBe(true);
  });

  it('seal refuses when the recomputed id differs from the one already handed out', () => {
    const signer = new EvidenceSigner(fixtureSeed());
    const env = { ...fixtures[0].envelope, evidence_id: '', signature: '' } as any;
    expect(() => signer.seal(env, '0'.repeat(64))).toThrow(/evidence id mismatch/);
    expect(signer.seal(env, evidenceIdOf(env)).signature).toBe(fixtures[0].envelope.signature);
  });

  it('wipes the seed it was given and never serialises private material', () => {
    const seed = fixtureSeed();
    const signer = new EvidenceSigner(seed);
    expect(seed.every((b) => b === 0)).toBe(true);
    expect(JSON.stringify({ signer })).not.toContain(fixtureSeedHex());
    expect(JSON.stringify({ signer })).toContain(FIXTURE_PUBLIC_KEY);
    signer.selfTest();
  });
});

describe('loadEvidenceIdentity (reference variable names)', () => {
  const base = { EVIDENCE_SERVER_ID: SERVER, EVIDENCE_SIGNING_PRIVATE_KEY_HEX: fixtureSeedHex() };

  it('is off with nothing configured, and refuses key material without a server id', () => {
    expect(load({})).toBeUndefined();
    expect(load({ EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY: 'true' })).toBeUndefined();
    expect(configError({ EVIDENCE_SIGNING_PRIVATE_KEY_HEX: fixtureSeedHex() })).toMatch(/EVIDENCE_SERVER_ID is not/);
  });

  it('derives public key, raw-hex signer_did and the default kid from the seed', () => {
    const id = load(base)!;
    expect(id).toMatchObject({ serverId: SERVER, publicKeyHex: FIXTURE_PUBLIC_KEY, signerDid: FIXTURE_PUBLIC_KEY, form: 'raw', kid: 'ec52b49b81eb29ef', nbfMs: 0, retired: [], ephemeral: false });
    expect(load({ ...base, EVIDENCE_SIGNING_SIGNER_DID: FIXTURE_PUBLIC_KEY.toUpperCase(), EVIDENCE_SIGNING_KID: '2026-06' })).toMatchObject({ signerDid: FIXTURE_PUBLIC_KEY, kid: '2026-06' });
  });

  it('reads the seed from EVIDENCE_SIGNING_PRIVATE_KEY_FILE (ours), not both', () => {
    const file = path.join(tmp, 'seed.hex');
    writeFileSync(file, `${fixtureSeedHex()}\n`, { mode: 0o600 });
    expect(load({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_SIGNING_PRIVATE_KEY_FILE: file })!.publicKeyHex).toBe(FIXTURE_PUBLIC_KEY);
    expect(configError({ ...base, EVIDENCE_SIGNING_PRIVATE_KEY_FILE: file })).toMatch(/only one of/);
    expect(configError({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_SIGNING_PRIVATE_KEY_FILE: path.join(tmp, 'missing') })).toMatch(/cannot read: ENOENT/);
    const bad = path.join(tmp, 'bad.hex');
    writeFileSync(bad, 'not hex');
    expect(configError({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_SIGNING_PRIVATE_KEY_FILE: bad })).toMatch(/64 hex characters/);
  });

  it('refuses a malformed seed without echoing it', () => {
    const secretish = fixtureSeedHex().slice(0, 62);
    const msg = configError({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_SIGNING_PRIVATE_KEY_HEX: secretish });
    expect(msg).toMatch(/EVIDENCE_SIGNING_PRIVATE_KEY_HEX must be 64 hex characters/);
    expect(msg).not.toContain(secretish);
  });

  it('refuses a configured public key that is not the seed\'s', () => {
    expect(configError({ ...base, EVIDENCE_SIGNING_SIGNER_DID: pubOf('other') })).toMatch(/not the public key of the configured signing key/);
    expect(configError({ ...base, EVIDENCE_SIGNING_SIGNER_DID: 'abc' })).toMatch(/64 hex characters or did:cycles/);
  });

  it('accepts the did:cycles form only when it binds to the server id', () => {
    const did = didCycles(SERVER, '2026-06');
    expect(load({ ...base, EVIDENCE_SIGNING_SIGNER_DID: did })).toMatchObject({ form: 'did', signerDid: did, kid: '2026-06' });
    expect(configError({ ...base, EVIDENCE_SIGNING_SIGNER_DID: didCycles(`${SERVER}/`, '2026-06') })).toMatch(/does not bind/);
    expect(configError({ ...base, EVIDENCE_SIGNING_SIGNER_DID: did, EVIDENCE_SIGNING_KID: 'other' })).toMatch(/names kid "2026-06"/);
  });

  it('checks the server id: absolute http(s), one spelling (no trailing slash, query, fragment)', () => {
    for (const bad of ['cycles.example.com/v1', 'ftp://x/v1', `${SERVER}/`, `${SERVER}?a=1`, `${SERVER}#x`]) {
      expect(configError({ ...base, EVIDENCE_SERVER_ID: bad }), bad).toMatch(/EVIDENCE_SERVER_ID/);
    }
  });

  it('needs a key once enabled; the ephemeral key is for development only', () => {
    expect(configError({ EVIDENCE_SERVER_ID: SERVER })).toMatch(/no signing key/);
    const a = load({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY: 'true' })!;
    const b = load({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY: '1' })!;
    expect(a.ephemeral).toBe(true);
    expect(a.publicKeyHex).not.toBe(b.publicKeyHex);
    expect(configError({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY: 'true' }, { production: true })).toMatch(/refused when NODE_ENV=production/);
    expect(configError({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY: 'maybe' })).toMatch(/true or false/);
    // a configured seed wins over the ephemeral flag
    expect(load({ ...base, EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY: 'true' })!.ephemeral).toBe(false);
  });

  it('parses rotation history and raises the active nbf to the last retired exp', () => {
    const retired = [
      { signer_did: pubOf('old-1'), kid: 'k1', nbf_ms: 0, exp_ms: 1000 },
      { signer_did: pubOf('old-2'), nbf_ms: 1000, exp_ms: 5000 },
    ];
    const id = load({ ...base, EVIDENCE_SIGNING_RETIRED_KEYS: JSON.stringify(retired), EVIDENCE_SIGNING_NBF_MS: '200' })!;
    expect(id.nbfMs).toBe(5000);
    expect(id.retired).toEqual([
      { publicKeyHex: pubOf('old-1'), kid: 'k1', nbfMs: 0, expMs: 1000 },
      { publicKeyHex: pubOf('old-2'), kid: pubOf('old-2').slice(0, 16), nbfMs: 1000, expMs: 5000 },
    ]);
    expect(load({ ...base, EVIDENCE_SIGNING_NBF_MS: '9000', EVIDENCE_SIGNING_RETIRED_KEYS: JSON.stringify(retired) })!.nbfMs).toBe(9000);
  });

  it('refuses a rotation history a verifier could not use', () => {
    const k = (o: Record<string, unknown>) => ({ signer_did: pubOf('old'), kid: 'old', nbf_ms: 0, exp_ms: 1000, ...o });
    const err = (list: unknown) => configError({ ...base, EVIDENCE_SIGNING_RETIRED_KEYS: typeof list === 'string' ? list : JSON.stringify(list) });
    expect(err('{not json')).toMatch(/JSON array/);
    expect(err({ keys: [] })).toMatch(/JSON array/);
    expect(err([k({ signer_did: 'did:cycles:x#y' })])).toMatch(/raw public key/);
    expect(err([k({ exp_ms: 0 })])).toMatch(/exp_ms must be after nbf_ms/);
    expect(err([k({ exp_ms: undefined })])).toMatch(/exp_ms must be a non-negative integer/);
    expect(err([k({ nbf_ms: '0' })])).toMatch(/nbf_ms must be a non-negative integer/);
    expect(err([k({ note: 'x' })])).toMatch(/unknown member "note"/);
    expect(err([k({}), k({ kid: 'old', signer_did: pubOf('older') })])).toMatch(/kid "old" is used twice/);
    expect(err([k({ kid: 'ec52b49b81eb29ef' })])).toMatch(/used twice/); // the active key's default kid
    expect(err([k({}), k({ kid: 'again', nbf_ms: 500, exp_ms: 2000 })])).toMatch(/overlaps the window/);
    expect(err([k({}), k({ kid: 'again', nbf_ms: 1000, exp_ms: 2000 })])).toBe('loaded'); // windows meet, do not overlap
    expect(configError({ ...base, EVIDENCE_SIGNING_NBF_MS: '-1' })).toMatch(/EVIDENCE_SIGNING_NBF_MS/);
  });

  it('refuses an active window that starts in the future (nothing signed now would verify)', () => {
    expect(configError({ ...base, EVIDENCE_SIGNING_NBF_MS: '5000' }, { nowMs: 4000 })).toMatch(/in the future/);
    expect(load({ ...base, EVIDENCE_SIGNING_NBF_MS: '5000' }, { nowMs: 5000 })!.nbfMs).toBe(5000);
  });

  it('keygen prints env lines that load back into the same identity', () => {
    const g = generateIdentity({ serverId: SERVER, kid: 'first' });
    const env = Object.fromEntries(g.lines.filter((l) => !l.startsWith('#')).map((l) => l.split('=', 2) as [string, string]));
    expect(Object.keys(env).sort()).toEqual(['EVIDENCE_SERVER_ID', 'EVIDENCE_SIGNING_KID', 'EVIDENCE_SIGNING_PRIVATE_KEY_HEX', 'EVIDENCE_SIGNING_SIGNER_DID']);
    const id = load(env)!;
    expect(id).toMatchObject({ serverId: SERVER, publicKeyHex: g.publicKeyHex, kid: 'first', form: 'raw' });
    expect(g.did).toBe(didCycles(SERVER, 'first'));
    expect(load({ ...env, EVIDENCE_SIGNING_SIGNER_DID: g.did! })!.signerDid).toBe(g.did);
    expect(generateIdentity().lines.join('\n')).toMatch(/# EVIDENCE_SERVER_ID=/);
    expect(() => generateIdentity({ serverId: `${SERVER}/` })).toThrow(EvidenceConfigError);
  });
});

describe('jwkSet', () => {
  const jwksSchema = evidenceSchemaCheck(SPECS_DIR, 'CyclesEvidenceJwks');
  const retired = [{ signer_did: pubOf('old'), kid: 'old', nbf_ms: 100, exp_ms: 2000 }];
  const id = load({ EVIDENCE_SERVER_ID: SERVER, EVIDENCE_SIGNING_PRIVATE_KEY_HEX: hexOf('new'), EVIDENCE_SIGNING_KID: 'new', EVIDENCE_SIGNING_RETIRED_KEYS: JSON.stringify(retired) })!;
  const set = jwkSet(id);

  it('has the active key (open-ended) then the retired keys with closed windows, in the reference member order', () => {
    expect(set).toEqual({
      keys: [
        { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', x: Buffer.from(pubOf('new'), 'hex').toString('base64url'), kid: 'new', cycles_nbf_ms: 2000, status: 'active' },
        { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', x: Buffer.from(pubOf('old'), 'hex').toString('base64url'), kid: 'old', cycles_nbf_ms: 100, cycles_exp_ms: 2000, status: 'retired' },
      ],
    });
    expect(Object.keys(set.keys[1])).toEqual(['kty', 'crv', 'alg', 'x', 'kid', 'cycles_nbf_ms', 'cycles_exp_ms', 'status']);
  });

  it("passes the spec's JWKS schema; x is 43 unpadded base64url chars of the 32 key bytes; no private member", () => {
    expect(jwksSchema(set)).toBeNull();
    for (const k of set.keys) {
      expect(k.x).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(k.x, 'base64url')).toHaveLength(32);
      expect('d' in k).toBe(false);
    }
    const text = JSON.stringify(set);
    expect(text).not.toContain(hexOf('new'));
    expect(text).not.toContain(Buffer.from(seedOf('new')).toString('base64url'));
    expect(new Set(set.keys.map((k) => k.kid)).size).toBe(set.keys.length);
  });
});
