// Programmatic entry of the conformance harness: runConformance(opts) runs every case
// against the given server URLs and returns the results (used by run.ts and the tests).
import { runCases, type Case, type CaseResult, type ConformanceOptions } from './harness';
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

export type { CaseResult, ConformanceOptions } from './harness';

export function allCases(): Case[] {
  return [...operationCases(), ...tracingCases(), ...transportCases(), ...runtimeCases(), ...vectorCases(), ...governanceCases(), ...adminCases(), ...eventCases(), ...webhookCases(), ...deliveryCases(), ...evidenceCases()];
}

export interface ConformanceSummary {
  results: CaseResult[];
  passed: number;
  failed: number;
  skipped: number;
  /** skip reason → count */
  skipReasons: Record<string, number>;
}

export async function runConformance(opts: ConformanceOptions, onResult?: (r: CaseResult) => void): Promise<ConformanceSummary> {
  const results = await runCases(allCases(), opts, onResult);
  const skipReasons: Record<string, number> = {};
  for (const r of results) if (r.outcome === 'skip') skipReasons[r.messages[0]] = (skipReasons[r.messages[0]] ?? 0) + 1;
  return {
    results,
    passed: results.filter((r) => r.outcome === 'pass').length,
    failed: results.filter((r) => r.outcome === 'fail').length,
    skipped: results.filter((r) => r.outcome === 'skip').length,
    skipReasons,
  };
}
