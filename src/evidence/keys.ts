// The evidence signing identity from operator configuration (docs/decisions.md DEV4). Same
// variable names as the reference server so a deployment migrates by copying them; one
// process here both signs and publishes, so the seed is the one required secret and the
// public key, kid and DID derive from it. Everything is checked once at start: a bad value
// fails loudly (naming the variable, never echoing the seed) instead of emitting evidence
// that will not verify later.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { didCycles } from './envelope';
import { EvidenceSigner } from './signer';

export class EvidenceConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EvidenceConfigError';
  }
}

export interface RetiredKey {
  publicKeyHex: string;
  kid: string;
  /** inclusive */
  nbfMs: number;
  /** exclusive */
  expMs: number;
}

export interface EvidenceIdentity {
  /** issuer base incl. /v1, exactly as in every envelope, URL and DID (no trailing slash) */
  serverId: string;
  /** what envelopes carry as signer_did: the raw hex key, or did:cycles:<sha256(server_id)>#<kid> */
  signerDid: string;
  form: 'raw' | 'did';
  kid: string;
  publicKeyHex: string;
  /** the active key's cycles_nbf_ms (raised to the last retired exp_ms, see DEV4) */
  nbfMs: number;
  retired: readonly RetiredKey[];
  /** a random key for this process only (development) */
  ephemeral: boolean;
  signer: EvidenceSigner;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;
const DID_RE = /^did:cycles:([0-9a-f]{64})#(.+)$/;
/** URI-fragment-safe without escaping (it is the DID fragment) */
const KID_RE = /^[A-Za-z0-9._~-]{1,128}$/;
const MAX_RETIRED_KEYS = 64;
const MAX_SEED_FILE_BYTES = 4096;

/** Reference default: the first 16 hex characters of the public key. */
export const defaultKid = (publicKeyHex: string): string => publicKeyHex.slice(0, 16).toLowerCase();

function flag(name: string, raw: string | undefined): boolean {
  const v = (raw ?? '').trim().toLowerCase();
  if (v === '' || v === 'false' || v === '0' || v === 'no') return false;
  if (v === 'true' || v === '1' || v === 'yes') return true;
  throw new EvidenceConfigError(`${name} must be true or false, got "${raw}"`);
}

/** An absolute http(s) URI with no trailing slash, query or fragment: its exact bytes are
 *  hashed into did:cycles and prefixed to every evidence URL, so one spelling only. */
export function checkServerId(raw: string, name = 'EVIDENCE_SERVER_ID'): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new EvidenceConfigError(`${name} must be an absolute URI such as https://cycles.example.com/v1, got "${raw}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new EvidenceConfigError(`${name} must be an http(s) URI, got "${raw}"`);
  if (/\s/.test(raw) || raw.endsWith('/') || url.search !== '' || url.hash !== '' || raw.includes('?') || raw.includes('#')) {
    throw new EvidenceConfigError(`${name} must have no trailing slash, query or fragment (its exact bytes are signed), got "${raw}"`);
  }
  return raw;
}

function seedBytes(env: NodeJS.ProcessEnv): Uint8Array | undefined {
  const hexRaw = env.EVIDENCE_SIGNING_PRIVATE_KEY_HEX?.trim() ?? '';
  const file = env.EVIDENCE_SIGNING_PRIVATE_KEY_FILE?.trim() ?? '';
  if (hexRaw !== '' && file !== '') {
    throw new EvidenceConfigError('set only one of EVIDENCE_SIGNING_PRIVATE_KEY_HEX and EVIDENCE_SIGNING_PRIVATE_KEY_FILE');
  }
  let text = hexRaw;
  let name = 'EVIDENCE_SIGNING_PRIVATE_KEY_HEX';
  if (file !== '') {
    name = `EVIDENCE_SIGNING_PRIVATE_KEY_FILE (${file})`;
    let buf: Buffer;
    try {
      buf = readFileSync(file);
    } catch (e) {
      throw new EvidenceConfigError(`${name}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (buf.length > MAX_SEED_FILE_BYTES) throw new EvidenceConfigError(`${name}: expected 64 hex characters, the file has ${buf.length} bytes`);
    text = buf.toString('utf8').trim();
    buf.fill(0);
  }
  if (text === '') return undefined;
  // never echo the value: it is the secret
  if (!HEX64.test(text)) throw new EvidenceConfigError(`${name} must be 64 hex characters (a 32-byte Ed25519 seed); \`cycles evidence keygen\` prints one`);
  return new Uint8Array(Buffer.from(text, 'hex'));
}

