// The action-kind registry (cycles-action-kinds-v0.1.26.yaml): the built-in kinds codegen
// takes from `x-action-kind-registry`, merged with the operator's `custom.*` declarations
// (CYCLES_CUSTOM_ACTION_KINDS, validated by src/config.ts at start). Pure: no I/O, no clock.
import { createHash } from 'node:crypto';
import { invalid } from '../errors';
import {
  actionKindRegistryVersion,
  builtinActionKinds,
  type ActionRiskClass,
  type BuiltinActionKind,
} from '../generated/action-kinds';

export type { ActionRiskClass };

/** Ascending risk order (ActionRiskClass description). */
export const RISK_CLASSES: readonly ActionRiskClass[] = ['read_only', 'local_mutation', 'side_effect', 'external_side_effect', 'high_risk'];

/** Risk class of a kind the registry does not know and that is not custom.* (UNREGISTERED KIND HANDLING). */
export const UNREGISTERED_RISK_CLASS: ActionRiskClass = 'side_effect';

export const CUSTOM_PREFIX = 'custom.';

/** An ActionKind as the wire carries it. Built-ins are exactly the spec's entries;
 *  declared custom kinds carry only what the declaration gives (kind, risk_class). */
export type ActionKind = BuiltinActionKind;

export interface CustomKindDeclaration {
  kind: string;
  risk_class: string;
}

export interface ListFilter {
  risk_class?: string;
  /** true: include deprecated kinds too; false/absent: exclude them (spec default) */
  deprecated?: boolean;
}

export const isCustomKind = (kind: string): boolean => kind.startsWith(CUSTOM_PREFIX);

export class ActionKindRegistry {
  readonly version = actionKindRegistryVersion;
  /** built-in kinds in spec order (unknown.call last) */
  readonly builtins: readonly ActionKind[] = builtinActionKinds;
  /** Validator for the public list: the list content is a pure function of the built-ins
   *  and the query, so one hash of the version and the entries covers every page. */
  readonly etag: string;
  private readonly byKind = new Map<string, ActionKind>();
  private readonly custom = new Map<string, ActionKind>();
  private readonly positions = new Map<string, number>();

  constructor(custom: readonly CustomKindDeclaration[] = []) {
    builtinActionKinds.forEach((k, i) => {
      this.byKind.set(k.kind, k);
      this.positions.set(k.kind, i);
    });
    for (const c of custom) {
      if (!isCustomKind(c.kind)) throw new Error(`custom action kind ${c.kind} must start with ${CUSTOM_PREFIX}`);
      if (!RISK_CLASSES.includes(c.risk_class as ActionRiskClass)) {
        throw new Error(`custom action kind ${c.kind}: risk_class ${c.risk_class} is not an ActionRiskClass`);
      }
      // A custom.* name can never equal a built-in (no built-in lives in custom.*), so a
      // declaration only adds; a repeated declaration keeps the last risk class.
      this.custom.set(c.kind, { kind: c.kind, risk_class: c.risk_class as ActionRiskClass });
    }
    const digest = createHash('sha256').update(JSON.stringify([this.version, this.builtins])).digest('base64url').slice(0, 22);
    this.etag = `"${this.version}-${digest}"`;
  }

  /** Exact match: a built-in, or a declared custom kind. */
  get(kind: string): ActionKind | undefined {
    return this.byKind.get(kind) ?? this.custom.get(kind);
  }

  /** Position of a built-in in the spec's order (the list's sort key), -1 otherwise. */
  position(kind: string): number {
    return this.positions.get(kind) ?? -1;
  }

  isBuiltin(kind: string): boolean {
    return this.byKind.has(kind);
  }

  /** Whether `kind` is a custom.* kind the operator declared. */
  isDeclaredCustom(kind: string): boolean {
    return this.custom.has(kind);
  }

  /** The declared custom kinds, sorted by kind. */
  customKinds(): ActionKind[] {
    return [...this.custom.values()].sort((a, b) => (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0));
  }

  /**
   * Risk class used for quota routing: the registered or declared one; an unregistered
   * non-custom kind counts as side_effect. An undeclared custom.* kind has none (undefined):
   * such a request is refused (checkRequestKind), never defaulted.
   */
  riskClass(kind: string): ActionRiskClass | undefined {
    const k = this.get(kind);
    if (k) return k.risk_class;
    return isCustomKind(kind) ? undefined : UNREGISTERED_RISK_CLASS;
  }

  /** The replacement of a deprecated kind, for the X-Cycles-Deprecated-Kind header
   *  (DEPRECATION PROCESS, SERVER BEHAVIOR); undefined for a current kind. The kind itself
   *  is never rewritten. */
  deprecationOf(kind: string): string | undefined {
    const k = this.get(kind);
    return k?.deprecated === true ? (k.replacement_kind ?? 'unknown.call') : undefined;
  }

  /** null when a request may use `kind`; otherwise why not (an undeclared custom.* kind). */
  checkRequestKind(kind: string): string | null {
    if (isCustomKind(kind) && !this.custom.has(kind)) {
      return `custom action kind "${kind}" is not registered on this server (declare it in CYCLES_CUSTOM_ACTION_KINDS)`;
    }
    return null;
  }

  /** The public list: built-ins only (custom kinds are not listed publicly, VISIBILITY),
   *  in spec order, filtered. */
  list(filter: ListFilter = {}): ActionKind[] {
    return this.builtins.filter((k) =>
      (filter.risk_class === undefined || k.risk_class === filter.risk_class)
      && (filter.deprecated === true || k.deprecated !== true));
  }
}

/** The slice of Config the registry depends on. */
export interface RegistryConfig {
  features: ReadonlySet<string>;
  customActionKinds: readonly CustomKindDeclaration[];
}

// One registry per Config object (the declarations never change while a process runs).
const byConfig = new WeakMap<object, ActionKindRegistry>();

export function registryFor(config: RegistryConfig): ActionKindRegistry {
  let r = byConfig.get(config);
  if (!r) {
    r = new ActionKindRegistry(config.customActionKinds);
    byConfig.set(config, r);
  }
  return r;
}

/**
 * The one rule for action kinds that arrive in requests (reserve, decide, createEvent
 * `action.kind`; policy allowed/denied lists and quotas): an undeclared custom.* kind is 400
 * INVALID_REQUEST. v0.1.26 only: with the flag off `action.kind` is a free string (v0.1.25).
 */
export function requireDeclaredKind(config: RegistryConfig, kind: unknown, where: string): void {
  if (!config.features.has('v0.1.26') || typeof kind !== 'string') return;
  const why = registryFor(config).checkRequestKind(kind);
  if (why) throw invalid(`${where}: ${why}`);
}

/** Response headers for a request that used `kind` (flag on): X-Cycles-Deprecated-Kind
 *  when the registry marks it deprecated. */
export function kindHeaders(config: RegistryConfig, kind: unknown): Record<string, string> {
  if (!config.features.has('v0.1.26') || typeof kind !== 'string') return {};
  const replacement = registryFor(config).deprecationOf(kind);
  return replacement ? { 'X-Cycles-Deprecated-Kind': replacement } : {};
}
