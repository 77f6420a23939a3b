// What changed between two generations of the plane documents (`npm run codegen -- --pin DIR`,
// decision DB3): operations added and removed, request and response schema changes
// classified additive or breaking, enum values added and removed.
//
// Classification is from an existing client's point of view:
// - request side (parameters, request bodies): breaking when a request that was valid may
//   now be refused (a new required field or parameter, a removed property or enum value, a
//   tighter constraint, a changed type); additive when every valid request stays valid;
// - response side: breaking when a client may no longer get what it relied on (a removed
//   property or status, a property no longer required, a changed type); additive otherwise
//   (new properties, new statuses, newly required properties). A new enum value in a
//   response is listed as additive (clients switching on that enum need a default branch).
// A component schema used on both sides takes the worse class. Prose (description,
// examples) is ignored.
import type { Plane } from './merge';
import { isObject, type JsonObject } from './util';

export type ChangeClass = 'additive' | 'breaking';
export type Direction = 'request' | 'response';

export interface OperationChange {
  plane: Plane;
  operationId: string;
  method: string;
  path: string;
  change: 'added' | 'removed' | 'moved';
  /** for moved: where it was */
  from?: string;
}

export interface SchemaChange {
  plane: Plane;
  /** e.g. `ReservationCreateRequest.properties.priority` or `createReservation request body` */
  where: string;
  detail: string;
  class: ChangeClass;
  directions: Direction[];
}

export interface EnumChange {
  plane: Plane;
  where: string;
  added: unknown[];
  removed: unknown[];
}

export interface SpecDiff {
  operations: OperationChange[];
  schemas: SchemaChange[];
  enums: EnumChange[];
  breaking: number;
  additive: number;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

interface Op { operationId: string; method: string; path: string; op: JsonObject }

function operationsOf(doc: JsonObject): Map<string, Op> {
  const out = new Map<string, Op>();
  const paths = isObject(doc.paths) ? doc.paths : {};
  for (const [p, item] of Object.entries(paths)) {
    if (!isObject(item)) continue;
    for (const m of METHODS) {
      const op = item[m];
      if (!isObject(op) || typeof op.operationId !== 'string') continue;
      // path-level parameters apply to every operation under the path
      const params = [...(Array.isArray(item.parameters) ? item.parameters : []), ...(Array.isArray(op.parameters) ? op.parameters : [])];
      out.set(op.operationId, { operationId: op.operationId, method: m, path: p, op: { ...op, parameters: params } });
    }
  }
  return out;
}

class Differ {
  readonly schemas = new Map<string, SchemaChange>();
  readonly enums = new Map<string, EnumChange>();
  private readonly seen = new Set<string>();

  constructor(private readonly plane: Plane, private readonly a: JsonObject, private readonly b: JsonObject) {}

  private note(where: string, detail: string, cls: ChangeClass, dir: Direction): void {
    const key = `${where}\u0000${detail}`;
    const prev = this.schemas.get(key);
    if (!prev) {
      this.schemas.set(key, { plane: this.plane, where, detail, class: cls, directions: [dir] });
      return;
    }
    if (!prev.directions.includes(dir)) prev.directions.push(dir);
    if (cls === 'breaking') prev.class = 'breaking';
  }

