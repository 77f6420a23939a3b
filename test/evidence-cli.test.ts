// `cycles evidence verify` and `cycles evidence keygen` as an operator runs them
// (`node bin/cycles.mjs …`, a real child process): dispositions on stdout, exit codes per
// decision DEV5, envelopes and JWK Sets from files and URLs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../src/config';
import { loadEvidenceIdentity } from '../src/evidence/keys';
import { FIXTURE_PUBLIC_KEY, FIXTURES_DIR, fixtureSeedHex, loadFixtures } from './helpers/evidence';

const BIN = path.join(REPO_ROOT, 'bin', 'cycles.mjs');
const fixtures = loadFixtures();
const tmp = mkdtempSync(path.join(tmpdir(), 'evidence-cli-'));
const fixtureFile = path.join(FIXTURES_DIR, fixtures[0].name);

interface Run { code: number; stdout: string; stderr: string }

function cycles(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, timeout: 120_000, env: { ...process.env, CYCLES_LOG_LEVEL: 'silent' } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let http: Server;
let base = '';
beforeAll(async () => {
  http = createServer((req, res) => {
    if (req.url === '/envelope') res.writeHead(200, { 'content-type': 'application/json' }).end(fixtures[0].text);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => http.close(r));
  rmSync(tmp, { recursive: true, force: true });
});

describe('cycles evidence verify', () => {
  it('exit codes and dispositions', { timeout: 400_000 }, async () => {
    const tampered = path.join(tmp, 'tampered.json');
    writeFileSync(tampered, fixtures[0].text.replace('"amount":2000000', '"amount":2000001'));
    const jwks = path.join(tmp, 'jwks.json');
    const identity = loadEvidenceIdentity({ EVIDENCE_SERVER_ID: 'https://cycles.example.com/v1', EVIDENCE_SIGNING_PRIVATE_KEY_HEX: fixtureSeedHex() })!;
    writeFileSync(jwks, JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: Buffer.from(identity.publicKeyHex, 'hex').toString('base64url'), kid: identity.kid, cycles_nbf_ms: 0 }] }));

    const [plain, bad, authentic, strict, unresolved, fromUrl, asJson, missing, pinned, wrongPin] = await Promise.all([
      cycles('evidence', 'verify', fixtureFile),
      cycles('evidence', 'verify', tampered),
      cycles('evidence', 'verify', fixtureFile, '--jwks', jwks),
      cycles('evidence', 'verify', fixtureFile, '--require-authentic'),
      cycles('evidence', 'verify', fixtureFile, '--jwks', `${base}/no-such-jwks`),
      cycles('evidence', 'verify', `${base}/envelope`),
      cycles('evidence', 'verify', fixtureFile, '--json'),
      cycles('evidence', 'verify', path.join(tmp, 'missing.json')),
      cycles('evidence', 'verify', fixtureFile, '--expected-signer', FIXTURE_PUBLIC_KEY),
      cycles('evidence', 'verify', fixtureFile, '--expected-signer', '0'.repeat(64)),
    ]);

    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(new RegExp(`^binding_only evidence_id=${fixtures[0].envelope.evidence_id} signer_did=${FIXTURE_PUBLIC_KEY}\\n`));

    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^signature_invalid .*\n {2}evidence_id mismatch/);

    expect(authentic.code, authentic.stderr).toBe(0);
    expect(authentic.stdout).toMatch(new RegExp(`^authentic .*kid=${identity.kid}`));

    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/^binding_only/);

    expect(unresolved.code).toBe(3);
    expect(unresolved.stdout).toMatch(/^signer_resolution_failed/);

    expect(fromUrl.code, fromUrl.stderr).toBe(0);
    expect(fromUrl.stdout).toMatch(/^binding_only/);

    expect(asJson.code).toBe(0);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ disposition: 'binding_only', evidence_id: fixtures[0].envelope.evidence_id });

    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read/);

    expect(pinned.code).toBe(0);
    expect(pinned.stdout).toMatch(/signer_pin_matched=true/);
    expect(wrongPin.code).toBe(1);
    expect(wrongPin.stdout).toMatch(/^binding_only .*signer_pin_matched=false/);
  });
});

describe('cycles evidence keygen', () => {
  it('prints env lines an operator can paste (and that load)', { timeout: 400_000 }, async () => {
    const [plain, withServer, bad] = await Promise.all([
      cycles('evidence', 'keygen'),
      cycles('evidence', 'keygen', '--server-id', 'https://cycles.example.com/v1', '--kid', '2026-06'),
      cycles('evidence', 'keygen', '--server-id', 'https://cycles.example.com/v1/'),
    ]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/^EVIDENCE_SIGNING_PRIVATE_KEY_HEX=[0-9a-f]{64}$/m);
    expect(plain.stdout).toMatch(/^# EVIDENCE_SERVER_ID=/m);

    expect(withServer.code, withServer.stderr).toBe(0);
    const env = Object.fromEntries(withServer.stdout.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=', 2) as [string, string]));
    const id = loadEvidenceIdentity(env)!;
    expect(id).toMatchObject({ serverId: 'https://cycles.example.com/v1', kid: '2026-06', signerDid: env.EVIDENCE_SIGNING_SIGNER_DID });
    expect(withServer.stdout).toMatch(/did:cycles:[0-9a-f]{64}#2026-06/);

    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no trailing slash/);
  });
});
