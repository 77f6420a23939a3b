// Emit the normalised merged documents as JSON.
import type { SpecManifest } from './bundle';
import { jsonFile } from './emit-common';
import type { JsonObject } from './util';

const TOP_LEVEL_ORDER = ['openapi', 'info', 'jsonSchemaDialect', 'servers', 'tags', 'security', 'externalDocs', 'paths', 'webhooks', 'components'];

/** Canonical top-level member order; vendor extensions last, in their original order. */
export function orderTopLevel(doc: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const k of TOP_LEVEL_ORDER) if (k in doc) out[k] = doc[k];
  for (const k of Object.keys(doc)) if (!(k in out)) out[k] = doc[k];
  return out;
}

export function emitOpenApi(manifest: SpecManifest, doc: JsonObject): string {
  return jsonFile(manifest, orderTopLevel(doc));
}
