// Merge the companion specs into one OpenAPI document per plane, following the merge_recipes of
// cycles-spec-index.yaml (see docs/codegen.md for the rules and where we differ from upstream's
// pre-built merged/ files).
import type { Bundle, SpecRole } from './bundle';
import { clone, deepEqual, isObject, operationsOf, resolvePointer, schemaRef, type JsonObject } from './util';
import { rewriteRefs, walkDocumentSchemas } from './walk';

export type Plane = 'runtime' | 'admin';
export type Feature = 'base' | 'v0.1.26';
/** The spec index's include modes: 'all' | 'schemas_and_enum_extensions_only' (schemas, no paths). */
export type IncludeMode = 'all' | 'schemas_and_enum_extensions_only';

export interface RecipeSource {
  role: SpecRole;
  file: string;
  include: IncludeMode;
}

export interface PlaneRecipe {
  plane: Plane;
  recipeId: string;
  sources: RecipeSource[];
}

export interface MergeNote {
  plane: Plane;
  kind: 'component-conflict' | 'schema-fold' | 'enum-fold' | 'operation-fold' | 'companion-ref' | 'skipped';
  detail: string;
}

export interface MergedDocuments {
  runtime: JsonObject;
  admin: JsonObject;
  /** The v0.1.25 base document of each plane (its recipe's first source, annotated like the
   *  merged one): what the server routes and validates against with the v0.1.26 flag off. */
  base: Record<Plane, JsonObject>;
  recipes: PlaneRecipe[];
  notes: MergeNote[];
}

/** Which spec-index recipe produces which plane. */
const RECIPE_FOR_PLANE: Record<Plane, string> = { runtime: 'protocol_merged', admin: 'admin_merged' };

/** Roles whose content is the v0.1.25 base; everything else merged in is the v0.1.26 feature set. */
const BASE_ROLES: readonly SpecRole[] = ['runtime_base', 'governance_base'];

const OPERATION_ANNOTATIONS = {
  sourceSpec: 'x-cycles-source-spec',
  specVersion: 'x-cycles-spec-version',
  feature: 'x-cycles-feature',
  mergedFrom: 'x-cycles-merged-from',
} as const;
export { OPERATION_ANNOTATIONS };

export function featureOf(role: SpecRole): Feature {
  return BASE_ROLES.includes(role) ? 'base' : 'v0.1.26';
}

/** Read merge_recipes from cycles-spec-index.yaml and map document ids onto manifest roles. */
export function planRecipes(bundle: Bundle): PlaneRecipe[] {
  const index = bundle.get('spec_index').data as JsonObject;
  const docs = new Map<string, string>();
  for (const d of index.documents ?? []) docs.set(d.id, d.file);
  const roleOfFile = new Map(bundle.files.map((f) => [f.name, f.role]));

  return (Object.keys(RECIPE_FOR_PLANE) as Plane[]).map((plane) => {
    const recipeId = RECIPE_FOR_PLANE[plane];
    const recipe = (index.merge_recipes ?? []).find((r: JsonObject) => r.id === recipeId);
    if (!recipe) throw new Error(`cycles-spec-index.yaml: merge recipe ${recipeId} not found`);
    const sources = (recipe.sources as JsonObject[]).map((s): RecipeSource => {
      const file = docs.get(s.document);
      if (!file) throw new Error(`cycles-spec-index.yaml: recipe ${recipeId} names unknown document ${s.document}`);
      const role = roleOfFile.get(file);
      if (!role) throw new Error(`cycles-spec-index.yaml: ${file} (document ${s.document}) is not pinned in specs/manifest.json`);
      if (role !== s.document) throw new Error(`manifest role ${role} for ${file} differs from spec-index id ${s.document}`);
      const include = s.include as IncludeMode;
      if (include !== 'all' && include !== 'schemas_and_enum_extensions_only') {
        throw new Error(`cycles-spec-index.yaml: recipe ${recipeId}: unsupported include mode ${s.include}`);
      }
      return { role, file, include };
    });
    if (sources[0]?.include !== 'all' || !BASE_ROLES.includes(sources[0].role)) {
      throw new Error(`recipe ${recipeId}: first source must be a base document included in full`);
    }
    return { plane, recipeId, sources };
  });
}

