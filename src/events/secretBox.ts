// Encryption at rest of webhook signing secrets and custom header values (AES-256-GCM).
//
// Sealed form: `v1.<kid>.<iv>.<ciphertext+tag>` (base64url parts; kid = first 8 hex of
// SHA-256 of the key, so a value sealed under another key fails with a message that says
// so instead of a bare authentication error). The additional authenticated data binds each
// ciphertext to its subscription and field (`<subscription_id>:<field>`): a value copied to
// another row or field does not open.
//
// The key (decision DV13): CYCLES_WEBHOOK_SECRET_KEY (config.webhookSecretKey), else the key
// kept in $CYCLES_DATA_DIR/webhook-secret-key — generated on first use (mode 0600, written to
// a private temp file and linked into place, so two processes starting together agree) —
// except in production, where the variable is mandatory (src/config.ts refuses to start).
// Every process and instance sharing one Redis must use the same key.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readOrCreateKeyFile } from '../store/keyFile';
import path from 'node:path';
import type { Config } from '../config';

export const DEV_WEBHOOK_KEY_FILE = 'webhook-secret-key';
const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface SecretBox {
  /** key fingerprint (first 8 hex of its SHA-256), safe to log */
  readonly kid: string;
  seal(plain: string, aad: string): string;
  /** throws an Error (never returning partial plaintext) when the value does not open */
  open(sealed: string, aad: string): string;
}

type KeySource = Pick<Config, 'webhookSecretKey' | 'dataDir' | 'production'>;

const boxes = new Map<string, SecretBox>();
let lastBox: SecretBox | undefined;

function makeBox(key: Buffer): SecretBox {
  const kid = createHash('sha256').update(key).digest('hex').slice(0, 8);
  return {
    kid,
    seal(plain, aad) {
      const iv = randomBytes(IV_BYTES);
      const c = createCipheriv('aes-256-gcm', key, iv);
      c.setAAD(Buffer.from(aad, 'utf8'));
      const ct = Buffer.concat([c.update(plain, 'utf8'), c.final(), c.getAuthTag()]);
      return `${VERSION}.${kid}.${iv.toString('base64url')}.${ct.toString('base64url')}`;
    },
    open(sealed, aad) {
      const parts = typeof sealed === 'string' ? sealed.split('.') : [];
      if (parts.length !== 4 || parts[0] !== VERSION) throw new Error('not a sealed webhook secret');
      if (parts[1] !== kid) {
        throw new Error(`sealed under another key (kid ${parts[1]}, this server's CYCLES_WEBHOOK_SECRET_KEY has kid ${kid})`);
      }
      const iv = Buffer.from(parts[2], 'base64url');
      const body = Buffer.from(parts[3], 'base64url');
      if (iv.length !== IV_BYTES || body.length < TAG_BYTES) throw new Error('malformed sealed webhook secret');
      const d = createDecipheriv('aes-256-gcm', key, iv);
      d.setAAD(Buffer.from(aad, 'utf8'));
      d.setAuthTag(body.subarray(body.length - TAG_BYTES));
      try {
        return Buffer.concat([d.update(body.subarray(0, body.length - TAG_BYTES)), d.final()]).toString('utf8');
      } catch {
        throw new Error('sealed webhook secret failed authentication (tampered, or bound to another subscription/field)');
      }
    },
  };
}

/** The box of a configuration (memoized per key / data dir). */
export function secretBoxFor(cfg: KeySource): SecretBox {
  const id = cfg.webhookSecretKey ? `env:${cfg.webhookSecretKey.toString('base64')}` : `dir:${cfg.dataDir}`;
  let box = boxes.get(id);
  if (!box) {
    if (!cfg.webhookSecretKey && cfg.production) {
      throw new Error('CYCLES_WEBHOOK_SECRET_KEY is required when NODE_ENV=production');
    }
    box = makeBox(cfg.webhookSecretKey ?? dataDirKey(cfg.dataDir));
    boxes.set(id, box);
  }
  lastBox = box;
  return box;
}

/** The box most recently configured in this process (workers that only hold a Redis
 *  client); falls back to the process environment. */
export async function defaultSecretBox(): Promise<SecretBox> {
  if (lastBox) return lastBox;
  const { loadConfig } = await import('../config');
  return secretBoxFor(loadConfig(process.env));
}

function dataDirKey(dataDir: string): Buffer {
  const file = path.join(dataDir, DEV_WEBHOOK_KEY_FILE);
  return readOrCreateKeyFile(dataDir, {
    file,
    what: 'the webhook secret key',
    parse(text) {
      const key = Buffer.from(text, 'base64');
      if (key.length !== 32) {
        throw new Error(`${file} does not hold a webhook secret key (base64 of 32 bytes); restore it, or set CYCLES_WEBHOOK_SECRET_KEY`);
      }
      return key;
    },
    generate() {
      const key = randomBytes(32);
      return { key, text: key.toString('base64') };
    },
  }).key;
}
