// Orchestrates one generator run: load + verify the bundle, merge, normalise, check with
// openapi-backend, render every output file in memory.
import { EVIDENCE_SCHEMA_FILE } from '../src/evidence/schemaFile';
import { jsonFile } from './emit-common';
import { loadBundle, type Bundle } from './bundle';
import { emitDocuments, emitMergeReport, emitMeta, emitSpecHashes, generatedFrom, BASE_DOCUMENT_FILES, DOCUMENT_FILES } from './emit-meta';
import { emitOpenApi } from './emit-openapi';
import { emitRegistry } from './emit-registry';
import { buildOperationTable, emitOperations, type OperationInfo } from './emit-operations';
import { emitSchemas } from './emit-schemas';
import { emitTypes } from './emit-types';
import { mergeBundle, type MergeNote, type Plane } from './merge';
import { normalizeForValidator, type NormalizeChange } from './normalize';
import { isObject, type JsonObject } from './util';
import { verifyDocument, type VerifyLevel } from './verify';

export interface GenerateResult {
  /** File name (relative to src/generated) → content. */
  files: Map<string, string>;
  documents: Record<Plane, JsonObject>;
  /** The normalised v0.1.25 base document of each plane (served with the v0.1.26 flag off). */
  baseDocuments: Record<Plane, JsonObject>;
  operations: OperationInfo[];
  notes: MergeNote[];
}

export interface GenerateOptions {
  bundle?: Bundle;
  /** Gate both documents through openapi-backend (default 'full'); false skips the gate. */
  verify?: VerifyLevel | false;
}

export async function generate(options: GenerateOptions = {}): Promise<GenerateResult> {
  const bundle = options.bundle ?? loadBundle();
  const { manifest } = bundle;
  const merged = mergeBundle(bundle);

  const documents = {} as Record<Plane, JsonObject>;
  const baseDocuments = {} as Record<Plane, JsonObject>;
  const changes = {} as Record<Plane, NormalizeChange[]>;
  const baseChanges = {} as Record<Plane, NormalizeChange[]>;
  for (const plane of ['runtime', 'admin'] as const) {
    const { doc, changes: c } = normalizeForValidator(merged[plane]);
    documents[plane] = doc;
    changes[plane] = c;
    const base = normalizeForValidator(merged.base[plane]);
    baseDocuments[plane] = base.doc;
    baseChanges[plane] = base.changes;
  }
  const verify = options.verify ?? 'full';
  if (verify) {
    for (const p of ['runtime', 'admin'] as const) {
      await verifyDocument(documents[p], `${p} document`, verify);
      await verifyDocument(baseDocuments[p], `${p} base document`, verify);
    }
  }

  const versions = new Map<string, string | null>();
  for (const f of bundle.files) {
    const v = isObject(f.data) && isObject(f.data.info) ? f.data.info.version : undefined;
    versions.set(f.name, v === undefined ? null : String(v));
  }
  const from = generatedFrom(manifest, versions, documents);
  const operations = buildOperationTable(documents);

  const files = new Map<string, string>();
  files.set(DOCUMENT_FILES.runtime, emitOpenApi(manifest, documents.runtime));
  files.set(DOCUMENT_FILES.admin, emitOpenApi(manifest, documents.admin));
  files.set(BASE_DOCUMENT_FILES.runtime, emitOpenApi(manifest, baseDocuments.runtime));
  files.set(BASE_DOCUMENT_FILES.admin, emitOpenApi(manifest, baseDocuments.admin));
  files.set('runtime.types.ts', await emitTypes(manifest, documents.runtime, 'runtime plane document'));
  files.set('admin.types.ts', await emitTypes(manifest, documents.admin, 'admin plane document'));
  files.set('operations.ts', emitOperations(manifest, operations));
  files.set('schemas.ts', emitSchemas(manifest, documents));
  files.set('spec-hashes.json', emitSpecHashes(manifest, from));
  files.set('meta.ts', emitMeta(manifest, from));
  files.set('documents.ts', emitDocuments(manifest));
  files.set('action-kinds.ts', emitRegistry(bundle));
  // the CyclesEvidence document, so verifiers always have its JSON Schema (fail closed, DEV11)
  files.set(EVIDENCE_SCHEMA_FILE, jsonFile(manifest, bundle.get('evidence').data as Record<string, unknown>));
  files.set('merge-report.json', emitMergeReport(manifest, merged.notes, changes, baseChanges));
  return { files, documents, baseDocuments, operations, notes: merged.notes };
}