  private resolve(doc: JsonObject, s: unknown): { schema: JsonObject; ref?: string } {
    let ref: string | undefined;
    let cur = s;
    for (let i = 0; i < 20 && isObject(cur) && typeof cur.$ref === 'string'; i++) {
      ref = cur.$ref;
      cur = ref.replace(/^#\//, '').split('/').reduce<unknown>((o, k) => (isObject(o) ? o[k.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
    }
    // a {allOf: [{$ref}]} wrapper (the normaliser's way of keeping $ref siblings) is its target
    if (isObject(cur) && Array.isArray(cur.allOf) && cur.allOf.length === 1 && isObject(cur.allOf[0]) && typeof cur.allOf[0].$ref === 'string' && !cur.properties && !cur.type) {
      return this.resolve(doc, cur.allOf[0]);
    }
    return { schema: isObject(cur) ? cur : {}, ref };
  }

  /** Compare schema `x` (old document) with `y` (new) at `where`, seen from `dir`. */
  schema(x: unknown, y: unknown, where: string, dir: Direction): void {
    const ra = this.resolve(this.a, x);
    const rb = this.resolve(this.b, y);
    // a named component is reported under its own name, once per direction
    if (ra.ref && ra.ref === rb.ref) {
      where = ra.ref.split('/').pop()!;
      const key = `${where}\u0000${dir}`;
      if (this.seen.has(key)) return;
      this.seen.add(key);
    }
    const a = ra.schema;
    const b = rb.schema;
    const req = dir === 'request';

    const ta = typeKey(a);
    const tb = typeKey(b);
    if (ta !== tb) {
      // null newly allowed (or an untyped schema typed) is a widening for requests
      this.note(where, `type ${ta || 'any'} → ${tb || 'any'}`, req && widened(ta, tb) ? 'additive' : 'breaking', dir);
    }

    if (Array.isArray(a.enum) || Array.isArray(b.enum)) {
      const ea = Array.isArray(a.enum) ? a.enum : [];
      const eb = Array.isArray(b.enum) ? b.enum : [];
      const added = eb.filter((v) => !ea.some((w) => JSON.stringify(w) === JSON.stringify(v)));
      const removed = ea.filter((v) => !eb.some((w) => JSON.stringify(w) === JSON.stringify(v)));
      if (added.length || removed.length) {
        const e = this.enums.get(where) ?? { plane: this.plane, where, added: [], removed: [] };
        for (const v of added) if (!e.added.includes(v)) e.added.push(v);
        for (const v of removed) if (!e.removed.includes(v)) e.removed.push(v);
        this.enums.set(where, e);
        if (!Array.isArray(a.enum)) this.note(where, 'now restricted to an enum', req ? 'breaking' : 'additive', dir);
        else if (!Array.isArray(b.enum)) this.note(where, 'no longer restricted to an enum', req ? 'additive' : 'breaking', dir);
        else {
          if (added.length) this.note(where, `enum value${added.length > 1 ? 's' : ''} added: ${added.map(String).join(', ')}`, 'additive', dir);
          if (removed.length) this.note(where, `enum value${removed.length > 1 ? 's' : ''} removed: ${removed.map(String).join(', ')}`, 'breaking', dir);
        }
      }
    }

    // numeric and size bounds: a tighter bound refuses requests that passed before
    for (const [k, upper] of [['maximum', true], ['exclusiveMaximum', true], ['maxLength', true], ['maxItems', true], ['maxProperties', true],
      ['minimum', false], ['exclusiveMinimum', false], ['minLength', false], ['minItems', false], ['minProperties', false]] as const) {
      const va = typeof a[k] === 'number' ? (a[k] as number) : undefined;
      const vb = typeof b[k] === 'number' ? (b[k] as number) : undefined;
      if (va === vb) continue;
      const tighter = vb !== undefined && (va === undefined || (upper ? vb < va : vb > va));
      this.note(where, `${k} ${va ?? 'none'} → ${vb ?? 'none'}`, (tighter === req) ? 'breaking' : 'additive', dir);
    }
    for (const k of ['pattern', 'format', 'multipleOf', 'const'] as const) {
      if (JSON.stringify(a[k]) === JSON.stringify(b[k])) continue;
      const loosened = b[k] === undefined;
      this.note(where, `${k} ${JSON.stringify(a[k]) ?? 'none'} → ${JSON.stringify(b[k]) ?? 'none'}`, req && loosened ? 'additive' : req ? 'breaking' : loosened ? 'breaking' : 'additive', dir);
    }

    // object members
    const pa = isObject(a.properties) ? a.properties : {};
    const pb = isObject(b.properties) ? b.properties : {};
    const reqA = new Set(Array.isArray(a.required) ? (a.required as string[]) : []);
    const reqB = new Set(Array.isArray(b.required) ? (b.required as string[]) : []);
    for (const name of Object.keys(pb)) {
      if (name in pa) continue;
      const required = reqB.has(name);
      this.note(`${where}.${name}`, `property added (${required ? 'required' : 'optional'})`, req && required ? 'breaking' : 'additive', dir);
    }
    for (const name of Object.keys(pa)) {
      if (name in pb) continue;
      this.note(`${where}.${name}`, 'property removed', 'breaking', dir);
    }
    for (const name of Object.keys(pa)) {
      if (!(name in pb)) continue;
      if (!reqA.has(name) && reqB.has(name)) this.note(`${where}.${name}`, 'now required', req ? 'breaking' : 'additive', dir);
      if (reqA.has(name) && !reqB.has(name)) this.note(`${where}.${name}`, 'no longer required', req ? 'additive' : 'breaking', dir);
      this.schema(pa[name], pb[name], `${where}.${name}`, dir);
    }
    const apA = a.additionalProperties;
    const apB = b.additionalProperties;
    const closed = (v: unknown) => v === false || (isObject(v) && isObject(v.not));
    if (closed(apA) !== closed(apB)) {
      this.note(where, closed(apB) ? 'additional properties now refused' : 'additional properties now allowed', closed(apB) === req ? 'breaking' : 'additive', dir);
    } else if (isObject(apA) && isObject(apB) && !closed(apA)) {
      this.schema(apA, apB, `${where}{*}`, dir);
    }
    if (a.items !== undefined || b.items !== undefined) this.schema(a.items ?? {}, b.items ?? {}, `${where}[]`, dir);

    for (const k of ['allOf', 'anyOf', 'oneOf'] as const) {
      const la = Array.isArray(a[k]) ? (a[k] as unknown[]) : [];
      const lb = Array.isArray(b[k]) ? (b[k] as unknown[]) : [];
      if (la.length === lb.length) la.forEach((s, i) => this.schema(s, lb[i], `${where}.${k}[${i}]`, dir));
      else this.note(where, `${k} ${la.length} → ${lb.length} alternatives`, k === 'allOf' ? (lb.length > la.length === req ? 'breaking' : 'additive') : (lb.length > la.length === req ? 'additive' : 'breaking'), dir);
    }
  }

  operation(x: Op, y: Op): void {
    const id = x.operationId;
    // parameters
    const key = (p: JsonObject) => `${p.in}:${p.name}`;
    const params = (o: Op, doc: JsonObject) => new Map((o.op.parameters as unknown[]).map((p) => this.resolve(doc, p).schema).filter((p) => p.name).map((p) => [key(p), p]));
    const pa = params(x, this.a);
    const pb = params(y, this.b);
    for (const [k, p] of pb) {
      if (pa.has(k)) continue;
      this.note(`${id} parameter ${k}`, `parameter added (${p.required ? 'required' : 'optional'})`, p.required ? 'breaking' : 'additive', 'request');
    }
    for (const [k, p] of pa) {
      const q = pb.get(k);
      if (!q) {
        this.note(`${id} parameter ${k}`, 'parameter removed', 'breaking', 'request');
        continue;
      }
      if (!p.required && q.required) this.note(`${id} parameter ${k}`, 'now required', 'breaking', 'request');
      if (p.required && !q.required) this.note(`${id} parameter ${k}`, 'no longer required', 'additive', 'request');
      this.schema(p.schema ?? {}, q.schema ?? {}, `${id} parameter ${k}`, 'request');
    }
    // request body
    const body = (o: Op, doc: JsonObject) => (o.op.requestBody ? this.resolve(doc, o.op.requestBody).schema : undefined);
    const ba = body(x, this.a);
    const bb = body(y, this.b);
    if (!ba && bb) this.note(`${id} request body`, `request body added (${bb.required ? 'required' : 'optional'})`, bb.required ? 'breaking' : 'additive', 'request');
    else if (ba && !bb) this.note(`${id} request body`, 'request body removed', 'breaking', 'request');
    else if (ba && bb) {
      if (!ba.required && bb.required) this.note(`${id} request body`, 'now required', 'breaking', 'request');
      this.schema(jsonSchema(ba), jsonSchema(bb), `${id} request body`, 'request');
    }
    // responses
    const ra = isObject(x.op.responses) ? x.op.responses : {};
    const rb = isObject(y.op.responses) ? y.op.responses : {};
    for (const code of Object.keys(rb)) if (!(code in ra)) this.note(`${id} response ${code}`, 'response status added', 'additive', 'response');
    for (const code of Object.keys(ra)) {
      if (!(code in rb)) {
        this.note(`${id} response ${code}`, 'response status removed', 'breaking', 'response');
        continue;
      }
      const sa = jsonSchema(this.resolve(this.a, ra[code]).schema);
      const sb = jsonSchema(this.resolve(this.b, rb[code]).schema);
      if (sa !== undefined || sb !== undefined) this.schema(sa ?? {}, sb ?? {}, `${id} response ${code}`, 'response');
    }
    if (JSON.stringify(x.op.security ?? null) !== JSON.stringify(y.op.security ?? null)) {
      this.note(`${id} security`, `security ${JSON.stringify(x.op.security ?? 'document default')} → ${JSON.stringify(y.op.security ?? 'document default')}`, 'breaking', 'request');
    }
  }
}

/** The application/json (or first +json) schema of a request body or response object. */
function jsonSchema(o: JsonObject): unknown {
  const content = isObject(o.content) ? o.content : {};
  const k = Object.keys(content).find((c) => c === 'application/json') ?? Object.keys(content).find((c) => c.endsWith('+json'));
  const media = k ? content[k] : undefined;
  return isObject(media) ? media.schema : undefined;
}

/** A schema's type(s), null included from `type: [..]` or an anyOf with {type: null}. */
function typeKey(s: JsonObject): string {
  const types = new Set<string>();
  if (typeof s.type === 'string') types.add(s.type);
  if (Array.isArray(s.type)) for (const t of s.type) types.add(String(t));
  if (Array.isArray(s.anyOf)) for (const a of s.anyOf) if (isObject(a) && typeof a.type === 'string' && Object.keys(a).length === 1) types.add(a.type);
  return [...types].sort().join('|');
}

function widened(a: string, b: string): boolean {
  if (!a) return false;
  if (!b) return true;
  const sb = new Set(b.split('|'));
  return a.split('|').every((t) => sb.has(t) || (t === 'integer' && sb.has('number')));
}

export function diffDocuments(before: Record<Plane, JsonObject>, after: Record<Plane, JsonObject>): SpecDiff {
  const operations: OperationChange[] = [];
  const schemas: SchemaChange[] = [];
  const enums: EnumChange[] = [];
  for (const plane of ['runtime', 'admin'] as const) {
    const oa = operationsOf(before[plane]);
    const ob = operationsOf(after[plane]);
    const d = new Differ(plane, before[plane], after[plane]);
    for (const [id, o] of ob) if (!oa.has(id)) operations.push({ plane, operationId: id, method: o.method.toUpperCase(), path: o.path, change: 'added' });
    for (const [id, o] of oa) {
      const n = ob.get(id);
      if (!n) {
        operations.push({ plane, operationId: id, method: o.method.toUpperCase(), path: o.path, change: 'removed' });
        continue;
      }
      if (n.method !== o.method || n.path !== o.path) {
        operations.push({ plane, operationId: id, method: n.method.toUpperCase(), path: n.path, change: 'moved', from: `${o.method.toUpperCase()} ${o.path}` });
      }
      d.operation(o, n);
    }
    schemas.push(...d.schemas.values());
    enums.push(...d.enums.values());
  }
  const byWhere = (x: { plane: string; where: string }, y: { plane: string; where: string }) => x.plane.localeCompare(y.plane) || x.where.localeCompare(y.where);
  schemas.sort(byWhere);
  enums.sort(byWhere);
  operations.sort((x, y) => x.plane.localeCompare(y.plane) || x.path.localeCompare(y.path) || x.method.localeCompare(y.method));
  const breaking = schemas.filter((s) => s.class === 'breaking').length + operations.filter((o) => o.change !== 'added').length;
  const additive = schemas.filter((s) => s.class === 'additive').length + operations.filter((o) => o.change === 'added').length;
  return { operations, schemas, enums, breaking, additive };
}

/** The report `--pin` prints. */
export function formatDiff(d: SpecDiff): string {
  const out: string[] = [];
  out.push(`Operations: ${d.operations.filter((o) => o.change === 'added').length} added, ${d.operations.filter((o) => o.change === 'removed').length} removed, ${d.operations.filter((o) => o.change === 'moved').length} moved`);
  for (const o of d.operations) {
    const tag = o.change === 'added' ? '+ added   (additive)' : o.change === 'removed' ? '- removed (BREAKING)' : '~ moved   (BREAKING)';
    out.push(`  ${tag} ${o.plane.padEnd(7)} ${o.method.padEnd(6)} ${o.path}  (${o.operationId})${o.from ? ` was ${o.from}` : ''}`);
  }
  out.push(`Schema changes: ${d.schemas.filter((s) => s.class === 'breaking').length} breaking, ${d.schemas.filter((s) => s.class === 'additive').length} additive`);
  for (const s of d.schemas) {
    out.push(`  ${s.class === 'breaking' ? 'BREAKING' : 'additive'} ${s.plane.padEnd(7)} ${s.where}: ${s.detail} [${s.directions.sort().join(', ')}]`);
  }
  out.push(`Enum values: ${d.enums.length} enum${d.enums.length === 1 ? '' : 's'} changed`);
  for (const e of d.enums) {
    const parts = [e.added.length ? `+ ${e.added.map(String).join(', ')}` : '', e.removed.length ? `- ${e.removed.map(String).join(', ')}` : ''].filter(Boolean);
    out.push(`  ${e.plane.padEnd(7)} ${e.where}: ${parts.join('; ')}`);
  }
  out.push(d.breaking ? `${d.breaking} breaking change${d.breaking === 1 ? '' : 's'}: existing clients may be refused or miss what they relied on.` : 'No breaking changes.');
  return out.join('\n');
}
