// GET /openapi.json and GET /docs on both planes, in both feature profiles (DO1, DO2):
// no API key needed; the served document is the one the plane routes against; the page,
// rendered by a real headless Chromium (Debian's `chromium`, driven by playwright-core),
// loads with no console error, no failed request and no request off this origin, and
// lists every operation of its plane. A screenshot of each page goes to test-output/.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { startTestServer, call, type TestServer } from './helpers/server';
import { operations } from '../src/generated/operations';
import { REPO_ROOT, type Plane } from '../src/config';

const CHROMIUM = process.env.CHROMIUM_BIN || ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
const OUT_DIR = path.join(REPO_ROOT, 'test-output');
const PLANES: Plane[] = ['runtime', 'admin'];
const PROFILES = [
  { name: 'v0.1.25', env: {}, features: false },
  { name: 'v0.1.26', env: { CYCLES_FEATURES: 'v0.1.26' }, features: true },
] as const;

/** operationIds the plane serves in a profile, from the generated operation table. */
function expectedOps(plane: Plane, features: boolean): string[] {
  return operations.filter((o) => o.plane === plane && (features || o.feature === 'base')).map((o) => o.operationId).sort();
}

function documentOps(doc: any): string[] {
  const out: string[] = [];
  for (const item of Object.values<any>(doc.paths ?? {})) {
    for (const [m, op] of Object.entries<any>(item)) {
      if (['get', 'put', 'post', 'delete', 'patch'].includes(m) && op?.operationId) out.push(op.operationId);
    }
  }
  return out.sort();
}

if (!CHROMIUM) {
  console.warn('\n' + '!'.repeat(100) + '\n!! docs-page.test.ts: NO CHROMIUM FOUND (/usr/bin/chromium; set CHROMIUM_BIN): the /docs rendering ' +
    'checks are SKIPPED.\n!! Install it with `apt-get install -y chromium` (.ci/run does).\n' + '!'.repeat(100) + '\n');
}

for (const profile of PROFILES) {
  describe(`/openapi.json and /docs (${profile.name})`, () => {
    let s: TestServer;
    beforeAll(async () => { s = await startTestServer(profile.env, { roles: ['runtime', 'admin'] }); });
    afterAll(async () => { await s?.stop(); });

    for (const plane of PLANES) {
      const base = () => (plane === 'runtime' ? s.runtimeUrl : s.adminUrl);

      it(`${plane}: /openapi.json is this plane's document, without an API key`, async () => {
        const r = await call(base(), 'GET', '/openapi.json');
        expect(r.status).toBe(200);
        expect(r.headers.get('content-type')).toBe('application/json');
        const doc = JSON.parse(r.text);
        expect(doc.openapi).toMatch(/^3\.1\./);
        expect(doc.servers).toEqual([{ url: '/', description: 'this server' }]);
        expect(documentOps(doc)).toEqual(expectedOps(plane, profile.features));
      });

      it(`${plane}: /docs and its assets are served locally, without an API key`, async () => {
        const page = await fetch(base() + '/docs');
        expect(page.status).toBe(200);
        expect(page.headers.get('content-type')).toMatch(/^text\/html/);
        expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
        const html = await page.text();
        expect(html).not.toMatch(/https?:\/\//);
        for (const a of ['docs/assets/swagger-ui-bundle.js', 'docs/assets/swagger-ui.css', 'docs/init.js']) {
          expect(html).toContain(a);
          const r = await fetch(`${base()}/${a}`);
          expect(r.status, a).toBe(200);
          expect((await r.arrayBuffer()).byteLength, a).toBeGreaterThan(100);
        }
        // only the listed files of the package: anything else is the pipeline's 404
        expect((await call(base(), 'GET', '/docs/assets/package.json')).status).toBe(404);
        expect((await call(base(), 'GET', '/docs/assets/..%2Fpackage.json')).status).toBe(404);
        const slash = await fetch(base() + '/docs/', { redirect: 'manual' });
        expect(slash.status).toBe(308);
        expect(new URL(slash.headers.get('location')!, base() + '/docs/').pathname).toBe('/docs');
      });
    }

    describe.skipIf(!CHROMIUM)('rendered in headless Chromium', () => {
      let browser: Browser;
      beforeAll(async () => {
        browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
      });
      afterAll(async () => { await browser?.close(); });

      for (const plane of PLANES) {
        it(`${plane}: loads without console errors and lists every operation`, async () => {
          const expected = expectedOps(plane, profile.features);
          const origin = new URL(plane === 'runtime' ? s.runtimeUrl : s.adminUrl).origin;
          const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
          const problems: string[] = [];
          page.on('console', (m) => { if (m.type() === 'error') problems.push(`console.error: ${m.text()}`); });
          page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
          page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
          page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
          page.on('request', (r) => {
            const u = new URL(r.url());
            if (u.protocol !== 'data:' && u.origin !== origin) problems.push(`request off this origin: ${r.url()}`);
          });
          try {
            await page.goto(`${origin}/docs`, { waitUntil: 'load' });
            // every operation rendered (tags expanded: docExpansion 'list')
            // (a string: this file is compiled without the DOM library)
            await page.waitForFunction(`document.querySelectorAll('.opblock').length >= ${expected.length}`, undefined, { timeout: 30_000 });
            const shown = (await page.locator('.opblock .opblock-summary-operation-id').allTextContents()).map((t) => t.trim()).sort();
            expect(shown).toEqual(expected);
            expect(await page.locator('.info .title').first().textContent()).toBeTruthy();
            mkdirSync(OUT_DIR, { recursive: true });
            const file = path.join(OUT_DIR, `docs-${plane}-${profile.name}.png`);
            await page.screenshot({ path: file, fullPage: true });
            console.log(`docs screenshot (${plane}, ${profile.name}, ${shown.length} operations): ${file}`);
            expect(problems).toEqual([]);
          } finally {
            await page.close();
          }
        });
      }
    });
  });
}
