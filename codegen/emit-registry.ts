// Emit the built-in action-kind registry (`x-action-kind-registry` of the action-kinds spec)
// as action-kinds.ts, so the server never hand-types the 62 kinds. Entries keep the spec's
// order (unknown.call last) and only the ActionKind fields the spec gives; a field the
// ActionKind schema does not know is an error here, not a response that fails validation.
import type { Bundle } from './bundle';
import { tsHeader, tsLiteral } from './emit-common';
import { isObject } from './util';

const FIELDS = ['kind', 'risk_class', 'policy_key_spec', 'description', 'mcp_tool_prefixes', 'deprecated', 'replacement_kind'];

export interface RegistryData {
  version: string;
  kinds: Record<string, unknown>[];
}

export function readRegistry(bundle: Bundle): RegistryData {
  const file = bundle.get('action_kinds');
  const reg = isObject(file.data) ? file.data['x-action-kind-registry'] : undefined;
  if (!isObject(reg) || typeof reg.version !== 'string' || !Array.isArray(reg.kinds)) {
    throw new Error(`${file.name}: x-action-kind-registry must have a string version and a kinds array`);
  }
  const seen = new Set<string>();
  const kinds = reg.kinds.map((k, i) => {
    if (!isObject(k) || typeof k.kind !== 'string' || typeof k.risk_class !== 'string') {
      throw new Error(`${file.name}: x-action-kind-registry.kinds[${i}] needs kind and risk_class`);
    }
    const unknown = Object.keys(k).filter((f) => !FIELDS.includes(f));
    if (unknown.length) throw new Error(`${file.name}: ${k.kind} has fields ActionKind does not define: ${unknown.join(', ')}`);
    if (seen.has(k.kind)) throw new Error(`${file.name}: ${k.kind} is listed twice`);
    seen.add(k.kind);
    const out: Record<string, unknown> = {};
    for (const f of FIELDS) if (k[f] !== undefined) out[f] = k[f];
    return out;
  });
  return { version: reg.version, kinds };
}

export function emitRegistry(bundle: Bundle): string {
  const reg = readRegistry(bundle);
  return (
    tsHeader(bundle.manifest, `The built-in action-kind registry (x-action-kind-registry of ${bundle.get('action_kinds').name}), in spec order.`) +
    `
export type ActionRiskClass = 'read_only' | 'local_mutation' | 'side_effect' | 'external_side_effect' | 'high_risk';

export interface ActionPolicyKeySpec {
  host?: boolean;
  recipient_domain?: boolean;
  resource_type?: string;
  path_prefix?: boolean;
}

/** One ActionKind entry as the spec gives it (no defaults filled in). */
export interface BuiltinActionKind {
  kind: string;
  risk_class: ActionRiskClass;
  policy_key_spec?: ActionPolicyKeySpec;
  description?: string;
  mcp_tool_prefixes?: string[];
  deprecated?: boolean;
  replacement_kind?: string;
}

export const actionKindRegistryVersion = ${JSON.stringify(reg.version)};

export const builtinActionKinds: readonly BuiltinActionKind[] = ${tsLiteral(reg.kinds)};
`
  );
}
