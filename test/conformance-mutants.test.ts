// Integrity of the mutation harness's catalogue (conformance/mutants/catalog.ts), without a
// server: every mutant still applies to today's sources exactly once and actually changes
// them, ids are unique, the catalogue keeps its size and covers every area, and the CI
// subset exists. (The harness run itself is `npm run conformance:mutants`, in .ci/run.)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../src/config';
import { applyMutant, locate, MUTANTS, REQUIRED_AREAS } from '../conformance/mutants/catalog';

describe('mutant catalogue', () => {
  it('has at least 25 mutants with unique kebab-case ids', () => {
    expect(MUTANTS.length).toBeGreaterThanOrEqual(25);
    const ids = MUTANTS.map((m) => m.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[a-z0-9]+(-[a-z0-9.]+)*$/);
  });

  it('finds every `find` exactly once in its file, and the replacement changes the file', () => {
    const problems: string[] = [];
    for (const m of MUTANTS) {
      const text = readFileSync(join(REPO_ROOT, m.file), 'utf8');
      const at = locate(text, m);
      if (typeof at === 'string') { problems.push(at); continue; }
      if (m.find === m.replace) problems.push(`mutant ${m.id}: replace equals find`);
      else expect(applyMutant(text, m)).not.toBe(text);
    }
    expect(problems).toEqual([]);
  });

  it('refuses a find that is missing or ambiguous', () => {
    const m = { id: 'x', area: 'ledger' as const, description: '', file: 'f', find: 'ab', replace: 'cd' };
    expect(() => applyMutant('xx', m)).toThrow(/does not occur/);
    expect(() => applyMutant('ab ab', m)).toThrow(/more than once/);
    expect(applyMutant('-ab-', m)).toBe('-cd-');
  });

  it('covers every required area, and every mutant has a description and a known profile', () => {
    const areas = new Set(MUTANTS.map((m) => m.area));
    expect(REQUIRED_AREAS.filter((a) => !areas.has(a))).toEqual([]);
    for (const m of MUTANTS) {
      expect(m.description.length, m.id).toBeGreaterThan(10);
      expect(['base', 'v0.1.26', 'evidence'], m.id).toContain(m.profile ?? 'base');
      expect(['MUST', 'SHOULD', 'MAY'], m.id).toContain(m.level ?? 'MUST');
    }
    // v0.1.26 is "SHOULD today" (CONFORMANCE.md §Upcoming): no governance defect breaks a MUST
    expect(MUTANTS.filter((m) => m.area === 'governance').every((m) => m.level === 'SHOULD')).toBe(true);
    // governance defects only show with the extensions on, evidence defects with evidence on
    expect(MUTANTS.filter((m) => m.area === 'governance').every((m) => m.profile === 'v0.1.26')).toBe(true);
    expect(MUTANTS.filter((m) => m.area === 'evidence').every((m) => m.profile === 'evidence')).toBe(true);
  });

  it('has a small CI subset (--fast) spanning several areas', () => {
    const fast = MUTANTS.filter((m) => m.fast);
    expect(fast.length).toBeGreaterThanOrEqual(4);
    expect(fast.length).toBeLessThanOrEqual(6);
    expect(new Set(fast.map((m) => m.area)).size).toBeGreaterThanOrEqual(4);
  });
});
