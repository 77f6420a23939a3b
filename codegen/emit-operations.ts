// Build and emit the operation table (src/generated/operations.ts).
import type { SpecManifest } from './bundle';
import { tsHeader } from './emit-common';
import { OPERATION_ANNOTATIONS, type Feature, type Plane } from './merge';
import { compareStrings, operationsOf, type JsonObject } from './util';

export type OperationMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface OperationInfo {
  operationId: string;
  method: OperationMethod;
  path: string;
  plane: Plane;
  security: string[][];
  conformance: string | null;
  sourceSpec: string;
  specVersion: string;
  feature: Feature;
  mergedFrom?: string[];
}

const METHODS: readonly string[] = ['get', 'post', 'put', 'patch', 'delete'];

export function buildOperationTable(docs: Record<Plane, JsonObject>): OperationInfo[] {
  const rows: OperationInfo[] = [];
  for (const plane of Object.keys(docs).sort(compareStrings) as Plane[]) {
    const doc = docs[plane];
    const seen = new Set<string>();
    for (const { path, method, op } of operationsOf(doc)) {
      if (!METHODS.includes(method)) throw new Error(`${plane}: unsupported method ${method} ${path}`);
      if (typeof op.operationId !== 'string') throw new Error(`${plane}: ${method.toUpperCase()} ${path} has no operationId`);
      if (seen.has(op.operationId)) throw new Error(`${plane}: duplicate operationId ${op.operationId}`);
      seen.add(op.operationId);
      const requirements: JsonObject[] = op.security ?? doc.security ?? [];
      const row: OperationInfo = {
        operationId: op.operationId,
        method: method as OperationMethod,
        path,
        plane,
        security: requirements.map((r) => Object.keys(r)),
        conformance: typeof op['x-conformance'] === 'string' ? op['x-conformance'] : null,
        sourceSpec: String(op[OPERATION_ANNOTATIONS.sourceSpec]),
        specVersion: String(op[OPERATION_ANNOTATIONS.specVersion]),
        feature: op[OPERATION_ANNOTATIONS.feature] as Feature,
      };
      const mergedFrom = op[OPERATION_ANNOTATIONS.mergedFrom];
      if (Array.isArray(mergedFrom) && mergedFrom.length) row.mergedFrom = [...mergedFrom];
      rows.push(row);
    }
  }
  return rows.sort(
    (a, b) => compareStrings(a.plane, b.plane) || compareStrings(a.path, b.path) || compareStrings(a.method, b.method),
  );
}

export function emitOperations(manifest: SpecManifest, rows: OperationInfo[]): string {
  const ids = (plane: Plane) => rows.filter((r) => r.plane === plane).map((r) => JSON.stringify(r.operationId)).sort(compareStrings);
  const union = (xs: string[]) => (xs.length ? xs.map((x) => `\n  | ${x}`).join('') : ' never');
  return (
    tsHeader(manifest, 'Operation table of the merged runtime and admin documents.') +
    `
export type Plane = 'runtime' | 'admin';
export type OperationMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface OperationInfo {
  operationId: string;
  method: OperationMethod;
  path: string;
  plane: Plane;
  /** Alternatives (OR) of security scheme names (AND); [] = public. Operation security, else the document's. */
  security: string[][];
  /** The operation's x-conformance label (normative | reference), null when absent. */
  conformance: string | null;
  /** Upstream file the operation is defined in. */
  sourceSpec: string;
  /** info.version of sourceSpec. */
  specVersion: string;
  /** 'base' = v0.1.25 base specs; 'v0.1.26' = extension / action-kinds operations. */
  feature: 'base' | 'v0.1.26';
  /** operationIds of extension re-declarations folded into this operation. */
  mergedFrom?: string[];
}

export type RuntimeOperationId =${union(ids('runtime'))};

export type AdminOperationId =${union(ids('admin'))};

/** Sorted by plane, then path, then method. Key: (plane, operationId). */
export const operations: readonly OperationInfo[] = [
${rows.map((r) => `  ${JSON.stringify(r)},
`).join('')}];

export function findOperation(plane: 'runtime', operationId: RuntimeOperationId): OperationInfo;
export function findOperation(plane: 'admin', operationId: AdminOperationId): OperationInfo;
export function findOperation(plane: Plane, operationId: string): OperationInfo | undefined;
export function findOperation(plane: Plane, operationId: string): OperationInfo | undefined {
  return operations.find((o) => o.plane === plane && o.operationId === operationId);
}

export function operationsFor(plane: Plane): OperationInfo[] {
  return operations.filter((o) => o.plane === plane);
}
`
  );
}
