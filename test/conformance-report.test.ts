// The conformance kit's framework without a server under test: report writers (JUnit XML
// checked by a strict XML walker against the common JUnit shape, JSON round trip), the exit
// code by level, --only/--skip selection, failure evidence and the spec-bundle skip.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpecBundleError } from '../codegen/bundle';
import { runCases, selectCases, BODY_EXCERPT_CHARS, type Case, type CaseResult } from '../conformance/harness';
import type { ConformanceSummary } from '../conformance/index';
import { exitCodeFor, toJsonReport, toJUnitXml, xmlEscape } from '../conformance/report';
import { requirementCatalog, uncoveredRequirements } from '../conformance/requirements';
import { runConformanceCli } from '../conformance/cli';

// ---------------------------------------------------------------- a strict XML 1.0 walker

interface El { name: string; attrs: Record<string, string>; children: El[]; text: string }

const NAME = /^[A-Za-z_][\w.-]*/;
// XML 1.0 Char production (no C0 controls other than tab, LF, CR; no U+FFFE/U+FFFF; no lone surrogates)
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const ILLEGAL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/u;

function decode(raw: string, where: string): string {
  if (raw.includes('<')) throw new Error(`raw < in ${where}`);
  return raw.replace(/&([^;]*);?/g, (m, ent: string) => {
    if (!m.endsWith(';')) throw new Error(`bare & in ${where}: ${m}`);
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (ent in named) return named[ent];
    const num = /^#(\d+)$/.exec(ent) ?? /^#x([0-9a-fA-F]+)$/.exec(ent);
    if (!num) throw new Error(`unknown entity &${ent}; in ${where}`);
    const cp = parseInt(num[1], ent[1] === 'x' ? 16 : 10);
    const ch = String.fromCodePoint(cp);
    if (ILLEGAL.test(ch)) throw new Error(`character reference to an illegal character in ${where}`);
    return ch;
  });
}

/** Parses a document with an optional <?xml?> prolog and one root element; throws on anything
 *  not well-formed (mismatched tags, bad attributes, raw < or &, illegal characters). */
function parseXml(doc: string): El {
  if (ILLEGAL.test(doc)) throw new Error('document contains a character XML 1.0 does not allow');
  let i = 0;
  const ws = () => { while (/\s/.test(doc[i] ?? '')) i++; };
  if (doc.startsWith('<?xml')) {
    const end = doc.indexOf('?>');
    if (end < 0) throw new Error('unterminated prolog');
    if (!/^<\?xml version="1\.0"( encoding="UTF-8")?\?>$/.test(doc.slice(0, end + 2))) throw new Error('odd prolog');
    i = end + 2;
  }
  ws();
  const element = (): El => {
    if (doc[i] !== '<') throw new Error(`expected < at ${i}`);
    i++;
    const name = NAME.exec(doc.slice(i))?.[0];
    if (!name) throw new Error(`bad element name at ${i}`);
    i += name.length;
    const el: El = { name, attrs: {}, children: [], text: '' };
    for (;;) {
      const before = i;
      ws();
      if (doc.startsWith('/>', i)) { i += 2; return el; }
      if (doc[i] === '>') { i++; break; }
      if (i === before) throw new Error(`expected whitespace before an attribute at ${i}`);
      const an = NAME.exec(doc.slice(i))?.[0];
      if (!an) throw new Error(`bad attribute name at ${i}`);
      i += an.length;
      if (doc[i] !== '=' || doc[i + 1] !== '"') throw new Error(`attribute ${an} must be ="…" at ${i}`);
      const end = doc.indexOf('"', i + 2);
      if (end < 0) throw new Error(`unterminated attribute ${an}`);
      if (an in el.attrs) throw new Error(`duplicate attribute ${an} on <${name}>`);
      el.attrs[an] = decode(doc.slice(i + 2, end), `${name}@${an}`);
      i = end + 1;
    }
    for (;;) {
      const lt = doc.indexOf('<', i);
      if (lt < 0) throw new Error(`unterminated <${name}>`);
      el.text += decode(doc.slice(i, lt), `<${name}> text`);
      i = lt;
      if (doc.startsWith('</', i)) {
        i += 2;
        if (!doc.startsWith(`${name}>`, i)) throw new Error(`mismatched end tag for <${name}> at ${i}`);
        i += name.length + 1;
        return el;
      }
      el.children.push(element());
    }
  };
  const root = element();
  ws();
  if (i !== doc.length) throw new Error('content after the root element');
  return root;
}

