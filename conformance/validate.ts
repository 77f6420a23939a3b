// Response validation for the black-box harness: every response the harness sees is checked
// against the generated spec documents of the server's feature profile (the merged documents
// with --features v0.1.26, the v0.1.25 base documents without it: decision DG1) with Ajv 2020 +
// ajv-formats, configured like src/http/spec.ts newAjv. Building requests (sample parameters,
// invalid inputs, event schemas) always reads the merged documents, which hold every operation.
// A response is checked against the operation's declared response for its status; an error
// status the operation does not declare is checked against the plane's ErrorResponse.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import type { OperationInfo, Plane } from '../src/generated/operations';
// BigInt → Number so Ajv can type-check (exactness is checked by the cases themselves).
import { toView } from '../src/json';
export { toView };

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** 'merged' = base + v0.1.26 companions; 'base' = the v0.1.25 base document alone. */
export type Profile = 'merged' | 'base';

export function loadDocument(plane: Plane, profile: Profile = 'merged'): any {
  const file = profile === 'base' ? `${plane}.base.openapi.json` : `${plane}.openapi.json`;
  return JSON.parse(readFileSync(path.join(ROOT, 'src', 'generated', file), 'utf8'));
}


/** Rewrites document-local refs ("#/components/...") to the registered document id. */
function anchorRefs(schema: unknown, docId: string): unknown {
  if (Array.isArray(schema)) return schema.map((s) => anchorRefs(s, docId));
  if (schema !== null && typeof schema === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(schema)) {
      out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `${docId}${v}` : anchorRefs(v, docId);
    }
    return out;
  }
  return schema;
}

export class SpecValidator {
  private readonly ajv: Ajv2020;
  private readonly docs: Record<Plane, any>;
  /** The documents responses are checked against (the profile's). */
  private readonly responseDocs: Record<Plane, any>;
  private readonly cache = new Map<string, ValidateFunction | null>();

  constructor(readonly profile: Profile = 'merged') {
    this.ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
    addFormats(this.ajv);
    this.docs = { runtime: loadDocument('runtime'), admin: loadDocument('admin') };
    for (const plane of ['runtime', 'admin'] as const) this.ajv.addSchema(this.docs[plane], plane);
    if (profile === 'base') {
      this.responseDocs = { runtime: loadDocument('runtime', 'base'), admin: loadDocument('admin', 'base') };
      for (const plane of ['runtime', 'admin'] as const) this.ajv.addSchema(this.responseDocs[plane], `${plane}.base`);
    } else {
      this.responseDocs = this.docs;
    }
  }

  /** Ajv id of the document a plane's responses are checked against. */
  private responseId(plane: Plane): string {
    return this.profile === 'base' ? `${plane}.base` : plane;
  }

  document(plane: Plane): any {
    return this.docs[plane];
  }

  /** The OpenAPI operation object of a table row. */
  operation(op: Pick<OperationInfo, 'plane' | 'path' | 'method'>): any {
    return this.docs[op.plane].paths[op.path]?.[op.method];
  }

  /** Follows local $refs (components/responses, components/parameters, …). */
  deref(plane: Plane, obj: any, doc: any = this.docs[plane]): any {
    let cur = obj;
    for (let i = 0; cur && typeof cur.$ref === 'string' && i < 10; i++) {
      const ptr = cur.$ref.replace(/^#\//, '').split('/').map((s: string) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
      cur = ptr.reduce((o: any, k: string) => o?.[k], doc);
    }
    return cur;
  }

  /** Compiles (once) a schema found in a plane's document; null when there is none. */
  compile(plane: Plane, key: string, schema: unknown): ValidateFunction | null {
    return this.compileIn(plane, key, schema);
  }

  private compileIn(docId: string, key: string, schema: unknown): ValidateFunction | null {
    const ck = `${docId}:${key}`;
    if (!this.cache.has(ck)) {
      this.cache.set(ck, schema === undefined ? null : this.ajv.compile(anchorRefs(schema, docId) as object));
    }
    return this.cache.get(ck)!;
  }

  /** The plane's ErrorResponse in the profile's document. */
  errorSchema(plane: Plane): ValidateFunction {
    return this.compileIn(this.responseId(plane), 'ErrorResponse', { $ref: '#/components/schemas/ErrorResponse' })!;
  }

  /** Problems with a response body, or [] when it matches the spec. */
  checkResponse(plane: Plane, op: Pick<OperationInfo, 'plane' | 'path' | 'method' | 'operationId'> | null, status: number, body: unknown, hasBody: boolean): string[] {
    let declared: any;
    const doc = this.responseDocs[plane];
    if (op) {
      // an operation the profile's document lacks (a v0.1.26 route on a base server) declares nothing
      const responses = doc.paths[op.path]?.[op.method]?.responses ?? {};
      declared = responses[String(status)] ?? responses[`${String(status)[0]}XX`] ?? responses.default;
      declared = this.deref(plane, declared, doc);
    }
    let validate: ValidateFunction | null;
    if (declared) {
      const schema = declared.content?.['application/json']?.schema;
      if (schema === undefined) {
        return hasBody && status === 204 ? [`${status} must not carry a body`] : [];
      }
      validate = this.compileIn(this.responseId(plane), `${op!.operationId}:${status}`, schema);
    } else if (status >= 400) {
      validate = this.errorSchema(plane);
    } else {
      return op ? [`status ${status} is not declared for ${op.operationId}`] : [];
    }
    if (!validate) return [];
    if (!hasBody) return [`${status} response has no JSON body but the spec declares one`];
    if (validate(toView(body))) return [];
    return (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
  }

  /** True when `value` violates the schema (used to self-check generated invalid inputs). */
  rejects(plane: Plane, key: string, schema: unknown, value: unknown): boolean {
    const v = this.compile(plane, `input:${key}`, schema);
    return v ? !v(value) : false;
  }
}