function intMs(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new EvidenceConfigError(`${name} must be a non-negative integer (epoch ms), got ${JSON.stringify(v)}`);
  }
  return v;
}

/** EVIDENCE_SIGNING_RETIRED_KEYS: JSON array of {signer_did (raw hex), kid?, nbf_ms, exp_ms}. */
export function parseRetiredKeys(raw: string | undefined): RetiredKey[] {
  const name = 'EVIDENCE_SIGNING_RETIRED_KEYS';
  if (raw === undefined || raw.trim() === '') return [];
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch (e) {
    throw new EvidenceConfigError(`${name} must be a JSON array of {signer_did, kid, nbf_ms, exp_ms}: ${(e as Error).message}`);
  }
  if (!Array.isArray(list)) throw new EvidenceConfigError(`${name} must be a JSON array of {signer_did, kid, nbf_ms, exp_ms}`);
  if (list.length > MAX_RETIRED_KEYS) throw new EvidenceConfigError(`${name}: at most ${MAX_RETIRED_KEYS} keys`);
  return list.map((e: unknown, i) => {
    const at = `${name}[${i}]`;
    if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new EvidenceConfigError(`${at} must be an object`);
    const o = e as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!['signer_did', 'kid', 'nbf_ms', 'exp_ms'].includes(k)) throw new EvidenceConfigError(`${at}: unknown member "${k}"`);
    }
    if (typeof o.signer_did !== 'string' || !HEX64.test(o.signer_did)) {
      throw new EvidenceConfigError(`${at}.signer_did must be the retired raw public key (64 hex characters)`);
    }
    const publicKeyHex = o.signer_did.toLowerCase();
    const kid = o.kid === undefined || o.kid === '' ? defaultKid(publicKeyHex) : o.kid;
    if (typeof kid !== 'string' || !KID_RE.test(kid)) throw new EvidenceConfigError(`${at}.kid must match ${KID_RE.source}`);
    const nbfMs = intMs(`${at}.nbf_ms`, o.nbf_ms);
    const expMs = intMs(`${at}.exp_ms`, o.exp_ms);
    if (expMs <= nbfMs) throw new EvidenceConfigError(`${at}: exp_ms must be after nbf_ms (the window [nbf_ms, exp_ms) is empty)`);
    return { publicKeyHex, kid, nbfMs, expMs };
  });
}

export interface LoadOptions {
  /** refuses the ephemeral key (NODE_ENV=production) */
  production?: boolean;
  nowMs?: number;
}

/** The configured identity, or undefined when evidence is off (EVIDENCE_SERVER_ID unset and
 *  no key material configured). Runs the signing self-test. */
