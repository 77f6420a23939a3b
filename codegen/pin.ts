// `npm run codegen -- --pin DIR [--scaffold]`: move to a new spec bundle (decision DB3).
//
// 1. reads the new bundle in DIR: each manifest role keeps its file name when DIR has it,
//    else takes the file the new cycles-spec-index.yaml names for that role (a version bump
//    renames files, e.g. cycles-protocol-extensions-v0.1.27.yaml);
// 2. generates both the pinned bundle (from CYCLES_SPECS_DIR, verified against the current
//    manifest) and the new one, and reports what changed (codegen/specdiff.ts);
// 3. writes the new manifest (sha256 of every file, upstream commit from --commit or DIR's
//    git HEAD) and regenerates the output directory from the new bundle;
// 4. with --scaffold, writes a typed handler skeleton (answers 501, listed by `npm run ops`
//    as a skeleton) for every operation that has no handler file yet.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  loadBundle, manifestPath, parseSpecYaml, readManifest, sha256Hex, specsDir,
  type Bundle, type ManifestFile, type SpecManifest, type SpecRole,
} from './bundle';
import { readFileSync } from 'node:fs';
import { generate, type GenerateResult } from './generate';
import { writeGenerated } from './output';
import { diffDocuments, formatDiff, type SpecDiff } from './specdiff';
import { isObject } from './util';
import { scaffoldHandler } from './scaffold';

export interface PinOptions {
  /** the new bundle directory */
  dir: string;
  /** the manifest to re-pin (default specs/manifest.json) */
  manifest?: string;
  /** where the pinned (old) bundle is (default: specsDir()) */
  from?: string;
  /** upstream commit of the new bundle (default: DIR's git HEAD, else unchanged) */
  commit?: string;
  /** regenerate into (default src/generated) */
  out: string;
  /** write handler skeletons for operations without a handler, under this handlers dir */
  scaffoldDir?: string;
  log?: (line: string) => void;
}

export interface PinResult {
  manifest: SpecManifest;
  diff?: SpecDiff;
  /** why there is no diff (the pinned bundle could not be read) */
  noDiff?: string;
  renamed: { role: SpecRole; from: string; to: string }[];
  changedFiles: string[];
  scaffolded: string[];
  generated: GenerateResult;
}

/** spec-index document ids differ from manifest roles only for the evidence spec */
const INDEX_ID: Partial<Record<SpecRole, string>> = { evidence: 'evidence_envelope' };

function newFileFor(dir: string, entry: ManifestFile, index: unknown): string {
  if (existsSync(join(dir, ...entry.name.split('/')))) return entry.name;
  const docs = isObject(index) && Array.isArray(index.documents) ? index.documents : [];
  const id = INDEX_ID[entry.role] ?? entry.role;
  const doc = docs.find((d: unknown) => isObject(d) && d.id === id);
  if (isObject(doc) && typeof doc.file === 'string' && existsSync(join(dir, ...doc.file.split('/')))) return doc.file;
  throw new Error(`--pin ${dir}: no file for role ${entry.role}: ${entry.name} is not there${doc ? ` and the spec index's ${String(doc.file)} is missing` : ', and cycles-spec-index.yaml names no document with id ' + id}`);
}

function gitHead(dir: string): string | undefined {
  try {
    const out = execFileSync('git', ['-C', dir, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return /^[0-9a-f]{40}$/.test(out) ? out : undefined;
  } catch {
    return undefined;
  }
}

export async function pinBundle(o: PinOptions): Promise<PinResult> {
  const log = o.log ?? ((l: string) => console.log(l));
  const dir = resolve(o.dir);
  const manifestFile = resolve(o.manifest ?? manifestPath());
  const old = readManifest(manifestFile);

  const indexEntry = old.files.find((f) => f.role === 'spec_index');
  const indexName = indexEntry && existsSync(join(dir, indexEntry.name)) ? indexEntry.name : 'cycles-spec-index.yaml';
  const index = existsSync(join(dir, indexName)) ? parseSpecYaml(readFileSync(join(dir, indexName), 'utf8')) : undefined;

  const renamed: PinResult['renamed'] = [];
  const changedFiles: string[] = [];
  const files: ManifestFile[] = old.files.map((entry) => {
    const name = newFileFor(dir, entry, index);
    const sha256 = sha256Hex(readFileSync(join(dir, ...name.split('/'))));
    if (name !== entry.name) renamed.push({ role: entry.role, from: entry.name, to: name });
    if (name !== entry.name || sha256 !== entry.sha256) changedFiles.push(name);
    return { name, role: entry.role, sha256 };
  });
  let commit = o.commit ?? gitHead(dir);
  if (commit && !/^[0-9a-f]{40}$/.test(commit)) throw new Error(`--commit ${commit}: need 40 hex digits`);
  if (!commit) {
    commit = old.upstream.commit;
    log(`note: upstream.commit left at ${commit} (${dir} is not a git checkout; pass --commit SHA)`);
  }
  const manifest: SpecManifest = { upstream: { repo: old.upstream.repo, commit }, files };

  // the new bundle must load and pass openapi-backend's definition check before anything is written
  const fresh = loadBundle({ dir, manifest });
  const generated = await generate({ bundle: fresh, verify: 'definition' });

  let pinned: Bundle | undefined;
  let noDiff: string | undefined;
  try {
    pinned = loadBundle({ dir: o.from ?? specsDir(), manifest: old });
  } catch (e) {
    noDiff = `the pinned bundle is not readable (${(e as Error).message.split('\n')[0]}); pass --from DIR with the previously pinned bundle to see the changes`;
  }
  let diff: SpecDiff | undefined;
  if (pinned) {
    const before = await generate({ bundle: pinned, verify: false });
    diff = diffDocuments(before.documents, generated.documents);
  }

  log(`Pinning ${dir} (${changedFiles.length} of ${files.length} files changed${renamed.length ? `; ${renamed.map((r) => `${r.role}: ${r.from} → ${r.to}`).join(', ')}` : ''})`);
  if (diff) log(formatDiff(diff));
  else log(`No change report: ${noDiff}`);

  writeFileSync(manifestFile, JSON.stringify(manifest, null, 2) + '\n');
  log(`wrote ${manifestFile}`);
  writeGenerated(o.out, generated.files);
  log(`regenerated ${o.out} (${generated.operations.length} operations)`);

  const scaffolded: string[] = [];
  if (o.scaffoldDir) {
    for (const op of generated.operations) {
      const file = join(o.scaffoldDir, op.plane, `${op.operationId}.ts`);
      if (existsSync(file)) continue;
      mkdirSync(join(o.scaffoldDir, op.plane), { recursive: true });
      writeFileSync(file, scaffoldHandler(op));
      scaffolded.push(file);
      log(`scaffolded ${file} (answers 501 until implemented)`);
    }
  }
  return { manifest, diff, noDiff, renamed, changedFiles, scaffolded, generated };
}
