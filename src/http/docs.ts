// The plane's own spec at GET /openapi.json and a rendered reference at GET /docs (Swagger
// UI from the pinned swagger-ui-dist package, served from node_modules: no CDN, works
// offline). Like /healthz these sit outside the spec pipeline: no API key, no audit row, no
// request metrics, never a 404 of the pipeline (docs/decisions.md DO1, DO2).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Express, Response } from 'express';
import type { Plane } from '../config';
import type { LoadedSpec } from './spec';

/** The swagger-ui-dist files the page needs (nothing else of the package is served). */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

// Scripts only from this origin (the initializer is a file, not inline, so a strict
// script-src holds); Swagger UI sets style attributes and inlines SVG/data images.
const DOCS_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

let assetDir: string | undefined;
const assetCache = new Map<string, Buffer>();

function asset(name: string): Buffer {
  let buf = assetCache.get(name);
  if (!buf) {
    assetDir ??= path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
    buf = readFileSync(path.join(assetDir, name));
    assetCache.set(name, buf);
  }
  return buf;
}

/** The document served at /openapi.json: the one this plane routes and validates against
 *  (merged with CYCLES_FEATURES=v0.1.26, the v0.1.25 base otherwise), with `servers`
 *  pointing at this server instead of the spec's placeholder host (DO2). */
export function servedDocument(spec: Pick<LoadedSpec, 'document'>): Record<string, unknown> {
  return { ...spec.document, servers: [{ url: '/', description: 'this server' }] };
}

function page(plane: Plane, title: string): string {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(title)} — ${plane} plane</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="docs/assets/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
`;
}

// Relative URLs throughout, so the page also works behind a proxy that mounts the plane
// under a path prefix.
const INIT_JS = `window.ui = SwaggerUIBundle({
  url: 'openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  displayOperationId: true,
  docExpansion: 'list',
  defaultModelsExpandDepth: 0,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout'
});
`;

function send(res: Response, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': String(Buffer.byteLength(body)),
    'X-Content-Type-Options': 'nosniff',
    ...extra,
  });
  res.end(body);
}

/** Mounts /openapi.json, /docs and its assets on a plane's app (before the spec pipeline). */
export function mountDocs(app: Express, plane: Plane, spec: Pick<LoadedSpec, 'document'>): void {
  // serialised on first use (a few hundred kB), then kept
  let json: string | undefined;
  const title = String(spec.document?.info?.title ?? 'Cycles API');
  const html = page(plane, title);
  app.get('/openapi.json', (_req, res) => {
    json ??= JSON.stringify(servedDocument(spec));
    send(res, 200, 'application/json', json, { 'Cache-Control': 'no-cache' });
  });
  app.get('/docs', (req, res) => {
    // express matches /docs/ here too; the page's relative URLs need /docs
    if (req.path.endsWith('/')) {
      res.writeHead(308, { Location: '../docs', 'Content-Length': '0' });
      res.end();
      return;
    }
    send(res, 200, 'text/html; charset=utf-8', html, { 'Content-Security-Policy': DOCS_CSP, 'Cache-Control': 'no-cache' });
  });
  app.get('/docs/init.js', (_req, res) => {
    send(res, 200, 'text/javascript; charset=utf-8', INIT_JS, { 'Cache-Control': 'no-cache' });
  });
  app.get('/docs/assets/:file', (req, res, next) => {
    const type = ASSETS[req.params.file];
    if (!type) { next(); return; }
    send(res, 200, type, asset(req.params.file), { 'Cache-Control': 'public, max-age=86400' });
  });
}
