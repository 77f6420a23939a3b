// Tests for the spec generator (codegen/): bundle verification, merge, normalisation, output.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle, readManifest, repoRoot, sha256Hex, specsDir, SpecBundleError, type Bundle } from '../codegen/bundle';
import { generate, type GenerateResult } from '../codegen/generate';
import type { OperationInfo } from '../codegen/emit-operations';
import { mergeBundle } from '../codegen/merge';
import { normalizeForValidator } from '../codegen/normalize';
import { diffDirs, writeGenerated } from '../codegen/output';
import { createBackend } from '../codegen/verify';

const run = promisify(execFile);
const ROOT = repoRoot();
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const RUNTIME_BASE = 'cycles-protocol-v0.yaml';
const ACTION_KINDS = 'cycles-action-kinds-v0.1.26.yaml';
const GOVERNANCE_BASE = 'cycles-governance-admin-v0.1.25.yaml';

const temps: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Copy the pinned files of the bundle into a fresh writable directory. */
function copyBundle(): string {
  const src = specsDir({});
  const dst = tempDir('cycles-specs-');
  for (const f of readManifest().files) {
    const to = join(dst, f.name);
    mkdirSync(dirname(to), { recursive: true });
    writeFileSync(to, readFileSync(join(src, f.name)));
  }
  return dst;
}

function withSpecsDir<T>(dir: string, fn: () => T): T {
  const prev = process.env.CYCLES_SPECS_DIR;
  process.env.CYCLES_SPECS_DIR = dir;
  try {
    return fn();
  } finally {
    if (prev === undefined) delete process.env.CYCLES_SPECS_DIR;
    else process.env.CYCLES_SPECS_DIR = prev;
  }
}

