// Emit TypeScript types for a document via openapi-typescript's Node API.
import openapiTS, { astToString } from 'openapi-typescript';
import type { SpecManifest } from './bundle';
import { tsHeader } from './emit-common';
import type { JsonObject } from './util';

export async function emitTypes(manifest: SpecManifest, doc: JsonObject, label: string): Promise<string> {
  const ast = await openapiTS(structuredClone(doc) as Parameters<typeof openapiTS>[0], { silent: true });
  return tsHeader(manifest, `TypeScript types for the ${label} (openapi-typescript).`) + '\n' + astToString(ast);
}
