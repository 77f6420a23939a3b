// Gate: each emitted document must initialise openapi-backend with its definition check on
// and failing hard (strict), validating with Ajv 2020-12.
import { OpenAPIBackend } from 'openapi-backend';
import { customizeAjv } from './ajv';
import type { JsonObject } from './util';

/**
 * An initialised OpenAPIBackend over a generated document, as the server should build it.
 * `validate: false` only skips compiling the request/response validators (~2-3 s per plane);
 * the definition check still runs.
 */
export async function createBackend(definition: JsonObject, validate = true): Promise<OpenAPIBackend> {
  const api = new OpenAPIBackend({
    definition: structuredClone(definition) as any,
    validate, // request validation (compiles every operation's validators with Ajv 2020)
    strict: true, // throw (instead of console.warn) when the definition fails openapi-backend's own check
    quick: false, // quick mode would skip the definition check
    customizeAjv,
  });
  await api.init();
  return api;
}

/** 'definition': openapi-backend's definition check only; 'full': also compile all validators. */
export type VerifyLevel = 'definition' | 'full';

export async function verifyDocument(definition: JsonObject, label: string, level: VerifyLevel = 'full'): Promise<void> {
  try {
    await createBackend(definition, level === 'full');
  } catch (err) {
    throw new Error(`${label}: openapi-backend rejected the generated document: ${(err as Error).message}`);
  }
}
