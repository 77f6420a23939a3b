// Builds, for any operation in the table, a request that its schema rejects — generically,
// from the operation's own parameter and body schemas — and self-checks the choice with Ajv
// so a case never sends something the spec would actually accept.
import type { OperationInfo } from '../src/generated/operations';
import type { SpecValidator } from './validate';

export interface InvalidRequest {
  /** what is wrong, for messages */
  what: string;
  params: Record<string, string>;
  query: Record<string, string>;
  body?: unknown;
}

interface Param { name: string; in: string; required?: boolean; schema?: any }

export function parametersOf(spec: SpecValidator, op: OperationInfo): Param[] {
  const doc = spec.document(op.plane);
  const item = doc.paths[op.path] ?? {};
  const all = [...(item.parameters ?? []), ...(spec.operation(op)?.parameters ?? [])].map((p: any) => spec.deref(op.plane, p));
  const seen = new Map<string, Param>();
  for (const p of all) seen.set(`${p.in}:${p.name}`, p);
  return [...seen.values()];
}

function resolveSchema(spec: SpecValidator, op: OperationInfo, s: any): any {
  const r = spec.deref(op.plane, s);
  if (r && Array.isArray(r.allOf) && r.allOf.length === 1 && !r.type) return { ...resolveSchema(spec, op, r.allOf[0]), ...r, allOf: undefined };
  return r;
}

/** A value the schema accepts (strings only: path/query parameters travel as text). */
export function sampleValue(spec: SpecValidator, op: OperationInfo, p: Param): string {
  const s = resolveSchema(spec, op, p.schema ?? {}) ?? {};
  if (Array.isArray(s.enum) && s.enum.length) return String(s.enum[0]);
  if (s.type === 'integer' || s.type === 'number') return String(Math.max(1, s.minimum ?? 1));
  if (s.type === 'boolean') return 'true';
  if (s.format === 'date-time') return '2026-01-01T00:00:00Z';
  const candidates = ['conf-sample-1', 'a'.repeat(64).replace(/a/g, '0'), 'abc', 'a', 'tenant:conf-sample-1', 'llm.completion'];
  for (const c of candidates) {
    if (!spec.rejects(op.plane, `${op.operationId}:${p.in}:${p.name}`, p.schema ?? {}, c)) return c;
  }
  return candidates[0];
}

/** Path parameter values the schema accepts. */
export function samplePathParams(spec: SpecValidator, op: OperationInfo): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of parametersOf(spec, op)) if (p.in === 'path') out[p.name] = sampleValue(spec, op, p);
  return out;
}

export function requestBodySchema(spec: SpecValidator, op: OperationInfo): unknown {
  return spec.operation(op)?.requestBody?.content?.['application/json']?.schema;
}

export function invalidRequest(spec: SpecValidator, op: OperationInfo): InvalidRequest | null {
  const params = parametersOf(spec, op);
  const pathValues: Record<string, string> = {};
  const query: Record<string, string> = {};
  for (const p of params) {
    if (p.in === 'path') pathValues[p.name] = sampleValue(spec, op, p);
    else if (p.in === 'query' && p.required) query[p.name] = sampleValue(spec, op, p);
  }
  const key = (p: Param) => `${op.operationId}:${p.in}:${p.name}`;

  const bodySchema = requestBodySchema(spec, op);
  if (bodySchema !== undefined) {
    const candidates: [string, unknown][] = [['body is an array', []], ['unknown body property', { __unknown__: 1 }], ['body is a string', 'x'], ['body is a number', 42]];
    for (const [what, body] of candidates) {
      if (spec.rejects(op.plane, `${op.operationId}:body`, bodySchema, body)) return { what, params: pathValues, query, body };
    }
  }
  const queryParams = params.filter((p) => p.in === 'query');
  const limit = queryParams.find((p) => p.name === 'limit');
  if (limit && spec.rejects(op.plane, key(limit), limit.schema, -1)) {
    return { what: 'limit=-1', params: pathValues, query: { ...query, limit: '-1' } };
  }
  for (const p of queryParams) {
    const s = resolveSchema(spec, op, p.schema ?? {});
    if (s?.enum && spec.rejects(op.plane, key(p), p.schema, 'NOT_A_VALID_VALUE')) {
      return { what: `${p.name}: value outside its enum`, params: pathValues, query: { ...query, [p.name]: 'NOT_A_VALID_VALUE' } };
    }
    if ((s?.type === 'integer' || s?.type === 'boolean') && spec.rejects(op.plane, key(p), p.schema, 'not-a-value')) {
      return { what: `${p.name}: not a ${s.type}`, params: pathValues, query: { ...query, [p.name]: 'not-a-value' } };
    }
  }
  for (const p of params.filter((x) => x.in === 'path')) {
    const s = resolveSchema(spec, op, p.schema ?? {});
    if (typeof s?.maxLength === 'number') {
      const v = 'x'.repeat(Math.max(300, s.maxLength + 1));
      if (spec.rejects(op.plane, key(p), p.schema, v)) return { what: `${p.name}: ${v.length} characters`, params: { ...pathValues, [p.name]: v }, query };
    }
    if (typeof s?.pattern === 'string' && spec.rejects(op.plane, key(p), p.schema, 'NOT~VALID')) {
      return { what: `${p.name}: does not match ${s.pattern}`, params: { ...pathValues, [p.name]: 'NOT~VALID' }, query };
    }
  }
  const required = queryParams.find((p) => p.required);
  if (required) {
    const { [required.name]: _omit, ...rest } = query;
    return { what: `required query parameter ${required.name} missing`, params: pathValues, query: rest };
  }
  return null;
}
