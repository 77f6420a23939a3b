// Programmatic entry of the conformance harness: runConformance(opts) runs the selected cases
// against the given server URLs and returns the summary (used by cli.ts and the tests).
import path from 'node:path';
import { loadBundle, SpecBundleError } from '../codegen/bundle';
import { specsDirFrom } from '../src/config';
import { runCases, specBundleSkipReason, type Case, type CaseResult, type ConformanceOptions } from './harness';
import { uncoveredRequirements, type Level, type Requirement } from './requirements';
import { operationCases } from './cases/operations';
import { tracingCases } from './cases/tracing';
import { transportCases } from './cases/transport';
import { runtimeCases } from './cases/runtime';
import { vectorCases } from './cases/vectors';
import { governanceCases } from './cases/governance';
import { adminCases } from './cases/admin';
import { eventCases } from './cases/events';
import { webhookCases } from './cases/webhooks';
import { deliveryCases } from './cases/deliveries';
import { evidenceCases } from './cases/evidence';
import { hierarchyCases } from './cases/hierarchy';
import { lifecycleCases } from './cases/lifecycle';
import { listCases } from './cases/lists';
import { isolationCases } from './cases/isolation';
import { survivorCases } from './cases/survivors';

export type { CaseResult, ConformanceOptions } from './harness';

export function allCases(): Case[] {
  return [
    ...operationCases(), ...tracingCases(), ...transportCases(), ...runtimeCases(),
    ...fromBundle('vector', 'upstream test vectors (impl/test-vectors.yaml)', vectorCases),
    ...governanceCases(), ...adminCases(), ...eventCases(), ...webhookCases(), ...deliveryCases(), ...evidenceCases(),
    ...hierarchyCases(), ...lifecycleCases(), ...listCases(), ...isolationCases(), ...survivorCases(),
  ];
}

/** Cases enumerated from the spec bundle. Without the bundle there is nothing to enumerate:
 *  one stand-in case then reports the missing bundle as its skip reason (never a crash, never
 *  a silent pass). */
function fromBundle(prefix: string, title: string, make: () => Case[]): Case[] {
  try {
    return make();
  } catch (e) {
    if (!(e instanceof SpecBundleError)) throw e;
    return [{ id: `${prefix}.spec-bundle`, title, plane: 'both', tags: [prefix, 'spec-bundle'], run: async () => { throw e; } }];
  }
}

/** The spec bundle directory of a run: --specs, else CYCLES_SPECS_DIR, else the pinned bundle
 *  the server itself uses (../shared/specs/cycles-protocol beside the installation). Relative
 *  paths are taken from the current directory. */
export function resolveSpecsDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(flag?.trim() || specsDirFrom(env));
}

export interface SpecsStatus {
  dir: string;
  ok: boolean;
  /** why the bundle cannot be used (the skip reason of the cases that need it) */
  problem?: string;
}

/** Loads and verifies the bundle once up front, so the run can say at the start what is missing. */
export function specsStatus(dir: string): SpecsStatus {
  try {
    loadBundle({ dir });
    return { dir, ok: true };
  } catch (e) {
    if (!(e instanceof SpecBundleError)) throw e;
    return { dir, ok: false, problem: specBundleSkipReason(e) };
  }
}

export interface ConformanceSummary {
  results: CaseResult[];
  passed: number;
  failed: number;
  skipped: number;
  /** failures per level: MUST failures fail the run, SHOULD / MAY ones only with strict */
  failedByLevel: Record<Level, number>;
  /** skip reason → count */
  skipReasons: Record<string, number>;
  /** catalogue requirements that no registered case references (a gap in the kit) */
  uncovered: Requirement[];
  /** registered cases, and how many of them the selection ran */
  total: number;
  selected: number;
  specs: SpecsStatus;
  /** what was asked for (never the admin key) */
  profile: {
    runtimeUrl: string;
    adminUrl: string;
    features: string[];
    evidence: boolean;
    strict: boolean;
    only: string[];
    skip: string[];
    filter: string[];
  };
  startedAt: string;
  durationMs: number;
}

export async function runConformance(opts: ConformanceOptions, onResult?: (r: CaseResult) => void): Promise<ConformanceSummary> {
  const started = Date.now();
  const specs = specsStatus(resolveSpecsDir(opts.specsDir));
  // The case modules read the bundle through codegen/bundle (env CYCLES_SPECS_DIR or the
  // default): an explicit directory is handed to them that way for the duration of the run.
  const prevEnv = process.env.CYCLES_SPECS_DIR;
  if (opts.specsDir) process.env.CYCLES_SPECS_DIR = specs.dir;
  try {
    const cases = allCases();
    const results = await runCases(cases, opts, onResult);
    const skipReasons: Record<string, number> = {};
    for (const r of results) if (r.outcome === 'skip') skipReasons[r.messages[0]] = (skipReasons[r.messages[0]] ?? 0) + 1;
    const failedByLevel: Record<Level, number> = { MUST: 0, SHOULD: 0, MAY: 0 };
    for (const r of results) if (r.outcome === 'fail') failedByLevel[r.level]++;
    return {
      results,
      passed: results.filter((r) => r.outcome === 'pass').length,
      failed: results.filter((r) => r.outcome === 'fail').length,
      skipped: results.filter((r) => r.outcome === 'skip').length,
      failedByLevel,
      skipReasons,
      uncovered: uncoveredRequirements(cases),
      total: cases.length,
      selected: results.length,
      specs,
      profile: {
        runtimeUrl: opts.runtimeUrl,
        adminUrl: opts.adminUrl,
        features: opts.features ?? [],
        evidence: Boolean(opts.evidence),
        strict: Boolean(opts.strict),
        only: opts.only ?? [],
        skip: opts.skip ?? [],
        filter: opts.filter ?? [],
      },
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
    };
  } finally {
    if (opts.specsDir) {
      if (prevEnv === undefined) delete process.env.CYCLES_SPECS_DIR;
      else process.env.CYCLES_SPECS_DIR = prevEnv;
    }
  }
}
