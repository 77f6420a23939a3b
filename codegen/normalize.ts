// Rewrite a merged OpenAPI 3.1 document into the subset that openapi-backend 5 accepts.
//
// openapi-backend checks definitions against the OpenAPI *3.0* meta-schema (openapi-schema-validator,
// {version: 3}); request validation itself runs on Ajv 2020-12 (see codegen/ajv.ts). Every rewrite
// here keeps the document valid OpenAPI 3.1 with the same validation meaning:
//   {$ref, ...siblings}        -> {allOf: [{$ref}], ...siblings}   (schema positions)
//   {$ref, summary/description} -> {$ref}                           (non-schema reference objects)
//   const: v                   -> enum: [v]
//   type: [T, 'null', ...]     -> anyOf: [{type: T}, {type: 'null'}, ...] (other keywords stay beside it)
//   examples: [...]            -> x-examples
//   boolean subschemas         -> {} / {not: {}}
//   info.summary, license.identifier -> x-summary, x-identifier
// Any other keyword outside that meta-schema is an error, so nothing is dropped silently.
import { isObject, type JsonObject } from './util';
import { walkDocumentSchemas } from './walk';

/** Keywords the OpenAPI 3.0 Schema Object (as checked by openapi-backend) allows, besides x-*. */
const SCHEMA_KEYWORDS = new Set([
  'nullable', 'discriminator', 'readOnly', 'writeOnly', 'xml', 'externalDocs', 'example', 'deprecated',
  'title', 'multipleOf', 'maximum', 'exclusiveMaximum', 'minimum', 'exclusiveMinimum', 'maxLength',
  'minLength', 'pattern', 'maxItems', 'minItems', 'uniqueItems', 'maxProperties', 'minProperties',
  'required', 'enum', 'type', 'allOf', 'oneOf', 'anyOf', 'not', 'items', 'properties',
  'additionalProperties', 'default', 'description', 'format',
]);
const RENAMED_SCHEMA_KEYWORDS: Record<string, string> = { examples: 'x-examples', $comment: 'x-comment' };

export interface NormalizeChange {
  pointer: string;
  change: string;
}

export function normalizeForValidator(input: JsonObject): { doc: JsonObject; changes: NormalizeChange[] } {
  const doc = structuredClone(input);
  const changes: NormalizeChange[] = [];
  const errors: string[] = [];
  const record = (pointer: string, change: string) => changes.push({ pointer, change });

  walkDocumentSchemas(doc, (node, { pointer }) => {
    for (const key of ['properties', 'patternProperties']) {
      if (isObject(node[key])) for (const [k, v] of Object.entries(node[key])) node[key][k] = booleanSchema(v, `${pointer}/${key}/${k}`, record);
    }
    for (const key of ['allOf', 'anyOf', 'oneOf']) {
      if (Array.isArray(node[key])) node[key] = node[key].map((v: unknown, i: number) => booleanSchema(v, `${pointer}/${key}/${i}`, record));
    }
    for (const key of ['items', 'not']) if (typeof node[key] === 'boolean') node[key] = booleanSchema(node[key], `${pointer}/${key}`, record);

    let out: JsonObject = node;
    if (typeof out.$ref === 'string' && Object.keys(out).length > 1) {
      const { $ref, ...siblings } = out;
      out = { allOf: [{ $ref }], ...siblings };
      record(pointer, `$ref with ${Object.keys(siblings).join('/')} -> allOf`);
    }
    if ('const' in out) {
      if ('enum' in out) errors.push(`${pointer}: both const and enum`);
      const { const: c, ...rest } = out;
      out = { ...rest, enum: [c] };
      record(pointer, 'const -> enum');
    }
    if (Array.isArray(out.type)) {
      const { type, ...rest } = out;
      if ('anyOf' in rest) errors.push(`${pointer}: type array next to anyOf`);
      out = { anyOf: (type as string[]).map((t) => ({ type: t })), ...rest };
      record(pointer, `type [${type.join(', ')}] -> anyOf`);
    }
    for (const [from, to] of Object.entries(RENAMED_SCHEMA_KEYWORDS)) {
      if (from in out) {
        const { [from]: v, ...rest } = out;
        out = { ...rest, [to]: v };
        record(pointer, `${from} -> ${to}`);
      }
    }
    for (const k of Object.keys(out)) {
      if (k !== '$ref' && !k.startsWith('x-') && !SCHEMA_KEYWORDS.has(k)) errors.push(`${pointer}: keyword ${k} has no OpenAPI 3.0 equivalent`);
    }
    return out;
  });

  // Reference objects outside schemas may not carry siblings in 3.0.
  stripReferenceSiblings(doc, '#', false, record);

  if (isObject(doc.info)) {
    moveKey(doc.info, 'summary', 'x-summary', '#/info', record);
    if (isObject(doc.info.license)) moveKey(doc.info.license, 'identifier', 'x-identifier', '#/info/license', record);
  }
  for (const k of ['webhooks', 'jsonSchemaDialect']) if (k in doc) errors.push(`#/${k}: not supported by the validator`);
  if (isObject(doc.components) && 'pathItems' in doc.components) errors.push('#/components/pathItems: not supported by the validator');

  if (errors.length) throw new Error(`normalizeForValidator:\n  ${errors.join('\n  ')}`);
  return { doc, changes };
}

function booleanSchema(v: unknown, pointer: string, record: (p: string, c: string) => void): unknown {
  if (typeof v !== 'boolean') return v;
  record(pointer, `boolean schema ${v} -> ${v ? '{}' : '{not: {}}'}`);
  return v ? {} : { not: {} };
}

function moveKey(o: JsonObject, from: string, to: string, pointer: string, record: (p: string, c: string) => void) {
  if (!(from in o)) return;
  const entries = Object.entries(o).map(([k, v]) => (k === from ? [to, v] : [k, v]));
  for (const k of Object.keys(o)) delete o[k];
  Object.assign(o, Object.fromEntries(entries));
  record(pointer, `${from} -> ${to}`);
}

/** After the schema pass, any `$ref` still carrying siblings is a non-schema Reference Object. */
function stripReferenceSiblings(n: unknown, pointer: string, inExtension: boolean, record: (p: string, c: string) => void) {
  if (Array.isArray(n)) return n.forEach((x, i) => stripReferenceSiblings(x, `${pointer}/${i}`, inExtension, record));
  if (!isObject(n)) return;
  if (!inExtension && typeof n.$ref === 'string' && Object.keys(n).length > 1) {
    const dropped = Object.keys(n).filter((k) => k !== '$ref');
    for (const k of dropped) delete n[k];
    record(pointer, `reference object: dropped ${dropped.join('/')}`);
  }
  for (const [k, v] of Object.entries(n)) {
    // Skip vendor extensions and literal example data.
    const skip = inExtension || k.startsWith('x-') || k === 'example' || k === 'examples' || k === 'default' || k === 'enum';
    stripReferenceSiblings(v, `${pointer}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`, skip, record);
  }
}
