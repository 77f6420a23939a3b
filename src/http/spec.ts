// Loads the generated spec of one plane into openapi-backend (routing + request
// validation) with Ajv's 2020-12 dialect, once per process and profile: the merged document
// with CYCLES_FEATURES=v0.1.26, the v0.1.25 base document without it (decision DG1). Nothing here compiles a
// schema per request: request validators are built at init, response validators on
// first use.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { OpenAPIBackend } from 'openapi-backend';
import type { Operation } from 'openapi-backend';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import { REPO_ROOT, type Plane } from '../config';
import { operations } from '../generated/operations';
import { ApiError } from '../errors';
import { toView } from '../json';
import type { OperationRef } from './types';

/** 'merged' = base + v0.1.26 companions; 'base' = the v0.1.25 base document alone. */
export type Profile = 'merged' | 'base';

/** The document a server with these features routes, validates and renders against. */
export function profileFor(features: ReadonlySet<string>): Profile {
  return features.has('v0.1.26') ? 'merged' : 'base';
}

export interface LoadedSpec {
  plane: Plane;
  profile: Profile;
  document: any;
  backend: OpenAPIBackend;
  ops: Map<string, OperationRef>;
  checkResponseBody(operation: Operation, status: number, body: unknown): string | null;
  checkErrorBody(body: unknown, status: number): void;
}

export function newAjv(opts: Record<string, unknown> = {}): Ajv2020 {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true, ...opts });
  addFormats(ajv);
  return ajv;
}

export function generatedDocument(plane: Plane, profile: Profile = 'merged'): any {
  const file = path.join(REPO_ROOT, 'src', 'generated', profile === 'base' ? `${plane}.base.openapi.json` : `${plane}.openapi.json`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

const cache = new Map<string, Promise<LoadedSpec>>();

export function loadSpec(plane: Plane, profile: Profile = 'merged'): Promise<LoadedSpec> {
  const key = `${plane}:${profile}`;
  let p = cache.get(key);
  if (!p) {
    p = build(plane, profile);
    cache.set(key, p);
  }
  return p;
}

async function build(plane: Plane, profile: Profile): Promise<LoadedSpec> {
  const document = generatedDocument(plane, profile);
  const backend = new OpenAPIBackend({
    definition: structuredClone(document),
    validate: true,
    coerceTypes: true,
    strict: true,
    // quick: skip openapi-backend's definition check and eager validator compilation at
    // start (~1.6 s per plane). codegen already runs that check in strict mode on exactly
    // this document (codegen/verify.ts); validators compile on first use of an operation.
    quick: true,
    customizeAjv: (_ajv, ajvOpts) => newAjv({ coerceTypes: ajvOpts.coerceTypes ?? false }),
  });
  await backend.init();

  const ops = new Map<string, OperationRef>();
  const inDocument = new Set(backend.getOperations().map((o) => o.operationId));
  for (const o of operations) {
    if (o.plane !== plane || !inDocument.has(o.operationId)) continue;
    ops.set(o.operationId, {
      operationId: o.operationId, plane: o.plane, method: o.method, path: o.path,
      security: o.security, feature: o.feature,
    });
  }

  // ErrorResponse of this plane, for error bodies on statuses an operation does not declare.
  const ajv = newAjv();
  ajv.addSchema(document, 'doc');
  const errorValidator = ajv.getSchema('doc#/components/schemas/ErrorResponse') as ValidateFunction;

  return {
    plane,
    profile,
    document,
    backend,
    ops,
    checkResponseBody(operation, status, body) {
      const r = backend.validator.validateResponse(toView(body), operation, status);
      if (!r.errors) return null;
      return r.errors.slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
    },
    checkErrorBody(body, status) {
      if (!errorValidator(toView(body))) {
        const msg = (errorValidator.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
        throw new ApiError('INTERNAL_ERROR', `error body for ${status} violates ErrorResponse: ${msg}`);
      }
    },
  };
}