export function mergeBundle(bundle: Bundle): MergedDocuments {
  const notes: MergeNote[] = [];
  const recipes = planRecipes(bundle);
  const [runtimeRecipe, adminRecipe] = recipes;
  return {
    runtime: mergePlane(bundle, runtimeRecipe, notes),
    admin: mergePlane(bundle, adminRecipe, notes),
    base: { runtime: basePlane(bundle, runtimeRecipe), admin: basePlane(bundle, adminRecipe) },
    recipes,
    notes,
  };
}

/** The recipe's base document alone, annotated like the merged one. */
function basePlane(bundle: Bundle, recipe: PlaneRecipe): JsonObject {
  const src = recipe.sources[0];
  const doc = sourceDoc(bundle, src.role);
  const ctx: Ctx = { bundle, plane: recipe.plane, notes: [], fileNames: new Set(bundle.files.map((f) => f.name)) };
  localiseExternalRefs(ctx, doc, src.file);
  annotateOperations(doc, bundle, src);
  assertLocalRefsResolve(doc, `${recipe.plane} base document`);
  return doc;
}

// ---------------------------------------------------------------------------

interface Ctx {
  bundle: Bundle;
  plane: Plane;
  notes: MergeNote[];
  fileNames: Set<string>;
}

function note(ctx: Ctx, kind: MergeNote['kind'], detail: string) {
  ctx.notes.push({ plane: ctx.plane, kind, detail });
}

function sourceDoc(bundle: Bundle, role: SpecRole): JsonObject {
  const data = bundle.get(role).data;
  if (!isObject(data) || typeof data.openapi !== 'string') throw new Error(`${bundle.get(role).name} is not an OpenAPI document`);
  return clone(data);
}

function mergePlane(bundle: Bundle, recipe: PlaneRecipe, notes: MergeNote[]): JsonObject {
  const ctx: Ctx = { bundle, plane: recipe.plane, notes, fileNames: new Set(bundle.files.map((f) => f.name)) };
  const [baseSrc, ...rest] = recipe.sources;

  // Every schema name the plane will carry, with its definition (first source wins).
  const universe = new Map<string, JsonObject>();
  const docs = new Map<SpecRole, JsonObject>();
  for (const src of recipe.sources) {
    const d = sourceDoc(bundle, src.role);
    localiseExternalRefs(ctx, d, src.file);
    docs.set(src.role, d);
    for (const [name, s] of Object.entries<JsonObject>(d.components?.schemas ?? {})) if (!universe.has(name)) universe.set(name, s);
  }
  // Companion specs mirror each other's types in prose or inline; turn those into local $refs.
  for (const src of rest) upgradeCompanionReferences(ctx, docs.get(src.role)!, src, universe);

  const merged = docs.get(baseSrc.role)!;
  annotateOperations(merged, bundle, baseSrc);

  for (const src of rest) {
    const doc = docs.get(src.role)!;
    const sections = src.include === 'all' ? Object.keys(doc.components ?? {}) : ['schemas'];
    for (const section of sections) addComponents(ctx, merged, doc, section, src.file);
    if (src.include === 'all') {
      annotateOperations(doc, bundle, src);
      addPaths(ctx, merged, doc, src.file);
      addTags(merged, doc);
      for (const [k, v] of Object.entries(doc)) if (k.startsWith('x-') && !(k in merged)) merged[k] = v;
    } else if (Object.keys(doc.paths ?? {}).length) {
      note(ctx, 'skipped', `${src.file}: paths not included (include: ${src.include})`);
    }
    foldSchemaExtensions(ctx, merged, doc, src);
  }

  merged.info = {
    ...merged.info,
    'x-cycles-merged-sources': recipe.sources.map((s) => {
      const f = bundle.get(s.role);
      return { file: f.name, role: s.role, version: String((f.data as JsonObject).info?.version ?? ''), include: s.include, sha256: f.sha256 };
    }),
  };
  assertLocalRefsResolve(merged, `${recipe.plane} document`);
  return merged;
}

