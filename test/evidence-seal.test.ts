// EvidenceSigner.sealCanonical (one canonicalization per envelope, the signer worker's
// path) must produce exactly canonicalJson(seal(x)): checked against every upstream fixture
// (byte for byte, signature included) and against envelopes whose free-form members mimic
// the spliced members.
import { describe, expect, it } from 'vitest';
import { EvidenceSigner } from '../src/evidence/signer';
import { canonicalJson } from '../src/evidence/canonical';
import { fixtureSeed, loadFixtures, seedOf } from './helpers/evidence';
import type { CyclesEvidence } from '../src/evidence/types';

const unsignedOf = (env: Record<string, unknown>) => ({ ...env, evidence_id: '', signature: '' }) as unknown as CyclesEvidence;

describe('sealCanonical', () => {
  it('reproduces every upstream fixture byte for byte', () => {
    const signer = new EvidenceSigner(fixtureSeed());
    const fixtures = loadFixtures();
    expect(fixtures.length).toBeGreaterThanOrEqual(13);
    for (const f of fixtures) {
      const { evidenceId, text } = signer.sealCanonical(unsignedOf(f.envelope));
      expect(text, f.name).toBe(f.text.replace(/\n$/, ''));
      expect(evidenceId).toBe(f.envelope.evidence_id);
    }
  });

  it('equals canonicalJson(seal(x)) when free-form members look like the spliced ones', () => {
    const signer = new EvidenceSigner(seedOf('seal-canonical'));
    const base = loadFixtures()[0].envelope;
    const tricky = {
      ...base,
      trace_id: undefined,
      signer_did: `did:cycles:${'a'.repeat(64)}#k-1`,
      server_id: 'https://ex.example/v1',
    };
    const payload = JSON.parse(JSON.stringify(base.payload));
    const art = Object.keys(payload)[0];
    payload[art].request = { ...payload[art].request, metadata: { evidence_id: '', signature: '', '😀': 'x\u2028', z: '"signature":""' } };
    for (const env of [{ ...tricky, payload }, { ...base, payload }, tricky]) {
      const u = unsignedOf(JSON.parse(JSON.stringify(env)));
      expect(signer.sealCanonical(u).text).toBe(canonicalJson(signer.seal(u)));
    }
  });
});
