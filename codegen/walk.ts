// Visit every JSON Schema node of an OpenAPI 3.1 document (components and paths), with the
// option to replace a node. Children are visited before their parent (post-order).
import { HTTP_METHODS, isObject, type JsonObject } from './util';

export interface SchemaContext {
  /** JSON pointer of the node, e.g. '#/components/schemas/Action/properties/kind'. */
  pointer: string;
  /** Set when the node is itself a named schema under components.schemas. */
  componentName?: string;
}

/** Return a replacement node, or undefined to keep the (possibly mutated) node. */
export type SchemaVisitor = (schema: JsonObject, ctx: SchemaContext) => JsonObject | void;

const SCHEMA_MAPS = ['properties', 'patternProperties', '$defs', 'dependentSchemas'] as const;
const SCHEMA_SINGLES = [
  'additionalProperties',
  'items',
  'not',
  'if',
  'then',
  'else',
  'contains',
  'propertyNames',
  'unevaluatedProperties',
  'unevaluatedItems',
  'contentSchema',
] as const;
const SCHEMA_LISTS = ['allOf', 'anyOf', 'oneOf', 'prefixItems'] as const;

const esc = (k: string) => k.replace(/~/g, '~0').replace(/\//g, '~1');

function walkSchema(node: unknown, ctx: SchemaContext, visit: SchemaVisitor): unknown {
  if (!isObject(node)) return node; // boolean schemas
  for (const key of SCHEMA_MAPS) {
    const m = node[key];
    if (isObject(m)) {
      for (const name of Object.keys(m)) {
        m[name] = walkSchema(m[name], { pointer: `${ctx.pointer}/${key}/${esc(name)}` }, visit);
      }
    }
  }
  for (const key of SCHEMA_SINGLES) {
    const v = node[key];
    if (Array.isArray(v)) node[key] = v.map((s, i) => walkSchema(s, { pointer: `${ctx.pointer}/${key}/${i}` }, visit));
    else if (isObject(v)) node[key] = walkSchema(v, { pointer: `${ctx.pointer}/${key}` }, visit);
  }
  for (const key of SCHEMA_LISTS) {
    const v = node[key];
    if (Array.isArray(v)) node[key] = v.map((s, i) => walkSchema(s, { pointer: `${ctx.pointer}/${key}/${i}` }, visit));
  }
  return visit(node, ctx) ?? node;
}

function walkContent(content: unknown, pointer: string, visit: SchemaVisitor): void {
  if (!isObject(content)) return;
  for (const [media, mt] of Object.entries(content)) {
    if (isObject(mt) && 'schema' in mt) mt.schema = walkSchema(mt.schema, { pointer: `${pointer}/${esc(media)}/schema` }, visit);
  }
}

/** Parameter or header object (not a reference object). */
function walkParamLike(p: unknown, pointer: string, visit: SchemaVisitor): void {
  if (!isObject(p) || '$ref' in p) return;
  if ('schema' in p) p.schema = walkSchema(p.schema, { pointer: `${pointer}/schema` }, visit);
  walkContent(p.content, `${pointer}/content`, visit);
}

function walkResponse(r: unknown, pointer: string, visit: SchemaVisitor): void {
  if (!isObject(r) || '$ref' in r) return;
  if (isObject(r.headers)) for (const [h, hv] of Object.entries(r.headers)) walkParamLike(hv, `${pointer}/headers/${esc(h)}`, visit);
  walkContent(r.content, `${pointer}/content`, visit);
}

function walkRequestBody(b: unknown, pointer: string, visit: SchemaVisitor): void {
  if (!isObject(b) || '$ref' in b) return;
  walkContent(b.content, `${pointer}/content`, visit);
}

export function walkDocumentSchemas(doc: JsonObject, visit: SchemaVisitor): void {
  const c = doc.components;
  if (isObject(c)) {
    if (isObject(c.schemas)) {
      for (const name of Object.keys(c.schemas)) {
        const pointer = `#/components/schemas/${esc(name)}`;
        const top = c.schemas[name];
        // Walk children with plain contexts, then visit the named schema itself with its name.
        c.schemas[name] = walkSchema(top, { pointer, componentName: name }, visit);
      }
    }
    for (const [name, p] of Object.entries(c.parameters ?? {})) walkParamLike(p, `#/components/parameters/${esc(name)}`, visit);
    for (const [name, h] of Object.entries(c.headers ?? {})) walkParamLike(h, `#/components/headers/${esc(name)}`, visit);
    for (const [name, r] of Object.entries(c.responses ?? {})) walkResponse(r, `#/components/responses/${esc(name)}`, visit);
    for (const [name, b] of Object.entries(c.requestBodies ?? {})) walkRequestBody(b, `#/components/requestBodies/${esc(name)}`, visit);
  }
  for (const [path, item] of Object.entries<JsonObject>(doc.paths ?? {})) {
    if (!isObject(item)) continue;
    const base = `#/paths/${esc(path)}`;
    (item.parameters ?? []).forEach((p: unknown, i: number) => walkParamLike(p, `${base}/parameters/${i}`, visit));
    for (const method of HTTP_METHODS) {
      const op = item[method];
      if (!isObject(op)) continue;
      const opPtr = `${base}/${method}`;
      (op.parameters ?? []).forEach((p: unknown, i: number) => walkParamLike(p, `${opPtr}/parameters/${i}`, visit));
      walkRequestBody(op.requestBody, `${opPtr}/requestBody`, visit);
      for (const [code, r] of Object.entries(op.responses ?? {})) walkResponse(r, `${opPtr}/responses/${esc(code)}`, visit);
    }
  }
}

/** Visit every `$ref` string anywhere in a JSON tree (schema or not), allowing it to be rewritten. */
export function rewriteRefs(node: unknown, fn: (ref: string, pointer: string) => string): void {
  const rec = (n: unknown, pointer: string) => {
    if (Array.isArray(n)) n.forEach((x, i) => rec(x, `${pointer}/${i}`));
    else if (isObject(n)) {
      for (const [k, v] of Object.entries(n)) {
        if (k === '$ref' && typeof v === 'string') n[k] = fn(v, pointer);
        else rec(v, `${pointer}/${esc(k)}`);
      }
    }
  };
  rec(node, '#');
}
