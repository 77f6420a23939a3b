// Discovers handlers by convention: handlers/<plane>/<operationId>.ts exporting a default
// Handler. An operation without a file answers 501 and is counted by `cycles ops`.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { REPO_ROOT, type Plane } from './config';
import { operations } from './generated/operations';
import type { Handler } from './http/types';

/** .ts from source (tsx), .js in a build (npm run build) */
const HANDLER_EXT = path.extname(fileURLToPath(import.meta.url));

export function handlerFile(plane: Plane, operationId: string): string {
  return path.join(REPO_ROOT, 'handlers', plane, `${operationId}${HANDLER_EXT}`);
}

export async function loadHandlers(plane: Plane): Promise<Map<string, Handler>> {
  const out = new Map<string, Handler>();
  for (const op of operations) {
    if (op.plane !== plane) continue;
    const file = handlerFile(plane, op.operationId);
    if (!existsSync(file)) continue;
    const mod = await import(pathToFileURL(file).href);
    if (typeof mod.default !== 'function') {
      throw new Error(`${file} must export a default handler function`);
    }
    out.set(op.operationId, mod.default as Handler);
  }
  return out;
}