// --- references -------------------------------------------------------------

/** `<bundle file>#/x` → `#/x` (the target is merged into the same document); other external refs are errors. */
function localiseExternalRefs(ctx: Ctx, doc: JsonObject, file: string) {
  rewriteRefs(doc, (ref, pointer) => {
    if (ref.startsWith('#')) return ref;
    const [target, fragment = ''] = ref.split('#');
    const name = target.replace(/^\.\//, '');
    if (!ctx.fileNames.has(name) || !fragment.startsWith('/')) {
      throw new Error(`${file} ${pointer}: external $ref ${ref} does not point into a pinned bundle file`);
    }
    note(ctx, 'companion-ref', `${file} ${pointer}: $ref ${ref} -> #${fragment}`);
    return `#${fragment}`;
  });
}

const PROSE_REF = /\bSee\s+([A-Z][A-Za-z0-9]*)\s+in\s+(cycles-[A-Za-z0-9.-]+\.ya?ml)\b/;
const PLACEHOLDER_KEYS = new Set(['type', 'description', 'title', 'example', 'examples', 'default']);

/**
 * Companion specs refer to each other's schemas without $ref:
 *  - a bare `{type: object, description: "See ActionQuota in cycles-action-kinds-...yaml"}` placeholder;
 *  - an inline string enum mirroring a named enum (e.g. observe_mode ↔ ObserveModeEnum).
 * Once merged into one document these become `$ref`s to the named schema. Enum mirrors are only
 * replaced when exactly one named enum has the identical value set, so validation is unchanged.
 */
function upgradeCompanionReferences(ctx: Ctx, doc: JsonObject, src: RecipeSource, universe: Map<string, JsonObject>) {
  const mirrorsEnums = src.role !== 'action_kinds'; // action kinds declares it imports nothing
  const namedEnums = [...universe].filter(([, s]) => s.type === 'string' && Array.isArray(s.enum));
  walkDocumentSchemas(doc, (node, { pointer, componentName }) => {
    if (componentName) return;
    if (node.type === 'object' && typeof node.description === 'string' && Object.keys(node).every((k) => PLACEHOLDER_KEYS.has(k))) {
      const m = PROSE_REF.exec(node.description);
      if (m && universe.has(m[1]) && ctx.fileNames.has(m[2])) {
        note(ctx, 'companion-ref', `${src.file} ${pointer}: placeholder "See ${m[1]} in ${m[2]}" -> $ref ${m[1]}`);
        return { $ref: schemaRef(m[1]), description: node.description };
      }
    }
    if (mirrorsEnums && node.type === 'string' && Array.isArray(node.enum) && node.enum.length > 1 && !('$ref' in node)) {
      const want = [...node.enum].map(String).sort();
      const hits = namedEnums.filter(([, s]) => deepEqual([...s.enum].map(String).sort(), want));
      if (hits.length === 1) {
        const [name] = hits[0];
        const { type: _t, enum: _e, ...rest } = node;
        note(ctx, 'companion-ref', `${src.file} ${pointer}: inline enum mirrors ${name} -> $ref ${name}`);
        return { $ref: schemaRef(name), ...rest };
      }
    }
  });
}

function assertLocalRefsResolve(doc: JsonObject, label: string) {
  const bad: string[] = [];
  rewriteRefs(doc, (ref, pointer) => {
    if (resolvePointer(doc, ref) === undefined) bad.push(`${pointer}: ${ref}`);
    return ref;
  });
  if (bad.length) throw new Error(`${label}: unresolved $ref(s):\n  ${bad.join('\n  ')}`);
}

// --- components, paths, tags --------------------------------------------------

function addComponents(ctx: Ctx, merged: JsonObject, doc: JsonObject, section: string, file: string) {
  const from = doc.components?.[section];
  if (!isObject(from)) return;
  merged.components ??= {};
  const into: JsonObject = (merged.components[section] ??= {});
  for (const [name, value] of Object.entries(from)) {
    if (!(name in into)) into[name] = value;
    else if (!deepEqual(stripDocs(into[name]), stripDocs(value))) {
      note(ctx, 'component-conflict', `components.${section}.${name}: ${file} differs from the base definition; base kept`);
    }
  }
}

/** Compare definitions ignoring prose (description/example/summary). */
function stripDocs(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripDocs);
  if (!isObject(v)) return v;
  const out: JsonObject = {};
  for (const [k, x] of Object.entries(v)) if (k !== 'description' && k !== 'example' && k !== 'summary') out[k] = stripDocs(x);
  return out;
}

