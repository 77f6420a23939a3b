// One export segment = one class, one UTC day: DIR/<class>/<YYYY-MM-DD>.jsonl.gz, gzip'd
// JSON Lines, plus its row in DIR/manifest.json (rows, bytes, SHA-256 of the file).
//
// Deterministic bytes (decision DX5): the rows come in a fixed order (classes.ts), and the
// gzip stream is made by node's zlib with fixed settings — level 6, default window/memLevel/
// strategy, no file name, mtime 0 (zlib's gzip header carries neither unless asked) — so the
// same rows give the same file on the same node/zlib build. Written to a temp file, fsync'd,
// then renamed into place, and only then recorded in the manifest (itself replaced by
// rename): a killed run leaves at most a temp file, which the next run overwrites.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

export const MANIFEST = 'manifest.json';
export const MANIFEST_FORMAT = 'cycles-export/1';
export const GZIP_OPTIONS: zlib.ZlibOptions = Object.freeze({ level: 6, memLevel: 8, windowBits: 15, strategy: zlib.constants.Z_DEFAULT_STRATEGY });
/** The archive holds every tenant's records: created readable by the owner only (a synced
 *  bucket keeps its own access rules). */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;
/** Lines are handed to gzip in chunks of about this many characters. */
const CHUNK_CHARS = 64 * 1024;

export interface SegmentInfo { class: string; day: string; rows: number; bytes: number; sha256: string }
export interface Manifest { format: string; files: Record<string, SegmentInfo> }

export const segmentPath = (cls: string, day: string): string => `${cls}/${day}.jsonl.gz`;

export async function readManifest(dir: string): Promise<Manifest> {
  try {
    const m = JSON.parse(await fs.readFile(path.join(dir, MANIFEST), 'utf8')) as Manifest;
    if (m.format !== MANIFEST_FORMAT || typeof m.files !== 'object' || m.files === null) {
      throw new Error(`${path.join(dir, MANIFEST)} is not a ${MANIFEST_FORMAT} manifest`);
    }
    return m;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { format: MANIFEST_FORMAT, files: {} };
    throw e;
  }
}

/** Replaces the manifest atomically (temp + rename), files sorted by path. */
export async function writeManifest(dir: string, m: Manifest): Promise<void> {
  const files: Record<string, SegmentInfo> = {};
  for (const k of Object.keys(m.files).sort()) {
    const f = m.files[k];
    files[k] = { class: f.class, day: f.day, rows: f.rows, bytes: f.bytes, sha256: f.sha256 };
  }
  const tmp = path.join(dir, `.${MANIFEST}.tmp-${process.pid}`);
  const fh = await fs.open(tmp, 'w', FILE_MODE);
  try {
    await fh.writeFile(`${JSON.stringify({ format: MANIFEST_FORMAT, files }, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, path.join(dir, MANIFEST));
}

/** SHA-256 and size of a file, streamed (undefined when it does not exist). */
export async function fileDigest(file: string): Promise<{ sha256: string; bytes: number } | undefined> {
  const h = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(file)) { h.update(chunk as Buffer); bytes += (chunk as Buffer).length; }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return { sha256: h.digest('hex'), bytes };
}

/**
 * Streams `lines` into `file` (gzip'd JSON Lines, one line per row) via a temp file; returns
 * rows, bytes and SHA-256 of the finished file. When `lines` throws, the temp file is
 * removed and the error rethrown: nothing is left at `file`'s path by this call.
 */
export async function writeSegment(file: string, lines: AsyncIterable<string>): Promise<{ rows: number; bytes: number; sha256: string }> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: DIR_MODE });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  const hash = createHash('sha256');
  let bytes = 0;
  let rows = 0;
  const gz = zlib.createGzip(GZIP_OPTIONS);
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) { hash.update(chunk); bytes += chunk.length; cb(null, chunk); },
  });
  const out = createWriteStream(tmp, { mode: FILE_MODE });
  const done = pipeline(gz, tap, out);
  done.catch(() => undefined); // observed below; never an unhandled rejection meanwhile
  let ok = false;
  try {
    const write = async (s: string) => {
      if (!gz.write(s)) await new Promise<void>((resolve, reject) => {
        const onDrain = () => { gz.off('error', onError); resolve(); };
        const onError = (err: Error) => { gz.off('drain', onDrain); reject(err); };
        gz.once('drain', onDrain);
        gz.once('error', onError);
      });
    };
    let buf = '';
    for await (const line of lines) {
      buf += `${line}\n`;
      rows++;
      if (buf.length >= CHUNK_CHARS) { await write(buf); buf = ''; }
    }
    if (buf) await write(buf);
    gz.end();
    await done;
    // durable before it is renamed into place (fsync through a new descriptor flushes the file)
    const fh = await fs.open(tmp, 'r+');
    try { await fh.sync(); } finally { await fh.close(); }
    ok = true;
  } finally {
    if (!ok) {
      gz.destroy();
      await done.catch(() => undefined);
      await fs.rm(tmp, { force: true });
    }
  }
  await fs.rename(tmp, file);
  return { rows, bytes, sha256: hash.digest('hex') };
}

/** Rows of a gzip'd JSON Lines file (streamed). */
export async function countRows(file: string): Promise<number> {
  let rows = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
      cb();
    },
  });
  await pipeline(createReadStream(file), zlib.createGunzip(), counter);
  return rows;
}