// ---------------------------------------------------------------- fixtures

const nasty = 'a<b & "c" \'d\' \u0007bell \u0000nul \u001b[31m esc\ttab\nline';

function result(over: Partial<CaseResult> & { id: string }): CaseResult {
  return { title: `title of ${over.id}`, plane: 'runtime', level: 'MUST', requirements: [], tags: [], outcome: 'pass', messages: [], durationMs: 12, ...over };
}

function summaryOf(results: CaseResult[], strict = false): ConformanceSummary {
  const failedByLevel = { MUST: 0, SHOULD: 0, MAY: 0 };
  for (const r of results) if (r.outcome === 'fail') failedByLevel[r.level]++;
  const skipReasons: Record<string, number> = {};
  for (const r of results) if (r.outcome === 'skip') skipReasons[r.messages[0]] = (skipReasons[r.messages[0]] ?? 0) + 1;
  return {
    results,
    passed: results.filter((r) => r.outcome === 'pass').length,
    failed: results.filter((r) => r.outcome === 'fail').length,
    skipped: results.filter((r) => r.outcome === 'skip').length,
    failedByLevel,
    skipReasons,
    uncovered: requirementCatalog().slice(0, 1),
    total: results.length + 3,
    selected: results.length,
    specs: { dir: '/specs', ok: true },
    profile: { runtimeUrl: 'http://r', adminUrl: 'http://a', features: ['v0.1.26'], evidence: false, strict, only: [], skip: [], filter: [] },
    startedAt: '2026-01-02T03:04:05.678Z',
    durationMs: 4321,
  };
}

const sample = (): CaseResult[] => [
  result({ id: 'reserve.ok', tags: ['runtime-core'], requirements: ['CONF-MUST-RUNTIME-OPS'] }),
  result({
    id: 'reserve.bad<&>', tags: ['runtime-core'], outcome: 'fail', messages: [nasty, 'second problem'],
    evidence: { method: 'POST', url: 'http://r/v1/reservations?a=1&b=2', status: 409, bodyExcerpt: '{"error":"<BUDGET_EXCEEDED>"}' },
  }),
  result({ id: 'decide.should', level: 'SHOULD', outcome: 'fail', messages: ['decide missing'] }),
  result({ id: 'admin.x', plane: 'admin', outcome: 'skip', messages: ['needs --evidence & "quotes"'] }),
];

// ---------------------------------------------------------------- JUnit

