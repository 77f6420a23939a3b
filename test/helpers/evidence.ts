// Shared pieces of the evidence tests: the upstream fixtures (read from the spec bundle,
// never copied), the fixture signer's seed, and an independent @noble/ed25519 check that
// uses noble's own async SHA-512 (WebCrypto), not the node:crypto hash src/evidence wires in.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as ed from '@noble/ed25519';
import { specsDir } from '../../codegen/bundle';

export const SPECS_DIR = specsDir();
export const FIXTURES_DIR = path.join(SPECS_DIR, 'fixtures', 'evidence-v0.1');

/** The fixture signer (the upstream fixtures' test key): seed = SHA-256 of this label. */
export const FIXTURE_LABEL = 'cycles-evidence-v0.1-fixture-signer';
export const FIXTURE_PUBLIC_KEY = 'ec52b49b81eb29ef6f62947cade245c715bf943b7ef2a5f2789288574466fc43';
export const fixtureSeed = (): Uint8Array => new Uint8Array(createHash('sha256').update(FIXTURE_LABEL).digest());
export const fixtureSeedHex = (): string => Buffer.from(fixtureSeed()).toString('hex');

export interface Fixture { name: string; text: string; envelope: Record<string, any> }

export function loadFixtures(): Fixture[] {
  return readdirSync(FIXTURES_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((name) => {
      const text = readFileSync(path.join(FIXTURES_DIR, name), 'utf8');
      return { name, text, envelope: JSON.parse(text) };
    });
}

/** Independent signature check (noble async path, strict RFC 8032). */
export async function nobleVerifies(signatureHex: string, message: Uint8Array, publicKeyHex: string): Promise<boolean> {
  return ed.verifyAsync(Buffer.from(signatureHex, 'hex'), message, Buffer.from(publicKeyHex, 'hex'), { zip215: false });
}

export const seedOf = (label: string): Uint8Array => new Uint8Array(createHash('sha256').update(label).digest());
