// Issue 12: an auditor follows the spec's recipe with their own tools, not our verifier.
// conformance/verifiers/verify_evidence.py is such a tool (Python standard library +
// `cryptography`, written from cycles-evidence-v0.2.yaml only; decision DEV10). This file
// runs it over the 13 upstream fixtures, over envelopes our server produced from real
// requests, and over tampered and edge-case inputs, and compares each verdict (and each
// canonical byte string) with our TypeScript code. Skipped, loudly, without python3 or
// `cryptography`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../src/config';
import { canonicalJson } from '../src/evidence/canonical';
import { didCycles, evidenceIdOf, signingInputOf } from '../src/evidence/envelope';
import { exportEnvelopes } from '../src/evidence/export';
import { evidenceSchemaCheck } from '../src/evidence/schema';
import { EvidenceSigner } from '../src/evidence/signer';
import type { CyclesEvidence } from '../src/evidence/types';
import { parseEnvelope, verifyEnvelope, type VerifyOptions } from '../src/evidence/verify';
import { parseJsonDoubles } from '../src/json';
import { keys } from '../src/store/keys';
import { FIXTURE_PUBLIC_KEY, FIXTURES_DIR, fixtureSeed, loadFixtures, seedOf, SPECS_DIR } from './helpers/evidence';
import { putBudget } from './helpers/fixtures';
import { commitPath, releasePath, setExpiry } from './helpers/reservations';
import { call, startTestServer, type ApiResponse, type TestServer } from './helpers/server';

const PYTHON = process.env.PYTHON ?? 'python3';
const VERIFIER = path.join(REPO_ROOT, 'conformance', 'verifiers', 'verify_evidence.py');

function skipReason(): string | null {
  const probe = spawnSync(PYTHON, ['-c', 'import sys, cryptography; assert sys.version_info >= (3, 11), sys.version'], { encoding: 'utf8', timeout: 30_000 });
  if (probe.error) return `${PYTHON} cannot be run (${probe.error.message})`;
  if (probe.status !== 0) return `${PYTHON} lacks Python >= 3.11 or the cryptography package: ${probe.stderr.trim().split('\n').pop()}`;
  return null;
}
const SKIP = skipReason();
if (SKIP) console.warn(`\n*** test/evidence-independent-verifier.test.ts SKIPPED: ${SKIP} ***\n`);
const suite = SKIP ? describe.skip : describe;

interface PyResult { file: string; disposition: string; evidence_id: string | null; reason: string; kid?: string; signer_pin_matched?: boolean }

function python(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(PYTHON, [VERIFIER, ...args], { timeout: 60_000, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The Python verdicts for `files` (in order) and the process exit code. */
async function pyVerify(files: string[], opts: { jwks?: string; pin?: string } = {}): Promise<{ code: number; results: PyResult[] }> {
  const args = [...(opts.jwks ? ['--jwks', opts.jwks] : []), ...(opts.pin ? ['--expected-signer', opts.pin] : []), ...files];
  const r = await python(args);
  expect(r.stderr).toBe('');
  const results = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as PyResult);
  expect(results.map((x) => x.file)).toEqual(files);
  return { code: r.code, results };
}

/** Many verifications in ONE Python process (each CLI start costs seconds on a loaded
 *  machine): imports the verifier as a module and calls its verify() per item, each with its
 *  own JWK Set file — the same function the CLI calls. */
const DRIVER = [
  'import json, sys',
  'sys.path.insert(0, sys.argv[1])',
  'import verify_evidence as v',
  'for item in json.load(sys.stdin):',
  '    if item["op"] == "verify":',
  '        with open(item["file"], "rb") as f: data = f.read()',
  '        r = v.verify(data, v.JwksSource(item.get("jwks")))',
  '    else:',
  '        try:',
  '            with open(item["file"], "rb") as f: r = {"canonical": v.jcs(v.parse_ijson(f.read()))}',
  '        except (v.NotIJson, v.NotCanonicalizable) as e: r = {"error": str(e)}',
  '    print(json.dumps(r))',
].join('\n');

function pyBatch(items: ({ op: 'verify'; file: string; jwks?: string } | { op: 'canon'; file: string })[]): Promise<Record<string, any>[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON, ['-c', DRIVER, path.dirname(VERIFIER)], { timeout: 120_000, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`python driver failed: ${stderr || err.message}`));
      const out = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
      if (out.length !== items.length) return reject(new Error(`python driver: ${out.length} results for ${items.length} items`));
      resolve(out);
    });
    child.stdin!.end(JSON.stringify(items));
  });
}