export function loadEvidenceIdentity(env: NodeJS.ProcessEnv, opts: LoadOptions = {}): EvidenceIdentity | undefined {
  const serverRaw = env.EVIDENCE_SERVER_ID?.trim() ?? '';
  const configured = ['EVIDENCE_SIGNING_PRIVATE_KEY_HEX', 'EVIDENCE_SIGNING_PRIVATE_KEY_FILE', 'EVIDENCE_SIGNING_SIGNER_DID',
    'EVIDENCE_SIGNING_KID', 'EVIDENCE_SIGNING_NBF_MS', 'EVIDENCE_SIGNING_RETIRED_KEYS'].filter((k) => (env[k]?.trim() ?? '') !== '');
  const ephemeralAllowed = flag('EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY', env.EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY);
  if (serverRaw === '') {
    if (configured.length > 0) throw new EvidenceConfigError(`${configured.join(', ')} set but EVIDENCE_SERVER_ID is not: set it (e.g. https://cycles.example.com/v1) or unset the others`);
    return undefined;
  }
  const serverId = checkServerId(serverRaw);

  const seed = seedBytes(env);
  let signer: EvidenceSigner;
  let ephemeral = false;
  if (seed) {
    signer = new EvidenceSigner(seed);
  } else if (ephemeralAllowed) {
    if (opts.production) throw new EvidenceConfigError('EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY is refused when NODE_ENV=production: envelopes signed by a per-process key can never be verified later');
    signer = EvidenceSigner.ephemeral();
    ephemeral = true;
  } else {
    throw new EvidenceConfigError('EVIDENCE_SERVER_ID is set but no signing key: set EVIDENCE_SIGNING_PRIVATE_KEY_HEX or EVIDENCE_SIGNING_PRIVATE_KEY_FILE (`cycles evidence keygen` prints one), or EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY=true for development');
  }
  const publicKeyHex = signer.publicKeyHex;

  const kidRaw = env.EVIDENCE_SIGNING_KID?.trim() ?? '';
  if (kidRaw !== '' && !KID_RE.test(kidRaw)) throw new EvidenceConfigError(`EVIDENCE_SIGNING_KID must match ${KID_RE.source}, got "${kidRaw}"`);
  let kid = kidRaw || defaultKid(publicKeyHex);
  let form: 'raw' | 'did' = 'raw';
  const didRaw = env.EVIDENCE_SIGNING_SIGNER_DID?.trim() ?? '';
  if (HEX64.test(didRaw)) {
    if (didRaw.toLowerCase() !== publicKeyHex) {
      throw new EvidenceConfigError(`EVIDENCE_SIGNING_SIGNER_DID (${didRaw.toLowerCase()}) is not the public key of the configured signing key (${publicKeyHex})${ephemeral ? '; an ephemeral key never matches a configured one' : ''}`);
    }
  } else if (didRaw.startsWith('did:')) {
    const m = DID_RE.exec(didRaw);
    if (!m) throw new EvidenceConfigError(`EVIDENCE_SIGNING_SIGNER_DID must be 64 hex characters or did:cycles:<sha256(server_id)>#<kid>, got "${didRaw}"`);
    if (didCycles(serverId, m[2]) !== didRaw) {
      throw new EvidenceConfigError(`EVIDENCE_SIGNING_SIGNER_DID does not bind to EVIDENCE_SERVER_ID: expected ${didCycles(serverId, m[2])}`);
    }
    if (kidRaw !== '' && kidRaw !== m[2]) throw new EvidenceConfigError(`EVIDENCE_SIGNING_SIGNER_DID names kid "${m[2]}" but EVIDENCE_SIGNING_KID is "${kidRaw}"`);
    if (!KID_RE.test(m[2])) throw new EvidenceConfigError(`the kid in EVIDENCE_SIGNING_SIGNER_DID must match ${KID_RE.source}`);
    kid = m[2];
    form = 'did';
  } else if (didRaw !== '') {
    throw new EvidenceConfigError(`EVIDENCE_SIGNING_SIGNER_DID must be 64 hex characters or did:cycles:<sha256(server_id)>#<kid>, got "${didRaw}"`);
  }

  const nbfRaw = env.EVIDENCE_SIGNING_NBF_MS?.trim() ?? '';
  if (nbfRaw !== '' && !/^\d{1,16}$/.test(nbfRaw)) throw new EvidenceConfigError(`EVIDENCE_SIGNING_NBF_MS must be epoch milliseconds, got "${nbfRaw}"`);
  const retired = parseRetiredKeys(env.EVIDENCE_SIGNING_RETIRED_KEYS);
  checkHistory(kid, retired);
  // the active key must not cover instants before the rotation (a back-dated envelope
  // signed with it would verify as authentic): raise its nbf to the last retired exp
  const nbfMs = Math.max(nbfRaw === '' ? 0 : Number(nbfRaw), ...retired.map((r) => r.expMs));
  const now = opts.nowMs ?? Date.now();
  if (nbfMs > now) {
    throw new EvidenceConfigError(`the active evidence key is valid only from ${new Date(nbfMs).toISOString()} (EVIDENCE_SIGNING_NBF_MS / the last retired exp_ms), which is in the future: nothing signed now would verify`);
  }

  signer.selfTest();
  const signerDid = form === 'did' ? didRaw : publicKeyHex;
  return { serverId, signerDid, form, kid, publicKeyHex, nbfMs, retired, ephemeral, signer };
}

