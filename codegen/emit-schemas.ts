// Emit the component schema names per plane (src/generated/schemas.ts).
import type { SpecManifest } from './bundle';
import { tsHeader } from './emit-common';
import type { Plane } from './merge';
import { compareStrings, type JsonObject } from './util';

export function schemaNames(doc: JsonObject): string[] {
  return Object.keys(doc.components?.schemas ?? {}).sort(compareStrings);
}

export function emitSchemas(manifest: SpecManifest, docs: Record<Plane, JsonObject>): string {
  const list = (names: string[]) => `[\n${names.map((n) => `  ${JSON.stringify(n)},\n`).join('')}] as const`;
  return (
    tsHeader(manifest, 'Names of components.schemas in each merged document.') +
    `
export const runtimeSchemaNames = ${list(schemaNames(docs.runtime))};
export type RuntimeSchemaName = (typeof runtimeSchemaNames)[number];

export const adminSchemaNames = ${list(schemaNames(docs.admin))};
export type AdminSchemaName = (typeof adminSchemaNames)[number];

export const schemaNamesByPlane = { runtime: runtimeSchemaNames, admin: adminSchemaNames } as const;
`
  );
}
