// Compare our merged documents with upstream's pre-built merged/*.yaml (informational; those
// files are not pinned in the manifest and are not inputs of the generator).
//   npx tsx codegen/compare-upstream.ts
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadBundle, parseSpecYaml } from './bundle';
import { mergeBundle, type Plane } from './merge';
import { compareStrings, deepEqual, isObject, operationsOf, type JsonObject } from './util';

const UPSTREAM: Record<Plane, string> = {
  runtime: 'merged/cycles-openapi-protocol-merged.yaml',
  admin: 'merged/cycles-openapi-admin-merged.yaml',
};

export function compareWithUpstream(ours: JsonObject, theirs: JsonObject): string[] {
  const out: string[] = [];
  const ops = (d: JsonObject) => new Map([...operationsOf(d)].map(({ path, method, op }) => [`${method.toUpperCase()} ${path}`, op.operationId as string]));
  const a = ops(ours);
  const b = ops(theirs);
  for (const k of [...new Set([...a.keys(), ...b.keys()])].sort(compareStrings)) {
    if (!b.has(k)) out.push(`operation only in ours: ${k} (${a.get(k)})`);
    else if (!a.has(k)) out.push(`operation only upstream: ${k} (${b.get(k)})`);
    else if (a.get(k) !== b.get(k)) out.push(`operationId differs: ${k}: ours ${a.get(k)}, upstream ${b.get(k)}`);
  }
  const sa: JsonObject = ours.components?.schemas ?? {};
  const sb: JsonObject = theirs.components?.schemas ?? {};
  for (const n of [...new Set([...Object.keys(sa), ...Object.keys(sb)])].sort(compareStrings)) {
    if (!(n in sb)) { out.push(`schema only in ours: ${n}`); continue; }
    if (!(n in sa)) { out.push(`schema only upstream: ${n}`); continue; }
    const x = sa[n];
    const y = sb[n];
    if (Array.isArray(x.enum) || Array.isArray(y.enum)) {
      const ex = (x.enum ?? []) as unknown[];
      const ey = (y.enum ?? []) as unknown[];
      const plus = ex.filter((v) => !ey.includes(v));
      const minus = ey.filter((v) => !ex.includes(v));
      if (plus.length || minus.length) out.push(`enum ${n}: ours +[${plus.join(', ')}] upstream +[${minus.join(', ')}]`);
    }
    const px = Object.keys(x.properties ?? {});
    const py = Object.keys(y.properties ?? {});
    const plus = px.filter((p) => !py.includes(p));
    const minus = py.filter((p) => !px.includes(p));
    if (plus.length || minus.length) out.push(`properties ${n}: ours +[${plus.join(', ')}] upstream +[${minus.join(', ')}]`);
    for (const p of px.filter((q) => py.includes(q))) {
      if (!deepEqual(strip(x.properties[p]), strip(y.properties[p]))) out.push(`property ${n}.${p} differs`);
    }
  }
  // Request bodies of operations both sides have.
  for (const { path, method, op } of operationsOf(ours)) {
    const other = theirs.paths?.[path]?.[method];
    if (!other) continue;
    if (!deepEqual(strip(op.requestBody), strip(other.requestBody))) out.push(`request body differs: ${method.toUpperCase()} ${path}`);
  }
  return out;
}

function strip(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(strip);
  if (!isObject(v)) return v;
  const o: JsonObject = {};
  for (const [k, x] of Object.entries(v)) if (k !== 'description' && k !== 'example' && !k.startsWith('x-')) o[k] = strip(x);
  return o;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const bundle = loadBundle();
  const merged = mergeBundle(bundle);
  for (const plane of ['runtime', 'admin'] as const) {
    const theirs = parseSpecYaml(readFileSync(join(bundle.dir, UPSTREAM[plane]), 'utf8')) as JsonObject;
    console.log(`## ${plane} vs ${UPSTREAM[plane]}`);
    for (const line of compareWithUpstream(merged[plane], theirs)) console.log(`- ${line}`);
  }
}
