// Ed25519 over a small (~575-byte) CyclesEvidence signing input: node:crypto (OpenSSL) against
// @noble/ed25519 (sync with node's SHA-512, and its default async WebCrypto path), plus
// the whole seal (two canonicalizations, SHA-256, signature). Decision DEV3 rests on it.
// `npx tsx bench/evidence-sign.ts [--iterations 3000]`
import { createHash } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { buildEnvelope, evidenceIdOf, signingInputOf } from '../src/evidence/envelope';
import { nodeVerifyBytes, verifyBytes } from '../src/evidence/ed25519';
import { EvidenceSigner } from '../src/evidence/signer';

const iterations = Number(process.argv[process.argv.indexOf('--iterations') + 1]) || 3000;
const seed = () => new Uint8Array(createHash('sha256').update('bench-evidence-signer').digest());
const signer = new EvidenceSigner(seed());
// a minimal decide: ~575 bytes of signing input, about the smallest an envelope gets (the
// 64-hex signer_did and evidence_id, server_id and trace_id alone take ~250)
const unsigned = buildEnvelope({
  artifact: 'decide',
  request: { idempotency_key: 'k-01', subject: { tenant: 'acme' }, action: { kind: 'llm.completion', name: 'gpt-4o' }, estimate: { unit: 'TOKENS', amount: 2000 } },
  response: { decision: 'ALLOW' },
}, { serverId: 'https://cycles.example.com/v1', signerDid: signer.publicKeyHex, issuedAtMs: 1_810_000_000_000, traceId: '0af7651916cd43dd8448eb211c80319c' });
const message = signingInputOf(unsigned, evidenceIdOf(unsigned));
const sig = signer.sign(message);

async function time(name: string, n: number, f: () => unknown): Promise<void> {
  for (let i = 0; i < Math.min(200, n); i++) await f();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await f();
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / n;
  console.log(`| ${name.padEnd(44)} | ${us.toFixed(1).padStart(8)} | ${Math.round(1e6 / us).toString().padStart(8)} |`);
}

console.log(`signing input: ${message.length} bytes; ${iterations} iterations; node ${process.version}\n`);
console.log('| operation                                    | µs/op    | ops/s    |');
console.log('|---|---:|---:|');
const s = seed();
await time('sign: node:crypto', iterations, () => signer.sign(message));
await time('sign: @noble/ed25519 sync (node SHA-512)', Math.ceil(iterations / 4), () => ed.sign(message, s));
await time('sign: @noble/ed25519 async (WebCrypto)', Math.ceil(iterations / 8), () => ed.signAsync(message, s));
await time('verify: node:crypto', iterations, () => nodeVerifyBytes(sig, message, signer.publicKey));
await time('verify: @noble/ed25519 sync, strict', Math.ceil(iterations / 4), () => verifyBytes(sig, message, signer.publicKey));
await time('seal: id + signature (node:crypto)', iterations, () => signer.seal(unsigned));
