// Request validation against the spec with the Ajv validators openapi-backend compiled
// from it (OpenAPIValidator.getRequestValidatorsForOperation), fed directly.
//
// Why not OpenAPIValidator.validateRequest: it re-parses what the pipeline already has
// (path params, query string, cookies), deep-clones the query and lower-cases headers
// through lodash on every request — measured ~11 µs and ~8 KB of garbage per reserve.
// Here the per-operation facts it derives
// each time (which query parameters are arrays, which are non-exploded) are computed
// once, and the validators see the same parameter object openapi-backend would build:
//   { path, query, header, cookie, requestBody }
// test/request-validator.test.ts checks that both give the same verdicts and coercions.
import type { OpenAPIBackend, Operation } from 'openapi-backend';
import type { ErrorObject, ValidateFunction } from 'ajv';

interface QueryRule { array: boolean; nonExploded: boolean; style?: string; json: boolean }

interface OperationPlan {
  validators: ValidateFunction[];
  queryRules: Map<string, QueryRule>;
  /** whether any validator may coerce header values (then they are copied first) */
  headerParams: boolean;
  /** a query parameter with a free-form schema takes names the spec does not list */
  freeFormQuery: boolean;
}

export interface RequestParts {
  params: Record<string, string>;
  query: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
  /** JSON view of the body (undefined when none) */
  body: unknown;
}

export interface RequestValidation {
  errors: ErrorObject[] | null;
  /** query after coercion (integers, booleans, arrays) */
  query: Record<string, any>;
  params: Record<string, string>;
}

export class RequestValidator {
  private readonly plans = new Map<string, OperationPlan>();

  constructor(private readonly api: OpenAPIBackend) {}

  private plan(operation: Operation): OperationPlan {
    const id = operation.operationId!;
    let p = this.plans.get(id);
    if (p) return p;
    const queryRules = new Map<string, QueryRule>();
    let headerParams = false;
    let freeFormQuery = false;
    for (const raw of (operation.parameters ?? []) as any[]) {
      if (!raw || '$ref' in raw) continue; // openapi-backend dereferences at init
      if (raw.in === 'header') headerParams = true;
      if (raw.in !== 'query') continue;
      if (raw.schema?.additionalProperties !== undefined) freeFormQuery = true;
      queryRules.set(raw.name, {
        array: raw.schema?.type === 'array',
        nonExploded: raw.explode === false,
        style: raw.style,
        json: Boolean(raw.content?.['application/json']),
      });
    }
    const validators = (this.api.validator.getRequestValidatorsForOperation(id) ?? []) as ValidateFunction[];
    p = { validators, queryRules, headerParams, freeFormQuery };
    this.plans.set(id, p);
    return p;
  }

  validate(operation: Operation, parts: RequestParts): RequestValidation {
    const plan = this.plan(operation);
    const query = shapeQuery(parts.query, plan.queryRules, plan.freeFormQuery);
    const parameters: Record<string, unknown> = {
      path: parts.params,
      query,
      header: plan.headerParams ? { ...parts.headers } : parts.headers,
      cookie: {},
      requestBody: parts.body,
    };
    let errors: ErrorObject[] | null = null;
    for (const validate of plan.validators) {
      if (!validate(parameters) && validate.errors) (errors ??= []).push(...validate.errors);
    }
    return { errors, query: parameters.query as Record<string, any>, params: parameters.path as Record<string, string> };
  }
}

/** openapi-backend's query normalisation (router.parseRequest + validateRequest), for the
 *  parameter styles the spec uses: JSON-content values parsed, non-exploded lists split
 *  on their delimiter, single values of array parameters wrapped.
 *  One deliberate difference: names the operation does not declare are dropped, not
 *  rejected, so a newer client's filter does not break an older server (decision D17). */
function shapeQuery(input: Record<string, unknown>, rules: Map<string, QueryRule>, freeForm: boolean): Record<string, unknown> {
  // entries + fromEntries: a parameter named __proto__ becomes a plain own property
  const out: [string, unknown][] = [];
  for (const name in input) {
    let value = input[name];
    const rule = rules.get(name);
    if (!rule && !freeForm) continue;
    if (rule && value) {
      if (rule.json) {
        // unparseable JSON stays a string and fails the schema (a 400, not a throw)
        if (typeof value === 'string') { try { value = JSON.parse(value); } catch { /* keep */ } }
      } else if (rule.nonExploded && !(Array.isArray(value) && value.length > 1)) {
        const first = Array.isArray(value) ? value[0] : value;
        if (typeof first === 'string') {
          let decoded = first.replace(/%2C/g, ',');
          if (rule.style === 'spaceDelimited') decoded = decoded.replace(/ /g, ',').replace(/%20/g, ',');
          if (rule.style === 'pipeDelimited') decoded = decoded.replace(/\|/g, ',').replace(/%7C/g, ',');
          value = decoded.split(',');
        }
      }
    }
    if (rule?.array && typeof value === 'string') value = [value];
    out.push([name, Array.isArray(value) ? [...value] : value]);
  }
  return Object.fromEntries(out);
}
