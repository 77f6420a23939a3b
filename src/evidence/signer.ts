// The signing half of an evidence identity: holds the private key (as a KeyObject, which
// never prints its material; the seed bytes are wiped once the key exists), seals unsigned
// envelopes, and proves at start-up that what it signs verifies under an independent
// implementation (docs/decisions.md DEV3).
import type { KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { canonicalBytes, canonicalJson } from './canonical';
import { evidenceIdOf, signingInputOf } from './envelope';
import {
  noblePublicKey, nodeVerifyBytes, privateKeyFromSeed, rawPublicKey, signBytes, verifyBytes,
} from './ed25519';
import type { CyclesEvidence } from './types';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export class EvidenceSigner {
  readonly #key: KeyObject;
  /** raw 32-byte Ed25519 public key */
  readonly publicKey: Uint8Array;
  readonly publicKeyHex: string;

  /** Takes ownership of `seed` and zeroes it. Throws when OpenSSL and noble derive
   *  different public keys from it (a broken build, never a bad seed). */
  constructor(seed: Uint8Array) {
    try {
      this.#key = privateKeyFromSeed(seed);
      this.publicKey = rawPublicKey(this.#key);
      if (hex(noblePublicKey(seed)) !== hex(this.publicKey)) {
        throw new Error('evidence signing self-test failed: node:crypto and @noble/ed25519 derive different public keys');
      }
    } finally {
      seed.fill(0);
    }
    this.publicKeyHex = hex(this.publicKey);
  }

  /** A signer with a fresh random key (development only: EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY). */
  static ephemeral(): EvidenceSigner {
    return new EvidenceSigner(new Uint8Array(randomBytes(32)));
  }

  /** Pure Ed25519 over the bytes themselves. */
  sign(message: Uint8Array): Uint8Array {
    return signBytes(this.#key, message);
  }

  /** Sign and verify a probe with both implementations; throws if either disagrees. */
  selfTest(): void {
    const probe = canonicalBytes({ probe: 'cycles-evidence signer self-test', at_ms: Date.now() });
    const sig = this.sign(probe);
    if (!verifyBytes(sig, probe, this.publicKey) || !nodeVerifyBytes(sig, probe, this.publicKey)) {
      throw new Error('evidence signing self-test failed: a fresh signature does not verify');
    }
    const tampered = Uint8Array.from(probe);
    tampered[0] ^= 1;
    if (verifyBytes(sig, tampered, this.publicKey)) {
      throw new Error('evidence signing self-test failed: a signature verified over different bytes');
    }
  }

  /** The sealed envelope: evidence_id computed, then the signature over the id-bearing
   *  bytes. `expectedId` (the id already returned in-band) must match, or nothing is signed. */
  seal<T extends CyclesEvidence>(unsigned: T, expectedId?: string): T {
    const evidenceId = evidenceIdOf(unsigned);
    if (expectedId !== undefined && expectedId !== evidenceId) {
      throw new Error(`evidence id mismatch: recomputed ${evidenceId}, expected ${expectedId}`);
    }
    const signature = hex(this.sign(signingInputOf(unsigned, evidenceId)));
    return { ...unsigned, evidence_id: evidenceId, signature };
  }

  /**
   * The sealed envelope as its canonical JSON text (what is stored and served), from ONE
   * canonicalization: the id input's JCS text is fixed at both ends by the spec's member
   * order — `{"artifact_type":…,"evidence_id":"",` first and `,"signature":"","signer_did":…
   * [,"trace_id":…]}` last, every other member (payload included) in between — so the
   * signing input and the final bytes are that text with the two empty strings filled in.
   * Equal to canonicalJson(seal(unsigned)) (test/evidence-seal.test.ts); falls
   * back to seal() if the text is not laid out as expected.
   */
  sealCanonical(unsigned: CyclesEvidence): { evidenceId: string; text: string } {
    const t0 = canonicalJson({ ...unsigned, evidence_id: '', signature: '' });
    return this.sealIdInput(t0, unsigned) ?? (() => {
      const sealed = this.seal(unsigned);
      return { evidenceId: sealed.evidence_id, text: canonicalJson(sealed) };
    })();
  }

  /**
   * sealCanonical from the id input's JCS text `t0` (evidence_id = signature = ""), e.g.
   * the text the request path already hashed for the in-band id; `head` names the members
   * that frame it. Undefined when `t0` is not laid out as the spec's member order implies.
   */
  sealIdInput(t0: string, head: Pick<CyclesEvidence, 'artifact_type' | 'signer_did' | 'trace_id'>): { evidenceId: string; text: string } | undefined {
    const open = `{"artifact_type":${JSON.stringify(head.artifact_type)},"evidence_id":""`;
    const tail = `,"signature":"","signer_did":${JSON.stringify(head.signer_did)}` +
      `${head.trace_id === undefined ? '' : `,"trace_id":${JSON.stringify(head.trace_id)}`}}`;
    if (!t0.startsWith(open) || !t0.endsWith(tail)) return undefined;
    const evidenceId = createHash('sha256').update(t0, 'utf8').digest('hex');
    const mid = t0.slice(open.length, t0.length - tail.length);
    const headId = `{"artifact_type":${JSON.stringify(head.artifact_type)},"evidence_id":"${evidenceId}"`;
    const t1 = headId + mid + tail;
    const signature = hex(this.sign(Buffer.from(t1, 'utf8')));
    const tailSig = `,"signature":"${signature}"${tail.slice(',"signature":""'.length)}`;
    return { evidenceId, text: headId + mid + tailSig };
  }

  /** Never serialise the signer (there is nothing but the public key to show). */
  toJSON(): { publicKey: string } {
    return { publicKey: this.publicKeyHex };
  }
}
