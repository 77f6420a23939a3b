// `cycles evidence verify` and `cycles evidence keygen` (src/cli.ts wires the commands).
// Exit codes of verify: 0 authentic, or binding_only with any given pin matched; 1 the
// envelope failed (signature_invalid, signer_authority_failed, a pin mismatch, or not
// authentic under --require-authentic); 3 signer_resolution_failed (inconclusive: the key
// set could not be obtained); 2 the envelope itself could not be read, or bad options.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { EvidenceConfigError, generateIdentity } from './keys';
import { EVIDENCE_SPEC_FILE, defaultEvidenceSchemaCheck, evidenceSchemaCheck, type SchemaCheck } from './schema';
import { loadDocument, verifyEnvelope, type JwksInput, type VerifyResult } from './verify';

export interface VerifyCliOptions {
  jwks?: string;
  resolve?: boolean;
  expectedSigner?: string;
  requireAuthentic?: boolean;
  json?: boolean;
}

export function exitCodeOf(r: VerifyResult, requireAuthentic = false): number {
  switch (r.disposition) {
    case 'authentic':
      return r.signer_pin_matched === false ? 1 : 0;
    case 'binding_only':
      return requireAuthentic || r.signer_pin_matched === false ? 1 : 0;
    case 'signer_resolution_failed':
      return 3;
    default:
      return 1;
  }
}

export async function runVerify(location: string, o: VerifyCliOptions, specsDir: string): Promise<number> {
  if (o.jwks !== undefined && o.resolve) {
    console.error('cycles evidence verify: give --jwks or --resolve, not both');
    return 2;
  }
  let bytes: Buffer;
  try {
    bytes = await loadDocument(location);
  } catch (e) {
    console.error(`cycles evidence verify: cannot read ${location}: ${(e as Error).message}`);
    return 2;
  }
  // the bundle's document when it is at hand, else the copy codegen derived from the pinned one
  const schema: SchemaCheck = existsSync(path.join(specsDir, EVIDENCE_SPEC_FILE)) ? evidenceSchemaCheck(specsDir) : defaultEvidenceSchemaCheck();
  const jwks: JwksInput | undefined = o.jwks !== undefined ? { location: o.jwks } : o.resolve ? { fromServerId: true } : undefined;
  const r = await verifyEnvelope(bytes, { jwks, expectedSigner: o.expectedSigner, schema });
  if (o.json) {
    console.log(JSON.stringify(r));
  } else {
    const facts = [
      r.evidence_id && `evidence_id=${r.evidence_id}`,
      r.signer_did && `signer_did=${r.signer_did}`,
      r.kid && `kid=${r.kid}`,
      r.signer_pin_matched !== undefined && `signer_pin_matched=${r.signer_pin_matched}`,
    ].filter(Boolean);
    console.log(`${r.disposition}${facts.length ? ' ' + facts.join(' ') : ''}\n  ${r.reason}`);
  }
  return exitCodeOf(r, o.requireAuthentic);
}

export function runKeygen(o: { serverId?: string; kid?: string }): number {
  try {
    console.log(generateIdentity(o).lines.join('\n'));
    return 0;
  } catch (e) {
    if (e instanceof EvidenceConfigError) {
      console.error(`cycles evidence keygen: ${e.message}`);
      return 2;
    }
    throw e;
  }
}