/** The Python RFC 8785 text of each file (one per line; JCS text never holds a raw newline). */
async function pyCanonical(files: string[]): Promise<string[]> {
  const r = await python(['--canonicalize', ...files]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const lines = r.stdout.split('\n');
  expect(lines.pop()).toBe('');
  return lines;
}

const fixtures = loadFixtures();
const schema = evidenceSchemaCheck(SPECS_DIR);
const tmp = mkdtempSync(path.join(tmpdir(), 'evidence-pyverify-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let fileSeq = 0;
function tmpFile(content: string | Buffer, name = 'doc'): string {
  const p = path.join(tmp, `${String(++fileSeq).padStart(4, '0')}-${name}.json`);
  writeFileSync(p, content);
  return p;
}
const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64url');
const fixtureSigner = new EvidenceSigner(fixtureSeed());
const fixtureJwk = (o: Record<string, unknown> = {}) => ({ kty: 'OKP', crv: 'Ed25519', x: b64(FIXTURE_PUBLIC_KEY), kid: 'fx', cycles_nbf_ms: 0, ...o });

/** Seal by the recipe with the I-JSON (double) canonicalization, so edge values (1e21,
 *  2^53+2, schema-breaking shapes) can be signed on purpose; returns the JCS text. */
function sealText(env: Record<string, unknown>, signer: EvidenceSigner = fixtureSigner): string {
  const unsigned = { ...env, evidence_id: '', signature: '' } as unknown as CyclesEvidence;
  const id = evidenceIdOf(unsigned, 'ijson');
  const signature = Buffer.from(signer.sign(signingInputOf(unsigned, id, 'ijson'))).toString('hex');
  return canonicalJson({ ...unsigned, evidence_id: id, signature }, 'ijson');
}
const flipLastHex = (text: string, member: 'signature' | 'evidence_id'): string =>
  text.replace(new RegExp(`"${member}":"([0-9a-f]*)([0-9a-f])"`), (_m, head: string, last: string) => `"${member}":"${head}${last === '0' ? '1' : '0'}"`);

suite('independent (Python) verifier: the upstream fixtures', () => {
  const files = fixtures.map((f) => path.join(FIXTURES_DIR, f.name));

  it('all 13 fixtures: binding_only without a JWK Set, authentic with the fixture key; exit 0; same as our verifier', { timeout: 60_000 }, async () => {
    expect(fixtures).toHaveLength(13);
    const jwks = tmpFile(JSON.stringify({ keys: [fixtureJwk()] }), 'fixture-jwks');
    const [plain, withSet, pinned, wrongPin] = await Promise.all([
      pyVerify(files), pyVerify(files, { jwks }),
      pyVerify(files.slice(0, 1), { pin: FIXTURE_PUBLIC_KEY }), pyVerify(files.slice(0, 1), { pin: 'a'.repeat(64) }),
    ]);
    expect(plain.code).toBe(0);
    expect(withSet.code).toBe(0);
    for (const [i, f] of fixtures.entries()) {
      // the fixtures' README declares every case a valid signed envelope
      expect(plain.results[i], f.name).toMatchObject({ disposition: 'binding_only', evidence_id: f.envelope.evidence_id });
      expect(withSet.results[i], f.name).toMatchObject({ disposition: 'authentic', kid: 'fx' });
      expect((await verifyEnvelope(f.text, { schema })).disposition, f.name).toBe('binding_only');
      expect((await verifyEnvelope(f.text, { schema, jwks: { set: { keys: [fixtureJwk()] } } })).disposition, f.name).toBe('authentic');
    }
    expect(pinned.results[0].signer_pin_matched).toBe(true);
    expect(wrongPin.results[0]).toMatchObject({ disposition: 'binding_only', signer_pin_matched: false });
    expect(wrongPin.code).toBe(1);
  });

  it("Python's RFC 8785 bytes of every fixture equal our canonicalJson and the fixture's own bytes", { timeout: 60_000 }, async () => {
    const py = await pyCanonical(files);
    for (const [i, f] of fixtures.entries()) {
      expect(py[i], f.name).toBe(canonicalJson(parseJsonDoubles(f.text), 'ijson'));
      expect(py[i], f.name).toBe(f.text.replace(/\n$/, ''));
    }
  });

  it('every one-byte change of a fixture is rejected by both verifiers with the same disposition', { timeout: 120_000 }, async () => {
    // one fixture of each artifact type; each byte XOR 0x01 (what breaks JSON, a member
    // name, a value or the signature — all must be non-VALID, and the same in both)
    const picks = ['02-reserve-allow.json', '05-commit-success.json', '07-release-with-reason.json', '11-reserve-live-budget-exceeded.json', '09-decide-risk-points-allow.json'];
    const inputs: { file: string; bytes: Buffer }[] = [];
    for (const name of picks) {
      const f = fixtures.find((x) => x.name === name)!;
      const bytes = Buffer.from(f.text.replace(/\n$/, ''));
      for (let i = 0; i < bytes.length; i += 7) { // every 7th byte: ~800 inputs, one process
        const t = Buffer.from(bytes);
        t[i] ^= 0x01;
        inputs.push({ file: tmpFile(t, `${name}-${i}`), bytes: t });
      }
    }
    const jwks = tmpFile(JSON.stringify({ keys: [fixtureJwk()] }), 'fixture-jwks');
    const py = await pyVerify(inputs.map((x) => x.file), { jwks });
    expect(py.code).toBe(1);
    const disagreements: string[] = [];
    for (const [i, x] of inputs.entries()) {
      const ts = await verifyEnvelope(x.bytes, { schema, jwks: { set: { keys: [fixtureJwk()] } } });
      expect(['authentic', 'binding_only'], x.file).not.toContain(py.results[i].disposition);
      if (ts.disposition !== py.results[i].disposition) disagreements.push(`${x.file}: py ${py.results[i].disposition} (${py.results[i].reason}) / ts ${ts.disposition} (${ts.reason})`);
    }
    expect(disagreements).toEqual([]);
  });
});

suite('independent (Python) verifier: RFC 8785 text equals ours', () => {
  it('numbers: the RFC Appendix B doubles, edge values and 4000 random doubles', { timeout: 60_000 }, async () => {
    const bits = ['0000000000000000', '8000000000000000', '0000000000000001', '8000000000000001', '7fefffffffffffff', 'ffefffffffffffff',
      '4340000000000000', 'c340000000000000', '4430000000000000', '44b52d02c7e14af5', '44b52d02c7e14af6', '44b52d02c7e14af7',
      '444b1ae4d6e2ef4e', '444b1ae4d6e2ef4f', '444b1ae4d6e2ef50', '3eb0c6f7a0b5ed8c', '3eb0c6f7a0b5ed8d', '41b3de4355555553',
      '41b3de4355555554', '41b3de4355555555', '41b3de4355555556', '41b3de4355555557', 'becbf647612f3696', '43143ff3c1cb0959'];
    const dv = new DataView(new ArrayBuffer(8));
    const nums: number[] = bits.map((h) => { dv.setBigUint64(0, BigInt(`0x${h}`)); return dv.getFloat64(0); });
    nums.push(1e21, 1e-7, 1e-6, 0.000001, 123e-20, 1e20, 999999999999999900000, 2 ** 53, 2 ** 53 + 2, 2 ** 60, 2 ** 63, -(2 ** 63), 0.1, 0.2 + 0.1, 5e-324, 1.5, -0, 4.35, 0.3, 100, 1e300);
    let seed = 0x12345678;
    const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed; };
    for (let i = 0; i < 4000; i++) {
      dv.setUint32(0, rnd());
      dv.setUint32(4, rnd());
      const n = dv.getFloat64(0);
      if (Number.isFinite(n)) nums.push(n);
      else nums.push(rnd() / (rnd() + 1)); // some ordinary magnitudes too
    }
    // JSON.stringify writes each double as ECMAScript text, which reads back as the same double
    const file = tmpFile(JSON.stringify(nums), 'numbers');
    const [py] = await pyCanonical([file]);
    const ours = canonicalJson(parseJsonDoubles(JSON.stringify(nums)), 'ijson');
    const a = py.slice(1, -1).split(',');
    const b = ours.slice(1, -1).split(',');
    expect(a.length).toBe(nums.length);
    expect(a.map((x, i) => [x, b[i]]).filter(([x, y]) => x !== y).slice(0, 5)).toEqual([]);
    expect(py).toBe(ours);
  });

  it('strings and member order: UTF-16 order, escapes, non-BMP, U+2028, controls', { timeout: 60_000 }, async () => {
    const doc = {
      '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', 1: 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis',
      '': 'empty name', ctrl: '\u0000\u0001\b\t\n\u000b\f\r\u001f\u007f', quote: '"\\/', seps: '\u2028\u2029', astral: '\ud834\udd1e',
      e: 'e\u0301 vs \u00e9', nested: { b: [true, false, null, { z: 1, a: -0 }], a: [] },
    };
    const file = tmpFile(JSON.stringify(doc), 'strings');
    const [py] = await pyCanonical([file]);
    expect(py).toBe(canonicalJson(doc, 'ijson'));
  });

  it('refuses what I-JSON / RFC 8785 refuse, as our parser does', { timeout: 60_000 }, async () => {
    const bad = ['{"a":1,"a":2}', '{"a":"\\ud800"}', '{"\\udc00":1}', '[1e400]', '[NaN]', '{"a":Infinity}', Buffer.from([0x5b, 0x22, 0xff, 0x22, 0x5d]), '\ufeff{}'];
    const py = await pyBatch(bad.map((doc) => ({ op: 'canon', file: tmpFile(doc, 'bad') })));
    for (const [i, doc] of bad.entries()) {
      expect(py[i].error, String(doc)).toBeTypeOf('string');
      expect(parseEnvelope(Buffer.isBuffer(doc) ? doc : Buffer.from(doc)).ok, String(doc)).toBe(false);
    }
    const r = await python(['--canonicalize', tmpFile(bad[0], 'bad')]);
    expect(r.code).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------
// Envelopes our server produced from real requests
// ---------------------------------------------------------------------------------------

const U = 'USD_MICROCENTS';
const SERVER_ID = 'http://127.0.0.1/v1';
const EVIDENCE_ENV = {
  EVIDENCE_SERVER_ID: SERVER_ID,
  EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('cycles-evidence-independent-verifier')).toString('hex'),
  EVIDENCE_SIGNING_KID: 'pyverify-1',
  CYCLES_EVIDENCE_RATE_LIMIT_PER_MINUTE: '0',
};

/** Request metadata that exercises every JCS rule (it is attested: DecisionRequest,
 *  ReservationCreateRequest and CommitRequest mirrors all carry `metadata`). Sent as raw
 *  text so `-0` and `1E-7` reach the server as written. */
const TRICKY_METADATA = '{"\\ud83d\\ude00":"emoji name","\\ufb33":"dalet","\\u20ac":"euro","\\r":"cr","":"empty name",' +
  '"seps":"\\u2028\\u2029","ctrl":"\\u0001\\u001f\\u007f\\b\\f","quote":"\\"\\\\\\/","astral":"\\ud834\\udd1e",' +
  '"small":1E-7,"negZero":-0,"micro":0.000001,"frac":0.1,"half":-1.5,"big":123456789012345,' +
  '"nested":{"z":[1,"two",null,true,{"deep":4.35}],"a":{}}}';

suite('independent (Python) verifier: envelopes produced by our server', () => {
  let srv: TestServer;
  const served: { label: string; text: string; file: string }[] = [];
  let jwksFile = '';
  let jwksSet: unknown;

  const post = (key: string, p: string, bodyText: string): Promise<ApiResponse> =>
    call(srv.runtimeUrl, 'POST', p, { key, rawBody: bodyText });
  const req = (tenant: string, idem: string, over = '') =>
    `{"idempotency_key":"${idem}","subject":{"tenant":"${tenant}","agent":"r"},"action":{"kind":"llm.completion","name":"gpt"},` +
    `"estimate":{"unit":"${U}","amount":100},"metadata":${TRICKY_METADATA}${over}}`;

  /** The envelope text as GET /v1/evidence/{id} serves it, once the worker stored it. */
  async function fetchEnvelope(id: string, withinMs = 10_000): Promise<string> {
    const until = Date.now() + withinMs;
    for (;;) {
      const r = await fetch(`${srv.runtimeUrl}/v1/evidence/${id}`);
      const text = await r.text();
      if (r.status === 200) return text;
      expect(r.status, text).toBe(404);
      if (Date.now() > until) throw new Error(`envelope ${id} not served within ${withinMs} ms`);
      await new Promise((res) => setTimeout(res, 25));
    }
  }

  beforeAll(async () => {
    srv = await startTestServer(EVIDENCE_ENV);
    const tenant = `pyv-${Math.random().toString(36).slice(2, 8)}`;
    await putBudget(srv.redis.client, tenant, `tenant:${tenant}`, U, { allocated: 1000 });
    const key = await srv.tenantKey(tenant);
    const exchanges: [string, ApiResponse][] = [];
    exchanges.push(['decide ALLOW', await post(key, '/v1/decide', req(tenant, 'd1'))]);
    exchanges.push(['decide DENY', await post(key, '/v1/decide', req(tenant, 'd2').replace('"amount":100', '"amount":5000'))]);
    const r1 = await post(key, '/v1/reservations', req(tenant, 'r1', ',"ttl_ms":60000'));
    exchanges.push(['reserve live', r1]);
    exchanges.push(['reserve dry-run DENY', await post(key, '/v1/reservations', req(tenant, 'r2', ',"dry_run":true').replace('"amount":100', '"amount":5000'))]);
    exchanges.push(['commit', await post(key, commitPath(r1.body.reservation_id),
      `{"idempotency_key":"c1","actual":{"unit":"${U}","amount":60},"metrics":{"tokens_input":5,"latency_ms":12,"custom":${TRICKY_METADATA}},"metadata":${TRICKY_METADATA}}`)]);
    const r3 = await post(key, '/v1/reservations', req(tenant, 'r3'));
    exchanges.push(['reserve live 2', r3]);
    exchanges.push(['release', await post(key, releasePath(r3.body.reservation_id), '{"idempotency_key":"l1","reason":"user cancelled \\u2014 \\ud83d\\ude00"}')]);
    exchanges.push(['error 409 BUDGET_EXCEEDED (reserve)', await post(key, '/v1/reservations', req(tenant, 'r4').replace('"amount":100', '"amount":999999'))]);
    exchanges.push(['error 400 UNIT_MISMATCH (decide)', await post(key, '/v1/decide', req(tenant, 'd3').replace(`"unit":"${U}"`, '"unit":"TOKENS"'))]);
    const r5 = await post(key, '/v1/reservations', req(tenant, 'r5'));
    exchanges.push(['reserve live 3', r5]);
    await setExpiry(srv.redis.client, tenant, r5.body.reservation_id, Date.now() - 60_000, 0);
    exchanges.push(['error 410 RESERVATION_EXPIRED (release)', await post(key, releasePath(r5.body.reservation_id), '{"idempotency_key":"l2"}')]);
    exchanges.push(['error 409 RESERVATION_FINALIZED (commit)', await post(key, commitPath(r3.body.reservation_id), `{"idempotency_key":"c2","actual":{"unit":"${U}","amount":1}}`)]);
    for (const [label, r] of exchanges) {
      const id = r.body?.cycles_evidence?.evidence_id;
      if (typeof id !== 'string') throw new Error(`${label}: no cycles_evidence (status ${r.status}): ${r.text}`);
      const text = await fetchEnvelope(id);
      served.push({ label, text, file: tmpFile(text, label.replace(/[^a-z0-9]+/gi, '-')) });
    }
    const j = await fetch(`${srv.runtimeUrl}/v1/.well-known/cycles-jwks.json`);
    expect(j.status).toBe(200);
    const jtext = await j.text();
    jwksSet = JSON.parse(jtext);
    jwksFile = tmpFile(jtext, 'server-jwks');
  }, 120_000);
  afterAll(async () => { await srv?.stop(); });

  it('every artifact type (decide, reserve, commit, release, error) verifies authentic with the served JWK Set', { timeout: 60_000 }, async () => {
    const types = served.map((s) => (JSON.parse(s.text) as { artifact_type: string }).artifact_type);
    expect(new Set(types)).toEqual(new Set(['decide', 'reserve', 'commit', 'release', 'error']));
    const errors = served.map((s) => JSON.parse(s.text).payload.error).filter(Boolean).map((e) => `${e.http_status} ${e.response.error} ${e.endpoint}${e.reservation_id ? ' +id' : ''}`);
    expect(errors).toEqual([
      '409 BUDGET_EXCEEDED POST /v1/reservations', '400 UNIT_MISMATCH POST /v1/decide',
      '410 RESERVATION_EXPIRED POST /v1/reservations/{reservation_id}/release +id', '409 RESERVATION_FINALIZED POST /v1/reservations/{reservation_id}/commit +id',
    ]);
    const py = await pyVerify(served.map((s) => s.file), { jwks: jwksFile });
    for (const [i, s] of served.entries()) {
      expect(py.results[i], `${s.label}: ${py.results[i].reason}`).toMatchObject({ disposition: 'authentic', kid: 'pyverify-1', evidence_id: JSON.parse(s.text).evidence_id });
      const ts = await verifyEnvelope(s.text, { schema, jwks: { set: jwksSet } });
      expect(ts.disposition, s.label).toBe('authentic');
    }
    expect(py.code).toBe(0);
    const unresolved = await pyVerify(served.map((s) => s.file));
    expect(unresolved.results.map((r) => r.disposition)).toEqual(served.map(() => 'binding_only'));
    expect(unresolved.code).toBe(0);
  });

  it('every line of `cycles evidence export` verifies on its own in Python (the archival promise)', { timeout: 60_000 }, async () => {
    const lines: string[] = [];
    const { written } = await exportEnvelopes(srv.redis.client, 0, Date.now() + 60_000, (l) => { lines.push(l); });
    expect(written).toBe(served.length);
    const py = await pyVerify(lines.map((l) => tmpFile(l, 'export-line')), { jwks: jwksFile });
    expect(py.results.map((x) => x.disposition)).toEqual(lines.map(() => 'authentic'));
    expect(new Set(py.results.map((x) => x.evidence_id))).toEqual(new Set(served.map((x) => JSON.parse(x.text).evidence_id)));
  });

  it('the served bytes are exactly the RFC 8785 text Python computes', { timeout: 60_000 }, async () => {
    const py = await pyCanonical(served.map((s) => s.file));
    for (const [i, s] of served.entries()) expect(py[i], s.label).toBe(s.text);
  });

  it('the attested metadata kept every JCS-sensitive value (so the check above exercised them)', () => {
    const reserve = JSON.parse(served.find((s) => s.label === 'reserve live')!.text);
    const md = reserve.payload.reserve.request.metadata;
    expect(md['\ud83d\ude00']).toBe('emoji name');
    expect(md.seps).toBe('\u2028\u2029');
    expect(md.small).toBe(1e-7);
    expect(Object.is(md.negZero, 0) || Object.is(md.negZero, -0)).toBe(true);
    expect(served.find((s) => s.label === 'reserve live')!.text).toContain('"negZero":0,');
    const commit = JSON.parse(served.find((s) => s.label === 'commit')!.text);
    expect(commit.payload.commit.request.metrics.custom.small).toBe(1e-7);
  });

  it('every one-byte change of the served commit envelope (metadata with every JCS hazard) gets the same non-valid verdict from both', { timeout: 120_000 }, async () => {
    const text = served.find((s) => s.label === 'commit')!.text;
    const bytes = Buffer.from(text);
    const inputs: { file: string; bytes: Buffer }[] = [];
    for (let i = 0; i < bytes.length; i++) {
      const t = Buffer.from(bytes);
      t[i] ^= 0x01;
      inputs.push({ file: tmpFile(t, `commit-${i}`), bytes: t });
    }
    const py = await pyBatch(inputs.map((x) => ({ op: 'verify', file: x.file, jwks: jwksFile })));
    const disagreements: string[] = [];
    for (const [i, x] of inputs.entries()) {
      expect(['authentic', 'binding_only'], `byte ${i}`).not.toContain(py[i].disposition);
      const ts = await verifyEnvelope(x.bytes, { schema, jwks: { set: jwksSet } });
      if (ts.disposition !== py[i].disposition) disagreements.push(`byte ${i}: py ${py[i].disposition} (${py[i].reason}) / ts ${ts.disposition} (${ts.reason})`);
    }
    expect(disagreements).toEqual([]);
    expect(inputs.length).toBeGreaterThan(1000);
  });

  it('a one-byte change in any member, or in the signature, is rejected by both, with the same disposition', { timeout: 60_000 }, async () => {
    const tampered: { label: string; text: string }[] = [];
    for (const s of served) {
      const env = JSON.parse(s.text) as Record<string, any>;
      // one byte of a member value inside the payload: the idempotency key's last character
      const art = env.artifact_type as string;
      const request = art === 'error' ? env.payload.error.request : env.payload[art].request;
      const idem = request.idempotency_key as string;
      const changed = idem.slice(0, -1) + (idem.endsWith('x') ? 'y' : 'x');
      tampered.push({ label: `${s.label}: payload byte`, text: s.text.replace(`"idempotency_key":"${idem}"`, `"idempotency_key":"${changed}"`) });
      tampered.push({ label: `${s.label}: issued_at_ms`, text: s.text.replace(/"issued_at_ms":(\d+)/, (_m, n: string) => `"issued_at_ms":${BigInt(n) + 1n}`) });
      tampered.push({ label: `${s.label}: signature`, text: flipLastHex(s.text, 'signature') });
      tampered.push({ label: `${s.label}: evidence_id`, text: flipLastHex(s.text, 'evidence_id') });
    }
    for (const t of tampered) expect(t.text, t.label).not.toBe(served.find((s) => t.label.startsWith(s.label))!.text);
    const files = tampered.map((t) => tmpFile(t.text, 'tampered'));
    const py = await pyVerify(files, { jwks: jwksFile });
    expect(py.code).toBe(1);
    for (const [i, t] of tampered.entries()) {
      const ts = await verifyEnvelope(t.text, { schema, jwks: { set: jwksSet } });
      expect(py.results[i].disposition, t.label).toBe('signature_invalid');
      expect(ts.disposition, t.label).toBe(py.results[i].disposition);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Edge cases of resolution, selection and shape: Python (the recipe) vs TypeScript
// ---------------------------------------------------------------------------------------

type Disp = 'authentic' | 'binding_only' | 'signer_authority_failed' | 'signer_resolution_failed' | 'signature_invalid';
interface Case {
  name: string;
  text: string;
  /** a JWK Set object, raw file text, or none */
  jwks?: object | string;
  py: Disp;
  /** our verifier with the schema check (what `cycles evidence verify` runs); default = py */
  ts?: Disp;
  /** our verifier without the schema check (the library's default); default = ts */
  tsNoSchema?: Disp;
}

suite('independent (Python) verifier vs ours: resolution, selection and shape edge cases', () => {
  const f01 = fixtures.find((f) => f.name.startsWith('01-'))!;
  const f02 = fixtures.find((f) => f.name.startsWith('02-'))!;
  const f03 = fixtures.find((f) => f.name.startsWith('03-'))!;
  const f11 = fixtures.find((f) => f.name.startsWith('11-'))!;
  const at = f01.envelope.issued_at_ms as number;
  const other = new EvidenceSigner(seedOf('pyverify-other'));
  const otherJwk = { ...fixtureJwk({ kid: 'other' }), x: b64(other.publicKeyHex) };
  const set = (...keys: unknown[]) => ({ keys });
  const did = didCycles(f01.envelope.server_id, 'fx');
  const didText = sealText({ ...f01.envelope, signer_did: did });
  const withResponse = (f: typeof f01, art: string, patch: Record<string, unknown>) =>
    ({ ...f.envelope, payload: { [art]: { ...f.envelope.payload[art], response: { ...f.envelope.payload[art].response, ...patch } } } });

  // the last base64url character of a 32-byte key carries 4 key bits and 2 unused bits
  const ALPHA = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const xs = b64(FIXTURE_PUBLIC_KEY);
  const nonCanonicalX = xs.slice(0, -1) + ALPHA[ALPHA.indexOf(xs[42]) ^ 1];
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const le = (hex: string) => BigInt(`0x${Buffer.from(hex, 'hex').reverse().toString('hex')}`);
  const leHex = (n: bigint) => Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse().toString('hex');
  const sPlusL = (sig: string) => sig.slice(0, 64) + leHex(le(sig.slice(64)) + L);
  const withSignature = (text: string, sig: string) => text.replace(/"signature":"[0-9a-f]{128}"/, `"signature":"${sig}"`);
  function weakKeyEnvelope(): string {
    const identity = `01${'00'.repeat(31)}`;
    const env = { ...f01.envelope, signer_did: identity, evidence_id: '', signature: '' } as unknown as CyclesEvidence;
    return canonicalJson({ ...env, evidence_id: evidenceIdOf(env, 'ijson'), signature: identity + '00'.repeat(32) }, 'ijson');
  }

  const cases: Case[] = [
    // raw hex
    { name: 'raw hex, covering key', text: f01.text, jwks: set(fixtureJwk()), py: 'authentic' },
    { name: 'raw hex, no set', text: f01.text, py: 'binding_only' },
    { name: 'raw hex, key absent from the set', text: f01.text, jwks: set(otherJwk), py: 'signer_authority_failed' },
    { name: 'raw hex, set unparseable', text: f01.text, jwks: '{"keys": [', py: 'signer_resolution_failed' },
    { name: 'raw hex, set with a duplicate member name', text: f01.text, jwks: `{"keys":${JSON.stringify([fixtureJwk()])},"keys":[]}`, py: 'signer_resolution_failed' },
    { name: 'raw hex, set with a number beyond binary64', text: f01.text, jwks: `{"keys":[${JSON.stringify(fixtureJwk()).replace('"cycles_nbf_ms":0', '"cycles_nbf_ms":1e400')}]}`, py: 'signer_resolution_failed' },
    { name: 'raw hex, set without keys', text: f01.text, jwks: { kid: 'x' }, py: 'signer_resolution_failed' },
    { name: 'raw hex, duplicate kid', text: f01.text, jwks: set(fixtureJwk(), { ...otherJwk, kid: 'fx' }), py: 'signer_authority_failed' },
    { name: 'nbf = issued_at (inclusive)', text: f01.text, jwks: set(fixtureJwk({ cycles_nbf_ms: at })), py: 'authentic' },
    { name: 'nbf = issued_at + 1', text: f01.text, jwks: set(fixtureJwk({ cycles_nbf_ms: at + 1 })), py: 'signer_authority_failed' },
    { name: 'exp = issued_at (exclusive)', text: f01.text, jwks: set(fixtureJwk({ cycles_exp_ms: at })), py: 'signer_authority_failed' },
    { name: 'exp = issued_at + 1, status retired', text: f01.text, jwks: set(fixtureJwk({ cycles_exp_ms: at + 1, status: 'retired' })), py: 'authentic' },
    { name: 'exp null', text: f01.text, jwks: set(fixtureJwk({ cycles_exp_ms: null })), py: 'authentic' },
    { name: 'alg EdDSA', text: f01.text, jwks: set(fixtureJwk({ alg: 'EdDSA' })), py: 'authentic' },
    { name: 'alg ES256 (excluded)', text: f01.text, jwks: set(fixtureJwk({ alg: 'ES256' })), py: 'signer_authority_failed' },
    { name: 'kty EC (excluded)', text: f01.text, jwks: set(fixtureJwk({ kty: 'EC' })), py: 'signer_authority_failed' },
    { name: 'crv Ed448 (excluded)', text: f01.text, jwks: set(fixtureJwk({ crv: 'Ed448' })), py: 'signer_authority_failed' },
    { name: 'x padded (excluded)', text: f01.text, jwks: set(fixtureJwk({ x: `${b64(FIXTURE_PUBLIC_KEY)}=` })), py: 'signer_authority_failed' },
    { name: 'x 33 bytes (excluded)', text: f01.text, jwks: set(fixtureJwk({ x: b64(`${FIXTURE_PUBLIC_KEY}00`) })), py: 'signer_authority_failed' },
    { name: 'nbf missing (excluded)', text: f01.text, jwks: set(fixtureJwk({ cycles_nbf_ms: undefined })), py: 'signer_authority_failed' },
    { name: 'nbf a string (excluded)', text: f01.text, jwks: set(fixtureJwk({ cycles_nbf_ms: '0' })), py: 'signer_authority_failed' },
    { name: 'exp 1.5 (excluded)', text: f01.text, jwks: set(fixtureJwk({ cycles_exp_ms: 1.5 })), py: 'signer_authority_failed' },
    { name: 'same key twice, both covering', text: f01.text, jwks: set(fixtureJwk({ kid: 'a' }), fixtureJwk({ kid: 'b', cycles_nbf_ms: 1 })), py: 'signer_authority_failed' },
    { name: 'same key twice, disjoint windows', text: f01.text, jwks: set(fixtureJwk({ kid: 'a', cycles_exp_ms: 10 }), fixtureJwk({ kid: 'b', cycles_nbf_ms: 10 })), py: 'authentic' },
    { name: 'unknown JWK and set members ignored', text: f01.text, jwks: { keys: [fixtureJwk({ use: 'sig', extra: [1] })], note: 'x' }, py: 'authentic' },
    { name: 'signature flipped, covering key', text: flipLastHex(f01.text, 'signature'), jwks: set(fixtureJwk()), py: 'signature_invalid' },
    { name: 'signature flipped, no set', text: flipLastHex(f01.text, 'signature'), py: 'signature_invalid' },
    { name: 're-signed by another key under the fixture signer_did', text: sealText({ ...f01.envelope }, other), jwks: set(fixtureJwk()), py: 'signature_invalid' },
    { name: 'self-named other key, fixture set', text: sealText({ ...f01.envelope, signer_did: other.publicKeyHex }, other), jwks: set(fixtureJwk()), py: 'signer_authority_failed' },
    // DIFFERENCE A (decision DEV11): a raw-hex envelope failing BOTH the signature and the
    // set lookup. The spec's key-selection steps resolve/authorize first (1, 2) and verify
    // the signature last (3); our verifier checks the named key's signature first.
    { name: 'signature flipped AND key absent from the set', text: flipLastHex(f01.text, 'signature'), jwks: set(otherJwk), py: 'signer_authority_failed', ts: 'signature_invalid' },
    { name: 'signature flipped AND set unparseable', text: flipLastHex(f01.text, 'signature'), jwks: '{"keys": [', py: 'signer_resolution_failed', ts: 'signature_invalid' },
    // did:cycles
    { name: 'did:cycles, kid in set', text: didText, jwks: set(fixtureJwk()), py: 'authentic' },
    { name: 'did:cycles, no set', text: didText, py: 'signer_resolution_failed' },
    { name: 'did:cycles, set unparseable', text: didText, jwks: '[', py: 'signer_resolution_failed' },
    { name: 'did:cycles, kid absent', text: didText, jwks: set(fixtureJwk({ kid: 'other' })), py: 'signer_authority_failed' },
    { name: 'did:cycles, kid names another key', text: didText, jwks: set({ ...otherJwk, kid: 'fx' }), py: 'signature_invalid' },
    { name: 'did:cycles, window not covering', text: didText, jwks: set(fixtureJwk({ cycles_exp_ms: at })), py: 'signer_authority_failed' },
    { name: 'did:cycles, hash of another server_id', text: sealText({ ...f01.envelope, signer_did: didCycles(`${f01.envelope.server_id}/`, 'fx') }), jwks: set(fixtureJwk()), py: 'signer_authority_failed' },
    { name: 'did:cycles, signature flipped', text: flipLastHex(didText, 'signature'), jwks: set(fixtureJwk()), py: 'signature_invalid' },
    // DIFFERENCE B (DEV11): a signer_did of neither form. The spec: "the DID method could not
    // be resolved" is signer_resolution_failed; ours reports a malformed envelope.
    { name: 'signer_did did:web (unresolvable method)', text: sealText({ ...f01.envelope, signer_did: 'did:web:cycles.example.com' }), jwks: set(fixtureJwk()), py: 'signer_resolution_failed', ts: 'signature_invalid' },
    // shape: what the spec says a verifier MUST reject
    { name: 'schema_version v0.2 (re-signed)', text: sealText({ ...f01.envelope, schema_version: 'cycles-evidence/v0.2' }), py: 'signature_invalid' },
    { name: 'artifact_type reserve with payload.decide (re-signed)', text: sealText({ ...f01.envelope, artifact_type: 'reserve' }), py: 'signature_invalid' },
    { name: 'extra top-level member (re-signed)', text: sealText({ ...f01.envelope, extra: 1 }), py: 'signature_invalid' },
    { name: 'trace_id uppercase (re-signed)', text: sealText({ ...f01.envelope, trace_id: f01.envelope.trace_id.toUpperCase() }), py: 'signature_invalid' },
    { name: 'duplicate member name', text: `${f01.text.trimEnd().slice(0, -1)},"signature":"${f01.envelope.signature}"}`, py: 'signature_invalid' },
    { name: 'lone surrogate in a value', text: f01.text.replace('"researcher"', '"researcher\\ud800"'), py: 'signature_invalid' },
    { name: 'number beyond binary64 (1e400)', text: f01.text.replace('"amount":2000000', '"amount":1e400'), py: 'signature_invalid' },
    // the same valid envelope written differently: both re-canonicalize, never hash the bytes
    { name: 'pretty-printed, members reordered', text: JSON.stringify(Object.fromEntries(Object.entries(f01.envelope).reverse()), null, 2), py: 'binding_only' },
    { name: 'metadata 1e21, 1E-7, -0 (re-signed as doubles)', text: sealText({ ...f02.envelope, payload: { reserve: { ...f02.envelope.payload.reserve, request: { ...f02.envelope.payload.reserve.request, metadata: { big: 1e21, small: 1e-7, neg: -0 } } } } }), py: 'binding_only' },
    // mirror rules (the schema): Python and our CLI reject; our library without `schema` accepts
    { name: 'decide response carries cycles_evidence (re-signed)', text: sealText(withResponse(f01, 'decide', { cycles_evidence: { evidence_id: '0'.repeat(64), cycles_evidence_url: 'https://x/v1/evidence/0' } })), py: 'signature_invalid' },
    { name: 'reserve response carries remaining_ttl_ms (re-signed)', text: sealText(withResponse(f02, 'reserve', { remaining_ttl_ms: 1000 })), py: 'signature_invalid' },
    { name: 'error code outside the mirror enum (re-signed)', text: sealText(withResponse(f11, 'error', { error: 'ACTION_QUOTA_EXCEEDED' })), py: 'signature_invalid' },
    { name: 'reserve DENY on a live request (re-signed)', text: sealText({ ...f03.envelope, payload: { reserve: { ...f03.envelope.payload.reserve, request: { ...f03.envelope.payload.reserve.request, dry_run: false } } } }), py: 'signature_invalid' },
    { name: 'caps on an ALLOW (re-signed)', text: sealText(withResponse(f01, 'decide', { caps: { max_tokens: 1 } })), py: 'signature_invalid' },
    { name: 'error on commit without reservation_id (re-signed)', text: sealText({ ...f11.envelope, payload: { error: { ...f11.envelope.payload.error, endpoint: 'POST /v1/reservations/{reservation_id}/commit', request: { idempotency_key: 'k', actual: { unit: U, amount: 1 } } } } }), py: 'signature_invalid' },
    // JWK validity corners
    { name: 'JWK without kid, raw hex', text: f01.text, jwks: set(fixtureJwk({ kid: undefined })), py: 'signer_authority_failed' },
    { name: 'JWK with a numeric kid, raw hex', text: f01.text, jwks: set(fixtureJwk({ kid: 5 })), py: 'signer_authority_failed' },
    { name: 'null and non-object entries are skipped', text: f01.text, jwks: set(null, 'x', 7, fixtureJwk()), py: 'authentic' },
    { name: 'x with non-zero unused bits (same bytes to a lenient decoder)', text: f01.text, jwks: set(fixtureJwk({ x: nonCanonicalX })), py: 'signer_authority_failed' },
    { name: 'x as standard base64 (+/ alphabet)', text: f01.text, jwks: set(fixtureJwk({ x: Buffer.from(FIXTURE_PUBLIC_KEY, 'hex').toString('base64').replace(/=+$/, '') })), py: Buffer.from(FIXTURE_PUBLIC_KEY, 'hex').toString('base64').match(/[+/]/) ? 'signer_authority_failed' : 'authentic' },
    // Ed25519 corners
    { name: 'signature S + L (non-canonical S)', text: withSignature(f01.text, sPlusL(f01.envelope.signature)), py: 'signature_invalid' },
    // DIFFERENCE D (DEV11): a small-order public key (the identity point) with R = identity,
    // S = 0 satisfies the RFC 8032 equation for ANY message. OpenSSL (via `cryptography`)
    // accepts it, so the recipe run with common tools says binding_only; @noble/ed25519
    // (zip215: false) refuses it. Only the binding_only posture is exposed: no legitimate
    // JWK Set contains such a key.
    { name: 'small-order signer_did with the universal signature', text: weakKeyEnvelope(), py: 'binding_only', ts: 'signature_invalid' },
    // DIFFERENCE C (DEV11): issued_at_ms above 2^53 (an exact double, within int64): the
    // schema allows it; our verifier's shape check requires a safe integer.
    { name: 'issued_at_ms 2^53 + 2 (re-signed)', text: sealText({ ...f01.envelope, issued_at_ms: 2 ** 53 + 2 }), py: 'binding_only', ts: 'signature_invalid' },
  ];

  const files = cases.map((c) => ({
    file: tmpFile(c.text, 'case'),
    jwks: c.jwks === undefined ? undefined : tmpFile(typeof c.jwks === 'string' ? c.jwks : JSON.stringify(c.jwks), 'case-jwks'),
  }));
  let py: Record<string, any>[] = [];
  beforeAll(async () => { py = await pyBatch(files.map((x) => ({ op: 'verify', ...x }))); }, 120_000);

  it('--resolve fetches {server_id}/.well-known/cycles-jwks.json (404 ⇒ signer_resolution_failed)', { timeout: 60_000 }, async () => {
    const http = createServer((req, res) => {
      if (req.url === '/v1/.well-known/cycles-jwks.json') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(set(fixtureJwk())));
      else res.writeHead(404).end('{}');
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
      const good = tmpFile(sealText({ ...f01.envelope, server_id: `${base}/v1` }), 'resolve');
      const gone = tmpFile(sealText({ ...f01.envelope, server_id: `${base}/gone` }), 'resolve');
      // a trailing '/' on server_id: only the doubled '/' at the join collapses
      const slash = tmpFile(sealText({ ...f01.envelope, server_id: `${base}/v1/` }), 'resolve');
      const r = await python(['--resolve', good, gone, slash]);
      const out = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as PyResult);
      expect(out.map((x) => x.disposition)).toEqual(['authentic', 'signer_resolution_failed', 'authentic']);
      expect(r.code).toBe(1);
      for (const [i, file] of [good, gone, slash].entries()) {
        expect((await verifyEnvelope(readFileSync(file), { schema, jwks: { fromServerId: true } })).disposition).toBe(out[i].disposition);
      }
    } finally {
      await new Promise((r) => http.close(r));
    }
  });

  it.each(cases.map((c, i) => [c.name, c, i] as const))('%s', async (_n, c, i) => {
    expect(py[i].disposition, py[i].reason).toBe(c.py);
    const jwksFileOf = files[i].jwks;
    const opts: VerifyOptions = jwksFileOf === undefined ? {} : { jwks: { location: jwksFileOf } };
    const ts = await verifyEnvelope(c.text, { ...opts, schema });
    expect(ts.disposition, ts.reason).toBe(c.ts ?? c.py);
    const tsLib = await verifyEnvelope(c.text, opts);
    expect(tsLib.disposition, tsLib.reason).toBe(c.tsNoSchema ?? c.ts ?? c.py);
  });
});

// ---------------------------------------------------------------------------------------
// A did:cycles identity with a rotation history, and seeded random attested data
// ---------------------------------------------------------------------------------------

suite('independent (Python) verifier: did:cycles signer, retired key, random metadata', () => {
  let srv: TestServer;
  const retired = new EvidenceSigner(seedOf('pyverify-retired'));
  const ROTATED_AT = Date.now() - 60_000;
  const RETIRED_FROM = ROTATED_AT - 86_400_000;
  const DID = didCycles(SERVER_ID, 'active-2');
  let jwksFile = '';
  let jwksSet: unknown;
  let key = '';
  let tenant = '';

  beforeAll(async () => {
    srv = await startTestServer({
      EVIDENCE_SERVER_ID: SERVER_ID,
      EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('pyverify-active')).toString('hex'),
      EVIDENCE_SIGNING_SIGNER_DID: DID,
      EVIDENCE_SIGNING_KID: 'active-2',
      EVIDENCE_SIGNING_RETIRED_KEYS: JSON.stringify([{ signer_did: retired.publicKeyHex, kid: 'retired-1', nbf_ms: RETIRED_FROM, exp_ms: ROTATED_AT }]),
      CYCLES_EVIDENCE_RATE_LIMIT_PER_MINUTE: '0',
      // v0.1.26 responses carry members the v0.1.25 mirrors lack (deny_detail …): the envelope
      // must attest their projection (DEV2), which the recipe's closed mirrors check
      CYCLES_FEATURES: 'v0.1.26',
    });
    tenant = `pyd-${Math.random().toString(36).slice(2, 8)}`;
    await putBudget(srv.redis.client, tenant, `tenant:${tenant}`, U, { allocated: 1_000_000 });
    key = await srv.tenantKey(tenant);
    const j = await fetch(`${srv.runtimeUrl}/v1/.well-known/cycles-jwks.json`);
    expect(j.status).toBe(200);
    const text = await j.text();
    jwksSet = JSON.parse(text);
    jwksFile = tmpFile(text, 'did-jwks');
  }, 120_000);
  afterAll(async () => { await srv?.stop(); });

  async function served(id: string): Promise<string> {
    const until = Date.now() + 10_000;
    for (;;) {
      const r = await fetch(`${srv.runtimeUrl}/v1/evidence/${id}`);
      if (r.status === 200) return r.text();
      if (Date.now() > until) throw new Error(`envelope ${id} not served`);
      await new Promise((res) => setTimeout(res, 25));
    }
  }

  it('did:cycles envelopes from the server are authentic under the active kid; one signed in the retired window under the retired kid', { timeout: 60_000 }, async () => {
    const body = { idempotency_key: 'dd1', subject: { tenant }, action: { kind: 'llm.completion', name: 'gpt' }, estimate: { unit: U, amount: 10 } };
    const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body });
    expect(r.status, r.text).toBe(200);
    const text = await served(r.body.cycles_evidence.evidence_id);
    expect(JSON.parse(text).signer_did).toBe(DID);
    // an envelope the retired key signed while it was valid (as before a rotation)
    const old = sealText({ ...JSON.parse(text), signer_did: didCycles(SERVER_ID, 'retired-1'), issued_at_ms: ROTATED_AT - 1 }, retired);
    // ... and the same one dated at the rotation instant (the retired window is exclusive)
    const late = sealText({ ...JSON.parse(text), signer_did: didCycles(SERVER_ID, 'retired-1'), issued_at_ms: ROTATED_AT }, retired);
    // v0.1.26 denials: a decide DENY (deny_detail on the wire) and a live 409
    const deny = await call(srv.runtimeUrl, 'POST', '/v1/decide', { key, body: { ...body, idempotency_key: 'dd2', estimate: { unit: U, amount: 5_000_000 } } });
    expect(deny.body.decision, deny.text).toBe('DENY');
    expect(deny.body.deny_detail, deny.text).toBeDefined(); // on the wire, not attested (DEV2)
    const over = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body: { ...body, idempotency_key: 'dd3', estimate: { unit: U, amount: 5_000_000 } } });
    expect(over.status, over.text).toBe(409);
    const denyText = await served(deny.body.cycles_evidence.evidence_id);
    const overText = await served(over.body.cycles_evidence.evidence_id);
    const all = [text, old, late, denyText, overText];
    const py = await pyVerify(all.map((t) => tmpFile(t, 'did')), { jwks: jwksFile });
    expect(py.results.map((x) => [x.disposition, x.kid])).toEqual([['authentic', 'active-2'], ['authentic', 'retired-1'], ['signer_authority_failed', undefined], ['authentic', 'active-2'], ['authentic', 'active-2']]);
    for (const [i, t] of all.entries()) {
      expect((await verifyEnvelope(t, { schema, jwks: { set: jwksSet } })).disposition).toBe(py.results[i].disposition);
    }
  });

  it('metadata nested as deep as the request parser allows: the envelope verifies in Python and in ours (F2)', { timeout: 60_000 }, async () => {
    // the request document may nest 64 levels (MAX_JSON_DEPTH); the envelope wraps the
    // request 4 levels deeper (root → payload → decide → request)
    let metadata: unknown = 'leaf';
    for (let i = 0; i < 62; i++) metadata = { n: metadata };
    const body = { idempotency_key: 'deep-1', subject: { tenant }, action: { kind: 'llm.completion', name: 'gpt' }, estimate: { unit: U, amount: 10 }, metadata };
    const r = await call(srv.runtimeUrl, 'POST', '/v1/decide', { key, body });
    expect(r.status, r.text).toBe(200);
    // read from the store: with CYCLES_VALIDATE_RESPONSES=1 (tests) GET /v1/evidence/{id}
    // answers this envelope 400 "JSON nesting deeper than 64 levels" (the response check
    // parses the stored bytes with the request parser; production serves it: DEV11 F2)
    const id = r.body.cycles_evidence.evidence_id as string;
    let text: string | null = null;
    for (const until = Date.now() + 10_000; text === null && Date.now() < until;) {
      text = await srv.redis.client.get(keys.evidenceEnvelope(id));
      if (text === null) await new Promise((res) => setTimeout(res, 25));
    }
    if (text === null) throw new Error(`envelope ${id} not stored`);
    const py = await pyVerify([tmpFile(text, 'deep')], { jwks: jwksFile });
    expect(py.results[0].disposition, py.results[0].reason).toBe('authentic');
    // F2 (DEV11): our verifier used to refuse this envelope our own server signed
    // (parseJsonDoubles applied the request-body depth bound to the whole envelope)
    const ts = await verifyEnvelope(text, { schema, jwks: { set: jwksSet } });
    expect(ts.disposition, ts.reason).toBe('authentic');
  });

  it('int64 amounts above 2^53 that a double carries exactly (DEV1) verify in Python, byte-equal', { timeout: 60_000 }, async () => {
    const big = `pyb-${Math.random().toString(36).slice(2, 8)}`;
    await putBudget(srv.redis.client, big, `tenant:${big}`, U, { allocated: 2n ** 54n });
    const bigKey = await srv.tenantKey(big);
    const amount = 2n ** 53n + 2n; // exact as a double; 2^54 − it = 2^53 − 2 is safe
    const rawBody = (idem: string) => `{"idempotency_key":"${idem}","subject":{"tenant":"${big}"},"action":{"kind":"llm.completion","name":"gpt"},"estimate":{"unit":"${U}","amount":${amount}}}`;
    const d = await call(srv.runtimeUrl, 'POST', '/v1/decide', { key: bigKey, rawBody: rawBody('b1') });
    const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: bigKey, rawBody: rawBody('b2') });
    expect(r.status, r.text).toBe(200);
    const texts = [await served(d.body.cycles_evidence.evidence_id), await served(r.body.cycles_evidence.evidence_id)];
    expect(texts[1]).toContain(`"amount":${amount}`);
    const files = texts.map((t) => tmpFile(t, 'int64'));
    const [py, canon] = await Promise.all([pyVerify(files, { jwks: jwksFile }), pyCanonical(files)]);
    expect(py.results.map((x) => x.disposition)).toEqual(['authentic', 'authentic']);
    expect(canon).toEqual(texts);
  });

  it('40 decide requests with seeded random metadata: every served envelope verifies in Python, byte-equal to its JCS', { timeout: 120_000 }, async () => {
    let seed = 0xC0FFEE;
    const rnd = (n: number) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
    const CHARS = ['a', 'Z', '0', ' ', '"', '\\', '/', '\u0000', '\u0001', '\u001f', '\u007f', '\u0080', '\u00e9', 'e\u0301', '\u2028', '\u2029',
      '\u20ac', '\ufb33', '\uffff', '\ud83d\ude00', '\ud834\udd1e', '\ud800\udc00', '\udbff\udfff', '\t', '\n', '<', '&', '\'', '\u200b'];
    const str = () => Array.from({ length: rnd(6) }, () => CHARS[rnd(CHARS.length)]).join('');
    const dv = new DataView(new ArrayBuffer(8));
    const num = (): number => {
      switch (rnd(5)) {
        case 0: return rnd(2 ** 30) - 2 ** 29;
        case 1: return (rnd(2 ** 30) / (rnd(1000) + 1)) * (rnd(2) ? 1 : -1);
        case 2: return Number(`${rnd(10)}.${rnd(1e6)}e${rnd(40) - 20}`);
        case 3: { // a random finite double that is not an integer beyond 2^53 (the server refuses those)
          for (;;) {
            dv.setUint32(0, rnd(2 ** 32)); dv.setUint32(4, rnd(2 ** 32));
            const n = dv.getFloat64(0);
            if (Number.isFinite(n) && !(Number.isInteger(n) && !Number.isSafeInteger(n))) return n;
          }
        }
        default: return [0, -0, 1e-7, 0.000001, 1e20, 5e-324, 0.1, 2 ** 53 - 1][rnd(8)];
      }
    };
    const value = (depth: number): unknown => {
      const k = rnd(depth > 2 ? 4 : 6);
      if (k === 0) return str();
      if (k === 1) return num();
      if (k === 2) return [true, false, null][rnd(3)];
      if (k === 3) return str();
      if (k === 4) return Array.from({ length: rnd(4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: rnd(5) }, () => [str(), value(depth + 1)]));
    };
    const texts: string[] = [];
    for (let i = 0; i < 40; i++) {
      const metadata = Object.fromEntries(Array.from({ length: 1 + rnd(6) }, () => [str(), value(0)]));
      const body = { idempotency_key: `rnd-${i}`, subject: { tenant }, action: { kind: 'llm.completion', name: 'gpt' }, estimate: { unit: U, amount: 10 }, metadata };
      const r = await call(srv.runtimeUrl, 'POST', '/v1/decide', { key, body });
      expect(r.status, r.text).toBe(200);
      texts.push(await served(r.body.cycles_evidence.evidence_id));
    }
    const files = texts.map((t) => tmpFile(t, 'random'));
    const [py, canon] = await Promise.all([pyVerify(files, { jwks: jwksFile }), pyCanonical(files)]);
    expect(py.results.filter((x) => x.disposition !== 'authentic')).toEqual([]);
    expect(py.code).toBe(0);
    for (const [i, t] of texts.entries()) expect(canon[i]).toBe(t);
  });
});
