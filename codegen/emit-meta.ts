// Emit what the output was generated from (spec-hashes.json, meta.ts) and a loader for the
// emitted documents (documents.ts).
import type { SpecManifest } from './bundle';
import { jsonFile, tsHeader, tsLiteral } from './emit-common';
import type { MergeNote, Plane } from './merge';
import type { NormalizeChange } from './normalize';
import type { JsonObject } from './util';

export interface GeneratedFrom {
  upstream: { repo: string; commit: string };
  files: { name: string; role: string; sha256: string; version: string | null }[];
  documents: Record<Plane, { file: string; title: string; version: string }>;
}

export const DOCUMENT_FILES: Record<Plane, string> = { runtime: 'runtime.openapi.json', admin: 'admin.openapi.json' };
/** The v0.1.25 base documents (the v0.1.26 flag off). */
export const BASE_DOCUMENT_FILES: Record<Plane, string> = { runtime: 'runtime.base.openapi.json', admin: 'admin.base.openapi.json' };

export function generatedFrom(manifest: SpecManifest, versions: Map<string, string | null>, docs: Record<Plane, JsonObject>): GeneratedFrom {
  return {
    upstream: { ...manifest.upstream },
    files: manifest.files.map((f) => ({ name: f.name, role: f.role, sha256: f.sha256, version: versions.get(f.name) ?? null })),
    documents: {
      runtime: { file: DOCUMENT_FILES.runtime, title: docs.runtime.info.title, version: docs.runtime.info.version },
      admin: { file: DOCUMENT_FILES.admin, title: docs.admin.info.title, version: docs.admin.info.version },
    },
  };
}

export function emitSpecHashes(manifest: SpecManifest, from: GeneratedFrom): string {
  return jsonFile(manifest, { ...from });
}

export function emitMergeReport(
  manifest: SpecManifest,
  notes: MergeNote[],
  changes: Record<Plane, NormalizeChange[]>,
  baseChanges: Record<Plane, NormalizeChange[]>,
): string {
  return jsonFile(manifest, { mergeNotes: notes, normalizeChanges: changes, baseNormalizeChanges: baseChanges });
}

export function emitMeta(manifest: SpecManifest, from: GeneratedFrom): string {
  return (
    tsHeader(manifest, 'What src/generated was generated from (same data as spec-hashes.json).') +
    `
export interface GeneratedFrom {
  upstream: { repo: string; commit: string };
  /** Pinned upstream files with their sha256 and info.version (null for non-OpenAPI files). */
  files: { name: string; role: string; sha256: string; version: string | null }[];
  documents: Record<'runtime' | 'admin', { file: string; title: string; version: string }>;
}

export const generatedFrom: GeneratedFrom = ${tsLiteral(from)};
`
  );
}

export function emitDocuments(manifest: SpecManifest): string {
  return (
    tsHeader(manifest, 'Loader for the normalised OpenAPI documents (merged and v0.1.25 base) emitted next to this file.') +
    `
import { readFileSync } from 'node:fs';

export type Plane = 'runtime' | 'admin';
/** 'merged' = base + v0.1.26 companions (CYCLES_FEATURES=v0.1.26); 'base' = the v0.1.25 base document alone. */
export type Profile = 'merged' | 'base';

export const documentFiles = ${tsLiteral(DOCUMENT_FILES)} as const;
export const baseDocumentFiles = ${tsLiteral(BASE_DOCUMENT_FILES)} as const;

export function documentUrl(plane: Plane, profile: Profile = 'merged'): URL {
  const file = profile === 'base' ? baseDocumentFiles[plane] : documentFiles[plane];
  return new URL(\`./\${file}\`, import.meta.url);
}

/**
 * A fresh parsed copy of the normalised document for a plane and profile (ready for
 * new OpenAPIBackend({ definition, customizeAjv }) — see codegen/ajv.ts).
 */
export function loadDocument(plane: Plane, profile: Profile = 'merged'): Record<string, any> {
  return JSON.parse(readFileSync(documentUrl(plane, profile), 'utf8'));
}
`
  );
}
