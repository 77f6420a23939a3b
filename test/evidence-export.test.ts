// `cycles evidence export` as an operator runs it (real child process against a real
// redis-server): the envelopes of a time range, oldest first, one stored canonical document
// per line, each verifying on its own; entries whose envelope expired are skipped and counted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../src/config';
import { keys } from '../src/store/keys';
import { verifyEnvelope } from '../src/evidence/verify';
import { jwkSet } from '../src/evidence/jwks';
import { loadEvidenceIdentity } from '../src/evidence/keys';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { FIXTURE_PUBLIC_KEY, fixtureSeedHex, loadFixtures } from './helpers/evidence';

const BIN = path.join(REPO_ROOT, 'bin', 'cycles.mjs');
let r: TestRedis;
beforeAll(async () => { r = await startTestRedis(); }, 30_000);
afterAll(async () => { await r?.stop(); });

function exportRange(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'evidence', 'export', ...args], { cwd: REPO_ROOT, timeout: 30_000, maxBuffer: 64 << 20,
      env: { ...process.env, CYCLES_LOG_LEVEL: 'silent', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('cycles evidence export', () => {
  it('streams a time range in issued_at order; every line verifies alone; expired envelopes are counted, not printed', async () => {
    const fixtures = loadFixtures();
    for (const f of fixtures) {
      const id = f.envelope.evidence_id as string;
      await r.client.set(keys.evidenceEnvelope(id), f.text.trimEnd());
      await r.client.zadd(keys.evidenceIndex(), String(f.envelope.issued_at_ms), id);
    }
    // an index entry whose envelope is gone (retention)
    await r.client.zadd(keys.evidenceIndex(), '1', 'f'.repeat(64));
    const jwks = jwkSet(loadEvidenceIdentity({ EVIDENCE_SERVER_ID: 'https://cycles.example.com/v1',
      EVIDENCE_SIGNING_PRIVATE_KEY_HEX: fixtureSeedHex(), EVIDENCE_SIGNING_SIGNER_DID: FIXTURE_PUBLIC_KEY })!);

    const all = await exportRange({ REDIS_URL: r.url });
    expect(all.code, all.stderr).toBe(0);
    const lines = all.stdout.split('\n').filter(Boolean);
    expect(lines).toHaveLength(fixtures.length);
    expect(all.stderr).toContain(`${fixtures.length} envelopes, 1 indexed but no longer stored`);
    const issued = lines.map((l) => JSON.parse(l).issued_at_ms as number);
    expect([...issued].sort((a, b) => a - b)).toEqual(issued);
    const stored = new Set(fixtures.map((f) => f.text.trimEnd()));
    for (const l of lines) {
      expect(stored.has(l)).toBe(true); // byte for byte
      expect((await verifyEnvelope(l, { jwks: { set: jwks } })).disposition).toBe('authentic');
    }
    // a bounded range
    const mid = issued[Math.floor(issued.length / 2)];
    const part = await exportRange({ REDIS_URL: r.url }, '--from', String(mid), '--to', new Date(issued[issued.length - 1]).toISOString());
    expect(part.stdout.split('\n').filter(Boolean)).toHaveLength(issued.filter((t) => t >= mid).length);
  });

  it('without REDIS_URL it exits 2 with a message; a bad bound is refused', async () => {
    const env = { REDIS_URL: '' };
    const none = await exportRange(env);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('REDIS_URL');
    const bad = await exportRange({ REDIS_URL: r.url }, '--from', 'yesterday-ish');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--from');
  });
});
