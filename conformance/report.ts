// Report writers of the conformance kit (pure functions of the run summary): the exit code,
// JUnit XML for CI systems to render, and a versioned JSON report for tools.
import type { CaseResult } from './harness';
import type { ConformanceSummary } from './index';
import type { Level } from './requirements';

/** 1 when any MUST case failed, or with strict any case at all; else 0. */
export function exitCodeFor(summary: Pick<ConformanceSummary, 'results'>, strict = false): 0 | 1 {
  const failed = summary.results.filter((r) => r.outcome === 'fail');
  return failed.some((r) => r.level === 'MUST' || strict) ? 1 : 0;
}

// ---------------------------------------------------------------- JSON

/** Bumped on any incompatible change of the JSON report's shape. */
export const JSON_REPORT_VERSION = 1;

export interface JsonReportCase {
  id: string;
  title: string;
  plane: string;
  level: Level;
  requirements: string[];
  tags: string[];
  outcome: CaseResult['outcome'];
  durationMs: number;
  /** failure problems, or the skip reason */
  messages: string[];
  /** failures: the last HTTP exchange of the case */
  evidence?: { method?: string; url?: string; status?: number; bodyExcerpt?: string };
}

export interface JsonReport {
  version: typeof JSON_REPORT_VERSION;
  tool: 'cycles-conformance';
  startedAt: string;
  durationMs: number;
  exitCode: 0 | 1;
  profile: ConformanceSummary['profile'];
  specs: ConformanceSummary['specs'];
  totals: {
    registered: number;
    selected: number;
    passed: number;
    failed: number;
    skipped: number;
    failedByLevel: Record<Level, number>;
  };
  skipReasons: Record<string, number>;
  uncovered: { id: string; level: Level; source: string; text: string }[];
  cases: JsonReportCase[];
}

export function toJsonReport(summary: ConformanceSummary): JsonReport {
  return {
    version: JSON_REPORT_VERSION,
    tool: 'cycles-conformance',
    startedAt: summary.startedAt,
    durationMs: summary.durationMs,
    exitCode: exitCodeFor(summary, summary.profile.strict),
    profile: summary.profile,
    specs: summary.specs,
    totals: {
      registered: summary.total,
      selected: summary.selected,
      passed: summary.passed,
      failed: summary.failed,
      skipped: summary.skipped,
      failedByLevel: summary.failedByLevel,
    },
    skipReasons: summary.skipReasons,
    uncovered: summary.uncovered.map((r) => ({ id: r.id, level: r.level, source: r.source, text: r.text })),
    cases: summary.results.map((r) => ({
      id: r.id,
      title: r.title,
      plane: r.plane,
      level: r.level,
      requirements: r.requirements,
      tags: r.tags,
      outcome: r.outcome,
      durationMs: r.durationMs,
      messages: r.messages,
      ...(r.evidence ? { evidence: r.evidence } : {}),
    })),
  };
}

// ---------------------------------------------------------------- JUnit XML

/** Text safe for XML 1.0 character data and attribute values: markup characters escaped, and
 *  characters XML 1.0 cannot carry at all (C0 controls other than tab/LF/CR, lone surrogates,
 *  U+FFFE/U+FFFF) shown as \uXXXX so nothing is lost silently. In attributes, tab/LF/CR become
 *  character references too (a parser would otherwise normalise them to spaces). */
export function xmlEscape(text: string, attribute = false): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const ch = text[i];
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out += ch + text[i + 1];
        i++;
        continue;
      }
    }
    if (ch === '&') out += '&amp;';
    else if (ch === '<') out += '&lt;';
    else if (ch === '>') out += '&gt;';
    else if (ch === '"') out += '&quot;';
    else if (ch === "'") out += '&apos;';
    else if (c === 0x09 || c === 0x0a || c === 0x0d) out += attribute ? `&#${c};` : ch;
    else if (c < 0x20 || (c >= 0xd800 && c <= 0xdfff) || c === 0xfffe || c === 0xffff) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return out;
}

const seconds = (ms: number) => (ms / 1000).toFixed(3);

/** The testcase classname: the case's first tag, else its plane (runtime / admin / both). */
export function junitClassname(r: Pick<CaseResult, 'tags' | 'plane'>): string {
  return r.tags[0] ?? r.plane;
}

function failureText(r: CaseResult): string {
  const lines = [`[${r.level}] ${r.title}`];
  if (r.requirements.length) lines.push(`requirements: ${r.requirements.join(', ')}`);
  lines.push(...r.messages);
  if (r.evidence) {
    const e = r.evidence;
    lines.push('', `last exchange: ${e.method ?? '?'} ${e.url ?? '?'} → ${e.status ?? '?'}`);
    if (e.bodyExcerpt) lines.push(`body: ${e.bodyExcerpt}`);
  }
  return lines.join('\n');
}

/** JUnit XML in the common shape (testsuites > testsuite > testcase with failure / skipped):
 *  one testsuite per classname. A SHOULD / MAY failure is still a <failure> (type names the
 *  level); whether it fails the run is the exit code's business. */
export function toJUnitXml(summary: ConformanceSummary): string {
  const groups = new Map<string, CaseResult[]>();
  for (const r of summary.results) {
    const k = junitClassname(r);
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const a = (s: string) => xmlEscape(s, true);
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(`<testsuites name="cycles-conformance" tests="${summary.results.length}" failures="${summary.failed}" errors="0" skipped="${summary.skipped}" time="${seconds(summary.durationMs)}">`);
  let n = 0;
  for (const [name, rs] of groups) {
    const time = rs.reduce((t, r) => t + r.durationMs, 0);
    const failures = rs.filter((r) => r.outcome === 'fail').length;
    const skipped = rs.filter((r) => r.outcome === 'skip').length;
    out.push(`  <testsuite name="${a(name)}" id="${n++}" tests="${rs.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${seconds(time)}" timestamp="${a(summary.startedAt.replace(/\.\d+Z$/, ''))}">`);
    for (const r of rs) {
      const open = `    <testcase name="${a(r.id)}" classname="${a(name)}" time="${seconds(r.durationMs)}"`;
      if (r.outcome === 'pass') {
        out.push(`${open}/>`);
      } else if (r.outcome === 'skip') {
        out.push(`${open}>`, `      <skipped message="${a(r.messages[0] ?? 'skipped')}"/>`, '    </testcase>');
      } else {
        out.push(
          `${open}>`,
          `      <failure message="${a(`[${r.level}] ${r.messages[0] ?? 'failed'}`)}" type="${r.level}">${xmlEscape(failureText(r))}</failure>`,
          '    </testcase>',
        );
      }
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>', '');
  return out.join('\n');
}