describe('toJUnitXml', () => {
  it('is well-formed XML in the common JUnit shape, counts matching the cases', () => {
    const s = summaryOf(sample());
    const root = parseXml(toJUnitXml(s));
    expect(root.name).toBe('testsuites');
    expect(Number(root.attrs.tests)).toBe(4);
    expect(Number(root.attrs.failures)).toBe(2);
    expect(Number(root.attrs.skipped)).toBe(1);
    expect(Number(root.attrs.time)).toBeCloseTo(4.321);
    let cases = 0;
    for (const suite of root.children) {
      expect(suite.name).toBe('testsuite');
      for (const a of ['name', 'tests', 'failures', 'errors', 'skipped', 'time', 'timestamp']) expect(suite.attrs[a], a).toBeDefined();
      expect(suite.attrs.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
      expect(Number(suite.attrs.tests)).toBe(suite.children.length);
      expect(Number(suite.attrs.failures)).toBe(suite.children.filter((c) => c.children.some((x) => x.name === 'failure')).length);
      expect(Number(suite.attrs.skipped)).toBe(suite.children.filter((c) => c.children.some((x) => x.name === 'skipped')).length);
      for (const tc of suite.children) {
        cases++;
        expect(tc.name).toBe('testcase');
        expect(tc.attrs.classname).toBe(suite.attrs.name);
        expect(Number.isFinite(Number(tc.attrs.time))).toBe(true);
        expect(tc.children.length).toBeLessThanOrEqual(1);
        for (const child of tc.children) {
          expect(['failure', 'skipped']).toContain(child.name);
          expect(child.attrs.message).toBeDefined();
        }
      }
    }
    expect(cases).toBe(4);
    // classname: the first tag, else the plane
    expect(root.children.map((c) => c.attrs.name).sort()).toEqual(['admin', 'runtime', 'runtime-core']);
  });

  it('escapes markup, quotes and control characters so every message survives', () => {
    const root = parseXml(toJUnitXml(summaryOf(sample())));
    const tc = root.children.flatMap((s) => s.children).find((c) => c.attrs.name === 'reserve.bad<&>')!;
    expect(tc).toBeDefined();
    const failure = tc.children[0];
    expect(failure.attrs.type).toBe('MUST');
    const shown = nasty.replace('\u0007', '\\u0007').replace('\u0000', '\\u0000').replace('\u001b', '\\u001b');
    expect(failure.attrs.message).toBe(`[MUST] ${shown}`); // tab and newline kept as references
    expect(failure.text).toContain(shown);
    expect(failure.text).toContain('second problem');
    expect(failure.text).toContain('last exchange: POST http://r/v1/reservations?a=1&b=2 → 409');
    expect(failure.text).toContain('body: {"error":"<BUDGET_EXCEEDED>"}');
    const skipped = root.children.flatMap((s) => s.children).find((c) => c.attrs.name === 'admin.x')!.children[0];
    expect(skipped.name).toBe('skipped');
    expect(skipped.attrs.message).toBe('needs --evidence & "quotes"');
  });

  it('xmlEscape keeps surrogate pairs and marks lone surrogates and U+FFFF', () => {
    expect(xmlEscape('😀')).toBe('😀');
    expect(xmlEscape('\uD800x\uFFFF')).toBe('\\ud800x\\uffff');
    expect(xmlEscape('a\nb', true)).toBe('a&#10;b');
    expect(() => parseXml(`<a x="${xmlEscape('\u0001<&>"\'', true)}">${xmlEscape('\u0002</a>')}</a>`)).not.toThrow();
  });

  it('the walker itself rejects what is not well-formed', () => {
    expect(() => parseXml('<a><b></a>')).toThrow();
    expect(() => parseXml('<a x="1 & 2"/>')).toThrow();
    expect(() => parseXml('<a>1 < 2</a>')).toThrow();
    expect(() => parseXml('<a>\u0007</a>')).toThrow();
    expect(() => parseXml('<a x="1" x="2"/>')).toThrow();
  });
});

// ---------------------------------------------------------------- JSON

describe('toJsonReport', () => {
  it('round-trips and carries the fields tools rely on', () => {
    const report = toJsonReport(summaryOf(sample()));
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    expect(report).toMatchObject({ version: 1, tool: 'cycles-conformance', exitCode: 1, startedAt: '2026-01-02T03:04:05.678Z', durationMs: 4321 });
    expect(report.totals).toEqual({ registered: 7, selected: 4, passed: 1, failed: 2, skipped: 1, failedByLevel: { MUST: 1, SHOULD: 1, MAY: 0 } });
    expect(report.uncovered.map((r) => r.id)).toEqual([requirementCatalog()[0].id]);
    for (const c of report.cases) {
      for (const k of ['id', 'title', 'plane', 'level', 'requirements', 'tags', 'outcome', 'durationMs', 'messages'] as const) expect(c[k], `${c.id}.${k}`).toBeDefined();
    }
    const bad = report.cases.find((c) => c.id === 'reserve.bad<&>')!;
    expect(bad.evidence).toEqual({ method: 'POST', url: 'http://r/v1/reservations?a=1&b=2', status: 409, bodyExcerpt: '{"error":"<BUDGET_EXCEEDED>"}' });
    expect(report.cases.find((c) => c.id === 'reserve.ok')).not.toHaveProperty('evidence');
    expect(JSON.stringify(report)).not.toContain('adminKey');
  });
});

// ---------------------------------------------------------------- exit code

describe('exitCodeFor', () => {
  const r = (level: 'MUST' | 'SHOULD' | 'MAY', outcome: 'pass' | 'fail' | 'skip') => result({ id: `${level}.${outcome}`, level, outcome });
  it('1 on any MUST failure, SHOULD / MAY failures only with --strict, skips never', () => {
    expect(exitCodeFor({ results: [r('MUST', 'pass'), r('MUST', 'skip')] })).toBe(0);
    expect(exitCodeFor({ results: [r('MUST', 'fail'), r('SHOULD', 'pass')] })).toBe(1);
    expect(exitCodeFor({ results: [r('SHOULD', 'fail'), r('MAY', 'fail')] })).toBe(0);
    expect(exitCodeFor({ results: [r('SHOULD', 'fail')] }, true)).toBe(1);
    expect(exitCodeFor({ results: [r('MAY', 'fail')] }, true)).toBe(1);
    expect(exitCodeFor({ results: [r('MUST', 'skip')] }, true)).toBe(0);
  });
});

// ---------------------------------------------------------------- selection

describe('selectCases', () => {
  const cases = [
    { id: 'vector.allow_happy_path', tags: ['vector'] },
    { id: 'vector.deny_budget_exceeded', tags: ['vector', 'v0.1.26'] },
    { id: 'tracing.runtime.fresh-ids', requirements: ['CONF-SHOULD-TRACE'] },
    { id: 'admin.tenant.create' },
  ];
  const ids = (o: Parameters<typeof selectCases>[1]) => selectCases(cases, o).map((c) => c.id);
  it('--only by id prefix, exact tag or requirement id; nothing given = everything', () => {
    expect(ids({})).toHaveLength(4);
    expect(ids({ only: ['vector.'] })).toEqual(['vector.allow_happy_path', 'vector.deny_budget_exceeded']);
    expect(ids({ only: ['v0.1.26'] })).toEqual(['vector.deny_budget_exceeded']);
    expect(ids({ only: ['CONF-SHOULD-TRACE', 'admin'] })).toEqual(['tracing.runtime.fresh-ids', 'admin.tenant.create']);
    expect(ids({ only: ['v0.1'] })).toEqual([]); // a tag matches exactly, not by prefix
  });
  it('--skip wins over --only; --filter stays a substring match', () => {
    expect(ids({ only: ['vector'], skip: ['v0.1.26'] })).toEqual(['vector.allow_happy_path']);
    expect(ids({ skip: ['vector', 'tracing.runtime'] })).toEqual(['admin.tenant.create']);
    expect(ids({ filter: ['budget'] })).toEqual(['vector.deny_budget_exceeded']);
    expect(ids({ filter: ['budget'], only: ['admin'] })).toEqual(['vector.deny_budget_exceeded', 'admin.tenant.create']);
  });
});

describe('requirement catalogue', () => {
  it('entries are well-formed and uncovered = referenced by no case', () => {
    const cat = requirementCatalog();
    expect(cat.length).toBeGreaterThan(0);
    for (const r of cat) {
      expect(['MUST', 'SHOULD', 'MAY']).toContain(r.level);
      expect(r.id && r.source && r.text).toBeTruthy();
    }
    expect(new Set(cat.map((r) => r.id)).size).toBe(cat.length);
    expect(uncoveredRequirements([{ requirements: [cat[0].id] }, {}], cat)).toEqual(cat.slice(1));
  });
});

// ---------------------------------------------------------------- runCases: evidence and skips

describe('runCases', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'NOT_FOUND', message: 'x'.repeat(3000), path: req.url }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('a failure carries the last exchange; defaults, levels and tags reach the result; a missing bundle is a skip', async () => {
    const cases: Case[] = [
      { id: 'ev.fail', title: 'fails after two calls', plane: 'runtime', tags: ['t1'], requirements: ['CONF-MUST-RUNTIME-OPS'], run: async (ctx) => {
        await ctx.call('runtime', 'GET', '/first');
        const res = await ctx.call('admin', 'POST', '/second', { query: { q: 'a b' }, body: { x: 1 } });
        ctx.require(res, 200);
      } },
      { id: 'ev.pass', title: 'passes', plane: 'runtime', level: 'SHOULD', run: async () => {} },
      { id: 'ev.bundle', title: 'needs the bundle', plane: 'both', run: async () => { throw new SpecBundleError('/nowhere', [{ kind: 'folder', reason: 'spec bundle /nowhere: folder does not exist' }]); } },
      { id: 'ev.none', title: 'fails without a request', plane: 'admin', level: 'MAY', run: async (ctx) => ctx.fail('no exchange') },
    ];
    const results = await runCases(cases, { runtimeUrl: base, adminUrl: base, adminKey: 'k' });
    const by = Object.fromEntries(results.map((r) => [r.id, r]));
    expect(by['ev.fail']).toMatchObject({ outcome: 'fail', level: 'MUST', tags: ['t1'], requirements: ['CONF-MUST-RUNTIME-OPS'], plane: 'runtime' });
    const ev = by['ev.fail'].evidence!;
    expect(ev).toMatchObject({ method: 'POST', url: `${base}/second?q=a+b`, status: 404 });
    expect(ev.bodyExcerpt).toHaveLength(BODY_EXCERPT_CHARS);
    expect(ev.bodyExcerpt!.startsWith('{"error":"NOT_FOUND"')).toBe(true);
    expect(by['ev.pass']).toMatchObject({ outcome: 'pass', level: 'SHOULD', tags: [], requirements: [] });
    expect(by['ev.pass']).not.toHaveProperty('evidence');
    expect(by['ev.bundle'].outcome).toBe('skip');
    expect(by['ev.bundle'].messages[0]).toBe('spec bundle unavailable at /nowhere: folder does not exist (use --specs DIR or CYCLES_SPECS_DIR)');
    expect(by['ev.none']).toMatchObject({ outcome: 'fail', level: 'MAY', messages: ['no exchange'] });
    expect(by['ev.none']).not.toHaveProperty('evidence');
  });
});

