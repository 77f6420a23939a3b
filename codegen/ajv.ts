// The Ajv instance openapi-backend should validate with: JSON Schema 2020-12 (the dialect of
// OpenAPI 3.1) plus ajv-formats. Pass `customizeAjv` to `new OpenAPIBackend({...})`.
import Ajv2020 from 'ajv/dist/2020';
import type { Options } from 'ajv';
import addFormats from 'ajv-formats';

export function createAjv(opts: Options = {}): Ajv2020 {
  // strict: false — the documents carry OpenAPI annotation keywords (example, x-*, ...).
  const ajv = new Ajv2020({ allErrors: true, ...opts, strict: false });
  addFormats(ajv);
  return ajv;
}

/**
 * openapi-backend's customizeAjv hook. openapi-backend passes the options it wants for the
 * context (e.g. `coerceTypes: true` for path/query/header parameters); keep them.
 */
export function customizeAjv(_original: unknown, ajvOpts: Options = {}): Ajv2020 {
  return createAjv(ajvOpts);
}