function annotateOperations(doc: JsonObject, bundle: Bundle, src: RecipeSource) {
  const f = bundle.get(src.role);
  for (const { op } of operationsOf(doc)) {
    op[OPERATION_ANNOTATIONS.sourceSpec] = f.name;
    op[OPERATION_ANNOTATIONS.specVersion] = String((f.data as JsonObject).info?.version ?? '');
    op[OPERATION_ANNOTATIONS.feature] = featureOf(src.role);
  }
}

function addPaths(ctx: Ctx, merged: JsonObject, doc: JsonObject, file: string) {
  merged.paths ??= {};
  for (const { path, method, op } of operationsOf(doc)) {
    const item: JsonObject = (merged.paths[path] ??= {});
    if (!item[method]) {
      item[method] = op;
      continue;
    }
    foldOperation(ctx, merged, item[method], op, `${method.toUpperCase()} ${path}`, file);
  }
  for (const [path, item] of Object.entries<JsonObject>(doc.paths ?? {})) {
    if (Array.isArray(item.parameters) && !merged.paths[path].parameters) merged.paths[path].parameters = item.parameters;
  }
}

function addTags(merged: JsonObject, doc: JsonObject) {
  if (!Array.isArray(doc.tags)) return;
  merged.tags ??= [];
  const have = new Set(merged.tags.map((t: JsonObject) => t.name));
  for (const t of doc.tags) if (!have.has(t.name)) merged.tags.push(t);
}

/**
 * An extension re-declares an existing base operation to document an extended body
 * (updateTenantObserveMode over updateTenant, ...). Keep the base operation (its operationId,
 * parameters, security, responses) and add the extension's request-body properties to it.
 */
function foldOperation(ctx: Ctx, merged: JsonObject, base: JsonObject, ext: JsonObject, where: string, file: string) {
  const label = `${where}: ${ext.operationId} (${file}) folded into ${base.operationId}`;
  const added: string[] = [];
  for (const [media, mt] of Object.entries<JsonObject>(ext.requestBody?.content ?? {})) {
    const baseMt = base.requestBody?.content?.[media];
    if (!baseMt?.schema) {
      base.requestBody ??= { content: {} };
      base.requestBody.content[media] = mt;
      added.push(`body ${media}`);
      continue;
    }
    const target = derefSchema(merged, baseMt.schema);
    for (const member of flattenAllOf(merged, mt.schema)) {
      for (const [prop, def] of Object.entries<JsonObject>(member.properties ?? {})) {
        target.properties ??= {};
        if (!(prop in target.properties)) {
          target.properties[prop] = clone(def);
          added.push(prop);
        }
      }
    }
  }
  for (const [code, resp] of Object.entries(ext.responses ?? {})) {
    if (!base.responses?.[code]) {
      base.responses[code] = resp;
      added.push(`response ${code}`);
    }
  }
  if (!deepEqual(base.security, ext.security)) note(ctx, 'operation-fold', `${label}: security differs; base kept`);
  if (base['x-conformance'] !== ext['x-conformance']) {
    note(ctx, 'operation-fold', `${label}: x-conformance ${ext['x-conformance']} on the extension, ${base['x-conformance']} on the base; base kept`);
  }
  const mergedFrom: string[] = (base[OPERATION_ANNOTATIONS.mergedFrom] ??= []);
  mergedFrom.push(ext.operationId);
  note(ctx, 'operation-fold', `${label}; added ${added.join(', ') || 'nothing'}`);
}