async function runCodegen(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(TSX, [join(ROOT, 'codegen', 'index.ts'), ...args], {
      cwd: tmpdir(), // the generator must not depend on cwd
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let result: GenerateResult;
beforeAll(async () => {
  result = await generate();
}, 120_000);

describe('spec bundle verification', () => {
  it('detects a one-byte change and names the file, both hashes and the directory', () => {
    const dir = copyBundle();
    const name = 'cycles-protocol-extensions-v0.1.26.yaml';
    const path = join(dir, name);
    const bytes = readFileSync(path);
    const expected = sha256Hex(bytes);
    bytes[100] = bytes[100] === 0x20 ? 0x09 : 0x20;
    writeFileSync(path, bytes);
    const actual = sha256Hex(bytes);

    let caught: unknown;
    withSpecsDir(dir, () => {
      try {
        loadBundle();
      } catch (err) {
        caught = err;
      }
    });
    expect(caught).toBeInstanceOf(SpecBundleError);
    const err = caught as SpecBundleError;
    expect(err.message).toContain(name);
    expect(err.message).toContain(expected);
    expect(err.message).toContain(actual);
    expect(err.message).toContain(dir);
    expect(err.problems).toEqual([{ kind: 'mismatch', file: name, expected, actual }]);
  });

  it('detects a missing file', () => {
    const dir = copyBundle();
    rmSync(join(dir, 'impl', 'test-vectors.yaml'));
    const expected = readManifest().files.find((f) => f.role === 'test_vectors')!.sha256;
    expect(() => withSpecsDir(dir, () => loadBundle())).toThrowError(
      new RegExp(`impl/test-vectors\\.yaml: missing \\(expected sha256 ${expected}\\)`),
    );
  });

  it('makes `npm run codegen` exit non-zero on a hash mismatch', async () => {
    const dir = copyBundle();
    writeFileSync(join(dir, 'cycles-spec-index.yaml'), readFileSync(join(dir, 'cycles-spec-index.yaml'), 'utf8') + '#\n');
    const out = tempDir('cycles-gen-bad-');
    const r = await runCodegen(['--out', out], { CYCLES_SPECS_DIR: dir });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('cycles-spec-index.yaml');
    expect(r.stderr).toContain(readManifest().files.find((f) => f.role === 'spec_index')!.sha256);
  }, 60_000);

  it('resolves the default directory against the repo root and exposes parsed files', () => {
    expect(specsDir({})).toBe(join(dirname(ROOT), 'shared', 'specs', 'cycles-protocol'));
    const b = loadBundle();
    expect(b.files).toHaveLength(8);
    expect((b.get('test_vectors').data as { test_vectors: unknown[] }).test_vectors.length).toBeGreaterThan(0);
  });
});

describe('generated output', () => {
  it('is byte-identical across runs (in-process and a separate process), and --check sees it', async () => {
    const again = await generate({ verify: false });
    expect([...again.files.keys()]).toEqual([...result.files.keys()]);
    for (const [name, content] of result.files) expect(again.files.get(name), name).toBe(content);

    const out = tempDir('cycles-gen-');
    const first = await runCodegen(['--out', out]);
    expect(first.code, first.stderr).toBe(0);
    const inProcess = tempDir('cycles-gen-mem-');
    writeGenerated(inProcess, result.files);
    expect(diffDirs(inProcess, out)).toEqual({ missing: [], extra: [], changed: [] });

    const check = await runCodegen(['--check', '--out', out]);
    expect(check.code, check.stderr).toBe(0);

    writeFileSync(join(out, 'operations.ts'), readFileSync(join(out, 'operations.ts'), 'utf8').replace('createReservation', 'createReservationX'));
    rmSync(join(out, 'meta.ts'));
    writeFileSync(join(out, 'stray.ts'), '');
    const stale = diffDirs(inProcess, out);
    expect(stale.missing).toEqual(['meta.ts']);
    expect(stale.extra).toEqual(['stray.ts']);
    expect(stale.changed.map((c) => c.file)).toEqual(['operations.ts']);
  }, 120_000);

  it('starts every file with the do-not-edit header', () => {
    for (const [name, content] of result.files) {
      expect(content.slice(0, 400), name).toMatch(/GENERATED by `npm run codegen`/);
      if (name.endsWith('.json')) expect(Object.keys(JSON.parse(content))[0], name).toBe('x-generated');
    }
    expect([...result.files.keys()].sort()).toEqual(
      [
        'action-kinds.ts', 'admin.base.openapi.json', 'admin.openapi.json', 'admin.types.ts', 'documents.ts', 'evidence.schema.json', 'merge-report.json', 'meta.ts',
        'operations.ts', 'runtime.base.openapi.json', 'runtime.openapi.json', 'runtime.types.ts', 'schemas.ts', 'spec-hashes.json',
      ].sort(),
    );
  });

  it('records the pinned hashes it was generated from', () => {
    const hashes = JSON.parse(result.files.get('spec-hashes.json')!);
    const manifest = readManifest();
    expect(hashes.upstream).toEqual(manifest.upstream);
    expect(hashes.files.map((f: { name: string; sha256: string }) => [f.name, f.sha256])).toEqual(
      manifest.files.map((f) => [f.name, f.sha256]),
    );
  });
});

describe('operation table', () => {
  it('has 65 rows: 11 runtime base + 46 admin base + the 4 action-kinds operations on each plane', () => {
    const ops = result.operations;
    expect(ops).toHaveLength(65);
    const runtime = ops.filter((o) => o.plane === 'runtime');
    const admin = ops.filter((o) => o.plane === 'admin');
    expect(runtime.filter((o) => o.feature === 'base' && o.sourceSpec === RUNTIME_BASE)).toHaveLength(11);
    expect(runtime.filter((o) => o.feature === 'v0.1.26' && o.sourceSpec === ACTION_KINDS)).toHaveLength(4);
    expect(runtime).toHaveLength(15);
    expect(admin.filter((o) => o.feature === 'base' && o.sourceSpec === GOVERNANCE_BASE)).toHaveLength(46);
    expect(admin.filter((o) => o.feature === 'v0.1.26' && o.sourceSpec === ACTION_KINDS)).toHaveLength(4);
    expect(admin).toHaveLength(50);
    const keys = new Set(ops.map((o) => `${o.plane}:${o.operationId}`));
    expect(keys.size).toBe(65);
  });

  it('folds the v0.1.26 PATCH re-declarations into updateTenant / updatePolicy', () => {
    const ids = result.operations.map((o) => o.operationId);
    expect(ids).not.toContain('updateTenantObserveMode');
    expect(ids).not.toContain('updatePolicyActionQuotas');
    const find = (id: string) => result.operations.find((o) => o.plane === 'admin' && o.operationId === id)!;
    expect(find('updateTenant')).toMatchObject({ method: 'patch', path: '/v1/admin/tenants/{tenant_id}', mergedFrom: ['updateTenantObserveMode'] });
    expect(find('updatePolicy')).toMatchObject({ method: 'patch', path: '/v1/admin/policies/{policy_id}', mergedFrom: ['updatePolicyActionQuotas'] });
    expect(result.operations.filter((o) => o.mergedFrom)).toHaveLength(2);
  });

  it('puts each operation on the right plane, with effective security and conformance', () => {
    const get = (plane: string, id: string) => result.operations.find((o) => o.plane === plane && o.operationId === id)!;
    expect(get('runtime', 'getBalances')).toMatchObject({ path: '/v1/balances', security: [['ApiKeyAuth']] });
    expect(get('admin', 'getBalances')).toMatchObject({ path: '/v1/balances', security: [['ApiKeyAuth']], conformance: 'normative' });
    expect(get('runtime', 'decide').security).toEqual([['ApiKeyAuth']]); // document-level security
    expect(get('runtime', 'getEvidence').security).toEqual([]); // public
    expect(get('runtime', 'listReservations').security).toEqual([['ApiKeyAuth'], ['AdminKeyAuth']]);
    expect(get('runtime', 'listActionKinds')).toMatchObject({ feature: 'v0.1.26', security: [], conformance: 'normative' });
    expect(get('runtime', 'resetActionQuotaCounter')).toMatchObject({ plane: 'runtime', security: [['AdminKeyAuth']] });
    expect(get('admin', 'createTenant')).toMatchObject({ conformance: 'reference', specVersion: '0.1.25.42' });
    // Upstream's merged documents carry the action-kinds paths on both planes; so do we.
    const strip = ({ plane: _p, ...rest }: OperationInfo) => rest;
    for (const id of ['listActionKinds', 'getActionKind', 'listActionQuotaCounters', 'resetActionQuotaCounter']) {
      expect(strip(get('admin', id)), id).toEqual(strip(get('runtime', id)));
    }
    expect(get('admin', 'listActionQuotaCounters').security).toEqual([['AdminKeyAuth'], ['ApiKeyAuth']]);
  });

  it('is sorted by plane, path, method', () => {
    const keys = result.operations.map((o) => [o.plane, o.path, o.method].join(' '));
    const sorted = [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(keys).toEqual(sorted);
  });

  it('lists exactly the operations of the merged documents', () => {
    for (const plane of ['runtime', 'admin'] as const) {
      const doc = result.documents[plane];
      const inDoc: string[] = [];
      for (const [path, item] of Object.entries<any>(doc.paths)) {
        for (const m of ['get', 'post', 'put', 'patch', 'delete']) if (item[m]) inDoc.push(`${m} ${path} ${item[m].operationId}`);
      }
      const inTable = result.operations.filter((o) => o.plane === plane).map((o) => `${o.method} ${o.path} ${o.operationId}`);
      expect(inTable.sort()).toEqual(inDoc.sort());
    }
    expect(result.files.get('operations.ts')).toContain('export const operations: readonly OperationInfo[]');
  });
});

describe('merged documents', () => {
  it('fold the v0.1.26 extensions into the base schemas', () => {
    const rs = result.documents.runtime.components.schemas;
    expect(rs.ErrorCode.enum).toEqual(expect.arrayContaining(['ACTION_QUOTA_EXCEEDED', 'ACTION_KIND_NOT_ALLOWED', 'ACTION_KIND_DENIED']));
    expect(Object.keys(rs.Action.properties)).toContain('policy_keys');
    expect(Object.keys(rs.DecisionResponse.properties)).toContain('deny_detail');
    expect(Object.keys(rs.ReservationCreateResponse.properties)).toContain('deny_detail');
    expect(Object.keys(rs.ReservationCreateRequest.properties)).toContain('observe_mode');
    expect(rs.ErrorResponse.properties.details.properties.deny_detail).toBeDefined();

    const as = result.documents.admin.components.schemas;
    expect(as.Permission.enum).toContain('action_quotas:read');
    expect(as.EventType.enum).toEqual(expect.arrayContaining(['reservation.observed_denied', 'quota.counter_reset']));
    expect(as.ErrorCode.enum).toContain('ACTION_KIND_DENIED');
    expect(as.ErrorCode.enum).not.toContain('MAX_EXTENSIONS_EXCEEDED'); // runtime-only code, not a v0.1.26 addition
    expect(Object.keys(as.Policy.properties)).toEqual(expect.arrayContaining(['action_quotas', 'risk_class_quotas', 'allowed_action_kinds', 'denied_action_kinds']));
    expect(Object.keys(as.PolicyCreateRequest.properties)).toContain('denied_action_kinds');
    expect(Object.keys(as.Tenant.properties)).toContain('observe_mode');
    expect(as.ActionQuota).toBeDefined();
    expect(Object.keys(result.documents.admin.paths)).toEqual(expect.arrayContaining(['/v1/action-kinds', '/v1/action-kinds/{kind}',
      '/v1/admin/action-quota-counters', '/v1/admin/action-quota-counters/reset']));
  });

  it('turn a cross-file $ref into a pinned companion file into a local ref', () => {
    const real = loadBundle();
    const files = real.files.map((f) => {
      if (f.role !== 'governance_extension') return f;
      const data = structuredClone(f.data) as any;
      data.components.schemas.PolicyExtension.properties.action_quotas.items = { $ref: `./${ACTION_KINDS}#/components/schemas/ActionQuota` };
      return { ...f, data };
    });
    const bundle: Bundle = { ...real, files, get: (role) => files.find((f) => f.role === role)! };
    const merged = mergeBundle(bundle);
    expect(merged.admin.components.schemas.Policy.properties.action_quotas.items).toEqual({ $ref: '#/components/schemas/ActionQuota' });
  });

  it('normalisation rejects keywords it cannot express instead of dropping them', () => {
    const doc = { openapi: '3.1.0', info: { title: 't', version: '1' }, paths: {}, components: { schemas: { X: { type: 'object', patternProperties: { '^a': { type: 'string' } } } } } };
    expect(() => normalizeForValidator(doc)).toThrowError(/patternProperties/);
  });
});

describe('base documents (the v0.1.26 flag off)', () => {
  it('hold exactly the base operations of the table, per plane', () => {
    for (const plane of ['runtime', 'admin'] as const) {
      const inDoc: string[] = [];
      for (const [path, item] of Object.entries<any>(result.baseDocuments[plane].paths)) {
        for (const m of ['get', 'post', 'put', 'patch', 'delete']) if (item[m]) inDoc.push(`${m} ${path} ${item[m].operationId}`);
      }
      const base = result.operations.filter((o) => o.plane === plane && o.feature === 'base').map((o) => `${o.method} ${o.path} ${o.operationId}`);
      expect(inDoc.sort(), plane).toEqual(base.sort());
    }
  });

  it('are the v0.1.25 schemas, closed and without the extension fields', () => {
    const as = result.baseDocuments.admin.components.schemas;
    expect(as.Tenant.additionalProperties).toBe(false);
    expect(Object.keys(as.Tenant.properties)).not.toContain('observe_mode');
    expect(as.Policy.additionalProperties).toBe(false);
    for (const f of ['action_quotas', 'risk_class_quotas', 'allowed_action_kinds', 'denied_action_kinds']) {
      expect(Object.keys(as.Policy.properties)).not.toContain(f);
    }
    expect(as.ErrorCode.enum).not.toContain('ACTION_KIND_DENIED');
    const rs = result.baseDocuments.runtime.components.schemas;
    expect(Object.keys(rs.ReservationCreateRequest.properties)).not.toContain('observe_mode');
    expect(result.baseDocuments.runtime['x-action-kind-registry']).toBeUndefined();
    expect(JSON.parse(result.files.get('admin.base.openapi.json')!).components.schemas.Tenant.additionalProperties).toBe(false);
  });
});

describe('openapi-backend on the generated documents', () => {
  const backends: Record<string, Awaited<ReturnType<typeof createBackend>>> = {};
  beforeAll(async () => {
    for (const plane of ['runtime', 'admin'] as const) {
      // Exactly what is written to src/generated/<plane>.openapi.json.
      backends[plane] = await createBackend(JSON.parse(result.files.get(`${plane}.openapi.json`)!));
    }
  }, 60_000);

  it('needs the normalisation: the raw merged 3.1 document fails openapi-backend\'s definition check', async () => {
    const raw = mergeBundle(loadBundle()).runtime;
    await expect(createBackend(raw, false)).rejects.toThrow(/not valid OpenAPI/);
  });

  it('initialises with definition validation on (strict) and Ajv 2020', () => {
    expect(backends.runtime.initialized).toBe(true);
    expect(backends.admin.initialized).toBe(true);
    expect(backends.runtime.getOperations()).toHaveLength(15);
    expect(backends.admin.getOperations()).toHaveLength(50);
  });

  const reserve = (body: unknown) =>
    backends.runtime.validateRequest(
      { method: 'post', path: '/v1/reservations', headers: { 'content-type': 'application/json', 'x-cycles-api-key': 'k' }, body },
      'createReservation',
    );
  const valid = {
    idempotency_key: 'idem-001',
    subject: { tenant: 'acme' },
    action: { kind: 'llm.completion', name: 'x' },
    estimate: { unit: 'TOKENS', amount: 10 },
  };

  it('accepts a valid createReservation body and rejects invalid ones', () => {
    expect(reserve(valid).errors ?? []).toEqual([]);
    expect(reserve(valid).valid).toBe(true);
    expect(reserve({ ...valid, estimate: { unit: 'TOKENS', amount: 'ten' } }).valid).toBe(false);
    expect(reserve({ ...valid, estimate: undefined }).valid).toBe(false);
    expect(reserve({ ...valid, unknown_field: 1 }).valid).toBe(false);
    expect(reserve({ ...valid, estimate: { unit: 'GALLONS', amount: 10 } }).valid).toBe(false);
  });

  it('accepts observe_mode and action.policy_keys (v0.1.26) and validates them', () => {
    expect(reserve({ ...valid, observe_mode: 'OBSERVE' }).valid).toBe(true);
    expect(reserve({ ...valid, action: { ...valid.action, policy_keys: { host: 'api.example.com', custom: { team: 'a' } } } }).valid).toBe(true);
    expect(reserve({ ...valid, observe_mode: 'SOMETIMES' }).valid).toBe(false);
    expect(reserve({ ...valid, action: { ...valid.action, policy_keys: { hostname: 'x' } } }).valid).toBe(false);
  });

  it('accepts the v0.1.26 admin fields on the base operations', () => {
    const admin = backends.admin;
    const headers = { 'content-type': 'application/json', 'x-admin-api-key': 'k' };
    expect(admin.validateRequest({ method: 'patch', path: '/v1/admin/tenants/acme', headers, body: { observe_mode: 'OBSERVE' } }, 'updateTenant').valid).toBe(true);
    expect(admin.validateRequest({ method: 'patch', path: '/v1/admin/tenants/acme', headers, body: { observe_mode: 'NOPE' } }, 'updateTenant').valid).toBe(false);
    const quota = { action_kind: 'message.email.send', max_calls: 5, window: 'per_run' };
    expect(admin.validateRequest({ method: 'patch', path: '/v1/admin/policies/p1', headers, body: { action_quotas: [quota] } }, 'updatePolicy').valid).toBe(true);
    expect(admin.validateRequest({ method: 'patch', path: '/v1/admin/policies/p1', headers, body: { action_quotas: [{ ...quota, window: 'weekly' }] } }, 'updatePolicy').valid).toBe(false);
  });
});
