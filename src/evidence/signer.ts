// The signing half of an evidence identity: holds the private key (as a KeyObject, which
// never prints its material; the seed bytes are wiped once the key exists), seals unsigned
// envelopes, and proves at start-up that what it signs verifies under an independent
// implementation (docs/decisions.md DEV3).
import type { KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { canonicalBytes } from './canonical';
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

  /** Never serialise the signer (there is nothing but the public key to show). */
  toJSON(): { publicKey: string } {
    return { publicKey: this.publicKeyHex };
  }
}