function derefSchema(doc: JsonObject, s: JsonObject): JsonObject {
  let cur = s;
  for (let i = 0; i < 16 && typeof cur?.$ref === 'string' && Object.keys(cur).length === 1; i++) {
    cur = resolvePointer(doc, cur.$ref) as JsonObject;
  }
  if (!isObject(cur)) throw new Error(`cannot dereference ${JSON.stringify(s)}`);
  return cur;
}

function flattenAllOf(doc: JsonObject, s: JsonObject): JsonObject[] {
  const node = derefSchema(doc, s);
  return Array.isArray(node.allOf) ? node.allOf.flatMap((m: JsonObject) => flattenAllOf(doc, m)) : [node];
}

// --- schema extensions ------------------------------------------------------------

/**
 * `<Name>Extension` schemas extend the base schema `<Name>`:
 *  - enums: add the values the extension introduces (its enum minus every base document's `<Name>`);
 *  - objects: add properties (recursively), union `required` — only for `include: all`.
 */
function foldSchemaExtensions(ctx: Ctx, merged: JsonObject, doc: JsonObject, src: RecipeSource) {
  const targets: JsonObject = merged.components?.schemas ?? {};
  for (const [extName, ext] of Object.entries<JsonObject>(doc.components?.schemas ?? {})) {
    const m = /^(.+)Extension$/.exec(extName);
    if (!m) continue;
    const name = m[1];
    const target = targets[name];
    const where = `${src.file} ${extName}`;
    if (!isObject(target)) {
      note(ctx, 'skipped', `${where}: no ${name} schema in this document; extension kept as a standalone schema`);
      continue;
    }
    if (Array.isArray(ext.enum)) {
      if (!Array.isArray(target.enum)) throw new Error(`${where}: enum extension but ${name} is not an enum`);
      const baseValues = new Set<unknown>();
      for (const role of BASE_ROLES) {
        const b = (ctx.bundle.get(role).data as JsonObject).components?.schemas?.[name];
        for (const v of b?.enum ?? []) baseValues.add(v);
      }
      const newValues = ext.enum.filter((v: unknown) => !baseValues.has(v));
      const added = newValues.filter((v: unknown) => !target.enum.includes(v));
      target.enum.push(...added);
      note(ctx, 'enum-fold', `${where} -> ${name}: +${added.join(', +') || ' (none)'}`);
      continue;
    }
    if (src.include !== 'all') {
      note(ctx, 'skipped', `${where}: object extension not folded into ${name} (include: ${src.include})`);
      continue;
    }
    const added: string[] = [];
    foldObject(ctx, target, ext, name, added);
    note(ctx, 'schema-fold', `${where} -> ${name}: +${added.join(', +') || ' (none)'}`);
  }
}

function foldObject(ctx: Ctx, target: JsonObject, ext: JsonObject, path: string, added: string[], prefix = '') {
  for (const [prop, def] of Object.entries<JsonObject>(ext.properties ?? {})) {
    target.properties ??= {};
    const have = target.properties[prop];
    if (have === undefined) {
      target.properties[prop] = clone(def);
      added.push(prefix + prop);
    } else if (isObject(have) && !('$ref' in have) && isObject(def.properties)) {
      foldObject(ctx, have, def, `${path}.${prop}`, added, `${prefix}${prop}.`);
    } else if (!deepEqual(stripDocs(have), stripDocs(def))) {
      note(ctx, 'component-conflict', `${path}.${prop}: extension definition differs from base; base kept`);
    }
  }
  if (Array.isArray(ext.required) && ext.required.length) {
    target.required = [...new Set([...(target.required ?? []), ...ext.required])];
  }
}
