// The requirement catalogue of the conformance kit: one entry per MUST / SHOULD / MAY statement
// of CONFORMANCE.md (data in catalog.ts). Cases name the ids they check (Case.requirements);
// the run summary lists the entries no case references, so a gap in the kit is visible.
import { CATALOG } from './catalog';

export type Level = 'MUST' | 'SHOULD' | 'MAY';

export interface Requirement {
  /** stable id, e.g. CONF-MUST-RUNTIME-OPS */
  id: string;
  level: Level;
  /** where the requirement is stated, e.g. "CONFORMANCE.md §MUST Runtime operations" */
  source: string;
  /** the requirement in one sentence */
  text: string;
}

export function requirementCatalog(): Requirement[] {
  return CATALOG;
}

/** Catalogue entries that none of `cases` lists in its requirements, in catalogue order. */
export function uncoveredRequirements(cases: readonly { requirements?: string[] }[], catalog: readonly Requirement[] = requirementCatalog()): Requirement[] {
  const covered = new Set(cases.flatMap((c) => c.requirements ?? []));
  return catalog.filter((r) => !covered.has(r.id));
}
