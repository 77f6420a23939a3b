// Load the pinned upstream spec bundle and verify every file against specs/manifest.json.
//
// Used by the generator (codegen/index.ts) and at runtime by anything that needs the upstream
// files themselves (e.g. the conformance harness reading impl/test-vectors.yaml).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { checkoutRoot } from '../src/buildInfo';

export const SPEC_ROLES = [
  'runtime_base',
  'governance_base',
  'runtime_extension',
  'action_kinds',
  'governance_extension',
  'evidence',
  'spec_index',
  'test_vectors',
] as const;
export type SpecRole = (typeof SPEC_ROLES)[number];

export interface ManifestFile {
  /** Path relative to the bundle directory, '/'-separated. */
  name: string;
  role: SpecRole;
  sha256: string;
}

export interface SpecManifest {
  upstream: { repo: string; commit: string };
  files: ManifestFile[];
}

export interface BundleFile extends ManifestFile {
  /** Absolute path the file was read from. */
  path: string;
  text: string;
  /** Parsed YAML (plain JSON-compatible data). */
  data: unknown;
}

export interface Bundle {
  /** Absolute bundle directory the files were read from. */
  dir: string;
  manifest: SpecManifest;
  files: readonly BundleFile[];
  get(role: SpecRole): BundleFile;
}

export interface LoadBundleOptions {
  /** Bundle directory; default: specsDir() (env CYCLES_SPECS_DIR or ../shared/specs/cycles-protocol). */
  dir?: string;
  /** Manifest to verify against; default: <repo root>/specs/manifest.json. */
  manifest?: SpecManifest;
}

export type SpecBundleProblem =
  | { kind: 'missing'; file: string; expected: string }
  | { kind: 'mismatch'; file: string; expected: string; actual: string }
  | { kind: 'unparseable'; file: string; reason: string }
  /** the bundle directory itself is absent or not a directory (message says which and why) */
  | { kind: 'folder'; reason: string };

export class SpecBundleError extends Error {
  readonly dir: string;
  readonly problems: readonly SpecBundleProblem[];
  constructor(dir: string, problems: SpecBundleProblem[]) {
    const lines = problems.map((p) => {
      switch (p.kind) {
        case 'missing':
          return `  - ${p.file}: missing (expected sha256 ${p.expected})`;
        case 'mismatch':
          return `  - ${p.file}: sha256 mismatch: expected ${p.expected}, actual ${p.actual}`;
        case 'unparseable':
          return `  - ${p.file}: ${p.reason}`;
        case 'folder':
          return p.reason;
      }
    });
    const folder = problems.find((p) => p.kind === 'folder');
    super(
      folder
        ? folder.reason
        : `Spec bundle in ${dir} does not match specs/manifest.json ` +
            `(set CYCLES_SPECS_DIR to the pinned upstream bundle):\n${lines.join('\n')}`,
    );
    this.name = 'SpecBundleError';
    this.dir = dir;
    this.problems = problems;
  }
}

let cachedRoot: string | undefined;

