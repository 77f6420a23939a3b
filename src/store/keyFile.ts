// Key material kept in the data directory when configuration does not give it (the
// development admin key, the webhook secret key): read it if present, else generate it and
// save it with mode 0600. Written to a private temp file, then linked into place: the link
// fails if another process starting on the same data dir got there first (we then use its
// key), and no reader ever sees a half-written file.
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

export interface KeyFile<T> {
  file: string;
  /** what the file holds, for messages ("the development admin key") */
  what: string;
  /** the stored text → the key; throws with a message naming the file when it is not one */
  parse(text: string): T;
  generate(): { key: T; text: string };
}

/** The file's key, or undefined when the file does not exist. */
export function readKeyFile<T>(k: KeyFile<T>): T | undefined {
  let text: string;
  try {
    text = readFileSync(k.file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${k.what} ${k.file}: ${(e as Error).message}`);
  }
  return k.parse(text.trim());
}

/** The stored key, or a new one saved now; `created` says which. */
export function readOrCreateKeyFile<T>(dataDir: string, k: KeyFile<T>): { key: T; created: boolean } {
  const existing = readKeyFile(k);
  if (existing !== undefined) return { key: existing, created: false };
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const { key, text } = k.generate();
  const tmp = `${k.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, `${text}\n`, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(tmp, k.file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot save ${k.what} in ${k.file}: ${(e as Error).message}`);
    const theirs = readKeyFile(k);
    if (theirs === undefined) throw new Error(`${k.file} vanished while being created; start again`);
    return { key: theirs, created: false };
  } finally {
    rmSync(tmp, { force: true });
  }
  return { key, created: true };
}
