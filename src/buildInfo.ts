// A production build (`npm run build`, scripts/build.ts) is a compiled copy of the checkout
// in <checkout>/dist (or --out DIR) that marks itself with BUILD_INFO_FILE. Code that looks
// for things beside the checkout (the default spec bundle ../shared/specs/cycles-protocol)
// asks checkoutRoot() instead of using the module's own root.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const BUILD_INFO_FILE = 'cycles-build.json';

export interface BuildInfo {
  /** ISO time of the build */
  builtAt: string;
  /** the checkout it was built from, relative to the build directory */
  checkout: string;
}

export function readBuildInfo(root: string): BuildInfo | undefined {
  const file = path.join(root, BUILD_INFO_FILE);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as BuildInfo;
}

/** The checkout `root` was built from (root itself when it is a source tree). */
export function checkoutRoot(root: string): string {
  const info = readBuildInfo(root);
  return info ? path.resolve(root, info.checkout) : root;
}
