// The CyclesEvidence JSON Schema check, compiled from cycles-evidence-v0.2.yaml: from a spec
// bundle directory when one is given, else from the copy codegen derives from the pinned
// bundle (src/generated/evidence.schema.json) — so every verification checks the mirrors
// (fail closed, docs/decisions.md DEV11). Includes the
// allOf/if-then rules (artifact_type ↔ payload key, the reserve dry_run rules, caps iff
// ALLOW_WITH_CAPS, error endpoint ↔ reservation_id and request mirror).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import { parse } from 'yaml';
import { toView } from '../json';
import { EVIDENCE_SCHEMA_FILE } from './schemaFile';

export const EVIDENCE_SPEC_FILE = 'cycles-evidence-v0.2.yaml';

export type SchemaCheck = (value: unknown) => string | null;

const GENERATED_SCHEMA = fileURLToPath(new URL(`../generated/${EVIDENCE_SCHEMA_FILE}`, import.meta.url));

let generated: SchemaCheck | undefined;
/** The envelope check from the generated copy (compiled once). Throws when codegen has not run. */
export function defaultEvidenceSchemaCheck(): SchemaCheck {
  if (!existsSync(GENERATED_SCHEMA)) throw new Error(`${GENERATED_SCHEMA} is missing: run npm run codegen`);
  return (generated ??= evidenceSchemaCheck());
}

/** A validator for one schema of the evidence document (default: the envelope). */
export function evidenceSchemaCheck(specsDir?: string, schemaName = 'CyclesEvidence'): SchemaCheck {
  const doc = (specsDir === undefined
    ? JSON.parse(readFileSync(GENERATED_SCHEMA, 'utf8'))
    : parse(readFileSync(path.join(specsDir, EVIDENCE_SPEC_FILE), 'utf8'))) as Record<string, unknown>;
  // the options of src/http/spec.ts newAjv, without loading the HTTP stack (the CLI uses this)
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  ajv.addSchema(doc, 'evidence');
  const validate = ajv.getSchema(`evidence#/components/schemas/${schemaName}`) as ValidateFunction | undefined;
  if (!validate) throw new Error(`${EVIDENCE_SPEC_FILE}: no schema ${schemaName}`);
  return (value) => {
    // ajv knows numbers only; int64 exactness is canonical.ts's business (DEV1)
    if (validate(toView(value))) return null;
    return (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`.trim()).join('; ');
  };
}
