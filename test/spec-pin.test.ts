// The spec-author loop (decision DB3, docs/codegen.md): a copy of the bundle gains an
// operation, a request field and an enum value; `codegen --pin DIR --scaffold`, run in a
// copy of this repository (the real specs/manifest.json, src/generated and handlers/ are
// never written), re-pins the manifest, reports the three changes, regenerates and writes
// a 501 skeleton for the new operation; the copy's server then routes the new operation
// (501) and validates the new field. Also: the change classifier on small documents.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseDocument, type YAMLSeq } from 'yaml';
import { REPO_ROOT, specsDirFrom } from '../src/config';
import { freePort } from '../src/store/redisProcess';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { diffDocuments, formatDiff } from '../codegen/specdiff';
import { sha256Hex } from '../codegen/bundle';

const run = promisify(execFile);
const ADMIN = 'spec-pin-admin-key-0123456789abcdefghij';

let work: string;
let redis: TestRedis;
let child: ChildProcess | undefined;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'cycles-pin-'));
  redis = await startTestRedis();
});
afterAll(async () => {
  if (child && child.exitCode === null) {
    const gone = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  await redis?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The spec author's edit: an operation, an optional request field, an error code. */
function editRuntimeSpec(file: string): void {
  const doc = parseDocument(readFileSync(file, 'utf8'));
  doc.setIn(['components', 'schemas', 'ReservationCreateRequest', 'properties', 'priority'],
    doc.createNode({ type: 'integer', minimum: 0, maximum: 9, description: 'Scheduling hint (0 = lowest).' }));
  (doc.getIn(['components', 'schemas', 'ErrorCode', 'enum']) as YAMLSeq).add('EXAMPLE_NEW_CODE');
  doc.setIn(['paths', '/v1/server-info'], doc.createNode({
    get: {
      operationId: 'getServerInfo',
      summary: 'Server version and features',
      tags: ['Balances'],
      responses: {
        '200': {
          description: 'OK',
          content: { 'application/json': { schema: { type: 'object', required: ['version'], properties: { version: { type: 'string' } } } } },
        },
      },
    },
  }));
  writeFileSync(file, doc.toString());
}

describe('spec-author loop: --pin DIR --scaffold', () => {
  it('reports the new operation, field and enum value; the regenerated server routes the operation (501) and validates the field', { timeout: 300_000 }, async () => {
    const realManifest = readFileSync(join(REPO_ROOT, 'specs', 'manifest.json'), 'utf8');
    // the new bundle: a copy of the pinned one, edited
    const bundle = join(work, 'bundle');
    cpSync(specsDirFrom(process.env), bundle, { recursive: true });
    editRuntimeSpec(join(bundle, 'cycles-protocol-v0.yaml'));
    // a copy of the repository to pin and regenerate in
    const repo = join(work, 'repo');
    for (const entry of ['src', 'handlers', 'bin', 'codegen', 'specs', 'package.json', 'tsconfig.json']) {
      cpSync(join(REPO_ROOT, entry), join(repo, entry), { recursive: true });
    }
    symlinkSync(realpathSync(join(REPO_ROOT, 'node_modules')), join(repo, 'node_modules'), 'dir');
    const env = { ...process.env, CYCLES_SPECS_DIR: specsDirFrom(process.env) };
    const tsx = join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const reportFile = join(work, 'report.json');

    const pin = await run(process.execPath, [tsx, 'codegen/index.ts', '--pin', bundle, '--scaffold', '--commit', 'a'.repeat(40), '--json', reportFile],
      { cwd: repo, env, maxBuffer: 16 << 20 });
    const out = pin.stdout;
    // the printed report names the operation, the field and the enum value, each classified
    expect(out).toMatch(/\+ added {3}\(additive\) runtime GET {4}\/v1\/server-info {2}\(getServerInfo\)/);
    expect(out).toMatch(/additive runtime ReservationCreateRequest\.priority: property added \(optional\) \[request\]/);
    expect(out).toMatch(/runtime ErrorCode: \+ EXAMPLE_NEW_CODE/);
    expect(out).toContain('No breaking changes.');
    const report = JSON.parse(readFileSync(reportFile, 'utf8'));
    expect(report.diff.operations).toEqual([{ plane: 'runtime', operationId: 'getServerInfo', method: 'GET', path: '/v1/server-info', change: 'added' }]);
    expect(report.changedFiles).toEqual(['cycles-protocol-v0.yaml']);
    expect(report.scaffolded).toEqual([join(repo, 'handlers', 'runtime', 'getServerInfo.ts')]);

    // the copy's manifest is re-pinned; the real one is untouched
    const pinned = JSON.parse(readFileSync(join(repo, 'specs', 'manifest.json'), 'utf8'));
    expect(pinned.upstream.commit).toBe('a'.repeat(40));
    expect(pinned.files.find((f: { role: string }) => f.role === 'runtime_base').sha256).toBe(sha256Hex(readFileSync(join(bundle, 'cycles-protocol-v0.yaml'))));
    expect(readFileSync(join(REPO_ROOT, 'specs', 'manifest.json'), 'utf8')).toBe(realManifest);
    expect(existsSync(join(REPO_ROOT, 'handlers', 'runtime', 'getServerInfo.ts'))).toBe(false);

    // the skeleton carries the marker (that it type-checks was checked by hand with `npm run lint`; DB3)
    expect(readFileSync(join(repo, 'handlers', 'runtime', 'getServerInfo.ts'), 'utf8')).toContain('@cycles-scaffold');
    // `ops` lists it as a skeleton; everything else stays implemented
    const ops = JSON.parse((await run(process.execPath, [join(repo, 'bin', 'cycles.mjs'), 'ops', '--json'], { cwd: repo, env })).stdout);
    expect(ops.rows.find((r: { operationId: string }) => r.operationId === 'getServerInfo')).toMatchObject({ plane: 'runtime', status: 'scaffold' });
    expect(ops.scaffold).toBe(1);
    expect(ops.implemented).toBe(ops.rows.length - 1);
    // a second pin of the same bundle finds nothing new and scaffolds nothing
    const again = await run(process.execPath, [tsx, 'codegen/index.ts', '--pin', bundle, '--scaffold', '--from', bundle, '--commit', 'a'.repeat(40)], { cwd: repo, env, maxBuffer: 16 << 20 });
    expect(again.stdout).toContain('Operations: 0 added, 0 removed, 0 moved');
    expect(again.stdout).not.toContain('scaffolded');

    // the regenerated server
    const runtimePort = await freePort();
    let adminPort = await freePort();
    while (adminPort === runtimePort) adminPort = await freePort();
    const senv: NodeJS.ProcessEnv = { ...process.env };
    for (const k of ['CYCLES_FEATURES', 'VITEST', 'VITEST_WORKER_ID', 'VITEST_POOL_ID', 'NODE_ENV']) delete senv[k];
    Object.assign(senv, {
      REDIS_URL: redis.url, ADMIN_API_KEY: ADMIN, CYCLES_SPECS_DIR: bundle, CYCLES_LOG_LEVEL: 'warn', CYCLES_VALIDATE_RESPONSES: '1',
      CYCLES_RUNTIME_PORT: String(runtimePort), CYCLES_ADMIN_PORT: String(adminPort), CYCLES_ENTRY: 'source',
    });
    child = spawn(process.execPath, [join(repo, 'bin', 'cycles.mjs'), 'serve'], { cwd: repo, env: senv, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout!.on('data', (d) => { log += d; });
    child.stderr!.on('data', (d) => { log += d; });
    const rt = `http://127.0.0.1:${runtimePort}`;
    const ad = `http://127.0.0.1:${adminPort}`;
    const deadline = Date.now() + 90_000;
    for (const u of [rt, ad]) {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`server exited:\n${log}`);
        if (Date.now() > deadline) throw new Error(`server not ready:\n${log}`);
        const ok = await fetch(`${u}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status === 200, () => false);
        if (ok) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const admin = (path: string, body: unknown) => fetch(`${ad}${path}`, {
      method: 'POST', headers: { 'X-Admin-API-Key': ADMIN, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, body: await r.json() as any }));
    expect((await admin('/v1/admin/tenants', { tenant_id: 'pin', name: 'Pin' })).status).toBe(201);
    expect((await admin('/v1/admin/budgets', { tenant_id: 'pin', scope: 'tenant:pin', unit: 'TOKENS', allocated: { unit: 'TOKENS', amount: 1000 } })).status).toBe(201);
    const key = (await admin('/v1/admin/api-keys', { tenant_id: 'pin', name: 'agent' })).body.key_secret as string;
    expect(key).toBeTruthy();

    const info = await fetch(`${rt}/v1/server-info`, { headers: { 'X-Cycles-API-Key': key } });
    expect(info.status).toBe(501);
    expect(await info.json()).toMatchObject({ error: 'INTERNAL_ERROR', message: expect.stringContaining('getServerInfo') });

    const reserve = (priority: unknown, n: number) => fetch(`${rt}/v1/reservations`, {
      method: 'POST', headers: { 'X-Cycles-API-Key': key, 'Content-Type': 'application/json' },
      body: JSON.stringify({ idempotency_key: `pin-${n}`, subject: { tenant: 'pin' }, action: { kind: 'llm.completion', name: 'x' }, estimate: { unit: 'TOKENS', amount: 10 }, priority }),
    }).then(async (r) => ({ status: r.status, body: await r.json() as any }));
    const bad = await reserve('high', 1);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('/priority');
    expect((await reserve(10, 2)).status).toBe(400); // maximum 9
    const good = await reserve(3, 3); // refused before the pin (additionalProperties: false)
    expect(good.status).toBe(200);
    expect(good.body.decision).toBe('ALLOW');
  });
});

describe('change classification', () => {
  const doc = (schemas: Record<string, unknown>, paths: Record<string, unknown>) => ({ openapi: '3.1.0', paths, components: { schemas } });
  const reqRes = (reqRef: string, resRef: string, params: unknown[] = []) => ({
    '/v1/things': {
      post: {
        operationId: 'createThing',
        parameters: params,
        requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${reqRef}` } } } },
        responses: { '201': { description: 'ok', content: { 'application/json': { schema: { $ref: `#/components/schemas/${resRef}` } } } } },
      },
    },
  });
  const before = doc({
    Req: { type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 64 }, color: { type: 'string', enum: ['red', 'green'] }, old: { type: 'string' } }, additionalProperties: false },
    Res: { type: 'object', required: ['id', 'name'], properties: { id: { type: 'string' }, name: { type: 'string' }, color: { type: 'string', enum: ['red', 'green'] } } },
  }, reqRes('Req', 'Res', [{ in: 'query', name: 'dry', schema: { type: 'boolean' } }]));
  const after = doc({
    Req: { type: 'object', required: ['name', 'size'], properties: { name: { type: 'string', maxLength: 32 }, color: { type: 'string', enum: ['red', 'blue'] }, size: { type: 'integer' }, note: { type: 'string' } }, additionalProperties: false },
    Res: { type: 'object', required: ['id'], properties: { id: { type: 'string' }, name: { type: 'string' }, color: { type: 'string', enum: ['red', 'blue'] }, extra: { type: 'string' } } },
  }, reqRes('Req', 'Res', [{ in: 'query', name: 'dry', schema: { type: 'boolean' } }, { in: 'header', name: 'X-Tag', required: true, schema: { type: 'string' } }]));

  it('classifies request and response changes from a client’s point of view', () => {
    const d = diffDocuments({ runtime: before, admin: doc({}, {}) }, { runtime: after, admin: doc({}, {}) });
    const got = Object.fromEntries(d.schemas.map((s) => [`${s.where}: ${s.detail}`, s.class]));
    expect(got).toMatchObject({
      'Req.size: property added (required)': 'breaking',
      'Req.note: property added (optional)': 'additive',
      'Req.old: property removed': 'breaking',
      'Req.name: maxLength 64 → 32': 'breaking',
      'Req.color: enum value added: blue': 'additive',
      'Req.color: enum value removed: green': 'breaking',
      'Res.extra: property added (optional)': 'additive',
      'Res.name: no longer required': 'breaking',
      'Res.color: enum value removed: green': 'breaking',
      'createThing parameter header:X-Tag: parameter added (required)': 'breaking',
    });
    expect(d.enums.map((e) => `${e.where} +${e.added.join(',')} -${e.removed.join(',')}`)).toEqual(['Req.color +blue -green', 'Res.color +blue -green']);
    expect(formatDiff(d)).toMatch(/breaking changes: existing clients/);
  });

  it('names removed and added operations (a removal is breaking)', () => {
    const d = diffDocuments({ runtime: before, admin: doc({}, {}) }, { runtime: doc(after.components.schemas, {}), admin: doc({}, reqRes('Req', 'Res')) });
    expect(d.operations.map((o) => `${o.change} ${o.plane} ${o.operationId}`)).toEqual(['added admin createThing', 'removed runtime createThing']);
    expect(d.breaking).toBeGreaterThanOrEqual(1);
  });
});