/** kids unique across the set; one key material never covers an instant twice. */
function checkHistory(activeKid: string, retired: RetiredKey[]): void {
  const kids = new Set([activeKid]);
  retired.forEach((r, i) => {
    if (kids.has(r.kid)) throw new EvidenceConfigError(`EVIDENCE_SIGNING_RETIRED_KEYS[${i}]: kid "${r.kid}" is used twice (kids must be unique in the JWK Set)`);
    kids.add(r.kid);
    for (const o of retired.slice(0, i)) {
      if (o.publicKeyHex === r.publicKeyHex && r.nbfMs < o.expMs && o.nbfMs < r.expMs) {
        throw new EvidenceConfigError(`EVIDENCE_SIGNING_RETIRED_KEYS[${i}]: overlaps the window of "${o.kid}" for the same key (a verifier could not pick one)`);
      }
    }
  });
}

export interface GeneratedIdentity {
  seedHex: string;
  publicKeyHex: string;
  kid: string;
  /** did:cycles form, when a server id was given */
  did?: string;
  /** env lines an operator can paste */
  lines: string[];
}

/** A fresh identity for `cycles evidence keygen`. */
export function generateIdentity(opts: { serverId?: string; kid?: string } = {}): GeneratedIdentity {
  const serverId = opts.serverId === undefined ? undefined : checkServerId(opts.serverId, '--server-id');
  if (opts.kid !== undefined && !KID_RE.test(opts.kid)) throw new EvidenceConfigError(`--kid must match ${KID_RE.source}`);
  const seed = new Uint8Array(randomBytes(32));
  const seedHex = Buffer.from(seed).toString('hex');
  const publicKeyHex = new EvidenceSigner(seed).publicKeyHex;
  const kid = opts.kid ?? defaultKid(publicKeyHex);
  const did = serverId === undefined ? undefined : didCycles(serverId, kid);
  const lines = [
    `# Cycles evidence signing identity, generated ${new Date().toISOString()}.`,
    '# EVIDENCE_SIGNING_PRIVATE_KEY_HEX is the secret: keep it in a secret store, never in git.',
    serverId === undefined ? '# EVIDENCE_SERVER_ID=https://<your host>/v1   (the issuer base incl. /v1; required)' : `EVIDENCE_SERVER_ID=${serverId}`,
    `EVIDENCE_SIGNING_PRIVATE_KEY_HEX=${seedHex}`,
    `EVIDENCE_SIGNING_SIGNER_DID=${publicKeyHex}`,
    `EVIDENCE_SIGNING_KID=${kid}`,
    did === undefined
      ? '# did:cycles form: run again with --server-id <EVIDENCE_SERVER_ID> to print it'
      : `# did:cycles form (set EVIDENCE_SIGNING_SIGNER_DID to it to emit it; the JWK Set must then be served): ${did}`,
  ];
  return { seedHex, publicKeyHex, kid, did, lines };
}
