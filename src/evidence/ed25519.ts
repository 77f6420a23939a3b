// The two Ed25519 implementations and what each is for (docs/decisions.md DEV3): node:crypto
// (OpenSSL) signs — about 7x faster than @noble/ed25519 on a 400-byte envelope — and
// @noble/ed25519 verifies, in the offline verifier and in the signer's start-up self-test,
// so a signature is never accepted only by the code that made it. Pure Ed25519 (RFC 8032):
// no prehash, no context; verification uses noble's strict RFC 8032 branch (zip215: false).
import { createHash, createPrivateKey, createPublicKey, sign, verify as nodeVerifyRaw, type KeyObject } from 'node:crypto';
import * as ed from '@noble/ed25519';

// noble's synchronous API needs a SHA-512; node's is the same function, and sync keeps
// verification free of promise hops.
ed.hashes.sha512 = (m) => createHash('sha512').update(m).digest();

/** RFC 8410 PKCS#8 prefix of an Ed25519 private key: the DER bytes before the 32-byte seed. */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** RFC 8410 SPKI prefix of an Ed25519 public key: the DER bytes before the 32-byte key. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export const SEED_BYTES = 32;
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** A private KeyObject from the 32-byte RFC 8032 seed (the object never prints its material). */
export function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== SEED_BYTES) throw new Error(`Ed25519 seed must be ${SEED_BYTES} bytes, got ${seed.length}`);
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** The raw 32-byte public key of a private or public Ed25519 KeyObject. */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const der = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return new Uint8Array(der.subarray(SPKI_PREFIX.length));
}

export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== PUBLIC_KEY_BYTES) throw new Error(`Ed25519 public key must be ${PUBLIC_KEY_BYTES} bytes, got ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** node:crypto Ed25519 signature over the message bytes themselves (not a digest). */
export function signBytes(key: KeyObject, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, key));
}

/** @noble/ed25519, strict RFC 8032 verification; false (never a throw) on malformed input. */
export function verifyBytes(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== PUBLIC_KEY_BYTES) return false;
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false; // e.g. a public key that is not a curve point
  }
}

/** node:crypto verification, the second opinion the self-test asks for. */
export function nodeVerifyBytes(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return nodeVerifyRaw(null, message, publicKeyFromRaw(publicKey), signature);
  } catch {
    return false;
  }
}

/** The public key noble derives from a seed (the self-test compares it with OpenSSL's). */
export function noblePublicKey(seed: Uint8Array): Uint8Array {
  return ed.getPublicKey(seed);
}