/** The repository root: the nearest ancestor of this module's directory holding package.json. */
export function repoRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return (cachedRoot = dir);
    const parent = dirname(dir);
    if (parent === dir) throw new Error('codegen/bundle: no package.json above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/**
 * The spec bundle directory: env CYCLES_SPECS_DIR if set, else ../shared/specs/cycles-protocol.
 * Relative paths (both the env value and the default) are resolved against the repo root, not cwd.
 */
export function specsDir(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env.CYCLES_SPECS_DIR?.trim() || '../shared/specs/cycles-protocol';
  // a build (dist/) resolves relative paths against the checkout it was built from
  return isAbsolute(raw) ? resolve(raw) : resolve(checkoutRoot(repoRoot()), raw);
}

export function manifestPath(): string {
  return join(repoRoot(), 'specs', 'manifest.json');
}

export function readManifest(path = manifestPath()): SpecManifest {
  const m = JSON.parse(readFileSync(path, 'utf8')) as SpecManifest;
  if (!m?.upstream?.repo || !/^[0-9a-f]{40}$/.test(m.upstream.commit ?? '') || !Array.isArray(m.files)) {
    throw new Error(`${path}: malformed manifest (need upstream.repo, upstream.commit, files[])`);
  }
  for (const f of m.files) {
    if (!SPEC_ROLES.includes(f.role) || !/^[0-9a-f]{64}$/.test(f.sha256) || !f.name) {
      throw new Error(`${path}: malformed manifest entry ${JSON.stringify(f)}`);
    }
  }
  return m;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Read every file named in the manifest from the bundle directory, verify its sha256 and parse it.
 * Throws SpecBundleError naming each missing or altered file with both hashes and the directory.
 */
export function loadBundle(options: LoadBundleOptions = {}): Bundle {
  const dir = options.dir ? resolve(options.dir) : specsDir();
  // A wrong folder is a different mistake from an altered file: say so instead of listing
  // every manifest entry as missing.
  const fromEnv = process.env.CYCLES_SPECS_DIR?.trim();
  const folder = folderProblem(dir, options.dir ? 'option' : fromEnv ? { env: fromEnv } : 'default');
  if (folder) throw new SpecBundleError(dir, [folder]);
  const manifest = options.manifest ?? readManifest();
  const problems: SpecBundleProblem[] = [];
  const files: BundleFile[] = [];

  for (const entry of manifest.files) {
    const path = join(dir, ...entry.name.split('/'));
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch {
      problems.push({ kind: 'missing', file: entry.name, expected: entry.sha256 });
      continue;
    }
    const actual = sha256Hex(bytes);
    if (actual !== entry.sha256) {
      problems.push({ kind: 'mismatch', file: entry.name, expected: entry.sha256, actual });
      continue;
    }
    const text = bytes.toString('utf8');
    try {
      files.push({ ...entry, path, text, data: parseSpecYaml(text) });
    } catch (err) {
      problems.push({ kind: 'unparseable', file: entry.name, reason: (err as Error).message });
    }
  }
  if (problems.length) throw new SpecBundleError(dir, problems);

  const byRole = new Map(files.map((f) => [f.role, f]));
  return {
    dir,
    manifest,
    files,
    get(role) {
      const f = byRole.get(role);
      if (!f) throw new Error(`spec bundle: manifest has no file with role ${role}`);
      return f;
    },
  };
}

/**
 * A problem when `dir` is not an existing directory. `source`: where `dir` came from, the
 * CYCLES_SPECS_DIR value as set, the default (unset) or LoadBundleOptions.dir.
 */
function folderProblem(dir: string, source: { env: string } | 'default' | 'option'): SpecBundleProblem | undefined {
  let isDir: boolean | undefined;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = undefined;
  }
  if (isDir) return undefined;
  const what = isDir === false ? 'not a folder' : 'folder does not exist';
  const want = 'the upstream cycles-protocol spec bundle pinned in specs/manifest.json';
  if (source === 'option') return { kind: 'folder', reason: `spec bundle ${dir}: ${what}` };
  if (source === 'default') {
    return { kind: 'folder', reason: `spec bundle ${dir}: ${what} (the default, ../shared/specs/cycles-protocol beside this checkout); set CYCLES_SPECS_DIR to ${want}` };
  }
  const where = source.env === dir ? '' : ` (resolved to ${dir})`;
  return { kind: 'folder', reason: `CYCLES_SPECS_DIR=${source.env}: ${what}${where}; point it at ${want}` };
}

/**
 * Parse YAML into JSON-compatible data. Integers are read exactly; one that does not fit a
 * double exactly is an error rather than a silently rounded number.
 */
export function parseSpecYaml(text: string): unknown {
  const raw = parseYaml(text, { intAsBigInt: true, uniqueKeys: true });
  return toJsonData(raw, '');
}

function toJsonData(v: unknown, path: string): unknown {
  if (typeof v === 'bigint') {
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new Error(`integer ${v} at ${path || '/'} is not exactly representable`);
    return n;
  }
  if (Array.isArray(v)) return v.map((x, i) => toJsonData(x, `${path}/${i}`));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toJsonData(x, `${path}/${k}`);
    return out;
  }
  return v;
}