// ---------------------------------------------------------------- the CLI's usage errors

describe('runConformanceCli', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  const quiet = () => { const lines: string[] = []; return { lines, out: { log: (l: string) => lines.push(l), error: (l: string) => lines.push(l) } }; };
  it('exit 2 on a selection that names no case, a missing key or an unknown option; never a silent pass', async () => {
    const a = quiet();
    expect(await runConformanceCli(['--runtime-url', base, '--admin-url', base, '--admin-key', 'k', '--only', 'no-such-case'], 'conformance', a.out)).toBe(2);
    expect(a.lines.join('\n')).toMatch(/no case matches the selection/);
    const b = quiet();
    const prev = process.env.ADMIN_API_KEY;
    delete process.env.ADMIN_API_KEY;
    try {
      expect(await runConformanceCli(['--runtime-url', 'http://x', '--admin-url', 'http://y'], 'conformance', b.out)).toBe(2);
    } finally {
      if (prev !== undefined) process.env.ADMIN_API_KEY = prev;
    }
    expect(b.lines.join('\n')).toMatch(/--admin-key/);
    expect(await runConformanceCli(['--bogus'], 'conformance', quiet().out)).toBe(2);
  });

  it('exit 2 with one clear line when a plane does not answer', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const a = quiet();
    expect(await runConformanceCli(['--runtime-url', base, '--admin-url', `http://127.0.0.1:${port}`, '--admin-key', 'k'], 'conformance', a.out)).toBe(2);
    expect(a.lines).toHaveLength(1);
    expect(a.lines[0]).toMatch(new RegExp(`^conformance: cannot reach the admin plane at http://127\\.0\\.0\\.1:${port}: \\S`));
  });

  it('with no spec bundle it says so up front and the bundle cases skip with the reason', async () => {
    const a = quiet();
    expect(await runConformanceCli(['--runtime-url', base, '--admin-url', base, '--admin-key', 'k', '--specs', '/nonexistent-bundle', '--only', 'vector.spec-bundle'], 'conformance', a.out)).toBe(0);
    const text = a.lines.join('\n');
    expect(text).toMatch(/spec bundle unavailable at \/nonexistent-bundle: folder does not exist/);
    expect(text).toMatch(/SKIP vector\.spec-bundle \(spec bundle unavailable at \/nonexistent-bundle/);
    expect(text).toMatch(/^0 passed, 0 failed$/m);
  });
});
